//! Redis Cluster: which node holds a key, and what a node means when it sends a call
//! elsewhere.
//!
//! A cluster splits keys into 16384 slots by the CRC16 of their hash tag; every node knows
//! which node serves each slot (`CLUSTER SLOTS`). The store keeps that map and sends each call
//! to the key's node. When slots move (a reshard, a failover) the old node answers
//! `MOVED <slot> <host:port>` (the slot lives there now: learn the map again) or, while a slot
//! is being migrated, `ASK <slot> <host:port>` (this one key is already there: ask that node
//! once, after `ASKING`).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::node::Node;
use super::{Failure, RedisOptions};

/// Slots in a Redis Cluster.
pub(super) const SLOTS: usize = 16384;

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |mut crc, &b| {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

/// The slot of a key, by Redis's rule: when the key holds a `{` followed later by a `}` with
/// at least one byte between them, only those bytes are hashed (the hash tag).
pub(super) fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter()
            .position(|&b| b == b'}')
            .filter(|&close| close > 0)
            .map(|close| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

/// Where a node sent a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Redirect {
    /// The slot now lives at this address: the map is out of date.
    Moved { slot: u16, addr: String },
    /// This key alone, during a slot's migration: ask this address once, after `ASKING`.
    Ask { addr: String },
}

/// The redirect a server error is, if it is one (`MOVED 3999 127.0.0.1:6381`).
pub(super) fn redirect(error: &str) -> Option<Redirect> {
    let mut words = error.split_ascii_whitespace();
    let kind = words.next()?;
    let slot: u16 = words.next()?.parse().ok()?;
    let addr = words.next()?;
    // A node may announce an unknown endpoint as ":port"; such a redirect cannot be followed.
    if usize::from(slot) >= SLOTS || addr.starts_with(':') || !addr.contains(':') {
        return None;
    }
    match kind {
        "MOVED" => Some(Redirect::Moved {
            slot,
            addr: addr.to_string(),
        }),
        "ASK" => Some(Redirect::Ask {
            addr: addr.to_string(),
        }),
        _ => None,
    }
}

/// One range of slots and the address of the master that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Range {
    pub(super) first: u16,
    pub(super) last: u16,
    pub(super) host: String,
    pub(super) port: u16,
}

/// The ranges of a `CLUSTER SLOTS` reply. An empty host means the node that was asked
/// (`asked_host`).
pub(super) fn ranges(reply: &::redis::Value, asked_host: &str) -> Result<Vec<Range>, String> {
    use ::redis::Value;
    let bad = || "a CLUSTER SLOTS reply that is not a list of slot ranges".to_string();
    let int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        _ => None,
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let Value::Array(items) = reply else {
        return Err(bad());
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(fields) = item else {
            return Err(bad());
        };
        let (Some(first), Some(last), Some(Value::Array(master))) = (
            fields.first().and_then(int),
            fields.get(1).and_then(int),
            fields.get(2),
        ) else {
            return Err(bad());
        };
        let host = master.first().and_then(text).ok_or_else(bad)?;
        let port = master.get(1).and_then(int).ok_or_else(bad)?;
        let slot = |n: i64| u16::try_from(n).ok().filter(|&s| usize::from(s) < SLOTS);
        let (Some(first), Some(last), Ok(port)) = (slot(first), slot(last), u16::try_from(port))
        else {
            return Err(bad());
        };
        if first > last {
            return Err(bad());
        }
        let host = match host.as_str() {
            "" | "?" => asked_host.to_string(),
            _ => host,
        };
        out.push(Range {
            first,
            last,
            host,
            port,
        });
    }
    Ok(out)
}

/// Which node serves each slot, and every node met.
pub(super) struct Cluster {
    /// How to reach a node: the URL's settings (credentials, TLS) with the node's address.
    info: ::redis::ConnectionInfo,
    map: RwLock<Arc<SlotMap>>,
    /// Every node met so far, by address (a cluster has few; none is dropped).
    nodes: Mutex<Vec<Arc<Node>>>,
    /// One caller reads the map again after a `MOVED`; the others follow their redirect.
    pub(super) learning: AtomicBool,
}

struct SlotMap {
    nodes: Vec<Arc<Node>>,
    /// Per slot, the index in `nodes` of the node serving it; `UNSERVED` when none does (the
    /// seed is asked, and redirects).
    slots: Vec<u16>,
}

const UNSERVED: u16 = u16::MAX;

impl Cluster {
    /// A cluster reached through `seed`, its map not read yet.
    pub(super) fn new(info: ::redis::ConnectionInfo, seed: Arc<Node>) -> Self {
        Cluster {
            info,
            map: RwLock::new(Arc::new(SlotMap {
                nodes: Vec::new(),
                slots: vec![UNSERVED; SLOTS],
            })),
            nodes: Mutex::new(vec![seed]),
            learning: AtomicBool::new(false),
        }
    }

    /// Every node met so far.
    pub(super) fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.lock().clone()
    }

    /// The first slot no node serves, if any.
    pub(super) fn unserved(&self) -> Option<usize> {
        self.map.read().slots.iter().position(|&n| n == UNSERVED)
    }

    /// Reads the slot map from `via` (`CLUSTER SLOTS`) and puts it in force.
    pub(super) fn learn(&self, via: &Node, options: &RedisOptions) -> Result<(), String> {
        let reply: ::redis::Value = via
            .query(::redis::cmd("CLUSTER").arg("SLOTS"))
            .map_err(|e| format!("cannot read the cluster's slots from {}: {e}", via.addr))?;
        let asked = via.addr.rsplit_once(':').map_or("", |(h, _)| h);
        let mut map = SlotMap {
            nodes: Vec::new(),
            slots: vec![UNSERVED; SLOTS],
        };
        for r in ranges(&reply, asked)? {
            let node = self
                .node_at(&format!("{}:{}", r.host, r.port), options)
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
        *self.map.write() = Arc::new(map);
        Ok(())
    }

    /// The master of a key's slot (the seed, which redirects, for a slot no master serves).
    pub(super) fn node_of(&self, key: &[u8], seed: &Arc<Node>) -> Arc<Node> {
        let map = self.map.read();
        match map.slots[usize::from(slot(key))] {
            UNSERVED => Arc::clone(seed),
            n => Arc::clone(&map.nodes[usize::from(n)]),
        }
    }

    /// The node at `host:port`, met before or connected to from now on.
    pub(super) fn node_at(&self, addr: &str, options: &RedisOptions) -> Result<Arc<Node>, Failure> {
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
    pub(super) fn moved(&self, slot: u16, to: &Arc<Node>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ::redis::Value;

    #[test]
    fn slots_follow_redis_rule() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"somekey"), 11058);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"p:api:1f:{user1000}"), slot(b"user1000"));
        // An empty tag hashes the whole key; only the first `{` counts.
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
    }

    #[test]
    fn redirects_are_read_and_nothing_else_is() {
        assert_eq!(
            redirect("MOVED 3999 127.0.0.1:6381"),
            Some(Redirect::Moved {
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            redirect("ASK 3999 10.0.0.2:7000"),
            Some(Redirect::Ask {
                addr: "10.0.0.2:7000".into()
            })
        );
        for other in [
            "MOVED 99999 127.0.0.1:6381",
            "MOVED 12 :6381",
            "MOVED x 127.0.0.1:1",
            "ERR MOVED 1 a:1",
            "NOSCRIPT No matching script",
            "",
        ] {
            assert_eq!(redirect(other), None, "{other}");
        }
    }

    #[test]
    fn slot_ranges_are_read_with_the_asked_host_for_an_empty_one() {
        let node = |h: &str, p: i64| {
            Value::Array(vec![
                Value::BulkString(h.as_bytes().to_vec()),
                Value::Int(p),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                node("", 7001),
                node("10.0.0.9", 7009),
            ]),
        ]);
        let r = ranges(&reply, "10.0.0.2").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].first, r[0].last, r[0].port), (0, 5460, 7000));
        assert_eq!(r[1].host, "10.0.0.2");
        assert!(ranges(&Value::Int(1), "h").is_err());
        let out_of_range = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(16384),
            node("h", 1),
        ])]);
        assert!(ranges(&out_of_range, "h").is_err());
    }
}
