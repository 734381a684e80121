//! The CLI end to end: `serve` on an ephemeral port driven over real TCP (200, 429, preflight,
//! 403), then `inspect` and `reset` on the store it wrote, and the exit codes of the commands.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/portcullis.toml");
const LOGIN: &str = "POST /api/v1/auth/login HTTP/1.1\r\ncontent-length: 0";

/// The admin token the tests' servers are given.
const TOKEN: &str = "test-admin-token-0123456789";

struct Server {
    child: Child,
    /// The admin API's address.
    admin: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address a `portcullis: <what> http://ADDR` line names.
fn address(line: &str) -> String {
    line.trim()
        .rsplit("http://")
        .next()
        .expect("an address is printed")
        .to_owned()
}

fn start(data: &Path) -> (Server, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--config",
            CONFIG,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .env("PORTCULLIS_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut line, mut admin_line) = (String::new(), String::new());
    stdout.read_line(&mut line).unwrap();
    stdout.read_line(&mut admin_line).unwrap();
    assert!(admin_line.contains("admin API"), "{admin_line}");
    // Keep reading what the server prints, so it never writes to a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let server = Server {
        child,
        admin: address(&admin_line),
    };
    (server, address(&line))
}

/// Sends one request; returns the status and the raw header section.
fn request(addr: &str, head: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "{head}\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    (code, headers)
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("PORTCULLIS_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn serve_then_inspect_and_reset_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, addr) = start(&data);

    let (code, h) = request(
        &addr,
        "GET /api/v1/things HTTP/1.1\r\nauthorization: Bearer key-1\r\norigin: http://localhost:5173",
    );
    assert_eq!(code, 200);
    assert!(h.contains("x-ratelimit-remaining: 19"), "{h}");
    assert!(
        h.contains("access-control-allow-origin: http://localhost:5173"),
        "{h}"
    );

    let (code, h) = request(
        &addr,
        "OPTIONS /api/v1/auth/login HTTP/1.1\r\norigin: http://localhost:5173\r\naccess-control-request-method: POST",
    );
    assert_eq!(code, 204, "{h}");
    assert!(h.contains("access-control-allow-methods: post"));

    let (code, _) = request(
        &addr,
        "GET /api/v1/things HTTP/1.1\r\norigin: https://evil.example",
    );
    assert_eq!(code, 403);

    for _ in 0..5 {
        let (code, _) = request(
            &addr,
            "POST /api/v1/auth/login HTTP/1.1\r\ncontent-length: 0",
        );
        assert_eq!(code, 200);
    }
    let (code, h) = request(
        &addr,
        "POST /api/v1/auth/login HTTP/1.1\r\ncontent-length: 0\r\norigin: http://localhost:5173",
    );
    assert_eq!(code, 429);
    assert!(h.contains("retry-after: 900"), "{h}");
    assert!(
        h.contains("access-control-allow-origin"),
        "a 429 carries CORS: {h}"
    );

    // Stop it as an operator would: SIGTERM writes every counter to the store.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert!(server.child.wait().unwrap().success());

    let data = data.to_str().unwrap();
    let args = ["--json", "inspect", "--config", CONFIG, "--data", data];
    let (code, out) = run(&args);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let login = v["keys"]["login"].as_array().unwrap();
    assert_eq!(login.len(), 1);
    assert_eq!(login[0]["key"], "ip:127.0.0.1");
    assert_eq!(login[0]["blocked"], true);
    assert_eq!(v["keys"]["api-free"][0]["key"], "principal:key-1");
    assert_eq!(v["top_limited"][0]["key"], "ip:127.0.0.1");
    assert_eq!(v["recent_denials"][0]["policy"], "login");

    let (code, out) = run(&[
        "reset",
        "--config",
        CONFIG,
        "--data",
        data,
        "--policy",
        "login",
        "--key",
        "ip:127.0.0.1",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("reset"), "{out}");
    let (_, out) = run(&args);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["keys"]["login"].as_array().unwrap().len(), 0, "{v}");

    // The store survives a restart: the principal's count is still there.
    let dir_path = Path::new(data);
    let (server, addr) = start(dir_path);
    let (code, h) = request(
        &addr,
        "GET /api/v1/things HTTP/1.1\r\nauthorization: Bearer key-1",
    );
    assert_eq!(code, 200);
    assert!(h.contains("x-ratelimit-remaining: 18"), "{h}");
    let (code, out) = run(&["--json", "inspect", "--server", &server.admin]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"cors_refused\":0"), "{out}");
    let (code, out) = run(&[
        "reset",
        "--server",
        &server.admin,
        "--policy",
        "api-free",
        "--key",
        "principal:key-1",
    ]);
    assert_eq!(
        (code, out.trim()),
        (0, "principal:key-1 under api-free: reset")
    );
    drop(server);
}

#[test]
fn validate_check_and_usage_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run(&["validate", CONFIG]);
    assert_eq!(code, 0, "{out}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[policy]]\nname = \"api\"\nlimit = \"100/fortnight\"\n\n[[route]]\nmatch = \"/api/\"\nlimits = [{ policy = \"apii\", key = \"ip\" }]\n",
    )
    .unwrap();
    let (code, out) = run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("bad.toml:3:9: policy \"api\": invalid quota"),
        "{out}"
    );
    assert!(
        out.contains("bad.toml:7:22: unknown policy \"apii\": did you mean \"api\"?"),
        "{out}"
    );
    assert!(out.contains("2 errors"), "{out}");
    let (code, out) = run(&["--json", "validate", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["errors"][1]["line"], 7);

    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let login = [
        "check",
        "--config",
        CONFIG,
        "--data",
        data,
        "-X",
        "POST",
        "/api/v1/auth/login",
    ];
    let mut live = login.to_vec();
    live.push("--live");
    let (code, out) = run(&live);
    assert_eq!(code, 0, "{out}");
    let mut five = live.clone();
    five.extend(["--repeat", "5"]);
    let (code, out) = run(&five);
    assert_eq!(code, 1, "the sixth attempt is limited: {out}");
    assert!(out.starts_with("429: limited by policy login"), "{out}");

    let (code, _) = run(&["check", "--no-such-flag"]);
    assert_eq!(code, 2);
    let (code, out) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("serve") && out.contains("inspect"));
}

/// The lines of inspect's text output that list policies and keys, without the times.
fn key_listing(out: &str) -> Vec<String> {
    out.lines()
        .take_while(|l| l.starts_with("policy ") || l.starts_with("  "))
        .map(|l| l.split(", retry in").next().unwrap().trim_end().to_owned())
        .collect()
}

#[test]
fn inspect_server_lists_the_keys_of_each_policy_and_honours_policy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, addr) = start(&data);
    let (code, _) = request(
        &addr,
        "GET /api/v1/things HTTP/1.1\r\nauthorization: Bearer key-1",
    );
    assert_eq!(code, 200);
    for _ in 0..5 {
        assert_eq!(request(&addr, LOGIN).0, 200);
    }
    assert_eq!(request(&addr, LOGIN).0, 429);

    let admin = server.admin.clone();
    let (code, online) = run(&["inspect", "--server", &admin]);
    assert_eq!(code, 0, "{online}");
    assert!(
        online.contains("policy login: 1 live key\n  ip:127.0.0.1"),
        "{online}"
    );
    assert!(online.contains(", blocked"), "{online}");
    // The admin API never shows a principal in clear: a keyed hash stands in for it.
    assert!(
        online.contains("policy api-free: 1 live key\n  principal:#"),
        "{online}"
    );
    assert!(!online.contains("key-1"), "{online}");
    assert!(online.contains("policy export: 0 live keys"), "{online}");
    assert!(online.contains("1 denial\n"), "{online}");

    let (code, out) = run(&["inspect", "--server", &admin, "--policy", "login"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("policy login: 1 live key\n"), "{out}");
    assert!(!out.contains("policy api-free"), "{out}");
    assert!(
        !out.contains("api-anon"),
        "only the login route's limits: {out}"
    );
    let (code, out) = run(&["--json", "inspect", "--server", &admin, "--policy", "login"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["keys"]["login"][0]["key"], "ip:127.0.0.1", "{v}");
    assert_eq!(v["keys"]["login"][0]["blocked"], true, "{v}");
    assert_eq!(v["keys"].as_object().unwrap().len(), 1, "{v}");
    assert_eq!(v["recent_denials"][0]["policy"], "login", "{v}");
    let (code, out) = run(&["inspect", "--server", &admin, "--policy", "nope"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no policy named \"nope\""), "{out}");

    // The same listing as inspect on the store once the server has stopped.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert!(server.child.wait().unwrap().success());
    let data = data.to_str().unwrap();
    let (code, offline) = run(&["inspect", "--config", CONFIG, "--data", data]);
    assert_eq!(code, 0, "{offline}");
    // The same keys, principals in clear only offline (the operator holds the store).
    let hashed = key_listing(&online)
        .iter()
        .find(|l| l.contains("principal:#"))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .expect("a hashed principal");
    let words = |lines: Vec<String>| -> Vec<String> {
        lines
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let online: Vec<String> = key_listing(&online)
        .iter()
        .map(|l| l.replace(&hashed, "principal:key-1"))
        .collect();
    assert_eq!(words(online), words(key_listing(&offline)));
    // Six policies; keys under login, api-free and the shadow api-ip.
    assert_eq!(key_listing(&offline).len(), 6 + 3, "{offline}");
}

#[test]
fn check_is_a_dry_run_unless_live() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let login = [
        "check",
        "--config",
        CONFIG,
        "--data",
        data_arg,
        "-X",
        "POST",
        "/api/v1/auth/login",
        "--repeat",
        "5",
    ];
    for _ in 0..2 {
        let (code, out) = run(&login);
        assert_eq!(code, 0, "a dry run charges nothing that lasts: {out}");
        assert!(out.contains("(dry run: "), "{out}");
    }
    assert!(!data.exists(), "a dry run does not open the store");
    let (code, out) = run(&["check", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("dry run") && out.contains("--live"), "{out}");
    let mut six = login.to_vec();
    six[9] = "6";
    let (code, out) = run(&six);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("429: limited by policy login"), "{out}");

    let mut live = login.to_vec();
    live.push("--live");
    let (code, out) = run(&live);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("dry run"), "{out}");
    assert!(data.exists(), "--live opens the store");
    let (code, out) = run(&live);
    assert_eq!(code, 1, "the live store kept the first five: {out}");

    // Beside a running server: the dry run works, --live says why it cannot.
    let (server, _addr) = start(&data);
    let (code, out) = run(&login);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&live);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("is locked by another process, most likely a running `portcullis serve`"),
        "{out}"
    );
    assert!(out.contains("leave out --live for a dry run"), "{out}");
    let (code, out) = run(&["inspect", "--config", CONFIG, "--data", data_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--server ADDR"), "{out}");
    drop(server);
}

#[test]
fn validate_counts_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run(&["validate", CONFIG]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(6 policies, 3 routes, CORS on)"), "{out}");
    assert!(
        out.contains("route POST /api/v1/auth/login (1 limit)\n"),
        "{out}"
    );
    assert!(
        out.contains("route /api/ (2 limits, 1 limit without a principal)\n"),
        "{out}"
    );
    let one = dir.path().join("one.toml");
    std::fs::write(
        &one,
        "[[policy]]\nname = \"a\"\nlimit = \"1/s\"\n[[route]]\nmatch = \"/a\"\nlimits = [{ policy = \"a\", key = \"ip\" }]\n",
    )
    .unwrap();
    let (code, out) = run(&["validate", one.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(1 policy, 1 route, CORS off)"), "{out}");

    // Every problem of a policy at once, and one error counted as one.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[policy]]\nname = \"has space\"\nlimit = \"100/fortnight\"\n",
    )
    .unwrap();
    let (code, out) = run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bad.toml:2:8: invalid policy name"), "{out}");
    assert!(
        out.contains("bad.toml:3:9: policy \"has space\": invalid quota"),
        "{out}"
    );
    assert!(out.contains("2 errors in"), "{out}");
    std::fs::write(&bad, "[[policy]]\nname = \"a\"\nlimit = \"1/fortnight\"\n").unwrap();
    let (_, out) = run(&["validate", bad.to_str().unwrap()]);
    assert!(out.contains("\n1 error in"), "{out}");
}

#[test]
fn admin_reset_takes_a_json_body_and_any_principal() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(&dir.path().join("data"));
    for principal in ["a% 1", "\u{fc}+/&=?"] {
        let head = format!("GET /api/v1/things HTTP/1.1\r\nauthorization: Bearer {principal}");
        assert_eq!(request(&addr, &head).0, 200);
    }
    let body = r#"{"policy":"api-free","key":"principal:a% 1"}"#;
    let mut s = TcpStream::connect(&server.admin).unwrap();
    write!(
        s,
        "POST /_portcullis/reset HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        server.admin,
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.ends_with(r#"{"reset":true}"#), "{text}");
    // The CLI sends any key as it is.
    let key = "principal:\u{fc}+/&=?";
    let (code, out) = run(&[
        "reset",
        "--server",
        &server.admin,
        "--policy",
        "api-free",
        "--key",
        key,
    ]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("{key} under api-free: reset").as_str())
    );
    drop(server);
}
