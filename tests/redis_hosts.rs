//! Several hosts on one Redis: two processes (standing in for two hosts) share one key
//! exactly, whatever their clocks say; a denied key's flood costs no round trips after the
//! first. Needs a redis-server: `ci/redis.sh`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::redis::RedisServer;
use portcullis::store::redis::{RedisOptions, RedisStore};
use portcullis::store::StoreConfig;
use portcullis::{Limiter, ManualClock, Policy, Quota};

const WORKER: &str = "PORTCULLIS_REDIS_TEST_WORKER";
const SEC: u64 = 1_000_000_000;

fn wall_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn open(url: &str, prefix: &str) -> (StoreConfig, Arc<RedisStore>) {
    let mut o = RedisOptions::new(url);
    o.key_prefix = prefix.into();
    o.timeout = Duration::from_secs(2);
    let store = StoreConfig::redis(o).unwrap();
    let StoreConfig::Redis(r) = &store else {
        unreachable!()
    };
    let r = Arc::clone(r);
    (store, r)
}

/// The body of a worker process: waits for "go" on stdin, makes 1000 checks of one key
/// against 500/h with a manual clock `skew` ns off the wall clock, prints how many passed.
#[test]
fn worker_process() {
    let Ok(url) = std::env::var(WORKER) else {
        return; // run as a test of its own: nothing to do
    };
    let skew: i64 = std::env::var("SKEW").unwrap().parse().unwrap();
    let (store, _) = open(&url, "hosts:");
    let clock = ManualClock::new(wall_now().saturating_add_signed(skew));
    let limiter = Limiter::builder()
        .policy(Policy::gcra("api", Quota::per_hour(500).unwrap()))
        .clock(clock)
        .store(store)
        .build()
        .unwrap();
    let id = limiter.policy_id("api").unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "go");
    let allowed = (0..1000)
        .filter(|_| limiter.check(id, "shared-key", 1).unwrap().allowed)
        .count();
    println!("\nallowed {allowed}");
}

/// Two worker processes, released together, with these clock skews: how many passed each.
fn two_hosts(skews: [i64; 2]) -> Vec<usize> {
    let server = RedisServer::start();
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = skews
        .iter()
        .map(|skew| {
            Command::new(&exe)
                .args(["--exact", "worker_process", "--nocapture"])
                .args(["--test-threads", "1"])
                .env(WORKER, server.url())
                .env("SKEW", skew.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut children {
        c.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "worker failed: {out:?}");
            let text = String::from_utf8(out.stdout).unwrap();
            let line = BufReader::new(text.as_bytes())
                .lines()
                .map(Result::unwrap)
                .find(|l| l.starts_with("allowed "))
                .unwrap_or_else(|| panic!("no count in {text:?}"));
            line["allowed ".len()..].parse().unwrap()
        })
        .collect()
}

#[test]
fn two_processes_share_one_key_exactly() {
    let counts = two_hosts([0, 0]);
    assert_eq!(counts.iter().sum::<usize>(), 500, "{counts:?}");
}

#[test]
fn skewed_host_clocks_change_nothing() {
    // Three hours ahead and five behind: the server's clock decides.
    let counts = two_hosts([3 * 3600 * SEC as i64, -5 * 3600 * SEC as i64]);
    assert_eq!(counts.iter().sum::<usize>(), 500, "{counts:?}");
}

fn evalsha_calls(server: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.conn(None))
        .unwrap();
    info.lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|r| r.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn a_denied_keys_flood_costs_no_round_trips() {
    let server = RedisServer::start();
    let (store, redis) = open(&server.url(), "flood:");
    let clock = ManualClock::new(wall_now());
    let limiter = Limiter::builder()
        .policy(Policy::gcra("api", Quota::per_hour(5).unwrap()))
        .clock(clock.clone())
        .store(store)
        .build()
        .unwrap();
    let id = limiter.policy_id("api").unwrap();
    for _ in 0..5 {
        assert!(limiter.check(id, "k", 1).unwrap().allowed);
    }
    let first = limiter.check(id, "k", 1).unwrap();
    assert!(!first.allowed);
    let (trips, calls) = (redis.stats().round_trips, evalsha_calls(&server));
    let mut last = first.retry_after();
    for _ in 0..1000 {
        let d = limiter.check(id, "k", 1).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.remaining(), 0);
        assert_eq!(
            d.retry_after(),
            last,
            "a frozen clock keeps the same answer"
        );
        last = d.retry_after();
    }
    // The local clock moves: the cached denial's retry-after shrinks with it.
    clock.advance(Duration::from_secs(1));
    let later = limiter.check(id, "k", 1).unwrap();
    assert!(!later.allowed);
    assert_eq!(later.retry_after(), last - Duration::from_secs(1));
    assert_eq!(
        redis.stats().round_trips,
        trips,
        "no round trip after the first denial"
    );
    assert_eq!(evalsha_calls(&server), calls, "Redis saw no call");
    assert_eq!(limiter.stats()[0].deny_cache_hits, 1001);
    // Another key still asks Redis.
    assert!(limiter.check(id, "other", 1).unwrap().allowed);
    assert_eq!(redis.stats().round_trips, trips + 1);
    // Without the cache, every denial is a round trip.
    let mut o = RedisOptions::new(server.url());
    o.key_prefix = "flood:".into();
    o.deny_cache = false;
    let uncached = Limiter::builder()
        .policy(Policy::gcra("api", Quota::per_hour(5).unwrap()))
        .store(StoreConfig::redis(o).unwrap())
        .build()
        .unwrap();
    let calls = evalsha_calls(&server);
    for _ in 0..10 {
        assert!(!uncached.check(id, "k", 1).unwrap().allowed);
    }
    assert_eq!(evalsha_calls(&server), calls + 10);
}

#[test]
fn threads_batched_on_one_connection_stay_exact() {
    let server = RedisServer::start();
    let mut o = RedisOptions::new(server.url());
    o.pool_size = 1;
    o.timeout = Duration::from_secs(2);
    o.deny_cache = false;
    let store = StoreConfig::redis(o).unwrap();
    let StoreConfig::Redis(redis) = &store else {
        unreachable!()
    };
    let redis = Arc::clone(redis);
    let limiter = Arc::new(
        Limiter::builder()
            .policy(Policy::fixed_window("api", Quota::per_hour(500).unwrap()))
            .store(store)
            .build()
            .unwrap(),
    );
    let id = limiter.policy_id("api").unwrap();
    let start = Arc::new(std::sync::Barrier::new(8));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (l, start) = (Arc::clone(&limiter), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                (0..200)
                    .filter(|_| l.check(id, "one-key", 1).unwrap().allowed)
                    .count()
            })
        })
        .collect();
    let allowed: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    // The window could turn over mid-test only at the top of an hour: then each window's 500.
    assert!(allowed == 500 || allowed == 1000, "{allowed}");
    let s = redis.stats();
    assert_eq!(s.round_trips, 1600);
    assert!(
        s.batches < s.round_trips,
        "8 threads on one connection shared writes: {s:?}"
    );
}
