/* core/recovery.c - startup scan of every shard's commit log. Main thread only.
 *
 * Retained messages: every RECORD_MESSAGE with the retain flag is an update of its topic. The
 * logs of different shards interleave in time, so updates are ordered by their timestamps (as
 * the shards order them at run time, core/router.c); within one log, later records win ties.
 * The messages built here belong to no shard (owner SHARD_NONE); shards clone what they keep.
 */
#include "core/recovery.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/retain.h"
#include "core/topic.h"
#include "core/hash.h"
#include "store/commitlog.h"
#include "store/journal.h"

#define RECOVERY_OWNER 0xFFFFu /* not a shard: memory of the main thread */
#define RECOVERY_SHARD_MAX 256

struct scan_ctx {
    struct recovery *r;
    uint16_t shard;
    uint64_t skipped;
};

static void report(void *ctx, const char *line)
{
    struct scan_ctx *sc = ctx;
    LOG_ERROR("store", "shard_log=%u %s", sc->shard, line);
}

/* Keeps `m` as the newest retained update of its topic if it is newer than what is held. */
static int keep_retained(struct recovery *r, struct msg *m)
{
    struct msg *old = retain_get(r->index, m->topic);
    if (old != NULL && old->time_ns > m->time_ns) {
        msg_release(m);
        return 0;
    }
    int err = 0;
    struct msg *prev = retain_set(r->index, m->topic, m, &err);
    if (err != 0) {
        msg_release(m);
        return err;
    }
    if (prev != NULL)
        msg_release(prev);
    return 0;
}

static int table_grow(struct recovery *r)
{
    uint32_t cap = r->session_table == NULL ? 1024 : (r->session_table_mask + 1) * 2;
    uint32_t *t = calloc(cap, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < r->session_count; i++) {
        uint32_t j = (uint32_t)r->sessions[i].hash & (cap - 1);
        while (t[j] != 0)
            j = (j + 1) & (cap - 1);
        t[j] = i + 1;
    }
    free(r->session_table);
    r->session_table = t;
    r->session_table_mask = cap - 1;
    return 0;
}

/* The entry of `client_id`, created if missing. NULL when out of memory. */
static struct recovery_session *session_of(struct recovery *r, struct slice client_id)
{
    if (r->session_table == NULL || (r->session_count + 1) * 2 > r->session_table_mask + 1) {
        if (table_grow(r) != 0)
            return NULL;
    }
    uint64_t h = hash_bytes(client_id.ptr, client_id.len);
    uint32_t j = (uint32_t)h & r->session_table_mask;
    for (; r->session_table[j] != 0; j = (j + 1) & r->session_table_mask) {
        struct recovery_session *e = &r->sessions[r->session_table[j] - 1];
        if (e->hash == h && e->client_id_len == client_id.len &&
            memcmp(e->client_id, client_id.ptr, client_id.len) == 0)
            return e;
    }
    if (r->session_count == r->session_cap) {
        uint32_t cap = r->session_cap ? r->session_cap * 2 : 64;
        struct recovery_session *n = realloc(r->sessions, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        r->sessions = n;
        r->session_cap = cap;
    }
    struct recovery_session *e = &r->sessions[r->session_count];
    memset(e, 0, sizeof(*e));
    e->client_id = malloc((size_t)client_id.len + 1);
    if (e->client_id == NULL)
        return NULL;
    memcpy(e->client_id, client_id.ptr, client_id.len);
    e->client_id[client_id.len] = '\0';
    e->client_id_len = (uint16_t)client_id.len;
    e->hash = h;
    r->session_table[j] = ++r->session_count;
    return e;
}

/* Replaces *dst with a copy of `body`. */
static int keep_body(uint8_t **dst, uint32_t *dst_len, struct slice body)
{
    uint8_t *copy = malloc(MAX(body.len, 1u));
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, body.ptr, body.len);
    free(*dst);
    *dst = copy;
    *dst_len = body.len;
    return 0;
}

static void qos2_remove(struct recovery_session *e, uint16_t id)
{
    for (uint32_t i = 0; i < e->qos2_in_len; i++)
        if (e->qos2_in[i] == id) {
            e->qos2_in[i] = e->qos2_in[--e->qos2_in_len];
            return;
        }
}

static int qos2_add(struct recovery_session *e, uint16_t id)
{
    qos2_remove(e, id);
    if (e->qos2_in_len == e->qos2_in_cap) {
        if (e->qos2_in_cap >= 65535)
            return 0;
        uint32_t cap = e->qos2_in_cap ? e->qos2_in_cap * 2 : 4;
        uint16_t *n = realloc(e->qos2_in, cap * sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        e->qos2_in = n;
        e->qos2_in_cap = cap;
    }
    e->qos2_in[e->qos2_in_len++] = id;
    return 0;
}

/* Applies an OUT record: the newest state of one delivery, keyed by its record. Completed
 * ones are kept too (a restart must not deliver them again) until a CURSOR is past them. */
static int out_apply(struct recovery_session *e, const struct journal_entry *j)
{
    uint32_t i = 0;
    while (i < e->outs_len &&
           (e->outs[i].origin != j->origin_shard || e->outs[i].log_off != j->log_off))
        i++;
    if (i == e->outs_len) {
        if (e->outs_len == e->outs_cap) {
            uint32_t cap = e->outs_cap ? e->outs_cap * 2 : 8;
            struct recovery_out *n = realloc(e->outs, cap * sizeof(*n));
            if (n == NULL)
                return -ENOMEM;
            e->outs = n;
            e->outs_cap = cap;
        }
        e->outs_len++;
    }
    e->outs[i] = (struct recovery_out){ .log_off = j->log_off, .origin = j->origin_shard,
                                        .packet_id = j->packet_id, .state = j->out_state };
    return 0;
}

/* A CURSOR: completed deliveries below its positions are settled for good. */
static void outs_prune(struct recovery_session *e, const struct journal_entry *cursor)
{
    for (uint32_t i = 0; i < e->outs_len;) {
        const struct recovery_out *o = &e->outs[i];
        if (o->state == JOURNAL_OUT_COMPLETED && o->origin < cursor->shard_count &&
            o->log_off < journal_pos_at(cursor, o->origin).pos1)
            e->outs[i] = e->outs[--e->outs_len];
        else
            i++;
    }
}

static void forget(struct recovery_session *e)
{
    free(e->state);
    free(e->cursor);
    free(e->will);
    e->state = e->cursor = e->will = NULL;
    e->state_len = e->cursor_len = e->will_len = 0;
    e->qos2_in_len = 0;
    e->outs_len = 0;
}

/* One journal record. Records older than what is held (another log, after a change of
 * shard.count) do not override it. */
static int on_journal(struct scan_ctx *sc, const uint8_t *p, const struct record_header *h)
{
    struct recovery *r = sc->r;
    struct journal_entry e;
    if (journal_decode(record_body(p, h), &e) != 0) {
        r->journal_bad++;
        return 0;
    }
    r->journal_records++;
    struct recovery_session *rs = session_of(r, e.client_id);
    if (rs == NULL)
        return -ENOMEM;
    /* Within one log, log order rules (the clock may step back); across logs, time. */
    if (rs->last_ns != 0 && rs->last_log != sc->shard && e.time_ns < rs->last_ns &&
        e.kind != JOURNAL_REL)
        return 0;
    rs->last_ns = e.time_ns;
    rs->last_log = sc->shard;
    switch (e.kind) {
    case JOURNAL_STATE:
        rs->ended = false;
        return keep_body(&rs->state, &rs->state_len, record_body(p, h));
    case JOURNAL_CURSOR:
        outs_prune(rs, &e);
        return keep_body(&rs->cursor, &rs->cursor_len, record_body(p, h));
    case JOURNAL_END:
        rs->ended = true;
        forget(rs);
        return 0;
    case JOURNAL_REL:
        qos2_remove(rs, e.packet_id);
        return 0;
    case JOURNAL_WILL:
        if (e.will_record.len > 0)
            return keep_body(&rs->will, &rs->will_len, record_body(p, h));
        free(rs->will);
        rs->will = NULL;
        rs->will_len = 0;
        return 0;
    case JOURNAL_OUT:
        return out_apply(rs, &e);
    default:
        return 0;
    }
}

static int on_record(void *ctx, uint64_t off, const uint8_t *p, const struct record_header *h)
{
    (void)off;
    struct scan_ctx *sc = ctx;
    if (h->type == RECORD_SESSION)
        return on_journal(sc, p, h);
    if (h->type == RECORD_MESSAGE && h->packet_id != 0) {
        struct record_message qm;
        if (record_decode_message(p, h, &qm)) {
            struct recovery_session *rs = session_of(sc->r, qm.client_id);
            if (rs == NULL || qos2_add(rs, qm.packet_id) != 0)
                return -ENOMEM;
        }
    }
    if (h->type != RECORD_MESSAGE || !(h->flags & RECORD_FLAG_RETAIN))
        return 0;
    struct msg *m;
    int rc = msg_from_record(p, h, sc->shard, &m);
    if (rc == -EBADMSG) {
        sc->skipped++; /* Checksummed but not ours to understand: never crash on disk bytes. */
        return 0;
    }
    if (rc != 0)
        return rc;
    m->owner_shard = RECOVERY_OWNER;
    return keep_retained(sc->r, m);
}

/* The number of shard logs present: max(shard.count, highest shard-N directory + 1). */
static uint16_t count_logs(const char *store_dir, uint32_t shard_count)
{
    uint32_t count = shard_count;
    DIR *d = opendir(store_dir);
    if (d == NULL)
        return (uint16_t)count;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned n;
        char tail;
        if (sscanf(e->d_name, "shard-%u%c", &n, &tail) == 1 && n < RECOVERY_SHARD_MAX)
            count = MAX(count, n + 1);
    }
    closedir(d);
    return (uint16_t)count;
}

static void collect_one(void *ctx, struct slice topic, void *value)
{
    (void)topic;
    struct recovery *r = ctx;
    struct msg *m = value;
    if (m->payload.len == 0)
        return; /* A clear: nothing to restore. */
    if (r->retained_count == r->retained_cap) {
        uint32_t cap = r->retained_cap ? r->retained_cap * 2 : 64;
        struct msg **n = realloc(r->retained, cap * sizeof(*n));
        if (n == NULL)
            return; /* Reported by the caller through the count mismatch. */
        r->retained = n;
        r->retained_cap = cap;
    }
    r->retained[r->retained_count++] = msg_ref(m);
}

/* Lists the newest non-empty update of every topic, '$' topics included. */
static void collect_retained(struct recovery *r)
{
    retain_walk_all(r->index, collect_one, r);
}

int recovery_run(struct recovery *r, const struct config *cfg, char *err, size_t err_len)
{
    memset(r, 0, sizeof(*r));
    r->count = count_logs(cfg->store_dir, cfg->shard_count);
    r->shards = calloc(r->count, sizeof(*r->shards));
    r->index = retain_create();
    if (r->shards == NULL || r->index == NULL) {
        snprintf(err, err_len, "out of memory for recovery");
        return -ENOMEM;
    }
    for (uint16_t i = 0; i < r->count; i++) {
        char dir[COMMITLOG_DIR_MAX];
        snprintf(dir, sizeof(dir), "%s/shard-%u", cfg->store_dir, i);
        struct scan_ctx sc = { .r = r, .shard = i };
        uint64_t t0 = base_now_ms();
        struct segment_scan *scan = &r->shards[i].scan;
        int rc = segment_scan(dir, 0, on_record, &sc, report, scan, err, err_len);
        if (rc == -ENOENT) {
            memset(scan, 0, sizeof(*scan));
            continue; /* A new shard: no log yet. */
        }
        if (rc != 0)
            return rc < 0 ? rc : -EIO;
        r->shards[i].end_off = scan->end_off;
        LOG_INFO("store",
                 "recovered shard_log=%u segments=%u records=%llu bytes=%llu cut_bytes=%llu "
                 "corrupt_regions=%u unreadable_records=%llu end=%llu ms=%llu",
                 i, scan->segments, (unsigned long long)scan->records,
                 (unsigned long long)scan->bytes, (unsigned long long)scan->cut_bytes,
                 scan->corrupt_regions, (unsigned long long)sc.skipped,
                 (unsigned long long)scan->end_off, (unsigned long long)(base_now_ms() - t0));
    }
    collect_retained(r);
    if (r->retained_count > 0)
        LOG_INFO("store", "recovered retained=%u", r->retained_count);
    uint32_t live = 0;
    for (uint32_t i = 0; i < r->session_count; i++)
        live += recovery_session_live(&r->sessions[i]);
    if (r->journal_records > 0 || r->journal_bad > 0)
        LOG_INFO("store", "recovered sessions=%u journal_records=%llu undecodable=%llu", live,
                 (unsigned long long)r->journal_records, (unsigned long long)r->journal_bad);
    return 0;
}

static void release_value(void *ctx, void *value)
{
    (void)ctx;
    msg_release(value);
}

void recovery_free(struct recovery *r)
{
    for (uint32_t i = 0; i < r->retained_count; i++)
        msg_release(r->retained[i]);
    free(r->retained);
    if (r->index != NULL)
        retain_destroy(r->index, release_value, NULL);
    free(r->shards);
    for (uint32_t i = 0; i < r->session_count; i++) {
        forget(&r->sessions[i]);
        free(r->sessions[i].qos2_in);
        free(r->sessions[i].outs);
        free(r->sessions[i].client_id);
    }
    free(r->sessions);
    free(r->session_table);
    memset(r, 0, sizeof(*r));
}
