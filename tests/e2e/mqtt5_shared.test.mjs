// tests/e2e/mqtt5_shared.test.mjs - shared subscriptions ($share/{group}/{filter}) as MQTT.js 5
// sees them: a group of three gets 30 000 messages once between them (round robin: an even
// split), two groups and a plain subscriber on one filter each get every message, granted QoS
// and subscription identifiers per member, no retained messages on a shared SUBSCRIBE, No Local
// refused (Protocol Error), a member that leaves without acknowledging hands its messages to
// another, and mqtt.shared_subscriptions = false (SUBACK 0x9E, CONNACK
// sharedSubscriptionAvailable false).
//
//   node --test tests/e2e/mqtt5_shared.test.mjs      (BUILD, KEELMQ_SHARDS as for the others)
//
// keelmq only: skipped under KEELMQ_E2E_BROKER=mosquitto or KEELMQ_E2E_PORT.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import net from 'node:net';

import { EVENT_TIMEOUT_MS, HOST, OTHER_BROKER, shardCounts, useBroker, withTimeout } from './broker.mjs';


function escapeRe(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// Collects the messages of several clients: { member, topic, payload, packet }.
class GroupInbox {
    constructor(clients) {
        this.messages = [];
        this.waiters = [];
        clients.forEach((client, member) => client.on('message', (topic, payload, packet) => {
            this.messages.push({ member, topic, payload, packet });
            this.waiters = this.waiters.filter((w) => !w());
        }));
    }

    // Resolves once `count` messages arrived in all.
    async take(count, ms = EVENT_TIMEOUT_MS) {
        const done = () => this.messages.length >= count;
        if (!done()) {
            await withTimeout(new Promise((resolve) => this.waiters.push(() => {
                if (!done()) return false;
                resolve();
                return true;
            })), ms, `${count} messages (have ${this.messages.length})`);
        }
        return this.messages;
    }

    // Asserts that nothing more than `count` arrives within `ms` (the sanctioned fixed wait).
    async noMoreThan(count, ms = 300) {
        await new Promise((resolve) => setTimeout(resolve, ms));
        assert.equal(this.messages.length, count, 'a message came twice');
    }
}

// The shared harness plus what groups need: waiting for the owner shard to know the members.
function useGroups(shards, options) {
    const { broker, connect } = useBroker(shards, options);

    // Waits until the group's owner shard reports `online` online members.
    function members(group, online) {
        return broker.awaitLog(new RegExp(
            `(member|left) group=${escapeRe(group)} .*online_members=${online}\\b`));
    }

    // `count` clients subscribed to `group` at `qos`, known to the group's owner.
    async function group(name, count, qos = 1, prefix = name.replace(/[^a-z0-9]/gi, '_')) {
        const clients = [];
        for (let i = 0; i < count; i++) {
            const { client } = await connect({ clientId: `${prefix}-${i}` });
            await client.subscribeAsync(name, { qos });
            clients.push(client);
        }
        await members(name, count);
        return clients;
    }

    return { broker, connect, members, group };
}

async function publishAll(client, topic, count, qos = 1) {
    const sends = [];
    for (let n = 0; n < count; n++) sends.push(client.publishAsync(topic, String(n), { qos }));
    await Promise.all(sends);
}

function numbers(messages) {
    return messages.map((m) => Number(m.payload.toString())).sort((a, b) => a - b);
}

function range(from, to) {
    return Array.from({ length: to - from }, (_, i) => from + i);
}

for (const shards of OTHER_BROKER ? [] : shardCounts()) {
    describe(`shared subscriptions with ${shards} shard(s)`, () => {
        const { connect, members, group } =
            useGroups(shards, { 'mqtt.max_queued_messages': '100000' });

        test('CONNACK says shared subscriptions are available', async () => {
            const { connack } = await connect({ clientId: 'js-avail' });
            assert.equal(connack.properties.sharedSubscriptionAvailable, true);
        });

        test('a group of three gets 30 000 messages once, evenly', async () => {
            const clients = await group('$share/js3/t/#', 3);
            const inbox = new GroupInbox(clients);
            const { client: publisher } = await connect({ clientId: 'js3-pub' });
            const count = 30000;
            await publishAll(publisher, 't/a', count);
            const got = await inbox.take(count, 60000);
            await inbox.noMoreThan(count);
            assert.deepEqual(numbers(got), range(0, count));
            const split = [0, 1, 2].map((k) => got.filter((m) => m.member === k).length);
            assert.ok(Math.max(...split) - Math.min(...split) <= 1, `split ${split}`);
        });

        test('two groups and a plain subscriber each get every message', async () => {
            const one = new GroupInbox(await group('$share/jsa/u/+', 2));
            const two = new GroupInbox(await group('$share/jsb/u/+', 2));
            const { client: plain } = await connect({ clientId: 'js-plain' });
            await plain.subscribeAsync('u/+', { qos: 1 });
            const alone = new GroupInbox([plain]);
            const { client: publisher } = await connect({ clientId: 'js2-pub' });
            await publishAll(publisher, 'u/x', 1000);
            for (const inbox of [one, two, alone]) {
                assert.deepEqual(numbers(await inbox.take(1000)), range(0, 1000));
                await inbox.noMoreThan(1000, 100);
            }
        });

        test('granted QoS and subscription identifier apply per member', async () => {
            const name = '$share/jsid/s/#';
            const { client: low } = await connect({ clientId: 'js-low' });
            const { client: high } = await connect({ clientId: 'js-high' });
            await low.subscribeAsync(name, { qos: 0, properties: { subscriptionIdentifier: 5 } });
            await high.subscribeAsync(name, { qos: 1, properties: { subscriptionIdentifier: 7 } });
            await members(name, 2);
            const inbox = new GroupInbox([low, high]);
            const { client: publisher } = await connect({ clientId: 'jsid-pub' });
            await publishAll(publisher, 's/1', 20);
            const got = await inbox.take(20);
            for (const m of got) {
                const [qos, id] = m.member === 0 ? [0, 5] : [1, 7];
                assert.equal(m.packet.qos, qos);
                assert.deepEqual([m.packet.properties.subscriptionIdentifier].flat(), [id]);
            }
            assert.deepEqual(new Set(got.map((m) => m.member)), new Set([0, 1]));
        });

        test('no retained message on a shared SUBSCRIBE', async () => {
            const { client: publisher } = await connect({ clientId: 'jsr-pub' });
            await publisher.publishAsync('r/1', 'kept', { qos: 1, retain: true });
            const { client: plain } = await connect({ clientId: 'jsr-plain' });
            const plainInbox = new GroupInbox([plain]);
            await plain.subscribeAsync('r/#', { qos: 1 });
            assert.equal((await plainInbox.take(1))[0].payload.toString(), 'kept');
            const [member] = await group('$share/jsr/r/#', 1);
            const inbox = new GroupInbox([member]);
            await inbox.noMoreThan(0, 500);
            await publisher.publishAsync('r/1', 'live', { qos: 1 });
            assert.equal((await inbox.take(1))[0].payload.toString(), 'live');
        });

        test('No Local on a shared subscription is a Protocol Error', async () => {
            const { client } = await connect({ clientId: 'js-nolocal' });
            const disconnect = new Promise((resolve) => client.on('disconnect', resolve));
            client.subscribe('$share/g/t', { qos: 1, nl: true });
            const packet = await withTimeout(disconnect, EVENT_TIMEOUT_MS, 'DISCONNECT');
            assert.equal(packet.reasonCode, 0x82);
        });

        test('a member that leaves unacknowledged hands its messages on', async () => {
            const name = '$share/jsq/q';
            const { client: silent } = await connect({ clientId: 'js-silent', clean: true });
            // Never acknowledges: MQTT.js acknowledges only once this callback returns.
            silent.handleMessage = () => {};
            await silent.subscribeAsync(name, { qos: 1 });
            const { client: other } = await connect({ clientId: 'js-other' });
            await other.subscribeAsync(name, { qos: 1 });
            await members(name, 2);
            const held = new GroupInbox([silent]);
            const inbox = new GroupInbox([other]);
            const { client: publisher } = await connect({ clientId: 'jsq-pub' });
            await publishAll(publisher, 'q', 100);
            await held.take(1);
            silent.stream.destroy(); // no PUBACK, no DISCONNECT
            assert.deepEqual(numbers(await inbox.take(100)), range(0, 100));
            await inbox.noMoreThan(100);
        });
    });

    describe(`shared subscriptions disabled with ${shards} shard(s)`, () => {
        const { broker, connect } = useBroker(shards, { 'mqtt.shared_subscriptions': 'false' });

        test('SUBACK 0x9E and CONNACK sharedSubscriptionAvailable false', async () => {
            const { connack } = await connect({ clientId: 'js-off' });
            assert.equal(connack.properties.sharedSubscriptionAvailable, false);
            // MQTT.js refuses to send a $share SUBSCRIBE itself once told they are unavailable,
            // so the SUBACK is checked with raw bytes.
            const socket = net.connect(broker.port, HOST);
            const connect5 = Buffer.from([0x10, 16, 0, 4, 0x4d, 0x51, 0x54, 0x54, 5, 2, 0, 60, 0,
                                          0, 3, 0x72, 0x61, 0x77]); // client id "raw"
            const filter = Buffer.from('$share/g/t');
            const body = Buffer.concat([Buffer.from([0, 1, 0, 0, filter.length]), filter,
                                        Buffer.from([1, 0, 1, 0x74, 1])]); // and "t" at QoS 1
            const subscribe = Buffer.concat([Buffer.from([0x82, body.length]), body]);
            let received = Buffer.alloc(0);
            const suback = new Promise((resolve) => socket.on('data', (data) => {
                received = Buffer.concat([received, data]);
                const start = received[1] + 2; // CONNACK is short: one length byte
                if (received.length > start + 1 && received[start] === 0x90 &&
                    received.length >= start + 2 + received[start + 1])
                    resolve(received.subarray(start, start + 2 + received[start + 1]));
            }));
            socket.write(Buffer.concat([connect5, subscribe]));
            const packet = await withTimeout(suback, EVENT_TIMEOUT_MS, 'SUBACK');
            socket.destroy();
            const propsLen = packet[4]; // a Reason String may come with the failure (< 128)
            assert.deepEqual([...packet.subarray(5 + propsLen)], [0x9E, 1]);
        });
    });
}
