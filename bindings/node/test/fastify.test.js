'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const Fastify = require('fastify');
const portcullis = require('..');
const { GATE_CONFIG } = require('./helpers');
const { cases } = require('./middleware-cases');

async function start(gate, hooks, options = {}) {
  const app = Fastify();
  await app.register(portcullis.fastify, {
    gate,
    principal: (request) => {
      const auth = request.headers.authorization;
      return auth && auth.startsWith('Bearer ') ? auth.slice(7) : undefined;
    },
    ...options,
  });
  app.get('/api/things', async (request, reply) => {
    const vary = reply.getHeader('vary');
    reply.header('vary', vary ? `${vary}, Accept-Encoding` : 'Accept-Encoding');
    return 'things';
  });
  app.get('/slow', (request, reply) => {
    hooks.slow(reply.raw, () => reply.send('slow done'));
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, close: () => app.close() };
}

cases('fastify', start);

test('fastify: the plugin covers routes registered in encapsulated children too', async () => {
  const gate = portcullis.Gate.fromConfig(GATE_CONFIG);
  const app = Fastify();
  await app.register(portcullis.fastify, { gate });
  await app.register(async (child) => {
    child.get('/api/child', async () => 'child');
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  try {
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${url}/api/child`)).status);
    assert.deepEqual(statuses, [200, 200, 200, 429]);
  } finally {
    await app.close();
    gate.close();
  }
});

test('fastify: offload and a registration without a gate', async () => {
  const gate = portcullis.Gate.fromConfig(GATE_CONFIG);
  const server = await start(gate, {}, { offload: true });
  try {
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${server.url}/api/things`)).status);
    assert.deepEqual(statuses, [200, 200, 200, 429]);
  } finally {
    await server.close();
    gate.close();
  }
  const app = Fastify();
  app.register(portcullis.fastify, {});
  await assert.rejects(app.ready(), TypeError);
});
