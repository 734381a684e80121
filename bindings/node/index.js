'use strict';
/**
 * portcullis for Node.js: rate limiting and CORS decisions for HTTP APIs, over the library's
 * C ABI through Node-API.
 *
 * - `Limiter`: keyed rate limiting over named policies (GCRA, fixed and sliding windows,
 *   leaky-bucket shaping, concurrency leases, blocks).
 * - `Gate`: CORS and rate limiting for every request from one TOML config; `express(gate)` and
 *   the Fastify plugin `fastify` put it in front of an app.
 * - `Cors`: the strict CORS engine alone.
 */
const { native } = require('./lib/native');
const errors = require('./lib/errors');
const { Limiter, Lease } = require('./lib/limiter');
const { Gate, GateLease, Cors } = require('./lib/gate');
const { express, fastify } = require('./lib/middleware');

module.exports = {
  Gate,
  GateLease,
  Limiter,
  Lease,
  Cors,
  express,
  fastify,
  PortcullisError: errors.PortcullisError,
  InvalidArgumentError: errors.InvalidArgumentError,
  InternalError: errors.InternalError,
  ClosedError: errors.ClosedError,
  ConfigError: errors.ConfigError,
  PolicyError: errors.PolicyError,
  StoreError: errors.StoreError,
  WouldBlockError: errors.WouldBlockError,
  RateLimitedError: errors.RateLimitedError,
  /** The library's version, e.g. "0.1.0". */
  version: native.version,
  /** The library's ABI version (checked against the header at load). */
  abiVersion: native.abiVersion,
  /** The name of a result code, e.g. resultName(300) === 'PORTCULLIS_RESULT_STORE_LOCKED'. */
  resultName: (code) => native.resultName(code),
};
