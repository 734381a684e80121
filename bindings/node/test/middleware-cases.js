'use strict';
// The HTTP cases both middlewares must pass (express.test.js, fastify.test.js): a real server
// on 127.0.0.1 driven by fetch. `start(gate, hooks)` starts the app and resolves {url, close};
// the app serves GET /api/things ("things", adding `Vary: Accept-Encoding` itself) and
// GET /slow (calls hooks.slow(req, res) and answers only when that says so), takes the
// principal from `Authorization: Bearer <key>`, and mounts no OPTIONS route.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Gate } = require('..');
const { GATE_CONFIG, deferred, within } = require('./helpers');

function cases(name, start) {
  test(`${name}: allowed requests get the rate-limit and CORS headers; the 4th is a 429 with them and a JSON body`, async () => {
    const gate = Gate.fromConfig(GATE_CONFIG);
    const server = await start(gate, {});
    try {
      const headers = { authorization: 'Bearer k1', origin: 'http://app.test' };
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${server.url}/api/things`, { headers });
        assert.equal(res.status, 200);
        assert.equal(await res.text(), 'things');
        assert.equal(res.headers.get('x-ratelimit-limit'), '3');
        assert.equal(res.headers.get('x-ratelimit-remaining'), String(2 - i));
        assert.equal(res.headers.get('access-control-allow-origin'), 'http://app.test');
        assert.match(res.headers.get('access-control-expose-headers'), /X-RateLimit-Remaining/);
        assert.match(res.headers.get('access-control-expose-headers'), /Retry-After/);
        assert.equal(res.headers.get('vary'), 'Origin, Accept-Encoding');
      }
      const limited = await fetch(`${server.url}/api/things`, { headers });
      assert.equal(limited.status, 429);
      assert.match(limited.headers.get('content-type'), /^application\/json/);
      const body = await limited.json();
      assert.equal(body.error, 'too many requests');
      assert.ok(body.retryAfter >= 1);
      assert.equal(limited.headers.get('retry-after'), String(body.retryAfter));
      assert.equal(limited.headers.get('access-control-allow-origin'), 'http://app.test');
      assert.equal(limited.headers.get('x-ratelimit-remaining'), '0');
      // Another principal is not limited.
      const other = await fetch(`${server.url}/api/things`, { headers: { authorization: 'Bearer k2' } });
      assert.equal(other.status, 200);
      assert.equal(other.headers.get('access-control-allow-origin'), null);
    } finally {
      await server.close();
      gate.close();
    }
  });

  test(`${name}: a preflight is answered 204 without reaching a route or a quota; a refused origin gets 403`, async () => {
    const gate = Gate.fromConfig(GATE_CONFIG);
    const server = await start(gate, {});
    try {
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`${server.url}/api/things`, {
          method: 'OPTIONS',
          headers: { origin: 'http://app.test', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type' },
        });
        assert.equal(res.status, 204);
        assert.equal(res.headers.get('access-control-allow-origin'), 'http://app.test');
        assert.equal(res.headers.get('access-control-allow-methods'), 'PUT');
        assert.equal(res.headers.get('access-control-max-age'), '600');
        assert.match(res.headers.get('vary'), /Access-Control-Request-Method/);
        assert.equal(await res.text(), '');
      }
      const refused = await fetch(`${server.url}/api/things`, {
        method: 'OPTIONS',
        headers: { origin: 'http://app.test', 'access-control-request-method': 'PATCH' },
      });
      assert.equal(refused.status, 403);
      const evil = await fetch(`${server.url}/api/things`, { headers: { origin: 'http://evil.test' } });
      assert.equal(evil.status, 403);
      assert.equal((await evil.json()).error, 'cross-origin request refused');
      assert.equal(evil.headers.get('access-control-allow-origin'), null);
      // None of them was charged: the client still has its full quota.
      const ok = await fetch(`${server.url}/api/things`);
      assert.equal(ok.headers.get('x-ratelimit-remaining'), '2');
    } finally {
      await server.close();
      gate.close();
    }
  });

  test(`${name}: a request's lease is released when its response finishes`, async () => {
    const gate = Gate.fromConfig(GATE_CONFIG);
    const server = await start(gate, { slow: (req, answer) => answer() });
    try {
      for (let i = 0; i < 4; i++) {
        const res = await fetch(`${server.url}/slow`);
        assert.equal(res.status, 200, `request ${i}`);
        assert.equal(await res.text(), 'slow done');
      }
    } finally {
      await server.close();
      gate.close();
    }
  });

  test(`${name}: a request's lease is released when the client aborts`, async () => {
    const gate = Gate.fromConfig(GATE_CONFIG);
    const entered = deferred();
    const closed = deferred();
    let held = 0;
    const server = await start(gate, {
      slow: (res, answer) => {
        if (held++ === 0) {
          // The first request hangs until its client goes away. The middleware's listener
          // was added before this one, so it has run when this one runs.
          res.on('close', () => closed.resolve());
          entered.resolve();
        } else {
          answer();
        }
      },
    });
    try {
      const controller = new AbortController();
      const hanging = fetch(`${server.url}/slow`, { signal: controller.signal });
      hanging.catch(() => {});
      await within(entered.promise, 5000, 'the first request reaching its route');
      const busy = await fetch(`${server.url}/slow`);
      assert.equal(busy.status, 429, 'the slot is held while the first request runs');
      assert.equal((await busy.json()).error, 'too many requests');
      controller.abort();
      await assert.rejects(hanging, { name: 'AbortError' });
      await within(closed.promise, 5000, 'the server seeing the client go');
      const after = await fetch(`${server.url}/slow`);
      assert.equal(after.status, 200, 'the aborted request gave its slot back');
      assert.equal(await after.text(), 'slow done');
    } finally {
      await server.close();
      gate.close();
    }
  });
}

module.exports = { cases };
