//! Loom models of the lock-free core: the CAS loop on a slot, the claim/reclaim protocol that
//! places new keys, and concurrency leases. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --test loom_table`.
#![cfg(loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use portcullis::loom_internals::{
    Algo, Fingerprint, Gcra, LockClock, Rule, Table, LOCK_TIMEOUT_MS,
};
use portcullis::{Limiter, ManualClock, Policy, Quota};

const T0: u64 = 1_700_000_000_000_000_000;
const THREADS: usize = 2;

/// Loom runs each thread on a small coroutine stack; a limiter's check, with every store's
/// branch compiled in, needs more than the default.
const STACK: usize = 1 << 20;

fn spawn<F, T>(f: F) -> thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .expect("a loom thread")
}

/// Built on a thread of its own: building a limiter takes more stack than loom gives the
/// model's main thread (which cannot be given more).
fn limiter(policy: Policy, clock: ManualClock) -> Arc<Limiter> {
    spawn(move || {
        Arc::new(
            Limiter::builder()
                .policy(policy)
                .capacity(4)
                .clock(clock)
                .hash_key([1; 16])
                .build()
                .unwrap(),
        )
    })
    .join()
    .unwrap()
}

/// Two threads race on one new key with burst 1: exactly one is allowed in every interleaving
/// (the placement race and the CAS loop together).
#[test]
fn cas_loop_allows_exactly_burst() {
    loom::model(|| {
        let q = Quota::per_hour(10).unwrap().with_burst(1).unwrap();
        let l = limiter(Policy::gcra("p", q), ManualClock::new(T0));
        let allowed = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let l = l.clone();
                let allowed = allowed.clone();
                spawn(move || {
                    let id = l.policy_id("p").unwrap();
                    if l.check(id, "k", 1).unwrap().allowed {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(allowed.load(Ordering::Relaxed), 1);
    });
}

fn gcra_rule(burst: u32) -> Rule {
    let q = Quota::per_hour(10).unwrap().with_burst(burst).unwrap();
    Rule {
        algo: Algo::Gcra(Gcra::new(&q)),
        block: 0,
    }
}

fn occurrences(table: &Table, fp: u64) -> usize {
    let mut n = 0;
    table.for_each(|f, _| n += usize::from(f == fp));
    n
}

/// A one-bucket table full of recovered keys: two threads placing the same new key (one of them
/// then placing another) never duplicate a key, and every charge lands on its key's single slot.
#[test]
fn claim_and_reclaim_never_duplicate_a_key() {
    loom::model(|| {
        let rule = gcra_rule(3);
        let table = Arc::new(Table::new(4, [2; 16]));
        // Four old keys that have fully recovered by `now`.
        let old_now = T0 - 3_600_000_000_000;
        for i in 0..4u8 {
            let f = table.fingerprint(&[b'o', i]);
            table.update(&f, old_now, &rule, |s| rule.check(s, old_now, 1));
        }
        let x = table.fingerprint(b"x");
        let y = table.fingerprint(b"y");
        let spawn = |keys: Vec<_>| {
            let table = table.clone();
            spawn(move || {
                let rule = gcra_rule(3);
                keys.iter().all(|f| {
                    table
                        .update(f, T0, &rule, |s| rule.check(s, T0, 1))
                        .value
                        .allowed
                })
            })
        };
        let a = spawn(vec![x]);
        let b = spawn(vec![x, y]);
        assert!(a.join().unwrap() && b.join().unwrap());
        assert_eq!(occurrences(&table, x.fp), 1);
        assert_eq!(occurrences(&table, y.fp), 1);
        // Both charges to x landed on the same state: one unit left of three.
        let sx = table.read(&x).unwrap();
        assert_eq!(rule.peek(sx, T0, 1).remaining, 0);
        assert_eq!(table.evictions(), 0);
    });
}

/// A one-bucket table (GCRA, burst 4) full of live keys at `T0`: `o0` owes one request and the
/// others two, so `o0` is the one a new key evicts. Returns the table, `o0` and that new key.
fn bucket_with_lightest_key(hash_key: [u8; 16]) -> (Arc<Table>, Fingerprint, Fingerprint) {
    let rule = gcra_rule(4);
    let table = Arc::new(Table::new(4, hash_key));
    for i in 0..4u8 {
        let f = table.fingerprint(&[b'o', i]);
        let cost = if i == 0 { 1 } else { 2 };
        table.update(&f, T0, &rule, |s| rule.check(s, T0, cost));
    }
    let old = table.fingerprint(&[b'o', 0]);
    let new = table.fingerprint(b"n");
    (table, old, new)
}

/// The owner-change race of the 64-bit slot protocol: one thread charges a known key while
/// another places a new key that evicts it. The old key's state as last read and the new key's
/// first state are the same value (one charge at the same instant), so a CAS on the bare state
/// word would land the old key's second charge on the new key's slot. Whatever the
/// interleaving, the new key, if still present, holds exactly its own one charge, and no key
/// has two slots.
#[test]
fn owner_change_never_takes_a_stale_update() {
    loom::model(|| {
        let rule = gcra_rule(4);
        let (table, old, new) = bucket_with_lightest_key([4; 16]);
        let spawn = |f| {
            let table = table.clone();
            spawn(move || {
                let rule = gcra_rule(4);
                table.update(&f, T0, &rule, |s| rule.check(s, T0, 1));
            })
        };
        let a = spawn(old);
        let b = spawn(new);
        a.join().unwrap();
        b.join().unwrap();
        assert!(occurrences(&table, old.fp) <= 1);
        assert!(occurrences(&table, new.fp) <= 1);
        if let Some(s) = table.read(&new) {
            assert_eq!(
                rule.peek(s, T0, 1).remaining,
                2,
                "exactly one charge of four"
            );
        }
        assert!(table.evictions() >= 1);
    });
}

/// The reader side of an owner change: a thread that has matched key X's tag and then reads
/// the state word may find a word already written for key Y, which evicted X in between. It
/// must check the tag again before using the word: decoded with X's mask, Y's word is garbage,
/// and the CAS on it would succeed. Here X's update adds one emission interval whatever the
/// state, so a stray write always shows: Y, if still present, holds exactly its own first state.
#[test]
fn a_reader_never_uses_a_word_written_for_another_owner() {
    loom::model(|| {
        let interval = 360_000_000_000; // 10 per hour
        let (table, old, new) = bucket_with_lightest_key([5; 16]);
        let a = {
            let table = table.clone();
            spawn(move || {
                let rule = gcra_rule(4);
                table.update(&old, T0, &rule, |s| (s.max(T0) + interval, ()));
            })
        };
        let b = {
            let table = table.clone();
            spawn(move || {
                let rule = gcra_rule(4);
                table.update(&new, T0, &rule, |s| rule.check(s, T0, 1));
            })
        };
        a.join().unwrap();
        b.join().unwrap();
        assert!(occurrences(&table, new.fp) <= 1);
        if let Some(s) = table.read(&new) {
            assert_eq!(
                s,
                T0 + interval,
                "the new key holds only its own first charge"
            );
        }
    });
}

/// A one-bucket table full of live keys: each new key evicts the least indebted one. The first
/// newcomer pushes out the lightest old key; the second newcomer, finding the first (now the
/// lightest), pushes it out: flood keys churn among themselves while indebted keys stay.
#[test]
fn eviction_takes_the_least_indebted() {
    loom::model(|| {
        let rule = gcra_rule(4);
        let table = Arc::new(Table::new(4, [3; 16]));
        // Debts 1, 2, 3 and 4 units.
        for i in 0..4u8 {
            let f = table.fingerprint(&[b'l', i]);
            table.update(&f, T0, &rule, |s| rule.check(s, T0, u32::from(i) + 1));
        }
        let old = |i: u8| table.fingerprint(&[b'l', i]);
        let spawn = |key: &'static [u8]| {
            let table = table.clone();
            spawn(move || {
                let rule = gcra_rule(4);
                let f = table.fingerprint(key);
                table
                    .update(&f, T0, &rule, |s| rule.check(s, T0, 1))
                    .value
                    .allowed
            })
        };
        let a = spawn(b"new-a");
        let b = spawn(b"new-b");
        assert!(a.join().unwrap() && b.join().unwrap());
        assert_eq!(table.evictions(), 2);
        assert!(table.read(&old(0)).is_none());
        for i in 1..4 {
            assert_eq!(occurrences(&table, old(i).fp), 1);
        }
        let a = occurrences(&table, table.fingerprint(b"new-a").fp);
        let b = occurrences(&table, table.fingerprint(b"new-b").fp);
        assert_eq!(a + b, 1);
    });
}

/// With one slot of concurrency, two threads that acquire, work and release never hold it at
/// the same time, and after both are done the slot is free again.
#[test]
fn leases_exclude_and_return() {
    loom::model(|| {
        let clock = ManualClock::new(T0);
        let l = limiter(
            Policy::concurrency("c", 1, Duration::from_secs(30)).unwrap(),
            clock,
        );
        let holding = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let l = l.clone();
                let holding = holding.clone();
                spawn(move || {
                    let id = l.policy_id("c").unwrap();
                    if let (_, Some(lease)) = l.acquire(id, "k", 1).unwrap() {
                        assert_eq!(holding.fetch_add(1, Ordering::SeqCst), 0);
                        holding.fetch_sub(1, Ordering::SeqCst);
                        l.release(lease).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let id = l.policy_id("c").unwrap();
        assert!(l.peek(id, "k", 1).unwrap().allowed);
    });
}

/// A process may die at any instruction, holding whatever it held. Here a placer stops forever
/// after taking its stripe's claim (stage 0), after locking a slot (1), or after writing the
/// slot's new state but before publishing it (2), in a full one-bucket table. Another thread
/// then places and charges a key of the same bucket and stripe while the lock clock moves past
/// the deadline: in every interleaving it finishes, its key has exactly one slot holding
/// exactly its own charge, and the dead placer's key can still be placed afterwards.
#[test]
fn a_placer_that_dies_mid_protocol_stops_no_one() {
    for stage in 0..3u8 {
        loom::model(move || {
            let rule = gcra_rule(3);
            let ms = std::sync::Arc::new(loom::sync::atomic::AtomicU32::new(1_000));
            let table =
                Arc::new(Table::new(4, [6; 16]).with_lock_clock(LockClock::Manual(ms.clone())));
            // Four live keys fill the bucket.
            for i in 0..4u8 {
                let f = table.fingerprint(&[b'o', i]);
                table.update(&f, T0, &rule, |s| rule.check(s, T0, 1));
            }
            let dead = table.fingerprint(b"dead");
            let live = table.fingerprint(b"live");
            let first = rule.check(0, T0, 1).0;
            table.abandon_placement(&dead, first, T0, &rule, stage);

            let t = {
                let table = table.clone();
                spawn(move || {
                    let rule = gcra_rule(3);
                    table.update(&live, T0, &rule, |s| rule.check(s, T0, 1));
                })
            };
            // Time passes while the other thread waits, if it does.
            ms.store(1_000 + LOCK_TIMEOUT_MS + 1, Ordering::Release);
            t.join().unwrap();

            assert_eq!(occurrences(&table, live.fp), 1, "stage {stage}");
            let s = table.read(&live).expect("placed");
            assert_eq!(
                rule.peek(s, T0, 1).remaining,
                1,
                "exactly its one charge of three"
            );
            assert!(occurrences(&table, dead.fp) <= 1);

            table.update(&dead, T0, &rule, |s| rule.check(s, T0, 1));
            assert_eq!(
                occurrences(&table, dead.fp),
                1,
                "stage {stage}: placed again"
            );
        });
    }
}
