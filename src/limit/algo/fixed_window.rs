//! Fixed window: at most `limit` units per aligned window of the Unix clock.

use super::window::{effective, locate, single, Position};
use super::{until, Divisor, Verdict};
use crate::core::clock::Nanos;

/// Fixed-window parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedWindow {
    period: u64,
    per: Divisor,
    limit: u32,
}

impl FixedWindow {
    /// The largest limit the packed state can count.
    pub const MAX_LIMIT: u32 = single::MAX_COUNT as u32;

    /// `limit` units per `period` ns (the caller checks the bounds).
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

    /// (window end, count in force, effective window).
    #[inline]
    fn current(&self, state: u64, now: Nanos) -> (Nanos, u64, u64) {
        let w = self.per.div(now);
        let (idx, count) = single::unpack(state);
        if count == 0 {
            // Nothing counted: a fresh key, whatever window it names.
            return (w.saturating_add(1).saturating_mul(self.period), 0, w);
        }
        let pos = locate(idx, w, single::IDX_BITS);
        let (ew, _) = effective(pos, w, self.period, now);
        let count = match pos {
            Position::Current | Position::Ahead(_) => count,
            Position::Past(_) => 0,
        };
        (ew.saturating_add(1).saturating_mul(self.period), count, ew)
    }

    /// See [`super::Algo::check`].
    #[inline]
    pub fn check(&self, state: u64, now: Nanos, cost: u32) -> (u64, Verdict) {
        let (end, count, ew) = self.current(state, now);
        let limit = u64::from(self.limit);
        let cost = u64::from(cost);
        if count + cost <= limit {
            let used = count + cost;
            let remaining = limit - used;
            let v = Verdict {
                allowed: true,
                remaining,
                reset_after: if used > 0 { until(end, now) } else { 0 },
                retry_after: if remaining >= cost {
                    0
                } else {
                    until(end, now)
                },
                ..Verdict::default()
            };
            (single::pack(ew, used), v)
        } else {
            let v = Verdict {
                allowed: false,
                remaining: limit.saturating_sub(count),
                reset_after: until(end, now),
                retry_after: until(end, now),
                ..Verdict::default()
            };
            (state, v)
        }
    }

    /// See [`super::Algo::penalize`].
    #[inline]
    pub fn penalize(&self, state: u64, now: Nanos, cost: u32) -> u64 {
        let (_, count, ew) = self.current(state, now);
        single::pack(ew, (count + u64::from(cost)).min(u64::from(self.limit)))
    }

    /// See [`super::Algo::refund`].
    #[inline]
    pub fn refund(&self, state: u64, now: Nanos, cost: u32) -> u64 {
        let (_, count, ew) = self.current(state, now);
        single::pack(ew, count.saturating_sub(u64::from(cost)))
    }

    /// See [`super::Algo::recovered`].
    #[inline]
    pub fn recovered(&self, state: u64, now: Nanos) -> bool {
        self.current(state, now).1 == 0
    }
}
