/* core/conn.h - one client socket on a shard: receive framing, output coalescing, close.
 *
 * Shard-owned; only the owning shard's thread touches a conn. Conns live in a fixed pool
 * (shard.max_connections) and are named in io_uring user_data by pool index + generation, so
 * a completion for a closed and reused conn is recognised and dropped. The socket itself is a
 * direct descriptor (`slot`) in the shard's ring: no process fd per client.
 *
 * Receive: a multishot recv with provided buffers. Complete packets are handed to the session
 * layer straight from the kernel's buffer (zero copy); only a packet that spans buffers is
 * assembled in `in`, whose size is checked against mqtt.max_packet_size from the fixed header,
 * before any body byte is buffered.
 * Send: packets are appended to `out`; once per loop iteration every conn with output and no
 * send in flight gets one send of everything pending (coalescing). `out` and `sending` swap.
 * Close: input stops at once, pending output is flushed (a DISCONNECT with a reason), then the
 * recv is cancelled and the slot closed; the pool entry is reused only after every request on
 * it has completed.
 */
#ifndef KEELMQ_CORE_CONN_H
#define KEELMQ_CORE_CONN_H

#include "core/base.h"
#include "core/bytebuf.h"
#include "core/topicalias.h"

struct shard;
struct session;
struct handoff;

enum conn_state {
    CONN_FREE = 0,
    CONN_NEW,      /* accepted, waiting for CONNECT */
    CONN_HANDOFF,  /* CONNECT seen, being moved to the client id's home shard */
    CONN_ACTIVE,   /* CONNACK sent, session attached */
    CONN_CLOSING,  /* no more input; flushing output, then cancel + close */
};

/* A client->server topic alias (v5): the topic it stands for, owned by the conn. */
struct conn_alias {
    uint8_t *topic;
    uint16_t len;
};

struct conn {
    uint32_t idx;
    uint32_t gen;
    int slot;                /* direct descriptor in the shard's ring */
    enum conn_state state;
    uint8_t version;         /* enum mqtt_version once CONNECT was decoded, else 0 */
    bool recv_armed;
    bool send_inflight;
    bool close_submitted;
    bool slot_closed;
    bool is_dirty;           /* on the shard's flush list */
    uint64_t hold_until;     /* output waits until the log is durable up to this offset: what
                              * it answers was journaled (store.flush = sync; conn_hold) */
    uint32_t in_frame_len;   /* length of the partial frame held in `in`; 0 = header partial */
    uint32_t send_off;       /* bytes of `sending` already accepted by the kernel */
    bool is_paused;          /* input held until the commit log has room (back-pressure) */
    bool is_paused_for_acks; /* ... or until the disk answers one of its QoS 1/2 PUBLISHes:
                              * the next would exceed our Receive Maximum (core/dispatch.c) */
    struct bytebuf in;      /* partial frame, or stashed input during a handoff */
    struct bytebuf out;     /* filling */
    struct bytebuf sending; /* owned by the kernel while send_inflight */
    uint64_t accepted_ms;
    uint64_t last_rx_ms;
    uint32_t keepalive_ms;   /* 0 = no keepalive */
    uint64_t closing_ms;     /* when CLOSING began: flushing is cut off after a deadline */
    uint32_t max_packet_out; /* client's Maximum Packet Size (v5), else MQTT_VARINT_MAX + 5 */
    bool is_problem_info_off; /* v5 CONNECT said Request Problem Information = 0 */
    uint16_t handoff_target; /* home shard while CONN_HANDOFF */
    uint32_t pubacks_held;   /* PUBACKs of its QoS 1 PUBLISHes waiting for the disk: with the
                              * unreleased QoS 2 ids, what our Receive Maximum bounds (v5) */
    uint32_t pubrecs_held;   /* PUBRECs of its QoS 2 PUBLISHes waiting for the disk */
    struct conn_alias *aliases; /* mqtt.max_topic_alias entries, allocated on first use */
    struct topicalias_out alias_out; /* server -> client aliases (v5; core/topicalias.h) */
    struct session *session;
    struct handoff *handoff; /* source side of a handoff in progress */
    struct conn *dirty_next;
    struct conn *free_next;
    char label[24];          /* "shard/slot" for logs (a direct descriptor has no getpeername) */
};

/* Allocates a conn for direct descriptor `slot`. NULL when the pool is empty. */
struct conn *conn_alloc(struct shard *s, int slot);

/* Arms the multishot recv. */
void conn_arm_recv(struct shard *s, struct conn *c);

/* A recv completion: `data` (borrowed from the buffer ring) is framed and dispatched. */
void conn_on_recv(struct shard *s, struct conn *c, const uint8_t *data, uint32_t len);

/* Input held back: true while a handoff is pending or the conn is paused. */
static inline bool conn_input_held(const struct conn *c)
{
    return c->state == CONN_HANDOFF || c->is_paused;
}

/* Keeps `len` bytes of unprocessed input in `in` while input is held (the CONNECT frame of a
 * handoff, or the PUBLISH that found the log full, first; then whatever followed). Closes the
 * conn if the stash would exceed twice mqtt.max_packet_size plus the shard's receive buffers
 * (what a cancelled recv can still deliver), or memory runs out. */
void conn_stash(struct shard *s, struct conn *c, const uint8_t *data, uint32_t len);

/* Back-pressure: holds `c`'s input, starting with `frame` (replayed on resume), and stops its
 * recv. The shard resumes it once the commit log has room again (conn_resume). */
void conn_pause(struct shard *s, struct conn *c, const uint8_t *frame, uint32_t len);

/* Feeds the held input again and re-arms the recv. */
void conn_resume(struct shard *s, struct conn *c);

/* Feeds bytes that were received earlier (a handoff's stash) as if just received. */
void conn_feed(struct shard *s, struct conn *c, const uint8_t *data, uint32_t len);

/* Reserves `len` bytes at the end of the output; the caller fills them before returning to the
 * loop. Returns NULL when the output would exceed mqtt.output_buffer_max (the caller drops or
 * queues) or the conn is closing. Marks the conn for flushing. */
uint8_t *conn_out_reserve(struct shard *s, struct conn *c, uint32_t len);

/* Submits one send for every conn with pending output and no send in flight. */
void conn_flush_all(struct shard *s);

/* Nothing more is sent to `c` until the log is durable up to `end_off` (a journal record that
 * the next packets answer, as CONNACK for a session change or PUBREL for a PUBREC; what is
 * already in flight goes). No-op unless store.flush = sync. */
void conn_hold(struct shard *s, struct conn *c, uint64_t end_off);

/* Completion handlers. */
void conn_on_send(struct shard *s, struct conn *c, int res);
void conn_on_close(struct shard *s, struct conn *c, int res);
void conn_on_recv_end(struct shard *s, struct conn *c);

/* Starts closing: input is ignored from now on, pending output is flushed, then the socket is
 * closed. `reason` is logged. The session layer has already been told (see session_detach).
 * Idempotent. */
void conn_close(struct shard *s, struct conn *c, const char *reason);

/* Frees conns whose every request has completed (called once per loop iteration). */
void conn_reap(struct shard *s, struct conn *c);

/* Total pending output bytes (out + unsent part of sending). */
static inline uint32_t conn_out_pending(const struct conn *c)
{
    return c->out.len + (c->sending.len - c->send_off);
}

#endif
