/* core/router.h - where a published message goes: the local subscription tree, the other
 * shards (notify notes), and the retained index.
 *
 * Shard-owned. The home shard of the publisher calls router_publish; every other shard sees
 * the message through router_on_note. Overlapping subscriptions of one session are merged
 * into one delivery at the highest granted QoS (MQTT-3.3.4-2 allows either; one copy is
 * what clients expect). Retained messages are replicated to every shard's index so a
 * SUBSCRIBE is answered locally; concurrent updates of one topic from different shards are
 * ordered by (receive time, origin shard) so all copies converge.
 */
#ifndef KEELMQ_CORE_ROUTER_H
#define KEELMQ_CORE_ROUTER_H

#include "core/base.h"

struct shard;
struct msg;
struct session;

/* Appends `m` (owned by this shard) to the shard's commit log: every message is written
 * once. Sets m->log_off/log_len and hands the record to the index (core/persist.h).
 * `packet_id` is the publisher's id of a QoS 2 PUBLISH (recovery restores the ids awaiting
 * PUBREL from it), else 0. Returns the log offset where its record ends (visible once the
 * log's durable or written offset reaches it), or a negative errno (-ENOBUFS: the log is too
 * far behind; shed load). */
int64_t router_append(struct shard *s, struct msg *m, uint16_t packet_id);

/* Routes `m` (owned by this shard; the router takes its own references as needed) to local
 * subscribers, posts it to every other shard and updates the retained index if m->retain. */
void router_route(struct shard *s, struct msg *m);

/* router_append then router_route, for messages nobody waits an acknowledgement for
 * (QoS 0, wills). A message the log cannot take is still routed (it is counted). */
void router_publish(struct shard *s, struct msg *m);

/* A message published on another shard: deliver locally and update the retained index. */
void router_on_note(struct shard *s, const struct msg *m);

/* Sends the retained messages matching `filter` to `sess` (on SUBSCRIBE), at most
 * `granted_qos`. */
void router_send_retained(struct shard *s, struct session *sess, struct slice filter,
                          uint8_t granted_qos, uint32_t sub_id);

/* Releases the retained index's references (shutdown). */
void router_release_retained(void *ctx, void *value);

#endif
