// portcullis's Node addon on the Redis store doing the check flexible_driver.js does: a fixed
// window of 16,000,000 per hour on 10,000 keys, with 1, 8 and 64 calls in flight
// (`checkAsync`, which runs on libuv's pool of UV_THREADPOOL_SIZE threads, 4 by default; the
// store batches the calls of threads waiting at once), printing checks per second and p50 /
// p99 latency per call in the bench's format. Needs the addon built (`bash ci/node.sh`, or
// `npm ci` in bindings/node after `cargo build --release -p portcullis --lib`).
//
//     node benches/redis/addon_driver.js redis://127.0.0.1:6379/0
'use strict';

const { Limiter } = require('../../bindings/node');

const KEYS = 10000;

async function run(url, inflight) {
  const limiter = Limiter.fromConfig(`
[[policy]]
name = "bench"
algorithm = "fixed_window"
limit = "16000000/1h"

[store]
kind = "redis"
url = "${url}"
key_prefix = "addon-bench:"
timeout = "1s"
capacity = 20000
`);
  const perWorker = Math.max(Math.floor(40000 / inflight), 500);
  const lat = [];
  const worker = async (w) => {
    for (let i = 0; i < perWorker; i++) {
      const key = String((w * perWorker + i) % KEYS);
      const at = process.hrtime.bigint();
      const d = await limiter.checkAsync('bench', key);
      if (!d.allowed) throw new Error('denied: the quota is sized never to deny');
      lat.push(Number(process.hrtime.bigint() - at));
    }
  };
  await limiter.checkAsync('bench', 'warm');
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: inflight }, (_, w) => worker(w)));
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort((a, b) => a - b);
  const n = lat.length;
  console.log(
    `portcullis-node threads=${inflight} algorithm=fixed_window checks=${n} ` +
      `checks_per_s=${(n / elapsed).toFixed(0)} p50_us=${(lat[n >> 1] / 1e3).toFixed(1)} ` +
      `p99_us=${(lat[Math.min(Math.floor(n * 0.99), n - 1)] / 1e3).toFixed(1)} ` +
      `pool=${process.env.UV_THREADPOOL_SIZE ?? 4}`,
  );
  limiter.close();
}

(async () => {
  for (const n of [1, 8, 64]) await run(process.argv[2], n);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
