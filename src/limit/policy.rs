//! Named policies: an algorithm, its quota and options, validated into a [`Rule`].

use std::fmt;
use std::time::Duration;

use crate::core::clock::nanos;
use crate::limit::algo::{Algo, Concurrency, FixedWindow, Gcra, Leaky, Rule, SlidingWindow};
use crate::limit::quota::{format_duration, Quota, MAX_DURATION};
use crate::store::Durability;

/// Which algorithm a policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// GCRA, token-bucket semantics: `count` per window, `burst` at once, refilled smoothly.
    Gcra,
    /// At most `count` per aligned window of the clock.
    FixedWindow,
    /// At most `count` per sliding window, estimated from this and the previous window.
    SlidingWindow,
    /// Shaping: requests are spaced at the quota's rate and given a delay to wait, up to
    /// `max_delay`; beyond it they are denied.
    LeakyBucket {
        /// The longest wait handed out; `None` means `(burst − 1)` intervals.
        max_delay: Option<Duration>,
    },
    /// At most `count` requests in flight; the quota's window is the lease timeout.
    Concurrency,
}

impl Algorithm {
    /// The name used in config files.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Gcra => "gcra",
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::LeakyBucket { .. } => "leaky_bucket",
            Algorithm::Concurrency => "concurrency",
        }
    }
}

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Names appear in headers and logs.
    #[error("invalid policy name {name:?}: use 1 to 64 characters from a-z, A-Z, 0-9, '-', '_', '.', ':'")]
    Name {
        /// The name given.
        name: String,
    },
    /// Two policies with one name.
    #[error("policy {name:?} is defined twice: give each policy its own name")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// A count the algorithm's packed state cannot hold.
    #[error("policy {name:?}: {algorithm} counts at most {max} per window, got {count}")]
    LimitTooLarge {
        /// The policy.
        name: String,
        /// The algorithm.
        algorithm: &'static str,
        /// Largest supported.
        max: u32,
        /// Given.
        count: u32,
    },
    /// A window too short for the algorithm's window index.
    #[error("policy {name:?}: {algorithm} needs a window of at least {min}, got {got}")]
    WindowTooShort {
        /// The policy.
        name: String,
        /// The algorithm.
        algorithm: &'static str,
        /// Shortest supported.
        min: String,
        /// Given.
        got: String,
    },
    /// A duration option out of range.
    #[error("policy {name:?}: {what} must be at most 100 years")]
    DurationTooLong {
        /// The policy.
        name: String,
        /// Which option.
        what: &'static str,
    },
    /// A burst given to an algorithm that has none.
    #[error("policy {name:?}: {algorithm} has no burst; remove it (the count is the limit)")]
    BurstNotApplicable {
        /// The policy.
        name: String,
        /// The algorithm.
        algorithm: &'static str,
    },
}

/// A named rate-limit policy.
///
/// ```
/// use std::time::Duration;
/// use portcullis::{Policy, Quota};
/// let login = Policy::fixed_window("login", "5/15m".parse()?)
///     .block(Duration::from_secs(15 * 60));
/// let api = Policy::gcra("api", Quota::per_hour(100)?.with_burst(20)?);
/// # let _ = (login, api);
/// # Ok::<(), portcullis::QuotaError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: String,
    algorithm: Algorithm,
    quota: Quota,
    block: Duration,
    durability: Durability,
}

impl Policy {
    /// A policy of any algorithm.
    pub fn new(name: impl Into<String>, algorithm: Algorithm, quota: Quota) -> Self {
        Self {
            name: name.into(),
            algorithm,
            quota,
            block: Duration::ZERO,
            durability: Durability::WriteBehind,
        }
    }

    /// GCRA (token bucket).
    pub fn gcra(name: impl Into<String>, quota: Quota) -> Self {
        Self::new(name, Algorithm::Gcra, quota)
    }

    /// Fixed window.
    pub fn fixed_window(name: impl Into<String>, quota: Quota) -> Self {
        Self::new(name, Algorithm::FixedWindow, quota)
    }

    /// Sliding window counter.
    pub fn sliding_window(name: impl Into<String>, quota: Quota) -> Self {
        Self::new(name, Algorithm::SlidingWindow, quota)
    }

    /// Leaky bucket shaping; the longest delay is `(burst − 1)` intervals unless set with
    /// [`Policy::max_delay`].
    pub fn leaky_bucket(name: impl Into<String>, quota: Quota) -> Self {
        Self::new(name, Algorithm::LeakyBucket { max_delay: None }, quota)
    }

    /// At most `max` in flight per key; a lease never released expires after `lease_timeout`
    /// to twice that.
    pub fn concurrency(
        name: impl Into<String>,
        max: u32,
        lease_timeout: Duration,
    ) -> Result<Self, crate::limit::quota::QuotaError> {
        Ok(Self::new(
            name,
            Algorithm::Concurrency,
            Quota::new(max, lease_timeout)?,
        ))
    }

    /// Once denied, a key stays denied for `block` (and at least until it would have recovered).
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// How soon decisions reach the store (default: written behind).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The durability level.
    pub fn durability_level(&self) -> Durability {
        self.durability
    }

    /// For a leaky bucket: the longest delay handed out.
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        if let Algorithm::LeakyBucket { .. } = self.algorithm {
            self.algorithm = Algorithm::LeakyBucket {
                max_delay: Some(max_delay),
            };
        }
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// The block duration (zero for none).
    pub fn block_duration(&self) -> Duration {
        self.block
    }

    /// Checks the policy against what its algorithm can represent.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.rule().map(|_| ())
    }

    pub(crate) fn rule(&self) -> Result<Rule, PolicyError> {
        let name = &self.name;
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !valid_name {
            return Err(PolicyError::Name { name: name.clone() });
        }
        let q = &self.quota;
        let algorithm = self.algorithm.name();
        let too_large = |max: u32| PolicyError::LimitTooLarge {
            name: name.clone(),
            algorithm,
            max,
            count: q.count(),
        };
        let too_short = |min: Duration| PolicyError::WindowTooShort {
            name: name.clone(),
            algorithm,
            min: format_duration(min),
            got: format_duration(q.window()),
        };
        let no_burst = || PolicyError::BurstNotApplicable {
            name: name.clone(),
            algorithm,
        };
        if self.block > MAX_DURATION {
            return Err(PolicyError::DurationTooLong {
                name: name.clone(),
                what: "block",
            });
        }
        let window = nanos(q.window());
        let algo = match self.algorithm {
            Algorithm::Gcra => Algo::Gcra(Gcra::new(q)),
            Algorithm::FixedWindow => {
                if q.count() > FixedWindow::MAX_LIMIT {
                    return Err(too_large(FixedWindow::MAX_LIMIT));
                }
                if q.window() < Duration::from_millis(1) {
                    return Err(too_short(Duration::from_millis(1)));
                }
                if q.burst() != q.count() {
                    return Err(no_burst());
                }
                Algo::FixedWindow(FixedWindow::new(q.count(), window))
            }
            Algorithm::SlidingWindow | Algorithm::Concurrency => {
                let max = if self.algorithm == Algorithm::Concurrency {
                    Concurrency::MAX_LIMIT
                } else {
                    SlidingWindow::MAX_LIMIT
                };
                if q.count() > max {
                    return Err(too_large(max));
                }
                if q.window() < Duration::from_secs(1) {
                    return Err(too_short(Duration::from_secs(1)));
                }
                if q.burst() != q.count() {
                    return Err(no_burst());
                }
                if self.algorithm == Algorithm::Concurrency {
                    Algo::Concurrency(Concurrency::new(q.count(), window))
                } else {
                    Algo::SlidingWindow(SlidingWindow::new(q.count(), window))
                }
            }
            Algorithm::LeakyBucket { max_delay } => {
                let t = q.emission_interval_ns();
                let max_delay = match max_delay {
                    Some(d) if d > MAX_DURATION => {
                        return Err(PolicyError::DurationTooLong {
                            name: name.clone(),
                            what: "max_delay",
                        })
                    }
                    Some(d) => nanos(d),
                    None => t.saturating_mul(u64::from(q.burst() - 1)),
                };
                Algo::Leaky(Leaky::new(t, max_delay))
            }
        };
        Ok(Rule {
            algo,
            block: nanos(self.block),
        })
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} {})",
            self.name,
            self.algorithm.name(),
            self.quota
        )?;
        if !self.block.is_zero() {
            write!(f, ", block {}", format_duration(self.block))?;
        }
        Ok(())
    }
}
