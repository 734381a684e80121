//! Persistence in sled: restarts, crashes (SIGKILL), compaction, concurrency with the writer,
//! and every kind of bad data.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use portcullis::store::{
    Durability, MemoryStore, PolicyChanges, Saved, Store, StoreConfig, StoreError,
};
use portcullis::{Error, Limiter, ManualClock, Policy};

/// The crash test forks children; a child briefly holds copies of every descriptor the parent
/// has open (sled's lock included) until it execs, so the tests of this file take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn login() -> Policy {
    Policy::fixed_window("login", "5/15m".parse().unwrap())
        .block(Duration::from_secs(900))
        .durability(Durability::Immediate)
}

fn open(dir: &Path, clock: &ManualClock) -> Result<Limiter, Error> {
    open_with(dir, clock, 1024)
}

fn open_with(dir: &Path, clock: &ManualClock, capacity: usize) -> Result<Limiter, Error> {
    Limiter::builder()
        .policy(login())
        .policy(Policy::gcra("api", "100/h".parse().unwrap()))
        .capacity(capacity)
        .clock(clock.clone())
        .store(StoreConfig::sled(dir).flush_interval(Duration::from_millis(5)))
        .build()
}

#[test]
fn restart_keeps_used_quota_and_resets() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0 + 60 * SEC);
    {
        let l = open(dir.path(), &clock).unwrap();
        let id = l.policy_id("login").unwrap();
        for _ in 0..5 {
            assert!(l.check(id, "198.51.100.7", 1).unwrap().allowed);
        }
        // Another client, blocked, then unblocked by an operator before the restart.
        for _ in 0..6 {
            l.check(id, "203.0.113.1", 1).unwrap();
        }
        assert!(!l.peek(id, "203.0.113.1", 1).unwrap().allowed);
        assert!(l.reset(id, "203.0.113.1").unwrap());
        // Write-behind state too.
        let api = l.policy_id("api").unwrap();
        for _ in 0..30 {
            l.check(api, "key-1", 1).unwrap();
        }
    }
    clock.advance(Duration::from_secs(10));
    let l = open(dir.path(), &clock).unwrap();
    let id = l.policy_id("login").unwrap();
    let sixth = l.check(id, "198.51.100.7", 1).unwrap();
    assert!(!sixth.allowed, "a restart must not hand out a fresh quota");
    // Window of 15 min started at T0 (aligned), 70 s in; the block makes it 900 s from now.
    assert_eq!(sixth.retry_after(), Duration::from_secs(900));
    assert!(
        l.check(id, "203.0.113.1", 1).unwrap().allowed,
        "a reset stays reset"
    );
    let api = l.policy_id("api").unwrap();
    assert_eq!(l.peek(api, "key-1", 1).unwrap().remaining(), 69);
    // Names are kept beside the state.
    let keys = l.keys(id).unwrap();
    let names: Vec<String> = keys
        .iter()
        .filter_map(|k| {
            k.name
                .as_ref()
                .map(|n| String::from_utf8_lossy(n).into_owned())
        })
        .collect();
    assert!(names.contains(&"198.51.100.7".to_string()), "{names:?}");
    assert!(keys.iter().any(|k| k.blocked));
}

#[test]
fn clock_moved_back_grants_nothing_after_reopen() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0 + 60 * SEC);
    {
        let l = open(dir.path(), &clock).unwrap();
        let api = l.policy_id("api").unwrap();
        while l.check(api, "k", 1).unwrap().allowed {}
        let id = l.policy_id("login").unwrap();
        for _ in 0..5 {
            l.check(id, "k", 1).unwrap();
        }
    }
    clock.rewind(Duration::from_secs(3 * 3600));
    let l = open(dir.path(), &clock).unwrap();
    assert!(
        !l.check(l.policy_id("api").unwrap(), "k", 1)
            .unwrap()
            .allowed
    );
    assert!(
        !l.check(l.policy_id("login").unwrap(), "k", 1)
            .unwrap()
            .allowed
    );
}

#[test]
fn compaction_keeps_only_live_keys_and_size_stops_growing() {
    let _serial = serial();
    const CYCLES: u64 = 20;
    const SETTLE: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut sizes = Vec::new();
    for cycle in 0..CYCLES {
        {
            let l = open(dir.path(), &clock).unwrap();
            let api = l.policy_id("api").unwrap();
            // Everything from the previous cycle has recovered: nothing was restored.
            assert!(l.keys(api).unwrap().is_empty(), "cycle {cycle}");
            for k in 0..2000u64 {
                l.check(api, format!("c{cycle}-{k}"), 1).unwrap();
            }
            l.close().unwrap();
            sizes.push(l.store_stats().unwrap().size_on_disk);
        }
        clock.advance(Duration::from_secs(3 * 3600));
    }
    // The store on disk holds only live keys: after the last cycle recovered, none are left.
    {
        let l = open(dir.path(), &clock).unwrap();
        assert!(l.keys(l.policy_id("api").unwrap()).unwrap().is_empty());
    }
    // Each cycle leaves the same amount of live data (the table's pages and the names of the
    // keys it holds), and sled reuses freed log segments: once the first cycles have sized the
    // file, further cycles keep it within a segment of that size (sled may hold one more
    // segment open at a time, and gives it back later).
    const SEGMENT: u64 = 512 * 1024;
    let settled = sizes[..=SETTLE].iter().copied().max().unwrap_or(0);
    let later = sizes[SETTLE..].iter().copied().max().unwrap_or(0);
    assert!(
        later <= settled + SEGMENT,
        "size on disk kept growing over cycles: {sizes:?}"
    );
}

#[test]
fn writer_flushing_while_two_threads_check_loses_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let before = {
        let l = Arc::new(open_with(dir.path(), &clock, 1 << 14).unwrap());
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let l = Arc::clone(&l);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let api = l.policy_id("api").unwrap();
                    barrier.wait();
                    for i in 0..20_000u32 {
                        l.check(api, format!("k{}", (i * 7 + t) % 500), 1).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        l.close().unwrap();
        let mut keys: Vec<_> = l
            .keys(l.policy_id("api").unwrap())
            .unwrap()
            .into_iter()
            .map(|k| (k.fingerprint, k.decision.remaining(), k.name))
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(before.len(), 500);
    let l = open_with(dir.path(), &clock, 1 << 14).unwrap();
    let mut after: Vec<_> = l
        .keys(l.policy_id("api").unwrap())
        .unwrap()
        .into_iter()
        .map(|k| (k.fingerprint, k.decision.remaining(), k.name))
        .collect();
    after.sort();
    let diff: Vec<_> = before.iter().filter(|k| !after.contains(k)).collect();
    assert!(
        diff.is_empty(),
        "{} keys differ, e.g. {:?}",
        diff.len(),
        &diff[..diff.len().min(3)]
    );
    assert_eq!(before, after);
}

#[test]
fn a_second_open_is_refused_with_the_path() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let _first = open(dir.path(), &clock).unwrap();
    let err = open(dir.path(), &clock)
        .err()
        .expect("second open must fail");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Store(StoreError::Locked { .. })),
        "{msg}"
    );
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("in use by another process"), "{msg}");
}

#[test]
fn a_foreign_database_is_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("users").unwrap().insert("alice", "x").unwrap();
        db.flush().unwrap();
    }
    let err = open(dir.path(), &ManualClock::new(T0))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("is not a portcullis store"), "{err}");
    assert!(err.contains("users"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}

#[test]
fn another_format_version_is_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("portcullis/format", &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = open(dir.path(), &ManualClock::new(T0))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("has format version 99, this build reads version 1"),
        "{err}"
    );
}

#[test]
fn a_damaged_page_is_refused_not_reset() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let l = open(dir.path(), &clock).unwrap();
        let api = l.policy_id("api").unwrap();
        l.check(api, "k", 1).unwrap();
    }
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("state/api")
            .unwrap()
            .insert(0u64.to_be_bytes(), &[1u8; 17][..])
            .unwrap();
        db.flush().unwrap();
    }
    let err = open(dir.path(), &clock).err().unwrap().to_string();
    assert!(err.contains("is corrupt"), "{err}");
    assert!(err.contains("policy \"api\""), "{err}");
    assert!(err.contains("17-byte value"), "{err}");
}

#[test]
fn a_truncated_or_garbled_file_is_refused_without_panic() {
    let _serial = serial();
    for damage in ["truncate", "garble"] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        {
            let l = open(dir.path(), &clock).unwrap();
            let api = l.policy_id("api").unwrap();
            for k in 0..300 {
                l.check(api, format!("k{k}"), 1).unwrap();
            }
        }
        let db = dir.path().join("db");
        let bytes = std::fs::read(&db).unwrap();
        match damage {
            "truncate" => std::fs::write(&db, &bytes[..bytes.len() / 3]).unwrap(),
            _ => {
                let mut b = bytes.clone();
                for x in b.iter_mut().skip(64).step_by(7) {
                    *x ^= 0x5a;
                }
                std::fs::write(&db, b).unwrap();
            }
        }
        // Either refused with the path, or (when sled recovers a clean prefix) opened; never a
        // panic, and never an empty store posing as the old one without saying so.
        match open(dir.path(), &clock) {
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&dir.path().display().to_string()),
                    "{damage}: {msg}"
                );
            }
            Ok(l) => {
                // sled truncated its log to the last valid record: what survives is a prefix.
                let n = l.keys(l.policy_id("api").unwrap()).unwrap().len();
                assert!(n <= 300, "{damage}: {n}");
            }
        }
    }
}

/// The crash test's child: hammers two policies and reports each decision on stdout.
fn child(dir: &str) {
    use std::io::Write;
    let l = Limiter::builder()
        .policy(
            Policy::fixed_window("imm", "40/100d".parse().unwrap())
                .durability(Durability::Immediate),
        )
        .policy(Policy::fixed_window("wb", "1000000/100d".parse().unwrap()))
        .capacity(256)
        .store(StoreConfig::sled(dir).flush_interval(Duration::from_millis(20)))
        .build()
        .unwrap();
    let imm = l.policy_id("imm").unwrap();
    let wb = l.policy_id("wb").unwrap();
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    for i in 0u64.. {
        let k = i % 3;
        let a = l.check(imm, format!("i{k}"), 1).unwrap().allowed;
        writeln!(out, "I {k} {}", u8::from(a)).unwrap();
        l.check(wb, format!("w{k}"), 1).unwrap();
        writeln!(out, "W {k}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn crash_child_entry() {
    if let Ok(dir) = std::env::var("PORTCULLIS_CRASH_CHILD") {
        child(&dir);
    }
}

#[test]
fn sigkill_never_over_grants_immediate_and_loses_at_most_an_interval() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    let interval = Duration::from_millis(20);
    let mut imm_allowed = [0u64; 3];
    let mut wb_seen = [0u64; 3];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut worst_loss = 0;
    let mut imm_used = [0u64; 3];
    for round in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let lines_before_kill = 30 + (seed % 400) as usize;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PORTCULLIS_CRASH_CHILD", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut wb_times: Vec<(usize, Instant)> = Vec::new();
        let mut line = String::new();
        let mut n = 0;
        let mut ready = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("round {round}: child exited early");
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                // The test harness prints its own "test ... " prefix on the same line.
                [.., "ready"] => ready = true,
                ["I", k, a] => {
                    imm_allowed[k.parse::<usize>().unwrap()] += a.parse::<u64>().unwrap();
                }
                ["W", k] => {
                    let k: usize = k.parse().unwrap();
                    wb_seen[k] += 1;
                    wb_times.push((k, Instant::now()));
                }
                _ => {}
            }
            n += 1;
            if ready && n >= lines_before_kill {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        let killed_at = Instant::now();
        child.wait().unwrap();
        // Decisions seen in the last flush interval (plus the flush then in flight).
        let recent = |k: usize| {
            wb_times
                .iter()
                .filter(|(key, t)| *key == k && killed_at.duration_since(*t) <= 2 * interval)
                .count() as u64
        };

        let l = Limiter::builder()
            .policy(
                Policy::fixed_window("imm", "40/100d".parse().unwrap())
                    .durability(Durability::Immediate),
            )
            .policy(Policy::fixed_window("wb", "1000000/100d".parse().unwrap()))
            .capacity(256)
            .store(StoreConfig::sled(&path))
            .build()
            .unwrap();
        let imm = l.policy_id("imm").unwrap();
        let wb = l.policy_id("wb").unwrap();
        for k in 0..3usize {
            // A peek reports what one more request would leave; an exhausted key is denied.
            let peek = l.peek(imm, format!("i{k}"), 1).unwrap();
            let used = if peek.allowed {
                40 - 1 - u64::from(peek.remaining())
            } else {
                40
            };
            imm_used[k] = used;
            assert!(
                imm_allowed[k] <= 40,
                "round {round}: immediate key granted {} > 40",
                imm_allowed[k]
            );
            assert!(
                used >= imm_allowed[k],
                "round {round}: an immediate grant was lost: seen {}, on disk {}",
                imm_allowed[k],
                used
            );
            let persisted =
                1_000_000 - 1 - u64::from(l.peek(wb, format!("w{k}"), 1).unwrap().remaining());
            let lost = wb_seen[k].saturating_sub(persisted);
            worst_loss = worst_loss.max(lost);
            assert!(
                lost <= recent(k),
                "round {round}: write-behind lost {lost} decisions of key w{k}, more than the {} of its last interval",
                recent(k)
            );
            // What was persisted is the truth from now on.
            wb_seen[k] = persisted;
        }
        drop(l);
    }
    // Every immediate key used its whole limit over the rounds (the test exercised denials).
    // Counted from the store: a grant made just before a kill may never have been printed.
    assert!(imm_used.iter().all(|&u| u == 40), "{imm_used:?}");
    eprintln!("worst write-behind loss over 20 SIGKILLs: {worst_loss} decisions");
}

/// A store that keeps the set of key names its writes leave behind, over a memory store.
struct NameCounting {
    inner: MemoryStore,
    names: parking_lot::Mutex<std::collections::HashSet<u64>>,
}

impl Store for NameCounting {
    fn hash_key(&self) -> Result<Option<[u8; 16]>, StoreError> {
        self.inner.hash_key()
    }
    fn set_hash_key(&self, key: [u8; 16]) -> Result<(), StoreError> {
        self.inner.set_hash_key(key)
    }
    fn load(&self, policy: &str, signature: &str) -> Result<Saved, StoreError> {
        self.inner.load(policy, signature)
    }
    fn write(&self, changes: &[PolicyChanges]) -> Result<(), StoreError> {
        let mut names = self.names.lock();
        for c in changes {
            if c.replace_all {
                names.clear();
            }
            for fp in &c.forget {
                names.remove(fp);
            }
            names.extend(c.names.iter().map(|(fp, _)| *fp));
        }
        self.inner.write(changes)
    }
    fn sync(&self, power_loss: bool) -> Result<(), StoreError> {
        self.inner.sync(power_loss)
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

/// A flood of distinct keys must not grow the saved names forever: past twice the table's
/// capacity, the names of keys no longer in the table are forgotten.
#[test]
fn key_names_stay_bounded_under_a_flood() {
    const CAPACITY: usize = 64;
    let store = Arc::new(NameCounting {
        inner: MemoryStore::new(),
        names: parking_lot::Mutex::new(Default::default()),
    });
    let clock = ManualClock::new(T0);
    let l = Limiter::builder()
        .policy(Policy::gcra("api", "100/h".parse().unwrap()))
        .capacity(CAPACITY)
        .clock(clock.clone())
        .store(StoreConfig::custom(store.clone()).flush_interval(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let api = l.policy_id("api").unwrap();
    for round in 0..50 {
        for k in 0..200 {
            l.check(api, format!("flood-{round}-{k}"), 1).unwrap();
        }
        // Each round reaches the store: a write of its names, then the pruning of old ones.
        l.close().unwrap();
    }
    let kept = store.names.lock().len();
    assert!(kept > 0, "names are saved");
    assert!(
        kept <= 2 * CAPACITY + 200,
        "{kept} names kept for a table of {CAPACITY} after 10,000 keys"
    );
}
