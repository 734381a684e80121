//! Whether a Redis server answers: after a failed call it is *down* and every call fails at
//! once, without the network, until a backoff has passed (exponential from 50 ms, capped at
//! 2 s); then one caller probes, and a success brings it back for everyone.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Failure;

const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_CAP: Duration = Duration::from_secs(2);

pub(super) struct Health {
    epoch: Instant,
    /// Nanoseconds since `epoch` until which calls fail at once; 0 when up.
    down_until: AtomicU64,
    /// Consecutive failed attempts (the backoff's exponent).
    failures_in_row: AtomicU32,
    /// One caller probes after a backoff; the others keep failing fast.
    probing: AtomicBool,
    last_failure: parking_lot::Mutex<String>,
    pub(super) failures: AtomicU64,
    pub(super) skipped: AtomicU64,
}

impl Health {
    pub(super) fn new() -> Self {
        Health {
            epoch: Instant::now(),
            down_until: AtomicU64::new(0),
            failures_in_row: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            last_failure: parking_lot::Mutex::new(String::new()),
            failures: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    pub(super) fn is_down(&self) -> bool {
        self.down_until.load(Ordering::Relaxed) != 0
    }

    fn elapsed(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The failure a call gets while the server is down.
    #[cold]
    fn fail_fast(&self, until: u64, now: u64) -> Failure {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        Failure {
            detail: self.last_failure.lock().clone(),
            retry_in: Duration::from_nanos(until.saturating_sub(now)),
        }
    }

    /// Whether a call may go to the server now: `Ok(true)` for the one probe after a backoff,
    /// `Ok(false)` when it is up, `Err` (no network) while backing off.
    pub(super) fn gate(&self) -> Result<bool, Failure> {
        let until = self.down_until.load(Ordering::Acquire);
        if until == 0 {
            return Ok(false);
        }
        let now = self.elapsed();
        if now < until {
            return Err(self.fail_fast(until, now));
        }
        // The backoff is over: one caller probes, the rest keep failing without the network.
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Err(self.fail_fast(now, now));
        }
        Ok(true)
    }

    /// The server answered: it is up.
    pub(super) fn answered(&self, probe: bool) {
        if probe || self.down_until.load(Ordering::Relaxed) != 0 {
            self.failures_in_row.store(0, Ordering::Relaxed);
            self.down_until.store(0, Ordering::Release);
        }
        if probe {
            self.probing.store(false, Ordering::Release);
        }
    }

    /// Records a call's outcome: a success brings the server back, a failure starts (or
    /// extends) the backoff.
    pub(super) fn settle<T>(&self, result: Result<T, String>, probe: bool) -> Result<T, Failure> {
        match result {
            Ok(v) => {
                self.answered(probe);
                Ok(v)
            }
            // The server answered, about this key only (another program wrote a key of another
            // type under the prefix): this call falls back, the server stays up for every other
            // key.
            Err(detail) if detail.starts_with("WRONGTYPE") => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.answered(probe);
                Err(Failure {
                    detail,
                    retry_in: Duration::ZERO,
                })
            }
            Err(detail) => Err(self.went_down(detail, probe)),
        }
    }

    #[cold]
    fn went_down(&self, detail: String, probe: bool) -> Failure {
        self.failures.fetch_add(1, Ordering::Relaxed);
        // The calls of one failed batch, or of threads failing together, are one failure of
        // the server: only a failure while up, or of a probe, lengthens the backoff.
        let already = self.down_until.load(Ordering::Acquire) > self.elapsed();
        let n = match already && !probe {
            true => self
                .failures_in_row
                .load(Ordering::Relaxed)
                .saturating_sub(1),
            false => self.failures_in_row.fetch_add(1, Ordering::Relaxed),
        }
        .min(16);
        let backoff = BACKOFF_FIRST
            .saturating_mul(1u32 << n.min(10))
            .min(BACKOFF_CAP);
        let until = self.elapsed() + u64::try_from(backoff.as_nanos()).unwrap_or(u64::MAX);
        *self.last_failure.lock() = detail.clone();
        self.down_until.fetch_max(until, Ordering::AcqRel);
        if probe {
            self.probing.store(false, Ordering::Release);
        }
        Failure {
            detail,
            retry_in: backoff,
        }
    }
}
