//! Persistence behind the limiter: a restart or a crash never hands out a fresh quota.
//!
//! The hot path stays in the lock-free table. A table that is persisted marks the page (64
//! slots, 1 KiB) of every slot it writes; a writer thread collects the marked pages and writes
//! each as one value, coalescing every decision of an interval into one write per page
//! (`store::writer`). Policies with [`Durability::Immediate`] wait for the write of their own page,
//! sharing one flush with every caller waiting at the same time (group commit).
//!
//! A [`Store`] only has to keep pages and key names per policy: [`MemoryStore`] keeps them in
//! memory (for tests and for sharing a store between limiters of one process), [`SledStore`]
//! on disk.

mod board;
mod error;
mod memory;
pub mod redis;
mod shared;
mod sled;
pub(crate) mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use self::sled::SledStore;
pub use board::{Board, BOARD_COUNTERS, BOARD_NAME, BOARD_PROCESSES};
pub use error::StoreError;
pub use memory::MemoryStore;
pub use shared::{SharedStore, TableFile, SHARED_FORMAT_VERSION, STALE_AFTER};

/// How soon a policy's decisions reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Written behind in batches every flush interval and at close: a crash loses at most the
    /// decisions of the last interval (those keys come back with older, fresher states).
    #[default]
    WriteBehind,
    /// A decision that changed the key's state returns only once that state is on disk,
    /// flushed by sled and `fsync`ed: it survives a process crash and a power loss (as far as
    /// the disk honours `fsync`). Concurrent callers share one flush. For login and OTP limits.
    Immediate,
}

/// One page of a table as saved: the occupied slots' (fingerprint, state) pairs.
pub type PageEntries = Vec<(u64, u64)>;

/// Everything a writer hands a store in one go, for one policy.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PolicyChanges {
    /// The policy name.
    pub policy: String,
    /// Drop every saved page and name of the policy first (a compacting rewrite at open).
    pub replace_all: bool,
    /// Pages to write; an empty page is deleted.
    pub pages: Vec<(u64, PageEntries)>,
    /// Names of keys placed since the last write: (fingerprint, key bytes).
    pub names: Vec<(u64, Vec<u8>)>,
    /// Names to forget (keys gone from the table).
    pub forget: Vec<u64>,
}

/// What the limiter needs from a place that keeps its state.
///
/// Small on purpose: later stores (shared memory for several processes, Redis for several
/// machines) implement the same few questions.
pub trait Store: Send + Sync + 'static {
    /// The key hash's secret saved with the state, if any.
    fn hash_key(&self) -> Result<Option<[u8; 16]>, StoreError>;

    /// Saves the key hash's secret (a new store).
    fn set_hash_key(&self, key: [u8; 16]) -> Result<(), StoreError>;

    /// The saved pages and key names of a policy. `signature` describes the policy's
    /// algorithm and parameters: state saved under another signature means something else,
    /// and is dropped rather than misread.
    fn load(&self, policy: &str, signature: &str) -> Result<Saved, StoreError>;

    /// Writes the changes of several policies (each policy's changes atomically).
    fn write(&self, changes: &[PolicyChanges]) -> Result<(), StoreError>;

    /// Makes everything written so far survive a process crash, and with `power_loss` also a
    /// power loss.
    fn sync(&self, power_loss: bool) -> Result<(), StoreError>;

    /// Bytes the store occupies on disk (0 in memory).
    fn size_on_disk(&self) -> Result<u64, StoreError>;

    /// Where the store lives, for messages.
    fn location(&self) -> String;

    /// A named record kept beside the counters (the gate keeps its log of recent denials
    /// here), or `None` if never written. The default keeps nothing.
    fn record(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let _ = name;
        Ok(None)
    }

    /// Replaces a named record (written behind, durable at the next [`Store::sync`]). The
    /// default keeps nothing.
    fn set_record(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let _ = (name, value);
        Ok(())
    }
}

/// A policy's saved state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Saved {
    /// (fingerprint, state) of every saved key.
    pub entries: Vec<(u64, u64)>,
    /// (fingerprint, key bytes) of every saved name.
    pub names: Vec<(u64, Vec<u8>)>,
}

/// Where a limiter keeps its state.
#[derive(Clone)]
pub enum StoreConfig {
    /// Nothing is persisted.
    Memory,
    /// A sled database in a folder, for one process.
    Sled(SledConfig),
    /// Tables in files mapped by every process that opens the folder (see [`SharedStore`]).
    Shared(Arc<SharedStore>),
    /// A store made by the caller (e.g. a [`MemoryStore`] shared by successive limiters).
    Custom(Arc<dyn Store>, WriterConfig),
    /// A Redis server shared by every host (see [`redis::RedisStore`]): each decision is one
    /// script run on the server.
    Redis(Arc<redis::RedisStore>),
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreConfig::Memory => f.write_str("Memory"),
            StoreConfig::Sled(c) => f.debug_tuple("Sled").field(c).finish(),
            StoreConfig::Shared(s) => f.debug_tuple("Shared").field(&s.path()).finish(),
            StoreConfig::Redis(s) => f.debug_tuple("Redis").field(&s.url()).finish(),
            StoreConfig::Custom(s, w) => f
                .debug_tuple("Custom")
                .field(&s.location())
                .field(w)
                .finish(),
        }
    }
}

/// How the writer thread behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// How often changed pages are written behind.
    pub flush_interval: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_millis(100),
        }
    }
}

/// A sled store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SledConfig {
    /// The folder.
    pub path: PathBuf,
    /// The writer's settings.
    pub writer: WriterConfig,
    /// sled's page cache, in bytes (sled's own default is 1 GiB; ours is 64 MiB).
    pub cache_capacity: u64,
}

impl StoreConfig {
    /// A sled store in `path`, written behind every 100 ms, with a 64 MiB cache.
    pub fn sled(path: impl Into<PathBuf>) -> Self {
        StoreConfig::Sled(SledConfig {
            path: path.into(),
            writer: WriterConfig::default(),
            cache_capacity: 64 << 20,
        })
    }

    /// The shared store in folder `path`, opened (or created) now: every process that opens
    /// the same folder with the same policies shares their counters.
    pub fn shared(path: impl AsRef<std::path::Path>) -> Result<Self, StoreError> {
        Ok(StoreConfig::Shared(Arc::new(SharedStore::open(
            path.as_ref(),
        )?)))
    }

    /// A Redis store, connected now: an unreachable server, a bad URL, refused credentials
    /// or a bad key prefix are errors here.
    pub fn redis(options: redis::RedisOptions) -> Result<Self, StoreError> {
        Ok(StoreConfig::Redis(Arc::new(redis::RedisStore::open(
            options,
        )?)))
    }

    /// A store made by the caller.
    pub fn custom(store: Arc<dyn Store>) -> Self {
        StoreConfig::Custom(store, WriterConfig::default())
    }

    /// How often changed pages are written behind (default 100 ms).
    pub fn flush_interval(mut self, every: Duration) -> Self {
        match &mut self {
            StoreConfig::Sled(c) => c.writer.flush_interval = every,
            StoreConfig::Custom(_, w) => w.flush_interval = every,
            StoreConfig::Memory | StoreConfig::Shared(_) | StoreConfig::Redis(_) => {}
        }
        self
    }

    /// sled's page cache in bytes (default 64 MiB).
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        if let StoreConfig::Sled(c) = &mut self {
            c.cache_capacity = bytes;
        }
        self
    }

    /// Opens the store (none for memory, nor for the shared store, whose tables are its state).
    pub(crate) fn open(&self) -> Result<Option<Opened>, StoreError> {
        Ok(match self {
            StoreConfig::Memory | StoreConfig::Shared(_) | StoreConfig::Redis(_) => None,
            StoreConfig::Sled(c) => Some((
                Arc::new(SledStore::open(&c.path, c.cache_capacity)?),
                c.writer,
            )),
            StoreConfig::Custom(s, w) => Some((Arc::clone(s), *w)),
        })
    }
}

/// An opened store and how to write to it.
pub(crate) type Opened = (Arc<dyn Store>, WriterConfig);
