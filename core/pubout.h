/* core/pubout.h - outbound PUBLISH packets that one connection needs encoded for itself.
 *
 * Most deliveries share one encoding per variant within a routing pass (the encode cache of
 * core/session.c). Two things make a PUBLISH specific to one connection, and those take this
 * path instead:
 * - server -> client topic aliases (the client's Topic Alias Maximum > 0; core/topicalias.h);
 * - several subscription identifiers: when more than one subscription of the session that
 *   matched carries an identifier, the router marks the delivery PUBOUT_SUB_ID_MULTI and the
 *   identifiers are collected here from the session's subscriptions when the PUBLISH is
 *   written (MQTT-3.3.4-3: all of them in the one copy we send).
 * A client that allows no aliases and a delivery with at most one identifier never come here.
 * Shard thread only.
 */
#ifndef KEELMQ_CORE_PUBOUT_H
#define KEELMQ_CORE_PUBOUT_H

#include "core/base.h"

struct shard;
struct conn;
struct msg;
struct session;

/* A subscription identifier value no client can use (they are 1..MQTT_SUB_ID_MAX): "several
 * subscriptions with identifiers matched; collect them when writing". */
#define PUBOUT_SUB_ID_MULTI UINT32_MAX

/* Identifiers written in one PUBLISH at most (distinct values, in subscription order). A
 * session whose matching subscriptions carry more sends the first ones (a limit, documented). */
#define PUBOUT_SUB_IDS_MAX 64u

struct pubout_spec {
    uint8_t qos;
    bool retain;
    bool dup;
    uint16_t packet_id;
    uint32_t sub_id;         /* 0 none, one identifier, or PUBOUT_SUB_ID_MULTI */
};

/* True if a PUBLISH with identifier `sub_id` to `c` must be encoded by pubout_write. */
bool pubout_needed(const struct conn *c, uint32_t sub_id);

/* Writes one PUBLISH of `m` (borrowed) to `c` as `spec` says, with a topic alias when the
 * client takes them. Returns false when the output has no room (nothing written, no alias
 * assigned). A packet over the client's Maximum Packet Size is dropped, counted and reported
 * as written (MQTT-3.1.2-25). */
bool pubout_write(struct shard *s, struct conn *c, const struct msg *m,
                  const struct pubout_spec *spec);

/* True if a PUBLISH of `m` at `qos` with `sub_id` to `c` can exceed the client's Maximum
 * Packet Size, counting the longest form it may take on this connection (whole topic name and
 * an alias). A QoS 1/2 message that is true for is discarded before it takes a place in the
 * window: it is never sent, so it would never be acknowledged (MQTT-3.1.2-25). */
bool pubout_too_large(const struct conn *c, const struct msg *m, uint8_t qos, uint32_t sub_id);

/* Collects the distinct identifiers of the subscriptions of `sess` that match the topic of
 * `m` (no-local ones skipped for its own messages) into `ids` (PUBOUT_SUB_IDS_MAX entries).
 * Returns how many. */
uint32_t pubout_sub_ids(const struct session *sess, const struct msg *m, uint32_t *ids);

#endif
