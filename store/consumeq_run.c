/* store/consumeq_run.c - writing, verifying and reading the consume-queue index's run files.
 *
 * Why blocks with their own checksums rather than one checksum over the file: a run is read a
 * block at a time by pread long after it was opened, and each read can verify what it got
 * without rereading the file; the header's chained checksum of every block checksum still
 * catches a missing, duplicated or reordered block at open. Why a fence per block and not a
 * per-queue directory: a fence costs 16 bytes per 102 entries whatever the number of queues,
 * which is what makes millions of tiny queues cheap; one binary search plus one pread finds a
 * queue in a run.
 */
#include "store/consumeq_run.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/hash.h"
#include "store/segment.h"

#define RUN_MAGIC UINT64_C(0x4e5552514351424b)    /* "KBQCQRUN" little-endian */
#define RUN_VERSION 1u
#define RUN_PROBE_TEXT "keelmq consume-queue probe"
#define RUN_CHAIN_SEED UINT64_C(0x6b65656c6d71)

/* Block 0. The rest of the block is zero. */
struct run_header {
    uint64_t magic;
    uint32_t version;
    uint32_t block_len;
    uint64_t first_seq;
    uint64_t last_seq;
    uint64_t entry_count;
    uint64_t queue_count;
    uint32_t entry_block_count;
    uint32_t queue_block_count;
    uint64_t covered_off;
    uint64_t gc_off;
    uint64_t min_log_off;
    uint64_t max_log_off;
    uint64_t hash_probe;       /* xxh3 of RUN_PROBE_TEXT seeded 't' when written */
    uint64_t blocks_checksum;  /* chained hash of every block's checksum, in file order */
    uint64_t header_checksum;  /* xxh3 of the bytes above */
};
STATIC_ASSERT(sizeof(struct run_header) == 112, "header layout");
STATIC_ASSERT(sizeof(struct run_header) <= CONSUMEQ_RUN_BLOCK_LEN, "header fits block 0");

/* The last 16 bytes of every data block. */
struct run_trailer {
    uint32_t item_count;
    uint32_t kind;
    uint64_t checksum;   /* xxh3 of the block's first 4088 bytes, seeded with the block index */
};
STATIC_ASSERT(sizeof(struct run_trailer) == CONSUMEQ_RUN_TRAILER_LEN, "trailer layout");
STATIC_ASSERT(CONSUMEQ_RUN_ENTRIES_PER_BLOCK == 102, "entries per block");
STATIC_ASSERT(CONSUMEQ_RUN_QUEUES_PER_BLOCK == 127, "queue records per block");
STATIC_ASSERT(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "runs are little-endian");

static uint64_t hash_probe(void)
{
    return hash_bytes_seeded(RUN_PROBE_TEXT, sizeof(RUN_PROBE_TEXT) - 1, CONSUMEQ_KIND_TOPIC);
}

static uint64_t block_checksum(const uint8_t *block, uint64_t block_idx)
{
    return hash_bytes_seeded(block, CONSUMEQ_RUN_BLOCK_LEN - sizeof(uint64_t), block_idx);
}

static uint64_t chain_add(uint64_t chain, uint64_t checksum)
{
    return hash_bytes_seeded(&checksum, sizeof(checksum), chain);
}

static uint64_t header_checksum(const struct run_header *h)
{
    return hash_bytes(h, offsetof(struct run_header, header_checksum));
}

static uint64_t blocks_for(uint64_t items, uint32_t per_block)
{
    return (items + per_block - 1) / per_block;
}

void consumeq_run_name(uint64_t first_seq, uint64_t last_seq, char *out, size_t out_len)
{
    int n = snprintf(out, out_len, "cq-%016" PRIx64 "-%016" PRIx64 ".run", first_seq, last_seq);
    ASSERT(n > 0 && (size_t)n < out_len);
}

bool consumeq_run_parse_name(const char *name, uint64_t *first_seq, uint64_t *last_seq)
{
    char check[CONSUMEQ_RUN_NAME_LEN];
    if (strlen(name) != 3 + 16 + 1 + 16 + 4)
        return false;
    if (sscanf(name, "cq-%16" SCNx64 "-%16" SCNx64 ".run", first_seq, last_seq) != 2)
        return false;
    /* Round trip: rejects signs, spaces and upper case that sscanf would accept. */
    consumeq_run_name(*first_seq, *last_seq, check, sizeof(check));
    return strcmp(check, name) == 0;
}

static void run_path(const char *dir, const char *name, char *out, size_t out_len)
{
    int n = snprintf(out, out_len, "%s/%s", dir, name);
    ASSERT(n > 0 && (size_t)n < out_len);
}

/* Writes all of `len` bytes at `off`, looping over short writes. */
static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Reads exactly `len` bytes at `off`; -EBADMSG if the file ends first. */
static int pread_all(int fd, uint8_t *p, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EBADMSG;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* ---- writing ---- */

int consumeq_run_writer_begin(struct consumeq_run_writer *w, const char *dir, uint8_t *buf,
                              const struct consumeq_run_meta *meta, uint64_t entry_count_max)
{
    ASSERT(meta->first_seq <= meta->last_seq);
    ASSERT(buf != NULL);
    memset(w, 0, sizeof(*w));
    w->fd = -1;
    w->dir = dir;
    w->buf = buf;
    w->run.meta = *meta;
    w->run.fd = -1;
    w->run.min_log_off = CONSUMEQ_OFF_NONE;
    w->next_block_idx = 1;
    w->chain = RUN_CHAIN_SEED;
    w->last_entry.queue_id = 0;

    uint64_t fence_cap = MAX(blocks_for(entry_count_max, CONSUMEQ_RUN_ENTRIES_PER_BLOCK), 1);
    if (fence_cap > CONSUMEQ_RUN_BLOCK_COUNT_MAX)
        return -EFBIG;
    w->fence_cap = (uint32_t)fence_cap;
    w->run.fences = malloc(fence_cap * sizeof(*w->run.fences));
    if (w->run.fences == NULL)
        return -ENOMEM;

    char name[CONSUMEQ_RUN_NAME_LEN];
    consumeq_run_name(meta->first_seq, meta->last_seq, name, sizeof(name));
    run_path(dir, name, w->final_path, sizeof(w->final_path));
    int n = snprintf(w->tmp_path, sizeof(w->tmp_path), "%s.tmp", w->final_path);
    ASSERT(n > 0 && (size_t)n < sizeof(w->tmp_path));
    /* A temp file of ours left by an earlier failed attempt is garbage: replace it. */
    (void)unlink(w->tmp_path); /* ENOENT is the normal case */
    w->fd = open(w->tmp_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w->fd == -1) {
        int err = -errno;
        free(w->run.fences);
        w->run.fences = NULL;
        return err;
    }
    return 0;
}

static uint8_t *writer_block(struct consumeq_run_writer *w)
{
    return w->buf + (size_t)w->buf_blocks * CONSUMEQ_RUN_BLOCK_LEN;
}

static int writer_drain(struct consumeq_run_writer *w)
{
    if (w->buf_blocks == 0)
        return 0;
    uint64_t first_idx = w->next_block_idx - w->buf_blocks;
    int rc = pwrite_all(w->fd, w->buf, (size_t)w->buf_blocks * CONSUMEQ_RUN_BLOCK_LEN,
                        first_idx * CONSUMEQ_RUN_BLOCK_LEN);
    w->buf_blocks = 0;
    return rc;
}

/* Closes the block being filled: trailer, checksum, chain; writes the buffer out when full. */
static int writer_seal(struct consumeq_run_writer *w)
{
    ASSERT(w->block_items > 0);
    uint8_t *block = writer_block(w);
    struct run_trailer t = { .item_count = w->block_items, .kind = w->block_kind };
    memcpy(block + CONSUMEQ_RUN_PAYLOAD_LEN, &t, sizeof(t));
    t.checksum = block_checksum(block, w->next_block_idx);
    memcpy(block + CONSUMEQ_RUN_PAYLOAD_LEN, &t, sizeof(t));
    w->chain = chain_add(w->chain, t.checksum);
    if (w->block_kind == CONSUMEQ_RUN_KIND_ENTRIES)
        w->run.entry_block_count++;
    else
        w->run.queue_block_count++;
    w->next_block_idx++;
    w->buf_blocks++;
    w->block_items = 0;
    if (w->next_block_idx > CONSUMEQ_RUN_BLOCK_COUNT_MAX)
        return -EFBIG;
    if (w->buf_blocks == CONSUMEQ_RUN_IO_BLOCKS)
        return writer_drain(w);
    return 0;
}

int consumeq_run_writer_entry(struct consumeq_run_writer *w, const struct consumeq_entry *e)
{
    ASSERT(!w->has_queues);
    ASSERT(e->queue_id != 0);
    ASSERT_HOT(w->run.entry_count == 0 ||
               consumeq_run_key_cmp(w->last_entry.queue_id, w->last_entry.queue_off, e->queue_id,
                                    e->queue_off) < 0);
    if (w->block_items == 0) {
        ASSERT(w->run.entry_block_count < w->fence_cap);
        memset(writer_block(w), 0, CONSUMEQ_RUN_BLOCK_LEN);
        w->block_kind = CONSUMEQ_RUN_KIND_ENTRIES;
        w->run.fences[w->run.entry_block_count] =
            (struct consumeq_run_fence){ e->queue_id, e->queue_off };
    }
    memcpy(writer_block(w) + (size_t)w->block_items * sizeof(*e), e, sizeof(*e));
    w->block_items++;
    w->run.entry_count++;
    w->last_entry = *e;
    w->run.min_log_off = MIN(w->run.min_log_off, e->log_off);
    w->run.max_log_off = MAX(w->run.max_log_off, e->log_off);
    if (w->block_items == CONSUMEQ_RUN_ENTRIES_PER_BLOCK)
        return writer_seal(w);
    return 0;
}

int consumeq_run_writer_queue(struct consumeq_run_writer *w, const struct consumeq_run_queue *r)
{
    ASSERT(r->queue_id != 0);
    ASSERT(r->queue_id > w->last_queue_id);
    if (!w->has_queues) {
        w->has_queues = true;
        if (w->block_items > 0) {
            int rc = writer_seal(w);
            if (rc != 0)
                return rc;
        }
    }
    if (w->block_items == 0) {
        memset(writer_block(w), 0, CONSUMEQ_RUN_BLOCK_LEN);
        w->block_kind = CONSUMEQ_RUN_KIND_QUEUES;
    }
    memcpy(writer_block(w) + (size_t)w->block_items * sizeof(*r), r, sizeof(*r));
    w->block_items++;
    w->run.queue_count++;
    w->last_queue_id = r->queue_id;
    if (w->block_items == CONSUMEQ_RUN_QUEUES_PER_BLOCK)
        return writer_seal(w);
    return 0;
}

static void header_fill(const struct consumeq_run *run, uint64_t chain, struct run_header *h)
{
    memset(h, 0, sizeof(*h));
    h->magic = RUN_MAGIC;
    h->version = RUN_VERSION;
    h->block_len = CONSUMEQ_RUN_BLOCK_LEN;
    h->first_seq = run->meta.first_seq;
    h->last_seq = run->meta.last_seq;
    h->entry_count = run->entry_count;
    h->queue_count = run->queue_count;
    h->entry_block_count = run->entry_block_count;
    h->queue_block_count = run->queue_block_count;
    h->covered_off = run->meta.covered_off;
    h->gc_off = run->meta.gc_off;
    h->min_log_off = run->min_log_off;
    h->max_log_off = run->max_log_off;
    h->hash_probe = hash_probe();
    h->blocks_checksum = chain;
    h->header_checksum = header_checksum(h);
}

int consumeq_run_writer_finish(struct consumeq_run_writer *w, const struct consumeq_run_meta *meta,
                               struct consumeq_run *out)
{
    int rc = 0;
    if (w->block_items > 0)
        rc = writer_seal(w);
    if (rc == 0)
        rc = writer_drain(w);
    if (rc != 0)
        goto fail;
    w->run.meta.covered_off = meta->covered_off;
    w->run.meta.gc_off = meta->gc_off;
    ASSERT(w->run.meta.first_seq == meta->first_seq && w->run.meta.last_seq == meta->last_seq);

    /* The header goes last, so a run whose body write failed half way has no valid header. */
    memset(w->buf, 0, CONSUMEQ_RUN_BLOCK_LEN);
    struct run_header h;
    header_fill(&w->run, w->chain, &h);
    memcpy(w->buf, &h, sizeof(h));
    rc = pwrite_all(w->fd, w->buf, CONSUMEQ_RUN_BLOCK_LEN, 0);
    if (rc != 0)
        goto fail;
    /* A merge sizes its fences for every input entry; give back what dropped entries left. */
    struct consumeq_run_fence *fit =
        realloc(w->run.fences, MAX(w->run.entry_block_count, 1u) * sizeof(*w->run.fences));
    if (fit != NULL)
        w->run.fences = fit;
    w->run.fd = w->fd;
    w->run.last_key = (struct consumeq_run_fence){ w->last_entry.queue_id,
                                                   w->last_entry.queue_off };
    *out = w->run;
    w->run.fences = NULL;
    w->fd = -1;
    return 0;

fail:
    (void)unlink(w->tmp_path); /* best effort: open deletes leftover temp files anyway */
    (void)close(w->fd); /* the file is being discarded */
    w->fd = -1;
    free(w->run.fences);
    w->run.fences = NULL;
    return rc;
}

void consumeq_run_writer_abort(struct consumeq_run_writer *w)
{
    if (w->fd != -1) {
        (void)close(w->fd);        /* discarded file */
        (void)unlink(w->tmp_path); /* best effort: open deletes leftover temp files */
        w->fd = -1;
    }
    free(w->run.fences);
    w->run.fences = NULL;
}

/* ---- opening and reading ---- */

/* Verifies a block's trailer and checksum; returns its item count or -EBADMSG. */
static ssize_t block_verify(const uint8_t *block, uint64_t block_idx, uint32_t kind)
{
    struct run_trailer t;
    memcpy(&t, block + CONSUMEQ_RUN_PAYLOAD_LEN, sizeof(t));
    if (t.checksum != block_checksum(block, block_idx) || t.kind != kind)
        return -EBADMSG;
    uint32_t per_block = kind == CONSUMEQ_RUN_KIND_ENTRIES ? CONSUMEQ_RUN_ENTRIES_PER_BLOCK
                                                           : CONSUMEQ_RUN_QUEUES_PER_BLOCK;
    if (t.item_count == 0 || t.item_count > per_block)
        return -EBADMSG;
    return t.item_count;
}

ssize_t consumeq_run_read_block(const struct consumeq_run *r, uint64_t block_idx, uint8_t *block,
                                uint32_t kind)
{
    ASSERT(block_idx >= 1);
    ASSERT(block_idx <= (uint64_t)r->entry_block_count + r->queue_block_count);
    int rc = pread_all(r->fd, block, CONSUMEQ_RUN_BLOCK_LEN, block_idx * CONSUMEQ_RUN_BLOCK_LEN);
    if (rc != 0)
        return rc;
    return block_verify(block, block_idx, kind);
}

uint64_t consumeq_run_find_block(const struct consumeq_run *r, uint64_t queue_id,
                                 uint64_t queue_off)
{
    if (r->entry_block_count == 0)
        return 0;
    /* The last fence <= key: lo ends as the count of fences <= key. */
    uint32_t lo = 0;
    uint32_t hi = r->entry_block_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct consumeq_run_fence *f = &r->fences[mid];
        if (consumeq_run_key_cmp(f->queue_id, f->queue_off, queue_id, queue_off) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == 0 ? 1 : lo;
}

/* What verifying one run's blocks needs to carry from block to block. */
struct open_walk {
    struct consumeq_run *run;
    const struct run_header *h;
    uint64_t chain;
    uint64_t entries_seen;
    uint64_t queues_seen;
    struct consumeq_entry last_entry;
    uint64_t last_queue_id;
    consumeq_run_queue_fn fn;
    void *ctx;
};

static int walk_entry_block(struct open_walk *wk, const uint8_t *block, uint32_t count,
                            uint32_t entry_block_idx)
{
    for (uint32_t i = 0; i < count; i++) {
        struct consumeq_entry e;
        memcpy(&e, block + (size_t)i * sizeof(e), sizeof(e));
        bool is_ordered = wk->entries_seen == 0 ||
                          consumeq_run_key_cmp(wk->last_entry.queue_id, wk->last_entry.queue_off,
                                               e.queue_id, e.queue_off) < 0;
        if (e.queue_id == 0 || !is_ordered || e.log_off < wk->h->min_log_off ||
            e.log_off > wk->h->max_log_off)
            return -EBADMSG;
        if (i == 0)
            wk->run->fences[entry_block_idx] = (struct consumeq_run_fence){ e.queue_id,
                                                                            e.queue_off };
        wk->last_entry = e;
        wk->entries_seen++;
    }
    return 0;
}

static int walk_queue_block(struct open_walk *wk, const uint8_t *block, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        struct consumeq_run_queue r;
        memcpy(&r, block + (size_t)i * sizeof(r), sizeof(r));
        bool is_dropped = r.head_off == CONSUMEQ_RUN_HEAD_DROPPED;
        if (r.queue_id <= wk->last_queue_id || r.reserved != 0 ||
            (!is_dropped && r.head_off > r.next_off))
            return -EBADMSG;
        wk->last_queue_id = r.queue_id;
        wk->queues_seen++;
        int rc = wk->fn(wk->ctx, &r);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Streams every data block of the run through verification. */
static int open_walk_blocks(struct open_walk *wk, uint8_t *buf, char *err, size_t err_len)
{
    const struct consumeq_run *run = wk->run;
    uint64_t total = (uint64_t)run->entry_block_count + run->queue_block_count;
    for (uint64_t idx = 1; idx <= total;) {
        uint64_t chunk = MIN(total + 1 - idx, CONSUMEQ_RUN_IO_BLOCKS);
        int rc = pread_all(run->fd, buf, chunk * CONSUMEQ_RUN_BLOCK_LEN,
                           idx * CONSUMEQ_RUN_BLOCK_LEN);
        if (rc != 0)
            return rc;
        for (uint64_t i = 0; i < chunk; i++, idx++) {
            const uint8_t *block = buf + i * CONSUMEQ_RUN_BLOCK_LEN;
            bool is_entries = idx <= run->entry_block_count;
            uint32_t kind = is_entries ? CONSUMEQ_RUN_KIND_ENTRIES : CONSUMEQ_RUN_KIND_QUEUES;
            ssize_t count = block_verify(block, idx, kind);
            if (count > 0)
                rc = is_entries ? walk_entry_block(wk, block, (uint32_t)count, (uint32_t)idx - 1)
                                : walk_queue_block(wk, block, (uint32_t)count);
            if (count < 0 || rc == -EBADMSG) {
                snprintf(err, err_len, "bad block %" PRIu64 " (checksum, kind or content)", idx);
                return -EBADMSG;
            }
            if (rc != 0)
                return rc;
            struct run_trailer t;
            memcpy(&t, block + CONSUMEQ_RUN_PAYLOAD_LEN, sizeof(t));
            wk->chain = chain_add(wk->chain, t.checksum);
        }
    }
    return 0;
}

/* Checks the header's own fields and the file size; fills the run's counts. */
static int header_check(const struct run_header *h, const struct consumeq_run_meta *named,
                        uint64_t file_len, char *err, size_t err_len)
{
    const char *why = NULL;
    uint64_t entry_blocks = blocks_for(h->entry_count, CONSUMEQ_RUN_ENTRIES_PER_BLOCK);
    uint64_t queue_blocks = blocks_for(h->queue_count, CONSUMEQ_RUN_QUEUES_PER_BLOCK);
    if (h->magic != RUN_MAGIC)
        why = "bad magic";
    else if (h->version != RUN_VERSION || h->block_len != CONSUMEQ_RUN_BLOCK_LEN)
        why = "unsupported version";
    else if (h->header_checksum != header_checksum(h))
        why = "bad header checksum";
    else if (h->hash_probe != hash_probe())
        why = "xxh3 output differs from the writer's (queue ids would change)";
    else if (h->first_seq != named->first_seq || h->last_seq != named->last_seq)
        why = "sequence range differs from the file name";
    else if (h->entry_block_count != entry_blocks || h->queue_block_count != queue_blocks)
        why = "block counts do not match entry counts";
    else if (file_len != (1 + entry_blocks + queue_blocks) * CONSUMEQ_RUN_BLOCK_LEN)
        why = "file size does not match its header (truncated or extended)";
    if (why == NULL)
        return 0;
    snprintf(err, err_len, "%s", why);
    return -EBADMSG;
}

int consumeq_run_open(const struct consumeq_run_source *src, struct consumeq_run *out, char *err,
                      size_t err_len)
{
    struct consumeq_run_meta named = { 0 };
    ASSERT(consumeq_run_parse_name(src->name, &named.first_seq, &named.last_seq));
    char path[CONSUMEQ_RUN_PATH_LEN];
    run_path(src->dir, src->name, path, sizeof(path));
    memset(out, 0, sizeof(*out));
    out->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (out->fd == -1) {
        int rc = -errno;
        snprintf(err, err_len, "open: %s", strerror(-rc));
        return rc;
    }
    int rc;
    struct stat st;
    if (fstat(out->fd, &st) == -1) {
        rc = -errno;
        goto fail_fd;
    }
    struct run_header h = { 0 };
    if ((uint64_t)st.st_size >= CONSUMEQ_RUN_BLOCK_LEN)
        rc = pread_all(out->fd, (uint8_t *)&h, sizeof(h), 0);
    else
        rc = -EBADMSG;
    if (rc == -EBADMSG)
        snprintf(err, err_len, "shorter than its header");
    if (rc == 0)
        rc = header_check(&h, &named, (uint64_t)st.st_size, err, err_len);
    if (rc != 0)
        goto fail_fd;
    out->meta = (struct consumeq_run_meta){ h.first_seq, h.last_seq, h.covered_off, h.gc_off };
    out->entry_block_count = h.entry_block_count;
    out->queue_block_count = h.queue_block_count;
    out->entry_count = h.entry_count;
    out->queue_count = h.queue_count;
    out->min_log_off = h.min_log_off;
    out->max_log_off = h.max_log_off;
    out->fences = malloc(MAX(h.entry_block_count, 1u) * sizeof(*out->fences));
    if (out->fences == NULL) {
        rc = -ENOMEM;
        goto fail_fd;
    }
    struct open_walk wk = {
        .run = out, .h = &h, .chain = RUN_CHAIN_SEED, .fn = src->fn, .ctx = src->ctx
    };
    rc = open_walk_blocks(&wk, src->buf, err, err_len);
    /* Disk bytes are validated, never asserted: a block may hold fewer items than its place
     * in the file implies while every checksum matches (a bug in an older writer). */
    bool is_complete = wk.entries_seen == h.entry_count && wk.queues_seen == h.queue_count;
    if (rc == 0 && (wk.chain != h.blocks_checksum || !is_complete)) {
        snprintf(err, err_len, "blocks do not match the header's checksum or counts");
        rc = -EBADMSG;
    }
    if (rc != 0)
        goto fail_fences;
    out->last_key = (struct consumeq_run_fence){ wk.last_entry.queue_id,
                                                 wk.last_entry.queue_off };
    return 0;

fail_fences:
    free(out->fences);
    out->fences = NULL;
fail_fd:
    (void)close(out->fd); /* read-only */
    out->fd = -1;
    return rc;
}

void consumeq_run_close(struct consumeq_run *r)
{
    if (r->fd != -1)
        (void)close(r->fd); /* runs are immutable once renamed: nothing to lose */
    r->fd = -1;
    free(r->fences);
    r->fences = NULL;
}

int consumeq_run_unlink(const char *dir, const struct consumeq_run *r)
{
    char name[CONSUMEQ_RUN_NAME_LEN];
    char path[CONSUMEQ_RUN_PATH_LEN];
    consumeq_run_name(r->meta.first_seq, r->meta.last_seq, name, sizeof(name));
    run_path(dir, name, path, sizeof(path));
    return unlink(path) == -1 ? -errno : 0;
}

int consumeq_run_publish(int fd, const char *tmp_path, const char *final_path, const char *dir)
{
    if (fsync(fd) == -1)
        return -errno;
    if (rename(tmp_path, final_path) == -1)
        return -errno;
    return segment_sync_dir(dir);
}
