/* core/catchup.h - a persistent session reads what it missed from the log.
 *
 * Shard thread only; the state lives in struct persist (core/persist.h) and the sessions'
 * struct session_origin (core/session.h). Offline, or past mqtt.max_queued_messages, a
 * persistent session is BEHIND for an origin shard and catches up from its positions there.
 * The home shard sends the origin a request (positions, the queue ids of the session's
 * filters, resume hints); the origin reads its index (consumeq_seek_log, then
 * consumeq_read), merges the queues in log order, reads the records (logread), and answers with
 * up to CATCHUP_RECORDS messages and either where to continue or that it reached the end
 * of its index, E. At the end the session sets both positions to at least E and goes LIVE:
 * every QoS 1/2 record below E was routed before the answer (so it was ignored and is in the
 * answer), every one above is routed after it (live). QoS 0 messages from an origin where the
 * session is not LIVE are not delivered to it (at most once; counted as dropped QoS 0).
 * Records below the origin's retention watermark are gone: the session resumes at the watermark
 * and the loss is logged for the client.
 *
 * Reading on the origin never blocks its loop on the log: requests (from any shard, the own
 * included) wait in a queue and are answered in the loop. A record the log's hot tail still
 * holds (store.cache_bytes, store/tailcache.h) is taken from memory; the others are read with
 * O_DIRECT through the origin's io_uring, records of one segment that lie close together
 * sharing one read, and the answer goes out when its reads complete. At most
 * CATCHUP_READ_BYTES_MAX bytes of reads are in flight per shard; further requests wait. (The
 * index lookups themselves are still plain preads of index runs through the page cache.)
 */
#ifndef KEELMQ_CORE_CATCHUP_H
#define KEELMQ_CORE_CATCHUP_H

#include "core/base.h"

struct shard;
struct session;
struct msg;
struct catchup_read;

#define CATCHUP_RECORDS 256u       /* records per catch-up answer */
#define CATCHUP_BYTES (4u << 20)   /* bytes of records per answer (at least one) */
#define CATCHUP_QUEUES_MAX 1024u   /* queues one session reads (its subscriptions) */
#define CATCHUP_READ_MAX (1u << 20)       /* bytes of one O_DIRECT read */
#define CATCHUP_READ_GAP (16u << 10)      /* unwanted bytes one read may span between records */
#define CATCHUP_READ_BYTES_MAX (16u << 20) /* bytes of reads in flight per shard */

/* A catch-up request: the home shard's memory, read by the origin, freed by the home when the
 * answer comes. */
struct catchup_req {
    uint16_t home;
    uint16_t origin;
    uint32_t queue_count;
    uint64_t serial;         /* the session's, to spot a session that ended meanwhile */
    uint64_t since_ns;       /* records older than this are not the session's */
    uint64_t pos0;
    uint64_t pos1;
    uint16_t client_id_len;
    char *client_id;         /* in this allocation */
    uint64_t *queue_ids;     /* in this allocation */
    uint64_t *hints;         /* queue offsets to resume at, CONSUMEQ_OFF_NONE = seek */
};

/* A catch-up answer: the origin's memory (one block with its hints and message slots; the
 * messages are references), returned to it with NOTE_CATCHUP_RELEASE once the home has taken
 * what it keeps. */
struct catchup_resp {
    struct catchup_req *req;
    uint32_t count;
    bool at_end;             /* nothing more in the index: `next_off` is its end, E */
    uint64_t next_off;       /* read on from here (not at end) */
    uint64_t gc_off;         /* the origin's retention watermark */
    uint64_t *hints;         /* queue_count resume hints */
    struct msg **msgs;       /* count messages, origin-owned, in log order */
};

/* Home side: asks `origin` for the next records of `sess` (its state becomes READING). */
void catchup_start(struct shard *s, struct session *sess, uint16_t origin);
/* Origin side: queues a request (NOTE_CATCHUP_REQ or local) for catchup_poll. */
void catchup_on_req(struct shard *s, struct catchup_req *req);
/* Home side: an answer (NOTE_CATCHUP_RESP or local): delivers, moves the positions. */
void catchup_on_resp(struct shard *s, struct catchup_resp *resp);
/* Origin side: the home is done with an answer (NOTE_CATCHUP_RELEASE or local): frees it. */
void catchup_release(struct shard *s, struct catchup_resp *resp);
/* Home side: the origin could not answer (out of memory) and gave the request back. */
void catchup_on_failed(struct shard *s, struct catchup_req *req);
/* Origin side: a read (URING_OP_STORE_READ) completed with `res`. */
void catchup_on_read(struct shard *s, struct catchup_read *r, int res);
/* Once per loop iteration: answers queued requests while the reads in flight allow. Returns
 * the number answered or started. */
uint32_t catchup_poll(struct shard *s);
/* On the tick: remembers where the log stands now (struct persist_mark). */
void catchup_take_mark(struct shard *s);

#endif
