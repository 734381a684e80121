//! A gate decision (an allowed API request with CORS, one route, two limits) against one bare
//! keyed `Limiter::check`, in the same run. The alternating rounds also time the least such a
//! decision can do, composed by hand from the same pieces (`floor`), to show how much of the
//! ratio belongs to the work itself.

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
    // Both of the gate's policies: the floor below checks the two, the bare check the first.
    let quota = || Quota::per_second(1_000_000_000).expect("quota");
    let limiter = Limiter::builder()
        .policy(Policy::gcra("api", quota()))
        .policy(Policy::gcra("api-ip", quota()))
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
/// A header value: configured text, or a span of the rendered text.
enum Value {
    Static(&'static str),
    Span(u32, u32),
}

/// What the floor writes per request, reused like an `Outcome`.
struct FloorOut {
    text: Vec<u8>,
    headers: Vec<(&'static str, Value)>,
}

impl FloorOut {
    /// The headers as (name, value), to hold against the gate's.
    fn headers(&self) -> Vec<(&'static str, String)> {
        let value = |v: &Value| match *v {
            Value::Static(s) => s.to_string(),
            Value::Span(a, b) => String::from_utf8_lossy(&self.text[a as usize..b as usize]).into(),
        };
        self.headers.iter().map(|(n, v)| (*n, value(v))).collect()
    }
}

const ORIGIN: &str = "https://app.example.com";

/// The least work of the benched decision, with none of the gate's generality: one exact
/// origin and its four CORS headers (kept by reference), one route prefix, the two namespaced
/// keys, the two checks, the most restrictive decision's three headers (two numbers rendered).
/// No statistics, no route table, no shadow or all-or-nothing handling, no reason.
#[inline(never)]
fn floor(l: &Limiter, ids: [PolicyId; 2], req: &GateRequest<'_>, out: &mut FloorOut) -> bool {
    out.text.clear();
    out.headers.clear();
    if req.origin != Some(ORIGIN) || !req.path.starts_with("/api/") {
        return false;
    }
    for (name, value) in [
        ("Access-Control-Allow-Origin", ORIGIN),
        ("Access-Control-Allow-Credentials", "true"),
        ("Vary", "Origin"),
        (
            "Access-Control-Expose-Headers",
            "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After",
        ),
    ] {
        out.headers.push((name, Value::Static(value)));
    }
    let (Some(principal), Some(std::net::IpAddr::V4(ip))) = (req.principal, req.client_ip) else {
        return false;
    };
    let mut key = [0u8; 64];
    key[0] = b'p';
    key[1..=principal.len()].copy_from_slice(principal.as_bytes());
    let Ok(d1) = l.check(ids[0], &key[..=principal.len()], 1) else {
        return false;
    };
    let [a, b, c, d] = ip.octets();
    let Ok(d2) = l.check(ids[1], [b'i', 4, a, b, c, d], 1) else {
        return false;
    };
    let (r1, r2) = (d1.remaining(), d2.remaining());
    let (main, remaining) = if r1 <= r2 { (d1, r1) } else { (d2, r2) };
    out.headers
        .push(("X-RateLimit-Limit", Value::Static("1000000000")));
    let mut num = itoa::Buffer::new();
    for (name, n) in [
        ("X-RateLimit-Remaining", u64::from(remaining)),
        ("X-RateLimit-Reset", main.reset_at_unix_secs()),
    ] {
        let start = out.text.len() as u32;
        out.text.extend_from_slice(num.format(n).as_bytes());
        out.headers
            .push((name, Value::Span(start, out.text.len() as u32)));
    }
    d1.allowed && d2.allowed
}

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
    let ids = [id, limiter.policy_id("api-ip").expect("policy")];
    let mut floor_out = FloorOut {
        text: Vec::with_capacity(256),
        headers: Vec::with_capacity(16),
    };
    let ns = |d: std::time::Duration| d.as_nanos() as f64 / f64::from(N);
    let (mut g, mut c, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    let mut floor_ratio = Vec::new();
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
        let start = std::time::Instant::now();
        for _ in 0..N {
            black_box(floor(&limiter, ids, black_box(&req), &mut floor_out));
        }
        let least = ns(start.elapsed());
        g.push(decide);
        c.push(check);
        ratio.push(decide / check);
        floor_ratio.push(least / check);
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
    // The floor does the gate's work: the same headers and, but for the two numbers (its
    // limiter is another), the same values.
    let text = |n: &str, v: &str| {
        let v = if n.starts_with("X-RateLimit-R") {
            "n"
        } else {
            v
        };
        (n.to_ascii_lowercase(), v.to_string())
    };
    let mut gate_headers: Vec<_> = outcome.headers().map(|(n, v)| text(n, v)).collect();
    let mut floor_headers: Vec<_> = floor_out
        .headers()
        .iter()
        .map(|(n, v)| text(n, v))
        .collect();
    gate_headers.sort_unstable();
    floor_headers.sort_unstable();
    assert_eq!(
        gate_headers, floor_headers,
        "the floor renders what the gate renders"
    );
    println!(
        "the same work composed by hand (floor) against the bare check: median of the rounds' \
         ratios {:.2}",
        median(&mut floor_ratio)
    );
}

criterion_group!(benches, bench, alternating);
criterion_main!(benches);
