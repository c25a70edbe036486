/* core/shard.c - the shard set and each shard's event loop.
 *
 * One loop iteration: (1) reap completions (accept, recv, send, close, handoffs, wakes);
 * (2) consume the notes other shards posted to us; (3) reclaim the notes we posted that were
 * consumed (dropping their message references); (4) move backlogged notes into rings, publish
 * every ring we wrote and wake peers that announced sleep; (5) one send per conn with output;
 * (6) the tick (keepalive, connect timeout, close deadlines, session expiry); (7) submit and
 * either go round again (work was done) or sleep until a completion or the next tick.
 *
 * Shutdown: a stop request closes the listener and every conn (v5 clients get DISCONNECT
 * 0x8B). Once a shard has no conns left it counts itself in (io/wake.h wake_group) and keeps
 * draining rings; it leaves the loop when every shard has counted in, its inbound rings are
 * empty and every note it posted was reclaimed, so no message leaks and no ring is touched
 * after its owner has gone.
 */
#include "core/shard.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/catchup.h"
#include "core/dispatch.h"
#include "core/recovery.h"
#include "core/hash.h"
#include "core/lifetime.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/mqtt.h"
#include "core/retain.h"
#include "core/router.h"
#include "core/session.h"
#include "core/shared.h"
#include "core/subtree.h"
#include "store/consumeq.h"

#define SHARD_TICK_MS 250u
#define SHARD_EXPIRY_SCAN_MS 1000u /* session expiry is in whole seconds */
#define SHARD_CQE_BATCH_MAX 1024u   /* completions handled per iteration before other work */
#define SHARD_RING_ENTRIES 4096u    /* io_uring SQ entries */
#define SHARD_CLOSE_FLUSH_MS 2000u  /* a closing conn's output gets this long to drain */
#define SHARD_LOG_RING_ENTRIES 4096u
#define SHARD_BACKLOG_WARN 65536u

void shard_hold(struct shard *s, struct conn *c)
{
    if (s->held_len == s->held_cap) {
        uint32_t cap = s->held_cap ? s->held_cap * 2 : 64;
        struct conn_ref *n = realloc(s->held, cap * sizeof(*n));
        if (n == NULL) {
            session_conn_lost(s, c, true);
            conn_close(s, c, "out of memory for back-pressure");
            return;
        }
        s->held = n;
        s->held_cap = cap;
    }
    s->held[s->held_len++] = (struct conn_ref){ c->idx, c->gen };
}

/* Resumes the conns paused by back-pressure once the log has room again. A resumed conn may
 * pause again (and be held again) while its input is replayed. */
static void release_held(struct shard *s)
{
    if (s->held_len == 0 || !commitlog_has_room(&s->log) ||
        shard_congested(s, SHARD_CONGESTED_AT / 2))
        return;
    uint32_t n = s->held_len;
    struct conn_ref *refs = s->held;
    s->held = NULL;
    s->held_len = s->held_cap = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct conn *c = &s->conns[refs[i].idx];
        if (c->gen == refs[i].gen && c->is_paused && c->state == CONN_ACTIVE)
            conn_resume(s, c);
    }
    free(refs);
}

uint16_t shard_home(const struct shard *s, struct slice client_id)
{
    return (uint16_t)(hash_bytes(client_id.ptr, client_id.len) % s->count);
}

static bool backlog_push(struct note_backlog *b, struct note n)
{
    if (b->len == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 64;
        struct note *p = malloc(cap * sizeof(*p));
        if (p == NULL)
            return false;
        for (uint32_t i = 0; i < b->len; i++)
            p[i] = b->notes[(b->head + i) % b->cap];
        free(b->notes);
        b->notes = p;
        b->head = 0;
        b->cap = cap;
    }
    b->notes[(b->head + b->len++) % b->cap] = n;
    return true;
}

/* Drops the message reference a consumed note held. A handoff release note holds nothing of
 * ours: its memory belongs to the receiver, which frees it on receipt. */
static void note_release(struct note n)
{
    if (n.kind == NOTE_PUBLISH)
        msg_release(n.ptr);
    else if (n.kind == NOTE_FILTER)
        persist_filter_note_release(n.ptr);
    else if (n.kind == NOTE_SHARED)
        shared_note_release(n.ptr);
}

void shard_post(struct shard *s, uint16_t to, struct note n)
{
    ASSERT(to < s->count && to != s->id);
    struct note_backlog *b = &s->backlog[to];
    if (b->len == 0) {
        struct note *slot = spsc_slot(s->out[to]);
        if (slot != NULL) {
            *slot = n;
            s->out_dirty[to] = true;
            s->stats.notes_out++;
            return;
        }
    }
    /* Ring full: keep order by queueing behind it. Memory is bounded by the publishers'
     * input (documented limit); a failure to grow drops the note, counted. */
    if (!backlog_push(b, n)) {
        note_release(n);
        return;
    }
    s->backlog_total++;
    s->stats.backlogged++;
    if ((b->len & (SHARD_BACKLOG_WARN - 1)) == 0)
        LOG_WARN("shard", "ring_backlog to=%u len=%u", to, b->len);
}

/* Moves backlogged notes into the ring to `to` as space allows. */
static void backlog_flush(struct shard *s, uint16_t to)
{
    struct note_backlog *b = &s->backlog[to];
    while (b->len > 0) {
        struct note *slot = spsc_slot(s->out[to]);
        if (slot == NULL)
            return;
        *slot = b->notes[b->head];
        b->head = (b->head + 1) % b->cap;
        b->len--;
        s->backlog_total--;
        s->out_dirty[to] = true;
        s->stats.notes_out++;
    }
}

/* Reclaims notes `to` has consumed; returns how many. */
static uint32_t reclaim_ring(struct spsc *r)
{
    uint32_t total = 0;
    for (;;) {
        uint32_t n = spsc_reclaimable(r);
        if (n == 0)
            return total;
        for (uint32_t i = 0; i < n; i++) {
            struct note *note = spsc_reclaim_entry(r, i);
            note_release(*note);
        }
        spsc_reclaim(r, n);
        total += n;
    }
}

/* Every note but NOTE_PUBLISH; handled even while stopping (someone waits for each). */
static void consume_other(struct shard *s, const struct note *note)
{
    switch (note->kind) {
    case NOTE_HANDOFF_RELEASE:
        free(note->ptr); /* Our own handoff, returned by the target. */
        ASSERT(s->handoffs_pending > 0);
        s->handoffs_pending--;
        break;
    case NOTE_FILTER:
        persist_on_filter_note(s, note->ptr);
        break;
    case NOTE_CATCHUP_REQ:
        catchup_on_req(s, note->ptr);
        break;
    case NOTE_CATCHUP_RESP:
        catchup_on_resp(s, note->ptr);
        break;
    case NOTE_CATCHUP_RELEASE:
        catchup_release(s, note->ptr);
        break;
    case NOTE_CATCHUP_FAILED:
        catchup_on_failed(s, note->ptr);
        break;
    case NOTE_SHARED:
        shared_on_note(s, note->ptr);
        break;
    default:
        ASSERT(false);
    }
}

static uint32_t consume_ring(struct shard *s, struct spsc *r)
{
    uint32_t n = spsc_available(r);
    for (uint32_t i = 0; i < n; i++) {
        const struct note *note = spsc_entry(r, i);
        if (note->kind == NOTE_PUBLISH) {
            s->stats.notes_in++;
            if (!s->stopping)
                router_on_note(s, note->ptr);
        } else {
            consume_other(s, note);
        }
    }
    if (n > 0)
        spsc_consumed(r, n);
    return n;
}

/* Steps 2-4 of the loop. Returns the number of notes handled (work done). */
static uint32_t exchange_notes(struct shard *s)
{
    uint32_t work = 0;

    for (uint16_t i = 0; i < s->count; i++) {
        if (i == s->id)
            continue;
        work += consume_ring(s, s->in[i]);
        work += reclaim_ring(s->out[i]);
        backlog_flush(s, i);
        if (s->out_dirty[i]) {
            s->out_dirty[i] = false;
            spsc_publish(s->out[i]);
            /* The wake SQE, if any, goes out with this iteration's submit. */
            (void)wake_peer(&s->ring, &s->set->shards[i].wake);
        }
    }
    return work;
}

static void arm_accept(struct shard *s)
{
    struct io_uring_sqe *sqe = uring_sqe(&s->ring);
    io_uring_prep_multishot_accept_direct(sqe, s->listen_fd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_ACCEPT, 0, 0));
    s->accept_armed = true;
}

static void on_accept(struct shard *s, struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        s->accept_armed = false;
    if (cqe->res < 0) {
        s->stats.accept_errors++;
        /* -ENFILE: the table is full; it comes back each time the accept is re-armed while
         * the table stays full, so warn once per episode. */
        if (cqe->res != -ECANCELED && (cqe->res != -ENFILE || !s->accept_full)) {
            LOG_WARN("shard", "accept_failed err=%d (%s) conns=%u max=%u", cqe->res,
                     strerror(-cqe->res), s->conn_live, s->conn_cap);
        }
        s->accept_full = cqe->res == -ENFILE;
        return;
    }
    s->accept_full = false;
    s->stats.accepted++;
    if (s->stopping) {
        struct io_uring_sqe *sqe = uring_sqe(&s->ring);
        io_uring_prep_close_direct(sqe, (unsigned)cqe->res);
        io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_NONE, 0, 0));
        return;
    }
    struct conn *c = conn_alloc(s, cqe->res);
    if (c == NULL) {
        LOG_WARN("shard", "conn_pool_full max=%u", s->conn_cap);
        struct io_uring_sqe *sqe = uring_sqe(&s->ring);
        io_uring_prep_close_direct(sqe, (unsigned)cqe->res);
        io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_NONE, 0, 0));
        return;
    }
    snprintf(c->label, sizeof(c->label), "%u/%d", s->id, c->slot);
    conn_arm_recv(s, c);
}

/* A completion for a pool conn: checks the generation; stale ones are dropped. */
static struct conn *conn_of(struct shard *s, uint64_t ud)
{
    uint32_t idx = uring_ud_idx(ud);
    ASSERT(idx < s->conn_high);
    struct conn *c = &s->conns[idx];
    if (c->gen != uring_ud_gen(ud) || c->state == CONN_FREE)
        return NULL;
    return c;
}

static void on_recv(struct shard *s, struct io_uring_cqe *cqe)
{
    struct conn *c = conn_of(s, cqe->user_data);
    bool has_buf = (cqe->flags & IORING_CQE_F_BUFFER) != 0;
    uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    if (c != NULL && cqe->res > 0 && has_buf) {
        if (c->state != CONN_CLOSING)
            conn_on_recv(s, c, uring_bufring_addr(&s->rx, bid), (uint32_t)cqe->res);
    } else if (c != NULL && cqe->res != -ENOBUFS && cqe->res != -ECANCELED &&
               c->state != CONN_CLOSING && !conn_input_held(c)) {
        /* EOF (0) or an error: the peer is gone without DISCONNECT, so the will fires. Not
         * -ECANCELED: only our own cancels (pause, handoff, close) produce it, and a pause
         * may already have been resumed when it arrives. */
        session_conn_lost(s, c, true);
        conn_close(s, c, cqe->res == 0 ? "peer closed" : "recv error");
    }
    if (has_buf)
        uring_bufring_recycle(&s->rx, bid); /* Even for a stale conn: the buffer is ours. */
    if (c == NULL || (cqe->flags & IORING_CQE_F_MORE))
        return;
    c->recv_armed = false;
    if (c->state == CONN_HANDOFF) {
        dispatch_handoff_send(s, c);
    } else if (c->state == CONN_CLOSING) {
        conn_reap(s, c);
    } else if (c->is_paused) {
        /* Cancelled by back-pressure: conn_resume re-arms it. */
    } else if (cqe->res == -ENOBUFS || cqe->res == -ECANCELED || cqe->res > 0) {
        /* Multishot ended (buffers ran out, or a pause that was already resumed): re-arm. */
        conn_arm_recv(s, c);
    }
}

static void handle_cqe(struct shard *s, struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    struct conn *c;
    switch (uring_ud_op(ud)) {
    case URING_OP_ACCEPT:
        on_accept(s, cqe);
        break;
    case URING_OP_RECV:
        on_recv(s, cqe);
        break;
    case URING_OP_SEND:
        c = conn_of(s, ud);
        if (c != NULL)
            conn_on_send(s, c, cqe->res);
        break;
    case URING_OP_CLOSE:
        c = conn_of(s, ud);
        if (c != NULL)
            conn_on_close(s, c, cqe->res);
        break;
    case URING_OP_HANDOFF_IN:
        if (cqe->res >= 0)
            dispatch_handoff_in(s, cqe->res, uring_ud_to_ptr(ud));
        break;
    case URING_OP_HANDOFF_OUT:
        c = conn_of(s, ud);
        if (c != NULL)
            dispatch_handoff_sent(s, c, cqe->res);
        break;
    case URING_OP_STORE_WRITE:
        commitlog_on_write(&s->log, cqe->res);
        dispatch_on_durable(s);
        break;
    case URING_OP_STORE_SYNC:
        commitlog_on_sync(&s->log, cqe->res);
        dispatch_on_durable(s);
        break;
    case URING_OP_STORE_READ:
        catchup_on_read(s, uring_ud_to_ptr(ud), cqe->res);
        break;
    case URING_OP_INDEX_PUB:
        consumeq_on_io(s->persist.index, ud, cqe->res);
        break;
    case URING_OP_CANCEL:
    case URING_OP_WAKE:
    case URING_OP_WAKE_SENT:
    case URING_OP_NONE:
        break; /* Nothing to do: the wake-up itself was the point. */
    }
}

static uint32_t reap_completions(struct shard *s)
{
    struct io_uring_cqe *cqe;
    unsigned head;
    uint32_t n = 0;
    io_uring_for_each_cqe(&s->ring, head, cqe)
    {
        handle_cqe(s, cqe);
        if (++n == SHARD_CQE_BATCH_MAX)
            break;
    }
    io_uring_cq_advance(&s->ring, n);
    uring_bufring_publish(&s->rx);
    return n;
}

/* Keepalive (MQTT-3.1.2-22: 1.5x), CONNECT timeout, and the flush deadline of closing conns. */
static void tick_conns(struct shard *s)
{
    for (uint32_t i = 0; i < s->conn_high; i++) {
        struct conn *c = &s->conns[i];
        switch (c->state) {
        case CONN_NEW:
            if (s->now_ms - c->accepted_ms >= s->cfg->connect_timeout_ms)
                conn_close(s, c, "no CONNECT in time");
            break;
        case CONN_ACTIVE:
            /* A paused conn is not idle: we are the ones not reading it. */
            if (c->is_paused)
                c->last_rx_ms = s->now_ms;
            if (c->keepalive_ms > 0 && s->now_ms - c->last_rx_ms >= c->keepalive_ms) {
                LOG_INFO("session", "keepalive_timeout client=%s",
                         c->session ? c->session->client_id : "-");
                if (c->version == MQTT_V5) {
                    struct mqtt_packet pkt = { .type = MQTT_DISCONNECT };
                    pkt.reason.rc = MQTT_RC_KEEPALIVE_TIMEOUT;
                    (void)session_write_packet(s, c, &pkt); /* Best effort. */
                }
                session_conn_lost(s, c, true);
                conn_close(s, c, "keepalive timeout");
            }
            break;
        case CONN_CLOSING:
            if (!c->close_submitted && s->now_ms - c->closing_ms >= SHARD_CLOSE_FLUSH_MS) {
                c->out.len = 0; /* The peer does not read: give up on the rest. */
                if (c->send_inflight) {
                    struct io_uring_sqe *sqe = uring_sqe(&s->ring);
                    io_uring_prep_cancel64(sqe, uring_ud(URING_OP_SEND, c->gen, c->idx), 0);
                    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_CANCEL, c->gen, c->idx));
                }
            }
            break;
        default:
            break;
        }
    }
}

/* The multishot accept ends when the descriptor table is full (-ENFILE) or on an error; it is
 * armed again here, once per tick at most, so a full table does not spin. Connections wait in
 * the listen backlog meanwhile. */
static void rearm_accept(struct shard *s)
{
    if (!s->accept_armed && !s->stopping && s->conn_live < s->conn_cap)
        arm_accept(s);
}

static void begin_stop(struct shard *s)
{
    s->stopping = true;
    LOG_INFO("shard", "stopping conns=%u sessions=%u", s->conn_live,
             session_table_count(s->sessions));
    if (s->accept_armed) {
        struct io_uring_sqe *sqe = uring_sqe(&s->ring);
        io_uring_prep_cancel64(sqe, uring_ud(URING_OP_ACCEPT, 0, 0), 0);
        io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_NONE, 0, 0));
    }
    for (uint32_t i = 0; i < s->conn_high; i++) {
        struct conn *c = &s->conns[i];
        if (c->state == CONN_FREE || c->state == CONN_CLOSING || c->state == CONN_HANDOFF)
            continue;
        if (c->state == CONN_ACTIVE && c->version == MQTT_V5) {
            struct mqtt_packet pkt = { .type = MQTT_DISCONNECT };
            pkt.reason.rc = MQTT_RC_SERVER_SHUTTING_DOWN;
            (void)session_write_packet(s, c, &pkt); /* Best effort. */
        }
        /* The server closes the connection without a DISCONNECT from the client: its will
         * goes out (MQTT-3.1.2-8), into the log, so persistent subscribers get it after the
         * restart; one held by its v5 delay is journaled and goes out when due. Persistent
         * sessions stay. */
        session_conn_lost(s, c, true);
        conn_close(s, c, "server shutting down");
    }
}

/* True when this shard may leave its loop (see the file comment). */
static bool drained(struct shard *s)
{
    if (s->conn_live > 0 || s->accept_armed || s->handoffs_pending > 0)
        return false;
    if (commitlog_busy(&s->log) || s->waits_len > 0)
        return false; /* Everything appended reaches the disk before we go. */
    if (s->persist.outstanding > 0 || s->persist.queue_len > 0 || s->persist.jobs > 0 ||
        (s->persist.index != NULL && consumeq_busy(s->persist.index)))
        return false; /* Catch-up requests and answers in flight come back first. */
    if (s->backlog_total > 0)
        return false;
    if (!s->quiesced) {
        s->quiesced = true;
        wake_group_quiesce(&s->set->group);
    }
    if (!wake_group_all_quiesced(&s->set->group, s->count))
        return false;
    for (uint16_t i = 0; i < s->count; i++) {
        if (i == s->id)
            continue;
        if (!spsc_is_empty(s->in[i]))
            return false;
        struct spsc *r = s->out[i];
        if (r->tail_local != r->reclaimed)
            return false; /* Not yet consumed, or consumed and not yet reclaimed. */
    }
    return true;
}

static bool inbound_pending(struct shard *s)
{
    for (uint16_t i = 0; i < s->count; i++)
        if (i != s->id && !spsc_is_empty(s->in[i]))
            return true;
    return false;
}

static void wait_for_work(struct shard *s, uint32_t timeout_ms)
{
    struct __kernel_timespec ts = { .tv_sec = timeout_ms / 1000,
                                    .tv_nsec = (long long)(timeout_ms % 1000) * 1000000 };
    wake_prepare_sleep(&s->wake);
    if (inbound_pending(s) || (!s->stopping && wake_stop_requested(&s->wake))) {
        wake_cancel_sleep(&s->wake);
        (void)io_uring_submit_and_get_events(&s->ring);
        return;
    }
    struct io_uring_cqe *cqe;
    int rc = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
    ASSERT(rc >= 0 || rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
    wake_cancel_sleep(&s->wake);
}

static void shard_loop(struct shard *s)
{
    for (;;) { /* The event loop: ends only through the drained() exit below. */
        s->now_ms = base_now_ms();
        uint32_t work = reap_completions(s);
        work += exchange_notes(s);
        work += catchup_poll(s);
        work += persist_step(s);
        work += shared_poll(s);
        release_held(s);
        conn_flush_all(s);
        commitlog_flush(&s->log, &s->ring, s->now_ms);
        if (s->now_ms >= s->next_tick_ms) {
            s->next_tick_ms = s->now_ms + (s->stopping ? 10u : SHARD_TICK_MS);
            tick_conns(s);
            rearm_accept(s);
            if (!s->stopping && s->now_ms >= s->next_expiry_scan_ms) {
                s->next_expiry_scan_ms = s->now_ms + SHARD_EXPIRY_SCAN_MS;
                session_tick(s);
                lifetime_retained_scan(s);
            }
            if (!s->stopping) {
                persist_tick(s);
                shared_tick(s);
            }
        }
        if (!s->stopping && wake_stop_requested(&s->wake))
            begin_stop(s);
        if (s->stopping && drained(s))
            return;
        if (work > 0) {
            int rc = io_uring_submit_and_get_events(&s->ring);
            ASSERT(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
            continue;
        }
        uint64_t now = base_now_ms();
        uint32_t wait_ms = s->next_tick_ms > now ? (uint32_t)(s->next_tick_ms - now) : 0;
        if (s->log.flush == STORE_FLUSH_ASYNC && s->log.written_off > s->log.durable_off)
            wait_ms = MIN(wait_ms, s->log.flush_interval_ms);
        /* A consumer does not wake its producer: with notes waiting for ring space, look again
         * soon instead of at the next tick. */
        if (shard_congested(s, 0))
            wait_ms = MIN(wait_ms, 1u);
        wait_for_work(s, wait_ms == 0 ? 1 : wait_ms);
    }
}

/* Takes a private copy of every retained message recovery found (the main thread's copies
 * are freed once every shard has its own). */
static void adopt_retained(struct shard *s)
{
    const struct recovery *r = s->set->recovery;
    uint64_t now_ns = base_wall_ns();
    for (uint32_t i = 0; i < r->retained_count; i++) {
        if (lifetime_msg_expired(r->retained[i], now_ns)) {
            s->stats.dropped_expired++; /* Expired while the broker was down. */
            continue;
        }
        struct msg *m = msg_clone(r->retained[i], s->id);
        int err = -ENOMEM;
        struct msg *prev = m != NULL ? retain_set(s->retained, m->topic, m, &err) : NULL;
        if (prev != NULL)
            msg_release(prev); /* Recovery hands over one message per topic; be safe. */
        if (err != 0) {
            LOG_ERROR("store", "retained_restore_failed topic_len=%u",
                      r->retained[i]->topic.len);
            if (m != NULL)
                msg_release(m);
        } else {
            lifetime_retained_stored(s, m);
        }
    }
}

/* Rebuilds the persistent sessions whose home is this shard. */
static void adopt_sessions(struct shard *s)
{
    const struct recovery *r = s->set->recovery;
    uint32_t adopted = 0;
    shared_restore_begin(s);
    for (uint32_t i = 0; i < r->session_count; i++) {
        const struct recovery_session *rs = &r->sessions[i];
        if (!recovery_session_live(rs) ||
            shard_home(s, (struct slice){ (const uint8_t *)rs->client_id,
                                          rs->client_id_len }) != s->id)
            continue;
        int rc = session_adopt(s, rs);
        if (rc != 0)
            LOG_ERROR("store", "session_restore_failed client=%s err=%d", rs->client_id, rc);
        else
            adopted++;
    }
    shared_restore_end(s); /* Restored members join their groups (core/shared.h). */
    if (adopted > 0)
        LOG_INFO("store", "sessions_restored shard=%u count=%u", s->id, adopted);
}

/* Ring setup on the shard's own thread: SINGLE_ISSUER binds a ring to its creator. */
static int shard_setup(struct shard *s)
{
    int rc = uring_init(&s->ring, SHARD_RING_ENTRIES, s->conn_cap);
    if (rc < 0) {
        LOG_ERROR("shard", "ring_setup_failed err=%d (%s) files=%u", rc, strerror(-rc),
                  s->conn_cap);
        s->ring.ring_fd = -1;
        return rc;
    }
    rc = uring_bufring_init(&s->ring, &s->rx, 0, s->cfg->shard_recv_buffer_count,
                            s->cfg->shard_recv_buffer_size);
    if (rc < 0) {
        LOG_ERROR("shard", "buffer_ring_failed err=%d (%s)", rc, strerror(-rc));
        io_uring_queue_exit(&s->ring);
        s->ring.ring_fd = -1;
        return rc;
    }
    s->wake.ring_fd = s->ring.ring_fd;
    char dir[COMMITLOG_DIR_MAX];
    char err[512];
    snprintf(dir, sizeof(dir), "%s/shard-%u", s->cfg->store_dir, s->id);
    rc = commitlog_open(&s->log, dir, s->cfg, s->id, s->set->recovery->shards[s->id].end_off,
                        err, sizeof(err));
    if (rc < 0) {
        LOG_ERROR("store", "log_open_failed %s", err);
        return rc;
    }
    rc = persist_open(s);
    if (rc < 0)
        return rc;
    adopt_retained(s);
    adopt_sessions(s);
    return 0;
}

static void *shard_thread(void *arg)
{
    struct shard *s = arg;
    log_thread_attach(s->id, &s->log_ring);
    int rc = shard_setup(s);
    s->exit_code = rc < 0 ? 1 : 0;
    wake_group_ready(&s->set->group);
    uint32_t verdict = wake_group_wait_go(&s->set->group);
    if (rc < 0)
        return NULL;
    if (verdict == 1) {
        s->now_ms = base_now_ms();
        s->next_tick_ms = s->now_ms + SHARD_TICK_MS;
        arm_accept(s);
        shard_loop(s);
        /* Two lines: one would pass LOG_LINE_MAX and be cut. */
        LOG_INFO("shard",
                 "stopped accepted=%llu connects=%llu handoffs_in=%llu publishes=%llu "
                 "deliveries=%llu dropped_qos0=%llu dropped_queue=%llu dropped_expired=%llu "
                 "dropped_too_large=%llu",
                 (unsigned long long)s->stats.accepted, (unsigned long long)s->stats.connects,
                 (unsigned long long)s->stats.handoffs_in,
                 (unsigned long long)s->stats.publishes_in,
                 (unsigned long long)s->stats.deliveries,
                 (unsigned long long)s->stats.dropped_qos0,
                 (unsigned long long)s->stats.dropped_queue,
                 (unsigned long long)s->stats.dropped_expired,
                 (unsigned long long)s->stats.dropped_too_large);
        const struct histogram *commit = &s->log.commit_us;
        LOG_INFO("shard", "stopped_log log_full=%llu backlog_holds=%llu ack_holds=%llu "
                 "log_writes=%llu log_bytes=%llu commit_records=%llu commit_us_p50=%llu "
                 "commit_us_p99=%llu commit_us_p999=%llu commit_us_max=%llu",
                 (unsigned long long)s->stats.log_full,
                 (unsigned long long)s->stats.backlog_holds,
                 (unsigned long long)s->stats.ack_holds, (unsigned long long)s->log.writes,
                 (unsigned long long)s->log.bytes_written,
                 (unsigned long long)commit->total_count,
                 (unsigned long long)histogram_percentile(commit, 50.0),
                 (unsigned long long)histogram_percentile(commit, 99.0),
                 (unsigned long long)histogram_percentile(commit, 99.9),
                 (unsigned long long)commit->max);
        if (s->cfg->p2p)
            LOG_INFO("shard", "stopped_p2p delivered=%llu no_target=%llu",
                     (unsigned long long)s->stats.p2p_delivered,
                     (unsigned long long)s->stats.p2p_no_target);
    }
    persist_close(s);
    if (s->log.dir[0] != '\0')
        commitlog_close(&s->log);
    /* Unregistering needs the submitter thread; the ring itself is closed by the main thread
     * after every shard has stopped, so no peer can be left holding a stale ring fd. */
    uring_bufring_destroy(&s->ring, &s->rx);
    return NULL;
}

static int set_fail(int rc, char *err, size_t err_len, const char *what)
{
    snprintf(err, err_len, "%s: %s", what, strerror(-rc));
    return rc;
}

/* Per-shard state that does not need the shard's thread. */
static int shard_init(struct shard_set *set, struct shard *s, uint16_t id, char *err,
                      size_t err_len)
{
    const struct config *cfg = set->cfg;
    wake_init(&s->wake);
    s->id = id;
    s->count = set->count;
    s->cfg = cfg;
    s->set = set;
    s->listen_fd = -1;
    s->ring.ring_fd = -1;
    s->conn_cap = cfg->shard_max_connections;
    s->conns = calloc(s->conn_cap, sizeof(*s->conns));
    s->sessions = session_table_create();
    s->subs = subtree_create();
    s->retained = retain_create();
    s->shared = shared_create();
    if (s->conns == NULL || s->sessions == NULL || s->subs == NULL || s->retained == NULL ||
        s->shared == NULL)
        return set_fail(-ENOMEM, err, err_len, "shard state");
    int rc = spsc_init(&s->log_ring, SHARD_LOG_RING_ENTRIES, LOG_LINE_MAX);
    if (rc < 0)
        return set_fail(rc, err, err_len, "log ring");
    for (uint16_t j = 0; j < set->count; j++) {
        if (j == id)
            continue;
        s->out[j] = &set->rings[(size_t)id * set->count + j];
        s->in[j] = &set->rings[(size_t)j * set->count + id];
    }
    return 0;
}

int shard_set_create(struct shard_set *set, const struct config *cfg, uint16_t *bound_port,
                     char *err, size_t err_len)
{
    ASSERT(cfg->shard_count >= 1 && cfg->shard_count <= SHARD_MAX);
    memset(set, 0, sizeof(*set));
    set->count = (uint16_t)cfg->shard_count;
    set->cfg = cfg;
    wake_group_init(&set->group);
    set->shards = aligned_alloc(CACHE_LINE, sizeof(struct shard) * set->count);
    set->rings = aligned_alloc(CACHE_LINE, sizeof(struct spsc) * set->count * set->count);
    if (set->shards == NULL || set->rings == NULL)
        return set_fail(-ENOMEM, err, err_len, "shard set");
    memset(set->shards, 0, sizeof(struct shard) * set->count);
    memset(set->rings, 0, sizeof(struct spsc) * set->count * set->count);
    for (uint16_t i = 0; i < set->count; i++) {
        for (uint16_t j = 0; j < set->count; j++) {
            if (i == j)
                continue;
            int rc = spsc_init(&set->rings[(size_t)i * set->count + j], cfg->shard_ring_entries,
                               sizeof(struct note));
            if (rc < 0)
                return set_fail(rc, err, err_len, "shard rings");
        }
    }
    uint16_t port = cfg->tcp_port;
    for (uint16_t i = 0; i < set->count; i++) {
        struct shard *s = &set->shards[i];
        int rc = shard_init(set, s, i, err, err_len);
        if (rc < 0)
            return rc;
        /* With port 0 the first listener picks the port and the others join it. */
        rc = uring_listen_tcp(cfg->tcp_bind, port, cfg->tcp_backlog, &port, err, err_len);
        if (rc < 0)
            return rc;
        s->listen_fd = rc;
    }
    *bound_port = port;
    return 0;
}

static void pin_to_cpu(pthread_t t, uint16_t id)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus <= 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET((int)(id % cpus), &set);
    int rc = pthread_setaffinity_np(t, sizeof(set), &set);
    if (rc != 0)
        LOG_WARN("shard", "pin_failed shard=%u err=%d (%s)", id, rc, strerror(rc));
}

int shard_set_start(struct shard_set *set, char *err, size_t err_len)
{
    uint16_t started = 0;
    int rc = 0;
    for (; started < set->count; started++) {
        struct shard *s = &set->shards[started];
        rc = pthread_create(&s->thread, NULL, shard_thread, s);
        if (rc != 0) {
            snprintf(err, err_len, "pthread_create: %s", strerror(rc));
            break;
        }
        char name[16];
        snprintf(name, sizeof(name), "keelmq-%u", (unsigned)started % 1000u);
        (void)pthread_setname_np(s->thread, name); /* Cosmetic: ps/top show it. */
        pin_to_cpu(s->thread, started);
    }
    /* Even after a failed pthread_create: the started shards read set->recovery during setup,
     * and the caller frees it once this returns. */
    wake_group_wait_ready(&set->group, started);
    bool failed = started < set->count;
    for (uint16_t i = 0; i < started; i++)
        failed |= set->shards[i].exit_code != 0;
    set->started = started;
    wake_group_set_go(&set->group, failed ? 2 : 1);
    if (failed && rc == 0) {
        snprintf(err, err_len, "a shard failed to set up its io_uring (see the log above)");
        rc = EIO;
    }
    return failed ? -rc : 0;
}

void shard_set_stop(struct shard_set *set)
{
    /* The main thread's own small ring carries the wake-ups (MSG_RING needs a ring). */
    struct io_uring ring;
    bool have_ring = io_uring_queue_init(8, &ring, 0) == 0;
    for (uint16_t i = 0; i < set->started; i++) {
        wake_request_stop(&set->shards[i].wake);
        if (have_ring && wake_peer(&ring, &set->shards[i].wake))
            (void)io_uring_submit(&ring); /* A missed wake is caught by the shard's tick. */
    }
    if (have_ring)
        io_uring_queue_exit(&ring);
}

int shard_set_join(struct shard_set *set)
{
    int code = 0;
    for (uint16_t i = 0; i < set->started; i++) {
        if (!set->shards[i].thread_joined)
            pthread_join(set->shards[i].thread, NULL);
        set->shards[i].thread_joined = true;
        if (set->shards[i].exit_code != 0)
            code = 1;
    }
    set->started = 0;
    return code;
}

void shard_set_drain_logs(struct shard_set *set)
{
    for (uint16_t i = 0; i < set->count; i++)
        if (set->shards[i].log_ring.entries != NULL)
            (void)log_drain(&set->shards[i].log_ring);
}

void shard_set_destroy(struct shard_set *set)
{
    ASSERT(set->started == 0);
    shard_set_drain_logs(set);
    for (uint16_t i = 0; set->shards != NULL && i < set->count; i++) {
        struct shard *s = &set->shards[i];
        if (s->sessions != NULL)
            session_table_destroy(s, s->sessions);
        if (s->subs != NULL)
            subtree_destroy(s->subs);
        if (s->retained != NULL)
            retain_destroy(s->retained, router_release_retained, NULL);
        shared_destroy(s->shared);
        for (uint16_t j = 0; j < set->count; j++)
            free(s->backlog[j].notes);
        free(s->matches);
        free(s->waits);
        free(s->held);
        if (s->conns != NULL) {
            for (uint32_t k = 0; k < s->conn_high; k++) {
                bytebuf_free(&s->conns[k].in);
                bytebuf_free(&s->conns[k].out);
                bytebuf_free(&s->conns[k].sending);
            }
            free(s->conns);
        }
        if (s->listen_fd >= 0)
            close(s->listen_fd);
        if (s->ring.ring_fd >= 0)
            io_uring_queue_exit(&s->ring);
        spsc_destroy(&s->log_ring);
    }
    for (size_t i = 0; set->rings != NULL && i < (size_t)set->count * set->count; i++)
        if (set->rings[i].entries != NULL)
            spsc_destroy(&set->rings[i]);
    free(set->shards);
    free(set->rings);
    memset(set, 0, sizeof(*set));
}
