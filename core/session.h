/* core/session.h - MQTT sessions and the packet dispatcher of one shard.
 *
 * Shard-owned. A session is keyed by client id and lives on the client id's home shard. It
 * holds the subscriptions, the outbound QoS 1/2 window (inflight, in send order) and queue,
 * the inbound QoS 2 packet ids awaiting PUBREL, and the will. A persistent session (clean
 * session 0, or v5 session expiry > 0) outlives its connection and is durable: its changes are
 * journaled in the log, and while it is offline or behind it reads what it missed from the log
 * through its per-shard positions (core/persist.h), not from copies.
 *
 * Packets are decoded and dispatched by core/dispatch.c, which calls in here.
 */
#ifndef KEELMQ_CORE_SESSION_H
#define KEELMQ_CORE_SESSION_H

#include "core/base.h"
#include "core/codec.h"
#include "core/subpack.h"

struct shard;
struct conn;
struct msg;

struct session_out {
    struct msg *msg;         /* one reference held */
    uint16_t packet_id;
    uint8_t qos;
    bool retain;
    bool pubrec_received;    /* QoS 2: PUBREL sent, waiting for PUBCOMP */
    bool tracked;            /* counts in the session's log positions (not a retained send) */
    bool unsent;             /* window: QoS 2 waiting for its journal record to be durable */
    bool share_tracked;      /* a shared delivery the group's owner counts as outstanding: its
                              * end is reported (shared_delivery_done) */
    uint32_t sub_id;
    uint64_t journal_end;    /* unsent: the log offset its OUT record ends at */
    uint64_t log_off;        /* QoS 2 restored after a restart (msg NULL): its record */
    uint16_t origin;
    uint64_t share_key;      /* a shared subscription delivery: its group (core/shared.h); 0
                              * for a delivery of the session's own subscriptions */
};

/* An outbound QoS 2 delivery journaled before a restart. When the catch-up reads its record
 * again, a SENT one goes out with the same packet id (and DUP); a PUBREC'd or completed one
 * (`skip`) is not delivered again. */
struct session_out_restored {
    uint64_t log_off;
    uint16_t origin;
    uint16_t packet_id;
    bool skip;
};

/* Where a persistent session stands in one origin shard's log (core/persist.h). */
enum origin_mode {
    ORIGIN_LIVE = 0,         /* messages arrive with the routing notes */
    ORIGIN_BEHIND = 1,       /* to be read from the log; routing notes are ignored */
    ORIGIN_READING = 2,      /* a catch-up request is out */
};
struct session_origin {
    uint64_t pos0;           /* QoS 0 records of that log ending at or below it were handled */
    uint64_t pos1;           /* the same for QoS 1/2 records */
    uint8_t mode;            /* enum origin_mode */
    uint32_t hint_count;     /* catch-up resume hints (queue id, queue offset), owned */
    uint64_t *hints;         /* 2 * hint_count: id, offset */
};

/* The parts of a session that are empty most of the time: allocated when one is first
 * needed, freed when all are empty again, so that a session without them (most offline ones)
 * pays one pointer for them. None is on the delivery path. */
struct session_cold {
    struct session_out_restored *restored; /* after a restart, until read again */
    uint32_t restored_len;
    /* Inbound QoS 2 packet ids received and not yet released. */
    uint32_t qos2_in_len;
    uint16_t *qos2_in;
    uint32_t qos2_in_cap;
    /* Will. Offline with `will` set: held by its will delay until `will_due_ms` (monotonic)
     * or the session's end, whichever comes first (MQTT-3.1.3-9). */
    uint32_t will_delay_s;   /* v5 Will Delay Interval of the current connection's will */
    struct msg *will;
    uint64_t will_due_ms;
    bool will_journaled;     /* the journal says it holds `will` (a held will survives a
                              * restart: JOURNAL_WILL); keeps the cold part while set */
};

/* 160 bytes (a jemalloc size class): an offline persistent session costs this, its client id,
 * its subscriptions and its positions (bench/session-memory, docs/benchmarks.md). */
struct session {
    char *client_id;         /* owned, NUL-terminated */
    uint16_t client_id_len;
    uint16_t group_len;      /* mqtt.client_id_format = group_device: the GroupID prefix of
                              * client_id (set at each CONNECT), else 0 */
    uint32_t expiry_s;       /* v5 session expiry interval; UINT32_MAX = never */
    uint64_t hash;
    struct session *hash_next;
    struct conn *conn;       /* NULL while offline */
    uint64_t serial;         /* unique per shard and run (catch-up answers check it) */
    uint64_t since_ns;       /* wall time it started: catch-up skips older records */
    struct session_origin *origins; /* persistent: one per shard; NULL otherwise (and its
                                     * wildcard filters are in the registry while non-NULL) */
    bool journaled;          /* its STATE is in the log: its end must be journaled too */
    bool cursor_dirty;       /* positions moved since the last CURSOR record */
    uint8_t version;
    bool persistent;
    uint32_t match_idx;      /* router, with match_stamp */
    uint64_t offline_since_ms;
    uint16_t receive_max_out; /* min(client's Receive Maximum, mqtt.max_inflight) */
    uint16_t next_packet_id;
    uint32_t match_stamp;    /* router: merges overlapping subscriptions within one match */
    /* Subscriptions (to rebuild or remove tree entries, and to match what is read from the
     * log). Those of an offline persistent session are not in the subscription tree
     * (`subs_parked`): it reads what it missed from the log, so nothing is routed to it. */
    struct subpack subs;
    /* Outbound QoS 1/2: `inflight` is a ring of sent, unacknowledged messages in send order;
     * `queue` a ring of messages waiting for the window. */
    struct session_out *inflight;
    uint32_t inflight_head;
    uint32_t inflight_len;
    uint32_t inflight_cap;
    uint32_t unsent_count;   /* window entries held until their journal record is durable */
    struct session_out *queue;
    uint32_t queue_head;
    uint32_t queue_len;
    uint32_t queue_cap;
    bool subs_parked;        /* its non-shared subscriptions are out of the tree (offline) */
    struct session_cold *cold; /* NULL while all of it is empty */
};
STATIC_ASSERT(sizeof(struct session) <= 160, "struct session fits its jemalloc size class");

/* Will of the current connection (or held by its delay while offline), or NULL. */
static inline struct msg *session_will(const struct session *sess)
{
    return sess->cold != NULL ? sess->cold->will : NULL;
}

/* Replaces the will (releasing the one held) with `will` (one reference taken over; NULL for
 * none) and its delay. Returns 0, or -ENOMEM with `will` released and none held. */
int session_will_set(struct session *sess, struct msg *will, uint32_t delay_s);

/* Inbound QoS 2 packet ids held (received, not yet released). */
static inline uint32_t session_qos2_count(const struct session *sess)
{
    return sess->cold != NULL ? sess->cold->qos2_in_len : 0;
}

struct session_table *session_table_create(void);
/* Frees every session (and what they hold). */
void session_table_destroy(struct shard *s, struct session_table *t);
uint32_t session_table_count(const struct session_table *t);

/* Looks up the session of `client_id`, or NULL. */
struct session *session_find(struct session_table *t, struct slice client_id);

/* Creates an empty session for `client_id` (copied) and adds it to the table. NULL when out of
 * memory. */
struct session *session_create(struct shard *s, struct slice client_id);

/* Removes `sess` from the table and frees it with its subscriptions, queue and window. It must
 * be offline (no conn). */
void session_destroy(struct shard *s, struct session *sess);

/* Records a subscription (after it was added to the shard's tree). Returns 0 or -ENOMEM
 * (nothing changed). */
int session_sub_add(struct session *sess, struct slice filter, uint8_t options, uint32_t sub_id);
/* Forgets a subscription. Returns 0 or -ENOENT. */
int session_sub_remove(struct session *sess, struct slice filter);

/* Attaches `c` to `sess` (after CONNACK was written): re-sends the unacknowledged window
 * (PUBLISH with DUP, or PUBREL) in order, then sends what was queued. */
void session_attach(struct shard *s, struct session *sess, struct conn *c);

/* Acknowledgements from the client for our outbound QoS 1/2 messages. Return false when
 * `packet_id` is unknown (the caller answers per spec). */
bool session_on_puback(struct shard *s, struct session *sess, uint16_t packet_id);
bool session_on_pubrec(struct shard *s, struct session *sess, uint16_t packet_id, bool failed);
bool session_on_pubcomp(struct shard *s, struct session *sess, uint16_t packet_id);

/* Sends queued messages while the window and the socket have room. */
void session_pump(struct shard *s, struct session *sess);

/* Inbound QoS 2 packet ids: returns true if `packet_id` is already held (a re-sent PUBLISH);
 * add returns -ENOMEM/-ENOSPC; remove returns false if it was not held. */
bool session_qos2_has(const struct session *sess, uint16_t packet_id);
int session_qos2_add(struct session *sess, uint16_t packet_id);
bool session_qos2_remove(struct session *sess, uint16_t packet_id);

/* Writes one PUBLISH of `m` to `c`. Returns false when the output has no room. A message over
 * the client's Maximum Packet Size is dropped, counted, and reported as written (QoS 1/2 are
 * checked before they enter the window, so they never wait there for an ack). A client taking
 * topic aliases, or `sub_id` PUBOUT_SUB_ID_MULTI, get their own encoding (core/pubout.h). */
bool session_write_publish(struct shard *s, struct conn *c, const struct msg *m, uint8_t qos,
                           bool retain, bool dup, uint16_t packet_id, uint32_t sub_id);

/* Writes a packet without payload-sized parts (acks, CONNACK, DISCONNECT...) to `c`. A v5
 * failure gets its Reason String where the client allows it (core/reason.h).
 * Returns false when the output has no room. */
bool session_write_packet(struct shard *s, struct conn *c, const struct mqtt_packet *pkt);

/* The conn of `sess` is gone (socket error, EOF, keepalive, takeover, shutdown). Publishes the
 * will when `publish_will` (a persistent session with a will delay holds it: session_tick
 * publishes it when due, a reconnect cancels it), ends a non-persistent session, and detaches
 * a persistent one. */
void session_conn_lost(struct shard *s, struct conn *c, bool publish_will);
/* Drops the will `sess` holds (a CONNECT for its client id cancels a held will,
 * MQTT-3.1.3-9, and replaces a connected one); journals that it holds none if the journal
 * said it held one. */
void session_will_drop(struct shard *s, struct session *sess);

/* Delivers `m` (possibly another shard's message, read-only) to `sess` at `qos` with the
 * retain flag `retain` and v5 subscription identifier `sub_id` (0 = none; PUBOUT_SUB_ID_MULTI =
 * several, collected when written). QoS 0 goes
 * straight to the socket (dropped and counted if the client is offline or its output is
 * full); QoS 1/2 enter the window or the queue (cloning a foreign message). */
void session_deliver(struct shard *s, struct session *sess, const struct msg *m, uint8_t qos,
                     bool retain, uint32_t sub_id);

/* Delivers `m` to `sess` for the shared subscription group `share_key` (core/shared.h):
 * like session_deliver for a non-persistent session (outside the log positions; QoS 0 to the
 * socket or dropped; QoS 1/2 queued, dropped and counted beyond mqtt.max_queued_messages), with
 * the entries marked so that they go back to the group if the member leaves unacknowledged.
 * `is_tracked`: the owner counts it as outstanding until shared_delivery_done reports its end
 * (dropped here, PUBACK, PUBREC, expired, too large) or it goes back to the group. */
void session_deliver_shared(struct shard *s, struct session *sess, const struct msg *m,
                            uint8_t qos, bool retain, uint32_t sub_id, uint64_t share_key,
                            bool is_tracked);

/* Delivers a retained message on subscribe: like session_deliver, but outside the log
 * positions. */
void session_deliver_retained(struct shard *s, struct session *sess, const struct msg *m,
                              uint8_t qos, uint32_t sub_id);

/* A record read from the log for `sess` (catch-up from `m->origin_shard`): matched against the
 * session's subscriptions, queued (QoS 0 included, in log order), positions advanced. */
void session_deliver_logged(struct shard *s, struct session *sess, const struct msg *m);

/* Makes `sess` persistent in the store's sense (positions for every shard, filters registered,
 * STATE journaled) or, with `persistent` false, ends that (END journaled, filters released).
 * Called when a CONNECT or DISCONNECT decides it. */
void session_set_persistent(struct shard *s, struct session *sess, bool persistent);

/* Registry bookkeeping for one subscription change of a persistent session. */
void session_filter_changed(struct shard *s, struct session *sess, struct slice filter,
                            int32_t delta);

/* The positions to journal for origin `o`: pos0, and pos1 lowered to the oldest unacknowledged
 * tracked message of that origin still held. */
void session_origin_positions(const struct session *sess, uint16_t o, uint64_t *pos0,
                              uint64_t *pos1);

/* Asks for more from the log where `sess` is behind and has room. */
void session_catchup_poll(struct shard *s, struct session *sess);

/* Journals the positions of every persistent session whose positions moved. */
void session_journal_cursors(struct shard *s);
/* One step of a snapshot (core/persist.h): journals STATE, CURSOR, the outbound QoS 2 window
 * and the held will of the journaled sessions again, whole buckets of the session table from
 * *bucket on, until at least `max` sessions were visited (journaled or not, so a table of
 * clean sessions is walked in bounded steps too); advances *bucket past them. Returns
 * 1 once the table is covered, 0 when more remains, -EAGAIN when the table's size is no longer
 * `mask` (it grew: sessions moved between buckets, so the pass must start over), -ENOBUFS
 * when the log refused a record (the bucket is written again on the next step). */
int session_journal_step(struct shard *s, uint32_t *bucket, uint32_t mask, uint32_t max);
/* The session table's bucket mask (a snapshot's pass remembers it). */
uint32_t session_table_mask(const struct session_table *t);

struct recovery_session;
/* Shard setup: rebuilds the persistent session recovery found (offline, reading the log from
 * its journaled positions when it returns). Returns 0, -EBADMSG (its STATE does not decode) or
 * -ENOMEM. */
int session_adopt(struct shard *s, const struct recovery_session *rs);

/* Once per tick: publishes the held wills that are due, and expires offline sessions whose
 * expiry passed (their held will first). */
void session_tick(struct shard *s);

/* If `sess` is offline and its expiry has passed: publishes its held will, ends it (its END
 * is journaled) and returns true; `sess` is gone then. Lets a CONNECT that comes before the
 * next tick (right after a restart, say) see an expired session as absent. */
bool session_expire_if_due(struct shard *s, struct session *sess);

#endif
