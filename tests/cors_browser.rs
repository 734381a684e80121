//! A real browser against the engine: headless Chromium loads a page from one origin
//! (127.0.0.1:A), which fetches an API on another (127.0.0.1:B) guarded by the engine, and an
//! iframe from a third, refused origin (127.0.0.1:C). The browser's verdict on every fetch must
//! equal the engine's decision for the same request.
//!
//! Needs Debian's `chromium`, so it is ignored by a plain `cargo test` (which reports it as
//! ignored): `ci/cors-browser.sh` installs Chromium and runs it with `--ignored`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use portcullis::cors::{headers, CorsPolicy, CorsRequest, RequestKind};

const PAGE: &str = include_str!("browser/page.html");
const FRAME: &str = include_str!("browser/frame.html");
const WAIT: Duration = Duration::from_secs(60);

/// Every case the pages run, with the verdict the policy below must give.
const CASES: [(&str, bool); 8] = [
    ("simple_get", true),
    ("credentialed_get", true),
    ("put_custom_header", true),
    ("refused_header", false),
    ("lowercase_patch", false),
    ("exposed_header", true),
    ("unexposed_header", true),
    ("refused_origin", false),
];

/// What the engine decided for one request the API received.
#[derive(Clone, Debug)]
struct EngineRecord {
    case: String,
    kind: RequestKind,
    allowed: bool,
    expose: Option<String>,
}

/// What the browser reported for one case.
#[derive(Debug)]
struct BrowserOutcome {
    ok: bool,
    status: u16,
    header: Option<String>,
}

#[test]
#[ignore = "needs Chromium: ci/cors-browser.sh installs it and runs this test with --ignored"]
fn chromium_agrees_with_the_engine() {
    let Some(chromium) = find_chromium() else {
        panic!(
            "chromium is not installed: run ci/cors-browser.sh (installs Debian's chromium and \
             runs this test)"
        );
    };

    let page = TcpListener::bind("127.0.0.1:0").expect("bind page server");
    let refused = TcpListener::bind("127.0.0.1:0").expect("bind refused-origin server");
    let api = TcpListener::bind("127.0.0.1:0").expect("bind API server");
    let (page_port, refused_port, api_port) = (port(&page), port(&refused), port(&api));

    let policy = CorsPolicy::builder()
        .allow_origin(format!("http://127.0.0.1:{page_port}"))
        .allow_methods(["PUT", "PATCH", "DELETE"])
        .allow_headers(["X-Request-Id", "Content-Type"])
        .expose_headers(["X-RateLimit-Remaining"])
        .allow_credentials(true)
        .max_age_secs(60)
        .build()
        .expect("valid policy");

    let records = Arc::new(Mutex::new(Vec::<EngineRecord>::new()));
    let (results_tx, results_rx) = mpsc::channel::<String>();
    let fill = |html: &str| {
        html.replace("__API_PORT__", &api_port.to_string())
            .replace("__REFUSED_PORT__", &refused_port.to_string())
    };
    serve(
        page,
        Arc::new(PageSite {
            html: fill(PAGE),
            results: results_tx.clone(),
        }),
    );
    serve(
        refused,
        Arc::new(PageSite {
            html: fill(FRAME),
            results: results_tx,
        }),
    );
    serve(
        api,
        Arc::new(ApiSite {
            policy,
            records: Arc::clone(&records),
        }),
    );

    let profile = unique_temp_dir("portcullis-chromium");
    let mut browser = Browser::launch(
        &chromium,
        &profile,
        &format!("http://127.0.0.1:{page_port}/"),
    );

    let mut outcomes = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while outcomes.len() < CASES.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out after {WAIT:?} with results for {:?}; chromium log:\n{}",
            outcomes.keys().collect::<Vec<_>>(),
            browser.log()
        );
        match results_rx.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok(body) => parse_results(&body, &mut outcomes),
            Err(RecvTimeoutError::Timeout) => browser.assert_running(),
            Err(RecvTimeoutError::Disconnected) => panic!("result channel closed"),
        }
    }
    drop(browser);
    let _ = std::fs::remove_dir_all(&profile);

    let records = records.lock().expect("records lock").clone();
    for (case, expected_allowed) in CASES {
        let outcome = &outcomes[case];
        let seen: Vec<&EngineRecord> = records.iter().filter(|r| r.case == case).collect();
        assert!(!seen.is_empty(), "{case}: the API never saw the request");
        let engine_allowed = seen.iter().all(|r| r.allowed);
        assert_eq!(
            engine_allowed, expected_allowed,
            "{case}: engine decided {engine_allowed}, the policy means {expected_allowed}: {seen:?}"
        );
        assert_eq!(
            outcome.ok, engine_allowed,
            "{case}: browser {outcome:?} but engine allowed={engine_allowed}: {seen:?}"
        );
        if outcome.ok {
            assert_eq!(outcome.status, 200, "{case}: {outcome:?}");
        }
    }

    // Preflights where Fetch wants them, and only there.
    let preflighted = |case: &str| {
        records
            .iter()
            .any(|r| r.case == case && r.kind == RequestKind::Preflight)
    };
    for case in ["put_custom_header", "refused_header", "lowercase_patch"] {
        assert!(preflighted(case), "{case}: expected a preflight");
    }
    for case in ["simple_get", "credentialed_get", "refused_origin"] {
        assert!(!preflighted(case), "{case}: no preflight expected");
    }
    // A refused preflight stops the browser: the actual request never reaches the API.
    for case in ["refused_header", "lowercase_patch"] {
        assert!(
            records
                .iter()
                .all(|r| r.case != case || r.kind == RequestKind::Preflight),
            "{case}: the actual request was sent after a refused preflight"
        );
    }

    // JavaScript reads a header exactly when the engine exposed it.
    for (case, name, value) in [
        ("exposed_header", "x-ratelimit-remaining", Some("42")),
        ("unexposed_header", "x-internal-trace", None),
    ] {
        let exposed_by_engine = records.iter().any(|r| {
            r.case == case
                && r.expose.as_deref().is_some_and(|list| {
                    list.split(',').any(|n| n.trim().eq_ignore_ascii_case(name))
                })
        });
        assert_eq!(
            exposed_by_engine,
            value.is_some(),
            "{case}: engine exposure"
        );
        assert_eq!(
            outcomes[case].header.as_deref(),
            value,
            "{case}: what JavaScript read"
        );
    }
    eprintln!(
        "cors_browser: {} cases, browser and engine agree",
        CASES.len()
    );
}

fn parse_results(body: &str, outcomes: &mut BTreeMap<String, BrowserOutcome>) {
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split(' ').collect();
        let [case, verdict, status, header] = parts[..] else {
            panic!("malformed result line from the page: {line:?}");
        };
        let outcome = BrowserOutcome {
            ok: verdict == "ok",
            status: status.parse().unwrap_or(0),
            header: (header != "-").then(|| header.to_owned()),
        };
        outcomes.insert(case.to_owned(), outcome);
    }
}

fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PORTCULLIS_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn port(listener: &TcpListener) -> u16 {
    listener.local_addr().expect("local addr").port()
}

fn unique_temp_dir(prefix: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Headless Chromium in its own process group, killed with the group when dropped.
struct Browser {
    child: Child,
    log: PathBuf,
}

impl Browser {
    fn launch(binary: &PathBuf, profile: &std::path::Path, url: &str) -> Self {
        let log = profile.join("chromium.log");
        let log_file = std::fs::File::create(&log).expect("create chromium log");
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Self { child, log }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("chromium exited early ({status}); log:\n{}", self.log());
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: Chromium's renderer and GPU helpers are children of the browser.
        // killpg(2) directly: procps-ng 4.0's `kill -KILL -<pgid>` misreads the group and
        // signals every process (kill(-1)). Group ids 0 and 1 would mean ours or everyone's.
        if let Ok(group) = libc::pid_t::try_from(self.child.id()) {
            if group > 1 {
                // SAFETY: plain syscall on the group this test created with process_group(0).
                unsafe { libc::killpg(group, libc::SIGKILL) };
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One parsed HTTP/1.1 request.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn case(&self) -> String {
        self.target
            .split_once("case=")
            .map(|(_, c)| c.split('&').next().unwrap_or(c).to_owned())
            .unwrap_or_default()
    }
}

/// A response: status, headers, body.
type Response = (u16, Vec<(String, String)>, Vec<u8>);

trait Site: Send + Sync + 'static {
    fn handle(&self, req: &Request) -> Response;
}

/// Serves the page (or the refused frame) and collects the results the page posts back.
struct PageSite {
    html: String,
    results: Sender<String>,
}

impl Site for PageSite {
    fn handle(&self, req: &Request) -> Response {
        let html = vec![("Content-Type".into(), "text/html; charset=utf-8".into())];
        match (req.method.as_str(), req.target.as_str()) {
            ("GET", "/" | "/frame") => (200, html, self.html.clone().into_bytes()),
            ("POST", "/results") => {
                let _ = self
                    .results
                    .send(String::from_utf8_lossy(&req.body).into_owned());
                (204, Vec::new(), Vec::new())
            }
            _ => (404, Vec::new(), Vec::new()),
        }
    }
}

/// The API, with the engine in front of it; records every decision.
struct ApiSite {
    policy: CorsPolicy,
    records: Arc<Mutex<Vec<EngineRecord>>>,
}

impl Site for ApiSite {
    fn handle(&self, req: &Request) -> Response {
        let cors = CorsRequest::from_headers(&req.method, |name| req.header(name));
        let decision = self.policy.decide(&cors);
        let mut headers: Vec<(String, String)> = decision
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        self.records
            .lock()
            .expect("records lock")
            .push(EngineRecord {
                case: req.case(),
                kind: decision.kind(),
                allowed: decision.is_allowed(),
                expose: decision.header(headers::EXPOSE_HEADERS).map(str::to_owned),
            });
        if let Some(status) = decision.status() {
            return (status, headers, Vec::new());
        }
        headers.push(("X-RateLimit-Remaining".into(), "42".into()));
        headers.push(("X-Internal-Trace".into(), "abc".into()));
        headers.push(("Content-Type".into(), "text/plain".into()));
        (200, headers, b"ok".to_vec())
    }
}

fn serve(listener: TcpListener, site: Arc<dyn Site>) {
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let site = Arc::clone(&site);
            thread::spawn(move || handle_connection(stream, &*site));
        }
    });
}

fn handle_connection(stream: TcpStream, site: &dyn Site) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    // Keep-alive: serve requests until the browser closes or goes quiet.
    while let Some(req) = read_request(&mut reader) {
        let (status, headers, body) = site.handle(&req);
        let mut out = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
        for (name, value) in &headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        if writer.write_all(out.as_bytes()).is_err() || writer.write_all(&body).is_err() {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok().filter(|&n| n > 0)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(1 << 20);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        403 => "Forbidden",
        _ => "Not Found",
    }
}
