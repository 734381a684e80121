//! What the gate reports: counters per route and limit, per policy, keys and their state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::abuse::{Denial, Offender};
use crate::core::stats::{OutcomeCounts, OutcomeTotals};

/// Counters of one limit of one route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitStats {
    /// The route's `match`.
    pub route: String,
    /// The policy, or `tier:` policies.
    pub policy: String,
    /// What it is keyed by.
    pub key: String,
    /// Whether it applies to anonymous requests (the route's `anonymous` list).
    pub anonymous: bool,
    /// Shadow mode.
    pub shadow: bool,
    /// Requests it allowed.
    pub allowed: u64,
    /// Requests it denied (in shadow mode: would have denied).
    pub denied: u64,
    /// Requests it allowed with a delay.
    pub delayed: u64,
}

/// One key of a policy, as [`super::Gate::keys`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// The key, e.g. `ip:203.0.113.9`, `principal:alice`.
    pub key: String,
    /// Whether it is blocked (lockout).
    pub blocked: bool,
    /// Units left now.
    pub remaining: u32,
    /// The most it can have at once.
    pub limit: u32,
    /// Milliseconds until a request would be allowed (0 if now).
    pub retry_after_ms: u64,
    /// Milliseconds until it has fully recovered.
    pub reset_after_ms: u64,
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Everything the gate counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateStats {
    /// Per route and limit.
    pub limits: Vec<LimitStats>,
    /// Per policy, from the limiter (all routes together).
    pub policies: Vec<PolicyStatsView>,
    /// Requests that matched no route.
    pub unrouted: u64,
    /// Preflights answered.
    pub preflights: u64,
    /// Requests refused by CORS.
    pub cors_refused: u64,
    /// The most limited keys.
    pub top_limited: Vec<Offender>,
    /// The latest denials, oldest first.
    pub recent_denials: Vec<Denial>,
    /// Denials left out of `top_limited` or `recent_denials` because another thread was
    /// recording one at that moment (a denial never waits for the log; `limits` counts them all).
    #[serde(default)]
    pub denials_unlogged: u64,
}

/// [`crate::core::stats::PolicyStats`] with its quota, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatsView {
    /// The policy.
    pub name: String,
    /// Its algorithm.
    pub algorithm: String,
    /// Requests per window (in flight, for concurrency).
    pub count: u32,
    /// The window in milliseconds (the lease timeout, for concurrency).
    pub window_ms: u64,
    /// Requests a fresh key may make at once.
    pub burst: u32,
    /// Requests allowed.
    pub allowed: u64,
    /// Requests denied.
    pub denied: u64,
    /// Requests delayed.
    pub delayed: u64,
    /// Keys with live state.
    pub live_keys: usize,
    /// Live keys pushed out because the table was full.
    pub evictions: u64,
    /// Of those, keys that were being denied: the table is too small for its traffic.
    pub limited_evictions: u64,
    /// New keys placed in the table.
    #[serde(default)]
    pub placed: u64,
    /// Table slots.
    pub capacity: usize,
    /// Redis store only: decisions made without Redis because it did not answer in time (or
    /// was backing off), by the configured `on_error`. Zero for local stores.
    #[serde(default)]
    pub store_fallbacks: u64,
    /// Redis store only: denials answered from the local deny cache, without a round trip.
    #[serde(default)]
    pub deny_cache_hits: u64,
}

/// A limit's counters: one set per policy it may apply (one per tier for a tiered limit), so
/// decisions are counted by the policy that made them. The first set is held inline, so a
/// fixed policy's count reaches its shard through no more pointers than before.
pub(super) struct Counters(OutcomeCounts, Box<[OutcomeCounts]>);

impl Counters {
    pub(super) fn new(policies: usize) -> Self {
        let rest = (1..policies.max(1)).map(|_| OutcomeCounts::new()).collect();
        Self(OutcomeCounts::new(), rest)
    }

    /// How many policies it counts for.
    pub(super) fn len(&self) -> usize {
        1 + self.1.len()
    }

    /// The counters of the limit's `i`-th policy.
    #[inline(always)]
    pub(super) fn get(&self, i: usize) -> Option<&OutcomeCounts> {
        match i {
            0 => Some(&self.0),
            i => self.1.get(i - 1),
        }
    }

    /// Every policy's counters, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &OutcomeCounts> {
        std::iter::once(&self.0).chain(self.1.iter())
    }

    /// The totals over every policy.
    pub(super) fn totals(&self) -> OutcomeTotals {
        let mut t = OutcomeTotals::default();
        for c in self.iter() {
            t.add(&c.get());
        }
        t
    }
}
