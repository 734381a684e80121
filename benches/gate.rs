//! A gate decision (an allowed API request with CORS, one route, two limits) against one bare
//! keyed `Limiter::check`, in the same run.

#![allow(missing_docs)] // criterion_group! generates undocumented functions
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::config::Config;
use portcullis::gate::{Gate, GateRequest, Outcome};
use portcullis::{Limiter, Policy, Quota};

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

fn bench(c: &mut Criterion) {
    let config: Config = CONFIG.parse().expect("valid");
    let gate = Gate::new(config).expect("gate");
    let ip = "203.0.113.9".parse().expect("ip");
    let req = GateRequest::new("GET", "/api/v1/things")
        .origin("https://app.example.com")
        .principal("key-1")
        .ip(ip);
    let limiter = Limiter::builder()
        .policy(Policy::gcra(
            "api",
            Quota::per_second(1_000_000_000).expect("quota"),
        ))
        .capacity(100_000)
        .build()
        .expect("limiter");
    let id = limiter.policy_id("api").expect("policy");
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

criterion_group!(benches, bench);
criterion_main!(benches);
