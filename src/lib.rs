//! # portcullis
//!
//! An embeddable gate for HTTP APIs: a lock-free keyed rate limiter (GCRA, fixed and sliding
//! windows, leaky-bucket shaping, concurrency leases, block durations) and strict,
//! Fetch-standard CORS decisions, with the standard response headers.
//!
//! ```
//! use std::time::Duration;
//! use portcullis::{HeaderStyle, IpKeyer, Limiter, Policy, Quota};
//!
//! let limiter = Limiter::builder()
//!     // 5 login attempts per 15 minutes per client, then locked out for 15 minutes.
//!     .policy(Policy::fixed_window("login", "5/15m".parse()?).block(Duration::from_secs(900)))
//!     // 100 requests per hour, at most 20 at once.
//!     .policy(Policy::gcra("api", "100/h".parse::<Quota>()?.with_burst(20)?))
//!     .capacity(10_000)
//!     .build()?;
//!
//! let login = limiter.policy_id("login").unwrap();
//! let client = IpKeyer::default().key("203.0.113.9".parse().unwrap());
//! for _ in 0..5 {
//!     assert!(limiter.check(login, client, 1)?.allowed);
//! }
//! let denied = limiter.check(login, client, 1)?;
//! assert!(!denied.allowed);
//! assert!(denied.retry_after() >= Duration::from_secs(900));
//!
//! let headers = limiter.headers(HeaderStyle::Legacy, &[denied]);
//! assert!(headers.iter().any(|(name, value)| *name == "Retry-After" && value == "900"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The check path of a known key is one 64-bit CAS loop on its slot; memory is fixed at
//! construction whatever the number of distinct keys. See `docs/ARCHITECTURE.md`.

#![warn(missing_docs)]

// Layers, each importing only those listed before it (checked by `ci/layers.sh`).
pub mod config;
mod core;
pub mod cors;
pub mod ffi;
pub mod gate;
mod limit;
pub mod store;
#[cfg(feature = "tower")]
pub mod tower;

pub use crate::core::clock::{Clock, CoarseClock, FastClock, ManualClock, Nanos, SystemClock};
pub use crate::core::stats::PolicyStats;
pub use crate::core::topk::{Counted, TopK};
pub use gate::{Action, Gate, GateRequest, Outcome};
pub use limit::decision::{render_headers, Decision, Header, HeaderStyle, PolicyId, PolicyMeta};
pub use limit::error::Error;
pub use limit::keys::{ClientKey, IpKeyer, PrefixError};
pub use limit::limiter::{KeyInfo, Lease, Limiter, LimiterBuilder, StoreStats, DEFAULT_CAPACITY};
pub use limit::policy::{Algorithm, Policy, PolicyError};
pub use limit::quota::{format_duration, parse_duration, Quota, QuotaError, MAX_DURATION};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The table and the algorithms, for the loom models in `tests/loom_table.rs` only: both are
/// crate-private, and this module exists only in a `--cfg loom` build.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_internals {
    pub use crate::core::table::{Fingerprint, LockClock, Table, LOCK_TIMEOUT_MS};
    pub use crate::limit::algo::{Algo, Gcra, Rule};
}
