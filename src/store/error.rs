//! Store errors: each names the path and what is wrong.

/// Why a store could not be opened, read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another process (or another open in this process) holds the store.
    #[error("store {path} is in use by another process or limiter: a sled store belongs to one process; for several worker processes (nginx, gunicorn or uvicorn workers, Node cluster, a pre-forking server) use the shared store ([store] kind = \"shared\")")]
    Locked {
        /// The store's folder.
        path: String,
    },
    /// Data on disk failed its checks.
    #[error("store {path} is corrupt: {detail}; it was left untouched (move it aside to start empty, which hands out fresh quotas)")]
    Corrupt {
        /// The store's folder.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A database that portcullis did not write.
    #[error(
        "{path} is not a portcullis store ({detail}); point the store at an empty or new folder"
    )]
    Foreign {
        /// The folder.
        path: String,
        /// What was found.
        detail: String,
    },
    /// A store of another format version.
    #[error("store {path} has format version {found}, this build reads version {supported}: open it with the matching portcullis, or move it aside")]
    Version {
        /// The folder.
        path: String,
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A store that belongs to one process, used in a child forked after it was opened.
    #[error("store {path} was opened before fork() and is used in a child process: a sled store belongs to the process that opened it; open it after fork(), one per process, or share one limiter across worker processes with the shared store ([store] kind = \"shared\")")]
    Forked {
        /// The store's folder.
        path: String,
    },
    /// An I/O error.
    #[error("store {path}: {detail}")]
    Io {
        /// The folder.
        path: String,
        /// The error.
        detail: String,
    },
    /// A Redis store that cannot be used as configured (bad URL or prefix, unreachable,
    /// refused credentials, scripts not loadable): reported when the store is opened.
    #[error("redis store {url}: {detail}")]
    Redis {
        /// The URL, without its password.
        url: String,
        /// What is wrong and what to do.
        detail: String,
    },
    /// The Redis store did not answer within its timeout (or is backing off after failures)
    /// for an operation that has no configured fallback (peek, penalize, refund, reset).
    #[error("redis store {url} is unavailable: {detail}")]
    Unavailable {
        /// The URL, without its password.
        url: String,
        /// The last failure.
        detail: String,
    },
}
