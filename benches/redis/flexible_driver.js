// rate-limiter-flexible's RateLimiterRedis (over ioredis) doing the check portcullis's Redis
// bench does: 16,000,000 points per hour on 10,000 keys, with 1, 8 and 64 calls in flight (Node
// has one thread; ioredis pipelines the calls in flight on one connection), printing checks per
// second and p50 / p99 latency per call in the bench's format.
//
//     node benches/redis/flexible_driver.js redis://127.0.0.1:6379/0
'use strict';

const Redis = require('ioredis');
const { RateLimiterRedis } = require('rate-limiter-flexible');

const KEYS = 10000;

async function run(url, inflight) {
  const client = new Redis(url);
  const limiter = new RateLimiterRedis({
    storeClient: client,
    keyPrefix: 'flexible-bench',
    points: 16000000,
    duration: 3600,
  });
  const perWorker = Math.max(Math.floor(40000 / inflight), 500);
  const lat = [];
  const worker = async (w) => {
    for (let i = 0; i < perWorker; i++) {
      const key = String((w * perWorker + i) % KEYS);
      const at = process.hrtime.bigint();
      await limiter.consume(key, 1);
      lat.push(Number(process.hrtime.bigint() - at));
    }
  };
  await limiter.consume('warm', 1);
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: inflight }, (_, w) => worker(w)));
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort((a, b) => a - b);
  const n = lat.length;
  console.log(
    `rate-limiter-flexible threads=${inflight} algorithm=fixed_window checks=${n} ` +
      `checks_per_s=${(n / elapsed).toFixed(0)} p50_us=${(lat[n >> 1] / 1e3).toFixed(1)} ` +
      `p99_us=${(lat[Math.min(Math.floor(n * 0.99), n - 1)] / 1e3).toFixed(1)}`,
  );
  client.disconnect();
}

(async () => {
  for (const n of [1, 8, 64]) await run(process.argv[2], n);
})();
