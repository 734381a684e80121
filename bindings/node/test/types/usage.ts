// Compiled by `tsc --noEmit` (test/types.test.js): the declarations describe the API as the
// tests use it. Never run.
import * as portcullis from '../..';
import {
  Gate,
  Limiter,
  Cors,
  PortcullisError,
  ClosedError,
  RateLimitedError,
  WouldBlockError,
  type Decision,
  type Outcome,
  type ErrorCode,
} from '../..';
import Fastify from 'fastify';
import { createServer } from 'node:http';

const config = '[[policy]]\nname = "api"\nlimit = "10/s"\n';

const limiter: Limiter = Limiter.fromConfig(config);
const d: Decision = limiter.check('api', 'alice');
const allowed: boolean = d.allowed;
const retry: number = d.retryAfterMs + d.resetAfterMs + d.delayMs + d.at;
const d2: Promise<Decision> = limiter.checkAsync(0, Buffer.from('bob'), 2);
limiter.peek('api', new Uint8Array([1, 2]));
limiter.penalize('api', 'k');
limiter.refund('api', 'k', 1);
const had: boolean = limiter.reset('api', 'k');
const pairs: Array<[string, string]> = limiter.headers([d], 'both');
{
  using lease = limiter.acquire('c', 'k');
  const held: boolean = lease.held;
  void held;
}
const maybe = limiter.tryAcquire('c', 'k');
if (maybe.acquired) maybe.release();
limiter.close();

const gate = new Gate({ file: new URL('file:///etc/portcullis.toml') });
const gate2 = Gate.fromConfig(Buffer.from(config));
const outcome: Outcome = gate.decide({
  method: 'GET',
  path: '/api/x',
  ip: '203.0.113.9',
  principal: 'k1',
  tier: null,
  headers: { origin: 'https://app.example.com' },
});
const status: number = outcome.status;
const action: 'pass' | 'preflight' | 'forbidden' | 'limited' = outcome.action;
for (const [name, value] of outcome.headers) void `${name}: ${value}`;
outcome.lease?.release();
const later: Promise<Outcome> = gate2.decideAsync({ method: 'GET', path: '/', headers: new Headers() });
gate.reload();
gate.reset('api', 'principal', 'k1');
gate.reset('g', 'global');
const onRedis: boolean = gate.mayBlock && limiter.mayBlock;
void onRedis;
const hadState: Promise<boolean> = gate.resetAsync('api', 'principal', 'k1');
const hadKey: Promise<boolean> = limiter.resetAsync('api', 'k1');
void hadState, hadKey;
later.then((o) => o.lease?.releaseAsync());
void gate.stats().limits.length;
const text: string = gate.metrics({ openmetrics: true }) + Gate.metricsContentType();
void text;
gate.publishMetrics();

const cors = new Cors(config);
const cd = cors.decide({ method: 'OPTIONS', origin: 'https://a.example', requestMethod: 'PUT' });
const kind: 'not-cors' | 'preflight' | 'actual' = cd.kind;

try {
  gate.decide({ method: 'GET', path: '/' });
} catch (err) {
  if (err instanceof ClosedError) {
    const code: 'PORTCULLIS_RESULT_CLOSED' = err.code;
    void code;
  } else if (err instanceof RateLimitedError) {
    void err.retryAfterMs;
  } else if (err instanceof WouldBlockError) {
    const code: 'PORTCULLIS_WOULD_BLOCK' = err.code;
    const method: string = err.method;
    void code, method;
  } else if (err instanceof PortcullisError) {
    const code: ErrorCode = err.code;
    const n: number = err.result;
    void code, n;
  }
}

// Express-style and node:http.
const mw = portcullis.express(gate, {
  principal: (req) => req.headers.authorization?.slice(7),
  tier: async (req) => (req.headers['x-tier'] as string | undefined) ?? null,
  onError: (err, _req, res) => {
    res.statusCode = 500;
    res.end(String(err));
  },
});
createServer((req, res) => mw(req, res, () => res.end('ok')));

// Fastify.
const app = Fastify();
app.register(portcullis.fastify, { gate, principal: (req) => req.headers['x-api-key'] });

const v: string = portcullis.version;
const name: string = portcullis.resultName(200);
void allowed, retry, d2, had, pairs, status, action, later, kind, v, name;

// What the declarations refuse.
// @ts-expect-error a key is text
limiter.check('api', 5);
// @ts-expect-error a request needs a path
gate.decide({ method: 'GET' });
// @ts-expect-error no such key kind
gate.reset('api', 'user', 'k');
// @ts-expect-error outcomes are read-only data, not promises
void outcome.then;
const limiterStats = Limiter.fromConfig(config).stats();
void limiterStats[0]?.live_keys;
void new Gate(config).stats().policies[0]?.capacity;
