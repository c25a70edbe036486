/* core/persist.h - durable sessions and offline delivery from the log, for one shard.
 *
 * Shard thread only; one `struct persist` lives in each struct shard. It ties the shard's commit
 * log (store/commitlog.h) to its consume-queue index (store/consumeq.h), the session journal
 * (store/journal.h) and reads of logged records (store/logread.h). DESIGN 3-5.
 *
 * Indexing. Every QoS 1/2 message record this shard appends is remembered with the queues it
 * goes to (QoS 0 records are logged but not indexed: at most once, they are not read back for
 * a session that was offline or behind; that is what Mosquitto does by default too, and it
 * keeps the index off the QoS 0 fast path):
 * the queue of its exact topic, and the queue of every wildcard filter that a persistent
 * session holds anywhere (the registry below); a P2P message (mqtt.p2p, core/iot.h) only the
 * P2P queue of its target client id, which every persistent session reads. Once the log is
 * visible up to the record (durable with store.flush = sync, written with async), the record is
 * appended to the index, in log order. QoS 1/2 messages are routed at that same moment (core/dispatch.c), which is
 * what makes a session's switch from reading the log to live delivery exact for them (see
 * catch-up).
 *
 * Registry. The wildcard filters held by persistent sessions, with a count of holders, are
 * known to every shard, because every shard indexes its own log: a session that subscribes
 * (or is restored) broadcasts +1 for each of its wildcard filters with NOTE_FILTER, and -1 when
 * it unsubscribes or ends. Exact filters need no registration: every topic has its queue.
 * A filter reaches another shard a ring hop after the SUBSCRIBE; messages published there in
 * between are delivered live but are not in that shard's filter queue (a documented window).
 * A shard keeps its registered filters as marks in its subscription tree (subtree_mark_set),
 * not in a tree of their own: a filter that a local session holds has one path of nodes.
 *
 * Journal. A persistent session's changes are RECORD_SESSION records in its home shard's log:
 * STATE (version, expiry, subscriptions; the complete configuration), CURSOR (its positions in
 * every shard's log), END, REL (an inbound QoS 2 packet id released; the ids themselves are in
 * the message records), and OUT (an outbound QoS 2 delivery sent, PUBREC'd, completed; a
 * QoS 2 PUBLISH waits in the window until its OUT is durable). Recovery (core/recovery.c)
 * replays them.
 *
 * Session positions. A persistent session keeps, per origin shard, two log offsets: pos0 (QoS 0
 * records from that shard below it were handled) and pos1 (the same for QoS 1/2 records). Two,
 * because a shard routes QoS 0 at append and QoS 1/2 once visible, so the two kinds reach a
 * session in different orders. Per origin it is LIVE (messages come with the routing notes),
 * BEHIND (it reads the log from its positions; routing notes from that origin are ignored), or
 * READING (a catch-up request is out). Offline sessions are BEHIND everywhere and cost these
 * numbers, not copies.
 *
 * Retention (store/retention.h). Whole segments go, oldest first, by store.retention.bytes
 * and .hours. Before a segment goes, what a restart needs from it is written again: once the
 * log grew past the last snapshot's end by a segment and by that snapshot's size, every
 * persistent session's STATE, CURSOR, QoS 2 window and held will, and every retained message
 * this shard published, are appended anew (a snapshot), and segments are deleted only below
 * the start of the newest snapshot that is durable. The sessions are written in steps of
 * PERSIST_SNAPSHOT_STEP from the loop (persist_step), while the log has room, so millions of
 * sessions neither stall the shard nor need one batch of their size; a session that changes
 * meanwhile journals the change after the snapshot's start anyway. The writing begins once
 * everything appended before the start has been routed: a QoS 1/2 message reaches the
 * retained index only when visible, and one the snapshot missed would sit below its start,
 * in a segment retention may delete, with no copy above. The retained messages
 * follow in steps too (PERSIST_SNAPSHOT_RETAINED_STEP / _BYTES), each skipped if it is no
 * longer its topic's retained message by then. The index's GC watermark follows.
 * Pending inbound QoS 2 ids older than a snapshot are not carried over (documented).
 *
 * Catch-up of sessions from the index and the log: core/catchup.h.
 */
#ifndef KEELMQ_CORE_PERSIST_H
#define KEELMQ_CORE_PERSIST_H

#include "core/base.h"

struct shard;
struct session;
struct msg;
struct consumeq;
struct logread;

#define PERSIST_CURSOR_MS 200u             /* a dirty session's positions are journaled this often */
#define PERSIST_INDEX_FLUSH_MS 1000u       /* the index's write buffer goes to disk this often */
#define PERSIST_SNAPSHOT_RETAINED_STEP 256u /* retained messages a snapshot rewrites per loop
                                            * iteration, */
#define PERSIST_SNAPSHOT_RETAINED_BYTES (1u << 20) /* or fewer once their payloads reach this */
#define PERSIST_SNAPSHOT_STEP 512u         /* sessions a snapshot visits per loop iteration
                                            * (writing ~600 B for each persistent one, ~300 KiB:
                                            * well inside the log's room) */

#define PERSIST_MARKS 1024u               /* (time, log offset) marks kept per shard */

/* Where the log stood at a time: lets a catch-up skip what precedes a session's start without
 * reading it. Marks are taken every tick; when the array is full every other one is dropped
 * and the interval doubles, so they cover the whole run with a resolution that coarsens with
 * age. */
struct persist_mark {
    uint64_t wall_ns;
    uint64_t log_off;        /* the log's append offset then: later records are newer */
};

/* A wildcard filter some persistent session holds (registry entry). While it has holders it
 * is the filter's mark in the shard's subscription tree (struct shard.subs, subtree_mark_set),
 * so the filter's nodes are shared with the subscriptions to it. */
struct persist_filter {
    uint64_t queue_id;
    uint32_t holders;        /* summed over every shard's sessions */
};

/* What travels with NOTE_FILTER. Sender's memory, shared by the notes to every peer: `refs`
 * counts the sender's notes not yet reclaimed (only the sender changes it). */
struct persist_filter_note {
    uint32_t refs;
    int32_t delta;           /* +1 or -1 */
    uint16_t filter_len;
    char filter[];
};

/* One record waiting to be indexed. */
struct persist_pending {
    uint64_t log_off;
    uint64_t timestamp_ns;
    uint32_t record_len;
    uint32_t topic_hash;
    uint32_t queue_count;    /* its queue ids, next in `pending_qids` */
};

struct persist_stats {
    uint64_t indexed;
    uint64_t index_errors;
    uint64_t journal_records;
    uint64_t journal_full;      /* journal appends refused (log too far behind) */
    uint64_t catchup_requests;
    uint64_t catchup_records;
    uint64_t catchup_read_errors;
    uint64_t catchup_cache_hits;    /* records read from the log's hot tail */
    uint64_t catchup_disk_reads;    /* O_DIRECT reads (each covers one or more records) */
    uint64_t lost_below_watermark;
};

struct persist {
    struct consumeq *index;
    struct logread *reader;           /* this shard's own log */
    struct persist_filter **table;    /* registry by queue id, open addressing; by filter:
                                       * the marks of the shard's subscription tree */
    uint32_t table_mask;
    uint32_t filter_count;
    /* Records appended, not yet visible: FIFO with their queue ids. */
    struct persist_pending *pending;
    uint32_t pending_head;
    uint32_t pending_len;
    uint32_t pending_cap;
    uint64_t *pending_qids;
    uint32_t qids_head;
    uint32_t qids_len;
    uint32_t qids_cap;
    uint64_t indexed_off;             /* everything below is indexed (or not a message) */
    uint64_t gc_off;                  /* the oldest offset still in the log (retention) */
    /* Catch-up requests to this shard (from any shard, itself included), answered in the loop
     * while the reads in flight stay under CATCHUP_READ_BYTES_MAX (core/catchup.c). */
    struct catchup_req **queue;
    uint32_t queue_len;
    uint32_t queue_cap;
    uint32_t jobs;                    /* answers waiting for their reads (shutdown waits) */
    uint64_t read_bytes;              /* bytes of those reads */
    bool read_unsubmitted;            /* a read was prepared but not yet submitted */
    uint32_t outstanding;             /* requests sent + answers not released (shutdown waits) */
    uint64_t next_flush_ms;
    uint64_t next_cursor_ms;
    uint64_t serial_counter;
    struct persist_mark marks[PERSIST_MARKS];
    uint32_t mark_count;
    uint64_t mark_every_ms;
    uint64_t next_mark_ms;
    /* Retention: everything a restart needs (sessions, retained messages) has been written
     * again at or above `snapshot_off`, so segments below it may go. A snapshot in progress
     * is complete once the log is durable up to `snapshot_end`. */
    uint64_t snapshot_off;
    uint64_t snapshot_pending_off;
    uint64_t snapshot_end;
    bool snapshot_pending;
    bool snapshot_running;            /* sessions, then retained messages, being written
                                       * (persist_step) */
    uint64_t snapshot_from;           /* where the running one started */
    bool snapshot_routed;             /* everything below snapshot_from was routed: its
                                       * writing may begin */
    uint32_t snapshot_bucket;         /* its next session table bucket */
    uint32_t snapshot_mask;           /* the table's mask when it started */
    uint32_t snapshot_steps;          /* steps it took so far (logged) */
    /* Its retained phase: this shard's retained messages when the sessions were done, each
     * rewritten in steps if it is still the topic's retained message by then. */
    struct msg **snapshot_retained;
    uint32_t snapshot_retained_count;
    uint32_t snapshot_retained_cap;
    uint32_t snapshot_retained_next;
    bool snapshot_in_retained;
    uint64_t next_retention_ms;
    uint8_t *read_buf;                /* record reads */
    uint32_t read_cap;
    struct persist_stats stats;
};

/* Shard setup (its thread, before the loop, after commitlog_open): opens the index in
 * store.dir/shard-N/index (rebuilt if corrupt), registers the wildcard filters of every
 * restored session, re-indexes the log tail after the index's checkpoint, and opens the log
 * reader. Returns 0 or -errno (logged). */
int persist_open(struct shard *s);
/* Flushes the index (clean shutdown) and frees everything. */
void persist_close(struct shard *s);

/* After router_append put `m` in the log: remembers it for the index. */
void persist_on_append(struct shard *s, const struct msg *m);
/* The log became visible further: indexes what it covers. */
void persist_on_visible(struct shard *s);
/* On the shard's tick: journals dirty session positions, flushes the index and starts a
 * merge of its runs when one is due. */
void persist_tick(struct shard *s);
/* Once per loop iteration: a bounded step (CONSUMEQ_MERGE_STEP_ITEMS items) of the index
 * merge in progress and one of the snapshot being written (PERSIST_SNAPSHOT_STEP sessions).
 * Returns 1 while either is in progress, else 0. */
uint32_t persist_step(struct shard *s);

/* Registry: `delta` holders for `filter` (a valid filter; one without wildcards needs no
 * registration and is ignored), on every shard. */
void persist_filter_hold(struct shard *s, struct slice filter, int32_t delta);
/* The queue a subscription with `filter` reads: its wildcard filter's, or its topic's. */
uint64_t persist_filter_queue(struct slice filter);
/* The queue of the P2P messages addressed to `client_id` (core/iot.h): every persistent
 * session reads its own when it catches up (mqtt.p2p on). */
uint64_t persist_p2p_queue(struct slice client_id);
void persist_on_filter_note(struct shard *s, const struct persist_filter_note *n);
/* Reclaim of a NOTE_FILTER the sender posted. */
void persist_filter_note_release(struct persist_filter_note *n);

/* Journal. Each appends one RECORD_SESSION to this shard's log and returns the log offset
 * where it ends (for a durable wait), or 0 if the log refused it (counted, logged). */
uint64_t persist_journal_state(struct shard *s, struct session *sess);
uint64_t persist_journal_cursor(struct shard *s, struct session *sess);
uint64_t persist_journal_end(struct shard *s, struct session *sess);
uint64_t persist_journal_rel(struct shard *s, struct session *sess, uint16_t packet_id);
/* Outbound QoS 2 state of `packet_id` (enum journal_out_state) for the record at `log_off`
 * of shard `origin`. */
uint64_t persist_journal_out(struct shard *s, struct session *sess, uint16_t packet_id,
                             uint8_t state, uint16_t origin, uint64_t log_off);

/* The will `sess` holds while offline (sess->will, due at sess->will_due_ms), or none when
 * sess->will is NULL. */
uint64_t persist_journal_will(struct shard *s, struct session *sess);

/* A serial number for a new session (unique per shard and run). */
static inline uint64_t persist_next_serial(struct persist *p) { return ++p->serial_counter; }

#endif
