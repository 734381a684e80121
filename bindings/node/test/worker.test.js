'use strict';
// The addon keeps its state per environment (instance data): it loads and works in worker
// threads at the same time as in the main thread, and a worker ending frees its handles.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Worker } = require('node:worker_threads');
const path = require('node:path');

const code = `
const { parentPort, workerData } = require('node:worker_threads');
const { Limiter, Gate } = require(workerData.pkg);
(async () => {
  const limiter = Limiter.fromConfig('[[policy]]\\nname = "api"\\nlimit = "100/1m"\\nburst = 100\\n');
  let allowed = 0;
  for (let i = 0; i < 150; i++) if (limiter.check('api', 'k').allowed) allowed++;
  const d = await limiter.checkAsync('api', 'other');
  const gate = Gate.fromConfig('[[policy]]\\nname = "api"\\nlimit = "1/1m"\\n[[route]]\\nmatch = "/"\\nlimits = [{ policy = "api", key = "global" }]\\n');
  const statuses = [gate.decide({ method: 'GET', path: '/' }).status, gate.decide({ method: 'GET', path: '/' }).status];
  if (workerData.close) { limiter.close(); gate.close(); }
  parentPort.postMessage({ allowed, async: d.allowed, statuses });
})();
`;

function run(close) {
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { pkg: path.join(__dirname, '..'), close } });
    let message;
    w.on('message', (m) => (message = m));
    w.on('error', reject);
    w.on('exit', (exitCode) => (exitCode === 0 ? resolve(message) : reject(new Error(`worker exited ${exitCode}`))));
  });
}

test('limiters and gates in worker threads, closed or left to the teardown', { timeout: 30_000 }, async () => {
  const results = await Promise.all([run(true), run(false), run(true), run(false)]);
  for (const r of results) assert.deepEqual(r, { allowed: 100, async: true, statuses: [0, 429] });
  // The main thread's addon is unaffected.
  const { Limiter } = require('..');
  const limiter = Limiter.fromConfig('[[policy]]\nname = "a"\nlimit = "1/1m"\n');
  assert.equal(limiter.check('a', 'k').allowed, true);
  limiter.close();
});
