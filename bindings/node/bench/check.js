'use strict';
// The cost of one rate-limit check over 10,000 keys: portcullis's Limiter#check against
// rate-limiter-flexible's RateLimiterMemory#consume and express-rate-limit's MemoryStore
// #increment, each in one process, same keys, limits never reached.
//
//   cd bindings/node/bench && npm install && node check.js [--quick]
//
// The peers' calls return promises; each is measured two ways, awaited one by one (as a
// request handler does) and in batches of 1,000 under Promise.all (no wait between calls),
// and the faster counts. Reports the median of 5 timed runs per library after a warm-up.
const { RateLimiterMemory } = require('rate-limiter-flexible');
const { MemoryStore } = require('express-rate-limit');
const { Limiter, version } = require('..');

const QUICK = process.argv.includes('--quick');
const KEYS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);
const RUNS = 5;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function measure(name, ops, fn) {
  await fn(Math.min(ops, 200_000)); // warm-up
  const times = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint();
    await fn(ops);
    times.push(Number(process.hrtime.bigint() - t0) / ops);
  }
  const ns = median(times);
  console.log(`${name.padEnd(58)} ${ns.toFixed(1).padStart(8)} ns/op  (runs: ${times.map((t) => t.toFixed(0)).join(' ')})`);
  return ns;
}

(async () => {
  const n = QUICK ? 100_000 : 1_000_000;
  const nPeer = QUICK ? 50_000 : 300_000;
  console.log(`node ${process.version}, portcullis ${version}, ${KEYS.length} keys`);

  const limiter = Limiter.fromConfig(`
[store]
capacity = 20_000

[[policy]]
name = "api"
limit = "1000000000/h"
burst = 1000000000
`);
  const ours = await measure('portcullis Limiter#check (sync)', n, (ops) => {
    let allowed = 0;
    for (let i = 0; i < ops; i++) if (limiter.check('api', KEYS[i % 10_000]).allowed) allowed++;
    if (allowed !== ops) throw new Error('denied');
  });

  const rlf = new RateLimiterMemory({ points: 1_000_000_000, duration: 3600 });
  const rlfSeq = await measure('rate-limiter-flexible RateLimiterMemory#consume (await)', nPeer, async (ops) => {
    for (let i = 0; i < ops; i++) await rlf.consume(KEYS[i % 10_000]);
  });
  const rlfBatch = await measure('rate-limiter-flexible RateLimiterMemory#consume (batch)', nPeer, async (ops) => {
    for (let i = 0; i < ops; i += 1000) {
      const batch = [];
      for (let j = i; j < i + 1000 && j < ops; j++) batch.push(rlf.consume(KEYS[j % 10_000]));
      await Promise.all(batch);
    }
  });

  const store = new MemoryStore();
  store.init({ windowMs: 3_600_000 });
  const erlSeq = await measure('express-rate-limit MemoryStore#increment (await)', nPeer, async (ops) => {
    for (let i = 0; i < ops; i++) await store.increment(KEYS[i % 10_000]);
  });
  const erlBatch = await measure('express-rate-limit MemoryStore#increment (batch)', nPeer, async (ops) => {
    for (let i = 0; i < ops; i += 1000) {
      const batch = [];
      for (let j = i; j < i + 1000 && j < ops; j++) batch.push(store.increment(KEYS[j % 10_000]));
      await Promise.all(batch);
    }
  });
  store.shutdown?.();

  const peers = { 'rate-limiter-flexible': Math.min(rlfSeq, rlfBatch), 'express-rate-limit': Math.min(erlSeq, erlBatch) };
  const [fastest, best] = Object.entries(peers).sort((a, b) => a[1] - b[1])[0];
  const ratio = ours / best;
  console.log(
    `\nportcullis ${ours.toFixed(1)} ns / ${fastest} ${best.toFixed(1)} ns = ${ratio.toFixed(2)}x ` +
      `(goal <= 0.5x: ${ratio <= 0.5 ? 'met' : 'not met'})`,
  );
  limiter.close();
})();
