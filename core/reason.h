/* core/reason.h - MQTT 5 Reason Strings on the failure packets the server sends.
 *
 * Pure functions over one packet about to be encoded: any thread (in practice the shard that
 * owns the connection, from session_write_packet). It does not add User Properties: the server
 * has none of its own to send.
 *
 * Rules (MQTT 5.0):
 *   - only a failure (reason code 0x80 or above; for SUBACK/UNSUBACK, any entry) gets a
 *     string, and only when the packet has none yet;
 *   - a client whose CONNECT said Request Problem Information = 0 gets no Reason String on
 *     any packet but CONNACK and DISCONNECT (MQTT-3.1.2-29; PUBLISH never carries ours);
 *   - the string is left out when it would make the packet larger than the client's Maximum
 *     Packet Size (MQTT-3.2.2-19, 3.4.2.2.2 and the like for every packet).
 */
#ifndef KEELMQ_CORE_REASON_H
#define KEELMQ_CORE_REASON_H

#include "core/base.h"

struct mqtt_packet;

/* A short human text for failure reason code `rc` (0x80..0xA2), or NULL for success codes
 * and codes without one. Static storage. */
const char *reason_text(uint8_t rc);

/* True if `pkt` is a failure that reason_attach would consider (cheap: no copy needed
 * otherwise). */
bool reason_is_failure(const struct mqtt_packet *pkt);

/* Adds the Reason String to `pkt` (a v5 CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK,
 * UNSUBACK or DISCONNECT; other types are left alone) if the rules above allow it.
 * `problem_info` is the client's Request Problem Information (true when absent), and
 * `max_packet` its Maximum Packet Size. Returns true if a string was added. The string
 * borrows static storage. */
bool reason_attach(struct mqtt_packet *pkt, bool problem_info, uint32_t max_packet);

#endif
