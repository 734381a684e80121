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
const FORK_WORKER: &str = "PORTCULLIS_REDIS_TEST_FORK_WORKER";
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

/// The body of a process that forks (single-threaded until then): opens a limiter on Redis
/// (no deny cache: every check is a round trip) and spends key "b" (500/h) before forking, so
/// its pool holds a connection; then the parent checks key "a" and the child key "b", 1000
/// times each, at the same time. Were they to share the inherited socket, replies would reach
/// the wrong process: the parent would see denials, the child passes, or either a timeout.
/// Prints what each was allowed and the failures both saw.
#[test]
fn fork_worker() {
    let Ok(url) = std::env::var(FORK_WORKER) else {
        return; // run as a test of its own: nothing to do
    };
    let mut o = RedisOptions::new(&url);
    o.key_prefix = "fork:".into();
    o.timeout = Duration::from_secs(2);
    o.deny_cache = false;
    let store = StoreConfig::redis(o).unwrap();
    let StoreConfig::Redis(redis) = &store else {
        unreachable!()
    };
    let redis = Arc::clone(redis);
    let limiter = Limiter::builder()
        .policy(Policy::gcra("api", Quota::per_hour(500).unwrap()))
        .store(store)
        .build()
        .unwrap();
    let id = limiter.policy_id("api").unwrap();
    let checks = |key: &str| {
        (0..1000)
            .filter(|_| limiter.check(id, key, 1).unwrap().allowed)
            .count() as u32
    };
    assert_eq!(checks("b"), 500);
    let (mut go, mut counts) = ([0i32; 2], [0i32; 2]);
    // SAFETY: plain system calls on arrays of two descriptors.
    assert_eq!(unsafe { libc::pipe(go.as_mut_ptr()) }, 0);
    assert_eq!(unsafe { libc::pipe(counts.as_mut_ptr()) }, 0);
    // SAFETY: this process runs one thread (the harness runs this test alone, with
    // --test-threads 1); the child only checks, writes to a pipe and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut b = [0u8; 1];
        // SAFETY: reads one byte into `b`.
        unsafe { libc::read(go[0], b.as_mut_ptr().cast(), 1) };
        let report = [checks("b"), redis.stats().failures as u32];
        // SAFETY: writes the eight bytes of `report`, then leaves without unwinding.
        unsafe {
            libc::write(counts[1], report.as_ptr().cast(), 8);
            libc::_exit(0);
        }
    }
    // SAFETY: writes one byte: the child starts with the parent.
    unsafe { libc::write(go[1], [1u8].as_ptr().cast(), 1) };
    let parent = checks("a");
    let mut child = [0u32; 2];
    // SAFETY: reads the child's eight bytes into `child`, then reaps it.
    unsafe {
        assert_eq!(libc::read(counts[0], child.as_mut_ptr().cast(), 8), 8);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    println!(
        "\nparent {parent} child {} failures {}",
        child[0],
        redis.stats().failures + u64::from(child[1])
    );
}

#[test]
fn a_store_opened_before_fork_serves_parent_and_child_on_their_own_connections() {
    let server = RedisServer::start();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fork_worker",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(FORK_WORKER, server.url())
        .output()
        .unwrap();
    assert!(out.status.success(), "fork worker failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("parent "))
        .unwrap_or_else(|| panic!("no count in {text:?}"));
    assert_eq!(line, "parent 500 child 0 failures 0");
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
