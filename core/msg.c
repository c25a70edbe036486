/* core/msg.c - message allocation, cloning and release. Owner shard only.
 *
 * The property block is copied whole: the encoder writes only the properties flagged in
 * `present` plus the user properties of the block, so clearing the per-connection bits (topic
 * alias, subscription identifiers) is enough to keep them from travelling, and every slice can
 * be re-pointed by offset.
 */
#include "core/msg.h"

#include <stdlib.h>
#include <string.h>

static const uint64_t travelling_mask =
    (1ull << MQTT_PROP_PAYLOAD_FORMAT) | (1ull << MQTT_PROP_MESSAGE_EXPIRY) |
    (1ull << MQTT_PROP_CONTENT_TYPE) | (1ull << MQTT_PROP_RESPONSE_TOPIC) |
    (1ull << MQTT_PROP_CORRELATION_DATA) | (1ull << MQTT_PROP_USER_PROPERTY);

static struct slice rebase(struct slice s, const uint8_t *old_base, uint8_t *new_base)
{
    if (s.len == 0)
        return (struct slice){ NULL, 0 };
    return (struct slice){ new_base + (s.ptr - old_base), s.len };
}

/* Re-points every slice of `p` from memory at `old_base` to the same offsets at `new_base`. */
static void rebase_props(struct mqtt_props *p, const uint8_t *old_base, uint8_t *new_base)
{
    p->content_type = rebase(p->content_type, old_base, new_base);
    p->response_topic = rebase(p->response_topic, old_base, new_base);
    p->correlation_data = rebase(p->correlation_data, old_base, new_base);
    p->raw = rebase(p->raw, old_base, new_base);
    p->user_props_raw = p->raw;
}

static uint8_t *copy_in(uint8_t *p, struct slice *dst, struct slice src)
{
    if (src.len > 0)
        memcpy(p, src.ptr, src.len);
    *dst = (struct slice){ src.len > 0 ? p : NULL, src.len };
    return p + src.len;
}

struct msg *msg_create(struct slice topic, struct slice payload, const struct mqtt_props *props,
                       struct slice client_id, uint8_t qos, bool retain, uint16_t origin_shard)
{
    ASSERT(qos <= 2);
    uint32_t props_len = props != NULL ? props->raw.len : 0;
    size_t total = sizeof(struct msg) + (size_t)topic.len + client_id.len + props_len + payload.len;
    struct msg *m = malloc(total);
    if (m == NULL)
        return NULL;
    memset(m, 0, sizeof(*m));
    m->refs = 1;
    m->alloc_len = (uint32_t)total;
    m->qos = qos;
    m->retain = retain;
    m->origin_shard = origin_shard;
    m->owner_shard = origin_shard;
    m->time_ns = base_wall_ns();
    uint8_t *p = m->data;
    p = copy_in(p, &m->topic, topic);
    p = copy_in(p, &m->client_id, client_id);
    if (props != NULL && props->raw.len > 0) {
        m->props = *props;
        m->props.present &= travelling_mask;
        m->props.sub_ids = NULL;
        m->props.sub_id_count = 0;
        m->props.topic_alias = 0;
        memcpy(p, props->raw.ptr, props->raw.len);
        rebase_props(&m->props, props->raw.ptr, p);
        p += props->raw.len;
    }
    p = copy_in(p, &m->payload, payload);
    ASSERT((size_t)(p - (uint8_t *)m) == total);
    return m;
}

struct msg *msg_clone(const struct msg *src, uint16_t owner)
{
    ASSERT(src->alloc_len >= sizeof(struct msg));
    struct msg *m = malloc(src->alloc_len);
    if (m == NULL)
        return NULL;
    memcpy(m, src, src->alloc_len);
    m->refs = 1;
    m->owner_shard = owner;
    m->topic = rebase(src->topic, src->data, m->data);
    m->client_id = rebase(src->client_id, src->data, m->data);
    m->payload = rebase(src->payload, src->data, m->data);
    rebase_props(&m->props, src->data, m->data);
    return m;
}

struct msg *msg_keep(const struct msg *m, uint16_t self)
{
    if (m->owner_shard == self)
        return msg_ref((struct msg *)m); /* Our own: the const was only the borrower's view. */
    return msg_clone(m, self);
}

void msg_release(struct msg *m)
{
    ASSERT_HOT(m->refs > 0);
    if (--m->refs == 0)
        free(m);
}
