/* store/journal.c - the session journal's body codec (see store/journal.h for the layout).
 *
 * Encodes through explicit little-endian byte stores at fixed offsets, like store/record.c, so
 * the layout never depends on the compiler's struct layout or on alignment: the kind's fields
 * follow a client id of any length and are usually unaligned. Does not do I/O, allocate or keep
 * state; any thread.
 *
 * The decoder is the validator: it checks every length against the bytes that remain before
 * reading (subtractions from the remaining length, so no sum can wrap), and walks all
 * subscriptions once, so journal_sub_next and journal_pos_at can trust a decoded entry. The
 * encoder asserts the same rules the decoder enforces, through the shared predicates below,
 * so whatever this code writes, it reads back.
 */
#include "store/journal.h"

#include <errno.h>
#include <string.h>

#include "core/le.h"

/* Common header offsets. */
#define OFF_KIND 0u
#define OFF_FORMAT 1u
#define OFF_CLIENT_ID_LEN 2u
#define OFF_RESERVED 4u
#define OFF_TIME 8u
#define OFF_CLIENT_ID 16u

/* STATE, relative to the end of the client id. */
#define STATE_OFF_VERSION 0u
#define STATE_OFF_RESERVED 1u
#define STATE_OFF_RESERVED2 2u
#define STATE_OFF_EXPIRY 4u
#define STATE_OFF_SUB_COUNT 8u
#define STATE_OFF_SINCE 12u
#define STATE_OFF_SUBS 20u

/* One subscription, relative to its start. */
#define SUB_OFF_FILTER_LEN 0u
#define SUB_OFF_OPTIONS 2u
#define SUB_OFF_RESERVED 3u
#define SUB_OFF_SUB_ID 4u
#define SUB_OFF_FILTER 8u
#define SUB_ALIGN 4u

/* CURSOR. */
#define CURSOR_OFF_SHARD_COUNT 0u
#define CURSOR_OFF_RESERVED 2u
#define CURSOR_OFF_POS 4u
#define POS_OFF_POS0 0u
#define POS_OFF_POS1 8u

/* REL. */
#define REL_OFF_PACKET_ID 0u
#define REL_OFF_RESERVED 2u
#define REL_OFF_END 4u

/* OUT. */
#define OUT_OFF_PACKET_ID 0u
#define OUT_OFF_STATE 2u
#define OUT_OFF_RESERVED 3u
#define OUT_OFF_ORIGIN_SHARD 4u
#define OUT_OFF_RESERVED2 6u
#define OUT_OFF_LOG_OFF 8u
#define OUT_OFF_END 16u

/* WILL. */
#define WILL_OFF_RECORD_LEN 0u
#define WILL_OFF_DELAY 4u
#define WILL_OFF_DUE 8u
#define WILL_OFF_RECORD 16u

STATIC_ASSERT(OFF_FORMAT == OFF_KIND + 1 && OFF_CLIENT_ID_LEN == OFF_FORMAT + 1, "header layout");
STATIC_ASSERT(OFF_RESERVED == OFF_CLIENT_ID_LEN + 2 && OFF_TIME == OFF_RESERVED + 4,
              "header layout");
STATIC_ASSERT(OFF_CLIENT_ID == OFF_TIME + 8, "header layout");
STATIC_ASSERT(OFF_CLIENT_ID == JOURNAL_HEADER_LEN, "the fields fill the header exactly");
STATIC_ASSERT(STATE_OFF_RESERVED == STATE_OFF_VERSION + 1 &&
                  STATE_OFF_RESERVED2 == STATE_OFF_RESERVED + 1,
              "state layout");
STATIC_ASSERT(STATE_OFF_EXPIRY == STATE_OFF_RESERVED2 + 2 &&
                  STATE_OFF_SUB_COUNT == STATE_OFF_EXPIRY + 4,
              "state layout");
STATIC_ASSERT(STATE_OFF_SINCE == STATE_OFF_SUB_COUNT + 4 &&
                  STATE_OFF_SUBS == STATE_OFF_SINCE + 8 && STATE_OFF_SUBS == JOURNAL_STATE_LEN,
              "state layout");
STATIC_ASSERT(JOURNAL_STATE_LEN % SUB_ALIGN == 0, "the subscriptions start on the 4-byte rhythm");
STATIC_ASSERT(SUB_OFF_OPTIONS == SUB_OFF_FILTER_LEN + 2 && SUB_OFF_RESERVED == SUB_OFF_OPTIONS + 1,
              "subscription layout");
STATIC_ASSERT(SUB_OFF_SUB_ID == SUB_OFF_RESERVED + 1 && SUB_OFF_FILTER == SUB_OFF_SUB_ID + 4,
              "subscription layout");
STATIC_ASSERT(SUB_OFF_FILTER == JOURNAL_SUB_LEN && JOURNAL_SUB_LEN % SUB_ALIGN == 0,
              "a subscription's fixed part keeps the 4-byte rhythm");
STATIC_ASSERT(CURSOR_OFF_RESERVED == CURSOR_OFF_SHARD_COUNT + 2 &&
                  CURSOR_OFF_POS == CURSOR_OFF_RESERVED + 2 && CURSOR_OFF_POS == JOURNAL_CURSOR_LEN,
              "cursor layout");
STATIC_ASSERT(POS_OFF_POS1 == POS_OFF_POS0 + 8 && JOURNAL_POS_LEN == POS_OFF_POS1 + 8,
              "position layout");
STATIC_ASSERT(REL_OFF_RESERVED == REL_OFF_PACKET_ID + 2 && REL_OFF_END == REL_OFF_RESERVED + 2 &&
                  REL_OFF_END == JOURNAL_REL_LEN,
              "rel layout");
STATIC_ASSERT(OUT_OFF_STATE == OUT_OFF_PACKET_ID + 2 && OUT_OFF_RESERVED == OUT_OFF_STATE + 1,
              "out layout");
STATIC_ASSERT(OUT_OFF_ORIGIN_SHARD == OUT_OFF_RESERVED + 1 &&
                  OUT_OFF_RESERVED2 == OUT_OFF_ORIGIN_SHARD + 2,
              "out layout");
STATIC_ASSERT(OUT_OFF_LOG_OFF == OUT_OFF_RESERVED2 + 2 && OUT_OFF_END == OUT_OFF_LOG_OFF + 8 &&
                  OUT_OFF_END == JOURNAL_OUT_LEN,
              "out layout");
STATIC_ASSERT(WILL_OFF_DELAY == WILL_OFF_RECORD_LEN + 4 && WILL_OFF_DUE == WILL_OFF_DELAY + 4 &&
                  WILL_OFF_RECORD == WILL_OFF_DUE + 8 && WILL_OFF_RECORD == JOURNAL_WILL_LEN,
              "will layout");
STATIC_ASSERT(JOURNAL_FORMAT != 0 && JOURNAL_FORMAT <= UINT8_MAX, "format fits its byte");
STATIC_ASSERT(JOURNAL_SUBS_MAX <= UINT16_MAX, "sub_count stays well inside its u32");
STATIC_ASSERT(JOURNAL_SHARDS_MAX <= UINT16_MAX, "shard_count fits its u16");
STATIC_ASSERT(JOURNAL_SHARDS_MAX - 1 <= UINT16_MAX, "origin_shard fits its u16");
/* A CURSOR of the most shards and the longest client id is small; only STATE can overflow. */
STATIC_ASSERT(JOURNAL_HEADER_LEN + UINT16_MAX + JOURNAL_CURSOR_LEN +
                      JOURNAL_SHARDS_MAX * JOURNAL_POS_LEN <=
                  JOURNAL_BODY_MAX,
              "every CURSOR fits in a record");
STATIC_ASSERT(JOURNAL_BODY_MAX <= UINT32_MAX, "body lengths fit in 32 bits");

static bool is_zero(const uint8_t *p, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* Padding after a filter of `filter_len` bytes. */
static uint32_t sub_pad_len(uint32_t filter_len)
{
    return (SUB_ALIGN - filter_len % SUB_ALIGN) % SUB_ALIGN;
}

/* Bytes one subscription with a filter of `filter_len` bytes takes. */
static uint32_t sub_len(uint32_t filter_len)
{
    return JOURNAL_SUB_LEN + filter_len + sub_pad_len(filter_len);
}

/* The range rules, shared by the encoder (ASSERT) and the decoder (-EBADMSG). */
static bool version_is_valid(uint8_t mqtt_version)
{
    return mqtt_version >= 3 && mqtt_version <= 5;
}

static bool sub_is_valid(uint32_t filter_len, uint8_t options, uint32_t sub_id)
{
    return filter_len >= 1 && filter_len <= UINT16_MAX && journal_options_are_valid(options) &&
           sub_id <= JOURNAL_SUB_ID_MAX;
}

static bool shard_count_is_valid(uint32_t shard_count)
{
    return shard_count >= 1 && shard_count <= JOURNAL_SHARDS_MAX;
}

static bool out_is_valid(uint16_t packet_id, uint8_t out_state, uint16_t origin_shard)
{
    return packet_id != 0 && out_state <= JOURNAL_OUT_COMPLETED &&
           origin_shard < JOURNAL_SHARDS_MAX;
}

/* True if `p` (`len` bytes) is one complete RECORD_MESSAGE of exactly `len` bytes, or empty. */
static bool will_record_is_valid(const uint8_t *p, uint32_t len)
{
    if (len == 0)
        return true;
    struct record_header h;
    return record_verify(p, len, &h) == RECORD_OK && h.total_len == len &&
           h.type == RECORD_MESSAGE;
}

/* Length of the kind's fields of a valid `e`, in 64 bits: a STATE can exceed 32. */
static uint64_t kind_len(const struct journal_entry *e)
{
    switch (e->kind) {
    case JOURNAL_STATE: {
        ASSERT(version_is_valid(e->mqtt_version));
        ASSERT(e->sub_count <= JOURNAL_SUBS_MAX);
        ASSERT(e->sub_count == 0 || e->subs != NULL);
        uint64_t len = JOURNAL_STATE_LEN;
        for (uint32_t i = 0; i < e->sub_count; i++) {
            const struct journal_sub *s = &e->subs[i];
            ASSERT(sub_is_valid(s->filter.len, s->options, s->sub_id));
            len += sub_len(s->filter.len);
        }
        return len;
    }
    case JOURNAL_CURSOR:
        ASSERT(shard_count_is_valid(e->shard_count));
        ASSERT(e->pos != NULL);
        return JOURNAL_CURSOR_LEN + (uint64_t)e->shard_count * JOURNAL_POS_LEN;
    case JOURNAL_END:
        return 0;
    case JOURNAL_REL:
        ASSERT(e->packet_id != 0);
        return JOURNAL_REL_LEN;
    case JOURNAL_OUT:
        ASSERT(out_is_valid(e->packet_id, e->out_state, e->origin_shard));
        return JOURNAL_OUT_LEN;
    case JOURNAL_WILL:
        ASSERT(will_record_is_valid(e->will_record.ptr, e->will_record.len));
        return JOURNAL_WILL_LEN + (uint64_t)e->will_record.len;
    default:
        ASSERT(!"unknown journal kind");
        return 0;
    }
}

static uint64_t body_len64(const struct journal_entry *e)
{
    ASSERT(e->client_id.len <= UINT16_MAX);
    ASSERT(e->client_id.len == 0 || e->client_id.ptr != NULL);
    return JOURNAL_HEADER_LEN + (uint64_t)e->client_id.len + kind_len(e);
}

bool journal_fits(const struct journal_entry *e)
{
    return body_len64(e) <= JOURNAL_BODY_MAX;
}

uint32_t journal_body_len(const struct journal_entry *e)
{
    uint64_t len = body_len64(e);
    ASSERT(len <= JOURNAL_BODY_MAX);
    return (uint32_t)len;
}

static uint8_t *put_bytes(uint8_t *at, struct slice s)
{
    if (s.len > 0)
        memcpy(at, s.ptr, s.len);
    return at + s.len;
}

/* Writes the subscriptions of a STATE at `at`; returns the end. */
static uint8_t *put_subs(uint8_t *at, const struct journal_sub *subs, uint32_t sub_count)
{
    for (uint32_t i = 0; i < sub_count; i++) {
        const struct journal_sub *s = &subs[i];
        memset(at, 0, JOURNAL_SUB_LEN);
        store_le16(at + SUB_OFF_FILTER_LEN, (uint16_t)s->filter.len);
        at[SUB_OFF_OPTIONS] = s->options;
        store_le32(at + SUB_OFF_SUB_ID, s->sub_id);
        at = put_bytes(at + SUB_OFF_FILTER, s->filter);
        uint32_t pad = sub_pad_len(s->filter.len);
        memset(at, 0, pad);
        at += pad;
    }
    return at;
}

/* Writes the kind's fields of `e` at `at` (zeroing reserved bytes first); returns the end. */
static uint8_t *put_kind(const struct journal_entry *e, uint8_t *at)
{
    switch (e->kind) {
    case JOURNAL_STATE:
        memset(at, 0, JOURNAL_STATE_LEN);
        at[STATE_OFF_VERSION] = e->mqtt_version;
        store_le32(at + STATE_OFF_EXPIRY, e->expiry_s);
        store_le32(at + STATE_OFF_SUB_COUNT, e->sub_count);
        store_le64(at + STATE_OFF_SINCE, e->since_ns);
        return put_subs(at + STATE_OFF_SUBS, e->subs, e->sub_count);
    case JOURNAL_CURSOR:
        memset(at, 0, JOURNAL_CURSOR_LEN);
        store_le16(at + CURSOR_OFF_SHARD_COUNT, e->shard_count);
        at += CURSOR_OFF_POS;
        for (uint32_t i = 0; i < e->shard_count; i++, at += JOURNAL_POS_LEN) {
            store_le64(at + POS_OFF_POS0, e->pos[i].pos0);
            store_le64(at + POS_OFF_POS1, e->pos[i].pos1);
        }
        return at;
    case JOURNAL_END:
        return at;
    case JOURNAL_REL:
        memset(at, 0, JOURNAL_REL_LEN);
        store_le16(at + REL_OFF_PACKET_ID, e->packet_id);
        return at + REL_OFF_END;
    case JOURNAL_OUT:
        memset(at, 0, JOURNAL_OUT_LEN);
        store_le16(at + OUT_OFF_PACKET_ID, e->packet_id);
        at[OUT_OFF_STATE] = e->out_state;
        store_le16(at + OUT_OFF_ORIGIN_SHARD, e->origin_shard);
        store_le64(at + OUT_OFF_LOG_OFF, e->log_off);
        return at + OUT_OFF_END;
    case JOURNAL_WILL:
        store_le32(at + WILL_OFF_RECORD_LEN, e->will_record.len);
        store_le32(at + WILL_OFF_DELAY, e->will_delay_s);
        store_le64(at + WILL_OFF_DUE, e->will_due_ns);
        return put_bytes(at + WILL_OFF_RECORD, e->will_record);
    default:
        ASSERT(!"unknown journal kind");
        return at;
    }
}

uint32_t journal_encode(const struct journal_entry *e, uint8_t *out)
{
    ASSERT(out != NULL);
    uint32_t len = journal_body_len(e); /* validates `e` */
    memset(out, 0, JOURNAL_HEADER_LEN);
    out[OFF_KIND] = e->kind;
    out[OFF_FORMAT] = (uint8_t)JOURNAL_FORMAT;
    store_le16(out + OFF_CLIENT_ID_LEN, (uint16_t)e->client_id.len);
    store_le64(out + OFF_TIME, e->time_ns);
    uint8_t *at = put_bytes(out + OFF_CLIENT_ID, e->client_id);
    at = put_kind(e, at);
    ASSERT(at == out + len);
    return len;
}

/* Walks `sub_count` subscriptions in `p` (exactly `len` bytes) and checks each; true if they
 * are valid and fill `len` exactly. */
static bool subs_are_valid(const uint8_t *p, uint32_t len, uint32_t sub_count)
{
    uint32_t off = 0;
    for (uint32_t i = 0; i < sub_count; i++) {
        if (len - off < JOURNAL_SUB_LEN)
            return false;
        const uint8_t *s = p + off;
        uint16_t filter_len = load_le16(s + SUB_OFF_FILTER_LEN);
        if (!sub_is_valid(filter_len, s[SUB_OFF_OPTIONS], load_le32(s + SUB_OFF_SUB_ID)) ||
            s[SUB_OFF_RESERVED] != 0)
            return false;
        uint32_t need = sub_len(filter_len);
        if (len - off < need)
            return false;
        uint32_t pad = sub_pad_len(filter_len);
        if (!is_zero(s + SUB_OFF_FILTER + filter_len, pad))
            return false;
        off += need;
    }
    return off == len;
}

/* Decodes the STATE fields in `p` (exactly `len` bytes) into *out. */
static bool decode_state(const uint8_t *p, uint32_t len, struct journal_entry *out)
{
    if (len < JOURNAL_STATE_LEN)
        return false;
    uint32_t sub_count = load_le32(p + STATE_OFF_SUB_COUNT);
    if (!version_is_valid(p[STATE_OFF_VERSION]) || p[STATE_OFF_RESERVED] != 0 ||
        load_le16(p + STATE_OFF_RESERVED2) != 0 || sub_count > JOURNAL_SUBS_MAX)
        return false;
    /* Each subscription takes at least JOURNAL_SUB_LEN + 4 bytes: reject a count the bytes
     * cannot hold before walking them. */
    uint32_t subs_len = len - STATE_OFF_SUBS;
    if ((uint64_t)sub_count * (JOURNAL_SUB_LEN + SUB_ALIGN) > subs_len)
        return false;
    if (!subs_are_valid(p + STATE_OFF_SUBS, subs_len, sub_count))
        return false;
    out->mqtt_version = p[STATE_OFF_VERSION];
    out->expiry_s = load_le32(p + STATE_OFF_EXPIRY);
    out->since_ns = load_le64(p + STATE_OFF_SINCE);
    out->sub_count = sub_count;
    out->subs_raw = (struct slice){ p + STATE_OFF_SUBS, subs_len };
    return true;
}

static bool decode_cursor(const uint8_t *p, uint32_t len, struct journal_entry *out)
{
    if (len < JOURNAL_CURSOR_LEN)
        return false;
    uint16_t shard_count = load_le16(p + CURSOR_OFF_SHARD_COUNT);
    if (!shard_count_is_valid(shard_count) || load_le16(p + CURSOR_OFF_RESERVED) != 0)
        return false;
    if (len - JOURNAL_CURSOR_LEN != (uint32_t)shard_count * JOURNAL_POS_LEN)
        return false;
    out->shard_count = shard_count;
    out->pos_raw = (struct slice){ p + CURSOR_OFF_POS, len - JOURNAL_CURSOR_LEN };
    return true;
}

static bool decode_rel(const uint8_t *p, uint32_t len, struct journal_entry *out)
{
    if (len != JOURNAL_REL_LEN)
        return false;
    uint16_t packet_id = load_le16(p + REL_OFF_PACKET_ID);
    if (packet_id == 0 || load_le16(p + REL_OFF_RESERVED) != 0)
        return false;
    out->packet_id = packet_id;
    return true;
}

static bool decode_out(const uint8_t *p, uint32_t len, struct journal_entry *out)
{
    if (len != JOURNAL_OUT_LEN)
        return false;
    uint16_t packet_id = load_le16(p + OUT_OFF_PACKET_ID);
    uint16_t origin_shard = load_le16(p + OUT_OFF_ORIGIN_SHARD);
    if (!out_is_valid(packet_id, p[OUT_OFF_STATE], origin_shard) || p[OUT_OFF_RESERVED] != 0 ||
        load_le16(p + OUT_OFF_RESERVED2) != 0)
        return false;
    out->packet_id = packet_id;
    out->out_state = p[OUT_OFF_STATE];
    out->origin_shard = origin_shard;
    out->log_off = load_le64(p + OUT_OFF_LOG_OFF);
    return true;
}

static bool decode_will(const uint8_t *p, uint32_t len, struct journal_entry *out)
{
    if (len < JOURNAL_WILL_LEN)
        return false;
    uint32_t record_len = load_le32(p + WILL_OFF_RECORD_LEN);
    if (len - JOURNAL_WILL_LEN != record_len ||
        !will_record_is_valid(p + WILL_OFF_RECORD, record_len))
        return false;
    out->will_delay_s = load_le32(p + WILL_OFF_DELAY);
    out->will_due_ns = load_le64(p + WILL_OFF_DUE);
    out->will_record = (struct slice){ p + WILL_OFF_RECORD, record_len };
    return true;
}

/* Decodes the kind's fields in `p` (exactly `len` bytes) into *out. */
static bool decode_kind(uint8_t kind, const uint8_t *p, uint32_t len, struct journal_entry *out)
{
    switch (kind) {
    case JOURNAL_STATE:
        return decode_state(p, len, out);
    case JOURNAL_CURSOR:
        return decode_cursor(p, len, out);
    case JOURNAL_END:
        return len == 0;
    case JOURNAL_REL:
        return decode_rel(p, len, out);
    case JOURNAL_OUT:
        return decode_out(p, len, out);
    case JOURNAL_WILL:
        return decode_will(p, len, out);
    default:
        return false;
    }
}

int journal_decode(struct slice body, struct journal_entry *out)
{
    ASSERT(out != NULL);
    ASSERT(body.len == 0 || body.ptr != NULL);
    if (body.len < JOURNAL_HEADER_LEN || body.len > JOURNAL_BODY_MAX)
        return -EBADMSG;
    const uint8_t *p = body.ptr;
    if (p[OFF_FORMAT] != JOURNAL_FORMAT || load_le32(p + OFF_RESERVED) != 0)
        return -EBADMSG;
    uint16_t client_id_len = load_le16(p + OFF_CLIENT_ID_LEN);
    if (body.len - JOURNAL_HEADER_LEN < client_id_len)
        return -EBADMSG;
    struct journal_entry e;
    memset(&e, 0, sizeof(e));
    e.kind = p[OFF_KIND];
    e.time_ns = load_le64(p + OFF_TIME);
    e.client_id = (struct slice){ p + OFF_CLIENT_ID, client_id_len };
    uint32_t fields_off = OFF_CLIENT_ID + client_id_len;
    if (!decode_kind(e.kind, p + fields_off, body.len - fields_off, &e))
        return -EBADMSG;
    *out = e;
    return 0;
}

bool journal_sub_next(const struct journal_entry *e, uint32_t *pos, struct journal_sub *out)
{
    ASSERT(e->kind == JOURNAL_STATE && e->subs == NULL);
    uint32_t len = e->subs_raw.len;
    ASSERT(*pos <= len);
    if (*pos == len)
        return false;
    /* journal_decode checked every subscription; these guard against a hand-made entry. */
    ASSERT(len - *pos >= JOURNAL_SUB_LEN);
    const uint8_t *s = e->subs_raw.ptr + *pos;
    uint16_t filter_len = load_le16(s + SUB_OFF_FILTER_LEN);
    uint32_t need = sub_len(filter_len);
    ASSERT(len - *pos >= need);
    out->filter = (struct slice){ s + SUB_OFF_FILTER, filter_len };
    out->options = s[SUB_OFF_OPTIONS];
    out->sub_id = load_le32(s + SUB_OFF_SUB_ID);
    *pos += need;
    return true;
}

struct journal_pos journal_pos_at(const struct journal_entry *e, uint16_t i)
{
    ASSERT(e->kind == JOURNAL_CURSOR && e->pos == NULL);
    ASSERT(i < e->shard_count);
    ASSERT(e->pos_raw.len == (uint32_t)e->shard_count * JOURNAL_POS_LEN);
    const uint8_t *p = e->pos_raw.ptr + (uint32_t)i * JOURNAL_POS_LEN;
    return (struct journal_pos){ load_le64(p + POS_OFF_POS0), load_le64(p + POS_OFF_POS1) };
}
