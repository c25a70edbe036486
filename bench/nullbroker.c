/* bench/nullbroker.c - the "ceiling" broker of bench/compare: about the least an MQTT broker
 * can do on this machine, on the same io_uring layer and codec as keelmq, so every benchmark
 * scenario can be reported as a fraction of what the machine can do at all.
 *
 * What it does: MQTT 3.1, 3.1.1 and 5.0. CONNECT -> CONNACK (v5: Maximum QoS 1, Retain
 * Available 0, Shared Subscription Available 0, an assigned client id when the client sent
 * none). SUBSCRIBE -> SUBACK granting the requested QoS capped at 1. UNSUBSCRIBE -> UNSUBACK.
 * PUBLISH QoS 0 and 1 (QoS 1 is answered with PUBACK at once) forwarded to every matching
 * subscriber at min(publish QoS, granted QoS). PINGREQ -> PINGRESP. DISCONNECT closes.
 * Exact filters live in a hash map from topic to subscriber conns; a filter ending in '#'
 * ("t/#", "#") goes on a short list matched by prefix. Output is coalesced: at most one send
 * per socket per loop iteration. Forwards are encoded once per publish and copied.
 *
 * What it does not do (it is a measuring instrument, not a product): no persistence, no
 * sessions (session present is always 0), no QoS 2 (a QoS 2 PUBLISH, PUBREC, PUBREL or
 * PUBCOMP closes the connection; a QoS 2 subscription is granted QoS 1), no retained
 * messages (the retain flag is ignored), no wills, no '+' wildcards, no shared subscriptions,
 * no topic aliases, no authentication, no keepalive enforcement, no redelivery (QoS 1 forwards
 * are fire-and-forget: subscriber PUBACKs are ignored and Receive Maximum is not enforced).
 *
 * Backpressure instead of loss: when a conn's pending output passes NB_OUT_HIGH, the broker
 * stops reading from every socket (bytes already received are held per conn, the multishot
 * recvs are cancelled) until every conn is back under NB_OUT_LOW, so TCP slows the publishers
 * down rather than the broker dropping QoS 0 messages. The pause is global: simple, and a
 * ceiling only needs to be lossless, not fair. A forward that would still take a conn past
 * NB_OUT_MAX is dropped and counted.
 * Topic map entries are kept until exit (bounded by NB_TOPICS_MAX).
 *
 * Single-threaded: main() owns everything. Usage: nullbroker [--port N] [--bind ADDR].
 * Prints "listening tcp ADDR:PORT" on stderr once it accepts; SIGINT/SIGTERM print the
 * counters and exit.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/bytebuf.h"
#include "core/codec.h"
#include "core/hash.h"
#include "core/mqtt.h"
#include "io/uring.h"

#define NB_RING_ENTRIES 4096u       /* SQ entries (the CQ is 8x, see uring_init) */
#define NB_RECV_BUF_COUNT 1024u     /* provided receive buffers: keelmq's defaults, so the */
#define NB_RECV_BUF_SIZE 4096u      /* receive path costs the same */
#define NB_CQE_BATCH_MAX 4096u      /* completions handled per loop iteration */
#define NB_LISTEN_BACKLOG 4096u
#define NB_CONN_MAX (1u << 20)      /* connections; also capped by RLIMIT_NOFILE (per ring) */
#define NB_PACKET_MAX (1u << 20)    /* largest frame accepted */
#define NB_OUT_MAX (16u << 20)      /* pending output per conn before forwards are dropped */
#define NB_OUT_HIGH (2u << 20)      /* pending output per conn that pauses all input */
#define NB_OUT_LOW (512u << 10)     /* ... and below which the conn no longer holds the pause */
#define NB_TOPICS_MAX (1u << 22)    /* distinct exact filters */
#define NB_PREFIX_SUBS_MAX 65536u   /* subscriptions with a trailing '#' */
#define NB_CONN_SUBS_MAX 4096u      /* subscriptions per conn */
#define NB_CLIENT_ID_MAX 32u
/* One encoded forward per (v3|v5) x (QoS 0|1); each fits in a frame plus the few bytes a v3
 * publish grows by when re-encoded as v5 (property length, longer varint). */
#define NB_VARIANT_COUNT 4u
#define NB_VARIANT_CAP (NB_PACKET_MAX + 16u)

STATIC_ASSERT(NB_RECV_BUF_SIZE <= NB_PACKET_MAX, "a receive buffer fits in a frame");
STATIC_ASSERT((NB_RECV_BUF_COUNT & (NB_RECV_BUF_COUNT - 1)) == 0, "buffer count power of 2");
STATIC_ASSERT(NB_PACKET_MAX <= MQTT_VARINT_MAX, "frames fit the remaining length");
STATIC_ASSERT(NB_OUT_MAX >= 2 * NB_VARIANT_CAP, "a conn can always hold a largest forward");
STATIC_ASSERT(NB_OUT_LOW < NB_OUT_HIGH && NB_OUT_HIGH < NB_OUT_MAX, "pause hysteresis");
STATIC_ASSERT((NB_TOPICS_MAX & (NB_TOPICS_MAX - 1)) == 0, "topic map cap power of 2");

/* user_data of the signalfd read; every other URING_OP_NONE completion has index 0. */
#define NB_UD_SIGNAL uring_ud(URING_OP_NONE, 0, 1)

enum nb_conn_state {
    NB_FREE = 0,
    NB_NEW,     /* accepted, waiting for CONNECT */
    NB_ACTIVE,  /* CONNACK queued */
    NB_CLOSING, /* unsubscribed, output discarded; waiting for recv, send and close to end */
};

/* One subscription of a conn: an exact topic entry or a prefix subscription, by index. */
struct nb_conn_sub {
    uint32_t ref;
    bool is_prefix;
};

struct nb_conn {
    uint32_t idx;
    uint32_t gen;
    int slot; /* direct descriptor */
    enum nb_conn_state state;
    uint8_t version;
    bool recv_armed;
    bool send_inflight;
    bool close_submitted;
    bool slot_closed;
    bool is_dirty;
    bool is_congested; /* pending output passed NB_OUT_HIGH and is not yet under NB_OUT_LOW */
    bool is_parked;    /* input held by a pause; fed and re-armed by resume_input */
    bool is_recv_cancelling; /* a pause cancelled the multishot recv; its end is expected */
    uint16_t next_packet_id;
    uint32_t in_frame_len; /* frame length of the partial frame in `in`; 0 = header partial */
    uint32_t send_off;
    struct bytebuf in;      /* a frame that spans receive buffers */
    struct bytebuf out;     /* filling */
    struct bytebuf sending; /* owned by the kernel while send_inflight */
    struct bytebuf held;    /* input received during a pause, not yet framed */
    struct nb_conn_sub *subs;
    uint32_t sub_count;
    uint32_t sub_cap;
    struct nb_conn *dirty_next;
    struct nb_conn *free_next;
};

struct nb_sub_ref {
    uint32_t conn_idx;
    uint8_t qos;
};

/* An exact filter (a topic name) and the conns subscribed to it. */
struct nb_topic {
    uint8_t *name;
    uint32_t name_len;
    uint64_t hash;
    struct nb_sub_ref *subs;
    uint32_t sub_count;
    uint32_t sub_cap;
};

/* A filter "P#" kept as the prefix P ("" for "#", "t/" for "t/#"). */
struct nb_prefix_sub {
    uint8_t *prefix;
    uint32_t prefix_len;
    uint32_t conn_idx;
    uint8_t qos;
};

/* A forward encoded for one (version, QoS) pair; built lazily once per publish. */
struct nb_variant {
    uint8_t *data;
    uint32_t len;
    uint32_t packet_id_off; /* QoS 1: offset of the packet id to patch per subscriber */
    bool is_ready;
};

struct nb_stats {
    uint64_t accepted;
    uint64_t connects;
    uint64_t publishes_in;
    uint64_t deliveries;
    uint64_t dropped;
    uint64_t closed_errors;
    uint64_t pauses;
};

struct nb {
    struct io_uring ring;
    struct uring_bufring rx;
    int listen_fd;
    int signal_fd;
    bool accept_armed;
    bool is_stopping;
    struct signalfd_siginfo siginfo;
    struct nb_conn *conns;
    uint32_t conn_cap;
    uint32_t conn_high;
    uint32_t conn_live;
    struct nb_conn *conn_free;
    struct nb_conn *dirty;
    uint32_t congested_count; /* conns with is_congested: input is paused while > 0 */
    bool needs_resume;        /* a pause ended; resume_input runs in this loop iteration */
    uint64_t *parked;         /* user_data (gen, idx) of parked conns, in parking order */
    uint32_t parked_count;
    uint32_t parked_cap;      /* 2 x conn_cap: room for stale entries between compactions */
    struct nb_topic *topics; /* entries, append-only so indices stay valid */
    uint32_t topic_count;
    uint32_t topic_entries_cap;
    uint32_t *topic_slots; /* open addressing: entry index + 1, 0 = empty */
    uint32_t topic_slot_cap;
    struct nb_prefix_sub *prefix_subs;
    uint32_t prefix_count;
    uint32_t prefix_cap;
    struct nb_variant variants[NB_VARIANT_COUNT];
    uint8_t *rcs; /* SUBACK/UNSUBACK reason codes of the packet being handled */
    struct nb_stats stats;
};

/* ---- buffers ---- */

/* Grows an array of `elem_size` items to hold `need`; false when out of memory. */
static bool array_reserve(void **arr, uint32_t *cap, uint32_t need, size_t elem_size)
{
    if (need <= *cap)
        return true;
    uint32_t new_cap = *cap < 4 ? 4 : *cap * 2;
    while (new_cap < need)
        new_cap *= 2;
    void *p = realloc(*arr, (size_t)new_cap * elem_size);
    if (p == NULL)
        return false;
    *arr = p;
    *cap = new_cap;
    return true;
}

/* ---- connections ---- */

static void mark_dirty(struct nb *nb, struct nb_conn *c)
{
    if (c->is_dirty)
        return;
    c->is_dirty = true;
    c->dirty_next = nb->dirty;
    nb->dirty = c;
}

/* Reserves `len` bytes of output on `c`; NULL when the conn is not writable or the pending
 * output would pass NB_OUT_MAX. The caller fills them before returning to the loop. */
static uint8_t *out_reserve(struct nb *nb, struct nb_conn *c, uint32_t len)
{
    if (c->state != NB_ACTIVE && c->state != NB_NEW)
        return NULL;
    uint64_t pending = (uint64_t)c->out.len + (c->sending.len - c->send_off);
    if (pending + len > NB_OUT_MAX || !bytebuf_reserve(&c->out, c->out.len + len))
        return NULL;
    uint8_t *p = c->out.data + c->out.len;
    c->out.len += len;
    mark_dirty(nb, c);
    if (!c->is_congested && pending + len > NB_OUT_HIGH) {
        c->is_congested = true;
        if (nb->congested_count++ == 0)
            nb->stats.pauses++;
    }
    return p;
}

/* Encodes `pkt` into the output of `c`. False when it did not fit (see out_reserve). */
static bool write_packet(struct nb *nb, struct nb_conn *c, const struct mqtt_packet *pkt)
{
    uint32_t n = codec_size(pkt, c->version);
    ASSERT(n > 0);
    uint8_t *p = out_reserve(nb, c, n);
    if (p == NULL)
        return false;
    uint32_t written = codec_encode(pkt, c->version, p);
    ASSERT(written == n);
    return true;
}

static struct nb_conn *conn_alloc(struct nb *nb, int slot)
{
    struct nb_conn *c = nb->conn_free;
    if (c != NULL) {
        nb->conn_free = c->free_next;
    } else if (nb->conn_high < nb->conn_cap) {
        c = &nb->conns[nb->conn_high];
        c->idx = nb->conn_high++;
    } else {
        return NULL;
    }
    ASSERT(c->state == NB_FREE);
    ASSERT(c->sub_count == 0);
    c->gen = (c->gen + 1) & 0xFFFFFFu;
    c->slot = slot;
    c->state = NB_NEW;
    c->version = 0;
    c->recv_armed = false;
    c->send_inflight = false;
    c->close_submitted = false;
    c->slot_closed = false;
    c->is_dirty = false;
    c->is_congested = false;
    c->is_parked = false;
    c->is_recv_cancelling = false;
    c->next_packet_id = 1;
    c->in_frame_len = 0;
    c->send_off = 0;
    c->in.len = 0;
    c->out.len = 0;
    c->sending.len = 0;
    c->held.len = 0;
    nb->conn_live++;
    return c;
}

static void conn_arm_recv(struct nb *nb, struct nb_conn *c)
{
    ASSERT(!c->recv_armed);
    struct io_uring_sqe *sqe = uring_sqe(&nb->ring);
    io_uring_prep_recv_multishot(sqe, c->slot, NULL, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = nb->rx.group_id;
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_RECV, c->gen, c->idx));
    c->recv_armed = true;
}

static void unsubscribe_all(struct nb *nb, struct nb_conn *c);

/* Ends the conn's share of a pause once its output has drained below NB_OUT_LOW or it is
 * closing; the last one to leave schedules resume_input. */
static void congestion_check(struct nb *nb, struct nb_conn *c)
{
    uint64_t pending = (uint64_t)c->out.len + (c->sending.len - c->send_off);
    if (!c->is_congested || (pending >= NB_OUT_LOW && c->state != NB_CLOSING))
        return;
    c->is_congested = false;
    ASSERT(nb->congested_count > 0);
    if (--nb->congested_count == 0)
        nb->needs_resume = true;
}

/* Stops input and output at once: a measuring broker owes a failing peer nothing. The slot is
 * cancelled and closed at the next flush, once no send is in flight. Idempotent. */
static void conn_close(struct nb *nb, struct nb_conn *c, bool is_error)
{
    if (c->state == NB_CLOSING || c->state == NB_FREE)
        return;
    unsubscribe_all(nb, c);
    c->state = NB_CLOSING;
    c->out.len = 0;
    c->held.len = 0;
    congestion_check(nb, c);
    nb->stats.closed_errors += is_error;
    mark_dirty(nb, c);
}

/* Submits the linked cancel + close once nothing is in flight on the send side. */
static void conn_finish_close(struct nb *nb, struct nb_conn *c)
{
    if (c->state != NB_CLOSING || c->close_submitted || c->send_inflight)
        return;
    struct io_uring_sqe *sqe = uring_sqe(&nb->ring);
    uring_prep_cancel_fixed_all(sqe, c->slot);
    sqe->flags |= IOSQE_IO_HARDLINK; /* The close runs even when the cancel found nothing. */
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_CANCEL, c->gen, c->idx));
    sqe = uring_sqe(&nb->ring);
    io_uring_prep_close_direct(sqe, (unsigned)c->slot);
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_CLOSE, c->gen, c->idx));
    c->close_submitted = true;
}

/* Frees `c` once its recv, send and close have all completed. Buffers are kept for reuse,
 * except big ones. */
static void conn_reap(struct nb *nb, struct nb_conn *c)
{
    if (c->state != NB_CLOSING || !c->slot_closed || c->recv_armed || c->send_inflight)
        return;
    struct bytebuf *bufs[] = { &c->in, &c->out, &c->sending, &c->held };
    for (size_t i = 0; i < ARRAY_LEN(bufs); i++) {
        if (bufs[i]->cap > 65536) {
            free(bufs[i]->data);
            *bufs[i] = (struct bytebuf){ 0 };
        }
        bufs[i]->len = 0;
    }
    c->state = NB_FREE;
    c->free_next = nb->conn_free;
    nb->conn_free = c;
    ASSERT(nb->conn_live > 0);
    nb->conn_live--;
}

static void submit_send(struct nb *nb, struct nb_conn *c)
{
    ASSERT(!c->send_inflight);
    ASSERT(c->send_off < c->sending.len);
    struct io_uring_sqe *sqe = uring_sqe(&nb->ring);
    io_uring_prep_send(sqe, c->slot, c->sending.data + c->send_off,
                       c->sending.len - c->send_off, MSG_NOSIGNAL);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_SEND, c->gen, c->idx));
    c->send_inflight = true;
}

/* One send per conn with output and no send in flight: the output coalescing. */
static void flush_all(struct nb *nb)
{
    struct nb_conn *c = nb->dirty;
    nb->dirty = NULL;
    while (c != NULL) {
        struct nb_conn *next = c->dirty_next;
        c->is_dirty = false;
        c->dirty_next = NULL;
        if (c->state == NB_CLOSING) {
            conn_finish_close(nb, c);
        } else if (!c->send_inflight && c->out.len > 0) {
            struct bytebuf t = c->sending;
            c->sending = c->out;
            c->out = (struct bytebuf){ t.data, 0, t.cap };
            c->send_off = 0;
            submit_send(nb, c);
        }
        c = next;
    }
}

static void on_send(struct nb *nb, struct nb_conn *c, int res)
{
    ASSERT(c->send_inflight);
    c->send_inflight = false;
    if (res <= 0) {
        c->sending.len = 0;
        c->send_off = 0;
        conn_close(nb, c, true);
    } else {
        c->send_off += (uint32_t)res;
        ASSERT(c->send_off <= c->sending.len);
        congestion_check(nb, c);
        if (c->send_off < c->sending.len && c->state != NB_CLOSING) {
            submit_send(nb, c); /* Short send: the rest goes first, keeping byte order. */
            return;
        }
        c->sending.len = 0;
        c->send_off = 0;
        if (c->out.len > 0 || c->state == NB_CLOSING)
            mark_dirty(nb, c);
    }
    conn_reap(nb, c);
}

/* ---- subscriptions ---- */

/* Finds the exact filter `name`; returns its slot in topic_slots (empty or matching). */
static uint32_t topic_slot_find(const struct nb *nb, struct slice name, uint64_t hash)
{
    uint32_t mask = nb->topic_slot_cap - 1;
    for (uint32_t i = (uint32_t)hash & mask;; i = (i + 1) & mask) {
        uint32_t e = nb->topic_slots[i];
        if (e == 0)
            return i;
        const struct nb_topic *t = &nb->topics[e - 1];
        if (t->hash == hash && slice_eq((struct slice){ t->name, t->name_len }, name))
            return i;
    }
}

/* Doubles the slot table, rehashing every entry. False when out of memory. */
static bool topic_slots_grow(struct nb *nb)
{
    uint32_t cap = nb->topic_slot_cap * 2;
    uint32_t *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return false;
    for (uint32_t e = 0; e < nb->topic_count; e++) {
        uint32_t i = (uint32_t)nb->topics[e].hash & (cap - 1);
        while (slots[i] != 0)
            i = (i + 1) & (cap - 1);
        slots[i] = e + 1;
    }
    free(nb->topic_slots);
    nb->topic_slots = slots;
    nb->topic_slot_cap = cap;
    return true;
}

/* Returns the entry index of exact filter `name`, creating it; UINT32_MAX when full. */
static uint32_t topic_get_or_add(struct nb *nb, struct slice name)
{
    uint64_t hash = hash_bytes(name.ptr, name.len);
    uint32_t i = topic_slot_find(nb, name, hash);
    if (nb->topic_slots[i] != 0)
        return nb->topic_slots[i] - 1;
    if (nb->topic_count >= NB_TOPICS_MAX)
        return UINT32_MAX;
    if ((nb->topic_count + 1) * 2 > nb->topic_slot_cap) { /* load factor <= 1/2 */
        if (!topic_slots_grow(nb))
            return UINT32_MAX;
        i = topic_slot_find(nb, name, hash);
    }
    if (!array_reserve((void **)&nb->topics, &nb->topic_entries_cap, nb->topic_count + 1,
                       sizeof(*nb->topics)))
        return UINT32_MAX;
    uint8_t *copy = malloc(name.len + 1u);
    if (copy == NULL)
        return UINT32_MAX;
    memcpy(copy, name.ptr, name.len);
    nb->topics[nb->topic_count] = (struct nb_topic){ .name = copy, .name_len = name.len,
                                                     .hash = hash };
    nb->topic_slots[i] = ++nb->topic_count;
    return nb->topic_count - 1;
}

/* Index of `c` in the subscriber list of topic entry `e`, or UINT32_MAX. */
static uint32_t topic_sub_find(const struct nb_topic *t, uint32_t conn_idx)
{
    for (uint32_t i = 0; i < t->sub_count; i++)
        if (t->subs[i].conn_idx == conn_idx)
            return i;
    return UINT32_MAX;
}

/* Index of the prefix subscription `prefix` of `c` in the conn's list, or UINT32_MAX. */
static uint32_t conn_prefix_find(const struct nb *nb, const struct nb_conn *c,
                                 struct slice prefix)
{
    for (uint32_t i = 0; i < c->sub_count; i++) {
        if (!c->subs[i].is_prefix)
            continue;
        const struct nb_prefix_sub *p = &nb->prefix_subs[c->subs[i].ref];
        if (slice_eq((struct slice){ p->prefix, p->prefix_len }, prefix))
            return i;
    }
    return UINT32_MAX;
}

static bool conn_sub_add(struct nb_conn *c, uint32_t ref, bool is_prefix)
{
    if (c->sub_count >= NB_CONN_SUBS_MAX ||
        !array_reserve((void **)&c->subs, &c->sub_cap, c->sub_count + 1, sizeof(*c->subs)))
        return false;
    c->subs[c->sub_count++] = (struct nb_conn_sub){ ref, is_prefix };
    return true;
}

/* Adds or updates the exact subscription of `c` to `name`. Returns false when a limit or
 * memory ran out. */
static bool subscribe_exact(struct nb *nb, struct nb_conn *c, struct slice name, uint8_t qos)
{
    uint32_t e = topic_get_or_add(nb, name);
    if (e == UINT32_MAX)
        return false;
    struct nb_topic *t = &nb->topics[e];
    uint32_t i = topic_sub_find(t, c->idx);
    if (i != UINT32_MAX) {
        t->subs[i].qos = qos; /* MQTT-3.8.4-3: a repeated filter replaces the old one. */
        return true;
    }
    if (!array_reserve((void **)&t->subs, &t->sub_cap, t->sub_count + 1, sizeof(*t->subs)))
        return false;
    if (!conn_sub_add(c, e, false))
        return false;
    t->subs[t->sub_count++] = (struct nb_sub_ref){ c->idx, qos };
    return true;
}

static bool subscribe_prefix(struct nb *nb, struct nb_conn *c, struct slice prefix, uint8_t qos)
{
    uint32_t i = conn_prefix_find(nb, c, prefix);
    if (i != UINT32_MAX) {
        nb->prefix_subs[c->subs[i].ref].qos = qos;
        return true;
    }
    if (nb->prefix_count >= NB_PREFIX_SUBS_MAX ||
        !array_reserve((void **)&nb->prefix_subs, &nb->prefix_cap, nb->prefix_count + 1,
                       sizeof(*nb->prefix_subs)))
        return false;
    uint8_t *copy = malloc(prefix.len + 1u);
    if (copy == NULL)
        return false;
    if (!conn_sub_add(c, nb->prefix_count, true)) {
        free(copy);
        return false;
    }
    memcpy(copy, prefix.ptr, prefix.len);
    nb->prefix_subs[nb->prefix_count++] = (struct nb_prefix_sub){ copy, prefix.len, c->idx, qos };
    return true;
}

/* Removes prefix subscription `ref` by moving the last one into its place, and repoints the
 * moved one's owner at its new index. */
static void prefix_remove(struct nb *nb, uint32_t ref)
{
    ASSERT(ref < nb->prefix_count);
    free(nb->prefix_subs[ref].prefix);
    uint32_t last = --nb->prefix_count;
    if (ref == last)
        return;
    nb->prefix_subs[ref] = nb->prefix_subs[last];
    struct nb_conn *owner = &nb->conns[nb->prefix_subs[ref].conn_idx];
    for (uint32_t i = 0; i < owner->sub_count; i++) {
        if (owner->subs[i].is_prefix && owner->subs[i].ref == last) {
            owner->subs[i].ref = ref;
            return;
        }
    }
    ASSERT(false); /* every prefix subscription is on its owner's list */
}

/* Removes entry `i` of the conn's subscription list from the shared tables as well. */
static void conn_sub_remove(struct nb *nb, struct nb_conn *c, uint32_t i)
{
    ASSERT(i < c->sub_count);
    struct nb_conn_sub s = c->subs[i];
    c->subs[i] = c->subs[--c->sub_count];
    if (s.is_prefix) {
        prefix_remove(nb, s.ref);
        return;
    }
    struct nb_topic *t = &nb->topics[s.ref];
    uint32_t j = topic_sub_find(t, c->idx);
    ASSERT(j != UINT32_MAX);
    t->subs[j] = t->subs[--t->sub_count];
}

static void unsubscribe_all(struct nb *nb, struct nb_conn *c)
{
    while (c->sub_count > 0)
        conn_sub_remove(nb, c, c->sub_count - 1);
}

/* Removes the subscription of `c` to `filter`; false when it had none. */
static bool unsubscribe_one(struct nb *nb, struct nb_conn *c, struct slice filter)
{
    if (filter.len > 0 && filter.ptr[filter.len - 1] == '#') {
        uint32_t i = conn_prefix_find(nb, c, (struct slice){ filter.ptr, filter.len - 1 });
        if (i == UINT32_MAX)
            return false;
        conn_sub_remove(nb, c, i);
        return true;
    }
    for (uint32_t i = 0; i < c->sub_count; i++) {
        const struct nb_topic *t = &nb->topics[c->subs[i].ref];
        if (!c->subs[i].is_prefix && slice_eq((struct slice){ t->name, t->name_len }, filter)) {
            conn_sub_remove(nb, c, i);
            return true;
        }
    }
    return false;
}

/* ---- packets ---- */

static bool has_byte(struct slice s, uint8_t b)
{
    return s.len > 0 && memchr(s.ptr, b, s.len) != NULL;
}

/* The reason code for one SUBSCRIBE entry, after subscribing when it is supported. The codec
 * has validated the filter: a '#' can only be its last character. */
static uint8_t subscribe_entry(struct nb *nb, struct nb_conn *c, struct slice filter,
                               uint8_t options)
{
    bool v5 = c->version == MQTT_V5;
    static const char share[] = "$share/";
    if (filter.len >= sizeof(share) - 1 && memcmp(filter.ptr, share, sizeof(share) - 1) == 0)
        return v5 ? MQTT_RC_SHARED_SUB_NOT_SUPPORTED : MQTT_RC_UNSPECIFIED;
    if (has_byte(filter, '+'))
        return v5 ? MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED : MQTT_RC_UNSPECIFIED;
    uint8_t qos = MIN(options & MQTT_SUBOPT_QOS_MASK, 1u);
    bool ok;
    if (filter.ptr[filter.len - 1] == '#')
        ok = subscribe_prefix(nb, c, (struct slice){ filter.ptr, filter.len - 1 }, qos);
    else
        ok = subscribe_exact(nb, c, filter, qos);
    if (!ok)
        return v5 ? MQTT_RC_QUOTA_EXCEEDED : MQTT_RC_UNSPECIFIED;
    return qos;
}

static void on_subscribe(struct nb *nb, struct nb_conn *c, const struct mqtt_subscribe *sub)
{
    uint32_t pos = 0, n = 0;
    struct slice filter;
    uint8_t options;
    while (codec_sub_next(sub->entries, &pos, &filter, &options)) {
        ASSERT(n < NB_PACKET_MAX);
        nb->rcs[n++] = subscribe_entry(nb, c, filter, options);
    }
    ASSERT(n == sub->count);
    struct mqtt_packet pkt = { .type = MQTT_SUBACK };
    pkt.suback.packet_id = sub->packet_id;
    pkt.suback.rcs = (struct slice){ nb->rcs, n };
    if (!write_packet(nb, c, &pkt))
        conn_close(nb, c, true);
}

static void on_unsubscribe(struct nb *nb, struct nb_conn *c, const struct mqtt_subscribe *sub)
{
    uint32_t pos = 0, n = 0;
    struct slice filter;
    while (codec_sub_next(sub->entries, &pos, &filter, NULL)) {
        ASSERT(n < NB_PACKET_MAX);
        bool existed = unsubscribe_one(nb, c, filter);
        nb->rcs[n++] = existed ? MQTT_RC_SUCCESS : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
    }
    struct mqtt_packet pkt = { .type = MQTT_UNSUBACK };
    pkt.suback.packet_id = sub->packet_id;
    pkt.suback.rcs = (struct slice){ nb->rcs, n };
    if (!write_packet(nb, c, &pkt))
        conn_close(nb, c, true);
}

static void on_connect(struct nb *nb, struct nb_conn *c, const struct mqtt_connect *conn)
{
    c->version = conn->version;
    c->state = NB_ACTIVE;
    nb->stats.connects++;
    struct mqtt_packet pkt = { .type = MQTT_CONNACK };
    char id[NB_CLIENT_ID_MAX];
    if (c->version == MQTT_V5) {
        struct mqtt_props *p = &pkt.connack.props;
        p->present = (1ull << MQTT_PROP_MAX_QOS) | (1ull << MQTT_PROP_RETAIN_AVAILABLE) |
                     (1ull << MQTT_PROP_SHARED_SUB_AVAILABLE);
        p->max_qos = 1;
        if (conn->client_id.len == 0) {
            snprintf(id, sizeof(id), "nullbroker-%u-%u", c->idx, c->gen);
            p->present |= 1ull << MQTT_PROP_ASSIGNED_CLIENT_ID;
            p->assigned_client_id = slice_from_cstr(id);
        }
    }
    if (!write_packet(nb, c, &pkt))
        conn_close(nb, c, true);
}

/* Encodes the forward of `pub` for `version` and `qos` into its variant (once per publish). */
static const struct nb_variant *variant_get(struct nb *nb, const struct mqtt_publish *pub,
                                            uint8_t version, uint8_t qos)
{
    bool v5 = version == MQTT_V5;
    struct nb_variant *v = &nb->variants[(v5 ? 2u : 0u) + qos];
    if (v->is_ready)
        return v;
    struct mqtt_packet pkt = { .type = MQTT_PUBLISH };
    pkt.publish.qos = qos;
    pkt.publish.packet_id = qos > 0 ? 1 : 0;
    pkt.publish.topic = pub->topic;
    pkt.publish.payload = pub->payload;
    uint8_t enc_version = v5 ? MQTT_V5 : MQTT_V311;
    uint32_t n = codec_size(&pkt, enc_version);
    ASSERT(n > 0 && n <= NB_VARIANT_CAP);
    v->len = codec_encode(&pkt, enc_version, v->data);
    /* The packet id sits just before the property length (v5) and the payload. */
    v->packet_id_off = v->len - pub->payload.len - (v5 ? 1u : 0u) - 2u;
    ASSERT(qos == 0 || (v->data[v->packet_id_off] == 0 && v->data[v->packet_id_off + 1] == 1));
    v->is_ready = true;
    return v;
}

static void deliver(struct nb *nb, struct nb_conn *c, const struct mqtt_publish *pub,
                    uint8_t sub_qos)
{
    if (c->state != NB_ACTIVE)
        return;
    uint8_t qos = MIN(pub->qos, sub_qos);
    const struct nb_variant *v = variant_get(nb, pub, c->version, qos);
    uint8_t *p = out_reserve(nb, c, v->len);
    if (p == NULL) {
        nb->stats.dropped++;
        return;
    }
    memcpy(p, v->data, v->len);
    if (qos > 0) {
        uint16_t id = c->next_packet_id;
        c->next_packet_id = id == UINT16_MAX ? 1 : (uint16_t)(id + 1);
        p[v->packet_id_off] = (uint8_t)(id >> 8);
        p[v->packet_id_off + 1] = (uint8_t)id;
    }
    nb->stats.deliveries++;
}

/* True when topic `name` matches the filter "P#" with prefix `p` (also "P" without its last
 * '/'; "#" never matches a topic starting with '$', MQTT-4.7.2-1). */
static bool prefix_matches(const struct nb_prefix_sub *p, struct slice name)
{
    if (p->prefix_len == 0)
        return name.ptr[0] != '$';
    if (name.len >= p->prefix_len)
        return memcmp(name.ptr, p->prefix, p->prefix_len) == 0;
    return name.len + 1 == p->prefix_len && memcmp(name.ptr, p->prefix, name.len) == 0;
}

static void on_publish(struct nb *nb, struct nb_conn *c, const struct mqtt_publish *pub)
{
    nb->stats.publishes_in++;
    if (pub->qos > 1 || pub->topic.len == 0) { /* QoS 2 or a topic alias: not supported. */
        conn_close(nb, c, true);
        return;
    }
    if (pub->qos == 1) {
        struct mqtt_packet ack = { .type = MQTT_PUBACK };
        ack.ack.packet_id = pub->packet_id;
        if (!write_packet(nb, c, &ack)) {
            conn_close(nb, c, true);
            return;
        }
    }
    for (uint32_t i = 0; i < NB_VARIANT_COUNT; i++)
        nb->variants[i].is_ready = false;
    uint64_t hash = hash_bytes(pub->topic.ptr, pub->topic.len);
    uint32_t e = nb->topic_slots[topic_slot_find(nb, pub->topic, hash)];
    if (e != 0) {
        const struct nb_topic *t = &nb->topics[e - 1];
        for (uint32_t i = 0; i < t->sub_count; i++)
            deliver(nb, &nb->conns[t->subs[i].conn_idx], pub, t->subs[i].qos);
    }
    for (uint32_t i = 0; i < nb->prefix_count; i++) {
        const struct nb_prefix_sub *p = &nb->prefix_subs[i];
        if (prefix_matches(p, pub->topic))
            deliver(nb, &nb->conns[p->conn_idx], pub, p->qos);
    }
}

/* Handles one complete frame borrowed from a receive buffer or `in`. */
static void on_frame(struct nb *nb, struct nb_conn *c, const uint8_t *frame, uint32_t len)
{
    struct mqtt_packet pkt;
    uint8_t version = c->state == NB_NEW ? MQTT_V311 : c->version;
    if (codec_decode(frame, len, version, &pkt) != MQTT_RC_SUCCESS) {
        conn_close(nb, c, true);
        return;
    }
    if (c->state == NB_NEW) {
        if (pkt.type == MQTT_CONNECT)
            on_connect(nb, c, &pkt.connect);
        else
            conn_close(nb, c, true);
        return;
    }
    switch (pkt.type) {
    case MQTT_PUBLISH:
        on_publish(nb, c, &pkt.publish);
        break;
    case MQTT_PUBACK:
        break; /* No redelivery: nothing waits for it. */
    case MQTT_SUBSCRIBE:
        on_subscribe(nb, c, &pkt.subscribe);
        break;
    case MQTT_UNSUBSCRIBE:
        on_unsubscribe(nb, c, &pkt.subscribe);
        break;
    case MQTT_PINGREQ: {
        struct mqtt_packet resp = { .type = MQTT_PINGRESP };
        if (!write_packet(nb, c, &resp))
            conn_close(nb, c, true);
        break;
    }
    case MQTT_DISCONNECT:
        conn_close(nb, c, false);
        break;
    default: /* A second CONNECT, QoS 2 flow, AUTH: not supported. */
        conn_close(nb, c, true);
        break;
    }
}

/* Continues the frame partly held in `in`. Returns the bytes of `data` used. */
static uint32_t feed_partial(struct nb *nb, struct nb_conn *c, const uint8_t *data,
                             uint32_t len)
{
    uint32_t used = 0;
    while (c->in_frame_len == 0 && used < len) { /* The header: at most 5 bytes. */
        if (!bytebuf_append(&c->in, data + used++, 1)) {
            conn_close(nb, c, true);
            return len;
        }
        uint32_t frame_len = 0;
        int rc = codec_frame(c->in.data, c->in.len, &frame_len);
        if (rc < 0 || (rc > 0 && frame_len > NB_PACKET_MAX)) {
            conn_close(nb, c, true);
            return len;
        }
        if (rc > 0)
            c->in_frame_len = frame_len;
    }
    if (c->in_frame_len == 0)
        return used;
    uint32_t take = MIN(c->in_frame_len - c->in.len, len - used);
    if (!bytebuf_append(&c->in, data + used, take)) {
        conn_close(nb, c, true);
        return len;
    }
    used += take;
    if (c->in.len == c->in_frame_len) {
        on_frame(nb, c, c->in.data, c->in.len);
        c->in.len = 0;
        c->in_frame_len = 0;
    }
    return used;
}

static void feed(struct nb *nb, struct nb_conn *c, const uint8_t *data, uint32_t len);

/* Drops entries of conns closed (or closed and reused) since they were parked. Leaves at most
 * one entry per pool entry, so the list never exceeds conn_cap. */
static void parked_compact(struct nb *nb)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < nb->parked_count; i++) {
        uint64_t ud = nb->parked[i];
        const struct nb_conn *c = &nb->conns[uring_ud_idx(ud)];
        if (c->gen == uring_ud_gen(ud) && c->is_parked &&
            (c->state == NB_NEW || c->state == NB_ACTIVE))
            nb->parked[n++] = ud;
    }
    nb->parked_count = n;
}

/* Keeps input that arrives during a pause, and stops the conn's recv until resume_input. */
static void hold_input(struct nb *nb, struct nb_conn *c, const uint8_t *data, uint32_t len)
{
    if (!bytebuf_append(&c->held, data, len)) {
        conn_close(nb, c, true);
        return;
    }
    if (c->is_parked)
        return;
    if (nb->parked_count == nb->parked_cap)
        parked_compact(nb);
    ASSERT(nb->parked_count < nb->parked_cap);
    c->is_parked = true;
    nb->parked[nb->parked_count++] = uring_ud(URING_OP_NONE, c->gen, c->idx);
    if (c->recv_armed && !c->is_recv_cancelling) {
        struct io_uring_sqe *sqe = uring_sqe(&nb->ring);
        io_uring_prep_cancel64(sqe, uring_ud(URING_OP_RECV, c->gen, c->idx), 0);
        io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_CANCEL, c->gen, c->idx));
        c->is_recv_cancelling = true;
    }
}

/* After a pause: feeds each parked conn what it held, in the order they were parked, and
 * re-arms its recv. If the held input pauses again, the rest stay parked for the next
 * resume. */
static void resume_input(struct nb *nb)
{
    nb->needs_resume = false;
    uint32_t i = 0;
    for (; i < nb->parked_count && nb->congested_count == 0; i++) {
        uint64_t ud = nb->parked[i];
        struct nb_conn *c = &nb->conns[uring_ud_idx(ud)];
        if (c->gen != uring_ud_gen(ud) || !c->is_parked)
            continue; /* closed (and maybe reused) since */
        c->is_parked = false;
        bool is_open = c->state == NB_NEW || c->state == NB_ACTIVE;
        struct bytebuf held = c->held;
        c->held = (struct bytebuf){ 0 };
        if (is_open)
            feed(nb, c, held.data, held.len); /* may park `c` again, holding into a new buf */
        if (c->held.data == NULL) {
            c->held = (struct bytebuf){ held.data, 0, held.cap };
        } else {
            free(held.data);
        }
        if (is_open && !c->is_parked && !c->recv_armed && c->state != NB_CLOSING)
            conn_arm_recv(nb, c);
    }
    /* Conns parked again (appended during the loop) or not reached stay for next time. */
    memmove(nb->parked, nb->parked + i, (nb->parked_count - i) * sizeof(*nb->parked));
    nb->parked_count -= i;
}

/* Frames and handles received bytes; a frame cut by the buffer's end is kept in `in`. */
static void feed(struct nb *nb, struct nb_conn *c, const uint8_t *data, uint32_t len)
{
    uint32_t off = 0;
    while (off < len && c->state != NB_CLOSING) {
        if (nb->congested_count > 0) {
            hold_input(nb, c, data + off, len - off);
            return;
        }
        if (c->in.len > 0) {
            off += feed_partial(nb, c, data + off, len - off);
            continue;
        }
        uint32_t frame_len = 0;
        int rc = codec_frame(data + off, len - off, &frame_len);
        if (rc < 0 || (rc > 0 && frame_len > NB_PACKET_MAX)) {
            conn_close(nb, c, true);
            return;
        }
        if (rc == 0 || frame_len > len - off) {
            if (!bytebuf_reserve(&c->in, rc > 0 ? frame_len : 8u) ||
                !bytebuf_append(&c->in, data + off, len - off)) {
                conn_close(nb, c, true);
                return;
            }
            c->in_frame_len = rc > 0 ? frame_len : 0;
            return;
        }
        on_frame(nb, c, data + off, frame_len);
        off += frame_len;
    }
}

/* ---- completions and the loop ---- */

static void arm_accept(struct nb *nb)
{
    struct io_uring_sqe *sqe = uring_sqe(&nb->ring);
    io_uring_prep_multishot_accept_direct(sqe, nb->listen_fd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_ACCEPT, 0, 0));
    nb->accept_armed = true;
}

static void arm_signal_read(struct nb *nb)
{
    struct io_uring_sqe *sqe = uring_sqe(&nb->ring);
    io_uring_prep_read(sqe, nb->signal_fd, &nb->siginfo, sizeof(nb->siginfo), 0);
    io_uring_sqe_set_data64(sqe, NB_UD_SIGNAL);
}

static void on_accept(struct nb *nb, const struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        nb->accept_armed = false; /* Re-armed by the loop (after -ENFILE: once a slot frees). */
    if (cqe->res < 0)
        return;
    nb->stats.accepted++;
    struct nb_conn *c = conn_alloc(nb, cqe->res);
    if (c == NULL) {
        struct io_uring_sqe *sqe = uring_sqe(&nb->ring);
        io_uring_prep_close_direct(sqe, (unsigned)cqe->res);
        io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_NONE, 0, 0));
        return;
    }
    conn_arm_recv(nb, c);
}

/* The conn a completion names, or NULL when the pool entry has moved on (stale). */
static struct nb_conn *conn_of(struct nb *nb, uint64_t ud)
{
    uint32_t idx = uring_ud_idx(ud);
    ASSERT(idx < nb->conn_high);
    struct nb_conn *c = &nb->conns[idx];
    if (c->gen != uring_ud_gen(ud) || c->state == NB_FREE)
        return NULL;
    return c;
}

static void on_recv(struct nb *nb, const struct io_uring_cqe *cqe)
{
    struct nb_conn *c = conn_of(nb, cqe->user_data);
    bool has_buf = (cqe->flags & IORING_CQE_F_BUFFER) != 0;
    uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    if (c != NULL && cqe->res > 0 && has_buf) {
        if (c->state != NB_CLOSING)
            feed(nb, c, uring_bufring_addr(&nb->rx, bid), (uint32_t)cqe->res);
    } else if (c != NULL && cqe->res != -ENOBUFS &&
               !(cqe->res == -ECANCELED && c->is_recv_cancelling)) {
        conn_close(nb, c, cqe->res != 0); /* EOF or an error */
    }
    if (has_buf)
        uring_bufring_recycle(&nb->rx, bid); /* Even for a stale conn: the buffer is ours. */
    if (c == NULL || (cqe->flags & IORING_CQE_F_MORE))
        return;
    c->recv_armed = false;
    c->is_recv_cancelling = false;
    if (c->state == NB_CLOSING)
        conn_reap(nb, c);
    else if (!c->is_parked)
        conn_arm_recv(nb, c); /* Multishot ended (buffers ran out, or a pause ended). */
}

static void handle_cqe(struct nb *nb, const struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    struct nb_conn *c;
    switch (uring_ud_op(ud)) {
    case URING_OP_ACCEPT:
        on_accept(nb, cqe);
        break;
    case URING_OP_RECV:
        on_recv(nb, cqe);
        break;
    case URING_OP_SEND:
        c = conn_of(nb, ud);
        if (c != NULL)
            on_send(nb, c, cqe->res);
        break;
    case URING_OP_CLOSE:
        c = conn_of(nb, ud);
        if (c != NULL) {
            c->slot_closed = true;
            conn_reap(nb, c);
        }
        break;
    case URING_OP_NONE:
        if (ud == NB_UD_SIGNAL)
            nb->is_stopping = true;
        break;
    default:
        break; /* Cancels: the completions they cause carry the news. */
    }
}

static void reap_completions(struct nb *nb)
{
    struct io_uring_cqe *cqe;
    unsigned head;
    uint32_t n = 0;
    io_uring_for_each_cqe(&nb->ring, head, cqe)
    {
        handle_cqe(nb, cqe);
        if (++n == NB_CQE_BATCH_MAX)
            break;
    }
    io_uring_cq_advance(&nb->ring, n);
    uring_bufring_publish(&nb->rx);
}

static void run(struct nb *nb)
{
    arm_accept(nb);
    arm_signal_read(nb);
    for (;;) { /* The event loop: ends only on SIGINT or SIGTERM. */
        reap_completions(nb);
        if (nb->needs_resume && nb->congested_count == 0)
            resume_input(nb);
        flush_all(nb);
        if (nb->is_stopping)
            return;
        /* A multishot accept ends on errors such as -ENFILE (slot table full): try again
         * once a conn has gone, rather than spinning on the error. */
        if (!nb->accept_armed && nb->conn_live < nb->conn_cap)
            arm_accept(nb);
        int rc = io_uring_submit_and_wait(&nb->ring, 1);
        ASSERT(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
    }
}

/* ---- setup ---- */

static int parse_args(int argc, char **argv, uint16_t *port, const char **bind_addr)
{
    static const struct option longopts[] = {
        { "port", required_argument, NULL, 'p' },
        { "bind", required_argument, NULL, 'b' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "p:b:h", longopts, NULL)) != -1) {
        if (opt == 'p') {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end != '\0' || end == optarg || v > 65535) {
                fprintf(stderr, "nullbroker: --port %s: not a port number\n", optarg);
                return 2;
            }
            *port = (uint16_t)v;
        } else if (opt == 'b') {
            *bind_addr = optarg;
        } else {
            fprintf(opt == 'h' ? stdout : stderr,
                    "usage: nullbroker [--port N] [--bind ADDR]\n"
                    "The ceiling broker of bench/compare (MQTT QoS 0/1, exact and trailing-#\n"
                    "filters, nothing else). --port 0 picks a free port (default 1883);\n"
                    "--bind defaults to 127.0.0.1.\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "nullbroker: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return -1;
}

/* Everything sized at start. Returns 0 or -errno with a message printed. */
static int nb_setup(struct nb *nb, uint16_t port, const char *bind_addr, uint16_t *bound)
{
    struct rlimit rl;
    nb->conn_cap = NB_CONN_MAX;
    /* The kernel caps a ring's direct-descriptor table at RLIMIT_NOFILE. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < nb->conn_cap)
        nb->conn_cap = (uint32_t)rl.rlim_cur;
    nb->conns = calloc(nb->conn_cap, sizeof(*nb->conns));
    nb->topic_slot_cap = 1024;
    nb->topic_slots = calloc(nb->topic_slot_cap, sizeof(*nb->topic_slots));
    nb->rcs = malloc(NB_PACKET_MAX);
    nb->parked_cap = nb->conn_cap * 2;
    nb->parked = calloc(nb->parked_cap, sizeof(*nb->parked));
    uint8_t *variant_mem = malloc((size_t)NB_VARIANT_COUNT * NB_VARIANT_CAP);
    if (nb->conns == NULL || nb->topic_slots == NULL || nb->rcs == NULL || nb->parked == NULL ||
        variant_mem == NULL) {
        fprintf(stderr, "nullbroker: out of memory\n");
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < NB_VARIANT_COUNT; i++)
        nb->variants[i].data = variant_mem + (size_t)i * NB_VARIANT_CAP;
    int rc = uring_init(&nb->ring, NB_RING_ENTRIES, nb->conn_cap);
    if (rc < 0) {
        fprintf(stderr, "nullbroker: io_uring setup: %s\n", strerror(-rc));
        return rc;
    }
    rc = uring_bufring_init(&nb->ring, &nb->rx, 0, NB_RECV_BUF_COUNT, NB_RECV_BUF_SIZE);
    if (rc < 0) {
        fprintf(stderr, "nullbroker: buffer ring: %s\n", strerror(-rc));
        return rc;
    }
    char err[512];
    rc = uring_listen_tcp(bind_addr, port, NB_LISTEN_BACKLOG, bound, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "nullbroker: %s\n", err);
        return rc;
    }
    nb->listen_fd = rc;
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGPIPE); /* never raised (MSG_NOSIGNAL); blocked for safety */
    nb->signal_fd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (nb->signal_fd == -1 || sigprocmask(SIG_BLOCK, &sigs, NULL) == -1) {
        rc = -errno;
        fprintf(stderr, "nullbroker: signalfd: %s\n", strerror(-rc));
        return rc;
    }
    return 0;
}

int main(int argc, char **argv)
{
    uint16_t port = 1883;
    const char *bind_addr = "127.0.0.1";
    int rc = parse_args(argc, argv, &port, &bind_addr);
    if (rc >= 0)
        return rc;
    static struct nb nb; /* Large; owned by main, which passes it explicitly (STYLE 8). */
    uint16_t bound = 0;
    if (nb_setup(&nb, port, bind_addr, &bound) < 0)
        return 1;
    fprintf(stderr, "listening tcp %s:%u\n", bind_addr, bound);
    run(&nb);
    fprintf(stderr,
            "nullbroker: stopped accepted=%llu connects=%llu publishes=%llu deliveries=%llu "
            "dropped=%llu pauses=%llu closed_on_error=%llu\n",
            (unsigned long long)nb.stats.accepted, (unsigned long long)nb.stats.connects,
            (unsigned long long)nb.stats.publishes_in, (unsigned long long)nb.stats.deliveries,
            (unsigned long long)nb.stats.dropped, (unsigned long long)nb.stats.pauses,
            (unsigned long long)nb.stats.closed_errors);
    /* Exiting releases the ring, the sockets and the memory; a measuring tool needs no
     * orderly teardown. */
    return 0;
}
