/* tests/unit/test_journal.c - unit tests for store/journal: the fixed byte layout, round trips
 * of every kind (STATE with 0, 1, 1000 and 65535 subscriptions, CURSOR with 1 and 256 shards,
 * empty and maximum client ids), every truncation and trailing junk rejected, every value of
 * every byte of small bodies either rejected or decoded to an entry that re-encodes to the
 * same bytes, the limits and range rules, and a trip through a RECORD_SESSION record.
 *
 * Every body the decoder sees lives in a heap buffer of exactly its length, so an out-of-bounds
 * read trips ASan in the debug build. Pure memory tests; single-threaded.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/le.h"
#include "store/journal.h"
#include "store/record.h"

TestSuite(journal, .timeout = 120);

/* ---- helpers ---------------------------------------------------------------------------- */

/* A heap copy of exactly `len` bytes (at least one byte allocated, so the pointer is valid). */
static uint8_t *copy_exact(const uint8_t *p, uint32_t len)
{
    uint8_t *q = malloc(len > 0 ? len : 1);
    cr_assert_not_null(q);
    if (len > 0)
        memcpy(q, p, len);
    return q;
}

/* Encodes `e` into a fresh buffer of exactly journal_body_len() bytes (prefilled with 0xEE, so
 * reserved bytes and padding must be written, not inherited). */
static uint8_t *encode_new(const struct journal_entry *e, uint32_t *len)
{
    *len = journal_body_len(e);
    uint8_t *buf = malloc(*len);
    cr_assert_not_null(buf);
    memset(buf, 0xEE, *len);
    cr_assert_eq(journal_encode(e, buf), *len);
    return buf;
}

/* Decodes a copy of exactly `len` bytes and frees it: only the return code is usable. */
static int decode_exact(const uint8_t *p, uint32_t len, struct journal_entry *out)
{
    uint8_t *q = copy_exact(p, len);
    int rc = journal_decode((struct slice){ q, len }, out);
    free(q);
    return rc;
}

static bool slice_within(struct slice s, const uint8_t *p, uint32_t len)
{
    return s.len == 0 || (s.ptr >= p && s.ptr + s.len <= p + len);
}

/* Copies the subscriptions and positions of a decoded entry into arrays (caller frees) so it
 * can be encoded again. */
static struct journal_entry entry_rebuild(const struct journal_entry *d, struct journal_sub **subs,
                                          struct journal_pos **pos)
{
    struct journal_entry e = *d;
    *subs = NULL;
    *pos = NULL;
    if (d->kind == JOURNAL_STATE) {
        *subs = calloc(d->sub_count + 1, sizeof(**subs));
        cr_assert_not_null(*subs);
        uint32_t at = 0;
        uint32_t n = 0;
        while (journal_sub_next(d, &at, &(*subs)[n]))
            n++;
        cr_assert_eq(n, d->sub_count);
        e.subs = *subs;
    }
    if (d->kind == JOURNAL_CURSOR) {
        *pos = calloc(d->shard_count, sizeof(**pos));
        cr_assert_not_null(*pos);
        for (uint16_t i = 0; i < d->shard_count; i++)
            (*pos)[i] = journal_pos_at(d, i);
        e.pos = *pos;
    }
    return e;
}

/* The decoded entry `d` of body `p` is self-consistent: its slices lie inside the body and
 * re-encoding it yields exactly the body (the format is canonical). */
static void assert_reencodes(const struct journal_entry *d, const uint8_t *p, uint32_t len)
{
    cr_assert(slice_within(d->client_id, p, len));
    cr_assert(slice_within(d->subs_raw, p, len));
    cr_assert(slice_within(d->pos_raw, p, len));
    struct journal_sub *subs;
    struct journal_pos *pos;
    struct journal_entry e = entry_rebuild(d, &subs, &pos);
    for (uint32_t i = 0; d->kind == JOURNAL_STATE && i < d->sub_count; i++)
        cr_assert(slice_within(subs[i].filter, p, len));
    uint32_t len2 = 0;
    uint8_t *again = encode_new(&e, &len2);
    cr_assert_eq(len2, len);
    cr_assert_eq(memcmp(again, p, len), 0);
    free(again);
    free(subs);
    free(pos);
}

static void assert_subs_eq(const struct journal_entry *want, const struct journal_entry *got)
{
    cr_assert_eq(got->sub_count, want->sub_count);
    cr_assert_null(got->subs);
    uint32_t at = 0;
    for (uint32_t i = 0; i < want->sub_count; i++) {
        struct journal_sub s;
        cr_assert(journal_sub_next(got, &at, &s), "subscription %u missing", i);
        cr_assert(slice_eq(s.filter, want->subs[i].filter), "filter %u", i);
        cr_assert_eq(s.options, want->subs[i].options);
        cr_assert_eq(s.sub_id, want->subs[i].sub_id);
        cr_assert_eq(at % 4, 0, "each subscription is padded to a multiple of 4");
    }
    struct journal_sub s;
    cr_assert_not(journal_sub_next(got, &at, &s));
    cr_assert_not(journal_sub_next(got, &at, &s), "the end stays the end");
    cr_assert_eq(at, got->subs_raw.len);
}

static void assert_entry_eq(const struct journal_entry *want, const struct journal_entry *got)
{
    cr_assert_eq(got->kind, want->kind);
    cr_assert_eq(got->time_ns, want->time_ns);
    cr_assert(slice_eq(got->client_id, want->client_id));
    switch (want->kind) {
    case JOURNAL_STATE:
        cr_assert_eq(got->mqtt_version, want->mqtt_version);
        cr_assert_eq(got->expiry_s, want->expiry_s);
        cr_assert_eq(got->since_ns, want->since_ns);
        assert_subs_eq(want, got);
        break;
    case JOURNAL_CURSOR:
        cr_assert_eq(got->shard_count, want->shard_count);
        cr_assert_null(got->pos);
        for (uint16_t i = 0; i < want->shard_count; i++) {
            struct journal_pos p = journal_pos_at(got, i);
            cr_assert_eq(p.pos0, want->pos[i].pos0);
            cr_assert_eq(p.pos1, want->pos[i].pos1);
        }
        break;
    case JOURNAL_REL:
        cr_assert_eq(got->packet_id, want->packet_id);
        break;
    case JOURNAL_OUT:
        cr_assert_eq(got->packet_id, want->packet_id);
        cr_assert_eq(got->out_state, want->out_state);
        cr_assert_eq(got->origin_shard, want->origin_shard);
        cr_assert_eq(got->log_off, want->log_off);
        break;
    case JOURNAL_WILL:
        cr_assert_eq(got->will_delay_s, want->will_delay_s);
        cr_assert_eq(got->will_due_ns, want->will_due_ns);
        cr_assert(slice_eq(got->will_record, want->will_record));
        break;
    default:
        break;
    }
    /* Fields of other kinds are zero. */
    if (want->kind != JOURNAL_STATE)
        cr_assert(got->sub_count == 0 && got->subs_raw.len == 0 && got->mqtt_version == 0 &&
                  got->expiry_s == 0 && got->since_ns == 0);
    if (want->kind != JOURNAL_CURSOR)
        cr_assert(got->shard_count == 0 && got->pos_raw.len == 0);
    if (want->kind != JOURNAL_REL && want->kind != JOURNAL_OUT)
        cr_assert_eq(got->packet_id, 0);
    if (want->kind != JOURNAL_WILL)
        cr_assert(got->will_record.len == 0 && got->will_delay_s == 0 && got->will_due_ns == 0);
}

/* Encodes, decodes from an exact-size buffer and compares; returns the body length. */
static uint32_t round_trip(const struct journal_entry *e)
{
    uint32_t len = 0;
    uint8_t *buf = encode_new(e, &len);
    struct journal_entry got;
    cr_assert_eq(journal_decode((struct slice){ buf, len }, &got), 0);
    assert_entry_eq(e, &got);
    assert_reencodes(&got, buf, len);
    free(buf);
    return len;
}

/* ---- samples ---------------------------------------------------------------------------- */

/* `count` subscriptions whose filters have lengths 1, 2, 3, ... (mod 97) so every padding
 * length occurs, with varied valid options and subscription ids. */
struct subs_fixture {
    struct journal_sub *subs;
    uint8_t *bytes;
    uint32_t count;
};

static struct subs_fixture subs_make(uint32_t count)
{
    struct subs_fixture f = { calloc(count + 1, sizeof(struct journal_sub)), NULL, count };
    cr_assert_not_null(f.subs);
    f.bytes = malloc((size_t)count * 97 + 1);
    cr_assert_not_null(f.bytes);
    uint8_t *at = f.bytes;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t n = 1 + i % 97;
        for (uint32_t j = 0; j < n; j++)
            at[j] = (uint8_t)(j % 3 == 2 ? '/' : 'a' + (i + j) % 26);
        uint8_t qos = (uint8_t)(i % 3);
        uint8_t nl = (uint8_t)((i >> 1) & 1);
        uint8_t rap = (uint8_t)((i >> 2) & 1);
        uint8_t rh = (uint8_t)((i / 3) % 3);
        f.subs[i] = (struct journal_sub){
            .filter = { at, n },
            .options = (uint8_t)(qos | nl << 2 | rap << 3 | rh << 4),
            .sub_id = i % 5 == 0 ? 0 : (i % 5 == 1 ? JOURNAL_SUB_ID_MAX : i),
        };
        at += n;
    }
    return f;
}

static void subs_free(struct subs_fixture *f)
{
    free(f->subs);
    free(f->bytes);
}

static struct journal_entry state_entry(const struct subs_fixture *f)
{
    return (struct journal_entry){
        .kind = JOURNAL_STATE,
        .time_ns = UINT64_C(1763800000123456789),
        .client_id = slice_from_cstr("sensor-17"),
        .mqtt_version = 5,
        .expiry_s = UINT32_MAX,
        .since_ns = UINT64_C(1763799999000000000),
        .sub_count = f->count,
        .subs = f->subs,
    };
}

static struct journal_pos *positions_make(uint16_t count)
{
    struct journal_pos *p = calloc(count, sizeof(*p));
    cr_assert_not_null(p);
    for (uint16_t i = 0; i < count; i++)
        p[i] = (struct journal_pos){ UINT64_C(0x0102030405060708) * i + 4096,
                                     i == count - 1 ? UINT64_MAX : (uint64_t)i << 40 };
    return p;
}

static struct journal_entry cursor_entry(const struct journal_pos *pos, uint16_t count)
{
    return (struct journal_entry){
        .kind = JOURNAL_CURSOR,
        .time_ns = 42,
        .client_id = slice_from_cstr("c"),
        .shard_count = count,
        .pos = pos,
    };
}

static struct journal_entry end_entry(void)
{
    return (struct journal_entry){
        .kind = JOURNAL_END, .time_ns = UINT64_MAX, .client_id = slice_from_cstr("gone")
    };
}

static struct journal_entry rel_entry(void)
{
    return (struct journal_entry){
        .kind = JOURNAL_REL, .time_ns = 7, .client_id = slice_from_cstr("r"), .packet_id = 65535
    };
}

static struct journal_entry out_entry(void)
{
    return (struct journal_entry){
        .kind = JOURNAL_OUT,
        .time_ns = 9,
        .client_id = slice_from_cstr("out-client"),
        .packet_id = 1,
        .out_state = JOURNAL_OUT_COMPLETED,
        .origin_shard = JOURNAL_SHARDS_MAX - 1,
        .log_off = UINT64_MAX - 1,
    };
}

/* A will message as a complete RECORD_MESSAGE (static storage: entries borrow it). */
static struct slice will_record(void)
{
    static uint8_t rec[256] __attribute__((aligned(8)));
    struct record_message m = {
        .timestamp_ns = 123, .qos = 1, .retain = true, .topic = slice_from_cstr("dev/1/status"),
        .client_id = slice_from_cstr("dev-1"), .payload = slice_from_cstr("offline"),
    };
    uint32_t len = record_message_len(&m);
    cr_assert_leq(len, sizeof(rec));
    cr_assert_eq(record_encode_message(&m, rec), len);
    return (struct slice){ rec, len };
}

static struct journal_entry will_entry(void)
{
    return (struct journal_entry){
        .kind = JOURNAL_WILL, .time_ns = 11, .client_id = slice_from_cstr("dev-1"),
        .will_delay_s = 30, .will_due_ns = UINT64_MAX, .will_record = will_record(),
    };
}

/* ---- layout ----------------------------------------------------------------------------- */

static void assert_encodes_to(const struct journal_entry *e, const uint8_t *want, uint32_t len)
{
    uint32_t got_len = 0;
    uint8_t *buf = encode_new(e, &got_len);
    cr_assert_eq(got_len, len);
    for (uint32_t i = 0; i < len; i++)
        cr_assert_eq(buf[i], want[i], "byte %u: got 0x%02x want 0x%02x", i, buf[i], want[i]);
    free(buf);
    uint8_t *copy = copy_exact(want, len); /* the decoded entry borrows it */
    struct journal_entry d;
    cr_assert_eq(journal_decode((struct slice){ copy, len }, &d), 0);
    assert_entry_eq(e, &d);
    free(copy);
}

Test(journal, state_layout_is_fixed)
{
    static const struct journal_sub subs[] = {
        { .filter = { (const uint8_t *)"a/b", 3 }, .options = 0x2A, .sub_id = 0x0FFFFFFF },
        { .filter = { (const uint8_t *)"#", 1 }, .options = 0x01, .sub_id = 0 },
        { .filter = { (const uint8_t *)"x/+/", 4 }, .options = 0x00, .sub_id = 5 },
    };
    static const uint8_t want[] = {
        0x01,                                           /* kind STATE */
        0x01,                                           /* format 1 */
        0x02, 0x00,                                     /* client_id_len 2 */
        0x00, 0x00, 0x00, 0x00,                         /* reserved */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* time_ns */
        'i', 'd',                                       /* client_id */
        0x05,                                           /* mqtt_version 5 */
        0x00,                                           /* reserved */
        0x00, 0x00,                                     /* reserved */
        0x10, 0x0E, 0x00, 0x00,                         /* expiry_s 3600 */
        0x03, 0x00, 0x00, 0x00,                         /* sub_count 3 */
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, /* since_ns */
        0x03, 0x00,                                     /* [0] filter_len 3 */
        0x2A,                                           /* [0] options */
        0x00,                                           /* [0] reserved */
        0xFF, 0xFF, 0xFF, 0x0F,                         /* [0] sub_id 268435455 */
        'a', '/', 'b', 0x00,                            /* [0] filter, 1 byte padding */
        0x01, 0x00,                                     /* [1] filter_len 1 */
        0x01,                                           /* [1] options */
        0x00,                                           /* [1] reserved */
        0x00, 0x00, 0x00, 0x00,                         /* [1] sub_id 0 */
        '#', 0x00, 0x00, 0x00,                          /* [1] filter, 3 bytes padding */
        0x04, 0x00,                                     /* [2] filter_len 4 */
        0x00,                                           /* [2] options */
        0x00,                                           /* [2] reserved */
        0x05, 0x00, 0x00, 0x00,                         /* [2] sub_id 5 */
        'x', '/', '+', '/',                             /* [2] filter, no padding */
    };
    struct journal_entry e = {
        .kind = JOURNAL_STATE,
        .time_ns = UINT64_C(0x0102030405060708),
        .client_id = slice_from_cstr("id"),
        .mqtt_version = 5,
        .expiry_s = 3600,
        .since_ns = UINT64_C(0x8877665544332211),
        .sub_count = 3,
        .subs = subs,
    };
    assert_encodes_to(&e, want, sizeof(want));
}

Test(journal, cursor_layout_is_fixed)
{
    static const struct journal_pos pos[] = {
        { UINT64_C(0x1122334455667788), 1 },
        { 0, UINT64_MAX },
    };
    static const uint8_t want[] = {
        0x02,                                           /* kind CURSOR */
        0x01,                                           /* format 1 */
        0x01, 0x00,                                     /* client_id_len 1 */
        0x00, 0x00, 0x00, 0x00,                         /* reserved */
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* time_ns 1 */
        'z',                                            /* client_id */
        0x02, 0x00,                                     /* shard_count 2 */
        0x00, 0x00,                                     /* reserved */
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* [0] pos0 */
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* [0] pos1 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* [1] pos0 */
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, /* [1] pos1 */
    };
    struct journal_entry e = {
        .kind = JOURNAL_CURSOR, .time_ns = 1, .client_id = slice_from_cstr("z"),
        .shard_count = 2, .pos = pos,
    };
    assert_encodes_to(&e, want, sizeof(want));
}

Test(journal, end_rel_out_layout_is_fixed)
{
    static const uint8_t want_end[] = {
        0x03,                                           /* kind END */
        0x01,                                           /* format 1 */
        0x00, 0x00,                                     /* client_id_len 0 */
        0x00, 0x00, 0x00, 0x00,                         /* reserved */
        0xFF, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* time_ns 255 */
    };
    struct journal_entry end = { .kind = JOURNAL_END, .time_ns = 255 };
    assert_encodes_to(&end, want_end, sizeof(want_end));

    static const uint8_t want_rel[] = {
        0x04,                                           /* kind REL */
        0x01,                                           /* format 1 */
        0x01, 0x00,                                     /* client_id_len 1 */
        0x00, 0x00, 0x00, 0x00,                         /* reserved */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* time_ns 0 */
        'q',                                            /* client_id */
        0x34, 0x12,                                     /* packet_id 0x1234 */
        0x00, 0x00,                                     /* reserved */
    };
    struct journal_entry rel = {
        .kind = JOURNAL_REL, .client_id = slice_from_cstr("q"), .packet_id = 0x1234
    };
    assert_encodes_to(&rel, want_rel, sizeof(want_rel));

    static const uint8_t want_out[] = {
        0x05,                                           /* kind OUT */
        0x01,                                           /* format 1 */
        0x03, 0x00,                                     /* client_id_len 3 */
        0x00, 0x00, 0x00, 0x00,                         /* reserved */
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* time_ns 2 */
        'a', 'b', 'c',                                  /* client_id */
        0xCD, 0xAB,                                     /* packet_id 0xABCD */
        0x01,                                           /* state PUBREC */
        0x00,                                           /* reserved */
        0xFE, 0x00,                                     /* origin_shard 254 */
        0x00, 0x00,                                     /* reserved */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* log_off */
    };
    struct journal_entry out = {
        .kind = JOURNAL_OUT, .time_ns = 2, .client_id = slice_from_cstr("abc"),
        .packet_id = 0xABCD, .out_state = JOURNAL_OUT_PUBREC, .origin_shard = 254,
        .log_off = UINT64_C(0x0102030405060708),
    };
    assert_encodes_to(&out, want_out, sizeof(want_out));
}

/* ---- round trips ------------------------------------------------------------------------ */

Test(journal, state_round_trips_with_0_1_and_1000_subs)
{
    uint32_t counts[] = { 0, 1, 2, 3, 4, 5, 1000 };
    for (size_t k = 0; k < ARRAY_LEN(counts); k++) {
        struct subs_fixture f = subs_make(counts[k]);
        struct journal_entry e = state_entry(&f);
        e.mqtt_version = (uint8_t)(3 + k % 3);
        e.expiry_s = k % 2 ? UINT32_MAX : (uint32_t)k;
        e.since_ns = k % 2 ? UINT64_MAX - k : (uint64_t)k;
        uint32_t want = JOURNAL_HEADER_LEN + e.client_id.len + JOURNAL_STATE_LEN;
        for (uint32_t i = 0; i < f.count; i++)
            want += JOURNAL_SUB_LEN + (f.subs[i].filter.len + 3) / 4 * 4;
        cr_assert_eq(round_trip(&e), want, "sub_count %u", counts[k]);
        subs_free(&f);
    }
}

Test(journal, state_since_ns_round_trips_any_value)
{
    static const struct journal_sub subs[] = {
        { .filter = { (const uint8_t *)"s/#", 3 }, .options = 0x01, .sub_id = 9 },
    };
    uint64_t values[] = { 0, 1, UINT64_C(0x0102030405060708), UINT64_MAX };
    for (size_t k = 0; k < ARRAY_LEN(values); k++) {
        for (uint32_t n = 0; n <= 1; n++) {
            struct journal_entry e = {
                .kind = JOURNAL_STATE, .time_ns = 3, .client_id = slice_from_cstr("since"),
                .mqtt_version = 4, .expiry_s = 60, .since_ns = values[k], .sub_count = n,
                .subs = subs,
            };
            uint32_t len = 0;
            uint8_t *buf = encode_new(&e, &len);
            /* since_ns sits at offset 12 of the STATE fields, little-endian. */
            const uint8_t *at = buf + JOURNAL_HEADER_LEN + e.client_id.len + 12;
            for (unsigned i = 0; i < 8; i++)
                cr_assert_eq(at[i], (uint8_t)(values[k] >> (8 * i)), "byte %u", i);
            struct journal_entry got;
            cr_assert_eq(decode_exact(buf, len, &got), 0);
            cr_assert_eq(got.since_ns, values[k], "since_ns %" PRIu64, values[k]);
            free(buf);
            cr_assert_eq(round_trip(&e),
                         JOURNAL_HEADER_LEN + 5 + JOURNAL_STATE_LEN + n * (JOURNAL_SUB_LEN + 4));
        }
    }
}

Test(journal, state_with_65535_subs_round_trips)
{
    struct subs_fixture f = subs_make(JOURNAL_SUBS_MAX);
    struct journal_entry e = state_entry(&f);
    cr_assert(journal_fits(&e));
    round_trip(&e);
    subs_free(&f);
}

Test(journal, state_with_max_filter_len_round_trips)
{
    uint8_t *filter = malloc(UINT16_MAX);
    cr_assert_not_null(filter);
    memset(filter, 'f', UINT16_MAX);
    struct journal_sub subs[] = {
        { .filter = { filter, UINT16_MAX }, .options = 0x22 },
        { .filter = { filter, UINT16_MAX - 1 }, .options = 0x1D, .sub_id = 1 },
    };
    struct journal_entry e = {
        .kind = JOURNAL_STATE, .mqtt_version = 4, .sub_count = 2, .subs = subs,
    };
    round_trip(&e);
    free(filter);
}

Test(journal, cursor_round_trips_with_1_and_256_shards)
{
    uint16_t counts[] = { 1, 2, 255, JOURNAL_SHARDS_MAX };
    for (size_t k = 0; k < ARRAY_LEN(counts); k++) {
        struct journal_pos *pos = positions_make(counts[k]);
        struct journal_entry e = cursor_entry(pos, counts[k]);
        uint32_t want = JOURNAL_HEADER_LEN + 1 + JOURNAL_CURSOR_LEN + counts[k] * JOURNAL_POS_LEN;
        cr_assert_eq(round_trip(&e), want);
        free(pos);
    }
}

Test(journal, end_rel_out_round_trip)
{
    struct journal_entry e = end_entry();
    cr_assert_eq(round_trip(&e), JOURNAL_HEADER_LEN + 4);
    e = rel_entry();
    cr_assert_eq(round_trip(&e), JOURNAL_HEADER_LEN + 1 + JOURNAL_REL_LEN);
    for (uint8_t s = JOURNAL_OUT_SENT; s <= JOURNAL_OUT_COMPLETED; s++) {
        e = out_entry();
        e.out_state = s;
        e.origin_shard = s;
        cr_assert_eq(round_trip(&e), JOURNAL_HEADER_LEN + 10 + JOURNAL_OUT_LEN);
    }
}

Test(journal, empty_and_max_client_id_round_trip_for_every_kind)
{
    uint8_t *id = malloc(UINT16_MAX);
    cr_assert_not_null(id);
    for (uint32_t i = 0; i < UINT16_MAX; i++)
        id[i] = (uint8_t)(i * 31 + 7);
    struct subs_fixture f = subs_make(7);
    struct journal_pos *pos = positions_make(3);
    struct journal_entry kinds[] = {
        state_entry(&f), cursor_entry(pos, 3), end_entry(), rel_entry(), out_entry(),
        will_entry(),
    };
    uint32_t id_lens[] = { 0, 1, UINT16_MAX };
    for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
        for (size_t j = 0; j < ARRAY_LEN(id_lens); j++) {
            struct journal_entry e = kinds[k];
            e.client_id = (struct slice){ id, id_lens[j] };
            uint32_t len = round_trip(&e);
            cr_assert_geq(len, JOURNAL_HEADER_LEN + id_lens[j]);
        }
    }
    free(pos);
    subs_free(&f);
    free(id);
}

Test(journal, round_trips_through_a_session_record)
{
    struct subs_fixture f = subs_make(40);
    struct journal_pos *pos = positions_make(8);
    struct journal_entry kinds[] = {
        state_entry(&f), cursor_entry(pos, 8), end_entry(), rel_entry(), out_entry(),
        will_entry(),
    };
    for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
        uint32_t body_len = 0;
        uint8_t *body = encode_new(&kinds[k], &body_len);
        uint32_t rec_len = record_body_len(body_len);
        void *mem = NULL;
        cr_assert_eq(posix_memalign(&mem, RECORD_ALIGN, rec_len), 0);
        uint8_t *rec = mem;
        cr_assert_eq(record_encode_typed(RECORD_SESSION, (struct slice){ body, body_len }, 0, rec),
                     rec_len);
        free(body); /* the record holds its own copy */
        struct record_header h;
        cr_assert_eq(record_verify(rec, rec_len, &h), RECORD_OK);
        cr_assert_eq(h.type, RECORD_SESSION);
        struct slice got_body = record_body(rec, &h);
        cr_assert_eq(got_body.len, body_len);
        struct journal_entry got;
        cr_assert_eq(journal_decode(got_body, &got), 0);
        assert_entry_eq(&kinds[k], &got);
        free(rec);
    }
    free(pos);
    subs_free(&f);
}

/* ---- malformed bodies ------------------------------------------------------------------- */

/* Small valid bodies of every kind, for the exhaustive tests. */
static uint8_t *sample_bodies(uint32_t *lens, size_t count, uint32_t sub_count)
{
    cr_assert_eq(count, 6);
    struct subs_fixture f = subs_make(sub_count);
    struct journal_pos *pos = positions_make(3);
    struct journal_entry kinds[] = {
        state_entry(&f), cursor_entry(pos, 3), end_entry(), rel_entry(), out_entry(),
        will_entry(),
    };
    /* One allocation holding all six bodies back to back; lens[k] gives each length. */
    uint8_t *bodies[6];
    uint32_t total = 0;
    for (size_t k = 0; k < count; k++) {
        bodies[k] = encode_new(&kinds[k], &lens[k]);
        total += lens[k];
    }
    uint8_t *all = malloc(total);
    cr_assert_not_null(all);
    uint32_t at = 0;
    for (size_t k = 0; k < count; k++) {
        memcpy(all + at, bodies[k], lens[k]);
        at += lens[k];
        free(bodies[k]);
    }
    free(pos);
    subs_free(&f);
    return all;
}

Test(journal, every_truncation_is_rejected)
{
    uint32_t lens[6];
    uint8_t *all = sample_bodies(lens, 6, 30);
    const uint8_t *body = all;
    for (size_t k = 0; k < 6; body += lens[k], k++) {
        for (uint32_t n = 0; n < lens[k]; n++) {
            struct journal_entry got;
            cr_assert_eq(decode_exact(body, n, &got), -EBADMSG, "kind %zu truncated to %u", k + 1,
                         n);
        }
        struct journal_entry got;
        cr_assert_eq(decode_exact(body, lens[k], &got), 0);
    }
    free(all);
}

Test(journal, trailing_junk_is_rejected)
{
    uint32_t lens[6];
    uint8_t *all = sample_bodies(lens, 6, 9);
    const uint8_t *body = all;
    for (size_t k = 0; k < 6; body += lens[k], k++) {
        for (uint32_t extra = 1; extra <= 20; extra++) {
            for (int fill = 0; fill < 2; fill++) {
                uint8_t *p = malloc(lens[k] + extra);
                cr_assert_not_null(p);
                memcpy(p, body, lens[k]);
                memset(p + lens[k], fill ? 0xA5 : 0x00, extra);
                struct journal_entry got;
                cr_assert_eq(journal_decode((struct slice){ p, lens[k] + extra }, &got), -EBADMSG,
                             "kind %zu with %u extra bytes", k + 1, extra);
                free(p);
            }
        }
    }
    free(all);
}

/* Every value of every byte of each sample body: the decoder rejects it, or accepts it and the
 * result is self-consistent (slices inside the body, re-encodes to the same bytes). Covers the
 * fixed header (kind, format, client_id_len, reserved), every length field, every
 * subscription's header and padding, under ASan with exact-size buffers. */
Test(journal, every_byte_value_is_rejected_or_consistent)
{
    uint32_t lens[6];
    uint8_t *all = sample_bodies(lens, 6, 6);
    const uint8_t *body = all;
    uint32_t accepted = 0;
    uint32_t rejected = 0;
    for (size_t k = 0; k < 6; body += lens[k], k++) {
        uint8_t *p = copy_exact(body, lens[k]);
        for (uint32_t i = 0; i < lens[k]; i++) {
            for (unsigned v = 0; v < 256; v++) {
                p[i] = (uint8_t)v;
                struct journal_entry got;
                int rc = journal_decode((struct slice){ p, lens[k] }, &got);
                if (rc == 0) {
                    assert_reencodes(&got, p, lens[k]);
                    accepted++;
                } else {
                    cr_assert_eq(rc, -EBADMSG);
                    rejected++;
                }
            }
            p[i] = body[i];
        }
        free(p);
    }
    /* Both outcomes occur: ids, times and positions take any value; kinds and lengths do not. */
    cr_assert_gt(accepted, 0);
    cr_assert_gt(rejected, 0);
    free(all);
}

/* Writes a body with the common header for `kind` and an empty client id; returns the offset
 * of the kind's fields. */
static uint32_t put_header(uint8_t *p, uint8_t kind)
{
    memset(p, 0, JOURNAL_HEADER_LEN);
    p[0] = kind;
    p[1] = JOURNAL_FORMAT;
    return JOURNAL_HEADER_LEN;
}

Test(journal, unknown_kind_or_format_is_rejected)
{
    struct journal_entry e = end_entry();
    uint32_t len = 0;
    uint8_t *p = encode_new(&e, &len);
    struct journal_entry got;
    uint8_t kinds[] = { 0, 7, 8, 0x80, 0xFF };
    for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
        p[0] = kinds[k];
        cr_assert_eq(decode_exact(p, len, &got), -EBADMSG);
    }
    p[0] = JOURNAL_END;
    uint8_t formats[] = { 0, 2, 0xFF };
    for (size_t k = 0; k < ARRAY_LEN(formats); k++) {
        p[1] = formats[k];
        cr_assert_eq(decode_exact(p, len, &got), -EBADMSG);
    }
    p[1] = JOURNAL_FORMAT;
    cr_assert_eq(decode_exact(p, len, &got), 0);
    free(p);
}

Test(journal, sub_count_over_the_limit_is_rejected)
{
    /* A body that really holds JOURNAL_SUBS_MAX + 1 well-formed subscriptions, so only the
     * limit can reject it. */
    uint32_t count = JOURNAL_SUBS_MAX + 1;
    uint32_t len = JOURNAL_HEADER_LEN + JOURNAL_STATE_LEN + count * (JOURNAL_SUB_LEN + 4);
    uint8_t *p = calloc(1, len);
    cr_assert_not_null(p);
    uint32_t at = put_header(p, JOURNAL_STATE);
    p[at] = 5;                                /* mqtt_version */
    memset(p + at + 4, 0xFF, 4);              /* expiry_s never */
    uint8_t *sub_count = p + at + 8;
    at += JOURNAL_STATE_LEN;
    for (uint32_t i = 0; i < count; i++, at += JOURNAL_SUB_LEN + 4) {
        p[at] = 1;                            /* filter_len 1 */
        p[at + JOURNAL_SUB_LEN] = '#';
    }
    cr_assert_eq(at, len);
    struct journal_entry got;
    sub_count[0] = (uint8_t)count;
    sub_count[1] = (uint8_t)(count >> 8);
    sub_count[2] = (uint8_t)(count >> 16);
    cr_assert_eq(journal_decode((struct slice){ p, len }, &got), -EBADMSG);
    /* The same bytes with one subscription fewer are fine. */
    count--;
    sub_count[0] = (uint8_t)count;
    sub_count[1] = (uint8_t)(count >> 8);
    sub_count[2] = (uint8_t)(count >> 16);
    cr_assert_eq(journal_decode((struct slice){ p, len - JOURNAL_SUB_LEN - 4 }, &got), 0);
    cr_assert_eq(got.sub_count, JOURNAL_SUBS_MAX);
    /* A huge count over a short body is rejected before any walk. */
    memset(sub_count, 0xFF, 4);
    cr_assert_eq(journal_decode((struct slice){ p, len }, &got), -EBADMSG);
    free(p);
}

Test(journal, shard_count_zero_or_over_the_limit_is_rejected)
{
    uint32_t count = JOURNAL_SHARDS_MAX + 1;
    uint32_t len = JOURNAL_HEADER_LEN + JOURNAL_CURSOR_LEN + count * JOURNAL_POS_LEN;
    uint8_t *p = calloc(1, len);
    cr_assert_not_null(p);
    uint32_t at = put_header(p, JOURNAL_CURSOR);
    p[at] = (uint8_t)count;
    p[at + 1] = (uint8_t)(count >> 8);
    struct journal_entry got;
    cr_assert_eq(journal_decode((struct slice){ p, len }, &got), -EBADMSG);
    count--;
    p[at] = (uint8_t)count;
    p[at + 1] = (uint8_t)(count >> 8);
    cr_assert_eq(journal_decode((struct slice){ p, len - JOURNAL_POS_LEN }, &got), 0);
    cr_assert_eq(got.shard_count, JOURNAL_SHARDS_MAX);
    p[at] = 0;
    p[at + 1] = 0;
    cr_assert_eq(journal_decode((struct slice){ p, JOURNAL_HEADER_LEN + JOURNAL_CURSOR_LEN }, &got),
                 -EBADMSG);
    free(p);
}

Test(journal, zero_filter_len_is_rejected)
{
    /* One subscription with filter_len 0: the lengths add up (8 bytes, no filter, no padding),
     * only the rule rejects it. */
    uint8_t p[JOURNAL_HEADER_LEN + JOURNAL_STATE_LEN + JOURNAL_SUB_LEN] = { 0 };
    uint32_t at = put_header(p, JOURNAL_STATE);
    p[at] = 4;     /* mqtt_version */
    p[at + 8] = 1; /* sub_count */
    struct journal_entry got;
    cr_assert_eq(decode_exact(p, sizeof(p), &got), -EBADMSG);
}

/* Decodes `p` with byte `off` set to `v` and expects a rejection. */
static void assert_patch_rejected(const uint8_t *body, uint32_t len, uint32_t off, uint8_t v)
{
    uint8_t *p = copy_exact(body, len);
    p[off] = v;
    struct journal_entry got;
    memset(&got, 0x5A, sizeof(got));
    cr_assert_eq(journal_decode((struct slice){ p, len }, &got), -EBADMSG, "byte %u = 0x%02x",
                 off, v);
    /* A failed decode leaves *out untouched. */
    const uint8_t *raw = (const uint8_t *)&got;
    for (size_t i = 0; i < sizeof(got); i++)
        cr_assert_eq(raw[i], 0x5A);
    free(p);
}

Test(journal, reserved_bytes_padding_and_ranges_are_checked)
{
    static const struct journal_sub subs[] = {
        { .filter = { (const uint8_t *)"t", 1 }, .options = 0x00, .sub_id = 0 },
    };
    struct journal_entry state = {
        .kind = JOURNAL_STATE, .mqtt_version = 3, .sub_count = 1, .subs = subs,
    };
    uint32_t len = 0;
    uint8_t *p = encode_new(&state, &len);
    uint32_t f = JOURNAL_HEADER_LEN;        /* the kind's fields (empty client id) */
    uint32_t s = f + JOURNAL_STATE_LEN;     /* the subscription */
    for (uint32_t i = 4; i < 8; i++)
        assert_patch_rejected(p, len, i, 1); /* header reserved */
    assert_patch_rejected(p, len, f, 2);     /* mqtt_version 2 */
    assert_patch_rejected(p, len, f, 6);     /* mqtt_version 6 */
    assert_patch_rejected(p, len, f + 1, 1); /* reserved */
    assert_patch_rejected(p, len, f + 2, 1); /* reserved */
    assert_patch_rejected(p, len, f + 3, 1); /* reserved */
    assert_patch_rejected(p, len, s + 2, 0x03); /* QoS 3 */
    assert_patch_rejected(p, len, s + 2, 0x30); /* retain handling 3 */
    assert_patch_rejected(p, len, s + 2, 0x40); /* reserved option bit */
    assert_patch_rejected(p, len, s + 2, 0x80); /* reserved option bit */
    assert_patch_rejected(p, len, s + 3, 1);    /* reserved */
    assert_patch_rejected(p, len, s + 7, 0x10); /* sub_id 268435456 */
    for (uint32_t i = s + 9; i < s + 12; i++)
        assert_patch_rejected(p, len, i, 1); /* padding */
    free(p);

    struct journal_pos pos = { 1, 2 };
    struct journal_entry cursor = { .kind = JOURNAL_CURSOR, .shard_count = 1, .pos = &pos };
    p = encode_new(&cursor, &len);
    assert_patch_rejected(p, len, f + 2, 1); /* reserved */
    assert_patch_rejected(p, len, f + 3, 1); /* reserved */
    free(p);

    struct journal_entry rel = { .kind = JOURNAL_REL, .packet_id = 1 };
    p = encode_new(&rel, &len);
    assert_patch_rejected(p, len, f, 0);     /* packet_id 0 */
    assert_patch_rejected(p, len, f + 2, 1); /* reserved */
    assert_patch_rejected(p, len, f + 3, 1); /* reserved */
    free(p);

    struct journal_entry out = { .kind = JOURNAL_OUT, .packet_id = 0x100 };
    p = encode_new(&out, &len);
    assert_patch_rejected(p, len, f + 1, 0);    /* packet_id 0 */
    assert_patch_rejected(p, len, f + 2, 3);    /* state 3 */
    assert_patch_rejected(p, len, f + 3, 1);    /* reserved */
    assert_patch_rejected(p, len, f + 5, 1);    /* origin_shard 256 */
    assert_patch_rejected(p, len, f + 6, 1);    /* reserved */
    assert_patch_rejected(p, len, f + 7, 1);    /* reserved */
    free(p);
}

Test(journal, client_id_len_past_the_body_is_rejected)
{
    struct journal_entry e = end_entry();
    uint32_t len = 0;
    uint8_t *p = encode_new(&e, &len);
    struct journal_entry got;
    for (uint32_t n = 0; n <= UINT16_MAX; n++) {
        p[2] = (uint8_t)n;
        p[3] = (uint8_t)(n >> 8);
        cr_assert_eq(decode_exact(p, len, &got), n == e.client_id.len ? 0 : -EBADMSG, "n %u", n);
    }
    free(p);
}

/* ---- limits on the encoder -------------------------------------------------------------- */

Test(journal, huge_state_does_not_fit)
{
    uint8_t *filter = malloc(UINT16_MAX);
    cr_assert_not_null(filter);
    memset(filter, 'x', UINT16_MAX);
    struct journal_sub *subs = calloc(JOURNAL_SUBS_MAX, sizeof(*subs));
    cr_assert_not_null(subs);
    for (uint32_t i = 0; i < JOURNAL_SUBS_MAX; i++)
        subs[i].filter = (struct slice){ filter, UINT16_MAX };
    struct journal_entry e = {
        .kind = JOURNAL_STATE, .mqtt_version = 5, .sub_count = JOURNAL_SUBS_MAX, .subs = subs,
    };
    cr_assert_not(journal_fits(&e));
    /* Few enough subscriptions do fit. */
    e.sub_count = 100;
    cr_assert(journal_fits(&e));
    struct journal_entry end = end_entry();
    cr_assert(journal_fits(&end));
    free(subs);
    free(filter);
}

Test(journal, body_len_of_a_state_that_does_not_fit_aborts, .signal = SIGABRT)
{
    static uint8_t filter[UINT16_MAX];
    static struct journal_sub subs[JOURNAL_SUBS_MAX];
    for (uint32_t i = 0; i < JOURNAL_SUBS_MAX; i++)
        subs[i].filter = (struct slice){ filter, UINT16_MAX };
    struct journal_entry e = {
        .kind = JOURNAL_STATE, .mqtt_version = 5, .sub_count = JOURNAL_SUBS_MAX, .subs = subs,
    };
    (void)journal_body_len(&e); /* aborts */
}

Test(journal, encoding_too_many_subs_aborts, .signal = SIGABRT)
{
    static struct journal_sub subs[JOURNAL_SUBS_MAX + 1];
    for (uint32_t i = 0; i <= JOURNAL_SUBS_MAX; i++)
        subs[i].filter = slice_from_cstr("#");
    struct journal_entry e = {
        .kind = JOURNAL_STATE, .mqtt_version = 5, .sub_count = JOURNAL_SUBS_MAX + 1, .subs = subs,
    };
    (void)journal_body_len(&e); /* aborts */
}

Test(journal, encoding_an_empty_filter_aborts, .signal = SIGABRT)
{
    struct journal_sub sub = { .filter = { NULL, 0 } };
    struct journal_entry e = {
        .kind = JOURNAL_STATE, .mqtt_version = 5, .sub_count = 1, .subs = &sub,
    };
    (void)journal_body_len(&e); /* aborts */
}

Test(journal, encoding_an_unknown_kind_aborts, .signal = SIGABRT)
{
    struct journal_entry e = { .kind = 7 };
    (void)journal_body_len(&e); /* aborts */
}

Test(journal, pos_at_past_the_end_aborts, .signal = SIGABRT)
{
    struct journal_pos pos = { 1, 2 };
    struct journal_entry e = cursor_entry(&pos, 1);
    uint32_t len = 0;
    uint8_t *p = encode_new(&e, &len);
    struct journal_entry got;
    cr_assert_eq(journal_decode((struct slice){ p, len }, &got), 0);
    (void)journal_pos_at(&got, 1); /* aborts */
}

Test(journal, will_layout_and_no_will)
{
    struct journal_entry e = will_entry();
    uint32_t len = 0;
    uint8_t *p = encode_new(&e, &len);
    uint32_t at = JOURNAL_HEADER_LEN + 5;
    cr_assert_eq(len, at + JOURNAL_WILL_LEN + e.will_record.len);
    cr_assert_eq(load_le32(p + at), e.will_record.len);
    cr_assert_eq(load_le32(p + at + 4), 30);
    cr_assert_eq(load_le64(p + at + 8), UINT64_MAX);
    cr_assert_eq(memcmp(p + at + 16, e.will_record.ptr, e.will_record.len), 0);
    free(p);
    e.will_record = (struct slice){ NULL, 0 };
    e.will_delay_s = 0;
    e.will_due_ns = 0;
    cr_assert_eq(round_trip(&e), JOURNAL_HEADER_LEN + 5 + JOURNAL_WILL_LEN);
}

Test(journal, will_whose_record_is_not_one_message_is_rejected)
{
    struct journal_entry e = will_entry();
    uint32_t len = 0;
    uint8_t *p = encode_new(&e, &len);
    uint32_t rec = JOURNAL_HEADER_LEN + 5 + JOURNAL_WILL_LEN;
    struct journal_entry got;
    /* A session record in its place: verifies, but is not a message. */
    uint8_t typed[RECORD_HEADER_LEN + 8] __attribute__((aligned(8)));
    uint32_t typed_len = record_encode_typed(RECORD_SESSION, slice_from_cstr("x"), 0, typed);
    uint8_t *q = malloc(rec + typed_len);
    cr_assert_not_null(q);
    memcpy(q, p, rec);
    memcpy(q + rec, typed, typed_len);
    store_le32(q + JOURNAL_HEADER_LEN + 5, typed_len);
    cr_assert_eq(decode_exact(q, rec + typed_len, &got), -EBADMSG);
    free(q);
    /* record_len claiming less or more than the record. */
    store_le32(p + JOURNAL_HEADER_LEN + 5, e.will_record.len - 8);
    cr_assert_eq(decode_exact(p, len - 8, &got), -EBADMSG);
    free(p);
}
