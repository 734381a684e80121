//! The one result enum of the C ABI, and the one place crate errors map to it.

use crate::config::ConfigErrors;
use crate::cors::CorsConfigErrors;
use crate::gate::GateError;
use crate::store::StoreError;
use crate::Error;

use super::boundary::Failure;

/// What a call did. Values are stable: never renumbered, retired values stay reserved.
///
/// Blocks: 1xx arguments and the boundary, 2xx configs and policies, 3xx the store.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum portcullis_result {
    /// Success.
    Ok = 0,
    /// A required pointer was NULL.
    NullParameter = 100,
    /// An argument is out of range or malformed (an IP address, a style, a cost).
    InvalidParameter = 101,
    /// Text that must be UTF-8 was not.
    InvalidUtf8 = 102,
    /// The output buffer is too small; the length needed was written to `out_len`.
    InsufficientSize = 103,
    /// An internal error was caught at the boundary; the handle may be used again.
    Panic = 104,
    /// The handle was closed: only `_free` may follow.
    Closed = 105,
    /// An index past the end (of headers).
    OutOfRange = 106,
    /// The config text or file is invalid; the message names each line and column.
    InvalidConfig = 200,
    /// No policy of that name or id.
    UnknownPolicy = 201,
    /// The cost exceeds what the policy allows at once: it would be denied forever.
    CostTooHigh = 202,
    /// A concurrency policy was checked: acquire a lease instead.
    NeedsLease = 203,
    /// A lease was asked of a policy that is not a concurrency limit.
    NotConcurrency = 204,
    /// A reload changed something that cannot change while running (the store).
    ReloadRefused = 205,
    /// The CORS part of the config is invalid, or missing where a CORS engine is asked for.
    InvalidCorsPolicy = 206,
    /// Another process (or handle) holds the store.
    StoreLocked = 300,
    /// The store failed its checks.
    StoreCorrupt = 301,
    /// The folder holds something that is not a portcullis store.
    StoreForeign = 302,
    /// The store was written by another format version.
    StoreVersion = 303,
    /// Reading or writing the store failed.
    StoreIo = 304,
    /// A one-process store (sled) was opened before `fork()` and used in the child: open it
    /// after the fork, or use the shared store.
    StoreForked = 305,
    /// The Redis store cannot be used as configured: a bad URL or key prefix, an unreachable
    /// server or refused credentials at open (the message says which).
    StoreRedis = 306,
    /// The Redis store did not answer within its timeout, for an operation that has no
    /// fallback (peek, penalize, refund, reset). Checks never get this: `on_error` decides.
    StoreUnavailable = 307,
}

impl portcullis_result {
    /// The variant's name as the header spells it, NUL-terminated for C.
    pub(crate) fn c_name(self) -> &'static str {
        match self {
            Self::Ok => "PORTCULLIS_RESULT_OK\0",
            Self::NullParameter => "PORTCULLIS_RESULT_NULL_PARAMETER\0",
            Self::InvalidParameter => "PORTCULLIS_RESULT_INVALID_PARAMETER\0",
            Self::InvalidUtf8 => "PORTCULLIS_RESULT_INVALID_UTF8\0",
            Self::InsufficientSize => "PORTCULLIS_RESULT_INSUFFICIENT_SIZE\0",
            Self::Panic => "PORTCULLIS_RESULT_PANIC\0",
            Self::Closed => "PORTCULLIS_RESULT_CLOSED\0",
            Self::OutOfRange => "PORTCULLIS_RESULT_OUT_OF_RANGE\0",
            Self::InvalidConfig => "PORTCULLIS_RESULT_INVALID_CONFIG\0",
            Self::UnknownPolicy => "PORTCULLIS_RESULT_UNKNOWN_POLICY\0",
            Self::CostTooHigh => "PORTCULLIS_RESULT_COST_TOO_HIGH\0",
            Self::NeedsLease => "PORTCULLIS_RESULT_NEEDS_LEASE\0",
            Self::NotConcurrency => "PORTCULLIS_RESULT_NOT_CONCURRENCY\0",
            Self::ReloadRefused => "PORTCULLIS_RESULT_RELOAD_REFUSED\0",
            Self::InvalidCorsPolicy => "PORTCULLIS_RESULT_INVALID_CORS_POLICY\0",
            Self::StoreLocked => "PORTCULLIS_RESULT_STORE_LOCKED\0",
            Self::StoreCorrupt => "PORTCULLIS_RESULT_STORE_CORRUPT\0",
            Self::StoreForeign => "PORTCULLIS_RESULT_STORE_FOREIGN\0",
            Self::StoreVersion => "PORTCULLIS_RESULT_STORE_VERSION\0",
            Self::StoreIo => "PORTCULLIS_RESULT_STORE_IO\0",
            Self::StoreForked => "PORTCULLIS_RESULT_STORE_FORKED\0",
            Self::StoreRedis => "PORTCULLIS_RESULT_STORE_REDIS\0",
            Self::StoreUnavailable => "PORTCULLIS_RESULT_STORE_UNAVAILABLE\0",
        }
    }

    /// Every variant, for the name lookup from a raw code.
    pub(crate) const ALL: [portcullis_result; 23] = [
        Self::Ok,
        Self::NullParameter,
        Self::InvalidParameter,
        Self::InvalidUtf8,
        Self::InsufficientSize,
        Self::Panic,
        Self::Closed,
        Self::OutOfRange,
        Self::InvalidConfig,
        Self::UnknownPolicy,
        Self::CostTooHigh,
        Self::NeedsLease,
        Self::NotConcurrency,
        Self::ReloadRefused,
        Self::InvalidCorsPolicy,
        Self::StoreLocked,
        Self::StoreCorrupt,
        Self::StoreForeign,
        Self::StoreVersion,
        Self::StoreIo,
        Self::StoreForked,
        Self::StoreRedis,
        Self::StoreUnavailable,
    ];
}

fn store_code(e: &StoreError) -> portcullis_result {
    match e {
        StoreError::Locked { .. } => portcullis_result::StoreLocked,
        StoreError::Corrupt { .. } => portcullis_result::StoreCorrupt,
        StoreError::Foreign { .. } => portcullis_result::StoreForeign,
        StoreError::Version { .. } => portcullis_result::StoreVersion,
        StoreError::Io { .. } => portcullis_result::StoreIo,
        StoreError::Forked { .. } => portcullis_result::StoreForked,
        StoreError::Redis { .. } => portcullis_result::StoreRedis,
        StoreError::Unavailable { .. } => portcullis_result::StoreUnavailable,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Quota(_)
            | Error::Policy(_)
            | Error::Capacity(_)
            | Error::NoPolicies
            | Error::OutOfMemory { .. } => portcullis_result::InvalidConfig,
            Error::UnknownPolicy(_) | Error::BadPolicyId(_) => portcullis_result::UnknownPolicy,
            Error::CostTooHigh { .. } => portcullis_result::CostTooHigh,
            Error::InvalidKey(_) => portcullis_result::InvalidParameter,
            Error::NeedsLease(_) => portcullis_result::NeedsLease,
            Error::NotConcurrency(_) => portcullis_result::NotConcurrency,
            Error::Store(s) => store_code(s),
            Error::Random(_) => portcullis_result::StoreIo,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::new(store_code(&e), e.to_string())
    }
}

impl From<ConfigErrors> for Failure {
    fn from(e: ConfigErrors) -> Self {
        Failure::new(portcullis_result::InvalidConfig, e.to_string())
    }
}

impl From<CorsConfigErrors> for Failure {
    fn from(e: CorsConfigErrors) -> Self {
        Failure::new(portcullis_result::InvalidCorsPolicy, e.to_string())
    }
}

impl From<GateError> for Failure {
    fn from(e: GateError) -> Self {
        match e {
            GateError::Config(c) => c.into(),
            GateError::Limiter(l) => l.into(),
            GateError::Cors(c) => c.into(),
            GateError::Reload(m) => Failure::new(portcullis_result::ReloadRefused, m),
            GateError::Store(s) => s.into(),
        }
    }
}
