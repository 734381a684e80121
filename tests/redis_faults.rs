//! Redis going away, four ways (killed and restarted, paused past the timeout, refusing the
//! password, full), under each `on_error` mode: every check returns within the timeout's
//! reach, does what the mode says, is counted, and the limiter goes back to Redis when it
//! answers again, without a restart. Each test runs its own redis-server (`ci/redis.sh`).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use portcullis::store::redis::{OnError, RedisOptions};
use portcullis::store::StoreConfig;
use portcullis::{Limiter, Policy, PolicyId, Quota};

const MODES: [OnError; 3] = [OnError::FailClosed, OnError::FailOpen, OnError::Local];
/// Far above the 100 ms timeout: only a hang fails it.
const HANG: Duration = Duration::from_secs(3);

fn limiter(url: &str, mode: OnError) -> (Limiter, PolicyId) {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut o = RedisOptions::new(url);
    o.key_prefix = format!("faults{}:", N.fetch_add(1, Ordering::Relaxed));
    o.timeout = Duration::from_millis(100);
    o.on_error = mode;
    o.expected_hosts = 2;
    let l = Limiter::builder()
        .policy(Policy::gcra("api", Quota::per_hour(10).unwrap()))
        .capacity(1024)
        .store(StoreConfig::redis(o).unwrap())
        .build()
        .unwrap();
    let id = l.policy_id("api").unwrap();
    (l, id)
}

fn fallbacks(l: &Limiter) -> u64 {
    l.stats()[0].store_fallbacks
}

/// Eight checks of a fresh key while Redis is away: each is a counted fallback that does what
/// `mode` says (with `others`, load from other threads, their fallbacks count too).
fn while_away(l: &Limiter, id: PolicyId, mode: OnError, key: &str, others: bool) {
    let before = fallbacks(l);
    let mut allowed = Vec::new();
    for _ in 0..8 {
        let t = Instant::now();
        let d = l.check(id, key, 1).unwrap();
        assert!(t.elapsed() < HANG, "a check took {:?}", t.elapsed());
        if !d.allowed && mode == OnError::FailClosed {
            assert!(d.retry_after() >= Duration::from_secs(1));
        }
        allowed.push(d.allowed);
    }
    let counted = fallbacks(l) - before;
    match others {
        false => assert_eq!(counted, 8, "{mode:?}: every check is a counted fallback"),
        true => assert!(counted >= 8, "{mode:?}: every check is a counted fallback"),
    }
    let want: Vec<bool> = match mode {
        OnError::FailClosed => vec![false; 8],
        OnError::FailOpen => vec![true; 8],
        // 10/h shared by two expected hosts: this host's table allows 5.
        OnError::Local => (0..8).map(|i| i < 5).collect(),
    };
    assert_eq!(allowed, want, "{mode:?}");
}

/// Checks until one is decided by Redis again (within the 2 s backoff cap and then some).
fn recovers(l: &Limiter, id: PolicyId) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let before = fallbacks(l);
        let d = l.check(id, "probe", 1).unwrap();
        if fallbacks(l) == before {
            assert!(d.allowed);
            return;
        }
        assert!(Instant::now() < deadline, "did not go back to Redis");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killed_mid_load_and_restarted() {
    let mut server = RedisServer::start();
    for mode in MODES {
        let (l, id) = limiter(&server.url(), mode);
        let l = Arc::new(l);
        assert!(l.check(id, "warm", 1).unwrap().allowed);
        // Load from four threads across the kill and the restart; none may fail or hang.
        let stop = Arc::new(AtomicBool::new(false));
        let load: Vec<_> = (0..4)
            .map(|t| {
                let (l, stop) = (Arc::clone(&l), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut worst = Duration::ZERO;
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) && n < 200_000 {
                        let at = Instant::now();
                        l.check(id, format!("load{t}-{}", n % 50), 1).unwrap();
                        worst = worst.max(at.elapsed());
                        n += 1;
                    }
                    worst
                })
            })
            .collect();
        server.kill();
        while_away(&l, id, mode, "during-kill", true);
        server.restart();
        recovers(&l, id);
        stop.store(true, Ordering::Relaxed);
        for t in load {
            let worst = t.join().unwrap();
            assert!(worst < HANG, "{mode:?}: a check under load took {worst:?}");
        }
    }
}

#[test]
fn paused_longer_than_the_timeout() {
    let server = RedisServer::start();
    for mode in MODES {
        let (l, id) = limiter(&server.url(), mode);
        assert!(l.check(id, "warm", 1).unwrap().allowed);
        let _: () = redis::cmd("CLIENT")
            .arg(&["PAUSE", "1500", "ALL"][..])
            .query(&mut server.conn(None))
            .unwrap();
        while_away(&l, id, mode, "during-pause", false);
        recovers(&l, id);
    }
}

#[test]
fn a_wrong_password() {
    let server = RedisServer::start_with(&["--requirepass", "secret"]);
    let url = format!("redis://:secret@127.0.0.1:{}/0", server.port);
    for mode in MODES {
        let (l, id) = limiter(&url, mode);
        assert!(l.check(id, "warm", 1).unwrap().allowed);
        // The password changes and connections are dropped: reconnecting is refused.
        let mut admin = server.conn(Some("secret"));
        let _: () = redis::cmd("CONFIG")
            .arg(&["SET", "requirepass", "changed"][..])
            .query(&mut admin)
            .unwrap();
        let _: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "normal"][..])
            .query(&mut admin)
            .unwrap();
        while_away(&l, id, mode, "during-auth", false);
        let _: () = redis::cmd("CONFIG")
            .arg(&["SET", "requirepass", "secret"][..])
            .query(&mut admin)
            .unwrap();
        recovers(&l, id);
    }
}

#[test]
fn a_full_redis() {
    let server = RedisServer::start();
    let mut admin = server.conn(None);
    for mode in MODES {
        let (l, id) = limiter(&server.url(), mode);
        assert!(l.check(id, "warm", 1).unwrap().allowed);
        let _: () = redis::cmd("CONFIG")
            .arg(&["SET", "maxmemory-policy", "noeviction", "maxmemory", "1"][..])
            .query(&mut admin)
            .unwrap();
        while_away(&l, id, mode, "during-oom", false);
        let _: () = redis::cmd("CONFIG")
            .arg(&["SET", "maxmemory", "0"][..])
            .query(&mut admin)
            .unwrap();
        recovers(&l, id);
    }
}

#[test]
fn scripts_flushed_from_redis_are_loaded_again() {
    let server = RedisServer::start();
    let (l, id) = limiter(&server.url(), OnError::FailClosed);
    assert!(l.check(id, "k", 1).unwrap().allowed);
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut server.conn(None))
        .unwrap();
    // EVALSHA answers NOSCRIPT; the client loads the script and runs it: no fallback.
    assert!(l.check(id, "k", 1).unwrap().allowed);
    assert_eq!(fallbacks(&l), 0);
    let d = l.peek(id, "k", 1).unwrap();
    assert_eq!(d.remaining(), 7, "10/h, two spent, one more asked for");
}

#[test]
fn a_key_of_another_type_falls_back_alone() {
    let server = RedisServer::start();
    let (l, id) = limiter(&server.url(), OnError::FailOpen);
    assert!(l.check(id, "fine", 1).unwrap().allowed);
    // Another program wrote a hash where this policy's key goes.
    let mut admin = server.conn(None);
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*fine}").query(&mut admin).unwrap();
    let mut bad = keys[0].clone();
    bad.truncate(bad.len() - "fine}".len());
    bad.extend_from_slice(b"bad}");
    let _: i64 = redis::cmd("HSET")
        .arg(&bad)
        .arg("a")
        .arg(1)
        .query(&mut admin)
        .unwrap();
    assert!(l.check(id, "bad", 1).unwrap().allowed, "fail_open answers");
    assert_eq!(fallbacks(&l), 1);
    // Redis did not go into backoff: the next key is decided there at once.
    assert!(l.check(id, "fine", 1).unwrap().allowed);
    assert_eq!(fallbacks(&l), 1);
    assert_eq!(l.peek(id, "fine", 1).unwrap().remaining(), 7);
}
