//! Every algorithm against a reference model written for clarity (tests/common/model.rs), over
//! random sequences of time steps, keys, costs and operations.

mod common;

use std::time::Duration;

use common::model::*;
use portcullis::{Policy, Quota};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn gcra_matches_model(
        (w, ops) in window().prop_flat_map(|w| (Just(w), ops(w))),
        count in 1u32..8, burst in 1u32..8, block in block(), start in start(),
    ) {
        let q = Quota::new(count, Duration::from_nanos(w)).unwrap().with_burst(burst).unwrap();
        let alg = Gcra { t: q.emission_interval_ns(), burst: u64::from(burst) };
        run(alg, Policy::gcra("p", q), block, start, &ops, None);
    }

    #[test]
    fn leaky_bucket_matches_model(
        (w, ops) in window().prop_flat_map(|w| (Just(w), ops(w))),
        count in 1u32..8, burst in 1u32..8, block in block(), start in start(),
    ) {
        let q = Quota::new(count, Duration::from_nanos(w)).unwrap().with_burst(burst).unwrap();
        let t = q.emission_interval_ns();
        let alg = Leaky { t, max_delay: t * u64::from(burst - 1) };
        run(alg, Policy::leaky_bucket("p", q), block, start, &ops, None);
    }

    #[test]
    fn fixed_window_matches_model(
        (w, ops) in window().prop_flat_map(|w| (Just(w), ops(w))),
        count in 1u32..8, block in block(), start in start(),
    ) {
        let q = Quota::new(count, Duration::from_nanos(w)).unwrap();
        let alg = Fixed { p: w, limit: u64::from(count) };
        run(alg, Policy::fixed_window("p", q), block, start, &ops, None);
    }

    #[test]
    fn sliding_window_matches_model(
        (w, ops) in window().prop_flat_map(|w| (Just(w), ops(w))),
        count in 1u32..8, block in block(), start in start(),
    ) {
        let q = Quota::new(count, Duration::from_nanos(w)).unwrap();
        let alg = Sliding { p: w, limit: u64::from(count) };
        run(alg, Policy::sliding_window("p", q), block, start, &ops, None);
    }
}
