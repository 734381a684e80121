'use strict';
// Handles are freed: rounds of creating and closing (or dropping) handles, in a child process
// run with --expose-gc, leave the resident memory flat after the warm-up rounds.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

test('create/close loops leave RSS flat (--expose-gc)', { timeout: 120_000 }, () => {
  const out = execFileSync(process.execPath, ['--expose-gc', path.join(__dirname, 'fixtures', 'churn.js'), '24', '300'], {
    encoding: 'utf8',
    timeout: 110_000,
  });
  const { rss, handles } = JSON.parse(out.trim().split('\n').pop());
  const mb = (n) => (n / 1048576).toFixed(1);
  // The first half warms up: V8 tiers the loop up after a few thousand iterations, which
  // takes ~15 MiB once (heapUsed and external stay flat). In the second half a leak of even
  // 1 KiB per handle would add ~0.9 MiB a round, ~10 MiB over its 11 rounds; a gate or a
  // limiter left unfreed holds its tables (tens of KiB each).
  const half = rss.length / 2;
  const base = rss[half];
  const growth = rss[rss.length - 1] - base;
  const peak = Math.max(...rss.slice(half)) - base;
  test.diagnostic?.(`handles ${handles}; RSS by round (MiB): ${rss.map(mb).join(' ')}`);
  assert.ok(growth < 6 * 1048576, `RSS grew ${mb(growth)} MiB after warm-up: ${rss.map(mb).join(' ')}`);
  assert.ok(peak < 10 * 1048576, `RSS peaked ${mb(peak)} MiB above the warm-up: ${rss.map(mb).join(' ')}`);
});
