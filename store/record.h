/* store/record.h - the commit log's record format: encode, verify, decode.
 *
 * Pure functions over caller memory; any thread. The layout is documented in docs/storage.md
 * and pinned by static asserts in store/record.c. All integers are little-endian.
 *
 * A record is a 48-byte header, then the body (topic, publisher client id, the v5 property
 * block that travels with the message, payload; or a typed body for non-message records),
 * then zero padding to a multiple of RECORD_ALIGN. `checksum` is xxh3-64 of every byte of the
 * record after the checksum field (header fields included, padding included), so a flipped bit
 * anywhere, a torn write or a wrong length is detected. A header of all zero bytes (the
 * preallocated, never-written part of a segment) marks the end of the log.
 *
 * Records never span segments. RECORD_PAD fills the rest of a 4 KiB block when a batch is
 * closed (durable data is never rewritten, so a torn write can only hit the newest batch) or
 * the rest of a segment when the next record does not fit. A PAD is at least RECORD_HEADER_LEN
 * bytes: a shorter gap is padded to the following block boundary, or, at a segment's end, left
 * zero (the scan accepts a zero tail shorter than a header there). See docs/storage.md.
 */
#ifndef KEELMQ_STORE_RECORD_H
#define KEELMQ_STORE_RECORD_H

#include "core/base.h"

#define RECORD_ALIGN 8u
#define RECORD_HEADER_LEN 48u
#define RECORD_BLOCK 4096u          /* O_DIRECT write unit and batch alignment */
#define RECORD_MAGIC 0x4B4Cu        /* "KL" */
#define RECORD_VERSION 1u
/* > mqtt.max_packet_size's range (up to 268435460) plus the header and the publisher's client
 * id, which the PUBLISH packet does not carry: 272 MiB. */
#define RECORD_LEN_MAX ((256u << 20) + (16u << 20))

enum record_type {
    RECORD_PAD = 1,        /* filler: body is zeros */
    RECORD_MESSAGE = 2,    /* an application message */
    RECORD_SESSION = 3,    /* session state change: body format owned by the session journal */
    RECORD_CHECKPOINT = 4, /* index checkpoint marker: body owned by the index */
};

/* Flags of a RECORD_MESSAGE. */
#define RECORD_FLAG_QOS_MASK 0x03u
#define RECORD_FLAG_RETAIN 0x04u

/* The decoded header. */
struct record_header {
    uint64_t checksum;
    uint16_t magic;
    uint8_t version;
    uint8_t type;            /* enum record_type */
    uint32_t total_len;      /* header + body + padding, a multiple of RECORD_ALIGN */
    uint64_t timestamp_ns;   /* wall clock when appended */
    uint8_t flags;
    uint8_t reserved;
    uint16_t topic_len;
    uint16_t client_id_len;
    uint16_t packet_id;      /* MESSAGE: the inbound packet id of a QoS 2 PUBLISH, else 0 */
    uint32_t props_len;
    uint32_t payload_len;    /* for RECORD_SESSION/CHECKPOINT: the typed body's length */
    uint32_t reserved3;
};

/* The parts of a RECORD_MESSAGE (slices borrow from the caller / the record). */
struct record_message {
    uint64_t timestamp_ns;
    uint8_t qos;
    bool retain;
    struct slice topic;
    struct slice client_id;
    struct slice props;      /* wire-form v5 property block that travels; may be empty */
    struct slice payload;
    uint16_t packet_id;      /* QoS 2: the publisher's packet id (restores its pending ids) */
};

/* Bytes a record with these body parts takes, padding included. Inline: the commit log
 * computes it for every logged message. */
static inline uint32_t record_message_len(const struct record_message *m)
{
    ASSERT(m->topic.len <= UINT16_MAX);
    ASSERT(m->client_id.len <= UINT16_MAX);
    /* In 64 bits, so no sum of 32-bit parts can wrap. */
    uint64_t raw = (uint64_t)RECORD_HEADER_LEN + m->topic.len + m->client_id.len + m->props.len +
                   m->payload.len;
    uint64_t len = (raw + RECORD_ALIGN - 1) & ~(uint64_t)(RECORD_ALIGN - 1);
    ASSERT(len <= RECORD_LEN_MAX);
    return (uint32_t)len;
}
uint32_t record_body_len(uint32_t body_len); /* SESSION/CHECKPOINT/PAD with a typed body */

/* Writes a RECORD_MESSAGE at `out` (record_message_len() bytes, 8-byte aligned). Returns the
 * length written. */
uint32_t record_encode_message(const struct record_message *m, uint8_t *out);

/* record_encode_message for a caller that already has `total_len` = record_message_len(m)
 * (the commit log computes it to reserve room): skips computing it again. The hot path of
 * every logged message; writes exactly the same bytes. */
uint32_t record_encode_message_raw(const struct record_message *m, uint32_t total_len,
                                   uint8_t *out);

/* Writes a record of `type` with body `body` at `out` (record_body_len(body.len) bytes).
 * For RECORD_PAD, `total_len` >= RECORD_HEADER_LEN gives the exact length to fill and `body`
 * must be empty; for the other types `total_len` is 0 or record_body_len(body.len). Typed
 * records carry timestamp_ns 0 (encoding stays pure). Returns the length written. */
uint32_t record_encode_typed(enum record_type type, struct slice body, uint32_t total_len,
                             uint8_t *out);

enum record_check {
    RECORD_OK = 0,
    RECORD_END = 1,          /* all-zero header: nothing was ever written here */
    RECORD_TRUNCATED = 2,    /* fewer than total_len bytes available */
    RECORD_CORRUPT = 3,      /* bad magic/version/type/length/checksum */
};

/* Checks the record at `p` with `avail` readable bytes. On RECORD_OK fills *h. Never reads
 * outside [p, p + avail). */
enum record_check record_verify(const uint8_t *p, uint32_t avail, struct record_header *h);

/* Decodes a verified RECORD_MESSAGE. Returns false if its parts do not add up (never after a
 * successful verify of a record this code wrote). */
bool record_decode_message(const uint8_t *p, const struct record_header *h,
                           struct record_message *out);

/* The typed body of a verified SESSION/CHECKPOINT record. */
struct slice record_body(const uint8_t *p, const struct record_header *h);

#endif
