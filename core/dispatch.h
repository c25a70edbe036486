/* core/dispatch.h - decodes a client's packets and applies them: CONNECT (and the handoff to
 * the client id's home shard), PUBLISH and its acks, SUBSCRIBE, UNSUBSCRIBE, PINGREQ,
 * DISCONNECT, AUTH.
 *
 * Shard thread only. This is the one place that maps codec and protocol results to CONNACK,
 * DISCONNECT and ack reason codes (STYLE 5): v5 clients get a DISCONNECT with the reason, v3
 * clients are closed.
 */
#ifndef KEELMQ_CORE_DISPATCH_H
#define KEELMQ_CORE_DISPATCH_H

#include "core/base.h"

struct shard;
struct conn;
struct handoff;

/* Decodes and handles one complete frame on `c`. Returns false when the conn must not process
 * further input (it is closing or being handed off). Borrows `frame` for the call only. */
bool dispatch_packet(struct shard *s, struct conn *c, const uint8_t *frame, uint32_t len);

/* Target side of a handoff: `slot` is the descriptor installed in this shard's ring and
 * `h` (the source shard's memory, read-only) the bytes received so far. */
void dispatch_handoff_in(struct shard *s, int slot, const struct handoff *h);

/* Source side: the recv of a conn being handed off has ended; send the descriptor. */
void dispatch_handoff_send(struct shard *s, struct conn *c);

/* Source side: the MSG_RING that sent the descriptor completed with `res`. */
void dispatch_handoff_sent(struct shard *s, struct conn *c, int res);

/* The commit log's durable offset moved: routes and acknowledges the QoS 1/2 PUBLISHes that
 * were waiting for it, in order. During shutdown they are released without routing. */
void dispatch_on_durable(struct shard *s);

/* Pumps the session of `c` once the log is visible up to `end_off` (an outbound QoS 2 PUBLISH
 * whose journal record must be durable before it is sent). Returns false when out of memory. */
bool dispatch_wait_pump(struct shard *s, struct conn *c, uint64_t end_off);

/* True once everything appended below `off` has been routed: a QoS 1/2 PUBLISH reaches the
 * subscribers and the retained index only when visible (dispatch_on_durable), so until then
 * the shard's memory does not show it yet. */
bool dispatch_routed_below(const struct shard *s, uint64_t off);

#endif
