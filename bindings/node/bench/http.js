'use strict';
// HTTP throughput: an Express app with portcullis's middleware against the same app with the
// `cors` package and express-rate-limit (memory store), under the same autocannon load
// (10 connections, GET /api/things with an Origin, every request allowed). The server runs
// in its own process; autocannon in this one.
//
//   cd bindings/node/bench && npm install && node http.js [seconds] [rounds]
//
// Rounds (3 by default) alternate the apps (none, portcullis, peers) so that drift on a shared
// machine falls on all of them; each run is preceded by a 1 s warm-up, and the median of each
// app's runs counts. On 2 cores autocannon takes one of them: the numbers compare the apps,
// they are not the server's capacity.
const { spawn } = require('node:child_process');
const path = require('node:path');
const autocannon = require('autocannon');

const SECONDS = Number(process.argv[2] ?? 5);
const ROUNDS = Number(process.argv[3] ?? 3);
const MODES = ['none', 'portcullis', 'peers'];

function startServer(mode) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'server.js'), mode], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.once('error', reject);
    child.stdout.once('data', (d) => resolve({ child, port: Number(String(d).trim()) }));
    child.once('exit', (code) => reject(new Error(`${mode} server exited ${code}`)));
  });
}

function load(port, duration) {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `http://127.0.0.1:${port}/api/things`,
        connections: 10,
        duration,
        headers: { origin: 'https://app.test' },
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
  });
}

(async () => {
  const results = Object.fromEntries(MODES.map((m) => [m, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of MODES) {
      const { child, port } = await startServer(mode);
      child.removeAllListeners('exit');
      await load(port, 1);
      const res = await load(port, SECONDS);
      const ok = res['2xx'];
      if (res.non2xx || res.errors) throw new Error(`${mode}: ${res.non2xx} non-2xx, ${res.errors} errors`);
      results[mode].push(res.requests.average);
      console.log(
        `round ${r + 1} ${mode.padEnd(10)} ${res.requests.average.toFixed(0).padStart(7)} req/s  ` +
          `latency p50 ${res.latency.p50} ms p99 ${res.latency.p99} ms  (${ok} responses)`,
      );
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log('');
  for (const mode of MODES) console.log(`${mode.padEnd(10)} median ${median(results[mode]).toFixed(0)} req/s`);
  const ratio = median(results.portcullis) / median(results.peers);
  console.log(`portcullis / (cors + express-rate-limit) = ${ratio.toFixed(2)} (goal >= 1: ${ratio >= 1 ? 'met' : 'not met'})`);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
