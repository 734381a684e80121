//! The limiter against governor, in one run: unkeyed, keyed (1 hot key, 10,000 keys round robin,
//! a flood of distinct keys), and 2 threads. Also prints resident memory after a 1,000,000-key
//! flood for both.
//!
//! `cargo bench --bench limiter`

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use crossbeam_utils::CachePadded;
use governor::{Quota as GQuota, RateLimiter};
use portcullis::{Limiter, Policy, PolicyId, Quota};

const RATE: u32 = 1_000_000_000;
const KEYS: u64 = 10_000;
const FLOOD: u64 = 1_000_000;

fn ours(capacity: usize) -> (Arc<Limiter>, PolicyId) {
    let l = Limiter::builder()
        .policy(Policy::gcra("bench", Quota::per_second(RATE).unwrap()))
        .capacity(capacity)
        .build()
        .unwrap();
    let id = l.policy_id("bench").unwrap();
    (Arc::new(l), id)
}

fn gquota() -> GQuota {
    GQuota::per_second(NonZeroU32::new(RATE).unwrap())
}

type GKeyed = RateLimiter<
    u64,
    governor::state::keyed::DefaultKeyedStateStore<u64>,
    governor::clock::DefaultClock,
>;

fn gkeyed() -> Arc<GKeyed> {
    Arc::new(RateLimiter::keyed(gquota()))
}

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("unkeyed");
    let (l, id) = ours(64);
    g.bench_function("portcullis", |b| {
        b.iter(|| l.check(id, b"", 1).unwrap().allowed)
    });
    let gov = RateLimiter::direct(gquota());
    g.bench_function("governor", |b| b.iter(|| gov.check().is_ok()));
    g.finish();

    let mut g = c.benchmark_group("keyed");
    let (l, id) = ours(1 << 16);
    let gov = gkeyed();
    g.bench_function(BenchmarkId::new("portcullis", "1 hot key"), |b| {
        b.iter(|| l.check(id, 42u64.to_le_bytes(), 1).unwrap().allowed)
    });
    g.bench_function(BenchmarkId::new("governor", "1 hot key"), |b| {
        b.iter(|| gov.check_key(&42).is_ok())
    });
    let mut i = 0u64;
    g.bench_function(BenchmarkId::new("portcullis", "10k keys"), |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            l.check(id, i.to_le_bytes(), 1).unwrap().allowed
        })
    });
    g.bench_function(BenchmarkId::new("governor", "10k keys"), |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            gov.check_key(&i).is_ok()
        })
    });
    // A flood: every check is a key never seen before.
    let (l, id) = ours(1 << 20);
    let gov = gkeyed();
    let mut n = 0u64;
    g.bench_function(BenchmarkId::new("portcullis", "flood"), |b| {
        b.iter(|| {
            n += 1;
            l.check(id, n.to_le_bytes(), 1).unwrap().allowed
        })
    });
    let mut n = 0u64;
    g.bench_function(BenchmarkId::new("governor", "flood"), |b| {
        b.iter(|| {
            n += 1;
            gov.check_key(&n).is_ok()
        })
    });
    g.finish();
}

/// Two threads, each doing `iters` checks (`check(thread, step)`); one element = one check.
fn two_threads(iters: u64, check: impl Fn(u64, u64) -> bool + Send + Sync + 'static) -> Duration {
    let check = Arc::new(check);
    let barrier = Arc::new(Barrier::new(3));
    let handles: Vec<_> = (0..2u64)
        .map(|t| {
            let check = Arc::clone(&check);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                for i in 0..iters {
                    black_box(check(t, i));
                }
                barrier.wait();
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    barrier.wait();
    let elapsed = start.elapsed();
    for h in handles {
        h.join().unwrap();
    }
    elapsed
}

/// The key thread `t` checks at step `i`: every thread walks all `keys`, from different
/// starting points (shared), or each walks its own half of them (split, as when a server's
/// clients are spread over its workers).
fn key_of(shared: bool, keys: u64, t: u64, i: u64) -> u64 {
    if shared || keys == 1 {
        (t * 5_003 + i) % keys
    } else {
        (i % (keys / 2)) * 2 + t
    }
}

fn multi_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("2 threads");
    g.throughput(Throughput::Elements(2));
    let cases = [
        ("1 hot key", 1u64, true),
        ("10k keys shared", KEYS, true),
        ("10k keys split", KEYS, false),
    ];
    for (name, keys, shared) in cases {
        g.bench_function(BenchmarkId::new("portcullis", name), |b| {
            let (l, id) = ours(1 << 16);
            b.iter_custom(|iters| {
                let l = Arc::clone(&l);
                two_threads(iters, move |t, i| {
                    let k = key_of(shared, keys, t, i);
                    l.check(id, k.to_le_bytes(), 1).unwrap().allowed
                })
            })
        });
        g.bench_function(BenchmarkId::new("governor", name), |b| {
            let gov = gkeyed();
            b.iter_custom(|iters| {
                let gov = Arc::clone(&gov);
                two_threads(iters, move |t, i| {
                    gov.check_key(&key_of(shared, keys, t, i)).is_ok()
                })
            })
        });
    }
    g.finish();
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Resident memory grown by a flood of distinct keys, ours first (governor's pages are not
/// given back, so it must come second).
fn memory_report() {
    let before = resident_bytes();
    let (l, id) = ours(1 << 20);
    let built = resident_bytes();
    for k in 0..FLOOD {
        black_box(l.check(id, k.to_le_bytes(), 1).unwrap());
    }
    let flooded = resident_bytes();
    let table = l.stats()[0].memory_bytes as u64;
    drop(l);
    let g0 = resident_bytes();
    let gov = gkeyed();
    for k in 0..FLOOD {
        black_box(gov.check_key(&k).is_ok());
    }
    let g1 = resident_bytes();
    gov.retain_recent();
    gov.shrink_to_fit();
    let g2 = resident_bytes();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("memory after a flood of {FLOOD} distinct keys (resident set growth):");
    println!(
        "  portcullis: table {:.1} MiB fixed; RSS +{:.1} MiB at construction, +{:.1} MiB during the flood",
        mib(table),
        mib(built.saturating_sub(before)),
        mib(flooded.saturating_sub(built))
    );
    println!(
        "  governor:   RSS +{:.1} MiB during the flood ({:.0} bytes/key), +{:.1} MiB still after retain_recent + shrink_to_fit",
        mib(g1.saturating_sub(g0)),
        g1.saturating_sub(g0) as f64 / FLOOD as f64,
        mib(g2.saturating_sub(g0))
    );
}

fn main() {
    memory_report();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    single_thread(&mut c);
    multi_thread(&mut c);
    c.final_summary();
    alternating_one_thread();
    alternating_two_threads();
}

/// The middle of a set of measurements.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The 10,000-key check alternated with governor's over several rounds, as for two threads: the
/// machine's load drifts between criterion's measurements, less within one round.
fn alternating_one_thread() {
    const ROUNDS: usize = 9;
    const CHECKS: u64 = 2_000_000;
    let ns = |d: Duration| d.as_nanos() as f64 / CHECKS as f64;
    let (l, id) = ours(1 << 16);
    let gov = gkeyed();
    let (mut o, mut g, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..CHECKS {
            black_box(l.check(id, (i % KEYS).to_le_bytes(), 1).unwrap().allowed);
        }
        let ours = ns(start.elapsed());
        let start = Instant::now();
        for i in 0..CHECKS {
            black_box(gov.check_key(&(i % KEYS)).is_ok());
        }
        let theirs = ns(start.elapsed());
        o.push(ours);
        g.push(theirs);
        ratio.push(ours / theirs);
    }
    let (o, g, r) = (median(&mut o), median(&mut g), median(&mut ratio));
    println!(
        "1 thread, 10k keys, {ROUNDS} alternating rounds of {CHECKS} checks: median portcullis \
         {o:.1} ns, governor {g:.1} ns; median of the rounds' ratios {r:.2}"
    );
}

/// 2-thread figures swing between runs on shared machines: alternate ours and governor's over
/// several rounds and compare the medians of their throughputs.
fn alternating_two_threads() {
    const ROUNDS: usize = 7;
    const PER_THREAD: u64 = 2_000_000;
    let mps = |d: Duration| (2 * PER_THREAD) as f64 / d.as_secs_f64() / 1e6;
    for shared in [true, false] {
        let (l, id) = ours(1 << 16);
        let gov = gkeyed();
        // The hardware's bound for this access pattern: one bare CAS per check on a cache line
        // scattered by a hash over as many lines as the table has buckets, nothing else.
        const LINES: usize = 1 << 14;
        let lines: Arc<Vec<CachePadded<AtomicU64>>> = Arc::new(
            (0..LINES)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        );
        let (mut o, mut g, mut floor) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let l = Arc::clone(&l);
            o.push(mps(two_threads(PER_THREAD, move |t, i| {
                let k = key_of(shared, KEYS, t, i);
                l.check(id, k.to_le_bytes(), 1).unwrap().allowed
            })));
            let gov = Arc::clone(&gov);
            g.push(mps(two_threads(PER_THREAD, move |t, i| {
                gov.check_key(&key_of(shared, KEYS, t, i)).is_ok()
            })));
            let lines = Arc::clone(&lines);
            floor.push(mps(two_threads(PER_THREAD, move |t, i| {
                let k = key_of(shared, KEYS, t, i);
                let w = &lines[(k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 50) as usize];
                let v = w.load(Ordering::Relaxed);
                w.compare_exchange(v, v + 1, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            })));
        }
        let (o, g, f) = (median(&mut o), median(&mut g), median(&mut floor));
        println!(
            "2 threads, 10k keys {}, {ROUNDS} alternating rounds of {PER_THREAD} checks per \
             thread: median portcullis {o:.1} M/s, governor {g:.1} M/s, ratio {:.2}; \
             bare CAS per check {f:.1} M/s",
            if shared { "shared" } else { "split" },
            o / g
        );
    }
}
