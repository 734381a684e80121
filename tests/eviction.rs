//! A full table never frees a limited or blocked key for a key a request could still pass: a
//! flood of one-request keys, of any size, leaves every denied key denied until its own retry
//! time, for every algorithm.

use std::time::Duration;

use portcullis::{Limiter, ManualClock, Policy, PolicyId, Quota};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000_000_000_000;

fn policies() -> Vec<Policy> {
    let q = || Quota::per_minute(5).unwrap();
    vec![
        Policy::gcra("gcra", q()),
        Policy::fixed_window("fixed", q()),
        Policy::sliding_window("sliding", q()),
        Policy::leaky_bucket("leaky", q()),
        Policy::concurrency("leases", 5, Duration::from_secs(60)).unwrap(),
        Policy::fixed_window("login", q()).block(Duration::from_secs(900)),
    ]
}

/// Drives `key` to a denial; returns whether it got there.
fn exhaust(l: &Limiter, id: PolicyId, key: &str) -> bool {
    for _ in 0..100 {
        let allowed = match l.check(id, key, 1) {
            Ok(d) => d.allowed,
            // Concurrency: hold leases until refused.
            Err(_) => {
                // Held, never released: the lease keeps its slot in use.
                let (d, _lease) = l.acquire(id, key, 1).unwrap();
                d.allowed
            }
        };
        if !allowed {
            return true;
        }
    }
    false
}

fn denied(l: &Limiter, id: PolicyId, key: &str) -> bool {
    !l.peek(id, key, 1).unwrap().allowed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_flood_of_one_request_keys_frees_no_denied_key(flood in 0usize..3000, seed in any::<u64>()) {
        for policy in policies() {
            let name = policy.name().to_owned();
            let l = Limiter::builder()
                .policy(policy)
                .capacity(32)
                .clock(ManualClock::new(T0))
                .build()
                .unwrap();
            let id = l.policy_id(&name).unwrap();
            let victims: Vec<String> = (0..3).map(|i| format!("victim-{seed}-{i}")).collect();
            for v in &victims {
                prop_assert!(exhaust(&l, id, v), "{name}: {v} never denied");
            }
            for i in 0..flood {
                let key = format!("flood-{seed}-{i}");
                match l.check(id, &key, 1) {
                    Ok(_) => {}
                    Err(_) => {
                        let (_, _lease) = l.acquire(id, &key, 1).unwrap();
                    }
                }
            }
            for v in &victims {
                prop_assert!(denied(&l, id, v), "{name}: {v} freed by a flood of {flood} keys");
            }
            let stats = &l.stats()[0];
            prop_assert_eq!(stats.limited_evictions, 0, "{}", name);
        }
    }
}
