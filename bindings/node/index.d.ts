/// <reference types="node" />
/// <reference lib="esnext.disposable" />
// Type declarations of portcullis for Node.js (hand-written; checked by `tsc --noEmit` in the
// tests, test/types).

import type { IncomingMessage, ServerResponse } from 'node:http';

/** Text the library reads: a string (encoded as UTF-8) or raw bytes. */
export type Text = string | Uint8Array;

/** A config file's path. */
export type PathLike = string | Buffer | URL;

/** What a config source may be: a TOML text, or `{file}` / `{config}`. */
export type ConfigSource = Text | { file: PathLike } | { config: Text };

/** The name of a C result code, as `error.code` carries it. */
export type ResultCode =
  | 'PORTCULLIS_RESULT_NULL_PARAMETER'
  | 'PORTCULLIS_RESULT_INVALID_PARAMETER'
  | 'PORTCULLIS_RESULT_INVALID_UTF8'
  | 'PORTCULLIS_RESULT_INSUFFICIENT_SIZE'
  | 'PORTCULLIS_RESULT_PANIC'
  | 'PORTCULLIS_RESULT_CLOSED'
  | 'PORTCULLIS_RESULT_OUT_OF_RANGE'
  | 'PORTCULLIS_RESULT_INVALID_CONFIG'
  | 'PORTCULLIS_RESULT_UNKNOWN_POLICY'
  | 'PORTCULLIS_RESULT_COST_TOO_HIGH'
  | 'PORTCULLIS_RESULT_NEEDS_LEASE'
  | 'PORTCULLIS_RESULT_NOT_CONCURRENCY'
  | 'PORTCULLIS_RESULT_RELOAD_REFUSED'
  | 'PORTCULLIS_RESULT_INVALID_CORS_POLICY'
  | 'PORTCULLIS_RESULT_STORE_LOCKED'
  | 'PORTCULLIS_RESULT_STORE_CORRUPT'
  | 'PORTCULLIS_RESULT_STORE_FOREIGN'
  | 'PORTCULLIS_RESULT_STORE_VERSION'
  | 'PORTCULLIS_RESULT_STORE_IO'
  | 'PORTCULLIS_RESULT_STORE_FORKED'
  | 'PORTCULLIS_RESULT_STORE_REDIS'
  | 'PORTCULLIS_RESULT_STORE_UNAVAILABLE'
  | 'PORTCULLIS_RESULT_UNKNOWN';

/** Every `code` a PortcullisError may carry. */
export type ErrorCode = ResultCode | 'PORTCULLIS_RATE_LIMITED' | 'PORTCULLIS_WOULD_BLOCK';

/** A failed call of the library: `code` the result's name, `result` its number. */
export class PortcullisError extends Error {
  readonly code: ErrorCode;
  /** The result's number (e.g. 200), -1 for RateLimitedError. */
  readonly result: number;
}
/** NULL_PARAMETER, INVALID_PARAMETER, INVALID_UTF8, OUT_OF_RANGE. */
export class InvalidArgumentError extends PortcullisError {}
/** INSUFFICIENT_SIZE, PANIC: caught at the boundary; the handle may be used again. */
export class InternalError extends PortcullisError {}
/** CLOSED: the handle was closed. */
export class ClosedError extends PortcullisError {
  readonly code: 'PORTCULLIS_RESULT_CLOSED';
}
/** INVALID_CONFIG (each problem with its line and column), RELOAD_REFUSED, INVALID_CORS_POLICY. */
export class ConfigError extends PortcullisError {}
/** UNKNOWN_POLICY, COST_TOO_HIGH, NEEDS_LEASE, NOT_CONCURRENCY. */
export class PolicyError extends PortcullisError {}
/** STORE_LOCKED, STORE_CORRUPT, STORE_FOREIGN, STORE_VERSION, STORE_IO, STORE_FORKED. */
export class StoreError extends PortcullisError {}
/**
 * A synchronous call on a gate or limiter whose store is Redis (`mayBlock`): it would wait on
 * the network on the event loop. `method` names the asynchronous call to make instead.
 */
export class WouldBlockError extends PortcullisError {
  readonly code: 'PORTCULLIS_WOULD_BLOCK';
  readonly method: string;
}
/** `Limiter#acquire` found no lease available. */
export class RateLimitedError extends PortcullisError {
  readonly code: 'PORTCULLIS_RATE_LIMITED';
  readonly decision: Decision;
  readonly policy: string | number;
  /** Milliseconds until the request would be allowed. */
  readonly retryAfterMs: number;
}

/** One policy's verdict on one request. Durations in milliseconds (fractional). */
export interface Decision {
  /** The request may proceed (after `delayMs`). */
  allowed: boolean;
  /** The most a key can have available at once (burst, window limit or leases). */
  limit: number;
  /** Units available right after this decision. */
  remaining: number;
  /** The id of the policy that decided. */
  policy: number;
  /** Until the key has fully recovered. */
  resetAfterMs: number;
  /** Denied: until this request would be allowed. Allowed: until another of the same cost would be (0 if now). */
  retryAfterMs: number;
  /** `Retry-After` in whole seconds, rounded up. */
  retryAfterSecs: number;
  /** Shaping: how long to wait before proceeding; 0 otherwise. */
  delayMs: number;
  /** When it was decided, Unix-epoch milliseconds (as Date.now()). */
  at: number;
}

/** Response headers as [name, value] pairs, in the order the library gave them. */
export type HeaderPairs = Array<[name: string, value: string]>;

export type Action = 'pass' | 'preflight' | 'forbidden' | 'limited';

/** The gate's answer to one request. */
export interface Outcome {
  /** Whether to call the handler (`action === 'pass'`). */
  allowed: boolean;
  action: Action;
  /** The status to answer with: 204, 403 or 429; 0 when the handler answers. */
  status: number;
  /** Why, as a sentence. */
  reason: string;
  /** The policy that limited the request, or null. */
  limitedBy: string | null;
  /** Shaping: how long to wait before calling the handler. */
  delayMs: number;
  /** On a 429: `Retry-After` in whole seconds; 0 otherwise. */
  retryAfterSecs: number;
  /** The fewest units remaining among the enforced limits that applied; null when none applied. */
  remaining: number | null;
  /** The limit of that policy; null when none applied. */
  limit: number | null;
  /** The number of concurrency leases held. */
  leases: number;
  /** Headers to add to the response (a `vary` value is to be appended to the response's own). */
  headers: HeaderPairs;
  /** The request's concurrency leases, to release when the response is done; null when none. */
  lease: GateLease | null;
}

/** The description of a request for `Gate#decide`. */
export interface RequestInfo {
  /** Case-sensitive, e.g. 'GET'. */
  method: Text;
  /** The path; a query string is ignored. */
  path: Text;
  /** The client address ('203.0.113.9', '2001:db8::1'). */
  ip?: Text | null;
  /** The authenticated user id or API key; absent for anonymous traffic. */
  principal?: Text | null;
  /** The principal's tier ('free', 'premium', ...). */
  tier?: Text | null;
  /** The request's headers (Node's `req.headers`, a WHATWG Headers or a Map): Origin and the Access-Control-Request-* ones are read. */
  headers?: Record<string, string | string[] | undefined> | { get(name: string): string | null | undefined } | null;
  /** The Origin header (instead of `headers`). */
  origin?: Text | null;
  /** The Access-Control-Request-Method header. */
  requestMethod?: Text | null;
  /** The Access-Control-Request-Headers header (repeated ones joined with ','). */
  requestHeaders?: Text | string[] | null;
  /** The X-Forwarded-For header (instead of `headers`): believed only from a trusted proxy. */
  forwardedFor?: Text | string[] | null;
  /** The RFC 7239 Forwarded header (instead of `headers`): believed only from a trusted proxy. */
  forwarded?: Text | string[] | null;
  /** Whether Access-Control-Request-Private-Network: true was sent. */
  privateNetwork?: boolean | string | null;
}

/** The concurrency leases of one request, held by its outcome. */
export class GateLease implements Disposable {
  private constructor();
  /** Whether the leases are still held. */
  readonly held: boolean;
  /** Gives the leases back; true if they were held. Waits for Redis on a Redis gate. */
  release(): boolean;
  /** `release` on libuv's pool (for a gate whose store is Redis). */
  releaseAsync(): Promise<boolean>;
  [Symbol.dispose](): void;
}

export type KeyKind = 'ip' | 'principal' | 'route' | 'global';

/** CORS and rate limiting for every request, from one TOML config. */
export class Gate implements Disposable {
  constructor(config: ConfigSource);
  static fromConfig(text: Text): Gate;
  static fromFile(path: PathLike): Gate;
  /** Whether decisions wait on the network (the Redis store): then only the `*Async` calls decide. */
  readonly mayBlock: boolean;
  /** Decides one request (synchronously). Throws WouldBlockError on a Redis gate. */
  decide(request: RequestInfo): Outcome;
  /** `decide` on libuv's pool, for policies with `durability = "immediate"` and the Redis store. */
  decideAsync(request: RequestInfo): Promise<Outcome>;
  /** Applies a new config text; without one, reads the gate's file again. */
  reload(config?: Text): void;
  /** Forgets a key's state under a policy; true if it had state. */
  reset(policy: Text, kind: KeyKind, key?: Text): boolean;
  /** `reset` on libuv's pool. */
  resetAsync(policy: Text, kind: KeyKind, key?: Text): Promise<boolean>;
  /** The gate's counters (the parsed JSON). */
  stats(): GateStats;
  /** The gate's metrics: Prometheus text 0.0.4, or OpenMetrics 1.0 with `openmetrics`. */
  metrics(options?: { openmetrics?: boolean }): string;
  /** The `Content-Type` to serve `metrics()` with. */
  static metricsContentType(options?: { openmetrics?: boolean }): string;
  /** Copies this process's counters to the shared store's board now. */
  publishMetrics(): void;
  /** Writes every counter to the store and frees the gate. Idempotent. */
  close(): void;
  readonly closed: boolean;
  [Symbol.dispose](): void;
}

/** `Gate#stats()`: see docs/GATE.md (Visibility). */
export interface GateStats {
  /** Per route and limit. */
  limits: Array<{
    route: string;
    policy: string;
    key: string;
    anonymous: boolean;
    shadow: boolean;
    allowed: number;
    denied: number;
    delayed: number;
  }>;
  /** Per policy. */
  policies: Array<{
    name: string;
    algorithm: string;
    allowed: number;
    denied: number;
    delayed: number;
    live_keys: number;
    capacity: number;
    [key: string]: unknown;
  }>;
  unrouted: number;
  preflights: number;
  cors_refused: number;
  /** The most limited keys (a Space-Saving sketch). */
  top_limited: unknown[];
  /** The latest denials. */
  recent_denials: unknown[];
  denials_unlogged: number;
  [key: string]: unknown;
}

/** `Limiter#stats()`: one entry per policy. */
export type LimiterStats = Array<{
  name: string;
  allowed: number;
  denied: number;
  delayed: number;
  live_keys: number;
  evictions: number;
  capacity: number;
  [key: string]: unknown;
}>;

export type PolicyRef = string | number;
export type HeaderStyle = 'legacy' | 'ietf' | 'both' | 'retry_after_only';

/** A keyed rate limiter over the `[[policy]]` tables of a config. */
export class Limiter implements Disposable {
  constructor(config: ConfigSource);
  static fromConfig(text: Text): Limiter;
  static fromFile(path: PathLike): Limiter;
  /** The id of a policy by name (cached). */
  policy(name: Text): number;
  /** The name of a policy id already looked up. */
  policyName(id: number): string | undefined;
  check(policy: PolicyRef, key: Text, cost?: number): Decision;
  peek(policy: PolicyRef, key: Text, cost?: number): Decision;
  penalize(policy: PolicyRef, key: Text, cost?: number): Decision;
  refund(policy: PolicyRef, key: Text, cost?: number): Decision;
  checkAsync(policy: PolicyRef, key: Text, cost?: number): Promise<Decision>;
  peekAsync(policy: PolicyRef, key: Text, cost?: number): Promise<Decision>;
  penalizeAsync(policy: PolicyRef, key: Text, cost?: number): Promise<Decision>;
  refundAsync(policy: PolicyRef, key: Text, cost?: number): Promise<Decision>;
  /** Forgets a key; true if it had state. */
  reset(policy: PolicyRef, key: Text): boolean;
  /** `reset` on libuv's pool. */
  resetAsync(policy: PolicyRef, key: Text): Promise<boolean>;
  /** Whether decisions wait on the network (the Redis store): the synchronous calls then throw WouldBlockError. */
  readonly mayBlock: boolean;
  /** Takes leases of a concurrency policy; throws RateLimitedError when denied. */
  acquire(policy: PolicyRef, key: Text, cost?: number): Lease;
  /** Takes leases of a concurrency policy, or none (`lease.acquired`). */
  tryAcquire(policy: PolicyRef, key: Text, cost?: number): Lease;
  /** The response headers for the decisions that applied to one request. */
  headers(decisions: Decision | Decision[], style?: HeaderStyle): HeaderPairs;
  /** The counters per policy (the parsed JSON). */
  stats(): LimiterStats;
  close(): void;
  readonly closed: boolean;
  [Symbol.dispose](): void;
}

/** Concurrency leases taken by `Limiter#acquire`. */
export class Lease implements Disposable {
  private constructor();
  readonly decision: Decision;
  readonly policy: number;
  readonly acquired: boolean;
  readonly held: boolean;
  /** Gives the leases back; true if they were held. */
  release(): boolean;
  /** Frees the lease without giving it back (it expires after the policy's lease_timeout). */
  abandon(): boolean;
  [Symbol.dispose](): void;
}

export type CorsKind = 'not-cors' | 'preflight' | 'actual';

export interface CorsDecision {
  kind: CorsKind;
  allowed: boolean;
  /** For a preflight: 204 when allowed, 403 when refused; 0 otherwise. */
  status: number;
  /** Why a refused request was refused (empty when allowed). */
  reason: string;
  headers: HeaderPairs;
}

export interface CorsRequestInfo {
  method: Text;
  headers?: RequestInfo['headers'];
  origin?: Text | null;
  requestMethod?: Text | null;
  requestHeaders?: Text | string[] | null;
  privateNetwork?: boolean | string | null;
}

/** The strict CORS engine alone, from the `[cors]` table of a config. */
export class Cors implements Disposable {
  constructor(config: Text);
  static fromConfig(text: Text): Cors;
  static fromFile(path: PathLike): Cors;
  decide(request: CorsRequestInfo): CorsDecision;
  close(): void;
  readonly closed: boolean;
  [Symbol.dispose](): void;
}

type MaybePromise<T> = T | Promise<T>;

/** Options of the middlewares; each function gets the framework's request object. */
export interface MiddlewareOptions<Req> {
  /** The user id or API key (undefined: anonymous). */
  principal?: (req: Req) => MaybePromise<Text | null | undefined>;
  /** The principal's tier. */
  tier?: (req: Req) => MaybePromise<Text | null | undefined>;
  /** The client address (default: the framework's `ip`, else the socket's). */
  ip?: (req: Req) => MaybePromise<string | null | undefined>;
  /** True to let a request through undecided. */
  skip?: (req: Req) => boolean;
  /** Decide on libuv's pool (for policies with `durability = "immediate"`). */
  offload?: boolean;
}

/** A request as Express and plain node:http give it. */
export type ExpressRequest = IncomingMessage & { ip?: string; originalUrl?: string; app?: unknown };

export interface ExpressOptions extends MiddlewareOptions<ExpressRequest> {
  /** When a decision fails (default: `next(err)`). */
  onError?: (err: unknown, req: ExpressRequest, res: ServerResponse, next: (err?: unknown) => void) => void;
}

/** The Express (Connect, node:http) middleware. */
export function express(
  gate: Gate,
  options?: ExpressOptions,
): (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/** The parts of Fastify's request and reply the plugin uses. */
export interface FastifyRequestLike {
  raw: IncomingMessage;
  url: string;
  ip: string;
  headers: IncomingMessage['headers'];
}
export interface FastifyReplyLike {
  raw: ServerResponse;
  code(status: number): unknown;
  header(name: string, value: string): unknown;
  getHeader(name: string): unknown;
  send(body?: unknown): unknown;
}

export interface FastifyOptions extends MiddlewareOptions<any> {
  gate: Gate;
  /** When a decision fails: reply yourself (default: Fastify's error handler). */
  onError?: (err: unknown, request: any, reply: any) => void;
}

/** The Fastify plugin: `fastify.register(portcullis.fastify, {gate})`. */
export function fastify(instance: any, options: FastifyOptions, done: (err?: Error) => void): void;

/** The library's version, e.g. "0.1.0". */
export const version: string;
/** The library's ABI version. */
export const abiVersion: number;
/** The name of a result code. */
export function resultName(code: number): string;
