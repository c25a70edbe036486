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
#include <stdlib.h>
#include <string.h>


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
static int cursors_start(struct consumeq *q, struct consumeq_merge *m, uint32_t kind)
{
    for (uint32_t i = 0; i < m->k; i++) {
        cursor_start(&m->cur[i], &q->runs[m->a + i],
                     q->cursor_bufs + (size_t)i * CONSUMEQ_RUN_BLOCK_LEN, kind);
        m->cur[i].item_idx = 0;
        m->cur[i].item_count = 0;
        int rc = cursor_next(&m->cur[i]);
        if (rc < 0)
            return rc;
        m->live[i] = rc == 1;
    }
    return 0;
}

/* Up to `budget` rounds of the k-way merge of the entry sections. Keys are unique across runs
 * (invariant 1), so there are no ties. k <= CONSUMEQ_RUN_MAX, so a linear scan for the minimum
 * is cheaper than a heap. Returns 1 when the section is done, 0 when the budget ran out, or
 * -errno. */
static int merge_entries(struct consumeq *q, struct consumeq_merge *m, uint32_t *budget)
{
    for (; *budget > 0; (*budget)--) {
        int min = -1;
        const struct consumeq_entry *best = NULL;
        for (uint32_t i = 0; i < m->k; i++) {
            const struct consumeq_entry *e = m->live[i] ? cursor_item(&m->cur[i]) : NULL;
            if (e != NULL && (best == NULL || consumeq_run_key_cmp(e->queue_id, e->queue_off,
                                                                   best->queue_id,
                                                                   best->queue_off) < 0)) {
                best = e;
                min = (int)i;
            }
        }
        if (min < 0)
            return 1;
        if (consumeq_entry_keep(q, best)) {
            int rc = consumeq_run_writer_entry(&m->w, best);
            if (rc != 0)
                return rc;
        }
        int next = cursor_next(&m->cur[min]);
        if (next < 0)
            return next;
        m->live[min] = next == 1;
    }
    return 0;
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

/* Up to `budget` rounds of the k-way merge of the queue sections: per id the record of the
 * newest input wins. Returns as merge_entries. */
static int merge_queues(struct consumeq *q, struct consumeq_merge *m, uint32_t *budget)
{
    for (; *budget > 0; (*budget)--) {
        uint64_t min_id = UINT64_MAX;
        int newest = -1;
        for (uint32_t i = 0; i < m->k; i++) {
            const struct consumeq_run_queue *r = m->live[i] ? cursor_item(&m->cur[i]) : NULL;
            if (r != NULL && (newest < 0 || r->queue_id <= min_id)) {
                min_id = r->queue_id; /* ties: a later (newer) input replaces the choice */
                newest = (int)i;
            }
        }
        if (newest < 0)
            return 1;
        const struct consumeq_run_queue *win = cursor_item(&m->cur[newest]);
        /* Only a merge of the oldest runs may forget a record: no older run outside it. */
        if (!(m->a == 0 && record_forgettable(q, win))) {
            int rc = consumeq_run_writer_queue(&m->w, win);
            if (rc != 0)
                return rc;
        }
        for (uint32_t i = 0; i < m->k; i++) {
            const struct consumeq_run_queue *r = m->live[i] ? cursor_item(&m->cur[i]) : NULL;
            if (r == NULL || r->queue_id != min_id)
                continue;
            int next = cursor_next(&m->cur[i]);
            if (next < 0)
                return next;
            m->live[i] = next == 1;
        }
    }
    return 0;
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

/* A merge that cannot finish: its output goes, the inputs stay in use. */
static int merge_fail(struct consumeq *q, int rc)
{
    struct consumeq_merge *m = q->merge;
    consumeq_run_writer_abort(&m->w);
    m->active = false;
    q->entries_dropped_gc = m->dropped_gc;
    q->entries_dropped_queue = m->dropped_queue;
    consumeq_report(q, "consumeq: compaction of %u runs failed: %s", m->k, strerror(-rc));
    return rc;
}

/* Starts merging runs [a, a + k) into one. Returns 1, or 0 when it cannot start yet (a single
 * input waiting for publication would share its names with the output), or -errno. */
static int merge_begin(struct consumeq *q, uint32_t a, uint32_t k)
{
    ASSERT(k >= 1 && a + k <= q->run_count);
    ASSERT(q->merge == NULL || !q->merge->active);
    if (k == 1 && consumeq_pub_waiting(q, &q->runs[a]))
        return 0;
    if (q->merge == NULL) {
        q->merge = calloc(1, sizeof(*q->merge));
        uint8_t *buf = aligned_alloc(CONSUMEQ_RUN_BLOCK_LEN,
                                     (size_t)CONSUMEQ_RUN_IO_BLOCKS * CONSUMEQ_RUN_BLOCK_LEN);
        if (q->merge == NULL || buf == NULL) {
            free(q->merge);
            free(buf);
            q->merge = NULL;
            return -ENOMEM;
        }
        q->merge->buf = buf;
    }
    struct consumeq_merge *m = q->merge;
    uint64_t entry_count_max = 0;
    for (uint32_t i = a; i < a + k; i++)
        entry_count_max += q->runs[i].entry_count;
    const struct consumeq_run *newest = &q->runs[a + k - 1];
    m->a = a;
    m->k = k;
    m->in_queues = false;
    m->meta = (struct consumeq_run_meta){ q->runs[a].meta.first_seq, newest->meta.last_seq,
                                          newest->meta.covered_off, q->gc_off };
    m->dropped_gc = q->entries_dropped_gc;
    m->dropped_queue = q->entries_dropped_queue;
    int rc = consumeq_run_writer_begin(&m->w, q->dir, m->buf, &m->meta, entry_count_max);
    if (rc != 0) {
        consumeq_report(q, "consumeq: compaction of %u runs failed: %s", k, strerror(-rc));
        return rc;
    }
    m->active = true;
    rc = cursors_start(q, m, CONSUMEQ_RUN_KIND_ENTRIES);
    return rc < 0 ? merge_fail(q, rc) : 1;
}

/* The output is complete: it replaces the inputs (published in their place). */
static int merge_finish(struct consumeq *q)
{
    struct consumeq_merge *m = q->merge;
    uint32_t a = m->a;
    uint32_t k = m->k;
    struct consumeq_run merged;
    int rc = consumeq_run_writer_finish(&m->w, &m->meta, &merged);
    m->active = false;
    if (rc != 0) {
        q->entries_dropped_gc = m->dropped_gc;
        q->entries_dropped_queue = m->dropped_queue;
        consumeq_report(q, "consumeq: compaction of %u runs failed: %s", k, strerror(-rc));
        return rc;
    }
    /* Once the merged run is published the inputs are obsolete and go (open deletes them too
     * if a crash comes first). A single input has the merged run's name: publishing it
     * replaces the input, and unlinking would delete the merged run. */
    rc = consumeq_pub_add(q, &merged, &q->runs[a], k == 1 ? 0 : k);
    if (rc != 0) {
        consumeq_run_close(&merged);
        q->entries_dropped_gc = m->dropped_gc;
        q->entries_dropped_queue = m->dropped_queue;
        return rc;
    }
    for (uint32_t i = a; i < a + k; i++)
        consumeq_run_close(&q->runs[i]);
    /* Full only if no run was added meanwhile: then no run outside it can hold entries of a
     * dropped queue, and its tombstone may go. */
    bool is_full = a == 0 && k == q->run_count;
    q->runs[a] = merged;
    memmove(&q->runs[a + 1], &q->runs[a + k], (q->run_count - a - k) * sizeof(q->runs[0]));
    q->run_count -= k - 1;
    if (is_full)
        table_purge_tombstones(q);
    q->gc_persisted_off = MAX(q->gc_persisted_off, m->meta.gc_off);
    q->compactions++;
    return 0;
}

/* Up to `budget` items of the merge in progress. Returns 1 while work remains, 0 once it is
 * done (the output replaced the inputs), or -errno (the inputs stay in use). */
static int merge_step(struct consumeq *q, uint32_t budget)
{
    struct consumeq_merge *m = q->merge;
    ASSERT(m != NULL && m->active);
    while (budget > 0) {
        int rc = m->in_queues ? merge_queues(q, m, &budget) : merge_entries(q, m, &budget);
        if (rc < 0)
            return merge_fail(q, rc);
        if (rc == 0)
            return 1;
        if (m->in_queues) {
            rc = merge_finish(q);
            return rc < 0 ? rc : 0;
        }
        m->in_queues = true;
        rc = cursors_start(q, m, CONSUMEQ_RUN_KIND_QUEUES);
        if (rc < 0)
            return merge_fail(q, rc);
    }
    return 1;
}

/* Runs the merge in progress to its end. Returns 0 or -errno. */
static int merge_complete(struct consumeq *q)
{
    int rc = 1;
    while (rc == 1)
        rc = merge_step(q, UINT32_MAX);
    return rc;
}

int consumeq_compact_merge(struct consumeq *q, uint32_t a, uint32_t k)
{
    if (q->merge != NULL && q->merge->active) {
        int rc = merge_complete(q);
        if (rc < 0)
            return rc;
        if (a + k > q->run_count)
            return 0; /* The runs moved: the caller looks again. */
    }
    int rc = merge_begin(q, a, k);
    return rc <= 0 ? rc : merge_complete(q);
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
    if (q->merge != NULL && q->merge->active) {
        int rc = merge_complete(q);
        if (rc < 0)
            return rc;
    }
    int rc = consumeq_flush(q, 0);
    if (rc != 0)
        return rc;
    uint32_t a = 0;
    if (!compact_window(q, mode, &a))
        return 0;
    rc = merge_begin(q, a, q->run_count - a);
    if (rc <= 0)
        return rc;
    rc = merge_complete(q);
    return rc == 0 ? 1 : rc;
}

int consumeq_compact_start(struct consumeq *q)
{
    int rc = consumeq_flush(q, 0);
    if (rc != 0 || (q->merge != NULL && q->merge->active))
        return rc;
    uint32_t a = 0;
    if (!compact_window(q, CONSUMEQ_COMPACT_AUTO, &a))
        return 0;
    return merge_begin(q, a, q->run_count - a);
}

int consumeq_compact_step(struct consumeq *q)
{
    if (q->merge == NULL || !q->merge->active)
        return 0;
    return merge_step(q, CONSUMEQ_MERGE_STEP_ITEMS);
}

void consumeq_compact_abort(struct consumeq *q)
{
    if (q->merge != NULL && q->merge->active) {
        consumeq_run_writer_abort(&q->merge->w);
        q->merge->active = false;
    }
    if (q->merge != NULL)
        free(q->merge->buf);
    free(q->merge);
    q->merge = NULL;
}
