//! Abuse visibility: the keys limited most (a Space-Saving sketch in fixed memory) and a bounded
//! log of recent denials, kept in the store so that they outlive the process.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::core::stats::{Striped, StripedCounter};
use crate::core::topk::{Counted, TopK};
use crate::store::{Store, StoreError};

/// A denial, as kept in the log of recent denials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// The key, e.g. `ip:203.0.113.9` or `principal:alice`.
    pub key: String,
    /// The policy.
    pub policy: String,
    /// The route's `match`.
    pub route: String,
    /// When, in Unix milliseconds (the gate's clock).
    pub at_unix_ms: u64,
}

/// A key among the most limited, with its estimated count of denials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offender {
    /// The key.
    pub key: String,
    /// Denials counted (an overestimate by at most `error`).
    pub denials: u64,
    /// The most the count may overestimate.
    pub error: u64,
}

/// How many keys the heavy-hitters sketch follows.
pub const TOP_KEYS: usize = 32;
/// How many denials the log keeps.
pub const RECENT_DENIALS: usize = 256;

/// The most limited keys (a Space-Saving sketch of `TOP_KEYS` counters).
struct TopKeys(TopK<String>);

impl Default for TopKeys {
    fn default() -> Self {
        Self(TopK::new(TOP_KEYS))
    }
}

impl TopKeys {
    fn top(&self) -> Vec<Offender> {
        let offender = |c: Counted<String>| Offender {
            key: c.key,
            denials: c.count,
            error: c.error,
        };
        self.0.top().into_iter().map(offender).collect()
    }
}

#[derive(Default)]
pub(super) struct Abuse {
    top: Mutex<TopKeys>,
    recent: Mutex<VecDeque<Denial>>,
    pub(super) unrouted: StripedCounterCell,
    pub(super) preflights: StripedCounterCell,
    pub(super) cors_refused: StripedCounterCell,
    /// Denials the sketch or the log left out because another thread held it.
    pub(super) unlogged: StripedCounterCell,
    /// Requests refused because a limit keyed by address found no client address.
    pub(super) no_client: StripedCounterCell,
    /// CORS refusals by reason (`REFUSAL_REASONS`, then any other), then preflights refused.
    pub(super) refusals: Refusals,
    /// A denial since the log was last written to the store.
    dirty: AtomicBool,
    /// When the log was last written (gate clock, ns).
    saved_at: AtomicU64,
}

/// The name of the log among the store's records.
const RECORD: &str = "gate/abuse";

/// The most often a denial writes the log to the store (1 s): an attacker's flood of denials
/// costs one store write per second, on the denied requests.
const SAVE_EVERY_NS: u64 = 1_000_000_000;

/// The log as the store keeps it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    top_limited: Vec<Offender>,
    recent_denials: Vec<Denial>,
}

/// The reasons CORS refusals are counted by: [`crate::cors::CorsRefusal::code`]'s codes.
pub(super) const REFUSAL_REASONS: [&str; 9] = [
    "origin_not_allowed",
    "private_network_not_allowed",
    "invalid_method",
    "method_not_allowed",
    "invalid_header_name",
    "header_not_allowed",
    "authorization_not_covered_by_wildcard",
    "request_headers_too_long",
    "too_many_request_headers",
];
/// Refusals whose code is not listed above (a reason added to the CORS engine later).
pub(super) const OTHER_REFUSAL: usize = REFUSAL_REASONS.len();
const PREFLIGHT_REFUSED: usize = OTHER_REFUSAL + 1;

/// CORS refusals by reason and preflights refused, in one striped block.
pub(super) struct Refusals(Striped<{ PREFLIGHT_REFUSED + 1 }>);

impl Default for Refusals {
    fn default() -> Self {
        Self(Striped::new())
    }
}

impl Refusals {
    /// Counts a refusal with its reason's code. Out of line: the string matching stays off
    /// the path of requests CORS lets through.
    #[cold]
    #[inline(never)]
    pub(super) fn add(&self, code: &str, preflight: bool) {
        let reason = REFUSAL_REASONS
            .iter()
            .position(|r| *r == code)
            .unwrap_or(OTHER_REFUSAL);
        match preflight {
            true => self.0.add(&[reason, PREFLIGHT_REFUSED], 1),
            false => self.0.add(&[reason], 1),
        }
    }

    /// Refusals of reason `i` (`OTHER_REFUSAL` for the unlisted ones).
    pub(super) fn by_reason(&self, i: usize) -> u64 {
        self.0.sum(i)
    }

    /// Preflights refused.
    pub(super) fn preflights(&self) -> u64 {
        self.0.sum(PREFLIGHT_REFUSED)
    }
}

pub(super) struct StripedCounterCell(pub(super) StripedCounter);

impl Default for StripedCounterCell {
    fn default() -> Self {
        Self(StripedCounter::new())
    }
}

impl Abuse {
    /// The log a store kept, or an empty one. A record that cannot be read starts an empty
    /// log (it is overwritten at the next save): the log informs, the counters protect.
    pub(super) fn restore(store: Option<&dyn Store>) -> Result<Self, StoreError> {
        let abuse = Abuse::default();
        let Some(bytes) = store.map(|s| s.record(RECORD)).transpose()?.flatten() else {
            return Ok(abuse);
        };
        let record: Record = serde_json::from_slice(&bytes).unwrap_or_default();
        let kept = record.top_limited.into_iter().map(|o| Counted {
            key: o.key,
            count: o.denials,
            error: o.error,
        });
        *abuse.top.lock() = TopKeys(TopK::from_counts(TOP_KEYS, kept.collect()));
        let skip = record.recent_denials.len().saturating_sub(RECENT_DENIALS);
        abuse
            .recent
            .lock()
            .extend(record.recent_denials.into_iter().skip(skip));
        Ok(abuse)
    }

    /// The keys limited most, most first.
    pub(super) fn top(&self) -> Vec<Offender> {
        self.top.lock().top()
    }

    /// The latest denials, oldest first.
    pub(super) fn recent(&self) -> Vec<Denial> {
        self.recent.lock().iter().cloned().collect()
    }

    /// Writes the log to the store if a denial changed it.
    pub(super) fn save(&self, store: &dyn Store, now: u64) -> Result<(), StoreError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        self.saved_at.store(now, Ordering::Relaxed);
        let record = Record {
            top_limited: self.top(),
            recent_denials: self.recent(),
        };
        let bytes = serde_json::to_vec(&record).unwrap_or_default();
        store.set_record(RECORD, &bytes).inspect_err(|_| {
            // Try again at the next denial or close.
            self.dirty.store(true, Ordering::Release);
        })
    }

    /// After a denial: writes the log if the last write is a second old. One caller wins.
    pub(super) fn save_now_and_then(&self, store: &dyn Store, now: u64) {
        let last = self.saved_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= SAVE_EVERY_NS
            && self
                .saved_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // A failed write stays dirty and is tried again; the denial itself stands.
            let _ = self.save(store, now);
        }
    }

    /// Records a denial. It never waits: when another thread is recording one at the same
    /// moment, this one is left out of the sketch or the log (and counted), so a flood of
    /// denials spread over a server's workers does not queue on a lock. The limits' counters
    /// count every denial regardless.
    pub(super) fn deny(&self, key: &str, policy: &str, route: &str, now: u64) {
        let mut left_out = false;
        match self.top.try_lock() {
            Some(mut top) => top.0.add(key),
            None => left_out = true,
        }
        match self.recent.try_lock() {
            Some(mut recent) => {
                if recent.len() == RECENT_DENIALS {
                    recent.pop_front();
                }
                recent.push_back(Denial {
                    key: key.to_owned(),
                    policy: policy.to_owned(),
                    route: route.to_owned(),
                    at_unix_ms: now / 1_000_000,
                });
            }
            None => left_out = true,
        }
        if left_out {
            self.unlogged.0.add(1);
        }
        self.dirty.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A denial recorded while another thread holds the sketch or the log is left out and
    /// counted, instead of waiting (held here by the same thread, which would otherwise
    /// deadlock).
    #[test]
    fn a_denial_never_waits_for_the_log() {
        let abuse = Abuse::default();
        abuse.deny("ip:a", "p", "/", 1_000_000);
        {
            let _held = abuse.recent.lock();
            abuse.deny("ip:b", "p", "/", 2_000_000);
        }
        {
            let _held = abuse.top.lock();
            abuse.deny("ip:c", "p", "/", 3_000_000);
        }
        assert_eq!(abuse.unlogged.0.get(), 2);
        let keys: Vec<_> = abuse.recent().into_iter().map(|d| d.key).collect();
        assert_eq!(keys, ["ip:a", "ip:c"]);
        let top: Vec<_> = abuse.top().into_iter().map(|o| o.key).collect();
        assert_eq!(top, ["ip:a", "ip:b"]);
    }
}
