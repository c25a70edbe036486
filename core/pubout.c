/* core/pubout.c - PUBLISH packets encoded for one connection: topic aliases and several
 * subscription identifiers (core/pubout.h). Shard thread only.
 */
#include "core/pubout.h"

#include <string.h>

#include "core/codec.h"
#include "core/conn.h"
#include "core/lifetime.h"
#include "core/msg.h"
#include "core/mqtt.h"
#include "core/session.h"
#include "core/shard.h"
#include "core/topic.h"
#include "core/topicalias.h"

bool pubout_needed(const struct conn *c, uint32_t sub_id)
{
    return c->version == MQTT_V5 && (c->alias_out.max > 0 || sub_id == PUBOUT_SUB_ID_MULTI);
}

static bool is_own(const struct session *sess, const struct msg *m)
{
    return sess->client_id_len == m->client_id.len &&
           memcmp(sess->client_id, m->client_id.ptr, m->client_id.len) == 0;
}

uint32_t pubout_sub_ids(const struct session *sess, const struct msg *m, uint32_t *ids)
{
    uint32_t count = 0;
    uint32_t pos = 0;
    struct subpack_entry entry;
    while (count < PUBOUT_SUB_IDS_MAX && subpack_next(&sess->subs, &pos, &entry)) {
        const struct subpack_entry *sub = &entry;
        if (sub->sub_id == 0 || !topic_match(sub->filter, m->topic))
            continue;
        if ((sub->options & MQTT_SUBOPT_NO_LOCAL) && is_own(sess, m))
            continue;
        bool seen = false;
        for (uint32_t k = 0; k < count && !seen; k++)
            seen = ids[k] == sub->sub_id;
        if (!seen)
            ids[count++] = sub->sub_id;
    }
    ASSERT(count <= PUBOUT_SUB_IDS_MAX);
    return count;
}

/* Upper bound of a PUBLISH's size beyond topic, properties and payload: fixed header (5),
 * topic length (2), packet id (2), property length (4), topic alias (3). */
#define PUBOUT_OVERHEAD_MAX 16u

bool pubout_too_large(const struct conn *c, const struct msg *m, uint8_t qos, uint32_t sub_id)
{
    uint64_t bound = (uint64_t)m->topic.len + m->props.raw.len + m->payload.len +
                     PUBOUT_OVERHEAD_MAX + 5u * PUBOUT_SUB_IDS_MAX; /* varint ids: 5 bytes */
    if (bound <= c->max_packet_out)
        return false; /* The common case: no limit, or far from it. */
    uint32_t ids[PUBOUT_SUB_IDS_MAX];
    uint32_t id_count = 0;
    if (sub_id == PUBOUT_SUB_ID_MULTI && c->session != NULL)
        id_count = pubout_sub_ids(c->session, m, ids);
    else if (sub_id != 0 && sub_id != PUBOUT_SUB_ID_MULTI)
        ids[id_count++] = sub_id;
    struct mqtt_packet pkt = { .type = MQTT_PUBLISH };
    pkt.publish.qos = qos;
    pkt.publish.packet_id = qos > 0 ? 1 : 0;
    pkt.publish.topic = m->topic;
    pkt.publish.payload = m->payload;
    if (c->version == MQTT_V5) {
        pkt.publish.props = m->props;
        pkt.publish.props.sub_ids = ids;
        pkt.publish.props.sub_id_count = id_count;
        if (c->alias_out.max > 0) {
            pkt.publish.props.present |= 1ull << MQTT_PROP_TOPIC_ALIAS;
            pkt.publish.props.topic_alias = c->alias_out.max;
        }
    }
    uint32_t n = codec_size(&pkt, c->version);
    return n == 0 || n > c->max_packet_out;
}

bool pubout_write(struct shard *s, struct conn *c, const struct msg *m,
                  const struct pubout_spec *spec)
{
    ASSERT(c->version == MQTT_V5 && c->session != NULL);
    uint32_t ids[PUBOUT_SUB_IDS_MAX];
    uint32_t id_count = 0;
    if (spec->sub_id == PUBOUT_SUB_ID_MULTI)
        id_count = pubout_sub_ids(c->session, m, ids);
    else if (spec->sub_id != 0)
        ids[id_count++] = spec->sub_id;
    struct mqtt_packet pkt = { .type = MQTT_PUBLISH };
    struct mqtt_publish *p = &pkt.publish;
    p->qos = spec->qos;
    p->dup = spec->dup;
    p->retain = spec->retain;
    p->packet_id = spec->packet_id;
    p->topic = m->topic;
    p->payload = m->payload;
    p->props = m->props;
    p->props.sub_ids = ids;
    p->props.sub_id_count = id_count;
    lifetime_props_out(m, &p->props);
    uint16_t alias = 0;
    enum topicalias_verdict verdict = topicalias_pick(&c->alias_out, m->topic, &alias);
    if (verdict != TOPICALIAS_NONE) {
        p->props.present |= 1ull << MQTT_PROP_TOPIC_ALIAS;
        p->props.topic_alias = alias;
        if (verdict == TOPICALIAS_KNOWN)
            p->topic = (struct slice){ m->topic.ptr, 0 }; /* empty; not NULL (memchr) */
    }
    uint32_t n = codec_size(&pkt, MQTT_V5);
    if (n == 0 || n > c->max_packet_out) {
        s->stats.dropped_too_large++;
        return true; /* MQTT-3.1.2-25: discard it as if it had been sent. */
    }
    uint8_t *out = conn_out_reserve(s, c, n);
    if (out == NULL)
        return false;
    uint32_t written = codec_encode(&pkt, MQTT_V5, out);
    ASSERT(written == n);
    if (verdict != TOPICALIAS_NONE)
        topicalias_commit(&c->alias_out, m->topic, alias, verdict);
    s->stats.deliveries++;
    return true;
}
