"""MQTT 5 server properties and IoT conventions, end to end.

- CONNACK properties (receive maximum, maximum packet size, topic alias maximum, retain /
  wildcard / subscription identifier / shared subscription available, assigned client id,
  server keep alive, response information), checked byte-exact with raw packets and as paho
  MQTTv5 reports them; an Authentication Method is refused with 0x8C; a retained PUBLISH is
  DISCONNECT 0x9A when retain is unavailable.
- Reason strings on failures, and the Request Problem Information = 0 rule (MQTT-3.1.2-29):
  none on PUBCOMP/SUBACK then, still on CONNACK and DISCONNECT; never past the client's
  Maximum Packet Size.
- Redirects (mqtt.redirect_to): CONNACK 0x9C / 0x9D with a Server Reference, v3 gets 0x03.
- P2P (mqtt.p2p): {parent}/p2p/{client id} reaches that client only, across shards, and an
  offline persistent session gets it when it returns, also after kill -9.
- GroupID@@@DeviceID client ids (mqtt.client_id_format = group_device).
"""
import queue
import struct
import unittest

import paho.mqtt.client as mqtt

from harness import (CONNACK, DISCONNECT, HOST, PUBLISH, SUBACK, encode_string, encode_varint,
                     get_event, home_shards, is_mosquitto, packet, per_shard_count)

PUBREL, PUBCOMP, SUBSCRIBE, UNSUBSCRIBE, UNSUBACK = 6, 7, 8, 10, 11

# Property ids (MQTT 5.0 table 2-4).
P_REQ_PROBLEM, P_REQ_RESPONSE, P_RESPONSE_INFO = 0x17, 0x19, 0x1A
P_ASSIGNED_ID, P_SERVER_KEEPALIVE, P_SERVER_REF, P_REASON = 0x12, 0x13, 0x1C, 0x1F
P_RECEIVE_MAX, P_ALIAS_MAX, P_TOPIC_ALIAS, P_RETAIN_AVAIL = 0x21, 0x22, 0x23, 0x25
P_MAX_PACKET, P_WILDCARD, P_SUB_ID_AVAIL, P_SHARED = 0x27, 0x28, 0x29, 0x2A
P_SESSION_EXPIRY = 0x11

BYTE_PROPS = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
U16_PROPS = {0x13, 0x21, 0x22, 0x23}
U32_PROPS = {0x02, 0x11, 0x18, 0x27}
STRING_PROPS = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
BINARY_PROPS = {0x09, 0x16}


def encode_props(props):
    """props: list of (id, value) with ints or str; returns the block with its length."""
    out = b""
    for pid, value in props:
        out += bytes([pid])
        if pid in BYTE_PROPS:
            out += bytes([value])
        elif pid in U16_PROPS:
            out += struct.pack("!H", value)
        elif pid in U32_PROPS:
            out += struct.pack("!I", value)
        elif pid in STRING_PROPS:
            out += encode_string(value)
        else:
            raise AssertionError("property 0x%02x not supported here" % pid)
    return encode_varint(len(out)) + out


def decode_props(data, offset):
    """Decodes a property block at data[offset:]; returns (dict id -> value, end offset)."""
    length, used = 0, 0
    shift = 0
    while True:
        byte = data[offset + used]
        length |= (byte & 0x7F) << shift
        shift += 7
        used += 1
        if not byte & 0x80:
            break
    pos, end = offset + used, offset + used + length
    props = {}
    while pos < end:
        pid = data[pos]
        pos += 1
        if pid in BYTE_PROPS:
            value, pos = data[pos], pos + 1
        elif pid in U16_PROPS:
            (value,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif pid in U32_PROPS:
            (value,) = struct.unpack_from("!I", data, pos)
            pos += 4
        elif pid in STRING_PROPS or pid in BINARY_PROPS:
            (n,) = struct.unpack_from("!H", data, pos)
            value = data[pos + 2:pos + 2 + n]
            value = value.decode() if pid in STRING_PROPS else value
            pos += 2 + n
        elif pid == 0x26:
            (n,) = struct.unpack_from("!H", data, pos)
            (m,) = struct.unpack_from("!H", data, pos + 2 + n)
            value = (data[pos + 2:pos + 2 + n], data[pos + 4 + n:pos + 4 + n + m])
            pos += 4 + n + m
            props.setdefault(pid, []).append(value)
            continue
        else:
            raise AssertionError("unknown property 0x%02x from the broker" % pid)
        if pid in props:
            raise AssertionError("property 0x%02x twice" % pid)
        props[pid] = value
    if pos != end:
        raise AssertionError("property block overruns")
    return props, end


def connect5(client_id, props=(), keepalive=60, clean=True):
    body = encode_string("MQTT") + bytes([5, 0x02 if clean else 0]) + struct.pack("!H", keepalive)
    body += encode_props(list(props)) + encode_string(client_id)
    return packet(1, 0, body)


def connect3(client_id, keepalive=60):
    body = encode_string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive)
    return packet(1, 0, body + encode_string(client_id))


class RawSession:
    """A raw connection that has sent CONNECT and read CONNACK: (session_present, rc, props)."""

    def __init__(self, case, client_id, props=(), version=5, keepalive=60, clean=True):
        self.raw = case.raw(version=version)
        if version == 5:
            self.raw.send(connect5(client_id, props, keepalive, clean))
        else:
            self.raw.send(connect3(client_id, keepalive))
        kind, _, body = self.raw.recv_packet()
        case.assertEqual(kind, CONNACK)
        self.present, self.rc = body[0] & 1, body[1]
        self.props = decode_props(body, 2)[0] if version == 5 and len(body) > 2 else {}

    def expect(self, kind):
        got = self.raw.recv_packet()
        if got is None:
            raise AssertionError("connection closed while waiting for packet type %d" % kind)
        if got[0] != kind:
            raise AssertionError("expected packet type %d, got %d" % (kind, got[0]))
        return got[2]

    def expect_closed(self):
        got = self.raw.recv_packet()
        if got is not None:
            raise AssertionError("expected the broker to close, got packet type %d" % got[0])


def pubcomp_for_unknown_pubrel(session, mid=77):
    """Sends PUBREL for a packet id the broker does not hold: PUBCOMP 0x92 comes back.
    Returns (rc, props)."""
    session.raw.send(packet(PUBREL, 0x02, struct.pack("!H", mid)))
    body = session.expect(PUBCOMP)
    (got_mid,) = struct.unpack_from("!H", body, 0)
    assert got_mid == mid
    rc = body[2] if len(body) > 2 else 0
    props = decode_props(body, 3)[0] if len(body) > 3 else {}
    return rc, props


def subscribe5(mid, filters):
    body = struct.pack("!H", mid) + encode_props([])
    for topic, options in filters:
        body += encode_string(topic) + bytes([options])
    return packet(SUBSCRIBE, 0x02, body)


def unsubscribe5(mid, filters):
    body = struct.pack("!H", mid) + encode_props([])
    for topic in filters:
        body += encode_string(topic)
    return packet(UNSUBSCRIBE, 0x02, body)


def paho_connack(case, client_id):
    """Connects a paho MQTTv5 client; returns (reason code, CONNACK properties) as paho saw
    them."""
    events = queue.Queue()
    client = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5, reconnect_on_failure=False)
    client.on_connect = lambda c, u, flags, rc, props=None: events.put((rc, props))
    client.connect(HOST, case.broker.port, 60)
    client.loop_start()
    case.addCleanup(client.loop_stop)
    case.addCleanup(client.disconnect)
    return get_event(events, 5.0, "CONNACK")


# -------------------------------------------------------------------------------------------
# 9. Server properties

class ConnackPropertiesCases:
    broker_options = {"mqtt.max_packet_size": "65536", "mqtt.max_inflight": "20",
                      "mqtt.max_topic_alias": "7"}

    def test_connack_carries_every_server_property(self):
        session = RawSession(self, "props-every")
        self.assertEqual(session.rc, 0)
        self.assertEqual(session.props, {
            P_RECEIVE_MAX: 20, P_MAX_PACKET: 65536, P_ALIAS_MAX: 7, P_RETAIN_AVAIL: 1,
            P_WILDCARD: 1, P_SUB_ID_AVAIL: 1, P_SHARED: 1,
        })  # no assigned id (one was given), no server keep alive (60 s kept), no response info

    def test_assigned_client_identifier_for_an_empty_id(self):
        session = RawSession(self, "")
        self.assertEqual(session.rc, 0)
        self.assertRegex(session.props[P_ASSIGNED_ID], r"^keelmq-\d+-[0-9a-f]+$")
        second = RawSession(self, "")
        self.assertNotEqual(second.props[P_ASSIGNED_ID], session.props[P_ASSIGNED_ID])

    def test_response_information_is_not_sent_unless_configured(self):
        session = RawSession(self, "resp-unset", props=[(P_REQ_RESPONSE, 1)])
        self.assertEqual(session.rc, 0)
        self.assertNotIn(P_RESPONSE_INFO, session.props)

    def test_authentication_method_is_refused_with_0x8c(self):
        # Enhanced authentication is not offered: MQTT-4.12 lets a server refuse a method it
        # does not support with 0x8C.
        session = RawSession(self, "auth-method", props=[(0x15, "SCRAM-SHA-1")])
        self.assertEqual(session.rc, 0x8C)
        self.assertEqual(session.props.get(P_REASON), "authentication method not supported")
        session.expect_closed()

    def test_paho_sees_the_connack_properties(self):
        rc, props = paho_connack(self, "paho-props")
        self.assertEqual(rc.value, 0)
        self.assertEqual(props.ReceiveMaximum, 20)
        self.assertEqual(props.MaximumPacketSize, 65536)
        self.assertEqual(props.TopicAliasMaximum, 7)
        self.assertEqual(props.RetainAvailable, 1)
        self.assertEqual(props.WildcardSubscriptionAvailable, 1)
        self.assertEqual(props.SubscriptionIdentifierAvailable, 1)
        self.assertEqual(props.SharedSubscriptionAvailable, 1)


class ServerKeepaliveCases:
    broker_options = {"mqtt.keepalive_max": "30", "mqtt.retain_available": "false",
                      "mqtt.response_information": "reply/keelmq/"}

    def test_server_keep_alive_when_the_broker_lowers_it(self):
        session = RawSession(self, "ka-high", keepalive=120)
        self.assertEqual(session.rc, 0)
        self.assertEqual(session.props[P_SERVER_KEEPALIVE], 30)
        self.assertEqual(session.props[P_RETAIN_AVAIL], 0)
        kept = RawSession(self, "ka-low", keepalive=20)
        self.assertNotIn(P_SERVER_KEEPALIVE, kept.props)

    def test_retained_publish_is_refused_when_retain_is_unavailable(self):
        session = RawSession(self, "no-retain")
        self.assertEqual(session.props[P_RETAIN_AVAIL], 0)
        session.raw.send(packet(PUBLISH, 0x01, encode_string("r/t") + encode_props([]) + b"x"))
        body = session.expect(DISCONNECT)
        self.assertEqual(body[0], 0x9A)  # MQTT-3.3.1-11: Retain not supported
        session.expect_closed()

    def test_response_information_only_on_request(self):
        asked = RawSession(self, "resp-asked", props=[(P_REQ_RESPONSE, 1)])
        self.assertEqual(asked.props[P_RESPONSE_INFO], "reply/keelmq/")
        silent = RawSession(self, "resp-silent")
        self.assertNotIn(P_RESPONSE_INFO, silent.props)
        declined = RawSession(self, "resp-declined", props=[(P_REQ_RESPONSE, 0)])
        self.assertNotIn(P_RESPONSE_INFO, declined.props)


class ReasonStringCases:
    def test_failed_pubcomp_has_a_reason_string(self):
        session = RawSession(self, "reason-on")
        rc, props = pubcomp_for_unknown_pubrel(session)
        self.assertEqual(rc, 0x92)
        self.assertEqual(props.get(P_REASON), "packet identifier not found")

    def test_no_reason_string_on_acks_when_problem_information_is_off(self):
        session = RawSession(self, "reason-off", props=[(P_REQ_PROBLEM, 0)])
        rc, props = pubcomp_for_unknown_pubrel(session)
        self.assertEqual(rc, 0x92)
        self.assertNotIn(P_REASON, props)
        self.assertNotIn(0x26, props)

    def test_failed_suback_entry_and_unsuback(self):
        for problem, expected in ((1, True), (0, False)):
            session = RawSession(self, "suback-%d" % problem, props=[(P_REQ_PROBLEM, problem)])
            session.raw.send(subscribe5(5, [("ok/topic", 1), ("$share//bad", 1)]))
            body = session.expect(SUBACK)
            props, end = decode_props(body, 2)
            self.assertEqual(body[end], 1)
            self.assertGreaterEqual(body[end + 1], 0x80)
            self.assertEqual(P_REASON in props, expected, props)
            session.raw.send(unsubscribe5(6, ["ok/topic", "$share//bad"]))
            body = session.expect(UNSUBACK)
            props, end = decode_props(body, 2)
            self.assertEqual(list(body[end:]), [0x00, 0x8F])
            self.assertEqual(props.get(P_REASON), "topic filter invalid" if expected else None)

    def test_disconnect_keeps_its_reason_string_when_problem_information_is_off(self):
        for problem in (1, 0):
            session = RawSession(self, "alias-%d" % problem, props=[(P_REQ_PROBLEM, problem)])
            body = encode_string("") + encode_props([(P_TOPIC_ALIAS, 999)]) + b"x"
            session.raw.send(packet(PUBLISH, 0, body))
            body = session.expect(DISCONNECT)
            self.assertEqual(body[0], 0x94)
            self.assertEqual(decode_props(body, 1)[0].get(P_REASON), "topic alias out of range")
            session.expect_closed()

    def test_refused_connack_keeps_its_reason_string_when_problem_information_is_off(self):
        session = RawSession(self, "x" * 300, props=[(P_REQ_PROBLEM, 0)])
        self.assertEqual(session.rc, 0x85)
        self.assertEqual(session.props.get(P_REASON), "client identifier not valid")
        session.expect_closed()

    def test_reason_string_dropped_beyond_the_client_maximum_packet_size(self):
        # PUBCOMP 0x92 with its 27-byte string would be 36 bytes; the client takes 30.
        session = RawSession(self, "small-max", props=[(P_MAX_PACKET, 30)])
        rc, props = pubcomp_for_unknown_pubrel(session)
        self.assertEqual(rc, 0x92)
        self.assertNotIn(P_REASON, props)
        refused = RawSession(self, "y" * 300, props=[(P_MAX_PACKET, 20)])
        self.assertEqual(refused.rc, 0x85)
        self.assertNotIn(P_REASON, refused.props)

    def test_packet_too_large_disconnect_says_why(self):
        session = RawSession(self, "too-large")
        session.raw.send(bytes([0x30]) + encode_varint(2 * 1048576))
        body = session.expect(DISCONNECT)
        self.assertEqual(body[0], 0x95)
        self.assertEqual(decode_props(body, 1)[0].get(P_REASON), "max packet size exceeded")


class RedirectCases:
    broker_options = {"mqtt.redirect_to": "other.example:1883"}

    def test_v5_connect_is_told_to_use_another_server(self):
        session = RawSession(self, "redirect-me")
        self.assertEqual(session.rc, 0x9C)
        self.assertEqual(session.props[P_SERVER_REF], "other.example:1883")
        self.assertEqual(session.props[P_REASON], "use another server")
        session.expect_closed()

    def test_v3_connect_is_refused_as_server_unavailable(self):
        session = RawSession(self, "redirect-v3", version=4)
        self.assertEqual(session.rc, 0x03)
        session.expect_closed()

    def test_paho_sees_the_server_reference(self):
        rc, props = paho_connack(self, "paho-redirect")
        self.assertEqual(rc.value, 0x9C)
        self.assertEqual(props.ServerReference, "other.example:1883")


class PermanentRedirectCases:
    broker_options = {"mqtt.redirect_to": "[::1]:8883", "mqtt.redirect_permanent": "true"}

    def test_server_moved(self):
        session = RawSession(self, "moved")
        self.assertEqual(session.rc, 0x9D)
        self.assertEqual(session.props[P_SERVER_REF], "[::1]:8883")
        session.expect_closed()


# -------------------------------------------------------------------------------------------
# 10. IoT conventions

class P2PCases:
    broker_options = {"mqtt.p2p": "on"}

    def test_p2p_reaches_the_target_only_at_the_publish_qos(self):
        target = self.connected(client_id="dev-target", version=5)
        spy = self.connected(client_id="dev-spy", version=5)
        self.assertEqual(spy.subscribe("app/p2p/#", 2), 2)
        self.assertEqual(spy.subscribe("app/p2p/dev-target", 2), 2)
        pub = self.connected(client_id="dev-pub", version=5)
        for qos in (0, 1, 2):
            pub.publish("app/p2p/dev-target", b"hello-%d" % qos, qos=qos)
            message = target.expect_message()
            self.assertEqual((message.topic, message.payload, message.qos),
                             ("app/p2p/dev-target", b"hello-%d" % qos, qos))
        pub.publish("a/b/c/p2p/dev-target", b"deep", qos=1)
        self.assertEqual(target.expect_message().payload, b"deep")
        spy.expect_no_message(1.0)
        # An ordinary topic still goes to subscribers.
        pub.publish("app/other", b"plain", qos=1)
        target.expect_no_message(0.3)

    def test_p2p_is_never_retained(self):
        target = self.connected(client_id="ret-target", version=5)
        pub = self.connected(client_id="ret-pub", version=5)
        pub.publish("x/p2p/ret-target", b"r", qos=1, retain=True)
        message = target.expect_message()
        self.assertEqual((message.payload, message.retain), (b"r", False))
        late = self.connected(client_id="ret-late", version=5)
        late.subscribe("x/#", 1)
        late.expect_no_message(0.5)

    def test_p2p_across_shards(self):
        targets = [self.connected(client_id="fleet-%d" % index, version=4) for index in range(8)]
        pub = self.connected(client_id="fleet-pub", version=5)
        for index in range(8):
            pub.publish("fleet/p2p/fleet-%d" % index, b"to-%d" % index, qos=1)
        for index, target in enumerate(targets):
            message = target.expect_message()
            self.assertEqual(message.payload, b"to-%d" % index)
        if self.shards > 1:
            pub_shard, *target_shards = home_shards(
                self.broker, ["fleet-pub"] + ["fleet-%d" % index for index in range(8)])
            self.assertTrue(any(shard != pub_shard for shard in target_shards),
                            "every target shares the publisher's shard")
        for target in targets:
            target.expect_no_message(0.2)

    def offline_target(self, client_id, version):
        if version == 5:
            target = self.client(client_id=client_id, version=5, clean=False,
                                 session_expiry=3600)
        else:
            target = self.client(client_id=client_id, version=4, clean=False)
        target.connect()
        target.disconnect()
        return target

    def publish_to(self, client_id, qos_list):
        pub = self.connected(client_id="p2p-sender", version=5)
        for index, qos in enumerate(qos_list):
            pub.publish("cmd/p2p/%s" % client_id, b"m%d" % index, qos=qos)
        pub.disconnect()

    def test_offline_persistent_session_gets_p2p_when_it_returns(self):
        self.offline_target("away-5", 5)
        self.publish_to("away-5", [1, 2, 1])
        back = self.client(client_id="away-5", version=5, clean=False, session_expiry=3600)
        self.assertEqual(back.connect()[0], 1)
        got = back.expect_messages(3)
        # paho hands a QoS 2 message over at PUBREL, so it may come after a later QoS 1 one.
        self.assertEqual(sorted((m.payload, m.qos) for m in got),
                         [(b"m0", 1), (b"m1", 2), (b"m2", 1)])
        back.expect_no_message(0.5)

    def test_offline_p2p_survives_kill_9(self):
        self.offline_target("crash-5", 5)
        self.offline_target("crash-3", 4)
        self.publish_to("crash-5", [1, 2])
        self.publish_to("crash-3", [1, 1])
        self.broker.crash()
        self.broker.start()
        for client_id, version, expected in (("crash-5", 5, [(b"m0", 1), (b"m1", 2)]),
                                             ("crash-3", 4, [(b"m0", 1), (b"m1", 1)])):
            if version == 5:
                back = self.client(client_id=client_id, version=5, clean=False,
                                   session_expiry=3600)
            else:
                back = self.client(client_id=client_id, version=4, clean=False)
            self.assertEqual(back.connect()[0], 1)
            got = back.expect_messages(2)
            self.assertEqual(sorted((m.payload, m.qos) for m in got), expected)
            back.expect_no_message(0.5)


class P2POffCases:
    def test_p2p_topics_are_ordinary_when_off(self):
        target = self.connected(client_id="plain-target", version=5)
        spy = self.connected(client_id="plain-spy", version=5)
        spy.subscribe("app/p2p/+", 1)
        pub = self.connected(client_id="plain-pub", version=5)
        pub.publish("app/p2p/plain-target", b"x", qos=1)
        self.assertEqual(spy.expect_message().payload, b"x")
        target.expect_no_message(0.5)


class GroupDeviceCases:
    broker_options = {"mqtt.client_id_format": "group_device"}

    def test_group_device_ids_are_accepted_and_the_group_is_logged(self):
        session = RawSession(self, "GID_sensors@@@dev-001")
        self.assertEqual(session.rc, 0)
        self.broker.await_log(r"connect client=GID_sensors@@@dev-001 .* group=GID_sensors$")
        v3 = RawSession(self, "G@@@D", version=4)
        self.assertEqual(v3.rc, 0)
        edge = RawSession(self, "g" * 64 + "@@@" + "d" * 64)
        self.assertEqual(edge.rc, 0)

    def test_other_ids_are_refused(self):
        bad = ["plain-id", "@@@dev", "group@@@", "a@@@b@@@c", "g" * 65 + "@@@d",
               "g@@@" + "d" * 65, "", "g@@d"]
        for client_id in bad:
            session = RawSession(self, client_id)
            self.assertEqual(session.rc, 0x85, client_id)
            session.expect_closed()
            v3 = RawSession(self, client_id, version=4)
            self.assertEqual(v3.rc, 0x02, client_id)
            v3.expect_closed()


if not is_mosquitto():
    per_shard_count(ConnackPropertiesCases, globals())
    per_shard_count(ServerKeepaliveCases, globals())
    per_shard_count(ReasonStringCases, globals())
    per_shard_count(RedirectCases, globals())
    per_shard_count(PermanentRedirectCases, globals())
    per_shard_count(P2PCases, globals())
    per_shard_count(P2POffCases, globals())
    per_shard_count(GroupDeviceCases, globals())

if __name__ == "__main__":
    unittest.main()
