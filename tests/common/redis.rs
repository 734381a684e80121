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
