//! The answer to one request under one policy, and its HTTP header renderings.
//!
//! Two styles, chosen by the caller:
//!
//! * **Legacy**: `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix
//!   seconds at which the key is fully recovered) and, on a denial, `Retry-After` (seconds).
//! * **IETF** (draft-ietf-httpapi-ratelimit-headers, structured fields, syntax of -08 to -11):
//!   `RateLimit-Policy: "api";q=100;w=3600` and `RateLimit: "api";r=42;t=30`, one list item
//!   per policy that applied.
//!
//! All seconds are whole and rounded **up**, so a client is never told to come back too early.
//!
//! What `t` means, per algorithm (seconds until the quota "resets"):
//!
//! | algorithm | `r > 0` | `r = 0` |
//! | --- | --- | --- |
//! | GCRA, leaky bucket | until fully refilled | until the next request would be allowed |
//! | fixed window | until the window ends | until the window ends |
//! | sliding window | until both windows have aged out | until the next request would be allowed |
//! | concurrency | until every lease held would have expired | until enough leases expire (earlier if released) |

use std::fmt::Write as _;
use std::time::Duration;

use crate::clock::Nanos;

/// Identifies a policy of one [`crate::Limiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(pub(crate) u32);

impl PolicyId {
    /// The policy's position in its limiter.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The outcome of one request under one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The request may proceed (after `delay`).
    pub allowed: bool,
    /// The most a key can have available at once (burst, window limit or maximum in flight).
    pub limit: u32,
    /// Units available right after this decision.
    pub remaining: u32,
    /// Time until the key has fully recovered.
    pub reset_after: Duration,
    /// Denied: time until this request would be allowed. Allowed: time until another request
    /// of the same cost would be (zero if now).
    pub retry_after: Duration,
    /// Shaping: how long to wait before proceeding. Zero otherwise.
    pub delay: Duration,
    /// The policy that decided.
    pub policy: PolicyId,
    /// When it was decided, Unix-epoch nanoseconds.
    pub at: Nanos,
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Decision {
    /// `Retry-After` in whole seconds, rounded up (never too early).
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after)
    }

    /// Unix time, in whole seconds rounded up, at which the key is fully recovered.
    pub fn reset_at_unix_secs(&self) -> u64 {
        let at = u128::from(self.at) + self.reset_after.as_nanos();
        u64::try_from(at.div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
    }

    /// The IETF `t` parameter: seconds until the next unit when none remain, else until reset.
    pub fn reset_secs(&self) -> u64 {
        if self.remaining == 0 {
            ceil_secs(self.retry_after)
        } else {
            ceil_secs(self.reset_after)
        }
    }

    /// The decision that should speak for several: a denial (the longest wait) over any
    /// allowance, else the one with the fewest remaining.
    pub fn most_restrictive(decisions: &[Decision]) -> Option<&Decision> {
        decisions.iter().min_by(|a, b| {
            (a.allowed, b.retry_after, a.remaining).cmp(&(b.allowed, a.retry_after, b.remaining))
        })
    }
}

/// Which rate-limit headers to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderStyle {
    /// `X-RateLimit-*` and `Retry-After`.
    #[default]
    Legacy,
    /// IETF `RateLimit-Policy` and `RateLimit` (and `Retry-After` on a denial).
    Ietf,
    /// Both.
    Both,
    /// Only `Retry-After` on a denial.
    RetryAfterOnly,
}

/// What a header rendering needs to know about the policy behind a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyMeta<'a> {
    /// The policy name (an sf-string in IETF headers).
    pub name: &'a str,
    /// Requests per window.
    pub quota: u32,
    /// The window.
    pub window: Duration,
}

/// A rendered response header.
pub type Header = (&'static str, String);

/// Renders the headers for the decisions that applied to one request.
pub fn render_headers(style: HeaderStyle, decisions: &[(PolicyMeta<'_>, Decision)]) -> Vec<Header> {
    let mut out = Vec::with_capacity(5);
    let all: Vec<Decision> = decisions.iter().map(|(_, d)| *d).collect();
    let Some(main) = Decision::most_restrictive(&all) else {
        return out;
    };
    if matches!(style, HeaderStyle::Legacy | HeaderStyle::Both) {
        out.push(("X-RateLimit-Limit", main.limit.to_string()));
        out.push(("X-RateLimit-Remaining", main.remaining.to_string()));
        out.push(("X-RateLimit-Reset", main.reset_at_unix_secs().to_string()));
    }
    if matches!(style, HeaderStyle::Ietf | HeaderStyle::Both) {
        let mut policy = String::new();
        let mut state = String::new();
        for (i, (meta, d)) in decisions.iter().enumerate() {
            if i > 0 {
                policy.push_str(", ");
                state.push_str(", ");
            }
            let name = sf_string(meta.name);
            let _ = write!(
                policy,
                "{name};q={};w={}",
                meta.quota,
                ceil_secs(meta.window)
            );
            let _ = write!(state, "{name};r={};t={}", d.remaining, d.reset_secs());
        }
        out.push(("RateLimit-Policy", policy));
        out.push(("RateLimit", state));
    }
    if !main.allowed {
        out.push(("Retry-After", main.retry_after_secs().to_string()));
    }
    out
}

/// A structured-field string: quoted, with `"` and `\` escaped; other bytes outside
/// printable ASCII are dropped (policy names are validated to never contain them).
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(allowed: bool, remaining: u32, retry: u64) -> Decision {
        Decision {
            allowed,
            limit: 10,
            remaining,
            reset_after: Duration::from_millis(1500),
            retry_after: Duration::from_nanos(retry),
            delay: Duration::ZERO,
            policy: PolicyId(0),
            at: 1_000_000_000_000,
        }
    }

    #[test]
    fn sf_strings_escape() {
        assert_eq!(sf_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn most_restrictive_prefers_longest_denial() {
        let all = [d(true, 0, 0), d(false, 0, 5), d(false, 0, 9), d(true, 3, 0)];
        assert_eq!(
            Decision::most_restrictive(&all)
                .unwrap()
                .retry_after
                .as_nanos(),
            9
        );
        let all = [d(true, 5, 0), d(true, 2, 0)];
        assert_eq!(Decision::most_restrictive(&all).unwrap().remaining, 2);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(d(false, 0, 1).retry_after_secs(), 1);
        assert_eq!(d(false, 0, 1_000_000_000).retry_after_secs(), 1);
        assert_eq!(d(false, 0, 1_000_000_001).retry_after_secs(), 2);
        // 1000 s + 1.5 s, rounded up.
        assert_eq!(d(true, 1, 0).reset_at_unix_secs(), 1002);
    }
}
