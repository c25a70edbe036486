// tests/e2e/mqttjs.test.mjs - end-to-end behaviour of the broker as seen by MQTT.js 5 (MQTT 3.1.1
// and 5): QoS 0/1/2 round trips, request/response properties, retained messages.
//
//   node --test tests/e2e/                       (BUILD selects the build directory, default build)
//   KEELMQ_E2E_BROKER=mosquitto node --test tests/e2e/
//   KEELMQ_E2E_PORT=1883 node --test tests/e2e/  (use a broker that is already running)
//
// Each shard count in KEELMQ_SHARDS (default 1,2,4; only 1 under mosquitto) gets its own broker,
// started exactly as tests/e2e/harness.py starts it. MQTT.js comes from tests/e2e/node_modules
// (scripts/deps.sh test installs it).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const HOST = '127.0.0.1';
const EVENT_TIMEOUT_MS = 5000;
const START_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 10000;
const IS_MOSQUITTO = process.env.KEELMQ_E2E_BROKER === 'mosquitto';

function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
                           ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function freePort() {
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
class Broker {
    constructor(shards) {
        this.shards = shards;
        this.lines = [];
        this.child = null;
        this.port = null;
        this.storeDir = null;
    }

    async start() {
        if (process.env.KEELMQ_E2E_PORT) {
            this.port = Number(process.env.KEELMQ_E2E_PORT);
            return;
        }
        let argv;
        let readyRe;
        if (IS_MOSQUITTO) {
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
                const match = readyRe.exec(line);
                if (match && this.port === null) this.port = Number(match[1]);
                if (match) resolve();
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

function shardCounts() {
    if (IS_MOSQUITTO || process.env.KEELMQ_E2E_PORT) return [1];
    return (process.env.KEELMQ_SHARDS || '1,2,4').split(',').filter((s) => s.trim())
        .map(Number);
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

    next(what = 'message') {
        if (this.queue.length) return Promise.resolve(this.queue.shift());
        return withTimeout(new Promise((resolve) => this.waiters.push(resolve)), EVENT_TIMEOUT_MS,
                           what);
    }

    async take(count) {
        const messages = [];
        for (let index = 0; index < count; index++) {
            messages.push(await this.next(`message ${index + 1} of ${count}`));
        }
        return messages;
    }
}

for (const shards of shardCounts()) {
    describe(`mqtt.js against ${IS_MOSQUITTO ? 'mosquitto' : 'keelmq'} with ${shards} shard(s)`,
             () => {
        const broker = new Broker(shards);
        const clients = [];

        before(() => broker.start());
        after(async () => {
            await Promise.all(clients.map((client) => client.endAsync(true)));
            await broker.stop();
        });

        async function connect(protocolVersion, options = {}) {
            const client = mqtt.connect(`mqtt://${HOST}:${broker.port}`, {
                protocolVersion, reconnectPeriod: 0, connectTimeout: EVENT_TIMEOUT_MS, ...options,
            });
            clients.push(client);
            const inbox = new Inbox(client);
            await withTimeout(new Promise((resolve, reject) => {
                client.once('connect', resolve);
                client.once('error', reject);
            }), EVENT_TIMEOUT_MS, 'CONNACK');
            return { client, inbox };
        }

        for (const version of [4, 5]) {
            test(`v${version} subscribe a/# QoS 2 receives QoS 0, 1 and 2 publishes`, async () => {
                const { client, inbox } = await connect(version);
                const granted = await client.subscribeAsync('a/#', { qos: 2 });
                assert.equal(granted[0].qos, 2);
                for (const qos of [0, 1, 2]) {
                    await client.publishAsync(`a/v${version}/q${qos}`, `m${qos}`, { qos });
                }
                const received = (await inbox.take(3)).map((m) =>
                    [m.topic, m.payload.toString(), m.packet.qos, m.packet.retain]);
                received.sort();
                assert.deepEqual(received, [
                    [`a/v${version}/q0`, 'm0', 0, false],
                    [`a/v${version}/q1`, 'm1', 1, false],
                    [`a/v${version}/q2`, 'm2', 2, false],
                ]);
                await client.unsubscribeAsync('a/#');
            });

            test(`v${version} retained message is delivered on subscribe`, async () => {
                const { client: publisher } = await connect(version);
                await publisher.publishAsync(`ret/v${version}`, 'kept', { qos: 1, retain: true });
                const { client, inbox } = await connect(version);
                await client.subscribeAsync(`ret/v${version}`, { qos: 1 });
                const message = await inbox.next('retained message');
                assert.equal(message.topic, `ret/v${version}`);
                assert.equal(message.payload.toString(), 'kept');
                assert.equal(message.packet.retain, true);
                assert.equal(message.packet.qos, 1);
            });
        }

        test('v5 request/response passes responseTopic and correlationData unchanged', async () => {
            const { client: responder, inbox: requests } = await connect(5);
            await responder.subscribeAsync('svc/request', { qos: 1 });
            const { client: requester, inbox: responses } = await connect(5);
            await requester.subscribeAsync('svc/reply/42', { qos: 1 });
            const correlationData = Buffer.from([0, 1, 2, 0xfe, 0xff]);
            await requester.publishAsync('svc/request', 'question', {
                qos: 1, properties: { responseTopic: 'svc/reply/42', correlationData },
            });
            const request = await requests.next('request');
            assert.equal(request.payload.toString(), 'question');
            assert.equal(request.packet.properties.responseTopic, 'svc/reply/42');
            assert.deepEqual(request.packet.properties.correlationData, correlationData);
            await responder.publishAsync(request.packet.properties.responseTopic, 'answer', {
                qos: 1,
                properties: { correlationData: request.packet.properties.correlationData },
            });
            const response = await responses.next('response');
            assert.equal(response.topic, 'svc/reply/42');
            assert.equal(response.payload.toString(), 'answer');
            assert.deepEqual(response.packet.properties.correlationData, correlationData);
        });
    });
}
