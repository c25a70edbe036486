"""Durable sessions end to end: persistent sessions, their subscriptions and what they missed
survive kill -9, and offline sessions read what they missed from the log.

Each test crashes the real broker with SIGKILL (Broker.crash) and starts it again on the same
store directory, then reconnects the persistent subscriber with paho.
"""
import os
import re
import threading
import time
import unittest

import paho.mqtt.client as mqtt

import struct

from harness import (CONNACK, PUBLISH, SUBACK, BrokerTestCase, Client, RawClient,
                     connect_packet, is_mosquitto, packet, parse_publish, per_shard_count,
                     subscribe_packet)

PUBREC, PUBREL, PUBCOMP = 5, 6, 7

COUNT = 20000


def publish_all(pub, topic_of, count, qos, timeout=120.0):
    """Publishes count messages (payload: the index, 6 digits) pipelined, and waits for every
    acknowledgement. Returns the paho MessageInfo list."""
    pub.paho.max_inflight_messages_set(16)
    pub.paho.max_queued_messages_set(0)
    infos = []
    for index in range(count):
        info = pub.paho.publish(topic_of(index), b"%06d" % index, qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError("publish %d failed locally: %d" % (index, info.rc))
        infos.append(info)
    deadline = time.monotonic() + timeout
    for info in infos:
        info.wait_for_publish(max(deadline - time.monotonic(), 0.1))
        if not info.is_published():
            raise AssertionError("publish %d not acknowledged in time" % info.mid)
    return infos


class DurableCases:
    def persistent(self, client_id, version=4):
        if version == 5:
            client = self.client(client_id=client_id, version=5, clean=False,
                                 session_expiry=3600)
        else:
            client = self.client(client_id=client_id, version=4, clean=False)
        return client

    def restart_after_crash(self):
        self.broker.crash()
        self.broker.start()

    def offline_then_crash(self, qos):
        sub = self.persistent("durable-sub")
        sub.connect()
        self.assertEqual(sub.subscribe("dur/#", qos), qos)
        sub.disconnect()
        pub = self.connected(client_id="durable-pub", version=4)
        publish_all(pub, lambda index: "dur/%d" % (index % 5), COUNT, qos)
        pub.stop()
        self.restart_after_crash()
        sub = self.persistent("durable-sub")
        present, _ = sub.connect()
        self.assertEqual(present, 1, "the session did not survive kill -9")
        messages = sub.expect_messages(COUNT, timeout=120)
        got = [int(m.payload) for m in messages]
        self.assertEqual(got, list(range(COUNT)), "missing or out of order")
        self.assertEqual({m.qos for m in messages}, {qos})
        sub.expect_no_message(1.0)  # nothing twice
        sub.disconnect()

    def test_offline_qos1_session_gets_everything_after_kill_9(self):
        self.offline_then_crash(1)

    def test_offline_qos2_session_gets_everything_once_after_kill_9(self):
        self.offline_then_crash(2)

    def test_subscription_survives_kill_9_and_gets_live_messages(self):
        sub = self.persistent("subs-only", version=5)
        sub.connect()
        sub.subscribe("live/+/temp", 1)
        sub.disconnect()
        self.restart_after_crash()
        sub = self.persistent("subs-only", version=5)
        present, _ = sub.connect()
        self.assertEqual(present, 1)
        pub = self.connected(client_id="live-pub", version=5)
        pub.publish("live/kitchen/temp", b"21", qos=1)
        pub.publish("live/kitchen/humidity", b"40", qos=1)
        message = sub.expect_message()
        self.assertEqual((message.topic, message.payload), ("live/kitchen/temp", b"21"))
        sub.expect_no_message(0.5)

    def test_clean_session_ends_the_stored_session(self):
        sub = self.persistent("ended")
        sub.connect()
        sub.subscribe("ended/#", 1)
        sub.disconnect()
        clean = self.client(client_id="ended", version=4, clean=True)
        clean.connect()
        clean.disconnect()
        self.restart_after_crash()
        again = self.persistent("ended")
        present, _ = again.connect()
        self.assertEqual(present, 0, "a session ended by a clean connect came back")

    def test_acknowledged_messages_survive_a_kill_during_load(self):
        sub = self.persistent("load-sub")
        sub.connect()
        sub.subscribe("load/#", 1)
        received = set()
        pub = self.client(client_id="load-pub", version=4)
        pub.connect()
        pub.paho.max_inflight_messages_set(100)
        pub.paho.max_queued_messages_set(0)
        infos = []
        stop = threading.Event()

        def publish_forever():
            index = 0
            while not stop.is_set() and index < 200000:
                info = pub.paho.publish("load/%d" % (index % 3), b"%06d" % index, 1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    return
                infos.append((index, info))
                index += 1
                if index % 100 == 0:
                    time.sleep(0.001)  # let paho's network thread keep up

        thread = threading.Thread(target=publish_forever)
        thread.start()
        # Kill once some thousands were acknowledged and the subscriber is receiving.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            acked = sum(1 for _, info in list(infos) if info.is_published())
            if acked >= 3000:
                break
            message = sub.expect_message(timeout=10)
            received.add(int(message.payload))
        self.broker.crash()
        stop.set()
        thread.join(30)
        acked = {index for index, info in infos if info.is_published()}
        self.assertGreaterEqual(len(acked), 3000)
        # Drain what the subscriber got before the crash.
        while True:
            try:
                received.add(int(sub.messages.get_nowait().payload))
            except Exception:
                break
        pub.stop()
        sub.stop()
        self.broker.start()
        sub = self.persistent("load-sub")
        present, _ = sub.connect()
        self.assertEqual(present, 1)
        deadline = time.monotonic() + 120
        while not acked <= received:
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, "%d acknowledged messages never delivered, e.g. %s"
                               % (len(acked - received), sorted(acked - received)[:10]))
            received.add(int(sub.expect_message(timeout=left).payload))


class OutboundQos2Cases:
    def expect(self, raw, kind):
        got, flags, body = raw.recv_packet()
        self.assertEqual(got, kind, "expected packet type %d, got %d" % (kind, got))
        return flags, body

    def test_qos2_in_flight_at_a_crash_is_resent_with_its_packet_id(self):
        raw = self.raw()
        raw.connect("q2-out", clean=False)
        raw.send(subscribe_packet(1, [("q2/#", 2)]))
        self.expect(raw, SUBACK)
        pub = self.connected(client_id="q2-pub", version=4)
        for index in range(5):
            pub.publish("q2/x", b"m%d" % index, qos=2)
        sent = []
        for _ in range(5):
            flags, body = self.expect(raw, PUBLISH)
            topic, payload, qos, mid, _ = parse_publish(flags, body)
            self.assertEqual(qos, 2)
            sent.append((payload, mid))
        self.assertEqual([p for p, _ in sent], [b"m%d" % i for i in range(5)])
        # The client takes the first two (PUBREC), the broker releases them; the rest stay
        # unacknowledged when the broker dies.
        for _, mid in sent[:2]:
            raw.send(packet(PUBREC, 0, struct.pack("!H", mid)))
            self.expect(raw, PUBREL)
        pub.publish("barrier/after-pubrec", b"", qos=1)  # a durable write after them
        self.broker.crash()
        raw.close()
        self.broker.start()
        raw = self.raw()
        present, _ = raw.connect("q2-out", clean=False)
        self.assertEqual(present, 1)
        released, resent = set(), []
        while len(released) < 2 or len(resent) < 3:
            kind, flags, body = raw.recv_packet()
            if kind == PUBREL:
                released.add(struct.unpack("!H", body[:2])[0])
            else:
                self.assertEqual(kind, PUBLISH)
                topic, payload, qos, mid, _ = parse_publish(flags, body)
                self.assertTrue(flags & 0x08, "a re-sent QoS 2 PUBLISH must carry DUP")
                resent.append((payload, mid))
        self.assertEqual(released, {mid for _, mid in sent[:2]})
        self.assertEqual(sorted(resent), sorted(sent[2:]),
                         "not re-sent with the packet ids the client holds")
        # Completing them works, and nothing else comes (the PUBREC'd two are not re-sent).
        for _, mid in sent[:2]:
            raw.send(packet(PUBCOMP, 0, struct.pack("!H", mid)))
        for _, mid in resent:
            raw.send(packet(PUBREC, 0, struct.pack("!H", mid)))
            self.expect(raw, PUBREL)
            raw.send(packet(PUBCOMP, 0, struct.pack("!H", mid)))
        pub = self.connected(client_id="q2-pub-2", version=4)
        pub.publish("q2/x", b"after", qos=2)
        flags, body = self.expect(raw, PUBLISH)
        self.assertEqual(parse_publish(flags, body)[1], b"after")


class RetentionCases:
    # 1 MiB segments, keep 2 MiB per shard: a few MiB of messages make retention delete.
    broker_options = {"store.segment_bytes": "1048576", "store.retention.bytes": "2097152",
                      "mqtt.max_packet_size": "65536"}

    def test_retention_deletes_segments_and_sessions_resume_at_the_watermark(self):
        sub = self.client(client_id="slow-sub", version=4, clean=False)
        sub.connect()
        sub.subscribe("ret/#", 1)
        sub.disconnect()
        keeper = self.connected(client_id="keeper", version=4)
        keeper.publish("ret-state/config", b"kept across retention", qos=1, retain=True)
        keeper.stop()
        pub = self.connected(client_id="ret-pub", version=4)
        count = 800
        payload = b"x" * 10000
        pub.paho.max_inflight_messages_set(16)
        infos = [pub.paho.publish("ret/%d" % (i % 4), b"%06d" % i + payload, 1)
                 for i in range(count)]
        for info in infos:
            info.wait_for_publish(60)
            self.assertTrue(info.is_published())
        pub.stop()

        def segments():
            return [n for shard in range(self.shards)
                    for n in os.listdir(os.path.join(self.broker.store_dir, "shard-%d" % shard))
                    if n.endswith(".log")]

        # A pass may run while the publisher still writes: wait for the one that leaves at
        # most 4 segments (each pass that deletes logs a line).
        while True:
            match = self.broker.await_log(r"retention shard=\d+ deleted_segments=(\d+) "
                                          r"watermark=(\d+)", timeout=60)
            self.assertGreater(int(match.group(1)), 0)
            if len(segments()) <= 4 + (self.shards - 1):
                break
        # The files went, and the session, its subscription and the retained message did not.
        self.broker.crash()
        self.broker.start()
        for shard in range(self.shards):
            directory = os.path.join(self.broker.store_dir, "shard-%d" % shard)
            left = [n for n in os.listdir(directory) if n.endswith(".log")]
            self.assertLessEqual(len(left), 4, "retention left %r" % left)
        sub = self.client(client_id="slow-sub", version=4, clean=False)
        present, _ = sub.connect()
        self.assertEqual(present, 1, "the session was lost with its segment")
        got = []
        # Everything from the watermark on, in order, none after a gap; the oldest are gone.
        while True:
            message = sub.expect_message(timeout=30)
            got.append(int(message.payload[:6]))
            if got[-1] == count - 1:
                break
        self.assertGreater(got[0], 0, "nothing was deleted before the session's position")
        self.assertEqual(got, list(range(got[0], count)))
        self.broker.await_log(r"lost_to_retention client=slow-sub", timeout=10)
        check = self.connected(client_id="check", version=4)
        check.subscribe("ret-state/#", 1)
        message = check.expect_message()
        self.assertEqual(message.payload, b"kept across retention")

    def test_sessions_survive_retention_through_snapshots_written_in_steps(self):
        # More sessions per shard than one snapshot step writes (PERSIST_SNAPSHOT_STEP, 512,
        # at 1 and 2 shards). Their journal records (4 KiB a write) fill many 1 MiB segments;
        # retention deletes the oldest, which held their first STATE.
        count = 1300
        for i in range(count):
            raw = RawClient(self.broker, 4)
            raw.send(connect_packet("many-%d" % i, clean=False) +
                     subscribe_packet(1, [("many/%d/+" % i, 1)]))
            raw.expect(CONNACK)
            raw.expect(SUBACK)
            raw.close()
        # 3 MB more on the publisher's shard: a snapshot starts once all sessions exist.
        pub = self.connected(client_id="many-pub", version=4)
        pub.paho.max_inflight_messages_set(16)
        infos = [pub.paho.publish("many/x/y", b"x" * 10000, 1) for _ in range(300)]
        for info in infos:
            info.wait_for_publish(60)
            self.assertTrue(info.is_published())
        pub.stop()
        if self.shards <= 2:  # 600 sessions or more per shard: more than one step
            self.broker.await_log(r"persist: snapshot shard=\d+ .* steps=[2-9]", timeout=60)
        deleted = r"retention shard=\d+ deleted_segments=[1-9]"
        if not re.search(deleted, self.broker.log_since_start()):
            self.broker.await_log(deleted, timeout=60)
        self.broker.crash()
        self.broker.start()
        restored = 0
        for _ in range(self.shards):
            match = self.broker.await_log(r"sessions_restored shard=\d+ count=(\d+)")
            restored += int(match.group(1))
        self.assertEqual(restored, count)
        sample = RawClient(self.broker, 4)
        self.addCleanup(sample.close)
        present, rc = sample.connect("many-%d" % (count - 1), clean=False)
        self.assertEqual((present, rc), (1, 0))


class TailCacheCases:
    """A hot tail smaller than what an offline session missed: the newest records come from
    memory, the older ones from O_DIRECT reads of the log, in one ordered stream."""

    broker_options = {"store.cache_bytes": "262144"}

    def test_catch_up_reads_the_tail_from_memory_and_the_rest_from_disk(self):
        sub = self.client(client_id="tail-sub", version=4, clean=False)
        sub.connect()
        self.assertEqual(sub.subscribe("tail/#", 1), 1)
        sub.disconnect()
        pub = self.connected(client_id="tail-pub", version=4)
        publish_all(pub, lambda index: "tail/%d" % (index % 7), COUNT, 1)
        pub.stop()
        sub = self.client(client_id="tail-sub", version=4, clean=False)
        present, _ = sub.connect()
        self.assertEqual(present, 1)
        got = [int(m.payload) for m in sub.expect_messages(COUNT, timeout=120)]
        self.assertEqual(got, list(range(COUNT)), "missing or out of order")
        sub.expect_no_message(0.5)
        sub.disconnect()
        self.broker.restart()  # a clean stop logs each shard's catch-up counters
        stats = re.findall(r"catchup_stats shard=\d+ requests=\d+ records=(\d+) "
                           r"cache_hits=(\d+) disk_reads=(\d+) read_errors=(\d+)",
                           self.broker.log())
        self.assertTrue(stats, "no catchup_stats line")
        self.assertEqual(sum(int(s[0]) for s in stats), COUNT)
        self.assertGreater(sum(int(s[1]) for s in stats), 0, "nothing from the hot tail")
        self.assertGreater(sum(int(s[2]) for s in stats), 0, "nothing read from disk")
        self.assertEqual(sum(int(s[3]) for s in stats), 0)


def check_retained_after_retention_and_crash(case, prefix, indexes, size, timeout):
    """Awaits a retention pass that deleted segments, kills -9 and restarts the broker, then
    checks that exactly the retained messages PREFIX/<i> for i in indexes come back, each of
    size bytes starting with its index (6 digits)."""
    deleted = r"retention shard=0 deleted_segments=[1-9]"
    if not re.search(deleted, case.broker.log_since_start()):
        case.broker.await_log(deleted, timeout=60)
    case.broker.crash()
    case.broker.start()
    check = case.connected(client_id=prefix + "-check", version=4)
    check.subscribe(prefix + "/#", 1)
    expected = ["%s/%d" % (prefix, i) for i in indexes]
    got = {}
    for _ in expected:
        try:
            message = check.expect_message(timeout=timeout)
        except AssertionError:
            missing = [topic for topic in expected if topic not in got]
            raise AssertionError("%d expected, %d retained came back, missing %r" %
                                 (len(expected), len(got), missing[:10]))
        got[message.topic] = message.payload
    check.expect_no_message(0.5)
    case.assertEqual(sorted(got), sorted(expected))
    for topic, payload in got.items():
        case.assertEqual(len(payload), size, topic)
        case.assertEqual(int(payload[:6]), int(topic.split("/")[1]), topic)


@unittest.skipIf(is_mosquitto(), "keelmq store options and log lines")
class LargeRetainedSnapshot(BrokerTestCase):
    """A snapshot rewrites the retained messages its shard published. More of them than the
    log takes in one go (COMMITLOG_BATCH_MAX, 64 MiB) must still complete it: written in one
    loop iteration, the rewrite failed at 64 MiB every time (snapshot_deferred), appended those
    64 MiB again at every retry, and retention never moved on."""

    shards = 1
    broker_options = {"store.segment_bytes": str(8 << 20), "store.retention.bytes": str(16 << 20),
                      "mqtt.max_packet_size": str(1 << 20)}
    COUNT = 300
    SIZE = 256 << 10  # 300 x 256 KiB: 75 MiB of retained messages

    def test_snapshot_of_more_retained_bytes_than_one_batch_completes(self):
        pub = self.connected(client_id="big-retained", version=4)
        pub.paho.max_inflight_messages_set(16)
        infos = [pub.paho.publish("big/%d" % i, b"%06d" % i + b"r" * (self.SIZE - 6), 1,
                                  retain=True) for i in range(self.COUNT)]
        for info in infos:
            info.wait_for_publish(120)
            self.assertTrue(info.is_published())
        # Clear retained topics one by one until the snapshot is done: clears that land while
        # it rewrites the retained messages must stay cleared after the crash.
        done = r"persist: snapshot shard=0 from=\d+ bytes=(\d+)"
        cleared = 0
        while cleared < self.COUNT - 10 and not re.search(done, self.broker.log_since_start()):
            info = pub.paho.publish("big/%d" % cleared, b"", 1, retain=True)
            info.wait_for_publish(60)
            self.assertTrue(info.is_published())
            cleared += 1
        pub.stop()
        self.broker.await_log(done, timeout=120)
        self.assertNotIn("snapshot_deferred", self.broker.log_since_start())
        check_retained_after_retention_and_crash(self, "big", range(cleared, self.COUNT),
                                                 self.SIZE, timeout=60)


@unittest.skipIf(is_mosquitto(), "keelmq store options and log lines")
class RetainedInFlightAtSnapshot(BrokerTestCase):
    """A QoS 1 retained message reaches the retained index only once durable. One appended but
    not durable yet when a snapshot starts lies below the snapshot's start, so the snapshot
    must still carry it: retention deletes the segments below, and with them its only copy.
    The publisher keeps 16 PUBLISHes of 100 KiB in flight against 1 MiB segments, so the first
    snapshot (the first retention pass, a tick after the start) begins with several of them
    appended, not durable, and in segments it lets retention delete. Each topic is published
    once: nothing later replaces a message the snapshot missed. The snapshot's rewrite fills
    the log for a while: the publisher is held meanwhile (up to 1.6 MiB in flight, stashed or
    left in the socket), never disconnected."""

    shards = 1
    # More topics than the 1000 a session queues by default may be published before the first
    # snapshot: the checking subscriber gets them all.
    broker_options = {"store.segment_bytes": str(1 << 20), "store.retention.bytes": str(2 << 20),
                      "mqtt.max_packet_size": str(256 << 10),
                      "mqtt.max_queued_messages": "100000"}
    SIZE = 100 << 10
    WINDOW = 16

    def await_ack(self, pub, info, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not info.is_published():
            self.assertTrue(pub.disconnects.empty(), "the broker closed the publisher's "
                            "connection (back-pressure must hold it, not drop it)")
            self.assertLess(time.monotonic(), deadline, "no PUBACK for mid %d" % info.mid)
            info.wait_for_publish(0.1)

    def test_messages_in_flight_when_a_snapshot_starts_survive_retention(self):
        pub = self.connected(client_id="inflight-retained", version=4)
        pub.paho.max_inflight_messages_set(self.WINDOW)
        done = r"persist: snapshot shard=0 from=\d+"
        infos = []
        started = time.monotonic()
        # Until the first snapshot is written, then stop: a later one would carry what the
        # first missed (the message is in the retained index by then).
        while not re.search(done, self.broker.log_since_start()):
            self.assertLess(time.monotonic() - started, 60, "no snapshot within 60 s")
            index = len(infos)
            infos.append(pub.paho.publish("inflight/%d" % index,
                                          b"%06d" % index + b"i" * (self.SIZE - 6), 1, retain=True))
            if index >= self.WINDOW:
                self.await_ack(pub, infos[index - self.WINDOW])
        for info in infos:
            self.await_ack(pub, info)
        pub.stop()
        check_retained_after_retention_and_crash(self, "inflight", range(len(infos)), self.SIZE,
                                                 timeout=30)


if not is_mosquitto():
    per_shard_count(TailCacheCases, globals())
    per_shard_count(DurableCases, globals())
    per_shard_count(RetentionCases, globals())
    per_shard_count(OutboundQos2Cases, globals())

if __name__ == "__main__":
    unittest.main()
