//! GCRA: the state is the theoretical arrival time (TAT) of the next request.
//!
//! A request of cost `c` moves the TAT to `max(TAT, now) + c·T` and is allowed when that lands
//! within `τ = burst·T` of now. A fresh key (TAT = 0) may therefore make `burst` requests at once,
//! then one every `T`.

use super::{until, Divisor, Verdict};
use crate::core::clock::Nanos;
use crate::limit::quota::Quota;

/// GCRA parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gcra {
    /// Emission interval T, ns.
    t: u64,
    per_t: Divisor,
    /// Delay tolerance τ = burst·T, ns.
    tau: u64,
    burst: u32,
}

impl Gcra {
    /// GCRA for a quota (rate and burst).
    #[inline]
    pub fn new(q: &Quota) -> Self {
        let t = q.emission_interval_ns();
        Self {
            t,
            per_t: Divisor::new(t),
            tau: t.saturating_mul(u64::from(q.burst())),
            burst: q.burst(),
        }
    }

    /// (T, τ) in ns, for the Redis scripts.
    pub(crate) fn params(&self) -> (u64, u64) {
        (self.t, self.tau)
    }

    /// The burst.
    #[inline]
    pub fn max_cost(&self) -> u32 {
        self.burst
    }

    /// See [`super::Algo::check`].
    #[inline]
    pub fn check(&self, tat: u64, now: Nanos, cost: u32) -> (u64, Verdict) {
        let base = tat.max(now);
        let inc = self.t.saturating_mul(u64::from(cost));
        let new = base.saturating_add(inc);
        // Earliest time at which `new` lies within τ of the clock.
        let allow_at = new.saturating_sub(self.tau);
        if allow_at <= now {
            let next_at = new.saturating_add(inc).saturating_sub(self.tau);
            let v = Verdict {
                allowed: true,
                remaining: self.per_t.div(until(now.saturating_add(self.tau), new)),
                reset_after: until(new, now),
                retry_after: until(next_at, now),
                ..Verdict::default()
            };
            (new, v)
        } else {
            let v = Verdict {
                allowed: false,
                remaining: self.per_t.div(until(now.saturating_add(self.tau), base)),
                reset_after: until(base, now),
                retry_after: allow_at - now,
                ..Verdict::default()
            };
            (tat, v)
        }
    }

    /// See [`super::Algo::penalize`].
    #[inline]
    pub fn penalize(&self, tat: u64, now: Nanos, cost: u32) -> u64 {
        let base = tat.max(now);
        let full = base.max(now.saturating_add(self.tau));
        base.saturating_add(self.t.saturating_mul(u64::from(cost)))
            .min(full)
    }

    /// See [`super::Algo::refund`].
    #[inline]
    pub fn refund(&self, tat: u64, now: Nanos, cost: u32) -> u64 {
        if tat <= now {
            return tat;
        }
        tat.saturating_sub(self.t.saturating_mul(u64::from(cost)))
            .max(now)
    }

    /// See [`super::Algo::recovered`].
    #[inline]
    pub fn recovered(&self, tat: u64, now: Nanos) -> bool {
        tat <= now
    }
}
