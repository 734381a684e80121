//! Sliding window counter: the previous window's count, weighted by how much of it still
//! overlaps a window ending now, plus the current window's count.
//!
//! Estimate at elapsed time `e` into the current window of length `p`:
//! `⌈prev·(p − e)/p⌉ + cur`, rounded up so the estimate never undercounts.

use super::window::pair;
use super::{until, Divisor, Verdict};
use crate::core::clock::Nanos;

/// Sliding-window parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlidingWindow {
    period: u64,
    per: Divisor,
    limit: u32,
}

impl SlidingWindow {
    /// The largest limit the packed state can count.
    pub const MAX_LIMIT: u32 = pair::MAX_COUNT as u32;

    /// `limit` units per sliding `period` ns (the caller checks the bounds).
    #[inline]
    pub fn new(limit: u32, period: u64) -> Self {
        Self {
            period: period.max(1),
            per: Divisor::new(period),
            limit,
        }
    }

    /// (window in ns, limit), for the Redis scripts.
    pub(crate) fn params(&self) -> (u64, u32) {
        (self.period, self.limit)
    }

    /// The limit.
    #[inline]
    pub fn max_cost(&self) -> u32 {
        self.limit
    }

    #[inline]
    fn weighted(&self, prev: u64, elapsed: u64) -> u64 {
        let p = u128::from(self.period);
        let x = u128::from(prev) * (p - u128::from(elapsed.min(self.period)));
        u64::try_from(x.div_ceil(p)).unwrap_or(u64::MAX)
    }

    /// Earliest time a request of `cost` fits, given counts `cur`, `prev` of window `ew`.
    #[inline]
    fn allowed_at(&self, ew: u64, cur: u64, prev: u64, cost: u64) -> Nanos {
        let p = self.period;
        let limit = u64::from(self.limit);
        let start = ew.saturating_mul(p);
        // Elapsed time into a window from which `weight·(p−e)/p` (rounded up) fits in `room`.
        let need = |weight: u64, room: u64| -> u64 {
            if weight == 0 {
                return 0;
            }
            let fits = u128::from(room) * u128::from(p) / u128::from(weight);
            p - u64::try_from(fits.min(u128::from(p))).unwrap_or(p)
        };
        if cur + cost <= limit {
            start.saturating_add(need(prev, limit - cur - cost))
        } else {
            // Only in the next window, where this window's count becomes the weighted one.
            start
                .saturating_add(p)
                .saturating_add(need(cur, limit.saturating_sub(cost)))
        }
    }

    #[inline]
    fn reset_at(&self, ew: u64, cur: u64, prev: u64) -> Nanos {
        let windows = if cur > 0 {
            2
        } else if prev > 0 {
            1
        } else {
            return 0;
        };
        ew.saturating_add(windows).saturating_mul(self.period)
    }

    /// See [`super::Algo::check`].
    #[inline]
    pub fn check(&self, state: u64, now: Nanos, cost: u32) -> (u64, Verdict) {
        let (ew, cur, prev, now_e) = pair::roll(state, self.per.div(now), self.period, now);
        let elapsed = now_e - ew.saturating_mul(self.period);
        let estimate = self.weighted(prev, elapsed) + cur;
        let limit = u64::from(self.limit);
        let cost = u64::from(cost);
        if estimate + cost <= limit {
            let cur = cur + cost;
            let v = Verdict {
                allowed: true,
                remaining: limit - estimate - cost,
                reset_after: until(self.reset_at(ew, cur, prev), now),
                retry_after: until(self.allowed_at(ew, cur, prev, cost), now),
                ..Verdict::default()
            };
            (pair::pack(ew, cur, prev), v)
        } else {
            let v = Verdict {
                allowed: false,
                remaining: limit.saturating_sub(estimate),
                reset_after: until(self.reset_at(ew, cur, prev), now),
                retry_after: until(self.allowed_at(ew, cur, prev, cost), now),
                ..Verdict::default()
            };
            (state, v)
        }
    }

    /// See [`super::Algo::penalize`].
    #[inline]
    pub fn penalize(&self, state: u64, now: Nanos, cost: u32) -> u64 {
        let (ew, cur, prev, _) = pair::roll(state, self.per.div(now), self.period, now);
        pair::pack(ew, (cur + u64::from(cost)).min(u64::from(self.limit)), prev)
    }

    /// See [`super::Algo::refund`].
    #[inline]
    pub fn refund(&self, state: u64, now: Nanos, cost: u32) -> u64 {
        let (ew, cur, prev, _) = pair::roll(state, self.per.div(now), self.period, now);
        pair::pack(ew, cur.saturating_sub(u64::from(cost)), prev)
    }

    /// See [`super::Algo::recovered`].
    #[inline]
    pub fn recovered(&self, state: u64, now: Nanos) -> bool {
        let (_, cur, prev, _) = pair::roll(state, self.per.div(now), self.period, now);
        cur == 0 && prev == 0
    }
}
