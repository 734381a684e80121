//! The check path with the sled store (write-behind) against the memory store, in one run,
//! and immediate durability with 1, 8 and 64 concurrent callers (what group commit buys).
//!
//! `cargo bench --bench store`

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use portcullis::store::{Durability, StoreConfig};
use portcullis::{Limiter, Policy, Quota};

const KEYS: u64 = 10_000;

fn limiter(store: StoreConfig, durability: Durability) -> Limiter {
    Limiter::builder()
        .policy(
            Policy::gcra("bench", Quota::per_second(1_000_000_000).unwrap()).durability(durability),
        )
        .capacity(1 << 16)
        .store(store)
        .build()
        .unwrap()
}

fn check_path(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("check, 10k keys");
    let mem = limiter(StoreConfig::Memory, Durability::WriteBehind);
    let sled = limiter(StoreConfig::sled(dir.path()), Durability::WriteBehind);
    for (name, l) in [("memory", &mem), ("sled write-behind", &sled)] {
        let id = l.policy_id("bench").unwrap();
        let mut i = 0u64;
        g.bench_function(BenchmarkId::new("portcullis", name), |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                l.check(id, i.to_le_bytes(), 1).unwrap().allowed
            })
        });
    }
    g.finish();
}

/// Decisions per second of an immediate policy with `callers` threads for about a second.
fn immediate(callers: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let l = Arc::new(limiter(
        StoreConfig::sled(dir.path()),
        Durability::Immediate,
    ));
    let id = l.policy_id("bench").unwrap();
    let barrier = Arc::new(Barrier::new(callers + 1));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..callers)
        .map(|t| {
            let (l, barrier, stop) = (Arc::clone(&l), Arc::clone(&barrier), Arc::clone(&stop));
            std::thread::spawn(move || {
                barrier.wait();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    l.check(id, (t as u64 * 1_000_003 + n).to_le_bytes(), 1)
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    println!("immediate durability (sled flush + fsync per group commit):");
    let one = immediate(1);
    for callers in [1, 8, 64] {
        let rate = if callers == 1 {
            one
        } else {
            immediate(callers)
        };
        println!(
            "  {callers:>2} callers: {rate:>9.0} decisions/s ({:.1}x one caller)",
            rate / one
        );
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    check_path(&mut c);
    c.final_summary();
}
