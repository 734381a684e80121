//! The Redis store: connections, timeouts, scripts and what to do when Redis goes away.
//!
//! It knows nothing of algorithms: the limiter asks it to "run script S on key K with these
//! arguments" and reads the reply. What it owns:
//!
//! * a small pool of synchronous connections (`pool_size`), each with the per-call timeout on
//!   its socket, so a call never blocks much longer than the timeout (a call queued behind a
//!   busy connection waits for at most about three);
//! * the calls of threads waiting at once are sent together, one write and one read of all
//!   their replies (`batch.rs`);
//! * scripts by SHA (`EVALSHA`, loading the script on `NOSCRIPT`, by the client crate);
//! * the failure state: after a failed call the store is *down* and answers every call at once
//!   with [`Failure`] (no network) until a backoff has passed (exponential from 50 ms, capped at
//!   2 s); then one caller probes, and a success brings the store back.

mod batch;
mod pool;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::store::StoreError;

use batch::{Batcher, Job};
use pool::Pool;

/// How to reach a Redis server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port/db`, or `rediss://` for TLS (needs the crate feature
    /// `redis-tls`).
    pub url: String,
    /// Connections kept per process (default 4). Calls of threads that find them all busy are
    /// queued and sent together, in one write, by a thread that holds one: a few connections
    /// serve many threads, with fewer system calls on both sides than a connection each.
    pub pool_size: usize,
    /// The longest a call (or waiting for a connection) may take (default 50 ms).
    pub timeout: Duration,
    /// Prepended to every key (default `portcullis:`).
    pub key_prefix: String,
    /// What a check gets while Redis does not answer (default: fail closed).
    pub on_error: OnError,
    /// With [`OnError::Local`], each host's local table gets the quota divided by this
    /// (default 1).
    pub expected_hosts: u32,
    /// Answer a key Redis denied until a time from the local table until then, without a
    /// round trip (default on).
    pub deny_cache: bool,
    /// Tests only: the limiter's `_at(now)` times are sent to the scripts in place of the
    /// server's clock, so property tests can run at explicit times. Never set in a config.
    #[doc(hidden)]
    pub injected_time: bool,
}

/// What a check gets when Redis does not answer within the timeout (or the store is backing
/// off after failures). Every such decision is counted per policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Denied, with `Retry-After` until the next reconnect attempt (at least a second).
    #[default]
    FailClosed,
    /// Allowed, as a fresh key would be.
    FailOpen,
    /// Decided by this host's local lock-free table with the quota divided by
    /// `expected_hosts`; back to Redis as soon as it answers.
    Local,
}

impl OnError {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            OnError::FailClosed => "fail_closed",
            OnError::FailOpen => "fail_open",
            OnError::Local => "local",
        }
    }
}

impl RedisOptions {
    /// Options for a URL, with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 4,
            timeout: Duration::from_millis(50),
            key_prefix: "portcullis:".into(),
            on_error: OnError::FailClosed,
            expected_hosts: 1,
            deny_cache: true,
            injected_time: false,
        }
    }
}

/// Why a key prefix is refused, if it is: the prefix is part of every key and of `inspect`
/// output, and braces would break the per-key hash tag that Redis Cluster routes by.
pub fn prefix_error(prefix: &str) -> Option<String> {
    if prefix.len() > 64 {
        return Some(format!(
            "key prefix {prefix:?} is longer than 64 bytes: use a short name such as \"myapp:\""
        ));
    }
    let bad = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.:/".contains(*c)));
    bad.map(|c| {
        let what = match c {
            ' ' => "a space".to_string(),
            c if c.is_control() => "a control character".to_string(),
            c => format!("{c:?}"),
        };
        format!(
            "key prefix {prefix:?} contains {what}: use letters, digits and - _ . : / only, e.g. \"myapp:\""
        )
    })
}

/// Why a URL is not a Redis URL, if it is not (nothing is connected).
pub fn url_error(url: &str) -> Option<String> {
    if url.starts_with("rediss://") && !cfg!(feature = "redis-tls") {
        return Some(
            "rediss:// (TLS) needs portcullis built with the feature \"redis-tls\"".into(),
        );
    }
    ::redis::Client::open(url).err().map(|e| {
        format!(
            "{:?} is not a Redis URL ({e}): write redis://[:password@]host:port/db, e.g. redis://127.0.0.1:6379/0",
            redact(url)
        )
    })
}

/// The URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***@{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// A Lua script, loaded by SHA.
pub struct Script {
    script: ::redis::Script,
    source: &'static str,
}

impl Script {
    /// A script from its source.
    pub fn new(source: &'static str) -> Self {
        Script {
            script: ::redis::Script::new(source),
            source,
        }
    }

    /// The script's SHA1, as Redis names it.
    pub fn sha(&self) -> &str {
        self.script.get_hash()
    }
}

/// One argument of a script call.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// An integer.
    Int(i64),
    /// Bytes.
    Bytes(&'a [u8]),
}

/// One element of a script's reply (a reply is an array of these, or one of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An integer (Lua numbers are truncated to integers by Redis).
    Int(i64),
    /// A string.
    Bytes(Vec<u8>),
    /// Nil (Lua `false`).
    Nil,
    /// An array (a Lua table).
    Array(Vec<Reply>),
}

/// A call that did not get an answer from Redis: the store is down (or was just found down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong (the last failure).
    pub detail: String,
    /// Until the next reconnect attempt.
    pub retry_in: Duration,
}

/// What the store has done, for the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RedisStats {
    /// Calls made to Redis (script calls and deletes, including failed ones).
    pub round_trips: u64,
    /// Writes of one or more script calls together (fewer than the calls when threads' calls
    /// were sent in one batch).
    pub batches: u64,
    /// Calls that failed (timeout, connection, authentication, server errors).
    pub failures: u64,
    /// Calls answered at once without the network because the store was backing off.
    pub skipped: u64,
    /// Connections opened.
    pub connects: u64,
    /// Whether the store is backing off now.
    pub down: bool,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// A Redis server shared by every host: see the module docs.
pub struct RedisStore {
    options: RedisOptions,
    shown_url: String,
    pool: Pool,
    batcher: Batcher,
    epoch: Instant,
    /// Nanoseconds since `epoch` until which calls fail at once; 0 when up.
    down_until: AtomicU64,
    /// Consecutive failed attempts (the backoff's exponent).
    failures_in_row: AtomicU32,
    /// One caller probes after a backoff; the others keep failing fast.
    probing: AtomicBool,
    last_failure: parking_lot::Mutex<String>,
    round_trips: AtomicU64,
    failures: AtomicU64,
    skipped: AtomicU64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown_url)
            .field("key_prefix", &self.options.key_prefix)
            .finish()
    }
}

impl RedisStore {
    /// Checks the options, connects once (within the timeout) and pings: an unreachable
    /// server, a bad URL, refused credentials or a bad key prefix are errors here, never later.
    pub fn open(options: RedisOptions) -> Result<Self, StoreError> {
        let shown_url = redact(&options.url);
        let err = |detail: String| StoreError::Redis {
            url: shown_url.clone(),
            detail,
        };
        if let Some(e) = prefix_error(&options.key_prefix) {
            return Err(err(e));
        }
        if options.pool_size == 0 || options.pool_size > 1024 {
            return Err(err(format!(
                "pool_size {} is out of range: use 1 to 1024 connections",
                options.pool_size
            )));
        }
        if options.expected_hosts == 0 {
            return Err(err("expected_hosts must be at least 1".into()));
        }
        if options.timeout.is_zero() {
            return Err(err("timeout must be longer than zero, e.g. \"50ms\"".into()));
        }
        if let Some(e) = url_error(&options.url) {
            return Err(err(e));
        }
        let client = ::redis::Client::open(options.url.as_str()).map_err(|e| err(e.to_string()))?;
        let pool = Pool::new(client, options.pool_size, options.timeout);
        let mut conn = pool
            .take()
            .map_err(|e| err(format!("cannot connect: {e}")))?;
        let pong: ::redis::RedisResult<String> = ::redis::cmd("PING").query(conn.get());
        if let Err(e) = pong {
            return Err(err(format!("does not answer PING: {e}")));
        }
        pool.put(conn);
        Ok(Self {
            shown_url,
            pool,
            batcher: Batcher::new(),
            epoch: Instant::now(),
            down_until: AtomicU64::new(0),
            failures_in_row: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            last_failure: parking_lot::Mutex::new(String::new()),
            round_trips: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            options,
        })
    }

    /// The options it was opened with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// The URL without its password, for messages.
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    /// Loads a script now (`SCRIPT LOAD`), so a script Redis refuses is an error at open.
    pub fn load(&self, script: &Script) -> Result<(), StoreError> {
        let mut conn = self.pool.take().map_err(|e| StoreError::Redis {
            url: self.shown_url.clone(),
            detail: format!("cannot connect: {e}"),
        })?;
        let sha: ::redis::RedisResult<String> = ::redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script.source)
            .query(conn.get());
        match sha {
            Ok(_) => {
                self.pool.put(conn);
                Ok(())
            }
            Err(e) => Err(StoreError::Redis {
                url: self.shown_url.clone(),
                detail: format!("refused a script: {e}"),
            }),
        }
    }

    /// Runs `script` on one key with `args`: one round trip, shared with the calls of other
    /// threads waiting at the same time (see `batch.rs`); two when Redis had to load the script.
    pub fn eval(&self, script: &Script, key: &[u8], args: &[Arg<'_>]) -> Result<Reply, Failure> {
        let mut cmd = ::redis::cmd("EVALSHA");
        cmd.arg(script.sha()).arg(1).arg(key);
        for a in args {
            match a {
                Arg::Int(i) => cmd.arg(*i),
                Arg::Bytes(b) => cmd.arg(*b),
            };
        }
        let job = Job::new(cmd.get_packed_command(), script.source);
        let probe = self.gate()?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let result = self.batcher.run(&self.pool, job, self.options.timeout);
        self.settle(result, probe).map(convert)
    }

    /// Deletes a key; returns whether it existed.
    pub fn delete(&self, key: &[u8]) -> Result<bool, Failure> {
        self.call(|c| ::redis::cmd("DEL").arg(key).query::<i64>(c))
            .map(|n| n > 0)
    }

    /// What the store has done so far.
    pub fn stats(&self) -> RedisStats {
        RedisStats {
            round_trips: self.round_trips.load(Ordering::Relaxed),
            batches: self.batcher.batches(),
            failures: self.failures.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            connects: self.pool.connects(),
            down: self.down_until.load(Ordering::Relaxed) != 0,
        }
    }

    fn elapsed(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The failure a call gets while the store is down.
    #[cold]
    fn fail_fast(&self, until: u64, now: u64) -> Failure {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        Failure {
            detail: self.last_failure.lock().clone(),
            retry_in: Duration::from_nanos(until.saturating_sub(now)),
        }
    }

    /// Whether a call may go to Redis now: `Ok(true)` for the one probe after a backoff,
    /// `Ok(false)` when Redis is up, `Err` (no network) while backing off.
    fn gate(&self) -> Result<bool, Failure> {
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

    /// Records a call's outcome: a success brings Redis back, a failure starts (or extends) the
    /// backoff.
    fn settle<T>(&self, result: Result<T, String>, probe: bool) -> Result<T, Failure> {
        match result {
            Ok(v) => {
                if probe || self.down_until.load(Ordering::Relaxed) != 0 {
                    self.failures_in_row.store(0, Ordering::Relaxed);
                    self.down_until.store(0, Ordering::Release);
                }
                if probe {
                    self.probing.store(false, Ordering::Release);
                }
                Ok(v)
            }
            // Redis answered, about this key only (another program wrote a key of another type
            // under the prefix): this call falls back, Redis stays up for every other key.
            Err(detail) if detail.starts_with("WRONGTYPE") => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if probe {
                    self.failures_in_row.store(0, Ordering::Relaxed);
                    self.down_until.store(0, Ordering::Release);
                    self.probing.store(false, Ordering::Release);
                }
                Err(Failure {
                    detail,
                    retry_in: Duration::ZERO,
                })
            }
            Err(detail) => Err(self.went_down(detail, probe)),
        }
    }

    fn call<T>(
        &self,
        op: impl FnOnce(&mut ::redis::Connection) -> ::redis::RedisResult<T>,
    ) -> Result<T, Failure> {
        let probe = self.gate()?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let result = match self.pool.take() {
            Ok(mut conn) => match op(conn.get()) {
                Ok(v) => {
                    self.pool.put(conn);
                    Ok(v)
                }
                Err(e) => {
                    // A broken or timed-out connection may hold a late reply: never reuse it.
                    let broken = e.is_io_error()
                        || e.is_timeout()
                        || e.is_connection_dropped()
                        || e.is_unrecoverable_error();
                    if broken {
                        self.pool.discard(conn);
                    } else {
                        self.pool.put(conn);
                    }
                    Err(e.to_string())
                }
            },
            Err(e) => Err(e),
        };
        self.settle(result, probe)
    }

    #[cold]
    fn went_down(&self, detail: String, probe: bool) -> Failure {
        self.failures.fetch_add(1, Ordering::Relaxed);
        // The calls of one failed batch, or of threads failing together, are one failure of
        // Redis: only a failure while up, or of a probe, lengthens the backoff.
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

fn convert(v: ::redis::Value) -> Reply {
    match v {
        ::redis::Value::Int(i) => Reply::Int(i),
        ::redis::Value::BulkString(b) => Reply::Bytes(b),
        ::redis::Value::SimpleString(s) => Reply::Bytes(s.into_bytes()),
        ::redis::Value::Okay => Reply::Bytes(b"OK".to_vec()),
        ::redis::Value::Array(items) => Reply::Array(items.into_iter().map(convert).collect()),
        _ => Reply::Nil,
    }
}
