//! Every algorithm on Redis against the reference model (tests/common/model.rs) at explicit
//! whole-microsecond times, the scripts' granularity; and concurrency leases on Redis against
//! the local limiter, decision for decision. Needs a redis-server: `ci/redis.sh`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::model::*;
use common::redis::RedisServer;
use portcullis::store::redis::RedisOptions;
use portcullis::store::StoreConfig;
use portcullis::{Limiter, ManualClock, Policy, Quota};
use proptest::prelude::*;

/// A fresh namespace on `server` per case, at the test's explicit times.
fn store(server: &RedisServer) -> StoreConfig {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let mut o = RedisOptions::new(server.url());
    o.key_prefix = format!("case{}:", CASE.fetch_add(1, Ordering::Relaxed));
    o.injected_time = true;
    o.timeout = Duration::from_secs(2);
    StoreConfig::redis(o).unwrap()
}

const NEEDS: &str = "needs a redis-server: ci/redis.sh";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

#[test]
fn gcra_on_redis_matches_model() {
    let _ = NEEDS;
    let server = RedisServer::start();
    proptest!(config(), |((w, ops) in window().prop_flat_map(|w| (Just(w), ops(w))),
        count in 1u32..8, burst in 1u32..8, block in block(), start in start())| {
        let q = Quota::new(count, Duration::from_nanos(w)).unwrap().with_burst(burst).unwrap();
        let alg = Gcra { t: q.emission_interval_ns(), burst: u64::from(burst) };
        run(alg, Policy::gcra("p", q), block, start, &ops, Some(store(&server)));
    });
}

#[test]
fn leaky_bucket_on_redis_matches_model() {
    let server = RedisServer::start();
    proptest!(config(), |((w, ops) in window().prop_flat_map(|w| (Just(w), ops(w))),
        count in 1u32..8, burst in 1u32..8, block in block(), start in start())| {
        let q = Quota::new(count, Duration::from_nanos(w)).unwrap().with_burst(burst).unwrap();
        let t = q.emission_interval_ns();
        let alg = Leaky { t, max_delay: t * u64::from(burst - 1) };
        run(alg, Policy::leaky_bucket("p", q), block, start, &ops, Some(store(&server)));
    });
}

#[test]
fn fixed_window_on_redis_matches_model() {
    let server = RedisServer::start();
    proptest!(config(), |((w, ops) in window().prop_flat_map(|w| (Just(w), ops(w))),
        count in 1u32..8, block in block(), start in start())| {
        let q = Quota::new(count, Duration::from_nanos(w)).unwrap();
        let alg = Fixed { p: w, limit: u64::from(count) };
        run(alg, Policy::fixed_window("p", q), block, start, &ops, Some(store(&server)));
    });
}

#[test]
fn sliding_window_on_redis_matches_model() {
    let server = RedisServer::start();
    proptest!(config(), |((w, ops) in window().prop_flat_map(|w| (Just(w), ops(w))),
        count in 1u32..8, block in block(), start in start())| {
        let q = Quota::new(count, Duration::from_nanos(w)).unwrap();
        let alg = Sliding { p: w, limit: u64::from(count) };
        run(alg, Policy::sliding_window("p", q), block, start, &ops, Some(store(&server)));
    });
}

#[derive(Debug, Clone)]
enum LeaseOp {
    Advance(u64),
    Acquire(u8, u32),
    /// Release the n-th lease still held (modulo how many are held).
    Release(usize),
}

#[test]
fn concurrency_on_redis_matches_local() {
    let server = RedisServer::start();
    let op = prop_oneof![
        2 => (0u64..3_000_000).prop_map(|us| LeaseOp::Advance(us * 1000)),
        5 => (0u8..3, 1u32..3).prop_map(|(k, c)| LeaseOp::Acquire(k, c)),
        3 => (0usize..8).prop_map(LeaseOp::Release),
    ];
    proptest!(config(), |(ops in prop::collection::vec(op, 1..80), max in 1u32..6,
        block in block(), start in start())| {
        let start = start / 1000 * 1000;
        let policy = Policy::concurrency("c", max, Duration::from_secs(2)).unwrap()
            .block(Duration::from_nanos(block));
        let build = |store: Option<StoreConfig>| {
            let mut b = Limiter::builder().policy(policy.clone()).capacity(64)
                .clock(ManualClock::new(start));
            if let Some(s) = store {
                b = b.store(s);
            }
            b.build().unwrap()
        };
        let (local, remote) = (build(None), build(Some(store(&server))));
        let id = local.policy_id("c").unwrap();
        let (mut held_l, mut held_r) = (Vec::new(), Vec::new());
        let mut now = start;
        for (i, op) in ops.iter().enumerate() {
            match op {
                LeaseOp::Advance(d) => now += d,
                LeaseOp::Acquire(k, c) => {
                    let key = [b'k', *k];
                    let l = local.acquire_at(id, key, *c, now).map_err(|e| e.to_string());
                    let r = remote.acquire_at(id, key, *c, now).map_err(|e| e.to_string());
                    match (l, r) {
                        (Ok((dl, ll)), Ok((dr, lr))) => {
                            prop_assert_eq!(dl, dr, "op #{} {:?}", i, op);
                            prop_assert_eq!(ll.is_some(), lr.is_some());
                            held_l.extend(ll);
                            held_r.extend(lr);
                        }
                        (Err(a), Err(b)) => prop_assert_eq!(a, b),
                        (l, r) => prop_assert!(false, "local {:?}, redis {:?}", l, r),
                    }
                }
                LeaseOp::Release(n) if !held_l.is_empty() => {
                    let n = n % held_l.len();
                    local.release_at(held_l.remove(n), now).unwrap();
                    remote.release_at(held_r.remove(n), now).unwrap();
                }
                LeaseOp::Release(_) => {}
            }
        }
    });
}
