// tests/e2e/mqttjs.test.mjs - end-to-end behaviour of the broker as seen by MQTT.js 5 (MQTT 3.1.1
// and 5): QoS 0/1/2 round trips, request/response properties, retained messages.
//
//   node --test tests/e2e/                       (BUILD selects the build directory, default build)
//   KEELMQ_E2E_BROKER=mosquitto node --test tests/e2e/
//   KEELMQ_E2E_PORT=1883 node --test tests/e2e/  (use a broker that is already running)
//
// Each shard count in KEELMQ_SHARDS (default 1,2,4; only 1 under mosquitto) gets its own broker,
// started by tests/e2e/broker.mjs exactly as tests/e2e/harness.py starts it. MQTT.js comes from
// tests/e2e/node_modules (scripts/deps.sh test installs it).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { Broker, IS_MOSQUITTO, OTHER_BROKER, shardCounts, useBroker } from './broker.mjs';

for (const shards of OTHER_BROKER ? [1] : shardCounts()) {
    describe(`mqtt.js against ${IS_MOSQUITTO ? 'mosquitto' : 'keelmq'} with ${shards} shard(s)`,
             () => {
        const { connect: connectWith } = useBroker(Broker.fromEnv(shards));

        // Resolves with { client, inbox } once connected with MQTT 3.1.1 (4) or 5.
        const connect = (protocolVersion, options = {}) =>
            connectWith({ protocolVersion, ...options });

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
