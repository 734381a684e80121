//! Leaky bucket as a shaper: instead of refusing a burst, it spaces requests out.
//!
//! The state is the time at which the next request may start without waiting. A request starts
//! at `max(state, now)`; the wait is its `delay`, allowed up to `max_delay`, refused beyond.
//! With `max_delay = (burst − 1)·T`, a fresh key gets `burst` requests accepted at once, the
//! k-th of them delayed by `(k − 1)·T`.

use super::{until, Divisor, Verdict};
use crate::core::clock::Nanos;

/// Leaky-bucket shaping parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Leaky {
    t: u64,
    per_t: Divisor,
    max_delay: u64,
}

impl Leaky {
    /// One unit every `t` ns, queueing up to `max_delay` ns.
    #[inline]
    pub fn new(t: u64, max_delay: u64) -> Self {
        Self {
            t: t.max(1),
            per_t: Divisor::new(t),
            max_delay,
        }
    }

    /// (T, max delay) in ns, for the Redis scripts.
    pub(crate) fn params(&self) -> (u64, u64) {
        (self.t, self.max_delay)
    }

    /// Requests of cost 1 a fresh key may have accepted at once.
    #[inline]
    pub fn max_cost(&self) -> u32 {
        u32::try_from(self.max_delay / self.t + 1).unwrap_or(u32::MAX)
    }

    #[inline]
    fn accepted_after(&self, free_at: Nanos, now: Nanos) -> u64 {
        let wait = until(free_at, now);
        if wait > self.max_delay {
            0
        } else {
            self.per_t.div(self.max_delay - wait) + 1
        }
    }

    /// See [`super::Algo::check`].
    #[inline]
    pub fn check(&self, free_at: u64, now: Nanos, cost: u32) -> (u64, Verdict) {
        let start = free_at.max(now);
        let delay = start - now;
        // The request may start once its wait is at most max_delay.
        let allow_at = start.saturating_sub(self.max_delay);
        if delay <= self.max_delay {
            let new = start.saturating_add(self.t.saturating_mul(u64::from(cost)));
            let v = Verdict {
                allowed: true,
                remaining: self.accepted_after(new, now),
                reset_after: until(new, now),
                retry_after: until(new.saturating_sub(self.max_delay), now),
                delay,
                lease_epoch: 0,
            };
            (new, v)
        } else {
            let v = Verdict {
                allowed: false,
                remaining: 0,
                reset_after: delay,
                retry_after: allow_at - now,
                ..Verdict::default()
            };
            (free_at, v)
        }
    }

    /// See [`super::Algo::penalize`].
    #[inline]
    pub fn penalize(&self, free_at: u64, now: Nanos, cost: u32) -> u64 {
        let start = free_at.max(now);
        let full = start.max(now.saturating_add(self.max_delay).saturating_add(self.t));
        start
            .saturating_add(self.t.saturating_mul(u64::from(cost)))
            .min(full)
    }

    /// See [`super::Algo::refund`].
    #[inline]
    pub fn refund(&self, free_at: u64, now: Nanos, cost: u32) -> u64 {
        if free_at <= now {
            return free_at;
        }
        free_at
            .saturating_sub(self.t.saturating_mul(u64::from(cost)))
            .max(now)
    }

    /// See [`super::Algo::recovered`].
    #[inline]
    pub fn recovered(&self, free_at: u64, now: Nanos) -> bool {
        free_at <= now
    }
}
