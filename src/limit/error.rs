//! The crate's error type.

use crate::limit::policy::PolicyError;
use crate::limit::quota::QuotaError;

/// What can go wrong building or using a limiter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A quota or duration was refused.
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// A policy was refused.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// No policy of that name.
    #[error("no policy named {0:?}")]
    UnknownPolicy(String),
    /// A policy id from another limiter.
    #[error("policy id {0} does not belong to this limiter")]
    BadPolicyId(u32),
    /// A cost no key could ever afford: it would be denied forever.
    #[error("cost {cost} exceeds what policy {policy:?} allows at once ({max_cost})")]
    CostTooHigh {
        /// The policy.
        policy: String,
        /// The cost asked.
        cost: u32,
        /// The largest cost a fresh key can afford (the policy's burst or limit).
        max_cost: u32,
    },
    /// `check` on a concurrency policy, whose admissions must be released.
    #[error("policy {0:?} limits concurrency: use acquire() and release the lease")]
    NeedsLease(String),
    /// `acquire` on a policy that is not a concurrency limit.
    #[error("policy {0:?} is not a concurrency limit: use check()")]
    NotConcurrency(String),
    /// A client key that cannot be read (an IP address that does not parse).
    #[error("{0}")]
    InvalidKey(String),
    /// A table size out of range.
    #[error("capacity must be between 4 and 2^30 slots, got {0}")]
    Capacity(usize),
    /// The memory of a policy's table could not be had.
    #[error("cannot allocate the {bytes}-byte table of policy {policy:?}: lower its capacity")]
    OutOfMemory {
        /// The policy.
        policy: String,
        /// The bytes its table needed.
        bytes: usize,
    },
    /// A limiter with nothing to apply.
    #[error("a limiter needs at least one policy")]
    NoPolicies,
    /// The store could not be opened, read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The operating system gave no randomness for the hash key.
    #[error("could not seed the key hash from the operating system: {0}")]
    Random(String),
}
