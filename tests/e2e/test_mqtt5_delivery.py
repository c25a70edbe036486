# tests/e2e/test_mqtt5_delivery.py - what travels on an MQTT 5 delivery: topic aliases in both
# directions, flow control (receive maximum, maximum packet size, mqtt.max_qos), subscription
# options and identifiers, and the properties that travel with a message (live, from the store
# after an offline period, and retained), with mqtt.validate_utf8_payload. Uses paho (MQTTv5)
# and raw packets where exact bytes matter (alias use, error paths). Every test is repeated
# for each shard count in KEELMQ_SHARDS (see harness.py).
#
#   BUILD=build /usr/bin/python3 -m unittest -v test_mqtt5_delivery      (from tests/e2e)

import queue
import re
import struct
import unittest

import harness
from harness import (CONNACK, CONNECT, DISCONNECT, PUBACK, PUBLISH, QUIET_S, SUBACK, RawClient,
                     decode_varint, encode_string, encode_varint, packet, publish_packet)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

V5 = 5
PUBREC, PUBREL, PUBCOMP = 5, 6, 7

# Reason codes.
PROTOCOL_ERROR = 0x82
RECEIVE_MAX_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
PAYLOAD_FORMAT_INVALID = 0x99
QOS_NOT_SUPPORTED = 0x9B

# Property identifiers.
P_PAYLOAD_FORMAT, P_CONTENT_TYPE, P_RESPONSE_TOPIC, P_CORRELATION = 0x01, 0x03, 0x08, 0x09
P_SUB_ID, P_RECEIVE_MAX, P_ALIAS_MAX, P_ALIAS = 0x0B, 0x21, 0x22, 0x23
P_MAX_QOS, P_USER, P_MAX_PACKET = 0x24, 0x26, 0x27

BYTE_PROPS = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
U16_PROPS = {0x13, 0x21, 0x22, 0x23}
U32_PROPS = {0x02, 0x11, 0x18, 0x27}
STRING_PROPS = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
BINARY_PROPS = {0x09, 0x16}

# An absence is asserted by waiting this long for what must not come.


# ---------------------------------------------------------------------------------------------
# Raw MQTT 5 packets.

def prop_byte(pid, value):
    return bytes([pid, value])


def prop_u16(pid, value):
    return bytes([pid]) + struct.pack("!H", value)


def prop_u32(pid, value):
    return bytes([pid]) + struct.pack("!I", value)


def prop_varint(pid, value):
    return bytes([pid]) + encode_varint(value)


def prop_string(pid, value):
    return bytes([pid]) + encode_string(value)


def prop_pair(key, value):
    return bytes([P_USER]) + encode_string(key) + encode_string(value)


def props_block(*items):
    body = b"".join(items)
    return encode_varint(len(body)) + body


def connect5(client_id, props=b"", clean=True, will=None, session_expiry=None):
    """CONNECT v5; will is (topic, payload, qos, retain, will property bytes)."""
    flags = 0x02 if clean else 0
    payload = encode_string(client_id)
    if will is not None:
        topic, will_payload, qos, retain, will_props = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += props_block(will_props) + encode_string(topic) + encode_string(will_payload)
    if session_expiry is not None:
        props += prop_u32(0x11, session_expiry)
    body = encode_string("MQTT") + bytes([V5, flags]) + struct.pack("!H", 60) + props_block(props)
    return packet(CONNECT, 0, body + payload)


def publish5(topic, payload, qos=0, mid=0, retain=False, props=b""):
    body = encode_string(topic) + (struct.pack("!H", mid) if qos else b"")
    return packet(PUBLISH, (qos << 1) | (1 if retain else 0), body + props_block(props) + payload)


def subscribe5(mid, filters, sub_id=None):
    """filters: [(filter, options byte)]."""
    props = prop_varint(P_SUB_ID, sub_id) if sub_id is not None else b""
    body = struct.pack("!H", mid) + props_block(props)
    for topic, options in filters:
        body += encode_string(topic) + bytes([options])
    return packet(8, 0x02, body)


def ack5(kind, mid, rc=None):
    body = struct.pack("!H", mid) + (bytes([rc]) if rc is not None else b"")
    return packet(kind, 0x02 if kind == PUBREL else 0, body)


def parse_props(data, offset):
    """Returns ([(id, value)...] in wire order, offset after the block)."""
    length, used = decode_varint(data, offset)
    offset += used
    end = offset + length
    props = []
    while offset < end:
        pid = data[offset]
        offset += 1
        if pid in BYTE_PROPS:
            value = data[offset]
            offset += 1
        elif pid in U16_PROPS:
            (value,) = struct.unpack_from("!H", data, offset)
            offset += 2
        elif pid in U32_PROPS:
            (value,) = struct.unpack_from("!I", data, offset)
            offset += 4
        elif pid == P_SUB_ID:
            value, used = decode_varint(data, offset)
            offset += used
        elif pid in STRING_PROPS or pid in BINARY_PROPS:
            (n,) = struct.unpack_from("!H", data, offset)
            value = bytes(data[offset + 2:offset + 2 + n])
            offset += 2 + n
        elif pid == P_USER:
            (n,) = struct.unpack_from("!H", data, offset)
            key = bytes(data[offset + 2:offset + 2 + n])
            offset += 2 + n
            (n,) = struct.unpack_from("!H", data, offset)
            value = (key, bytes(data[offset + 2:offset + 2 + n]))
            offset += 2 + n
        else:
            raise AssertionError("unknown property 0x%02x from the broker" % pid)
        props.append((pid, value))
    if offset != end:
        raise AssertionError("property block overran its length")
    return props, end


def parse_publish5(flags, body):
    qos = (flags >> 1) & 3
    (topic_len,) = struct.unpack_from("!H", body, 0)
    offset = 2 + topic_len
    topic = body[2:offset].decode()
    mid = 0
    if qos:
        (mid,) = struct.unpack_from("!H", body, offset)
        offset += 2
    props, offset = parse_props(body, offset)
    return {"topic": topic, "payload": body[offset:], "qos": qos, "mid": mid,
            "retain": bool(flags & 1), "dup": bool(flags & 8), "props": props}


def prop_values(props, pid):
    return [value for key, value in props if key == pid]


class Raw5(RawClient):
    """A blocking MQTT 5 client on a plain socket."""

    def __init__(self, broker):
        super().__init__(broker, version=V5)

    def connect5(self, client_id, props=b"", **kwargs):
        """Sends CONNECT; returns (session present, reason code, CONNACK properties)."""
        self.send(connect5(client_id, props, **kwargs))
        kind, _, body = self.next_packet()
        if kind != CONNACK:
            raise AssertionError("expected CONNACK, got packet type %d" % kind)
        return body[0] & 1, body[1], parse_props(body, 2)[0]

    def expect_publish(self, timeout=harness.EVENT_TIMEOUT_S):
        return parse_publish5(*self.expect(PUBLISH, timeout))

    def expect_disconnect(self, reason):
        """DISCONNECT with `reason`, then the broker closes the socket."""
        _, body = self.expect(DISCONNECT)
        self.assertion(body[0] == reason, "DISCONNECT reason 0x%02x, expected 0x%02x"
                       % (body[0], reason))
        self.assertion(self.recv_packet() is None, "socket still open after DISCONNECT")

    def subscribe(self, mid, filters, sub_id=None):
        self.send(subscribe5(mid, filters, sub_id))
        _, body = self.expect(SUBACK)
        props, offset = parse_props(body, 2)
        return list(body[offset:])

    @staticmethod
    def assertion(condition, text):
        if not condition:
            raise AssertionError(text)


def paho_props(**values):
    properties = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(properties, name, value)
    return properties


def stopped_counter(broker, name):
    """Stops the broker and sums counter `name` over the shards' "stopped*" log lines."""
    broker.stop()
    total = 0
    lines = 0
    for match in re.finditer(r"stopped(?:_\w+)? .*\b%s=(\d+)" % name, "".join(broker.lines)):
        total += int(match.group(1))
        lines += 1
    if lines != broker.shards:
        raise AssertionError("%d stopped lines for %d shards" % (lines, broker.shards))
    return total


# ---------------------------------------------------------------------------------------------

class Base:
    def raw5(self):
        raw = Raw5(self.broker)
        self.addCleanup(raw.close)
        return raw


class AliasCases(Base):
    def test_client_alias_defined_then_used_reaches_subscriber(self):
        subscriber = self.connected(version=V5)
        subscriber.subscribe("al/in", 1)
        raw = self.raw5()
        _, rc, props = raw.connect5("alias-in")
        self.assertEqual(rc, 0)
        self.assertEqual(prop_values(props, P_ALIAS_MAX), [10])
        raw.send(publish5("al/in", b"one", 1, 1, props=prop_u16(P_ALIAS, 3)))
        raw.expect(PUBACK)
        raw.send(publish5("", b"two", 1, 2, props=prop_u16(P_ALIAS, 3)))
        raw.expect(PUBACK)
        got = [(m.topic, bytes(m.payload)) for m in subscriber.expect_messages(2)]
        self.assertEqual(got, [("al/in", b"one"), ("al/in", b"two")])

    def test_alias_overflow_rejected(self):
        raw = self.raw5()
        raw.connect5("alias-over")
        raw.send(publish5("al/x", b"p", props=prop_u16(P_ALIAS, 11)))  # maximum is 10
        raw.expect_disconnect(TOPIC_ALIAS_INVALID)

    def test_alias_zero_rejected(self):
        raw = self.raw5()
        raw.connect5("alias-zero")
        raw.send(publish5("al/x", b"p", props=prop_u16(P_ALIAS, 0)))
        raw.expect_disconnect(TOPIC_ALIAS_INVALID)

    def test_empty_topic_with_unset_alias_is_protocol_error(self):
        raw = self.raw5()
        raw.connect5("alias-unset")
        raw.send(publish5("", b"p", props=prop_u16(P_ALIAS, 2)))
        raw.expect_disconnect(PROTOCOL_ERROR)

    def test_server_alias_used_second_publish_has_empty_topic(self):
        raw = self.raw5()
        raw.connect5("alias-out", prop_u16(P_ALIAS_MAX, 2))
        self.assertEqual(raw.subscribe(1, [("ao/#", 0)]), [0])
        publisher = self.connected(version=V5)
        # a/1 a/1 a/2 a/3 a/1 with 2 aliases: a/3 takes the least recently used (a/1's),
        # then a/1 takes a/2's.
        expected = [("ao/1", 1, True), ("", 1, False), ("ao/2", 2, True), ("ao/3", 1, True),
                    ("ao/1", 2, True)]
        for index, topic in enumerate(["ao/1", "ao/1", "ao/2", "ao/3", "ao/1"]):
            publisher.publish(topic, b"m%d" % index, 1)
            got = raw.expect_publish()
            self.assertEqual(got["payload"], b"m%d" % index)
            want_topic, want_alias, _ = expected[index]
            self.assertEqual((got["topic"], prop_values(got["props"], P_ALIAS)),
                             (want_topic, [want_alias]), "publish %d" % index)
        # Again a/1 (alias 2) and a/3 (alias 1): both bare now.
        publisher.publish("ao/1", b"again1", 1)
        publisher.publish("ao/3", b"again3", 1)
        got = [raw.expect_publish() for _ in range(2)]
        self.assertEqual([(g["topic"], prop_values(g["props"], P_ALIAS), g["payload"])
                          for g in got], [("", [2], b"again1"), ("", [1], b"again3")])

    def test_no_alias_without_client_topic_alias_maximum(self):
        raw = self.raw5()
        raw.connect5("alias-none")
        raw.subscribe(1, [("an/t", 0)])
        publisher = self.connected(version=V5)
        for index in range(2):
            publisher.publish("an/t", b"x", 1)
            got = raw.expect_publish()
            self.assertEqual((got["topic"], prop_values(got["props"], P_ALIAS)), ("an/t", []))


class FlowCases(Base):
    broker_options = {"mqtt.max_inflight": "3", "mqtt.max_packet_size": "4096"}

    def test_receive_maximum_never_exceeded(self):
        raw = self.raw5()
        raw.connect5("rm-sub", prop_u16(P_RECEIVE_MAX, 2))
        raw.subscribe(1, [("rm/t", 1)])
        publisher = self.connected(version=V5)
        total = 7
        for index in range(total):
            publisher.publish("rm/t", b"%d" % index, 1)
        inflight = []
        received = []
        highest = 0
        while len(received) < total:
            # Take everything the broker sends before acking the oldest one.
            while True:
                try:
                    got = raw.expect_publish(timeout=QUIET_S if inflight else 5.0)
                except AssertionError:
                    break
                inflight.append(got["mid"])
                received.append(got["payload"])
                highest = max(highest, len(inflight))
                self.assertLessEqual(len(inflight), 2, "more in flight than Receive Maximum")
            self.assertTrue(inflight, "nothing in flight and messages missing")
            raw.send(ack5(PUBACK, inflight.pop(0)))
        self.assertEqual(highest, 2)
        self.assertEqual(received, [b"%d" % i for i in range(total)])

    def test_client_exceeding_receive_maximum_disconnected(self):
        raw = self.raw5()
        _, _, props = raw.connect5("rm-pub")
        self.assertEqual(prop_values(props, P_RECEIVE_MAX), [3])
        for mid in range(1, 4):  # QoS 2 awaiting PUBREL: unacknowledged until PUBCOMP
            raw.send(publish5("rm/in", b"x", 2, mid))
            raw.expect(PUBREC)
        raw.send(publish5("rm/in", b"x", 2, 4))
        raw.expect_disconnect(RECEIVE_MAX_EXCEEDED)

    def test_qos1_past_receive_maximum_waits_for_the_disk(self):
        # With store.flush = sync a PUBACK waits for the disk: when the fourth of four QoS 1
        # PUBLISHes in one write is read, three are unanswered. The broker reads it only once
        # an answer went out (back-pressure: MQTT.js pipelines past the maximum), so all four
        # are acknowledged and the connection stays.
        raw = self.raw5()
        raw.connect5("rm-pub1")
        for round_ in range(3):
            raw.send(b"".join(publish5("rm/in1", b"x", 1, 4 * round_ + n) for n in range(1, 5)))
            mids = [struct.unpack(">H", raw.expect(PUBACK)[1][:2])[0] for _ in range(4)]
            self.assertEqual(mids, [4 * round_ + n for n in range(1, 5)])
        self.assertGreater(stopped_counter(self.broker, "ack_holds"), 0, "nothing was held")

    def test_client_within_receive_maximum_keeps_going(self):
        # Three unanswered (QoS 1 and 2 together) at a time, over and over: never too many.
        raw = self.raw5()
        raw.connect5("rm-ok")
        for round_ in range(5):
            base = round_ * 3
            raw.send(publish5("rm/ok", b"a", 1, base + 1) + publish5("rm/ok", b"b", 1, base + 2) +
                     publish5("rm/ok", b"c", 2, base + 3))
            kinds = sorted(raw.next_packet()[0] for _ in range(3))
            self.assertEqual(kinds, [PUBACK, PUBACK, PUBREC])
            raw.send(ack5(PUBREL, base + 3))
            raw.expect(PUBCOMP)

    def test_v311_client_has_no_receive_maximum_for_qos1(self):
        raw = self.raw(version=4)
        raw.connect("rm-v3")
        raw.send(b"".join(publish_packet("rm/v3", b"x", 1, mid) for mid in range(1, 11)))
        for _ in range(10):
            raw.expect(PUBACK)

    def test_message_over_client_maximum_packet_size_dropped_and_counted(self):
        raw = self.raw5()
        # Receive Maximum 1: a dropped QoS 1 message must not hold the only place in flight.
        raw.connect5("mps-sub", prop_u32(P_MAX_PACKET, 64) + prop_u16(P_RECEIVE_MAX, 1))
        raw.subscribe(1, [("mps/q0", 0), ("mps/q1", 1)])
        publisher = self.connected(version=V5)
        for topic in ("mps/q0", "mps/q1"):
            publisher.publish(topic, b"L" * 100, 1)
            publisher.publish(topic, b"small", 1)
        publisher.publish("mps/q1", b"small2", 1)
        got = [raw.expect_publish() for _ in range(2)]
        self.assertEqual([(g["topic"], g["payload"]) for g in got],
                         [("mps/q0", b"small"), ("mps/q1", b"small")])
        raw.send(ack5(PUBACK, got[1]["mid"]))
        self.assertEqual(raw.expect_publish()["payload"], b"small2")
        raw.close()
        publisher.stop()
        self.assertEqual(stopped_counter(self.broker, "dropped_too_large"), 2)

    def test_packet_over_server_maximum_disconnected(self):
        raw = self.raw5()
        _, _, props = raw.connect5("mps-pub")
        self.assertEqual(prop_values(props, P_MAX_PACKET), [4096])
        # The header announces the size: the broker answers before the body is all there.
        raw.send(publish5("mps/big", b"B" * 5000)[:200])
        raw.expect_disconnect(PACKET_TOO_LARGE)


class MaxQosCases(Base):
    broker_options = {"mqtt.max_qos": "1"}

    def test_connack_announces_maximum_qos(self):
        raw = self.raw5()
        _, rc, props = raw.connect5("mq-connack")
        self.assertEqual((rc, prop_values(props, P_MAX_QOS)), (0, [1]))

    def test_publish_above_maximum_qos_disconnected(self):
        raw = self.raw5()
        raw.connect5("mq-pub")
        raw.send(publish5("mq/t", b"x", 2, 1))
        raw.expect_disconnect(QOS_NOT_SUPPORTED)

    def test_will_above_maximum_qos_refused(self):
        raw = self.raw5()
        _, rc, _ = raw.connect5("mq-will", will=("mq/will", b"w", 2, False, b""))
        self.assertEqual(rc, QOS_NOT_SUPPORTED)

    def test_subscribe_granted_at_most_maximum_qos(self):
        raw = self.raw5()
        raw.connect5("mq-sub")
        self.assertEqual(raw.subscribe(1, [("mq/a", 2), ("mq/b", 1), ("mq/c", 0)]), [1, 1, 0])
        publisher = self.connected(version=V5)
        publisher.publish("mq/a", b"q1", 1)
        got = raw.expect_publish()
        self.assertEqual((got["payload"], got["qos"]), (b"q1", 1))


class OptionCases(Base):
    def test_no_local(self):
        client = self.connected(version=V5, client_id="nl-self")
        client.subscribe("nl/t", options=SubscribeOptions(qos=1, noLocal=True))
        client.publish("nl/t", b"own", 1)
        other = self.connected(version=V5)
        other.publish("nl/t", b"other", 1)
        self.assertEqual(bytes(client.expect_message().payload), b"other")
        client.expect_no_message(QUIET_S)

    def test_retain_as_published(self):
        keep = self.connected(version=V5)
        keep.subscribe("rap/t", options=SubscribeOptions(qos=1, retainAsPublished=True))
        clear = self.connected(version=V5)
        clear.subscribe("rap/t", options=SubscribeOptions(qos=1, retainAsPublished=False))
        publisher = self.connected(version=V5)
        publisher.publish("rap/t", b"r", 1, retain=True)
        publisher.publish("rap/t", b"n", 1, retain=False)
        self.assertEqual([(bytes(m.payload), m.retain) for m in keep.expect_messages(2)],
                         [(b"r", True), (b"n", False)])
        self.assertEqual([(bytes(m.payload), m.retain) for m in clear.expect_messages(2)],
                         [(b"r", False), (b"n", False)])

    def test_retain_handling_0_1_2(self):
        publisher = self.connected(version=V5)
        publisher.publish("rh/t", b"kept", 1, retain=True)
        for handling, first, again in ((0, True, True), (1, True, False), (2, False, False)):
            client = self.connected(version=V5)
            options = SubscribeOptions(qos=1, retainHandling=handling)
            for label, expect in (("first", first), ("again", again)):
                client.subscribe("rh/t", options=options)
                if expect:
                    message = client.expect_message()
                    self.assertEqual((bytes(message.payload), message.retain), (b"kept", True),
                                     "handling %d %s" % (handling, label))
                else:
                    client.expect_no_message(QUIET_S)

    def test_several_subscription_ids_in_one_publish(self):
        raw = self.raw5()
        raw.connect5("ids")
        raw.subscribe(1, [("ids/#", 1)], sub_id=7)
        raw.subscribe(2, [("ids/+", 1)], sub_id=300)
        raw.subscribe(3, [("ids/x", 1)])  # no identifier
        publisher = self.connected(version=V5)
        publisher.publish("ids/x", b"both", 1)
        got = raw.expect_publish()
        self.assertEqual(got["payload"], b"both")
        self.assertEqual(sorted(prop_values(got["props"], P_SUB_ID)), [7, 300])
        raw.send(ack5(PUBACK, got["mid"]))
        raw.expect_nothing()  # one copy only
        publisher.publish("ids/y/z", b"one", 0)
        got = raw.expect_publish()
        self.assertEqual((got["payload"], prop_values(got["props"], P_SUB_ID)), (b"one", [7]))

    def test_several_subscription_ids_paho_and_after_offline(self):
        client = self.connected(version=V5, client_id="ids-paho", clean=False,
                                session_expiry=300)
        for topic, sub_id in (("idp/#", 1), ("idp/+", 2)):
            properties = Properties(PacketTypes.SUBSCRIBE)
            properties.SubscriptionIdentifier = sub_id
            client.subscribe(topic, options=SubscribeOptions(qos=1), properties=properties)
        publisher = self.connected(version=V5)
        publisher.publish("idp/a", b"live", 1)
        message = client.expect_message()
        self.assertEqual(sorted(message.properties.SubscriptionIdentifier), [1, 2])
        client.disconnect()
        publisher.publish("idp/a", b"stored", 1)
        again = self.client(version=V5, client_id="ids-paho", clean=False, session_expiry=300)
        self.assertEqual(again.connect()[0], 1)
        message = again.expect_message()
        self.assertEqual(bytes(message.payload), b"stored")
        self.assertEqual(sorted(message.properties.SubscriptionIdentifier), [1, 2])


def rich_props():
    return paho_props(UserProperty=[("k", "1"), ("a", "2"), ("k", "3")],
                      ResponseTopic="pr/reply", CorrelationData=b"\x00\xffcorr",
                      ContentType="application/json", PayloadFormatIndicator=1)


class PropertyCases(Base):
    def assert_rich(self, message):
        p = message.properties
        self.assertEqual(p.UserProperty, [("k", "1"), ("a", "2"), ("k", "3")])
        self.assertEqual(p.ResponseTopic, "pr/reply")
        self.assertEqual(p.CorrelationData, b"\x00\xffcorr")
        self.assertEqual(p.ContentType, "application/json")
        self.assertEqual(p.PayloadFormatIndicator, 1)

    def test_properties_arrive_unchanged_live(self):
        subscriber = self.connected(version=V5)
        subscriber.subscribe("pr/live", 1)
        publisher = self.connected(version=V5)
        publisher.publish("pr/live", b'{"a":1}', 1, properties=rich_props())
        message = subscriber.expect_message()
        self.assertEqual(bytes(message.payload), b'{"a":1}')
        self.assert_rich(message)

    def test_properties_arrive_unchanged_from_store_after_offline(self):
        subscriber = self.connected(version=V5, client_id="pr-off", clean=False,
                                    session_expiry=300)
        subscriber.subscribe("pr/off/#", 1)
        subscriber.disconnect()
        publisher = self.connected(version=V5)
        # QoS 1/2 are read back from the log (QoS 0 of an offline period is not kept).
        for qos in (1, 2):
            publisher.publish("pr/off/%d" % qos, b"q%d" % qos, qos, properties=rich_props())
        again = self.client(version=V5, client_id="pr-off", clean=False, session_expiry=300)
        self.assertEqual(again.connect()[0], 1)
        messages = again.expect_messages(2)
        self.assertEqual(sorted(bytes(m.payload) for m in messages), [b"q1", b"q2"])
        for message in messages:
            self.assert_rich(message)

    def test_properties_arrive_unchanged_on_retained(self):
        publisher = self.connected(version=V5)
        publisher.publish("pr/ret", b"kept", 1, retain=True, properties=rich_props())
        subscriber = self.connected(version=V5)
        subscriber.subscribe("pr/ret", 1)
        message = subscriber.expect_message()
        self.assertTrue(message.retain)
        self.assert_rich(message)

    def test_request_response_with_correlation_data(self):
        responder = self.connected(version=V5, client_id="responder")
        requests = queue.Queue()
        responder.paho.on_message = lambda client, userdata, message: requests.put(message)
        responder.subscribe("svc/request", 1)
        requester = self.connected(version=V5, client_id="requester")
        requester.subscribe("svc/reply/requester", 1)
        requester.publish("svc/request", b"2+2", 1,
                          properties=paho_props(ResponseTopic="svc/reply/requester",
                                                CorrelationData=b"req-42"))
        request = harness.get_event(requests, harness.EVENT_TIMEOUT_S, "request")
        reply_props = paho_props(CorrelationData=request.properties.CorrelationData)
        responder.publish(request.properties.ResponseTopic, b"4", 1, properties=reply_props)
        reply = requester.expect_message()
        self.assertEqual((reply.topic, bytes(reply.payload), reply.properties.CorrelationData),
                         ("svc/reply/requester", b"4", b"req-42"))


class Utf8Cases(Base):
    broker_options = {"mqtt.validate_utf8_payload": "on"}

    def test_invalid_utf8_payload_refused_per_qos(self):
        subscriber = self.connected(version=V5)
        subscriber.subscribe("u8/#", 2)
        raw = self.raw5()
        raw.connect5("u8-pub")
        utf8 = prop_byte(P_PAYLOAD_FORMAT, 1)
        raw.send(publish5("u8/q1", b"bad\xff", 1, 1, props=utf8))
        _, body = raw.expect(PUBACK)
        self.assertEqual((struct.unpack("!H", body[:2])[0], body[2]), (1, PAYLOAD_FORMAT_INVALID))
        raw.send(publish5("u8/q2", b"\xc0\x80", 2, 2, props=utf8))  # overlong NUL
        _, body = raw.expect(PUBREC)
        self.assertEqual((struct.unpack("!H", body[:2])[0], body[2]), (2, PAYLOAD_FORMAT_INVALID))
        # Well-formed UTF-8 (a NUL included) and unflagged binary go through.
        raw.send(publish5("u8/ok", "caf\u00e9\x00".encode(), 1, 3, props=utf8))
        raw.expect(PUBACK)
        raw.send(publish5("u8/bin", b"\xff\xfe", 1, 4))
        raw.expect(PUBACK)
        got = [(m.topic, bytes(m.payload)) for m in subscriber.expect_messages(2)]
        self.assertEqual(got, [("u8/ok", "caf\u00e9\x00".encode()), ("u8/bin", b"\xff\xfe")])
        raw.send(publish5("u8/q0", b"\xed\xa0\x80", 0, props=utf8))  # a surrogate
        raw.expect_disconnect(PAYLOAD_FORMAT_INVALID)
        subscriber.expect_no_message(QUIET_S)

    def test_invalid_utf8_will_refused(self):
        raw = self.raw5()
        _, rc, _ = raw.connect5("u8-will", will=("u8/will", b"\xff", 0, False,
                                                 prop_byte(P_PAYLOAD_FORMAT, 1)))
        self.assertEqual(rc, PAYLOAD_FORMAT_INVALID)


class Utf8OffCases(Base):
    def test_invalid_utf8_payload_delivered_when_validation_off(self):
        subscriber = self.connected(version=V5)
        subscriber.subscribe("u8off/t", 1)
        raw = self.raw5()
        raw.connect5("u8off-pub")
        raw.send(publish5("u8off/t", b"bad\xff", 1, 1, props=prop_byte(P_PAYLOAD_FORMAT, 1)))
        _, body = raw.expect(PUBACK)
        self.assertEqual(len(body), 2, "PUBACK success")
        message = subscriber.expect_message()
        self.assertEqual((bytes(message.payload), message.properties.PayloadFormatIndicator),
                         (b"bad\xff", 1))


for cases in (AliasCases, FlowCases, MaxQosCases, OptionCases, PropertyCases, Utf8Cases,
              Utf8OffCases):
    harness.per_shard_count(cases, globals())
del cases

if __name__ == "__main__":
    unittest.main(verbosity=2)
