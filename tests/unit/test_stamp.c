/* tests/unit/test_stamp.c - bench/stamp: round trips at the field limits, the byte layout, and
 * rejection of short, corrupted and foreign-magic stamps.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>

#include "bench/stamp.h"

TestSuite(stamp);

static void expect_round_trip(struct stamp in)
{
    uint8_t buf[STAMP_LEN + 4];
    memset(buf, 0xEE, sizeof(buf));
    stamp_encode(&in, buf);
    cr_expect_eq(buf[STAMP_LEN], 0xEE, "wrote past the stamp");
    struct stamp out;
    cr_assert(stamp_decode(buf, STAMP_LEN, &out));
    cr_expect_eq(out.run_id, in.run_id);
    cr_expect_eq(out.publisher_idx, in.publisher_idx);
    cr_expect_eq(out.seq, in.seq);
    cr_expect_eq(out.send_ns, in.send_ns & ~((1ull << STAMP_TIME_SHIFT) - 1));
}

Test(stamp, round_trip_typical)
{
    expect_round_trip((struct stamp){ .run_id = 7, .publisher_idx = 12, .seq = 34,
                                      .send_ns = 5600000000ull });
}

Test(stamp, round_trip_limits)
{
    expect_round_trip((struct stamp){ .run_id = 1, .publisher_idx = 0, .seq = 0, .send_ns = 0 });
    expect_round_trip((struct stamp){ .run_id = 255, .publisher_idx = STAMP_PUBLISHER_MAX,
                                      .seq = STAMP_SEQ_MAX, .send_ns = STAMP_TIME_MAX });
    expect_round_trip((struct stamp){ .run_id = 128, .publisher_idx = 1u << 16,
                                      .seq = 1ull << 32, .send_ns = 31 });
}

Test(stamp, layout_is_little_endian)
{
    uint8_t buf[STAMP_LEN];
    struct stamp s = { .run_id = 0x42, .publisher_idx = 0x030201, .seq = 0x0504030201ull,
                       .send_ns = 0x0102030405ull << STAMP_TIME_SHIFT };
    stamp_encode(&s, buf);
    const uint8_t want[] = {
        STAMP_MAGIC, 0x42,            /* magic, run id */
        0x01, 0x02, 0x03,             /* publisher */
        0x01, 0x02, 0x03, 0x04, 0x05, /* sequence */
        0x05, 0x04, 0x03, 0x02, 0x01, /* time in 32 ns units */
    };
    cr_expect_eq(buf[0], want[0]);
    cr_expect_eq(buf[1], want[1]);
    cr_expect_arr_eq(buf + 3, want + 2, sizeof(want) - 2);
}

/* The reference CRC-8 (polynomial 0x07, initial 0), bit by bit. */
static uint8_t reference_crc8(const uint8_t *p, uint32_t len, uint32_t skip_idx)
{
    uint8_t crc = 0;
    for (uint32_t i = 0; i < len; i++) {
        if (i == skip_idx)
            continue;
        crc ^= p[i];
        for (int bit = 0; bit < 8; bit++)
            crc = (uint8_t)(crc & 0x80 ? (unsigned)crc << 1 ^ 0x07 : (unsigned)crc << 1);
    }
    return crc;
}

Test(stamp, checksum_is_crc8_over_the_other_bytes)
{
    const uint8_t check[] = "123456789";
    cr_expect_eq(reference_crc8(check, 9, 99), 0xF4); /* the published CRC-8 check value */
    for (uint32_t seq = 0; seq < 1000; seq++) {
        uint8_t buf[STAMP_LEN];
        struct stamp s = { .run_id = (uint8_t)(1 + seq % 255), .publisher_idx = seq * 7,
                           .seq = seq * 1000003ull, .send_ns = seq * 123456789ull };
        stamp_encode(&s, buf);
        cr_assert_eq(buf[2], reference_crc8(buf, STAMP_LEN, 2), "seq %u", seq);
    }
}

Test(stamp, longer_payload_is_accepted)
{
    uint8_t buf[1024] = { 0 };
    struct stamp s = { .run_id = 3, .publisher_idx = 9, .seq = 99, .send_ns = 999 * 32 };
    stamp_encode(&s, buf);
    struct stamp out;
    cr_expect(stamp_decode(buf, sizeof(buf), &out));
    cr_expect_eq(out.seq, 99);
}

Test(stamp, short_payload_is_rejected)
{
    uint8_t buf[STAMP_LEN];
    struct stamp s = { .run_id = 3, .publisher_idx = 1, .seq = 2, .send_ns = 3 };
    stamp_encode(&s, buf);
    struct stamp out;
    for (uint32_t len = 0; len < STAMP_LEN; len++)
        cr_expect_not(stamp_decode(buf, len, &out), "accepted %u bytes", len);
}

Test(stamp, every_single_byte_corruption_is_rejected)
{
    uint8_t good[STAMP_LEN];
    struct stamp s = { .run_id = 77, .publisher_idx = 4321, .seq = 987654321, .send_ns = 1ull << 36 };
    stamp_encode(&s, good);
    for (uint32_t i = 0; i < STAMP_LEN; i++) {
        for (uint32_t flip = 1; flip < 256; flip++) {
            uint8_t bad[STAMP_LEN];
            memcpy(bad, good, sizeof(bad));
            bad[i] ^= (uint8_t)flip;
            struct stamp out;
            cr_assert_not(stamp_decode(bad, STAMP_LEN, &out), "byte %u ^ 0x%02x accepted", i,
                          flip);
        }
    }
}

Test(stamp, zero_payload_is_rejected)
{
    uint8_t zeros[64] = { 0 };
    struct stamp out;
    cr_expect_not(stamp_decode(zeros, sizeof(zeros), &out));
}

Test(stamp, sequence_past_limit_asserts, .signal = SIGABRT)
{
    uint8_t buf[STAMP_LEN];
    struct stamp s = { .run_id = 1, .seq = STAMP_SEQ_MAX + 1 };
    stamp_encode(&s, buf);
}

Test(stamp, zero_run_id_asserts, .signal = SIGABRT)
{
    uint8_t buf[STAMP_LEN];
    struct stamp s = { .run_id = 0 };
    stamp_encode(&s, buf);
}
