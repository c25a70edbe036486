/* core/catchup.c - catch-up of persistent sessions from the log (core/catchup.h). Shard
 * thread only.
 */
#include "core/catchup.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/persist.h"
#include "core/session.h"
#include "core/shard.h"
#include "store/consumeq.h"
#include "store/logread.h"

/* ---- Catch-up: the home's side ----------------------------------------------------------- */

static uint64_t hint_for(const struct session_origin *o, uint64_t qid)
{
    for (uint32_t i = 0; i < o->hint_count; i++)
        if (o->hints[2 * i] == qid)
            return o->hints[2 * i + 1];
    return CONSUMEQ_OFF_NONE;
}

void catchup_start(struct shard *s, struct session *sess, uint16_t origin)
{
    struct session_origin *o = &sess->origins[origin];
    ASSERT(o->mode == ORIGIN_BEHIND);
    uint32_t subs = MIN(sess->sub_count, CATCHUP_QUEUES_MAX - 1);
    uint32_t n = subs + (s->cfg->p2p ? 1u : 0u); /* and its P2P queue (core/iot.h) */
    size_t size = sizeof(struct catchup_req) + (size_t)n * 16 + sess->client_id_len + 1;
    struct catchup_req *req = malloc(size);
    if (req == NULL)
        return; /* Stays BEHIND: tried again on the next pump. */
    req->queue_ids = (uint64_t *)(req + 1);
    req->hints = req->queue_ids + n;
    req->client_id = (char *)(req->hints + n);
    req->home = s->id;
    req->origin = origin;
    req->queue_count = n;
    req->serial = sess->serial;
    req->since_ns = sess->since_ns;
    req->pos0 = o->pos0;
    req->pos1 = o->pos1;
    req->client_id_len = sess->client_id_len;
    memcpy(req->client_id, sess->client_id, sess->client_id_len + 1u);
    for (uint32_t i = 0; i < n; i++) {
        req->queue_ids[i] = i < subs ? persist_filter_queue((struct slice){
                                           (const uint8_t *)sess->subs[i].filter,
                                           sess->subs[i].filter_len })
                                     : persist_p2p_queue((struct slice){
                                           (const uint8_t *)sess->client_id,
                                           sess->client_id_len });
        req->hints[i] = hint_for(o, req->queue_ids[i]);
    }
    o->mode = ORIGIN_READING;
    s->persist.outstanding++;
    s->persist.stats.catchup_requests++;
    if (origin != s->id) {
        shard_post(s, origin, (struct note){ .kind = NOTE_CATCHUP_REQ, .ptr = req });
        return;
    }
    struct persist *p = &s->persist;
    if (p->local_len == p->local_cap) {
        uint32_t cap = p->local_cap ? p->local_cap * 2 : 16;
        struct catchup_req **l = realloc(p->local, cap * sizeof(*l));
        if (l == NULL) {
            free(req);
            o->mode = ORIGIN_BEHIND;
            p->outstanding--;
            return;
        }
        p->local = l;
        p->local_cap = cap;
    }
    p->local[p->local_len++] = req;
}

static void save_hints(struct session_origin *o, const struct catchup_req *req,
                       const uint64_t *hints)
{
    uint64_t *h = realloc(o->hints, (size_t)req->queue_count * 16 + 16);
    if (h == NULL) {
        free(o->hints);
        o->hints = NULL;
        o->hint_count = 0;
        return; /* Seeks next time. */
    }
    for (uint32_t i = 0; i < req->queue_count; i++) {
        h[2 * i] = req->queue_ids[i];
        h[2 * i + 1] = hints[i];
    }
    o->hints = h;
    o->hint_count = req->queue_count;
}

static void apply_resp(struct shard *s, struct session *sess, const struct catchup_resp *resp)
{
    const struct catchup_req *req = resp->req;
    struct session_origin *o = &sess->origins[req->origin];
    if (MIN(o->pos0, o->pos1) < resp->gc_off && resp->count + resp->at_end > 0) {
        s->persist.stats.lost_below_watermark++;
        LOG_WARN("session",
                 "lost_to_retention client=%s origin=%u from=%llu watermark=%llu lost_bytes=%llu",
                 sess->client_id, req->origin, (unsigned long long)MIN(o->pos0, o->pos1),
                 (unsigned long long)resp->gc_off,
                 (unsigned long long)(resp->gc_off - MIN(o->pos0, o->pos1)));
        o->pos0 = MAX(o->pos0, resp->gc_off);
        o->pos1 = MAX(o->pos1, resp->gc_off);
    }
    for (uint32_t i = 0; i < resp->count; i++)
        session_deliver_logged(s, sess, resp->msgs[i]);
    s->persist.stats.catchup_records += resp->count;
    o->pos0 = MAX(o->pos0, resp->next_off);
    o->pos1 = MAX(o->pos1, resp->next_off);
    sess->cursor_dirty = true;
    if (resp->at_end) {
        free(o->hints);
        o->hints = NULL;
        o->hint_count = 0;
        o->mode = ORIGIN_LIVE;
        return;
    }
    save_hints(o, req, resp->hints);
    o->mode = ORIGIN_BEHIND;
}

void catchup_on_failed(struct shard *s, struct catchup_req *req)
{
    ASSERT(req->home == s->id && s->persist.outstanding > 0);
    s->persist.outstanding--;
    struct session *sess = session_find(
        s->sessions, (struct slice){ (const uint8_t *)req->client_id, req->client_id_len });
    if (sess != NULL && sess->serial == req->serial && sess->origins != NULL &&
        sess->origins[req->origin].mode == ORIGIN_READING)
        sess->origins[req->origin].mode = ORIGIN_BEHIND;
    free(req);
}

void catchup_on_resp(struct shard *s, struct catchup_resp *resp)
{
    struct catchup_req *req = resp->req;
    ASSERT(req->home == s->id && s->persist.outstanding > 0);
    s->persist.outstanding--;
    struct session *sess = session_find(
        s->sessions, (struct slice){ (const uint8_t *)req->client_id, req->client_id_len });
    if (sess != NULL && sess->serial == req->serial && sess->origins != NULL &&
        sess->origins[req->origin].mode == ORIGIN_READING) {
        if (sess->conn != NULL && !s->stopping) {
            apply_resp(s, sess, resp);
            session_catchup_poll(s, sess);
        } else {
            sess->origins[req->origin].mode = ORIGIN_BEHIND; /* Offline meanwhile. */
        }
    }
    uint16_t origin = req->origin;
    free(req);
    resp->req = NULL;
    if (origin == s->id)
        catchup_release(s, resp);
    else
        shard_post(s, origin, (struct note){ .kind = NOTE_CATCHUP_RELEASE, .ptr = resp });
}

/* ---- Catch-up: the origin's side --------------------------------------------------------- */

struct queue_read {
    struct consumeq_entry *entries;
    int64_t count;
    uint64_t start;          /* the queue offset the read started at */
};

static int cmp_entry(const void *a, const void *b)
{
    const struct consumeq_entry *x = a;
    const struct consumeq_entry *y = b;
    return x->log_off < y->log_off ? -1 : x->log_off > y->log_off;
}

/* Reads one record of the own log into a new message (origin-owned). NULL if it cannot. */
static struct msg *read_message(struct shard *s, const struct consumeq_entry *e)
{
    struct persist *p = &s->persist;
    struct record_header h;
    ssize_t n = logread_record(p->reader, e->log_off, e->record_len, p->read_buf, p->read_cap,
                               &h);
    if (n == -ENOSPC) {
        uint8_t *b = malloc(h.total_len);
        if (b == NULL)
            return NULL;
        free(p->read_buf);
        p->read_buf = b;
        p->read_cap = h.total_len;
        n = logread_record(p->reader, e->log_off, e->record_len, p->read_buf, p->read_cap, &h);
    }
    if (n < 0) {
        p->stats.catchup_read_errors++;
        LOG_ERROR("persist", "catchup_read_failed shard=%u log_off=%llu err=%d", s->id,
                  (unsigned long long)e->log_off, (int)n);
        return NULL;
    }
    struct record_message rm;
    struct mqtt_props props = { 0 };
    if (h.type != RECORD_MESSAGE || !record_decode_message(p->read_buf, &h, &rm) ||
        (rm.props.len > 0 && codec_publish_props_decode(rm.props, &props) != MQTT_RC_SUCCESS))
        return NULL;
    struct msg *m = msg_create(rm.topic, rm.payload, rm.props.len > 0 ? &props : NULL,
                               rm.client_id, rm.qos, rm.retain, s->id);
    if (m == NULL)
        return NULL;
    m->time_ns = rm.timestamp_ns;
    m->log_off = e->log_off;
    m->log_len = h.total_len;
    return m;
}

/* Reads every queue of `req` from its hint (or the queue offset of `from`). Returns the
 * lowest log offset at which some queue's read stopped short (UINT64_MAX: none did). */
static uint64_t read_queues(struct shard *s, const struct catchup_req *req, uint64_t from,
                            struct queue_read *reads, uint32_t per_queue)
{
    uint64_t limit = UINT64_MAX;
    for (uint32_t i = 0; i < req->queue_count; i++) {
        struct queue_read *r = &reads[i];
        r->count = 0;
        r->start = req->hints[i];
        if (r->start == CONSUMEQ_OFF_NONE &&
            consumeq_seek_log(s->persist.index, req->queue_ids[i], from, &r->start) != 0) {
            r->start = CONSUMEQ_OFF_NONE; /* No such queue (nothing published there yet). */
            continue;
        }
        r->count = consumeq_read(s->persist.index, req->queue_ids[i], r->start, r->entries,
                                 per_queue);
        if (r->count < 0) {
            if (r->count != -ENOENT)
                LOG_ERROR("persist", "index_read_failed shard=%u err=%d", s->id, (int)r->count);
            r->count = 0;
            continue;
        }
        if ((uint32_t)r->count == per_queue)
            limit = MIN(limit, r->entries[r->count - 1].log_off);
    }
    return limit;
}

/* A log offset below every record appended at or after `wall_ns` (0 if unknown). */
static uint64_t offset_at(const struct persist *p, uint64_t wall_ns)
{
    uint64_t off = 0;
    for (uint32_t lo = 0, hi = p->mark_count; lo < hi;) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (p->marks[mid].wall_ns <= wall_ns) {
            off = p->marks[mid].log_off;
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return off;
}

void catchup_take_mark(struct shard *s)
{
    struct persist *p = &s->persist;
    if (p->mark_every_ms == 0)
        p->mark_every_ms = 250;
    if (s->now_ms < p->next_mark_ms)
        return;
    p->next_mark_ms = s->now_ms + p->mark_every_ms;
    if (p->mark_count == PERSIST_MARKS) {
        for (uint32_t i = 0; i < PERSIST_MARKS / 2; i++)
            p->marks[i] = p->marks[2 * i + 1];
        p->mark_count = PERSIST_MARKS / 2;
        p->mark_every_ms *= 2;
    }
    p->marks[p->mark_count++] =
        (struct persist_mark){ .wall_ns = base_wall_ns(), .log_off = s->log.append_off };
}

/* Fills `resp` for `req`: merges the queues in log order and reads the records. */
static void answer(struct shard *s, const struct catchup_req *req, struct catchup_resp *resp,
                   struct queue_read *reads, uint32_t per_queue, struct consumeq_entry *merged)
{
    uint64_t gc = resp->gc_off;
    uint64_t from = MAX(MAX(MIN(req->pos0, req->pos1), gc), offset_at(&s->persist, req->since_ns));
    uint64_t limit = read_queues(s, req, from, reads, per_queue);
    uint32_t total = 0;
    for (uint32_t i = 0; i < req->queue_count; i++)
        for (int64_t j = 0; j < reads[i].count; j++)
            if (reads[i].entries[j].log_off <= limit)
                merged[total++] = reads[i].entries[j];
    qsort(merged, total, sizeof(*merged), cmp_entry);
    uint64_t next = from;
    uint64_t bytes = 0;
    bool stopped = false;
    for (uint32_t i = 0; i < total; i++) {
        const struct consumeq_entry *e = &merged[i];
        if (i > 0 && e->log_off == merged[i - 1].log_off)
            continue; /* The same record through two queues. */
        if (resp->count == CATCHUP_RECORDS || bytes >= CATCHUP_BYTES) {
            stopped = true;
            break;
        }
        uint64_t end = e->log_off + e->record_len;
        next = MAX(next, end);
        if (e->timestamp_ns < req->since_ns || end <= MIN(req->pos0, req->pos1))
            continue;
        struct msg *m = read_message(s, e);
        if (m == NULL)
            continue; /* Counted and logged: skipped, never a crash. */
        if (end <= (m->qos == 0 ? req->pos0 : req->pos1)) {
            msg_release(m);
            continue;
        }
        resp->msgs[resp->count++] = m;
        bytes += e->record_len;
    }
    resp->at_end = !stopped && limit == UINT64_MAX;
    resp->next_off = resp->at_end ? MAX(next, s->persist.indexed_off) : next;
    for (uint32_t i = 0; i < req->queue_count; i++) {
        const struct queue_read *r = &reads[i];
        uint64_t h = r->start;
        for (int64_t j = 0; j < r->count; j++) {
            if (r->entries[j].log_off >= next)
                break;
            h = r->entries[j].queue_off + 1;
        }
        resp->hints[i] = h;
    }
}

void catchup_on_req(struct shard *s, struct catchup_req *req)
{
    ASSERT(req->origin == s->id);
    uint32_t n = req->queue_count;
    uint32_t per_queue = n <= 8 ? CATCHUP_RECORDS : MAX(16u, 2048u / n);
    /* One block: the answer, its hints and message slots. */
    size_t size = sizeof(struct catchup_resp) + (size_t)MAX(n, 1u) * sizeof(uint64_t) +
                  CATCHUP_RECORDS * sizeof(struct msg *);
    struct catchup_resp *resp = calloc(1, size);
    struct queue_read *reads = calloc(MAX(n, 1u), sizeof(*reads));
    struct consumeq_entry *entries = malloc((size_t)MAX(n, 1u) * per_queue * sizeof(*entries));
    struct consumeq_entry *merged = malloc((size_t)MAX(n, 1u) * per_queue * sizeof(*merged));
    if (resp == NULL || reads == NULL || entries == NULL || merged == NULL) {
        /* The home waits for an answer: give the request back (it stays behind, retries). */
        LOG_ERROR("persist", "catchup_oom shard=%u", s->id);
        free(resp);
        free(reads);
        free(entries);
        free(merged);
        if (req->home == s->id)
            catchup_on_failed(s, req);
        else
            shard_post(s, req->home, (struct note){ .kind = NOTE_CATCHUP_FAILED, .ptr = req });
        return;
    }
    resp->hints = (uint64_t *)(resp + 1);
    resp->msgs = (struct msg **)(resp->hints + MAX(n, 1u));
    resp->req = req;
    resp->gc_off = s->persist.gc_off;
    for (uint32_t i = 0; i < n; i++)
        reads[i].entries = entries + (size_t)i * per_queue;
    if (!s->stopping)
        answer(s, req, resp, reads, per_queue, merged);
    free(reads);
    free(entries);
    free(merged);
    s->persist.outstanding++;
    if (req->home == s->id)
        catchup_on_resp(s, resp);
    else
        shard_post(s, req->home, (struct note){ .kind = NOTE_CATCHUP_RESP, .ptr = resp });
}

void catchup_release(struct shard *s, struct catchup_resp *resp)
{
    ASSERT(s->persist.outstanding > 0);
    s->persist.outstanding--;
    for (uint32_t i = 0; i < resp->count; i++)
        msg_release(resp->msgs[i]);
    free(resp);
}

uint32_t catchup_poll(struct shard *s)
{
    struct persist *p = &s->persist;
    uint32_t n = p->local_len;
    if (n == 0)
        return 0;
    /* Answering may queue new local requests: take the current batch first. */
    struct catchup_req *batch[64];
    uint32_t take = MIN(n, 64u);
    memcpy(batch, p->local, take * sizeof(*batch));
    memmove(p->local, p->local + take, (n - take) * sizeof(*p->local));
    p->local_len = n - take;
    for (uint32_t i = 0; i < take; i++)
        catchup_on_req(s, batch[i]);
    return take;
}
