'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const { Limiter, Lease, RateLimitedError, PolicyError } = require('..');
const { LIMITER_CONFIG, tempDir } = require('./helpers');

test('check consumes the burst, then denies with a retry time', () => {
  const limiter = Limiter.fromConfig(LIMITER_CONFIG);
  const seen = [];
  for (let i = 0; i < 4; i++) seen.push(limiter.check('api', 'alice'));
  assert.deepEqual(
    seen.map((d) => [d.allowed, d.remaining]),
    [
      [true, 2],
      [true, 1],
      [true, 0],
      [false, 0],
    ],
  );
  const denied = seen[3];
  assert.equal(denied.limit, 3);
  assert.ok(denied.retryAfterMs > 0 && denied.retryAfterMs <= 100, `retryAfterMs ${denied.retryAfterMs}`);
  assert.equal(denied.retryAfterSecs, 1);
  assert.ok(Math.abs(denied.at - Date.now()) < 5000);
  assert.equal(denied.policy, limiter.policy('api'));
  assert.equal(limiter.policyName(denied.policy), 'api');
  // Another key is untouched, a Buffer key is the same key as its string.
  assert.equal(limiter.check('api', 'bob').remaining, 2);
  assert.equal(limiter.check('api', Buffer.from('bob')).remaining, 1);
  limiter.close();
});

test('peek consumes nothing; penalize and refund move the quota; reset forgets', () => {
  const limiter = Limiter.fromConfig(LIMITER_CONFIG);
  assert.equal(limiter.peek('login', 'ip:1').remaining, 4);
  assert.equal(limiter.peek('login', 'ip:1').remaining, 4);
  // penalize and refund answer what a request of cost 1 would now get.
  assert.equal(limiter.penalize('login', 'ip:1', 2).remaining, 2);
  assert.equal(limiter.refund('login', 'ip:1').remaining, 3);
  for (let i = 0; i < 4; i++) assert.ok(limiter.check('login', 'ip:1').allowed);
  const blocked = limiter.check('login', 'ip:1');
  assert.equal(blocked.allowed, false);
  assert.ok(blocked.retryAfterSecs > 800, `blocked for ${blocked.retryAfterSecs} s`);
  assert.equal(limiter.reset('login', 'ip:1'), true);
  assert.equal(limiter.reset('login', 'ip:1'), false);
  assert.ok(limiter.check('login', 'ip:1').allowed);
  limiter.close();
});

test('policies by id, costs, and policy errors', () => {
  const limiter = new Limiter(LIMITER_CONFIG);
  const id = limiter.policy('api');
  assert.equal(limiter.check(id, 'k', 3).remaining, 0);
  assert.throws(() => limiter.check('api', 'k', 4), { name: 'PolicyError', code: 'PORTCULLIS_RESULT_COST_TOO_HIGH' });
  assert.throws(() => limiter.check('nope', 'k'), (err) => err instanceof PolicyError && err.code === 'PORTCULLIS_RESULT_UNKNOWN_POLICY' && /nope/.test(err.message));
  assert.throws(() => limiter.check('export', 'k'), { code: 'PORTCULLIS_RESULT_NEEDS_LEASE' });
  assert.throws(() => limiter.acquire('api', 'k'), { code: 'PORTCULLIS_RESULT_NOT_CONCURRENCY' });
  limiter.close();
});

test('acquire returns a lease released once, and throws RateLimitedError when full', () => {
  const limiter = Limiter.fromConfig(LIMITER_CONFIG);
  const a = limiter.acquire('export', 'key');
  const b = limiter.acquire('export', 'key');
  assert.ok(a instanceof Lease && a.held && a.acquired);
  assert.throws(
    () => limiter.acquire('export', 'key'),
    (err) => err instanceof RateLimitedError && err.code === 'PORTCULLIS_RATE_LIMITED' && err.decision.allowed === false,
  );
  const denied = limiter.tryAcquire('export', 'key');
  assert.equal(denied.acquired, false);
  assert.equal(denied.held, false);
  assert.equal(denied.release(), false);
  assert.equal(a.release(), true);
  assert.equal(a.release(), false);
  const c = limiter.acquire('export', 'key');
  // Symbol.dispose gives it back (what a `using` declaration calls).
  c[Symbol.dispose]();
  assert.equal(c.held, false);
  b.abandon();
  assert.equal(b.held, false);
  // b was abandoned, not given back: its slot stays taken until the lease timeout.
  const d = limiter.acquire('export', 'key');
  assert.equal(limiter.tryAcquire('export', 'key').acquired, false);
  d.release();
  limiter.close();
});

test('a lease outliving its limiter is abandoned when released', () => {
  const limiter = Limiter.fromConfig(LIMITER_CONFIG);
  const lease = limiter.acquire('export', 'k');
  limiter.close();
  assert.equal(lease.release(), true);
  assert.equal(lease.held, false);
});

test('headers renders the rate-limit headers of decisions', () => {
  const limiter = Limiter.fromConfig(LIMITER_CONFIG);
  const d = limiter.check('api', 'h');
  const legacy = Object.fromEntries(limiter.headers(d));
  assert.equal(legacy['X-RateLimit-Limit'], '3');
  assert.equal(legacy['X-RateLimit-Remaining'], '2');
  const ietf = limiter.headers([d], 'ietf').map(([n]) => n);
  assert.deepEqual(ietf, ['RateLimit-Policy', 'RateLimit']);
  for (let i = 0; i < 3; i++) limiter.check('api', 'h');
  const denied = limiter.check('api', 'h');
  const names = limiter.headers(denied, 'retry_after_only');
  assert.deepEqual(names, [['Retry-After', '1']]);
  assert.throws(() => limiter.headers([]), RangeError);
  assert.throws(() => limiter.headers(d, 'bogus'), RangeError);
  limiter.close();
});

test('the async variants resolve the same decisions on the pool', async () => {
  const limiter = Limiter.fromConfig(LIMITER_CONFIG);
  const results = await Promise.all([1, 2, 3, 4].map(() => limiter.checkAsync('api', 'async')));
  assert.deepEqual(results.map((d) => d.allowed).sort(), [false, true, true, true]);
  assert.equal((await limiter.peekAsync('api', 'async')).allowed, false);
  assert.equal((await limiter.refundAsync('api', 'async')).allowed, true);
  assert.equal((await limiter.penalizeAsync('api', 'async')).allowed, false);
  await assert.rejects(limiter.checkAsync('nope', 'k'), { code: 'PORTCULLIS_RESULT_UNKNOWN_POLICY' });
  await assert.rejects(limiter.checkAsync('api', 1), TypeError);
  limiter.close();
});

test('stats lists the policies', () => {
  const limiter = Limiter.fromConfig(LIMITER_CONFIG);
  limiter.check('api', 'x');
  const stats = limiter.stats();
  assert.ok(Array.isArray(stats));
  assert.ok(JSON.stringify(stats).includes('"api"'));
  limiter.close();
});

test('a sled store with immediate durability: checkAsync, a second opener locked out, counters kept across a reopen', async () => {
  const dir = tempDir();
  const file = path.join(dir, 'limiter.toml');
  fs.writeFileSync(
    file,
    `[store]\nkind = "sled"\npath = ${JSON.stringify(path.join(dir, 'data'))}\n\n` +
      '[[policy]]\nname = "login"\nalgorithm = "fixed_window"\nlimit = "5/15m"\ndurability = "immediate"\n',
  );
  const limiter = Limiter.fromFile(file);
  const decisions = [];
  for (let i = 0; i < 3; i++) decisions.push(await limiter.checkAsync('login', 'ip:1'));
  assert.deepEqual(decisions.map((d) => d.remaining), [4, 3, 2]);
  assert.throws(() => Limiter.fromFile(file), { name: 'StoreError', code: 'PORTCULLIS_RESULT_STORE_LOCKED' });
  limiter.close();
  const again = new Limiter({ file });
  assert.equal(again.check('login', 'ip:1').remaining, 1);
  again.close();
});

test('close is idempotent, waits for async calls, and closed limiters throw ClosedError', async () => {
  const limiter = Limiter.fromConfig(LIMITER_CONFIG);
  const pending = limiter.checkAsync('api', 'k');
  limiter.close();
  limiter.close();
  assert.equal(limiter.closed, true);
  assert.equal((await pending).allowed, true);
  for (const call of [
    () => limiter.check('api', 'k'),
    () => limiter.peek('api', 'k'),
    () => limiter.penalize('api', 'k'),
    () => limiter.refund('api', 'k'),
    () => limiter.reset('api', 'k'),
    () => limiter.acquire('export', 'k'),
    () => limiter.stats(),
    () => limiter.policy('login'),
  ]) {
    assert.throws(call, { name: 'ClosedError', code: 'PORTCULLIS_RESULT_CLOSED' });
  }
  await assert.rejects(limiter.checkAsync('api', 'k'), { code: 'PORTCULLIS_RESULT_CLOSED' });
});
