# tests/e2e/test_mqtt5_interop.py - the scenarios of the Eclipse Paho interoperability suite
# (paho.mqtt.testing, interoperability/client_test5.py for MQTT 5.0 and client_test.py for
# 3.1.1), written anew for this harness: the same scenarios with the same expectations, each
# test naming the upstream case it mirrors. Where the upstream suite allows two behaviours (one
# message or one per overlapping subscription; QoS 0 queued for offline sessions or not) so do
# these tests, and where it only checks that something failed, these tests also check the
# reason code that MQTT 5.0 prescribes.
#
# paho (Debian's python3-paho-mqtt 1.6) drives the ordinary cases; raw packets drive the cases
# paho cannot express: a client that stops acknowledging or goes silent, server topic aliases
# (paho 1.6 does not resolve them), empty topics with a client alias, a second CONNECT.
#
# Broker configuration, as an operator would set it to run the upstream suite:
#   mqtt.keepalive_max = 60          test_server_keep_alive expects Server Keep Alive 60 for 120
#   mqtt.deny_subscribe = test/nosubscribe
#                                    test_subscribe_failure expects SUBACK 0x80 for that filter
#   mqtt.max_packet_size = 4096      only for the server half of test_maximum_packet_size (the
#                                    upstream case checks it when the server maximum < 65535)
# Every upstream case is here, test_shared_subscriptions included.
#
#   BUILD=build /usr/bin/python3 -m unittest -v test_mqtt5_interop      (from tests/e2e)
#   KEELMQ_E2E_BROKER=mosquitto /usr/bin/python3 -m unittest -v test_mqtt5_interop

import queue
import struct
import time
import unittest

import harness
from harness import (CONNACK, CONNECT, DISCONNECT, PUBACK, PUBLISH, QUIET_S, SUBACK, Client,
                     RawClient, encode_string, get_event, packet, per_shard_count)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from test_mqtt5_delivery import (P_ALIAS, P_ALIAS_MAX, P_MAX_PACKET, P_RECEIVE_MAX, PUBCOMP,
                                 PUBREC, PUBREL, ack5, parse_props, parse_publish5, prop_pair,
                                 prop_u16, prop_u32, prop_values, props_block, publish5,
                                 subscribe5)

V311, V5 = 4, 5

# The upstream suite's topic names and filters (setData() there).
TOPICS = ("TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA")
WILDTOPICS = ("TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#")
NOSUBSCRIBE = "test/nosubscribe"

# Reason codes and property identifiers not named in test_mqtt5_delivery.
PROTOCOL_ERROR = 0x82
RECEIVE_MAX_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
P_SESSION_EXPIRY, P_ASSIGNED_ID, P_SERVER_KEEP_ALIVE, P_WILL_DELAY = 0x11, 0x12, 0x13, 0x18

USER_PROPS = [("a", "2"), ("c", "3")]
WILL_TIMEOUT_S = 15.0  # a will after a keepalive runs out (1.5 x 5 s) or a delay, with margin


def same_user_props(props):
    """upstream accepts the two user properties in either order."""
    return props in (USER_PROPS, USER_PROPS[::-1])


# ---------------------------------------------------------------------------------------------
# Raw packets beyond test_mqtt5_delivery's: a CONNECT with every field the cases set.

def connect_raw(client_id, version=V5, clean=True, keepalive=60, props=b"", will=None,
                protocol_name="MQTT"):
    """CONNECT; will is (topic, payload, qos, retain, v5 will property bytes)."""
    flags = 0x02 if clean else 0
    payload = encode_string(client_id)
    if will is not None:
        topic, will_payload, qos, retain, will_props = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        if version == V5:
            payload += props_block(will_props)
        payload += encode_string(topic) + encode_string(will_payload)
    body = encode_string(protocol_name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == V5:
        body += props_block(props)
    return packet(CONNECT, 0, body + payload)


def disconnect_raw(reason=0, props=b""):
    return packet(DISCONNECT, 0, bytes([reason]) + props_block(props))


class Raw(RawClient):
    """A blocking raw client (v5 or v3.1.1) that reads what it is sent packet by packet."""

    def __init__(self, broker, version=V5):
        super().__init__(broker, version=version)

    def open(self, client_id, **kwargs):
        """CONNECT and CONNACK: returns (session present, reason code, properties {id: [v]})."""
        self.send(connect_raw(client_id, version=self.version, **kwargs))
        kind, _, body = self.next_packet()
        if kind != CONNACK:
            raise AssertionError("expected CONNACK, got packet type %d" % kind)
        props = {}
        if self.version == V5:
            for pid, value in parse_props(body, 2)[0]:
                props.setdefault(pid, []).append(value)
        return body[0] & 1, body[1], props

    def publish_of(self, flags, body):
        if self.version == V5:
            return parse_publish5(flags, body)
        topic, payload, qos, mid, retain = harness.parse_publish(flags, body)
        return {"topic": topic, "payload": payload, "qos": qos, "mid": mid, "retain": retain,
                "dup": bool(flags & 8), "props": []}

    def expect_closed(self, timeout=harness.EVENT_TIMEOUT_S):
        """The broker ends the connection, with or without a DISCONNECT (v5) first; returns
        the DISCONNECT reason code, or None when the socket just closed."""
        item = self.recv_packet(timeout)
        if item is None:
            return None
        kind, _, body = item
        if kind != DISCONNECT:
            raise AssertionError("expected the connection to end, got packet type %d" % kind)
        if self.recv_packet(timeout) is not None:
            raise AssertionError("socket still open after DISCONNECT")
        return body[0] if body else 0

    def subscribe(self, mid, filters, sub_id=None):
        """filters: [(filter, options byte)]; returns the SUBACK codes."""
        if self.version == V5:
            self.send(subscribe5(mid, filters, sub_id))
        else:
            self.send(harness.subscribe_packet(mid, filters))
        _, body = self.expect(SUBACK)
        offset = parse_props(body, 2)[1] if self.version == V5 else 2
        return list(body[offset:])

    def publish(self, topic, payload, qos=0, mid=0, retain=False, props=b""):
        if self.version == V5:
            self.send(publish5(topic, payload, qos, mid, retain, props))
        else:
            self.send(harness.publish_packet(topic, payload, qos, mid, retain))

    def collect(self, want):
        """Reads packets until `want(seen)` holds; seen is the list of (type, parsed) read so
        far, a PUBLISH parsed as a dict, any other packet as its packet identifier (or body).
        Answers PUBREC with PUBREL, so that QoS 2 publishes it sent complete."""
        seen = []
        while not want(seen):
            kind, flags, body = self.next_packet()
            if kind == PUBLISH:
                seen.append((kind, self.publish_of(flags, body)))
                continue
            mid = struct.unpack_from("!H", body, 0)[0] if len(body) >= 2 else body
            if kind == PUBREC:
                self.send(ack5(PUBREL, mid) if self.version == V5
                          else packet(PUBREL, 0x02, struct.pack("!H", mid)))
            seen.append((kind, mid))
        return seen


def count(seen, kind):
    return sum(1 for got, _ in seen if got == kind)


def publishes(seen):
    return [value for kind, value in seen if kind == PUBLISH]


def props_of(**values):
    properties = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(properties, name, value)
    return properties


class Client5(Client):
    """paho MQTT 5 with CONNECT/DISCONNECT properties and the CONNACK properties recorded."""

    def __init__(self, broker, client_id="", connect_props=None, **kwargs):
        super().__init__(broker, client_id=client_id, version=V5, **kwargs)
        self.connect_props = connect_props
        self.connacks = queue.Queue()

    def on_connect(self, client, userdata, flags, rc, properties=None):
        self.connacks.put(properties)
        super().on_connect(client, userdata, flags, rc, properties)

    def connect(self, timeout=harness.EVENT_TIMEOUT_S):
        if self.connect_props is None:
            return super().connect(timeout)
        self.paho.connect(harness.HOST, self.broker.port, self.keepalive, clean_start=self.clean,
                          properties=self.connect_props)
        self.paho.loop_start()
        self.is_started = True
        present, rc = get_event(self.connects, timeout, "CONNACK")
        if rc.value != 0:
            raise AssertionError("connection refused with code %r" % rc)
        return present, rc.value

    def disconnect_with(self, props):
        self.paho.disconnect(properties=props)
        self.stop()

    def subscribe_with(self, filters, properties=None):
        """filters: [(filter, SubscribeOptions)]; returns the SUBACK codes as ints."""
        result, mid = self.paho.subscribe(filters, properties=properties)
        if result != 0:
            raise AssertionError("subscribe failed locally: %d" % result)
        while True:
            ack_mid, granted = get_event(self.subacks, harness.EVENT_TIMEOUT_S, "SUBACK")
            if ack_mid == mid:
                return [code.value if hasattr(code, "value") else code for code in granted]


# ---------------------------------------------------------------------------------------------

class InteropCases:
    """client_test5.py (MQTT 5.0) and the client_test.py (3.1.1) cases not in test_paho.py."""

    broker_options = {"mqtt.keepalive_max": "60", "mqtt.deny_subscribe": NOSUBSCRIBE}

    def v5(self, client_id="", **kwargs):
        client = Client5(self.broker, client_id, **kwargs)
        self.addCleanup(client.stop)
        return client

    def raw_client(self, version=V5):
        raw = Raw(self.broker, version)
        self.addCleanup(raw.close)
        return raw

    # --- basic --------------------------------------------------------------------------------

    def run_basic(self, version):
        first = self.connected(client_id="myclientid", version=version)
        first.disconnect()
        client = self.client(client_id="myclientid", version=version)
        self.assertEqual(client.connect(), (0, 0))
        self.assertEqual(client.subscribe(TOPICS[0], 2), 2)
        for qos in range(3):
            client.publish(TOPICS[0], b"qos %d" % qos, qos)
        got = client.expect_messages(3)
        self.assertEqual(sorted((m.payload, m.qos) for m in got),
                         [(b"qos 0", 0), (b"qos 1", 1), (b"qos 2", 2)])
        client.expect_no_message(QUIET_S)
        client.disconnect()

        # A second CONNECT on a connection is a protocol violation: the broker ends the
        # connection (MQTT-3.1.0-2).
        raw = self.raw_client(version)
        self.assertEqual(raw.open("myclientid")[1], 0)
        raw.send(connect_raw("myclientid", version=version))
        reason = raw.expect_closed()
        if version == V5 and reason is not None:
            self.assertEqual(reason, PROTOCOL_ERROR)

        # A wrong protocol name is not accepted (MQTT-3.1.2-1): no successful CONNACK.
        raw = self.raw_client(version)
        raw.send(connect_raw("myclientid", version=version, protocol_name="hj"))
        item = raw.recv_packet()
        if item is not None:
            kind, _, body = item
            self.assertEqual(kind, CONNACK)
            self.assertNotEqual(body[1], 0, "CONNACK success for protocol name 'hj'")
            self.assertIsNone(raw.recv_packet(), "connection kept open after a refusal")

    def test_basic(self):
        # upstream client_test5.py test_basic
        self.run_basic(V5)

    def test_v311_basic(self):
        # upstream client_test.py testBasic
        self.run_basic(V311)

    # --- retained messages ----------------------------------------------------------------------

    def test_retained_message(self):
        # upstream client_test5.py test_retained_message
        client = self.v5("myclientid")
        client.connect()
        props = props_of(UserProperty=USER_PROPS)
        for qos in range(3):
            client.publish(TOPICS[qos + 1], b"qos %d" % qos, qos, retain=True, properties=props)
        client.publish("sync/marker", b"", 1)  # the QoS 0 one is in before this is acked
        self.assertEqual(client.subscribe(WILDTOPICS[5], 2), 2)
        got = client.expect_messages(3)
        client.expect_no_message(QUIET_S)
        for message in got:
            self.assertTrue(message.retain)
            self.assertTrue(same_user_props(message.properties.UserProperty),
                            message.properties.UserProperty)
        self.assertEqual(sorted(m.qos for m in got), [0, 1, 2])

    def test_v311_retained_messages(self):
        # upstream client_test.py test_retained_messages
        client = self.client(client_id="myclientid")
        self.assertEqual(client.connect(), (0, 0))
        for qos in range(3):
            client.publish(TOPICS[qos + 1], b"qos %d" % qos, qos, retain=True)
        client.publish("sync/marker", b"", 1)
        self.assertEqual(client.subscribe(WILDTOPICS[5], 2), 2)
        self.assertEqual(sorted(m.qos for m in client.expect_messages(3)), [0, 1, 2])
        client.disconnect()

        # Empty retained payloads clear them: a new subscription gets nothing.
        client = self.client(client_id="myclientid")
        self.assertEqual(client.connect(), (0, 0))
        for qos in range(3):
            client.publish(TOPICS[qos + 1], b"", qos, retain=True)
        client.publish("sync/marker", b"", 1)
        self.assertEqual(client.subscribe(WILDTOPICS[5], 2), 2)
        client.expect_no_message(QUIET_S)

    # --- will message ---------------------------------------------------------------------------

    def test_will_message(self):
        # upstream client_test5.py test_will_message: a client goes silent past its keepalive;
        # its will (with user properties, delay 0) reaches the subscriber.
        watcher = self.v5("myclientid2", clean=False)
        watcher.connect()
        self.assertEqual(watcher.subscribe(TOPICS[2], 2), 2)
        silent = self.raw_client()
        will_props = prop_u32(P_WILL_DELAY, 0) + prop_pair("a", "2") + prop_pair("c", "3")
        self.assertEqual(silent.open("myclientid", keepalive=2,
                                     will=(TOPICS[2], b"will message", 0, False, will_props))[1],
                         0)
        message = watcher.expect_message(timeout=WILL_TIMEOUT_S)
        self.assertEqual((message.topic, message.payload), (TOPICS[2], b"will message"))
        self.assertEqual(message.properties.UserProperty, USER_PROPS)
        watcher.expect_no_message(QUIET_S)

    # --- zero length client id ------------------------------------------------------------------

    def test_zero_length_clientid(self):
        # upstream client_test5.py test_zero_length_clientid: MQTT 5 accepts an empty client
        # id with Clean Start 0 as well as 1 (the server assigns one, MQTT-3.1.3-6).
        for clean in (False, True):
            raw = self.raw_client()
            present, rc, props = raw.open("", clean=clean)
            self.assertEqual((present, rc), (0, 0), "clean start %s" % clean)
            self.assertEqual(len(props.get(P_ASSIGNED_ID, [])), 1)
            raw.send(disconnect_raw())
            self.assertIsNone(raw.expect_closed())

    def test_v311_zero_length_clientid(self):
        # upstream client_test.py test_zero_length_clientid: 3.1.1 refuses an empty client id
        # with CleanSession 0 (return code 0x02, MQTT-3.1.3-8) and accepts it with 1.
        raw = self.raw_client(V311)
        self.assertEqual(raw.open("", clean=False), (0, 2, {}))
        self.assertIsNone(raw.recv_packet(), "connection kept open after CONNACK 0x02")
        raw = self.raw_client(V311)
        self.assertEqual(raw.open("", clean=True), (0, 0, {}))

    # --- offline message queueing -----------------------------------------------------------

    def run_offline_queueing(self, version):
        if version == V5:
            away = self.v5("myclientid", session_expiry=99999)
        else:
            away = self.client(client_id="myclientid", clean=False)
        away.connect()
        self.assertEqual(away.subscribe(WILDTOPICS[5], 2), 2)
        away.disconnect()

        sender = self.client(client_id="myclientid2", version=version)
        self.assertEqual(sender.connect(), (0, 0))
        for qos in range(3):
            sender.publish(TOPICS[qos + 1], b"qos %d" % qos, qos)
        sender.disconnect()

        if version == V5:
            back = self.v5("myclientid", clean=False, session_expiry=99999)
        else:
            back = self.client(client_id="myclientid", clean=False)
        self.assertEqual(back.connect(), (1, 0))
        got = back.expect_messages(2)
        try:
            got.append(back.expect_message(QUIET_S))  # QoS 0 may be queued too
        except AssertionError:
            pass
        back.expect_no_message(QUIET_S)
        payloads = sorted(m.payload for m in got)
        self.assertIn(payloads, ([b"qos 1", b"qos 2"], [b"qos 0", b"qos 1", b"qos 2"]))

    def test_offline_message_queueing(self):
        # upstream client_test5.py test_offline_message_queueing
        self.run_offline_queueing(V5)

    def test_v311_offline_message_queueing(self):
        # upstream client_test.py test_offline_message_queueing (also checks session present)
        self.run_offline_queueing(V311)

    # --- overlapping subscriptions --------------------------------------------------------------

    def run_overlapping(self, version):
        client = self.client(client_id="myclientid", version=version)
        client.connect()
        result, mid = client.paho.subscribe([(WILDTOPICS[6], 2), (WILDTOPICS[0], 1)])
        self.assertEqual(result, 0)
        _, granted = get_event(client.subacks, harness.EVENT_TIMEOUT_S, "SUBACK")
        self.assertEqual([getattr(g, "value", g) for g in granted], [2, 1])
        client.publish(TOPICS[3], b"overlapping topic filters", 2)
        got = [client.expect_message()]
        try:
            got.append(client.expect_message(QUIET_S))
        except AssertionError:
            pass
        client.expect_no_message(QUIET_S)
        # One message at the highest QoS of the matching subscriptions, or one per subscription
        # (MQTT-3.3.4-2 / 3.1.1 3.3.5).
        qoss = sorted(m.qos for m in got)
        self.assertIn(qoss, ([2], [1, 2]))

    def test_overlapping_subscriptions(self):
        # upstream client_test5.py test_overlapping_subscriptions
        self.run_overlapping(V5)

    def test_v311_overlapping_subscriptions(self):
        # upstream client_test.py test_overlapping_subscriptions
        self.run_overlapping(V311)

    # --- keepalive --------------------------------------------------------------------------

    def test_keepalive(self):
        # upstream client_test5.py test_keepalive: the broker ends a connection silent for 1.5 x
        # its keepalive (5 s) and publishes its will. (3.1.1: test_paho.py
        # test_will_published_on_keepalive_timeout.)
        watcher = self.v5("myclientid2", keepalive=0)
        watcher.connect()
        self.assertEqual(watcher.subscribe(TOPICS[4], 2), 2)
        silent = self.raw_client()
        self.assertEqual(silent.open("myclientid", keepalive=5,
                                     will=(TOPICS[4], b"keepalive expiry", 0, False, b""))[1], 0)
        started = time.monotonic()
        message = watcher.expect_message(timeout=WILL_TIMEOUT_S)
        self.assertEqual(message.payload, b"keepalive expiry")
        self.assertGreaterEqual(time.monotonic() - started, 5.0)
        self.assertIn(silent.expect_closed(), (None, 0x8D))  # 0x8D Keep Alive timeout

    # --- redelivery on reconnect ----------------------------------------------------------------

    def run_redelivery(self, version):
        client = self.raw_client(version)
        props = prop_u32(P_SESSION_EXPIRY, 99999)
        self.assertEqual(client.open("myclientid2", clean=False, props=props)[:2], (0, 0))
        self.assertEqual(client.subscribe(1, [(WILDTOPICS[6], 2)]), [2])
        # "Paused": the client publishes to itself and acknowledges nothing it receives.
        client.publish(TOPICS[1], b"", 1, mid=2)
        client.publish(TOPICS[3], b"", 2, mid=3)
        seen = client.collect(lambda seen: len(publishes(seen)) == 2
                              and count(seen, PUBACK) == 1 and count(seen, PUBCOMP) == 1)
        first = {p["topic"]: p for p in publishes(seen)}
        self.assertEqual({t: p["qos"] for t, p in first.items()}, {TOPICS[1]: 1, TOPICS[3]: 2})
        client.send(disconnect_raw() if version == V5 else harness.disconnect_packet())
        client.close()

        again = self.raw_client(version)
        self.assertEqual(again.open("myclientid2", clean=False, props=props)[:2], (1, 0))
        redelivered = publishes(again.collect(lambda seen: len(publishes(seen)) == 2))
        # Resent with the original packet identifiers and the DUP flag (MQTT-4.4.0-1,
        # MQTT-3.3.1-1).
        for item in redelivered:
            self.assertIn(item["topic"], first)
            self.assertEqual((item["qos"], item["mid"], item["dup"]),
                             (first[item["topic"]]["qos"], first[item["topic"]]["mid"], True))
        for item in redelivered:
            if item["qos"] == 1:
                again.send(ack5(PUBACK, item["mid"]))
            else:
                again.send(ack5(PUBREC, item["mid"]))
                again.expect(PUBREL)
                again.send(ack5(PUBCOMP, item["mid"]))
        again.expect_nothing()

    def test_redelivery_on_reconnect(self):
        # upstream client_test5.py test_redelivery_on_reconnect
        self.run_redelivery(V5)

    def test_v311_redelivery_on_reconnect(self):
        # upstream client_test.py test_redelivery_on_reconnect
        self.run_redelivery(V311)

    # --- subscribe failure ----------------------------------------------------------------------

    def run_subscribe_failure(self, version):
        client = self.raw_client(version)
        client.open("myclientid")
        self.assertEqual(client.subscribe(1, [(NOSUBSCRIBE, 2)]), [0x80])
        # The connection goes on; another filter is granted.
        self.assertEqual(client.subscribe(2, [(TOPICS[0], 2)]), [2])

    @unittest.skipIf(harness.is_mosquitto(), "the mosquitto set-up has no ACL for " + NOSUBSCRIBE)
    def test_subscribe_failure(self):
        # upstream client_test5.py test_subscribe_failure
        self.run_subscribe_failure(V5)

    @unittest.skipIf(harness.is_mosquitto(), "the mosquitto set-up has no ACL for " + NOSUBSCRIBE)
    def test_v311_subscribe_failure(self):
        # upstream client_test.py test_subscribe_failure
        self.run_subscribe_failure(V311)

    # --- $ topics -------------------------------------------------------------------------------

    def test_dollar_topics(self):
        # upstream client_test5.py test_dollar_topics (3.1.1: test_paho.py WildcardCases)
        client = self.v5("myclientid2", keepalive=0)
        client.connect()
        self.assertEqual(client.subscribe(WILDTOPICS[5], 2), 2)
        client.publish("$" + TOPICS[1], b"", 1)
        client.expect_no_message(QUIET_S)
        client.publish(TOPICS[1], b"control", 1)  # the subscription itself works
        self.assertEqual(client.expect_message().topic, TOPICS[1])

    # --- unsubscribe ----------------------------------------------------------------------------

    def run_unsubscribe(self, version):
        receiver = self.client(client_id="myclientid2", version=version)
        receiver.connect()
        for topic in TOPICS[:3]:
            self.assertEqual(receiver.subscribe(topic, 2), 2)
        unsubacks = queue.Queue()
        receiver.paho.on_unsubscribe = lambda *args: unsubacks.put(args[2])
        result, mid = receiver.paho.unsubscribe(TOPICS[0])
        self.assertEqual(result, 0)
        self.assertEqual(get_event(unsubacks, harness.EVENT_TIMEOUT_S, "UNSUBACK"), mid)
        sender = self.client(client_id="myclientid", version=version)
        sender.connect()
        for topic in TOPICS[:3]:
            sender.publish(topic, b"to " + topic.encode(), 1)
        got = receiver.expect_messages(2)
        receiver.expect_no_message(QUIET_S)
        self.assertEqual(sorted(m.topic for m in got), sorted(TOPICS[1:3]))

    def test_unsubscribe(self):
        # upstream client_test5.py test_unsubscribe
        self.run_unsubscribe(V5)

    def test_v311_unsubscribe(self):
        # upstream client_test.py test_unsubscribe
        self.run_unsubscribe(V311)

    # --- session expiry -------------------------------------------------------------------------

    def test_session_expiry(self):
        # upstream client_test5.py test_session_expiry
        def connect(clean, expiry):
            raw = self.raw_client()
            present, rc, _ = raw.open("myclientid", clean=clean,
                                      props=prop_u32(P_SESSION_EXPIRY, expiry))
            self.assertEqual(rc, 0)
            return raw, present

        def leave(raw, props=b""):
            raw.send(disconnect_raw(0, props))
            self.assertIsNone(raw.expect_closed())

        # Expiry 0: the session ends with the connection.
        raw, present = connect(True, 0)
        self.assertEqual(present, 0)
        self.assertEqual(raw.subscribe(1, [(TOPICS[0], 2)]), [2])
        leave(raw)
        raw, present = connect(False, 0)
        self.assertEqual(present, 0)
        leave(raw)

        # Expiry 5: present after 2 s, gone after 2 + 6 s.
        raw, present = connect(True, 5)
        self.assertEqual(present, 0)
        self.assertEqual(raw.subscribe(1, [(TOPICS[0], 2)]), [2])
        leave(raw)
        time.sleep(2)
        raw, present = connect(False, 5)
        self.assertEqual(present, 1)
        leave(raw)
        time.sleep(6)
        raw, present = connect(False, 5)
        self.assertEqual(present, 0)
        leave(raw)

        # Expiry 1 at CONNECT, raised to 5 by DISCONNECT: present after 3 s; DISCONNECT with
        # expiry 0 then ends it at once.
        raw, present = connect(True, 1)
        self.assertEqual(present, 0)
        self.assertEqual(raw.subscribe(1, [(TOPICS[0], 2)]), [2])
        leave(raw, prop_u32(P_SESSION_EXPIRY, 5))
        time.sleep(3)
        raw, present = connect(False, 1)
        self.assertEqual(present, 1)
        leave(raw, prop_u32(P_SESSION_EXPIRY, 0))
        raw, present = connect(False, 1)
        self.assertEqual(present, 0)
        leave(raw)

    # --- properties that travel with a message -----------------------------------------------

    def run_properties(self, props, check):
        client = self.v5("myclientid")
        client.connect()
        self.assertEqual(client.subscribe(TOPICS[0], 2), 2)
        for qos in range(3):
            client.publish(TOPICS[0], b"", qos, properties=props)
        got = client.expect_messages(3)
        client.expect_no_message(QUIET_S)
        for message in got:
            check(message.properties)
        self.assertEqual(sorted(m.qos for m in got), [0, 1, 2])

    def test_user_properties(self):
        # upstream client_test5.py test_user_properties
        def check(props):
            self.assertTrue(same_user_props(props.UserProperty), props.UserProperty)
        self.run_properties(props_of(UserProperty=USER_PROPS), check)

    def test_payload_format(self):
        # upstream client_test5.py test_payload_format
        def check(props):
            self.assertEqual((props.PayloadFormatIndicator, props.ContentType), (1, "My name"))
        self.run_properties(props_of(PayloadFormatIndicator=1, ContentType="My name"), check)

    # --- publication (message) expiry ---------------------------------------------------------

    def test_publication_expiry(self):
        # upstream client_test5.py test_publication_expiry
        away = self.v5("myclientid2", session_expiry=99999)
        away.connect()
        self.assertEqual(away.subscribe(TOPICS[0], 2), 2)
        leaving = Properties(PacketTypes.DISCONNECT)
        leaving.SessionExpiryInterval = 999999999
        away.disconnect_with(leaving)

        sender = self.v5("myclientid")
        sender.connect()
        for qos in (1, 2):
            sender.publish(TOPICS[0], b"qos %d - expire" % qos, qos,
                           properties=props_of(MessageExpiryInterval=1))
        sender.publish(TOPICS[0], b"qos 1 - don't expire", 1,
                       properties=props_of(MessageExpiryInterval=6))
        sender.publish(TOPICS[0], b"qos 2 - don't expire", 2,
                       properties=props_of(MessageExpiryInterval=6))
        time.sleep(3)  # the first two expire while the session is away

        back = self.v5("myclientid2", clean=False, session_expiry=99999)
        self.assertEqual(back.connect(), (1, 0))
        got = back.expect_messages(2)
        back.expect_no_message(QUIET_S)
        self.assertEqual(sorted(m.payload for m in got),
                         [b"qos 1 - don't expire", b"qos 2 - don't expire"])
        for message in got:
            # The interval left, less than what was sent (MQTT-3.3.2-6).
            self.assertLess(message.properties.MessageExpiryInterval, 6)

    # --- subscribe options ----------------------------------------------------------------------

    def test_subscribe_options(self):
        # upstream client_test5.py test_subscribe_options
        # No Local: the publisher's own subscription does not get it, the other one does.
        a = self.v5("myclientid")
        b = self.v5("myclientid2")
        a.connect()
        b.connect()
        self.assertEqual(a.subscribe_with([(TOPICS[0], SubscribeOptions(2, noLocal=True))]), [2])
        self.assertEqual(b.subscribe_with([(TOPICS[0], SubscribeOptions(2, noLocal=True))]), [2])
        a.publish(TOPICS[0], b"noLocal test", 1)
        self.assertEqual(b.expect_message().payload, b"noLocal test")
        a.expect_no_message(QUIET_S)
        a.disconnect()
        b.disconnect()

        # Retain As Published: the retain flag is kept on live delivery.
        a = self.v5("myclientid")
        a.connect()
        self.assertEqual(a.subscribe_with([(TOPICS[0], SubscribeOptions(
            2, retainAsPublished=True))]), [2])
        a.publish(TOPICS[0], b"retain as published false", 1)
        a.publish(TOPICS[0], b"retain as published true", 1, retain=True)
        got = a.expect_messages(2)
        self.assertEqual([(m.payload, m.retain) for m in got],
                         [(b"retain as published false", False),
                          (b"retain as published true", True)])
        a.disconnect()

        # Retain Handling 1: retained messages only for a new subscription.
        a = self.v5("myclientid")
        a.connect()
        for qos in range(3):
            a.publish(TOPICS[qos + 1], b"qos %d" % qos, qos, retain=True)
        a.publish("sync/marker", b"", 1)
        rh1 = [(WILDTOPICS[5], SubscribeOptions(2, retainHandling=1))]
        self.assertEqual(a.subscribe_with(rh1), [2])
        self.assertEqual(sorted(m.qos for m in a.expect_messages(3)), [0, 1, 2])
        a.expect_no_message(QUIET_S)
        self.assertEqual(a.subscribe_with(rh1), [2])
        a.expect_no_message(QUIET_S)
        a.disconnect()

        # Retain Handling 2: never.
        a = self.v5("myclientid")
        a.connect()
        rh2 = [(WILDTOPICS[5], SubscribeOptions(2, retainHandling=2))]
        for _ in range(2):
            self.assertEqual(a.subscribe_with(rh2), [2])
            a.expect_no_message(QUIET_S)
        a.disconnect()

        # Retain Handling 0: at every subscribe.
        a = self.v5("myclientid")
        a.connect()
        rh0 = [(WILDTOPICS[5], SubscribeOptions(2, retainHandling=0))]
        for _ in range(2):
            self.assertEqual(a.subscribe_with(rh0), [2])
            self.assertEqual(sorted(m.qos for m in a.expect_messages(3)), [0, 1, 2])
            a.expect_no_message(QUIET_S)

    # --- assigned client id ---------------------------------------------------------------------

    def test_assigned_clientid(self):
        # upstream client_test5.py test_assigned_clientid
        client = self.v5("")
        client.connect()
        props = get_event(client.connacks, harness.EVENT_TIMEOUT_S, "CONNACK properties")
        self.assertNotEqual(getattr(props, "AssignedClientIdentifier", ""), "")

    # --- subscription identifiers ---------------------------------------------------------------

    def test_subscribe_identifiers(self):
        # upstream client_test5.py test_subscribe_identifiers
        a = self.v5("myclientid")
        a.connect()
        sub = Properties(PacketTypes.SUBSCRIBE)
        sub.SubscriptionIdentifier = 456789
        self.assertEqual(a.subscribe_with([(TOPICS[0], SubscribeOptions(2))], sub), [2])
        b = self.v5("myclientid2")
        b.connect()
        sub = Properties(PacketTypes.SUBSCRIBE)
        sub.SubscriptionIdentifier = 2
        self.assertEqual(b.subscribe_with([(TOPICS[0], SubscribeOptions(2))], sub), [2])
        sub = Properties(PacketTypes.SUBSCRIBE)
        sub.SubscriptionIdentifier = 3
        self.assertEqual(b.subscribe_with([(TOPICS[0] + "/#", SubscribeOptions(2))], sub), [2])
        b.publish(TOPICS[0], b"sub identifier test", 1)
        self.assertEqual(a.expect_message().properties.SubscriptionIdentifier, [456789])
        a.expect_no_message(QUIET_S)
        # One message for b's two matching subscriptions, carrying both identifiers.
        self.assertEqual(set(b.expect_message().properties.SubscriptionIdentifier), {2, 3})
        b.expect_no_message(QUIET_S)

    # --- request / response ---------------------------------------------------------------------

    def test_request_response(self):
        # upstream client_test5.py test_request_response
        requester = self.v5("myclientid")
        responder = self.v5("myclientid2")
        requester.connect()
        responder.connect()
        no_local = [(TOPICS[0], SubscribeOptions(2, noLocal=True))]
        self.assertEqual(requester.subscribe_with(no_local), [2])
        self.assertEqual(responder.subscribe_with(no_local), [2])
        requester.publish(TOPICS[0], b"request", 1,
                          properties=props_of(ResponseTopic=TOPICS[0], CorrelationData=b"334"))
        request = responder.expect_message()
        self.assertEqual((request.payload, request.properties.ResponseTopic,
                          request.properties.CorrelationData), (b"request", TOPICS[0], b"334"))
        responder.publish(request.properties.ResponseTopic, b"response", 1,
                          properties=props_of(CorrelationData=request.properties.CorrelationData))
        response = requester.expect_message()
        self.assertEqual((response.payload, response.properties.CorrelationData),
                         (b"response", b"334"))
        requester.expect_no_message(QUIET_S)
        responder.expect_no_message(0.1)

    # --- shared subscriptions -------------------------------------------------------------------

    def test_shared_subscriptions(self):
        # upstream client_test5.py test_shared_subscriptions
        a = self.v5("myclientid")
        b = self.v5("myclientid2")
        a.connect()
        b.connect()
        shared = "$share/sharename/x"
        for client in (a, b):
            self.assertEqual(client.subscribe_with([(shared, SubscribeOptions(2)),
                                                    (TOPICS[0], SubscribeOptions(2))]), [2, 2])
        # A plain subscription: each client gets its own copy.
        b.publish(TOPICS[0], b"plain", 0)
        self.assertEqual(a.expect_message().payload, b"plain")
        self.assertEqual(b.expect_message().payload, b"plain")
        # The shared one: exactly one copy between the two (one queue for both).
        b.messages = a.messages
        b.publish("x", b"shared", 0)
        message = a.expect_message()
        self.assertEqual((message.topic, message.payload), ("x", b"shared"))
        a.expect_no_message(QUIET_S)

    # --- topic aliases --------------------------------------------------------------------------

    def test_client_topic_alias(self):
        # upstream client_test5.py test_client_topic_alias
        # Alias 0 is not permitted (MQTT-3.3.2-8): the broker disconnects, as upstream checks,
        # with Topic Alias invalid or Protocol Error (keelmq: 0x94).
        raw = self.raw_client()
        raw.open("myclientid")
        raw.publish(TOPICS[0], b"topic alias 0", 1, mid=1, props=prop_u16(P_ALIAS, 0))
        self.assertIn(raw.expect_closed(), (TOPIC_ALIAS_INVALID, PROTOCOL_ERROR))

        # The client sets alias 1 and uses it; the subscriber (Topic Alias Maximum 0) gets the
        # full topic both times.
        props = prop_u16(P_ALIAS_MAX, 0) + prop_u32(P_SESSION_EXPIRY, 99999)
        raw = self.raw_client()
        _, rc, connack = raw.open("myclientid", props=props)
        self.assertEqual(rc, 0)
        alias_max = connack.get(P_ALIAS_MAX, [0])[0]
        self.assertGreater(alias_max, 0, "the broker accepts no topic alias")
        self.assertEqual(raw.subscribe(1, [(TOPICS[0], 2)]), [2])
        raw.publish(TOPICS[0], b"topic alias 1", 1, mid=2, props=prop_u16(P_ALIAS, 1))
        raw.publish("", b"topic alias 2", 1, mid=3, props=prop_u16(P_ALIAS, 1))
        seen = raw.collect(lambda seen: len(publishes(seen)) == 2 and count(seen, PUBACK) == 2)
        self.assertEqual([(p["topic"], p["payload"], prop_values(p["props"], P_ALIAS))
                          for p in publishes(seen)],
                         [(TOPICS[0], b"topic alias 1", []), (TOPICS[0], b"topic alias 2", [])])
        for item in publishes(seen):
            raw.send(ack5(PUBACK, item["mid"]))
        raw.send(disconnect_raw())
        self.assertIsNone(raw.expect_closed())

        # Aliases belong to a connection: the session (and its subscription) comes back, alias 1
        # does not.
        raw = self.raw_client()
        self.assertEqual(raw.open("myclientid", clean=False, props=props)[:2], (1, 0))
        raw.publish(TOPICS[0], b"topic alias 3", 1, mid=4)
        seen = raw.collect(lambda seen: len(publishes(seen)) == 1 and count(seen, PUBACK) == 1)
        self.assertEqual(publishes(seen)[0]["payload"], b"topic alias 3")
        raw.send(ack5(PUBACK, publishes(seen)[0]["mid"]))
        raw.publish("", b"topic alias 4", 1, mid=5, props=prop_u16(P_ALIAS, 1))
        # An empty topic with an alias the connection has not set: Protocol Error (3.3.4);
        # upstream only requires a disconnect.
        self.assertIn(raw.expect_closed(), (PROTOCOL_ERROR, TOPIC_ALIAS_INVALID))

    def run_own_publishes(self, client_id, props):
        """Connects raw with CONNECT properties `props`, subscribes to TOPICS[0] and publishes
        to it at QoS 0, 1 and 2; returns the three PUBLISH packets it gets back."""
        raw = self.raw_client()
        self.assertEqual(raw.open(client_id, props=props)[1], 0)
        self.assertEqual(raw.subscribe(1, [(TOPICS[0], 2)]), [2])
        for qos in range(3):
            raw.publish(TOPICS[0], b"topic alias %d" % qos, qos, mid=10 + qos)
        seen = raw.collect(lambda seen: len(publishes(seen)) == 3 and count(seen, PUBACK) == 1
                           and count(seen, PUBCOMP) == 1)
        got = publishes(seen)
        self.assertEqual([p["payload"] for p in got],
                         [b"topic alias 0", b"topic alias 1", b"topic alias 2"])
        return got

    @unittest.skipIf(harness.is_mosquitto(), "mosquitto 2.0 sends no topic aliases to clients")
    def test_server_topic_alias(self):
        # upstream client_test5.py test_server_topic_alias
        # Topic Alias Maximum 1: the first PUBLISH sets an alias, the next two use it alone.
        got = self.run_own_publishes("myclientid", prop_u16(P_ALIAS_MAX, 1))
        alias = prop_values(got[0]["props"], P_ALIAS)
        self.assertEqual((got[0]["topic"], len(alias)), (TOPICS[0], 1))
        self.assertGreater(alias[0], 0)
        for item in got[1:]:
            self.assertEqual((item["topic"], prop_values(item["props"], P_ALIAS)), ("", alias))

    def test_server_topic_alias_none_when_not_allowed(self):
        # upstream client_test5.py test_server_topic_alias, second and third parts: without a
        # Topic Alias Maximum, or with 0, the broker sends no alias (MQTT-3.3.2-9).
        for index, props in enumerate((b"", prop_u16(P_ALIAS_MAX, 0))):
            for item in self.run_own_publishes("myclientid%d" % index, props):
                self.assertEqual((item["topic"], prop_values(item["props"], P_ALIAS)),
                                 (TOPICS[0], []))

    # --- maximum packet size --------------------------------------------------------------------

    def test_maximum_packet_size_client(self):
        # upstream client_test5.py test_maximum_packet_size, client half: a message that would
        # make a PUBLISH larger than the client's Maximum Packet Size (64) is not sent to it
        # (MQTT-3.1.2-25).
        raw = self.raw_client()
        self.assertEqual(raw.open("myclientid", props=prop_u32(P_MAX_PACKET, 64))[1], 0)
        self.assertEqual(raw.subscribe(1, [(TOPICS[0], 2)]), [2])
        raw.publish(TOPICS[0], b"." * 32, 0)
        self.assertEqual(raw.publish_of(*raw.expect(PUBLISH))["payload"], b"." * 32)
        raw.publish(TOPICS[0], b"." * 64, 1, mid=7)
        self.assertEqual(struct.unpack("!H", raw.expect(PUBACK)[1][:2])[0], 7)
        raw.expect_nothing()

    # --- server keep alive ----------------------------------------------------------------------

    def test_server_keep_alive(self):
        # upstream client_test5.py test_server_keep_alive (broker: mqtt.keepalive_max = 60)
        raw = self.raw_client()
        _, rc, props = raw.open("myclientid", keepalive=120)
        self.assertEqual((rc, props.get(P_SERVER_KEEP_ALIVE)), (0, [60]))

    # --- flow control ---------------------------------------------------------------------------

    def test_flow_control1(self):
        # upstream client_test5.py test_flow_control1: the broker sends at most the client's
        # Receive Maximum (2) unacknowledged QoS 1 messages (MQTT-3.3.4-9).
        raw = self.raw_client()
        props = prop_u16(P_RECEIVE_MAX, 2) + prop_u32(P_SESSION_EXPIRY, 0)
        self.assertEqual(raw.open("myclientid", props=props)[1], 0)
        self.assertEqual(raw.subscribe(1, [(TOPICS[0], 2)]), [2])
        for index in range(1, 4):
            raw.publish(TOPICS[0], b"message %d" % index, 1, mid=index)
        seen = raw.collect(lambda seen: len(publishes(seen)) == 2 and count(seen, PUBACK) == 3)
        first, second = publishes(seen)
        self.assertEqual((first["qos"], second["qos"]), (1, 1))
        raw.expect_nothing()  # the third waits for an acknowledgement
        raw.send(ack5(PUBACK, first["mid"]))
        third = raw.publish_of(*raw.expect(PUBLISH))
        self.assertEqual((third["qos"], third["payload"]), (1, b"message 3"))
        raw.send(ack5(PUBACK, second["mid"]))
        raw.send(ack5(PUBACK, third["mid"]))
        raw.expect_nothing(0.2)

    def test_flow_control2(self):
        # upstream client_test5.py test_flow_control2: a client exceeding the broker's Receive
        # Maximum with QoS 2 publishes gets DISCONNECT 0x93 (MQTT-3.3.4-8).
        raw = self.raw_client()
        _, rc, props = raw.open("myclientid", props=prop_u32(P_SESSION_EXPIRY, 0))
        self.assertEqual(rc, 0)
        receive_max = props.get(P_RECEIVE_MAX, [65535])[0]
        self.assertLess(receive_max, 1000, "too many publishes to exceed it here")
        for mid in range(1, receive_max + 2):
            raw.publish(TOPICS[0], b"message %d" % mid, 2, mid=mid)
        # No PUBREL: each stays unacknowledged. PUBRECs may come before the DISCONNECT (as
        # many as were within the maximum), as upstream reads them.
        recs = 0
        while True:
            kind, _, body = raw.next_packet()
            if kind != PUBREC:
                break
            recs += 1
        self.assertLessEqual(recs, receive_max)
        self.assertEqual((kind, body[0]), (DISCONNECT, RECEIVE_MAX_EXCEEDED))
        self.assertIsNone(raw.recv_packet(), "socket still open after DISCONNECT")

    # --- will delay -----------------------------------------------------------------------------

    def test_will_delay(self):
        # upstream client_test5.py test_will_delay: a will is sent after its delay or when the
        # session ends, whichever is first (MQTT-3.1.3-9); durations as upstream checks them.
        watcher = self.v5("myclientid2")
        watcher.connect()
        self.assertEqual(watcher.subscribe(TOPICS[0], 2), 2)
        for delay, expiry, low, high in ((3, 5, 3.0, 5.0), (5, 0, 0.0, 2.0), (5, 2, 2.0, 4.0)):
            leaver = self.raw_client()
            will = (TOPICS[0], b"test_will_delay will message", 0, False,
                    prop_u32(P_WILL_DELAY, delay))
            self.assertEqual(leaver.open("myclientid", props=prop_u32(P_SESSION_EXPIRY, expiry),
                                         will=will)[:2], (0, 0))
            leaver.close()  # no DISCONNECT
            started = time.monotonic()
            message = watcher.expect_message(timeout=WILL_TIMEOUT_S)
            elapsed = time.monotonic() - started
            self.assertEqual((message.topic, message.payload),
                             (TOPICS[0], b"test_will_delay will message"))
            self.assertTrue(low <= elapsed <= high, "will delay %d, session expiry %d: will "
                            "after %.1f s" % (delay, expiry, elapsed))


class InteropSmallPacketCases:
    """The server half of upstream test_maximum_packet_size needs a server Maximum Packet Size
    below 65535."""

    broker_options = {"mqtt.max_packet_size": "4096"}

    def test_maximum_packet_size_server(self):
        # upstream client_test5.py test_maximum_packet_size, server half: CONNACK announces the
        # maximum; a PUBLISH of that many payload bytes is too large: DISCONNECT 0x95.
        raw = Raw(self.broker)
        self.addCleanup(raw.close)
        _, rc, props = raw.open("myclientid")
        self.assertEqual((rc, props.get(P_MAX_PACKET)), (0, [4096]))
        raw.publish(TOPICS[0], b"." * 4096, 0)
        self.assertEqual(raw.expect_closed(), PACKET_TOO_LARGE)


per_shard_count(InteropCases, globals())
per_shard_count(InteropSmallPacketCases, globals())

if __name__ == "__main__":
    unittest.main()
