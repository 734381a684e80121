//! A store that keeps pages in memory: nothing survives the process, but successive limiters
//! of one process can hand state over through it (and tests can restart a limiter in-process).

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

use super::{PolicyChanges, Saved, Store, StoreError};

#[derive(Default)]
struct PolicyData {
    signature: Option<String>,
    pages: BTreeMap<u64, Vec<(u64, u64)>>,
    names: HashMap<u64, Vec<u8>>,
}

/// An in-memory [`Store`].
#[derive(Default)]
pub struct MemoryStore {
    hash_key: Mutex<Option<[u8; 16]>>,
    policies: Mutex<HashMap<String, PolicyData>>,
    records: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn hash_key(&self) -> Result<Option<[u8; 16]>, StoreError> {
        Ok(*self.hash_key.lock())
    }

    fn set_hash_key(&self, key: [u8; 16]) -> Result<(), StoreError> {
        *self.hash_key.lock() = Some(key);
        Ok(())
    }

    fn load(&self, policy: &str, signature: &str) -> Result<Saved, StoreError> {
        let mut all = self.policies.lock();
        let p = all.entry(policy.to_string()).or_default();
        if p.signature.as_deref() != Some(signature) {
            *p = PolicyData {
                signature: Some(signature.to_string()),
                ..PolicyData::default()
            };
        }
        Ok(Saved {
            entries: p.pages.values().flatten().copied().collect(),
            names: p.names.iter().map(|(k, v)| (*k, v.clone())).collect(),
        })
    }

    fn write(&self, changes: &[PolicyChanges]) -> Result<(), StoreError> {
        let mut all = self.policies.lock();
        for c in changes {
            let p = all.entry(c.policy.clone()).or_default();
            if c.replace_all {
                p.pages.clear();
                p.names.clear();
            }
            for (page, entries) in &c.pages {
                if entries.is_empty() {
                    p.pages.remove(page);
                } else {
                    p.pages.insert(*page, entries.clone());
                }
            }
            for fp in &c.forget {
                p.names.remove(fp);
            }
            for (fp, name) in &c.names {
                p.names.insert(*fp, name.clone());
            }
        }
        Ok(())
    }

    fn sync(&self, _power_loss: bool) -> Result<(), StoreError> {
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    fn location(&self) -> String {
        "memory".into()
    }

    fn record(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.records.lock().get(name).cloned())
    }

    fn set_record(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.records.lock().insert(name.to_owned(), value.to_vec());
        Ok(())
    }
}
