/* core/msg.h - an application message as the broker holds it in memory.
 *
 * A struct msg is one allocation: the header, then the topic, the publisher's client id, the
 * v5 property block that travels with the message (wire form, without topic alias or
 * subscription identifiers), and the payload. `props` is the decoded view of that block, its
 * slices pointing into the same allocation.
 *
 * Ownership: a msg belongs to the shard that created it and only that shard changes its
 * reference count or frees it. Another shard may read it (a read-only view) while it holds an
 * unconsumed notify entry for it; the owner drops its reference when it reclaims that entry
 * (core/spsc.h). A shard that must keep a message longer (a queued QoS 1/2 delivery, a
 * retained copy) clones it into a msg of its own.
 */
#ifndef KEELMQ_CORE_MSG_H
#define KEELMQ_CORE_MSG_H

#include "core/base.h"
#include "core/codec.h"

#define MSG_NOT_LOGGED UINT64_MAX

struct record_header;

struct msg {
    uint32_t refs;           /* owner shard only */
    uint32_t alloc_len;      /* bytes of this allocation, header included */
    uint8_t qos;
    bool retain;
    uint16_t origin_shard;   /* where it was published (orders retained updates) */
    uint16_t owner_shard;    /* whose memory it is: only that shard counts references */
    uint64_t time_ns;        /* wall-clock receive time: orders retained updates across shards */
    uint64_t log_off;        /* where its record starts in the origin shard's log, or
                              * MSG_NOT_LOGGED (not appended, or recovered) */
    uint32_t log_len;        /* the record's length (log_off + log_len: its end) */
    struct slice topic;
    struct slice client_id;  /* publisher (no-local, logs) */
    struct slice payload;
    struct mqtt_props props; /* travelling properties; slices point into this allocation */
    uint8_t data[];
};

/* Creates a message from a decoded PUBLISH (or will): copies the topic, payload, client id
 * and the travelling v5 properties out of `props_block` (the PUBLISH's wire-form property
 * block; empty on v3). Returns it with one reference, or NULL when out of memory. */
struct msg *msg_create(struct slice topic, struct slice payload, const struct mqtt_props *props,
                       struct slice client_id, uint8_t qos, bool retain, uint16_t origin_shard);

/* Rebuilds the message of a verified RECORD_MESSAGE at `p` (retained messages and held
 * wills at startup): its time is the record's, its log position unknown. Sets *out and returns
 * 0, -EBADMSG when the record is not a message this code understands (a bad topic or property
 * block: never trusted from disk), or -ENOMEM. */
int msg_from_record(const uint8_t *p, const struct record_header *h, uint16_t origin_shard,
                    struct msg **out);

/* Copies `src` (possibly another shard's, read-only) into a new msg owned by shard `owner`,
 * with one reference. NULL when out of memory. */
struct msg *msg_clone(const struct msg *src, uint16_t owner);

/* A reference to `m` that shard `self` may keep: a new reference if `self` owns it, else a
 * private copy. NULL when out of memory. */
struct msg *msg_keep(const struct msg *m, uint16_t self);

static inline struct msg *msg_ref(struct msg *m)
{
    ASSERT_HOT(m->refs > 0);
    m->refs++;
    return m;
}

/* Drops one reference; frees the message when it was the last. */
void msg_release(struct msg *m);

#endif
