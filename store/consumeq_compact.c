/* store/consumeq_compact.c - merging the consume-queue index's runs: the k-way merge, which
 * entries and queue records survive, and when AUTO compaction merges what.
 *
 * Each input is read one verified block at a time through its own buffer; the output is
 * streamed by the run writer. Entry keys are unique across runs (a queue's offsets are split
 * between runs by age), so the entry merge has no ties; queue records do tie, and the newest
 * input's record wins. One shard's thread only; blocking I/O (see store/consumeq.h).
 */
#include "store/consumeq_impl.h"

#include <errno.h>
#include <string.h>


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

/* Moves to the next item, loading blocks as needed. Returns 1 at an item, 0 at the end of the
 * section, or -errno. */
static int cursor_next(struct merge_cursor *c)
{
    c->item_idx++;
    while (c->item_idx >= c->item_count) {
        if (c->block_idx + 1 >= c->block_end)
            return 0;
        c->block_idx++;
        ssize_t n = consumeq_run_read_block(c->run, c->block_idx, c->block, c->kind);
        if (n < 0)
            return (int)n;
        c->item_count = (uint32_t)n;
        c->item_idx = 0;
    }
    return 1;
}

/* Positions `c` before the first item of the section `kind` of `run`; cursor_next loads it. */
static void cursor_start(struct merge_cursor *c, const struct consumeq_run *run, uint8_t *block,
                         uint32_t kind)
{
    bool is_entries = kind == CONSUMEQ_RUN_KIND_ENTRIES;
    *c = (struct merge_cursor){
        .run = run,
        .block = block,
        .block_idx = is_entries ? 0 : run->entry_block_count,
        .block_end = 1 + (uint64_t)run->entry_block_count +
                     (is_entries ? 0 : run->queue_block_count),
        .item_len = is_entries ? sizeof(struct consumeq_entry) : sizeof(struct consumeq_run_queue),
        .kind = kind,
    };
}

static const void *cursor_item(const struct merge_cursor *c)
{
    return c->block + (size_t)c->item_idx * c->item_len;
}

/* Starts one cursor per input on section `kind`; `live` marks the ones with an item. */
static int cursors_start(struct consumeq *q, uint32_t a, uint32_t k, uint32_t kind,
                         struct merge_cursor *cur, bool *live)
{
    for (uint32_t i = 0; i < k; i++) {
        cursor_start(&cur[i], &q->runs[a + i], q->cursor_bufs + (size_t)i * CONSUMEQ_RUN_BLOCK_LEN,
                     kind);
        cur[i].item_idx = 0;
        cur[i].item_count = 0;
        int rc = cursor_next(&cur[i]);
        if (rc < 0)
            return rc;
        live[i] = rc == 1;
    }
    return 0;
}

/* K-way merge of the entry sections. Keys are unique across runs (invariant 1), so there are
 * no ties. k <= CONSUMEQ_RUN_MAX, so a linear scan for the minimum is cheaper than a heap. */
static int merge_entries(struct consumeq *q, uint32_t a, uint32_t k, struct consumeq_run_writer *w)
{
    struct merge_cursor cur[CONSUMEQ_RUN_MAX];
    bool live[CONSUMEQ_RUN_MAX];
    int rc = cursors_start(q, a, k, CONSUMEQ_RUN_KIND_ENTRIES, cur, live);
    /* Bounded by the total entry count of the inputs: each round consumes one entry. */
    while (rc == 0) {
        int min = -1;
        const struct consumeq_entry *best = NULL;
        for (uint32_t i = 0; i < k; i++) {
            const struct consumeq_entry *e = live[i] ? cursor_item(&cur[i]) : NULL;
            if (e != NULL && (best == NULL || consumeq_run_key_cmp(e->queue_id, e->queue_off,
                                                                   best->queue_id,
                                                                   best->queue_off) < 0)) {
                best = e;
                min = (int)i;
            }
        }
        if (min < 0)
            break;
        if (consumeq_entry_keep(q, best))
            rc = consumeq_run_writer_entry(w, best);
        if (rc != 0)
            break;
        int next = cursor_next(&cur[min]);
        if (next < 0)
            rc = next;
        live[min] = next == 1;
    }
    return rc;
}

/* Whether a full merge may forget the queue record `r`: a tombstone whose queue is still a
 * clean tombstone in memory (a dirty one changed since and its record must stay). */
static bool record_forgettable(struct consumeq *q, const struct consumeq_run_queue *r)
{
    if (r->head_off != CONSUMEQ_RUN_HEAD_DROPPED)
        return false;
    const struct consumeq_slot *s = consumeq_slot_find(q, r->queue_id);
    return s == NULL || (consumeq_slot_is_dropped(s) && !(s->flags & CONSUMEQ_SLOT_DIRTY));
}

/* K-way merge of the queue sections: per id the record of the newest input wins. */
static int merge_queues(struct consumeq *q, uint32_t a, uint32_t k, bool is_full,
                        struct consumeq_run_writer *w)
{
    struct merge_cursor cur[CONSUMEQ_RUN_MAX];
    bool live[CONSUMEQ_RUN_MAX];
    int rc = cursors_start(q, a, k, CONSUMEQ_RUN_KIND_QUEUES, cur, live);
    while (rc == 0) {
        uint64_t min_id = UINT64_MAX;
        int newest = -1;
        for (uint32_t i = 0; i < k; i++) {
            const struct consumeq_run_queue *r = live[i] ? cursor_item(&cur[i]) : NULL;
            if (r != NULL && (newest < 0 || r->queue_id <= min_id)) {
                min_id = r->queue_id; /* ties: a later (newer) input replaces the choice */
                newest = (int)i;
            }
        }
        if (newest < 0)
            break;
        const struct consumeq_run_queue *win = cursor_item(&cur[newest]);
        if (!(is_full && record_forgettable(q, win)))
            rc = consumeq_run_writer_queue(w, win);
        for (uint32_t i = 0; i < k && rc == 0; i++) {
            const struct consumeq_run_queue *r = live[i] ? cursor_item(&cur[i]) : NULL;
            if (r == NULL || r->queue_id != min_id)
                continue;
            int next = cursor_next(&cur[i]);
            if (next < 0)
                rc = next;
            live[i] = next == 1;
        }
    }
    return rc;
}

/* After a full merge: forget the clean tombstones (their entries and records are gone). */
static void table_purge_tombstones(struct consumeq *q)
{
    /* Removing shifts later slots back into place, so revisit an index after a removal. The
     * loop is bounded: each step either advances i or removes one of slot_used slots. */
    for (uint32_t i = 0; i < q->slot_cap;) {
        struct consumeq_slot *s = &q->slots[i];
        if (s->queue_id != 0 && consumeq_slot_is_dropped(s) && !(s->flags & CONSUMEQ_SLOT_DIRTY)) {
            consumeq_slot_remove(q, s);
            q->tombstone_count--;
            continue;
        }
        i++;
    }
}

/* Replaces runs [a, a + k) by one merged run. */
int consumeq_compact_merge(struct consumeq *q, uint32_t a, uint32_t k)
{
    ASSERT(k >= 1 && a + k <= q->run_count);
    if (k == 1 && consumeq_pub_waiting(q, &q->runs[a]))
        return 0; /* Its replacement would take its very names: merge it once published. */
    bool is_full = a == 0 && k == q->run_count;
    uint64_t entry_count_max = 0;
    for (uint32_t i = a; i < a + k; i++)
        entry_count_max += q->runs[i].entry_count;
    const struct consumeq_run *newest = &q->runs[a + k - 1];
    struct consumeq_run_meta meta = { q->runs[a].meta.first_seq, newest->meta.last_seq,
                                      newest->meta.covered_off, q->gc_off };
    uint64_t dropped_gc = q->entries_dropped_gc;
    uint64_t dropped_queue = q->entries_dropped_queue;
    struct consumeq_run merged;
    struct consumeq_run_writer w;
    /* Inputs still waiting to be published never will be: the merged run replaces them. */
    bool forgot = false;
    for (uint32_t i = a; i < a + k; i++)
        forgot |= consumeq_pub_forget(q, &q->runs[i]);
    int rc = consumeq_run_writer_begin(&w, q->dir, q->io_buf, &meta, entry_count_max);
    if (rc != 0)
        goto fail;
    rc = merge_entries(q, a, k, &w);
    if (rc == 0)
        rc = merge_queues(q, a, k, is_full, &w);
    if (rc != 0) {
        consumeq_run_writer_abort(&w);
        goto fail;
    }
    rc = consumeq_run_writer_finish(&w, &meta, &merged);
    if (rc != 0)
        goto fail;
    /* Once the merged run is published the inputs are obsolete and go (open deletes them too
     * if a crash comes first). A single input has the merged run's name: publishing it
     * replaces the input, and unlinking would delete the merged run. */
    rc = consumeq_pub_add(q, &merged, &q->runs[a], k == 1 ? 0 : k);
    if (rc != 0) {
        consumeq_run_close(&merged);
        goto fail;
    }
    for (uint32_t i = a; i < a + k; i++)
        consumeq_run_close(&q->runs[i]);
    q->runs[a] = merged;
    memmove(&q->runs[a + 1], &q->runs[a + k], (q->run_count - a - k) * sizeof(q->runs[0]));
    q->run_count -= k - 1;
    if (is_full)
        table_purge_tombstones(q);
    q->gc_persisted_off = MAX(q->gc_persisted_off, meta.gc_off);
    q->compactions++;
    return 0;

fail:
    /* An input whose publication was forgotten above will never be on disk: a later run
     * there would leave a gap in the sequence, so nothing more is published. */
    if (forgot)
        consumeq_pub_stop(q, rc);
    q->entries_dropped_gc = dropped_gc;
    q->entries_dropped_queue = dropped_queue;
    consumeq_report(q, "consumeq: compaction of %u runs failed: %s", k, strerror(-rc));
    return rc;
}

static uint64_t run_size(const struct consumeq_run *r)
{
    return r->entry_count + r->queue_count;
}

/* Whether the oldest run is mostly below the GC watermark (by its log offset range). */
static bool oldest_is_mostly_garbage(const struct consumeq *q)
{
    const struct consumeq_run *r = &q->runs[0];
    return r->entry_count > 0 && q->gc_off > r->min_log_off &&
           q->gc_off - r->min_log_off > (r->max_log_off - r->min_log_off) / 2;
}

/* Whether merging the single run left would change anything. */
static bool single_run_has_garbage(const struct consumeq *q)
{
    const struct consumeq_run *r = &q->runs[0];
    return q->tombstone_count > 0 || (r->entry_count > 0 && r->min_log_off < q->gc_off);
}

/* Whether a merge is due and of which window [*a, run_count). AUTO: all runs past
 * compact_trigger or when the oldest run is mostly garbage (each such merge leaves a run whose
 * entries are all above the watermark, so this cannot repeat until retention moves on by half
 * the index); otherwise size tiering: extend the window from the newest run to an older run
 * while that run is at most twice the size of the newer runs together, which keeps the run
 * count logarithmic in the index size and rewrites each entry a logarithmic number of times. */
static bool compact_window(const struct consumeq *q, enum consumeq_compact_mode mode, uint32_t *a)
{
    uint32_t n = q->run_count;
    *a = 0;
    if (n == 0)
        return false;
    if (mode == CONSUMEQ_COMPACT_FULL)
        return n >= 2 || single_run_has_garbage(q);
    if (n > q->compact_trigger || oldest_is_mostly_garbage(q))
        return true;
    uint32_t start = n - 1;
    uint64_t newer = run_size(&q->runs[start]);
    while (start > 0 && run_size(&q->runs[start - 1]) <= 2 * newer) {
        start--;
        newer += run_size(&q->runs[start]);
    }
    *a = start;
    return start < n - 1;
}

int consumeq_compact(struct consumeq *q, enum consumeq_compact_mode mode)
{
    int rc = consumeq_flush(q, 0);
    if (rc != 0)
        return rc;
    uint32_t a = 0;
    if (!compact_window(q, mode, &a))
        return 0;
    rc = consumeq_compact_merge(q, a, q->run_count - a);
    return rc == 0 ? 1 : rc;
}
