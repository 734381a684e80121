//! A gate that has seen every kind of decision, and the counts its metrics must show: shared
//! by `tests/metrics.rs` and `examples/metrics.rs` (which feeds `ci/metrics.sh`'s parsers).
//!
//! The expected counts are written down from the traffic, and every request's action is
//! checked as it is made, so a metric that disagrees is the metric's fault.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use portcullis::config::Config;
use portcullis::gate::{Action, Gate, GateRequest, MetricsFormat, Reason};
use portcullis::ManualClock;

pub const T0: u64 = 1_700_000_000_000_000_000;
const APP: &str = "https://app.example.com";

/// One expected sample: name, labels, value.
pub type Expected = Vec<(String, BTreeMap<String, String>, u64)>;

/// The expositions and the counts they must show.
pub struct Seen {
    pub prometheus: String,
    pub openmetrics: String,
    pub expected: Expected,
}

pub fn config(dir: &Path) -> Config {
    format!(
        r#"
[store]
kind = "sled"
path = "{}"
capacity = 1024
flush_interval = "50ms"

[[policy]]
name = "login"
algorithm = "fixed_window"
limit = "3/15m"
block = "15m"

[[policy]]
name = "api-free"
limit = "2/h"

[[policy]]
name = "api-premium"
limit = "100/h"

[[policy]]
name = "api-ip"
limit = "1/h"

[[policy]]
name = "export"
algorithm = "concurrency"
limit = 1
lease_timeout = "1m"

[[policy]]
name = "shaped"
algorithm = "leaky_bucket"
limit = "10/s"
burst = 5

[[policy]]
name = "flood"
limit = "1/h"
capacity = 8

[[route]]
match = "POST /login"
limits = [{{ policy = "login", key = "ip" }}]

[[route]]
match = "GET /export"
limits = [{{ policy = "export", key = "principal" }}]

[[route]]
match = "/shaped"
limits = [{{ policy = "shaped", key = "ip" }}]

[[route]]
match = "/flood/"
limits = [{{ policy = "flood", key = "ip" }}]

[[route]]
match = "/api/"
limits = [
  {{ tiers = {{ free = "api-free", premium = "api-premium" }}, default_tier = "free", key = "principal" }},
  {{ policy = "api-ip", key = "ip", shadow = true }},
]

[cors]
allowed_origins = ["{APP}"]
allowed_methods = ["GET", "POST"]
"#,
        dir.join("store").display()
    )
    .parse()
    .expect("config")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn expect(gate: &Gate, req: &GateRequest<'_>, action: Action) {
    let o = gate.decide(req);
    assert_eq!(o.action(), action, "{req:?}: {:?}", o.reason());
}

fn sample(out: &mut Expected, name: &str, labels: &[(&str, &str)], value: u64) {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.push((name.to_string(), labels, value));
}

/// Every kind of decision on a gate over a sled store in `dir`; the store error is made in a
/// forked child (whose store writer is the parent's thread, so its checks fail closed),
/// which renders the metrics. Returns what the child rendered.
pub fn every_kind(dir: &Path) -> Seen {
    let gate = Gate::builder(config(dir))
        .clock(ManualClock::new(T0))
        .build()
        .expect("gate");
    let a = ip("192.0.2.1");

    // Credential stuffing against login: 3 allowed, then the lockout (the denial that
    // starts it and the one after).
    let login = GateRequest::new("POST", "/login").ip(a);
    for _ in 0..3 {
        expect(&gate, &login, Action::Pass);
    }
    for _ in 0..2 {
        expect(&gate, &login, Action::Limited);
    }
    // Tiers, with an address limit in shadow mode: alice (free) twice allowed, then limited
    // by her tier; her address is shadow-limited on her second request.
    let alice = GateRequest::new("GET", "/api/items")
        .ip(ip("192.0.2.2"))
        .principal("alice")
        .tier("free");
    expect(&gate, &alice, Action::Pass);
    expect(&gate, &alice, Action::Pass);
    expect(&gate, &alice, Action::Limited);
    let bob = GateRequest::new("GET", "/api/items")
        .ip(ip("192.0.2.3"))
        .principal("bob")
        .tier("premium");
    expect(&gate, &bob, Action::Pass);
    // One export in flight: the second is limited; the first gives its lease back.
    let export = GateRequest::new("GET", "/export").ip(a).principal("carol");
    let held = gate.decide(&export);
    assert_eq!(held.action(), Action::Pass);
    expect(&gate, &export, Action::Limited);
    drop(held);
    // Shaping: a burst, then delays.
    let shaped = GateRequest::new("GET", "/shaped").ip(ip("192.0.2.4"));
    let delays: Vec<_> = (0..3).map(|_| gate.decide(&shaped).delay()).collect();
    assert!(delays[0].is_zero() && !delays[1].is_zero() && !delays[2].is_zero());
    // A key flood on an 8-slot table: each key once allowed, once limited; every key past
    // the eighth evicts a limited one.
    for i in 0..20 {
        let addr = format!("10.0.0.{i}");
        let req = GateRequest::new("GET", "/flood/x").ip(ip(&addr));
        expect(&gate, &req, Action::Pass);
        expect(&gate, &req, Action::Limited);
    }
    // No route; no client address.
    expect(&gate, &GateRequest::new("GET", "/other"), Action::Pass);
    expect(&gate, &GateRequest::new("POST", "/login"), Action::Limited);
    // CORS: one preflight answered, two refused, one actual request refused.
    let preflight = |origin: &'static str, method: &'static str| {
        GateRequest::new("OPTIONS", "/api/items")
            .origin(origin)
            .request_method(method)
    };
    expect(&gate, &preflight(APP, "GET"), Action::Preflight);
    expect(
        &gate,
        &preflight("https://evil.example", "GET"),
        Action::Forbidden,
    );
    expect(&gate, &preflight(APP, "DELETE"), Action::Forbidden);
    let foreign = GateRequest::new("GET", "/api/items")
        .origin("https://evil.example")
        .principal("mallory");
    expect(&gate, &foreign, Action::Forbidden);

    let mut expected = Expected::new();
    let decisions = [
        ("login", [3, 0, 2, 0, 0]),
        ("api-free", [2, 1, 0, 0, 0]),
        ("api-premium", [1, 0, 0, 0, 0]),
        ("api-ip", [2, 0, 0, 1, 0]),
        ("export", [1, 1, 0, 0, 0]),
        ("shaped", [3, 0, 0, 0, 1]),
        ("flood", [20, 20, 0, 0, 0]),
    ];
    let outcomes = ["allowed", "limited", "blocked", "shadow_limited", "error"];
    for (policy, counts) in decisions {
        for (outcome, n) in outcomes.iter().zip(counts) {
            sample(
                &mut expected,
                "portcullis_decisions_total",
                &[("policy", policy), ("outcome", outcome)],
                n,
            );
        }
    }
    for (policy, delayed, placed) in [
        ("login", 0, 1),
        ("api-free", 0, 1),
        ("api-premium", 0, 1),
        ("api-ip", 0, 2),
        ("export", 0, 1),
        // The child's failed check placed its key before the store refused it.
        ("shaped", 2, 2),
        ("flood", 0, 20),
    ] {
        let p = [("policy", policy)];
        sample(
            &mut expected,
            "portcullis_delayed_decisions_total",
            &p,
            delayed,
        );
        sample(
            &mut expected,
            "portcullis_table_placed_keys_total",
            &p,
            placed,
        );
        let evicted = if policy == "flood" { 12 } else { 0 };
        sample(
            &mut expected,
            "portcullis_table_evictions_total",
            &p,
            evicted,
        );
        sample(
            &mut expected,
            "portcullis_table_limited_evictions_total",
            &p,
            evicted,
        );
        sample(
            &mut expected,
            "portcullis_table_capacity_keys",
            &p,
            if policy == "flood" { 8 } else { 1024 },
        );
    }
    sample(
        &mut expected,
        "portcullis_table_keys",
        &[("policy", "flood")],
        8,
    );
    sample(
        &mut expected,
        "portcullis_leases_acquired_total",
        &[("policy", "export")],
        1,
    );
    sample(
        &mut expected,
        "portcullis_leases_released_total",
        &[("policy", "export")],
        1,
    );
    sample(
        &mut expected,
        "portcullis_preflights_total",
        &[("result", "answered")],
        1,
    );
    sample(
        &mut expected,
        "portcullis_preflights_total",
        &[("result", "refused")],
        2,
    );
    for (reason, n) in [
        ("origin_not_allowed", 2),
        ("method_not_allowed", 1),
        ("header_not_allowed", 0),
    ] {
        sample(
            &mut expected,
            "portcullis_cors_refusals_total",
            &[("reason", reason)],
            n,
        );
    }
    sample(&mut expected, "portcullis_requests_unrouted_total", &[], 1);
    sample(
        &mut expected,
        "portcullis_requests_without_client_address_total",
        &[],
        1,
    );
    sample(&mut expected, "portcullis_store_write_errors_total", &[], 0);
    sample(&mut expected, "portcullis_metrics_processes", &[], 1);
    sample(&mut expected, "portcullis_metrics_host_wide", &[], 0);

    // The error, in a child whose writer thread stayed in the parent.
    let out = dir.join("child");
    // SAFETY: the child only decides, renders, writes two files and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let o = gate.decide(&GateRequest::new("GET", "/shaped").ip(ip("192.0.2.5")));
        let ok = o.action() == Action::Limited && matches!(o.reason(), Reason::StoreError { .. });
        let mut om = String::new();
        let _ = gate.write_metrics(&mut om, MetricsFormat::OpenMetrics);
        let written = std::fs::write(out.with_extension("prom"), gate.metrics())
            .and_then(|()| std::fs::write(out.with_extension("om"), om));
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(if ok && written.is_ok() { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child's request did not fail closed on the store"
    );
    Seen {
        prometheus: std::fs::read_to_string(out.with_extension("prom")).expect("exposition"),
        openmetrics: std::fs::read_to_string(out.with_extension("om")).expect("exposition"),
        expected,
    }
}
