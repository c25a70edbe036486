/* bench/bench_engine.c - keelmq-bench's scenarios: MQTT client logic over bench_net, the
 * phases of a run (setup, warm-up, measurement, drain, close), publishing schedules and the
 * receive-side accounting. Runs on the calling thread only.
 *
 * Connection indexes: in pubsub, subscribers are 0..S-1 and publishers S..S+P-1; in conn,
 * every connection is an idle subscriber. A connection's `role_idx` is its index within its
 * role, which is also the publisher index written into the payload stamp.
 *
 * Publishing. Closed loop (--rate 0): a QoS 0 publisher queues messages (up to
 * BENCH_CLOSED_LOOP_BATCH_LEN bytes per send) only when at most one batch waits behind the
 * send in flight, so the kernel's socket buffer and through it the broker's reading set the
 * pace, and only while fewer than `qos0_window` of its messages are on their way to each of
 * its receivers: a broker that reads faster than it delivers would otherwise queue without
 * bound (keelmq grew by 200 MB/s that way), and the latency would measure that queue. The
 * window shares BENCH_QOS0_INFLIGHT_MAX deliveries evenly over one round of messages (a
 * fan-out message is fanout deliveries; with a per-publisher window p2p 1000/1000 queued 2 s
 * of messages), but stays between BENCH_QOS0_WINDOW_MIN messages (fewer starve the broker's
 * output coalescing: fan-out 1 -> 1000 fell from 7 M to 0.75 M deliveries/s with 45) and
 * BENCH_QOS0_WINDOW_BATCHES_MAX batches (a single pair needs no more). QoS 1/2 publishers keep
 * their --inflight window full. The stamp carries the time the message was queued, which is the
 * send time up to one loop iteration. Open loop (--rate R): message k of publisher i is due
 * at start + (k * P + i) / R, whatever happened before; it carries that intended time, so a
 * stall (a full window, a full socket) shows up as latency instead of hiding (STYLE 13).
 */
#include "bench/bench_engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_net.h"
#include "bench/bench_proc.h"
#include "bench/stamp.h"
#include "core/codec.h"
#include "core/topic.h"

#define NS_PER_S 1000000000ull
#define PROGRESS_INTERVAL_NS NS_PER_S
#define CLOSE_MAX_NS 1000000000ull   /* to flush the DISCONNECTs */
#define IDLE_WAIT_MAX_NS 100000000ull

enum conn_state {
    ST_IDLE = 0,
    ST_TCP,            /* connect queued */
    ST_CONNECT_SENT,
    ST_SUBSCRIBE_SENT,
    ST_READY,
    ST_FAILED,
};

enum conn_role {
    ROLE_SUBSCRIBER = 1,
    ROLE_PUBLISHER,
};

enum phase {
    PH_SETUP = 1,
    PH_RUN,            /* pubsub: warm-up and measurement; conn: hold */
    PH_DRAIN,
    PH_CLOSE,
    PH_DONE,
};

enum pid_state {
    PID_FREE = 0,
    PID_WAIT_ACK,      /* PUBACK (QoS 1) or PUBREC (QoS 2) */
    PID_WAIT_COMP,     /* QoS 2 after PUBREL */
};

struct publisher {
    uint8_t *header;     /* PUBLISH up to the payload, packet id 0 */
    uint32_t header_len;
    uint32_t pid_off;    /* where the packet id goes (QoS > 0) */
    uint32_t topic_off;
    uint32_t topic_len;
    uint16_t *free_pids; /* stack of free packet ids 1..inflight */
    uint32_t free_count;
    uint8_t *pid_states; /* enum pid_state, indexed by packet id */
};

struct engine {
    const struct bench_options *o;
    struct bench_result *r;
    struct bench_net net;
    enum phase phase;
    uint32_t conn_count;
    uint32_t sub_count;      /* connections that subscribe (conn: all) */
    uint32_t pub_count;
    struct publisher *pubs;
    uint64_t *sent_count;    /* per publisher: messages queued = next sequence number */
    uint64_t *received_from; /* per publisher: distinct deliveries at all its receivers */
    uint32_t *fanout;        /* per publisher: receivers (trackers) expecting it */
    uint64_t qos0_window;    /* closed-loop QoS 0: messages in flight per (publisher, receiver) */
    struct track *tracks;
    uint32_t track_count;
    uint32_t *sub_track;     /* subscriber -> index into tracks */
    uint32_t *topic_order;   /* publisher indexes sorted by topic */
    uint64_t epoch_ns;       /* stamps carry send times relative to this */
    uint64_t setup_start_ns;
    uint64_t run_start_ns;
    uint64_t measure_start_ns;
    uint64_t measure_end_ns;
    uint64_t drain_end_ns;
    uint64_t drain_idle_end_ns;
    uint64_t drain_progress; /* deliveries + acks seen, to tell a slow drain from a dead one */
    uint64_t close_end_ns;
    bool is_measuring;
    double ns_per_msg;       /* open loop: 1e9 / rate */
    uint64_t next_due_ns;    /* open loop: earliest due message, for the wait timeout */
    uint32_t opened;
    uint32_t connecting;
    uint32_t ready;
    uint32_t setup_failed;
    uint64_t inflight_total; /* QoS > 0 messages not yet acknowledged */
    uint64_t acked_total;
    double cpu_start_s;
    uint64_t next_progress_ns;
    uint64_t last_progress_ns;
    uint64_t progress_sent;
    uint64_t progress_received;
    uint64_t progress_connacks;
    uint64_t next_keepalive_ns;
    int pid;
    uint8_t run_id;          /* in every stamp: tells our messages from an earlier run's */
    bool is_stopping;        /* a signal asked to stop early */
};

/* ---------------------------------------------------------------------------------------- */
/* Failures */

static void note_failure(struct engine *e, const struct bench_conn *c, const char *why, int res)
{
    e->r->failures++;
    if (e->r->first_failure[0] == '\0')
        snprintf(e->r->first_failure, sizeof(e->r->first_failure), "connection %u: %s%s%s",
                 c->idx, why, res < 0 ? ": " : "", res < 0 ? strerror(-res) : "");
}

/* Marks `c` failed, counts it once and closes it. Returns false (for on_frame). */
static bool fail_conn(struct engine *e, struct bench_conn *c, const char *why, int res)
{
    if (c->state == ST_FAILED)
        return false;
    if (c->state != ST_READY) {
        if (c->state != ST_IDLE) { /* opened: it held a place among the connects in flight */
            ASSERT(e->connecting > 0);
            e->connecting--;
        }
        e->setup_failed++;
    }
    c->state = ST_FAILED;
    note_failure(e, c, why, res);
    bench_net_close(&e->net, c);
    return false;
}

/* ---------------------------------------------------------------------------------------- */
/* Packets out */

static bool send_packet(struct engine *e, struct bench_conn *c, const struct mqtt_packet *pkt)
{
    uint32_t len = codec_size(pkt, e->o->mqtt_version);
    ASSERT(len > 0);
    uint8_t *p = bench_net_out_reserve(&e->net, c, len);
    if (p == NULL)
        return false;
    uint32_t written = codec_encode(pkt, e->o->mqtt_version, p);
    ASSERT(written == len);
    return true;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP with reason 0: four bytes in every version. */
static void send_ack(struct engine *e, struct bench_conn *c, uint8_t first_byte, uint16_t pid)
{
    uint8_t *p = bench_net_out_reserve(&e->net, c, 4);
    if (p == NULL) {
        fail_conn(e, c, "output buffer full", 0);
        return;
    }
    p[0] = first_byte;
    p[1] = 2;
    p[2] = (uint8_t)(pid >> 8);
    p[3] = (uint8_t)pid;
}

static void send_two_bytes(struct engine *e, struct bench_conn *c, uint8_t first_byte)
{
    uint8_t *p = bench_net_out_reserve(&e->net, c, 2);
    if (p != NULL) {
        p[0] = first_byte;
        p[1] = 0;
    }
}

static void send_connect(struct engine *e, struct bench_conn *c)
{
    char client_id[48];
    snprintf(client_id, sizeof(client_id), "kb%d-%c%u", e->pid,
             c->role == ROLE_PUBLISHER ? 'p' : 's', c->role_idx);
    struct mqtt_packet pkt = { .type = MQTT_CONNECT };
    pkt.connect.version = e->o->mqtt_version;
    pkt.connect.clean_start = e->o->clean;
    pkt.connect.keepalive_s = e->o->keepalive_s;
    pkt.connect.client_id = slice_from_cstr(client_id);
    if (!send_packet(e, c, &pkt)) {
        fail_conn(e, c, "cannot queue CONNECT", 0);
        return;
    }
    c->state = ST_CONNECT_SENT;
}

static void send_subscribe(struct engine *e, struct bench_conn *c)
{
    char filter[BENCH_TOPIC_EXPANDED_LEN_MAX];
    int n = bench_pattern_expand(e->o->filter, c->role_idx, filter, sizeof(filter));
    ASSERT(n > 0);
    uint8_t entries[BENCH_TOPIC_EXPANDED_LEN_MAX + 3];
    entries[0] = (uint8_t)(n >> 8);
    entries[1] = (uint8_t)n;
    memcpy(entries + 2, filter, (size_t)n);
    entries[2 + n] = e->o->qos;
    struct mqtt_packet pkt = { .type = MQTT_SUBSCRIBE };
    pkt.subscribe.packet_id = 1;
    pkt.subscribe.entries = (struct slice){ entries, (uint32_t)n + 3 };
    pkt.subscribe.count = 1;
    if (!send_packet(e, c, &pkt)) {
        fail_conn(e, c, "cannot queue SUBSCRIBE", 0);
        return;
    }
    c->state = ST_SUBSCRIBE_SENT;
}

/* ---------------------------------------------------------------------------------------- */
/* Publishing */

static bool publish_one(struct engine *e, struct bench_conn *c, uint64_t send_ns)
{
    struct publisher *pub = &e->pubs[c->role_idx];
    if (e->o->qos > 0 && pub->free_count == 0)
        return false;
    uint32_t len = pub->header_len + e->o->payload_len;
    uint8_t *p = bench_net_out_reserve(&e->net, c, len);
    if (p == NULL)
        return false;
    memcpy(p, pub->header, pub->header_len);
    if (e->o->qos > 0) {
        uint16_t pid = pub->free_pids[--pub->free_count];
        ASSERT_HOT(pub->pid_states[pid] == PID_FREE);
        pub->pid_states[pid] = PID_WAIT_ACK;
        p[pub->pid_off] = (uint8_t)(pid >> 8);
        p[pub->pid_off + 1] = (uint8_t)pid;
        e->inflight_total++;
    }
    uint64_t seq = e->sent_count[c->role_idx]++;
    struct stamp s = {
        .run_id = e->run_id, .publisher_idx = c->role_idx, .seq = seq, .send_ns = send_ns,
    };
    stamp_encode(&s, p + pub->header_len);
    memset(p + pub->header_len + STAMP_LEN, 0, e->o->payload_len - STAMP_LEN);
    e->r->sent_total++;
    if (e->is_measuring)
        e->r->sent++;
    return true;
}

static void publish_closed_loop(struct engine *e, struct bench_conn *c)
{
    uint64_t now_rel = e->net.now_ns - e->epoch_ns;
    /* Backpressure: at most one batch queued behind the one the kernel is taking, and a
     * bounded number of deliveries on their way through the broker. */
    uint32_t i = c->role_idx;
    if (e->o->qos == 0 && c->out.len > 0)
        return;
    do {
        if (e->o->qos == 0 && e->fanout[i] > 0) { /* unheard publishers: socket pace only */
            uint64_t on_the_way = e->sent_count[i] * e->fanout[i] - e->received_from[i];
            if (on_the_way >= e->qos0_window * e->fanout[i])
                return;
        }
        if (!publish_one(e, c, now_rel))
            return;
    } while (c->out.len < BENCH_CLOSED_LOOP_BATCH_LEN);
}

static void publish_open_loop(struct engine *e, struct bench_conn *c)
{
    /* Everything due before the end of the measurement goes out, even when the loop woke up
     * after it: the schedule, not the loop's timing, decides how many messages are sent. */
    uint64_t now_rel = MIN(e->net.now_ns, e->measure_end_ns - 1) - e->epoch_ns;
    uint64_t start_rel = e->run_start_ns - e->epoch_ns;
    for (;;) {
        uint64_t k = e->sent_count[c->role_idx];
        double offset = ((double)k * e->pub_count + c->role_idx) * e->ns_per_msg;
        uint64_t due = start_rel + (uint64_t)offset;
        if (due > now_rel) {
            if (due + e->epoch_ns < e->next_due_ns)
                e->next_due_ns = due + e->epoch_ns;
            return;
        }
        if (bench_net_out_pending(c) >= BENCH_OPEN_LOOP_BACKLOG_LEN || !publish_one(e, c, due))
            return; /* Late: the message keeps its due time and its latency shows it. */
    }
}

static void publish_all(struct engine *e)
{
    e->next_due_ns = UINT64_MAX;
    for (uint32_t i = 0; i < e->pub_count; i++) {
        struct bench_conn *c = &e->net.conns[e->sub_count + i];
        if (c->state != ST_READY)
            continue;
        if (e->o->rate > 0)
            publish_open_loop(e, c);
        else
            publish_closed_loop(e, c);
    }
}

/* A PUBACK, PUBREC or PUBCOMP for packet id `pid` of publisher `c`. */
static bool on_pub_ack(struct engine *e, struct bench_conn *c, uint8_t type, uint16_t pid)
{
    if (c->role != ROLE_PUBLISHER || e->o->qos == 0 || pid == 0 || pid > e->o->inflight)
        return fail_conn(e, c, "acknowledgement for an unknown packet id", 0);
    struct publisher *pub = &e->pubs[c->role_idx];
    uint8_t want = type == MQTT_PUBCOMP ? PID_WAIT_COMP : PID_WAIT_ACK;
    bool is_right_type = type == (e->o->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC) ||
                         type == MQTT_PUBCOMP;
    if (!is_right_type || pub->pid_states[pid] != want)
        return fail_conn(e, c, "acknowledgement out of order", 0);
    if (type == MQTT_PUBREC) {
        pub->pid_states[pid] = PID_WAIT_COMP;
        send_ack(e, c, (MQTT_PUBREL << 4) | 0x02, pid);
        return true;
    }
    pub->pid_states[pid] = PID_FREE;
    pub->free_pids[pub->free_count++] = pid;
    ASSERT(e->inflight_total > 0);
    e->inflight_total--;
    e->acked_total++;
    if (e->is_measuring)
        e->r->acked++;
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Receiving */

static void on_publish(struct engine *e, struct bench_conn *c, const struct mqtt_publish *p)
{
    struct stamp s;
    if (!stamp_decode(p->payload.ptr, p->payload.len, &s)) {
        e->r->corrupt++;
    } else if (s.run_id != e->run_id) {
        e->r->foreign++; /* An earlier run's message the broker still had: not ours. */
    } else if (c->role != ROLE_SUBSCRIBER || e->tracks == NULL) {
        e->r->track.received++;
        e->r->track.unexpected++;
    } else {
        if (track_receive(&e->tracks[e->sub_track[c->role_idx]], s.publisher_idx, s.seq,
                          &e->r->track))
            e->received_from[s.publisher_idx]++;
        e->r->received_total++;
        /* Warm-up latencies feed the progress line; the measurement starts from empty. */
        if (e->phase == PH_RUN) {
            uint64_t sent_ns = e->epoch_ns + s.send_ns;
            uint64_t now = e->net.now_ns;
            histogram_record(&e->r->latency_ns, now > sent_ns ? now - sent_ns : 0);
        }
        if (e->is_measuring)
            e->r->received++;
    }
    if (p->qos == 1)
        send_ack(e, c, MQTT_PUBACK << 4, p->packet_id);
    else if (p->qos == 2)
        send_ack(e, c, MQTT_PUBREC << 4, p->packet_id);
}

static void conn_ready(struct engine *e, struct bench_conn *c)
{
    c->state = ST_READY;
    ASSERT(e->connecting > 0);
    e->connecting--;
    e->ready++;
    e->r->connect_ns = e->net.now_ns - e->setup_start_ns;
}

static bool on_connack(struct engine *e, struct bench_conn *c, const struct mqtt_connack *a)
{
    if (c->state != ST_CONNECT_SENT)
        return fail_conn(e, c, "unexpected CONNACK", 0);
    if (a->rc != 0) {
        char why[48];
        snprintf(why, sizeof(why), "CONNACK refused with code 0x%02x", a->rc);
        return fail_conn(e, c, why, 0);
    }
    e->r->connack_count++;
    if (c->role == ROLE_PUBLISHER && e->o->qos > 0 &&
        mqtt_props_has(&a->props, MQTT_PROP_RECEIVE_MAX)) {
        /* A v5 broker takes at most Receive Maximum unacknowledged QoS 1/2 messages: shrink
         * the window (nothing is in flight yet) rather than be disconnected for 0x93. */
        struct publisher *pub = &e->pubs[c->role_idx];
        pub->free_count = MIN(pub->free_count, a->props.receive_max);
    }
    if (c->role == ROLE_PUBLISHER)
        conn_ready(e, c);
    else
        send_subscribe(e, c);
    return c->state != ST_FAILED;
}

static bool on_suback(struct engine *e, struct bench_conn *c, const struct mqtt_suback *a)
{
    if (c->state != ST_SUBSCRIBE_SENT || a->rcs.len < 1)
        return fail_conn(e, c, "unexpected SUBACK", 0);
    if (a->rcs.ptr[0] >= 0x80) {
        char why[64];
        snprintf(why, sizeof(why), "subscription refused with code 0x%02x", a->rcs.ptr[0]);
        return fail_conn(e, c, why, 0);
    }
    conn_ready(e, c);
    return true;
}

static bool on_frame(void *ctx, struct bench_conn *c, const uint8_t *frame, uint32_t len)
{
    struct engine *e = ctx;
    if (c->state == ST_FAILED)
        return false;
    struct mqtt_packet pkt;
    if (codec_decode(frame, len, e->o->mqtt_version, &pkt) != MQTT_RC_SUCCESS)
        return fail_conn(e, c, "malformed packet from the broker", 0);
    switch (pkt.type) {
    case MQTT_CONNACK:
        return on_connack(e, c, &pkt.connack);
    case MQTT_SUBACK:
        return on_suback(e, c, &pkt.suback);
    case MQTT_PUBLISH:
        on_publish(e, c, &pkt.publish);
        return c->state != ST_FAILED;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
        return on_pub_ack(e, c, pkt.type, pkt.ack.packet_id);
    case MQTT_PUBREL:
        send_ack(e, c, MQTT_PUBCOMP << 4, pkt.ack.packet_id);
        return c->state != ST_FAILED;
    case MQTT_PINGRESP:
        return true;
    case MQTT_DISCONNECT:
        return fail_conn(e, c, "the broker sent DISCONNECT", 0);
    default:
        return fail_conn(e, c, "unexpected packet type from the broker", 0);
    }
}

static void on_event(void *ctx, struct bench_conn *c, enum bench_net_event event, int res)
{
    struct engine *e = ctx;
    if (event == BENCH_NET_CONNECTED) {
        send_connect(e, c);
        return;
    }
    if (e->phase == PH_CLOSE || c->state == ST_FAILED)
        return; /* We are disconnecting: the broker closing is expected. */
    fail_conn(e, c, event == BENCH_NET_CONNECT_FAILED ? "connect" : "connection lost",
              res == 0 ? -ECONNRESET : res);
}

/* ---------------------------------------------------------------------------------------- */
/* Setup: publish templates and receive trackers */

/* Encodes publisher `idx`'s PUBLISH once with a zero payload and keeps everything before the
 * payload as the template each message is copied from. */
static int publisher_init(struct engine *e, uint32_t idx, const uint8_t *zeros)
{
    const struct bench_options *o = e->o;
    struct publisher *pub = &e->pubs[idx];
    char topic[BENCH_TOPIC_EXPANDED_LEN_MAX];
    int topic_len = bench_pattern_expand(o->topic, idx, topic, sizeof(topic));
    ASSERT(topic_len > 0);
    struct mqtt_packet pkt = { .type = MQTT_PUBLISH };
    pkt.publish.qos = o->qos;
    pkt.publish.packet_id = o->qos > 0 ? 1 : 0;
    pkt.publish.topic = (struct slice){ (const uint8_t *)topic, (uint32_t)topic_len };
    pkt.publish.payload = (struct slice){ zeros, o->payload_len };
    uint32_t len = codec_size(&pkt, o->mqtt_version);
    uint8_t *full = malloc(len);
    if (len == 0 || full == NULL) {
        free(full);
        return -ENOMEM;
    }
    codec_encode(&pkt, o->mqtt_version, full);
    uint32_t frame_len = 0;
    int fixed_len = codec_frame(full, len, &frame_len);
    ASSERT(fixed_len > 0 && frame_len == len);
    pub->header_len = len - o->payload_len;
    pub->topic_off = (uint32_t)fixed_len + 2;
    pub->topic_len = (uint32_t)topic_len;
    pub->pid_off = pub->topic_off + pub->topic_len;
    pub->header = realloc(full, pub->header_len);
    if (pub->header == NULL) {
        free(full);
        return -ENOMEM;
    }
    if (o->qos == 0)
        return 0;
    pub->free_pids = malloc(o->inflight * sizeof(*pub->free_pids));
    pub->pid_states = calloc(o->inflight + 1u, 1);
    if (pub->free_pids == NULL || pub->pid_states == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < o->inflight; i++)
        pub->free_pids[i] = (uint16_t)(o->inflight - i); /* pops 1 first */
    pub->free_count = o->inflight;
    return 0;
}

static struct slice publisher_topic(const struct engine *e, uint32_t idx)
{
    const struct publisher *pub = &e->pubs[idx];
    return (struct slice){ pub->header + pub->topic_off, pub->topic_len };
}

static int slice_cmp(struct slice a, struct slice b)
{
    int rc = memcmp(a.ptr, b.ptr, MIN(a.len, b.len));
    if (rc != 0)
        return rc;
    return a.len < b.len ? -1 : a.len > b.len;
}

static int topic_order_cmp(const void *a, const void *b, void *ctx)
{
    const struct engine *e = ctx;
    return slice_cmp(publisher_topic(e, *(const uint32_t *)a),
                     publisher_topic(e, *(const uint32_t *)b));
}

static bool has_wildcard(struct slice filter)
{
    for (uint32_t i = 0; i < filter.len; i++)
        if (filter.ptr[i] == '+' || filter.ptr[i] == '#')
            return true;
    return false;
}

/* Calls track_expect on `t` for (or, with `t` NULL, counts) the publishers whose topic
 * `filter` matches. A filter without wildcards is looked up in the sorted topics, so p2p with
 * thousands of pairs does not cost P * S matches. */
static uint32_t expect_matches(struct engine *e, struct slice filter, struct track *t)
{
    uint32_t count = 0;
    if (has_wildcard(filter)) {
        for (uint32_t p = 0; p < e->pub_count; p++) {
            if (!topic_match(filter, publisher_topic(e, p)))
                continue;
            count++;
            if (t != NULL) {
                track_expect(t, p);
                e->fanout[p]++;
            }
        }
        return count;
    }
    uint32_t lo = 0;
    uint32_t hi = e->pub_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (slice_cmp(publisher_topic(e, e->topic_order[mid]), filter) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < e->pub_count && slice_eq(publisher_topic(e, e->topic_order[lo]), filter); lo++) {
        count++;
        if (t != NULL) {
            track_expect(t, e->topic_order[lo]);
            e->fanout[e->topic_order[lo]]++;
        }
    }
    return count;
}

/* Builds the tracker of one receiving side for `filter` (a real filter, $share/ stripped):
 * one pair per publisher whose topic matches it. */
static int tracker_build(struct engine *e, struct track *t, struct slice filter)
{
    uint32_t matches = expect_matches(e, filter, NULL);
    int rc = track_init(t, matches > 0 ? matches : 1);
    if (rc < 0)
        return rc;
    expect_matches(e, filter, t);
    return 0;
}

/* One tracker per subscriber, except that the members of a shared subscription ($share/g/f)
 * share one: the group as a whole must see every message once. */
static int trackers_init(struct engine *e, char *err, size_t err_len)
{
    char (*names)[BENCH_TOPIC_EXPANDED_LEN_MAX] = calloc(e->sub_count, sizeof(*names));
    e->tracks = calloc(e->sub_count, sizeof(*e->tracks));
    e->sub_track = calloc(e->sub_count, sizeof(*e->sub_track));
    if (names == NULL || e->tracks == NULL || e->sub_track == NULL) {
        free(names);
        snprintf(err, err_len, "out of memory for %u subscribers", e->sub_count);
        return -ENOMEM;
    }
    int rc = 0;
    for (uint32_t s = 0; s < e->sub_count && rc == 0; s++) {
        char *name = names[e->track_count];
        int n = bench_pattern_expand(e->o->filter, s, name, sizeof(names[0]));
        ASSERT(n > 0);
        struct slice filter = { (const uint8_t *)name, (uint32_t)n };
        struct slice group, real;
        bool is_shared = topic_shared_parse(filter, &group, &real) == 1;
        uint32_t found = UINT32_MAX;
        for (uint32_t t = 0; is_shared && t < e->track_count && found == UINT32_MAX; t++)
            if (strcmp(names[t], name) == 0)
                found = t;
        if (found != UINT32_MAX) {
            e->sub_track[s] = found;
            continue;
        }
        rc = tracker_build(e, &e->tracks[e->track_count], is_shared ? real : filter);
        if (rc == 0 && e->tracks[e->track_count].pair_count == 0) {
            snprintf(err, err_len, "subscriber %u's filter '%s' matches no publisher's topic "
                     "(--topic %s): it would receive nothing", s, name, e->o->topic);
            rc = -EINVAL;
        } else if (rc < 0) {
            snprintf(err, err_len, "out of memory for receive tracking");
        }
        e->sub_track[s] = e->track_count++;
    }
    free(names);
    return rc;
}

static int engine_init(struct engine *e, char *err, size_t err_len)
{
    const struct bench_options *o = e->o;
    bool is_pubsub = o->scenario == BENCH_SCENARIO_PUBSUB;
    e->sub_count = is_pubsub ? o->subscriber_count : o->connection_count;
    e->pub_count = is_pubsub ? o->publisher_count : 0;
    e->conn_count = e->sub_count + e->pub_count;
    e->pid = (int)getpid();
    e->run_id = (uint8_t)(1u + (uint32_t)((base_now_ns() ^ (uint64_t)e->pid * 2654435761u) % 255u));
    if (is_pubsub) {
        e->pubs = calloc(e->pub_count, sizeof(*e->pubs));
        e->sent_count = calloc(e->pub_count, sizeof(*e->sent_count));
        e->received_from = calloc(e->pub_count, sizeof(*e->received_from));
        e->fanout = calloc(e->pub_count, sizeof(*e->fanout));
        uint8_t *zeros = calloc(1, o->payload_len);
        int rc = e->pubs == NULL || e->sent_count == NULL || e->received_from == NULL ||
                         e->fanout == NULL || zeros == NULL ? -ENOMEM : 0;
        for (uint32_t i = 0; i < e->pub_count && rc == 0; i++)
            rc = publisher_init(e, i, zeros);
        free(zeros);
        if (rc < 0) {
            snprintf(err, err_len, "out of memory for %u publishers", e->pub_count);
            return rc;
        }
        e->topic_order = malloc(e->pub_count * sizeof(*e->topic_order));
        if (e->topic_order == NULL) {
            snprintf(err, err_len, "out of memory for %u publishers", e->pub_count);
            return -ENOMEM;
        }
        for (uint32_t i = 0; i < e->pub_count; i++)
            e->topic_order[i] = i;
        qsort_r(e->topic_order, e->pub_count, sizeof(*e->topic_order), topic_order_cmp, e);
        rc = trackers_init(e, err, err_len);
        if (rc < 0)
            return rc;
    }
    struct bench_net_config cfg = {
        .host = o->host, .port = o->port, .conn_count = e->conn_count,
        .source_count = o->source_count, .on_frame = on_frame, .on_event = on_event, .ctx = e,
    };
    int rc = bench_net_init(&e->net, &cfg, err, err_len);
    if (rc < 0)
        return rc;
    for (uint32_t i = 0; i < e->conn_count; i++) {
        struct bench_conn *c = &e->net.conns[i];
        c->role = i < e->sub_count ? ROLE_SUBSCRIBER : ROLE_PUBLISHER;
        c->role_idx = i < e->sub_count ? i : i - e->sub_count;
    }
    if (o->rate > 0)
        e->ns_per_msg = 1e9 / o->rate;
    uint32_t msg_len = is_pubsub ? e->pubs[0].header_len + o->payload_len : 1;
    uint64_t deliveries = 0; /* per round of one message from every publisher */
    for (uint32_t i = 0; i < e->pub_count; i++)
        deliveries += e->fanout[i];
    uint64_t batch_msgs = BENCH_CLOSED_LOOP_BATCH_LEN / msg_len + 1;
    e->qos0_window = BENCH_QOS0_INFLIGHT_MAX / MAX(deliveries, 1);
    e->qos0_window = MIN(MAX(e->qos0_window, BENCH_QOS0_WINDOW_MIN),
                         BENCH_QOS0_WINDOW_BATCHES_MAX * batch_msgs);
    return 0;
}

static void engine_destroy(struct engine *e)
{
    bench_net_destroy(&e->net);
    for (uint32_t i = 0; e->pubs != NULL && i < e->pub_count; i++) {
        free(e->pubs[i].header);
        free(e->pubs[i].free_pids);
        free(e->pubs[i].pid_states);
    }
    for (uint32_t t = 0; t < e->track_count; t++)
        track_destroy(&e->tracks[t]);
    free(e->pubs);
    free(e->sent_count);
    free(e->received_from);
    free(e->fanout);
    free(e->tracks);
    free(e->sub_track);
    free(e->topic_order);
}

/* ---------------------------------------------------------------------------------------- */
/* Phases */

static void broker_sample_start(struct engine *e)
{
    if (e->o->broker_pid > 0 && bench_proc_cpu_s(e->o->broker_pid, &e->cpu_start_s) == 0)
        e->r->has_broker = true;
}

static void broker_sample_end(struct engine *e)
{
    double cpu_end = 0;
    if (!e->r->has_broker || bench_proc_cpu_s(e->o->broker_pid, &cpu_end) < 0) {
        e->r->has_broker = false;
        return;
    }
    e->r->broker_cpu_s = cpu_end - e->cpu_start_s;
    (void)bench_proc_rss_kib(e->o->broker_pid, &e->r->broker_rss_after_kib); /* 0 if gone */
}

static uint32_t count_live(const struct engine *e)
{
    uint32_t live = 0;
    for (uint32_t i = 0; i < e->conn_count; i++)
        live += e->net.conns[i].state == ST_READY;
    return live;
}

static void start_close(struct engine *e)
{
    e->r->connections_at_end = count_live(e);
    for (uint32_t i = 0; i < e->conn_count; i++) {
        struct bench_conn *c = &e->net.conns[i];
        if (c->state == ST_READY)
            send_two_bytes(e, c, MQTT_DISCONNECT << 4);
    }
    e->phase = PH_CLOSE;
    e->close_end_ns = e->net.now_ns + CLOSE_MAX_NS;
}

static void step_setup(struct engine *e)
{
    uint64_t now = e->net.now_ns;
    while (e->opened < e->conn_count && e->connecting < BENCH_CONNECTING_MAX) {
        struct bench_conn *c = &e->net.conns[e->opened++];
        e->connecting++;
        c->state = ST_TCP;
        int rc = bench_net_open(&e->net, c);
        if (rc < 0)
            fail_conn(e, c, "socket", rc);
    }
    bool is_done = e->ready + e->setup_failed == e->conn_count;
    if (!is_done && now - e->setup_start_ns < BENCH_SETUP_MAX_NS)
        return;
    for (uint32_t i = 0; i < e->conn_count && !is_done; i++) {
        struct bench_conn *c = &e->net.conns[i];
        if (c->state != ST_READY && c->state != ST_FAILED)
            fail_conn(e, c, "setup timed out", -ETIMEDOUT);
    }
    e->r->connections = e->ready;
    bool is_pubsub = e->o->scenario == BENCH_SCENARIO_PUBSUB;
    if (is_pubsub && e->setup_failed > 0) {
        start_close(e); /* Figures from a partial topology would mislead. */
        return;
    }
    e->phase = PH_RUN;
    e->run_start_ns = now;
    uint64_t warmup_ns = is_pubsub ? (uint64_t)(e->o->warmup_s * 1e9) : 0;
    e->measure_start_ns = now + warmup_ns;
    e->measure_end_ns = e->measure_start_ns + (uint64_t)(e->o->duration_s * 1e9);
    if (!is_pubsub) {
        e->r->connect_ns = e->r->connect_ns > 0 ? e->r->connect_ns : 1;
        e->is_measuring = true;
    }
}

static void step_run(struct engine *e)
{
    uint64_t now = e->net.now_ns;
    bool is_pubsub = e->o->scenario == BENCH_SCENARIO_PUBSUB;
    if (!e->is_measuring && now >= e->measure_start_ns) {
        e->is_measuring = true;
        histogram_reset(&e->r->latency_ns);
        broker_sample_start(e);
    }
    if (is_pubsub)
        publish_all(e);
    if (now >= e->measure_end_ns) {
        e->is_measuring = false;
        e->r->measured_s = (double)(now - e->measure_start_ns) / 1e9;
        broker_sample_end(e);
        if (!is_pubsub) {
            start_close(e);
            return;
        }
        e->r->connections_at_end = count_live(e);
        e->phase = PH_DRAIN;
        e->drain_end_ns = now + BENCH_DRAIN_MAX_NS;
        e->drain_idle_end_ns = now + BENCH_DRAIN_IDLE_NS;
        for (uint32_t t = 0; t < e->track_count; t++)
            e->r->expected_total += track_expected(&e->tracks[t], e->sent_count);
        return;
    }
}

static void step_drain(struct engine *e)
{
    uint64_t now = e->net.now_ns;
    bool is_complete = e->r->track.unique >= e->r->expected_total && e->inflight_total == 0;
    if (e->r->track.received + e->acked_total != e->drain_progress) {
        e->drain_progress = e->r->track.received + e->acked_total;
        e->drain_idle_end_ns = now + BENCH_DRAIN_IDLE_NS;
    }
    if (!is_complete && now < e->drain_end_ns && now < e->drain_idle_end_ns)
        return;
    for (uint32_t t = 0; t < e->track_count; t++)
        e->r->lost += track_lost(&e->tracks[t], e->sent_count);
    uint32_t at_end = e->r->connections_at_end;
    start_close(e);
    e->r->connections_at_end = at_end;
}

static void step_close(struct engine *e)
{
    bool is_flushing = false;
    for (uint32_t i = 0; i < e->conn_count && !is_flushing; i++) {
        const struct bench_conn *c = &e->net.conns[i];
        is_flushing = c->state == ST_READY && !c->is_lost && bench_net_out_pending(c) > 0;
    }
    if (!is_flushing || e->net.now_ns >= e->close_end_ns)
        e->phase = PH_DONE;
}

/* ---------------------------------------------------------------------------------------- */
/* Progress line and keepalive */

static const char *phase_label(const struct engine *e)
{
    if (e->phase == PH_SETUP)
        return "setup";
    if (e->phase == PH_RUN && e->o->scenario == BENCH_SCENARIO_CONN)
        return "hold";
    if (e->phase == PH_RUN)
        return e->is_measuring ? "run" : "warmup";
    return e->phase == PH_DRAIN ? "drain" : "close";
}

static void progress(struct engine *e)
{
    uint64_t now = e->net.now_ns;
    if (now < e->next_progress_ns)
        return;
    double dt = (double)(now - e->last_progress_ns) / 1e9;
    if (dt <= 0)
        dt = 1;
    uint64_t since = e->phase == PH_SETUP ? e->setup_start_ns : e->run_start_ns;
    fprintf(stderr, "[%6.1fs %-6s] ", (double)(now - since) / 1e9, phase_label(e));
    if (e->o->scenario == BENCH_SCENARIO_CONN) {
        fprintf(stderr, "connack %9.0f/s  ", (double)(e->r->connack_count -
                e->progress_connacks) / dt);
    } else {
        double p99_us = (double)histogram_percentile(&e->r->latency_ns, 99.0) / 1e3;
        fprintf(stderr, "sent %9.0f/s  recv %9.0f/s  p99 %8.0f us  ",
                (double)(e->r->sent_total - e->progress_sent) / dt,
                (double)(e->r->received_total - e->progress_received) / dt, p99_us);
    }
    fprintf(stderr, "conns %u/%u%s\n", count_live(e), e->conn_count,
            e->r->failures > 0 ? "  FAILURES" : "");
    e->progress_sent = e->r->sent_total;
    e->progress_received = e->r->received_total;
    e->progress_connacks = e->r->connack_count;
    e->last_progress_ns = now;
    e->next_progress_ns = now + PROGRESS_INTERVAL_NS;
}

static void keepalive(struct engine *e)
{
    uint64_t now = e->net.now_ns;
    if (e->o->keepalive_s == 0 || now < e->next_keepalive_ns)
        return;
    e->next_keepalive_ns = now + NS_PER_S;
    uint64_t idle_max_ns = (uint64_t)e->o->keepalive_s * NS_PER_S / 2;
    for (uint32_t i = 0; i < e->conn_count; i++) {
        struct bench_conn *c = &e->net.conns[i];
        if (c->state == ST_READY && !c->send_inflight && now - c->last_tx_ns >= idle_max_ns)
            send_two_bytes(e, c, MQTT_PINGREQ << 4);
    }
}

static uint64_t wait_timeout(const struct engine *e)
{
    uint64_t now = e->net.now_ns;
    uint64_t until = e->next_progress_ns;
    if (e->phase == PH_RUN) {
        until = MIN(until, e->is_measuring ? e->measure_end_ns : e->measure_start_ns);
        if (e->o->rate > 0)
            until = MIN(until, e->next_due_ns);
    }
    if (until <= now)
        return 1000; /* 1 us: just collect what is there */
    return MIN(until - now, IDLE_WAIT_MAX_NS);
}

/* SIGINT or SIGTERM: end the measurement now (keeping what was measured), then drain and
 * close as usual; during setup, give up on the connections still pending. */
static void stop_early(struct engine *e)
{
    e->is_stopping = true;
    fprintf(stderr, "keelmq-bench: stopping early\n");
    if (e->phase == PH_RUN) {
        e->measure_end_ns = e->net.now_ns;
        if (e->measure_start_ns > e->measure_end_ns)
            e->measure_start_ns = e->measure_end_ns; /* still warming up: nothing measured */
    } else if (e->phase == PH_SETUP) {
        start_close(e);
    }
}

int bench_run(const struct bench_options *o, const volatile sig_atomic_t *stop,
              struct bench_result *r, char *err, size_t err_len)
{
    memset(r, 0, sizeof(*r));
    histogram_reset(&r->latency_ns);
    struct engine e = { .o = o, .r = r, .phase = PH_SETUP };
    int rc = engine_init(&e, err, err_len);
    if (rc < 0) {
        engine_destroy(&e);
        return rc;
    }
    e.epoch_ns = e.net.now_ns;
    e.setup_start_ns = e.net.now_ns;
    e.last_progress_ns = e.net.now_ns;
    e.next_progress_ns = e.net.now_ns + PROGRESS_INTERVAL_NS;
    if (o->broker_pid > 0)
        (void)bench_proc_rss_kib(o->broker_pid, &r->broker_rss_before_kib); /* 0 if gone */
    if (o->scenario == BENCH_SCENARIO_CONN)
        broker_sample_start(&e);
    while (e.phase != PH_DONE) { /* Ends: every phase has a deadline. */
        if (stop != NULL && *stop && !e.is_stopping)
            stop_early(&e);
        switch (e.phase) {
        case PH_SETUP:
            step_setup(&e);
            break;
        case PH_RUN:
            step_run(&e);
            break;
        case PH_DRAIN:
            step_drain(&e);
            break;
        case PH_CLOSE:
            step_close(&e);
            break;
        case PH_DONE:
            break;
        }
        if (e.phase == PH_DONE)
            break;
        progress(&e);
        keepalive(&e);
        bench_net_flush(&e.net);
        bench_net_wait(&e.net, wait_timeout(&e));
    }
    engine_destroy(&e);
    return 0;
}
