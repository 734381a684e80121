//! The reference model of every algorithm, written for clarity, and the runner that checks a
//! limiter (local, or on a store such as Redis) against it over random sequences of time
//! steps, keys, costs and operations.
//!
//! The models keep plain per-window histories (no packing, no modular indices), and derive
//! `remaining`, `reset_after` and `retry_after` by *definition* rather than by formula:
//! remaining = how many more requests of cost 1 would pass right now (by simulation);
//! reset_after = the earliest time at which a fresh key's full capacity is available again;
//! retry_after = the earliest time at which the request would pass (both found by search).

use std::collections::HashMap;
use std::time::Duration;

use portcullis::store::StoreConfig;
use portcullis::{Decision, Limiter, ManualClock, Policy};
use proptest::prelude::*;

pub const SEC: u64 = 1_000_000_000;
pub const T0: u64 = 1_700_000_000 * SEC;

/// One algorithm's rules over a plain state.
pub trait Alg {
    type S: Clone + Default + std::fmt::Debug;
    fn capacity(&self) -> u64;
    fn allowed(&self, s: &Self::S, now: u64, cost: u64) -> bool;
    fn apply(&self, s: &mut Self::S, now: u64, cost: u64);
    fn delay(&self, _s: &Self::S, _now: u64) -> u64 {
        0
    }
    fn penalize(&self, s: &mut Self::S, now: u64, cost: u64);
    fn refund(&self, s: &mut Self::S, now: u64, cost: u64);
}

/// GCRA as a bucket of time: each unit costs `t`; at most `burst·t` may be owed.
pub struct Gcra {
    pub t: u64,
    pub burst: u64,
}

impl Alg for Gcra {
    type S = u64; // theoretical arrival time (0 = never seen)
    fn capacity(&self) -> u64 {
        self.burst
    }
    fn allowed(&self, tat: &u64, now: u64, cost: u64) -> bool {
        (*tat).max(now) + self.t * cost <= now + self.t * self.burst
    }
    fn apply(&self, tat: &mut u64, now: u64, cost: u64) {
        *tat = (*tat).max(now) + self.t * cost;
    }
    fn penalize(&self, tat: &mut u64, now: u64, cost: u64) {
        for _ in 0..cost {
            let base = (*tat).max(now);
            *tat = if base + self.t <= now + self.t * self.burst {
                base + self.t
            } else {
                base.max(now + self.t * self.burst)
            };
        }
    }
    fn refund(&self, tat: &mut u64, now: u64, cost: u64) {
        if *tat > now {
            *tat = tat.saturating_sub(self.t * cost).max(now);
        }
    }
}

/// Leaky bucket shaping: each request starts when the previous one is through.
pub struct Leaky {
    pub t: u64,
    pub max_delay: u64,
}

impl Alg for Leaky {
    type S = u64; // when the next request may start without waiting
    fn capacity(&self) -> u64 {
        self.max_delay / self.t + 1
    }
    fn allowed(&self, free: &u64, now: u64, _cost: u64) -> bool {
        (*free).max(now) - now <= self.max_delay
    }
    fn apply(&self, free: &mut u64, now: u64, cost: u64) {
        *free = (*free).max(now) + self.t * cost;
    }
    fn delay(&self, free: &u64, now: u64) -> u64 {
        (*free).max(now) - now
    }
    fn penalize(&self, free: &mut u64, now: u64, cost: u64) {
        let start = (*free).max(now);
        let full = start.max(now + self.max_delay + self.t);
        *free = (start + self.t * cost).min(full);
    }
    fn refund(&self, free: &mut u64, now: u64, cost: u64) {
        if *free > now {
            *free = free.saturating_sub(self.t * cost).max(now);
        }
    }
}

/// Fixed window: a count per window number.
pub struct Fixed {
    pub p: u64,
    pub limit: u64,
}

impl Alg for Fixed {
    type S = HashMap<u64, u64>;
    fn capacity(&self) -> u64 {
        self.limit
    }
    fn allowed(&self, s: &Self::S, now: u64, cost: u64) -> bool {
        s.get(&(now / self.p)).copied().unwrap_or(0) + cost <= self.limit
    }
    fn apply(&self, s: &mut Self::S, now: u64, cost: u64) {
        *s.entry(now / self.p).or_default() += cost;
    }
    fn penalize(&self, s: &mut Self::S, now: u64, cost: u64) {
        let c = s.entry(now / self.p).or_default();
        *c = (*c + cost).min(self.limit);
    }
    fn refund(&self, s: &mut Self::S, now: u64, cost: u64) {
        let c = s.entry(now / self.p).or_default();
        *c = c.saturating_sub(cost);
    }
}

/// Sliding window: the previous window's count weighted by its remaining overlap.
pub struct Sliding {
    pub p: u64,
    pub limit: u64,
}

impl Sliding {
    fn estimate(&self, s: &HashMap<u64, u64>, now: u64) -> u64 {
        let w = now / self.p;
        let elapsed = now - w * self.p;
        let prev = if w == 0 {
            0
        } else {
            s.get(&(w - 1)).copied().unwrap_or(0)
        };
        let cur = s.get(&w).copied().unwrap_or(0);
        let weighted = (prev as u128 * (self.p - elapsed) as u128).div_ceil(self.p as u128) as u64;
        weighted + cur
    }
}

impl Alg for Sliding {
    type S = HashMap<u64, u64>;
    fn capacity(&self) -> u64 {
        self.limit
    }
    fn allowed(&self, s: &Self::S, now: u64, cost: u64) -> bool {
        self.estimate(s, now) + cost <= self.limit
    }
    fn apply(&self, s: &mut Self::S, now: u64, cost: u64) {
        *s.entry(now / self.p).or_default() += cost;
    }
    fn penalize(&self, s: &mut Self::S, now: u64, cost: u64) {
        let c = s.entry(now / self.p).or_default();
        *c = (*c + cost).min(self.limit);
    }
    fn refund(&self, s: &mut Self::S, now: u64, cost: u64) {
        let c = s.entry(now / self.p).or_default();
        *c = c.saturating_sub(cost);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Out {
    allowed: bool,
    remaining: u64,
    reset_after: u64,
    retry_after: u64,
    delay: u64,
}

impl From<Decision> for Out {
    fn from(d: Decision) -> Self {
        Out {
            allowed: d.allowed,
            remaining: u64::from(d.remaining()),
            reset_after: d.reset_after().as_nanos() as u64,
            retry_after: d.retry_after().as_nanos() as u64,
            delay: d.delay().as_nanos() as u64,
        }
    }
}

/// The model of one policy over many keys, with the block layer on top.
struct Model<A: Alg> {
    alg: A,
    block: u64,
    keys: HashMap<u8, A::S>,
    blocked: HashMap<u8, u64>,
}

/// Smallest x in [lo, lo + 30 days] with `pred(x)`, for a predicate false then true.
fn earliest(lo: u64, pred: impl Fn(u64) -> bool) -> u64 {
    if pred(lo) {
        return lo;
    }
    let (mut bad, mut good) = (lo, lo + 30 * 86_400 * SEC);
    assert!(pred(good), "never allowed within 30 days");
    while good - bad > 1 {
        let mid = bad + (good - bad) / 2;
        if pred(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    good
}

impl<A: Alg> Model<A> {
    fn remaining(&self, s: &A::S, now: u64) -> u64 {
        let mut s = s.clone();
        let mut n = 0;
        while n <= self.alg.capacity() && self.alg.allowed(&s, now, 1) {
            self.alg.apply(&mut s, now, 1);
            n += 1;
        }
        n
    }

    fn reset_after(&self, s: &A::S, now: u64) -> u64 {
        let full = self.alg.capacity();
        earliest(now, |x| self.remaining(s, x) == full) - now
    }

    fn retry_after(&self, s: &A::S, now: u64, cost: u64) -> u64 {
        earliest(now, |x| self.alg.allowed(s, x, cost)) - now
    }

    fn active_block(&self, key: u8, now: u64) -> Option<u64> {
        self.blocked.get(&key).copied().filter(|&t| now < t)
    }

    fn blocked_out(until: u64, now: u64) -> Out {
        Out {
            allowed: false,
            remaining: 0,
            reset_after: until - now,
            retry_after: until - now,
            delay: 0,
        }
    }

    fn state(&self, key: u8) -> A::S {
        self.keys.get(&key).cloned().unwrap_or_default()
    }

    fn decide(&self, key: u8, now: u64, cost: u64) -> (Out, Option<A::S>) {
        if let Some(t) = self.active_block(key, now) {
            return (Self::blocked_out(t, now), None);
        }
        let s = self.state(key);
        if self.alg.allowed(&s, now, cost) {
            let delay = self.alg.delay(&s, now);
            let mut n = s.clone();
            self.alg.apply(&mut n, now, cost);
            let out = Out {
                allowed: true,
                remaining: self.remaining(&n, now),
                reset_after: self.reset_after(&n, now),
                retry_after: self.retry_after(&n, now, cost),
                delay,
            };
            (out, Some(n))
        } else {
            let out = Out {
                allowed: false,
                remaining: self.remaining(&s, now),
                reset_after: self.reset_after(&s, now),
                retry_after: self.retry_after(&s, now, cost),
                delay: 0,
            };
            (out, None)
        }
    }

    fn start_block(&mut self, key: u8, now: u64, reset_after: u64) -> u64 {
        let until = now + self.block.max(reset_after);
        self.blocked.insert(key, until);
        self.keys.remove(&key);
        until
    }

    fn check(&mut self, key: u8, now: u64, cost: u64) -> Out {
        let (out, new) = self.decide(key, now, cost);
        if let Some(n) = new {
            self.keys.insert(key, n);
        } else if !out.allowed && self.block > 0 && self.active_block(key, now).is_none() {
            let until = self.start_block(key, now, out.reset_after);
            return Self::blocked_out(until, now);
        }
        out
    }

    fn peek(&self, key: u8, now: u64, cost: u64) -> Out {
        self.decide(key, now, cost).0
    }

    fn penalize(&mut self, key: u8, now: u64, cost: u64) -> Out {
        if self.active_block(key, now).is_none() {
            let mut s = self.state(key);
            self.alg.penalize(&mut s, now, cost);
            self.keys.insert(key, s.clone());
            if self.block > 0 && !self.alg.allowed(&s, now, 1) {
                let reset = self.reset_after(&s, now);
                self.start_block(key, now, reset);
            }
        }
        self.peek(key, now, 1)
    }

    fn refund(&mut self, key: u8, now: u64, cost: u64) -> Out {
        if self.active_block(key, now).is_none() {
            let mut s = self.state(key);
            self.alg.refund(&mut s, now, cost);
            self.keys.insert(key, s);
        }
        self.peek(key, now, 1)
    }

    fn reset(&mut self, key: u8) {
        self.keys.remove(&key);
        self.blocked.remove(&key);
    }
}

#[derive(Debug, Clone)]
pub enum Op {
    Advance(u64),
    Check(u8, u32),
    Peek(u8, u32),
    Penalize(u8, u32),
    Refund(u8, u32),
    Reset(u8),
}

pub fn ops(window: u64) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => prop_oneof![
            Just(0u64),
            0..window / 4,
            0..window * 2,
            (0u64..8).prop_map(move |k| k * window / 4),
        ].prop_map(Op::Advance),
        8 => (0u8..3, 1u32..4).prop_map(|(k, c)| Op::Check(k, c)),
        2 => (0u8..3, 1u32..4).prop_map(|(k, c)| Op::Peek(k, c)),
        1 => (0u8..3, 1u32..3).prop_map(|(k, c)| Op::Penalize(k, c)),
        1 => (0u8..3, 1u32..3).prop_map(|(k, c)| Op::Refund(k, c)),
        1 => (0u8..3).prop_map(Op::Reset),
    ];
    prop::collection::vec(op, 1..80)
}

/// Runs `ops` on a limiter of `policy` (in memory, or on `store`) and on the model, comparing
/// every answer. On a store whose clock counts microseconds (Redis), times are whole
/// microseconds: `grain` is 1000 there, 1 in memory.
pub fn run<A: Alg>(
    alg: A,
    policy: Policy,
    block: u64,
    start: u64,
    ops: &[Op],
    store: Option<StoreConfig>,
) {
    let grain = if store.is_some() { 1000 } else { 1 };
    let start = start / grain * grain;
    let policy = policy.block(Duration::from_nanos(block));
    let mut builder = Limiter::builder()
        .policy(policy)
        .capacity(256)
        .clock(ManualClock::new(start))
        .hash_key([7; 16]);
    if let Some(store) = store {
        builder = builder.store(store);
    }
    let limiter = builder.build().unwrap();
    let id = limiter.policies().next().unwrap().0;
    let cap = alg.capacity();
    let mut model = Model {
        alg,
        block,
        keys: HashMap::new(),
        blocked: HashMap::new(),
    };
    let mut now = start;
    for (i, op) in ops.iter().enumerate() {
        let key = |k: &u8| [b'k', *k];
        let (got, want): (Result<Out, String>, Option<Out>) = match op {
            Op::Advance(d) => {
                now += d / grain * grain;
                continue;
            }
            Op::Check(k, c) => (
                limiter
                    .check_at(id, key(k), *c, now)
                    .map(Out::from)
                    .map_err(|e| e.to_string()),
                (u64::from(*c) <= cap).then(|| model.check(*k, now, u64::from(*c))),
            ),
            Op::Peek(k, c) => (
                limiter
                    .peek_at(id, key(k), *c, now)
                    .map(Out::from)
                    .map_err(|e| e.to_string()),
                (u64::from(*c) <= cap).then(|| model.peek(*k, now, u64::from(*c))),
            ),
            Op::Penalize(k, c) => (
                limiter
                    .penalize_at(id, key(k), *c, now)
                    .map(Out::from)
                    .map_err(|e| e.to_string()),
                Some(model.penalize(*k, now, u64::from(*c))),
            ),
            Op::Refund(k, c) => (
                limiter
                    .refund_at(id, key(k), *c, now)
                    .map(Out::from)
                    .map_err(|e| e.to_string()),
                Some(model.refund(*k, now, u64::from(*c))),
            ),
            Op::Reset(k) => {
                limiter.reset(id, key(k)).unwrap();
                model.reset(*k);
                continue;
            }
        };
        match (got, want) {
            (Ok(g), Some(w)) => assert_eq!(g, w, "op #{i} {op:?} at +{}ns", now - start),
            (Err(e), None) => assert!(e.contains("exceeds"), "{e}"),
            (g, w) => panic!("op #{i} {op:?}: limiter {g:?}, model {w:?}"),
        }
    }
}

pub fn start() -> impl Strategy<Value = u64> {
    (0u64..86_400 * SEC).prop_map(|o| T0 + o)
}

pub fn window() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), Just(2), Just(10), Just(60), Just(3600)].prop_map(|s| s * SEC)
}

pub fn block() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(0u64), 1 => Just(30 * SEC), 1 => Just(SEC / 2)]
}
