'use strict';
/**
 * The errors of portcullis. Every failed call of the library throws a `PortcullisError`
 * subclass whose `code` is the name of the C result (`PORTCULLIS_RESULT_INVALID_CONFIG`, ...),
 * stable across versions, whose `result` is its number, and whose message is the library's
 * (for a config: every problem, each with its line and column).
 *
 * | class                 | codes                                                        |
 * | --------------------- | ------------------------------------------------------------ |
 * | InvalidArgumentError  | NULL_PARAMETER, INVALID_PARAMETER, INVALID_UTF8, OUT_OF_RANGE |
 * | InternalError         | INSUFFICIENT_SIZE, PANIC                                     |
 * | ClosedError           | CLOSED                                                       |
 * | ConfigError           | INVALID_CONFIG, RELOAD_REFUSED, INVALID_CORS_POLICY          |
 * | PolicyError           | UNKNOWN_POLICY, COST_TOO_HIGH, NEEDS_LEASE, NOT_CONCURRENCY  |
 * | StoreError            | STORE_LOCKED, STORE_CORRUPT, STORE_FOREIGN, STORE_VERSION,   |
 * |                       | STORE_IO, STORE_FORKED                                       |
 *
 * `WouldBlockError` (code `PORTCULLIS_WOULD_BLOCK`): a synchronous call on a gate or limiter
 * whose store is Redis, which would wait on the network on the event loop; use the `*Async`
 * call it names.
 *
 * `RateLimitedError` (code `PORTCULLIS_RATE_LIMITED`) is not a failure of the library but a
 * verdict: `Limiter#acquire` throws it when no lease is available, with the decision.
 *
 * Wrong argument types are a plain `TypeError` (code `ERR_INVALID_ARG_TYPE`) and numbers out
 * of range a `RangeError` (code `ERR_OUT_OF_RANGE`), thrown before the library is called.
 */

class PortcullisError extends Error {
  /**
   * @param {string} message
   * @param {string} code the result's name, e.g. PORTCULLIS_RESULT_STORE_LOCKED
   * @param {number} result the result's number, e.g. 300
   */
  constructor(message, code, result) {
    super(message);
    this.code = code;
    this.result = result;
  }
}

class InvalidArgumentError extends PortcullisError {}
class InternalError extends PortcullisError {}
class ClosedError extends PortcullisError {}
class ConfigError extends PortcullisError {}
class PolicyError extends PortcullisError {}
class StoreError extends PortcullisError {}

/**
 * A synchronous call on a gate or limiter whose store waits on the network (Redis): it would
 * stall the event loop, so it is refused; `method` is the asynchronous call to use instead.
 */
class WouldBlockError extends PortcullisError {
  constructor(call, method) {
    super(
      `${call} would wait on the network (the Redis store) on the event loop: use ${method}, which runs on libuv's pool (the middlewares do so by themselves)`,
      'PORTCULLIS_WOULD_BLOCK',
      -1,
    );
    this.method = method;
  }
}

class RateLimitedError extends PortcullisError {
  /**
   * @param {object} decision the Decision of the refused acquisition
   * @param {string|number} policy
   */
  constructor(decision, policy) {
    super(
      `rate limited by policy ${JSON.stringify(policy)}: retry after ${decision.retryAfterMs.toFixed(3)} ms`,
      'PORTCULLIS_RATE_LIMITED',
      -1,
    );
    this.decision = decision;
    this.policy = policy;
  }

  /** Milliseconds until the request would be allowed. */
  get retryAfterMs() {
    return this.decision.retryAfterMs;
  }
}

for (const cls of [
  PortcullisError,
  InvalidArgumentError,
  InternalError,
  ClosedError,
  ConfigError,
  PolicyError,
  StoreError,
  WouldBlockError,
  RateLimitedError,
]) {
  Object.defineProperty(cls.prototype, 'name', {
    value: cls.name,
    writable: true,
    configurable: true,
    enumerable: false,
  });
}

function errorClass(result) {
  switch (result) {
    case 100:
    case 101:
    case 102:
    case 106:
      return InvalidArgumentError;
    case 103:
    case 104:
      return InternalError;
    case 105:
      return ClosedError;
    case 200:
    case 205:
    case 206:
      return ConfigError;
    case 201:
    case 202:
    case 203:
    case 204:
      return PolicyError;
    default:
      if (result >= 100 && result < 200) return InvalidArgumentError;
      if (result >= 200 && result < 300) return ConfigError;
      if (result >= 300 && result < 400) return StoreError;
      return PortcullisError;
  }
}

/** The error of a failed call (the addon calls it). */
function makeError(result, code, message) {
  const Cls = errorClass(result);
  return new Cls(message || code, code, result);
}

/** A TypeError as Node's own argument checks throw them. */
function typeError(what, expected, value) {
  let got;
  if (value === null) got = 'null';
  else if (typeof value === 'object') got = `an instance of ${value.constructor?.name ?? 'Object'}`;
  else if (typeof value === 'function') got = 'a function';
  else got = `type ${typeof value} (${String(value).slice(0, 32)})`;
  const err = new TypeError(`The "${what}" argument must be ${expected}. Received ${got}`);
  err.code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

function rangeError(what, expected, value) {
  const err = new RangeError(`The value of "${what}" is out of range. It must be ${expected}. Received ${String(value)}`);
  err.code = 'ERR_OUT_OF_RANGE';
  return err;
}

module.exports = {
  PortcullisError,
  InvalidArgumentError,
  InternalError,
  ClosedError,
  ConfigError,
  PolicyError,
  StoreError,
  WouldBlockError,
  RateLimitedError,
  makeError,
  errorClass,
  typeError,
  rangeError,
};
