'use strict';
const http = require('node:http');
const test = require('node:test');
const assert = require('node:assert/strict');
const express = require('express');
const portcullis = require('..');
const { GATE_CONFIG, listen } = require('./helpers');
const { cases } = require('./middleware-cases');

function start(gate, hooks, options = {}) {
  const app = express();
  app.use(
    portcullis.express(gate, {
      principal: (req) => {
        const auth = req.headers.authorization;
        return auth && auth.startsWith('Bearer ') ? auth.slice(7) : undefined;
      },
      ...options,
    }),
  );
  app.get('/api/things', (req, res) => {
    res.vary('Accept-Encoding');
    res.send('things');
  });
  app.get('/slow', (req, res) => hooks.slow(res, () => res.send('slow done')));
  app.use((err, req, res, next) => {
    res.status(500).json({ error: String(err.message) });
  });
  return listen(http.createServer(app));
}

cases('express', start);

test('express: offload decides on the pool; async principal functions are awaited', async () => {
  const gate = portcullis.Gate.fromConfig(GATE_CONFIG);
  const server = await start(gate, {}, { offload: true, principal: async (req) => req.headers['x-key'] });
  try {
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${server.url}/api/things`, { headers: { 'x-key': 'a' } })).status);
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    assert.equal((await fetch(`${server.url}/api/things`, { headers: { 'x-key': 'b' } })).status, 200);
  } finally {
    await server.close();
    gate.close();
  }
});

test('express: a failing decision goes to the error handler (a closed gate)', async () => {
  const gate = portcullis.Gate.fromConfig(GATE_CONFIG);
  const server = await start(gate, {});
  try {
    gate.close();
    const res = await fetch(`${server.url}/api/things`);
    assert.equal(res.status, 500);
    assert.match((await res.json()).error, /closed/);
  } finally {
    await server.close();
  }
});

test('the middleware works on a plain node:http server', async () => {
  const gate = portcullis.Gate.fromConfig(GATE_CONFIG);
  const mw = portcullis.express(gate);
  const server = await listen(
    http.createServer((req, res) =>
      mw(req, res, (err) => {
        res.statusCode = err ? 500 : 200;
        res.end(err ? 'error' : 'plain');
      }),
    ),
  );
  try {
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${server.url}/api/plain`)).status);
    assert.deepEqual(statuses, [200, 200, 200, 429]);
  } finally {
    await server.close();
    gate.close();
  }
});

test('the Vary merge and the client address normalisation', () => {
  const { mergeVary, normalizeIp } = require('../lib/middleware');
  assert.equal(mergeVary(undefined, 'Origin'), 'Origin');
  assert.equal(mergeVary('Accept-Encoding', 'Origin'), 'Accept-Encoding, Origin');
  assert.equal(mergeVary('origin', 'Origin'), null);
  assert.equal(mergeVary('*', 'Origin'), null);
  assert.equal(mergeVary(['A', 'B'], 'B, C'), 'A, B, C');
  assert.equal(normalizeIp('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(normalizeIp('fe80::1%eth0'), 'fe80::1');
  assert.equal(normalizeIp('::1'), '::1');
  assert.equal(normalizeIp('203.0.113.9'), '203.0.113.9');
  assert.equal(normalizeIp('/run/app.sock'), undefined);
  assert.equal(normalizeIp(''), undefined);
  assert.equal(normalizeIp(undefined), undefined);
});

test('express: X-Forwarded-For without "trust proxy" warns once', async () => {
  const gate = portcullis.Gate.fromConfig(GATE_CONFIG);
  const warnings = [];
  const onWarning = (w) => {
    if (w.code === 'PORTCULLIS_TRUST_PROXY') warnings.push(w);
  };
  process.on('warning', onWarning);
  const server = await start(gate, {});
  try {
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${server.url}/api/things`, { headers: { 'x-forwarded-for': '198.51.100.7' } });
      assert.equal(res.status, 200);
    }
    // Warnings are emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(warnings.length, 1);
  } finally {
    process.off('warning', onWarning);
    await server.close();
    gate.close();
  }
});
