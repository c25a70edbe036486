// tests/e2e/broker.mjs - the broker launcher and client helpers of the MQTT.js suites. Starts
// keelmq as tests/e2e/harness.py does: an ephemeral loopback port, a temporary store directory,
// `-o` options, SIGTERM with exit status 0 asserted at the end. Not a test file itself
// (node --test runs only *.test.mjs here).
//
// A suite that also runs against other brokers builds its Broker with Broker.fromEnv():
//   KEELMQ_E2E_BROKER=mosquitto   Debian's /usr/sbin/mosquitto on a free loopback port
//   KEELMQ_E2E_PORT=1883          a broker already listening on that loopback port
// keelmq-only suites skip themselves when OTHER_BROKER is true.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import mqtt from 'mqtt';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const HOST = '127.0.0.1';
export const EVENT_TIMEOUT_MS = 5000;
const START_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 10000;

export const IS_MOSQUITTO = process.env.KEELMQ_E2E_BROKER === 'mosquitto';
export const OTHER_BROKER = IS_MOSQUITTO || Boolean(process.env.KEELMQ_E2E_PORT);

export function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
                           ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// The shard counts in KEELMQ_SHARDS (default 1,2,4), one keelmq per count.
export function shardCounts() {
    return (process.env.KEELMQ_SHARDS || '1,2,4').split(',').filter((s) => s.trim())
        .map(Number);
}

// A loopback port that was free a moment ago (for brokers that cannot take port 0).
export function freePort() {
    return new Promise((resolve, reject) => {
        const server = net.createServer();
        server.on('error', reject);
        server.listen(0, HOST, () => {
            const { port } = server.address();
            server.close(() => resolve(port));
        });
    });
}

// One broker process with a temporary store directory; start() resolves once it listens.
export class Broker {
    // options: { 'mqtt.p2p': 'on', ... } passed as -o key=value (keelmq only).
    // target: 'keelmq', 'mosquitto' or 'external' (the broker on KEELMQ_E2E_PORT).
    constructor(shards, options = {}, target = 'keelmq') {
        assert.ok(target === 'keelmq' || Object.keys(options).length === 0,
                  `-o options are for keelmq, not ${target}`);
        this.shards = shards;
        this.options = options;
        this.target = target;
        this.lines = [];
        this.lineWaiters = [];
        this.child = null;
        this.port = null;
        this.storeDir = null;
    }

    // The broker KEELMQ_E2E_PORT / KEELMQ_E2E_BROKER select (keelmq when neither is set).
    static fromEnv(shards) {
        if (process.env.KEELMQ_E2E_PORT) return new Broker(shards, {}, 'external');
        return new Broker(shards, {}, IS_MOSQUITTO ? 'mosquitto' : 'keelmq');
    }

    async start() {
        if (this.target === 'external') {
            this.port = Number(process.env.KEELMQ_E2E_PORT);
            return;
        }
        let argv;
        let readyRe;
        if (this.target === 'mosquitto') {
            this.storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'keelmq-e2e-js-'));
            this.port = await freePort();
            const config = path.join(this.storeDir, 'mosquitto.conf');
            fs.writeFileSync(config, `listener ${this.port} ${HOST}\nallow_anonymous true\n` +
                             'persistence false\nlog_dest stderr\n');
            argv = ['/usr/sbin/mosquitto', '-c', config];
            readyRe = /mosquitto version .* running/;
        } else {
            const build = path.resolve(REPO_ROOT, process.env.BUILD || 'build');
            const binary = path.join(build, 'keelmq');
            assert.ok(fs.existsSync(binary), `broker binary ${binary} not found`);
            this.storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'keelmq-e2e-js-'));
            argv = [binary, '-o', 'listener.tcp.port=0', '-o', `listener.tcp.bind=${HOST}`,
                    '-o', `store.dir=${this.storeDir}`, '-o', `shard.count=${this.shards}`];
            for (const [key, value] of Object.entries(this.options)) {
                argv.push('-o', `${key}=${value}`);
            }
            readyRe = /listening tcp 127\.0\.0\.1:(\d+)/;
        }
        this.child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
        this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) =>
            resolve({ code, signal })));
        const ready = new Promise((resolve, reject) => {
            // readline keeps draining stderr after the match, so the pipe never fills.
            const lines = readline.createInterface({ input: this.child.stderr });
            lines.on('line', (line) => {
                this.lines.push(line);
                this.lineWaiters = this.lineWaiters.filter((w) => !w(line));
                const match = readyRe.exec(line);
                if (match) {
                    if (this.port === null) this.port = Number(match[1]);
                    resolve();
                }
            });
            this.exited.then(({ code }) => reject(new Error(
                `broker exited with ${code} before listening:\n${this.log()}`)));
        });
        try {
            await withTimeout(ready, START_TIMEOUT_MS, 'broker to listen');
        } catch (error) {
            this.child.kill('SIGKILL');
            this.removeStore();
            throw new Error(`${error.message}\n${this.log()}`);
        }
    }

    // Resolves with the match of the first log line (past or future) matching `re`.
    awaitLog(re, what = `log line ${re}`) {
        for (const line of this.lines) {
            const match = re.exec(line);
            if (match) return Promise.resolve(match);
        }
        return withTimeout(new Promise((resolve) => this.lineWaiters.push((line) => {
            const match = re.exec(line);
            if (match) resolve(match);
            return Boolean(match);
        })), EVENT_TIMEOUT_MS, what);
    }

    log() {
        return this.lines.slice(-100).join('\n');
    }

    removeStore() {
        if (this.storeDir) fs.rmSync(this.storeDir, { recursive: true, force: true });
        this.storeDir = null;
    }

    // Sends SIGTERM and asserts exit status 0; SIGKILL after STOP_TIMEOUT_MS.
    async stop() {
        if (!this.child) return;
        try {
            assert.equal(this.child.exitCode, null, `broker died during the test:\n${this.log()}`);
            this.child.kill('SIGTERM');
            let status;
            try {
                status = await withTimeout(this.exited, STOP_TIMEOUT_MS, 'broker exit');
            } catch (error) {
                this.child.kill('SIGKILL');
                await this.exited;
                throw error;
            }
            assert.deepEqual(status, { code: 0, signal: null },
                             `broker exit after SIGTERM:\n${this.log()}`);
        } finally {
            this.removeStore();
            this.child = null;
        }
    }
}

// Collects an MQTT.js client's 'message' events so a test can await the next one with a
// timeout. A message is { topic, payload, packet, wireTopic }: wireTopic is the topic as it
// came on the wire, '' where a topic alias stood for it.
export class Inbox {
    constructor(client) {
        this.queue = [];
        this.waiters = [];
        client.on('message', (topic, payload, packet) => {
            const message = { topic, payload, packet, wireTopic: packet.topic };
            const waiter = this.waiters.shift();
            if (waiter) waiter(message);
            else this.queue.push(message);
        });
    }

    next(what = 'message', ms = EVENT_TIMEOUT_MS) {
        if (this.queue.length) return Promise.resolve(this.queue.shift());
        return withTimeout(new Promise((resolve) => this.waiters.push(resolve)), ms, what);
    }

    async take(count) {
        const messages = [];
        for (let index = 0; index < count; index++) {
            messages.push(await this.next(`message ${index + 1} of ${count}`));
        }
        return messages;
    }

    // Asserts that nothing arrives within `ms` (the one sanctioned fixed wait).
    async none(ms) {
        await new Promise((resolve) => setTimeout(resolve, ms));
        assert.equal(this.queue.length, 0, `unexpected message on ${this.queue[0]?.topic}`);
    }
}

// One broker per describe block (call inside its callback): before() starts it, after() ends
// every tracked connection and then stops it. `broker` may be a Broker or the arguments of one.
export function useBroker(broker, options) {
    if (!(broker instanceof Broker)) broker = new Broker(broker, options);
    const clients = [];
    before(() => broker.start());
    after(async () => {
        await Promise.all(clients.map((client) =>
            client.endAsync ? client.endAsync(true) : client.close()));
        await broker.stop();
    });

    // Ends `connection` (an MQTT.js client, or anything with close()) before the broker stops.
    function track(connection) {
        clients.push(connection);
        return connection;
    }

    // Resolves with { client, inbox, connack } once CONNACK came back with success. MQTT 5
    // unless options.protocolVersion says otherwise.
    async function connect(options = {}) {
        const client = track(mqtt.connect(`mqtt://${HOST}:${broker.port}`, {
            protocolVersion: 5, reconnectPeriod: 0, connectTimeout: EVENT_TIMEOUT_MS, ...options,
        }));
        const inbox = new Inbox(client);
        const connack = await withTimeout(new Promise((resolve, reject) => {
            client.once('connect', resolve);
            client.once('error', reject);
        }), EVENT_TIMEOUT_MS, 'CONNACK');
        return { client, inbox, connack };
    }

    // Resolves with { error, connack } for a CONNECT the broker refuses.
    async function refused(options = {}) {
        const client = track(mqtt.connect(`mqtt://${HOST}:${broker.port}`, {
            protocolVersion: 5, reconnectPeriod: 0, connectTimeout: EVENT_TIMEOUT_MS, ...options,
        }));
        let connack = null;
        client.on('packetreceive', (packet) => {
            if (packet.cmd === 'connack') connack = packet;
        });
        const error = await withTimeout(new Promise((resolve, reject) => {
            client.once('connect', () => reject(new Error('connected, expected a refusal')));
            client.once('error', resolve);
        }), EVENT_TIMEOUT_MS, 'refusing CONNACK');
        return { error, connack };
    }

    return { broker, connect, refused, track };
}
