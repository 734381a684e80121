//! Pure decision math. Every algorithm maps `(state, now, cost)` to `(new state, verdict)` over
//! one packed `u64`; none knows where the word lives or who else is updating it.
//!
//! All times are Unix-epoch nanoseconds. Bit 63 of every state is reserved for the block flag
//! (see [`Rule`]), so algorithm states stay below 2^63.

mod block;
mod concurrency;
mod fixed_window;
mod gcra;
mod leaky;
mod sliding_window;
pub(crate) mod window;

pub use block::Rule;
pub(crate) use block::BLOCKED;
pub use concurrency::Concurrency;
pub use fixed_window::FixedWindow;
pub use gcra::Gcra;
pub use leaky::Leaky;
pub use sliding_window::SlidingWindow;

use crate::core::clock::Nanos;

/// What an algorithm says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// The request may proceed (possibly after `delay`).
    pub allowed: bool,
    /// Units still available right after this decision.
    pub remaining: u64,
    /// Nanoseconds until the key has fully recovered.
    pub reset_after: u64,
    /// Denied: nanoseconds until this request would be allowed. Allowed: nanoseconds until
    /// another request of the same cost would be (zero if it would be now).
    pub retry_after: u64,
    /// Nanoseconds the caller must wait before proceeding (shaping only).
    pub delay: u64,
    /// Concurrency only: the lease epoch of an admitted request.
    pub lease_epoch: u32,
}

/// One algorithm's decision step, for code that picks the algorithm once and then runs a tight
/// loop over it (the limiter's CAS loop is compiled once per algorithm this way).
pub trait Step {
    /// Decides a request of `cost` and returns the state to store if it changed.
    fn check(&self, state: u64, now: Nanos, cost: u32) -> (u64, Verdict);
}

macro_rules! step {
    ($($t:ty),*) => {$(
        impl Step for $t {
            #[inline(always)]
            fn check(&self, state: u64, now: Nanos, cost: u32) -> (u64, Verdict) {
                <$t>::check(self, state, now, cost)
            }
        }
    )*};
}
step!(Gcra, FixedWindow, SlidingWindow, Leaky, Concurrency, Algo);

/// The algorithms, dispatched without a virtual call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algo {
    /// Generic cell rate algorithm with token-bucket semantics.
    Gcra(Gcra),
    /// Fixed window counter.
    FixedWindow(FixedWindow),
    /// Sliding window counter (previous window weighted by overlap).
    SlidingWindow(SlidingWindow),
    /// Leaky bucket as a shaper: allowed with a delay.
    Leaky(Leaky),
    /// In-flight leases.
    Concurrency(Concurrency),
}

macro_rules! dispatch {
    ($self:ident, $a:ident => $e:expr) => {
        match $self {
            Algo::Gcra($a) => $e,
            Algo::FixedWindow($a) => $e,
            Algo::SlidingWindow($a) => $e,
            Algo::Leaky($a) => $e,
            Algo::Concurrency($a) => $e,
        }
    };
}

impl Algo {
    /// The largest `remaining` a key can show: what a fresh key may use at once.
    #[inline]
    pub fn max_cost(&self) -> u32 {
        dispatch!(self, a => a.max_cost())
    }

    /// Decides a request of `cost` and returns the state to store if it changed.
    #[inline(always)]
    pub fn check(&self, state: u64, now: Nanos, cost: u32) -> (u64, Verdict) {
        dispatch!(self, a => a.check(state, now, cost))
    }

    /// Consumes `cost` whatever the verdict, saturating at "exhausted".
    #[inline]
    pub fn penalize(&self, state: u64, now: Nanos, cost: u32) -> u64 {
        dispatch!(self, a => a.penalize(state, now, cost))
    }

    /// Gives back `cost`, never below a fresh key.
    #[inline]
    pub fn refund(&self, state: u64, now: Nanos, cost: u32) -> u64 {
        dispatch!(self, a => a.refund(state, now, cost))
    }

    /// The state holds no information any more: the slot may be reused.
    #[inline]
    pub fn recovered(&self, state: u64, now: Nanos) -> bool {
        dispatch!(self, a => a.recovered(state, now))
    }
}

/// `a - b` for times, zero when `b` is later.
#[inline]
pub(crate) fn until(at: Nanos, now: Nanos) -> u64 {
    at.saturating_sub(now)
}

/// Division by a divisor fixed at construction, without a hardware divide on the hot path:
/// a multiply by the divisor's reciprocal gives the quotient or one or two less, and a
/// correction makes it exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Divisor {
    d: u64,
    m: u64,
}

impl Divisor {
    #[inline]
    pub(crate) const fn new(d: u64) -> Self {
        let d = if d == 0 { 1 } else { d };
        Self { d, m: u64::MAX / d }
    }

    /// `x / d`, exactly.
    #[inline]
    pub(crate) fn div(&self, x: u64) -> u64 {
        let mut q = ((u128::from(x) * u128::from(self.m)) >> 64) as u64;
        // m ≤ 2^64/d, so q ≤ x/d and falls short by at most two: two branch-free corrections.
        let mut r = x - q * self.d;
        let over = u64::from(r >= self.d);
        q += over;
        r -= over * self.d;
        q + u64::from(r >= self.d)
    }
}

#[cfg(test)]
mod divisor_tests {
    use super::Divisor;

    #[test]
    fn matches_hardware_division() {
        let ds = [
            1u64,
            2,
            3,
            7,
            10,
            1_000_000_007,
            36_000_000_000,
            u64::MAX / 3,
            u64::MAX,
        ];
        let xs = [
            0u64,
            1,
            2,
            99,
            1 << 40,
            1_700_000_000_000_000_000,
            u64::MAX - 1,
            u64::MAX,
        ];
        for d in ds {
            let dv = Divisor::new(d);
            for x in xs {
                assert_eq!(dv.div(x), x / d, "{x} / {d}");
            }
        }
    }
}
