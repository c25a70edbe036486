/* store/journal.h - the body of RECORD_SESSION records: the durable session journal's codec.
 *
 * Every change to a persistent MQTT session's state is appended to the commit log as one
 * RECORD_SESSION record (store/record.h) whose body is one journal entry. At startup the log is
 * replayed and the entries rebuild the sessions. This module only encodes and decodes bodies:
 * no I/O, no allocation, no session logic, no state. Pure functions over caller memory; any
 * thread.
 *
 * All integers are little-endian. The layout is pinned by static asserts in store/journal.c.
 * A body is a 16-byte common header, the client id, then the fields of its kind:
 *
 *   off  size  field
 *     0     1  kind            enum journal_kind
 *     1     1  format          JOURNAL_FORMAT
 *     2     2  client_id_len   0..65535
 *     4     4  reserved        0
 *     8     8  time_ns         wall clock of the change (typed records carry timestamp 0)
 *    16     n  client_id       n = client_id_len bytes, no padding after it
 *
 * The kind's fields follow at offset 16 + client_id_len (offsets below are relative to that
 * point). They are not aligned in memory; the codec reads them with byte loads.
 *
 *   JOURNAL_STATE (JOURNAL_STATE_LEN = 20 bytes, then the subscriptions):
 *     0     1  mqtt_version    3, 4 or 5
 *     1     1  reserved        0
 *     2     2  reserved        0
 *     4     4  expiry_s        session expiry interval; UINT32_MAX = never expires
 *     8     4  sub_count       0..JOURNAL_SUBS_MAX
 *    12     8  since_ns        wall time the session started; catch-up skips records older
 *                              than it (any value)
 *    20        sub_count subscriptions, back to back, each:
 *                0  2  filter_len  1..65535
 *                2  1  options     MQTT subscription options byte (see journal_options_are_valid)
 *                3  1  reserved    0
 *                4  4  sub_id      v5 subscription identifier: 0 = none, else 1..JOURNAL_SUB_ID_MAX
 *                8  n  filter      n = filter_len bytes
 *              8+n  p  padding     zero; p = (4 - n % 4) % 4, so every subscription takes
 *                                  JOURNAL_SUB_LEN + n + p bytes, a multiple of 4
 *
 *   JOURNAL_CURSOR (JOURNAL_CURSOR_LEN = 4 bytes, then the positions):
 *     0     2  shard_count     1..JOURNAL_SHARDS_MAX
 *     2     2  reserved        0
 *     4  16*k  { u64 pos0; u64 pos1; } per shard, shard 0 first (opaque log offsets)
 *
 *   JOURNAL_END (0 bytes): the session ended.
 *
 *   JOURNAL_REL (JOURNAL_REL_LEN = 4 bytes): an inbound QoS 2 packet id was released (PUBREL).
 *     0     2  packet_id       1..65535
 *     2     2  reserved        0
 *
 *   JOURNAL_OUT (JOURNAL_OUT_LEN = 16 bytes): outbound QoS 2 delivery state.
 *     0     2  packet_id       1..65535
 *     2     1  state           enum journal_out_state
 *     3     1  reserved        0
 *     4     2  origin_shard    0..JOURNAL_SHARDS_MAX - 1
 *     6     2  reserved        0
 *     8     8  log_off         offset of the message in origin_shard's log
 *
 *   JOURNAL_WILL (JOURNAL_WILL_LEN = 16 bytes, then the message): the will the session holds
 *   while offline, waiting for its Will Delay Interval; record_len 0 says it holds none any
 *   more (published, or cancelled by a reconnect).
 *     0     4  record_len      0, or the length of the record that follows (a multiple of 8)
 *     4     4  delay_s         the will's Will Delay Interval (for the log line)
 *     8     8  due_ns          wall time the will is due (any value)
 *    16     n  record          n = record_len: the will message as one complete
 *                              RECORD_MESSAGE (store/record.h), its own checksum included
 *
 * The format is strict: a body's length must equal exactly what its fields add up to, and
 * reserved fields and padding must be zero. So every byte of a valid body is determined by its
 * fields, and re-encoding a decoded entry reproduces the body byte for byte. A change to the
 * layout bumps JOURNAL_FORMAT.
 */
#ifndef KEELMQ_STORE_JOURNAL_H
#define KEELMQ_STORE_JOURNAL_H

#include "core/base.h"
#include "store/record.h"

#define JOURNAL_FORMAT 1u
#define JOURNAL_SUBS_MAX 65535u    /* subscriptions in one STATE */
#define JOURNAL_SHARDS_MAX 256u
#define JOURNAL_SUB_ID_MAX 268435455u /* largest MQTT v5 subscription identifier (varint max) */
/* A body must fit in one record (store/record.h); a STATE can exceed this (65535 filters of
 * 65535 bytes), so the session layer checks journal_fits() before encoding one. */
#define JOURNAL_BODY_MAX (RECORD_LEN_MAX - RECORD_HEADER_LEN)

/* Fixed part lengths (see the table above). */
#define JOURNAL_HEADER_LEN 16u
#define JOURNAL_STATE_LEN 20u  /* before the subscriptions */
#define JOURNAL_SUB_LEN 8u     /* one subscription before its filter */
#define JOURNAL_CURSOR_LEN 4u  /* before the positions */
#define JOURNAL_POS_LEN 16u    /* one shard's (pos0, pos1) */
#define JOURNAL_REL_LEN 4u
#define JOURNAL_OUT_LEN 16u
#define JOURNAL_WILL_LEN 16u   /* before the record */

enum journal_kind {
    JOURNAL_STATE = 1,  /* the complete configuration; replaces any earlier STATE of the client */
    JOURNAL_CURSOR = 2, /* the session's read positions in every shard's log */
    JOURNAL_END = 3,    /* the session ended */
    JOURNAL_REL = 4,    /* an inbound QoS 2 packet id was released (PUBREL) */
    JOURNAL_OUT = 5,    /* outbound QoS 2 delivery state */
    JOURNAL_WILL = 6,   /* the will held while offline, or none */
};

enum journal_out_state {
    JOURNAL_OUT_SENT = 0,      /* PUBLISH sent, waiting for PUBREC */
    JOURNAL_OUT_PUBREC = 1,    /* PUBREC received, PUBREL sent, waiting for PUBCOMP */
    JOURNAL_OUT_COMPLETED = 2, /* PUBCOMP received: the packet id is free */
};

struct journal_sub {
    struct slice filter;      /* 1..65535 bytes */
    uint8_t options;
    uint32_t sub_id;          /* 0 = none */
};

struct journal_pos {
    uint64_t pos0;
    uint64_t pos1;
};

/* What one body says. Slices borrow from the encoder's inputs or the decoded body. */
struct journal_entry {
    uint8_t kind;                  /* enum journal_kind */
    uint64_t time_ns;
    struct slice client_id;
    /* STATE */
    uint8_t mqtt_version; uint32_t expiry_s; uint64_t since_ns; uint32_t sub_count;
    const struct journal_sub *subs;    /* encode: sub_count entries; decode: NULL, use
                                        * journal_sub_next */
    struct slice subs_raw;             /* decode: the encoded subscriptions, for journal_sub_next */
    /* CURSOR */
    uint16_t shard_count;
    const struct journal_pos *pos;     /* encode: shard_count entries; decode: NULL, use
                                        * journal_pos_at */
    struct slice pos_raw;              /* decode: the encoded positions, for journal_pos_at */
    /* REL, OUT */
    uint16_t packet_id;
    /* OUT */
    uint8_t out_state; uint16_t origin_shard; uint64_t log_off; /* out_state: journal_out_state */
    /* WILL */
    uint32_t will_delay_s; uint64_t will_due_ns;
    struct slice will_record;          /* a complete RECORD_MESSAGE, or empty: no will */
};

/* True if `options` is a subscription options byte MQTT allows: QoS (bits 0-1) and retain
 * handling (bits 4-5) at most 2, bits 6-7 zero. */
static inline bool journal_options_are_valid(uint8_t options)
{
    return (options & 0x03u) != 0x03u && (options & 0x30u) != 0x30u && (options & 0xC0u) == 0;
}

/* True if the body of `e` is at most JOURNAL_BODY_MAX bytes, so journal_body_len() and
 * journal_encode() accept it. Only a STATE with many long filters can fail; the session layer
 * treats that as an operating error (refuse the change), not a crash. Borrows `e`. */
bool journal_fits(const struct journal_entry *e);

/* Bytes journal_encode writes for `e`. `e` must be valid (the decoder's rules, checked by
 * ASSERT) and journal_fits(). Only the fields of e->kind are read. Borrows `e`. */
uint32_t journal_body_len(const struct journal_entry *e);

/* Writes the body of `e` at `out` (journal_body_len(e) bytes, any alignment), reserved fields
 * and padding zero. Returns the length written. Borrows `e`; writes only `out`. */
uint32_t journal_encode(const struct journal_entry *e, uint8_t *out);

/* Decodes a body (from record_body()). Returns 0 or -EBADMSG for anything malformed: unknown
 * kind or format, lengths that do not add up (exactly: trailing bytes are an error too),
 * sub_count above JOURNAL_SUBS_MAX, shard_count of 0 or above JOURNAL_SHARDS_MAX, a filter_len
 * of 0, a field out of its range in the table above (mqtt_version, options, sub_id, packet_id
 * 0, out state, origin_shard), a WILL whose record does not verify as one RECORD_MESSAGE of
 * exactly record_len bytes, or nonzero reserved bytes or padding. Never reads outside
 * `body`. On success fills every field of *out (those of other kinds zero); its slices borrow
 * from `body`, and subs/pos are NULL (use journal_sub_next/journal_pos_at). On failure *out
 * is untouched. */
int journal_decode(struct slice body, struct journal_entry *out);

/* Iterates the subscriptions of a decoded STATE: *pos (a byte offset into e->subs_raw) starts
 * at 0; returns false at the end. out->filter borrows from the decoded body. */
bool journal_sub_next(const struct journal_entry *e, uint32_t *pos, struct journal_sub *out);

/* The i-th (pos0, pos1) of a decoded CURSOR (i < shard_count). */
struct journal_pos journal_pos_at(const struct journal_entry *e, uint16_t i);

#endif
