/* core/iot.h - IoT naming conventions: point-to-point topics and GroupID@@@DeviceID client ids.
 *
 * Pure functions over borrowed slices; any thread. The broker uses them when mqtt.p2p is on
 * (core/router.c, core/persist.c, core/catchup.c, core/session.c) and when
 * mqtt.client_id_format = group_device (core/dispatch.c).
 *
 * P2P. A topic name `{parent}/p2p/{client id}` addresses one client: `parent` is one or more
 * levels (at least one byte, not starting with '$'), `p2p` a literal level, and the last level
 * the target's client id (non-empty; a client id containing '/' cannot be addressed). Such a
 * message goes to that client's session only, without a subscription, at the publish QoS;
 * subscriptions matching the topic do not get it (the RocketMQ MQTT convention). Because the
 * target's session lives on the shard its id hashes to, the origin posts the message to that
 * shard only, and indexes QoS 1/2 records in the target's own queue (persist_p2p_queue), which a
 * persistent session always reads when it catches up.
 *
 * Group ids. `GroupID@@@DeviceID`, split at the first "@@@": both parts non-empty, no further
 * "@@@" in the device part, the group at most IOT_GROUP_LEN_MAX bytes, the device at most
 * IOT_DEVICE_LEN_MAX bytes.
 */
#ifndef KEELMQ_CORE_IOT_H
#define KEELMQ_CORE_IOT_H

#include "core/base.h"

#define IOT_P2P_LEVEL "p2p"
#define IOT_GROUP_SEPARATOR "@@@"
#define IOT_GROUP_LEN_MAX 64u
#define IOT_DEVICE_LEN_MAX 64u

/* If `topic` (a valid topic name) is a P2P address, sets *client_id (borrowing from `topic`)
 * and returns true. */
bool iot_p2p_target(struct slice topic, struct slice *client_id);

/* If `client_id` has the GroupID@@@DeviceID form within the limits, sets *group_len to the
 * length of its group part and returns true. */
bool iot_group_device_parse(struct slice client_id, uint16_t *group_len);

#endif
