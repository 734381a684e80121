'use strict';
// examples/cluster.js: 4 worker processes on one port and one shared store. 40 requests from
// one client, each on a new connection (so the primary hands them to the workers in turn),
// against 10 a minute: exactly 10 are allowed, answered by several workers.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { tempDir, within } = require('./helpers');

function get(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, worker: res.headers['x-worker'] }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
  });
}

test('cluster: 4 workers on the shared store allow exactly 10 of 40 requests', { timeout: 60_000 }, async () => {
  const store = path.join(tempDir(), 'store');
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'examples', 'cluster.js')], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', WORKERS: '4', PORTCULLIS_STORE: store },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  try {
    const url = await within(
      new Promise((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d) => {
          out += d;
          const m = /listening on (http:\/\/[\d.]+:\d+) with 4 workers/.exec(out);
          if (m) resolve(m[1]);
        });
        exited.then(({ code }) => reject(new Error(`the example exited (${code}): ${stderr}`)));
      }),
      30_000,
      'the 4 workers listening',
    );
    const results = [];
    for (let i = 0; i < 40; i++) results.push(await get(`${url}/`));
    const allowed = results.filter((r) => r.status === 200);
    const limited = results.filter((r) => r.status === 429);
    assert.equal(allowed.length, 10, `statuses: ${results.map((r) => r.status).join(' ')}`);
    assert.equal(limited.length, 30);
    const workers = new Set(results.map((r) => r.worker));
    assert.ok(workers.size >= 2, `answered by ${workers.size} worker(s)`);
    const allowedBy = new Set(allowed.map((r) => r.worker));
    assert.ok(allowedBy.size >= 2, `the 10 allowed requests came from ${allowedBy.size} worker(s)`);
  } finally {
    child.kill('SIGTERM');
    const { code, signal } = await within(exited, 10_000, 'the example stopping');
    assert.ok(code === 0 || signal === 'SIGTERM', `exit ${code} ${signal}: ${stderr}`);
  }
});
