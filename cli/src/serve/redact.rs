//! Principals (API keys, user ids) as the admin API shows them: never in clear.

use std::hash::{BuildHasher, RandomState};

use crate::args::Redaction;

/// Replaces principals by a short keyed hash (SipHash under a key drawn at start, so the
/// same principal reads the same while the server runs and cannot be guessed from it), or by
/// nothing.
pub struct Redactor {
    mode: Redaction,
    key: RandomState,
}

impl Redactor {
    pub fn new(mode: Redaction) -> Self {
        Self {
            mode,
            key: RandomState::new(),
        }
    }

    /// A principal's stand-in: `#3f9a1c2b7d4e` or `<redacted>`.
    pub fn principal(&self, principal: &str) -> String {
        match self.mode {
            Redaction::Hash => format!("#{:012x}", self.key.hash_one(principal) >> 16),
            Redaction::Redact => "<redacted>".to_owned(),
        }
    }

    /// A key as `inspect` lists it (`principal:alice`, `ip:...`), its principal replaced.
    pub fn key(&self, key: &str) -> String {
        match key.strip_prefix("principal:") {
            Some(p) => format!("principal:{}", self.principal(p)),
            None => key.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_never_show_and_stay_stable() {
        let r = Redactor::new(Redaction::Hash);
        let k = r.key("principal:alice-secret-key");
        assert!(!k.contains("alice"), "{k}");
        assert_eq!(k, r.key("principal:alice-secret-key"));
        assert_ne!(k, r.key("principal:bob"));
        assert_eq!(r.key("ip:203.0.113.9"), "ip:203.0.113.9");
        let r = Redactor::new(Redaction::Redact);
        assert_eq!(r.key("principal:alice"), "principal:<redacted>");
    }
}
