/* store/consumeq_run.h - the consume-queue index's run files (internal to store/consumeq).
 *
 * Only store/consumeq.c includes this; the broker uses store/consumeq.h. A run is one
 * immutable file of 4 KiB blocks (the format is in docs/storage.md, "Consume-queue index"):
 *
 *   block 0             header: magic, version, run sequence range, counts, checkpoint, GC
 *                       watermark, log offset range, xxh3 probe, checksum of all block checksums,
 *                       header checksum
 *   blocks 1..E         entry blocks: up to 102 struct consumeq_entry sorted by (queue id, queue
 *                       offset), strictly increasing across the whole run
 *   blocks E+1..E+Q     queue blocks: up to 127 struct consumeq_run_queue sorted by queue id
 *
 * Every block ends with a 16-byte trailer: item count, block kind, and xxh3-64 of the block's
 * first 4088 bytes seeded with the block's index (a block copied to the wrong place fails).
 * Runs are named cq-<first seq>-<last seq>.run (16 hex digits each); a flush writes a run of
 * one sequence number, a compaction of runs a..b writes the run a-b, so a file whose range lies
 * inside another's is an input that a crashed compaction had not yet deleted.
 *
 * Plain blocking syscalls (see the limitation in consumeq.h). Owned by one shard's thread.
 */
#ifndef KEELMQ_STORE_CONSUMEQ_RUN_H
#define KEELMQ_STORE_CONSUMEQ_RUN_H

#include <sys/types.h>

#include "core/base.h"
#include "store/consumeq.h"

#define CONSUMEQ_RUN_BLOCK_LEN 4096u
#define CONSUMEQ_RUN_TRAILER_LEN 16u
#define CONSUMEQ_RUN_PAYLOAD_LEN (CONSUMEQ_RUN_BLOCK_LEN - CONSUMEQ_RUN_TRAILER_LEN)
#define CONSUMEQ_RUN_ENTRIES_PER_BLOCK (CONSUMEQ_RUN_PAYLOAD_LEN / 40u)   /* 102 */
#define CONSUMEQ_RUN_QUEUES_PER_BLOCK (CONSUMEQ_RUN_PAYLOAD_LEN / 32u)    /* 127 */
#define CONSUMEQ_RUN_IO_BLOCKS 64u      /* blocks per pread/pwrite when streaming a run */
#define CONSUMEQ_RUN_NAME_LEN 48u       /* "cq-" 16 "-" 16 ".run.tmp" and NUL: 45 */
#define CONSUMEQ_RUN_PATH_LEN (CONSUMEQ_DIR_LEN_MAX + CONSUMEQ_RUN_NAME_LEN + 2u)
#define CONSUMEQ_RUN_BLOCK_COUNT_MAX (UINT32_MAX / 2u)

/* One queue's persisted state. `head_off` == CONSUMEQ_RUN_HEAD_DROPPED marks a tombstone. */
struct consumeq_run_queue {
    uint64_t queue_id;
    uint64_t next_off;
    uint64_t head_off;
    uint64_t reserved;   /* zero */
};
#define CONSUMEQ_RUN_HEAD_DROPPED UINT64_MAX
STATIC_ASSERT(sizeof(struct consumeq_run_queue) == 32, "fixed-size queue records");

/* The first key of an entry block. */
struct consumeq_run_fence {
    uint64_t queue_id;
    uint64_t queue_off;
};

/* Run-wide values stored in the header. */
struct consumeq_run_meta {
    uint64_t first_seq;
    uint64_t last_seq;
    uint64_t covered_off;
    uint64_t gc_off;
};

/* An open run. */
struct consumeq_run {
    struct consumeq_run_meta meta;
    int fd;
    uint32_t entry_block_count;
    uint32_t queue_block_count;
    uint64_t entry_count;
    uint64_t queue_count;
    uint64_t min_log_off;    /* CONSUMEQ_OFF_NONE when the run has no entries */
    uint64_t max_log_off;
    struct consumeq_run_fence last_key;  /* the last entry's key (when entry_count > 0) */
    struct consumeq_run_fence *fences;   /* owned; entry_block_count */
};

/* Streams a new run into a temp file. */
struct consumeq_run_writer {
    int fd;
    char tmp_path[CONSUMEQ_RUN_PATH_LEN];
    char final_path[CONSUMEQ_RUN_PATH_LEN];
    const char *dir;          /* borrowed */
    uint8_t *buf;             /* borrowed: CONSUMEQ_RUN_IO_BLOCKS blocks */
    uint32_t buf_blocks;      /* complete blocks in buf */
    uint32_t block_items;     /* items in the block being filled */
    uint32_t block_kind;
    uint64_t next_block_idx;  /* file block index of the block being filled */
    uint64_t chain;           /* running hash of the block checksums */
    struct consumeq_run run;  /* being built; fences grow up to fence_cap */
    uint32_t fence_cap;
    bool has_queues;          /* queue section started: no more entries */
    struct consumeq_entry last_entry;
    uint64_t last_queue_id;
};

/* Fills `out` with the file name of the run with sequence range [first, last]. */
void consumeq_run_name(uint64_t first_seq, uint64_t last_seq, char *out, size_t out_len);

/* Parses a run file name; false if `name` is not one. */
bool consumeq_run_parse_name(const char *name, uint64_t *first_seq, uint64_t *last_seq);

/* Starts the run `meta` (its sequence range names the file) for at most `entry_count_max`
 * entries in `dir` (borrowed until finish/abort), using `buf` (borrowed, CONSUMEQ_RUN_IO_BLOCKS
 * blocks). Returns 0 or -errno. */
int consumeq_run_writer_begin(struct consumeq_run_writer *w, const char *dir, uint8_t *buf,
                              const struct consumeq_run_meta *meta, uint64_t entry_count_max);

/* Adds an entry (keys strictly increasing), then queue records (ids strictly increasing).
 * Return 0 or -errno. */
int consumeq_run_writer_entry(struct consumeq_run_writer *w, const struct consumeq_entry *e);
int consumeq_run_writer_queue(struct consumeq_run_writer *w, const struct consumeq_run_queue *r);

/* Writes the rest of the run and its header with `meta` (its checkpoint and watermark; same
 * sequence range) into the temp file (w->tmp_path; written, not yet durable) and hands the
 * open run to *out (the caller owns it: consumeq_run_close); it is readable at once. The
 * caller publishes it: consumeq_run_publish, or the same steps through a ring
 * (store/consumeq_pub.c). On error the temp file is removed. Returns 0 or -errno. */
int consumeq_run_writer_finish(struct consumeq_run_writer *w, const struct consumeq_run_meta *meta,
                               struct consumeq_run *out);

/* Publishes a finished run: fsyncs `fd` (its temp file), renames `tmp_path` to `final_path`
 * and fsyncs `dir`. Blocking. Returns 0 or -errno (the caller reports; the file is left). */
int consumeq_run_publish(int fd, const char *tmp_path, const char *final_path, const char *dir);

/* Closes and removes the temp file of an unfinished run. */
void consumeq_run_writer_abort(struct consumeq_run_writer *w);

/* Called for each queue record while a run is opened; non-zero stops with that value. */
typedef int (*consumeq_run_queue_fn)(void *ctx, const struct consumeq_run_queue *r);

/* Where consumeq_run_open finds a run and what it does with its queue records. */
struct consumeq_run_source {
    const char *dir;             /* borrowed */
    const char *name;            /* borrowed; a valid run name (consumeq_run_parse_name) */
    uint8_t *buf;                /* borrowed scratch: CONSUMEQ_RUN_IO_BLOCKS blocks */
    consumeq_run_queue_fn fn;    /* called for every queue record, in order */
    void *ctx;
};

/* Opens and fully verifies the run file `src->name` in `src->dir`: header, size, every block's
 * checksum, kind and count, key order, log offsets within the header's range, the chained
 * checksum. Returns 0, -EBADMSG with a description in `err`, fn's value, or -errno. */
int consumeq_run_open(const struct consumeq_run_source *src, struct consumeq_run *out, char *err,
                      size_t err_len);

/* Closes the run's fd and frees its fences. */
void consumeq_run_close(struct consumeq_run *r);

/* Deletes the run's file from `dir` (not fsynced; the caller fsyncs the directory). */
int consumeq_run_unlink(const char *dir, const struct consumeq_run *r);

/* Reads and verifies block `block_idx` (file index, >= 1) into `block`. Returns the number of
 * items in it, or -EBADMSG (the run changed on disk since open) or -errno. */
ssize_t consumeq_run_read_block(const struct consumeq_run *r, uint64_t block_idx, uint8_t *block,
                                uint32_t kind);
#define CONSUMEQ_RUN_KIND_ENTRIES 1u
#define CONSUMEQ_RUN_KIND_QUEUES 2u

/* The file index of the first entry block that may hold key (queue_id, queue_off): the last
 * block whose first key is <= it, or the first block. Returns 0 if the run has no entries. */
uint64_t consumeq_run_find_block(const struct consumeq_run *r, uint64_t queue_id,
                                 uint64_t queue_off);

/* Entry ordering: negative, 0 or positive as (qa, oa) is below, equal or above (qb, ob). */
static inline int consumeq_run_key_cmp(uint64_t qa, uint64_t oa, uint64_t qb, uint64_t ob)
{
    if (qa != qb)
        return qa < qb ? -1 : 1;
    if (oa != ob)
        return oa < ob ? -1 : 1;
    return 0;
}

#endif
