'use strict';
// The Redis store from Node: decisions run on libuv's pool, never on the event loop; the
// synchronous calls that would wait on the network refuse with WouldBlockError; the
// middlewares offload by themselves. Needs a redis-server: `ci/node.sh` installs one and
// names it in PORTCULLIS_REDIS_SERVER.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const { spawn } = require('node:child_process');
const express = require('express');
const portcullis = require('..');
const { Gate, Limiter, WouldBlockError } = portcullis;
const { GATE_CONFIG, listen, tempDir } = require('./helpers');

const SERVER = process.env.PORTCULLIS_REDIS_SERVER;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function connects(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** A redis-server of the test's own on a free port; `stop()` kills it. */
async function startRedis() {
  const port = await freePort();
  const dir = tempDir();
  const child = spawn(SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  });
  const deadline = Date.now() + 10_000;
  while (!(await connects(port))) {
    assert.ok(Date.now() < deadline, 'redis-server did not start');
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    stop: () => child.kill('SIGKILL'),
  };
}

/** One command to the server, by hand (RESP), for the test's own use. */
function command(port, ...args) {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    const wire = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`;
    let reply = '';
    c.on('data', (d) => {
      reply += d.toString();
      if (reply.endsWith('\r\n')) {
        c.end();
        resolve(reply);
      }
    });
    c.once('error', reject);
    c.write(wire);
  });
}

/** `config` on the Redis store at `url` (keys under a prefix of their own). */
const withStore = (url, config, timeout = '2s', extra = '') =>
  `${config}\n[store]\nkind = "redis"\nurl = "${url}"\ntimeout = "${timeout}"\ndeny_cache = false\nkey_prefix = "node${Math.random().toString(36).slice(2, 8)}:"\n${extra}\n`;

const request = { method: 'GET', path: '/api/things', ip: '203.0.113.9', principal: 'k1' };

test('redis', { skip: SERVER === undefined && 'PORTCULLIS_REDIS_SERVER is not set (ci/node.sh sets it)' }, async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());

  await t.test('a gate decides on the pool; the synchronous calls refuse', async () => {
    const gate = Gate.fromConfig(withStore(redis.url, GATE_CONFIG));
    try {
      assert.equal(gate.mayBlock, true);
      assert.throws(() => gate.decide(request), (e) => e instanceof WouldBlockError && e.code === 'PORTCULLIS_WOULD_BLOCK' && /decideAsync/.test(e.message));
      assert.throws(() => gate.reset('api', 'principal', 'k1'), WouldBlockError);
      const seen = [];
      for (let i = 0; i < 4; i++) seen.push((await gate.decideAsync(request)).allowed);
      assert.deepEqual(seen, [true, true, true, false]);
      assert.equal(await gate.resetAsync('api', 'principal', 'k1'), true);
      assert.equal((await gate.decideAsync(request)).remaining, 2);
    } finally {
      gate.close();
    }
  });

  await t.test('two gates (two hosts) share one quota on Redis', async () => {
    const config = withStore(redis.url, GATE_CONFIG);
    const a = Gate.fromConfig(config);
    const b = Gate.fromConfig(config);
    try {
      const all = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).decideAsync({ ...request, principal: 'shared' })));
      assert.equal(all.filter((o) => o.allowed).length, 3);
    } finally {
      a.close();
      b.close();
    }
  });

  await t.test('the event loop runs while a decision waits for Redis', async () => {
    const gate = Gate.fromConfig(withStore(redis.url, GATE_CONFIG));
    try {
      assert.match(await command(redis.port, 'CLIENT', 'PAUSE', '400', 'ALL'), /OK/);
      const order = [];
      const decided = gate.decideAsync(request).then((o) => order.push(`decided ${o.allowed}`));
      setImmediate(() => order.push('loop'));
      await decided;
      assert.deepEqual(order, ['loop', 'decided true']);
    } finally {
      gate.close();
    }
  });

  await t.test('concurrency leases from a gate go back through releaseAsync', async () => {
    const gate = Gate.fromConfig(withStore(redis.url, GATE_CONFIG));
    try {
      const slow = { method: 'GET', path: '/slow', ip: '203.0.113.9' };
      const first = await gate.decideAsync(slow);
      assert.equal(first.allowed, true);
      assert.equal(first.lease.held, true);
      assert.equal((await gate.decideAsync(slow)).allowed, false, 'the one slot is taken');
      assert.equal(await first.lease.releaseAsync(), true);
      assert.equal(first.lease.held, false);
      assert.equal(await first.lease.releaseAsync(), false, 'twice is harmless');
      const again = await gate.decideAsync(slow);
      assert.equal(again.allowed, true);
      assert.equal(await again.lease.releaseAsync(), true);
    } finally {
      gate.close();
    }
  });

  await t.test('a limiter: *Async calls only', async () => {
    const limiter = Limiter.fromConfig(
      withStore(redis.url, '[[policy]]\nname = "login"\nlimit = "5/15m"\nburst = 5\n\n[[policy]]\nname = "slots"\nalgorithm = "concurrency"\nlimit = 1\nlease_timeout = "1m"\n'),
    );
    try {
      assert.equal(limiter.mayBlock, true);
      for (const call of ['check', 'peek', 'penalize', 'refund']) {
        assert.throws(() => limiter[call]('login', 'u'), (e) => e instanceof WouldBlockError && e.message.includes(`${call}Async`));
      }
      assert.throws(() => limiter.reset('login', 'u'), WouldBlockError);
      assert.throws(() => limiter.tryAcquire('slots', 'u'), WouldBlockError);
      const seen = [];
      for (let i = 0; i < 6; i++) seen.push((await limiter.checkAsync('login', 'u')).allowed);
      assert.deepEqual(seen, [true, true, true, true, true, false]);
      assert.equal((await limiter.peekAsync('login', 'u')).remaining, 0);
      assert.equal(await limiter.resetAsync('login', 'u'), true);
      assert.equal((await limiter.checkAsync('login', 'u')).remaining, 4);
    } finally {
      limiter.close();
    }
  });

  await t.test('express on a Redis gate offloads by itself', async () => {
    const gate = Gate.fromConfig(withStore(redis.url, GATE_CONFIG));
    const app = express();
    app.use(portcullis.express(gate, { principal: (req) => req.headers['x-key'] }));
    app.get('/api/things', (req, res) => res.json({ ok: true }));
    app.get('/slow', (req, res) => res.json({ ok: true }));
    const server = await listen(http.createServer(app));
    try {
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await fetch(`${server.url}/api/things`, { headers: { 'x-key': 'e' } })).status);
      assert.deepEqual(statuses, [200, 200, 200, 429]);
      // The slot of /slow is given back after each response, off the loop.
      for (let i = 0; i < 3; i++) {
        const r = await fetch(`${server.url}/slow`);
        assert.equal(r.status, 200);
        await r.text();
        await slotBack(gate);
      }
    } finally {
      await server.close();
      gate.close();
    }
  });

  await t.test('Redis gone: on_error answers at once, and decisions come back with it', async () => {
    const own = await startRedis();
    const gate = Gate.fromConfig(withStore(own.url, GATE_CONFIG, '100ms', 'on_error = "fail_open"'));
    try {
      assert.equal((await gate.decideAsync(request)).allowed, true);
      own.stop();
      for (let i = 0; i < 5; i++) assert.equal((await gate.decideAsync(request)).allowed, true, 'fail_open lets it through');
      const fallbacks = /portcullis_store_fallback_decisions_total\{policy="api"\} (\d+)/.exec(gate.metrics());
      assert.ok(fallbacks && Number(fallbacks[1]) >= 5, String(fallbacks));
    } finally {
      gate.close();
    }
  });
});

/**
 * Waits until the slot of /slow is free again (the response before gave it back off the loop,
 * after it was sent), taking it and giving it back.
 */
async function slotBack(gate) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const outcome = await gate.decideAsync({ method: 'GET', path: '/slow', ip: '198.51.100.1' });
    if (outcome.allowed) {
      await outcome.lease.releaseAsync();
      return;
    }
    assert.ok(Date.now() < deadline, 'the slot never came back');
    await new Promise((r) => setTimeout(r, 5));
  }
}
