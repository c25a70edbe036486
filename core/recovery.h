/* core/recovery.h - what the store holds when keelmq starts.
 *
 * Main thread only, before the shards start: scans every shard's commit log
 * (store.dir/shard-N, through store/segment.h: checksums verified, a torn tail cut, mid-log
 * corruption reported with its position), logs one summary line per log, and rebuilds what
 * the shards adopt: where each log's next append goes, the retained messages (the newest
 * record per topic across all logs wins; an empty payload clears), and the persistent
 * sessions from the session journal (store/journal.h: the newest STATE and CURSOR of each
 * client, unless an END followed, and the will it held offline; the inbound QoS 2 ids from QoS 2 message records minus the
 * released ones). A client's records are all in its home shard's log as long as shard.count
 * stays the same; after a change of shard.count they are merged by time. The shards read the result
 * read-only while they set up and copy what they keep; the main thread frees it after.
 */
#ifndef KEELMQ_CORE_RECOVERY_H
#define KEELMQ_CORE_RECOVERY_H

#include "core/base.h"
#include "core/config.h"
#include "store/segment.h"

struct msg;
struct retain;

/* An outbound QoS 2 delivery the journal says is not complete. */
struct recovery_out {
    uint64_t log_off;
    uint16_t origin;
    uint16_t packet_id;
    uint8_t state;           /* enum journal_out_state */
};

/* One client's journal as recovery found it (the newest of each kind of record). */
struct recovery_session {
    char *client_id;         /* owned, NUL-terminated */
    uint16_t client_id_len;
    uint64_t hash;
    uint8_t *state;          /* body of its newest STATE record (owned), or NULL */
    uint32_t state_len;
    uint8_t *cursor;         /* body of its newest CURSOR record (owned), or NULL */
    uint32_t cursor_len;
    uint8_t *will;           /* body of its newest WILL record if that holds a will (owned),
                              * else NULL: a will its offline session still held */
    uint32_t will_len;
    uint64_t last_ns;        /* time of its newest record (offline since, for expiry) */
    uint16_t last_log;       /* the shard log of that record */
    struct recovery_out *outs; /* outbound QoS 2 deliveries, by record; completed ones until
                              * a CURSOR is past them */
    uint32_t outs_len;
    uint32_t outs_cap;
    uint16_t *qos2_in;       /* inbound QoS 2 ids not released */
    uint32_t qos2_in_len;
    uint32_t qos2_in_cap;
    bool ended;
};

/* True when `rs` is a session to restore (it has a STATE and did not end). */
static inline bool recovery_session_live(const struct recovery_session *rs)
{
    return rs->state != NULL && !rs->ended;
}

struct recovery_shard {
    uint64_t end_off;
    struct segment_scan scan;
};

struct recovery {
    uint16_t count;                  /* shard logs scanned (at least shard.count) */
    struct recovery_shard *shards;
    struct msg **retained;           /* non-empty retained messages, one per topic */
    uint32_t retained_count;
    uint32_t retained_cap;
    struct retain *index;            /* topic -> newest record, during the scan */
    struct recovery_session *sessions; /* every client with journal records */
    uint32_t session_count;
    uint32_t session_cap;
    uint32_t *session_table;         /* client id hash -> index + 1 (open addressing) */
    uint32_t session_table_mask;
    uint64_t journal_records;
    uint64_t journal_bad;            /* checksummed but undecodable journal bodies */
};

/* Scans the logs for `cfg`. Returns 0 or a negative errno with `err` (an unreadable
 * directory; corruption is not an error: it is reported and cut or skipped). */
int recovery_run(struct recovery *r, const struct config *cfg, char *err, size_t err_len);
void recovery_free(struct recovery *r);

#endif
