// tests/e2e/broker.mjs - starts keelmq for an MQTT.js suite, as tests/e2e/harness.py does: an
// ephemeral loopback port, a temporary store directory, `-o` options, SIGTERM with exit status 0
// asserted at the end. Not a test file itself (node --test runs only *.test.mjs here).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const HOST = '127.0.0.1';
export const EVENT_TIMEOUT_MS = 5000;
const START_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 10000;

export function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
                           ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function shardCounts() {
    return (process.env.KEELMQ_SHARDS || '1,2,4').split(',').filter((s) => s.trim())
        .map(Number);
}

export class Broker {
    // options: { 'mqtt.p2p': 'on', ... } passed as -o key=value.
    constructor(shards, options = {}) {
        this.shards = shards;
        this.options = options;
        this.lines = [];
        this.lineWaiters = [];
        this.child = null;
        this.port = null;
        this.storeDir = null;
    }

    async start() {
        const build = path.resolve(REPO_ROOT, process.env.BUILD || 'build');
        const binary = path.join(build, 'keelmq');
        assert.ok(fs.existsSync(binary), `broker binary ${binary} not found`);
        this.storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'keelmq-e2e-js-'));
        const argv = ['-o', 'listener.tcp.port=0', '-o', `listener.tcp.bind=${HOST}`,
                      '-o', `store.dir=${this.storeDir}`, '-o', `shard.count=${this.shards}`];
        for (const [key, value] of Object.entries(this.options)) argv.push('-o', `${key}=${value}`);
        this.child = spawn(binary, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
        this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) =>
            resolve({ code, signal })));
        const readyRe = /listening tcp 127\.0\.0\.1:(\d+)/;
        const ready = new Promise((resolve, reject) => {
            const lines = readline.createInterface({ input: this.child.stderr });
            lines.on('line', (line) => {
                this.lines.push(line);
                this.lineWaiters = this.lineWaiters.filter((w) => !w(line));
                const match = readyRe.exec(line);
                if (match && this.port === null) {
                    this.port = Number(match[1]);
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
