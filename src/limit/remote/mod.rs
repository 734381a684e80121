//! A policy decided on Redis: the per-algorithm Lua scripts and the glue that turns their
//! replies into the same states the local table holds.
//!
//! A check is one script run (`EVALSHA`): it reads the key's state, the server's clock
//! (`TIME`), decides with the policy's algorithm and writes the new state with a TTL, atomically
//! on the server. The reply carries the state it decided on and the server time; the limiter
//! then runs the policy's own step on them, so a decision's numbers come from the same code as
//! a local decision's, and cannot differ from it (tested against the local limiter and the
//! reference model). Penalize, refund and release are rare: they read the state with the server
//! time, apply the same Rust step and write back with a compare-and-set script (retried if the
//! key moved meanwhile).
//!
//! Times on the server are kept exact: a time is (seconds, nanoseconds), window numbers count
//! whole microseconds (Lua numbers are doubles). The server clock has microsecond resolution,
//! so decisions are made at whole microseconds.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::core::clock::Nanos;
use crate::core::stats::StripedCounter;
use crate::core::table::Table;
use crate::limit::algo::window::{locate, pair, single, Position};
use crate::limit::algo::{Algo, Rule, BLOCKED};
use crate::limit::error::Error;
use crate::limit::policy::{Algorithm, Policy};
use crate::limit::quota::Quota;
use crate::store::redis::{Arg, Failure, OnError, RedisStore, Reply, Script};
use crate::store::StoreError;

/// The check script of an algorithm: the shared head, the algorithm's step, the shared tail.
fn check_source(algo: &Algo) -> &'static str {
    // Each script carries only the helpers its algorithm uses: Redis runs the whole chunk,
    // closures included, on every call.
    macro_rules! script {
        ($($file:literal),*) => {
            concat!(
                include_str!("prelude.lua"),
                $(include_str!($file),)*
                include_str!("epilogue.lua")
            )
        };
    }
    match algo {
        Algo::Gcra(_) => script!("gcra.lua"),
        Algo::FixedWindow(_) => script!("windows.lua", "fixed_window.lua"),
        Algo::SlidingWindow(_) => script!("windows.lua", "sliding_window.lua"),
        Algo::Leaky(_) => script!("leaky.lua"),
        Algo::Concurrency(_) => script!("windows.lua", "concurrency.lua"),
    }
}

/// Spans the scripts compute with must stay exact in a double (with room for a sum).
const MAX_EXACT: u64 = 1 << 52;
const NS_PER_S: u64 = 1_000_000_000;

/// The local decisions made while Redis was away.
pub(crate) struct Fallback {
    /// The policy with its quota divided by `expected_hosts`.
    pub(crate) rule: Rule,
    pub(crate) max_cost: u32,
    pub(crate) table: Table,
}

/// One policy's side of the Redis store.
pub(crate) struct Remote {
    pub(crate) store: Arc<RedisStore>,
    check: Script,
    peek: Script,
    cas: Script,
    /// `<prefix><policy>:<signature hash>:{` : the client key and `}` follow, so each key is its
    /// own Redis Cluster hash tag.
    prefix: Vec<u8>,
    /// The algorithm's two parameters, as the script reads them.
    params: [i64; 2],
    block_ns: i64,
    ttl_ms: i64,
    pub(crate) on_error: OnError,
    pub(crate) deny_cache: bool,
    injected: bool,
    /// Server time minus local time, as last seen (an overestimate by up to a round trip, so
    /// the deny cache ends early rather than late).
    offset: AtomicI64,
    pub(crate) fallback: Option<Fallback>,
    pub(crate) fallbacks: StripedCounter,
    pub(crate) cache_hits: StripedCounter,
}

/// The decision a script reply carries.
pub(crate) struct Reached {
    pub(crate) allowed: bool,
    /// The state the server decided on, in the local table's packing.
    pub(crate) seen: u64,
    /// The server's time of the decision.
    pub(crate) now: Nanos,
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Remote {
    /// Binds a policy to the store: checks that its spans fit the scripts' exact arithmetic,
    /// loads the scripts, and with `on_error = "local"` allocates the fallback table.
    pub(crate) fn new(
        store: Arc<RedisStore>,
        policy: &Policy,
        rule: &Rule,
        signature: &str,
        capacity: usize,
        hash_key: [u8; 16],
    ) -> Result<Self, Error> {
        let name = policy.name();
        let refuse = |detail: String| {
            Error::Store(StoreError::Redis {
                url: store.url().into(),
                detail: format!("policy {name:?}: {detail}"),
            })
        };
        let us = |ns: u64, what: &str| -> Result<i64, Error> {
            if ns % 1000 != 0 {
                return Err(refuse(format!(
                    "the {what} must be a whole number of microseconds on Redis"
                )));
            }
            Ok(int(ns / 1000))
        };
        let (params, span) = match &rule.algo {
            Algo::Gcra(g) => {
                let (t, tau) = g.params();
                ([int(t), int(tau)], tau)
            }
            Algo::Leaky(l) => {
                let (t, d) = l.params();
                let span = d.saturating_add(t.saturating_mul(u64::from(l.max_cost())));
                ([int(t), int(d)], span)
            }
            Algo::FixedWindow(f) => {
                let (p, limit) = f.params();
                ([us(p, "window")?, i64::from(limit)], p)
            }
            Algo::SlidingWindow(s) => {
                let (p, limit) = s.params();
                ([us(p, "window")?, i64::from(limit)], p.saturating_mul(2))
            }
            Algo::Concurrency(c) => {
                let (p, max) = c.params();
                (
                    [us(p, "lease timeout")?, i64::from(max)],
                    p.saturating_mul(2),
                )
            }
        };
        if span >= MAX_EXACT || rule.block >= MAX_EXACT {
            return Err(refuse(
                "its window, burst span or block is over 52 days, beyond what the Redis \
                 scripts compute exactly: shorten it or use a local store"
                    .into(),
            ));
        }
        let options = store.options().clone();
        // A state carries information at most this long after it is written (a second more
        // for clocks and rounding): then Redis drops the key.
        let ttl_ms = int((span + rule.block) / 1_000_000 + 1000);
        let mut prefix = Vec::with_capacity(options.key_prefix.len() + name.len() + 20);
        prefix.extend_from_slice(options.key_prefix.as_bytes());
        prefix.extend_from_slice(name.as_bytes());
        prefix.extend_from_slice(format!(":{:016x}:{{", fnv(signature)).as_bytes());
        let check = Script::new(check_source(&rule.algo));
        let peek = Script::new(include_str!("peek.lua"));
        let cas = Script::new(include_str!("cas.lua"));
        for s in [&check, &peek, &cas] {
            store.load(s)?;
        }
        let fallback = match options.on_error {
            OnError::Local => {
                let rule = share(policy, options.expected_hosts)?;
                let table =
                    Table::try_new(capacity, hash_key).map_err(|bytes| Error::OutOfMemory {
                        policy: name.into(),
                        bytes,
                    })?;
                Some(Fallback {
                    max_cost: rule.algo.max_cost(),
                    rule,
                    table,
                })
            }
            _ => None,
        };
        Ok(Self {
            check,
            peek,
            cas,
            prefix,
            params,
            block_ns: int(rule.block),
            ttl_ms,
            on_error: options.on_error,
            deny_cache: options.deny_cache && !matches!(rule.algo, Algo::Concurrency(_)),
            injected: options.injected_time,
            offset: AtomicI64::new(0),
            fallback,
            fallbacks: StripedCounter::new(),
            cache_hits: StripedCounter::new(),
            store,
        })
    }

    /// The Redis key of a client key.
    pub(crate) fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len() + 1);
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k.push(b'}');
        k
    }

    /// The time argument: the caller's `now` only when tests inject it.
    fn time_arg(&self, now: Nanos) -> Vec<u8> {
        if self.injected {
            (now / 1000).to_string().into_bytes()
        } else {
            Vec::new()
        }
    }

    /// The server's time now, estimated from the local clock.
    #[inline]
    pub(crate) fn server_now(&self, local: Nanos) -> Nanos {
        if self.injected {
            return local;
        }
        local.saturating_add_signed(self.offset.load(Ordering::Relaxed))
    }

    fn saw_server(&self, local: Nanos, server: Nanos) {
        if !self.injected {
            let d = (server as i128 - local as i128).clamp(i64::MIN.into(), i64::MAX.into());
            self.offset.store(d as i64, Ordering::Relaxed);
        }
    }

    /// One check on the server. `now` is the caller's clock read just before.
    pub(crate) fn check(&self, key: &[u8], cost: u32, now: Nanos) -> Result<Reached, Failure> {
        let time = self.time_arg(now);
        let reply = self.store.eval(
            &self.check,
            &self.key(key),
            &[
                Arg::Bytes(&time),
                Arg::Int(i64::from(cost)),
                Arg::Int(self.ttl_ms),
                Arg::Int(self.block_ns),
                Arg::Int(self.params[0]),
                Arg::Int(self.params[1]),
            ],
        )?;
        let r = ints(&reply)
            .filter(|v| v.len() == 7)
            .ok_or_else(|| bad(&reply))?;
        let server = time_of(r[5], r[6]);
        self.saw_server(now, server);
        Ok(Reached {
            allowed: r[0] == 1,
            seen: decode(r[1], r[2], r[3], r[4]),
            now: server,
        })
    }

    /// The stored state as written, its packing, and the server's time.
    pub(crate) fn peek(&self, key: &[u8], now: Nanos) -> Result<(Vec<u8>, u64, Nanos), Failure> {
        let time = self.time_arg(now);
        let reply = self
            .store
            .eval(&self.peek, &self.key(key), &[Arg::Bytes(&time)])?;
        let Reply::Array(items) = &reply else {
            return Err(bad(&reply));
        };
        let (raw, s, ns) = match items.as_slice() {
            [Reply::Bytes(raw), Reply::Int(s), Reply::Int(ns)] => (raw.clone(), *s, *ns),
            _ => return Err(bad(&reply)),
        };
        let server = time_of(s, ns);
        self.saw_server(now, server);
        let mut f = [0i64; 4];
        for (i, part) in raw.split(|b| *b == b' ').take(4).enumerate() {
            f[i] = std::str::from_utf8(part)
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
        }
        Ok((raw, decode(f[0], f[1], f[2], f[3]), server))
    }

    /// Replaces the stored state `raw` (as read by [`Remote::peek`]) with `state`; false if
    /// the key changed meanwhile.
    pub(crate) fn replace(
        &self,
        key: &[u8],
        raw: &[u8],
        rule: &Rule,
        state: u64,
        now: Nanos,
    ) -> Result<bool, Failure> {
        let new = encode(rule, state, now);
        let reply = self.store.eval(
            &self.cas,
            &self.key(key),
            &[
                Arg::Bytes(raw),
                Arg::Bytes(new.as_bytes()),
                Arg::Int(self.ttl_ms),
            ],
        )?;
        Ok(reply == Reply::Int(1))
    }
}

/// The policy with its quota divided among `hosts` (never below one unit).
fn share(policy: &Policy, hosts: u32) -> Result<Rule, Error> {
    let q = policy.quota();
    let hosts = hosts.max(1);
    let count = (q.count() / hosts).max(1);
    let burst = (q.burst() / hosts).max(1);
    let mut quota = Quota::new(count, q.window())?;
    if burst != count {
        quota = quota.with_burst(burst)?;
    }
    let mut p =
        Policy::new(policy.name(), policy.algorithm(), quota).block(policy.block_duration());
    if let Algorithm::LeakyBucket { max_delay: Some(d) } = policy.algorithm() {
        p = p.max_delay(d);
    }
    Ok(p.rule()?)
}

fn ints(r: &Reply) -> Option<Vec<i64>> {
    match r {
        Reply::Array(items) => items
            .iter()
            .map(|i| match i {
                Reply::Int(n) => Some(*n),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

#[cold]
fn bad(r: &Reply) -> Failure {
    Failure {
        detail: format!("unexpected script reply {r:?}"),
        retry_in: std::time::Duration::ZERO,
    }
}

fn time_of(s: i64, ns: i64) -> Nanos {
    u64::try_from(s)
        .unwrap_or(0)
        .saturating_mul(NS_PER_S)
        .saturating_add(u64::try_from(ns).unwrap_or(0))
}

/// A stored state (`tag x y z`) in the local table's packing.
fn decode(tag: i64, x: i64, y: i64, z: i64) -> u64 {
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    match tag {
        1 => time_of(x, y).min(BLOCKED - 1),
        2 => single::pack(u(x), u(y)),
        3 => pair::pack(u(x), u(y), u(z)),
        4 => BLOCKED | time_of(x, y).min(BLOCKED - 1),
        _ => 0,
    }
}

/// The full window number of a stored index modulo 2^bits, from the current window `w`.
fn unwrap_index(stored: u64, w: u64, bits: u32) -> u64 {
    match locate(stored, w, bits) {
        Position::Current => w,
        Position::Past(d) => w.saturating_sub(d),
        Position::Ahead(n) => w + n,
    }
}

/// A state in the local packing as the scripts store it; empty for a state that holds nothing
/// (the key is deleted).
fn encode(rule: &Rule, state: u64, now: Nanos) -> String {
    if state == 0 || rule.recovered(state, now) {
        return String::new();
    }
    let time = |t: u64| format!("{} {} 0", t / NS_PER_S, t % NS_PER_S);
    if state & BLOCKED != 0 {
        return format!("4 {}", time(state & !BLOCKED));
    }
    match &rule.algo {
        Algo::Gcra(_) | Algo::Leaky(_) => format!("1 {}", time(state)),
        Algo::FixedWindow(f) => {
            let (idx, count) = single::unpack(state);
            let w = now / f.params().0;
            format!("2 {} {count} 0", unwrap_index(idx, w, single::IDX_BITS))
        }
        Algo::SlidingWindow(_) | Algo::Concurrency(_) => {
            let p = match &rule.algo {
                Algo::SlidingWindow(s) => s.params().0,
                Algo::Concurrency(c) => c.params().0,
                _ => 1,
            };
            let (idx, cur, prev) = pair::unpack(state);
            let w = now / p.max(1);
            format!("3 {} {cur} {prev}", unwrap_index(idx, w, pair::IDX_BITS))
        }
    }
}
