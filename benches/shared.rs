//! The shared store against the memory store, in one run:
//!
//! * a check on 10,000 keys, one process (criterion, then alternating rounds);
//! * two processes with one thread each against one process with two threads, on the same
//!   10,000 keys of one shared store (total checks per second);
//! * the table file's size and the process's resident memory across a flood of 1,000,000
//!   distinct keys.
//!
//! `cargo bench -p portcullis-benches --bench shared`

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::io::FromRawFd;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use portcullis::store::{SharedStore, StoreConfig};
use portcullis::{Limiter, Policy, PolicyId, Quota};

const KEYS: u64 = 10_000;
const CAPACITY: usize = 1 << 16;

fn limiter(store: StoreConfig) -> (Limiter, PolicyId) {
    let l = Limiter::builder()
        .policy(Policy::gcra(
            "bench",
            Quota::per_second(1_000_000_000).unwrap(),
        ))
        .capacity(CAPACITY)
        .store(store)
        .build()
        .unwrap();
    let id = l.policy_id("bench").unwrap();
    (l, id)
}

fn shared(dir: &Path) -> (Limiter, PolicyId) {
    limiter(StoreConfig::shared(dir).unwrap())
}

fn run(l: &Limiter, id: PolicyId, start: u64, checks: u64) {
    for i in 0..checks {
        black_box(
            l.check(id, ((start + i) % KEYS).to_le_bytes(), 1)
                .unwrap()
                .allowed,
        );
    }
}

fn check_path(c: &mut Criterion, dir: &Path) {
    let mut g = c.benchmark_group("check, 10k keys");
    let mem = limiter(StoreConfig::Memory);
    let sh = shared(dir);
    for (name, (l, id)) in [("memory", &mem), ("shared", &sh)] {
        let mut i = 0u64;
        g.bench_function(BenchmarkId::new("portcullis", name), |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                l.check(*id, i.to_le_bytes(), 1).unwrap().allowed
            })
        });
    }
    g.finish();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Shared against memory over alternating rounds (the machine's load drifts less within one).
fn alternating(dir: &Path) {
    const ROUNDS: usize = 9;
    const CHECKS: u64 = 2_000_000;
    let (mem, mid) = limiter(StoreConfig::Memory);
    let (sh, sid) = shared(dir);
    let (mut m, mut s, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        run(&mem, mid, 0, CHECKS);
        let memory = t.elapsed().as_nanos() as f64 / CHECKS as f64;
        let t = Instant::now();
        run(&sh, sid, 0, CHECKS);
        let shared = t.elapsed().as_nanos() as f64 / CHECKS as f64;
        m.push(memory);
        s.push(shared);
        r.push(shared / memory);
    }
    println!(
        "1 process, 10k keys, {ROUNDS} alternating rounds of {CHECKS} checks: median memory \
         {:.1} ns, shared {:.1} ns; median of the rounds' ratios (shared / memory) {:.2}",
        median(&mut m),
        median(&mut s),
        median(&mut r)
    );
}

/// Checks per second of two threads of one process on the shared store.
fn two_threads(dir: &Path, checks: u64) -> f64 {
    let (l, id) = shared(dir);
    let l = Arc::new(l);
    let barrier = Arc::new(Barrier::new(2));
    let started = Instant::now();
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let (l, barrier) = (Arc::clone(&l), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                run(&l, id, t * KEYS / 2, checks);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (2 * checks) as f64 / started.elapsed().as_secs_f64()
}

/// Checks per second of two forked processes, each opening the shared store itself and
/// checking once both are ready.
fn two_processes(dir: &Path, checks: u64) -> f64 {
    let mut ready = [0i32; 2];
    let mut go = [0i32; 2];
    // SAFETY: plain pipe and fork calls; each child only runs the loop and exits with _exit.
    unsafe {
        assert_eq!(libc::pipe(ready.as_mut_ptr()), 0);
        assert_eq!(libc::pipe(go.as_mut_ptr()), 0);
    }
    let mut children = Vec::new();
    for p in 0..2u64 {
        // SAFETY: see above.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let (l, id) = shared(dir);
            // SAFETY: the pipe ends are open descriptors owned by this process.
            let (mut r, mut w) = unsafe {
                (
                    std::fs::File::from_raw_fd(go[0]),
                    std::fs::File::from_raw_fd(ready[1]),
                )
            };
            w.write_all(&[1]).unwrap();
            let mut b = [0u8; 1];
            r.read_exact(&mut b).unwrap();
            run(&l, id, p * KEYS / 2, checks);
            // SAFETY: leaves the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        children.push(pid);
    }
    // SAFETY: the pipe ends are open descriptors owned by this process.
    let (mut r, mut w) = unsafe {
        (
            std::fs::File::from_raw_fd(ready[0]),
            std::fs::File::from_raw_fd(go[1]),
        )
    };
    let mut b = [0u8; 2];
    r.read_exact(&mut b).unwrap();
    let started = Instant::now();
    w.write_all(&[1, 1]).unwrap();
    for pid in children {
        let mut status = 0;
        // SAFETY: waits for a child of this process.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    (2 * checks) as f64 / started.elapsed().as_secs_f64()
}

fn processes_against_threads(dir: &Path) {
    const ROUNDS: usize = 7;
    const CHECKS: u64 = 3_000_000;
    let (mut t, mut p, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let threads = two_threads(dir, CHECKS) / 1e6;
        let procs = two_processes(dir, CHECKS) / 1e6;
        t.push(threads);
        p.push(procs);
        r.push(procs / threads);
    }
    println!(
        "shared store, 10k keys, {ROUNDS} alternating rounds of 2 x {CHECKS} checks: median \
         1 process x 2 threads {:.1} M/s, 2 processes x 1 thread {:.1} M/s; median ratio \
         (processes / threads) {:.2}",
        median(&mut t),
        median(&mut p),
        median(&mut r)
    );
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn flood(dir: &Path) {
    let (l, id) = shared(dir);
    let files = SharedStore::list(dir).unwrap();
    let file = &files.iter().find(|t| t.capacity >= CAPACITY).unwrap().path;
    let size_before = std::fs::metadata(file).unwrap().len();
    let rss_before = rss_bytes();
    for i in 0..1_000_000u64 {
        black_box(l.check(id, (1 << 40 | i).to_le_bytes(), 1).unwrap().allowed);
    }
    let size_after = std::fs::metadata(file).unwrap().len();
    let rss_after = rss_bytes();
    println!(
        "flood of 1,000,000 distinct keys on a {CAPACITY}-slot shared table: file {size_before} \
         bytes before, {size_after} after (= {CAPACITY} slots x 16 bytes + {} bytes of header and \
         claim flags); resident memory +{:.1} MiB (the mapped table, touched once)",
        size_before - (CAPACITY as u64 * 16),
        (rss_after as f64 - rss_before as f64) / (1 << 20) as f64
    );
}

fn main() {
    let dir = tempfile::tempdir_in(shm_or_tmp()).unwrap();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    check_path(&mut c, dir.path());
    c.final_summary();
    alternating(dir.path());
    processes_against_threads(dir.path());
    let flood_dir = tempfile::tempdir_in(shm_or_tmp()).unwrap();
    flood(flood_dir.path());
}

/// The shared store's recommended place: tmpfs.
fn shm_or_tmp() -> std::path::PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
