//! The counters board: a file in a shared store's folder where every process using the store
//! publishes its counters, so that a scrape of any one process reports the whole host's.
//!
//! Counters are per process (striped in memory, so the check path never touches a shared
//! line). Each process owns one slot of the board and copies its counters into it now and
//! then (the gate does it at most once a second from a decision, at every scrape and at
//! close); a reader sums every slot. A counter is a 64-bit key (a hash of its name and labels)
//! and a value, so processes running different configs (during a rolling reload) add up the
//! counters they share and keep their own.
//!
//! * **Slots** are claimed by writing the process id into them (a CAS), so a process that
//!   maps the board and then forks (nginx's master, a pre-forking server) hands its children
//!   a board each of them claims a slot of, with no need to open the file again (workers that
//!   run as another user could not). A slot whose process is gone (`kill(pid, 0)` says so)
//!   is free again.
//! * **A dead process's counts stay**: its slot is read like any other until a new process
//!   claims it; the claimer first adds the slot into slot 0 (the retired counts), so host-wide
//!   counters never go down when a worker dies or is replaced.
//! * **Readers never lock**: values only grow and are written with single atomic stores; the
//!   one change that moves counts (retiring a slot into slot 0) runs under a sequence number
//!   that readers check, so a scrape never counts a slot twice or not at all. Retirements take
//!   turns under a lock word in the header, taken over if its holder died.
//!
//! Linux only (OFD locks), like the shared store.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use super::StoreError;

/// The board's file name in a shared store's folder (the format version is part of it).
pub const BOARD_NAME: &str = "portcullis-metrics-v1.board";
/// Process slots: how many processes can publish at once (slot 0 holds retired counts).
pub const BOARD_PROCESSES: usize = 256;
/// Counters one slot holds; a process's counters past this are left out of the board.
pub const BOARD_COUNTERS: usize = (SLOT_BYTES - SLOT_HEADER) / 16;

const HEADER_BYTES: usize = 4096;
const SLOT_BYTES: usize = 16 * 1024;
const SLOT_HEADER: usize = 32;
const BOARD_BYTES: usize = HEADER_BYTES + (BOARD_PROCESSES + 1) * SLOT_BYTES;
/// The sequence number of retirements (odd while one runs), at the start of the header.
const SEQUENCE_AT: usize = 0;
/// The process retiring a slot now (0 when none).
const LOCK_AT: usize = 8;
/// Where a slot keeps its owner's process id (0: free).
const PID_AT: usize = 8;

/// The board of a shared store, mapped; and this process's slot once it has published.
pub struct Board {
    ptr: NonNull<u8>,
    /// The process that holds `slot` (0 before the first claim); a forked child sees its
    /// parent's id here and claims its own slot.
    pid: u32,
    slot: usize,
    /// Where each of our counters sits in our slot.
    index: HashMap<u64, usize>,
}

// SAFETY: the mapping is shared memory read and written only through atomics; the pointer is
// unmapped once, in `drop`.
unsafe impl Send for Board {}
// SAFETY: as above.
unsafe impl Sync for Board {}

impl Drop for Board {
    fn drop(&mut self) {
        // Our slot is free again (its counts stay until a new owner retires them).
        if self.pid != 0 && self.pid == std::process::id() {
            let _ = self.pid_of(self.slot).compare_exchange(
                u64::from(self.pid),
                0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        // SAFETY: exactly the mapping `mmap` returned, unmapped only here.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), BOARD_BYTES) };
    }
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board").field("slot", &self.slot).finish()
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// Whether process `pid` is alive (possibly as another user).
fn alive(pid: u64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn slot_at(slot: usize) -> usize {
    HEADER_BYTES + slot * SLOT_BYTES
}

impl Board {
    /// Opens (creating it if needed) the board in a shared store's folder and maps it. No
    /// slot is claimed until this process (or a child it forks) publishes.
    pub fn open(dir: &Path) -> Result<Board, StoreError> {
        let path = dir.join(BOARD_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        // Zero-filled is an empty board, so concurrent creators need no agreement; reserving
        // the blocks keeps a full tmpfs from failing later with SIGBUS.
        // SAFETY: a valid descriptor; the size fits `off_t`.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, BOARD_BYTES as libc::off_t) };
        if rc != 0 {
            return Err(io(&path, std::io::Error::from_raw_os_error(rc)));
        }
        // SAFETY: a shared read-write mapping of a file at least `BOARD_BYTES` long.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BOARD_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io(&path, std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io(&path, "mapped at 0"))?;
        Ok(Board {
            ptr,
            pid: 0,
            slot: 0,
            index: HashMap::new(),
        })
    }

    /// Claims a slot for this process unless it holds one. Returns false when every slot is
    /// held by a live process.
    fn claim(&mut self) -> bool {
        let me = std::process::id();
        if self.pid == me {
            return true;
        }
        for slot in 1..=BOARD_PROCESSES {
            let owner = self.pid_of(slot).load(Ordering::Acquire);
            if owner != 0 && alive(owner) {
                continue;
            }
            if self
                .pid_of(slot)
                .compare_exchange(owner, u64::from(me), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.pid = me;
                self.slot = slot;
                self.index.clear();
                // Left by a process that is gone: its counts move to the retired ones.
                self.locked(|b| b.retire(slot));
                return true;
            }
        }
        false
    }

    /// Runs `f` holding the header's lock word (taken over from a holder that died).
    fn locked(&self, f: impl FnOnce(&Self)) {
        let me = u64::from(std::process::id());
        let lock = self.word(LOCK_AT);
        loop {
            let holder = lock.load(Ordering::Acquire);
            if (holder == 0 || !alive(holder))
                && lock
                    .compare_exchange(holder, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
            std::thread::yield_now();
        }
        f(self);
        lock.store(0, Ordering::Release);
    }

    fn pid_of(&self, slot: usize) -> &AtomicU64 {
        self.word(slot_at(slot) + PID_AT)
    }

    fn word(&self, at: usize) -> &AtomicU64 {
        debug_assert!(at % 8 == 0 && at + 8 <= BOARD_BYTES);
        // SAFETY: in bounds and 8-aligned (the mapping is page-aligned); the memory lives as
        // long as `self` and is only accessed through atomics.
        unsafe { &*self.ptr.as_ptr().add(at).cast::<AtomicU64>() }
    }

    fn count(&self, slot: usize) -> &AtomicU64 {
        self.word(slot_at(slot))
    }

    fn key(&self, slot: usize, i: usize) -> &AtomicU64 {
        self.word(slot_at(slot) + SLOT_HEADER + 16 * i)
    }

    fn value(&self, slot: usize, i: usize) -> &AtomicU64 {
        self.word(slot_at(slot) + SLOT_HEADER + 16 * i + 8)
    }

    /// Adds a dead process's slot into slot 0 and empties it. Runs under the board's lock.
    fn retire(&self, slot: usize) {
        let n = (self.count(slot).load(Ordering::Acquire) as usize).min(BOARD_COUNTERS);
        if n == 0 {
            return;
        }
        let seq = self.word(SEQUENCE_AT);
        seq.fetch_add(1, Ordering::AcqRel);
        let mut retired: HashMap<u64, usize> = HashMap::new();
        let have = (self.count(0).load(Ordering::Acquire) as usize).min(BOARD_COUNTERS);
        for i in 0..have {
            retired.insert(self.key(0, i).load(Ordering::Relaxed), i);
        }
        for i in 0..n {
            let key = self.key(slot, i).load(Ordering::Relaxed);
            let value = self.value(slot, i).load(Ordering::Relaxed);
            let at = match retired.get(&key) {
                Some(&at) => at,
                None => {
                    let at = retired.len();
                    if at >= BOARD_COUNTERS {
                        // The retired slot is full: counters of configs long gone are dropped.
                        continue;
                    }
                    self.key(0, at).store(key, Ordering::Relaxed);
                    self.value(0, at).store(0, Ordering::Relaxed);
                    self.count(0).store(at as u64 + 1, Ordering::Release);
                    retired.insert(key, at);
                    at
                }
            };
            self.value(0, at).fetch_add(value, Ordering::Relaxed);
        }
        self.count(slot).store(0, Ordering::Release);
        for i in 0..n {
            self.key(slot, i).store(0, Ordering::Relaxed);
            self.value(slot, i).store(0, Ordering::Relaxed);
        }
        seq.fetch_add(1, Ordering::AcqRel);
    }

    /// Writes this process's counters into its slot (claiming one first if this process holds
    /// none). Each value must never go down from one call to the next (the gate makes sure of
    /// it). Returns false when no slot is free.
    pub fn publish(&mut self, counters: impl IntoIterator<Item = (u64, u64)>) -> bool {
        if !self.claim() {
            return false;
        }
        let counters: Vec<(u64, u64)> = counters.into_iter().collect();
        let fresh = counters
            .iter()
            .filter(|(k, _)| !self.index.contains_key(k))
            .count();
        if self.index.len() + fresh > BOARD_COUNTERS {
            // Reloads into new series filled the slot: start it again with today's series.
            self.locked(|b| b.rewrite(&counters));
            self.index = counters
                .iter()
                .take(BOARD_COUNTERS)
                .enumerate()
                .map(|(i, (k, _))| (*k, i))
                .collect();
        }
        let slot = self.slot;
        let mut index = std::mem::take(&mut self.index);
        for (key, value) in counters {
            let i = match index.get(&key) {
                Some(&i) => i,
                None => {
                    let i = index.len();
                    if i >= BOARD_COUNTERS {
                        continue;
                    }
                    // Value before key before count: a reader that sees the count sees both.
                    self.value(slot, i).store(value, Ordering::Relaxed);
                    self.key(slot, i).store(key, Ordering::Relaxed);
                    self.count(slot).store(i as u64 + 1, Ordering::Release);
                    index.insert(key, i);
                    continue;
                }
            };
            self.value(slot, i).store(value, Ordering::Relaxed);
        }
        self.index = index;
        true
    }

    /// Empties our slot (under the sequence number, so a reader never sums it half written);
    /// the next publish fills it with `counters`. Series this process no longer has leave
    /// the host's sums. Runs under the board's lock.
    fn rewrite(&self, counters: &[(u64, u64)]) {
        let seq = self.word(SEQUENCE_AT);
        seq.fetch_add(1, Ordering::AcqRel);
        let n = (self.count(self.slot).load(Ordering::Acquire) as usize).min(BOARD_COUNTERS);
        self.count(self.slot).store(0, Ordering::Release);
        for i in 0..n {
            self.key(self.slot, i).store(0, Ordering::Relaxed);
            self.value(self.slot, i).store(0, Ordering::Relaxed);
        }
        for (i, (key, value)) in counters.iter().take(BOARD_COUNTERS).enumerate() {
            self.value(self.slot, i).store(*value, Ordering::Relaxed);
            self.key(self.slot, i).store(*key, Ordering::Relaxed);
        }
        let written = counters.len().min(BOARD_COUNTERS);
        self.count(self.slot)
            .store(written as u64, Ordering::Release);
        seq.fetch_add(1, Ordering::AcqRel);
    }

    /// Every counter summed over every slot: live processes, dead ones and retired counts.
    pub fn sums(&self) -> HashMap<u64, u64> {
        let seq = self.word(SEQUENCE_AT);
        let mut sums = HashMap::new();
        // A retirement takes microseconds; past a few tries, a reader that keeps meeting them
        // (or a process that died mid-retirement, leaving the number odd) takes what it read.
        for _ in 0..64 {
            let before = seq.load(Ordering::Acquire);
            sums.clear();
            self.sum_into(&mut sums);
            if before % 2 == 0 && seq.load(Ordering::Acquire) == before {
                break;
            }
            std::thread::yield_now();
        }
        sums
    }

    fn sum_into(&self, sums: &mut HashMap<u64, u64>) {
        for slot in 0..=BOARD_PROCESSES {
            let n = (self.count(slot).load(Ordering::Acquire) as usize).min(BOARD_COUNTERS);
            for i in 0..n {
                let key = self.key(slot, i).load(Ordering::Relaxed);
                let value = self.value(slot, i).load(Ordering::Relaxed);
                *sums.entry(key).or_insert(0) += value;
            }
        }
    }

    /// Whether this process holds a slot (it has published).
    pub fn claimed(&self) -> bool {
        self.pid == std::process::id()
    }

    /// The processes holding a slot now (this one included once it has published).
    pub fn processes(&self) -> usize {
        (1..=BOARD_PROCESSES)
            .filter(|&s| {
                let pid = self.pid_of(s).load(Ordering::Acquire);
                pid != 0 && alive(pid)
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_cover_every_process_and_survive_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Board::open(dir.path()).unwrap();
        let mut b = Board::open(dir.path()).unwrap();
        assert_eq!(a.processes(), 0, "no slot before the first publish");
        assert!(a.publish([(1, 10), (2, 5)]));
        assert!(b.publish([(1, 7), (3, 1)]));
        assert_ne!(a.slot, b.slot);
        let sums = a.sums();
        assert_eq!(sums.get(&1), Some(&17));
        assert_eq!(sums.get(&2), Some(&5));
        assert_eq!(sums.get(&3), Some(&1));
        assert_eq!(a.processes(), 2);
        // b goes away; its counts stay, and a newcomer taking its slot retires them.
        let b_slot = b.slot;
        drop(b);
        assert_eq!(a.processes(), 1);
        assert_eq!(a.sums().get(&1), Some(&17));
        let mut c = Board::open(dir.path()).unwrap();
        assert!(c.publish([(1, 2)]));
        assert_eq!(c.slot, b_slot);
        let sums = a.sums();
        assert_eq!(sums.get(&1), Some(&19));
        assert_eq!(sums.get(&3), Some(&1));
        // Publishing again replaces a process's value, never adds to it.
        a.publish([(1, 11)]);
        assert_eq!(c.sums().get(&1), Some(&20));
    }

    /// A process whose series outgrow its slot (reloads into new names) starts the slot
    /// again with the series it has now, and publishes all of them.
    #[test]
    fn a_full_slot_is_rewritten_with_the_current_series() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Board::open(dir.path()).unwrap();
        let first: Vec<(u64, u64)> = (1..=BOARD_COUNTERS as u64).map(|k| (k, 1)).collect();
        assert!(a.publish(first));
        assert_eq!(a.sums().len(), BOARD_COUNTERS);
        let next = [(1, 2), (u64::MAX, 7)];
        assert!(a.publish(next));
        let sums = a.sums();
        assert_eq!(sums.len(), 2);
        assert_eq!(sums.get(&1), Some(&2));
        assert_eq!(sums.get(&u64::MAX), Some(&7));
    }
}
