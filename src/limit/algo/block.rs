//! Block duration on top of any algorithm: once a key is denied, it stays denied for `block`.
//!
//! A blocked key's state is `BLOCKED | until`. The block lasts at least `block` and at least
//! until the algorithm itself would have fully recovered, so a block never ends in a state looser
//! than the one it replaced; when it ends, the key is fresh.

use super::{until, Algo, Step, Verdict};
use crate::core::clock::Nanos;
use crate::core::table::LIMITED;

/// The block flag of a state (`BLOCKED | until`).
pub(crate) const BLOCKED: u64 = 1 << 63;

/// An algorithm with its optional block duration: the unit the limiter applies to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The algorithm.
    pub algo: Algo,
    /// Block duration in ns; zero for none.
    pub block: u64,
}

/// The end of a block still in force.
fn blocked_until(state: u64, now: Nanos) -> Option<Nanos> {
    if state & BLOCKED == 0 {
        return None;
    }
    let t = state & !BLOCKED;
    (now < t).then_some(t)
}

/// A state whose block has ended is a fresh key.
fn unblocked(state: u64) -> u64 {
    if state & BLOCKED == 0 {
        state
    } else {
        0
    }
}

fn blocked_verdict(until_t: Nanos, now: Nanos) -> Verdict {
    Verdict {
        allowed: false,
        remaining: 0,
        reset_after: until(until_t, now),
        retry_after: until(until_t, now),
        ..Verdict::default()
    }
}

impl Rule {
    /// Whether a state is a block in force.
    #[inline]
    pub fn is_blocked(&self, state: u64, now: Nanos) -> bool {
        blocked_until(state, now).is_some()
    }

    #[inline]
    fn block_from(&self, now: Nanos, v: &Verdict) -> (u64, Verdict) {
        let t = now
            .saturating_add(self.block.max(v.reset_after))
            .min(BLOCKED - 1);
        (BLOCKED | t, blocked_verdict(t, now))
    }

    /// Decides and consumes.
    #[inline(always)]
    pub fn check(&self, state: u64, now: Nanos, cost: u32) -> (u64, Verdict) {
        self.check_with(&self.algo, state, now, cost)
    }

    /// [`Rule::check`] with the rule's algorithm given by the caller (`algo` must be
    /// `self.algo`, or the variant it holds), so a caller that matched it once runs a
    /// monomorphic step.
    #[inline(always)]
    pub fn check_with<A: Step>(
        &self,
        algo: &A,
        state: u64,
        now: Nanos,
        cost: u32,
    ) -> (u64, Verdict) {
        if let Some(t) = blocked_until(state, now) {
            return (state, blocked_verdict(t, now));
        }
        let (s, v) = algo.check(unblocked(state), now, cost);
        if !v.allowed && self.block > 0 {
            return self.block_from(now, &v);
        }
        (s, v)
    }

    /// What a request would get, consuming nothing.
    #[inline]
    pub fn peek(&self, state: u64, now: Nanos, cost: u32) -> Verdict {
        match blocked_until(state, now) {
            Some(t) => blocked_verdict(t, now),
            None => self.algo.check(unblocked(state), now, cost).1,
        }
    }

    /// Consumes `cost` whatever the verdict; a key left exhausted is blocked.
    #[inline]
    pub fn penalize(&self, state: u64, now: Nanos, cost: u32) -> u64 {
        if blocked_until(state, now).is_some() {
            return state;
        }
        let s = self.algo.penalize(unblocked(state), now, cost);
        if self.block > 0 {
            let v = self.algo.check(s, now, 1).1;
            if !v.allowed {
                return self.block_from(now, &v).0;
            }
        }
        s
    }

    /// Gives back `cost`; a block stays in force (only a reset lifts it).
    #[inline]
    pub fn refund(&self, state: u64, now: Nanos, cost: u32) -> u64 {
        if blocked_until(state, now).is_some() {
            return state;
        }
        self.algo.refund(unblocked(state), now, cost)
    }

    /// Returns concurrency leases; other algorithms ignore it.
    #[inline]
    pub fn release(&self, state: u64, now: Nanos, epoch: u32, cost: u32) -> u64 {
        match (&self.algo, blocked_until(state, now)) {
            (Algo::Concurrency(c), None) => c.release(unblocked(state), now, epoch, cost),
            _ => state,
        }
    }

    /// The state holds nothing any more.
    #[inline]
    pub fn recovered(&self, state: u64, now: Nanos) -> bool {
        if state & BLOCKED != 0 {
            return blocked_until(state, now).is_none();
        }
        self.algo.recovered(state, now)
    }

    /// What forgetting a key would give back, the eviction order when a table is full (the
    /// least valuable first). Three classes, each above every value of the one before:
    ///
    /// * a key a request could still pass: the units it has used (a key at 4 of 5 is worth more
    ///   than a one-request key);
    /// * a key that is being denied ([`crate::core::table::LIMITED`] and up): the time until it
    ///   has fully recovered;
    /// * a blocked key: above that, the time its block has left.
    ///
    /// So a flood of one-request keys never frees a limited or blocked key while a key that is
    /// not limited is a candidate.
    #[inline]
    pub fn debt(&self, state: u64, now: Nanos) -> u64 {
        const SPAN: u64 = LIMITED - 1;
        if let Some(t) = blocked_until(state, now) {
            return BLOCKED_DEBT | (t - now).min(SPAN);
        }
        if self.algo.recovered(unblocked(state), now) {
            return 0;
        }
        let v = self.peek(state, now, 0);
        if v.remaining == 0 {
            return LIMITED | v.reset_after.min(SPAN);
        }
        u64::from(self.algo.max_cost()).saturating_sub(v.remaining)
    }
}

/// Debts of blocked keys start here (see [`Rule::debt`]).
const BLOCKED_DEBT: u64 = LIMITED << 1;
