/* tests/fuzz/fuzz_codec.c - libFuzzer target for core/codec: framing, decoding, re-encoding.
 *
 * Each input is framed and decoded as a packet of every protocol version. A packet that decodes
 * must re-encode (codec_size != 0), the encoding must decode again, and encoding that second
 * decode must give the same bytes (encode(decode(encode(x))) == encode(x)).
 * Build: clang -g -O1 -fsanitize=fuzzer,address -D_GNU_SOURCE -I. tests/fuzz/fuzz_codec.c \
 *        core/codec*.c core/base.c
 * Run:   ./a.out tests/fuzz/corpus_codec
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"

#define FUZZ_SUB_IDS_MAX 4096u

static uint32_t fuzz_sub_ids[FUZZ_SUB_IDS_MAX];

/* Prepares a decoded property set for encoding: user properties from the block, and every
 * subscription identifier. Returns false if there are too many to hold. */
static bool fuzz_props_prepare(struct mqtt_props *p, uint32_t *sub_id_used)
{
    p->user_props_raw = p->raw;
    if (p->sub_id_count <= 1)
        return true;
    if (*sub_id_used + p->sub_id_count > FUZZ_SUB_IDS_MAX)
        return false;
    uint32_t *ids = fuzz_sub_ids + *sub_id_used;
    uint32_t count = 0, pos = 0;
    uint8_t id;
    struct slice value, value2;
    while (codec_prop_next(p->raw, &pos, &id, &value, &value2)) {
        if (id != MQTT_PROP_SUBSCRIPTION_ID)
            continue;
        uint32_t v = 0;
        for (uint32_t i = 0; i < value.len; i++)
            v |= (uint32_t)(value.ptr[i] & 0x7F) << (7 * i);
        ids[count++] = v;
    }
    if (count != p->sub_id_count)
        abort();
    p->sub_ids = ids;
    *sub_id_used += count;
    return true;
}

static bool fuzz_prepare(struct mqtt_packet *pkt)
{
    uint32_t used = 0;
    switch (pkt->type) {
    case MQTT_CONNECT:
        return fuzz_props_prepare(&pkt->connect.props, &used) &&
               fuzz_props_prepare(&pkt->connect.will.props, &used);
    case MQTT_CONNACK:
        return fuzz_props_prepare(&pkt->connack.props, &used);
    case MQTT_PUBLISH:
        return fuzz_props_prepare(&pkt->publish.props, &used);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return fuzz_props_prepare(&pkt->ack.props, &used);
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return fuzz_props_prepare(&pkt->subscribe.props, &used);
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        return fuzz_props_prepare(&pkt->suback.props, &used);
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        return fuzz_props_prepare(&pkt->reason.props, &used);
    default:
        return true;
    }
}

static void fuzz_round_trip(struct mqtt_packet *pkt, uint8_t version)
{
    if (!fuzz_prepare(pkt))
        return;
    uint8_t enc_version = pkt->type == MQTT_CONNECT ? pkt->connect.version : version;
    uint32_t size = codec_size(pkt, enc_version);
    if (size == 0) {
        fprintf(stderr, "decoded packet type %u v%u cannot be encoded\n", pkt->type, version);
        abort();
    }
    uint8_t *first = malloc(size);
    if (codec_encode(pkt, enc_version, first) != size)
        abort();
    struct mqtt_packet again;
    enum mqtt_rc rc = codec_decode(first, size, enc_version, &again);
    if (rc != MQTT_RC_SUCCESS || again.type != pkt->type) {
        fprintf(stderr, "re-decode failed rc=0x%02x type %u v%u\n", rc, pkt->type, version);
        abort();
    }
    if (!fuzz_prepare(&again))
        abort();
    uint32_t size2 = codec_size(&again, enc_version);
    uint8_t *second = malloc(size2 > 0 ? size2 : 1);
    if (size2 != size || codec_encode(&again, enc_version, second) != size ||
        memcmp(first, second, size) != 0) {
        fprintf(stderr, "re-encode differs type %u v%u\n", pkt->type, version);
        abort();
    }
    free(second);
    free(first);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > UINT32_MAX)
        return 0;
    static const uint8_t versions[] = { 0, MQTT_V31, MQTT_V311, MQTT_V5 };
    for (size_t v = 0; v < sizeof(versions); v++) {
        uint32_t frame_len = 0;
        int header_len = codec_frame(data, (uint32_t)size, &frame_len);
        if (header_len <= 0 || frame_len > size)
            continue;
        /* Copy to an exact-size heap buffer so ASan sees any read past the frame. */
        uint8_t *frame = malloc(frame_len);
        memcpy(frame, data, frame_len);
        struct mqtt_packet pkt;
        if (codec_decode(frame, frame_len, versions[v], &pkt) == MQTT_RC_SUCCESS)
            fuzz_round_trip(&pkt, versions[v]);
        free(frame);
    }
    return 0;
}
