/* store/record.c - the commit log's record format (see store/record.h, docs/storage.md).
 *
 * Encodes through explicit little-endian stores at fixed offsets, so the on-disk layout never
 * depends on the compiler's struct layout; the offsets are pinned by static asserts below.
 * Does not do I/O, allocate or keep state; any thread.
 */
#include "store/record.h"

#include <string.h>

#include "core/hash.h"
#include "core/le.h"

/* Byte offsets of the header fields (docs/storage.md has the table). */
#define OFF_CHECKSUM 0u
#define OFF_MAGIC 8u
#define OFF_VERSION 10u
#define OFF_TYPE 11u
#define OFF_TOTAL_LEN 12u
#define OFF_TIMESTAMP 16u
#define OFF_FLAGS 24u
#define OFF_RESERVED 25u
#define OFF_TOPIC_LEN 26u
#define OFF_CLIENT_ID_LEN 28u
#define OFF_PACKET_ID 30u
#define OFF_PROPS_LEN 32u
#define OFF_PAYLOAD_LEN 36u
#define OFF_RESERVED3 40u
#define OFF_RESERVED4 44u /* not in struct record_header: always zero in version 1 */
#define OFF_END 48u
#define OFF_CHECKED 8u /* the checksum covers [8, total_len) */

STATIC_ASSERT(RECORD_HEADER_LEN == 48, "the header is 48 bytes");
STATIC_ASSERT(OFF_END == RECORD_HEADER_LEN, "the fields fill the header exactly");
STATIC_ASSERT(OFF_MAGIC == OFF_CHECKSUM + 8 && OFF_VERSION == OFF_MAGIC + 2, "header layout");
STATIC_ASSERT(OFF_TYPE == OFF_VERSION + 1 && OFF_TOTAL_LEN == OFF_TYPE + 1, "header layout");
STATIC_ASSERT(OFF_TIMESTAMP == OFF_TOTAL_LEN + 4 && OFF_FLAGS == OFF_TIMESTAMP + 8,
              "header layout");
STATIC_ASSERT(OFF_RESERVED == OFF_FLAGS + 1 && OFF_TOPIC_LEN == OFF_RESERVED + 1,
              "header layout");
STATIC_ASSERT(OFF_CLIENT_ID_LEN == OFF_TOPIC_LEN + 2 && OFF_PACKET_ID == OFF_CLIENT_ID_LEN + 2,
              "header layout");
STATIC_ASSERT(OFF_PROPS_LEN == OFF_PACKET_ID + 2 && OFF_PAYLOAD_LEN == OFF_PROPS_LEN + 4,
              "header layout");
STATIC_ASSERT(OFF_RESERVED3 == OFF_PAYLOAD_LEN + 4 && OFF_RESERVED4 == OFF_RESERVED3 + 4,
              "header layout");
STATIC_ASSERT(OFF_END == OFF_RESERVED4 + 4, "header layout");
STATIC_ASSERT(OFF_RESERVED3 % 8 == 0, "reserved3 and reserved4 are zeroed by one 8-byte store");
STATIC_ASSERT(RECORD_ALIGN == 8, "record_encode_message_raw zeroes the padding as one word");
STATIC_ASSERT(OFF_TIMESTAMP % 8 == 0 && OFF_TOTAL_LEN % 4 == 0, "fields naturally aligned");
STATIC_ASSERT(RECORD_HEADER_LEN % RECORD_ALIGN == 0, "the body starts aligned");
STATIC_ASSERT((RECORD_ALIGN & (RECORD_ALIGN - 1)) == 0, "RECORD_ALIGN is a power of two");
STATIC_ASSERT(RECORD_BLOCK % RECORD_ALIGN == 0, "blocks hold whole aligned records");
STATIC_ASSERT(RECORD_LEN_MAX % RECORD_BLOCK == 0, "the maximum is block aligned");
/* A PUBLISH of mqtt.max_packet_size's largest value (268435460, core/config.c) carries the
 * topic, properties and payload; the publisher's client id (at most 65535) is extra. */
STATIC_ASSERT(RECORD_LEN_MAX >= RECORD_HEADER_LEN + 268435460u + 65535u + RECORD_ALIGN,
              "a maximum MQTT packet's parts and client id fit in one record");
STATIC_ASSERT(RECORD_MAGIC != 0 && RECORD_VERSION != 0, "a zero header is never valid");
STATIC_ASSERT(sizeof(struct record_header) == RECORD_HEADER_LEN, "decoded header size");

/* Header + body rounded up to RECORD_ALIGN, in 64 bits so no sum of 32-bit parts can wrap. */
static uint64_t padded_len(uint64_t body_len)
{
    uint64_t raw = RECORD_HEADER_LEN + body_len;
    return (raw + RECORD_ALIGN - 1) & ~(uint64_t)(RECORD_ALIGN - 1);
}

static uint64_t message_body_len(uint32_t topic_len, uint32_t client_id_len, uint32_t props_len,
                                 uint32_t payload_len)
{
    return (uint64_t)topic_len + client_id_len + props_len + payload_len;
}

uint32_t record_body_len(uint32_t body_len)
{
    uint64_t len = padded_len(body_len);
    ASSERT(len <= RECORD_LEN_MAX);
    return (uint32_t)len;
}

/* Writes the fields every record has, zeroes the rest of the header and the padding, and
 * leaves the checksum for record_seal. */
static void put_common(uint8_t *out, enum record_type type, uint32_t total_len,
                       uint64_t timestamp_ns)
{
    memset(out, 0, RECORD_HEADER_LEN);
    store_le16(out + OFF_MAGIC, RECORD_MAGIC);
    out[OFF_VERSION] = RECORD_VERSION;
    out[OFF_TYPE] = (uint8_t)type;
    store_le32(out + OFF_TOTAL_LEN, total_len);
    store_le64(out + OFF_TIMESTAMP, timestamp_ns);
}

static void record_seal(uint8_t *out, uint32_t total_len)
{
    store_le64(out + OFF_CHECKSUM, hash_bytes(out + OFF_CHECKED, total_len - OFF_CHECKED));
}

static uint8_t *put_bytes(uint8_t *at, struct slice s)
{
    if (s.len > 0)
        memcpy(at, s.ptr, s.len);
    return at + s.len;
}

/* Copies a body part. Topic, client id and small payloads are a few bytes: two overlapping
 * word moves instead of a call into memcpy (which, four times per record, cost more than the
 * record's checksum). Reads and writes only [src, src + n) and [dst, dst + n). */
static inline uint8_t *put_part(uint8_t *dst, struct slice s)
{
    const uint8_t *src = s.ptr;
    uint32_t n = s.len;
    uint64_t a, b;
    if (n > 16) {
        memcpy(dst, src, n);
    } else if (n >= 8) {
        memcpy(&a, src, 8);
        memcpy(&b, src + n - 8, 8);
        memcpy(dst, &a, 8);
        memcpy(dst + n - 8, &b, 8);
    } else if (n >= 4) {
        uint32_t c, d;
        memcpy(&c, src, 4);
        memcpy(&d, src + n - 4, 4);
        memcpy(dst, &c, 4);
        memcpy(dst + n - 4, &d, 4);
    } else if (n > 0) {
        dst[0] = src[0];
        dst[n / 2] = src[n / 2];
        dst[n - 1] = src[n - 1];
    }
    return dst + n;
}

uint32_t record_encode_message(const struct record_message *m, uint8_t *out)
{
    return record_encode_message_raw(m, record_message_len(m), out);
}

uint32_t record_encode_message_raw(const struct record_message *m, uint32_t total_len,
                                   uint8_t *out)
{
    ASSERT_HOT(((uintptr_t)out & (RECORD_ALIGN - 1)) == 0);
    ASSERT_HOT(total_len == record_message_len(m));
    ASSERT(m->qos <= 2);
    ASSERT(m->packet_id == 0 || m->qos == 2);
    /* Every header byte is stored exactly once (the reserved fields as zeros), without a
     * memset first; the layout is the one put_common and the static asserts above pin. */
    store_le16(out + OFF_MAGIC, RECORD_MAGIC);
    out[OFF_VERSION] = RECORD_VERSION;
    out[OFF_TYPE] = RECORD_MESSAGE;
    store_le32(out + OFF_TOTAL_LEN, total_len);
    store_le64(out + OFF_TIMESTAMP, m->timestamp_ns);
    out[OFF_FLAGS] = (uint8_t)(m->qos | (m->retain ? RECORD_FLAG_RETAIN : 0));
    out[OFF_RESERVED] = 0;
    store_le16(out + OFF_TOPIC_LEN, (uint16_t)m->topic.len);
    store_le16(out + OFF_CLIENT_ID_LEN, (uint16_t)m->client_id.len);
    store_le16(out + OFF_PACKET_ID, m->packet_id);
    store_le32(out + OFF_PROPS_LEN, m->props.len);
    store_le32(out + OFF_PAYLOAD_LEN, m->payload.len);
    store_le64(out + OFF_RESERVED3, 0); /* reserved3 and reserved4 */
    /* The padding (under RECORD_ALIGN bytes) lies in the record's last aligned word: zero that
     * word first and let the body overwrite its front. */
    if (total_len > RECORD_HEADER_LEN)
        store_le64(out + total_len - RECORD_ALIGN, 0);
    uint8_t *at = out + RECORD_HEADER_LEN;
    at = put_part(at, m->topic);
    at = put_part(at, m->client_id);
    at = put_part(at, m->props);
    at = put_part(at, m->payload);
    ASSERT_HOT(at <= out + total_len && out + total_len - at < RECORD_ALIGN);
    record_seal(out, total_len);
    return total_len;
}

uint32_t record_encode_typed(enum record_type type, struct slice body, uint32_t total_len,
                             uint8_t *out)
{
    ASSERT(((uintptr_t)out & (RECORD_ALIGN - 1)) == 0);
    ASSERT(type == RECORD_PAD || type == RECORD_SESSION || type == RECORD_CHECKPOINT);
    if (type == RECORD_PAD) {
        ASSERT(body.len == 0);
        ASSERT(total_len >= RECORD_HEADER_LEN && total_len <= RECORD_LEN_MAX);
        ASSERT(total_len % RECORD_ALIGN == 0);
    } else {
        uint32_t want = record_body_len(body.len);
        ASSERT(total_len == 0 || total_len == want);
        total_len = want;
    }
    /* Typed records carry timestamp 0: encoding stays pure (no clock); a body that needs a
     * time carries its own. */
    put_common(out, type, total_len, 0);
    store_le32(out + OFF_PAYLOAD_LEN, body.len);
    uint8_t *at = put_bytes(out + RECORD_HEADER_LEN, body);
    memset(at, 0, (size_t)(out + total_len - at));
    record_seal(out, total_len);
    return total_len;
}

static bool is_zero(const uint8_t *p, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        if (p[i] != 0)
            return false;
    return true;
}

static void header_load(const uint8_t *p, struct record_header *h)
{
    h->checksum = load_le64(p + OFF_CHECKSUM);
    h->magic = load_le16(p + OFF_MAGIC);
    h->version = p[OFF_VERSION];
    h->type = p[OFF_TYPE];
    h->total_len = load_le32(p + OFF_TOTAL_LEN);
    h->timestamp_ns = load_le64(p + OFF_TIMESTAMP);
    h->flags = p[OFF_FLAGS];
    h->reserved = p[OFF_RESERVED];
    h->topic_len = load_le16(p + OFF_TOPIC_LEN);
    h->client_id_len = load_le16(p + OFF_CLIENT_ID_LEN);
    h->packet_id = load_le16(p + OFF_PACKET_ID);
    h->props_len = load_le32(p + OFF_PROPS_LEN);
    h->payload_len = load_le32(p + OFF_PAYLOAD_LEN);
    h->reserved3 = load_le32(p + OFF_RESERVED3);
}

/* The length a header's body parts require, or 0 if the parts are not allowed for its type.
 * Version 1 writes the minimal padding, so a valid record's total_len equals this exactly. */
static uint64_t header_expected_len(const struct record_header *h)
{
    switch (h->type) {
    case RECORD_MESSAGE:
        if ((h->flags & ~(RECORD_FLAG_QOS_MASK | RECORD_FLAG_RETAIN)) != 0 ||
            (h->flags & RECORD_FLAG_QOS_MASK) == 3)
            return 0;
        return padded_len(
            message_body_len(h->topic_len, h->client_id_len, h->props_len, h->payload_len));
    case RECORD_PAD:
    case RECORD_SESSION:
    case RECORD_CHECKPOINT:
        if (h->flags != 0 || h->topic_len != 0 || h->client_id_len != 0 || h->props_len != 0)
            return 0;
        if (h->type == RECORD_PAD)
            return h->payload_len == 0 ? h->total_len : 0; /* any aligned length */
        return padded_len(h->payload_len);
    default:
        return 0;
    }
}

/* Everything about the header that does not need the body: magic, version, type, reserved
 * fields, and a length that is sane and matches the body parts. */
static bool header_is_sane(const uint8_t *p, const struct record_header *h)
{
    if (h->magic != RECORD_MAGIC || h->version != RECORD_VERSION)
        return false;
    if (h->reserved != 0 || h->reserved3 != 0 ||
        (h->packet_id != 0 && (h->type != RECORD_MESSAGE || (h->flags & RECORD_FLAG_QOS_MASK) != 2)) ||
        load_le32(p + OFF_RESERVED4) != 0)
        return false;
    if (h->total_len < RECORD_HEADER_LEN || h->total_len % RECORD_ALIGN != 0 ||
        h->total_len > RECORD_LEN_MAX)
        return false;
    return header_expected_len(h) == h->total_len;
}

enum record_check record_verify(const uint8_t *p, uint32_t avail, struct record_header *h)
{
    /* Too short to judge the header: the caller is at the end of what it has. */
    if (avail < RECORD_HEADER_LEN)
        return RECORD_TRUNCATED;
    if (is_zero(p, RECORD_HEADER_LEN))
        return RECORD_END;
    struct record_header tmp;
    header_load(p, &tmp);
    if (!header_is_sane(p, &tmp))
        return RECORD_CORRUPT;
    /* Only a sane header's total_len is trusted to ask for more bytes. */
    if (tmp.total_len > avail)
        return RECORD_TRUNCATED;
    if (hash_bytes(p + OFF_CHECKED, tmp.total_len - OFF_CHECKED) != tmp.checksum)
        return RECORD_CORRUPT;
    *h = tmp;
    return RECORD_OK;
}

bool record_decode_message(const uint8_t *p, const struct record_header *h,
                           struct record_message *out)
{
    if (h->type != RECORD_MESSAGE || header_expected_len(h) != h->total_len)
        return false;
    const uint8_t *at = p + RECORD_HEADER_LEN;
    out->timestamp_ns = h->timestamp_ns;
    out->qos = h->flags & RECORD_FLAG_QOS_MASK;
    out->retain = (h->flags & RECORD_FLAG_RETAIN) != 0;
    out->packet_id = h->packet_id;
    out->topic = (struct slice){ at, h->topic_len };
    at += h->topic_len;
    out->client_id = (struct slice){ at, h->client_id_len };
    at += h->client_id_len;
    out->props = (struct slice){ at, h->props_len };
    at += h->props_len;
    out->payload = (struct slice){ at, h->payload_len };
    ASSERT_HOT(at + h->payload_len <= p + h->total_len);
    return true;
}

struct slice record_body(const uint8_t *p, const struct record_header *h)
{
    ASSERT(h->type == RECORD_SESSION || h->type == RECORD_CHECKPOINT);
    ASSERT(padded_len(h->payload_len) == h->total_len);
    return (struct slice){ p + RECORD_HEADER_LEN, h->payload_len };
}
