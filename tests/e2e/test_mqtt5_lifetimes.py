"""MQTT 5 lifetimes end to end: Message Expiry Interval (offline sessions, retained messages,
the decremented interval on forwarding, restarts), Session Expiry Interval (expiry, the
mqtt.session_expiry_max cap and its CONNACK property, DISCONNECT rules, kill -9) and the Will
Delay Interval (sent after the delay, cancelled by a reconnect, sent at the session's end, a
held will kept across a restart and a kill -9).

Waiting for an interval to pass is the one thing these tests cannot await as an event: they
wait a little longer than the interval (EXPIRY_WAIT_S) and then assert on what arrives, never on
how fast anything was.
"""
import queue
import struct
import time
import unittest

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from harness import (CONNACK, DISCONNECT, EVENT_TIMEOUT_S, Broker, BrokerTestCase, Client,
                     encode_varint, get_event, home_shards, is_mosquitto, packet,
                     per_shard_count, QUIET_S)

DISCONNECT_WITH_WILL = 0x04
PROTOCOL_ERROR = 0x82
EXPIRY_WAIT_S = 1.6    # past a 1 s interval, measured from the broker's receipt
LOG_TIMEOUT_S = 15.0   # session and will timers run on the broker's 1 s expiry scan


def publish_props(expiry_s):
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = expiry_s
    return props


def expiry_of(message):
    """The Message Expiry Interval a received PUBLISH carried, or None."""
    return getattr(message.properties, "MessageExpiryInterval", None)


class Client5(Client):
    """A paho MQTT 5 client that also records CONNACK properties and can carry a will with
    properties (Will Delay Interval)."""

    def __init__(self, broker, client_id, clean=True, session_expiry=None, will=None,
                 will_delay=None):
        super().__init__(broker, client_id=client_id, version=5, clean=clean,
                         session_expiry=session_expiry)
        self.connack_props = queue.Queue()
        if will is not None:
            topic, payload, qos, retain = will
            props = None
            if will_delay is not None:
                props = Properties(PacketTypes.WILLMESSAGE)
                props.WillDelayInterval = will_delay
            self.paho.will_set(topic, payload, qos, retain, properties=props)

    def on_connect(self, client, userdata, flags, rc, properties=None):
        self.connack_props.put(properties)
        super().on_connect(client, userdata, flags, rc, properties)

    def connack_properties(self):
        return get_event(self.connack_props, EVENT_TIMEOUT_S, "CONNACK properties")

    def messages_until(self, marker_topic, timeout=EVENT_TIMEOUT_S):
        """The messages received before the first one on marker_topic (awaited)."""
        deadline = time.monotonic() + timeout
        before = []
        while True:
            message = get_event(self.messages, deadline - time.monotonic(), "marker")
            if message.topic == marker_topic:
                return before
            before.append(message)


class LifetimeCases:
    def v5(self, client_id, broker=None, **kwargs):
        client = Client5(broker or self.broker, client_id, **kwargs)
        self.addCleanup(client.stop)
        return client

    def started(self, options):
        """A second broker with options (the test's own broker stays idle)."""
        broker = Broker(shards=self.shards, options=options)
        broker.start()
        self.addCleanup(broker.stop)
        return broker

    # --- Message Expiry Interval -------------------------------------------------------------

    def test_expired_message_not_delivered_to_returning_session(self):
        sub = self.v5("exp-sub", clean=False, session_expiry=60)
        sub.connect()
        self.assertEqual(sub.subscribe("exp/t", 1), 1)
        sub.disconnect()
        pub = self.v5("exp-pub")
        pub.connect()
        pub.publish("exp/t", b"short", qos=1, properties=publish_props(1))
        pub.publish("exp/t", b"long", qos=1, properties=publish_props(60))
        time.sleep(EXPIRY_WAIT_S)
        sub = self.v5("exp-sub", clean=False, session_expiry=60)
        present, _ = sub.connect()
        self.assertEqual(present, 1)
        message = sub.expect_message()
        self.assertEqual(message.payload, b"long", "the expired message was delivered")
        remaining = expiry_of(message)
        self.assertIsNotNone(remaining, "the expiry property was not forwarded")
        self.assertTrue(1 <= remaining <= 59, "not decremented: %r" % remaining)
        pub.publish("exp/t", b"marker", qos=1)
        self.assertEqual(sub.expect_message().payload, b"marker", "something else came first")

    def test_expired_message_not_delivered_after_kill_9(self):
        sub = self.v5("exp9-sub", clean=False, session_expiry=600)
        sub.connect()
        self.assertEqual(sub.subscribe("exp9/t", 1), 1)
        sub.disconnect()
        pub = self.v5("exp9-pub")
        pub.connect()
        pub.publish("exp9/t", b"short", qos=1, properties=publish_props(1))
        pub.publish("exp9/t", b"long", qos=1, properties=publish_props(600))
        pub.stop()
        self.broker.crash()
        time.sleep(EXPIRY_WAIT_S)
        self.broker.start()
        sub = self.v5("exp9-sub", clean=False, session_expiry=600)
        present, _ = sub.connect()
        self.assertEqual(present, 1)
        message = sub.expect_message()
        self.assertEqual(message.payload, b"long", "read back from the log past its expiry")
        self.assertTrue(1 <= expiry_of(message) <= 599, expiry_of(message))

    def test_forwarded_live_message_carries_its_interval(self):
        sub = self.v5("fwd-sub")
        sub.connect()
        sub.subscribe("fwd/#", 1)
        pub = self.v5("fwd-pub")
        pub.connect()
        pub.publish("fwd/a", b"x", qos=1, properties=publish_props(30))
        pub.publish("fwd/b", b"y", qos=0)
        first, second = sub.expect_messages(2)
        self.assertTrue(29 <= expiry_of(first) <= 30, expiry_of(first))
        self.assertIsNone(expiry_of(second), "a message without expiry got one")

    def test_retained_message_expires(self):
        pub = self.v5("ret-pub")
        pub.connect()
        pub.publish("ret/short", b"s", qos=1, retain=True, properties=publish_props(1))
        pub.publish("ret/long", b"l", qos=1, retain=True, properties=publish_props(60))
        time.sleep(EXPIRY_WAIT_S)
        sub = self.v5("ret-sub")
        sub.connect()
        sub.subscribe("ret/#", 1)
        pub.publish("ret/marker", b"m", qos=1)
        got = sub.messages_until("ret/marker")
        self.assertEqual([m.topic for m in got], ["ret/long"], "expired retained message sent")
        self.assertTrue(1 <= expiry_of(got[0]) <= 59, "not decremented: %r" % expiry_of(got[0]))
        # The expiry scan drops it from the retained index (every shard holds a copy).
        self.broker.await_log(r"retain: expired .*count=1", timeout=LOG_TIMEOUT_S)

    def test_retained_message_expired_while_down_is_not_restored(self):
        pub = self.v5("retr-pub")
        pub.connect()
        pub.publish("retr/short", b"s", qos=1, retain=True, properties=publish_props(1))
        pub.publish("retr/long", b"l", qos=1, retain=True, properties=publish_props(600))
        pub.stop()
        self.broker.crash()
        time.sleep(EXPIRY_WAIT_S)
        self.broker.start()
        sub = self.v5("retr-sub")
        sub.connect()
        sub.subscribe("retr/#", 1)
        sub.subscribe("retr-marker", 1)
        pub = self.v5("retr-pub2")
        pub.connect()
        pub.publish("retr-marker", b"m", qos=1)
        got = sub.messages_until("retr-marker")
        self.assertEqual([m.topic for m in got], ["retr/long"])
        self.assertTrue(expiry_of(got[0]) <= 599, "the restart reset its age")

    # --- Session Expiry Interval -------------------------------------------------------------

    def test_session_kept_before_expiry_and_gone_after(self):
        sub = self.v5("sx-sub", clean=False, session_expiry=1)
        sub.connect()
        sub.subscribe("sx/t", 1)
        sub.disconnect()
        sub = self.v5("sx-sub", clean=False, session_expiry=60)
        present, _ = sub.connect()
        self.assertEqual(present, 1, "the session ended before its expiry")
        sub.disconnect()  # expiry 60 now (from this CONNECT)
        sub = self.v5("sx-sub", clean=False, session_expiry=1)
        self.assertEqual(sub.connect()[0], 1)
        sub.disconnect()
        self.broker.await_log(r"session: expired client=sx-sub", timeout=LOG_TIMEOUT_S)
        sub = self.v5("sx-sub", clean=False, session_expiry=60)
        present, _ = sub.connect()
        self.assertEqual(present, 0, "an expired session was resumed")

    def test_session_expiry_max_caps_and_connack_says_so(self):
        broker = self.started({"mqtt.session_expiry_max": "1"})
        client = self.v5("cap-sub", broker=broker, clean=False, session_expiry=3600)
        client.connect()
        props = client.connack_properties()
        self.assertEqual(getattr(props, "SessionExpiryInterval", None), 1,
                         "CONNACK lacks the capped Session Expiry Interval")
        client.disconnect()
        broker.await_log(r"session: expired client=cap-sub", timeout=LOG_TIMEOUT_S)
        client = self.v5("cap-sub", broker=broker, clean=False, session_expiry=1)
        self.assertEqual(client.connect()[0], 0)
        props = client.connack_properties()
        self.assertIsNone(getattr(props, "SessionExpiryInterval", None),
                          "the property is sent only when the server changed the value")

    def test_v311_persistent_session_expires_at_the_maximum(self):
        broker = self.started({"mqtt.session_expiry_max": "1"})
        client = Client(broker, client_id="v3-sub", version=4, clean=False)
        self.addCleanup(client.stop)
        client.connect()
        client.disconnect()
        broker.await_log(r"session: expired client=v3-sub", timeout=LOG_TIMEOUT_S)
        client = Client(broker, client_id="v3-sub", version=4, clean=False)
        self.addCleanup(client.stop)
        self.assertEqual(client.connect()[0], 0)

    def test_disconnect_cannot_set_expiry_when_connect_had_zero(self):
        raw = self.raw(version=5)
        self.assertEqual(raw.connect("dx-client"), (0, 0))
        properties = b"\x11" + struct.pack("!I", 30)  # Session Expiry Interval 30
        raw.send(packet(DISCONNECT, 0, b"\x00" + encode_varint(len(properties)) + properties))
        received = raw.recv_packet()
        self.assertIsNotNone(received, "closed without DISCONNECT")
        kind, _, body = received
        self.assertEqual(kind, DISCONNECT)
        self.assertEqual(body[0], PROTOCOL_ERROR)
        self.assertIsNone(raw.recv_packet(), "the connection must close")

    def test_disconnect_may_shorten_expiry(self):
        sub = self.v5("dshort", clean=False, session_expiry=600)
        sub.connect()
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 1
        sub.paho.disconnect(properties=props)
        sub.stop()
        self.broker.await_log(r"session: expired client=dshort", timeout=LOG_TIMEOUT_S)
        sub = self.v5("dshort", clean=False, session_expiry=600)
        self.assertEqual(sub.connect()[0], 0)

    def test_session_expired_while_broker_down(self):
        gone = self.v5("down-gone", clean=False, session_expiry=1)
        gone.connect()
        gone.subscribe("down/t", 1)
        gone.disconnect()
        kept = self.v5("down-kept", clean=False, session_expiry=600)
        kept.connect()
        kept.subscribe("down/t", 1)
        kept.disconnect()
        self.broker.crash()
        time.sleep(EXPIRY_WAIT_S)
        self.broker.start()
        gone = self.v5("down-gone", clean=False, session_expiry=60)
        self.assertEqual(gone.connect()[0], 0, "expired while down, resumed anyway")
        kept = self.v5("down-kept", clean=False, session_expiry=600)
        self.assertEqual(kept.connect()[0], 1)
        # The new session (journaled after the old one's END) is what another crash restores.
        gone.disconnect()
        kept.disconnect()
        self.broker.crash()
        self.broker.start()
        probe = self.v5("down-gone", clean=False, session_expiry=60)
        self.assertEqual(probe.connect()[0], 1, "the new session (expiry 60) must survive")

    def test_session_expires_after_restart_from_its_offline_time(self):
        sub = self.v5("after-sub", clean=False, session_expiry=2)
        sub.connect()
        sub.subscribe("after/t", 1)
        sub.disconnect()
        self.broker.crash()
        self.broker.start()
        self.broker.await_log(r"session: expired client=after-sub", timeout=LOG_TIMEOUT_S)
        # Its END is journaled. A QoS 1 publish on the same home shard (same client id, no
        # session kept) is acknowledged once the log is durable past it.
        flusher = self.v5("after-sub")
        self.assertEqual(flusher.connect()[0], 0)
        flusher.publish("after/flush", b"f", qos=1)
        flusher.disconnect()
        self.broker.crash()
        self.broker.start()
        sub = self.v5("after-sub", clean=False, session_expiry=60)
        self.assertEqual(sub.connect()[0], 0)
        self.broker.await_log(r"session: connect client=after-sub")
        self.assertNotIn("expired client=after-sub", self.broker.log_since_start(),
                         "the ended session was restored again (no END in the journal)")

    # --- Will Delay Interval -----------------------------------------------------------------

    def watcher(self, topic):
        watcher = self.v5("watcher-" + topic.replace("/", "-"))
        watcher.connect()
        watcher.subscribe(topic, 1)
        return watcher

    def test_will_sent_after_delay(self):
        watcher = self.watcher("wd/will")
        leaver = self.v5("wd-leaver", clean=False, session_expiry=60,
                         will=("wd/will", b"gone", 1, False), will_delay=1)
        leaver.connect()
        leaver.disconnect(reason_code=DISCONNECT_WITH_WILL)
        self.broker.await_log(r"will_due client=wd-leaver", timeout=LOG_TIMEOUT_S)
        message = watcher.expect_message()
        self.assertEqual((message.topic, message.payload), ("wd/will", b"gone"))

    def test_will_delay_cancelled_by_reconnect(self):
        watcher = self.watcher("wc/#")
        leaver = self.v5("wc-leaver", clean=False, session_expiry=60,
                         will=("wc/will", b"leaver", 1, False), will_delay=1)
        leaver.connect()
        # A control client whose will is due later than the leaver's would have been: once it
        # arrives, a leaver's will that was not cancelled would have arrived before it.
        control = self.v5("wc-control", clean=False, session_expiry=60,
                          will=("wc/control", b"control", 1, False), will_delay=3)
        control.connect()
        leaver.disconnect(reason_code=DISCONNECT_WITH_WILL)
        control.disconnect(reason_code=DISCONNECT_WITH_WILL)
        again = self.v5("wc-leaver", clean=False, session_expiry=60)
        self.assertEqual(again.connect()[0], 1)
        before = watcher.messages_until("wc/control", timeout=LOG_TIMEOUT_S)
        self.assertEqual([m.payload for m in before], [], "the cancelled will was sent")
        again.publish("wc/marker", b"marker", qos=1)
        self.assertEqual(watcher.expect_message().payload, b"marker")

    def test_will_sent_when_session_ends_before_delay(self):
        watcher = self.watcher("we/will")
        leaver = self.v5("we-leaver", clean=False, session_expiry=1,
                         will=("we/will", b"ended", 1, False), will_delay=3600)
        leaver.connect()
        leaver.disconnect(reason_code=DISCONNECT_WITH_WILL)
        self.broker.await_log(r"session: expired client=we-leaver", timeout=LOG_TIMEOUT_S)
        message = watcher.expect_message(timeout=LOG_TIMEOUT_S)
        self.assertEqual(message.payload, b"ended")

    def test_will_of_session_without_expiry_sent_at_disconnect(self):
        watcher = self.watcher("w0/will")
        leaver = self.v5("w0-leaver", will=("w0/will", b"now", 1, False), will_delay=3600)
        leaver.connect()
        leaver.disconnect(reason_code=DISCONNECT_WITH_WILL)
        # Within the event timeout, far below the 3600 s delay: it was not held.
        self.assertEqual(watcher.expect_message().payload, b"now")

    def test_normal_disconnect_discards_delayed_will(self):
        watcher = self.watcher("wn/#")
        leaver = self.v5("wn-leaver", clean=False, session_expiry=1,
                         will=("wn/will", b"no", 1, False), will_delay=1)
        leaver.connect()
        leaver.disconnect()  # reason 0x00: the will is deleted (MQTT-3.1.2-10)
        self.broker.await_log(r"session: expired client=wn-leaver", timeout=LOG_TIMEOUT_S)
        marker = self.v5("wn-pub")
        marker.connect()
        marker.publish("wn/marker", b"m", qos=1)
        self.assertEqual(watcher.messages_until("wn/marker"), [])

    # --- Held wills across restarts (JOURNAL_WILL) -------------------------------------------

    def make_home_log_durable(self, client_id):
        """Waits until everything the home shard of client_id logged so far is durable: a
        QoS 1 PUBACK from a client on the same shard (its record comes later in that log)."""
        home = home_shards(self.broker, [client_id])[0]
        for i in range(64):
            flusher_id = "%s-flush-%d" % (client_id, i)
            flusher = self.v5(flusher_id)
            flusher.connect()
            if home_shards(self.broker, [flusher_id])[0] == home:
                flusher.publish("flush/t", b"f", qos=1)
                flusher.disconnect()
                return
            flusher.disconnect()
        self.fail("no flusher client id landed on shard %d" % home)

    def will_watcher(self, client_id, topic):
        """A persistent session subscribed to topic at QoS 1, left offline."""
        watcher = self.v5(client_id, clean=False, session_expiry=600)
        watcher.connect()
        watcher.subscribe(topic, 1)
        watcher.disconnect()

    def watcher_back(self, client_id, topic, payload):
        """Reconnects the watcher, asserts its session is back with the one message, and
        returns it connected."""
        watcher = self.v5(client_id, clean=False, session_expiry=600)
        self.assertEqual(watcher.connect()[0], 1)
        message = watcher.expect_message(timeout=LOG_TIMEOUT_S)
        self.assertEqual((message.topic, message.payload), (topic, payload))
        return watcher

    def assert_no_will_restored(self, client_id):
        """After a start: the session of client_id comes back without a will."""
        probe = self.v5(client_id, clean=False, session_expiry=600)
        self.assertEqual(probe.connect()[0], 1, "the session was not restored")
        # The shard adopts its sessions (and logs will_restored) before it serves a CONNECT.
        self.broker.await_log(r"session: connect client=%s " % client_id)
        self.assertNotIn("will_restored client=%s " % client_id, self.broker.log_since_start())
        probe.disconnect()

    def test_held_will_survives_kill_9_and_goes_out_once(self):
        self.will_watcher("wk-watch", "wk/will")
        leaver = self.v5("wk-leaver", clean=False, session_expiry=600,
                         will=("wk/will", b"held", 1, False), will_delay=2)
        leaver.connect()
        leaver.disconnect(reason_code=DISCONNECT_WITH_WILL)
        self.broker.await_log(r"will_held client=wk-leaver delay_s=2")
        self.make_home_log_durable("wk-leaver")
        self.broker.crash()
        self.broker.start()
        self.broker.await_log(r"will_restored client=wk-leaver delay_s=2")
        self.watcher_back("wk-watch", "wk/will", b"held").disconnect()
        # Published, it is journaled as gone: the next start does not hold it again.
        self.broker.restart()
        self.assert_no_will_restored("wk-leaver")

    def test_held_will_survives_a_clean_restart_and_a_reconnect_cancels_it(self):
        leaver = self.v5("wr-leaver", clean=False, session_expiry=600,
                         will=("wr/will", b"held", 1, False), will_delay=3600)
        leaver.connect()
        leaver.disconnect(reason_code=DISCONNECT_WITH_WILL)
        self.broker.await_log(r"will_held client=wr-leaver delay_s=3600")
        self.broker.restart()
        match = self.broker.await_log(r"will_restored client=wr-leaver delay_s=3600 "
                                      r"due_in_ms=(\d+)")
        self.assertGreater(int(match.group(1)), 3000 * 1000, "the delay restarted or vanished")
        again = self.v5("wr-leaver", clean=False, session_expiry=600)
        self.assertEqual(again.connect()[0], 1)
        again.disconnect()
        self.broker.restart()
        self.assert_no_will_restored("wr-leaver")

    def test_wills_of_connections_open_at_a_stop_go_out(self):
        # The server closes them without a DISCONNECT from the client (MQTT-3.1.2-8): a will
        # without delay goes out at the stop, into the log, so a persistent subscriber gets
        # it after the restart; a will held by its delay is journaled and restored.
        self.will_watcher("ws-watch", "ws/will")
        now = self.v5("ws-now", will=("ws/will", b"gone", 1, False))
        now.connect()
        later = self.v5("ws-later", clean=False, session_expiry=600,
                        will=("ws/later", b"held", 1, False), will_delay=3600)
        later.connect()
        self.broker.restart()
        self.broker.await_log(r"will_restored client=ws-later delay_s=3600 ")
        watcher = self.watcher_back("ws-watch", "ws/will", b"gone")
        watcher.expect_no_message(QUIET_S)
        watcher.disconnect()


if not is_mosquitto():
    per_shard_count(LifetimeCases, globals())

if __name__ == "__main__":
    unittest.main()
