//! The C ABI's cost over the Rust call, in the same run: the same check through
//! `Limiter::check_at` and through `portcullis_limiter_check_at` (what a C caller runs: argument
//! checks, the panic boundary, the decision copied out), and a gate decision both ways.
//!
//! A Rust `Decision` works its numbers out only when read, while the C struct carries them all:
//! the Rust side reads them into the same struct, so both deliver the same answer.

#![allow(missing_docs)] // criterion_group! generates undocumented functions
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::config::Config;
use portcullis::ffi::{
    portcullis_decision, portcullis_gate, portcullis_gate_decide_at,
    portcullis_gate_decide_into_at, portcullis_gate_free, portcullis_gate_open, portcullis_limiter,
    portcullis_limiter_check_at, portcullis_limiter_free, portcullis_limiter_open,
    portcullis_outcome, portcullis_outcome_free, portcullis_outcome_new, portcullis_request,
    portcullis_result, portcullis_str,
};
use portcullis::gate::{Gate, GateRequest, Outcome};

const CONFIG: &str = r#"
header_style = "legacy"
[[policy]]
name = "api"
limit = "1000000000/s"
capacity = 100000
[[route]]
match = "/api/"
limits = [{ policy = "api", key = "principal" }]
[cors]
allowed_origins = ["https://app.example.com"]
"#;

const KEYS: usize = 10_000;
const T0: u64 = 1_700_000_000_000_000_000;

fn s(text: &str) -> portcullis_str {
    portcullis_str {
        ptr: text.as_ptr(),
        len: text.len(),
    }
}

fn limiter(c: &mut Criterion) {
    let keys: Vec<String> = (0..KEYS).map(|i| format!("user-{i}")).collect();
    let rust = Config::parse(CONFIG)
        .expect("config")
        .limiter()
        .expect("limiter");
    let id = rust.policy_id("api").expect("policy");
    let mut ffi: *mut portcullis_limiter = std::ptr::null_mut();
    // SAFETY: a valid config slice and out-pointer.
    let r = unsafe { portcullis_limiter_open(CONFIG.as_ptr(), CONFIG.len(), &mut ffi) };
    assert_eq!(r, portcullis_result::Ok);

    let mut group = c.benchmark_group("ffi/limiter check, 10k keys");
    let mut i = 0usize;
    group.bench_function("rust Limiter::check_at", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let k = &keys[i];
            let d = rust.check_at(id, k.as_bytes(), 1, T0 + i as u64);
            black_box(d.map(portcullis_decision::from))
        })
    });
    let mut i = 0usize;
    group.bench_function("C ABI portcullis_limiter_check_at", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let k = &keys[i];
            let mut d = portcullis_decision::default();
            // SAFETY: live handle, key slice, out-pointer.
            let r = unsafe {
                portcullis_limiter_check_at(ffi, 0, k.as_ptr(), k.len(), 1, T0 + i as u64, &mut d)
            };
            black_box((r, d))
        })
    });
    group.finish();
    // SAFETY: the handle is not used after this.
    unsafe { portcullis_limiter_free(ffi) };
}

fn gate(c: &mut Criterion) {
    let rust = Gate::new(Config::parse(CONFIG).expect("config")).expect("gate");
    let ip = "203.0.113.9".parse().expect("ip");
    let mut ffi: *mut portcullis_gate = std::ptr::null_mut();
    // SAFETY: a valid config slice and out-pointer.
    let r = unsafe { portcullis_gate_open(CONFIG.as_ptr(), CONFIG.len(), &mut ffi) };
    assert_eq!(r, portcullis_result::Ok);
    let none = portcullis_str {
        ptr: std::ptr::null(),
        len: 0,
    };
    let request = portcullis_request {
        method: s("GET"),
        path: s("/api/v1/things"),
        origin: s("https://app.example.com"),
        request_method: none,
        request_headers: none,
        client_ip: s("203.0.113.9"),
        principal: s("key-1"),
        tier: none,
        private_network: false,
        forwarded_for: none,
        forwarded: none,
    };
    let req = GateRequest::new("GET", "/api/v1/things")
        .origin("https://app.example.com")
        .principal("key-1")
        .ip(ip);

    let mut group = c.benchmark_group("ffi/gate decide");
    group.bench_function("rust Gate::decide_at", |b| {
        b.iter(|| black_box(rust.decide_at(black_box(&req), T0)))
    });
    group.bench_function("C ABI portcullis_gate_decide_at + free", |b| {
        b.iter(|| {
            let mut o: *mut portcullis_outcome = std::ptr::null_mut();
            // SAFETY: live handle, a request of valid slices, out-pointer; freed below.
            unsafe {
                let r = portcullis_gate_decide_at(ffi, black_box(&request), T0, &mut o);
                black_box(r);
                portcullis_outcome_free(o);
            }
        })
    });
    let mut reused: *mut portcullis_outcome = std::ptr::null_mut();
    // SAFETY: an out-pointer; freed below.
    assert_eq!(
        unsafe { portcullis_outcome_new(&mut reused) },
        portcullis_result::Ok
    );
    group.bench_function(
        "C ABI portcullis_gate_decide_into_at, reused outcome",
        |b| {
            b.iter(|| {
                // SAFETY: live handle, a request of valid slices, an outcome owned here.
                let r =
                    unsafe { portcullis_gate_decide_into_at(ffi, black_box(&request), T0, reused) };
                black_box(r)
            })
        },
    );
    let mut outcome = Outcome::new();
    group.bench_function("rust Gate::decide_into, reused outcome", |b| {
        b.iter(|| {
            rust.decide_into(black_box(&req), T0, &mut outcome);
            black_box(&outcome);
        })
    });
    group.finish();
    // SAFETY: the handles are not used after this.
    unsafe {
        portcullis_outcome_free(reused);
        portcullis_gate_free(ffi);
    }
}

criterion_group!(benches, limiter, gate);
criterion_main!(benches);
