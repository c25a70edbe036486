/* bench/bench_net.h - keelmq-bench's sockets: one io_uring, client connections as direct
 * descriptors, multishot receive with a provided-buffer ring, one coalesced send per
 * connection per loop iteration.
 *
 * A connection is a socket(2) bound to 127.0.0.(1 + idx % sources) with
 * IP_BIND_ADDRESS_NO_PORT (so the port is chosen at connect time per 4-tuple and K source
 * addresses give K times one address's port range), installed in the ring's fixed-file table
 * at slot idx and then closed: the process holds no fd per connection. The connect, every
 * receive and every send run on the direct descriptor.
 *
 * Limit: the kernel caps one ring's fixed-file table at RLIMIT_NOFILE (20000 on the project's
 * machines, not raisable). Up to RLIMIT_NOFILE - BENCH_NET_FD_SPARE connections share one
 * ring; beyond that they are spread over rings of BENCH_NET_CONNS_PER_RING, at most
 * BENCH_NET_RINGS_MAX, all driven by the same thread: it blocks on the first ring for at most
 * BENCH_NET_MULTI_RING_POLL_NS and then collects every ring's completions, so with several
 * rings a completion may wait up to that long (fine for idle connections, costly for latency
 * figures: keep latency runs under one ring's limit).
 *
 * Received bytes are split into MQTT frames (codec_frame); each complete frame goes to the
 * owner's frame callback, straight from the kernel's buffer when it lies in one, else from a
 * per-connection reassembly buffer.
 *
 * Single-threaded: everything runs on the thread that called bench_net_init.
 */
#ifndef KEELMQ_BENCH_BENCH_NET_H
#define KEELMQ_BENCH_BENCH_NET_H

#include <netinet/in.h>

#include "core/base.h"
#include "core/bytebuf.h"
#include "io/uring.h"

#define BENCH_NET_FD_SPARE 64u          /* fds kept for stdio, the JSON file, /proc reads */
#define BENCH_NET_CONNS_PER_RING 16384u /* when one ring is not enough */
#define BENCH_NET_RINGS_MAX 64u         /* 1M connections */
#define BENCH_NET_MULTI_RING_POLL_NS 1000000ull
#define BENCH_NET_RING_ENTRIES 4096u
#define BENCH_NET_RX_BUFFER_COUNT 4096u
#define BENCH_NET_RX_BUFFER_SIZE 16384u
#define BENCH_NET_FRAME_MAX (BENCH_NET_RX_BUFFER_SIZE + (2u << 20)) /* > 1 MiB payload + topic */
#define BENCH_NET_OUT_MAX (8u << 20)    /* pending output per connection */

enum bench_net_event {
    BENCH_NET_CONNECTED = 1,  /* TCP connect done, receive armed: send CONNECT */
    BENCH_NET_CONNECT_FAILED, /* res: -errno */
    BENCH_NET_LOST,           /* res: 0 = peer closed, else -errno (recv or send) */
};

struct bench_conn {
    uint32_t idx;
    uint32_t slot;            /* fixed-file slot in ring `ring_idx` */
    uint16_t ring_idx;
    uint8_t state;            /* owned by the engine */
    uint8_t role;             /* owned by the engine */
    bool is_open;             /* a socket is installed in the slot */
    bool is_lost;             /* LOST was reported; no more I/O */
    bool recv_armed;
    bool send_inflight;
    bool is_dirty;
    uint32_t role_idx;        /* owned by the engine */
    uint32_t in_frame_len;    /* length of the partial frame in `in`; 0 = header partial */
    uint32_t send_off;
    uint64_t last_tx_ns;
    struct bytebuf in;
    struct bytebuf out;     /* filling */
    struct bytebuf sending; /* the kernel's while send_inflight */
    struct bench_conn *dirty_next;
};

/* Returns false to stop feeding this connection (the engine has closed it). `frame` is
 * borrowed for the call only. */
typedef bool (*bench_frame_fn)(void *ctx, struct bench_conn *c, const uint8_t *frame,
                               uint32_t len);
typedef void (*bench_event_fn)(void *ctx, struct bench_conn *c, enum bench_net_event event,
                               int res);

struct bench_net_config {
    const char *host;         /* IPv4 address */
    uint16_t port;
    uint32_t conn_count;
    uint32_t source_count;    /* bind 127.0.0.1 .. 127.0.0.K (only when host is 127.x) */
    bench_frame_fn on_frame;
    bench_event_fn on_event;
    void *ctx;
};

struct bench_ring {
    struct io_uring ring;
    struct uring_bufring rx;
    bool is_ready;            /* both set up */
};

struct bench_net {
    struct bench_ring *rings; /* ring_count entries */
    uint32_t ring_count;
    uint32_t conns_per_ring;
    struct bench_conn *conns; /* conn_count entries, never reallocated */
    uint32_t conn_count;
    uint32_t source_count;
    bool bind_sources;
    struct bench_conn *dirty;
    struct sockaddr_in broker_addr;
    uint64_t now_ns;          /* refreshed by bench_net_wait */
    bench_frame_fn on_frame;
    bench_event_fn on_event;
    void *ctx;
};

/* Sets up the ring, buffer ring and connection table. Returns 0, or -errno with a sentence in
 * `err` (too many connections for one ring, bad host, io_uring unavailable). */
int bench_net_init(struct bench_net *n, const struct bench_net_config *cfg, char *err,
                   size_t err_len);
void bench_net_destroy(struct bench_net *n);

/* Creates, binds and registers the socket of `c` and queues its connect. Returns 0 or -errno
 * (the connect's own result comes as an event). */
int bench_net_open(struct bench_net *n, struct bench_conn *c);

/* Reserves `len` bytes at the end of the output of `c`; they are sent at the next
 * bench_net_flush. Returns NULL when `c` is lost, the output would exceed BENCH_NET_OUT_MAX,
 * or memory ran out. */
uint8_t *bench_net_out_reserve(struct bench_net *n, struct bench_conn *c, uint32_t len);

/* Queues one send per connection with output and no send in flight. */
void bench_net_flush(struct bench_net *n);

/* Submits what is queued, waits for at least one completion or `timeout_ns`, then handles
 * every completion (calling the callbacks). Refreshes n->now_ns. */
void bench_net_wait(struct bench_net *n, uint64_t timeout_ns);

/* Stops all I/O on `c` and closes its slot (no event follows). */
void bench_net_close(struct bench_net *n, struct bench_conn *c);

/* Splits received bytes into MQTT frames: hands each complete frame to n->on_frame (straight
 * from `data` when it lies there whole), keeps a partial frame in c->in, and reports
 * BENCH_NET_LOST (-EBADMSG) for a malformed or oversized fixed header (checked against
 * BENCH_NET_FRAME_MAX before any body byte is buffered). `data` is borrowed. Uses only
 * n->on_frame, n->on_event and n->ctx, so tests drive it without a ring. */
void bench_net_feed(struct bench_net *n, struct bench_conn *c, const uint8_t *data,
                    uint32_t len);

/* Bytes of output `c` has not yet had accepted by the kernel. */
static inline uint32_t bench_net_out_pending(const struct bench_conn *c)
{
    return c->out.len + (c->sending.len - c->send_off);
}

#endif
