"""Shared subscriptions ($share/{group}/{filter}, MQTT 5.0 4.8.2), end to end, with paho
MQTTv5 and MQTT 3.1.1 clients and raw packets, at every shard count of KEELMQ_SHARDS.

- A group gets every message once, spread over its members (round_robin: every member gets
  some); two groups on one filter each get every message; a plain subscriber gets every one.
- Policies: hash keeps each publisher's messages on one member, in order; random reaches every
  member, once per message; sticky sends all to one member while it stays.
- A member that leaves with unacknowledged QoS 1 messages (a raw client that never PUBACKs):
  they go to another member, whether its session ends or (persistent) it only disconnects.
- All members persistent and offline: what is published meanwhile goes to the first that
  returns, read from the log through the group's durable cursor, also after kill -9.
- A persistent member holding deliveries unacknowledged while online when the broker stops or
  is killed gets them after the restart (at least once); deliveries it acknowledged do not
  come again.
- Per member: granted QoS and subscription identifier. No retained messages on a shared
  SUBSCRIBE; No Local on a shared subscription is a Protocol Error; mqtt.shared_subscriptions
  = false gives SUBACK 0x9E (3.1.1: 0x80) and CONNACK Shared Subscription Available = 0.

The owner shard of a group learns of a member a ring hop after the SUBACK, so tests await the
broker's "member group=... online_members=N" log line before publishing.

keelmq only (the log lines); skipped under KEELMQ_E2E_BROKER=mosquitto.
"""
import queue
import re
import struct
import time
import unittest

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from harness import (CONNACK, DISCONNECT, EVENT_TIMEOUT_S, PINGREQ, PUBACK, PUBLISH, QUIET_S,
                     SUBACK, connect_packet, decode_varint, encode_string, get_event,
                     is_mosquitto, packet, parse_publish, per_shard_count, subscribe_packet)

SUBSCRIBE = 8
PUBREC, PUBREL, PUBCOMP, PINGRESP = 5, 6, 7, 13
P_SHARED = 0x2A


def await_group(broker, group, online):
    """Waits until the group's owner reports `online` online members."""
    broker.await_log(r"(member|left) group=%s .*online_members=%d\b" % (re.escape(group), online))


def join_group(case, group, count, qos=1, versions=(5,), prefix="m"):
    """`count` connected members of `group` (client ids prefix0, prefix1, ...), awaited."""
    clients = []
    for index in range(count):
        version = versions[index % len(versions)]
        client = case.connected(client_id="%s%d" % (prefix, index), version=version)
        case.assertEqual(client.subscribe(group, qos), qos)
        clients.append(client)
    await_group(case.broker, group, count)
    return clients


def raw_member(case, client_id, group, clean=True, version=5, qos=1):
    """A raw member of `group` (it acknowledges nothing by itself), its SUBACK checked."""
    raw = case.raw(version=version)
    kwargs = {"session_expiry": 300} if (version == 5 and not clean) else {}
    raw.connect(client_id, clean=clean, **kwargs)
    raw.send(subscribe_packet(1, [(group, qos)], version=version))
    case.assertEqual(raw_suback(raw, version), bytes([qos]))
    return raw


class Inbox:
    """One queue for the messages of several paho clients: (member index, message)."""

    def __init__(self, clients):
        self.events = queue.Queue()
        for index, client in enumerate(clients):
            client.paho.on_message = (lambda i: lambda c, u, m: self.events.put((i, m)))(index)

    def take(self, count, timeout=30.0):
        deadline = time.monotonic() + timeout
        return [get_event(self.events, deadline - time.monotonic(),
                          "message %d of %d" % (n + 1, count)) for n in range(count)]

    def expect_none(self, window_s=0.5):
        try:
            index, message = self.events.get(timeout=window_s)
        except queue.Empty:
            return
        raise AssertionError("unexpected message to member %d: %r" % (index, message.payload))


def publish_many(client, topic, payloads, qos=1):
    """Publishes without waiting for each acknowledgement; waits for the last one."""
    # QoS 2 stays within the broker's Receive Maximum (mqtt.max_inflight, 32), which paho
    # does not apply by itself: past it the broker disconnects with 0x93.
    client.paho.max_inflight_messages_set(200 if qos < 2 else 32)
    infos = [client.paho.publish(topic, payload, qos) for payload in payloads]
    for info in infos:
        info.wait_for_publish(60)
        if not info.is_published():
            raise AssertionError("publish not acknowledged")


def raw_suback(raw, version=5):
    kind, _, body = raw.recv_packet()
    assert kind == SUBACK, "expected SUBACK, got %d" % kind
    if version != 5:
        return body[2:]
    props_len, used = decode_varint(body, 2)  # a Reason String may come with a failure
    return body[2 + used + props_len:]


@unittest.skipIf(is_mosquitto(), "keelmq log lines")
class SharedCases:
    broker_options = {"mqtt.max_queued_messages": "100000"}

    def test_group_of_three_gets_30000_messages_once(self):
        group = "$share/g/t/#"
        members = join_group(self, group, 3, versions=(5, 4))  # 3.1.1 members too
        inbox = Inbox(members)
        publisher = self.connected(client_id="pub", version=5)
        count = 30000
        publish_many(publisher, "t/a", [str(n).encode() for n in range(count)])
        got = inbox.take(count, timeout=120)
        inbox.expect_none()
        payloads = [int(m.payload) for _, m in got]
        self.assertEqual(len(payloads), len(set(payloads)), "a message came twice")
        self.assertEqual(set(payloads), set(range(count)))
        per_member = [sum(1 for i, _ in got if i == k) for k in range(3)]
        self.assertTrue(all(n > 0 for n in per_member), per_member)
        # round_robin over a stable group: an even split.
        self.assertLessEqual(max(per_member) - min(per_member), 1, per_member)

    def test_two_groups_and_a_plain_subscriber_each_get_every_message(self):
        g1 = join_group(self, "$share/one/t/+", 2, prefix="a")
        g2 = join_group(self, "$share/two/t/+", 2, prefix="b")
        plain = self.connected(client_id="plain", version=5)
        plain.subscribe("t/+", 1)
        one, two, alone = Inbox(g1), Inbox(g2), Inbox([plain])
        publisher = self.connected(client_id="pub", version=4)
        count = 1000
        publish_many(publisher, "t/x", [str(n).encode() for n in range(count)])
        for inbox in (one, two, alone):
            got = sorted(int(m.payload) for _, m in inbox.take(count))
            self.assertEqual(got, list(range(count)))
            inbox.expect_none(0.3)

    def test_granted_qos_and_subscription_identifier_per_member(self):
        group = "$share/ids/s/#"
        low = self.connected(client_id="low", version=5)
        high = self.connected(client_id="high", version=5)
        for client, qos, sub_id in ((low, 0, 5), (high, 1, 7)):
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
            client.paho.subscribe(group, qos, properties=props)
            get_event(client.subacks, EVENT_TIMEOUT_S, "SUBACK")
        await_group(self.broker, group, 2)
        inbox = Inbox([low, high])
        publisher = self.connected(client_id="pub", version=5)
        publish_many(publisher, "s/1", [b"%d" % n for n in range(20)])
        got = inbox.take(20)
        for index, message in got:
            want_qos, want_id = ((0, 5), (1, 7))[index]
            self.assertEqual(message.qos, want_qos)
            self.assertEqual(message.properties.SubscriptionIdentifier, [want_id])
        self.assertEqual({i for i, _ in got}, {0, 1})

    def test_no_retained_message_on_a_shared_subscribe(self):
        publisher = self.connected(client_id="pub", version=5)
        publisher.publish("r/1", b"kept", qos=1, retain=True)
        plain = self.connected(client_id="plain", version=5)
        plain.subscribe("r/#", 1)
        self.assertEqual(plain.expect_message().payload, b"kept")  # it is retained
        member = self.connected(client_id="member", version=5)
        member.subscribe("$share/g/r/#", 1)
        await_group(self.broker, "$share/g/r/#", 1)
        member.expect_no_message(1.0)
        publisher.publish("r/1", b"live", qos=1)
        self.assertEqual(member.expect_message().payload, b"live")

    def test_no_local_on_a_shared_subscription_is_a_protocol_error(self):
        raw = self.raw(version=5)
        raw.connect("nolocal")
        body = struct.pack("!H", 1) + b"\x00" + encode_string("$share/g/t") + bytes([0x04 | 1])
        raw.send(packet(SUBSCRIBE, 0x02, body))
        kind, _, body = raw.recv_packet()
        self.assertEqual(kind, DISCONNECT)
        self.assertEqual(body[0], 0x82)
        self.assertIsNone(raw.recv_packet())

    def test_shared_subscription_available_in_connack(self):
        raw = self.raw(version=5)
        raw.send(connect_packet("avail", version=5))
        kind, _, body = raw.recv_packet()
        self.assertEqual(kind, CONNACK)
        self.assertIn(bytes([P_SHARED, 1]), body[3:])

    def test_client_ids_of_group_cursors_are_refused(self):
        raw = self.raw(version=5)
        raw.send(connect_packet("$share/g/t", version=5))
        kind, _, body = raw.recv_packet()
        self.assertEqual(kind, CONNACK)
        self.assertEqual(body[1], 0x85)  # Client Identifier not valid

    def test_malformed_shared_filter_is_refused(self):
        raw = self.raw(version=5)
        raw.connect("bad")
        raw.send(subscribe_packet(1, [("$share/g", 1), ("$share//t", 1), ("$share/g+/t", 1),
                                      ("$share/g/t", 1)], version=5))
        self.assertEqual(raw_suback(raw), bytes([0x8F, 0x8F, 0x8F, 1]))

    def test_unsubscribed_member_gets_nothing_more(self):
        group = "$share/u/t"
        stay, leave = join_group(self, group, 2)
        leave.paho.unsubscribe(group)
        await_group(self.broker, group, 1)
        inbox = Inbox([stay, leave])
        publisher = self.connected(client_id="pub", version=5)
        publish_many(publisher, "t", [b"%d" % n for n in range(50)])
        got = inbox.take(50)
        self.assertEqual({i for i, _ in got}, {0})
        inbox.expect_none(0.3)

    def unacked_go_to_another_member(self, clean, version):
        group = "$share/q/t"
        raw = raw_member(self, "silent", group, clean=clean, version=version)
        other = self.connected(client_id="other", version=5)
        other.subscribe(group, 1)
        await_group(self.broker, group, 2)
        inbox = Inbox([other])
        publisher = self.connected(client_id="pub", version=5)
        count = 100
        publish_many(publisher, "t", [b"%d" % n for n in range(count)])
        # The silent member holds some (round robin: about half, 32 of them in its window).
        held = set()
        while len(held) < 32:
            kind, flags, body = raw.recv_packet()
            self.assertEqual(kind, PUBLISH)
            held.add(int(parse_publish(flags, body, version)[1]))
        raw.close()  # no PUBACK, no DISCONNECT
        got = [int(m.payload) for _, m in inbox.take(count)]
        self.assertEqual(sorted(got), list(range(count)))
        self.assertTrue(held <= set(got))
        inbox.expect_none(0.3)

    def test_unacked_messages_of_an_ending_session_go_to_another_member(self):
        self.unacked_go_to_another_member(clean=True, version=5)

    def test_unacked_messages_of_a_disconnected_persistent_member_go_to_another(self):
        self.unacked_go_to_another_member(clean=False, version=4)

    def test_unacked_messages_of_the_last_member_survive_a_restart(self):
        # The only member holds messages unacknowledged and goes away: they go back to the
        # group, which keeps them for the first member back. A restart must not lose them
        # (the cursor journals its positions no later than they are).
        group = "$share/rs/t"
        raw = raw_member(self, "rs-silent", group, clean=False, version=5)
        await_group(self.broker, group, 1)
        publisher = self.connected(client_id="rs-pub", version=5)
        count = 100
        publish_many(publisher, "t", [b"%d" % n for n in range(count)])
        held = 0
        while held < 32:  # its window: mqtt.max_inflight
            kind, _, _ = raw.recv_packet()
            self.assertEqual(kind, PUBLISH)
            held += 1
        raw.close()  # no PUBACK, no DISCONNECT
        await_group(self.broker, group, 0)
        publisher.stop()
        self.broker.restart()
        back = self.client(client_id="rs-silent", version=5, clean=False, session_expiry=300)
        self.assertEqual(back.connect()[0], 1)
        seen = set()
        while len(seen) < count:  # at least once: some may come twice
            seen.add(int(back.expect_message(timeout=30).payload))
        self.assertEqual(seen, set(range(count)))

    def test_deliveries_held_by_an_online_member_survive_a_restart(self):
        self.held_by_an_online_member(crash=False)

    def test_deliveries_held_by_an_online_member_survive_kill_9(self):
        self.held_by_an_online_member(crash=True)

    def held_by_an_online_member(self, crash):
        # A member holds deliveries unacknowledged (its window) or queued while still online
        # when the broker stops or dies. The group's cursor is past them, and the member's
        # own positions do not cover shared deliveries: the owner counts them as outstanding
        # and journals the cursor no later than they are.
        group = "$share/hold/t"
        raw = raw_member(self, "holder", group, clean=False, version=5)
        await_group(self.broker, group, 1)
        publisher = self.connected(client_id="hold-pub", version=5)
        count = 100
        publish_many(publisher, "t", [b"%d" % n for n in range(count)])
        for _ in range(32):  # its window (mqtt.max_inflight); the rest wait in its queue
            kind, _, _ = raw.recv_packet()
            self.assertEqual(kind, PUBLISH)
        publisher.stop()
        if crash:
            # Not a synchronisation: the cursor journals its positions every 200 ms while
            # they move (PERSIST_CURSOR_MS), so this makes its last journal come after the
            # deliveries, which is the case the outstanding set exists for.
            time.sleep(0.6)
            self.broker.crash()
            self.broker.start()
        else:
            self.broker.restart()  # the member is online until the stop
        raw.close()
        back = self.client(client_id="holder", version=5, clean=False, session_expiry=300)
        self.assertEqual(back.connect()[0], 1)
        seen = set()
        while len(seen) < count:  # at least once
            seen.add(int(back.expect_message(timeout=30).payload))
        self.assertEqual(seen, set(range(count)))

    def test_acknowledged_deliveries_do_not_come_again_after_a_restart(self):
        self.acknowledged_do_not_come_again(qos=1)

    def test_pubrecd_deliveries_do_not_come_again_after_a_restart(self):
        self.acknowledged_do_not_come_again(qos=2)

    def acknowledged_do_not_come_again(self, qos):
        # Every end of a delivery reaches the owner (DONE: PUBACK, or PUBREC for QoS 2):
        # nothing stays outstanding, so the cursor journals its position past them and a
        # restart does not send them again.
        group = "$share/acked%d/t" % qos
        raw = raw_member(self, "acker", group, clean=False, qos=qos)
        await_group(self.broker, group, 1)
        publisher = self.connected(client_id="acked-pub", version=5)
        count = 100
        publish_many(publisher, "t", [b"%d" % n for n in range(count)], qos=qos)
        publisher.stop()
        seen = set()
        completed = 0
        while completed < count:
            kind, flags, body = raw.recv_packet()
            if kind == PUBREL:
                (mid,) = struct.unpack_from("!H", body, 0)
                raw.send(packet(PUBCOMP, 0, struct.pack("!H", mid)))
                completed += 1
                continue
            self.assertEqual(kind, PUBLISH)
            _, payload, got_qos, mid, _ = parse_publish(flags, body, 5)
            self.assertEqual(got_qos, qos)
            raw.send(packet(PUBACK if qos == 1 else PUBREC, 0, struct.pack("!H", mid)))
            seen.add(int(payload))
            completed += qos == 1
        raw.send(packet(PINGREQ, 0, b""))  # answered after every ack before it was read
        raw.expect(PINGRESP)
        self.assertEqual(seen, set(range(count)))
        self.broker.restart()
        raw.close()
        back = self.client(client_id="acker", version=5, clean=False, session_expiry=300)
        self.assertEqual(back.connect()[0], 1)
        back.expect_no_message(QUIET_S)

    def test_offline_group_keeps_messages_for_the_first_member_back(self):
        self.offline_group_reads_the_log(crash=False)

    def test_offline_group_cursor_survives_kill_9(self):
        self.offline_group_reads_the_log(crash=True)

    def offline_group_reads_the_log(self, crash):
        group = "$share/off/t/#"
        members = []
        for name in ("p0", "p1"):
            client = self.connected(client_id=name, version=5, clean=False, session_expiry=300)
            client.subscribe(group, 1)
            members.append(client)
        await_group(self.broker, group, 2)
        for client in members:
            client.disconnect()
        await_group(self.broker, group, 0)
        publisher = self.connected(client_id="pub", version=5)
        count = 1000
        publish_many(publisher, "t/1", [b"%d" % n for n in range(count)])
        if crash:
            publisher.stop()
            self.broker.crash()  # SIGKILL: only the log knows the group's cursor now
            self.broker.start()
        back = self.client(client_id="p1", version=5, clean=False, session_expiry=300)
        back.connect()
        got = [int(m.payload) for m in back.expect_messages(count, timeout=30)]
        self.assertEqual(got, list(range(count)))  # all, in order
        back.expect_no_message(0.5)


@unittest.skipIf(is_mosquitto(), "keelmq log lines")
class SmallQueueCases:
    broker_options = {"mqtt.max_queued_messages": "100"}

    def test_group_catch_up_is_paced_by_the_member_queue(self):
        """The group missed 30 times what a member may queue: nothing is dropped."""
        group = "$share/slow/t"
        member = self.connected(client_id="slow", version=5, clean=False, session_expiry=300)
        member.subscribe(group, 1)
        await_group(self.broker, group, 1)
        member.disconnect()
        await_group(self.broker, group, 0)
        publisher = self.connected(client_id="pub", version=5)
        count = 3000
        publish_many(publisher, "t", [b"%d" % n for n in range(count)])
        back = self.client(client_id="slow", version=5, clean=False, session_expiry=300)
        back.connect()
        got = [int(m.payload) for m in back.expect_messages(count, timeout=60)]
        self.assertEqual(sorted(got), list(range(count)))
        back.expect_no_message(0.5)
        self.assertNotIn("dropped_queue=1", self.broker.log())


    def test_live_messages_past_a_full_member_queue_are_not_dropped(self):
        """A persistent member reads nothing while 30 times its queue limit is published to
        its group, then reads and acknowledges: it gets every message (at least once)."""
        group = "$share/full/t"
        raw = raw_member(self, "full-member", group, clean=False)
        await_group(self.broker, group, 1)
        publisher = self.connected(client_id="full-pub", version=5)
        count = 3000
        publish_many(publisher, "t", [b"%d" % n for n in range(count)])
        publisher.stop()
        seen = set()
        while len(seen) < count:
            kind, flags, body = raw.recv_packet(timeout=30)
            self.assertEqual(kind, PUBLISH)
            _, payload, _, mid, _ = parse_publish(flags, body, 5)
            raw.send(packet(PUBACK, 0, struct.pack("!H", mid)))
            seen.add(int(payload))
        self.assertEqual(seen, set(range(count)))


@unittest.skipIf(is_mosquitto(), "keelmq log lines")
class HashPolicyCases:
    broker_options = {"mqtt.shared_subscription_policy": "hash"}

    def test_each_publisher_stays_on_one_member_in_order(self):
        group = "$share/h/t/#"
        members = join_group(self, group, 3, prefix="h")
        inbox = Inbox(members)
        publishers = [self.connected(client_id="pub%d" % k, version=5) for k in range(6)]
        count = 200
        infos = []
        for n in range(count):
            for k, publisher in enumerate(publishers):
                infos.append(publisher.paho.publish("t/%d" % k, b"%d/%d" % (k, n), 1))
        for info in infos:
            info.wait_for_publish(30)
        got = inbox.take(count * len(publishers))
        inbox.expect_none(0.3)
        by_publisher = {}
        for index, message in got:
            k, n = (int(x) for x in message.payload.split(b"/"))
            by_publisher.setdefault(k, []).append((index, n))
        for k, seen in by_publisher.items():
            self.assertEqual({i for i, _ in seen}, {seen[0][0]}, "publisher %d split" % k)
            self.assertEqual([n for _, n in seen], list(range(count)), "publisher %d order" % k)


@unittest.skipIf(is_mosquitto(), "keelmq log lines")
class RandomPolicyCases:
    broker_options = {"mqtt.shared_subscription_policy": "random"}

    def test_every_message_once_spread_over_the_members(self):
        group = "$share/r/t"
        members = join_group(self, group, 3, prefix="r")
        inbox = Inbox(members)
        publisher = self.connected(client_id="pub", version=5)
        publish_many(publisher, "t", [b"%d" % n for n in range(600)])
        got = inbox.take(600)
        inbox.expect_none(0.3)
        self.assertEqual(sorted(int(m.payload) for _, m in got), list(range(600)))
        self.assertEqual({i for i, _ in got}, {0, 1, 2})  # 3 * (2/3)^600: never all on two


@unittest.skipIf(is_mosquitto(), "keelmq log lines")
class StickyPolicyCases:
    broker_options = {"mqtt.shared_subscription_policy": "sticky"}

    def test_one_member_gets_everything_while_it_stays(self):
        group = "$share/s/t"
        members = join_group(self, group, 3, prefix="s")
        inbox = Inbox(members)
        publisher = self.connected(client_id="pub", version=5)
        publish_many(publisher, "t", [b"%d" % n for n in range(200)])
        got = inbox.take(200)
        chosen = {i for i, _ in got}
        self.assertEqual(len(chosen), 1)
        (chosen,) = chosen
        members[chosen].disconnect()
        await_group(self.broker, group, 2)
        publish_many(publisher, "t", [b"%d" % n for n in range(200, 400)])
        got = inbox.take(200)
        self.assertEqual(len({i for i, _ in got}), 1)
        self.assertNotIn(chosen, {i for i, _ in got})
        self.assertEqual(sorted(int(m.payload) for _, m in got), list(range(200, 400)))


@unittest.skipIf(is_mosquitto(), "keelmq log lines")
class DisabledCases:
    broker_options = {"mqtt.shared_subscriptions": "false"}

    def test_suback_0x9e_and_connack_says_unavailable(self):
        raw = self.raw(version=5)
        raw.send(connect_packet("off5", version=5))
        kind, _, body = raw.recv_packet()
        self.assertEqual(kind, CONNACK)
        self.assertIn(bytes([P_SHARED, 0]), body[3:])
        raw.send(subscribe_packet(1, [("$share/g/t", 1), ("t", 1)], version=5))
        self.assertEqual(raw_suback(raw), bytes([0x9E, 1]))
        raw3 = self.raw(version=4)
        raw3.connect("off3")
        raw3.send(subscribe_packet(1, [("$share/g/t", 1)], version=4))
        self.assertEqual(raw_suback(raw3, 4), b"\x80")


per_shard_count(SharedCases, globals())
per_shard_count(SmallQueueCases, globals())
per_shard_count(HashPolicyCases, globals())
per_shard_count(RandomPolicyCases, globals())
per_shard_count(StickyPolicyCases, globals())
per_shard_count(DisabledCases, globals())

if __name__ == "__main__":
    unittest.main()
