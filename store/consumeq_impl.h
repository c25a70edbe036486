/* store/consumeq_impl.h - the consume-queue index's state, shared by its two implementation
 * files (internal to store/consumeq; the broker uses store/consumeq.h).
 *
 * store/consumeq.c owns the queue table, the write buffer, appends, reads, flush and open;
 * store/consumeq_compact.c merges runs. One shard's thread only.
 */
#ifndef KEELMQ_STORE_CONSUMEQ_IMPL_H
#define KEELMQ_STORE_CONSUMEQ_IMPL_H

#include "core/base.h"
#include "store/consumeq.h"
#include "store/consumeq_run.h"

#define CONSUMEQ_SLOT_DIRTY 1u          /* on the dirty list: its record goes in the next run */
#define CONSUMEQ_MEM_NONE UINT32_MAX    /* end of a write-buffer chain */

/* A queue in the table. queue_id 0 marks an empty slot; head_off CONSUMEQ_RUN_HEAD_DROPPED a
 * tombstone (a dropped queue whose entries may still be in runs). */
struct consumeq_slot {
    uint64_t queue_id;
    uint64_t next_off;
    uint64_t head_off;
    uint32_t mem_newest;   /* write-buffer index of its newest entry, or CONSUMEQ_MEM_NONE */
    uint32_t flags;        /* CONSUMEQ_SLOT_DIRTY */
};
STATIC_ASSERT(sizeof(struct consumeq_slot) == 32, "32 bytes a queue");

#define CONSUMEQ_PUB_MAX (CONSUMEQ_RUN_MAX + 2u) /* runs waiting to be published */

struct consumeq_pub_name {
    uint64_t first_seq;
    uint64_t last_seq;
};

/* A run written and in use, waiting to be published (store/consumeq_pub.c). */
struct consumeq_pub {
    int fd;                   /* a duplicate of the run's descriptor, for its fsync */
    bool in_flight;           /* its operations are in the ring */
    uint32_t done;            /* their completions so far */
    int err;                  /* the first failure among them */
    uint64_t first_seq;       /* its name (the temp name adds ".tmp") */
    uint64_t last_seq;
    uint32_t obsolete_count;  /* runs a merge replaced: removed once this one is published */
    struct consumeq_pub_name obsolete[CONSUMEQ_RUN_MAX];
};

#define CONSUMEQ_MERGE_STEP_ITEMS 8192u /* entries or queue records per background step */

/* One input run being read a block at a time. */
struct merge_cursor {
    const struct consumeq_run *run;
    uint8_t *block;
    uint64_t block_idx;   /* file index of the loaded block */
    uint64_t block_end;   /* one past the last block of the section being read */
    uint32_t item_count;
    uint32_t item_idx;
    uint32_t item_len;
    uint32_t kind;
};

/* The merge in progress (consumeq_compact.c): runs [a, a + k) into one. */
struct consumeq_merge {
    bool active;
    bool in_queues;           /* the entry sections are done */
    uint32_t a;
    uint32_t k;
    struct consumeq_run_meta meta;
    uint64_t dropped_gc;      /* counters before it, restored if it fails */
    uint64_t dropped_queue;
    struct consumeq_run_writer w;
    uint8_t *buf;             /* the writer's: CONSUMEQ_RUN_IO_BLOCKS blocks */
    struct merge_cursor cur[CONSUMEQ_RUN_MAX];
    bool live[CONSUMEQ_RUN_MAX];
};

struct consumeq {
    char dir[CONSUMEQ_DIR_LEN_MAX + 1];
    uint32_t flush_entries;
    uint32_t compact_trigger;
    uint32_t slot_cap_max;
    uint32_t queue_max;         /* slots in use (live queues and tombstones) */
    consumeq_report_fn report;
    void *report_ctx;

    /* Queue table: open addressing, linear probing, power-of-two capacity. */
    struct consumeq_slot *slots;
    uint32_t slot_cap;
    uint32_t slot_shift;        /* 64 - log2(slot_cap) */
    uint64_t slot_used;         /* live queues and tombstones */
    uint64_t tombstone_count;

    /* Write buffer in append order; mem_older chains each queue's entries newest first. */
    struct consumeq_entry *mem;
    uint32_t *mem_older;
    uint32_t *mem_order;        /* flush scratch: one queue's chain, newest first */
    uint32_t mem_count;
    uint32_t mem_cap;           /* flush_entries + CONSUMEQ_RECORD_QUEUES_MAX */
    uint64_t *dirty_ids;
    uint32_t dirty_count;

    struct consumeq_run runs[CONSUMEQ_RUN_MAX];   /* oldest first */
    uint32_t run_count;
    uint64_t next_seq;

    uint64_t covered_off;        /* checkpoint of the newest run */
    uint64_t appended_end_off;   /* end of the last appended record */
    uint64_t last_append_log_off;
    bool has_appended;           /* since open: last_append_log_off is a record's offset */
    uint64_t gc_off;
    uint64_t gc_persisted_off;

    uint8_t *io_buf;             /* CONSUMEQ_RUN_IO_BLOCKS blocks: run writing and opening */
    uint8_t *cursor_bufs;        /* CONSUMEQ_RUN_MAX blocks: compaction inputs */
    struct consumeq_merge *merge; /* allocated at the first merge */
    uint8_t *read_block;         /* one block: reads */

    /* Publication: FIFO, oldest first; the head may be in flight. */
    struct consumeq_pub *pubs;   /* CONSUMEQ_PUB_MAX */
    uint32_t pub_count;
    bool pub_failed;             /* a publication failed: nothing more is published */
    struct io_uring *ring;       /* NULL: publish with blocking calls */
    uint64_t ring_user_data;
    int dir_fd;                  /* the directory, for its fsync through the ring */
    char pub_tmp[CONSUMEQ_RUN_PATH_LEN];   /* the paths of the publication in flight */
    char pub_final[CONSUMEQ_RUN_PATH_LEN];
    char (*unlink_paths)[CONSUMEQ_RUN_PATH_LEN]; /* CONSUMEQ_RUN_MAX: unlinks in the ring */
    uint32_t unlinks_in_flight;  /* they use unlink_paths[0, n) until all are done */
    uint64_t publications;

    uint64_t flushes;
    uint64_t compactions;
    uint64_t entries_dropped_gc;
    uint64_t entries_dropped_queue;
};

/* The slot of `queue_id` (live or tombstone), or NULL. Borrowed: valid until the table
 * changes (an insert may grow it, a removal shifts slots). */
struct consumeq_slot *consumeq_slot_find(const struct consumeq *q, uint64_t queue_id);

/* Removes `s` from the table (backward shift: later slots may move). */
void consumeq_slot_remove(struct consumeq *q, struct consumeq_slot *s);

static inline bool consumeq_slot_is_dropped(const struct consumeq_slot *s)
{
    return s->head_off == CONSUMEQ_RUN_HEAD_DROPPED;
}

/* Queues the run `run` that was just finished (its temp file) for publication; a merge's
 * takes the place of its inputs `obsolete` that still wait (they are never published), and
 * once it is published the inputs are removed.
 * Without a ring it is published at once. Returns 0, or -errno when it could not be (reported;
 * nothing more is published then, and the caller discards the run). */
int consumeq_pub_add(struct consumeq *q, const struct consumeq_run *run,
                     const struct consumeq_run *obsolete,
                     uint32_t obsolete_count);
/* Whether `run` waits for its publication (queued or in flight). */
bool consumeq_pub_waiting(const struct consumeq *q, const struct consumeq_run *run);
/* Publishes every waiting run with blocking calls (close; nothing in flight). */
void consumeq_pub_finish(struct consumeq *q);

/* Whether an entry survives a flush or compaction, judged by the in-memory table (it may be
 * ahead of the runs; see invariant 4 in consumeq.c). Counts what it drops. */
bool consumeq_entry_keep(struct consumeq *q, const struct consumeq_entry *e);

/* Sends one formatted line to the configured report callback, if any. */
__attribute__((format(printf, 2, 3))) void consumeq_report(const struct consumeq *q,
                                                           const char *fmt, ...);

/* Replaces runs [a, a + k) by one merged run (k >= 1), at once: a merge in progress is
 * completed first (and if that moved the runs, nothing more is done: the caller looks
 * again). Merging every run also forgets clean tombstones. Returns 0 or -errno (the inputs
 * stay in use). In store/consumeq_compact.c. */
int consumeq_compact_merge(struct consumeq *q, uint32_t a, uint32_t k);
/* Abandons a merge in progress and frees its state (close). */
void consumeq_compact_abort(struct consumeq *q);

#endif
