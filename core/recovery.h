/* core/recovery.h - what the store holds when keelmq starts.
 *
 * Main thread only, before the shards start: scans every shard's commit log
 * (store.dir/shard-N, through store/segment.h: checksums verified, a torn tail cut, mid-log
 * corruption reported with its position), logs one summary line per log, and rebuilds what
 * the shards adopt: where each log's next append goes, and the retained messages (the newest
 * record per topic across all logs wins; an empty payload clears). The shards read the result
 * read-only while they set up and copy what they keep; the main thread frees it after.
 */
#ifndef KEELMQ_CORE_RECOVERY_H
#define KEELMQ_CORE_RECOVERY_H

#include "core/base.h"
#include "core/config.h"
#include "store/segment.h"

struct msg;
struct retain;

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
};

/* Scans the logs for `cfg`. Returns 0 or a negative errno with `err` (an unreadable
 * directory; corruption is not an error: it is reported and cut or skipped). */
int recovery_run(struct recovery *r, const struct config *cfg, char *err, size_t err_len);
void recovery_free(struct recovery *r);

#endif
