//! `serve` as exposed to the world: the admin API's guards, the admin API off by default, and
//! `--upstream` passing only what the gate allows, with forwarding headers no client can forge.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/portcullis.toml");
const TOKEN: &str = "security-test-token-0123456789";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts serve with `extra` flags; returns it and every address it printed, in order.
fn start(data: &Path, extra: &[&str], lines: usize) -> (Server, Vec<String>) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--config",
            CONFIG,
            "--listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .args(extra)
        .env("PORTCULLIS_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut addrs = Vec::new();
    for _ in 0..lines {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        addrs.push(line.trim().rsplit("http://").next().unwrap().to_owned());
    }
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    (Server(child), addrs)
}

/// Sends raw request text (head lines without the blank line, then a body); returns the
/// status and the whole response.
fn send(addr: &str, head: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    // A server may answer (413) and close before taking a whole body: what it said is read
    // whatever became of the rest of the write.
    let _ = write!(
        s,
        "{head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, text)
}

#[test]
fn the_admin_api_guards_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addrs) = start(
        &dir.path().join("data"),
        &["--admin-listen", "127.0.0.1:0"],
        2,
    );
    let (api, admin) = (&addrs[0], &addrs[1]);
    // A principal gets locked out of login... and some state under api-free.
    let secret = "alice-secret-api-key";
    for _ in 0..3 {
        let head =
            format!("GET /api/v1/things HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {secret}");
        assert_eq!(send(api, &head, "").0, 200);
    }
    let host = format!("host: {admin}");
    let auth = format!("authorization: Bearer {TOKEN}");
    let stats = |extra: &str| {
        send(
            admin,
            &format!("GET /_portcullis/stats HTTP/1.1\r\n{extra}"),
            "",
        )
    };

    assert_eq!(stats(&host).0, 401, "no token");
    let (code, text) = stats(&format!(
        "{host}\r\nauthorization: Bearer wrong-token-0123456789"
    ));
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("www-authenticate: Bearer"), "{text}");
    let (code, _) = stats(&format!("host: rebind.attacker.example\r\n{auth}"));
    assert_eq!(code, 421, "a Host it does not serve (DNS rebinding)");
    let (code, text) = stats(&format!("{host}\r\n{auth}"));
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("principal:#"), "{text}");
    assert!(!text.contains(secret), "a principal in clear: {text}");

    // A page's cross-origin POST (text/plain needs no preflight) must not reset anything.
    let reset = r#"{"policy":"api-free","key":"principal:alice-secret-api-key"}"#;
    let (code, _) = send(
        admin,
        &format!("POST /_portcullis/reset HTTP/1.1\r\n{host}\r\n{auth}\r\norigin: https://evil.example\r\ncontent-type: text/plain"),
        reset,
    );
    assert_eq!(code, 403);
    let (code, _) = send(
        admin,
        &format!(
            "POST /_portcullis/reset HTTP/1.1\r\n{host}\r\n{auth}\r\ncontent-type: text/plain"
        ),
        reset,
    );
    assert_eq!(code, 415, "only JSON bodies");
    let (code, text) = send(
        admin,
        &format!("POST /_portcullis/reset HTTP/1.1\r\n{host}\r\n{auth}\r\ncontent-type: application/json"),
        reset,
    );
    assert_eq!(
        (code, text.ends_with(r#"{"reset":true}"#)),
        (200, true),
        "{text}"
    );

    // Metrics for a scraper with the token: three allowed decisions of api-free so far.
    let (code, _) = send(admin, &format!("GET /metrics HTTP/1.1\r\n{host}"), "");
    assert_eq!(code, 401, "metrics need the token too");
    let (code, text) = send(
        admin,
        &format!("GET /metrics HTTP/1.1\r\n{host}\r\n{auth}"),
        "",
    );
    assert_eq!(code, 200, "{text}");
    assert!(
        text.contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_decisions_total{policy=\"api-free\",outcome=\"allowed\"} 3\n"),
        "{text}"
    );
    assert!(!text.contains(secret), "{text}");
    let (code, text) = send(
        admin,
        &format!(
            "GET /metrics HTTP/1.1\r\n{host}\r\n{auth}\r\naccept: application/openmetrics-text"
        ),
        "",
    );
    assert_eq!(code, 200, "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    // The public listener has no admin endpoint.
    let (code, text) = send(api, "GET /_portcullis/stats HTTP/1.1\r\nhost: x", "");
    assert_eq!(code, 404, "{text}");
}

#[test]
fn the_admin_api_is_off_by_default_and_needs_a_real_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addrs) = start(&dir.path().join("data"), &[], 1);
    let (code, _) = send(&addrs[0], "GET /_portcullis/stats HTTP/1.1\r\nhost: x", "");
    assert_eq!(code, 404);
    let short = Command::new(BIN)
        .args([
            "serve",
            "--config",
            CONFIG,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("PORTCULLIS_ADMIN_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 16 characters"));
    let none = Command::new(BIN)
        .args([
            "serve",
            "--config",
            CONFIG,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env_remove("PORTCULLIS_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("--admin-token-file"));
}

/// An upstream that answers every request with the request's head and body, and counts them.
fn upstream() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut head = String::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    count.fetch_add(1, Ordering::SeqCst);
                    let echo = format!("{head}\n{}", String::from_utf8_lossy(&body));
                    let mut w = &stream;
                    write!(
                        w,
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-upstream: yes\r\ncontent-length: {}\r\n\r\n{echo}",
                        echo.len()
                    )
                    .unwrap();
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn upstream_gets_what_the_gate_allows_with_honest_forwarding_headers() {
    let (up, seen) = upstream();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{up}");
    let (_server, addrs) = start(&dir.path().join("data"), &["--upstream", &url], 1);
    let api = &addrs[0];
    // A client claiming to be someone else: the upstream hears the real peer only.
    let (code, text) = send(
        api,
        "POST /api/v1/things?x=1 HTTP/1.1\r\nhost: app.example\r\nauthorization: Bearer k\r\nx-forwarded-for: 1.2.3.4\r\nforwarded: for=1.2.3.4\r\nconnection: x-private\r\nx-private: hop",
        "the body",
    );
    assert_eq!(code, 200, "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("x-upstream: yes"), "{text}");
    assert!(
        lower.contains("x-ratelimit-remaining: 19"),
        "the gate's headers on the upstream's answer: {text}"
    );
    assert!(lower.contains("post /api/v1/things?x=1 http/1.1"), "{text}");
    assert!(lower.contains("x-forwarded-for: 127.0.0.1\r\n"), "{text}");
    assert!(lower.contains("forwarded: for=127.0.0.1\r\n"), "{text}");
    assert!(
        !lower.contains("1.2.3.4"),
        "a forged hop reached the upstream: {text}"
    );
    assert!(
        !lower.contains("x-private"),
        "a hop-by-hop header was forwarded: {text}"
    );
    assert!(text.ends_with("\nthe body"), "{text}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    // Refused requests never reach the upstream.
    for _ in 0..30 {
        send(
            api,
            "GET /api/x HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k",
            "",
        );
    }
    let reached = seen.load(Ordering::SeqCst);
    assert_eq!(
        reached, 20,
        "burst 20 of api-free, then 429s answered by the gate"
    );
    // A body past the cap is refused before it is forwarded.
    let big = "x".repeat(2 << 20);
    let (code, _) = send(
        api,
        "POST /api/v1/things HTTP/1.1\r\nhost: x\r\nauthorization: Bearer other",
        &big,
    );
    assert_eq!(code, 413);
    assert_eq!(seen.load(Ordering::SeqCst), reached);
}

#[test]
fn http2_is_served_with_the_same_gate() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addrs) = start(&dir.path().join("data"), &[], 1);
    let url = format!("http://{}/api/x", addrs[0]);
    let out = Command::new("curl")
        .args([
            "-si",
            "--http2-prior-knowledge",
            "-H",
            "Authorization: Bearer h2",
            &url,
        ])
        .output()
        .expect("this test speaks HTTP/2 through curl: install curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("x-ratelimit-remaining: 19"), "{text}");
}
