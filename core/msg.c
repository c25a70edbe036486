/* core/msg.c - message allocation, cloning and release. Owner shard only.
 *
 * The property block keeps only the properties that travel with a message, so the very same
 * bytes go to subscribers and into the commit log.
 */
#include "core/msg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/topic.h"
#include "store/record.h"

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

/* Copies the entries of a validated wire-form property block that travel with a message
 * (MQTT-3.3.2-...: everything but topic alias, subscription identifiers and will-only
 * properties) to `out`, which holds block.len bytes. Returns the bytes written. */
static uint32_t copy_travelling_props(struct slice block, uint8_t *out)
{
    uint32_t pos = 0;
    uint32_t written = 0;
    for (;;) {
        uint32_t start = pos;
        uint8_t id;
        struct slice v1, v2;
        if (!codec_prop_next(block, &pos, &id, &v1, &v2))
            break;
        if (((travelling_mask >> id) & 1u) == 0)
            continue;
        memcpy(out + written, block.ptr + start, pos - start);
        written += pos - start;
    }
    ASSERT(written <= block.len);
    return written;
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
    m->log_off = MSG_NOT_LOGGED;
    m->log_len = 0;
    m->time_ns = base_wall_ns();
    uint8_t *p = m->data;
    p = copy_in(p, &m->topic, topic);
    p = copy_in(p, &m->client_id, client_id);
    if (props_len > 0) {
        /* Our own filtered copy is decoded again, so every slice of `props` points into it and
         * the same bytes can be written to the log as they are. */
        uint32_t n = copy_travelling_props(props->raw, p);
        if (n > 0) {
            enum mqtt_rc rc = codec_publish_props_decode((struct slice){ p, n }, &m->props);
            ASSERT(rc == MQTT_RC_SUCCESS); /* a subset of a validated block */
            m->props.user_props_raw = m->props.raw;
        }
        p += n;
    }
    p = copy_in(p, &m->payload, payload);
    ASSERT((size_t)(p - (uint8_t *)m) <= total);
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

int msg_from_record(const uint8_t *p, const struct record_header *h, uint16_t origin_shard,
                    struct msg **out)
{
    struct record_message rm;
    struct mqtt_props props = { 0 };
    if (!record_decode_message(p, h, &rm) || !topic_name_valid(rm.topic) ||
        (rm.props.len > 0 && codec_publish_props_decode(rm.props, &props) != MQTT_RC_SUCCESS))
        return -EBADMSG;
    struct msg *m = msg_create(rm.topic, rm.payload, rm.props.len > 0 ? &props : NULL,
                               rm.client_id, rm.qos, rm.retain, origin_shard);
    if (m == NULL)
        return -ENOMEM;
    m->time_ns = rm.timestamp_ns;
    *out = m;
    return 0;
}
