/* store/consumeq.c - the consume-queue index: queue table, write buffer, appends, reads, flush,
 * open and recovery (merging runs is store/consumeq_compact.c, the run file format
 * store/consumeq_run.c; the contract is store/consumeq.h).
 *
 * One shard's thread only. The invariants everything below relies on:
 *   1. Appends come in log order, so within a queue the queue offset and the log offset grow
 *      together, and the entries of one queue are spread over the runs in sequence order: an
 *      older run holds only lower offsets of a queue than a newer run, and the write buffer
 *      holds the highest. A read therefore walks the runs oldest first, then the buffer, and
 *      the results come out in order without a merge.
 *   2. Every queue with entries in the write buffer, and every queue whose state changed since
 *      the last run, is on the dirty list; a flush writes exactly those queue records. The
 *      newest record of a queue among all runs is therefore its state at the last flush.
 *   3. A run is written only at a record boundary: its checkpoint `covered_off` is a log offset
 *      such that every record below it was fully applied (all its queues) and no record at or
 *      above it was. Replaying from it is then exact: create and drop are idempotent, and
 *      appends get the same offsets because the queue records hold next offsets as of the
 *      checkpoint.
 *   4. Filtering an entry (flush or compaction) uses the in-memory queue table, which may be
 *      ahead of the runs; whatever it is ahead by happened at a record at or above the
 *      checkpoint, so a crash is healed by the replay.
 */
#include "store/consumeq.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hash.h"
#include "store/consumeq_impl.h"
#include "store/consumeq_run.h"
#include "store/segment.h"

#define TABLE_CAP_MIN 1024u
#define DIR_SCAN_MAX (4u * CONSUMEQ_RUN_MAX)  /* run files in a directory, obsolete included */
#define REPORT_LINE_MAX 320u

STATIC_ASSERT(sizeof(struct consumeq_entry) == 40, "run format: 40-byte entries");

void consumeq_report(const struct consumeq *q, const char *fmt, ...)
{
    if (q->report == NULL)
        return;
    char line[REPORT_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(line, sizeof(line), fmt, ap); /* a cut line is still useful */
    va_end(ap);
    q->report(q->report_ctx, line);
}

uint64_t consumeq_queue_id(enum consumeq_kind kind, struct slice name)
{
    ASSERT(kind == CONSUMEQ_KIND_TOPIC || kind == CONSUMEQ_KIND_FILTER ||
           kind == CONSUMEQ_KIND_P2P);
    uint64_t id = hash_bytes_seeded(name.ptr, name.len, (uint64_t)kind);
    return id == 0 ? 1 : id;
}

uint32_t consumeq_topic_hash(struct slice topic)
{
    return (uint32_t)(consumeq_queue_id(CONSUMEQ_KIND_TOPIC, topic) >> 32);
}

/* ---- queue table ---- */

static uint32_t slot_home(const struct consumeq *q, uint64_t queue_id)
{
    /* Fibonacci hashing: ids may be small integers in tests, real ids are already hashes. */
    return (uint32_t)((queue_id * UINT64_C(0x9e3779b97f4a7c15)) >> q->slot_shift);
}

static uint32_t shift_for(uint32_t cap)
{
    return (uint32_t)(64 - __builtin_ctz(cap));
}

struct consumeq_slot *consumeq_slot_find(const struct consumeq *q, uint64_t queue_id)
{
    ASSERT_HOT(queue_id != 0);
    uint32_t mask = q->slot_cap - 1;
    /* Bounded: the table is never full (load <= 3/4), so an empty slot ends the probe. */
    for (uint32_t i = slot_home(q, queue_id), n = 0; n < q->slot_cap; i = (i + 1) & mask, n++) {
        struct consumeq_slot *s = &q->slots[i];
        if (s->queue_id == queue_id)
            return s;
        if (s->queue_id == 0)
            return NULL;
    }
    return NULL;
}

static struct consumeq_slot *slot_place(struct consumeq_slot *slots, uint32_t cap, uint32_t home,
                                        uint64_t id)
{
    uint32_t mask = cap - 1;
    for (uint32_t i = home, n = 0; n < cap; i = (i + 1) & mask, n++)
        if (slots[i].queue_id == 0) {
            slots[i] = (struct consumeq_slot){ .queue_id = id, .mem_newest = CONSUMEQ_MEM_NONE };
            return &slots[i];
        }
    ASSERT(false && "queue table full despite its load limit");
    return NULL;
}

static int table_grow(struct consumeq *q, uint32_t new_cap)
{
    struct consumeq_slot *fresh = calloc(new_cap, sizeof(*fresh));
    if (fresh == NULL)
        return -ENOMEM;
    struct consumeq_slot *old = q->slots;
    uint32_t old_cap = q->slot_cap;
    q->slots = fresh;
    q->slot_cap = new_cap;
    q->slot_shift = shift_for(new_cap);
    for (uint32_t i = 0; i < old_cap; i++) {
        if (old[i].queue_id == 0)
            continue;
        struct consumeq_slot *s = slot_place(fresh, new_cap, slot_home(q, old[i].queue_id),
                                             old[i].queue_id);
        *s = old[i];
    }
    free(old);
    return 0;
}

/* Inserts the absent queue `queue_id` with offsets 0. Returns the slot (borrowed; other slots
 * may have moved) or NULL with *rc = -ENOSPC (queue_max reached) or -ENOMEM. */
static struct consumeq_slot *slot_insert(struct consumeq *q, uint64_t queue_id, int *rc)
{
    ASSERT_HOT(consumeq_slot_find(q, queue_id) == NULL);
    if (q->slot_used >= q->queue_max) {
        *rc = -ENOSPC;
        return NULL;
    }
    if ((q->slot_used + 1) * 4 > (uint64_t)q->slot_cap * 3) {
        ASSERT(q->slot_cap < q->slot_cap_max);
        *rc = table_grow(q, q->slot_cap * 2);
        if (*rc != 0)
            return NULL;
    }
    q->slot_used++;
    return slot_place(q->slots, q->slot_cap, slot_home(q, queue_id), queue_id);
}

/* Backward-shift deletion: no tombstone slots, so probes stay short. */
void consumeq_slot_remove(struct consumeq *q, struct consumeq_slot *s)
{
    uint32_t mask = q->slot_cap - 1;
    uint32_t hole = (uint32_t)(s - q->slots);
    for (uint32_t i = (hole + 1) & mask, n = 0; n < q->slot_cap; i = (i + 1) & mask, n++) {
        if (q->slots[i].queue_id == 0)
            break;
        uint32_t home = slot_home(q, q->slots[i].queue_id);
        /* Move slot i into the hole unless its home lies cyclically in (hole, i]. */
        bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (!stays) {
            q->slots[hole] = q->slots[i];
            hole = i;
        }
    }
    q->slots[hole] = (struct consumeq_slot){ 0 };
    q->slot_used--;
}

/* Puts `s` on the dirty list. Returns -ENOBUFS when the list is at its hard cap. */
static int slot_mark_dirty(struct consumeq *q, struct consumeq_slot *s)
{
    if (s->flags & CONSUMEQ_SLOT_DIRTY)
        return 0;
    if (q->dirty_count == q->mem_cap)
        return -ENOBUFS;
    q->dirty_ids[q->dirty_count++] = s->queue_id;
    s->flags |= CONSUMEQ_SLOT_DIRTY;
    return 0;
}

/* Whether an entry survives a flush or compaction, by the in-memory table (invariant 4). */
bool consumeq_entry_keep(struct consumeq *q, const struct consumeq_entry *e)
{
    const struct consumeq_slot *s = consumeq_slot_find(q, e->queue_id);
    if (s == NULL || consumeq_slot_is_dropped(s) || e->queue_off < s->head_off) {
        q->entries_dropped_queue++;
        return false;
    }
    if (e->log_off < q->gc_off) {
        q->entries_dropped_gc++;
        return false;
    }
    return true;
}

/* ---- flush: the write buffer becomes a run ---- */

static int id_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Writes the buffer's entries in run key order without sorting them: the dirty queue ids are
 * sorted (every queue with entries in the buffer is dirty), and each queue's chain, newest to
 * oldest, is walked and written backwards (its offsets grow in append order). O(entries +
 * queues log queues) instead of a sort of every entry, which stalled the shard for about
 * 10 ms per flush at 131072 entries. */
static int flush_write(struct consumeq *q, struct consumeq_run_writer *w)
{
    for (uint32_t i = 0; i < q->dirty_count; i++) {
        const struct consumeq_slot *s = consumeq_slot_find(q, q->dirty_ids[i]);
        ASSERT(s != NULL);
        uint32_t n = 0;
        for (uint32_t k = s->mem_newest; k != CONSUMEQ_MEM_NONE; k = q->mem_older[k])
            q->mem_order[n++] = k;
        while (n > 0) {
            const struct consumeq_entry *e = &q->mem[q->mem_order[--n]];
            if (!consumeq_entry_keep(q, e))
                continue;
            int rc = consumeq_run_writer_entry(w, e);
            if (rc != 0)
                return rc;
        }
    }
    for (uint32_t i = 0; i < q->dirty_count; i++) {
        const struct consumeq_slot *s = consumeq_slot_find(q, q->dirty_ids[i]);
        ASSERT(s != NULL);
        struct consumeq_run_queue r = { s->queue_id, s->next_off, s->head_off, 0 };
        int rc = consumeq_run_writer_queue(w, &r);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Writes the buffer and the dirty queue records as run `next_seq` with checkpoint `covered_off`.
 * Needs a free run slot. */
static int flush_raw(struct consumeq *q, uint64_t covered_off)
{
    ASSERT(q->run_count < CONSUMEQ_RUN_MAX);
    ASSERT(covered_off >= q->appended_end_off);
    uint64_t dropped_gc = q->entries_dropped_gc;
    uint64_t dropped_queue = q->entries_dropped_queue;
    qsort(q->dirty_ids, q->dirty_count, sizeof(*q->dirty_ids), id_cmp);

    struct consumeq_run_meta meta = { q->next_seq, q->next_seq, covered_off, q->gc_off };
    struct consumeq_run_writer w;
    int rc = consumeq_run_writer_begin(&w, q->dir, q->io_buf, &meta, q->mem_count);
    if (rc == 0) {
        rc = flush_write(q, &w);
        if (rc == 0)
            rc = consumeq_run_writer_finish(&w, &meta, &q->runs[q->run_count]);
        else
            consumeq_run_writer_abort(&w);
        if (rc == 0) {
            rc = consumeq_pub_add(q, &q->runs[q->run_count], NULL, 0);
            if (rc != 0)
                consumeq_run_close(&q->runs[q->run_count]);
        }
    }
    if (rc != 0) {
        q->entries_dropped_gc = dropped_gc;   /* nothing was dropped after all */
        q->entries_dropped_queue = dropped_queue; /* The buffer and its chains are untouched. */
        consumeq_report(q, "consumeq: flush of run %llu failed: %s",
                        (unsigned long long)q->next_seq, strerror(-rc));
        return rc;
    }
    q->run_count++;
    q->next_seq++;
    q->covered_off = covered_off;
    q->gc_persisted_off = meta.gc_off;
    for (uint32_t i = 0; i < q->dirty_count; i++) {
        struct consumeq_slot *s = consumeq_slot_find(q, q->dirty_ids[i]);
        s->mem_newest = CONSUMEQ_MEM_NONE;
        s->flags &= ~CONSUMEQ_SLOT_DIRTY;
    }
    q->mem_count = 0;
    q->dirty_count = 0;
    q->flushes++;
    return 0;
}

int consumeq_flush(struct consumeq *q, uint64_t covered_off)
{
    covered_off = MAX(covered_off, MAX(q->appended_end_off, q->covered_off));
    bool has_changes = q->mem_count > 0 || q->dirty_count > 0 || covered_off != q->covered_off ||
                       q->gc_off != q->gc_persisted_off;
    if (!has_changes)
        return 0;
    if (q->run_count == CONSUMEQ_RUN_MAX) {
        int rc = consumeq_compact_merge(q, 0, q->run_count);
        if (rc != 0)
            return rc;
    }
    return flush_raw(q, covered_off);
}

/* ---- reads ---- */

/* One consumeq_read in progress. */
struct read_state {
    uint64_t queue_id;
    uint64_t cursor;              /* the lowest offset still wanted */
    uint64_t gc_off;              /* entries below it are skipped (0 in seeks, see there) */
    struct consumeq_entry *out;   /* borrowed from the caller */
    uint32_t count;
    uint32_t cap;
};

/* Adds the entries of the queue in `run` at offsets >= cursor, skipping those below rs->gc_off,
 * and moves the cursor past the last one seen. Returns 0 or -errno. */
static int run_collect(struct consumeq *q, const struct consumeq_run *run, struct read_state *rs)
{
    if (run->entry_count == 0 || rs->queue_id < run->fences[0].queue_id ||
        consumeq_run_key_cmp(rs->queue_id, rs->cursor, run->last_key.queue_id,
                             run->last_key.queue_off) > 0)
        return 0;
    for (uint64_t b = consumeq_run_find_block(run, rs->queue_id, rs->cursor);
         b <= run->entry_block_count && rs->count < rs->cap; b++) {
        ssize_t n = consumeq_run_read_block(run, b, q->read_block, CONSUMEQ_RUN_KIND_ENTRIES);
        if (n < 0) {
            consumeq_report(q, "consumeq: run %llu-%llu block %llu failed: %s",
                            (unsigned long long)run->meta.first_seq,
                            (unsigned long long)run->meta.last_seq, (unsigned long long)b,
                            strerror((int)-n));
            return (int)n;
        }
        for (uint32_t i = 0; i < (uint32_t)n && rs->count < rs->cap; i++) {
            struct consumeq_entry e;
            memcpy(&e, q->read_block + (size_t)i * sizeof(e), sizeof(e));
            if (e.queue_id > rs->queue_id)
                return 0;
            if (e.queue_id < rs->queue_id || e.queue_off < rs->cursor)
                continue;
            rs->cursor = e.queue_off + 1;
            if (e.log_off >= rs->gc_off)
                rs->out[rs->count++] = e;
        }
    }
    return 0;
}

/* Adds the write buffer's entries of `s` at offsets >= cursor. The buffer holds a contiguous
 * range of the queue's offsets ending at next_off (invariant 1), and those still above the GC
 * watermark are its suffix, so one walk finds the lowest wanted offset and a second places
 * each entry by offset. Chains are bounded by mem_cap. */
static void mem_collect(const struct consumeq *q, const struct consumeq_slot *s,
                        struct read_state *rs)
{
    uint64_t low = s->next_off;
    for (uint32_t i = s->mem_newest; i != CONSUMEQ_MEM_NONE; i = q->mem_older[i]) {
        const struct consumeq_entry *e = &q->mem[i];
        if (e->queue_off >= rs->cursor && e->log_off >= q->gc_off)
            low = e->queue_off;
    }
    uint32_t n = (uint32_t)MIN((uint64_t)(rs->cap - rs->count), s->next_off - low);
    struct consumeq_entry *out = rs->out + rs->count;
    for (uint32_t i = s->mem_newest; i != CONSUMEQ_MEM_NONE; i = q->mem_older[i]) {
        const struct consumeq_entry *e = &q->mem[i];
        if (e->queue_off >= low && e->queue_off < low + n)
            out[e->queue_off - low] = *e;
    }
    rs->count += n;
    rs->cursor = low + n;
}

/* Adds the entries of `s` at offsets >= cursor from the runs, oldest run first (invariant 1
 * keeps them in order). Returns 0 or -errno. */
static int runs_collect(struct consumeq *q, const struct consumeq_slot *s, struct read_state *rs)
{
    for (uint32_t r = 0; r < q->run_count && rs->count < rs->cap && rs->cursor < s->next_off;
         r++) {
        int rc = run_collect(q, &q->runs[r], rs);
        if (rc != 0)
            return rc;
    }
    return 0;
}

ssize_t consumeq_read(struct consumeq *q, uint64_t queue_id, uint64_t from_off,
                      struct consumeq_entry *out, uint32_t cap)
{
    ASSERT(cap > 0 && cap <= CONSUMEQ_READ_MAX);
    ASSERT(out != NULL);
    const struct consumeq_slot *s = consumeq_slot_find(q, queue_id);
    if (s == NULL || consumeq_slot_is_dropped(s))
        return -ENOENT;
    struct read_state rs = {
        .queue_id = queue_id,
        .cursor = MAX(from_off, s->head_off),
        .gc_off = q->gc_off,
        .out = out,
        .cap = cap,
    };
    int rc = runs_collect(q, s, &rs);
    if (rc != 0)
        return rc;
    if (rs.count < cap && rs.cursor < s->next_off)
        mem_collect(q, s, &rs);
    ASSERT(rs.count <= cap);
    ASSERT(rs.count == 0 || out[rs.count - 1].queue_off < s->next_off);
    return rs.count;
}

uint64_t consumeq_next_off(const struct consumeq *q, uint64_t queue_id)
{
    const struct consumeq_slot *s = consumeq_slot_find(q, queue_id);
    return s == NULL || consumeq_slot_is_dropped(s) ? CONSUMEQ_OFF_NONE : s->next_off;
}

int consumeq_oldest_off(struct consumeq *q, uint64_t queue_id, uint64_t *oldest_off)
{
    const struct consumeq_slot *s = consumeq_slot_find(q, queue_id);
    if (s == NULL || consumeq_slot_is_dropped(s))
        return -ENOENT;
    struct consumeq_entry e;
    ssize_t n = consumeq_read(q, queue_id, s->head_off, &e, 1);
    if (n < 0)
        return (int)n;
    *oldest_off = n == 1 ? e.queue_off : s->next_off;
    return 0;
}

/* consumeq_seek_log: a binary search, since a queue's log offsets grow with its queue offsets
 * (invariant 1). An entry is readable when it exists (compaction has not dropped it), its
 * offset is at or above the head and its log_off is at or above the GC watermark, so with
 * T = max(target, gc_off) the answer A is the lowest existing offset >= head whose log_off is
 * >= T, or next_off. Probes therefore read entries below the watermark too (rs.gc_off = 0): a
 * probe that skipped them would scan the whole GC'd but not yet compacted prefix. Entries that
 * compaction dropped (below the watermark or the head) are a prefix gap, so a probe at `mid`
 * may return an entry above `mid`. The search keeps three numbers and two invariants:
 *   - every existing entry in [head, lo) has log_off < T;
 *   - no existing entry in [hi, best) has log_off >= T, and `best` is next_off or an existing
 *     entry at or above the head with log_off >= T;
 * so A is the first hit in [lo, hi), or `best` when there is none, and the search ends when
 * [lo, hi) is empty. Each outcome of a probe at `mid` (the first entry e at or above it)
 * keeps them:
 *   - no e below hi: [mid, hi) holds no entry, so hi = mid;
 *   - e below hi with log_off >= T: best = e, hi = mid ([mid, e) holds no entry);
 *   - e with log_off < T: lo = e + 1 (entries below e have lower log offsets).
 * Every probe at least halves [lo, hi): O(log n) probes.
 *
 * The write buffer is judged first, by one walk of the queue's chain: it holds every offset of
 * the queue from its oldest buffered entry to next_off (the appends since the last flush), so
 * the walk gives `best` for that range and the search probes only [head, oldest buffered) in
 * the runs (see seek_probe for their cost). Probing the buffer through
 * consumeq_read instead would walk the chain (up to flush_entries links) on every probe. */

/* The write buffer's part of a seek for `log_off` (T above): the lowest buffered offset of `s`
 * (next_off if none) in *mem_low, and the lowest buffered offset at or above the head whose
 * log_off is >= `log_off` (next_off if none) in *mem_hit. A re-created queue's chain may still
 * hold entries below its head. */
static void seek_mem(const struct consumeq *q, const struct consumeq_slot *s, uint64_t log_off,
                     uint64_t *mem_low, uint64_t *mem_hit)
{
    *mem_low = s->next_off;
    *mem_hit = s->next_off;
    /* Bounded: a chain has at most mem_cap links. */
    for (uint32_t i = s->mem_newest; i != CONSUMEQ_MEM_NONE; i = q->mem_older[i]) {
        const struct consumeq_entry *e = &q->mem[i];
        ASSERT_HOT(e->queue_off < s->next_off);
        *mem_low = MIN(*mem_low, e->queue_off);
        if (e->queue_off >= s->head_off && e->log_off >= log_off)
            *mem_hit = MIN(*mem_hit, e->queue_off);
    }
}

/* One probe of a seek: the first entry at or above rs->cursor (cap 1) in runs [*run_idx,
 * run_count), oldest first; *run_idx is left at the run that held it. Runs hold increasing
 * ranges of a queue (invariant 1), so once a probe found e in run r, no older run holds an
 * entry above e and later probes above e start at r: a seek reads about one block per probe
 * plus one per run, not one per run per probe. Returns 0 or -errno. */
static int seek_probe(struct consumeq *q, struct read_state *rs, uint32_t *run_idx)
{
    ASSERT(rs->cap == 1 && rs->count == 0);
    for (uint32_t r = *run_idx; r < q->run_count; r++) {
        int rc = run_collect(q, &q->runs[r], rs);
        if (rc != 0)
            return rc;
        if (rs->count > 0) {
            *run_idx = r;
            return 0;
        }
    }
    return 0;
}

int consumeq_seek_log(struct consumeq *q, uint64_t queue_id, uint64_t log_off,
                      uint64_t *queue_off)
{
    const struct consumeq_slot *s = consumeq_slot_find(q, queue_id);
    if (s == NULL || consumeq_slot_is_dropped(s))
        return -ENOENT;
    uint64_t target = MAX(log_off, q->gc_off);
    uint64_t lo = s->head_off;
    uint64_t hi = 0;
    uint64_t best = 0;
    uint32_t lo_run_idx = 0; /* no run older than it holds an entry at or above lo */
    seek_mem(q, s, target, &hi, &best);
    /* Bounded: each round shrinks [lo, hi) to at most half (see above). */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        struct consumeq_entry e;
        struct read_state rs = { .queue_id = queue_id, .cursor = mid, .gc_off = 0, .out = &e,
                                 .cap = 1 };
        uint32_t run_idx = lo_run_idx;
        int rc = seek_probe(q, &rs, &run_idx);
        if (rc != 0)
            return rc;
        ASSERT(rs.count == 0 || e.queue_off >= mid);
        if (rs.count == 0 || e.queue_off >= hi) {
            hi = mid;
        } else if (e.log_off >= target) {
            best = e.queue_off;
            hi = mid;
        } else {
            lo = e.queue_off + 1;
            lo_run_idx = run_idx;
        }
    }
    ASSERT(best >= s->head_off && best <= s->next_off);
    *queue_off = best;
    return 0;
}

void consumeq_set_gc(struct consumeq *q, uint64_t gc_off)
{
    q->gc_off = MAX(q->gc_off, gc_off);
}

/* ---- queues and appends ---- */

bool consumeq_exists(const struct consumeq *q, uint64_t queue_id)
{
    const struct consumeq_slot *s = consumeq_slot_find(q, queue_id);
    return s != NULL && !consumeq_slot_is_dropped(s);
}

/* Finds or creates `queue_id` (reviving a tombstone at its old next offset). Never flushes:
 * it runs in the middle of a record's appends, where a checkpoint may not fall. */
static struct consumeq_slot *queue_get(struct consumeq *q, uint64_t queue_id, bool *created,
                                       int *rc)
{
    ASSERT(queue_id != 0);
    struct consumeq_slot *s = consumeq_slot_find(q, queue_id);
    *created = s == NULL || consumeq_slot_is_dropped(s);
    if (!*created)
        return s;
    /* Checked before any change, so a failure leaves the table as it was. Only a record that
     * goes to more than CONSUMEQ_RECORD_QUEUES_MAX queues can get here with the list full. */
    if ((s == NULL || !(s->flags & CONSUMEQ_SLOT_DIRTY)) && q->dirty_count == q->mem_cap) {
        *rc = -ENOBUFS;
        return NULL;
    }
    if (s == NULL) {
        s = slot_insert(q, queue_id, rc);
        if (s == NULL)
            return NULL;
    } else {
        s->head_off = s->next_off;
        q->tombstone_count--;
    }
    *rc = slot_mark_dirty(q, s);
    ASSERT(*rc == 0);
    return s;
}

int consumeq_create(struct consumeq *q, uint64_t queue_id)
{
    if (q->dirty_count >= q->flush_entries) {
        int rc = consumeq_flush(q, 0);
        if (rc != 0)
            return rc;
    }
    bool created = false;
    int rc = 0;
    return queue_get(q, queue_id, &created, &rc) == NULL ? rc : (created ? 0 : 1);
}

int consumeq_drop(struct consumeq *q, uint64_t queue_id)
{
    struct consumeq_slot *s = consumeq_slot_find(q, queue_id);
    if (s == NULL || consumeq_slot_is_dropped(s))
        return -ENOENT;
    if (q->dirty_count >= q->flush_entries && !(s->flags & CONSUMEQ_SLOT_DIRTY)) {
        int rc = consumeq_flush(q, 0);
        if (rc != 0)
            return rc;
        s = consumeq_slot_find(q, queue_id); /* a compaction inside the flush may move slots */
    }
    int rc = slot_mark_dirty(q, s);
    if (rc != 0)
        return rc;
    s->head_off = CONSUMEQ_RUN_HEAD_DROPPED;
    q->tombstone_count++;
    return 0;
}

int consumeq_append(struct consumeq *q, uint64_t queue_id, const struct consumeq_record *rec,
                    uint64_t *queue_off)
{
    ASSERT(queue_id != 0);
    ASSERT(rec->log_off >= q->covered_off);
    bool is_new_record = !q->has_appended || rec->log_off != q->last_append_log_off;
    /* Log order: the same record again, or a record starting at or after the previous end. */
    ASSERT(is_new_record ? rec->log_off >= q->appended_end_off
                         : rec->record_len == q->appended_end_off - rec->log_off);
    if (is_new_record &&
        (q->mem_count >= q->flush_entries || q->dirty_count >= q->flush_entries)) {
        /* A record boundary (invariant 3): everything below rec->log_off is fully applied. */
        int rc = consumeq_flush(q, rec->log_off);
        if (rc != 0)
            return rc;
    }
    if (q->mem_count == q->mem_cap)
        return -ENOBUFS; /* one record went to more than CONSUMEQ_RECORD_QUEUES_MAX queues */
    bool created = false;
    int rc = 0;
    struct consumeq_slot *s = queue_get(q, queue_id, &created, &rc);
    if (s == NULL)
        return rc;
    rc = slot_mark_dirty(q, s);
    if (rc != 0)
        return rc;
    uint32_t i = q->mem_count++;
    q->mem[i] = (struct consumeq_entry){
        .queue_id = queue_id,
        .queue_off = s->next_off,
        .log_off = rec->log_off,
        .timestamp_ns = rec->timestamp_ns,
        .record_len = rec->record_len,
        .topic_hash = rec->topic_hash,
    };
    q->mem_older[i] = s->mem_newest;
    s->mem_newest = i;
    *queue_off = s->next_off++;
    q->last_append_log_off = rec->log_off;
    q->has_appended = true;
    q->appended_end_off = MAX(q->appended_end_off, rec->log_off + rec->record_len);
    return 0;
}

/* ---- open, close, wipe ---- */

static int open_check_config(const struct consumeq_config *cfg)
{
    if (cfg->dir == NULL || strlen(cfg->dir) == 0 || strlen(cfg->dir) > CONSUMEQ_DIR_LEN_MAX)
        return -EINVAL;
    if (cfg->flush_entries != 0 && (cfg->flush_entries < CONSUMEQ_FLUSH_ENTRIES_MIN ||
                                    cfg->flush_entries > CONSUMEQ_FLUSH_ENTRIES_MAX))
        return -EINVAL;
    if (cfg->queue_max > CONSUMEQ_QUEUE_MAX_MAX)
        return -EINVAL;
    if (cfg->compact_trigger >= CONSUMEQ_RUN_MAX)
        return -EINVAL;
    return 0;
}

/* The smallest power of two >= 4/3 of `queue_max`, so queue_max queues fit under 3/4 load. */
static uint32_t table_cap_for(uint32_t queue_max)
{
    uint64_t need = (uint64_t)queue_max * 4 / 3 + 1;
    uint64_t cap = TABLE_CAP_MIN;
    while (cap < need)
        cap *= 2;
    return (uint32_t)cap;
}

static struct consumeq *open_alloc(const struct consumeq_config *cfg)
{
    struct consumeq *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    snprintf(q->dir, sizeof(q->dir), "%s", cfg->dir);
    q->flush_entries = cfg->flush_entries ? cfg->flush_entries : CONSUMEQ_FLUSH_ENTRIES_DEFAULT;
    q->compact_trigger = cfg->compact_trigger ? cfg->compact_trigger
                                              : CONSUMEQ_COMPACT_TRIGGER_DEFAULT;
    q->queue_max = cfg->queue_max ? cfg->queue_max : CONSUMEQ_QUEUE_MAX_DEFAULT;
    q->slot_cap_max = table_cap_for(q->queue_max);
    q->report = cfg->report;
    q->report_ctx = cfg->report_ctx;
    q->mem_cap = q->flush_entries + CONSUMEQ_RECORD_QUEUES_MAX;
    q->slot_cap = TABLE_CAP_MIN;
    q->slot_shift = shift_for(q->slot_cap);
    q->next_seq = 1;
    q->slots = calloc(q->slot_cap, sizeof(*q->slots));
    q->mem = malloc((size_t)q->mem_cap * sizeof(*q->mem));
    q->mem_older = malloc((size_t)q->mem_cap * sizeof(*q->mem_older));
    q->mem_order = malloc((size_t)q->mem_cap * sizeof(*q->mem_order));
    q->dirty_ids = malloc((size_t)q->mem_cap * sizeof(*q->dirty_ids));
    q->io_buf = aligned_alloc(CONSUMEQ_RUN_BLOCK_LEN,
                              (size_t)CONSUMEQ_RUN_IO_BLOCKS * CONSUMEQ_RUN_BLOCK_LEN);
    q->cursor_bufs = aligned_alloc(CONSUMEQ_RUN_BLOCK_LEN,
                                   (size_t)CONSUMEQ_RUN_MAX * CONSUMEQ_RUN_BLOCK_LEN);
    q->read_block = aligned_alloc(CONSUMEQ_RUN_BLOCK_LEN, CONSUMEQ_RUN_BLOCK_LEN);
    q->pubs = malloc(CONSUMEQ_PUB_MAX * sizeof(*q->pubs));
    q->unlink_paths = malloc(CONSUMEQ_RUN_MAX * sizeof(*q->unlink_paths));
    q->dir_fd = -1;
    if (q->slots == NULL || q->mem == NULL || q->mem_older == NULL || q->mem_order == NULL ||
        q->dirty_ids == NULL || q->pubs == NULL || q->unlink_paths == NULL ||
        q->io_buf == NULL || q->cursor_bufs == NULL || q->read_block == NULL) {
        consumeq_close(q);
        return NULL;
    }
    return q;
}

/* A run file found in the directory. */
struct found_run {
    uint64_t first_seq;
    uint64_t last_seq;
};

static int found_cmp(const void *a, const void *b)
{
    const struct found_run *x = a;
    const struct found_run *y = b;
    if (x->first_seq != y->first_seq)
        return x->first_seq < y->first_seq ? -1 : 1;
    return (x->last_seq < y->last_seq) - (x->last_seq > y->last_seq); /* widest first */
}

static bool is_temp_name(const char *name)
{
    size_t len = strlen(name);
    return strncmp(name, "cq-", 3) == 0 && len > 8 && strcmp(name + len - 8, ".run.tmp") == 0;
}

/* Lists run files into `found` (sorted) and deletes temp files. */
static int scan_dir(struct consumeq *q, struct found_run *found, uint32_t *found_count,
                    struct consumeq_open_info *info)
{
    DIR *d = opendir(q->dir);
    if (d == NULL)
        return -errno;
    int rc = 0;
    *found_count = 0;
    struct dirent *de;
    /* Bounded by the directory's size; run files beyond DIR_SCAN_MAX are an error. */
    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct found_run f;
        if (is_temp_name(de->d_name)) {
            consumeq_report(q, "consumeq: removing leftover temp run %s/%s", q->dir, de->d_name);
            if (unlinkat(dirfd(d), de->d_name, 0) == -1)
                rc = -errno;
            info->temp_files_removed++;
        } else if (consumeq_run_parse_name(de->d_name, &f.first_seq, &f.last_seq)) {
            if (*found_count == DIR_SCAN_MAX || f.first_seq == 0 || f.first_seq > f.last_seq) {
                consumeq_report(q, "consumeq: unexpected run file %s/%s", q->dir, de->d_name);
                rc = -EBADMSG;
            } else {
                found[(*found_count)++] = f;
            }
        }
    }
    (void)closedir(d); /* read-only */
    qsort(found, *found_count, sizeof(*found), found_cmp);
    return rc;
}

/* Keeps the runs that form the sequence 1..n; deletes those inside a wider run (inputs of a
 * compaction that crashed after its rename). A gap or a partial overlap is corruption. */
static int select_runs(struct consumeq *q, struct found_run *found, uint32_t *count,
                       struct consumeq_open_info *info)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < *count; i++) {
        struct found_run f = found[i];
        if (kept > 0 && f.last_seq <= found[kept - 1].last_seq) {
            struct consumeq_run obsolete = { .meta = { f.first_seq, f.last_seq, 0, 0 } };
            int rc = consumeq_run_unlink(q->dir, &obsolete);
            consumeq_report(q,
                            "consumeq: removed run %llu-%llu in %s, merged into a newer run (%s)",
                            (unsigned long long)f.first_seq, (unsigned long long)f.last_seq,
                            q->dir, rc == 0 ? "ok" : strerror(-rc));
            if (rc != 0)
                return rc;
            info->obsolete_runs_removed++;
            continue;
        }
        uint64_t expect = kept == 0 ? 1 : found[kept - 1].last_seq + 1;
        if (f.first_seq != expect || kept == CONSUMEQ_RUN_MAX) {
            consumeq_report(q,
                            "consumeq: run sequence broken in %s at %llu (expected %llu): a run "
                            "is missing or overlaps; rebuild the index from the log",
                            q->dir, (unsigned long long)f.first_seq, (unsigned long long)expect);
            return -EBADMSG;
        }
        found[kept++] = f;
    }
    *count = kept;
    return 0;
}

/* Loads one queue record into the table; newer runs are opened later and override. */
static int load_queue(void *ctx, const struct consumeq_run_queue *r)
{
    struct consumeq *q = ctx;
    struct consumeq_slot *s = consumeq_slot_find(q, r->queue_id);
    int rc = 0;
    if (s == NULL) {
        s = slot_insert(q, r->queue_id, &rc);
        if (s == NULL)
            return rc;
    } else if (consumeq_slot_is_dropped(s)) {
        q->tombstone_count--;
    }
    s->next_off = r->next_off;
    s->head_off = r->head_off;
    if (consumeq_slot_is_dropped(s))
        q->tombstone_count++;
    return 0;
}

static int open_runs(struct consumeq *q, const struct found_run *found, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        char name[CONSUMEQ_RUN_NAME_LEN];
        char err[128] = "";
        consumeq_run_name(found[i].first_seq, found[i].last_seq, name, sizeof(name));
        struct consumeq_run_source src = {
            .dir = q->dir, .name = name, .buf = q->io_buf, .fn = load_queue, .ctx = q
        };
        int rc = consumeq_run_open(&src, &q->runs[i], err, sizeof(err));
        if (rc != 0) {
            consumeq_report(q,
                            "consumeq: run %s/%s is unusable: %s (%s); rebuild the index from "
                            "the log",
                            q->dir, name, err[0] ? err : "error", strerror(-rc));
            return rc;
        }
        q->run_count++;
        q->covered_off = MAX(q->covered_off, q->runs[i].meta.covered_off);
        q->gc_off = MAX(q->gc_off, q->runs[i].meta.gc_off);
    }
    q->next_seq = count == 0 ? 1 : found[count - 1].last_seq + 1;
    return 0;
}

int consumeq_open(const struct consumeq_config *cfg, struct consumeq **out,
                  struct consumeq_open_info *info)
{
    int rc = open_check_config(cfg);
    if (rc != 0)
        return rc;
    memset(info, 0, sizeof(*info));
    struct consumeq *q = open_alloc(cfg);
    if (q == NULL)
        return -ENOMEM;
    struct found_run found[DIR_SCAN_MAX];
    uint32_t count = 0;
    rc = scan_dir(q, found, &count, info);
    if (rc == 0)
        rc = select_runs(q, found, &count, info);
    if (rc == 0 && (info->temp_files_removed > 0 || info->obsolete_runs_removed > 0))
        rc = segment_sync_dir(q->dir);
    if (rc == 0)
        rc = open_runs(q, found, count);
    if (rc != 0) {
        consumeq_close(q);
        return rc;
    }
    q->gc_persisted_off = q->gc_off;
    q->appended_end_off = q->covered_off;
    q->last_append_log_off = q->covered_off;
    info->covered_off = q->covered_off;
    info->gc_off = q->gc_off;
    info->run_count = q->run_count;
    for (uint32_t i = 0; i < q->run_count; i++)
        info->entry_count += q->runs[i].entry_count;
    info->queue_count = q->slot_used;
    *out = q;
    return 0;
}

void consumeq_close(struct consumeq *q)
{
    if (q == NULL)
        return;
    consumeq_compact_abort(q);
    consumeq_pub_finish(q);
    if (q->dir_fd >= 0)
        (void)close(q->dir_fd);
    free(q->pubs);
    free(q->unlink_paths);
    for (uint32_t i = 0; i < q->run_count; i++)
        consumeq_run_close(&q->runs[i]);
    free(q->slots);
    free(q->mem);
    free(q->mem_older);
    free(q->mem_order);
    free(q->dirty_ids);
    free(q->io_buf);
    free(q->cursor_bufs);
    free(q->read_block);
    free(q);
}

int consumeq_wipe(const char *dir, consumeq_report_fn report_fn, void *report_ctx)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -errno;
    int rc = 0;
    uint32_t removed = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t first = 0;
        uint64_t last = 0;
        if (!is_temp_name(de->d_name) && !consumeq_run_parse_name(de->d_name, &first, &last))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == -1 && rc == 0)
            rc = -errno;
        removed++;
    }
    (void)closedir(d); /* read-only */
    if (rc == 0)
        rc = segment_sync_dir(dir);
    if (report_fn != NULL) {
        char line[REPORT_LINE_MAX];
        snprintf(line, sizeof(line), "consumeq: wiped %u index files in %s (%s)", removed, dir,
                 rc == 0 ? "ok" : strerror(-rc));
        report_fn(report_ctx, line);
    }
    return rc;
}

void consumeq_stats(const struct consumeq *q, struct consumeq_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->queue_count = q->slot_used - q->tombstone_count;
    out->tombstone_count = q->tombstone_count;
    out->mem_entry_count = q->mem_count;
    out->run_count = q->run_count;
    out->memory_bytes = sizeof(*q) + (uint64_t)q->slot_cap * sizeof(struct consumeq_slot) +
                        (uint64_t)q->mem_cap * (sizeof(*q->mem) + sizeof(*q->mem_older) +
                                                sizeof(*q->mem_order) + sizeof(*q->dirty_ids)) +
                        (uint64_t)(CONSUMEQ_RUN_IO_BLOCKS + CONSUMEQ_RUN_MAX + 1) *
                            CONSUMEQ_RUN_BLOCK_LEN;
    for (uint32_t i = 0; i < q->run_count; i++) {
        const struct consumeq_run *r = &q->runs[i];
        uint64_t blocks = 1 + (uint64_t)r->entry_block_count + r->queue_block_count;
        out->disk_entry_count += r->entry_count;
        out->disk_bytes += blocks * CONSUMEQ_RUN_BLOCK_LEN;
        out->memory_bytes += (uint64_t)r->entry_block_count * sizeof(struct consumeq_run_fence);
    }
    out->covered_off = q->covered_off;
    out->gc_off = q->gc_off;
    out->flushes = q->flushes;
    out->compactions = q->compactions;
    out->publications = q->publications;
    out->publications_waiting = q->pub_count;
    out->entries_dropped_gc = q->entries_dropped_gc;
    out->entries_dropped_queue = q->entries_dropped_queue;
}
