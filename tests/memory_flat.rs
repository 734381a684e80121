//! A process that reloads its gate with changing configs, or builds a gate per tenant and drops
//! it, keeps its memory flat: a compiled config's texts and rules go with it (nothing is kept
//! for the life of the process).
//!
//! Live bytes are counted for the whole process, so this file holds one test.

mod common;

use common::alloc::{live_bytes, Counting};
use portcullis::config::Config;
use portcullis::{Action, Gate, GateRequest, ManualClock};

#[global_allocator]
static GLOBAL: Counting = Counting;

const T0: u64 = 1_700_000_000_000_000_000;

/// A config whose every text differs with `i`: policy names, limits, route patterns, origins.
fn config(i: usize) -> Config {
    format!(
        r#"
        header_style = "both"
        [store]
        kind = "memory"
        capacity = 16

        [[policy]]
        name = "login-{i}"
        algorithm = "fixed_window"
        limit = "{limit}/15m"
        block = "15m"

        [[policy]]
        name = "api-{i}"
        limit = "{api}/h"

        [[route]]
        match = "POST /tenant-{i}/login"
        limits = [{{ policy = "login-{i}", key = "ip" }}]

        [[route]]
        match = "/tenant-{i}/api/"
        limits = [{{ policy = "api-{i}", key = "ip" }}]

        [cors]
        allowed_origins = ["https://tenant-{i}.example.com"]
        exposed_headers = ["X-Request-Id-{i}"]
        "#,
        limit = i % 50 + 1,
        api = i + 100,
    )
    .parse()
    .expect("valid config")
}

/// Decides a request that carries every kind of configured text into its outcome (policy names,
/// route, echoed origin, exposed headers, IETF items) and drops the outcome.
fn exercise(gate: &Gate, i: usize) {
    let path = format!("/tenant-{i}/api/things");
    let origin = format!("https://tenant-{i}.example.com");
    let req = GateRequest::new("GET", &path)
        .origin(&origin)
        .ip("203.0.113.9".parse().unwrap());
    let outcome = gate.decide(&req);
    assert_eq!(outcome.action(), Action::Pass);
    assert_eq!(outcome.applied()[0].policy(), format!("api-{i}"));
    assert_eq!(
        outcome.header("access-control-allow-origin"),
        Some(&*origin)
    );
}

fn gate(i: usize) -> Gate {
    Gate::builder(config(i))
        .clock(ManualClock::new(T0))
        .build()
        .expect("gate")
}

#[test]
fn reloads_and_gates_built_and_dropped_keep_memory_flat() {
    const ROUNDS: usize = 10_000;
    // Growth allowed over 10,000 rounds: far below one round's texts times the rounds (each
    // config's texts alone are a few hundred bytes, so a kept copy per round would be MiBs).
    const SLACK: isize = 64 << 10;

    // 1. One gate reloaded with a new config each time.
    let g = gate(0);
    for i in 1..=100 {
        g.reload(config(i)).expect("reload");
        exercise(&g, i);
    }
    let before = live_bytes();
    for i in 101..=100 + ROUNDS {
        g.reload(config(i)).expect("reload");
        exercise(&g, i);
    }
    let growth = live_bytes() - before;
    assert!(
        growth < SLACK,
        "{ROUNDS} reloads grew live memory by {growth} bytes"
    );
    drop(g);

    // 2. A gate per tenant, built and dropped.
    for i in 0..100 {
        exercise(&gate(i), i);
    }
    let before = live_bytes();
    for i in 100..100 + ROUNDS {
        exercise(&gate(i), i);
    }
    let growth = live_bytes() - before;
    assert!(
        growth < SLACK,
        "{ROUNDS} gates built and dropped grew live memory by {growth} bytes"
    );
}
