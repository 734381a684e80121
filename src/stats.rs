//! Counters that many threads bump without sharing a cache line.

use crossbeam_utils::CachePadded;

use std::sync::atomic::Ordering;

use crate::sync::{thread_index, StatAtomic};

const SHARDS: usize = 64;

/// A counter spread over one cache line per thread: each of the first 64 threads alive at once
/// owns a shard (by [`thread_index`], which exited threads give back), which only it writes, so
/// it adds with a plain load and store instead of a locked read-modify-write; threads beyond
/// 64 share one more shard and add atomically. Reads sum every shard.
pub(crate) struct StripedCounter(Box<[CachePadded<StatAtomic>]>);

impl StripedCounter {
    pub(crate) fn new() -> Self {
        Self(
            (0..=SHARDS)
                .map(|_| CachePadded::new(StatAtomic::new(0)))
                .collect(),
        )
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        let i = thread_index();
        match self.0.get(i) {
            // Single writer: shard `i < SHARDS` has one owner at a time, and an index changes
            // owner only through the lock in `thread_index`.
            Some(own) if i < SHARDS => {
                own.store(own.load(Ordering::Relaxed) + n, Ordering::Relaxed)
            }
            _ => {
                self.0[SHARDS].fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[test]
    fn counts_exactly_across_more_threads_than_shards() {
        let counter = StripedCounter::new();
        let threads = SHARDS + 16;
        let start = Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..1000 {
                        counter.add(1);
                    }
                });
            }
        });
        assert_eq!(counter.get(), (threads * 1000) as u64);
    }

    /// Threads started one after another (a thread per job) keep reusing a low index, so they
    /// keep owning shards instead of all falling into the shared one.
    #[test]
    fn sequential_threads_reuse_owned_shards() {
        let counter = StripedCounter::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..(SHARDS * 3) {
            let i = std::thread::scope(|s| {
                s.spawn(|| {
                    counter.add(1);
                    thread_index()
                })
                .join()
                .unwrap()
            });
            seen.insert(i);
        }
        // Other tests may hold indices meanwhile, so not always the same one, but a few.
        assert!(seen.len() < SHARDS / 4, "{} distinct indices", seen.len());
        assert_eq!(counter.get(), (SHARDS * 3) as u64);
    }
}

/// A snapshot of one policy's counters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyStats {
    /// The policy.
    pub name: String,
    /// Requests allowed (including shaped ones).
    pub allowed: u64,
    /// Requests denied.
    pub denied: u64,
    /// Requests allowed with a delay.
    pub delayed: u64,
    /// Keys whose state still carries information.
    pub live_keys: usize,
    /// Live keys pushed out because the table was full.
    pub evictions: u64,
    /// Slots in the policy's table.
    pub capacity: usize,
    /// Bytes of the policy's table, fixed at construction.
    pub memory_bytes: usize,
}
