/* core/persist.c - the index, the filter registry, the session journal and catch-up of one
 * shard (core/persist.h). Shard thread only.
 */
#include "core/persist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/catchup.h"
#include "core/codec_props.h"
#include "core/dispatch.h"
#include "core/iot.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/recovery.h"
#include "core/retain.h"
#include "core/session.h"
#include "core/shard.h"
#include "core/shared.h"
#include "core/subtree.h"
#include "core/topic.h"
#include "io/uring.h"
#include "store/consumeq.h"
#include "store/journal.h"
#include "store/logread.h"
#include "store/retention.h"
#include "store/segment.h"

#define REGISTRY_MIN 64u
#define READ_BUF_MIN 65536u

/* ---- Registry ---------------------------------------------------------------------------- */

static struct persist_filter **registry_slot(struct persist *p, uint64_t qid)
{
    for (uint32_t i = (uint32_t)qid & p->table_mask;; i = (i + 1) & p->table_mask) {
        struct persist_filter **e = &p->table[i];
        if (*e == NULL || (*e)->queue_id == qid)
            return e;
    }
}

static int registry_grow(struct persist *p)
{
    uint32_t cap = p->table == NULL ? REGISTRY_MIN : (p->table_mask + 1) * 2;
    struct persist_filter **old = p->table;
    uint32_t old_cap = old == NULL ? 0 : p->table_mask + 1;
    p->table = calloc(cap, sizeof(*p->table));
    if (p->table == NULL) {
        p->table = old;
        return -ENOMEM;
    }
    p->table_mask = cap - 1;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i] != NULL)
            *registry_slot(p, old[i]->queue_id) = old[i];
    free(old);
    return 0;
}

/* Applies `delta` holders to `filter` on this shard: the filter's queue exists (and the filter
 * is matched at append) while it has holders. Entries stay in the table at 0 holders. */
static void registry_apply(struct shard *s, struct slice filter, int32_t delta)
{
    struct persist *p = &s->persist;
    uint64_t qid = consumeq_queue_id(CONSUMEQ_KIND_FILTER, filter);
    if (p->table == NULL || (p->filter_count + 1) * 4 > (p->table_mask + 1) * 3) {
        if (registry_grow(p) != 0) {
            LOG_ERROR("persist", "registry_oom filter_len=%u", filter.len);
            return;
        }
    }
    struct persist_filter **slot = registry_slot(p, qid);
    struct persist_filter *f = *slot;
    if (f == NULL) {
        if (delta <= 0)
            return;
        f = calloc(1, sizeof(*f));
        if (f == NULL) {
            LOG_ERROR("persist", "registry_oom filter_len=%u", filter.len);
            return;
        }
        *f = (struct persist_filter){ .queue_id = qid };
        *slot = f;
        p->filter_count++;
    }
    uint32_t before = f->holders;
    if (delta < 0 && (uint32_t)-delta > f->holders)
        f->holders = 0;
    else
        f->holders = (uint32_t)((int64_t)f->holders + delta);
    if (before == 0 && f->holders > 0) {
        if (subtree_mark_set(s->subs, filter, f) < 0 ||
            (p->index != NULL && consumeq_create(p->index, qid) < 0))
            LOG_ERROR("persist", "filter_queue_failed filter=%.*s", (int)filter.len,
                      (const char *)filter.ptr);
    } else if (before > 0 && f->holders == 0) {
        (void)subtree_mark_clear(s->subs, filter); /* Set when it got its first holder. */
        if (p->index != NULL)
            (void)consumeq_drop(p->index, qid); /* -ENOENT only if the create had failed. */
    }
}

uint64_t persist_filter_queue(struct slice filter)
{
    return codec_has_wildcard(filter) ? consumeq_queue_id(CONSUMEQ_KIND_FILTER, filter)
                                      : consumeq_queue_id(CONSUMEQ_KIND_TOPIC, filter);
}

void persist_filter_hold(struct shard *s, struct slice filter, int32_t delta)
{
    if (!codec_has_wildcard(filter))
        return; /* An exact filter reads its topic's queue, which always exists. */
    if (shared_filter_is_shared((const char *)filter.ptr, filter.len))
        return; /* Routed by its group's owner, not read from the log (core/shared.h). */
    registry_apply(s, filter, delta);
    if (s->count == 1)
        return;
    struct persist_filter_note *n = malloc(sizeof(*n) + filter.len);
    if (n == NULL) {
        LOG_ERROR("persist", "filter_note_oom filter_len=%u", filter.len);
        return;
    }
    n->refs = s->count - 1u;
    n->delta = delta;
    n->filter_len = (uint16_t)filter.len;
    memcpy(n->filter, filter.ptr, filter.len);
    for (uint16_t i = 0; i < s->count; i++)
        if (i != s->id)
            shard_post(s, i, (struct note){ .kind = NOTE_FILTER, .ptr = n });
}

void persist_on_filter_note(struct shard *s, const struct persist_filter_note *n)
{
    registry_apply(s, (struct slice){ (const uint8_t *)n->filter, n->filter_len }, n->delta);
}

void persist_filter_note_release(struct persist_filter_note *n)
{
    ASSERT(n->refs > 0);
    if (--n->refs == 0)
        free(n);
}

/* ---- Indexing ---------------------------------------------------------------------------- */

struct qid_collect {
    uint64_t *ids;
    uint32_t count;
    uint32_t cap;
};

static void collect_filter(void *ctx, void *owner, uint8_t options, uint32_t sub_id)
{
    (void)options;
    (void)sub_id;
    struct qid_collect *c = ctx;
    const struct persist_filter *f = owner;
    if (c->count < c->cap)
        c->ids[c->count++] = f->queue_id;
}

uint64_t persist_p2p_queue(struct slice client_id)
{
    return consumeq_queue_id(CONSUMEQ_KIND_P2P, client_id);
}

/* The queues a record of `topic` goes to: its topic's, then every registered filter's; a P2P
 * message (mqtt.p2p, core/iot.h) only its target's P2P queue, as no subscription reads it. */
static uint32_t queues_of(const struct shard *s, struct slice topic, uint64_t *ids,
                          uint32_t cap)
{
    const struct persist *p = &s->persist;
    struct slice target;
    if (s->cfg->p2p && iot_p2p_target(topic, &target)) {
        ids[0] = persist_p2p_queue(target);
        return 1;
    }
    struct qid_collect c = { ids, 1, cap };
    ids[0] = consumeq_queue_id(CONSUMEQ_KIND_TOPIC, topic);
    if (p->filter_count > 0)
        subtree_match_marks(s->subs, topic, collect_filter, &c);
    return c.count;
}

/* Room for one more pending record with `qids` queue ids. Both FIFOs slide back to the
 * start when at most half full (so a slide moves at most as many entries as were consumed
 * since the last one) and grow otherwise. */
static bool pending_reserve(struct persist *p, uint32_t qids)
{
    if (p->pending_head + p->pending_len == p->pending_cap) {
        if (p->pending_head > 0 && p->pending_len <= p->pending_cap / 2) {
            memmove(p->pending, p->pending + p->pending_head, p->pending_len * sizeof(*p->pending));
            p->pending_head = 0;
        } else {
            uint32_t cap = p->pending_cap ? p->pending_cap * 2 : 1024;
            struct persist_pending *n = realloc(p->pending, cap * sizeof(*n));
            if (n == NULL)
                return false;
            p->pending = n;
            p->pending_cap = cap;
        }
    }
    if (p->qids_head + p->qids_len + qids > p->qids_cap) {
        if (p->qids_head > 0 && p->qids_len + qids <= p->qids_cap / 2) {
            memmove(p->pending_qids, p->pending_qids + p->qids_head,
                    p->qids_len * sizeof(*p->pending_qids));
            p->qids_head = 0;
        }
        if (p->qids_head + p->qids_len + qids > p->qids_cap) {
            uint32_t cap = MAX(p->qids_cap * 2, p->qids_head + p->qids_len + qids + 1024);
            uint64_t *n = realloc(p->pending_qids, cap * sizeof(*n));
            if (n == NULL)
                return false;
            p->pending_qids = n;
            p->qids_cap = cap;
        }
    }
    return true;
}

void persist_on_append(struct shard *s, const struct msg *m)
{
    struct persist *p = &s->persist;
    if (m->qos == 0)
        return; /* QoS 0 is not indexed: nobody reads it back (see the header). */
    uint64_t ids[CONSUMEQ_RECORD_QUEUES_MAX];
    uint32_t n = queues_of(s, m->topic, ids, CONSUMEQ_RECORD_QUEUES_MAX);
    if (!pending_reserve(p, n)) {
        p->stats.index_errors++;
        LOG_ERROR("persist", "index_oom log_off=%llu", (unsigned long long)m->log_off);
        return;
    }
    p->pending[p->pending_head + p->pending_len++] = (struct persist_pending){
        .log_off = m->log_off, .timestamp_ns = m->time_ns, .record_len = m->log_len,
        .topic_hash = consumeq_topic_hash(m->topic), .queue_count = n,
    };
    memcpy(p->pending_qids + p->qids_head + p->qids_len, ids, n * sizeof(*ids));
    p->qids_len += n;
}

void persist_on_visible(struct shard *s)
{
    struct persist *p = &s->persist;
    uint64_t visible = commitlog_visible_off(&s->log);
    while (p->pending_len > 0) {
        struct persist_pending *e = &p->pending[p->pending_head];
        if (e->log_off + e->record_len > visible)
            break;
        struct consumeq_record rec = { .log_off = e->log_off, .timestamp_ns = e->timestamp_ns,
                                       .record_len = e->record_len,
                                       .topic_hash = e->topic_hash };
        for (uint32_t i = 0; i < e->queue_count; i++) {
            uint64_t qoff;
            int rc = consumeq_append(p->index, p->pending_qids[p->qids_head + i], &rec, &qoff);
            if (rc < 0) {
                p->stats.index_errors++;
                LOG_ERROR("persist", "index_append_failed log_off=%llu err=%d",
                          (unsigned long long)e->log_off, rc);
                break;
            }
        }
        p->stats.indexed++;
        p->qids_head += e->queue_count;
        p->qids_len -= e->queue_count;
        p->pending_head++;
        p->pending_len--;
    }
    if (p->pending_len == 0) {
        p->pending_head = 0;
        p->qids_head = 0;
    }
    p->indexed_off = MAX(p->indexed_off, visible);
}

/* Everything below it was given to the index (the checkpoint a flush may claim). */
static uint64_t covered_off(const struct shard *s)
{
    const struct persist *p = &s->persist;
    if (p->pending_len > 0)
        return MIN(p->indexed_off, p->pending[p->pending_head].log_off);
    return p->indexed_off;
}

/* ---- Open, replay, close ----------------------------------------------------------------- */

struct replay_ctx {
    struct shard *s;
    uint64_t records;
};

static int replay_record(void *ctx, uint64_t off, const uint8_t *rp,
                         const struct record_header *h)
{
    struct replay_ctx *rc = ctx;
    struct persist *p = &rc->s->persist;
    if (h->type != RECORD_MESSAGE)
        return 0;
    struct record_message rm;
    if (!record_decode_message(rp, h, &rm) || !topic_name_valid(rm.topic))
        return 0; /* Recovery reported it already; nothing to index. */
    if (rm.qos == 0)
        return 0; /* Not indexed, as live (persist_on_append): the same queue offsets. */
    uint64_t ids[CONSUMEQ_RECORD_QUEUES_MAX];
    uint32_t n = queues_of(rc->s, rm.topic, ids, CONSUMEQ_RECORD_QUEUES_MAX);
    struct consumeq_record rec = { .log_off = off, .timestamp_ns = rm.timestamp_ns,
                                   .record_len = h->total_len,
                                   .topic_hash = consumeq_topic_hash(rm.topic) };
    for (uint32_t i = 0; i < n; i++) {
        uint64_t qoff;
        int err = consumeq_append(p->index, ids[i], &rec, &qoff);
        if (err < 0)
            return err;
    }
    rc->records++;
    return 0;
}

static void index_report(void *ctx, const char *line)
{
    const struct shard *s = ctx;
    LOG_ERROR("persist", "shard=%u index: %s", s->id, line);
}

static void register_restored_filters(struct shard *s)
{
    const struct recovery *r = s->set->recovery;
    for (uint32_t i = 0; i < r->session_count; i++) {
        const struct recovery_session *rs = &r->sessions[i];
        if (!recovery_session_live(rs))
            continue;
        struct journal_entry e;
        if (journal_decode((struct slice){ rs->state, rs->state_len }, &e) != 0)
            continue;
        uint32_t pos = 0;
        struct journal_sub sub;
        while (journal_sub_next(&e, &pos, &sub))
            if (codec_has_wildcard(sub.filter))
                registry_apply(s, sub.filter, +1);
    }
}

static int open_index(struct shard *s, const char *dir, struct consumeq_open_info *info)
{
    struct consumeq_config qc = { .dir = dir, .report = index_report, .report_ctx = s };
    int rc = consumeq_open(&qc, &s->persist.index, info);
    if (rc == -EBADMSG) {
        LOG_WARN("persist", "index_rebuild shard=%u reason=corrupt", s->id);
        rc = consumeq_wipe(dir, index_report, s);
        if (rc == 0)
            rc = consumeq_open(&qc, &s->persist.index, info);
    }
    return rc;
}

int persist_open(struct shard *s)
{
    struct persist *p = &s->persist;
    char log_dir[COMMITLOG_DIR_MAX];
    char dir[COMMITLOG_DIR_MAX + 16];
    snprintf(log_dir, sizeof(log_dir), "%s/shard-%u", s->cfg->store_dir, s->id);
    snprintf(dir, sizeof(dir), "%s/index", log_dir);
    p->read_buf = malloc(READ_BUF_MIN);
    p->read_cap = READ_BUF_MIN;
    if (p->read_buf == NULL)
        return -ENOMEM;
    int rc = segment_dir_ensure(dir);
    struct consumeq_open_info info = { 0 };
    if (rc == 0)
        rc = open_index(s, dir, &info);
    if (rc < 0) {
        LOG_ERROR("persist", "index_open_failed shard=%u dir=%s err=%d (%s)", s->id, dir, rc,
                  strerror(-rc));
        return rc;
    }
    const struct recovery_shard *rsh = &s->set->recovery->shards[s->id];
    uint64_t start = rsh->scan.start_off;
    uint64_t end = rsh->end_off;
    if (info.covered_off > end) {
        /* The index claims records the log does not hold (a power loss with store.flush =
         * async): it cannot be trusted. */
        LOG_WARN("persist", "index_rebuild shard=%u reason=ahead_of_log covered=%llu end=%llu",
                 s->id, (unsigned long long)info.covered_off, (unsigned long long)end);
        consumeq_close(p->index);
        p->index = NULL;
        rc = consumeq_wipe(dir, index_report, s);
        if (rc == 0)
            rc = open_index(s, dir, &info);
        if (rc < 0)
            return rc;
    }
    consumeq_set_gc(p->index, start);
    p->gc_off = start;
    register_restored_filters(s);
    uint64_t from = MAX(info.covered_off, start);
    uint64_t t0 = base_now_ms();
    struct replay_ctx ctx = { .s = s };
    if (from < end) {
        struct segment_scan scan;
        char err[256];
        rc = segment_scan(log_dir, from, replay_record, &ctx, NULL, &scan, err, sizeof(err));
        if (rc != 0) {
            LOG_ERROR("persist", "index_replay_failed shard=%u err=%d %s", s->id, rc, err);
            return rc < 0 ? rc : -EIO;
        }
    }
    p->indexed_off = end;
    rc = logread_open(log_dir, &p->reader);
    if (rc < 0)
        return rc;
    /* From here on (the loop runs) index runs are published through the ring. */
    consumeq_attach_ring(p->index, &s->ring, uring_ud(URING_OP_INDEX_PUB, 0, 0));
    LOG_INFO("persist",
             "index_open shard=%u runs=%u entries=%llu queues=%llu covered=%llu replayed=%llu "
             "filters=%u ms=%llu",
             s->id, info.run_count, (unsigned long long)info.entry_count,
             (unsigned long long)info.queue_count, (unsigned long long)info.covered_off,
             (unsigned long long)ctx.records, p->filter_count,
             (unsigned long long)(base_now_ms() - t0));
    return 0;
}

/* Drops the references of the retained phase (a snapshot that ends, restarts or is given up). */
static void snapshot_retained_release(struct persist *p)
{
    for (uint32_t i = p->snapshot_retained_next; i < p->snapshot_retained_count; i++)
        msg_release(p->snapshot_retained[i]);
    p->snapshot_retained_count = 0;
    p->snapshot_retained_next = 0;
    p->snapshot_in_retained = false;
}

void persist_close(struct shard *s)
{
    struct persist *p = &s->persist;
    snapshot_retained_release(p);
    free(p->snapshot_retained);
    p->snapshot_retained = NULL;
    p->snapshot_retained_cap = 0;
    if (p->stats.catchup_requests > 0 || p->stats.catchup_disk_reads > 0)
        LOG_INFO("persist",
                 "catchup_stats shard=%u requests=%llu records=%llu cache_hits=%llu "
                 "disk_reads=%llu read_errors=%llu lost_below_watermark=%llu", s->id,
                 (unsigned long long)p->stats.catchup_requests,
                 (unsigned long long)p->stats.catchup_records,
                 (unsigned long long)p->stats.catchup_cache_hits,
                 (unsigned long long)p->stats.catchup_disk_reads,
                 (unsigned long long)p->stats.catchup_read_errors,
                 (unsigned long long)p->stats.lost_below_watermark);
    if (p->index != NULL) {
        consumeq_attach_ring(p->index, NULL, 0); /* the loop is over: publish with blocking calls */
        int rc = consumeq_flush(p->index, covered_off(s));
        if (rc < 0)
            LOG_WARN("persist", "index_flush_failed shard=%u err=%d (replayed at start)", s->id,
                     rc);
        consumeq_close(p->index);
    }
    if (p->reader != NULL)
        logread_close(p->reader);
    if (s->subs != NULL)
        subtree_marks_clear(s->subs); /* they point at the entries freed here */
    if (p->table != NULL) {
        for (uint32_t i = 0; i <= p->table_mask; i++) {
            if (p->table[i] != NULL)
                free(p->table[i]);
        }
        free(p->table);
    }
    for (uint32_t i = 0; i < p->queue_len; i++)
        free(p->queue[i]);
    free(p->queue);
    free(p->pending);
    free(p->pending_qids);
    free(p->read_buf);
    memset(p, 0, sizeof(*p));
}

/* ---- Journal ----------------------------------------------------------------------------- */

static uint64_t journal_append(struct shard *s, struct session *sess,
                               const struct journal_entry *e)
{
    /* Most bodies (CURSOR, END, REL, OUT, small STATEs) fit on the stack; the log copies them. */
    uint8_t small[512];
    uint32_t len = journal_body_len(e);
    uint8_t *body = len <= sizeof(small) ? small : malloc(len);
    if (body == NULL) {
        s->persist.stats.journal_full++;
        LOG_ERROR("persist", "journal_oom client=%s kind=%u", sess->client_id, e->kind);
        return 0;
    }
    uint32_t n = journal_encode(e, body);
    ASSERT(n == len);
    int64_t off = commitlog_append_typed(&s->log, RECORD_SESSION, (struct slice){ body, len });
    if (body != small)
        free(body);
    if (off < 0) {
        s->persist.stats.journal_full++;
        LOG_ERROR("persist", "journal_append_failed client=%s kind=%u err=%d", sess->client_id,
                  e->kind, (int)off);
        return 0;
    }
    s->persist.stats.journal_records++;
    return (uint64_t)off + record_body_len(len);
}

static struct journal_entry entry_for(const struct session *sess, uint8_t kind)
{
    return (struct journal_entry){
        .kind = kind, .time_ns = base_wall_ns(),
        .client_id = { (const uint8_t *)sess->client_id, sess->client_id_len },
    };
}

uint64_t persist_journal_state(struct shard *s, struct session *sess)
{
    struct journal_sub *subs = NULL;
    if (sess->subs.count > 0) {
        subs = malloc(sess->subs.count * sizeof(*subs));
        if (subs == NULL) {
            LOG_ERROR("persist", "journal_oom client=%s", sess->client_id);
            return 0;
        }
    }
    uint32_t pos = 0;
    struct subpack_entry sub;
    for (uint32_t i = 0; subpack_next(&sess->subs, &pos, &sub); i++)
        subs[i] = (struct journal_sub){
            .filter = sub.filter, .options = sub.options, .sub_id = sub.sub_id,
        };
    struct journal_entry e = entry_for(sess, JOURNAL_STATE);
    e.mqtt_version = sess->version;
    e.expiry_s = sess->expiry_s;
    e.since_ns = sess->since_ns;
    e.sub_count = sess->subs.count;
    e.subs = subs;
    uint64_t end = 0;
    if (journal_fits(&e))
        end = journal_append(s, sess, &e);
    else
        LOG_ERROR("persist", "journal_state_too_large client=%s subs=%u", sess->client_id,
                  sess->subs.count);
    free(subs);
    return end;
}

uint64_t persist_journal_will(struct shard *s, struct session *sess)
{
    struct journal_entry e = entry_for(sess, JOURNAL_WILL);
    uint8_t *record = NULL;
    const struct msg *m = session_will(sess);
    if (m != NULL) {
        struct record_message r = {
            .timestamp_ns = m->time_ns, .qos = m->qos, .retain = m->retain, .topic = m->topic,
            .client_id = m->client_id, .props = m->props.raw, .payload = m->payload,
        };
        uint32_t len = record_message_len(&r);
        record = malloc(len);
        if (record == NULL) {
            LOG_ERROR("persist", "journal_oom client=%s kind=will", sess->client_id);
            return 0;
        }
        (void)record_encode_message(&r, record);
        const struct session_cold *cold = sess->cold; /* holds the will */
        uint64_t left_ms = cold->will_due_ms > s->now_ms ? cold->will_due_ms - s->now_ms : 0;
        e.will_record = (struct slice){ record, len };
        e.will_delay_s = cold->will_delay_s;
        e.will_due_ns = e.time_ns + left_ms * 1000000u;
    }
    uint64_t end = 0;
    if (journal_fits(&e))
        end = journal_append(s, sess, &e);
    else
        LOG_ERROR("persist", "journal_will_too_large client=%s", sess->client_id);
    free(record);
    return end;
}

uint64_t persist_journal_cursor(struct shard *s, struct session *sess)
{
    if (sess->origins == NULL)
        return 0;
    struct journal_pos pos[SHARD_MAX];
    uint64_t pos1[SHARD_MAX];
    for (uint16_t i = 0; i < s->count; i++)
        session_origin_positions(sess, i, &pos[i].pos0, &pos1[i]);
    if (shared_is_cursor(sess))
        shared_cursor_floor(s, sess, pos1); /* What its group keeps in memory. */
    for (uint16_t i = 0; i < s->count; i++)
        pos[i].pos1 = pos1[i];
    struct journal_entry e = entry_for(sess, JOURNAL_CURSOR);
    e.shard_count = s->count;
    e.pos = pos;
    sess->cursor_dirty = false;
    return journal_append(s, sess, &e);
}

uint64_t persist_journal_end(struct shard *s, struct session *sess)
{
    struct journal_entry e = entry_for(sess, JOURNAL_END);
    return journal_append(s, sess, &e);
}

uint64_t persist_journal_rel(struct shard *s, struct session *sess, uint16_t packet_id)
{
    struct journal_entry e = entry_for(sess, JOURNAL_REL);
    e.packet_id = packet_id;
    return journal_append(s, sess, &e);
}

uint64_t persist_journal_out(struct shard *s, struct session *sess, uint16_t packet_id,
                             uint8_t state, uint16_t origin, uint64_t log_off)
{
    struct journal_entry e = entry_for(sess, JOURNAL_OUT);
    e.packet_id = packet_id;
    e.out_state = state;
    e.origin_shard = origin;
    e.log_off = log_off;
    return journal_append(s, sess, &e);
}

/* ---- Retention --------------------------------------------------------------------------- */

struct collect_ctx {
    struct shard *s;
    bool ok;
};

static void collect_retained(void *ctx, struct slice topic, void *value)
{
    (void)topic;
    struct collect_ctx *cc = ctx;
    struct persist *p = &cc->s->persist;
    struct msg *m = value;
    if (!cc->ok || m->origin_shard != cc->s->id || m->payload.len == 0)
        return;
    if (p->snapshot_retained_count == p->snapshot_retained_cap) {
        uint32_t cap = p->snapshot_retained_cap ? p->snapshot_retained_cap * 2 : 1024;
        struct msg **grown = realloc(p->snapshot_retained, (size_t)cap * sizeof(*grown));
        if (grown == NULL) {
            cc->ok = false;
            return;
        }
        p->snapshot_retained = grown;
        p->snapshot_retained_cap = cap;
    }
    p->snapshot_retained[p->snapshot_retained_count++] = msg_ref(m);
}

/* Starts a snapshot (see the header): persist_step writes the sessions, then the retained
 * messages this shard published. */
static void start_snapshot(struct shard *s)
{
    struct persist *p = &s->persist;
    snapshot_retained_release(p);
    p->snapshot_running = true;
    p->snapshot_from = s->log.append_off;
    p->snapshot_routed = false;
    p->snapshot_bucket = 0;
    p->snapshot_mask = session_table_mask(s->sessions);
    p->snapshot_steps = 0;
}

/* Rewrites up to PERSIST_SNAPSHOT_RETAINED_STEP of the collected retained messages (fewer once
 * PERSIST_SNAPSHOT_RETAINED_BYTES of payload: live publishers share the log). Each one
 * that is no longer its topic's retained message is skipped: what replaced or cleared it is
 * in the log after the snapshot's start (and recovery keeps the newest update of a topic by
 * its time, so the old one would only cost bytes). Returns 1 when all are written, 0 to go on
 * at the next step (also when the log is full: the disk catches up first), or -errno (given
 * up). */
static int rewrite_retained_step(struct shard *s)
{
    struct persist *p = &s->persist;
    uint64_t bytes = 0;
    for (uint32_t n = 0; n < PERSIST_SNAPSHOT_RETAINED_STEP &&
                         bytes < PERSIST_SNAPSHOT_RETAINED_BYTES &&
                         p->snapshot_retained_next < p->snapshot_retained_count;
         n++) {
        struct msg *m = p->snapshot_retained[p->snapshot_retained_next];
        bytes += m->payload.len;
        if (retain_get(s->retained, m->topic) == m) {
            struct record_message r = {
                .timestamp_ns = m->time_ns, .qos = m->qos, .retain = true, .topic = m->topic,
                .client_id = m->client_id, .props = m->props.raw, .payload = m->payload,
            };
            int64_t rc = commitlog_append_message(&s->log, &r);
            if (rc == -ENOBUFS)
                return 0;
            if (rc < 0)
                return (int)rc;
        }
        msg_release(m);
        p->snapshot_retained_next++;
    }
    return p->snapshot_retained_next == p->snapshot_retained_count;
}

/* A step of the running snapshot: sessions, then retained messages. Returns true when it
 * did some work and goes on (the loop comes back at once); false when it ended or waits for
 * the disk (whose completion wakes the loop). */
static bool snapshot_step(struct shard *s)
{
    struct persist *p = &s->persist;
    if (!p->snapshot_routed) {
        /* Nothing below snapshot_from may be missing from memory (core/persist.h). */
        if (!dispatch_routed_below(s, p->snapshot_from))
            return false;
        p->snapshot_routed = true;
    }
    if (!commitlog_has_room(&s->log))
        return false; /* The disk is behind: its completion wakes the loop. */
    p->snapshot_steps++;
    if (!p->snapshot_in_retained) {
        int rc = session_journal_step(s, &p->snapshot_bucket, p->snapshot_mask,
                                      PERSIST_SNAPSHOT_STEP);
        if (rc == -EAGAIN) { /* The table grew: sessions moved between buckets. */
            start_snapshot(s);
            return true;
        }
        if (rc <= 0)
            return true; /* More, or refused: that bucket again on the next step. */
        struct collect_ctx cc = { s, true };
        retain_walk_all(s->retained, collect_retained, &cc);
        p->snapshot_in_retained = true;
        if (!cc.ok) {
            snapshot_retained_release(p);
            p->snapshot_running = false;
            LOG_WARN("persist", "snapshot_deferred shard=%u reason=out_of_memory", s->id);
            return false; /* apply_retention starts another. */
        }
    }
    int rc = rewrite_retained_step(s);
    if (rc == 0)
        return true;
    snapshot_retained_release(p);
    p->snapshot_running = false;
    if (rc < 0) {
        LOG_WARN("persist", "snapshot_deferred shard=%u reason=%s", s->id, strerror(-rc));
        return false; /* apply_retention starts another. */
    }
    p->snapshot_pending = true;
    p->snapshot_pending_off = p->snapshot_from;
    p->snapshot_end = s->log.append_off;
    LOG_INFO("persist", "snapshot shard=%u from=%llu bytes=%llu steps=%u", s->id,
             (unsigned long long)p->snapshot_from,
             (unsigned long long)(p->snapshot_end - p->snapshot_from), p->snapshot_steps);
    return false;
}

static void apply_retention(struct shard *s)
{
    struct persist *p = &s->persist;
    if (p->snapshot_pending && s->log.durable_off >= p->snapshot_end) {
        p->snapshot_pending = false;
        p->snapshot_off = p->snapshot_pending_off;
    }
    /* A new snapshot once the log grew past the last one's end by a segment, and by at least
     * the last one's size: a snapshot larger than a segment (many retained messages) would
     * otherwise start the next one itself, and rewrite everything again and again. */
    uint64_t last_end = MAX(p->snapshot_end, MAX(p->snapshot_off, p->gc_off));
    uint64_t last_size = p->snapshot_end > p->snapshot_pending_off
                             ? p->snapshot_end - p->snapshot_pending_off : 0;
    if (!p->snapshot_pending && !p->snapshot_running &&
        s->log.append_off - last_end > MAX(s->log.segment_bytes, last_size))
        start_snapshot(s);
    if (s->log.old_fd >= 0)
        return; /* A roll's last write to the previous segment is in flight. */
    struct retention_policy policy = retention_policy_from_config(s->cfg);
    if (policy.max_bytes == 0 && policy.max_age_ns == 0)
        return;
    char dir[COMMITLOG_DIR_MAX];
    snprintf(dir, sizeof(dir), "%s/shard-%u", s->cfg->store_dir, s->id);
    uint64_t start = p->gc_off;
    int n = retention_apply(dir, s->log.seg_base, s->log.append_off, &policy, base_wall_ns(),
                            p->snapshot_off, &start);
    if (n < 0) {
        LOG_ERROR("persist", "retention_failed shard=%u err=%d (%s)", s->id, n, strerror(-n));
        return;
    }
    if (n == 0 || start <= p->gc_off)
        return;
    LOG_INFO("persist", "retention shard=%u deleted_segments=%d watermark=%llu", s->id, n,
             (unsigned long long)start);
    p->gc_off = start;
    consumeq_set_gc(p->index, start);
    logread_forget_below(p->reader, start);
}

/* ---- Tick -------------------------------------------------------------------------------- */

void persist_tick(struct shard *s)
{
    struct persist *p = &s->persist;
    catchup_take_mark(s);
    if (s->now_ms >= p->next_retention_ms) {
        apply_retention(s);
        /* A snapshot in flight completes within a few writes: look again soon. */
        p->next_retention_ms = s->now_ms + (p->snapshot_pending || p->snapshot_running
                                                ? 250u : RETENTION_INTERVAL_MS);
    }
    if (s->now_ms >= p->next_cursor_ms) {
        p->next_cursor_ms = s->now_ms + PERSIST_CURSOR_MS;
        session_journal_cursors(s);
    }
    if (s->now_ms >= p->next_flush_ms && p->index != NULL) {
        p->next_flush_ms = s->now_ms + PERSIST_INDEX_FLUSH_MS;
        int rc = consumeq_flush(p->index, covered_off(s));
        if (rc == 0)
            rc = consumeq_compact_start(p->index); /* persist_step carries it out */
        if (rc < 0)
            LOG_WARN("persist", "index_flush_failed shard=%u err=%d", s->id, rc);
    }
}

uint32_t persist_step(struct shard *s)
{
    if (s->persist.index == NULL)
        return 0;
    bool snapshot = s->persist.snapshot_running && !s->stopping && snapshot_step(s);
    int rc = consumeq_compact_step(s->persist.index);
    if (rc < 0)
        LOG_WARN("persist", "index_compaction_failed shard=%u err=%d", s->id, rc);
    return rc > 0 || snapshot;
}
