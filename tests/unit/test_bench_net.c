/* tests/unit/test_bench_net.c - bench/bench_net's receive framing (bench_net_feed): frames
 * delivered whole and in order however the byte stream is split (inside the fixed header,
 * inside the body, many frames per chunk), large frames reassembled, and malformed or
 * oversized headers reported as a lost connection. No ring: the framer only needs the
 * callbacks.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_net.h"

TestSuite(bench_net);

#define STREAM_MAX 400000u
#define FRAMES_MAX 64u

struct seen {
    uint8_t stream[STREAM_MAX]; /* every frame delivered, concatenated */
    uint32_t stream_len;
    uint32_t frame_count;
    uint32_t frame_lens[FRAMES_MAX];
    int lost_res;
    bool is_lost;
};

static bool on_frame(void *ctx, struct bench_conn *c, const uint8_t *frame, uint32_t len)
{
    (void)c;
    struct seen *s = ctx;
    cr_assert_leq(s->stream_len + len, STREAM_MAX);
    cr_assert_lt(s->frame_count, FRAMES_MAX);
    memcpy(s->stream + s->stream_len, frame, len);
    s->stream_len += len;
    s->frame_lens[s->frame_count++] = len;
    return true;
}

static void on_event(void *ctx, struct bench_conn *c, enum bench_net_event event, int res)
{
    (void)c;
    struct seen *s = ctx;
    cr_assert_eq(event, BENCH_NET_LOST);
    s->is_lost = true;
    s->lost_res = res;
}

/* Appends a packet of type `type` with a body of `body_len` bytes (pattern bytes) to `out`. */
static uint32_t put_packet(uint8_t *out, uint8_t type, uint32_t body_len)
{
    uint32_t n = 0;
    out[n++] = (uint8_t)(type << 4);
    uint32_t v = body_len;
    do {
        uint8_t byte = v % 128;
        v /= 128;
        out[n++] = v > 0 ? (byte | 0x80) : byte;
    } while (v > 0);
    for (uint32_t i = 0; i < body_len; i++)
        out[n++] = (uint8_t)(i * 7 + body_len);
    return n;
}

static struct seen *seen;
static struct bench_net net;
static struct bench_conn conn;

static void setup(void)
{
    seen = calloc(1, sizeof(*seen));
    cr_assert_not_null(seen);
    memset(&net, 0, sizeof(net));
    memset(&conn, 0, sizeof(conn));
    net.on_frame = on_frame;
    net.on_event = on_event;
    net.ctx = seen;
}

static void teardown(void)
{
    free(conn.in.data);
    free(seen);
}

/* A stream of PINGRESP (2 bytes), PUBACK (4), a 200-byte body (2-byte length) and a
 * 20000-byte body (3-byte length): every header length but 4 and both small and large. */
static uint32_t make_stream(uint8_t *out, uint32_t *lens, uint32_t *count)
{
    const struct {
        uint8_t type;
        uint32_t body_len;
    } packets[] = { { 13, 0 }, { 4, 2 }, { 3, 200 }, { 3, 20000 }, { 13, 0 }, { 3, 127 },
                    { 3, 128 } };
    uint32_t n = 0;
    *count = 0;
    for (size_t i = 0; i < sizeof(packets) / sizeof(packets[0]); i++) {
        uint32_t len = put_packet(out + n, packets[i].type, packets[i].body_len);
        lens[(*count)++] = len;
        n += len;
    }
    return n;
}

static void expect_stream(const uint8_t *stream, uint32_t len, const uint32_t *lens,
                          uint32_t count)
{
    cr_assert_not(seen->is_lost);
    cr_assert_eq(seen->frame_count, count);
    for (uint32_t i = 0; i < count; i++)
        cr_assert_eq(seen->frame_lens[i], lens[i], "frame %u", i);
    cr_assert_eq(seen->stream_len, len);
    cr_assert_arr_eq(seen->stream, stream, len);
    cr_assert_eq(conn.in.len, 0, "nothing may stay buffered");
}

Test(bench_net, whole_stream_at_once, .init = setup, .fini = teardown)
{
    static uint8_t stream[30000];
    uint32_t lens[16], count;
    uint32_t len = make_stream(stream, lens, &count);
    bench_net_feed(&net, &conn, stream, len);
    expect_stream(stream, len, lens, count);
}

Test(bench_net, every_split_point, .init = setup, .fini = teardown)
{
    static uint8_t stream[30000];
    uint32_t lens[16], count;
    uint32_t len = make_stream(stream, lens, &count);
    for (uint32_t cut = 1; cut < len; cut += (cut < 400 || cut > len - 400) ? 1 : 97) {
        memset(seen, 0, sizeof(*seen));
        bench_net_feed(&net, &conn, stream, cut);
        bench_net_feed(&net, &conn, stream + cut, len - cut);
        expect_stream(stream, len, lens, count);
    }
}

Test(bench_net, byte_by_byte, .init = setup, .fini = teardown)
{
    static uint8_t stream[30000];
    uint32_t lens[16], count;
    uint32_t len = make_stream(stream, lens, &count);
    for (uint32_t i = 0; i < len; i++)
        bench_net_feed(&net, &conn, stream + i, 1);
    expect_stream(stream, len, lens, count);
}

Test(bench_net, chunks_like_receive_buffers, .init = setup, .fini = teardown)
{
    /* Ten 100 kB frames through 16 kB chunks: each frame spans seven buffers. */
    uint8_t *stream = malloc(STREAM_MAX);
    cr_assert_not_null(stream);
    uint32_t lens[16], len = 0;
    for (uint32_t i = 0; i < 3; i++) {
        lens[i] = put_packet(stream + len, 3, 100000 + i);
        len += lens[i];
    }
    for (uint32_t off = 0; off < len; off += BENCH_NET_RX_BUFFER_SIZE)
        bench_net_feed(&net, &conn, stream + off, MIN(BENCH_NET_RX_BUFFER_SIZE, len - off));
    expect_stream(stream, len, lens, 3);
    free(stream);
}

Test(bench_net, malformed_header_is_lost, .init = setup, .fini = teardown)
{
    /* A remaining length with five continuation bytes. */
    const uint8_t bad[] = { 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 };
    bench_net_feed(&net, &conn, bad, sizeof(bad));
    cr_expect(seen->is_lost);
    cr_expect_eq(seen->lost_res, -EBADMSG);
    cr_expect_eq(seen->frame_count, 0);
}

Test(bench_net, oversized_frame_is_lost_before_its_body, .init = setup, .fini = teardown)
{
    /* PUBLISH announcing 268435455 bytes (the varint maximum): refused from the header. */
    const uint8_t big[] = { 0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x01 };
    bench_net_feed(&net, &conn, big, 3); /* header split too */
    cr_expect_not(seen->is_lost);
    bench_net_feed(&net, &conn, big + 3, sizeof(big) - 3);
    cr_expect(seen->is_lost);
    cr_expect_eq(seen->lost_res, -EBADMSG);
    cr_expect_leq(conn.in.cap, 256, "no body may be buffered");
}
