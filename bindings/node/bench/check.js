'use strict';
// The cost of one rate-limit check over 10,000 keys: portcullis's Limiter#check against
// rate-limiter-flexible's RateLimiterMemory#consume and express-rate-limit's MemoryStore
// #increment, each in one process, same keys, limits never reached.
//
//   cd bindings/node/bench && npm install && node check.js [--quick]
//
// The peers' calls return promises; each is measured two ways, awaited one by one (as a
// request handler does) and in batches of 1,000 under Promise.all (no wait between calls),
// and the faster counts. Each is warmed up, then timed 7 times, the libraries in turn (so that
// drift on a shared machine falls on all of them); the median counts.
const { RateLimiterMemory } = require('rate-limiter-flexible');
const { MemoryStore } = require('express-rate-limit');
const { Limiter, version } = require('..');

const QUICK = process.argv.includes('--quick');
const KEYS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);
const RUNS = 7;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

(async () => {
  const n = QUICK ? 100_000 : 1_000_000;
  const nPeer = QUICK ? 50_000 : 300_000;
  console.log(`node ${process.version}, portcullis ${version}, ${KEYS.length} keys, ${RUNS} interleaved runs`);

  const limiter = Limiter.fromConfig(`
[store]
capacity = 20_000

[[policy]]
name = "api"
limit = "1000000000/h"
burst = 1000000000
`);
  const rlf = new RateLimiterMemory({ points: 1_000_000_000, duration: 3600 });
  const store = new MemoryStore();
  store.init({ windowMs: 3_600_000 });

  const batched = (call) => async (ops) => {
    for (let i = 0; i < ops; i += 1000) {
      const batch = [];
      for (let j = i; j < i + 1000 && j < ops; j++) batch.push(call(KEYS[j % 10_000]));
      await Promise.all(batch);
    }
  };
  const benches = [
    {
      name: 'portcullis Limiter#check (sync)',
      ops: n,
      fn: (ops) => {
        let allowed = 0;
        for (let i = 0; i < ops; i++) if (limiter.check('api', KEYS[i % 10_000]).allowed) allowed++;
        if (allowed !== ops) throw new Error('denied');
      },
    },
    {
      name: 'rate-limiter-flexible RateLimiterMemory#consume (await)',
      peer: 'rate-limiter-flexible',
      ops: nPeer,
      fn: async (ops) => {
        for (let i = 0; i < ops; i++) await rlf.consume(KEYS[i % 10_000]);
      },
    },
    {
      name: 'rate-limiter-flexible RateLimiterMemory#consume (batch)',
      peer: 'rate-limiter-flexible',
      ops: nPeer,
      fn: batched((k) => rlf.consume(k)),
    },
    {
      name: 'express-rate-limit MemoryStore#increment (await)',
      peer: 'express-rate-limit',
      ops: nPeer,
      fn: async (ops) => {
        for (let i = 0; i < ops; i++) await store.increment(KEYS[i % 10_000]);
      },
    },
    {
      name: 'express-rate-limit MemoryStore#increment (batch)',
      peer: 'express-rate-limit',
      ops: nPeer,
      fn: batched((k) => store.increment(k)),
    },
  ];
  for (const b of benches) {
    await b.fn(Math.min(b.ops, 200_000)); // warm-up
    b.times = [];
  }
  for (let r = 0; r < RUNS; r++) {
    for (const b of benches) {
      const t0 = process.hrtime.bigint();
      await b.fn(b.ops);
      b.times.push(Number(process.hrtime.bigint() - t0) / b.ops);
    }
  }
  for (const b of benches) {
    b.ns = median(b.times);
    console.log(`${b.name.padEnd(58)} ${b.ns.toFixed(1).padStart(8)} ns/op  (runs: ${b.times.map((t) => t.toFixed(0)).join(' ')})`);
  }
  const ours = benches[0].ns;
  const peers = {};
  for (const b of benches.slice(1)) peers[b.peer] = Math.min(peers[b.peer] ?? Infinity, b.ns);
  const [fastest, best] = Object.entries(peers).sort((a, b) => a[1] - b[1])[0];
  const ratio = ours / best;
  console.log(
    `\nportcullis ${ours.toFixed(1)} ns / ${fastest} ${best.toFixed(1)} ns = ${ratio.toFixed(2)}x ` +
      `(goal <= 0.5x: ${ratio <= 0.5 ? 'met' : 'not met'})`,
  );
  limiter.close();
  store.shutdown?.();
})();
