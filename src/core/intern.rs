//! Configured texts and rules as `&'static` references (policy names, route texts, header
//! values; each policy's algorithm and parameters), so that an outcome or a decision holds them
//! without a copy or a reference count touched per decision (an atomic on a shared line, paid by
//! every thread). Each distinct value is kept once for the life of the process: the memory is
//! bounded by the distinct texts and rules a process ever configures, across reloads.

use std::collections::{BTreeSet, HashSet};
use std::sync::LazyLock;

use parking_lot::Mutex;

use crate::limit::algo::Rule;

static TEXTS: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
static RULES: LazyLock<Mutex<HashSet<&'static Rule>>> = LazyLock::new(Default::default);

/// The one `&'static` copy of `text`.
pub(crate) fn intern(text: &str) -> &'static str {
    let mut texts = TEXTS.lock();
    if let Some(kept) = texts.get(text) {
        return kept;
    }
    let kept: &'static str = Box::leak(text.to_owned().into_boxed_str());
    texts.insert(kept);
    kept
}

/// The one `&'static` copy of `rule`.
pub(crate) fn intern_rule(rule: &Rule) -> &'static Rule {
    let mut rules = RULES.lock();
    if let Some(kept) = rules.get(rule) {
        return kept;
    }
    let kept: &'static Rule = Box::leak(Box::new(*rule));
    rules.insert(kept);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_distinct_text() {
        let a = intern("login-policy-for-intern-test");
        let b = intern(&String::from("login-policy-for-intern-test"));
        assert!(std::ptr::eq(a, b));
        assert_eq!(a, "login-policy-for-intern-test");
        assert!(!std::ptr::eq(a, intern("api-policy-for-intern-test")));
    }

    #[test]
    fn one_copy_per_distinct_rule() {
        let rule = |count| {
            let q = crate::limit::quota::Quota::per_second(count).unwrap();
            crate::limit::policy::Policy::gcra("r", q).rule().unwrap()
        };
        let a = intern_rule(&rule(7_654_321));
        assert!(std::ptr::eq(a, intern_rule(&rule(7_654_321))));
        assert_eq!(*a, rule(7_654_321));
        assert!(!std::ptr::eq(a, intern_rule(&rule(7_654_322))));
    }
}
