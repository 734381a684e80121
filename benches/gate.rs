//! A gate decision (an allowed API request with CORS, one route, two limits) against one bare
//! keyed `Limiter::check`, in the same run.

#![allow(missing_docs)] // criterion_group! generates undocumented functions
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::config::Config;
use portcullis::gate::{Gate, GateRequest, Outcome};
use portcullis::{Limiter, Policy, PolicyId, Quota};

const CONFIG: &str = r#"
header_style = "legacy"
[[policy]]
name = "api"
limit = "1000000000/s"
[[policy]]
name = "api-ip"
limit = "1000000000/s"
[[route]]
match = "/api/"
limits = [{ policy = "api", key = "principal" }, { policy = "api-ip", key = "ip" }]
[cors]
allowed_origins = ["https://app.example.com"]
allow_credentials = true
"#;

/// The gate, its client's address, and the bare limiter it is measured against.
fn setup() -> (Gate, std::net::IpAddr, Limiter, PolicyId) {
    let config: Config = CONFIG.parse().expect("valid");
    let gate = Gate::new(config).expect("gate");
    let ip = "203.0.113.9".parse().expect("ip");
    let limiter = Limiter::builder()
        .policy(Policy::gcra(
            "api",
            Quota::per_second(1_000_000_000).expect("quota"),
        ))
        .capacity(100_000)
        .build()
        .expect("limiter");
    let id = limiter.policy_id("api").expect("policy");
    (gate, ip, limiter, id)
}

fn bench(c: &mut Criterion) {
    let (gate, ip, limiter, id) = setup();
    let req = GateRequest::new("GET", "/api/v1/things")
        .origin("https://app.example.com")
        .principal("key-1")
        .ip(ip);
    let mut group = c.benchmark_group("gate");
    group.bench_function("limiter check (1 keyed check)", |b| {
        b.iter(|| black_box(limiter.check(id, black_box(b"pkey-1"), 1)))
    });
    group.bench_function("gate decide (CORS + route + 2 limits + headers)", |b| {
        b.iter(|| black_box(gate.decide(black_box(&req))))
    });
    // The same decision into an outcome reused across requests, as a server worker would.
    let mut outcome = Outcome::new();
    group.bench_function("gate decide_into, reused outcome", |b| {
        b.iter(|| {
            gate.decide_into(black_box(&req), gate.now(), &mut outcome);
            black_box(&outcome);
        })
    });
    group.finish();
}

/// One bare check as a server makes it: a call per request, nothing hoisted out of a loop
/// (`Gate::decide_into` is such a call too).
#[inline(never)]
fn bare_check(limiter: &Limiter, id: PolicyId) -> Result<portcullis::Decision, portcullis::Error> {
    limiter.check(id, black_box(b"pkey-1"), 1)
}

/// The reused-outcome decision alternated with the bare check over several rounds: the
/// machine's load drifts between criterion's measurements, less within one round.
fn alternating(_: &mut Criterion) {
    const ROUNDS: usize = 9;
    const N: u32 = 1_000_000;
    let (gate, req_ip, limiter, id) = setup();
    let req = GateRequest::new("GET", "/api/v1/things")
        .origin("https://app.example.com")
        .principal("key-1")
        .ip(req_ip);
    let mut outcome = Outcome::new();
    let ns = |d: std::time::Duration| d.as_nanos() as f64 / f64::from(N);
    let (mut g, mut c, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = std::time::Instant::now();
        for _ in 0..N {
            gate.decide_into(black_box(&req), gate.now(), &mut outcome);
            black_box(&outcome);
        }
        let decide = ns(start.elapsed());
        let start = std::time::Instant::now();
        for _ in 0..N {
            black_box(bare_check(&limiter, id)).ok();
        }
        let check = ns(start.elapsed());
        g.push(decide);
        c.push(check);
        ratio.push(decide / check);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (g, c, r) = (median(&mut g), median(&mut c), median(&mut ratio));
    println!(
        "gate decide_into against a bare check, {ROUNDS} alternating rounds of {N}: median \
         {g:.1} ns against {c:.1} ns; median of the rounds' ratios {r:.2}"
    );
}

criterion_group!(benches, bench, alternating);
criterion_main!(benches);
