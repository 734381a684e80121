//! A fixed-capacity, lock-free table of keyed cells.
//!
//! Each slot is two 64-bit words in the same cache line: a tag (the key's fingerprint) and the
//! key's state, stored XOR-ed with a mix of the fingerprint. Slots sit four to a 64-byte bucket;
//! a key may live in one of two buckets chosen by its hash.
//!
//! * A known key is read with plain loads and updated with one 64-bit CAS loop on its state word:
//!   no lock, no 128-bit atomics.
//! * An owner change (placing a key over an empty, recovered or evicted slot; removing a key)
//!   first swaps the tag to a *lock tag*, then swaps the state word, then publishes the new tag
//!   by a CAS from its own lock tag.
//!   Readers check the tag again after loading the state, so they never take a word written for
//!   another owner. An updater that read the old owner's word before the change holds a value
//!   masked with the old owner's fingerprint mix; its CAS can only succeed on the new owner's
//!   word if the two masked values coincide in all 64 bits, which is as likely as two keys
//!   sharing a 64-bit fingerprint (the risk every fingerprint table already takes).
//! * A new key is placed under a claim flag striped by its first bucket, held for the few
//!   instructions that re-check its absence and swap it in, so two threads can never place the
//!   same key twice (which would double its quota). Keys already placed never touch the flag.
//! * The slots and claim flags may live in a file mapped by several processes (the shared
//!   store), and a process may die at any instruction. So claim flags and lock tags carry a
//!   deadline on the system-wide monotonic clock ([`LOCK_TIMEOUT_MS`] after they were taken,
//!   for sections a few hundred instructions long): past it, anyone may take them over by a CAS
//!   from the value it saw. A holder that was only paused finds its lock gone when it publishes
//!   (its CAS fails) and starts over; it never overwrites the new owner. The one case a
//!   takeover costs anything is a holder paused past the deadline with a claim but before its
//!   lock: the key may then be placed twice, and its next requests see one of the two states,
//!   which costs that key at most the quota of one request.
//! * Placement prefers an empty slot, then one whose state has fully recovered (it holds no
//!   information), and otherwise evicts the candidate with the least debt, counting it. The table
//!   never grows and never blocks a known key.
//!
//! The table knows nothing of algorithms beyond the [`Reclaim`] questions.

use crate::core::clock::Nanos;
use crate::core::keyhash;
use crate::core::stats::Striped;

/// Fields of `Table::placed`.
const PLACED: usize = 0;
const RESTORED: usize = 1;
use std::ptr::NonNull;

use crate::core::sync::{spin_hint, yield_now, AtomicU32, AtomicU64, Ordering};

const SLOTS_PER_BUCKET: usize = 4;
#[cfg(not(loom))]
const CLAIM_STRIPES: usize = 256;
#[cfg(loom)]
const CLAIM_STRIPES: usize = 2;

/// The bit every fingerprint has set. A tag is 0 (empty), a fingerprint (this bit set), or a
/// lock tag (this bit clear, bit 0 set): `1 | nonce << 1 | deadline << 32`, taken by the one
/// thread changing the slot's owner.
const FINGERPRINT_BIT: u64 = 1 << 63;

/// How long a claim flag or a lock tag protects its holder, in milliseconds of the system-wide
/// monotonic clock: after that, a process that died holding it no longer stops anyone.
pub const LOCK_TIMEOUT_MS: u32 = 50;

/// Deadlines are 31-bit millisecond counts (they wrap every 24.8 days).
const DEADLINE_MASK: u32 = (1 << 31) - 1;

#[inline]
fn is_fingerprint(tag: u64) -> bool {
    tag & FINGERPRINT_BIT != 0
}

#[inline]
fn is_lock(tag: u64) -> bool {
    tag != 0 && !is_fingerprint(tag)
}

/// The deadline of a lock tag or a claim word (both keep it in bits 32 to 62).
#[inline]
fn deadline_of(word: u64) -> u32 {
    (word >> 32) as u32 & DEADLINE_MASK
}

/// `deadline` is behind `now` (31-bit wrapping comparison).
#[inline]
fn passed(deadline: u32, now: u32) -> bool {
    let d = now.wrapping_sub(deadline) & DEADLINE_MASK;
    d != 0 && d < (1 << 30)
}

/// A number no other holder uses at the same time: a process-wide counter mixed with the
/// process id, so two processes sharing a table do not hand out the same lock tags.
fn nonce() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The counter is copied into a forked child: the process id tells the two apart.
    let pid = crate::core::fork::pid();
    (n ^ pid.rotate_left(16)).wrapping_mul(0x9e37_79b9) | 1
}

/// The clock deadlines are read from.
#[derive(Clone)]
pub enum LockClock {
    /// `CLOCK_MONOTONIC_COARSE`: the same in every process of the machine, a few nanoseconds
    /// a read, in steps of a few milliseconds (ample for a 50 ms deadline).
    Os,
    /// Milliseconds set by a test (a model of a process that never comes back).
    #[cfg_attr(not(loom), allow(dead_code))]
    Manual(std::sync::Arc<AtomicU32>),
}

impl LockClock {
    #[inline]
    fn now_ms(&self) -> u32 {
        match self {
            LockClock::Manual(t) => t.load(Ordering::Acquire) & DEADLINE_MASK,
            // Under loom, time stands still: a model explores takeovers with a manual clock.
            #[cfg(loom)]
            LockClock::Os => 0,
            #[cfg(not(loom))]
            LockClock::Os => {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the
                // kernel knows (Linux 2.6.32+); on failure `ts` stays zero, which only makes
                // deadlines later, never earlier.
                unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
                let ms = (ts.tv_sec as u64)
                    .wrapping_mul(1000)
                    .wrapping_add(ts.tv_nsec as u64 / 1_000_000);
                ms as u32 & DEADLINE_MASK
            }
        }
    }
}

/// What the table asks of the states it holds when it needs room.
pub trait Reclaim {
    /// The state carries no information at `now`: its slot may be reused.
    fn recovered(&self, state: u64, now: Nanos) -> bool;
    /// What forgetting the key would give back; the least valuable is evicted first. A debt
    /// of [`LIMITED`] or more says the key is being denied: evicting it is counted apart.
    fn debt(&self, state: u64, now: Nanos) -> u64;
}

/// Debts from here up belong to keys being denied (limited or blocked): a table evicts one
/// only when every candidate is such a key, and counts it (`Table::limited_evictions`).
pub const LIMITED: u64 = 1 << 61;

/// A key reduced to its keyed hash: the fingerprint and the mask of its state word. Its two
/// candidate buckets follow from the fingerprint and the table's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// Has its top bit set: never zero (an empty slot) nor a lock tag.
    pub fp: u64,
    mask: u64,
}

impl Fingerprint {
    /// A raw 64-bit hash made a fingerprint by setting its top bit: one OR keeps it off the two
    /// reserved tags, where moving those two values aside took two compares and branches on
    /// every check. The bit is above every bucket index (the second bucket reads bits 32 and
    /// up), and 63 bits of distinction remain.
    #[inline]
    fn from_hash(hash: u64) -> Self {
        let fp = hash | FINGERPRINT_BIT;
        Fingerprint { fp, mask: mix(fp) }
    }
}

/// The state-word mask of a fingerprint. Keys sharing a bucket share the low bits of their
/// fingerprints, so the high half is folded in before an odd multiply spreads every bit upwards:
/// two such keys still get masks that differ unpredictably across the word.
#[inline]
fn mix(fp: u64) -> u64 {
    (fp ^ (fp >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Four slots: their tags, then their state words, in one cache line. The layout is part of the
/// shared store's file format (`BUCKET_BYTES`).
#[repr(C, align(64))]
pub struct Bucket {
    tags: [AtomicU64; SLOTS_PER_BUCKET],
    words: [AtomicU64; SLOTS_PER_BUCKET],
}

/// One claim flag, alone in its cache line: 0 when free, else `nonce | deadline << 32`.
#[repr(C, align(64))]
pub struct Claim(AtomicU64);

/// Bytes of one bucket (four slots), as laid out in memory and in a shared file.
pub const BUCKET_BYTES: usize = std::mem::size_of::<Bucket>();
/// Bytes of one claim flag.
pub const CLAIM_BYTES: usize = std::mem::size_of::<Claim>();
/// Claim flags per table.
pub const CLAIMS: usize = CLAIM_STRIPES;

/// Where a table's slots and claim flags live.
enum Backing {
    /// Allocated by this process.
    Heap {
        _buckets: Box<[Bucket]>,
        _claims: Box<[Claim]>,
    },
    /// Memory someone else owns (a file mapped by several processes), kept alive by the owner.
    Borrowed(#[allow(dead_code)] Box<dyn Send + Sync>),
}

/// Memory a table can be laid over: `buckets` buckets then, separately, [`CLAIMS`] claim
/// flags, both zeroed when new or written only by tables (in any process) over the same memory.
pub struct Region {
    /// The first bucket.
    pub buckets: NonNull<Bucket>,
    /// Buckets: a power of two.
    pub bucket_count: usize,
    /// The first of [`CLAIMS`] claim flags.
    pub claims: NonNull<Claim>,
    /// Keeps the memory valid (e.g. the mapping).
    pub owner: Box<dyn Send + Sync>,
}

/// One slot: its index in the table and its two words.
#[derive(Clone, Copy)]
struct Slot<'a> {
    index: usize,
    tag: &'a AtomicU64,
    word: &'a AtomicU64,
}

impl Slot<'_> {
    /// The slot's owner and state, read consistently; `None` when empty or changing owner.
    #[inline]
    fn snapshot(&self) -> Option<(u64, u64)> {
        let tag = self.tag.load(Ordering::Acquire);
        if !is_fingerprint(tag) {
            return None;
        }
        let word = self.word.load(Ordering::Acquire);
        // The owner change stores a lock tag before it swaps the word: a word written for another
        // owner is always followed by a tag that differs from the one read first.
        (self.tag.load(Ordering::Relaxed) == tag).then(|| (tag, word ^ mix(tag)))
    }
}

/// The keyed cells of one policy.
pub struct Table {
    /// `mask + 1` buckets, valid while `_backing` lives.
    buckets: NonNull<Bucket>,
    mask: usize,
    /// [`CLAIMS`] claim flags, valid while `_backing` lives.
    claims: NonNull<Claim>,
    _backing: Backing,
    lock_clock: LockClock,
    /// The key hash's 128-bit secret.
    k0: u64,
    k1: u64,
    /// The empty key's fingerprint, hashed once: an unkeyed limit checks it on every request.
    empty: Fingerprint,
    evictions: AtomicU64,
    /// Evictions of keys that were being denied: the table is too small for its traffic.
    limited_evictions: AtomicU64,
    /// New keys placed, and of those the keys put back from a store at open (not new).
    /// Striped: a flood of new keys places from every thread at once. One field, so the
    /// table's hot fields keep their places.
    placed: Striped<2>,
    /// One bit per page of slots written since the last [`Table::take_dirty_pages`]; present
    /// only when a store persists the table.
    dirty: Option<Box<[AtomicU64]>>,
}

// SAFETY: the pointers refer to memory owned by `_backing` (which is `Send + Sync`) and only
// ever read or written through atomics, so sharing or moving the table across threads is as
// sound as for the boxed slices it replaces.
unsafe impl Send for Table {}
// SAFETY: as above.
unsafe impl Sync for Table {}

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
    ///
    /// # Panics
    ///
    /// When the memory cannot be had; see [`Table::try_new`].
    #[cfg(any(test, loom))]
    pub fn new(capacity: usize, hash_key: [u8; 16]) -> Self {
        match Self::try_new(capacity, hash_key) {
            Ok(t) => t,
            Err(bytes) => panic!("cannot allocate a table of {bytes} bytes"),
        }
    }

    /// [`Table::new`], or the bytes it needed when the allocator refused them. The buckets are
    /// allocated zeroed (an empty slot is all zeros), so the operating system maps their pages
    /// as they are first written, not at once.
    pub fn try_new(capacity: usize, hash_key: [u8; 16]) -> Result<Self, usize> {
        let n = Self::bucket_count(capacity);
        let buckets = Self::zeroed_buckets(n).ok_or(n.saturating_mul(BUCKET_BYTES))?;
        let claims: Box<[Claim]> = (0..CLAIM_STRIPES)
            .map(|_| Claim(AtomicU64::new(0)))
            .collect();
        // The boxes' contents never move: pointers to them stay valid while `Backing` holds them.
        let bucket_ptr = NonNull::from(&buckets[0]);
        let claim_ptr = NonNull::from(&claims[0]);
        let mask = buckets.len() - 1;
        let backing = Backing::Heap {
            _buckets: buckets,
            _claims: claims,
        };
        Ok(Self::over(bucket_ptr, mask, claim_ptr, backing, hash_key))
    }

    /// `n` empty buckets, or `None` when the allocator refuses.
    #[cfg(not(loom))]
    fn zeroed_buckets(n: usize) -> Option<Box<[Bucket]>> {
        let layout = std::alloc::Layout::array::<Bucket>(n).ok()?;
        // SAFETY: the layout has a non-zero size (n >= 1, buckets are 64 bytes); a bucket of
        // zeros is a valid value (atomics of 0: four empty slots); the pointer comes from the
        // global allocator with the layout of `[Bucket; n]`, as `Box<[Bucket]>` frees it.
        unsafe {
            let ptr = std::alloc::alloc_zeroed(layout).cast::<Bucket>();
            if ptr.is_null() {
                return None;
            }
            Some(Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, n)))
        }
    }

    /// Loom's atomics are not plain words: build them one by one.
    #[cfg(loom)]
    fn zeroed_buckets(n: usize) -> Option<Box<[Bucket]>> {
        Some(
            (0..n)
                .map(|_| Bucket {
                    tags: std::array::from_fn(|_| AtomicU64::new(0)),
                    words: std::array::from_fn(|_| AtomicU64::new(0)),
                })
                .collect(),
        )
    }

    /// Bytes a table of `capacity` slots takes: its buckets and claim flags.
    pub fn bytes_for(capacity: usize) -> usize {
        Self::bucket_count(capacity)
            .saturating_mul(BUCKET_BYTES)
            .saturating_add(CLAIM_STRIPES * CLAIM_BYTES)
    }

    /// Buckets of a table of at least `capacity` slots: a power of two.
    pub fn bucket_count(capacity: usize) -> usize {
        capacity
            .div_ceil(SLOTS_PER_BUCKET)
            .max(1)
            .next_power_of_two()
    }

    /// A table over memory the caller provides (a file mapped by several processes): every
    /// table over the same memory, in any process, shares the same keys and states.
    ///
    /// # Safety
    ///
    /// `region.buckets` points to `region.bucket_count` (a power of two) buckets and
    /// `region.claims` to [`CLAIMS`] claim flags, both 64-byte aligned, readable and writable
    /// while `region.owner` lives, and holding only zeros or what tables over the same memory
    /// with the same `hash_key` wrote there; nothing else writes to that memory.
    pub unsafe fn over_region(region: Region, hash_key: [u8; 16]) -> Self {
        let mask = region.bucket_count - 1;
        Self::over(
            region.buckets,
            mask,
            region.claims,
            Backing::Borrowed(region.owner),
            hash_key,
        )
    }

    fn over(
        buckets: NonNull<Bucket>,
        mask: usize,
        claims: NonNull<Claim>,
        backing: Backing,
        hash_key: [u8; 16],
    ) -> Self {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&hash_key[..8]);
        k1.copy_from_slice(&hash_key[8..]);
        let (k0, k1) = (u64::from_le_bytes(k0), u64::from_le_bytes(k1));
        Self {
            buckets,
            mask,
            claims,
            _backing: backing,
            lock_clock: LockClock::Os,
            empty: Fingerprint::from_hash(keyhash::hash(k0, k1, b"")),
            k0,
            k1,
            evictions: AtomicU64::new(0),
            limited_evictions: AtomicU64::new(0),
            placed: Striped::new(),
            dirty: None,
        }
    }

    /// Reads lock deadlines from `clock` (tests model a process that never comes back).
    #[cfg_attr(not(loom), allow(dead_code))]
    pub fn with_lock_clock(mut self, clock: LockClock) -> Self {
        self.lock_clock = clock;
        self
    }

    /// Bucket `i`; `i` is always masked or below the bucket count.
    #[inline(always)]
    fn bucket(&self, i: usize) -> &Bucket {
        debug_assert!(i <= self.mask);
        // SAFETY: `i <= mask`, and `buckets` points to `mask + 1` buckets valid while
        // `_backing` lives, which is as long as `self`.
        unsafe { &*self.buckets.as_ptr().add(i) }
    }

    #[inline]
    fn claim_flag(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < CLAIM_STRIPES);
        // SAFETY: `i < CLAIMS`, and `claims` points to that many flags valid while `_backing`
        // lives.
        unsafe { &(*self.claims.as_ptr().add(i)).0 }
    }

    /// A table that remembers which pages changed, for a store to write behind.
    pub fn with_dirty_tracking(capacity: usize, hash_key: [u8; 16]) -> Result<Self, usize> {
        let mut t = Self::try_new(capacity, hash_key)?;
        let words = t.pages().div_ceil(64);
        t.dirty = Some((0..words).map(|_| AtomicU64::new(0)).collect());
        Ok(t)
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

    /// The occupied slots of one page, as (fingerprint, state). A slot caught changing owner is
    /// left out: the change marks the page again when it completes.
    pub fn page_entries(&self, page: usize, out: &mut Vec<(u64, u64)>) {
        let first = page * PAGE_SLOTS;
        let last = (first + PAGE_SLOTS).min(self.capacity());
        out.extend((first..last).filter_map(|i| self.slot(i).snapshot()));
    }

    #[inline]
    fn slot(&self, i: usize) -> Slot<'_> {
        let b = self.bucket(i / SLOTS_PER_BUCKET);
        let j = i % SLOTS_PER_BUCKET;
        Slot {
            index: i,
            tag: &b.tags[j],
            word: &b.words[j],
        }
    }

    /// Slots in the table.
    pub fn capacity(&self) -> usize {
        (self.mask + 1) * SLOTS_PER_BUCKET
    }

    /// Bytes the table occupies, fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        (self.mask + 1) * BUCKET_BYTES + CLAIM_STRIPES * CLAIM_BYTES
    }

    /// Keys evicted while live because every candidate slot was taken.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// New keys placed (over an empty, recovered or evicted slot) by this process.
    pub fn placed(&self) -> u64 {
        self.placed
            .sum(PLACED)
            .saturating_sub(self.placed.sum(RESTORED))
    }

    /// Of [`Table::evictions`], keys that were being denied (limited or blocked): every
    /// candidate was such a key, so the table is too small for its traffic.
    pub fn limited_evictions(&self) -> u64 {
        self.limited_evictions.load(Ordering::Relaxed)
    }

    /// Reduces a key to its fingerprint. One 64-bit keyed hash gives both the fingerprint and
    /// the buckets: keys that share a fingerprint share buckets, so the fingerprint keeps its
    /// full 64 bits of distinction.
    #[inline]
    pub fn fingerprint(&self, key: &[u8]) -> Fingerprint {
        if key.is_empty() {
            return self.empty;
        }
        Fingerprint::from_hash(keyhash::hash(self.k0, self.k1, key))
    }

    /// The fingerprint (and buckets) of a raw 64-bit fingerprint, as a store saved it.
    #[inline]
    pub fn fingerprint_of(&self, hash: u64) -> Fingerprint {
        Fingerprint::from_hash(hash)
    }

    /// A key's first bucket: the low bits of its fingerprint.
    #[inline]
    fn first_bucket(&self, f: &Fingerprint) -> usize {
        f.fp as usize & self.mask
    }

    /// A key's second bucket: the first, moved by bits 32 and up of its fingerprint (never by
    /// zero unless the table has one bucket).
    #[inline]
    fn second_bucket(&self, f: &Fingerprint) -> usize {
        let mut off = (f.fp >> 32) as usize & self.mask;
        if off == 0 {
            off = 1 & self.mask;
        }
        self.first_bucket(f) ^ off
    }

    /// The candidate slots of a key: its first bucket, then its second (when distinct).
    #[inline]
    fn candidates(&self, f: &Fingerprint) -> impl Iterator<Item = Slot<'_>> {
        let i1 = self.first_bucket(f);
        let i2 = self.second_bucket(f);
        let n2 = if i1 == i2 { 0 } else { SLOTS_PER_BUCKET };
        let first = (0..SLOTS_PER_BUCKET).map(move |j| i1 * SLOTS_PER_BUCKET + j);
        let second = (0..n2).map(move |j| i2 * SLOTS_PER_BUCKET + j);
        first.chain(second).map(|i| self.slot(i))
    }

    /// The key's slot and its current state word. `None` when the key has no slot, or while
    /// its slot is being given to another key (the key is then as good as evicted).
    #[inline(always)]
    fn find(&self, f: &Fingerprint) -> Option<(Slot<'_>, u64)> {
        let i1 = self.first_bucket(f);
        let b = self.bucket(i1);
        for j in 0..SLOTS_PER_BUCKET {
            if b.tags[j].load(Ordering::Acquire) == f.fp {
                let slot = Slot {
                    index: i1 * SLOTS_PER_BUCKET + j,
                    tag: &b.tags[j],
                    word: &b.words[j],
                };
                return self.confirm(slot, f);
            }
        }
        self.find_second(f)
    }

    /// [`Table::find`] in the key's second bucket, out of line: most keys live in their first.
    #[inline(never)]
    fn find_second(&self, f: &Fingerprint) -> Option<(Slot<'_>, u64)> {
        let i1 = self.first_bucket(f);
        let i2 = self.second_bucket(f);
        if i1 == i2 {
            return None;
        }
        let b = self.bucket(i2);
        let j = (0..SLOTS_PER_BUCKET).find(|&j| b.tags[j].load(Ordering::Acquire) == f.fp)?;
        self.confirm(self.slot(i2 * SLOTS_PER_BUCKET + j), f)
    }

    /// The state word of a slot whose tag was just seen equal to the key's fingerprint, if the
    /// tag still says so after the word is read (see `Slot::snapshot`).
    #[inline(always)]
    fn confirm<'a>(&self, slot: Slot<'a>, f: &Fingerprint) -> Option<(Slot<'a>, u64)> {
        let word = slot.word.load(Ordering::Acquire);
        (slot.tag.load(Ordering::Relaxed) == f.fp).then_some((slot, word))
    }

    /// The state of a key, if it has a slot.
    pub fn read(&self, f: &Fingerprint) -> Option<u64> {
        self.find(f).map(|(_, w)| w ^ f.mask)
    }

    /// Applies `step` to the key's state (0 for a key not in the table) until its result is
    /// stored atomically, and returns what `step` returned with it.
    ///
    /// `step` may run several times under contention and must be pure. A result equal to the
    /// state it was given is not written, and a key not in the table is only placed when the
    /// result still carries information.
    #[inline(always)]
    pub fn update<R>(
        &self,
        f: &Fingerprint,
        now: Nanos,
        reclaim: &impl Reclaim,
        mut step: impl FnMut(u64) -> (u64, R),
    ) -> Updated<R> {
        'find: loop {
            let found = self.find(f);
            // A key not in the table steps from state 0.
            let mut word = found.map_or(f.mask, |(_, w)| w);
            // One call site for `step`, so the compiler inlines it.
            loop {
                let state = word ^ f.mask;
                let (new, value) = step(state);
                if new == state {
                    return Updated {
                        value,
                        wrote: false,
                        placed: false,
                    };
                }
                let Some((slot, _)) = found else {
                    if reclaim.recovered(new, now) {
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
                        Placed::Raced => continue 'find,
                    }
                };
                match slot.word.compare_exchange(
                    word,
                    new ^ f.mask,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        self.mark_dirty(slot.index);
                        return Updated {
                            value,
                            wrote: true,
                            placed: false,
                        };
                    }
                    // Still this key's slot: decide again on the newer state.
                    Err(actual) if slot.tag.load(Ordering::Relaxed) == f.fp => word = actual,
                    // Evicted or removed under us: look again.
                    Err(_) => continue 'find,
                }
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
        let up = self.update(&f, now, reclaim, |_| (state, ()));
        if up.placed {
            self.placed.add(&[RESTORED], 1);
        }
        up.wrote
    }

    #[inline(never)]
    fn place(&self, f: &Fingerprint, state: u64, now: Nanos, reclaim: &impl Reclaim) -> Placed {
        let _claim = self.claim(f);
        if self.find(f).is_some() {
            return Placed::Raced;
        }
        loop {
            let Some((slot, old_tag)) = self.victim(f, now, reclaim) else {
                // Every candidate is changing owner right now: let those changes finish (or
                // their deadlines pass).
                yield_now();
                continue;
            };
            // Only the thread that swaps the tag to its lock tag changes this slot's owner.
            let lock = self.lock_tag();
            if slot
                .tag
                .compare_exchange(old_tag, lock, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // The old owner's updaters may still land a CAS: swap against what is there now,
            // and judge liveness on the state actually replaced. A lock taken over from a
            // holder that died holds no owner's state.
            let old_owner = is_fingerprint(old_tag);
            let old_mask = if old_owner { mix(old_tag) } else { 0 };
            let mut word = slot.word.load(Ordering::Acquire);
            loop {
                let live = old_owner && !reclaim.recovered(word ^ old_mask, now);
                match slot.word.compare_exchange(
                    word,
                    state ^ f.mask,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        if live {
                            self.evictions.fetch_add(1, Ordering::Relaxed);
                            if reclaim.debt(word ^ old_mask, now) >= LIMITED {
                                self.limited_evictions.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        break;
                    }
                    // Our lock was taken over (we were paused past its deadline): the slot is
                    // someone else's now; start again.
                    Err(_) if slot.tag.load(Ordering::Acquire) != lock => return Placed::Raced,
                    Err(actual) => word = actual,
                }
            }
            // Published only if the lock is still ours: a holder paused past its deadline
            // never overwrites the slot's new owner.
            if slot
                .tag
                .compare_exchange(lock, f.fp, Ordering::Release, Ordering::Relaxed)
                .is_err()
            {
                return Placed::Raced;
            }
            self.mark_dirty(slot.index);
            self.placed.add(&[PLACED], 1);
            return Placed::Done;
        }
    }

    /// A fresh lock tag, due [`LOCK_TIMEOUT_MS`] from now.
    #[inline]
    fn lock_tag(&self) -> u64 {
        let deadline = self.lock_clock.now_ms().wrapping_add(LOCK_TIMEOUT_MS) & DEADLINE_MASK;
        // Bit 63 clear (not a fingerprint), bit 0 set (not empty).
        1 | (u64::from(nonce() >> 1) << 1) | (u64::from(deadline) << 32)
    }

    /// The slot a new key takes, with the tag it had: empty, else recovered, else one locked by
    /// a holder past its deadline, else the least indebted. Slots changing owner within their
    /// deadline are skipped; `None` if every candidate is.
    fn victim(
        &self,
        f: &Fingerprint,
        now: Nanos,
        reclaim: &impl Reclaim,
    ) -> Option<(Slot<'_>, u64)> {
        let mut best: Option<(Slot<'_>, u64, u64)> = None;
        let mut abandoned = None;
        for slot in self.candidates(f) {
            let tag = slot.tag.load(Ordering::Acquire);
            if tag == 0 {
                return Some((slot, 0));
            }
            if is_lock(tag) {
                if abandoned.is_none() && passed(deadline_of(tag), self.lock_clock.now_ms()) {
                    abandoned = Some((slot, tag));
                }
                continue;
            }
            let Some((tag, state)) = slot.snapshot() else {
                continue;
            };
            if reclaim.recovered(state, now) {
                return Some((slot, tag));
            }
            let debt = reclaim.debt(state, now);
            if best.as_ref().is_none_or(|b| debt < b.2) {
                best = Some((slot, tag, debt));
            }
        }
        abandoned.or(best.map(|(slot, tag, _)| (slot, tag)))
    }

    /// Takes the claim flag of the key's stripe: waits while another holder is within its
    /// deadline, and takes it over once that has passed (the holder died, or was paused).
    fn claim(&self, f: &Fingerprint) -> ClaimGuard<'_> {
        let flag = self.claim_flag(self.first_bucket(f) % CLAIM_STRIPES);
        let deadline = self.lock_clock.now_ms().wrapping_add(LOCK_TIMEOUT_MS) & DEADLINE_MASK;
        let mine = u64::from(nonce()) | (u64::from(deadline) << 32);
        let mut spins = 0u32;
        loop {
            let seen = flag.load(Ordering::Relaxed);
            let free = seen == 0 || passed(deadline_of(seen), self.lock_clock.now_ms());
            if free
                && flag
                    .compare_exchange(seen, mine, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return ClaimGuard { flag, mine };
            }
            spins += 1;
            if spins < 64 {
                spin_hint();
            } else {
                yield_now();
            }
        }
    }

    /// A placer that dies mid-protocol, for the loom models: takes the claim of `f`'s stripe
    /// and never gives it back, then (from `stage` 1) locks a victim slot, then (from `stage`
    /// 2) writes the new state into it, and stops there forever.
    #[cfg(loom)]
    pub fn abandon_placement(
        &self,
        f: &Fingerprint,
        state: u64,
        now: Nanos,
        reclaim: &impl Reclaim,
        stage: u8,
    ) {
        std::mem::forget(self.claim(f));
        if stage == 0 {
            return;
        }
        let Some((slot, old_tag)) = self.victim(f, now, reclaim) else {
            return;
        };
        let lock = self.lock_tag();
        if slot
            .tag
            .compare_exchange(old_tag, lock, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
            || stage == 1
        {
            return;
        }
        slot.word.store(state ^ f.mask, Ordering::Release);
    }

    /// Forgets a key: its next request starts fresh.
    pub fn remove(&self, f: &Fingerprint) -> bool {
        while let Some((slot, _)) = self.find(f) {
            let lock = self.lock_tag();
            if slot
                .tag
                .compare_exchange(f.fp, lock, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // Cleared only while the lock is ours (see `place`).
                let mut word = slot.word.load(Ordering::Acquire);
                while slot.tag.load(Ordering::Acquire) == lock {
                    match slot
                        .word
                        .compare_exchange(word, 0, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => break,
                        Err(actual) => word = actual,
                    }
                }
                let _ = slot
                    .tag
                    .compare_exchange(lock, 0, Ordering::Release, Ordering::Relaxed);
                self.mark_dirty(slot.index);
                return true;
            }
        }
        false
    }

    /// Calls `visit(fingerprint, state)` for every occupied slot (a slot caught changing owner
    /// is skipped).
    pub fn for_each(&self, mut visit: impl FnMut(u64, u64)) {
        for i in 0..self.capacity() {
            if let Some((fp, state)) = self.slot(i).snapshot() {
                visit(fp, state);
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

struct ClaimGuard<'a> {
    flag: &'a AtomicU64,
    mine: u64,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        // Freed only if still ours: a claim taken over past its deadline is the new holder's.
        let _ = self
            .flag
            .compare_exchange(self.mine, 0, Ordering::Release, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The empty key's fingerprint, kept from construction, is the one hashing would give: a
    /// store written before (or by a build without the shortcut) still finds its state.
    #[test]
    fn the_kept_empty_fingerprint_is_the_hashed_one() {
        for seed in [[0u8; 16], [7; 16], *b"0123456789abcdef"] {
            let t = Table::new(64, seed);
            let hashed = t.fingerprint_of(keyhash::hash(t.k0, t.k1, b""));
            assert_eq!(t.fingerprint(b""), hashed);
            assert_ne!(t.fingerprint(b""), t.fingerprint(b"\0"));
        }
        let (a, b) = (Table::new(64, [1; 16]), Table::new(64, [2; 16]));
        assert_ne!(a.fingerprint(b""), b.fingerprint(b""), "the secret keys it");
    }
}
