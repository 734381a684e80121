//! Counters that many threads bump without sharing a cache line.

use crossbeam_utils::CachePadded;

use std::sync::atomic::Ordering;

use crate::core::sync::{thread_index, thread_index_if_set, StatAtomic};

const SHARDS: usize = 64;

/// `N` counters spread over one cache line per thread: each of the first 64 threads alive at
/// once owns a shard (by [`thread_index`], which exited threads give back), which only it
/// writes, so it adds with a plain load and store instead of a locked read-modify-write;
/// threads beyond 64 share one more shard and add atomically. Reads sum every shard.
pub(crate) struct Striped<const N: usize>(Box<[CachePadded<[StatAtomic; N]>; SHARDS + 1]>);

impl<const N: usize> Striped<N> {
    pub(crate) fn new() -> Self {
        Self(Box::new(std::array::from_fn(|_| {
            CachePadded::new(std::array::from_fn(|_| StatAtomic::new(0)))
        })))
    }

    /// Adds `n` to each of `fields`, finding the thread's shard once.
    #[inline(always)]
    pub(crate) fn add(&self, fields: &[usize], n: u64) {
        // One range test covers a thread without an index yet (taken on the slow path).
        let i = thread_index_if_set();
        if i < SHARDS {
            self.add_own(i, fields, n);
        } else {
            self.add_slow(fields, n);
        }
    }

    #[inline(always)]
    fn add_own(&self, i: usize, fields: &[usize], n: u64) {
        // Single writer: shard `i < SHARDS` has one owner at a time, and an index changes owner
        // only through the lock in `thread_index`.
        let own = &self.0[i];
        for &f in fields {
            own[f].store(own[f].load(Ordering::Relaxed) + n, Ordering::Relaxed);
        }
    }

    /// A thread's first count (it takes an index), or one of more than `SHARDS` threads alive.
    #[cold]
    #[inline(never)]
    fn add_slow(&self, fields: &[usize], n: u64) {
        let i = thread_index();
        if i < SHARDS {
            self.add_own(i, fields, n);
        } else {
            for &f in fields {
                self.0[SHARDS][f].fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Field `f` summed over every shard.
    pub(crate) fn sum(&self, f: usize) -> u64 {
        self.0.iter().map(|s| s[f].load(Ordering::Relaxed)).sum()
    }
}

/// One striped counter.
pub(crate) struct StripedCounter(Striped<1>);

impl StripedCounter {
    pub(crate) fn new() -> Self {
        Self(Striped::new())
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.add(&[0], n);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.sum(0)
    }
}

/// Allowed, denied and delayed counts in one striped shard: a decision finds its thread's
/// shard once and bumps a word in the same cache line.
pub(crate) struct DecisionCounts(Striped<4>);

/// The totals of a [`DecisionCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Totals {
    pub(crate) allowed: u64,
    pub(crate) denied: u64,
    pub(crate) delayed: u64,
}

const ALLOWED: usize = 0;
const DENIED: usize = 1;
const DELAYED: usize = 2;
/// Of `DecisionCounts` only: leases given back.
const RELEASED: usize = 3;

impl DecisionCounts {
    pub(crate) fn new() -> Self {
        Self(Striped::new())
    }

    /// Counts one decision.
    #[inline]
    pub(crate) fn record(&self, allowed: bool, delayed: bool) {
        let field = if allowed { ALLOWED } else { DENIED };
        match delayed {
            true => self.0.add(&[field, DELAYED], 1),
            false => self.0.add(&[field], 1),
        }
    }

    /// Counts a concurrency lease given back (a word of the same shard).
    pub(crate) fn released(&self) {
        self.0.add(&[RELEASED], 1);
    }

    /// Leases given back.
    pub(crate) fn leases_released(&self) -> u64 {
        self.0.sum(RELEASED)
    }

    /// The totals over every shard.
    pub(crate) fn get(&self) -> Totals {
        Totals {
            allowed: self.0.sum(ALLOWED),
            denied: self.0.sum(DENIED),
            delayed: self.0.sum(DELAYED),
        }
    }
}

/// What one limit of the gate decided for one request. Every variant but `Allowed` is a
/// denial (in shadow mode, one that was not enforced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Allowed (perhaps after a delay).
    Allowed,
    /// Denied by the algorithm: over the limit.
    Limited,
    /// Denied because the key is blocked (a lockout).
    Blocked,
    /// Would have been denied, but the limit is in shadow mode.
    ShadowLimited,
    /// The limiter or its store failed: denied, failing closed.
    Error,
}

/// A gate limit's counts: allowed, denied (every kind), delayed, and the denials by kind, in
/// one cache line per shard, so a decision still bumps one shard (two words when denied or
/// delayed) as it did when only allowed and denied were counted.
pub(crate) struct OutcomeCounts(Striped<7>);

/// The totals of an [`OutcomeCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct OutcomeTotals {
    pub(crate) allowed: u64,
    /// Every denial: limited, blocked, shadow-limited and errors.
    pub(crate) denied: u64,
    pub(crate) delayed: u64,
    pub(crate) limited: u64,
    pub(crate) blocked: u64,
    pub(crate) shadow_limited: u64,
    pub(crate) errors: u64,
}

impl OutcomeTotals {
    /// Adds another set of totals.
    pub(crate) fn add(&mut self, o: &OutcomeTotals) {
        self.allowed += o.allowed;
        self.denied += o.denied;
        self.delayed += o.delayed;
        self.limited += o.limited;
        self.blocked += o.blocked;
        self.shadow_limited += o.shadow_limited;
        self.errors += o.errors;
    }
}

const LIMITED: usize = 3;
const BLOCKED: usize = 4;
const SHADOW_LIMITED: usize = 5;
const ERRORS: usize = 6;

impl OutcomeCounts {
    pub(crate) fn new() -> Self {
        Self(Striped::new())
    }

    /// Counts one decision.
    #[inline]
    pub(crate) fn record(&self, outcome: Outcome, delayed: bool) {
        match (outcome, delayed) {
            (Outcome::Allowed, false) => self.0.add(&[ALLOWED], 1),
            (Outcome::Allowed, true) => self.0.add(&[ALLOWED, DELAYED], 1),
            (Outcome::Limited, _) => self.0.add(&[DENIED, LIMITED], 1),
            (Outcome::Blocked, _) => self.0.add(&[DENIED, BLOCKED], 1),
            (Outcome::ShadowLimited, _) => self.0.add(&[DENIED, SHADOW_LIMITED], 1),
            (Outcome::Error, _) => self.0.add(&[DENIED, ERRORS], 1),
        }
    }

    /// The totals over every shard.
    pub(crate) fn get(&self) -> OutcomeTotals {
        OutcomeTotals {
            allowed: self.0.sum(ALLOWED),
            denied: self.0.sum(DENIED),
            delayed: self.0.sum(DELAYED),
            limited: self.0.sum(LIMITED),
            blocked: self.0.sum(BLOCKED),
            shadow_limited: self.0.sum(SHADOW_LIMITED),
            errors: self.0.sum(ERRORS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[test]
    fn decision_counts_add_up_across_more_threads_than_shards() {
        let counts = DecisionCounts::new();
        let threads = SHARDS + 16;
        let start = Barrier::new(threads);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (counts, start) = (&counts, &start);
                s.spawn(move || {
                    start.wait();
                    for i in 0..1000 {
                        // Thread t: every third decision denied, every fifth allowed one delayed.
                        let allowed = (i + t) % 3 != 0;
                        counts.record(allowed, allowed && i % 5 == 0);
                    }
                });
            }
        });
        let mut want = Totals::default();
        for t in 0..threads {
            for i in 0..1000 {
                let allowed = (i + t) % 3 != 0;
                match allowed {
                    true => want.allowed += 1,
                    false => want.denied += 1,
                }
                want.delayed += u64::from(allowed && i % 5 == 0);
            }
        }
        assert_eq!(counts.get(), want);
    }

    #[test]
    fn outcome_counts_split_denials_by_kind() {
        let counts = OutcomeCounts::new();
        counts.record(Outcome::Allowed, false);
        counts.record(Outcome::Allowed, true);
        counts.record(Outcome::Limited, false);
        counts.record(Outcome::Blocked, false);
        counts.record(Outcome::Blocked, false);
        counts.record(Outcome::ShadowLimited, false);
        counts.record(Outcome::Error, false);
        let want = OutcomeTotals {
            allowed: 2,
            denied: 5,
            delayed: 1,
            limited: 1,
            blocked: 2,
            shadow_limited: 1,
            errors: 1,
        };
        assert_eq!(counts.get(), want);
    }

    #[test]
    fn counts_exactly_across_more_threads_than_shards() {
        let counter = StripedCounter::new();
        let threads = SHARDS + 16;
        let start = Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..1000 {
                        counter.add(1);
                    }
                });
            }
        });
        assert_eq!(counter.get(), (threads * 1000) as u64);
    }

    /// Threads started one after another (a thread per job) keep reusing a low index, so they
    /// keep owning shards instead of all falling into the shared one.
    #[test]
    fn sequential_threads_reuse_owned_shards() {
        let counter = StripedCounter::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..(SHARDS * 3) {
            let i = std::thread::scope(|s| {
                s.spawn(|| {
                    counter.add(1);
                    thread_index()
                })
                .join()
                .unwrap()
            });
            seen.insert(i);
        }
        // Other tests may hold indices meanwhile, so not always the same one, but a few.
        assert!(seen.len() < SHARDS / 4, "{} distinct indices", seen.len());
        assert_eq!(counter.get(), (SHARDS * 3) as u64);
    }
}

/// A snapshot of one policy's counters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyStats {
    /// The policy.
    pub name: String,
    /// Requests allowed (including shaped ones).
    pub allowed: u64,
    /// Requests denied.
    pub denied: u64,
    /// Requests allowed with a delay.
    pub delayed: u64,
    /// Keys whose state still carries information.
    pub live_keys: usize,
    /// Live keys pushed out because the table was full.
    pub evictions: u64,
    /// Of those, keys that were being denied (limited or blocked): every candidate slot held
    /// such a key, so the table is too small for its traffic (raise `capacity`).
    pub limited_evictions: u64,
    /// New keys placed in the table (each took a slot: empty, recovered or evicted).
    pub placed: u64,
    /// Concurrency leases given back (the others expired).
    pub leases_released: u64,
    /// Slots in the policy's table.
    pub capacity: usize,
    /// Bytes of the policy's table, fixed at construction.
    pub memory_bytes: usize,
    /// Redis store only: decisions made without Redis because it did not answer in time
    /// (or was backing off), by the configured `on_error` (fail closed, fail open or local).
    pub store_fallbacks: u64,
    /// Redis store only: denials answered from the local deny cache, without a round trip.
    pub deny_cache_hits: u64,
}
