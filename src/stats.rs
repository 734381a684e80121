//! Counters that many threads bump without sharing a cache line.

use crossbeam_utils::CachePadded;

use std::sync::atomic::Ordering;

use crate::sync::{thread_index, StatAtomic};

const SHARDS: usize = 64;

/// A counter spread over one cache line per thread slot: thread `i` adds to shard `i mod 64`
/// (threads are numbered in creation order), so threads running at the same time rarely share
/// a line. Reads sum every shard.
pub(crate) struct StripedCounter(Box<[CachePadded<StatAtomic>]>);

impl StripedCounter {
    pub(crate) fn new() -> Self {
        Self(
            (0..SHARDS)
                .map(|_| CachePadded::new(StatAtomic::new(0)))
                .collect(),
        )
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0[thread_index() % SHARDS].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
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
