// tests/e2e/mqtt5_delivery.test.mjs - what travels on an MQTT 5 delivery, seen by MQTT.js 5:
// receive maximum (counted on the wire while acks are held back), topic aliases both ways,
// several subscription identifiers in one PUBLISH, properties that travel, request/response.
//
//   node --test tests/e2e/mqtt5_delivery.test.mjs   (BUILD selects the build directory)
//
// MQTT.js handles one incoming packet at a time and acks before it reads the next, so a client
// that holds acks back to count what is in flight speaks through mqtt-packet (MQTT.js's own
// packet codec, installed with it) on a plain socket. Each shard count in KEELMQ_SHARDS
// (default 1,2,4) gets its own broker, started as tests/e2e/harness.py starts it.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import mqttPacket from 'mqtt-packet';

import { EVENT_TIMEOUT_MS, HOST, shardCounts, useBroker, withTimeout } from './broker.mjs';

const QUIET_MS = 400; // an absence is asserted by waiting this long for what must not come
const TOPIC_ALIAS_INVALID = 0x94;

// An MQTT 5 connection on a plain socket, packets encoded and parsed by mqtt-packet. Every
// packet received is queued; next() awaits one, quiet() asserts none comes for QUIET_MS.
class Wire {
    constructor(port) {
        this.packets = [];
        this.waiters = [];
        this.socket = net.connect(port, HOST);
        this.socket.setNoDelay(true);
        this.parser = mqttPacket.parser({ protocolVersion: 5 });
        this.parser.on('packet', (packet) => this.push(packet));
        this.socket.on('data', (data) => this.parser.parse(data));
        this.socket.on('error', () => {}); // a reset after DISCONNECT reads as a close
        this.closed = new Promise((resolve) => this.socket.on('close', resolve));
        this.closed.then(() => this.push(null));
    }

    push(packet) {
        const waiter = this.waiters.shift();
        if (waiter) waiter(packet);
        else this.packets.push(packet);
    }

    send(packet) {
        this.socket.write(mqttPacket.generate(packet, { protocolVersion: 5 }));
    }

    next(what = 'packet', ms = EVENT_TIMEOUT_MS) {
        if (this.packets.length) return Promise.resolve(this.packets.shift());
        let waiter;
        const got = new Promise((resolve) => { waiter = resolve; this.waiters.push(resolve); });
        return withTimeout(got, ms, what).catch((error) => {
            this.waiters.splice(this.waiters.indexOf(waiter), 1);
            throw error;
        });
    }

    async expect(cmd, what = cmd) {
        const packet = await this.next(what);
        assert.ok(packet, `connection closed waiting for ${what}`);
        assert.equal(packet.cmd, cmd);
        return packet;
    }

    async quiet() {
        const packet = await this.next('nothing', QUIET_MS).catch(() => undefined);
        assert.equal(packet, undefined, `unexpected packet ${JSON.stringify(packet)}`);
    }

    async connect(clientId, properties = {}) {
        this.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true,
                    keepalive: 60, clientId, properties });
        const connack = await this.expect('connack');
        assert.equal(connack.reasonCode, 0);
        return connack;
    }

    close() {
        this.socket.destroy();
    }
}

for (const shards of shardCounts()) {
    describe(`MQTT 5 delivery with mqtt.js, keelmq with ${shards} shard(s)`, () => {
        const { broker, connect: connectWith, track } = useBroker(shards);

        // Resolves with { client, next } once connected with MQTT 5; next(what) awaits the next
        // message ({ topic, payload, packet, wireTopic }).
        async function connect(options = {}) {
            const { client, inbox } = await connectWith(options);
            return { client, next: (what) => inbox.next(what) };
        }

        function wire() {
            return track(new Wire(broker.port));
        }

        test('receive maximum never exceeded (counted in the client)', async () => {
            const subscriber = wire();
            await subscriber.connect('js-rm', { receiveMaximum: 2 });
            subscriber.send({ cmd: 'subscribe', messageId: 1,
                              subscriptions: [{ topic: 'jrm/t', qos: 1 }] });
            await subscriber.expect('suback');
            const { client: publisher } = await connect();
            const total = 6;
            for (let index = 0; index < total; index++) {
                await publisher.publishAsync('jrm/t', `${index}`, { qos: 1 });
            }
            const inflight = [];
            const received = [];
            let highest = 0;
            while (received.length < total) {
                // Take everything the broker sends, then ack the oldest.
                for (;;) {
                    const packet = await subscriber.next('publish',
                                                         inflight.length ? QUIET_MS : 5000)
                        .catch(() => undefined);
                    if (packet === undefined) break;
                    assert.equal(packet.cmd, 'publish');
                    inflight.push(packet.messageId);
                    received.push(packet.payload.toString());
                    highest = Math.max(highest, inflight.length);
                    assert.ok(inflight.length <= 2, 'more in flight than Receive Maximum');
                }
                assert.ok(inflight.length > 0, 'nothing in flight and messages missing');
                subscriber.send({ cmd: 'puback', messageId: inflight.shift() });
            }
            assert.equal(highest, 2);
            assert.deepEqual(received, [...Array(total).keys()].map(String));
        });

        test('alias overflow rejected', async () => {
            const connection = wire();
            const connack = await connection.connect('js-alias-over');
            assert.equal(connack.properties.topicAliasMaximum, 10);
            connection.send({ cmd: 'publish', topic: 'jao/t', payload: 'x', qos: 0,
                              properties: { topicAlias: 11 } });
            const disconnect = await connection.expect('disconnect');
            assert.equal(disconnect.reasonCode, TOPIC_ALIAS_INVALID);
            assert.equal(await connection.next('close'), null);
        });

        test('server->client alias used: second PUBLISH on the wire has an empty topic',
             async () => {
            const { client, next } = await connect({ properties: { topicAliasMaximum: 4 } });
            await client.subscribeAsync('jal/#', { qos: 1 });
            const { client: publisher } = await connect();
            for (const topic of ['jal/x', 'jal/x', 'jal/y', 'jal/x']) {
                await publisher.publishAsync(topic, topic, { qos: 1 });
            }
            const got = [];
            for (let index = 0; index < 4; index++) {
                const message = await next();
                got.push([message.topic, message.wireTopic, message.packet.properties.topicAlias,
                          message.payload.toString()]);
            }
            assert.deepEqual(got, [['jal/x', 'jal/x', 1, 'jal/x'], ['jal/x', '', 1, 'jal/x'],
                                   ['jal/y', 'jal/y', 2, 'jal/y'], ['jal/x', '', 1, 'jal/x']]);
        });

        test('no alias for a client without topicAliasMaximum', async () => {
            const { client, next } = await connect();
            await client.subscribeAsync('jna/t', { qos: 0 });
            const { client: publisher } = await connect();
            await publisher.publishAsync('jna/t', 'a', { qos: 1 });
            await publisher.publishAsync('jna/t', 'b', { qos: 1 });
            for (const payload of ['a', 'b']) {
                const message = await next();
                assert.equal(message.wireTopic, 'jna/t');
                assert.equal(message.packet.properties?.topicAlias, undefined);
                assert.equal(message.payload.toString(), payload);
            }
        });

        test('several subscription ids in one PUBLISH', async () => {
            const { client, next } = await connect();
            await client.subscribeAsync('jsid/#', { qos: 1,
                                                    properties: { subscriptionIdentifier: 5 } });
            await client.subscribeAsync('jsid/+', { qos: 1,
                                                    properties: { subscriptionIdentifier: 900 } });
            await client.subscribeAsync('jsid/a', { qos: 1 });
            const { client: publisher } = await connect();
            await publisher.publishAsync('jsid/a', 'both', { qos: 1 });
            await publisher.publishAsync('jsid/a/b', 'one', { qos: 1 });
            const both = await next();
            assert.equal(both.payload.toString(), 'both');
            assert.deepEqual([].concat(both.packet.properties.subscriptionIdentifier).sort(
                (a, b) => a - b), [5, 900]);
            const one = await next();
            assert.equal(one.payload.toString(), 'one', 'one copy of the first message only');
            assert.deepEqual([].concat(one.packet.properties.subscriptionIdentifier), [5]);
        });

        test('user properties, content type and payload format arrive unchanged', async () => {
            const { client, next } = await connect();
            await client.subscribeAsync('jprops/t', { qos: 2 });
            const { client: publisher } = await connect();
            const properties = {
                userProperties: { region: 'eu', tag: ['a', 'b'], 'x-id': '7' },
                contentType: 'text/plain; charset=utf-8', payloadFormatIndicator: true,
                responseTopic: 'jprops/reply', correlationData: Buffer.from([9, 0, 9]),
            };
            await publisher.publishAsync('jprops/t', 'h\u00e9llo', { qos: 2, properties });
            const message = await next();
            assert.equal(message.payload.toString(), 'h\u00e9llo');
            const got = message.packet.properties;
            assert.deepEqual({ ...got.userProperties }, properties.userProperties);
            assert.deepEqual(Object.keys(got.userProperties), ['region', 'tag', 'x-id']);
            assert.equal(got.contentType, properties.contentType);
            assert.equal(got.payloadFormatIndicator, true);
            assert.equal(got.responseTopic, 'jprops/reply');
            assert.deepEqual(got.correlationData, properties.correlationData);
        });

        test('request/response with correlation data', async () => {
            const { client: responder, next: requests } = await connect();
            await responder.subscribeAsync('jsvc/request', { qos: 1 });
            const { client: requester, next: responses } = await connect();
            await requester.subscribeAsync('jsvc/reply/r1', { qos: 1 });
            const correlationData = Buffer.from('corr-\u0001-42');
            await requester.publishAsync('jsvc/request', '6*7', {
                qos: 1, properties: { responseTopic: 'jsvc/reply/r1', correlationData,
                                      userProperties: { kind: 'multiply' } },
            });
            const request = await requests('request');
            assert.equal(request.packet.properties.userProperties.kind, 'multiply');
            await responder.publishAsync(request.packet.properties.responseTopic, '42', {
                qos: 1,
                properties: { correlationData: request.packet.properties.correlationData },
            });
            const response = await responses('response');
            assert.equal(response.topic, 'jsvc/reply/r1');
            assert.equal(response.payload.toString(), '42');
            assert.deepEqual(response.packet.properties.correlationData, correlationData);
        });

        test('MQTT.js with receiveMaximum 1 gets every QoS 1 message in order', async () => {
            const { client, next } = await connect({ properties: { receiveMaximum: 1 } });
            await client.subscribeAsync('jrm1/t', { qos: 1 });
            const { client: publisher } = await connect();
            for (let index = 0; index < 5; index++) {
                await publisher.publishAsync('jrm1/t', `${index}`, { qos: 1 });
            }
            const got = [];
            for (let index = 0; index < 5; index++) got.push((await next()).payload.toString());
            assert.deepEqual(got, ['0', '1', '2', '3', '4']);
        });
    });
}
