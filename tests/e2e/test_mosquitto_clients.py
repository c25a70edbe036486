# tests/e2e/test_mosquitto_clients.py - end-to-end behaviour of the broker as seen by the
# mosquitto_pub and mosquitto_sub command-line clients (MQTT 3.1, 3.1.1 and 5), run as
# subprocesses. Every test is repeated for each shard count in KEELMQ_SHARDS (see harness.py).
#
#   BUILD=build /usr/bin/python3 -m unittest -v test_mosquitto_clients     (from tests/e2e)

import queue
import subprocess
import threading
import unittest

import harness

TIMEOUT_S = 10


class Subscriber:
    """mosquitto_sub in debug mode, line-buffered so its SUBACK can be awaited before publishing.

    Message lines are the lines that are not debug output ("Client ..." / "Subscribed ...").
    """

    def __init__(self, broker, args, count):
        argv = ["stdbuf", "-oL", "mosquitto_sub", "-h", harness.HOST, "-p", str(broker.port),
                "-d", "-C", str(count), "-W", str(TIMEOUT_S)] + args
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        self.output = []
        self.reader = threading.Thread(target=self.drain, daemon=True)
        self.reader.start()

    def drain(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def await_subscribed(self):
        while True:
            line = harness.get_event(self.lines, TIMEOUT_S, "mosquitto_sub SUBACK")
            if line is None:
                raise AssertionError("mosquitto_sub exited before subscribing: %r" % self.output)
            self.output.append(line)
            if line.startswith("Subscribed (mid"):
                return

    def messages(self):
        """Waits for exit (status 0: all -C messages arrived) and returns the message lines."""
        while True:
            line = harness.get_event(self.lines, TIMEOUT_S + 5, "mosquitto_sub exit")
            if line is None:
                break
            self.output.append(line)
        status = self.process.wait(timeout=TIMEOUT_S)
        if status != 0:
            raise AssertionError("mosquitto_sub exited with %d; output:\n%s"
                                 % (status, "\n".join(self.output)))
        return [line for line in self.output
                if not line.startswith("Client ") and not line.startswith("Subscribed (mid")]

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=2)
        self.process.stdout.close()


class MosquittoClientCases:
    def subscriber(self, args, count):
        subscriber = Subscriber(self.broker, args, count)
        self.addCleanup(subscriber.close)
        subscriber.await_subscribed()
        return subscriber

    def publish(self, *args, stdin=None):
        argv = ["mosquitto_pub", "-h", harness.HOST, "-p", str(self.broker.port)] + list(args)
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                timeout=TIMEOUT_S)
        self.assertEqual(result.returncode, 0, "mosquitto_pub failed: %s" % result.stderr)

    def test_v5_subscriber_receives_v311_publish(self):
        subscriber = self.subscriber(["-V", "mqttv5", "-t", "a/#", "-q", "2", "-v"], 1)
        self.publish("-V", "mqttv311", "-t", "a/b", "-m", "hi", "-q", "1")
        self.assertEqual(subscriber.messages(), ["a/b hi"])

    def test_v311_subscriber_qos1_gets_min_qos_from_v5_publishes(self):
        subscriber = self.subscriber(["-V", "mqttv311", "-t", "a/#", "-q", "1",
                                      "-F", "%q %r %t %p"], 3)
        for qos in range(3):
            self.publish("-V", "mqttv5", "-t", "a/q%d" % qos, "-m", "m%d" % qos, "-q", str(qos))
        self.assertEqual(sorted(subscriber.messages()),
                         ["0 0 a/q0 m0", "1 0 a/q1 m1", "1 0 a/q2 m2"])

    def test_v31_subscriber_qos2_gets_each_qos_from_v311_publishes(self):
        subscriber = self.subscriber(["-V", "mqttv31", "-t", "b/+", "-q", "2",
                                      "-F", "%q %t %p"], 3)
        for qos in range(3):
            self.publish("-V", "mqttv311", "-t", "b/q%d" % qos, "-m", "m%d" % qos, "-q", str(qos))
        self.assertEqual(sorted(subscriber.messages()), ["0 b/q0 m0", "1 b/q1 m1", "2 b/q2 m2"])

    def test_v5_qos2_to_v5_qos2(self):
        subscriber = self.subscriber(["-V", "mqttv5", "-t", "c/d", "-q", "2",
                                      "-F", "%q %t %p"], 1)
        self.publish("-V", "mqttv5", "-t", "c/d", "-m", "exactly once", "-q", "2")
        self.assertEqual(subscriber.messages(), ["2 c/d exactly once"])

    def test_hundred_lines_arrive_in_order(self):
        subscriber = self.subscriber(["-V", "mqttv311", "-t", "lines", "-q", "1"], 100)
        lines = ["line %d" % index for index in range(100)]
        self.publish("-V", "mqttv5", "-t", "lines", "-q", "1", "-l",
                     stdin="\n".join(lines) + "\n")
        self.assertEqual(subscriber.messages(), lines)

    def test_retained_message_delivered_on_subscribe(self):
        self.publish("-V", "mqttv5", "-t", "r/t", "-m", "kept", "-q", "1", "-r")
        subscriber = Subscriber(self.broker, ["-V", "mqttv311", "-t", "r/#", "-q", "1",
                                              "-F", "%r %q %t %p"], 1)
        self.addCleanup(subscriber.close)
        self.assertEqual(subscriber.messages(), ["1 1 r/t kept"])

    def test_retained_message_cleared_by_empty_payload(self):
        self.publish("-V", "mqttv311", "-t", "r/gone", "-m", "kept", "-q", "1", "-r")
        self.publish("-V", "mqttv311", "-t", "r/gone", "-n", "-q", "1", "-r")
        # The first message must be the live marker: no retained r/gone is left to deliver.
        subscriber = self.subscriber(["-V", "mqttv5", "-t", "r/#", "-q", "1",
                                      "-F", "%r %t %p"], 1)
        self.publish("-V", "mqttv5", "-t", "r/marker", "-m", "live", "-q", "1")
        self.assertEqual(subscriber.messages(), ["0 r/marker live"])

    def test_v5_properties_pass_through(self):
        subscriber = self.subscriber(["-V", "mqttv5", "-t", "p/t", "-q", "1",
                                      "-F", "%R|%C|%P|%p"], 1)
        self.publish("-V", "mqttv5", "-t", "p/t", "-m", "body", "-q", "1",
                     "-D", "publish", "response-topic", "p/reply",
                     "-D", "publish", "content-type", "text/plain",
                     "-D", "publish", "user-property", "key", "value")
        self.assertEqual(subscriber.messages(), ["p/reply|text/plain|key:value|body"])


harness.per_shard_count(MosquittoClientCases, globals())

if __name__ == "__main__":
    unittest.main(verbosity=2)
