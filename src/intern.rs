//! Configured texts as `&'static str` (policy names, route texts, header values), so that an
//! outcome holds them without a copy or a reference count touched per decision (an atomic on a
//! shared line, paid by every thread). Each distinct text is kept once for the life of the process: the memory is
//! bounded by the distinct names a process ever configures, across reloads.

use std::collections::BTreeSet;

use parking_lot::Mutex;

static TEXTS: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

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
}
