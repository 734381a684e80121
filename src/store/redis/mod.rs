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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::store::StoreError;

use batch::Job;
use cluster::Redirect;
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
    /// The server of the URL; in a cluster, the node the map was first read from.
    seed: Arc<Node>,
    /// The slot map, when the URL names a node of a Redis Cluster.
    cluster: Option<Cluster>,
    round_trips: AtomicU64,
    redirects: AtomicU64,
}

/// Which node serves each slot.
struct Cluster {
    /// How to reach a node: the URL's settings (credentials, TLS) with the node's address.
    info: ::redis::ConnectionInfo,
    map: RwLock<Arc<SlotMap>>,
    /// Every node met so far, by address (a cluster has few; none is dropped).
    nodes: Mutex<Vec<Arc<Node>>>,
    /// One caller reads the map again after a `MOVED`; the others follow their redirect.
    learning: AtomicBool,
}

struct SlotMap {
    nodes: Vec<Arc<Node>>,
    /// Per slot, the index in `nodes` of the node serving it; `UNSERVED` when none does (the
    /// seed is asked, and redirects).
    slots: Vec<u16>,
}

const UNSERVED: u16 = u16::MAX;

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown_url)
            .field("key_prefix", &self.options.key_prefix)
            .field("cluster", &self.cluster.is_some())
            .finish()
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
        let info = client.get_connection_info().clone();
        let seed = Arc::new(Node::new(
            address(&info.addr),
            client,
            options.pool_size,
            options.timeout,
        ));
        let mut conn = seed.pool.take().map_err(|e| {
            err(match e.contains("SELECT is not allowed in cluster mode") {
                true => format!(
                    "the server is a node of a Redis Cluster, which has database 0 only, and the URL names database {}: end it with /0",
                    info.redis.db
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
        seed.pool.put(conn);
        let clustered = about.lines().any(|l| l.trim() == "cluster_enabled:1");
        let mut store = Self {
            shown_url: shown_url.clone(),
            seed: Arc::clone(&seed),
            cluster: None,
            round_trips: AtomicU64::new(0),
            redirects: AtomicU64::new(0),
            options,
        };
        if clustered {
            store.cluster = Some(Cluster {
                info,
                map: RwLock::new(Arc::new(SlotMap {
                    nodes: Vec::new(),
                    slots: vec![UNSERVED; cluster::SLOTS],
                })),
                nodes: Mutex::new(vec![seed]),
                learning: AtomicBool::new(false),
            });
            store.learn_slots(&store.seed).map_err(err)?;
            let map = store.slot_map();
            if let Some(hole) = map.slots.iter().position(|&n| n == UNSERVED) {
                return Err(err(format!(
                    "the Redis Cluster serves no node for slot {hole}: its slots are not all assigned (CLUSTER INFO says why)"
                )));
            }
        }
        Ok(store)
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
        self.cluster.is_some()
    }

    /// Loads a script now (`SCRIPT LOAD`, on every master of a cluster), so a script Redis
    /// refuses is an error at open.
    pub fn load(&self, script: &Script) -> Result<(), StoreError> {
        let nodes = match &self.cluster {
            Some(c) => c.nodes.lock().clone(),
            None => vec![Arc::clone(&self.seed)],
        };
        for node in nodes {
            node.load(script.source)
                .map_err(|detail| StoreError::Redis {
                    url: self.shown_url.clone(),
                    detail: match &self.cluster {
                        Some(_) => format!("node {}: {detail}", node.addr),
                        None => detail,
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

    /// What the store has done so far (summed over a cluster's nodes).
    pub fn stats(&self) -> RedisStats {
        let nodes = match &self.cluster {
            Some(c) => c.nodes.lock().clone(),
            None => vec![Arc::clone(&self.seed)],
        };
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
        let Some(cluster) = &self.cluster else {
            let probe = self.seed.health.gate()?;
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            let result = self.seed.run(job, self.options.timeout);
            return self.seed.health.settle(result, probe);
        };
        let mut node = cluster.node_of(key, &self.seed);
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
                        let _ = self.learn_slots(&to);
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

    fn slot_map(&self) -> Arc<SlotMap> {
        match &self.cluster {
            Some(c) => Arc::clone(&c.map.read()),
            None => Arc::new(SlotMap {
                nodes: Vec::new(),
                slots: Vec::new(),
            }),
        }
    }

    /// Reads the cluster's slot map from `via` (`CLUSTER SLOTS`) and puts it in force.
    fn learn_slots(&self, via: &Node) -> Result<(), String> {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        let reply: ::redis::Value = via
            .query(::redis::cmd("CLUSTER").arg("SLOTS"))
            .map_err(|e| format!("cannot read the cluster's slots from {}: {e}", via.addr))?;
        let asked = via.addr.rsplit_once(':').map_or("", |(h, _)| h);
        let ranges = cluster::ranges(&reply, asked)?;
        let mut map = SlotMap {
            nodes: Vec::new(),
            slots: vec![UNSERVED; cluster::SLOTS],
        };
        for r in ranges {
            let node = c
                .node_at(&format!("{}:{}", r.host, r.port), &self.options)
                .map_err(|f| f.detail)?;
            let at = match map.nodes.iter().position(|n| Arc::ptr_eq(n, &node)) {
                Some(at) => at,
                None => {
                    map.nodes.push(node);
                    map.nodes.len() - 1
                }
            };
            // At most one index per slot range's master: far below UNSERVED.
            let at = u16::try_from(at).unwrap_or(UNSERVED);
            map.slots[usize::from(r.first)..=usize::from(r.last)].fill(at);
        }
        *c.map.write() = Arc::new(map);
        Ok(())
    }
}

impl Cluster {
    /// The master of a key's slot (the seed, which redirects, for a slot no master serves).
    fn node_of(&self, key: &[u8], seed: &Arc<Node>) -> Arc<Node> {
        let map = self.map.read();
        match map.slots[usize::from(cluster::slot(key))] {
            UNSERVED => Arc::clone(seed),
            n => Arc::clone(&map.nodes[usize::from(n)]),
        }
    }

    /// The node at `host:port`, met before or connected to from now on.
    fn node_at(&self, addr: &str, options: &RedisOptions) -> Result<Arc<Node>, Failure> {
        let mut nodes = self.nodes.lock();
        if let Some(n) = nodes.iter().find(|n| n.addr == addr) {
            return Ok(Arc::clone(n));
        }
        let refuse = |detail: String| Failure {
            detail,
            retry_in: Duration::ZERO,
        };
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(|c| c == '[' || c == ']'), p.parse().ok()?)))
            .ok_or_else(|| {
                refuse(format!(
                    "a cluster node at {addr:?}, which is not host:port"
                ))
            })?;
        let mut info = self.info.clone();
        info.addr = match info.addr {
            ::redis::ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ::redis::ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure,
                tls_params,
            },
            _ => ::redis::ConnectionAddr::Tcp(host.to_string(), port),
        };
        let client =
            ::redis::Client::open(info).map_err(|e| refuse(format!("cluster node {addr}: {e}")))?;
        let node = Arc::new(Node::new(
            addr.to_string(),
            client,
            options.pool_size,
            options.timeout,
        ));
        nodes.push(Arc::clone(&node));
        Ok(node)
    }

    /// Puts one slot's new node in force at once, before the whole map is read again.
    fn moved(&self, slot: u16, to: &Arc<Node>) {
        let mut map = self.map.write();
        let mut nodes = map.nodes.clone();
        let at = match nodes.iter().position(|n| Arc::ptr_eq(n, to)) {
            Some(at) => at,
            None => {
                nodes.push(Arc::clone(to));
                nodes.len() - 1
            }
        };
        let mut slots = map.slots.clone();
        slots[usize::from(slot)] = u16::try_from(at).unwrap_or(UNSERVED);
        *map = Arc::new(SlotMap { nodes, slots });
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
