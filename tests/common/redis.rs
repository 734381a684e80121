//! A redis-server of the test's own, on a free port of 127.0.0.1, with no persistence, in a
//! temporary folder; stopped when dropped. The binary is `$PORTCULLIS_REDIS_SERVER` or
//! `redis-server` on the PATH (ci/redis.sh installs it).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().unwrap().port()
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With extra `--name value` settings (e.g. `--requirepass`).
    pub fn start_with(extra: &[&str]) -> Self {
        let mut s = RedisServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            extra: extra.iter().map(|e| e.to_string()).collect(),
        };
        s.restart();
        s
    }

    /// A server speaking only TLS on its port, with `dir`'s `server.crt` / `server.key`.
    pub fn start_tls(dir: &std::path::Path) -> Self {
        let file = |f: &str| dir.join(f).display().to_string();
        let port = free_port();
        let mut s = RedisServer {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
            extra: vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                file("server.crt"),
                "--tls-key-file".into(),
                file("server.key"),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        };
        s.restart();
        s
    }

    /// Starts the server (again) on its port; returns once it accepts connections.
    pub fn restart(&mut self) {
        let bin =
            std::env::var("PORTCULLIS_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} ({e}): run ci/redis.sh, which installs it")
            });
        self.child = Some(child);
        // Ready when the port accepts: a bounded wait for a condition, not a guess.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A direct connection, for the test's own commands.
    pub fn conn(&self, password: Option<&str>) -> redis::Connection {
        let url = match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => self.url(),
        };
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `CLUSTER SLOTS` as (first slot, last slot, master's port).
fn slot_owners(c: &mut redis::Connection) -> Vec<(i64, i64, i64)> {
    use redis::Value;
    let reply: Value = redis::cmd("CLUSTER").arg("SLOTS").query(c).unwrap();
    let Value::Array(ranges) = reply else {
        panic!("CLUSTER SLOTS: {reply:?}")
    };
    ranges
        .iter()
        .map(|r| match r {
            Value::Array(f) => match (&f[0], &f[1], &f[2]) {
                (Value::Int(a), Value::Int(b), Value::Array(m)) => match m[1] {
                    Value::Int(p) => (*a, *b, p),
                    _ => panic!("{m:?}"),
                },
                _ => panic!("{f:?}"),
            },
            _ => panic!("{r:?}"),
        })
        .collect()
}

/// A Redis Cluster of `n` masters on 127.0.0.1, each a [`RedisServer`] with the cluster
/// enabled, the slots split evenly, ready (every node says `cluster_state:ok` and knows every
/// slot) when `start` returns.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(n: usize) -> Self {
        // Each node's cluster bus on a free port of its own (MEET names it).
        let buses: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let nodes: Vec<RedisServer> = buses
            .iter()
            .map(|bus| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    // A dead master's slots stop; the others keep serving theirs.
                    "--cluster-require-full-coverage",
                    "no",
                    "--cluster-port",
                    &bus.to_string(),
                ])
            })
            .collect();
        let per = 16384 / n;
        for (i, node) in nodes.iter().enumerate() {
            let first = i * per;
            let last = if i + 1 == n { 16383 } else { first + per - 1 };
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query(&mut node.conn(None))
                .unwrap();
        }
        for (node, bus) in nodes.iter().zip(&buses).skip(1) {
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(node.port)
                .arg(bus)
                .query(&mut nodes[0].conn(None))
                .unwrap();
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_until_settled();
        cluster
    }

    /// Waits (bounded) until every node reports the cluster ok and the same slot owners.
    pub fn wait_until_settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let views: Vec<Option<Vec<(i64, i64, i64)>>> = self
                .nodes
                .iter()
                .map(|node| {
                    let mut c = node.conn(None);
                    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok()?;
                    if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                        return None;
                    }
                    let known = info
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("cluster_known_nodes:"))?;
                    if known.parse::<usize>().ok()? != self.nodes.len() {
                        return None;
                    }
                    let mut v = slot_owners(&mut c);
                    v.sort();
                    Some(v)
                })
                .collect();
            if views.iter().all(Option::is_some) && views.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle: {views:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// The node serving a slot now.
    pub fn owner(&self, slot: u16) -> usize {
        let port = slot_owners(&mut self.nodes[0].conn(None))
            .into_iter()
            .find(|(a, b, _)| (*a..=*b).contains(&i64::from(slot)))
            .map(|(_, _, p)| p)
            .expect("a served slot");
        self.nodes
            .iter()
            .position(|n| i64::from(n.port) == port)
            .unwrap()
    }

    pub fn keyslot(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.nodes[0].conn(None))
            .unwrap()
    }

    fn id(&self, node: usize) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.nodes[node].conn(None))
            .unwrap()
    }

    /// Starts moving `slot` from node `from` to node `to` and moves its keys; the slot stays
    /// `from`'s (which answers `ASK` for keys it no longer has) until [`Self::finish_move`].
    pub fn begin_move(&self, slot: u16, from: usize, to: usize) {
        let (from_id, to_id) = (self.id(from), self.id(to));
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&from_id)
            .query(&mut self.nodes[to].conn(None))
            .unwrap();
        let mut src = self.nodes[from].conn(None);
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&to_id)
            .query(&mut src)
            .unwrap();
        let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(1000)
            .query(&mut src)
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.nodes[to].port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut src)
                .unwrap();
        }
    }

    /// Gives `slot` to node `to` on every node: the others answer `MOVED` from now on.
    pub fn finish_move(&self, slot: u16, to: usize) {
        let to_id = self.id(to);
        let order = std::iter::once(to).chain((0..self.nodes.len()).filter(|&i| i != to));
        for i in order {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&to_id)
                .query(&mut self.nodes[i].conn(None))
                .unwrap();
        }
    }
}
