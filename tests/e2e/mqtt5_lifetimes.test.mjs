// tests/e2e/mqtt5_lifetimes.test.mjs - MQTT 5 lifetimes as MQTT.js 5 sets them: a message's
// messageExpiryInterval while its persistent subscriber is offline, and a will's
// willDelayInterval. The Python suite (test_mqtt5_lifetimes.py) covers the rest.
//
//   node --test tests/e2e/mqtt5_lifetimes.test.mjs    (BUILD selects the build directory)
//
// Each shard count in KEELMQ_SHARDS (default 1,2,4) gets its own broker, started as
// tests/e2e/harness.py starts it. Waiting for an interval to pass is the one fixed wait; every
// event is awaited with a timeout and nothing asserts on speed.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { OTHER_BROKER, shardCounts, useBroker } from './broker.mjs';

const WILL_TIMEOUT_MS = 15000;   // the will timer runs on the broker's 1 s expiry scan
const EXPIRY_WAIT_MS = 1600;     // past a 1 s Message Expiry Interval

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

for (const shards of OTHER_BROKER ? [] : shardCounts()) {
    describe(`mqtt.js MQTT 5 lifetimes with ${shards} shard(s)`, () => {
        const { connect } = useBroker(shards);

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
