// tests/e2e/mqtt5_lifetimes.test.mjs - MQTT 5 lifetimes as MQTT.js 5 sets them: a message's
// messageExpiryInterval while its persistent subscriber is offline, and a will's
// willDelayInterval. The Python suite (test_mqtt5_lifetimes.py) covers the rest.
//
//   node --test tests/e2e/mqtt5_lifetimes.test.mjs    (BUILD selects the build directory)
//
// Each shard count in KEELMQ_SHARDS (default 1,2,4) gets its own broker, started as
// tests/e2e/harness.py starts it. Waiting for an interval to pass is the one fixed wait; every
// event is awaited with a timeout and nothing asserts on speed.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const HOST = '127.0.0.1';
const EVENT_TIMEOUT_MS = 5000;
const WILL_TIMEOUT_MS = 15000;   // the will timer runs on the broker's 1 s expiry scan
const EXPIRY_WAIT_MS = 1600;     // past a 1 s Message Expiry Interval
const SKIP = process.env.KEELMQ_E2E_BROKER === 'mosquitto' || process.env.KEELMQ_E2E_PORT;

function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
                           ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One keelmq process on an ephemeral port with a temporary store directory.
class Broker {
    constructor(shards) {
        this.shards = shards;
        this.lines = [];
    }

    async start() {
        const binary = path.join(path.resolve(REPO_ROOT, process.env.BUILD || 'build'), 'keelmq');
        assert.ok(fs.existsSync(binary), `broker binary ${binary} not found`);
        this.storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'keelmq-e2e-js-'));
        this.child = spawn(binary, ['-o', 'listener.tcp.port=0', '-o', `listener.tcp.bind=${HOST}`,
                                    '-o', `store.dir=${this.storeDir}`,
                                    '-o', `shard.count=${this.shards}`],
                           { stdio: ['ignore', 'ignore', 'pipe'] });
        this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) =>
            resolve({ code, signal })));
        const ready = new Promise((resolve, reject) => {
            const lines = readline.createInterface({ input: this.child.stderr });
            lines.on('line', (line) => {
                this.lines.push(line);
                const match = /listening tcp 127\.0\.0\.1:(\d+)/.exec(line);
                if (match) {
                    this.port = Number(match[1]);
                    resolve();
                }
            });
            this.exited.then(({ code }) => reject(new Error(`broker exited with ${code}`)));
        });
        try {
            await withTimeout(ready, 10000, 'broker to listen');
        } catch (error) {
            this.child.kill('SIGKILL');
            fs.rmSync(this.storeDir, { recursive: true, force: true });
            throw new Error(`${error.message}\n${this.lines.join('\n')}`);
        }
    }

    async stop() {
        if (!this.child) return;
        try {
            assert.equal(this.child.exitCode, null, 'broker died during the test');
            this.child.kill('SIGTERM');
            const status = await withTimeout(this.exited, 10000, 'broker exit').catch((error) => {
                this.child.kill('SIGKILL');
                throw error;
            });
            assert.deepEqual(status, { code: 0, signal: null }, this.lines.join('\n'));
        } finally {
            fs.rmSync(this.storeDir, { recursive: true, force: true });
            this.child = null;
        }
    }
}

// Collects 'message' events so a test can await the next one with a timeout.
class Inbox {
    constructor(client) {
        this.queue = [];
        this.waiters = [];
        client.on('message', (topic, payload, packet) => {
            const message = { topic, payload, packet };
            const waiter = this.waiters.shift();
            if (waiter) waiter(message);
            else this.queue.push(message);
        });
    }

    next(what = 'message', ms = EVENT_TIMEOUT_MS) {
        if (this.queue.length) return Promise.resolve(this.queue.shift());
        return withTimeout(new Promise((resolve) => this.waiters.push(resolve)), ms, what);
    }
}

const counts = SKIP ? [] : (process.env.KEELMQ_SHARDS || '1,2,4').split(',')
    .filter((s) => s.trim()).map(Number);

for (const shards of counts) {
    describe(`mqtt.js MQTT 5 lifetimes with ${shards} shard(s)`, () => {
        const broker = new Broker(shards);
        const clients = [];

        before(() => broker.start());
        after(async () => {
            await Promise.all(clients.map((client) => client.endAsync(true)));
            await broker.stop();
        });

        async function connect(options = {}) {
            const client = mqtt.connect(`mqtt://${HOST}:${broker.port}`, {
                protocolVersion: 5, reconnectPeriod: 0, connectTimeout: EVENT_TIMEOUT_MS,
                ...options,
            });
            clients.push(client);
            const inbox = new Inbox(client);
            const connack = await withTimeout(new Promise((resolve, reject) => {
                client.once('connect', resolve);
                client.once('error', reject);
            }), EVENT_TIMEOUT_MS, 'CONNACK');
            return { client, inbox, connack };
        }

        test('messageExpiryInterval: expired while offline is dropped, the rest decremented',
             async () => {
            const session = { clientId: `js-exp-${shards}`, clean: false,
                              properties: { sessionExpiryInterval: 60 } };
            const { client: sub } = await connect(session);
            await sub.subscribeAsync('jsexp/t', { qos: 1 });
            await sub.endAsync();
            const { client: pub } = await connect();
            await pub.publishAsync('jsexp/t', 'short',
                                   { qos: 1, properties: { messageExpiryInterval: 1 } });
            await pub.publishAsync('jsexp/t', 'long',
                                   { qos: 1, properties: { messageExpiryInterval: 60 } });
            await sleep(EXPIRY_WAIT_MS);
            const { inbox, connack } = await connect(session);
            assert.equal(connack.sessionPresent, true);
            const message = await inbox.next('the unexpired message');
            assert.equal(message.payload.toString(), 'long', 'the expired message was delivered');
            const left = message.packet.properties.messageExpiryInterval;
            assert.ok(left >= 1 && left <= 59, `not decremented: ${left}`);
        });

        test('willDelayInterval: the will follows the delay, unless the client returns',
             async () => {
            const { client: watcher, inbox } = await connect();
            await watcher.subscribeAsync('jswill/#', { qos: 1 });
            const will = (name, delay) => ({
                clientId: `js-${name}-${shards}`, clean: false,
                properties: { sessionExpiryInterval: 60 },
                will: { topic: `jswill/${name}`, payload: Buffer.from(name), qos: 1,
                        retain: false, properties: { willDelayInterval: delay } },
            });
            const { client: returner } = await connect(will('returner', 1));
            const { client: leaver } = await connect(will('leaver', 3));
            await returner.endAsync(false, { reasonCode: 0x04 });  // disconnect with will
            await leaver.endAsync(false, { reasonCode: 0x04 });
            const { connack } = await connect({ ...will('returner', 1), will: undefined });
            assert.equal(connack.sessionPresent, true);
            // The leaver's will is due after the returner's would have been: only it arrives.
            const message = await inbox.next('the leaver\'s will', WILL_TIMEOUT_MS);
            assert.equal(message.topic, 'jswill/leaver', 'a cancelled will was sent');
        });
    });
}
