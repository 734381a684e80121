'use strict';
/**
 * Loads the addon and turns what it returns into plain objects.
 *
 * The addon's fast path returns no object: the numbers of a decision or an outcome are in one
 * shared Float64Array (`buf`), read here right after the call, before any other call of the
 * addon can overwrite them; strings come as one string whose pieces' lengths follow the
 * numbers (from `buf[SEG]` on), or, past a few hundred pieces, as an array of strings.
 */
const path = require('node:path');
const { makeError } = require('./errors');

function load() {
  const tried = [];
  const candidates = [];
  if (process.env.PORTCULLIS_NODE_ADDON) candidates.push(path.resolve(process.env.PORTCULLIS_NODE_ADDON));
  candidates.push(
    path.join(__dirname, '..', 'build', 'Release', 'portcullis.node'),
    path.join(__dirname, '..', 'build', 'Debug', 'portcullis.node'),
  );
  for (const file of candidates) {
    try {
      return require(file);
    } catch (err) {
      if (err && err.code === 'MODULE_NOT_FOUND') {
        tried.push(file);
        continue;
      }
      throw err;
    }
  }
  const err = new Error(
    `portcullis: the native addon is not built (looked for ${tried.join(', ')}); ` +
      'run `npm install` (or `npm rebuild`) in bindings/node',
  );
  err.code = 'PORTCULLIS_ADDON_NOT_FOUND';
  throw err;
}

const native = load();
const buf = native.buffer;
const SEG = native.segmentsAt;

const ACTIONS = ['pass', 'preflight', 'forbidden', 'limited'];
const CORS_KINDS = ['not-cors', 'preflight', 'actual'];

/** The Decision in `buf`. */
function readDecision() {
  return {
    allowed: buf[0] === 1,
    limit: buf[1],
    remaining: buf[2],
    policy: buf[3],
    resetAfterMs: buf[4],
    retryAfterMs: buf[5],
    retryAfterSecs: buf[6],
    delayMs: buf[7],
    at: buf[8],
  };
}

/**
 * `count` [name, value] pairs from `text` starting at piece `first` (whose text starts at
 * `pos`), or from an array of strings.
 */
function readPairs(text, first, pos, count) {
  const headers = new Array(count);
  if (typeof text === 'string') {
    for (let i = 0, s = SEG + first; i < count; i++, s += 2) {
      const n = buf[s];
      const v = buf[s + 1];
      headers[i] = [text.slice(pos, pos + n), text.slice(pos + n, pos + n + v)];
      pos += n + v;
    }
  } else {
    for (let i = 0; i < count; i++) headers[i] = [text[first + 2 * i], text[first + 2 * i + 1]];
  }
  return headers;
}

/** The Outcome in `buf` and `raw` (what gateDecide returned). */
function readOutcome(raw, GateLease) {
  let text = raw;
  let lease = null;
  if (typeof raw !== 'string' && raw.length === 2 && typeof raw[1] === 'object') {
    text = raw[0];
    lease = raw[1];
  }
  const action = buf[0];
  const status = buf[1];
  const delayMs = buf[2];
  const retryAfterSecs = buf[3];
  const remaining = buf[4];
  const limit = buf[5];
  const leases = buf[6];
  const count = buf[7];
  let reason;
  let limitedBy;
  let pos;
  if (typeof text === 'string') {
    const r = buf[SEG];
    const l = buf[SEG + 1];
    reason = text.slice(0, r);
    limitedBy = l === 0 ? null : text.slice(r, r + l);
    pos = r + l;
  } else {
    reason = text[0];
    limitedBy = text[1] || null;
    pos = 0;
  }
  const headers = readPairs(text, 2, pos, count);
  return {
    allowed: action === 0,
    action: ACTIONS[action] ?? 'unknown',
    status,
    reason,
    limitedBy,
    delayMs,
    retryAfterSecs,
    remaining: remaining < 0 ? null : remaining,
    limit: limit === 0 ? null : limit,
    leases,
    headers,
    lease: lease === null ? null : new GateLease(lease),
  };
}

/** The CORS decision in `buf` and `raw`. */
function readCorsDecision(raw) {
  const kind = buf[0];
  const allowed = buf[1] === 1;
  const status = buf[2];
  const count = buf[7];
  let reason;
  let pos = 0;
  if (typeof raw === 'string') {
    pos = buf[SEG];
    reason = raw.slice(0, pos);
  } else {
    reason = raw[0];
  }
  const headers = readPairs(raw, 1, pos, count);
  return { kind: CORS_KINDS[kind] ?? 'unknown', allowed, status, reason, headers };
}

/** The header pairs of limiterHeaders. */
function readHeaders(raw) {
  return readPairs(raw, 0, 0, buf[7]);
}

let GateLeaseClass = null;

native.init(
  makeError,
  readDecision,
  (raw) => readOutcome(raw, GateLeaseClass),
);

module.exports = {
  native,
  readDecision,
  readOutcome: (raw) => readOutcome(raw, GateLeaseClass),
  readCorsDecision,
  readHeaders,
  /** Called once by gate.js: the class outcomes' leases are made of. */
  setGateLease(cls) {
    GateLeaseClass = cls;
  },
};
