//! A fixed-capacity, lock-free table of keyed cells.
//!
//! Each slot is one 128-bit word: a 64-bit key fingerprint beside a 64-bit state, swapped as one
//! so an update can never land on a slot that changed owner in between. Slots sit four to a
//! 64-byte bucket; a key may live in one of two buckets chosen by its hash.
//!
//! * A known key is read and updated with one CAS loop on its slot: no lock.
//! * A new key is placed under a claim flag striped by its first bucket, held for the few
//!   instructions that re-check its absence and swap it in, so two threads can never place the
//!   same key twice (which would double its quota). Keys already placed never touch the flag.
//! * Placement prefers an empty slot, then one whose state has fully recovered (it holds no
//!   information), and otherwise evicts the candidate with the least debt, counting it. The table
//!   never grows and never blocks a known key.
//!
//! The table knows nothing of algorithms beyond the [`Reclaim`] questions.

use crossbeam_utils::CachePadded;
use std::hash::{BuildHasher, Hasher};

use crate::clock::Nanos;
use crate::sync::{spin_hint, yield_now, AtomicSlot, AtomicU32, AtomicU64, Ordering};

const SLOTS_PER_BUCKET: usize = 4;
#[cfg(not(loom))]
const CLAIM_STRIPES: usize = 256;
#[cfg(loom)]
const CLAIM_STRIPES: usize = 2;

/// What the table asks of the states it holds when it needs room.
pub trait Reclaim {
    /// The state carries no information at `now`: its slot may be reused.
    fn recovered(&self, state: u64, now: Nanos) -> bool;
    /// How much the key still owes; the least indebted is evicted first.
    fn debt(&self, state: u64, now: Nanos) -> u64;
}

/// A key reduced to its keyed hash: the fingerprint and its two candidate buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// Never zero (zero marks an empty slot).
    pub fp: u64,
    b1: u32,
    b2: u32,
}

#[repr(align(64))]
struct Bucket([AtomicSlot; SLOTS_PER_BUCKET]);

#[inline]
fn pack(fp: u64, state: u64) -> u128 {
    (u128::from(fp) << 64) | u128::from(state)
}

#[inline]
fn owner(word: u128) -> u64 {
    (word >> 64) as u64
}

#[inline]
fn state_of(word: u128) -> u64 {
    word as u64
}

/// The keyed cells of one policy.
pub struct Table {
    buckets: Box<[Bucket]>,
    mask: usize,
    claims: Box<[CachePadded<AtomicU32>]>,
    hasher: foldhash::quality::FixedState,
    hash_salt: u64,
    evictions: AtomicU64,
    /// One bit per page of slots written since the last [`Table::take_dirty_pages`]; present
    /// only when a store persists the table.
    dirty: Option<Box<[AtomicU64]>>,
}

/// Slots per persisted page: 16 buckets, 1 KiB of slots, written to a store as one value.
pub const PAGE_SLOTS: usize = 64;

/// What [`Table::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Updated<R> {
    /// What the step returned for the state that was kept.
    pub value: R,
    /// A new state was stored.
    pub wrote: bool,
    /// The key was not in the table and has been placed.
    pub placed: bool,
}

impl Table {
    /// A table of at least `capacity` slots (rounded up to a power of two buckets of four),
    /// hashing keys with a seeded hash keyed by the 128-bit secret `hash_key`.
    pub fn new(capacity: usize, hash_key: [u8; 16]) -> Self {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&hash_key[..8]);
        k1.copy_from_slice(&hash_key[8..]);
        let buckets = capacity
            .div_ceil(SLOTS_PER_BUCKET)
            .max(1)
            .next_power_of_two();
        let buckets: Box<[Bucket]> = (0..buckets)
            .map(|_| Bucket(std::array::from_fn(|_| AtomicSlot::new(0))))
            .collect();
        let claims = (0..CLAIM_STRIPES)
            .map(|_| CachePadded::new(AtomicU32::new(0)))
            .collect();
        Self {
            mask: buckets.len() - 1,
            buckets,
            claims,
            hasher: foldhash::quality::FixedState::with_seed(u64::from_le_bytes(k0)),
            hash_salt: u64::from_le_bytes(k1),
            evictions: AtomicU64::new(0),
            dirty: None,
        }
    }

    /// A table that remembers which pages changed, for a store to write behind.
    pub fn with_dirty_tracking(capacity: usize, hash_key: [u8; 16]) -> Self {
        let mut t = Self::new(capacity, hash_key);
        let words = t.pages().div_ceil(64);
        t.dirty = Some((0..words).map(|_| AtomicU64::new(0)).collect());
        t
    }

    /// Pages of [`PAGE_SLOTS`] slots.
    pub fn pages(&self) -> usize {
        self.capacity().div_ceil(PAGE_SLOTS)
    }

    #[inline]
    fn mark_dirty(&self, slot: usize) {
        if let Some(bits) = &self.dirty {
            let page = slot / PAGE_SLOTS;
            let word = &bits[page / 64];
            let bit = 1u64 << (page % 64);
            // Most writes land on a page already marked: a plain load avoids a locked op.
            if word.load(Ordering::Relaxed) & bit == 0 {
                word.fetch_or(bit, Ordering::Release);
            }
        }
    }

    /// The pages written since the last call, clearing their marks.
    pub fn take_dirty_pages(&self) -> Vec<usize> {
        let mut pages = Vec::new();
        if let Some(bits) = &self.dirty {
            for (w, word) in bits.iter().enumerate() {
                let mut v = word.swap(0, Ordering::AcqRel);
                while v != 0 {
                    let b = v.trailing_zeros() as usize;
                    pages.push(w * 64 + b);
                    v &= v - 1;
                }
            }
        }
        pages
    }

    /// Marks every page dirty (after a restore, so the next write covers the whole table).
    pub fn mark_all_dirty(&self) {
        for slot in (0..self.capacity()).step_by(PAGE_SLOTS) {
            self.mark_dirty(slot);
        }
    }

    /// The occupied slots of one page, as (fingerprint, state).
    pub fn page_entries(&self, page: usize, out: &mut Vec<(u64, u64)>) {
        let first = page * PAGE_SLOTS;
        let last = (first + PAGE_SLOTS).min(self.capacity());
        for i in first..last {
            let w = self.slot(i).load();
            if owner(w) != 0 {
                out.push((owner(w), state_of(w)));
            }
        }
    }

    #[inline]
    fn slot(&self, i: usize) -> &AtomicSlot {
        &self.buckets[i / SLOTS_PER_BUCKET].0[i % SLOTS_PER_BUCKET]
    }

    /// Slots in the table.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * SLOTS_PER_BUCKET
    }

    /// Bytes the table occupies, fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.buckets) + std::mem::size_of_val(&*self.claims)
    }

    /// Keys evicted while live because every candidate slot was taken.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Reduces a key to its fingerprint. One 64-bit keyed hash gives both the fingerprint and
    /// the buckets: keys that share a fingerprint share buckets, so the fingerprint keeps its
    /// full 64 bits of distinction.
    #[inline]
    pub fn fingerprint(&self, key: &[u8]) -> Fingerprint {
        let mut h = self.hasher.build_hasher();
        h.write_u64(self.hash_salt);
        h.write(key);
        self.fingerprint_of(h.finish())
    }

    /// The fingerprint (and buckets) of a raw 64-bit fingerprint, as a store saved it.
    #[inline]
    pub fn fingerprint_of(&self, hash: u64) -> Fingerprint {
        let fp = if hash == 0 { 1 } else { hash };
        // The mask keeps only bits below the bucket count, which fits in u32 (at most 2^28
        // buckets for the largest table accepted).
        let mask = self.mask as u64;
        let b1 = fp & mask;
        let mut off = (fp >> 32) & mask;
        if off == 0 {
            off = 1 & mask;
        }
        Fingerprint {
            fp,
            b1: b1 as u32,
            b2: (b1 ^ off) as u32,
        }
    }

    #[inline]
    fn candidates(&self, f: &Fingerprint) -> impl Iterator<Item = (usize, &AtomicSlot)> {
        let i1 = f.b1 as usize & self.mask;
        let i2 = f.b2 as usize & self.mask;
        let b1 = &self.buckets[i1].0;
        let b2 = &self.buckets[i2].0;
        let second = if i1 == i2 { &b2[..0] } else { &b2[..] };
        let at = |b: usize| move |(j, s)| (b * SLOTS_PER_BUCKET + j, s);
        b1.iter()
            .enumerate()
            .map(at(i1))
            .chain(second.iter().enumerate().map(at(i2)))
    }

    #[inline]
    fn find(&self, f: &Fingerprint) -> Option<(usize, &AtomicSlot, u128)> {
        self.candidates(f).find_map(|(i, slot)| {
            let w = slot.load();
            (owner(w) == f.fp).then_some((i, slot, w))
        })
    }

    /// The state of a key, if it has a slot.
    pub fn read(&self, f: &Fingerprint) -> Option<u64> {
        self.find(f).map(|(_, _, w)| state_of(w))
    }

    /// Applies `step` to the key's state (0 for a key not in the table) until its result is
    /// stored atomically, and returns what `step` returned with it.
    ///
    /// `step` may run several times under contention and must be pure. A result equal to the
    /// state it was given is not written, and a key not in the table is only placed when the
    /// result still carries information.
    #[inline]
    pub fn update<R>(
        &self,
        f: &Fingerprint,
        now: Nanos,
        reclaim: &impl Reclaim,
        mut step: impl FnMut(u64) -> (u64, R),
    ) -> Updated<R> {
        loop {
            if let Some((i, slot, mut word)) = self.find(f) {
                loop {
                    let (new, value) = step(state_of(word));
                    if new == state_of(word) {
                        return Updated {
                            value,
                            wrote: false,
                            placed: false,
                        };
                    }
                    match slot.compare_exchange(word, pack(f.fp, new)) {
                        Ok(_) => {
                            self.mark_dirty(i);
                            return Updated {
                                value,
                                wrote: true,
                                placed: false,
                            };
                        }
                        Err(actual) if owner(actual) == f.fp => word = actual,
                        // Evicted or reclaimed under us: look again.
                        Err(_) => break,
                    }
                }
                continue;
            }
            let (new, value) = step(0);
            if new == 0 || reclaim.recovered(new, now) {
                return Updated {
                    value,
                    wrote: false,
                    placed: false,
                };
            }
            match self.place(f, new, now, reclaim) {
                Placed::Done => {
                    return Updated {
                        value,
                        wrote: true,
                        placed: true,
                    }
                }
                // Another thread placed this key first: decide again on its state.
                Placed::Raced => continue,
            }
        }
    }

    /// Puts back a saved state (when a store is opened). A state that has recovered is
    /// dropped. Returns whether the key was placed.
    pub fn restore(&self, fp: u64, state: u64, now: Nanos, reclaim: &impl Reclaim) -> bool {
        if fp == 0 || state == 0 || reclaim.recovered(state, now) {
            return false;
        }
        let f = self.fingerprint_of(fp);
        self.update(&f, now, reclaim, |_| (state, ())).wrote
    }

    fn place(&self, f: &Fingerprint, state: u64, now: Nanos, reclaim: &impl Reclaim) -> Placed {
        let _claim = self.claim(f);
        if self.find(f).is_some() {
            return Placed::Raced;
        }
        loop {
            let (i, slot, old, live) = self.victim(f, now, reclaim);
            if slot.compare_exchange(old, pack(f.fp, state)).is_ok() {
                self.mark_dirty(i);
                if live {
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
                return Placed::Done;
            }
        }
    }

    /// The slot a new key takes: empty, else recovered, else least indebted.
    fn victim(
        &self,
        f: &Fingerprint,
        now: Nanos,
        reclaim: &impl Reclaim,
    ) -> (usize, &AtomicSlot, u128, bool) {
        let i = (f.b1 as usize & self.mask) * SLOTS_PER_BUCKET;
        let first = self.slot(i);
        let mut best = (i, first, first.load(), u64::MAX);
        for (i, slot) in self.candidates(f) {
            let w = slot.load();
            if owner(w) == 0 || reclaim.recovered(state_of(w), now) {
                return (i, slot, w, false);
            }
            let debt = reclaim.debt(state_of(w), now);
            if debt < best.3 {
                best = (i, slot, w, debt);
            }
        }
        (best.0, best.1, best.2, true)
    }

    fn claim(&self, f: &Fingerprint) -> ClaimGuard<'_> {
        let flag = &self.claims[f.b1 as usize % CLAIM_STRIPES];
        let mut spins = 0u32;
        while flag
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                spin_hint();
            } else {
                yield_now();
            }
        }
        ClaimGuard(flag)
    }

    /// Forgets a key: its next request starts fresh.
    pub fn remove(&self, f: &Fingerprint) -> bool {
        while let Some((i, slot, w)) = self.find(f) {
            if slot.compare_exchange(w, 0).is_ok() {
                self.mark_dirty(i);
                return true;
            }
        }
        false
    }

    /// Calls `visit(fingerprint, state)` for every occupied slot.
    pub fn for_each(&self, mut visit: impl FnMut(u64, u64)) {
        for b in self.buckets.iter() {
            for slot in &b.0 {
                let w = slot.load();
                if owner(w) != 0 {
                    visit(owner(w), state_of(w));
                }
            }
        }
    }

    /// Keys whose state still carries information at `now`.
    pub fn live(&self, now: Nanos, reclaim: &impl Reclaim) -> usize {
        let mut n = 0;
        self.for_each(|_, s| {
            if !reclaim.recovered(s, now) {
                n += 1;
            }
        });
        n
    }
}

enum Placed {
    Done,
    Raced,
}

struct ClaimGuard<'a>(&'a AtomicU32);

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}
