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
#include "core/shared.h"
#include "io/uring.h"
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
    uint32_t subs = MIN(sess->subs.count, CATCHUP_QUEUES_MAX - 1);
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
    uint32_t sub_pos = 0;
    struct subpack_entry sub;
    for (uint32_t i = 0; i < n; i++) {
        req->queue_ids[i] = i < subs && subpack_next(&sess->subs, &sub_pos, &sub)
                                ? persist_filter_queue(sub.filter)
                                : persist_p2p_queue((struct slice){
                                           (const uint8_t *)sess->client_id,
                                           sess->client_id_len });
        req->hints[i] = hint_for(o, req->queue_ids[i]);
    }
    o->mode = ORIGIN_READING;
    s->persist.outstanding++;
    s->persist.stats.catchup_requests++;
    if (origin != s->id)
        shard_post(s, origin, (struct note){ .kind = NOTE_CATCHUP_REQ, .ptr = req });
    else
        catchup_on_req(s, req);
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
        bool is_cursor = shared_is_cursor(sess); /* a shared group's (core/shared.h) */
        if ((sess->conn != NULL || (is_cursor && shared_cursor_wants(s, sess))) &&
            !s->stopping) {
            apply_resp(s, sess, resp);
            if (is_cursor)
                shared_cursor_pump(s, sess);
            else
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

/* One O_DIRECT read of a job: an aligned range of one segment covering some of its records. */
struct catchup_read {
    struct catchup_job *job;
    struct logread_span span;
    uint8_t *buf;            /* RECORD_BLOCK-aligned, span.len bytes */
    int res;                 /* what the read returned */
};

/* An answer waiting for its reads. One allocation: the header, the chosen entries, per entry
 * the index of its read (-1: taken from the hot tail or skipped), and the reads. */
struct catchup_job {
    struct catchup_req *req;
    struct catchup_resp *resp;
    uint32_t count;          /* chosen entries, in log order; resp->msgs[i] is entry i's */
    uint32_t read_count;
    uint32_t reads_pending;
    uint64_t bytes;          /* bytes of its reads (persist.read_bytes) */
    struct consumeq_entry *entries;
    int32_t *read_of;
    struct catchup_read *reads;
};

static int cmp_entry(const void *a, const void *b)
{
    const struct consumeq_entry *x = a;
    const struct consumeq_entry *y = b;
    return x->log_off < y->log_off ? -1 : x->log_off > y->log_off;
}

/* A message (origin-owned) from the verified record at `p` (header `h`); NULL if the record is
 * not a message, its properties do not decode, or memory runs out. */
static struct msg *message_of(struct shard *s, const uint8_t *p, const struct record_header *h,
                              uint64_t log_off)
{
    struct record_message rm;
    struct mqtt_props props = { 0 };
    if (h->type != RECORD_MESSAGE || !record_decode_message(p, h, &rm) ||
        (rm.props.len > 0 && codec_publish_props_decode(rm.props, &props) != MQTT_RC_SUCCESS))
        return NULL;
    struct msg *m = msg_create(rm.topic, rm.payload, rm.props.len > 0 ? &props : NULL,
                               rm.client_id, rm.qos, rm.retain, s->id);
    if (m == NULL)
        return NULL;
    m->time_ns = rm.timestamp_ns;
    m->log_off = log_off;
    m->log_len = h->total_len;
    return m;
}

static void read_failed(struct shard *s, uint64_t log_off, int err)
{
    s->persist.stats.catchup_read_errors++;
    LOG_ERROR("persist", "catchup_read_failed shard=%u log_off=%llu err=%d", s->id,
              (unsigned long long)log_off, err);
}

/* Entry `e` from the log's hot tail: its message, or NULL (counted) when the tail no longer
 * or not yet holds it, or it cannot be read. *cached says whether the tail held it. */
static struct msg *from_tail(struct shard *s, const struct consumeq_entry *e, bool *cached)
{
    struct persist *p = &s->persist;
    *cached = false;
    if (e->record_len > p->read_cap) {
        uint8_t *b = malloc(e->record_len);
        if (b == NULL)
            return NULL;
        free(p->read_buf);
        p->read_buf = b;
        p->read_cap = e->record_len;
    }
    const uint8_t *rec = tailcache_get(&s->log.cache, e->log_off, e->record_len, p->read_buf,
                                       p->read_cap);
    if (rec == NULL)
        return NULL;
    *cached = true;
    p->stats.catchup_cache_hits++;
    struct record_header h;
    if (record_verify(rec, e->record_len, &h) != RECORD_OK) {
        read_failed(s, e->log_off, -EBADMSG);
        return NULL;
    }
    return message_of(s, rec, &h, e->log_off);
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

/* Chooses what `req` gets: merges its queues in log order, keeps the entries past its
 * positions (at most CATCHUP_RECORDS records, CATCHUP_BYTES bytes) in `chosen` and fills
 * resp->at_end, next_off and hints. Returns the number chosen. */
static uint32_t choose(struct shard *s, const struct catchup_req *req, struct catchup_resp *resp,
                       struct queue_read *reads, uint32_t per_queue,
                       struct consumeq_entry *merged, struct consumeq_entry *chosen)
{
    uint64_t from = MAX(MAX(MIN(req->pos0, req->pos1), resp->gc_off),
                        offset_at(&s->persist, req->since_ns));
    uint64_t limit = read_queues(s, req, from, reads, per_queue);
    uint32_t total = 0;
    for (uint32_t i = 0; i < req->queue_count; i++)
        for (int64_t j = 0; j < reads[i].count; j++)
            if (reads[i].entries[j].log_off <= limit)
                merged[total++] = reads[i].entries[j];
    qsort(merged, total, sizeof(*merged), cmp_entry);
    uint64_t next = from;
    uint64_t bytes = 0;
    uint32_t count = 0;
    bool stopped = false;
    for (uint32_t i = 0; i < total; i++) {
        const struct consumeq_entry *e = &merged[i];
        if (i > 0 && e->log_off == merged[i - 1].log_off)
            continue; /* The same record through two queues. */
        if (count == CATCHUP_RECORDS || bytes >= CATCHUP_BYTES) {
            stopped = true;
            break;
        }
        uint64_t end = e->log_off + e->record_len;
        next = MAX(next, end);
        if (e->timestamp_ns < req->since_ns || end <= MIN(req->pos0, req->pos1))
            continue;
        chosen[count++] = *e;
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
    return count;
}

/* Sends the answer of `job` (its messages in resp->msgs[0, count), NULL where a record was
 * skipped) to the home and frees the job. */
static void job_finish(struct shard *s, struct catchup_job *job)
{
    struct catchup_resp *resp = job->resp;
    const struct catchup_req *req = job->req;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < job->count; i++) {
        struct msg *m = resp->msgs[i];
        if (m == NULL)
            continue;
        if (m->log_off + m->log_len <= (m->qos == 0 ? req->pos0 : req->pos1)) {
            msg_release(m); /* Already delivered live (QoS 0 has its own position). */
            continue;
        }
        resp->msgs[kept++] = m;
    }
    resp->count = kept;
    for (uint32_t i = 0; i < job->read_count; i++)
        free(job->reads[i].buf);
    free(job);
    s->persist.outstanding++;
    if (req->home == s->id)
        catchup_on_resp(s, resp);
    else
        shard_post(s, req->home, (struct note){ .kind = NOTE_CATCHUP_RESP, .ptr = resp });
}

/* The reader's span for `e`, submitting prepared reads first when `e` may lie in a segment
 * other than the last span's (opening its file may close a descriptor they use). */
static int span_of(struct shard *s, const struct consumeq_entry *e,
                   const struct logread_span *last, struct logread_span *out)
{
    struct persist *p = &s->persist;
    bool same = last != NULL && e->log_off >= last->seg_base &&
                e->log_off - last->seg_base < last->seg_size;
    if (!same && p->read_unsubmitted) {
        (void)io_uring_submit(&s->ring); /* Errors surface on the loop's own submit. */
        p->read_unsubmitted = false;
    }
    return logread_span(p->reader, e->log_off, e->record_len, out);
}

static void submit_read(struct shard *s, struct catchup_job *job, struct catchup_read *r)
{
    struct io_uring_sqe *sqe = uring_sqe(&s->ring);
    io_uring_prep_read(sqe, r->span.fd, r->buf, r->span.len, r->span.file_off);
    io_uring_sqe_set_data64(sqe, uring_ud_ptr(URING_OP_STORE_READ, r));
    s->persist.read_unsubmitted = true;
    s->persist.stats.catchup_disk_reads++;
    job->reads_pending++;
    job->bytes += r->span.len;
}

/* Plans the O_DIRECT reads of the chosen entries the hot tail did not have (read_of[i] == -2)
 * and submits them. Entries that cannot be read are skipped (logged). */
static void job_plan_reads(struct shard *s, struct catchup_job *job)
{
    struct catchup_read *cur = NULL;
    for (uint32_t i = 0; i < job->count; i++) {
        if (job->read_of[i] != -2)
            continue;
        const struct consumeq_entry *e = &job->entries[i];
        job->read_of[i] = -1;
        if (cur != NULL && e->log_off <= cur->span.log_off + cur->span.len + CATCHUP_READ_GAP &&
            logread_span_join(&cur->span, e->log_off, e->record_len, CATCHUP_READ_MAX)) {
            job->read_of[i] = (int32_t)(cur - job->reads);
            continue;
        }
        struct logread_span span;
        int rc = span_of(s, e, cur != NULL ? &cur->span : NULL, &span);
        if (rc < 0) {
            read_failed(s, e->log_off, rc);
            continue;
        }
        cur = &job->reads[job->read_count++];
        *cur = (struct catchup_read){ .job = job, .span = span };
        job->read_of[i] = (int32_t)(cur - job->reads);
    }
    /* Buffers once the spans are final (joins widen them). */
    for (uint32_t i = 0; i < job->read_count; i++) {
        struct catchup_read *r = &job->reads[i];
        void *buf = NULL;
        if (posix_memalign(&buf, RECORD_BLOCK, r->span.len) != 0) {
            r->res = -ENOMEM;
            continue;
        }
        r->buf = buf;
        submit_read(s, job, r);
    }
    s->persist.read_bytes += job->bytes;
}

/* All reads of `job` are back: turns their records into messages and answers. */
static void job_reads_done(struct shard *s, struct catchup_job *job)
{
    struct persist *p = &s->persist;
    for (uint32_t i = 0; i < job->read_count; i++)
        if (job->reads[i].res < 0)
            read_failed(s, job->reads[i].span.log_off, job->reads[i].res);
    for (uint32_t i = 0; i < job->count; i++) {
        if (job->read_of[i] < 0)
            continue;
        const struct catchup_read *r = &job->reads[job->read_of[i]];
        const struct consumeq_entry *e = &job->entries[i];
        if (r->res < 0)
            continue;
        struct record_header h;
        ssize_t n = logread_pick(p->reader, &r->span, r->buf, (uint32_t)r->res, e->log_off, &h);
        if (n < 0) {
            read_failed(s, e->log_off, (int)n);
            continue;
        }
        job->resp->msgs[i] = message_of(s, r->buf + (e->log_off - r->span.log_off), &h,
                                        e->log_off);
    }
    ASSERT(p->read_bytes >= job->bytes && p->jobs > 0);
    p->read_bytes -= job->bytes;
    p->jobs--;
    job_finish(s, job);
}

void catchup_on_read(struct shard *s, struct catchup_read *r, int res)
{
    struct catchup_job *job = r->job;
    ASSERT(job->reads_pending > 0);
    r->res = res;
    job->reads_pending--;
    if (job->reads_pending == 0)
        job_reads_done(s, job);
}

/* The home waits for an answer it will not get: give the request back (it stays behind and
 * asks again). */
static void give_back(struct shard *s, struct catchup_req *req)
{
    LOG_ERROR("persist", "catchup_oom shard=%u", s->id);
    if (req->home == s->id)
        catchup_on_failed(s, req);
    else
        shard_post(s, req->home, (struct note){ .kind = NOTE_CATCHUP_FAILED, .ptr = req });
}

/* Answers `req`: chooses its records, takes those the hot tail holds, reads the others. */
static void answer(struct shard *s, struct catchup_req *req)
{
    struct persist *p = &s->persist;
    uint32_t n = req->queue_count;
    uint32_t per_queue = n <= 8 ? CATCHUP_RECORDS : MAX(16u, 2048u / n);
    /* The answer with its hints and message slots; the job with its entries and reads. */
    size_t size = sizeof(struct catchup_resp) + (size_t)MAX(n, 1u) * sizeof(uint64_t) +
                  CATCHUP_RECORDS * sizeof(struct msg *);
    struct catchup_resp *resp = calloc(1, size);
    struct catchup_job *job =
        calloc(1, sizeof(*job) + CATCHUP_RECORDS * (sizeof(struct consumeq_entry) +
                                                    sizeof(int32_t) +
                                                    sizeof(struct catchup_read)));
    struct queue_read *reads = calloc(MAX(n, 1u), sizeof(*reads));
    struct consumeq_entry *entries = malloc((size_t)MAX(n, 1u) * per_queue * sizeof(*entries));
    struct consumeq_entry *merged = malloc((size_t)MAX(n, 1u) * per_queue * sizeof(*merged));
    if (resp == NULL || job == NULL || reads == NULL || entries == NULL || merged == NULL) {
        free(resp);
        free(job);
        free(reads);
        free(entries);
        free(merged);
        give_back(s, req);
        return;
    }
    resp->hints = (uint64_t *)(resp + 1);
    resp->msgs = (struct msg **)(resp->hints + MAX(n, 1u));
    resp->req = req;
    resp->gc_off = p->gc_off;
    job->req = req;
    job->resp = resp;
    job->reads = (struct catchup_read *)(job + 1);
    job->entries = (struct consumeq_entry *)(job->reads + CATCHUP_RECORDS);
    job->read_of = (int32_t *)(job->entries + CATCHUP_RECORDS);
    for (uint32_t i = 0; i < n; i++)
        reads[i].entries = entries + (size_t)i * per_queue;
    if (!s->stopping)
        job->count = choose(s, req, resp, reads, per_queue, merged, job->entries);
    free(reads);
    free(entries);
    free(merged);
    bool need_disk = false;
    for (uint32_t i = 0; i < job->count; i++) {
        bool cached;
        resp->msgs[i] = from_tail(s, &job->entries[i], &cached);
        job->read_of[i] = cached ? -1 : -2;
        need_disk |= !cached;
    }
    if (!need_disk) {
        job_finish(s, job);
        return;
    }
    p->jobs++;
    job_plan_reads(s, job);
    if (job->reads_pending == 0)
        job_reads_done(s, job); /* Nothing could be read: answer with what the tail had. */
}

void catchup_on_req(struct shard *s, struct catchup_req *req)
{
    ASSERT(req->origin == s->id);
    struct persist *p = &s->persist;
    if (p->queue_len == p->queue_cap) {
        uint32_t cap = p->queue_cap ? p->queue_cap * 2 : 16;
        struct catchup_req **q = realloc(p->queue, cap * sizeof(*q));
        if (q == NULL) {
            give_back(s, req);
            return;
        }
        p->queue = q;
        p->queue_cap = cap;
    }
    p->queue[p->queue_len++] = req;
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
    /* Answering may queue new requests (a local answer lets its session ask again): take the
     * current ones only. Reads in flight are bounded; the rest waits for their completions. */
    uint32_t take = 0;
    uint32_t n = p->queue_len;
    while (take < n && (p->jobs == 0 || p->read_bytes < CATCHUP_READ_BYTES_MAX))
        answer(s, p->queue[take++]);
    if (take > 0) {
        memmove(p->queue, p->queue + take, (p->queue_len - take) * sizeof(*p->queue));
        p->queue_len -= take;
    }
    return take;
}
