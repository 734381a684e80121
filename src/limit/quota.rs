//! Quotas as people write them (`"5/15m"`, `"100/h"`), durations (`"15m"`), and their limits.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The longest window or duration accepted: 100 years. Anything longer is a typo, and keeping
/// every time below 2^62 ns leaves headroom for arithmetic on Unix-epoch nanoseconds.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Why a quota or duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The text is not of the form `COUNT/WINDOW`.
    #[error("invalid quota {input:?}: write COUNT/WINDOW, e.g. \"100/h\", \"5/15m\", \"10/s\" or \"1000/d\"")]
    Syntax {
        /// The text that was given.
        input: String,
    },
    /// The text is not a duration.
    #[error("invalid duration {input:?}: write a number and a unit (ms, s, m, h, d), e.g. \"15m\" or \"500ms\"")]
    DurationSyntax {
        /// The text that was given.
        input: String,
    },
    /// A quota of zero requests would refuse everything.
    #[error(
        "the request count must be at least 1 (to refuse all requests, do not route to a limit)"
    )]
    ZeroCount,
    /// A zero-length window has no rate.
    #[error("the window must be longer than zero, e.g. \"1s\"")]
    ZeroWindow,
    /// A burst of zero would refuse everything.
    #[error(
        "burst must be at least 1 (it is the number of requests a new client may make at once)"
    )]
    ZeroBurst,
    /// A value too large to represent.
    #[error("{what} is too large: {detail}")]
    Overflow {
        /// Which value.
        what: &'static str,
        /// What the bound is.
        detail: String,
    },
}

/// A rate: `count` requests per `window`, with a burst.
///
/// **Burst** is the number of requests a fresh key may make at once. It defaults to `count`:
/// `"100/h"` lets a new client send 100 requests immediately and then one every 36 s. With
/// `burst = 10`, the same client may send 10 at once and then one every 36 s; the long-run rate is
/// the same, only the size of the first volley changes. (governor calls this "burst size",
/// redis-cell counts one more than its "max_burst", nginx's `burst` counts the queue beyond the
/// first request: here it is simply "how many at once".)
///
/// ```
/// use portcullis::Quota;
/// let q: Quota = "5/15m".parse()?;
/// assert_eq!(q.count(), 5);
/// assert_eq!(q.window().as_secs(), 900);
/// assert_eq!(q.burst(), 5);
/// let q = q.with_burst(2)?;
/// assert_eq!(q.burst(), 2);
/// # Ok::<(), portcullis::QuotaError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    count: u32,
    window: Duration,
    burst: u32,
}

impl Quota {
    /// `count` requests per `window`, burst = `count`.
    pub fn new(count: u32, window: Duration) -> Result<Self, QuotaError> {
        if count == 0 {
            return Err(QuotaError::ZeroCount);
        }
        if window.is_zero() {
            return Err(QuotaError::ZeroWindow);
        }
        if window > MAX_DURATION {
            return Err(QuotaError::Overflow {
                what: "the window",
                detail: "at most 100 years".into(),
            });
        }
        if window.as_nanos() < u128::from(count) {
            return Err(QuotaError::Overflow {
                what: "the rate",
                detail: format!("{count} per {window:?} is more than one request per nanosecond"),
            });
        }
        Ok(Self {
            count,
            window,
            burst: count,
        })
    }

    /// `count` per second.
    pub fn per_second(count: u32) -> Result<Self, QuotaError> {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` per minute.
    pub fn per_minute(count: u32) -> Result<Self, QuotaError> {
        Self::new(count, Duration::from_secs(60))
    }

    /// `count` per hour.
    pub fn per_hour(count: u32) -> Result<Self, QuotaError> {
        Self::new(count, Duration::from_secs(3600))
    }

    /// The same rate with another burst (requests a fresh key may make at once).
    pub fn with_burst(self, burst: u32) -> Result<Self, QuotaError> {
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        let q = Self { burst, ..self };
        // The burst's worth of time must stay representable.
        let tau = u128::from(q.emission_interval_ns()) * u128::from(burst);
        if tau > MAX_DURATION.as_nanos() {
            return Err(QuotaError::Overflow {
                what: "burst",
                detail: format!("{burst} requests at this rate span more than 100 years"),
            });
        }
        Ok(q)
    }

    /// Requests per window.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Requests a fresh key may make at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Nanoseconds between requests at the steady rate, rounded up so that the rate is never
    /// exceeded.
    pub fn emission_interval_ns(&self) -> u64 {
        let w = self.window.as_nanos();
        let c = u128::from(self.count);
        // window <= 100 years < 2^62 ns, so the quotient fits.
        u64::try_from(w.div_ceil(c)).unwrap_or(u64::MAX)
    }
}

impl FromStr for Quota {
    type Err = QuotaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || QuotaError::Syntax { input: s.into() };
        let (count, window) = s.split_once('/').ok_or_else(syntax)?;
        let count: u64 = count
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| syntax())?;
        let count = u32::try_from(count).map_err(|_| QuotaError::Overflow {
            what: "the request count",
            detail: format!("at most {}", u32::MAX),
        })?;
        let window = window.trim();
        // "100/h" means one hour: a bare unit has an implied 1.
        let window = if window.starts_with(|c: char| c.is_ascii_digit()) {
            parse_duration(window).map_err(|_| syntax())?
        } else {
            unit(window).ok_or_else(syntax)?
        };
        Self::new(count, window)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, format_duration(self.window))?;
        if self.burst != self.count {
            write!(f, " (burst {})", self.burst)?;
        }
        Ok(())
    }
}

fn unit(u: &str) -> Option<Duration> {
    Some(match u {
        "ns" => Duration::from_nanos(1),
        "us" | "µs" => Duration::from_micros(1),
        "ms" => Duration::from_millis(1),
        "s" | "sec" | "secs" | "second" | "seconds" => Duration::from_secs(1),
        "m" | "min" | "mins" | "minute" | "minutes" => Duration::from_secs(60),
        "h" | "hr" | "hrs" | "hour" | "hours" => Duration::from_secs(3600),
        "d" | "day" | "days" => Duration::from_secs(86_400),
        "w" | "week" | "weeks" => Duration::from_secs(7 * 86_400),
        _ => return None,
    })
}

/// Parses a duration as people write it: `"15m"`, `"500ms"`, `"24h"`, `"1h30m"`, `"0s"`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(portcullis::parse_duration("1h30m")?, Duration::from_secs(5400));
/// assert!(portcullis::parse_duration("15 parsecs").is_err());
/// # Ok::<(), portcullis::QuotaError>(())
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, QuotaError> {
    let err = || QuotaError::DurationSyntax { input: s.into() };
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '_'))
            .ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let n: u128 = rest[..digits].replace('_', "").parse().map_err(|_| err())?;
        rest = rest[digits..].trim_start();
        let end = rest
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(rest.len());
        let u = unit(&rest[..end]).ok_or_else(err)?;
        rest = rest[end..].trim_start();
        total = n
            .checked_mul(u.as_nanos())
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    if total > MAX_DURATION.as_nanos() {
        return Err(QuotaError::Overflow {
            what: "the duration",
            detail: "at most 100 years".into(),
        });
    }
    // Bounded by MAX_DURATION above.
    Ok(Duration::from_nanos(
        u64::try_from(total).unwrap_or(u64::MAX),
    ))
}

/// Renders a duration in the largest unit that divides it (`"15m"`, `"1h"`, `"1500ms"`).
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    for (name, size) in [
        ("d", 86_400_000_000_000u128),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if ns >= size && ns % size == 0 {
            return format!("{}{}", ns / size, name);
        }
    }
    format!("{ns}ns")
}
