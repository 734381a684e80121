//! Allowed requests per (policy, key), in fixed memory: the library's Space-Saving sketch,
//! `CAPACITY` counters behind a lock (the demo's handler, not the gate's check path).

use std::sync::Mutex;

use portcullis::{Counted, TopK};

const CAPACITY: usize = 256;

pub struct TopKeys(Mutex<TopK<(String, String)>>);

impl Default for TopKeys {
    fn default() -> Self {
        Self(Mutex::new(TopK::new(CAPACITY)))
    }
}

impl TopKeys {
    pub fn add(&self, policy: &str, key: &str) {
        let mut top = self.0.lock().unwrap_or_else(|e| e.into_inner());
        top.add(&(policy.to_owned(), key.to_owned()));
    }

    /// The counted keys, heaviest first: ((policy, key), allowed, at most `error` too many).
    pub fn list(&self) -> Vec<Counted<(String, String)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).top()
    }
}
