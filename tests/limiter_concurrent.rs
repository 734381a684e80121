//! Exactness under contention: with the clock frozen, N threads on one key get exactly the
//! capacity, for every algorithm. Threads start together on a barrier; no sleeps.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use portcullis::{Limiter, ManualClock, Policy, Quota};

const THREADS: usize = 8;
const PER_THREAD: usize = 200;

fn hammer(policy: Policy) -> usize {
    let clock = ManualClock::new(1_700_000_000_000_000_000);
    let limiter = Arc::new(
        Limiter::builder()
            .policy(policy)
            .capacity(1024)
            .clock(clock)
            .build()
            .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let id = limiter.policies().next().unwrap().0;
                barrier.wait();
                (0..PER_THREAD)
                    .filter(|_| limiter.check(id, b"hot-key", 1).unwrap().allowed)
                    .count()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

#[test]
fn gcra_allows_exactly_burst() {
    let q = Quota::per_hour(100).unwrap().with_burst(37).unwrap();
    assert_eq!(hammer(Policy::gcra("p", q)), 37);
}

#[test]
fn fixed_window_allows_exactly_limit() {
    assert_eq!(
        hammer(Policy::fixed_window("p", "53/m".parse().unwrap())),
        53
    );
}

#[test]
fn sliding_window_allows_exactly_limit() {
    assert_eq!(
        hammer(Policy::sliding_window("p", "41/m".parse().unwrap())),
        41
    );
}

#[test]
fn leaky_bucket_accepts_exactly_its_queue() {
    let q = Quota::per_second(10).unwrap().with_burst(29).unwrap();
    assert_eq!(hammer(Policy::leaky_bucket("p", q)), 29);
}

#[test]
fn block_does_not_change_the_count() {
    let p = Policy::fixed_window("p", "7/m".parse().unwrap()).block(Duration::from_secs(600));
    assert_eq!(hammer(p), 7);
}

#[test]
fn concurrency_leases_are_exact() {
    let clock = ManualClock::new(1_700_000_000_000_000_000);
    let limiter = Arc::new(
        Limiter::builder()
            .policy(Policy::concurrency("export", 5, Duration::from_secs(30)).unwrap())
            .capacity(64)
            .clock(clock)
            .build()
            .unwrap(),
    );
    let id = limiter.policy_id("export").unwrap();
    // Round 1: everyone tries to acquire at once; exactly 5 succeed.
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let mut leases = Vec::new();
                for _ in 0..PER_THREAD {
                    if let (_, Some(l)) = limiter.acquire(id, b"k", 1).unwrap() {
                        leases.push(l);
                    }
                }
                leases
            })
        })
        .collect();
    let leases: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(leases.len(), 5);
    // Round 2: all released concurrently, then exactly 5 again.
    let barrier = Arc::new(Barrier::new(leases.len()));
    let handles: Vec<_> = leases
        .into_iter()
        .map(|l| {
            let limiter = Arc::clone(&limiter);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                limiter.release(l).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // A peek reports what a request would leave: 5 free, minus the one it asks about.
    assert_eq!(limiter.peek(id, b"k", 1).unwrap().remaining(), 4);
    let mut again = Vec::new();
    for _ in 0..10 {
        if let (_, Some(l)) = limiter.acquire(id, b"k", 1).unwrap() {
            again.push(l);
        }
    }
    assert_eq!(again.len(), 5);
}

#[test]
fn many_keys_from_many_threads_stay_independent() {
    // Each thread owns 50 keys; every key gets exactly its burst even as the threads race to
    // place new keys in shared buckets.
    let clock = ManualClock::new(1_700_000_000_000_000_000);
    let limiter = Arc::new(
        Limiter::builder()
            .policy(Policy::gcra("p", Quota::per_minute(3).unwrap()))
            .capacity(4096)
            .clock(clock)
            .build()
            .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let limiter = Arc::clone(&limiter);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let id = limiter.policy_id("p").unwrap();
                barrier.wait();
                let mut allowed = 0;
                for round in 0..5 {
                    for k in 0..50 {
                        // Every thread also touches the shared keys 0..10, racing to place them.
                        let key = if k < 10 {
                            format!("shared-{k}")
                        } else {
                            format!("t{t}-{k}")
                        };
                        if limiter.check(id, &key, 1).unwrap().allowed {
                            allowed += 1;
                        }
                        let _ = round;
                    }
                }
                allowed
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // 10 shared keys x 3 + 8 threads x 40 own keys x 3.
    assert_eq!(total, 10 * 3 + THREADS * 40 * 3);
}
