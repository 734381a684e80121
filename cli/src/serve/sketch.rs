//! Allowed requests per (policy, key), in fixed memory: the space-saving sketch keeps the
//! `CAPACITY` heaviest keys exactly while there are fewer, and the heaviest ones with a bounded
//! overcount after (a newcomer takes the lightest entry's place and count).

use std::collections::HashMap;
use std::sync::Mutex;

const CAPACITY: usize = 256;

/// One counted key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Count {
    pub policy: String,
    pub key: String,
    /// At most `error` more than the key's true count.
    pub allowed: u64,
    pub error: u64,
}

#[derive(Default)]
pub struct TopKeys {
    entries: Mutex<HashMap<(String, String), (u64, u64)>>,
}

impl TopKeys {
    pub fn add(&self, policy: &str, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let id = (policy.to_owned(), key.to_owned());
        if let Some((n, _)) = entries.get_mut(&id) {
            *n += 1;
            return;
        }
        if entries.len() < CAPACITY {
            entries.insert(id, (1, 0));
            return;
        }
        let lightest = entries
            .iter()
            .min_by_key(|(_, (n, _))| *n)
            .map(|(k, (n, _))| (k.clone(), *n));
        if let Some((gone, n)) = lightest {
            entries.remove(&gone);
            entries.insert(id, (n + 1, n));
        }
    }

    /// The counted keys, heaviest first.
    pub fn list(&self) -> Vec<Count> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Count> = entries
            .iter()
            .map(|((policy, key), (allowed, error))| Count {
                policy: policy.clone(),
                key: key.clone(),
                allowed: *allowed,
                error: *error,
            })
            .collect();
        out.sort_by(|a, b| b.allowed.cmp(&a.allowed).then(a.key.cmp(&b.key)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_below_capacity_and_bounded_above() {
        let top = TopKeys::default();
        for _ in 0..1000 {
            top.add("p", "heavy");
        }
        for i in 0..10 * CAPACITY {
            top.add("p", &format!("k{i}"));
        }
        let list = top.list();
        assert_eq!(list.len(), CAPACITY);
        assert_eq!(list[0].key, "heavy");
        assert_eq!((list[0].allowed, list[0].error), (1000, 0));
        // Every listed count minus its error is a lower bound: the light keys were seen once.
        assert!(list.iter().all(|c| c.allowed - c.error <= 1000));
    }
}
