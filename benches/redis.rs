//! The Redis store on a loopback redis-server (`$PORTCULLIS_REDIS_URL`; `benches/redis/run.sh`
//! starts one and runs this and the Python and Node peers in the same run):
//!
//! * one check, one thread (criterion), GCRA and fixed window;
//! * checks per second and p50 / p99 latency from 1, 8 and 64 threads (the default pool of 4
//!   connections, and one per thread), on 10,000 keys, printed as `redis threads=N ...` lines
//!   with the calls sent per write (threads waiting together share one);
//! * a flood from one denied key: checks per second from the deny cache, and the round trips
//!   it cost after the first denial (zero).
//!
//! `PORTCULLIS_REDIS_URL=redis://127.0.0.1:6379/0 cargo bench -p portcullis-benches --bench redis`

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use portcullis::store::redis::{RedisOptions, RedisStore};
use portcullis::store::StoreConfig;
use portcullis::{Limiter, Policy, PolicyId, Quota};

const KEYS: u64 = 10_000;

fn limiter(url: &str, policy: Policy, pool: usize) -> (Limiter, PolicyId, Arc<RedisStore>) {
    let mut o = RedisOptions::new(url);
    o.pool_size = pool;
    o.timeout = Duration::from_secs(1);
    o.key_prefix = "bench:".into();
    let store = StoreConfig::redis(o).unwrap();
    let StoreConfig::Redis(r) = &store else {
        unreachable!()
    };
    let r = Arc::clone(r);
    let l = Limiter::builder()
        .policy(policy)
        .capacity(1 << 16)
        .store(store)
        .build()
        .unwrap();
    let id = l.policies().next().unwrap().0;
    (l, id, r)
}

fn policies() -> [(&'static str, Policy); 2] {
    let q = Quota::per_hour(16_000_000).unwrap();
    [
        ("gcra", Policy::gcra("gcra", q)),
        ("fixed_window", Policy::fixed_window("fixed", q)),
    ]
}

fn one_thread(c: &mut Criterion, url: &str) {
    let mut g = c.benchmark_group("redis check, one thread, 10k keys");
    g.measurement_time(Duration::from_secs(3));
    for (name, policy) in policies() {
        let (l, id, _) = limiter(url, policy, 1);
        let mut i = 0u64;
        g.bench_function(BenchmarkId::new("portcullis", name), |b| {
            b.iter(|| {
                i += 1;
                black_box(l.check(id, (i % KEYS).to_le_bytes(), 1).unwrap().allowed)
            })
        });
    }
    g.finish();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Checks per second and latency percentiles with `threads` threads.
fn threads(url: &str, name: &str, policy: Policy, threads: usize, pool: usize) {
    let (l, id, redis) = limiter(url, policy, pool);
    let l = Arc::new(l);
    let per_thread = (40_000 / threads).max(500);
    let start = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (l, start) = (Arc::clone(&l), Arc::clone(&start));
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(per_thread);
                start.wait();
                for i in 0..per_thread {
                    let key = ((t * per_thread + i) as u64 % KEYS).to_le_bytes();
                    let at = Instant::now();
                    black_box(l.check(id, key, 1).unwrap().allowed);
                    lat.push(at.elapsed());
                }
                lat
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let mut lat: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let elapsed = t0.elapsed();
    lat.sort();
    let s = redis.stats();
    println!(
        "redis threads={threads} pool={pool} algorithm={name} checks={} calls_per_write={:.1} checks_per_s={:.0} p50_us={:.1} p99_us={:.1}",
        lat.len(),
        s.round_trips as f64 / s.batches.max(1) as f64,
        lat.len() as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6,
    );
}

/// A flood from one denied key: answered from the deny cache.
fn denied_flood(url: &str) {
    let (l, id, redis) = limiter(url, Policy::gcra("flood", Quota::per_hour(5).unwrap()), 1);
    while l.check(id, "flooder", 1).unwrap().allowed {}
    let trips = redis.stats().round_trips;
    let n = 1_000_000;
    let t0 = Instant::now();
    for _ in 0..n {
        black_box(l.check(id, "flooder", 1).unwrap().allowed);
    }
    let elapsed = t0.elapsed();
    println!(
        "redis deny_cache flood checks={n} checks_per_s={:.0} ns_per_check={:.1} round_trips_after_first_denial={}",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / n as f64,
        redis.stats().round_trips - trips
    );
}

fn main() {
    let Ok(url) = std::env::var("PORTCULLIS_REDIS_URL") else {
        eprintln!("set PORTCULLIS_REDIS_URL (benches/redis/run.sh starts a server)");
        return;
    };
    let mut c = Criterion::default().configure_from_args();
    one_thread(&mut c, &url);
    c.final_summary();
    for (name, policy) in policies() {
        for n in [1, 8, 64] {
            // The default pool (4 connections, busy ones batch), and one connection per thread.
            threads(&url, name, policy.clone(), n, 4);
            if n > 4 {
                threads(&url, name, policy.clone(), n, n);
            }
        }
    }
    denied_flood(&url);
}
