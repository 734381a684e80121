//! The Redis store: connections, timeouts, scripts, Redis Cluster routing and what to do when
//! Redis goes away.
//!
//! It knows nothing of algorithms: the limiter asks it to "run script S on key K with these
//! arguments" and reads the reply. What it owns:
//!
//! * per server, a small pool of synchronous connections (`pool_size`), each with the per-call
//!   timeout on its socket, so a call never blocks much longer than the timeout (a call queued
//!   behind a busy connection waits for at most about three);
//! * the calls of threads waiting at once are sent together, one write and one read of all
//!   their replies (`batch.rs`);
//! * scripts by SHA (`EVALSHA`, loading the script on `NOSCRIPT`);
//! * when the URL names a node of a Redis Cluster, the slot map: each call goes to its key's
//!   master, and `MOVED` / `ASK` redirects are followed (`cluster.rs`);
//! * per server, the failure state: after a failed call the server is *down* and every call
//!   to it is answered at once with [`Failure`] (no network) until a backoff has passed
//!   (exponential from 50 ms, capped at 2 s); then one caller probes, and a success brings it
//!   back (`health.rs`). In a cluster, a dead master's keys fail alone.

mod batch;
mod cluster;
mod health;
mod node;
mod pool;

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::core::fork;
use crate::store::StoreError;

use batch::Job;
use cluster::{Cluster, Redirect};
use node::Node;

/// How to reach a Redis server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port/db`, or `rediss://` for TLS (needs the crate feature
    /// `redis-tls`). Any node of a Redis Cluster (database 0): the others are learned from it,
    /// and reached with the same credentials and TLS settings.
    pub url: String,
    /// Connections kept per process and server (default 4; in a cluster, per master). Calls of threads that find them all busy are
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
    /// Whether the store is backing off now (in a cluster: from any node).
    pub down: bool,
    /// Calls a cluster node sent to another (`MOVED`, `ASK`), each followed.
    pub redirects: u64,
    /// Servers talked to: 1, or the cluster's nodes met so far.
    pub nodes: usize,
}

/// The most redirects one call follows (a slot can move again while a call follows it).
const MAX_REDIRECTS: usize = 5;

/// A Redis server shared by every host, or a Redis Cluster: see the module docs.
pub struct RedisStore {
    options: RedisOptions,
    shown_url: String,
    /// The client of the URL (a child process connects again with it).
    client: ::redis::Client,
    /// Whether the URL names a node of a Redis Cluster.
    clustered: bool,
    /// This process's connections. Never null; a forked child replaces them with its own
    /// (see [`RedisStore::links`]), and the replaced ones are never freed in the child.
    links: AtomicPtr<Links>,
    round_trips: AtomicU64,
    redirects: AtomicU64,
}

/// The servers one process talks to, with their connections, queues and backoff state.
struct Links {
    /// The fork generation they were made in.
    generation: u64,
    /// The server of the URL; in a cluster, the node the map is first read from.
    seed: Arc<Node>,
    /// The slot map, when the URL names a node of a Redis Cluster.
    cluster: Option<Cluster>,
}

impl Links {
    /// Links to the URL's server (and, in a cluster, the nodes met from it), with no
    /// connection made yet.
    fn new(client: &::redis::Client, clustered: bool, options: &RedisOptions) -> Self {
        let info = client.get_connection_info();
        let seed = Arc::new(Node::new(
            address(&info.addr),
            client.clone(),
            options.pool_size,
            options.timeout,
        ));
        let mut links = Links {
            generation: fork::generation(),
            cluster: None,
            seed,
        };
        if clustered {
            links.route_by_slots(client);
        }
        links
    }

    /// Sends calls to each key's master from now on, by a slot map read through the seed.
    fn route_by_slots(&mut self, client: &::redis::Client) {
        let info = client.get_connection_info().clone();
        self.cluster = Some(Cluster::new(info, Arc::clone(&self.seed)));
    }

    /// Every node met so far.
    fn nodes(&self) -> Vec<Arc<Node>> {
        match &self.cluster {
            Some(c) => c.nodes(),
            None => vec![Arc::clone(&self.seed)],
        }
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown_url)
            .field("key_prefix", &self.options.key_prefix)
            .field("cluster", &self.clustered)
            .finish()
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        let links = *self.links.get_mut();
        // SAFETY: `links` came from `Box::into_raw` and is freed only here, once, when no
        // call can use it any more (`&mut self`).
        drop(unsafe { Box::from_raw(links) });
    }
}

impl RedisStore {
    /// Checks the options, connects once (within the timeout) and pings: an unreachable
    /// server, a bad URL, refused credentials or a bad key prefix are errors here, never later.
    /// When the server is a node of a Redis Cluster, reads the cluster's slot map from it.
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
        // A process forked after this one opened the store connects again (see `links`).
        fork::watch();
        let mut links = Links::new(&client, false, &options);
        let db = client.get_connection_info().redis.db;
        let mut conn = links.seed.pool.take().map_err(|e| {
            err(match e.contains("SELECT is not allowed in cluster mode") {
                true => format!(
                    "the server is a node of a Redis Cluster, which has database 0 only, and the URL names database {db}: end it with /0"
                ),
                false => format!("cannot connect: {e}"),
            })
        })?;
        let pong: ::redis::RedisResult<String> = ::redis::cmd("PING").query(conn.get());
        if let Err(e) = pong {
            return Err(err(format!("does not answer PING: {e}")));
        }
        // A server that does not answer INFO (renamed away) is taken for a lone server.
        let about: String = ::redis::cmd("INFO")
            .arg("cluster")
            .query(conn.get())
            .unwrap_or_default();
        links.seed.pool.put(conn);
        let clustered = about.lines().any(|l| l.trim() == "cluster_enabled:1");
        if clustered {
            links.route_by_slots(&client);
        }
        if let Some(c) = &links.cluster {
            c.learn(&links.seed, &options).map_err(err)?;
            if let Some(hole) = c.unserved() {
                return Err(err(format!(
                    "the Redis Cluster serves no node for slot {hole}: its slots are not all assigned (CLUSTER INFO says why)"
                )));
            }
        }
        Ok(Self {
            shown_url: shown_url.clone(),
            client,
            clustered,
            links: AtomicPtr::new(Box::into_raw(Box::new(links))),
            round_trips: AtomicU64::new(0),
            redirects: AtomicU64::new(0),
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

    /// Whether the URL named a node of a Redis Cluster (calls then go to each key's node).
    pub fn is_cluster(&self) -> bool {
        self.clustered
    }

    /// This process's connections. A child forked after the store was opened (a pre-forking
    /// server: gunicorn's `--preload`, a C server's workers) must not use its parent's
    /// sockets, whose replies the parent may read, nor locks a parent's thread held at the
    /// fork: its first call makes links of its own.
    fn links(&self) -> &Links {
        let current = self.links.load(Ordering::Acquire);
        // SAFETY: never null; a `Links` is freed only by `drop`, and one that was replaced
        // (in a child) is never freed, so the reference lives as long as `&self`.
        let links = unsafe { &*current };
        if links.generation == fork::generation() {
            return links;
        }
        self.relink(current)
    }

    #[cold]
    fn relink(&self, seen: *mut Links) -> &Links {
        let fresh = Box::into_raw(Box::new(Links::new(
            &self.client,
            self.clustered,
            &self.options,
        )));
        let installed =
            match self
                .links
                .compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => fresh,
                Err(other) => {
                    // SAFETY: `fresh` was never shared.
                    drop(unsafe { Box::from_raw(fresh) });
                    other
                }
            };
        // SAFETY: as in `links`.
        let links = unsafe { &*installed };
        if let Some(c) = &links.cluster {
            // Without the map every call goes to the seed, which redirects: correct, only
            // slower until a MOVED has the map read again.
            let _ = c.learn(&links.seed, &self.options);
        }
        links
    }

    /// Loads a script now (`SCRIPT LOAD`, on every master of a cluster), so a script Redis
    /// refuses is an error at open.
    pub fn load(&self, script: &Script) -> Result<(), StoreError> {
        for node in self.links().nodes() {
            node.load(script.source)
                .map_err(|detail| StoreError::Redis {
                    url: self.shown_url.clone(),
                    detail: match self.clustered {
                        true => format!("node {}: {detail}", node.addr),
                        false => detail,
                    },
                })?;
        }
        Ok(())
    }

    /// Runs `script` on one key with `args`: one round trip, shared with the calls of other
    /// threads waiting at the same time (see `batch.rs`); two when Redis had to load the
    /// script, or a cluster node sent the call to another.
    pub fn eval(&self, script: &Script, key: &[u8], args: &[Arg<'_>]) -> Result<Reply, Failure> {
        let mut cmd = ::redis::cmd("EVALSHA");
        cmd.arg(script.sha()).arg(1).arg(key);
        for a in args {
            match a {
                Arg::Int(i) => cmd.arg(*i),
                Arg::Bytes(b) => cmd.arg(*b),
            };
        }
        self.run(key, Job::new(cmd.get_packed_command(), script.source))
            .map(convert)
    }

    /// Deletes a key; returns whether it existed.
    pub fn delete(&self, key: &[u8]) -> Result<bool, Failure> {
        let del = ::redis::cmd("DEL").arg(key).get_packed_command();
        match self.run(key, Job::new(del, "")) {
            Ok(::redis::Value::Int(n)) => Ok(n > 0),
            Ok(other) => Err(Failure {
                detail: format!("DEL answered {other:?}"),
                retry_in: Duration::ZERO,
            }),
            Err(f) => Err(f),
        }
    }

    /// What the store has done so far in this process (summed over a cluster's nodes).
    pub fn stats(&self) -> RedisStats {
        let nodes = self.links().nodes();
        let mut s = RedisStats {
            round_trips: self.round_trips.load(Ordering::Relaxed),
            redirects: self.redirects.load(Ordering::Relaxed),
            nodes: nodes.len(),
            ..RedisStats::default()
        };
        for n in &nodes {
            s.batches += n.batcher.batches();
            s.failures += n.health.failures.load(Ordering::Relaxed);
            s.skipped += n.health.skipped.load(Ordering::Relaxed);
            s.connects += n.pool.connects();
            s.down |= n.health.is_down();
        }
        s
    }

    /// Runs a call on its key's node, following a cluster's redirects.
    fn run(&self, key: &[u8], mut job: Arc<Job>) -> Result<::redis::Value, Failure> {
        let links = self.links();
        let Some(cluster) = &links.cluster else {
            let probe = links.seed.health.gate()?;
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            let result = links.seed.run(job, self.options.timeout);
            return links.seed.health.settle(result, probe);
        };
        let mut node = cluster.node_of(key, &links.seed);
        let mut asking = false;
        for _ in 0..=MAX_REDIRECTS {
            let probe = node.health.gate()?;
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            let result = match asking {
                false => node.run(Arc::clone(&job), self.options.timeout),
                true => node.asking(&job),
            };
            let redirect = match &result {
                Err(detail) => cluster::redirect(detail),
                Ok(_) => None,
            };
            let Some(redirect) = redirect else {
                return node.health.settle(result, probe);
            };
            // The node answered: it is up, the call goes elsewhere.
            node.health.answered(probe);
            self.redirects.fetch_add(1, Ordering::Relaxed);
            job = job.again();
            (node, asking) = match redirect {
                Redirect::Moved { slot, addr } => {
                    let to = cluster.node_at(&addr, &self.options)?;
                    cluster.moved(slot, &to);
                    // The rest of the map has likely changed too (a reshard or failover
                    // moves many slots): one caller learns it again from the node that has
                    // this slot. A failure there changes nothing: this call follows its
                    // redirect anyway, and the next MOVED tries again.
                    if !cluster.learning.swap(true, Ordering::Acquire) {
                        let _ = cluster.learn(&to, &self.options);
                        cluster.learning.store(false, Ordering::Release);
                    }
                    (to, false)
                }
                Redirect::Ask { addr } => (cluster.node_at(&addr, &self.options)?, true),
            };
        }
        Err(Failure {
            detail: format!("more than {MAX_REDIRECTS} cluster redirects for one call"),
            retry_in: Duration::ZERO,
        })
    }
}

/// `host:port` of a connection address, as a cluster names its nodes.
fn address(addr: &::redis::ConnectionAddr) -> String {
    match addr {
        ::redis::ConnectionAddr::Tcp(host, port)
        | ::redis::ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
        ::redis::ConnectionAddr::Unix(path) => path.display().to_string(),
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
