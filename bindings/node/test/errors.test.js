'use strict';
// Bad input of every kind gives a thrown error with a code, never a crash.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const portcullis = require('..');
const { native } = require('../lib/native');
const { Gate, Limiter, Cors, PortcullisError, ConfigError, InvalidArgumentError } = portcullis;
const { GATE_CONFIG, LIMITER_CONFIG, tempDir } = require('./helpers');

test('a bad TOML config: ConfigError with the line and column', () => {
  const bad = 'header_style = "legacy"\n\n[[policy]]\nname = "api"\nlimit = 10/s\n';
  for (const open of [(t) => Gate.fromConfig(t), (t) => new Limiter(t), (t) => new Cors(t)]) {
    assert.throws(
      () => open(bad),
      (err) =>
        err instanceof ConfigError &&
        err instanceof PortcullisError &&
        err instanceof Error &&
        err.code === 'PORTCULLIS_RESULT_INVALID_CONFIG' &&
        err.result === 200 &&
        /^5:\d+: /.test(err.message),
    );
  }
  const semantic = '[[policy]]\nname = "api"\nlimit = "10/s"\nalgorithm = "bogus"\n';
  assert.throws(() => Gate.fromConfig(semantic), (err) => err.code === 'PORTCULLIS_RESULT_INVALID_CONFIG' && /^4:\d+: unknown algorithm/.test(err.message));
  const dir = tempDir();
  const file = path.join(dir, 'bad.toml');
  fs.writeFileSync(file, bad);
  assert.throws(() => Gate.fromFile(file), (err) => err.code === 'PORTCULLIS_RESULT_INVALID_CONFIG' && err.message.startsWith(`${file}:5:`));
  assert.throws(() => Limiter.fromFile(path.join(dir, 'missing.toml')), { code: 'PORTCULLIS_RESULT_INVALID_CONFIG' });
  assert.throws(() => Gate.fromConfig('[cors]\nallowed_origins = ["*"]\nallow_credentials = true\n'), ConfigError);
});

test('wrong argument types throw TypeError (or RangeError) before the library is called', () => {
  const gate = Gate.fromConfig(GATE_CONFIG);
  const limiter = Limiter.fromConfig(LIMITER_CONFIG);
  const typeErrors = [
    () => new Gate(42),
    () => new Gate(null),
    () => Gate.fromConfig({}),
    () => Gate.fromFile(7),
    () => new Limiter(undefined),
    () => new Cors([]),
    () => gate.decide(),
    () => gate.decide('GET /'),
    () => gate.decide({ method: 'GET' }),
    () => gate.decide({ method: 1, path: '/' }),
    () => gate.decide({ method: 'GET', path: '/', ip: 17 }),
    () => gate.decide({ method: 'GET', path: '/', principal: {} }),
    () => gate.decide({ method: 'GET', path: '/', tier: 1 }),
    () => gate.decide({ method: 'GET', path: '/', headers: 'origin: x' }),
    () => gate.decide({ method: 'GET', path: '/', origin: 5 }),
    () => gate.decide({ method: 'GET', path: '/', privateNetwork: 1 }),
    () => gate.decide({ method: 'GET', path: new Uint16Array(2) }),
    () => gate.reload(5),
    () => gate.reload(),
    () => gate.reset(1, 'ip', 'k'),
    () => gate.reset('api', 3, 'k'),
    () => gate.reset('api', 'ip', null),
    () => limiter.check(undefined, 'k'),
    () => limiter.check(null, 'k'),
    () => limiter.check({}, 'k'),
    () => limiter.check('api', 5),
    () => (limiter.check('api', 'warm'), limiter.check(undefined, 'k')),
    () => limiter.check('api', null),
    () => limiter.check('api', 'k', '2'),
    () => limiter.check('api', 'k', 2n),
    () => limiter.acquire('export', ['k']),
    () => limiter.reset('api', undefined),
    () => limiter.headers([{}]),
    () => limiter.headers(null),
    () => limiter.headers([limiter.check('api', 'z')], 5),
    () => portcullis.express(null),
    () => portcullis.express(gate, { principal: 'x' }),
  ];
  for (const call of typeErrors) {
    assert.throws(call, (err) => err instanceof TypeError && err.code === 'ERR_INVALID_ARG_TYPE', String(call));
  }
  const rangeErrors = [
    () => limiter.check('api', 'k', -1),
    () => limiter.check('api', 'k', 1.5),
    () => limiter.check('api', 'k', 2 ** 32),
    () => limiter.check(-1, 'k'),
    () => limiter.check(NaN, 'k'),
    () => gate.reset('api', 'nope', 'k'),
    () => limiter.headers([limiter.check('api', 'z')], 'nope'),
  ];
  for (const call of rangeErrors) {
    assert.throws(call, (err) => err instanceof RangeError && err.code === 'ERR_OUT_OF_RANGE', String(call));
  }
  gate.close();
  limiter.close();
});

test('invalid UTF-8 in buffers: InvalidArgumentError, never a crash', () => {
  const gate = Gate.fromConfig(GATE_CONFIG);
  const bad = Buffer.from([0x2f, 0xc3, 0x28, 0xff]);
  for (const field of ['method', 'path', 'ip', 'principal', 'tier', 'origin', 'requestMethod', 'requestHeaders']) {
    const req = { method: 'GET', path: '/api/x', [field]: bad };
    assert.throws(
      () => gate.decide(req),
      (err) => err instanceof InvalidArgumentError && err.code === 'PORTCULLIS_RESULT_INVALID_UTF8' && err.message.length > 0,
      field,
    );
  }
  assert.throws(() => Gate.fromConfig(Buffer.from([0x5b, 0xff, 0x5d])), { code: 'PORTCULLIS_RESULT_INVALID_UTF8' });
  assert.throws(() => new Cors(Buffer.from([0xfe])), { code: 'PORTCULLIS_RESULT_INVALID_UTF8' });
  assert.throws(() => gate.reload(Buffer.from([0xc0, 0x80])), { code: 'PORTCULLIS_RESULT_INVALID_UTF8' });
  assert.throws(() => gate.reset(Buffer.from([0xff]), 'principal', 'k'), { code: 'PORTCULLIS_RESULT_INVALID_UTF8' });
  // A string with a lone surrogate is encoded with U+FFFD: it never reaches the library invalid.
  assert.equal(gate.decide({ method: 'GET', path: '/api/\ud800', ip: '192.0.2.1' }).allowed, true);
  // Limiter keys are bytes: any bytes are a key.
  const limiter = Limiter.fromConfig(LIMITER_CONFIG);
  assert.equal(limiter.check('api', bad).allowed, true);
  assert.equal(limiter.check('api', new Uint8Array(0)).allowed, true);
  assert.throws(() => limiter.policy(Buffer.from([0xff])), { code: 'PORTCULLIS_RESULT_INVALID_UTF8' });
  // Bad addresses are the library's InvalidArgumentError.
  assert.throws(() => gate.decide({ method: 'GET', path: '/', ip: '999.1.1.1' }), { code: 'PORTCULLIS_RESULT_INVALID_PARAMETER' });
  gate.close();
  limiter.close();
});

test('long arguments and many of them', () => {
  const gate = Gate.fromConfig(GATE_CONFIG);
  const long = '/api/' + 'é'.repeat(50_000);
  assert.equal(gate.decide({ method: 'GET', path: long, principal: 'p'.repeat(100_000), ip: '192.0.2.1' }).allowed, true);
  const limiter = Limiter.fromConfig(LIMITER_CONFIG);
  // Keys of every length around the buffers (128 UTF-16 units, 512 bytes), with a character
  // of two units and four bytes at their edge.
  const lengths = [0, 1, 2, 3];
  for (let n = 120; n < 132; n++) lengths.push(n);
  for (let n = 480; n < 530; n++) lengths.push(n);
  for (const n of lengths) {
    const key = 'k'.repeat(n) + '😀';
    assert.equal(limiter.check('api', key).remaining, 2, `length ${n}`);
    assert.equal(limiter.peek('api', Buffer.from(key)).remaining, 1, `bytes of length ${n}`);
  }
  // A lone surrogate at the end, or at the edge of the buffer, is U+FFFD as V8 encodes it.
  for (const n of [0, 126, 127, 128, 600]) {
    const key = 'a'.repeat(n) + '\ud83d';
    assert.equal(limiter.check('api', key).remaining, 2);
    assert.equal(limiter.check('api', Buffer.from(key, 'utf8')).remaining, 1, `lone surrogate after ${n}`);
  }
  gate.close();
  limiter.close();
});

test('closed handles throw ClosedError with code PORTCULLIS_RESULT_CLOSED', async () => {
  const gate = Gate.fromConfig(GATE_CONFIG);
  const slow = gate.decide({ method: 'GET', path: '/slow' });
  gate.close();
  assert.equal(gate.closed, true);
  for (const call of [
    () => gate.decide({ method: 'GET', path: '/' }),
    () => gate.reload(GATE_CONFIG),
    () => gate.reset('api', 'ip', '192.0.2.1'),
    () => gate.stats(),
  ]) {
    assert.throws(call, (err) => err.name === 'ClosedError' && err.code === 'PORTCULLIS_RESULT_CLOSED' && err.result === 105);
  }
  await assert.rejects(gate.decideAsync({ method: 'GET', path: '/' }), { code: 'PORTCULLIS_RESULT_CLOSED' });
  assert.equal(slow.lease.release(), true);
  gate.close();
  gate[Symbol.dispose]();
});

test('the native functions called directly with the wrong things throw, never crash', () => {
  const gateHandle = native.gateOpen(GATE_CONFIG);
  const limiterHandle = native.limiterOpen(LIMITER_CONFIG);
  const gate = native.gateToken(gateHandle);
  const limiter = native.limiterToken(limiterHandle);
  const stale = native.limiterToken(native.limiterOpen(LIMITER_CONFIG));
  const calls = [
    // Tokens of the wrong kind, made up, or not numbers; handles that are not handles.
    () => native.limiterCheck(gate, 0, 'k'),
    () => native.limiterCheck((1 << 20) - 1, 0, 'k'),
    () => native.limiterCheck(limiter + (1 << 20), 0, 'k'),
    () => native.limiterCheck(2 ** 31 - 1, 0, 'k'),
    () => native.limiterCheck({}, 0, 'k'),
    () => native.limiterCheck(null, 0, 'k'),
    () => native.limiterCheck(undefined, 0, 'k'),
    () => native.limiterCheck(limiterHandle, 0, 'k'),
    () => native.limiterToken(gateHandle),
    () => native.limiterToken({}),
    () => native.limiterToken(null),
    () => native.gateToken(42),
    // Missing or mistyped arguments.
    () => native.limiterCheck(limiter),
    () => native.limiterCheck(limiter, 'x', 'k'),
    () => native.limiterCheck(limiter, 0, Symbol('k')),
    () => native.limiterCheck(limiter, 0, {}),
    () => native.limiterCheck(limiter, 0, 'k', 'one'),
    () => native.limiterCheck(limiter, 0, 'k', 2 ** 32 - 1),
    () => native.limiterCheck(limiter, 2 ** 32 - 1, 'k'),
    () => native.gateDecide(limiter, 'GET', '/', null, null, null, null, null, null, null, null, false),
    () => native.gateDecide(gate, 'GET', '/', null, null, null, null, null, null, null, null, 'yes'),
    () => native.gateDecide(gate, 'GET'),
    () => native.gateDecide(gate, 'GET', 5, null, null, null, null, null, null, null, null, false),
    () => native.gateClose(limiter),
    () => native.leaseRelease(gateHandle),
    () => native.leaseRelease({}),
    () => native.leaseRelease(limiter),
    () => native.outcomeRelease(limiterHandle),
    () => native.limiterHeaders(limiter, 0, new Float64Array(9), 2),
    () => native.limiterHeaders(limiter, 0, new Float32Array(9), 1),
    () => native.limiterHeaders(limiter, 0, new Float64Array(9).fill(-1), 1),
    () => native.limiterHeaders(limiter, 0, null, 1),
    () => native.init(1, 2, 3),
    () => native.gateOpen(),
    () => native.resultName('x'),
  ];
  for (const call of calls) {
    assert.throws(call, (err) => err instanceof Error && typeof err.code === 'string', String(call));
  }
  assert.throws(() => native.limiterHeaders(limiter, 99, new Float64Array(9), 1), { code: 'PORTCULLIS_RESULT_INVALID_PARAMETER' });
  assert.equal(native.resultName(300), 'PORTCULLIS_RESULT_STORE_LOCKED');
  assert.equal(native.resultName(12345), 'PORTCULLIS_RESULT_UNKNOWN');
  assert.equal(portcullis.resultName(105), 'PORTCULLIS_RESULT_CLOSED');
  native.gateClose(gate);
  native.limiterClose(limiter);
  native.limiterClose(stale);
  assert.throws(() => native.limiterCheck(limiter, 0, 'k'), { code: 'PORTCULLIS_RESULT_CLOSED' });
  assert.throws(() => native.limiterCheck(stale, 0, 'k'), { code: 'PORTCULLIS_RESULT_CLOSED' });
  assert.throws(() => native.gateDecide(gate, 'GET', '/', null, null, null, null, null, null, null, null, false), { code: 'PORTCULLIS_RESULT_CLOSED' });
});

test('a store folder that is a file: StoreError', () => {
  const dir = tempDir();
  const file = path.join(dir, 'file');
  fs.writeFileSync(file, 'x');
  assert.throws(
    () => Limiter.fromConfig(`[store]\nkind = "shared"\npath = ${JSON.stringify(file)}\n[[policy]]\nname = "a"\nlimit = "1/s"\n`),
    (err) => err.name === 'StoreError' && err.code.startsWith('PORTCULLIS_RESULT_STORE_'),
  );
});
