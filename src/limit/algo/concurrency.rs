//! Concurrency limit: at most `max` leases in flight per key.
//!
//! Leases are counted per epoch of `lease_timeout`: this epoch's and the previous one's. A lease
//! is released into the epoch it was taken in; a lease never released is dropped when its epoch
//! falls out of the pair, i.e. between one and two lease timeouts after it was taken (never
//! earlier, so a slow request is not counted out while it still runs).

use super::window::pair;
use super::{until, Divisor, Verdict};
use crate::core::clock::Nanos;

/// Concurrency-limit parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concurrency {
    max: u32,
    timeout: u64,
    per: Divisor,
}

impl Concurrency {
    /// The largest `max` the packed state can count.
    pub const MAX_LIMIT: u32 = pair::MAX_COUNT as u32;

    /// `max` leases in flight, each expiring after `timeout` ns to `2·timeout` ns.
    #[inline]
    pub fn new(max: u32, timeout: u64) -> Self {
        Self {
            max,
            timeout: timeout.max(1),
            per: Divisor::new(timeout),
        }
    }

    /// (lease timeout in ns, maximum), for the Redis scripts.
    pub(crate) fn params(&self) -> (u64, u32) {
        (self.timeout, self.max)
    }

    /// The maximum in flight.
    #[inline]
    pub fn max_cost(&self) -> u32 {
        self.max
    }

    #[inline]
    fn roll(&self, state: u64, now: Nanos) -> (u64, u64, u64) {
        let (ew, cur, prev, _) = pair::roll(state, self.per.div(now), self.timeout, now);
        (ew, cur, prev)
    }

    /// When enough leases will have expired for `cost` more to fit.
    #[inline]
    fn free_at(&self, ew: u64, cur: u64, cost: u64) -> Nanos {
        let epochs = if cur + cost <= u64::from(self.max) {
            1
        } else {
            2
        };
        ew.saturating_add(epochs).saturating_mul(self.timeout)
    }

    /// Takes `cost` leases; see [`super::Algo::check`]. The verdict carries the lease epoch.
    #[inline]
    pub fn check(&self, state: u64, now: Nanos, cost: u32) -> (u64, Verdict) {
        let (ew, cur, prev) = self.roll(state, now);
        let max = u64::from(self.max);
        let cost = u64::from(cost);
        let in_flight = cur + prev;
        if in_flight + cost <= max {
            let cur = cur + cost;
            let remaining = max - in_flight - cost;
            let v = Verdict {
                allowed: true,
                remaining,
                reset_after: until(ew.saturating_add(2).saturating_mul(self.timeout), now),
                retry_after: if remaining >= cost {
                    0
                } else {
                    until(self.free_at(ew, cur, cost), now)
                },
                delay: 0,
                lease_epoch: (ew & ((1 << pair::IDX_BITS) - 1)) as u32,
            };
            (pair::pack(ew, cur, prev), v)
        } else {
            let reset = if cur > 0 { 2 } else { 1 };
            let v = Verdict {
                allowed: false,
                remaining: max.saturating_sub(in_flight),
                reset_after: until(ew.saturating_add(reset).saturating_mul(self.timeout), now),
                retry_after: until(self.free_at(ew, cur, cost), now),
                ..Verdict::default()
            };
            (state, v)
        }
    }

    /// Returns `cost` leases taken in `epoch`; a lease whose epoch has expired is ignored.
    #[inline]
    pub fn release(&self, state: u64, now: Nanos, epoch: u32, cost: u32) -> u64 {
        let (ew, cur, prev) = self.roll(state, now);
        let mask = (1u64 << pair::IDX_BITS) - 1;
        let cost = u64::from(cost);
        let e = u64::from(epoch);
        if e == ew & mask {
            pair::pack(ew, cur.saturating_sub(cost), prev)
        } else if e == ew.wrapping_sub(1) & mask {
            pair::pack(ew, cur, prev.saturating_sub(cost))
        } else {
            state
        }
    }

    /// Counts `cost` extra leases held (they expire like any lease).
    #[inline]
    pub fn penalize(&self, state: u64, now: Nanos, cost: u32) -> u64 {
        let (ew, cur, prev) = self.roll(state, now);
        let room = u64::from(self.max).saturating_sub(prev);
        pair::pack(ew, (cur + u64::from(cost)).min(room), prev)
    }

    /// Gives back `cost` leases of the current epoch.
    #[inline]
    pub fn refund(&self, state: u64, now: Nanos, cost: u32) -> u64 {
        let (ew, cur, prev) = self.roll(state, now);
        pair::pack(ew, cur.saturating_sub(u64::from(cost)), prev)
    }

    /// See [`super::Algo::recovered`].
    #[inline]
    pub fn recovered(&self, state: u64, now: Nanos) -> bool {
        let (_, cur, prev) = self.roll(state, now);
        cur == 0 && prev == 0
    }
}
