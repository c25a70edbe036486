// tests/e2e/mqtt5_server.test.mjs - MQTT 5 server properties and IoT conventions as MQTT.js 5
// sees them: CONNACK properties (connack.properties), reason strings with
// requestProblemInformation on and off, redirects (0x9C / 0x9D with serverReference), P2P
// topics ({parent}/p2p/{client id}, mqtt.p2p) within and across shards and to an offline
// persistent session, and GroupID@@@DeviceID client ids (mqtt.client_id_format).
//
//   node --test tests/e2e/mqtt5_server.test.mjs      (BUILD, KEELMQ_SHARDS as for the others)
//
// keelmq only: skipped under KEELMQ_E2E_BROKER=mosquitto or KEELMQ_E2E_PORT.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { EVENT_TIMEOUT_MS, OTHER_BROKER, shardCounts, useBroker, withTimeout } from './broker.mjs';

// The SUBACK packet of a subscription to `filters`, as it came off the wire.
async function subackOf(client, filters) {
    const suback = new Promise((resolve) => client.on('packetreceive', (packet) => {
        if (packet.cmd === 'suback') resolve(packet);
    }));
    await client.subscribeAsync(filters).catch(() => {});
    return withTimeout(suback, EVENT_TIMEOUT_MS, 'SUBACK');
}

for (const shards of OTHER_BROKER ? [] : shardCounts()) {
    describe(`server properties with ${shards} shard(s)`, () => {
        const { connect, refused } = useBroker(shards, {
            'mqtt.max_packet_size': '65536', 'mqtt.max_inflight': '20', 'mqtt.max_topic_alias': '7',
            'mqtt.keepalive_max': '30', 'mqtt.response_information': 'reply/keelmq/',
        });

        test('CONNACK carries every server property', async () => {
            const { connack } = await connect({ clientId: 'js-props', keepalive: 120 });
            const p = connack.properties;
            assert.equal(p.receiveMaximum, 20);
            assert.equal(p.maximumPacketSize, 65536);
            assert.equal(p.topicAliasMaximum, 7);
            assert.equal(p.retainAvailable, true);
            assert.equal(p.wildcardSubscriptionAvailable, true);
            assert.equal(p.subscriptionIdentifiersAvailable, true);
            assert.equal(p.sharedSubscriptionAvailable, true);
            assert.equal(p.serverKeepAlive, 30);
            assert.equal(p.assignedClientIdentifier, undefined);
            assert.equal(p.responseInformation, undefined);
        });

        test('assigned client identifier and response information on request', async () => {
            const { connack } = await connect({
                clientId: '', keepalive: 20,
                properties: { requestResponseInformation: true },
            });
            assert.match(connack.properties.assignedClientIdentifier, /^keelmq-\d+-[0-9a-f]+$/);
            assert.equal(connack.properties.responseInformation, 'reply/keelmq/');
            assert.equal(connack.properties.serverKeepAlive, undefined);
        });

        test('reason string on a failed SUBACK entry only with requestProblemInformation',
             async () => {
            const { client: asking } = await connect({ clientId: 'js-problem-on' });
            const withInfo = await subackOf(asking, { 'ok/x': { qos: 1 }, '$share//bad': { qos: 1 } });
            assert.equal(withInfo.granted[0], 1);
            assert.ok(withInfo.granted[1] >= 0x80);
            assert.equal(typeof withInfo.properties?.reasonString, 'string');
            assert.ok(withInfo.properties.reasonString.length > 0);
            const { client: quiet } = await connect({
                clientId: 'js-problem-off', properties: { requestProblemInformation: false },
            });
            const without = await subackOf(quiet, { 'ok/y': { qos: 1 }, '$share//bad': { qos: 1 } });
            assert.ok(without.granted[1] >= 0x80);
            assert.equal(without.properties?.reasonString, undefined);
        });

        test('refused CONNACK keeps its reason string with requestProblemInformation off',
             async () => {
            const { error, connack } = await refused({
                clientId: 'x'.repeat(300), properties: { requestProblemInformation: false },
            });
            assert.equal(error.code, 0x85);
            assert.equal(connack.properties.reasonString, 'client identifier not valid');
        });
    });

    for (const permanent of [false, true]) {
        describe(`redirect (permanent=${permanent}) with ${shards} shard(s)`, () => {
            const { refused } = useBroker(shards, {
                'mqtt.redirect_to': 'other.example:1883',
                'mqtt.redirect_permanent': String(permanent),
            });

            test(`CONNACK ${permanent ? '0x9D' : '0x9C'} with the server reference`, async () => {
                const { error, connack } = await refused({ clientId: 'js-redirect' });
                assert.equal(error.code, permanent ? 0x9d : 0x9c);
                assert.equal(connack.reasonCode, permanent ? 0x9d : 0x9c);
                assert.equal(connack.properties.serverReference, 'other.example:1883');
            });

            test('v3.1.1 is refused as server unavailable', async () => {
                const { error } = await refused({ clientId: 'js-redirect-v3', protocolVersion: 4 });
                assert.equal(error.code, 3);
            });
        });
    }

    describe(`p2p with ${shards} shard(s)`, () => {
        const { broker, connect } = useBroker(shards, { 'mqtt.p2p': 'on' });

        test('reaches the target only, at the publish QoS, not a subscriber', async () => {
            const { inbox: target } = await connect({ clientId: 'js-target' });
            const { client: spy, inbox: spyInbox } = await connect({ clientId: 'js-spy' });
            await spy.subscribeAsync({ 'app/p2p/#': { qos: 2 }, 'app/p2p/js-target': { qos: 2 } });
            const { client: pub } = await connect({ clientId: 'js-pub' });
            for (const qos of [0, 1, 2]) {
                await pub.publishAsync('app/p2p/js-target', `q${qos}`, { qos });
                const message = await target.next(`p2p QoS ${qos}`);
                assert.deepEqual([message.topic, message.payload.toString(), message.packet.qos],
                                 ['app/p2p/js-target', `q${qos}`, qos]);
            }
            await spyInbox.none(500);
        });

        test('across shards: every target gets its own message', async () => {
            const targets = [];
            for (let index = 0; index < 8; index++) {
                targets.push(await connect({ clientId: `js-fleet-${index}`, protocolVersion: 4 }));
            }
            const { client: pub } = await connect({ clientId: 'js-fleet-pub' });
            for (let index = 0; index < 8; index++) {
                await pub.publishAsync(`fleet/p2p/js-fleet-${index}`, `to-${index}`, { qos: 1 });
            }
            for (let index = 0; index < 8; index++) {
                const message = await targets[index].inbox.next(`fleet ${index}`);
                assert.equal(message.payload.toString(), `to-${index}`);
            }
            if (shards > 1) {
                const shardOf = async (id) => Number((await broker.awaitLog(
                    new RegExp(`connect client=${id} conn=(\\d+)/`)))[1]);
                const pubShard = await shardOf('js-fleet-pub');
                let elsewhere = 0;
                for (let index = 0; index < 8; index++) {
                    if (await shardOf(`js-fleet-${index}`) !== pubShard) elsewhere++;
                }
                assert.ok(elsewhere > 0, 'every target shares the publisher\'s shard');
            }
        });

        test('an offline persistent session gets it when it returns', async () => {
            const options = { clientId: 'js-away', clean: false,
                              properties: { sessionExpiryInterval: 3600 } };
            const { client: first } = await connect(options);
            await first.endAsync();
            const { client: pub } = await connect({ clientId: 'js-away-pub' });
            await pub.publishAsync('cmd/p2p/js-away', 'while-away', { qos: 1 });
            const { inbox, connack } = await connect(options);
            assert.equal(connack.sessionPresent, true);
            const message = await inbox.next('p2p while away');
            assert.deepEqual([message.payload.toString(), message.packet.qos], ['while-away', 1]);
        });
    });

    describe(`group_device client ids with ${shards} shard(s)`, () => {
        const { connect, refused } = useBroker(shards, { 'mqtt.client_id_format': 'group_device' });

        test('GroupID@@@DeviceID is accepted, v5 and v3.1.1', async () => {
            const { connack } = await connect({ clientId: 'GID_js@@@dev-1' });
            assert.equal(connack.reasonCode, 0);
            await connect({ clientId: 'GID_js@@@dev-2', protocolVersion: 4 });
        });

        test('other ids are refused with 0x85 (v3.1.1: 2)', async () => {
            for (const clientId of ['no-group', '@@@dev', 'grp@@@', `${'g'.repeat(65)}@@@d`]) {
                const { error, connack } = await refused({ clientId });
                assert.equal(error.code, 0x85, clientId);
                assert.equal(connack.properties.reasonString, 'client identifier not valid');
                const v3 = await refused({ clientId, protocolVersion: 4 });
                assert.equal(v3.error.code, 2, clientId);
            }
        });
    });
}
