'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');
const { Gate, GateLease, Cors } = require('..');
const { GATE_CONFIG, tempDir } = require('./helpers');

const headerMap = (pairs) => Object.fromEntries(pairs.map(([n, v]) => [n.toLowerCase(), v]));

test('decide: allowed, then limited with the CORS and rate-limit headers', () => {
  const gate = Gate.fromConfig(GATE_CONFIG);
  const request = { method: 'GET', path: '/api/things?x=1', ip: '203.0.113.9', principal: 'k1', headers: { origin: 'http://app.test' } };
  const first = gate.decide(request);
  assert.equal(first.allowed, true);
  assert.equal(first.action, 'pass');
  assert.equal(first.status, 0);
  assert.equal(first.remaining, 2);
  assert.equal(first.limit, 3);
  assert.equal(first.lease, null);
  const h = headerMap(first.headers);
  assert.equal(h['access-control-allow-origin'], 'http://app.test');
  assert.equal(h['x-ratelimit-remaining'], '2');
  assert.match(h['access-control-expose-headers'], /X-RateLimit-Limit/);
  gate.decide(request);
  gate.decide(request);
  const limited = gate.decide(request);
  assert.equal(limited.allowed, false);
  assert.equal(limited.action, 'limited');
  assert.equal(limited.status, 429);
  assert.equal(limited.limitedBy, 'api');
  assert.match(limited.reason, /limited by policy api for principal:k1/);
  assert.ok(limited.retryAfterSecs >= 1);
  const lh = headerMap(limited.headers);
  assert.equal(lh['retry-after'], String(limited.retryAfterSecs));
  assert.equal(lh['access-control-allow-origin'], 'http://app.test');
  // Another principal has its own quota; without one the address is the key.
  assert.equal(gate.decide({ ...request, principal: 'k2' }).allowed, true);
  assert.equal(gate.decide({ method: 'GET', path: '/api/x', ip: '203.0.113.10' }).remaining, 2);
  gate.close();
});

test('decide: preflights and refused origins are never charged', () => {
  const gate = Gate.fromConfig(GATE_CONFIG);
  const preflight = gate.decide({
    method: 'OPTIONS',
    path: '/api/things',
    ip: '203.0.113.9',
    headers: new Headers({ origin: 'http://app.test', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type' }),
  });
  assert.equal(preflight.action, 'preflight');
  assert.equal(preflight.status, 204);
  assert.equal(preflight.allowed, false);
  const ph = headerMap(preflight.headers);
  assert.equal(ph['access-control-allow-methods'], 'PUT');
  assert.equal(ph['access-control-max-age'], '600');
  const refused = gate.decide({ method: 'GET', path: '/api/x', ip: '203.0.113.9', origin: 'http://evil.test' });
  assert.equal(refused.action, 'forbidden');
  assert.equal(refused.status, 403);
  assert.match(refused.reason, /evil\.test/);
  // Neither took from the address's quota.
  assert.equal(gate.decide({ method: 'GET', path: '/api/x', ip: '203.0.113.9' }).remaining, 2);
  gate.close();
});

test('concurrency leases are held by the outcome until released', () => {
  const gate = Gate.fromConfig(GATE_CONFIG);
  const first = gate.decide({ method: 'GET', path: '/slow' });
  assert.equal(first.allowed, true);
  assert.equal(first.leases, 1);
  assert.ok(first.lease instanceof GateLease);
  assert.equal(first.lease.held, true);
  const second = gate.decide({ method: 'GET', path: '/slow' });
  assert.equal(second.status, 429);
  assert.equal(second.lease, null);
  assert.equal(first.lease.release(), true);
  assert.equal(first.lease.release(), false);
  const third = gate.decide({ method: 'GET', path: '/slow' });
  assert.equal(third.allowed, true);
  // Outcomes stay valid after their gate is closed.
  gate.close();
  assert.equal(third.lease.release(), true);
});

test('decideAsync resolves the same outcomes on the pool', async () => {
  const gate = new Gate({ config: GATE_CONFIG });
  const outcomes = await Promise.all([1, 2, 3, 4].map(() => gate.decideAsync({ method: 'GET', path: '/api/y', ip: '198.51.100.1' })));
  assert.deepEqual(outcomes.map((o) => o.status).sort(), [0, 0, 0, 429]);
  const slow = await gate.decideAsync({ method: 'GET', path: '/slow' });
  assert.ok(slow.lease instanceof GateLease);
  slow.lease.release();
  await assert.rejects(gate.decideAsync({ method: 'GET', path: '/', ip: 'not-an-ip' }), {
    name: 'InvalidArgumentError',
    code: 'PORTCULLIS_RESULT_INVALID_PARAMETER',
  });
  await assert.rejects(gate.decideAsync(null), TypeError);
  gate.close();
});

test('reload keeps the running config on errors and applies a valid one', () => {
  const dir = tempDir();
  const file = path.join(dir, 'gate.toml');
  fs.writeFileSync(file, GATE_CONFIG);
  const gate = Gate.fromFile(pathToFileURL(file));
  const req = { method: 'GET', path: '/api/z', ip: '192.0.2.1' };
  assert.equal(gate.decide(req).remaining, 2);
  assert.throws(() => gate.reload('[[policy]]\nname = 1\n'), (err) => err.name === 'ConfigError' && err.code === 'PORTCULLIS_RESULT_INVALID_CONFIG' && /\d+:\d+/.test(err.message));
  assert.equal(gate.decide(req).remaining, 1);
  assert.throws(() => gate.reload(`${GATE_CONFIG}\n[store]\nkind = "shared"\npath = ${JSON.stringify(path.join(dir, 's'))}\n`), {
    code: 'PORTCULLIS_RESULT_RELOAD_REFUSED',
  });
  fs.writeFileSync(file, GATE_CONFIG.replace('limit = "3/1m"\nburst = 3', 'limit = "5/1m"\nburst = 5'));
  gate.reload();
  assert.equal(gate.decide(req).limit, 5);
  gate.close();
});

test('reset and stats', () => {
  const gate = Gate.fromConfig(GATE_CONFIG);
  for (let i = 0; i < 4; i++) gate.decide({ method: 'GET', path: '/api/a', principal: 'kk', ip: '192.0.2.7' });
  assert.equal(gate.decide({ method: 'GET', path: '/api/a', principal: 'kk', ip: '192.0.2.7' }).status, 429);
  const stats = gate.stats();
  const api = stats.limits.find((l) => l.policy === 'api');
  assert.equal(api.allowed, 3);
  assert.equal(api.denied, 2);
  assert.equal(gate.reset('api', 'principal', 'kk'), true);
  assert.equal(gate.decide({ method: 'GET', path: '/api/a', principal: 'kk' }).allowed, true);
  assert.equal(gate.reset('slots', 'global'), false);
  gate.close();
});

test('Cors decides alone', () => {
  const cors = Cors.fromConfig(GATE_CONFIG);
  const pre = cors.decide({ method: 'OPTIONS', origin: 'http://app.test', requestMethod: 'DELETE', requestHeaders: ['content-type', 'authorization'] });
  assert.equal(pre.kind, 'preflight');
  assert.equal(pre.allowed, true);
  assert.equal(pre.status, 204);
  assert.equal(headerMap(pre.headers)['access-control-allow-methods'], 'DELETE');
  const bad = cors.decide({ method: 'OPTIONS', headers: { origin: 'http://app.test', 'access-control-request-method': 'PATCH' } });
  assert.equal(bad.allowed, false);
  assert.equal(bad.status, 403);
  assert.match(bad.reason, /PATCH/);
  assert.equal(cors.decide({ method: 'GET' }).kind, 'not-cors');
  assert.equal(cors.decide({ method: 'GET', origin: 'http://app.test' }).kind, 'actual');
  cors.close();
  assert.throws(() => cors.decide({ method: 'GET' }), { name: 'ClosedError', code: 'PORTCULLIS_RESULT_CLOSED' });
  const dir = tempDir();
  const file = path.join(dir, 'nocors.toml');
  fs.writeFileSync(file, '[[policy]]\nname = "a"\nlimit = "1/s"\n');
  assert.throws(() => Cors.fromFile(file), (err) => err.code === 'PORTCULLIS_RESULT_INVALID_CORS_POLICY' && err.message.startsWith(file));
});

test('a gate on a sled store with immediate durability: decideAsync, and the counters survive a reopen', async () => {
  const dir = tempDir();
  const config =
    `[store]\nkind = "sled"\npath = ${JSON.stringify(path.join(dir, 'data'))}\n\n` +
    '[[policy]]\nname = "login"\nalgorithm = "fixed_window"\nlimit = "3/15m"\ndurability = "immediate"\n\n' +
    '[[route]]\nmatch = "POST /login"\nlimits = [{ policy = "login", key = "ip" }]\n';
  const gate = Gate.fromConfig(config);
  const req = { method: 'POST', path: '/login', ip: '192.0.2.50' };
  const first = await Promise.all([gate.decideAsync(req), gate.decideAsync(req)]);
  assert.deepEqual(first.map((o) => o.status), [0, 0]);
  gate.close();
  const again = Gate.fromConfig(config);
  assert.equal((await again.decideAsync(req)).status, 0);
  const limited = await again.decideAsync(req);
  assert.equal(limited.status, 429);
  assert.equal(limited.limitedBy, 'login');
  again.close();
});

test('the client comes from X-Forwarded-For only behind a trusted proxy', () => {
  const gate = new Gate(`
trusted_proxies = ["10.0.0.0/8"]
[[policy]]
name = "login"
algorithm = "fixed_window"
limit = "1/m"
[[route]]
match = "POST /login"
limits = [{ policy = "login", key = "ip" }]
`);
  try {
    const viaProxy = (xff) => gate.decide({
      method: 'POST', path: '/login', ip: '10.0.0.1', headers: { 'x-forwarded-for': xff },
    });
    // A rotating spoofed leftmost entry does not make a new client.
    assert.equal(viaProxy('1.1.1.1, 203.0.113.9').allowed, true);
    assert.equal(viaProxy('2.2.2.2, 203.0.113.9').allowed, false);
    assert.equal(viaProxy('198.51.100.4').allowed, true);
    // From an untrusted peer the header is ignored.
    const direct = { method: 'POST', path: '/login', ip: '192.0.2.1', forwardedFor: '203.0.113.77' };
    assert.equal(gate.decide(direct).allowed, true);
    assert.equal(gate.decide(direct).allowed, false);
  } finally {
    gate.close();
  }
});

/** `name{labels}` -> value from the Prometheus text format (every line checked). */
const parseMetrics = (text) => {
  const out = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ') || line === '# EOF') continue;
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    out.set(m[1] + (m[2] || ''), Number(m[3]));
  }
  return out;
};

test('metrics: the decisions made, in the Prometheus text format and OpenMetrics', () => {
  const gate = Gate.fromConfig(GATE_CONFIG);
  const request = { method: 'GET', path: '/api/a', principal: 'm1', ip: '192.0.2.8' };
  for (let i = 0; i < 5; i++) gate.decide(request);
  gate.decide({ method: 'GET', path: '/api/a', principal: 'm1', ip: '192.0.2.8', headers: { origin: 'http://evil.test' } });
  const text = gate.metrics();
  const m = parseMetrics(text);
  assert.equal(m.get('portcullis_decisions_total{policy="api",outcome="allowed"}'), 3);
  assert.equal(m.get('portcullis_decisions_total{policy="api",outcome="limited"}'), 2);
  assert.equal(m.get('portcullis_cors_refusals_total{reason="origin_not_allowed"}'), 1);
  assert.equal(m.get('portcullis_metrics_host_wide'), 0);
  assert.ok(!text.includes('m1') && !text.includes('192.0.2.8'), 'no client key in a label');
  const om = gate.metrics({ openmetrics: true });
  assert.ok(om.endsWith('# EOF\n'));
  assert.match(om, /# TYPE portcullis_decisions counter\n/);
  assert.equal(Gate.metricsContentType(), 'text/plain; version=0.0.4; charset=utf-8');
  assert.match(Gate.metricsContentType({ openmetrics: true }), /^application\/openmetrics-text/);
  gate.close();
  assert.throws(() => gate.metrics(), { code: 'PORTCULLIS_RESULT_CLOSED' });
});

test('metrics: with a shared store, any handle reports every handle\'s decisions', () => {
  const dir = tempDir();
  const config = `${GATE_CONFIG}\n[store]\nkind = "shared"\npath = ${JSON.stringify(path.join(dir, 's'))}\n`;
  // Two handles on one folder hold two slots of the board, as two cluster workers would.
  const a = Gate.fromConfig(config);
  const b = Gate.fromConfig(config);
  const request = { method: 'GET', path: '/api/a', principal: 'm2', ip: '192.0.2.9' };
  a.decide(request);
  a.decide(request);
  b.decide(request);
  b.decide(request);
  b.publishMetrics();
  const m = parseMetrics(a.metrics());
  assert.equal(m.get('portcullis_metrics_host_wide'), 1);
  assert.equal(m.get('portcullis_metrics_processes'), 2);
  assert.equal(m.get('portcullis_decisions_total{policy="api",outcome="allowed"}'), 3);
  assert.equal(m.get('portcullis_decisions_total{policy="api",outcome="limited"}'), 1);
  a.close();
  b.close();
});
