'use strict';
const { native, readDecision, readHeaders } = require('./native');
const { RateLimitedError, WouldBlockError, typeError, rangeError } = require('./errors');
const { kDispose, isText, checkText, checkU32, filePath } = require('./util');

/** A handle the static openers made, for the constructor. */
class Opened {
  constructor(h) {
    this.h = h;
  }
}
const STYLES = { legacy: 0, ietf: 1, both: 2, retry_after_only: 3 };

// The hot calls as constants: a call through `native.x` is a property load on an object of
// some forty properties first.
const { limiterCheck, limiterPeek, limiterPenalize, limiterRefund } = native;

/** What #lastName holds before any lookup: equal to nothing a caller can pass. */
const NO_NAME = Symbol('no policy looked up yet');

function checkKey(key) {
  if (!isText(key)) throw typeError('key', 'of type string or an instance of Uint8Array', key);
}

function checkCost(cost) {
  if (cost !== 1) checkU32(cost, 'cost');
}

/**
 * A keyed rate limiter over the `[[policy]]` tables of a config (and its `[store]`).
 *
 * Every method is synchronous except the `*Async` ones, which run on libuv's pool and resolve
 * a Promise: use them for policies with `durability = "immediate"` (a decision then waits for
 * the disk). A denial is a Decision with `allowed` false, not an exception.
 *
 * On a limiter whose store is Redis (`mayBlock`) every decision waits on the network: the
 * synchronous calls that would reach Redis throw WouldBlockError, naming the `*Async` call to
 * make instead (`acquire` has none there: take concurrency leases through a gate's
 * `decideAsync`).
 */
class Limiter {
  // The native handle (its collection frees the limiter) and the token the calls take.
  #h;
  #t;
  #ids = new Map();
  #names = new Map();
  // The policy of the last call by name, and its id: most callers use one or two policies, and
  // comparing a string with itself costs less than a Map lookup.
  #lastName = NO_NAME;
  #lastId = 0;
  #mayBlock;

  /**
   * @param {string | Uint8Array | {file: string | Buffer | URL} | {config: string | Uint8Array}} config
   *   a config text (TOML), or `{file}` to read one from a file.
   */
  constructor(config) {
    if (config instanceof Opened) {
      this.#h = config.h;
    } else if (isText(config)) {
      this.#h = native.limiterOpen(config);
    } else if (config !== null && typeof config === 'object' && !(config instanceof Uint8Array) && 'file' in config) {
      this.#h = native.limiterOpenFile(filePath(config.file, 'config.file'));
    } else if (config !== null && typeof config === 'object' && 'config' in config) {
      checkText(config.config, 'config.config');
      this.#h = native.limiterOpen(config.config);
    } else {
      throw typeError('config', 'a string, a Uint8Array or an object with a file or config property', config);
    }
    this.#t = native.limiterToken(this.#h);
    this.#mayBlock = native.limiterMayBlock(this.#t);
  }

  /** Opens a limiter from a config text (TOML: `[store]` and `[[policy]]`). */
  static fromConfig(text) {
    checkText(text, 'text');
    return new Limiter(new Opened(native.limiterOpen(text)));
  }

  /** Opens a limiter from a config file; errors name the file, line and column. */
  static fromFile(path) {
    return new Limiter(new Opened(native.limiterOpenFile(filePath(path))));
  }

  /** The id of a policy by name (cached). Throws PolicyError (UNKNOWN_POLICY) if there is none. */
  policy(name) {
    let id = this.#ids.get(name);
    if (id === undefined) {
      checkText(name, 'policy');
      id = native.limiterPolicy(this.#t, name);
      if (typeof name === 'string') {
        this.#ids.set(name, id);
        this.#names.set(id, name);
      }
    }
    return id;
  }

  /** The name of a policy id already looked up, or undefined. */
  policyName(id) {
    return this.#names.get(id);
  }

  #id(policy) {
    if (policy === this.#lastName) return this.#lastId;
    if (typeof policy === 'number') {
      checkU32(policy, 'policy');
      return policy;
    }
    let id = this.#ids.get(policy);
    if (id === undefined) id = this.policy(policy);
    if (typeof policy === 'string') {
      this.#lastName = policy;
      this.#lastId = id;
    }
    return id;
  }

  /**
   * Decides a request of `cost` for `key` under `policy` (a name or an id), now, consuming
   * quota when allowed.
   */
  check(policy, key, cost = 1) {
    if (this.#mayBlock) throw new WouldBlockError('Limiter#check', 'checkAsync');
    const id = this.#id(policy);
    checkKey(key);
    if (cost === 1) {
      limiterCheck(this.#t, id, key);
    } else {
      checkU32(cost, 'cost');
      limiterCheck(this.#t, id, key, cost);
    }
    return readDecision();
  }

  /** What `check` would answer, consuming nothing. */
  peek(policy, key, cost = 1) {
    if (this.#mayBlock) throw new WouldBlockError('Limiter#peek', 'peekAsync');
    const id = this.#id(policy);
    checkKey(key);
    if (cost === 1) {
      limiterPeek(this.#t, id, key);
    } else {
      checkU32(cost, 'cost');
      limiterPeek(this.#t, id, key, cost);
    }
    return readDecision();
  }

  /** Consumes `cost` whatever the verdict (count failed logins only). */
  penalize(policy, key, cost = 1) {
    if (this.#mayBlock) throw new WouldBlockError('Limiter#penalize', 'penalizeAsync');
    const id = this.#id(policy);
    checkKey(key);
    if (cost === 1) {
      limiterPenalize(this.#t, id, key);
    } else {
      checkU32(cost, 'cost');
      limiterPenalize(this.#t, id, key, cost);
    }
    return readDecision();
  }

  /** Gives back `cost` (the backend failed). Never lifts a block. */
  refund(policy, key, cost = 1) {
    if (this.#mayBlock) throw new WouldBlockError('Limiter#refund', 'refundAsync');
    const id = this.#id(policy);
    checkKey(key);
    if (cost === 1) {
      limiterRefund(this.#t, id, key);
    } else {
      checkU32(cost, 'cost');
      limiterRefund(this.#t, id, key, cost);
    }
    return readDecision();
  }

  /** `check` on libuv's pool: a Promise of the Decision. */
  checkAsync(policy, key, cost = 1) {
    return this.#async(native.limiterCheckAsync, policy, key, cost);
  }

  /** `peek` on libuv's pool. */
  peekAsync(policy, key, cost = 1) {
    return this.#async(native.limiterPeekAsync, policy, key, cost);
  }

  /** `penalize` on libuv's pool. */
  penalizeAsync(policy, key, cost = 1) {
    return this.#async(native.limiterPenalizeAsync, policy, key, cost);
  }

  /** `refund` on libuv's pool. */
  refundAsync(policy, key, cost = 1) {
    return this.#async(native.limiterRefundAsync, policy, key, cost);
  }

  #async(fn, policy, key, cost) {
    try {
      const id = this.#id(policy);
      checkKey(key);
      checkCost(cost);
      return cost === 1 ? fn(this.#t, id, key) : fn(this.#t, id, key, cost);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Forgets a key (unblocks a user); true if it had state. */
  reset(policy, key) {
    if (this.#mayBlock) throw new WouldBlockError('Limiter#reset', 'resetAsync');
    const id = this.#id(policy);
    checkKey(key);
    return native.limiterReset(this.#t, id, key);
  }

  /** `reset` on libuv's pool: a Promise of whether the key had state. */
  resetAsync(policy, key) {
    try {
      const id = this.#id(policy);
      checkKey(key);
      return native.limiterResetAsync(this.#t, id, key);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Whether a decision may wait on the network (the store is Redis): then only the `*Async`
   * calls decide, off the event loop.
   */
  get mayBlock() {
    return this.#mayBlock;
  }

  /**
   * Takes `cost` leases of a concurrency policy, or none: always a Lease, whose `acquired`
   * says whether it was granted (a denied one is inert).
   */
  tryAcquire(policy, key, cost = 1) {
    if (this.#mayBlock) throw new WouldBlockError('Limiter#acquire', "a gate's decideAsync");
    const id = this.#id(policy);
    checkKey(key);
    checkCost(cost);
    const lease = native.limiterAcquire(this.#t, id, key, cost);
    return new Lease(this, lease ?? null, readDecision(), id);
  }

  /**
   * Takes `cost` leases of a concurrency policy; throws RateLimitedError (with the decision)
   * when denied. Give them back with `release()`, or `using lease = limiter.acquire(...)`.
   */
  acquire(policy, key, cost = 1) {
    const lease = this.tryAcquire(policy, key, cost);
    if (!lease.acquired) throw new RateLimitedError(lease.decision, policy);
    return lease;
  }

  /**
   * The response headers for the decisions that applied to one request, as [name, value]
   * pairs. `style`: 'legacy' (X-RateLimit-*), 'ietf', 'both' or 'retry_after_only'.
   */
  headers(decisions, style = 'legacy') {
    const list = Array.isArray(decisions) ? decisions : [decisions];
    const st = STYLES[style];
    if (st === undefined) {
      if (typeof style !== 'string') throw typeError('style', 'of type string', style);
      throw rangeError('style', `one of ${Object.keys(STYLES).join(', ')}`, style);
    }
    if (list.length === 0) throw rangeError('decisions', 'at least one decision', 0);
    const packed = new Float64Array(list.length * 9);
    list.forEach((d, i) => {
      if (d === null || typeof d !== 'object') throw typeError('decisions', 'Decision objects', d);
      const fields = [
        d.allowed ? 1 : 0,
        d.limit,
        d.remaining,
        d.policy,
        Math.round(d.resetAfterMs * 1e6),
        Math.round(d.retryAfterMs * 1e6),
        d.retryAfterSecs,
        Math.round(d.delayMs * 1e6),
        Math.round(d.at * 1e6),
      ];
      for (let j = 0; j < 9; j++) {
        if (typeof fields[j] !== 'number' || !Number.isFinite(fields[j])) {
          throw typeError('decisions', 'Decision objects (as check returns them)', d);
        }
        packed[i * 9 + j] = fields[j];
      }
    });
    return readHeaders(native.limiterHeaders(this.#t, st, packed, list.length));
  }

  /** The limiter's counters per policy (the parsed JSON). */
  stats() {
    return JSON.parse(native.limiterStats(this.#t));
  }

  /**
   * Writes every counter to the store (if any) and frees the limiter; later calls throw
   * ClosedError. Idempotent. Async calls in flight finish first (the limiter is freed after
   * the last of them). Throws a StoreError when the final write failed (freed all the same).
   */
  close() {
    native.limiterClose(this.#t);
  }

  /** Whether `close` was called. */
  get closed() {
    return native.limiterClosed(this.#t);
  }

  [kDispose]() {
    this.close();
  }
}

/**
 * Concurrency leases taken by `Limiter#acquire` / `tryAcquire`. Give them back with
 * `release()` (or a `using` declaration); `abandon()` frees one without giving it back (its
 * slot frees itself after the policy's `lease_timeout`), as does garbage collection of a lease
 * never released. Releasing twice is harmless. A lease outliving its limiter's `close()` is
 * abandoned when released.
 */
class Lease {
  #native;
  #limiter;

  constructor(limiter, nativeLease, decision, policy) {
    this.#limiter = limiter;
    this.#native = nativeLease;
    /** The decision of the acquisition. */
    this.decision = decision;
    /** The policy id. */
    this.policy = policy;
  }

  /** Whether the leases were granted. */
  get acquired() {
    return this.decision.allowed;
  }

  /** Whether the leases are held (granted and not yet given back). */
  get held() {
    return this.#native !== null;
  }

  /** Gives the leases back; true if they were held. */
  release() {
    const n = this.#native;
    if (n === null) return false;
    this.#native = null;
    this.#limiter = null;
    return native.leaseRelease(n);
  }

  /** Frees the lease without giving it back; true if it was held. */
  abandon() {
    const n = this.#native;
    if (n === null) return false;
    this.#native = null;
    this.#limiter = null;
    return native.leaseAbandon(n);
  }

  [kDispose]() {
    this.release();
  }
}

module.exports = { Limiter, Lease };
