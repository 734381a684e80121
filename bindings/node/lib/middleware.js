'use strict';
/**
 * The Express (and Connect / node:http) middleware and the Fastify plugin: one gate decision
 * per request, before any route.
 *
 * - A preflight is answered 204, a CORS refusal 403 and a rate-limited request 429 with a short
 *   JSON body, each with the gate's headers (a 429 keeps its CORS headers and `Retry-After`).
 * - Every other response gets the gate's headers (rate-limit headers, CORS headers), set
 *   before the route runs; `Vary` is appended to, never replaced.
 * - A request's concurrency leases are given back once, on the first of the response's
 *   `finish` and `close` (a client that aborts frees its slot at once).
 * - Shaping (`leaky_bucket` with `max_delay`) delays the route by the outcome's `delayMs`.
 */
const net = require('node:net');
const { Gate } = require('./gate');
const { typeError } = require('./errors');
const { joinHeader } = require('./util');

const LIMITED_BODY = (secs) => `{"error":"too many requests","retryAfter":${secs}}`;
const FORBIDDEN_BODY = '{"error":"cross-origin request refused"}';

let trustProxyWarned = false;

function warnTrustProxy() {
  if (trustProxyWarned) return;
  trustProxyWarned = true;
  process.emitWarning(
    'portcullis: a request carries X-Forwarded-For but the app does not trust a proxy, so ' +
      'every request behind that proxy is limited as one client (its address). Set Express\'s ' +
      '"trust proxy" (or Fastify\'s trustProxy) to the proxies you run, or give the middleware ' +
      'an `ip` option.',
    { code: 'PORTCULLIS_TRUST_PROXY' },
  );
}

/** A client address the library accepts: IPv4-mapped IPv6 unwrapped, a zone dropped. */
function normalizeIp(ip) {
  if (typeof ip !== 'string' || ip.length === 0) return undefined;
  if (ip.charCodeAt(0) === 58 /* : */ && ip.startsWith('::ffff:') && ip.indexOf('.') > 0) {
    ip = ip.slice(7);
  }
  const zone = ip.indexOf('%');
  if (zone > 0) ip = ip.slice(0, zone);
  return net.isIP(ip) !== 0 ? ip : undefined;
}

function checkOptions(gate, options, what) {
  if (!(gate instanceof Gate)) throw typeError('gate', 'an instance of Gate', gate);
  if (options === null || typeof options !== 'object') throw typeError('options', 'an object', options);
  for (const name of ['principal', 'tier', 'ip', 'skip']) {
    if (options[name] !== undefined && typeof options[name] !== 'function') {
      throw typeError(`options.${name}`, 'a function', options[name]);
    }
  }
  if (options.offload !== undefined && typeof options.offload !== 'boolean') {
    throw typeError('options.offload', 'of type boolean', options.offload);
  }
  void what;
}

function isThenable(v) {
  return v !== null && typeof v === 'object' && typeof v.then === 'function';
}

/**
 * The Vary value of a response that has `existing` once `value`'s tokens are appended (none
 * repeated, `Vary: *` left alone), or null when it stays as it is.
 */
function mergeVary(existing, value) {
  if (existing === undefined || existing === null || existing === '') return value;
  const current = String(Array.isArray(existing) ? existing.join(', ') : existing);
  const tokens = current.split(',').map((t) => t.trim()).filter(Boolean);
  if (tokens.includes('*')) return null;
  const seen = new Set(tokens.map((t) => t.toLowerCase()));
  let changed = false;
  for (const t of value.split(',')) {
    const tok = t.trim();
    if (tok && !seen.has(tok.toLowerCase())) {
      seen.add(tok.toLowerCase());
      tokens.push(tok);
      changed = true;
    }
  }
  return changed ? tokens.join(', ') : null;
}

function isVary(name) {
  return name.length === 4 && name.toLowerCase() === 'vary';
}

/**
 * Gives a lease back once, on the first of the response's finish and close. Returns false
 * (having given it back) when the response is already closed: the client went away while the
 * decision was made off the loop.
 */
function releaseOnDone(res, lease, offload) {
  if (res.destroyed === true || res.closed === true) {
    giveBack(lease, offload);
    return false;
  }
  let done = false;
  const release = () => {
    if (done) return;
    done = true;
    res.removeListener('finish', release);
    res.removeListener('close', release);
    giveBack(lease, offload);
  };
  res.once('finish', release);
  res.once('close', release);
  return true;
}

/**
 * Gives a lease back: off the event loop with `offload` (a release on Redis waits on the
 * network); a failure is a warning, there is no request left to fail.
 */
function giveBack(lease, offload) {
  const warn = (err) =>
    process.emitWarning(`portcullis: releasing a lease failed: ${err.message}`, { code: 'PORTCULLIS_RELEASE' });
  if (offload) {
    lease.releaseAsync().catch(warn);
    return;
  }
  try {
    lease.release();
  } catch (err) {
    warn(err);
  }
}

/** The status and body of a refused request (preflight, 403, 429). */
function refusal(outcome) {
  if (outcome.action === 'preflight') return [outcome.status || 204, null];
  if (outcome.action === 'limited') return [outcome.status || 429, LIMITED_BODY(outcome.retryAfterSecs)];
  return [outcome.status || 403, FORBIDDEN_BODY];
}

/** What the principal, tier and ip options give for a request (values or promises). */
function extract(options, req, defaultIp) {
  return [
    options.principal ? options.principal(req) : undefined,
    options.tier ? options.tier(req) : undefined,
    options.ip ? options.ip(req) : defaultIp(req),
  ];
}

/** The gate's decision for a Node request: a value, or a promise with `offload`. */
function decideFor(gate, offload, req, url, principal, tier, ip) {
  const h = req.headers;
  const pn = h['access-control-request-private-network'];
  const privateNetwork = pn !== undefined && String(pn).trim().toLowerCase() === 'true';
  principal = principal ?? undefined;
  tier = tier ?? undefined;
  if (principal !== undefined && typeof principal !== 'string' && !(principal instanceof Uint8Array)) {
    principal = String(principal);
  }
  if (tier !== undefined && typeof tier !== 'string' && !(tier instanceof Uint8Array)) tier = String(tier);
  const method = req.method;
  const origin = joinHeader(h.origin);
  const acrm = joinHeader(h['access-control-request-method']);
  const acrh = joinHeader(h['access-control-request-headers']);
  // The gate believes these only from the config's trusted_proxies.
  const xff = joinHeader(h['x-forwarded-for']);
  const fwd = joinHeader(h.forwarded);
  return offload
    ? gate._decideAsync(method, url, origin, acrm, acrh, ip, principal, tier, xff, fwd, privateNetwork)
    : gate._decide(method, url, origin, acrm, acrh, ip, principal, tier, xff, fwd, privateNetwork);
}

// ---------------------------------------------------------------------------------------------
// Express, Connect, node:http

function expressIp(req) {
  if (req.headers['x-forwarded-for'] !== undefined && !trustProxyWarned) {
    const app = req.app;
    const trust = app && typeof app.get === 'function' ? app.get('trust proxy') : undefined;
    if (!trust) warnTrustProxy();
  }
  return normalizeIp(req.ip ?? req.socket?.remoteAddress);
}

/**
 * The Express middleware: `app.use(portcullis.express(gate, {principal, tier}))`.
 *
 * Options (each a function of the request, returning a value or a promise):
 * - `principal(req)`: the user id or API key (undefined: anonymous);
 * - `tier(req)`: the principal's tier;
 * - `ip(req)`: the client address (default: `req.ip`, which follows Express's "trust proxy",
 *   else the socket's address);
 * - `skip(req)`: true to let a request through undecided;
 * - `offload`: decide on libuv's pool (for `durability = "immediate"` policies; always on for
 *   a gate whose store is Redis, `gate.mayBlock`);
 * - `onError(err, req, res, next)`: when a decision fails (default: `next(err)`).
 *
 * Works as a Connect or plain node:http middleware too: `(req, res, next)`.
 */
function express(gate, options = {}) {
  checkOptions(gate, options, 'express');
  const offload = options.offload === true || gate.mayBlock;
  const onError = options.onError;
  if (onError !== undefined && typeof onError !== 'function') throw typeError('options.onError', 'a function', onError);
  const skip = options.skip;

  const apply = (outcome, req, res, next) => {
    const hs = outcome.headers;
    for (let i = 0; i < hs.length; i++) {
      const name = hs[i][0];
      if (isVary(name)) {
        const vary = mergeVary(res.getHeader('vary'), hs[i][1]);
        if (vary !== null) res.setHeader('Vary', vary);
      } else {
        res.setHeader(name, hs[i][1]);
      }
    }
    const lease = outcome.lease;
    if (!outcome.allowed) {
      if (lease !== null) giveBack(lease, offload);
      const [status, body] = refusal(outcome);
      res.statusCode = status;
      if (body === null) {
        res.end();
      } else {
        res.setHeader('Content-Type', 'application/json; charset=utf-8');
        res.setHeader('Content-Length', Buffer.byteLength(body));
        res.end(body);
      }
      return;
    }
    if (lease !== null && !releaseOnDone(res, lease, offload)) return;
    if (outcome.delayMs > 0) setTimeout(next, outcome.delayMs);
    else next();
  };

  const fail = (err, req, res, next) => {
    if (onError !== undefined) onError(err, req, res, next);
    else next(err);
  };

  const run = (req, res, next, principal, tier, ip) => {
    const url = req.originalUrl ?? req.url;
    let outcome;
    try {
      outcome = decideFor(gate, offload, req, url, principal, tier, ip);
    } catch (err) {
      fail(err, req, res, next);
      return;
    }
    if (offload) {
      outcome.then(
        (o) => apply(o, req, res, next),
        (err) => fail(err, req, res, next),
      );
    } else {
      apply(outcome, req, res, next);
    }
  };

  return function portcullis(req, res, next) {
    let values;
    try {
      if (skip !== undefined && skip(req) === true) {
        next();
        return;
      }
      values = extract(options, req, expressIp);
    } catch (err) {
      fail(err, req, res, next);
      return;
    }
    if (isThenable(values[0]) || isThenable(values[1]) || isThenable(values[2])) {
      Promise.all(values).then(
        ([p, t, ip]) => run(req, res, next, p, t, normalizeIp(ip) ?? undefined),
        (err) => fail(err, req, res, next),
      );
      return;
    }
    run(req, res, next, values[0], values[1], options.ip ? normalizeIp(values[2]) : values[2]);
  };
}

// ---------------------------------------------------------------------------------------------
// Fastify

function fastifyIp(request) {
  if (request.headers['x-forwarded-for'] !== undefined && !trustProxyWarned) {
    const trust = request.server?.initialConfig?.trustProxy;
    if (!trust) warnTrustProxy();
  }
  return normalizeIp(request.ip);
}

/**
 * The Fastify plugin: `fastify.register(portcullis.fastify, {gate, principal, tier})`.
 * Decides in an `onRequest` hook of the whole app (it is not encapsulated), so preflights of
 * routes without an OPTIONS handler are answered too. Options as for `express`, each function
 * taking Fastify's request; `onError(err, request, reply)` replies itself (default: the error
 * goes to Fastify's error handler).
 */
function fastify(instance, options, done) {
  const { gate } = options ?? {};
  try {
    checkOptions(gate, options, 'fastify');
  } catch (err) {
    done(err);
    return;
  }
  const offload = options.offload === true || gate.mayBlock;
  const skip = options.skip;
  const onError = options.onError;

  const apply = (outcome, request, reply, next) => {
    const hs = outcome.headers;
    for (let i = 0; i < hs.length; i++) {
      const name = hs[i][0];
      if (isVary(name)) {
        const vary = mergeVary(reply.getHeader('vary'), hs[i][1]);
        if (vary !== null) reply.header('vary', vary);
      } else {
        reply.header(name, hs[i][1]);
      }
    }
    const lease = outcome.lease;
    if (!outcome.allowed) {
      if (lease !== null) giveBack(lease, offload);
      const [status, body] = refusal(outcome);
      reply.code(status);
      if (body === null) {
        reply.send();
      } else {
        reply.header('content-type', 'application/json; charset=utf-8');
        reply.send(body);
      }
      return;
    }
    if (lease !== null && !releaseOnDone(reply.raw, lease, offload)) return;
    if (outcome.delayMs > 0) setTimeout(next, outcome.delayMs);
    else next();
  };

  const fail = (err, request, reply, next) => {
    if (onError !== undefined) onError(err, request, reply);
    else next(err);
  };

  const run = (request, reply, next, principal, tier, ip) => {
    let outcome;
    try {
      outcome = decideFor(gate, offload, request.raw, request.url, principal, tier, ip);
    } catch (err) {
      fail(err, request, reply, next);
      return;
    }
    if (offload) {
      outcome.then(
        (o) => apply(o, request, reply, next),
        (err) => fail(err, request, reply, next),
      );
    } else {
      apply(outcome, request, reply, next);
    }
  };

  instance.addHook('onRequest', function portcullisOnRequest(request, reply, next) {
    let values;
    try {
      if (skip !== undefined && skip(request) === true) {
        next();
        return;
      }
      values = extract(options, request, fastifyIp);
    } catch (err) {
      fail(err, request, reply, next);
      return;
    }
    if (isThenable(values[0]) || isThenable(values[1]) || isThenable(values[2])) {
      Promise.all(values).then(
        ([p, t, ip]) => run(request, reply, next, p, t, normalizeIp(ip) ?? undefined),
        (err) => fail(err, request, reply, next),
      );
      return;
    }
    run(request, reply, next, values[0], values[1], options.ip ? normalizeIp(values[2]) : values[2]);
  });
  done();
}

// What fastify-plugin sets: the hook applies to the whole app, not an encapsulated child.
fastify[Symbol.for('skip-override')] = true;
fastify[Symbol.for('fastify.display-name')] = 'portcullis';
fastify[Symbol.for('plugin-meta')] = { name: 'portcullis', fastify: '>=4.0.0' };

module.exports = { express, fastify, normalizeIp, mergeVary };
