/* tests/unit/test_record.c - unit tests for store/record: encode/verify/decode round trips,
 * the fixed byte layout, every single-bit flip detected, every truncation rejected, zero
 * headers, garbage lengths and zero padding.
 *
 * Pure memory tests; single-threaded.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "store/record.h"

TestSuite(record);

#define BUF_ALIGN 4096

static uint8_t *buf_new(size_t len)
{
    void *p = NULL;
    cr_assert_eq(posix_memalign(&p, BUF_ALIGN, len), 0);
    memset(p, 0xEE, len); /* not zero: padding must be written, not inherited */
    return p;
}

static struct record_message sample_message(void)
{
    static const uint8_t props[] = { 0x01, 0x01, 0x03, 0x00, 0x04, 't', 'e', 'x', 't' };
    return (struct record_message){
        .timestamp_ns = UINT64_C(1763800000123456789),
        .qos = 1,
        .retain = true,
        .topic = slice_from_cstr("sensors/kitchen/temp"),
        .client_id = slice_from_cstr("dev-42"),
        .props = { props, sizeof(props) },
        .payload = slice_from_cstr("{\"c\":21.5}"),
    };
}

static void le_u16_is(const uint8_t *p, uint16_t v)
{
    cr_assert_eq(p[0] | (p[1] << 8), v);
}

static void le_u32_is(const uint8_t *p, uint32_t v)
{
    uint32_t got = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                   (uint32_t)p[3] << 24;
    cr_assert_eq(got, v);
}

static void assert_message_eq(const struct record_message *a, const struct record_message *b)
{
    cr_assert_eq(a->timestamp_ns, b->timestamp_ns);
    cr_assert_eq(a->qos, b->qos);
    cr_assert_eq(a->retain, b->retain);
    cr_assert(slice_eq(a->topic, b->topic));
    cr_assert(slice_eq(a->client_id, b->client_id));
    cr_assert(slice_eq(a->props, b->props));
    cr_assert(slice_eq(a->payload, b->payload));
}

static void round_trip(const struct record_message *m)
{
    uint32_t len = record_message_len(m);
    cr_assert_eq(len % RECORD_ALIGN, 0);
    uint8_t *buf = buf_new(len);
    cr_assert_eq(record_encode_message(m, buf), len);
    struct record_header h;
    cr_assert_eq(record_verify(buf, len, &h), RECORD_OK);
    cr_assert_eq(h.type, RECORD_MESSAGE);
    cr_assert_eq(h.total_len, len);
    struct record_message got;
    cr_assert(record_decode_message(buf, &h, &got));
    assert_message_eq(&got, m);
    /* Padding is zero. */
    uint32_t used = RECORD_HEADER_LEN + m->topic.len + m->client_id.len + m->props.len +
                    m->payload.len;
    for (uint32_t i = used; i < len; i++)
        cr_assert_eq(buf[i], 0, "padding byte %u", i);
    free(buf);
}

Test(record, message_round_trip)
{
    struct record_message m = sample_message();
    round_trip(&m);
}

Test(record, message_without_props_or_payload_round_trips)
{
    struct record_message m = sample_message();
    m.props = (struct slice){ NULL, 0 };
    m.payload = (struct slice){ NULL, 0 };
    m.retain = false;
    m.qos = 0;
    round_trip(&m);
    m.client_id = (struct slice){ NULL, 0 };
    m.qos = 2;
    round_trip(&m);
}

Test(record, message_every_padding_length_round_trips)
{
    struct record_message m = sample_message();
    uint8_t payload[16] = "0123456789abcdef";
    for (uint32_t n = 0; n <= sizeof(payload); n++) {
        m.payload = (struct slice){ payload, n };
        round_trip(&m);
        cr_assert_eq(record_message_len(&m),
                     (RECORD_HEADER_LEN + m.topic.len + m.client_id.len + m.props.len + n + 7) /
                         8 * 8);
    }
}

Test(record, message_max_sizes_round_trip, .timeout = 60)
{
    /* Largest topic and client id, and a payload that makes the record RECORD_LEN_MAX. */
    uint8_t *big = malloc(RECORD_LEN_MAX);
    cr_assert_not_null(big);
    for (uint32_t i = 0; i < RECORD_LEN_MAX; i++)
        big[i] = (uint8_t)(i * 131u + 7u);
    struct record_message m = {
        .timestamp_ns = UINT64_MAX,
        .qos = 2,
        .topic = { big, UINT16_MAX },
        .client_id = { big + 1, UINT16_MAX },
        .props = { big + 2, 1000 },
    };
    m.payload = (struct slice){ big + 3,
                                RECORD_LEN_MAX - RECORD_HEADER_LEN - 2u * UINT16_MAX - 1000u };
    cr_assert_eq(record_message_len(&m), RECORD_LEN_MAX);
    round_trip(&m);
    free(big);
}

Test(record, message_over_max_len_aborts, .signal = SIGABRT)
{
    static uint8_t byte;
    struct record_message m = sample_message();
    m.payload = (struct slice){ &byte, RECORD_LEN_MAX };
    (void)record_message_len(&m);
}

Test(record, header_layout_is_fixed)
{
    struct record_message m = sample_message();
    uint32_t len = record_message_len(&m);
    uint8_t *b = buf_new(len);
    record_encode_message(&m, b);
    /* offset 0: checksum, 8 bytes (checked by verify); then: */
    le_u16_is(b + 8, RECORD_MAGIC);                        /* magic "KL" */
    cr_assert_eq(b[8], 'L');
    cr_assert_eq(b[9], 'K');
    cr_assert_eq(b[10], RECORD_VERSION);                   /* version */
    cr_assert_eq(b[11], RECORD_MESSAGE);                   /* type */
    le_u32_is(b + 12, len);                                /* total_len */
    le_u32_is(b + 16, (uint32_t)m.timestamp_ns);           /* timestamp_ns, low half */
    le_u32_is(b + 20, (uint32_t)(m.timestamp_ns >> 32));   /* timestamp_ns, high half */
    cr_assert_eq(b[24], 1 | RECORD_FLAG_RETAIN);           /* flags: qos 1, retain */
    cr_assert_eq(b[25], 0);                                /* reserved */
    le_u16_is(b + 26, (uint16_t)m.topic.len);              /* topic_len */
    le_u16_is(b + 28, (uint16_t)m.client_id.len);          /* client_id_len */
    le_u16_is(b + 30, 0);                                  /* packet_id (QoS 1) */
    le_u32_is(b + 32, m.props.len);                        /* props_len */
    le_u32_is(b + 36, m.payload.len);                      /* payload_len */
    le_u32_is(b + 40, 0);                                  /* reserved3 */
    le_u32_is(b + 44, 0);                                  /* reserved4 */
    cr_assert_eq(memcmp(b + 48, m.topic.ptr, m.topic.len), 0); /* body: topic first */
    free(b);
}

/* The layout of docs/storage.md, written byte by byte: what the encoder's word stores and
 * short copies must reproduce exactly. */
static void encode_reference(const struct record_message *m, uint8_t *out)
{
    uint32_t len = record_message_len(m);
    memset(out, 0, len);
    const uint64_t fields[][3] = { /* offset, width, value */
        { 8, 2, RECORD_MAGIC }, { 10, 1, RECORD_VERSION }, { 11, 1, RECORD_MESSAGE },
        { 12, 4, len }, { 16, 8, m->timestamp_ns },
        { 24, 1, (uint64_t)(m->qos | (m->retain ? RECORD_FLAG_RETAIN : 0)) },
        { 26, 2, m->topic.len }, { 28, 2, m->client_id.len }, { 30, 2, m->packet_id },
        { 32, 4, m->props.len }, { 36, 4, m->payload.len },
    };
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
        for (uint32_t i = 0; i < fields[f][1]; i++)
            out[fields[f][0] + i] = (uint8_t)(fields[f][2] >> (8 * i));
    uint32_t at = RECORD_HEADER_LEN;
    const struct slice parts[] = { m->topic, m->client_id, m->props, m->payload };
    for (size_t k = 0; k < 4; k++)
        for (uint32_t i = 0; i < parts[k].len; i++)
            out[at++] = parts[k].ptr[i];
    uint64_t sum = hash_bytes(out + 8, len - 8);
    for (uint32_t i = 0; i < 8; i++)
        out[i] = (uint8_t)(sum >> (8 * i));
}

/* An exact-size heap copy, so a read past a part's end is caught (make debug: ASan). */
static struct slice part_of(uint32_t len, uint8_t seed)
{
    uint8_t *p = malloc(len > 0 ? len : 1);
    cr_assert_not_null(p);
    for (uint32_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed + i * 7u + 1u);
    return (struct slice){ p, len };
}

Test(record, every_part_length_encodes_the_reference_bytes)
{
    /* Each part through every length the short copies distinguish (0, 1-3, 4-7, 8-16, over
     * 16) while the others take lengths that move it across alignments. */
    static const uint32_t others[] = { 0, 1, 3, 5, 8, 13, 16, 17 };
    uint8_t *want = buf_new(512);
    uint8_t *got = buf_new(512);
    for (uint32_t part = 0; part < 4; part++) {
        for (uint32_t n = 0; n <= 40; n++) {
            for (uint32_t o = 0; o < sizeof(others) / sizeof(others[0]); o++) {
                uint32_t lens[4] = { others[o], others[(o + 3) % 8], others[(o + 5) % 8],
                                     others[(o + 6) % 8] };
                lens[part] = n;
                struct slice s[4];
                for (uint32_t k = 0; k < 4; k++)
                    s[k] = part_of(lens[k], (uint8_t)(k * 50 + n));
                struct record_message m = {
                    .timestamp_ns = UINT64_C(0x0123456789ABCDEF) + n, .qos = (uint8_t)(n % 3),
                    .retain = (o & 1) != 0, .topic = s[0], .client_id = s[1], .props = s[2],
                    .payload = s[3], .packet_id = n % 3 == 2 ? (uint16_t)(n * 1000 + o) : 0,
                };
                uint32_t len = record_message_len(&m);
                encode_reference(&m, want);
                memset(got, 0xEE, 512);
                cr_assert_eq(record_encode_message_raw(&m, len, got), len);
                cr_assert_eq(memcmp(got, want, len), 0, "part %u len %u others %u", part, n, o);
                for (uint32_t i = len; i < 512; i++)
                    cr_assert_eq(got[i], 0xEE, "wrote past the record (part %u len %u)", part, n);
                memset(got, 0xEE, 512);
                cr_assert_eq(record_encode_message(&m, got), len);
                cr_assert_eq(memcmp(got, want, len), 0);
                struct record_header h;
                cr_assert_eq(record_verify(got, len, &h), RECORD_OK);
                for (uint32_t k = 0; k < 4; k++)
                    free((void *)s[k].ptr);
            }
        }
    }
    free(got);
    free(want);
}

Test(record, typed_records_round_trip)
{
    static const uint8_t body[] = "session 7: subscribe a/+/c qos 1";
    enum record_type types[] = { RECORD_SESSION, RECORD_CHECKPOINT };
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        for (uint32_t n = 0; n < sizeof(body); n++) {
            uint32_t len = record_body_len(n);
            cr_assert_eq(len, (RECORD_HEADER_LEN + n + 7) / 8 * 8);
            uint8_t *b = buf_new(len);
            cr_assert_eq(record_encode_typed(types[t], (struct slice){ body, n }, 0, b), len);
            struct record_header h;
            cr_assert_eq(record_verify(b, len, &h), RECORD_OK);
            cr_assert_eq(h.type, types[t]);
            struct slice got = record_body(b, &h);
            cr_assert(slice_eq(got, ((struct slice){ body, n })));
            for (uint32_t i = RECORD_HEADER_LEN + n; i < len; i++)
                cr_assert_eq(b[i], 0);
            struct record_message m;
            cr_assert_not(record_decode_message(b, &h, &m));
            free(b);
        }
    }
}

Test(record, pad_fills_exact_length)
{
    uint32_t lens[] = { RECORD_HEADER_LEN, 56, 4096, 4096 + 16, 1u << 20 };
    for (size_t i = 0; i < ARRAY_LEN(lens); i++) {
        uint8_t *b = buf_new(lens[i]);
        cr_assert_eq(record_encode_typed(RECORD_PAD, (struct slice){ NULL, 0 }, lens[i], b),
                     lens[i]);
        struct record_header h;
        cr_assert_eq(record_verify(b, lens[i], &h), RECORD_OK);
        cr_assert_eq(h.type, RECORD_PAD);
        cr_assert_eq(h.total_len, lens[i]);
        for (uint32_t j = RECORD_HEADER_LEN; j < lens[i]; j++)
            cr_assert_eq(b[j], 0);
        free(b);
    }
}

Test(record, pad_shorter_than_header_aborts, .signal = SIGABRT)
{
    uint8_t *b = buf_new(64);
    record_encode_typed(RECORD_PAD, (struct slice){ NULL, 0 }, 40, b);
}

/* A 200-byte message record. */
static uint32_t encode_200(uint8_t *b)
{
    static uint8_t payload[200];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i ^ 0x5A);
    struct record_message m = sample_message();
    uint32_t fixed = RECORD_HEADER_LEN + m.topic.len + m.client_id.len + m.props.len;
    m.payload = (struct slice){ payload, 200 - fixed };
    uint32_t len = record_encode_message(&m, b);
    cr_assert_eq(len, 200);
    return len;
}

Test(record, every_single_bit_flip_is_detected)
{
    uint8_t *orig = buf_new(256);
    uint8_t *b = buf_new(256);
    uint32_t len = encode_200(orig);
    for (uint32_t bit = 0; bit < len * 8; bit++) {
        memcpy(b, orig, len);
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        struct record_header h;
        enum record_check c = record_verify(b, len, &h);
        cr_assert(c == RECORD_CORRUPT || c == RECORD_TRUNCATED, "bit %u: check %d", bit, c);
    }
    free(b);
    free(orig);
}

Test(record, every_truncation_is_rejected)
{
    uint8_t *orig = buf_new(256);
    uint32_t len = encode_200(orig);
    for (uint32_t n = 0; n < len; n++) {
        /* A fresh allocation of exactly n bytes, so ASan catches any read past `avail`. */
        uint8_t *b = malloc(n + 1);
        memcpy(b, orig, n);
        struct record_header h;
        enum record_check c = record_verify(b, n, &h);
        cr_assert(c == RECORD_TRUNCATED || c == RECORD_CORRUPT, "len %u: check %d", n, c);
        free(b);
    }
    free(orig);
}

Test(record, zero_header_is_end)
{
    uint8_t *b = calloc(1, 4096);
    struct record_header h;
    cr_assert_eq(record_verify(b, 4096, &h), RECORD_END);
    cr_assert_eq(record_verify(b, RECORD_HEADER_LEN, &h), RECORD_END);
    b[RECORD_HEADER_LEN] = 1; /* bytes after the header do not matter */
    cr_assert_eq(record_verify(b, 4096, &h), RECORD_END);
    b[47] = 1;
    cr_assert_eq(record_verify(b, 4096, &h), RECORD_CORRUPT);
    free(b);
}

/* Rewrites the length field of `b` and reseals the checksum, so only the length is wrong. */
static void set_len_resealed(uint8_t *b, uint32_t total_len, uint32_t hashed_len)
{
    b[12] = (uint8_t)total_len;
    b[13] = (uint8_t)(total_len >> 8);
    b[14] = (uint8_t)(total_len >> 16);
    b[15] = (uint8_t)(total_len >> 24);
    uint64_t sum = hash_bytes(b + 8, hashed_len - 8);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(sum >> (8 * i));
}

Test(record, garbage_lengths_are_rejected)
{
    uint8_t *orig = buf_new(8192);
    uint8_t *b = buf_new(8192);
    memset(orig, 0, 8192);
    uint32_t len = encode_200(orig);
    uint32_t bad[] = { 0, 8, 40, 47, 199, 201, 204, 208, 4096, 0xFFFFFFF8u, RECORD_LEN_MAX + 8 };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        memcpy(b, orig, 8192);
        set_len_resealed(b, bad[i], MIN(MAX(bad[i], 48u), 8192u));
        struct record_header h;
        enum record_check c = record_verify(b, 8192, &h);
        cr_assert_eq(c, RECORD_CORRUPT, "total_len %u: check %d", bad[i], c);
    }
    /* A correct length with a buffer shorter than it: truncated. */
    memcpy(b, orig, len);
    struct record_header h;
    cr_assert_eq(record_verify(b, len - 8, &h), RECORD_TRUNCATED);
    free(b);
    free(orig);
}

Test(record, pad_with_huge_length_is_truncated_not_read)
{
    /* A sane PAD header claiming RECORD_LEN_MAX, in a 64-byte buffer: verify must not read
     * past 64 bytes (ASan) and reports truncation. */
    uint8_t *b = malloc(64);
    memset(b, 0, 64);
    uint8_t *full = buf_new(4096);
    record_encode_typed(RECORD_PAD, (struct slice){ NULL, 0 }, 4096, full);
    memcpy(b, full, 64);
    set_len_resealed(b, RECORD_LEN_MAX, 64);
    struct record_header h;
    cr_assert_eq(record_verify(b, 64, &h), RECORD_TRUNCATED);
    free(full);
    free(b);
}

Test(record, bad_fields_are_corrupt)
{
    uint8_t *orig = buf_new(256);
    uint8_t *b = buf_new(256);
    uint32_t len = encode_200(orig);
    struct {
        uint32_t off;
        uint8_t value;
    } cases[] = {
        { 8, 0x4C ^ 0xFF },   /* magic */
        { 10, 2 },            /* version */
        { 11, 0 },            /* type 0 */
        { 11, 5 },            /* type 5 */
        { 11, RECORD_PAD },   /* a message's parts under a PAD */
        { 24, 3 },            /* qos 3 */
        { 24, 0x08 },         /* unknown flag */
        { 25, 1 },            /* reserved */
        { 26, 0xFF },         /* topic_len: parts no longer add up */
        { 31, 1 },            /* packet_id on a QoS 1 message */
        { 39, 1 },            /* payload_len huge */
        { 41, 1 },            /* reserved3 */
        { 47, 1 },            /* reserved4 */
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        memcpy(b, orig, len);
        b[cases[i].off] = cases[i].value;
        set_len_resealed(b, len, len); /* a correct checksum: the field check must catch it */
        struct record_header h;
        cr_assert_eq(record_verify(b, len, &h), RECORD_CORRUPT, "case %zu", i);
    }
    free(b);
    free(orig);
}
