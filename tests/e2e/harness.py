# tests/e2e/harness.py - end-to-end test harness: starts a broker (keelmq, or Debian's mosquitto
# when KEELMQ_E2E_BROKER=mosquitto) on an ephemeral loopback port, wraps paho clients so tests
# await events instead of sleeping, and speaks raw MQTT for the cases paho cannot express (a
# socket that goes silent, a bare close, a thousand cheap connections).
#
# Environment:
#   BUILD               build directory holding keelmq (default "build", relative to the repo root)
#   KEELMQ_E2E_BROKER   "mosquitto" to run the suites against /usr/sbin/mosquitto instead
#   KEELMQ_SHARDS       comma-separated shard counts to repeat each test over (default "1,2,4";
#                       always "1" under mosquitto, which has no shards)
#
# Runs with /usr/bin/python3 and Debian's python3-paho-mqtt 1.6.

import os
import queue
import re
import resource
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCodes

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
EVENT_TIMEOUT_S = 5.0
QUIET_S = 0.5          # an absence is asserted by waiting this long for what must not come
LISTENING_RE = re.compile(r"listening tcp 127\.0\.0\.1:(\d+)")

# keelmq option -> mosquitto config key, for the few options the tests set.
MOSQUITTO_OPTIONS = {
    "mqtt.keepalive_max": "max_keepalive",
    "mqtt.max_queued_messages": "max_queued_messages",
    "mqtt.max_inflight": "max_inflight_messages",
    "mqtt.max_packet_size": "max_packet_size",
}


def broker_kind():
    return os.environ.get("KEELMQ_E2E_BROKER", "keelmq")


def is_mosquitto():
    return broker_kind() == "mosquitto"


def shard_counts():
    """The shard counts each test is repeated over."""
    if is_mosquitto():
        return [1]
    text = os.environ.get("KEELMQ_SHARDS", "1,2,4")
    return [int(part) for part in text.split(",") if part.strip()]


def raise_fd_limit():
    """Lets one test process (and the broker it starts) hold a few thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


LIVE_BROKERS = set()


def on_sigterm(signum, frame):
    """tests/run kills the suite's process group on interruption: take the brokers (same group)
    and their store directories down with us instead of leaving them behind."""
    for broker in list(LIVE_BROKERS):
        broker.kill()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, on_sigterm)


class Broker:
    """One broker process on an ephemeral loopback port with its own temporary store directory.

    start() returns once the broker accepts connections; stop() sends SIGTERM and asserts a zero
    exit status (SIGKILL after STOP_TIMEOUT_S). Use as a context manager or call both.
    """

    def __init__(self, shards=1, options=None):
        self.shards = shards
        self.options = dict(options or {})
        self.port = None
        self.process = None
        self.store_dir = None
        self.lines = []
        self.lines_lock = threading.Lock()
        self.line_queue = queue.Queue()
        self.reader = None
        self.lines_since_start = 0

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def log(self):
        with self.lines_lock:
            return "".join(self.lines[-200:])

    def start(self):
        """Starts the broker; after crash() it starts again on the same store directory."""
        raise_fd_limit()
        self.lines_since_start = len(self.lines)
        if self.store_dir is None:
            self.store_dir = tempfile.mkdtemp(prefix="keelmq-e2e-")
        try:
            if is_mosquitto():
                argv, ready_re = self.mosquitto_argv()
            else:
                argv, ready_re = self.keelmq_argv(), LISTENING_RE
        except BaseException:
            self.cleanup_files()
            raise
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        LIVE_BROKERS.add(self)
        self.reader = threading.Thread(target=self.drain_stderr, daemon=True)
        self.reader.start()
        try:
            self.await_ready(ready_re)
        except BaseException:
            self.kill()
            raise

    def keelmq_argv(self):
        build = os.environ.get("BUILD", "build")
        binary = os.path.join(REPO_ROOT, build, "keelmq")
        if not os.access(binary, os.X_OK):
            raise AssertionError("broker binary %s not found (set BUILD, or "
                                 "KEELMQ_E2E_BROKER=mosquitto)" % binary)
        argv = [binary, "-o", "listener.tcp.port=0", "-o", "listener.tcp.bind=" + HOST,
                "-o", "store.dir=" + self.store_dir, "-o", "shard.count=%d" % self.shards]
        for key, value in self.options.items():
            argv += ["-o", "%s=%s" % (key, value)]
        return argv

    def mosquitto_argv(self):
        self.port = free_port()
        config = os.path.join(self.store_dir, "mosquitto.conf")
        with open(config, "w") as out:
            out.write("listener %d %s\nallow_anonymous true\npersistence false\n"
                      "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
                      "log_type information\n" % (self.port, HOST))
            for key, value in self.options.items():
                if key in MOSQUITTO_OPTIONS:
                    out.write("%s %s\n" % (MOSQUITTO_OPTIONS[key], value))
        return ["/usr/sbin/mosquitto", "-c", config], re.compile(r"mosquitto version .* running")

    def drain_stderr(self):
        for raw in iter(self.process.stderr.readline, b""):
            line = raw.decode("utf-8", "replace")
            with self.lines_lock:
                self.lines.append(line)
            self.line_queue.put(line)
        self.line_queue.put(None)

    def await_ready(self, ready_re):
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("broker not listening after %.0f s; log:\n%s"
                                     % (START_TIMEOUT_S, self.log()))
            try:
                line = self.line_queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.process.wait(timeout=STOP_TIMEOUT_S)
                raise AssertionError("broker exited with status %s before listening; log:\n%s"
                                     % (self.process.returncode, self.log()))
            match = ready_re.search(line)
            if match:
                if match.groups():
                    self.port = int(match.group(1))
                return

    def await_log(self, pattern, timeout=30.0):
        """Waits for a log line of this process matching the regex `pattern` (an event the
        broker reports); returns the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no log line matching %r within %.0f s; log:\n%s"
                                     % (pattern, timeout, self.log()))
            try:
                line = self.line_queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("broker exited waiting for %r; log:\n%s"
                                     % (pattern, self.log()))
            match = regex.search(line)
            if match:
                return match

    def crash(self):
        """SIGKILL, keeping the store directory for the next start() (a crash, as kill -9)."""
        self.process.kill()
        self.process.wait()
        self.forget_process()

    def restart(self):
        """A clean stop (SIGTERM, status 0 asserted) and a start on the same store directory."""
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=STOP_TIMEOUT_S)
        self.forget_process()
        if status != 0:
            raise AssertionError("broker exited with status %d after SIGTERM; log:\n%s"
                                 % (status, self.log()))
        self.start()

    def forget_process(self):
        self.reader.join(timeout=2)
        self.reader = None
        self.process.stderr.close()
        self.process = None
        self.line_queue = queue.Queue()

    def log_since_start(self):
        """The log lines of the current process only (after a crash() and start())."""
        with self.lines_lock:
            return "".join(self.lines[self.lines_since_start:])

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.cleanup_files()
        LIVE_BROKERS.discard(self)

    def cleanup_files(self):
        if self.reader is not None:
            self.reader.join(timeout=2)
            self.reader = None
            self.process.stderr.close()
        if self.store_dir is not None:
            shutil.rmtree(self.store_dir, ignore_errors=True)
            self.store_dir = None

    def stop(self):
        if self.process is None:
            return
        try:
            if self.process.poll() is not None:
                raise AssertionError("broker died during the test with status %s; log:\n%s"
                                     % (self.process.returncode, self.log()))
            self.process.send_signal(signal.SIGTERM)
            try:
                status = self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError("broker ignored SIGTERM for %.0f s; log:\n%s"
                                     % (STOP_TIMEOUT_S, self.log()))
            if status != 0:
                raise AssertionError("broker exited with status %d after SIGTERM; log:\n%s"
                                     % (status, self.log()))
        finally:
            self.kill()
            self.process = None


# ---------------------------------------------------------------------------------------------
# paho wrapper: every callback feeds a queue, every wait has a timeout.

class Client:
    """A paho client running its own network thread; events land in queues.

    version is 4 (MQTT 3.1.1) or 5. clean maps to clean_session (v3.1.1) or clean_start (v5).
    """

    def __init__(self, broker, client_id="", version=4, clean=True, keepalive=60,
                 session_expiry=None, will=None):
        self.broker = broker
        self.version = version
        self.clean = clean
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        self.messages = queue.Queue()
        self.connects = queue.Queue()
        self.disconnects = queue.Queue()
        self.subacks = queue.Queue()
        if version == 5:
            self.paho = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5,
                                    reconnect_on_failure=False)
        else:
            self.paho = mqtt.Client(client_id=client_id, clean_session=clean,
                                    protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        if will is not None:
            topic, payload, qos, retain = will
            self.paho.will_set(topic, payload, qos, retain)
        self.paho.on_connect = self.on_connect
        self.paho.on_disconnect = self.on_disconnect
        self.paho.on_message = self.on_message
        self.paho.on_subscribe = self.on_subscribe
        self.is_started = False

    def on_connect(self, client, userdata, flags, rc, properties=None):
        self.connects.put((flags.get("session present", 0), rc))

    def on_disconnect(self, client, userdata, rc, properties=None):
        self.disconnects.put(rc)

    def on_message(self, client, userdata, message):
        self.messages.put(message)

    def on_subscribe(self, client, userdata, mid, granted, properties=None):
        self.subacks.put((mid, granted))

    def connect(self, timeout=EVENT_TIMEOUT_S):
        """Connects and awaits CONNACK; returns (session_present, reason code as int)."""
        if self.version == 5:
            properties = None
            if self.session_expiry is not None:
                properties = Properties(PacketTypes.CONNECT)
                properties.SessionExpiryInterval = self.session_expiry
            self.paho.connect(HOST, self.broker.port, self.keepalive, clean_start=self.clean,
                              properties=properties)
        else:
            self.paho.connect(HOST, self.broker.port, self.keepalive)
        self.paho.loop_start()
        self.is_started = True
        session_present, rc = get_event(self.connects, timeout, "CONNACK")
        rc_value = rc.value if hasattr(rc, "value") else rc
        if rc_value != 0:
            raise AssertionError("connection refused with code %r" % rc)
        return session_present, rc_value

    def subscribe(self, topic, qos=0, timeout=EVENT_TIMEOUT_S, options=None, properties=None):
        """Subscribes and awaits SUBACK; returns the granted QoS (or reason code) as an int.
        v5: `options` (paho SubscribeOptions, instead of qos) and `properties`."""
        result, mid = self.paho.subscribe(topic, qos, options=options, properties=properties)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError("subscribe failed locally: %d" % result)
        deadline = time.monotonic() + timeout
        while True:
            ack_mid, granted = get_event(self.subacks, deadline - time.monotonic(), "SUBACK")
            if ack_mid == mid:
                first = granted[0]
                return first.value if hasattr(first, "value") else first

    def publish(self, topic, payload, qos=0, retain=False, properties=None,
                timeout=EVENT_TIMEOUT_S):
        """Publishes; for QoS 1 and 2 awaits the acknowledgement."""
        info = self.paho.publish(topic, payload, qos, retain, properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError("publish failed locally: %d" % info.rc)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise AssertionError("publish to %s (QoS %d) not acknowledged within %.0f s"
                                 % (topic, qos, timeout))
        return info

    def expect_message(self, timeout=EVENT_TIMEOUT_S):
        return get_event(self.messages, timeout, "PUBLISH")

    def expect_messages(self, count, timeout=EVENT_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        return [get_event(self.messages, deadline - time.monotonic(),
                          "PUBLISH %d of %d" % (index + 1, count)) for index in range(count)]

    def expect_no_message(self, window_s=1.0):
        """The one sanctioned fixed wait: asserts nothing arrives for window_s (<= 1.5 s)."""
        assert window_s <= 1.5
        try:
            message = self.messages.get(timeout=window_s)
        except queue.Empty:
            return
        raise AssertionError("unexpected message on %s: %r" % (message.topic, message.payload))

    def expect_disconnect(self, timeout=EVENT_TIMEOUT_S):
        return get_event(self.disconnects, timeout, "disconnect")

    def disconnect(self, reason_code=None):
        """Sends DISCONNECT (v5: with the given reason code) and stops the network thread."""
        if reason_code is not None:
            self.paho.disconnect(reasoncode=ReasonCodes(PacketTypes.DISCONNECT,
                                                        identifier=reason_code))
        else:
            self.paho.disconnect()
        self.stop()

    def stop(self):
        if self.is_started:
            # disconnect() wakes the network thread at once; loop_stop() alone waits for the
            # thread's 1 s select timeout.
            if self.paho.is_connected():
                self.paho.disconnect()
            self.paho.loop_stop()
            self.is_started = False
        sock = self.paho.socket()
        if sock is not None:
            sock.close()


def get_event(events, timeout, what):
    try:
        return events.get(timeout=max(timeout, 0))
    except queue.Empty:
        raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what)) from None


# ---------------------------------------------------------------------------------------------
# Raw MQTT: just enough of the protocol to connect, subscribe, publish and acknowledge.

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, DISCONNECT = 8, 9, 12, 14


def encode_varint(value):
    out = bytearray()
    while True:
        byte = value % 128
        value //= 128
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def encode_string(text):
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def packet(kind, flags, body):
    return bytes([(kind << 4) | flags]) + encode_varint(len(body)) + body


def connect_packet(client_id, keepalive=60, clean=True, will=None, version=4,
                   session_expiry=None):
    """CONNECT for v3.1.1 (version 4) or v5; will is (topic, payload, qos, retain)."""
    flags = 0x02 if clean else 0
    payload = encode_string(client_id)
    if will is not None:
        topic, will_payload, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        if version == 5:
            payload += b"\x00"  # will properties length
        payload += encode_string(topic) + encode_string(will_payload)
    body = encode_string("MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        properties = b""
        if session_expiry is not None:
            properties += b"\x11" + struct.pack("!I", session_expiry)
        body += encode_varint(len(properties)) + properties
    return packet(CONNECT, 0, body + payload)


def subscribe_packet(mid, filters, version=4):
    body = struct.pack("!H", mid) + (b"\x00" if version == 5 else b"")
    for topic, qos in filters:
        body += encode_string(topic) + bytes([qos])
    return packet(SUBSCRIBE, 0x02, body)


def publish_packet(topic, payload, qos=0, mid=0, retain=False, version=4):
    body = encode_string(topic)
    if qos:
        body += struct.pack("!H", mid)
    if version == 5:
        body += b"\x00"
    return packet(PUBLISH, (qos << 1) | (1 if retain else 0), body + payload)


def puback_packet(mid):
    return packet(PUBACK, 0, struct.pack("!H", mid))


def disconnect_packet(version=4, reason_code=None):
    if version == 5 and reason_code is not None:
        return packet(DISCONNECT, 0, bytes([reason_code, 0]))
    return packet(DISCONNECT, 0, b"")


def parse_publish(flags, body, version=4):
    """Returns (topic, payload, qos, mid, retain) of a PUBLISH body."""
    qos = (flags >> 1) & 3
    (topic_len,) = struct.unpack_from("!H", body, 0)
    offset = 2 + topic_len
    topic = body[2:offset].decode()
    mid = 0
    if qos:
        (mid,) = struct.unpack_from("!H", body, offset)
        offset += 2
    if version == 5:
        properties_len, used = decode_varint(body, offset)
        offset += used + properties_len
    return topic, body[offset:], qos, mid, bool(flags & 1)


def decode_varint(data, offset):
    """Returns (value, bytes used), or (None, 0) when data ends inside the varint."""
    value, shift = 0, 0
    for used in range(1, 5):
        if offset + used > len(data):
            return None, 0
        byte = data[offset + used - 1]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, used
    raise AssertionError("malformed varint from the broker")


def split_packets(buffer):
    """Splits complete packets off the front of a bytearray: [(type, flags, body)]."""
    packets = []
    while len(buffer) >= 2:
        length, used = decode_varint(buffer, 1)
        if length is None or len(buffer) < 1 + used + length:
            break
        start = 1 + used
        packets.append((buffer[0] >> 4, buffer[0] & 0x0F, bytes(buffer[start:start + length])))
        del buffer[:start + length]
    return packets


class RawClient:
    """A blocking MQTT client on a plain socket, for behaviours paho cannot produce."""

    def __init__(self, broker, version=4):
        self.version = version
        self.sock = socket.create_connection((HOST, broker.port), timeout=EVENT_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.pending = []

    def send(self, data):
        self.sock.sendall(data)

    def connect(self, client_id, **kwargs):
        """Sends CONNECT and awaits CONNACK; returns (session_present, return/reason code)."""
        self.send(connect_packet(client_id, version=self.version, **kwargs))
        kind, _, body = self.recv_packet()
        if kind != CONNACK:
            raise AssertionError("expected CONNACK, got packet type %d" % kind)
        return body[0] & 1, body[1]

    def recv_packet(self, timeout=EVENT_TIMEOUT_S):
        """Returns the next (type, flags, body); None if the broker closed the connection."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            self.pending = split_packets(self.buffer)
            if self.pending:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("timed out waiting for a packet from the broker")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            self.buffer += data
        return self.pending.pop(0)

    def next_packet(self, timeout=EVENT_TIMEOUT_S):
        """The next packet as (type, flags, body); the broker closing is a failure."""
        item = self.recv_packet(timeout)
        if item is None:
            raise AssertionError("the broker closed the connection")
        return item

    def expect(self, kind, timeout=EVENT_TIMEOUT_S):
        """The next packet, which must be of type `kind`: (flags, body)."""
        got, flags, body = self.next_packet(timeout)
        if got != kind:
            raise AssertionError("expected packet type %d, got %d" % (kind, got))
        return flags, body

    def expect_nothing(self, window_s=QUIET_S):
        """No packet within window_s (an absence can only be waited for)."""
        try:
            item = self.recv_packet(window_s)
        except AssertionError:
            return
        raise AssertionError("unexpected packet from the broker: %r" % (item,))

    def close(self):
        self.sock.close()


class RawFleet:
    """Many non-blocking raw connections driven by one selector: one thread, no paho threads."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.buffers = {}

    def add(self, sock, owner):
        sock.setblocking(False)
        self.buffers[sock] = bytearray()
        self.selector.register(sock, selectors.EVENT_READ, owner)

    def poll(self, timeout):
        """Yields (owner, sock, (type, flags, body)) for every complete packet read."""
        for key, _ in self.selector.select(timeout):
            sock = key.fileobj
            try:
                data = sock.recv(262144)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                raise AssertionError("broker closed connection of %r" % (key.data,))
            self.buffers[sock] += data
            for item in split_packets(self.buffers[sock]):
                yield key.data, sock, item

    def close(self):
        for sock in list(self.buffers):
            self.selector.unregister(sock)
            sock.close()
        self.buffers.clear()
        self.selector.close()


def send_all_blocking(sock, data):
    """sendall on a non-blocking socket, waiting for writability (bounded by EVENT_TIMEOUT_S)."""
    view = memoryview(data)
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while view:
        try:
            sent = sock.send(view)
            view = view[sent:]
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise AssertionError("socket send stalled for %.0f s" % EVENT_TIMEOUT_S)
            select.select([], [sock], [], 0.1)


# ---------------------------------------------------------------------------------------------
# unittest glue

class BrokerTestCase(unittest.TestCase):
    """Starts a fresh broker with self.shards shards for every test; clients close first."""

    shards = 1
    broker_options = {}

    def setUp(self):
        self.broker = Broker(shards=self.shards, options=self.broker_options)
        self.broker.start()
        self.addCleanup(self.broker.stop)
        self.addCleanup(self.print_log_on_failure)

    def print_log_on_failure(self):
        """Shows the broker's last log lines under a failed test (runs before the broker stops)."""
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is None:
            return
        if any(test is self for test, _ in result.failures + result.errors):
            print("\n--- broker log (%s) ---\n%s--- end of broker log ---"
                  % (self.id(), "".join(self.broker.log().splitlines(True)[-40:])),
                  file=sys.stderr)

    def client(self, **kwargs):
        client = Client(self.broker, **kwargs)
        self.addCleanup(client.stop)
        return client

    def connected(self, **kwargs):
        client = self.client(**kwargs)
        client.connect()
        return client

    def raw(self, version=4):
        raw = RawClient(self.broker, version)
        self.addCleanup(raw.close)
        return raw


def per_shard_count(cases, namespace):
    """Adds to namespace one BrokerTestCase per shard count, named <Cases>Shards<N>, running the
    test methods of the plain mixin class cases (which unittest itself does not collect)."""
    for count in shard_counts():
        name = "%sShards%d" % (cases.__name__, count)
        namespace[name] = type(name, (cases, BrokerTestCase),
                               {"shards": count, "__module__": namespace["__name__"]})


def home_shards(broker, client_ids):
    """The shard each client's session lives on, from the connect log lines (awaited: the
    shards' log rings are drained asynchronously)."""
    pattern = r"connect client=(\S+) conn=(\d+)/"
    shards = {}
    with broker.lines_lock:
        for line in broker.lines:
            match = re.search(pattern, line)
            if match:
                shards[match.group(1)] = int(match.group(2))
    while not all(client_id in shards for client_id in client_ids):
        match = broker.await_log(pattern, timeout=5.0)
        shards[match.group(1)] = int(match.group(2))
    return [shards[client_id] for client_id in client_ids]
