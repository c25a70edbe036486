/* core/shard.h - everything one core owns, and the set of shards of the process.
 *
 * A shard is one thread pinned to one CPU with one io_uring. It owns its listener socket, its
 * provided-buffer ring, its connection pool, its sessions, its subscription tree, its copy of
 * the retained messages and its outbound SPSC rings. Shards share only the rings (one per
 * ordered pair, written by one side and read by the other) and the wake flags (io/wake.h).
 * The shard set is built by the main thread before any shard runs and is read-only after.
 */
#ifndef KEELMQ_CORE_SHARD_H
#define KEELMQ_CORE_SHARD_H

#include <pthread.h>

#include "core/base.h"
#include "core/config.h"
#include "core/conn.h"
#include "core/spsc.h"
#include "io/uring.h"
#include "io/wake.h"
#include "core/persist.h"
#include "store/commitlog.h"

#define SHARD_MAX 256

struct session_table;
struct suback_answer;
struct session;
struct recovery;
struct subtree;
struct retain;
struct msg;
struct shared;

/* What travels on a shard-pair ring. 16 bytes; the ring's entry size. */
enum note_kind {
    NOTE_PUBLISH = 1,         /* `ptr` is the origin's struct msg, read-only until consumed */
    NOTE_HANDOFF_RELEASE = 2, /* `ptr` is the receiver's struct handoff: free it */
    NOTE_FILTER = 3,          /* `ptr` is the sender's struct persist_filter_note */
    NOTE_CATCHUP_REQ = 4,     /* `ptr` is the sender's struct catchup_req (read-only) */
    NOTE_CATCHUP_RESP = 5,    /* `ptr` is the sender's struct catchup_resp: release it after */
    NOTE_CATCHUP_RELEASE = 6, /* `ptr` is the receiver's struct catchup_resp: free it */
    NOTE_CATCHUP_FAILED = 7,  /* `ptr` is the receiver's struct catchup_req, unanswered */
    NOTE_SHARED = 8,          /* `ptr` is the sender's struct shared_note (core/shared.h) */
};
struct note {
    uint32_t kind;
    uint32_t reserved;
    void *ptr;
};

/* A connection moving to its home shard: the bytes received so far (CONNECT first). Allocated
 * by the source shard and freed by it when the target sends NOTE_HANDOFF_RELEASE. */
struct handoff {
    uint16_t from_shard;
    uint32_t len;
    uint64_t accepted_ms;
    char label[24];
    uint8_t bytes[];
};

/* Notes that did not fit in a full ring, in order, for one target shard. */
struct note_backlog {
    struct note *notes;
    uint32_t head;
    uint32_t len;
    uint32_t cap;
};

/* Counters of one shard (read by its own thread; reported at shutdown and by later $SYS). */
struct shard_stats {
    uint64_t p2p_delivered;      /* P2P messages given to their target's session (mqtt.p2p) */
    uint64_t p2p_no_target;      /* P2P messages whose target has no session on its home */
    uint64_t accepted;
    uint64_t connects;
    uint64_t closed;
    uint64_t handoffs_out;
    uint64_t handoffs_in;
    uint64_t publishes_in;
    uint64_t deliveries;
    uint64_t dropped_qos0;    /* output full or client offline */
    uint64_t dropped_queue;   /* session queue at mqtt.max_queued_messages */
    uint64_t dropped_too_large; /* over the client's Maximum Packet Size */
    uint64_t dropped_expired; /* Message Expiry Interval passed before delivery (core/lifetime.h) */
    uint64_t notes_out;
    uint64_t notes_in;
    uint64_t backlogged;
    uint64_t accept_errors;
    uint64_t log_full;        /* appends refused because the log was too far behind */
    uint64_t backlog_holds;   /* publishers held because a peer shard fell behind */
    uint64_t ack_holds;       /* PUBLISHes held: past our Receive Maximum while the disk
                               * holds the answers (core/dispatch.c) */
    uint64_t sessions_behind; /* times a persistent session went from live to reading the log */
};

/* A conn named across loop iterations: valid while the generation matches. */
struct conn_ref {
    uint32_t idx;
    uint32_t gen;
};

/* Something waiting for the log to be visible up to `end_off` (commitlog_visible_off): a
 * QoS 1/2 PUBLISH to route (DESIGN 3.4), and/or an acknowledgement to send only once what it
 * confirms is durable (PUBACK/PUBREC with store.flush = sync, PUBCOMP after a journaled
 * release, SUBACK after a persistent session's journaled subscriptions). */
struct durable_wait {
    uint64_t end_off;
    struct msg *msg;         /* to route, one reference held; NULL for an ack alone */
    uint32_t conn_idx;       /* the conn to ack, if still the same (generation) */
    uint32_t conn_gen;
    uint16_t packet_id;
    uint8_t ack_type;        /* MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBCOMP, MQTT_SUBACK, 0, or
                              * MQTT_PUBLISH: pump the conn's session (journaled QoS 2 out) */
    struct suback_answer *answer; /* MQTT_SUBACK: what to answer (core/dispatch.c), owned */
};

/* One session matched by a routing pass (overlapping subscriptions merged). */
struct route_match {
    struct session *sess;
    uint8_t qos;
    bool retain_as_published;
    uint32_t sub_id;
};

/* The PUBLISH encodings of the message being routed, one per variant, so a fan-out encodes
 * once per variant and copies bytes to every subscriber (DESIGN 4). Valid for one routing
 * pass only: `msg` is cleared at the end of the pass. */
#define ENCODE_CACHE_VARIANTS 8
#define ENCODE_CACHE_BYTES_MAX 16384u /* bytes for all variants; what does not fit is encoded
                                       * per subscriber */
struct encode_variant {
    uint8_t version;
    uint8_t qos;
    bool retain;
    bool dup;
    uint32_t sub_id;
    uint32_t off;            /* in encode_cache.bytes */
    uint32_t len;
    uint32_t packet_id_off;  /* where the packet id sits, for QoS > 0 */
};
struct encode_cache {
    const struct msg *msg;
    uint32_t variant_count;
    uint32_t used;
    struct encode_variant variants[ENCODE_CACHE_VARIANTS];
    uint8_t bytes[ENCODE_CACHE_BYTES_MAX];
};

struct shard_set;

struct shard {
    /* Touched by other threads: the wake flags (own cache lines, see io/wake.h). */
    struct wake wake;
    /* Everything below is this shard's own. */
    _Alignas(CACHE_LINE) uint16_t id;
    uint16_t count;
    const struct config *cfg;
    struct shard_set *set;
    pthread_t thread;
    bool thread_joined;       /* main thread only */
    struct io_uring ring;
    struct uring_bufring rx;
    int listen_fd;
    bool accept_armed;
    bool accept_full;         /* the last accept failed with -ENFILE (warned once) */
    bool stopping;
    bool quiesced;
    uint32_t handoffs_pending; /* sent handoffs whose release note has not come back */
    uint64_t now_ms;          /* loop time, updated once per iteration */
    uint64_t next_tick_ms;
    uint64_t next_expiry_scan_ms;
    /* Connections. */
    struct conn *conns;
    uint32_t conn_cap;
    uint32_t conn_high;       /* conns[0..conn_high) have ever been used */
    uint32_t conn_live;
    struct conn *conn_free;
    struct conn *dirty;       /* conns with output to flush */
    struct conn *reap;        /* closing conns to check at the end of the iteration */
    /* Sessions and routing. */
    struct session_table *sessions;
    struct subtree *subs;
    struct retain *retained;
    struct shared *shared;    /* shared subscription groups this shard owns (core/shared.h) */
    bool retained_may_expire; /* a retained message with an expiry may be held (lifetime.h) */
    uint64_t client_id_counter;
    struct route_match *matches; /* router scratch, reused by every routing pass */
    uint32_t match_len;
    uint32_t match_cap;
    uint32_t match_stamp;
    const struct msg *match_msg;
    struct encode_cache encoded;
    /* Store. */
    struct commitlog log;
    struct durable_wait *waits;   /* FIFO in log order */
    uint32_t waits_head;
    uint32_t waits_len;
    uint32_t waits_cap;
    struct persist persist;       /* index, journal, catch-up (core/persist.h) */
    struct conn_ref *held;        /* conns paused until the log has room */
    uint32_t held_len;
    uint32_t held_cap;
    /* Cross-shard. out[i]/in[i] are the rings to/from shard i (NULL for i == id). */
    struct spsc *out[SHARD_MAX];
    struct spsc *in[SHARD_MAX];
    struct note_backlog backlog[SHARD_MAX];
    bool out_dirty[SHARD_MAX];
    uint32_t backlog_total;  /* notes in all backlogs together */
    /* Logging. */
    struct spsc log_ring;
    struct shard_stats stats;
    int exit_code;
};

struct shard_set {
    uint16_t count;
    const struct config *cfg;
    struct shard *shards;      /* count entries */
    struct spsc *rings;        /* count * count; rings[from * count + to] */
    uint16_t started;          /* threads created (main thread only) */
    const struct recovery *recovery; /* what the store held at start; read-only for shards */
    struct wake_group group;   /* startup and shutdown barriers (io/wake.h) */
};

/* Main thread: builds the set (rings, listeners, per-shard state). Returns 0 or -errno with
 * `err`. *bound_port is the listener's port (useful with listener.tcp.port = 0). */
int shard_set_create(struct shard_set *set, const struct config *cfg, uint16_t *bound_port,
                     char *err, size_t err_len);
/* Main thread: starts one pinned thread per shard. Returns 0 or -errno. */
int shard_set_start(struct shard_set *set, char *err, size_t err_len);
/* Main thread: asks every shard to stop and wakes it; shard_set_join waits for them. */
void shard_set_stop(struct shard_set *set);
int shard_set_join(struct shard_set *set);
/* Main thread: writes pending log lines of every shard. */
void shard_set_drain_logs(struct shard_set *set);
void shard_set_destroy(struct shard_set *set);

/* Shard thread: queues `note` for shard `to` (a backlog keeps order when the ring is full). */
void shard_post(struct shard *s, uint16_t to, struct note note);

/* Remembers a conn paused by back-pressure (conn_pause); the shard resumes it once the log
 * and the backlog have room. A conn that cannot be remembered (out of memory) is closed. */
void shard_hold(struct shard *s, struct conn *c);

/* Notes waiting behind full rings (to all peers together) at which publishers are held; half
 * of it resumes them. */
#define SHARD_CONGESTED_AT 16384u

/* True when more than `limit` notes wait behind full rings: some peer cannot keep up, and
 * publishers are held (like a full log) instead of queueing without bound. */
static inline bool shard_congested(const struct shard *s, uint32_t limit)
{
    return s->backlog_total > limit;
}

/* The home shard of a client id. */
uint16_t shard_home(const struct shard *s, struct slice client_id);

#endif
