"""An offline persistent session's subscriptions are kept out of the subscription tree (packed
in the session, core/subpack.h) and go back into it when the session returns: after a
reconnect, a takeover, and kill -9 plus restart, every kind of subscription (exact, wildcard,
No Local, Retain As Published, subscription identifiers, shared) delivers as before.
"""
import unittest

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

import harness
from harness import BrokerTestCase, is_mosquitto, per_shard_count

V5 = 5
CLIENT_ID = "offsubs"
# filter, options, subscription identifier (0 = none)
SUBSCRIPTIONS = (
    ("os/exact", SubscribeOptions(qos=1), 7),
    ("os/+/wild", SubscribeOptions(qos=2, retainAsPublished=True), 300),
    ("os/noloc", SubscribeOptions(qos=1, noLocal=True), 0),
    ("$share/g/os/shared", SubscribeOptions(qos=1), 5),
)


def sub_ids(message):
    return sorted(getattr(message.properties, "SubscriptionIdentifier", []))


class OfflineSubscriptionCases:
    def persistent(self):
        return self.client(client_id=CLIENT_ID, version=V5, clean=False, session_expiry=3600)

    def subscribe_all(self, client):
        for topic, options, sub_id in SUBSCRIPTIONS:
            properties = None
            if sub_id:
                properties = Properties(PacketTypes.SUBSCRIBE)
                properties.SubscriptionIdentifier = sub_id
            self.assertEqual(client.subscribe(topic, options=options, properties=properties),
                             options.QoS)

    def resume(self):
        client = self.persistent()
        present, _ = client.connect()
        self.assertEqual(present, 1, "the session was not kept")
        return client

    def expect(self, client, topic, payload, qos, ids, retain=False):
        message = client.expect_message()
        self.assertEqual((message.topic, bytes(message.payload)), (topic, payload))
        self.assertEqual(message.qos, qos, topic)
        self.assertEqual(sub_ids(message), ids, topic)
        self.assertEqual(bool(message.retain), retain, topic)

    def check_live(self, client, publisher, tag):
        """Every subscription delivers live, with its options and identifier."""
        publisher.publish("os/exact", b"exact-" + tag, qos=1)
        self.expect(client, "os/exact", b"exact-" + tag, 1, [7])
        publisher.publish("os/b/wild", b"wild-" + tag, qos=2, retain=True)
        self.expect(client, "os/b/wild", b"wild-" + tag, 2, [300], retain=True)  # RAP
        client.publish("os/noloc", b"own-" + tag, qos=1)  # No Local: not back to itself
        publisher.publish("os/noloc", b"other-" + tag, qos=1)
        self.expect(client, "os/noloc", b"other-" + tag, 1, [])
        publisher.publish("os/shared", b"shared-" + tag, qos=1)
        self.expect(client, "os/shared", b"shared-" + tag, 1, [5])
        publisher.publish("os/other", b"nobody", qos=1)
        client.expect_no_message(0.5)

    def test_subscriptions_return_after_reconnect_takeover_and_kill_9(self):
        client = self.persistent()
        client.connect()
        self.subscribe_all(client)
        client.disconnect()
        publisher = self.connected(client_id="offsubs-pub", version=V5)
        publisher.publish("os/exact", b"missed-exact", qos=1)
        publisher.publish("os/a/wild", b"missed-wild", qos=2)
        publisher.publish("os/noloc", b"missed-noloc", qos=1)
        client = self.resume()
        # paho hands a QoS 2 message over at PUBREL: compared by topic, not in order.
        got = {m.topic: (bytes(m.payload), m.qos, sub_ids(m)) for m in client.expect_messages(3)}
        self.assertEqual(got, {"os/exact": (b"missed-exact", 1, [7]),
                               "os/a/wild": (b"missed-wild", 2, [300]),
                               "os/noloc": (b"missed-noloc", 1, [])})
        self.check_live(client, publisher, b"reconnected")

        taker = self.resume()  # takeover: the session goes offline and back at once
        client.expect_disconnect()
        client.stop()
        self.check_live(taker, publisher, b"taken-over")
        taker.disconnect()

        publisher.publish("os/exact", b"missed-before-crash", qos=1)
        publisher.stop()
        self.broker.crash()
        self.broker.start()
        client = self.resume()
        self.expect(client, "os/exact", b"missed-before-crash", 1, [7])
        publisher = self.connected(client_id="offsubs-pub", version=V5)
        self.check_live(client, publisher, b"restarted")

        # The tree and the session stay in step: UNSUBSCRIBE finds it, then nothing comes.
        result, mid = client.paho.unsubscribe("os/exact")
        self.assertEqual(result, 0)
        publisher.publish("os/exact", b"after-unsubscribe", qos=1)
        client.expect_no_message(0.5)
        client.disconnect()
        client = self.resume()  # offline and back once more without it
        publisher.publish("os/exact", b"still-gone", qos=1)
        publisher.publish("os/c/wild", b"wild-again", qos=1)
        self.expect(client, "os/c/wild", b"wild-again", 1, [300])
        client.expect_no_message(0.5)
        client.disconnect()

    def test_an_offline_session_ending_frees_its_filters(self):
        """A session that ends while offline (clean start) leaves nothing routed to it, and a
        new subscriber of the same filters gets one copy each."""
        client = self.persistent()
        client.connect()
        self.subscribe_all(client)
        client.disconnect()
        fresh = self.client(client_id=CLIENT_ID, version=V5, clean=True, session_expiry=3600)
        present, _ = fresh.connect()
        self.assertEqual(present, 0)
        fresh.paho.subscribe("os/+/wild", options=SubscribeOptions(qos=1))
        self.assertEqual(harness.get_event(fresh.subacks, harness.EVENT_TIMEOUT_S,
                                           "SUBACK")[1][0].value, 1)
        publisher = self.connected(client_id="offsubs-pub2", version=V5)
        publisher.publish("os/exact", b"nobody", qos=1)
        publisher.publish("os/d/wild", b"once", qos=1)
        self.expect(fresh, "os/d/wild", b"once", 1, [])
        fresh.expect_no_message(0.5)
        fresh.disconnect()


if not is_mosquitto():
    per_shard_count(OfflineSubscriptionCases, globals())

if __name__ == "__main__":
    unittest.main()
