/* core/conn.c - connection pool, receive framing, output coalescing and close ordering.
 *
 * Shard thread only. See core/conn.h for the lifecycle. The close order is what keeps slots
 * safe: (1) state CLOSING, input ignored; (2) pending output flushed (bounded by a deadline
 * enforced in the shard's tick); (3) one hard-linked pair of SQEs cancels every request on
 * the direct descriptor and closes it; (4) the pool entry is freed only once the recv, the
 * send and the close have all completed. A completion arriving for an older generation of a
 * pool entry is dropped by the shard (its provided buffer is still recycled).
 */
#include "core/conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/codec.h"
#include "core/dispatch.h"
#include "core/log.h"
#include "core/session.h"
#include "core/shard.h"


struct conn *conn_alloc(struct shard *s, int slot)
{
    struct conn *c = s->conn_free;
    if (c != NULL) {
        s->conn_free = c->free_next;
    } else if (s->conn_high < s->conn_cap) {
        c = &s->conns[s->conn_high];
        c->idx = s->conn_high++;
    } else {
        return NULL;
    }
    ASSERT(c->state == CONN_FREE);
    uint32_t idx = c->idx;
    uint32_t gen = (c->gen + 1) & 0xFFFFFFu;
    ASSERT(c->in.data == NULL && c->out.data == NULL && c->sending.data == NULL);
    memset(c, 0, sizeof(*c));
    c->idx = idx;
    c->gen = gen;
    c->slot = slot;
    c->state = CONN_NEW;
    c->accepted_ms = s->now_ms;
    c->last_rx_ms = s->now_ms;
    c->max_packet_out = MQTT_VARINT_MAX + 5;
    s->conn_live++;
    return c;
}

void conn_arm_recv(struct shard *s, struct conn *c)
{
    ASSERT(!c->recv_armed);
    struct io_uring_sqe *sqe = uring_sqe(&s->ring);
    io_uring_prep_recv_multishot(sqe, c->slot, NULL, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = s->rx.group_id;
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_RECV, c->gen, c->idx));
    c->recv_armed = true;
}

/* A frame header announced more than we accept: v5 clients get DISCONNECT 0x95 before the
 * body arrives (MQTT-3.1.2-24 lets us close; 0x95 tells them why). */
static void reject_oversize(struct shard *s, struct conn *c, uint32_t frame_len)
{
    LOG_INFO("conn", "packet_too_large conn=%s len=%u max=%u", c->label, frame_len,
             s->cfg->max_packet_size);
    if (c->version == MQTT_V5 && c->state == CONN_ACTIVE) {
        struct mqtt_packet pkt = { .type = MQTT_DISCONNECT };
        pkt.reason.rc = MQTT_RC_PACKET_TOO_LARGE;
        (void)session_write_packet(s, c, &pkt); /* Best effort (with its Reason String). */
    }
    if (c->session != NULL)
        session_conn_lost(s, c, true);
    conn_close(s, c, "packet too large");
}

static void reject_malformed(struct shard *s, struct conn *c)
{
    LOG_INFO("conn", "malformed_header conn=%s", c->label);
    if (c->version == MQTT_V5 && c->state == CONN_ACTIVE) {
        struct mqtt_packet pkt = { .type = MQTT_DISCONNECT };
        pkt.reason.rc = MQTT_RC_MALFORMED;
        uint32_t n = codec_size(&pkt, MQTT_V5);
        uint8_t *p = conn_out_reserve(s, c, n);
        if (p != NULL)
            codec_encode(&pkt, MQTT_V5, p);
    }
    if (c->session != NULL)
        session_conn_lost(s, c, true);
    conn_close(s, c, "malformed fixed header");
}

/* Continues a frame that is partly in `c->in`. Sets *used to the bytes of `data` consumed
 * (always, also when stopping: the caller stashes only what follows them). Returns false when
 * the conn must stop (an error, or a handler said stop). */
static bool feed_partial(struct shard *s, struct conn *c, const uint8_t *data, uint32_t len,
                         uint32_t *used)
{
    *used = 0;
    if (c->in_frame_len == 0) {
        /* Header incomplete: take bytes one at a time until it parses (at most 5). */
        while (*used < len && c->in_frame_len == 0) {
            if (!bytebuf_append(&c->in, data + *used, 1))
                return false;
            (*used)++;
            uint32_t frame_len = 0;
            int rc = codec_frame(c->in.data, c->in.len, &frame_len);
            if (rc < 0) {
                reject_malformed(s, c);
                return false;
            }
            if (rc > 0) {
                if (frame_len > s->cfg->max_packet_size) {
                    reject_oversize(s, c, frame_len);
                    return false;
                }
                c->in_frame_len = frame_len;
            }
        }
        if (c->in_frame_len == 0)
            return true;
    }
    uint32_t want = c->in_frame_len - c->in.len;
    uint32_t take = MIN(want, len - *used);
    if (!bytebuf_append(&c->in, data + *used, take))
        return false;
    *used += take;
    if (c->in.len < c->in_frame_len)
        return true;
    /* Complete. The frame buffer is detached while it is dispatched, so a handler that stashes
     * input (a handoff) can use `in` again. */
    struct bytebuf frame = c->in;
    c->in = (struct bytebuf){ 0 };
    c->in_frame_len = 0;
    bool go_on = dispatch_packet(s, c, frame.data, frame.len);
    if (c->in.data == NULL) {
        frame.len = 0;
        c->in = frame;
    } else {
        free(frame.data);
    }
    return go_on;
}

void conn_stash(struct shard *s, struct conn *c, const uint8_t *data, uint32_t len)
{
    if (!conn_input_held(c) || len == 0)
        return;
    /* Input is held only from an empty `in`, so everything in it is stash: the held frame,
     * the rest of the buffer it came in, and what the recv had delivered before its cancel
     * took effect. The cancel goes out with the loop's next submission, before it reaps again
     * (DEFER_TASKRUN: completions are posted only then), so that is at most the receive
     * buffers' CQEs not reaped yet: all of the ring's buffers at worst. */
    uint64_t limit = (uint64_t)s->cfg->max_packet_size * 2u +
                     (uint64_t)s->cfg->shard_recv_buffer_count * s->cfg->shard_recv_buffer_size;
    if ((uint64_t)c->in.len + len > limit ||
        !bytebuf_append(&c->in, data, len)) {
        session_conn_lost(s, c, false);
        conn_close(s, c, "stash overflow");
        return;
    }
}

void conn_pause(struct shard *s, struct conn *c, const uint8_t *frame, uint32_t len)
{
    ASSERT(c->state == CONN_ACTIVE && !c->is_paused && c->in.len == 0);
    c->is_paused = true;
    conn_stash(s, c, frame, len);
    if (!c->is_paused)
        return; /* The stash failed and closed it. */
    if (c->recv_armed) {
        struct io_uring_sqe *sqe = uring_sqe(&s->ring);
        io_uring_prep_cancel64(sqe, uring_ud(URING_OP_RECV, c->gen, c->idx), 0);
        io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_CANCEL, c->gen, c->idx));
    }
}

void conn_resume(struct shard *s, struct conn *c)
{
    ASSERT(c->is_paused);
    c->is_paused = false;
    struct bytebuf held = c->in;
    c->in = (struct bytebuf){ 0 };
    conn_feed(s, c, held.data, held.len);
    free(held.data);
    /* Only now: a recv armed before the replay could deliver more while the replay pauses
     * again, and every pause would let the stash grow. */
    if (!c->recv_armed && c->state == CONN_ACTIVE && !c->is_paused)
        conn_arm_recv(s, c);
}

void conn_feed(struct shard *s, struct conn *c, const uint8_t *data, uint32_t len)
{
    uint32_t off = 0;
    while (off < len) {
        if (c->state == CONN_CLOSING)
            return;
        if (conn_input_held(c)) {
            conn_stash(s, c, data + off, len - off);
            return;
        }
        if (c->in.len > 0) {
            uint32_t used;
            bool go_on = feed_partial(s, c, data + off, len - off, &used);
            off += used;
            if (!go_on) {
                conn_stash(s, c, data + off, len - off);
                return;
            }
            continue;
        }
        uint32_t frame_len = 0;
        int rc = codec_frame(data + off, len - off, &frame_len);
        if (rc < 0) {
            reject_malformed(s, c);
            return;
        }
        if (rc > 0 && frame_len > s->cfg->max_packet_size) {
            reject_oversize(s, c, frame_len);
            return;
        }
        if (rc == 0 || frame_len > len - off) {
            /* Partial frame: keep it. `in` grows with the bytes that actually arrived (not to
             * the announced length: a peer announcing 1 MiB and sending nothing costs us
             * nothing), within mqtt.max_packet_size checked above. */
            if (!bytebuf_append(&c->in, data + off, len - off)) {
                session_conn_lost(s, c, true);
                conn_close(s, c, "out of memory");
                return;
            }
            c->in_frame_len = rc > 0 ? frame_len : 0;
            return;
        }
        bool go_on = dispatch_packet(s, c, data + off, frame_len);
        off += frame_len;
        if (!go_on) {
            conn_stash(s, c, data + off, len - off);
            return;
        }
    }
}

void conn_on_recv(struct shard *s, struct conn *c, const uint8_t *data, uint32_t len)
{
    c->last_rx_ms = s->now_ms;
    conn_feed(s, c, data, len);
}

uint8_t *conn_out_reserve(struct shard *s, struct conn *c, uint32_t len)
{
    if (c->state == CONN_FREE || c->close_submitted)
        return NULL;
    if (conn_out_pending(c) + (uint64_t)len > s->cfg->output_buffer_max)
        return NULL;
    if (!bytebuf_reserve(&c->out, c->out.len + len))
        return NULL;
    uint8_t *p = c->out.data + c->out.len;
    c->out.len += len;
    if (!c->is_dirty) {
        c->is_dirty = true;
        c->dirty_next = s->dirty;
        s->dirty = c;
    }
    return p;
}

static void submit_send(struct shard *s, struct conn *c)
{
    ASSERT(!c->send_inflight && c->send_off < c->sending.len);
    struct io_uring_sqe *sqe = uring_sqe(&s->ring);
    io_uring_prep_send(sqe, c->slot, c->sending.data + c->send_off, c->sending.len - c->send_off,
                       MSG_NOSIGNAL);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_SEND, c->gen, c->idx));
    c->send_inflight = true;
}

/* Submits the cancel + close pair once nothing is left to send. */
static void maybe_finish_close(struct shard *s, struct conn *c)
{
    if (c->state != CONN_CLOSING || c->close_submitted)
        return;
    if (c->send_inflight || c->out.len > 0)
        return;
    struct io_uring_sqe *sqe = uring_sqe(&s->ring);
    uring_prep_cancel_fixed_all(sqe, c->slot);
    /* Hard link: the close runs even when the cancel found nothing (-ENOENT). */
    sqe->flags |= IOSQE_IO_HARDLINK;
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_CANCEL, c->gen, c->idx));
    sqe = uring_sqe(&s->ring);
    io_uring_prep_close_direct(sqe, (unsigned)c->slot);
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_CLOSE, c->gen, c->idx));
    c->close_submitted = true;
}

void conn_flush_all(struct shard *s)
{
    struct conn *c = s->dirty;
    s->dirty = NULL;
    while (c != NULL) {
        struct conn *next = c->dirty_next;
        c->is_dirty = false;
        c->dirty_next = NULL;
        if (c->hold_until > s->log.durable_off && c->out.len > 0 && !c->close_submitted) {
            /* Held: flushed on an iteration after the log's next completed write. */
            c->is_dirty = true;
            c->dirty_next = s->dirty;
            s->dirty = c;
            c = next;
            continue;
        }
        if (!c->send_inflight && c->out.len > 0 && !c->close_submitted) {
            /* Swap: what was filling is now in flight; the old in-flight buffer fills. */
            struct bytebuf t = c->sending;
            c->sending = c->out;
            c->out = (struct bytebuf){ t.data, 0, t.cap };
            c->send_off = 0;
            submit_send(s, c);
        }
        maybe_finish_close(s, c);
        c = next;
    }
}

void conn_hold(struct shard *s, struct conn *c, uint64_t end_off)
{
    if (s->cfg->store_flush == STORE_FLUSH_SYNC)
        c->hold_until = MAX(c->hold_until, end_off);
}

void conn_on_send(struct shard *s, struct conn *c, int res)
{
    ASSERT(c->send_inflight);
    c->send_inflight = false;
    if (res <= 0) {
        c->sending.len = 0;
        c->send_off = 0;
        c->out.len = 0; /* The peer is gone: nothing more can be sent. */
        if (c->state != CONN_CLOSING) {
            if (c->session != NULL)
                session_conn_lost(s, c, true);
            conn_close(s, c, res == 0 ? "send returned 0" : "send failed");
        }
        maybe_finish_close(s, c);
        conn_reap(s, c);
        return;
    }
    c->send_off += (uint32_t)res;
    ASSERT(c->send_off <= c->sending.len);
    if (c->send_off < c->sending.len) {
        submit_send(s, c); /* Short send: the rest goes first, keeping byte order. */
        return;
    }
    c->sending.len = 0;
    c->send_off = 0;
    if (c->out.len == 0) {
        /* Idle: most connections are, most of the time. An idle connection keeps no output
         * memory; a busy one pays one allocation per send (jemalloc's thread cache). */
        bytebuf_free(&c->sending);
        bytebuf_free(&c->out);
    }
    /* Room again: messages that waited for the socket (not for the window) go now. */
    if (c->session != NULL && c->session->queue_len > 0)
        session_pump(s, c->session);
    if (c->out.len > 0 && !c->is_dirty) {
        c->is_dirty = true;
        c->dirty_next = s->dirty;
        s->dirty = c;
    }
    maybe_finish_close(s, c);
    conn_reap(s, c);
}

void conn_close(struct shard *s, struct conn *c, const char *reason)
{
    if (c->state == CONN_CLOSING || c->state == CONN_FREE)
        return;
    ASSERT(c->session == NULL); /* session_conn_lost detached it first */
    LOG_DEBUG("conn", "close conn=%s reason=\"%s\"", c->label, reason);
    (void)reason;
    c->state = CONN_CLOSING;
    c->closing_ms = s->now_ms;
    s->stats.closed++;
    if (!c->is_dirty) {
        c->is_dirty = true;
        c->dirty_next = s->dirty;
        s->dirty = c;
    }
}

void conn_on_recv_end(struct shard *s, struct conn *c)
{
    c->recv_armed = false;
    conn_reap(s, c);
}

void conn_on_close(struct shard *s, struct conn *c, int res)
{
    (void)res; /* A failed close of a direct descriptor leaves nothing to retry. */
    c->slot_closed = true;
    conn_reap(s, c);
}

void conn_reap(struct shard *s, struct conn *c)
{
    if (c->state != CONN_CLOSING || !c->slot_closed || c->recv_armed || c->send_inflight)
        return;
    ASSERT(c->session == NULL && c->handoff == NULL);
    bytebuf_free(&c->in);
    bytebuf_free(&c->out);
    bytebuf_free(&c->sending);
    if (c->aliases != NULL) {
        for (uint32_t i = 0; i < s->cfg->max_topic_alias; i++)
            free(c->aliases[i].topic);
        free(c->aliases);
        c->aliases = NULL;
    }
    topicalias_free(&c->alias_out);
    c->state = CONN_FREE;
    c->free_next = s->conn_free;
    s->conn_free = c;
    ASSERT(s->conn_live > 0);
    s->conn_live--;
}
