//! The shared store: processes (and limiters) that open one folder share one quota; a process
//! killed at any instruction stops no one and never lets a key past its quota; bad folders and
//! files are refused with the path, never misread.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis::store::{SharedStore, StoreConfig, StoreError};
use portcullis::{Error, Limiter, ManualClock, Policy, Quota};

const T0: u64 = 1_700_000_000_000_000_000;

fn hourly(n: u32) -> Policy {
    Policy::fixed_window("api", Quota::per_hour(n).unwrap())
}

fn open(dir: &Path, policy: Policy, clock: &ManualClock) -> Result<Limiter, Error> {
    Limiter::builder()
        .policy(policy)
        .capacity(1024)
        .clock(clock.clone())
        .store(StoreConfig::shared(dir)?)
        .build()
}

#[test]
fn two_limiters_on_one_folder_share_one_quota() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = open(dir.path(), hourly(10), &clock).unwrap();
    let b = open(dir.path(), hourly(10), &clock).unwrap();
    let id = a.policy_id("api").unwrap();
    let mut allowed = 0;
    for i in 0..40 {
        let l = if i % 2 == 0 { &a } else { &b };
        allowed += usize::from(l.check(id, "client", 1).unwrap().allowed);
    }
    assert_eq!(allowed, 10);
    // A reset through one is seen by the other.
    assert!(b.reset(id, "client").unwrap());
    assert!(a.check(id, "client", 1).unwrap().allowed);
    // And the counters outlive both: a third open sees the key's use.
    drop((a, b));
    let c = open(dir.path(), hourly(10), &clock).unwrap();
    assert_eq!(c.peek(id, "client", 1).unwrap().remaining(), 8);
}

#[test]
fn a_changed_policy_gets_its_own_table() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let ten = open(dir.path(), hourly(10), &clock).unwrap();
    let id = ten.policy_id("api").unwrap();
    for _ in 0..10 {
        assert!(ten.check(id, "k", 1).unwrap().allowed);
    }
    // Same name, other definition: a table of its own, never the other's states.
    let three = open(dir.path(), hourly(3), &clock).unwrap();
    let gcra = open(
        dir.path(),
        Policy::gcra("api", Quota::per_hour(10).unwrap()),
        &clock,
    )
    .unwrap();
    assert_eq!(three.peek(id, "k", 1).unwrap().remaining(), 2);
    assert_eq!(gcra.peek(id, "k", 1).unwrap().remaining(), 9);
    assert!(!ten.check(id, "k", 1).unwrap().allowed);
    let tables = SharedStore::list(dir.path()).unwrap();
    assert_eq!(tables.len(), 3, "{tables:?}");
    assert!(tables.iter().all(|t| t.policy == "api"));
}

#[test]
fn bad_folders_and_files_are_refused_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);

    // A folder that is a file.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let e = StoreConfig::shared(&file).unwrap_err();
    assert!(e.to_string().contains("plain-file"), "{e}");
    assert!(e.to_string().contains("not a folder"), "{e}");
    // Under a file: cannot be created.
    let e = StoreConfig::shared(file.join("sub")).unwrap_err();
    assert!(matches!(e, StoreError::Io { .. }), "{e}");

    // A foreign meta file.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("portcullis.meta"), b"hello, not ours").unwrap();
    let e = StoreConfig::shared(&foreign).unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e}");
    assert!(e.to_string().contains("portcullis.meta"), "{e}");

    // Another format version.
    let other = dir.path().join("other-version");
    drop(open(&other, hourly(5), &clock).unwrap());
    let meta = other.join("portcullis.meta");
    let mut bytes = std::fs::read(&meta).unwrap();
    bytes[8] = 99;
    std::fs::write(&meta, &bytes).unwrap();
    let e = StoreConfig::shared(&other).unwrap_err();
    assert!(matches!(e, StoreError::Version { found: 99, .. }), "{e}");

    // A truncated table, a garbled table, a table of another format version: refused, and
    // left as they were (never a silently fresh quota).
    let damaged = dir.path().join("damaged");
    {
        let l = open(&damaged, hourly(5), &clock).unwrap();
        let id = l.policy_id("api").unwrap();
        l.check(id, "k", 1).unwrap();
    }
    let table = SharedStore::list(&damaged).unwrap().remove(0).path;
    let original = std::fs::read(&table).unwrap();
    let cases: [(&str, Vec<u8>); 3] = [
        ("truncated", original[..original.len() / 2].to_vec()),
        ("garbled", {
            let mut b = original.clone();
            b[..8].copy_from_slice(b"garbage!");
            b
        }),
        ("version", {
            let mut b = original.clone();
            b[8] = 7;
            b
        }),
    ];
    for (what, bytes) in cases {
        std::fs::write(&table, &bytes).unwrap();
        let e = open(&damaged, hourly(5), &clock).err().expect(what);
        let text = e.to_string();
        assert!(text.contains(&*table.to_string_lossy()), "{what}: {text}");
        assert_eq!(
            std::fs::read(&table).unwrap(),
            bytes,
            "{what}: left untouched"
        );
    }
    std::fs::write(&table, &original).unwrap();
    let l = open(&damaged, hourly(5), &clock).unwrap();
    let id = l.policy_id("api").unwrap();
    assert_eq!(l.peek(id, "k", 1).unwrap().remaining(), 3, "its state back");
}

/// A worker process: opens the store in `dir`, checks `n` times on key `hot` (and, with
/// `flood`, places a new key between checks, so that kills land inside placements too), and
/// prints `allowed <count>` at the end and `tick <allowed so far>` every 50 checks.
fn worker(dir: &str, n: usize, flood: bool) {
    let l = Limiter::builder()
        .policy(hourly(500))
        .capacity(8192)
        .store(StoreConfig::shared(dir).unwrap())
        .build()
        .unwrap();
    let id = l.policy_id("api").unwrap();
    let mut allowed = 0;
    let pid = std::process::id();
    for i in 0..n {
        if l.check(id, "hot", 1).unwrap().allowed {
            allowed += 1;
        }
        if flood {
            let _ = l.check(id, format!("flood-{pid}-{i}"), 1).unwrap();
        }
        if i % 50 == 49 {
            println!("tick {allowed}");
        }
    }
    println!("allowed {allowed}");
}

#[test]
fn worker_entry() {
    if let Ok(spec) = std::env::var("PORTCULLIS_SHARED_WORKER") {
        let mut parts = spec.splitn(3, ',');
        let dir = parts.next().unwrap();
        let n = parts.next().unwrap().parse().unwrap();
        let flood = parts.next() == Some("flood");
        worker(dir, n, flood);
    }
}

fn spawn(dir: &Path, n: usize, flood: bool) -> Child {
    let spec = format!(
        "{},{n},{}",
        dir.display(),
        if flood { "flood" } else { "plain" }
    );
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "worker_entry", "--nocapture", "--test-threads=1"])
        .env("PORTCULLIS_SHARED_WORKER", spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// What a worker printed as its count, once it has exited; a worker that has not finished
/// within 60 s (it would be waiting on a dead worker's claim forever) fails the test.
fn allowed_of(child: Child) -> Option<usize> {
    // A watchdog kills the worker if it has not exited within 60 s; the wait itself blocks.
    let pid = child.id() as libc::pid_t;
    let (done, exited) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let stuck = exited.recv_timeout(Duration::from_secs(60)).is_err();
        if stuck {
            // SAFETY: signals a child of this process that has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        stuck
    });
    let out = child.wait_with_output().unwrap();
    let _ = done.send(());
    assert!(!watchdog.join().unwrap(), "a worker is stuck");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("allowed ")?.trim().parse().ok())
}

#[test]
fn four_processes_allow_exactly_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..4).map(|_| spawn(dir.path(), 1000, false)).collect();
    let total: usize = children
        .into_iter()
        .map(|c| allowed_of(c).expect("a worker finished"))
        .sum();
    assert_eq!(total, 500);
}

/// Rounds in which one of four workers is SIGKILLed mid-burst (often inside a placement, as
/// every worker floods new keys) while the others go on: the survivors always finish, and the
/// hot key never gets past its quota.
#[test]
fn a_worker_killed_at_any_point_stops_no_one_and_grants_nothing_extra() {
    const ROUNDS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let round_dir = dir.path().join(format!("r{round}"));
        let mut children: Vec<_> = (0..4).map(|_| spawn(&round_dir, 300, true)).collect();
        // Kill the first worker after a pseudo-random number of its ticks; what it reported
        // by then is a lower bound of what it was allowed.
        let victim = &mut children[0];
        let ticks_before_kill = (round * 7 % 5) as usize;
        let mut lines = BufReader::new(victim.stdout.take().unwrap()).lines();
        let mut victim_allowed = 0;
        for _ in 0..ticks_before_kill {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(n) = line.strip_prefix("tick ") {
                        victim_allowed = n.trim().parse().unwrap();
                    }
                }
                _ => break,
            }
        }
        let _ = victim.kill();
        let _ = victim.wait();
        let survivors: usize = children
            .drain(1..)
            .map(|c| allowed_of(c).expect("a survivor finished"))
            .sum();
        assert!(
            survivors + victim_allowed <= 500,
            "round {round}: {survivors} + at least {victim_allowed} allowed against 500"
        );
        // The three survivors made 900 checks: the hot key is used up, and its count says 500.
        let l = Limiter::builder()
            .policy(hourly(500))
            .capacity(8192)
            .store(StoreConfig::shared(&round_dir).unwrap())
            .build()
            .unwrap();
        let id = l.policy_id("api").unwrap();
        assert!(!l.peek(id, "hot", 1).unwrap().allowed, "round {round}");
        std::fs::remove_dir_all(&round_dir).unwrap();
    }
    // Bounded: no survivor ever waited on a dead worker's claim for more than its deadline
    // (50 ms) per placement; 200 rounds of 1,200 checks finish well within this.
    assert!(
        started.elapsed() < Duration::from_secs(600),
        "{:?}",
        started.elapsed()
    );
}

fn gate_config(dir: &Path, extra: &str) -> portcullis::config::Config {
    format!(
        r#"
        [store]
        kind = "shared"
        path = "{}"
        capacity = 1024

        [[policy]]
        name = "login"
        algorithm = "fixed_window"
        limit = "5/15m"
        block = "15m"
        {extra}

        [[route]]
        match = "POST /login"
        limits = [{{ policy = "login", key = "ip" }}]
        "#,
        dir.display()
    )
    .parse()
    .unwrap()
}

#[test]
fn gates_share_counters_and_a_reload_keeps_them() {
    use portcullis::{Action, Gate, GateRequest};
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let gate = |extra: &str| {
        Gate::builder(gate_config(dir.path(), extra))
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (gate(""), gate(""));
    let login = GateRequest::new("POST", "/login").ip("203.0.113.9".parse().unwrap());
    let mut passed = 0;
    for i in 0..4 {
        let g = if i % 2 == 0 { &a } else { &b };
        passed += usize::from(g.decide(&login).action() == Action::Pass);
    }
    assert_eq!(passed, 4);
    // A reload that adds a policy keeps the login counters, here and in the other gate.
    a.reload(gate_config(
        dir.path(),
        "[[policy]]\nname = \"api\"\nlimit = \"100/h\"",
    ))
    .unwrap();
    assert_eq!(a.decide(&login).action(), Action::Pass, "the fifth");
    assert_eq!(b.decide(&login).action(), Action::Limited);
    assert_eq!(a.decide(&login).action(), Action::Limited);
    // A reset in one lifts the block in both.
    assert!(b
        .reset("login", portcullis::config::KeyKind::Ip, "203.0.113.9")
        .unwrap());
    assert_eq!(a.decide(&login).action(), Action::Pass);
}

#[test]
fn the_config_names_what_a_shared_store_needs() {
    let missing = "[store]\nkind = \"shared\"\n[[policy]]\nname = \"a\"\nlimit = \"1/s\"\n";
    let e = missing
        .parse::<portcullis::config::Config>()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("2:") && e.contains("a shared store needs a folder"),
        "{e}"
    );
    let sled_only = "[store]\nkind = \"shared\"\npath = \"x\"\nflush_interval = \"1s\"\n[[policy]]\nname = \"a\"\nlimit = \"1/s\"\n";
    let e = sled_only
        .parse::<portcullis::config::Config>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("4:") && e.contains("sled stores only"), "{e}");
}
