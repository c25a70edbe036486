/* io/uring.h - a shard's io_uring: feature probe, ring setup, provided-buffer ring, listener
 * sockets and the user_data encoding every completion uses.
 *
 * The probe and listener creation run on the main thread before the shards start; a ring and
 * its buffer ring are created and used only by the shard thread that owns them (the ring is
 * SINGLE_ISSUER). This is the only place liburing is wrapped (STYLE 2).
 */
#ifndef KEELMQ_IO_URING_H
#define KEELMQ_IO_URING_H

#include <liburing.h>
#include <netinet/in.h>

#include "core/base.h"
#include "io/uring_compat.h"

/* user_data: the top 8 bits say what completed; the rest identify the object. For objects in a
 * pool: 24 bits of generation and 32 bits of slot index, so a completion for a slot that has
 * since been freed and reused is recognised as stale and dropped (STYLE 6). */
enum uring_op {
    URING_OP_NONE = 0,
    URING_OP_ACCEPT = 1,
    URING_OP_RECV = 2,
    URING_OP_SEND = 3,
    URING_OP_CLOSE = 4,
    URING_OP_CANCEL = 5,
    URING_OP_WAKE = 6,        /* a peer's MSG_RING data wake-up: nothing to do but wake */
    URING_OP_HANDOFF_IN = 7,  /* target side of a connection handoff: low 56 bits = pointer */
    URING_OP_HANDOFF_OUT = 8, /* source side: the MSG_RING that sent the descriptor */
    URING_OP_WAKE_SENT = 9,   /* our own MSG_RING wake SQE completed */
    URING_OP_STORE_WRITE = 10, /* a commit log batch write */
    URING_OP_STORE_SYNC = 11,  /* a commit log datasync (store.flush = async) */
    URING_OP_STORE_READ = 12,  /* a catch-up read of the commit log: low 56 bits = pointer */
    URING_OP_INDEX_PUB = 13,   /* fsync / rename / directory fsync of an index run */
};

static inline uint64_t uring_ud(enum uring_op op, uint32_t gen, uint32_t idx)
{
    return ((uint64_t)op << 56) | ((uint64_t)(gen & 0xFFFFFFu) << 32) | idx;
}
static inline uint64_t uring_ud_ptr(enum uring_op op, const void *ptr)
{
    uint64_t p = (uint64_t)(uintptr_t)ptr;
    ASSERT((p >> 56) == 0);
    return ((uint64_t)op << 56) | p;
}
static inline enum uring_op uring_ud_op(uint64_t ud) { return (enum uring_op)(ud >> 56); }
static inline uint32_t uring_ud_gen(uint64_t ud) { return (uint32_t)(ud >> 32) & 0xFFFFFFu; }
static inline uint32_t uring_ud_idx(uint64_t ud) { return (uint32_t)ud; }
static inline void *uring_ud_to_ptr(uint64_t ud)
{
    return (void *)(uintptr_t)(ud & ((1ull << 56) - 1));
}

/* Checks that io_uring exists and supports every opcode and flag keelmq uses. Returns 0, or
 * a negative errno with a sentence in `err` naming what is missing and what to do. */
int uring_probe(char *err, size_t err_len);

/* Sets up `ring` for the calling thread (SINGLE_ISSUER | DEFER_TASKRUN, large CQ) with a
 * sparse table of `files_max` direct descriptors. Returns 0 or -errno. */
int uring_init(struct io_uring *ring, uint32_t entries, uint32_t files_max);

/* A provided-buffer ring: `count` buffers of `size` bytes each, group `group_id`. */
struct uring_bufring {
    struct io_uring_buf_ring *br;
    uint8_t *mem;
    uint32_t count;
    uint32_t size;
    uint32_t pending; /* buffers added since the last publish */
    uint16_t group_id;
};

/* Registers a buffer ring on `ring` and gives every buffer to the kernel. Returns 0 or -errno.
 * Owner: the ring's thread. uring_bufring_destroy unregisters and frees it. */
int uring_bufring_init(struct io_uring *ring, struct uring_bufring *b, uint16_t group_id,
                       uint32_t count, uint32_t size);
void uring_bufring_destroy(struct io_uring *ring, struct uring_bufring *b);

static inline uint8_t *uring_bufring_addr(const struct uring_bufring *b, uint16_t bid)
{
    ASSERT_HOT(bid < b->count);
    return b->mem + (size_t)bid * b->size;
}

/* Gives buffer `bid` back to the kernel; it becomes visible at the next publish. */
static inline void uring_bufring_recycle(struct uring_bufring *b, uint16_t bid)
{
    io_uring_buf_ring_add(b->br, uring_bufring_addr(b, bid), b->size, bid,
                          io_uring_buf_ring_mask(b->count), (int)b->pending);
    b->pending++;
}
static inline void uring_bufring_publish(struct uring_bufring *b)
{
    if (b->pending > 0) {
        io_uring_buf_ring_advance(b->br, (int)b->pending);
        b->pending = 0;
    }
}

/* Returns an SQE, submitting what is queued first if the SQ is full. Never NULL: a full SQ
 * after a submit means the kernel refused work, which is fatal for the shard. */
struct io_uring_sqe *uring_sqe(struct io_uring *ring);

/* Creates a TCP listening socket with SO_REUSEPORT (one per shard) on `bind_addr`:`port`.
 * Returns the fd or -errno with `err` set. *bound_port receives the actual port. */
int uring_listen_tcp(const char *bind_addr, uint16_t port, uint32_t backlog,
                     uint16_t *bound_port, char *err, size_t err_len);

#endif
