'use strict';
const fs = require('node:fs');
const { native, readOutcome, setGateLease, readCorsDecision } = require('./native');
const { typeError, rangeError, WouldBlockError } = require('./errors');
const { kDispose, isText, checkText, checkOptionalText, filePath, joinHeader } = require('./util');

const KEY_KINDS = { ip: 0, principal: 1, route: 2, global: 3 };

/** A handle the static openers made, for the constructors. */
class Opened {
  constructor(h, file) {
    this.h = h;
    this.file = file;
  }
}

/**
 * The concurrency leases of one request, held by its outcome: give them back with
 * `release()` when the response is done (the middlewares do, on the first of `finish` and
 * `close`). Releasing twice is harmless; a lease collected while held is given back then.
 */
class GateLease {
  #native;

  constructor(nativeLease) {
    this.#native = nativeLease;
  }

  /** Whether the leases are still held. */
  get held() {
    return this.#native !== null;
  }

  /**
   * Gives the leases back; true if they were held. On a gate whose store is Redis this waits
   * for Redis (up to its timeout): use `releaseAsync` there.
   */
  release() {
    const n = this.#native;
    if (n === null) return false;
    this.#native = null;
    return native.outcomeRelease(n);
  }

  /** `release` on libuv's pool: a Promise of whether the leases were held. */
  releaseAsync() {
    const n = this.#native;
    if (n === null) return Promise.resolve(false);
    this.#native = null;
    try {
      return native.outcomeReleaseAsync(n);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  [kDispose]() {
    this.release();
  }
}

setGateLease(GateLease);

/** A header of a request's headers: a plain object (Node's req.headers), a Headers or a Map. */
function header(headers, name) {
  if (typeof headers.get === 'function') {
    const v = headers.get(name);
    return v === null ? undefined : v;
  }
  return headers[name];
}

/**
 * The arguments of native.gateDecide from a request description:
 * {method, path, ip, principal, tier, headers, origin, requestMethod, requestHeaders,
 * forwardedFor, forwarded, privateNetwork}. `ip` is the peer; `forwardedFor` / `forwarded`
 * (`X-Forwarded-For` / `Forwarded`, also read from `headers`) are believed only when the peer
 * is one of the config's `trusted_proxies`.
 */
function requestArgs(req) {
  if (req === null || typeof req !== 'object') throw typeError('request', 'an object', req);
  const { method, path } = req;
  checkText(method, 'request.method');
  checkText(path, 'request.path');
  let { origin, requestMethod, requestHeaders, privateNetwork, forwardedFor, forwarded } = req;
  const headers = req.headers;
  if (headers != null) {
    if (typeof headers !== 'object') throw typeError('request.headers', 'an object', headers);
    if (origin === undefined) origin = header(headers, 'origin');
    if (requestMethod === undefined) requestMethod = header(headers, 'access-control-request-method');
    if (requestHeaders === undefined) requestHeaders = header(headers, 'access-control-request-headers');
    if (privateNetwork === undefined) {
      privateNetwork = header(headers, 'access-control-request-private-network');
    }
    if (forwardedFor === undefined) forwardedFor = header(headers, 'x-forwarded-for');
    if (forwarded === undefined) forwarded = header(headers, 'forwarded');
  }
  forwardedFor = joinHeader(forwardedFor);
  forwarded = joinHeader(forwarded);
  checkOptionalText(forwardedFor, 'request.forwardedFor');
  checkOptionalText(forwarded, 'request.forwarded');
  origin = joinHeader(origin);
  requestMethod = joinHeader(requestMethod);
  requestHeaders = joinHeader(requestHeaders);
  checkOptionalText(origin, 'request.origin');
  checkOptionalText(requestMethod, 'request.requestMethod');
  checkOptionalText(requestHeaders, 'request.requestHeaders');
  checkOptionalText(req.ip, 'request.ip');
  checkOptionalText(req.principal, 'request.principal');
  checkOptionalText(req.tier, 'request.tier');
  if (typeof privateNetwork === 'string') privateNetwork = privateNetwork.trim().toLowerCase() === 'true';
  else if (privateNetwork == null) privateNetwork = false;
  else if (typeof privateNetwork !== 'boolean') {
    throw typeError('request.privateNetwork', 'of type boolean', privateNetwork);
  }
  return [
    method, path, origin, requestMethod, requestHeaders, req.ip, req.principal, req.tier,
    forwardedFor, forwarded, privateNetwork,
  ];
}

/** The checked [policy, kind, key] of a gate reset. */
function resetArgs(policy, kind, key) {
  checkText(policy, 'policy');
  const k = KEY_KINDS[kind];
  if (k === undefined) {
    if (typeof kind !== 'string') throw typeError('kind', 'of type string', kind);
    throw rangeError('kind', `one of ${Object.keys(KEY_KINDS).join(', ')}`, kind);
  }
  if (kind === 'global' && key === undefined) key = '';
  checkText(key, 'key');
  return [policy, k, key];
}

/**
 * CORS and rate limiting for every request, from one config (`[store]`, `[[policy]]`,
 * `[[route]]`, `[cors]`, `header_style`; docs/GATE.md).
 *
 * `decide` is synchronous; `decideAsync` runs on libuv's pool, for gates whose policies have
 * `durability = "immediate"` (a decision then waits for the disk). On a gate whose store is
 * Redis (`mayBlock`), a decision waits on the network: `decide` and `reset` throw
 * WouldBlockError, and `decideAsync` / `resetAsync` are the calls to make.
 */
class Gate {
  // The native handle (its collection frees the gate) and the token the calls take.
  #h;
  #t;
  #file;
  #mayBlock;

  /**
   * @param {string | Uint8Array | {file: string | Buffer | URL} | {config: string | Uint8Array}} config
   *   a config text (TOML), or `{file}` to read one from a file.
   */
  constructor(config) {
    if (config instanceof Opened) {
      this.#h = config.h;
      this.#file = config.file;
    } else if (isText(config)) {
      this.#h = native.gateOpen(config);
    } else if (config !== null && typeof config === 'object' && 'file' in config) {
      const file = filePath(config.file, 'config.file');
      this.#h = native.gateOpenFile(file);
      this.#file = file;
    } else if (config !== null && typeof config === 'object' && 'config' in config) {
      checkText(config.config, 'config.config');
      this.#h = native.gateOpen(config.config);
    } else {
      throw typeError('config', 'a string, a Uint8Array or an object with a file or config property', config);
    }
    this.#t = native.gateToken(this.#h);
    this.#mayBlock = native.gateMayBlock(this.#t);
  }

  /**
   * Whether a decision may wait on the network (the store is Redis): then only the `*Async`
   * calls decide, off the event loop, and the middlewares offload by themselves.
   */
  get mayBlock() {
    return this.#mayBlock;
  }

  /** Opens a gate from a config text (TOML). */
  static fromConfig(text) {
    checkText(text, 'text');
    return new Gate(new Opened(native.gateOpen(text)));
  }

  /** Opens a gate from a config file; errors name the file, line and column. */
  static fromFile(path) {
    const file = filePath(path);
    return new Gate(new Opened(native.gateOpenFile(file), file));
  }

  /**
   * Decides one request: `{method, path, ip, principal, tier, headers}` (`headers`: the
   * request's, for Origin and the Access-Control-Request-* headers; they may also be given as
   * `origin`, `requestMethod`, `requestHeaders`, `privateNetwork`).
   *
   * Returns a plain Outcome; a 429 or a 403 is an outcome, not an exception. When it holds
   * concurrency leases, `outcome.lease` gives them back: release it when the response is done.
   */
  decide(request) {
    if (this.#mayBlock) throw new WouldBlockError('Gate#decide', 'decideAsync');
    const a = requestArgs(request);
    return readOutcome(native.gateDecide(this.#t, ...a));
  }

  /** `decide` on libuv's pool: a Promise of the Outcome. */
  decideAsync(request) {
    try {
      const a = requestArgs(request);
      return native.gateDecideAsync(this.#t, ...a);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** @internal decide from arguments already checked (the middlewares). */
  _decide(method, path, origin, requestMethod, requestHeaders, ip, principal, tier, forwardedFor, forwarded, privateNetwork) {
    if (this.#mayBlock) throw new WouldBlockError('Gate#decide', 'decideAsync');
    return readOutcome(
      native.gateDecide(this.#t, method, path, origin, requestMethod, requestHeaders, ip, principal, tier, forwardedFor, forwarded, privateNetwork),
    );
  }

  /** @internal decideAsync from arguments already checked (the middlewares). */
  _decideAsync(method, path, origin, requestMethod, requestHeaders, ip, principal, tier, forwardedFor, forwarded, privateNetwork) {
    return native.gateDecideAsync(this.#t, method, path, origin, requestMethod, requestHeaders, ip, principal, tier, forwardedFor, forwarded, privateNetwork);
  }

  /**
   * Applies a new config text, keeping the counters of unchanged policies. Without an argument,
   * reads again the file the gate was opened from. An invalid config throws ConfigError and
   * the old one keeps running; a change of `[store]` throws ConfigError
   * (PORTCULLIS_RESULT_RELOAD_REFUSED).
   */
  reload(config) {
    if (config === undefined) {
      if (this.#file === undefined) {
        throw typeError('config', 'a config text (this gate was not opened from a file)', config);
      }
      config = fs.readFileSync(this.#file);
    }
    checkText(config, 'config');
    native.gateReload(this.#t, config);
  }

  /**
   * Forgets a key's state under a policy (unblocks a user); true if it had state. `kind`:
   * 'ip' (key: an address), 'principal', 'route' (the route's `match`) or 'global'.
   */
  reset(policy, kind, key) {
    if (this.#mayBlock) throw new WouldBlockError('Gate#reset', 'resetAsync');
    return native.gateReset(this.#t, ...resetArgs(policy, kind, key));
  }

  /** `reset` on libuv's pool: a Promise of whether the key had state. */
  resetAsync(policy, kind, key) {
    try {
      return native.gateResetAsync(this.#t, ...resetArgs(policy, kind, key));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The gate's counters (per route and limit, per policy, top limited keys, recent denials). */
  stats() {
    return JSON.parse(native.gateStats(this.#t));
  }

  /**
   * The gate's metrics for a `/metrics` endpoint: the Prometheus text format 0.0.4, or
   * OpenMetrics 1.0 with `{ openmetrics: true }`; serve it with `Gate.metricsContentType()`.
   * With a shared store the counters are every process's (docs/MONITORING.md).
   */
  metrics(options = {}) {
    return native.gateMetrics(this.#t, Boolean(options && options.openmetrics));
  }

  /** The `Content-Type` to serve `metrics()` with. */
  static metricsContentType(options = {}) {
    return options && options.openmetrics
      ? 'application/openmetrics-text; version=1.0.0; charset=utf-8'
      : 'text/plain; version=0.0.4; charset=utf-8';
  }

  /**
   * Copies this process's counters to the shared store's board now, so that a scrape served
   * by another cluster worker counts them (decisions do it at most once a second; call it
   * from an unref'd timer if workers may sit idle). Nothing to do without a shared store.
   */
  publishMetrics() {
    native.gatePublishMetrics(this.#t);
  }

  /**
   * Writes every counter to the store (if any) and frees the gate; later calls throw
   * ClosedError. Idempotent. Outcomes and leases already returned stay valid. Async calls in
   * flight finish first. Throws a StoreError when the final write failed (freed all the same).
   */
  close() {
    native.gateClose(this.#t);
  }

  /** Whether `close` was called. */
  get closed() {
    return native.gateClosed(this.#t);
  }

  [kDispose]() {
    this.close();
  }
}

/**
 * The strict CORS engine alone, from the `[cors]` table of a config. Header names it renders
 * are in lower case.
 */
class Cors {
  #h;
  #t;

  /** @param {string | Uint8Array} config a config text with a `[cors]` table. */
  constructor(config) {
    if (config instanceof Opened) {
      this.#h = config.h;
    } else {
      checkText(config, 'config');
      this.#h = native.corsOpen(config);
    }
    this.#t = native.corsToken(this.#h);
  }

  /** Builds the policy of a config text's `[cors]` table (none: ConfigError INVALID_CORS_POLICY). */
  static fromConfig(text) {
    return new Cors(text);
  }

  /** As `fromConfig`, reading the file; errors are prefixed with its path. */
  static fromFile(path) {
    const file = filePath(path);
    const text = fs.readFileSync(file);
    try {
      return new Cors(new Opened(native.corsOpen(text)));
    } catch (err) {
      if (err && typeof err.message === 'string' && typeof err.code === 'string') {
        err.message = `${String(file)}: ${err.message}`;
      }
      throw err;
    }
  }

  /**
   * Decides one request from its method and CORS headers: `{method, headers}` or
   * `{method, origin, requestMethod, requestHeaders, privateNetwork}`. A refusal is a decision
   * with `allowed` false (status 403 for a preflight), with a `reason`.
   */
  decide(request) {
    const a = requestArgs({ path: '/', ...request });
    return readCorsDecision(native.corsDecide(this.#t, a[0], a[2], a[3], a[4], a[10]));
  }

  /** Frees the policy; later calls throw ClosedError. Idempotent. */
  close() {
    native.corsClose(this.#t);
  }

  /** Whether `close` was called. */
  get closed() {
    return native.corsClosed(this.#t);
  }

  [kDispose]() {
    this.close();
  }
}

module.exports = { Gate, GateLease, Cors, requestArgs };
