/* core/codec_props.h - internal to the codec: byte reader and writer, MQTT 5.0 property blocks.
 *
 * Included only by core/codec.c and core/codec_props.c; everything else uses core/codec.h.
 * The reader never reads outside [ptr, ptr + len). The writer counts without writing when its
 * `out` is NULL, so the same code computes codec_size() and performs codec_encode().
 * Pure functions: any thread.
 */
#ifndef KEELMQ_CORE_CODEC_PROPS_H
#define KEELMQ_CORE_CODEC_PROPS_H

#include "core/codec.h"

/* Which packet a property block belongs to: decides the allowed property identifiers. */
enum codec_props_ctx {
    CODEC_PROPS_CONNECT,
    CODEC_PROPS_WILL,
    CODEC_PROPS_CONNACK,
    CODEC_PROPS_PUBLISH,
    CODEC_PROPS_ACK, /* PUBACK, PUBREC, PUBREL, PUBCOMP */
    CODEC_PROPS_SUBSCRIBE,
    CODEC_PROPS_SUBACK,
    CODEC_PROPS_UNSUBSCRIBE,
    CODEC_PROPS_UNSUBACK,
    CODEC_PROPS_DISCONNECT,
    CODEC_PROPS_AUTH,
    CODEC_PROPS_CTX_COUNT,
};

#define CODEC_STRING_LEN_MAX 65535u

/* A cursor over borrowed bytes. Every read checks the bounds and returns false when short. */
struct codec_reader {
    const uint8_t *ptr;
    uint32_t len;
    uint32_t pos;
};

static inline uint32_t codec_reader_left(const struct codec_reader *r)
{
    return r->len - r->pos;
}

static inline bool codec_read_u8(struct codec_reader *r, uint8_t *value)
{
    if (codec_reader_left(r) < 1)
        return false;
    *value = r->ptr[r->pos++];
    return true;
}

static inline bool codec_read_u16(struct codec_reader *r, uint16_t *value)
{
    if (codec_reader_left(r) < 2)
        return false;
    *value = (uint16_t)((uint16_t)r->ptr[r->pos] << 8 | r->ptr[r->pos + 1]);
    r->pos += 2;
    return true;
}

static inline bool codec_read_u32(struct codec_reader *r, uint32_t *value)
{
    if (codec_reader_left(r) < 4)
        return false;
    const uint8_t *p = r->ptr + r->pos;
    *value = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    r->pos += 4;
    return true;
}

/* Reads `n` bytes as a slice borrowing from the reader's memory. */
static inline bool codec_read_bytes(struct codec_reader *r, uint32_t n, struct slice *out)
{
    if (codec_reader_left(r) < n)
        return false;
    *out = (struct slice){ r->ptr + r->pos, n };
    r->pos += n;
    return true;
}

/* Reads a two-byte length prefix and that many bytes (binary data or an unchecked string). */
static inline bool codec_read_binary(struct codec_reader *r, struct slice *out)
{
    uint16_t n;
    return codec_read_u16(r, &n) && codec_read_bytes(r, n, out);
}

/* Reads a Variable Byte Integer of at most 4 bytes. Non-minimal encodings are accepted (see
 * docs/protocol-errors.md); a fifth byte or a short buffer returns false. */
bool codec_read_varint(struct codec_reader *r, uint32_t *value);

/* Output cursor. `out` NULL counts only. `pos` is 64-bit so that adding slice lengths cannot
 * wrap; `failed` is set when something cannot be encoded (a string over 65535 bytes...). */
struct codec_writer {
    uint8_t *out;
    uint64_t pos;
    bool failed;
};

void codec_write_u8(struct codec_writer *w, uint8_t value);
void codec_write_u16(struct codec_writer *w, uint16_t value);
void codec_write_u32(struct codec_writer *w, uint32_t value);
void codec_write_varint(struct codec_writer *w, uint32_t value);
void codec_write_bytes(struct codec_writer *w, struct slice s);
/* Two-byte length prefix then the bytes; fails the writer past CODEC_STRING_LEN_MAX. */
void codec_write_binary(struct codec_writer *w, struct slice s);

/* Decodes a property block (length varint and properties) at the reader into `out`, which the
 * caller zeroed. Returns MQTT_RC_SUCCESS, MQTT_RC_MALFORMED or MQTT_RC_PROTOCOL_ERROR.
 * Borrows: the slices in `out` point into the reader's memory. */
enum mqtt_rc codec_props_decode(struct codec_reader *r, enum codec_props_ctx ctx,
                                struct mqtt_props *out);

/* The same for a block without its length prefix (as kept in mqtt_props.raw). */
enum mqtt_rc codec_props_decode_block(struct slice block, enum codec_props_ctx ctx,
                                      struct mqtt_props *out);

/* True if `p` would write no byte besides a zero property length. */
bool codec_props_is_empty(const struct mqtt_props *p);

/* Writes the property block (length varint and properties) of `p` for `ctx`. Fails the writer
 * when `p` holds a property not allowed in `ctx` or a value the decoder would refuse. */
void codec_props_write(struct codec_writer *w, const struct mqtt_props *p,
                       enum codec_props_ctx ctx);

/* True if `s` contains '+' or '#'. */
bool codec_has_wildcard(struct slice s);

#endif
