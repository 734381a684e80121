'use strict';
// index.d.ts is checked by the TypeScript compiler against test/types/usage.ts (strict), and
// the shapes it declares are those the runtime returns.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const portcullis = require('..');
const { GATE_CONFIG } = require('./helpers');

test('tsc --noEmit accepts index.d.ts and its usage', { timeout: 120_000 }, () => {
  const tsc = require.resolve('typescript/bin/tsc');
  try {
    execFileSync(process.execPath, [tsc, '--noEmit', '-p', path.join(__dirname, 'types')], {
      encoding: 'utf8',
      stdio: 'pipe',
      timeout: 110_000,
    });
  } catch (err) {
    assert.fail(`tsc failed:\n${err.stdout}${err.stderr}`);
  }
});

test('the runtime objects have the declared keys', () => {
  const gate = portcullis.Gate.fromConfig(GATE_CONFIG);
  const outcome = gate.decide({ method: 'GET', path: '/api/x' });
  assert.deepEqual(Object.keys(outcome).sort(), [
    'action', 'allowed', 'delayMs', 'headers', 'lease', 'leases', 'limit', 'limitedBy', 'reason', 'remaining', 'retryAfterSecs', 'status',
  ]);
  gate.close();
  const limiter = portcullis.Limiter.fromConfig(GATE_CONFIG);
  assert.deepEqual(Object.keys(limiter.check('api', 'k')).sort(), [
    'allowed', 'at', 'delayMs', 'limit', 'policy', 'remaining', 'resetAfterMs', 'retryAfterMs', 'retryAfterSecs',
  ]);
  limiter.close();
  const cors = portcullis.Cors.fromConfig(GATE_CONFIG);
  assert.deepEqual(Object.keys(cors.decide({ method: 'GET' })).sort(), ['allowed', 'headers', 'kind', 'reason', 'status']);
  cors.close();
});
