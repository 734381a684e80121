//! Behaviour a user relies on: retry-after is never early, clocks stepping back grant nothing,
//! floods do not grow memory, leases expire, blocks hold, headers say the right thing.

mod common;

use std::time::Duration;

use common::alloc::{allocations, Counting};
use portcullis::{HeaderStyle, Limiter, ManualClock, Policy, PolicyId, Quota};
use proptest::prelude::*;

/// Counts allocations, so the flood test can prove the check path allocates nothing.
#[global_allocator]
static GLOBAL: Counting = Counting;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn one(policy: Policy, capacity: usize) -> (Limiter, PolicyId, ManualClock) {
    let clock = ManualClock::new(T0);
    let l = Limiter::builder()
        .policy(policy)
        .capacity(capacity)
        .clock(clock.clone())
        .build()
        .unwrap();
    let id = l.policies().next().unwrap().0;
    (l, id, clock)
}

fn any_policy() -> impl Strategy<Value = Policy> {
    let q = (
        1u32..20,
        prop_oneof![Just(1u64), Just(7), Just(60), Just(3600)],
        1u32..20,
    )
        .prop_map(|(c, w, b)| (Quota::new(c, Duration::from_secs(w)).unwrap(), b));
    (q, 0u8..4).prop_map(|((q, b), kind)| match kind {
        0 => Policy::gcra("p", q.with_burst(b).unwrap()),
        1 => Policy::leaky_bucket("p", q.with_burst(b).unwrap()),
        2 => Policy::fixed_window("p", q),
        _ => Policy::sliding_window("p", q),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A denied request asked to retry after `r` is allowed at `now + r`, and was not allowed a
    /// nanosecond earlier; the header's whole seconds are never shorter.
    #[test]
    fn retry_after_is_never_early(policy in any_policy(), offset in 0u64..7200 * SEC, cost in 1u32..3) {
        let (l, id, clock) = one(policy, 64);
        clock.set(T0 + offset);
        let cap = l.peek(id, "k", 1).unwrap().limit;
        prop_assert_eq!(l.limit(id), Some(cap), "the policy's limit is its decisions'");
        prop_assume!(cost <= cap);
        let mut denied = None;
        for _ in 0..100 {
            let d = l.check(id, "k", cost).unwrap();
            if !d.allowed {
                denied = Some(d);
                break;
            }
        }
        let d = denied.expect("a key is eventually denied at a frozen time");
        let retry = d.retry_after().as_nanos() as u64;
        prop_assert!(retry > 0);
        let at = T0 + offset + retry;
        prop_assert!(l.peek_at(id, "k", cost, at).unwrap().allowed);
        prop_assert!(!l.peek_at(id, "k", cost, at - 1).unwrap().allowed);
        prop_assert!(d.retry_after_secs() * SEC >= retry);
    }

    /// A check's numbers are worked out when read, from the state it decided on: they equal
    /// what a peek just before it answered (which computes them at once), and they stay what
    /// they were after the key has moved on.
    #[test]
    fn a_decision_keeps_the_numbers_it_was_decided_with(
        policy in any_policy(),
        block in prop_oneof![Just(0u64), Just(90)],
        steps in proptest::collection::vec((0u64..3 * SEC, 1u32..4), 1..40),
    ) {
        let blocks = block > 0;
        let (l, id, clock) = one(policy.block(Duration::from_secs(block)), 64);
        let numbers = |d: &portcullis::Decision| {
            (d.allowed, d.remaining(), d.reset_after(), d.retry_after(), d.delay(), d.reset_secs())
        };
        let mut seen = Vec::new();
        for (advance, cost) in steps {
            clock.advance(Duration::from_nanos(advance));
            let Ok(peeked) = l.peek(id, "k", cost) else { continue };
            let d = l.check(id, "k", cost).unwrap();
            // A denial that starts a block answers with the block, which a peek does not start.
            if !blocks || d.allowed {
                prop_assert_eq!(d, peeked);
            }
            seen.push((d, numbers(&d)));
        }
        for (d, then) in &seen {
            prop_assert_eq!(numbers(d), *then);
        }
    }

    /// An exhausted key stays exhausted when the clock steps back, by any amount.
    #[test]
    fn clock_stepping_back_grants_nothing(policy in any_policy(), back in 1u64..30 * 86_400 * SEC) {
        let (l, id, clock) = one(policy, 64);
        while l.check(id, "k", 1).unwrap().allowed {}
        clock.rewind(Duration::from_nanos(back));
        prop_assert!(!l.check(id, "k", 1).unwrap().allowed);
    }
}

#[test]
fn flood_keeps_memory_fixed_and_the_hot_key_limited() {
    let capacity = 4096;
    let q = Quota::per_minute(60).unwrap().with_burst(10).unwrap();
    let (l, id, clock) = one(Policy::gcra("api", q), capacity);
    let before = l.stats()[0].memory_bytes;
    let mut keys = Vec::with_capacity(10 * capacity);
    for i in 0..10 * capacity {
        keys.push(format!("attacker-{i}"));
    }
    let mut hot_allowed = 0;
    // The counter sees this thread's allocations...
    let probe = allocations();
    std::hint::black_box(vec![0u8; 64]);
    assert!(allocations() > probe);
    let before_allocs = allocations();
    for (i, k) in keys.iter().enumerate() {
        assert!(l.check(id, k, 1).unwrap().allowed, "a fresh key is allowed");
        if i % 100 == 0 && l.check(id, "hot", 1).unwrap().allowed {
            hot_allowed += 1;
        }
        if i % 1000 == 0 {
            clock.advance(Duration::from_micros(1));
        }
    }
    // The check path allocated nothing at all for 40,960 new keys.
    assert_eq!(allocations(), before_allocs);
    let stats = &l.stats()[0];
    assert_eq!(stats.memory_bytes, before);
    assert!(stats.capacity >= capacity && stats.capacity < 2 * capacity);
    assert!(stats.evictions > 0, "a full table evicts");
    assert!(stats.live_keys <= stats.capacity);
    // The hot key got exactly its burst (time advanced 41 us in all, far from one interval).
    assert_eq!(hot_allowed, 10);
    assert!(!l.check(id, "hot", 1).unwrap().allowed);
}

#[test]
fn leases_expire_between_one_and_two_timeouts() {
    let (l, id, clock) = one(
        Policy::concurrency("export", 2, Duration::from_secs(10)).unwrap(),
        64,
    );
    let (_, a) = l.acquire(id, "k", 1).unwrap();
    let (_, b) = l.acquire(id, "k", 1).unwrap();
    assert!(a.is_some() && b.is_some());
    let (d, none) = l.acquire(id, "k", 1).unwrap();
    assert!(!d.allowed && none.is_none());
    // Never released: still held one timeout later minus a nanosecond...
    clock.advance(Duration::from_secs(10) - Duration::from_nanos(1));
    assert!(!l.peek(id, "k", 1).unwrap().allowed);
    // ...and gone after two timeouts at most.
    clock.advance(Duration::from_secs(10) + Duration::from_nanos(1));
    assert!(l.peek(id, "k", 1).unwrap().allowed);
    // A late release of an expired lease does not free a slot it no longer holds.
    let (_, c) = l.acquire(id, "k", 1).unwrap();
    let (_, d2) = l.acquire(id, "k", 1).unwrap();
    assert!(d2.is_some());
    l.release(a.unwrap()).unwrap();
    assert!(!l.peek(id, "k", 1).unwrap().allowed);
    l.release(c.unwrap()).unwrap();
    assert!(l.peek(id, "k", 1).unwrap().allowed);
}

#[test]
fn block_holds_for_its_duration_and_reset_lifts_it() {
    let p = Policy::gcra("login", "5/15m".parse().unwrap()).block(Duration::from_secs(3600));
    let (l, id, clock) = one(p, 64);
    for _ in 0..5 {
        assert!(l.check(id, "ip", 1).unwrap().allowed);
    }
    let d = l.check(id, "ip", 1).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after(), Duration::from_secs(3600));
    // Without the block, one attempt would be back after 3 minutes; with it, none for an hour.
    clock.advance(Duration::from_secs(3599));
    assert!(!l.check(id, "ip", 1).unwrap().allowed);
    // Denials during a block do not extend it.
    clock.advance(Duration::from_secs(1));
    assert_eq!(l.check(id, "ip", 1).unwrap().remaining(), 4);
    // reset unblocks at once.
    while l.check(id, "ip", 1).unwrap().allowed {}
    assert!(l.reset(id, "ip").unwrap());
    assert!(l.check(id, "ip", 1).unwrap().allowed);
}

#[test]
fn penalize_counts_failures_and_refund_gives_back() {
    let p = Policy::fixed_window("login", "3/15m".parse().unwrap()).block(Duration::from_secs(900));
    let (l, id, _clock) = one(p, 64);
    // Successful logins are only peeked; failures are penalized.
    assert!(l.peek(id, "u", 1).unwrap().allowed);
    assert_eq!(l.penalize(id, "u", 1).unwrap().remaining(), 1);
    let d = l.penalize(id, "u", 1).unwrap();
    assert!(d.allowed);
    // The third failure exhausts the key: it is blocked.
    let d = l.penalize(id, "u", 1).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after(), Duration::from_secs(900));

    let api = Policy::gcra("api", Quota::per_minute(2).unwrap());
    let (l, id, _clock) = one(api, 64);
    assert!(l.check(id, "k", 1).unwrap().allowed);
    assert!(l.check(id, "k", 1).unwrap().allowed);
    assert!(!l.check(id, "k", 1).unwrap().allowed);
    // The backend failed: give one back.
    assert_eq!(l.refund(id, "k", 1).unwrap().remaining(), 0);
    assert!(l.check(id, "k", 1).unwrap().allowed);
    // Refunds never make a key fresher than fresh.
    l.refund(id, "other", 5).unwrap();
    assert_eq!(l.peek(id, "other", 1).unwrap().remaining(), 1);
}

#[test]
fn errors_are_clear() {
    let (l, id, _) = one(Policy::gcra("api", Quota::per_second(5).unwrap()), 64);
    let e = l.check(id, "k", 6).unwrap_err().to_string();
    assert_eq!(e, "cost 6 exceeds what policy \"api\" allows at once (5)");
    let e = l.acquire(id, "k", 1).unwrap_err().to_string();
    assert!(e.contains("not a concurrency limit"), "{e}");
    assert!(l
        .check_named("nope", "k", 1)
        .unwrap_err()
        .to_string()
        .contains("no policy named \"nope\""));
    let e = Limiter::builder()
        .policy(Policy::gcra("a b", Quota::per_second(1).unwrap()))
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("invalid policy name \"a b\""), "{e}");
    let e = Limiter::builder()
        .policy(Policy::sliding_window("s", "5/500ms".parse().unwrap()))
        .build()
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "policy \"s\": sliding_window needs a window of at least 1s, got 500ms"
    );
    let e = Limiter::builder()
        .policy(Policy::gcra("g", Quota::per_second(1).unwrap()))
        .capacity(1)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("capacity must be between 4"), "{e}");
}

#[test]
fn headers_in_both_styles() {
    let clock = ManualClock::new(T0);
    let l = Limiter::builder()
        .policy(Policy::gcra("api", "100/h".parse().unwrap()))
        .policy(Policy::fixed_window("burst", "2/s".parse().unwrap()))
        .clock(clock)
        .capacity(64)
        .build()
        .unwrap();
    let api = l.policy_id("api").unwrap();
    let burst = l.policy_id("burst").unwrap();
    let ds = [
        l.check(api, "k", 1).unwrap(),
        l.check(burst, "k", 1).unwrap(),
    ];
    let h = l.headers(HeaderStyle::Both, &ds);
    let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
    // The most restrictive policy speaks for the legacy headers.
    assert_eq!(get("X-RateLimit-Limit"), Some("2"));
    assert_eq!(get("X-RateLimit-Remaining"), Some("1"));
    assert_eq!(get("X-RateLimit-Reset"), Some("1700000001"));
    assert_eq!(
        get("RateLimit-Policy"),
        Some("\"api\";q=100;w=3600, \"burst\";q=2;w=1")
    );
    assert_eq!(
        get("RateLimit"),
        Some("\"api\";r=99;t=36, \"burst\";r=1;t=1")
    );
    assert_eq!(get("Retry-After"), None);
    let _ = l.check(burst, "k", 1).unwrap();
    let denied = l.check(burst, "k", 1).unwrap();
    let h = l.headers(HeaderStyle::Ietf, &[denied]);
    assert_eq!(h[1], ("RateLimit", "\"burst\";r=0;t=1".to_string()));
    assert_eq!(h[2], ("Retry-After", "1".to_string()));
}
