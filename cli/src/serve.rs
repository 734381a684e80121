//! `serve`: a demo HTTP API with the gate in front.
//!
//! Routes: `POST /api/v1/auth/login`, `GET /api/v1/export` (slow, concurrency-limited), any
//! other `/api/` path, and the loopback-only admin endpoints `GET /_portcullis/stats` (with the
//! live keys of every policy, or of `?policy=..`) and `POST /_portcullis/reset?policy=..&key=..`.
//! The principal is the bearer token of `Authorization`, the tier comes from `X-Tier`. SIGHUP
//! reloads the config; SIGINT and SIGTERM stop the server after writing every counter to the
//! store.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis::gate::{Action, Gate, GateRequest};
use serde_json::json;

use crate::args::ServeArgs;
use crate::commands::open_gate;
use crate::http::{read_request, write_response, Request};

/// The flags the signal handlers raise: SIGHUP asks for a reload, SIGINT and SIGTERM for a stop.
struct Signals {
    reload: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

fn install_signals() -> Result<Signals, String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let signals = Signals {
        reload: Arc::new(AtomicBool::new(false)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let register = |signal, flag: &Arc<AtomicBool>| {
        signal_hook::flag::register(signal, Arc::clone(flag))
            .map(drop)
            .map_err(|e| format!("cannot install the handler of signal {signal}: {e}"))
    };
    register(SIGHUP, &signals.reload)?;
    register(SIGINT, &signals.stop)?;
    register(SIGTERM, &signals.stop)?;
    Ok(signals)
}

struct App {
    gate: Gate,
    /// Allowed requests per (policy, key), for the load test's quota check.
    allowed: Mutex<HashMap<(String, String), u64>>,
    started: Instant,
}

pub fn run(args: ServeArgs) -> Result<ExitCode, String> {
    let (gate, _) = open_gate(
        &args.config,
        "stop the other server, or give this one its own store with --data",
    )?;
    let listener = TcpListener::bind(args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let signals = install_signals()?;
    let app = Arc::new(App {
        gate,
        allowed: Mutex::new(HashMap::new()),
        started: Instant::now(),
    });
    let (tx, rx) = mpsc::channel::<TcpStream>();
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..args.workers.max(1) {
        let (rx, app) = (rx.clone(), app.clone());
        std::thread::spawn(move || loop {
            let next = rx.lock().map(|r| r.recv());
            match next {
                Ok(Ok(stream)) => serve_connection(&app, stream),
                _ => return,
            }
        });
    }
    println!("portcullis: listening on http://{addr}");
    println!("portcullis: config {}", args.config.config.display());
    let _ = std::io::stdout().flush();
    while !signals.stop.load(Ordering::SeqCst) {
        if signals.reload.swap(false, Ordering::SeqCst) {
            reload(&app.gate, &args.config);
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                if tx.send(stream).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => eprintln!("portcullis: accept: {e}"),
        }
    }
    app.gate
        .close()
        .map_err(|e| format!("could not write the counters to the store: {e}"))?;
    println!("portcullis: stopped");
    Ok(ExitCode::SUCCESS)
}

fn reload(gate: &Gate, args: &crate::args::ConfigArgs) {
    let config = match crate::commands::load_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis: reload refused, the running config stays:\n{e}");
            return;
        }
    };
    match gate.reload(config) {
        Ok(s) => println!(
            "portcullis: reloaded (kept {:?}, fresh {:?}, removed {:?})",
            s.kept, s.fresh, s.removed
        ),
        Err(e) => eprintln!("portcullis: reload refused, the running config stays: {e}"),
    }
    let _ = std::io::stdout().flush();
}

fn serve_connection(app: &App, stream: TcpStream) {
    let peer = match stream.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let req = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(_) => {
                let _ = write_response(&mut writer, 400, &[], r#"{"error":"bad request"}"#, false);
                return;
            }
        };
        let keep_alive = req.keep_alive;
        if handle(app, peer, &req, &mut writer).is_err() || !keep_alive {
            return;
        }
    }
}

fn handle(app: &App, peer: SocketAddr, req: &Request, w: &mut TcpStream) -> std::io::Result<()> {
    let keep = req.keep_alive;
    let path = req.path();
    if path.starts_with("/_portcullis/") {
        if !peer.ip().is_loopback() {
            return write_response(
                w,
                403,
                &[],
                r#"{"error":"admin endpoints are loopback only"}"#,
                keep,
            );
        }
        return admin(app, req, w);
    }
    let principal = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|p| !p.is_empty());
    // The peer and the forwarding headers: the gate believes them only from the config's
    // `trusted_proxies`.
    let mut greq = GateRequest::new(&req.method, path).ip(peer.ip());
    greq.forwarded_for = req.header("x-forwarded-for");
    greq.forwarded = req.header("forwarded");
    let ip = app.gate.client_of(&greq);
    greq.origin = req.header("origin");
    greq.request_method = req.header("access-control-request-method");
    greq.request_headers = req.header("access-control-request-headers");
    greq.request_private_network = req
        .header("access-control-request-private-network")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    greq.principal = principal;
    greq.tier = req.header("x-tier");
    let outcome = app.gate.decide(&greq);
    let headers: Vec<(&str, String)> = outcome.headers().map(|(n, v)| (n, v.to_owned())).collect();
    if let Some(code) = outcome.status_code() {
        let body = match outcome.action() {
            Action::Preflight => String::new(),
            _ => json!({ "error": outcome.reason().to_string(), "reason": outcome.reason() })
                .to_string(),
        };
        return write_response(w, code, &headers, &body, keep);
    }
    if let Some(route) = outcome.route() {
        let mut counts = app.allowed.lock().unwrap_or_else(|e| e.into_inner());
        for a in outcome
            .applied()
            .iter()
            .filter(|a| !a.shadow && a.decision.allowed)
        {
            let key = app.gate.key_display(a.key, route, ip, principal);
            *counts.entry((a.policy().to_string(), key)).or_default() += 1;
        }
    }
    if !outcome.delay().is_zero() {
        std::thread::sleep(outcome.delay());
    }
    let (code, body) = match (req.method.as_str(), path) {
        ("POST", "/api/v1/auth/login") => (200, json!({ "token": "demo-token" })),
        ("GET", "/api/v1/export") => {
            // An expensive operation: the concurrency limit keeps a client to a few at once.
            std::thread::sleep(Duration::from_millis(200));
            (200, json!({ "export": "done" }))
        }
        (_, p) if p == "/api" || p.starts_with("/api/") => (
            200,
            json!({ "hello": principal.unwrap_or("anonymous"), "tier": req.header("x-tier") }),
        ),
        _ => (404, json!({ "error": "not found" })),
    };
    let result = write_response(w, code, &headers, &body.to_string(), keep);
    // The leases (concurrency) are held until the response is written.
    drop(outcome);
    result
}

fn admin(app: &App, req: &Request, w: &mut TcpStream) -> std::io::Result<()> {
    let keep = req.keep_alive;
    match (req.method.as_str(), req.path()) {
        ("GET", "/_portcullis/stats") => {
            let stats = app.gate.stats();
            // The live keys of every policy, or of `?policy=NAME`.
            let only = req.query("policy");
            let mut keys = serde_json::Map::new();
            for p in &stats.policies {
                if only.as_ref().is_some_and(|only| *only != p.name) {
                    continue;
                }
                match app.gate.keys(&p.name) {
                    Ok(k) => keys.insert(p.name.clone(), json!(k)),
                    Err(e) => {
                        let body = json!({ "error": e.to_string() }).to_string();
                        return write_response(w, 500, &[], &body, keep);
                    }
                };
            }
            if let (Some(only), true) = (&only, keys.is_empty()) {
                let body = json!({ "error": format!("no policy named {only:?}") }).to_string();
                return write_response(w, 404, &[], &body, keep);
            }
            let allowed: Vec<_> = app
                .allowed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|((policy, key), n)| json!({ "policy": policy, "key": key, "allowed": n }))
                .collect();
            let body = json!({
                "uptime_ms": u64::try_from(app.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "gate": stats,
                "keys": keys,
                "allowed_by_key": allowed,
            });
            write_response(w, 200, &[], &body.to_string(), keep)
        }
        ("POST", "/_portcullis/reset") => {
            let (Some(policy), Some(key)) = (req.query("policy"), req.query("key")) else {
                return write_response(w, 400, &[], r#"{"error":"give policy= and key="}"#, keep);
            };
            match crate::commands::reset_key(&app.gate, &policy, &key) {
                Ok(had) => write_response(w, 200, &[], &json!({ "reset": had }).to_string(), keep),
                Err(e) => write_response(w, 400, &[], &json!({ "error": e }).to_string(), keep),
            }
        }
        _ => write_response(w, 404, &[], r#"{"error":"not found"}"#, keep),
    }
}
