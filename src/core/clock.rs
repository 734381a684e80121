//! Time sources. State holds Unix-epoch nanoseconds, so it means the same after a restart and
//! in another process; the clock only decides how cheaply "now" is read.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::sync::{AtomicU64, Ordering};

/// Nanoseconds since the Unix epoch.
pub type Nanos = u64;

/// A source of wall-clock time for limiter decisions.
///
/// Implementations must be cheap: the clock read is most of the cost of a check.
pub trait Clock: Send + Sync + 'static {
    /// Now, in nanoseconds since the Unix epoch.
    fn now(&self) -> Nanos;
}

fn system_now() -> Nanos {
    // A system clock set before 1970 is treated as the epoch: it can only make limits stricter.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The operating system's wall clock (`SystemTime::now`), read on every call.
///
/// Follows every adjustment of the system clock, at about 4x the cost of a CAS per read.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        system_now()
    }
}

/// The default clock: the wall clock read once at construction, advanced by the CPU's
/// time-stamp counter (through `quanta`, which falls back to the monotonic clock where the TSC
/// is not reliable).
///
/// A read costs a few nanoseconds instead of a system call's worth, and time never runs
/// backwards within a process. The price: later adjustments of the system clock (NTP steps) are
/// not followed until the next start, and the counter drifts from the system clock by the
/// oscillator's error (parts per million, i.e. well under a second a day). Persisted state is
/// compared against a fresh anchor at every start, and a state that appears to come from the
/// future only makes a key stricter, never looser.
#[derive(Debug, Clone)]
pub struct FastClock {
    clock: quanta::Clock,
    anchor_raw: u64,
    anchor_wall: Nanos,
}

impl FastClock {
    /// Anchors a new fast clock to the system clock now.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let anchor_raw = clock.raw();
        let anchor_wall = system_now();
        Self {
            clock,
            anchor_raw,
            anchor_wall,
        }
    }
}

impl Default for FastClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for FastClock {
    #[inline]
    fn now(&self) -> Nanos {
        let elapsed = self.clock.delta_as_nanos(self.anchor_raw, self.clock.raw());
        self.anchor_wall.saturating_add(elapsed)
    }
}

/// The cheapest clock: a word of wall-clock time refreshed every millisecond by one ticker
/// thread per process, read with a single relaxed load (about a nanosecond, against ten for a
/// TSC read on a virtual machine).
///
/// It lags real time by up to a tick, plus however late the ticker is scheduled: a lagging
/// clock only makes limits stricter (less time seems to have passed), and a `Retry-After` computed
/// from it is never early. Rates above a thousand per second per key refill in millisecond
/// steps, exactly on average. The ticker starts with the first `CoarseClock` and runs for the
/// life of the process; after `fork()` the child restarts its own on first use.
#[derive(Debug, Clone, Copy)]
pub struct CoarseClock(());

impl CoarseClock {
    /// The process's coarse clock (starts the ticker if needed).
    pub fn new() -> Self {
        crate::core::sync::coarse::ensure_ticking(ticker_source);
        Self(())
    }
}

impl Default for CoarseClock {
    fn default() -> Self {
        Self::new()
    }
}

fn ticker_source() -> Box<dyn FnMut() -> Nanos + Send> {
    let fast = FastClock::new();
    Box::new(move || fast.now())
}

impl Clock for CoarseClock {
    #[inline]
    fn now(&self) -> Nanos {
        crate::core::sync::coarse::now(ticker_source)
    }
}

/// A clock that moves only when told to: for tests and deterministic simulations.
///
/// Clones share one time, so a test keeps a clone and moves the limiter's clock.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A manual clock reading `start` (Unix nanoseconds).
    pub fn new(start: Nanos) -> Self {
        Self(Arc::new(AtomicU64::new(start)))
    }

    /// A manual clock starting at the current wall-clock time.
    pub fn starting_now() -> Self {
        Self::new(system_now())
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(d))
            });
    }

    /// Moves the clock backwards by `d`, as a stepped system clock would.
    pub fn rewind(&self, d: Duration) {
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_sub(d))
            });
    }

    /// Sets the clock to `t` (Unix nanoseconds).
    pub fn set(&self, t: Nanos) {
        self.0.store(t, Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        self.0.load(Ordering::Acquire)
    }
}

/// The clock a limiter or gate reads: the default coarse clock read inline, or any other clock
/// through its trait object. The default is the hot path of every check, so it is not a
/// virtual call.
#[derive(Clone)]
pub(crate) enum TimeSource {
    /// The process's [`CoarseClock`].
    Coarse(CoarseClock),
    /// Any other clock.
    Custom(Arc<dyn Clock>),
}

impl TimeSource {
    /// The default source.
    pub(crate) fn coarse() -> Self {
        Self::Coarse(CoarseClock::new())
    }

    /// A source for a clock of any type: the coarse clock is recognised and read inline.
    pub(crate) fn of<C: Clock>(clock: C) -> Self {
        match (&clock as &dyn std::any::Any).downcast_ref::<CoarseClock>() {
            Some(c) => Self::Coarse(*c),
            None => Self::Custom(Arc::new(clock)),
        }
    }

    /// Now, in Unix-epoch nanoseconds.
    #[inline]
    pub(crate) fn now(&self) -> Nanos {
        match self {
            Self::Coarse(c) => c.now(),
            Self::Custom(c) => c.now(),
        }
    }
}

/// Converts a duration to nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
