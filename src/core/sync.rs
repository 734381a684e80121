//! The one place that picks std or loom primitives.
//!
//! Everything that the loom models check (the slot words, the claim flags, the manual clock) is
//! named here, so `--cfg loom` swaps the whole concurrency surface at once.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};
pub(crate) use std::sync::atomic::Ordering;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};

/// Back off inside a short wait; under loom, let the model schedule someone else.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Give the CPU away after spinning a while (a preempted claimer holds a claim flag).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// Statistics counters are not part of any protocol the models check: always std.
pub(crate) type StatAtomic = std::sync::atomic::AtomicU64;

const UNSET: usize = usize::MAX - 1;
const EXITED: usize = usize::MAX;

std::thread_local! {
    /// The thread's index (see [`thread_index`]).
    static INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(UNSET) };
}

/// The thread's index if it has been given one, else a number above every index: one
/// thread-local load, for a caller that tests the range anyway and calls [`thread_index`] only
/// when it is out of range.
#[inline(always)]
pub(crate) fn thread_index_if_set() -> usize {
    INDEX.with(std::cell::Cell::get)
}

/// A number unique among the threads alive now: the lowest free index when the thread first
/// asks, given back when it exits. Servers that start a thread per connection or per job keep
/// reusing small numbers, so per-thread shards indexed by it stay owned by one thread at a time.
/// A thread that has begun exiting gets `usize::MAX` (no owned shard).
#[inline]
pub(crate) fn thread_index() -> usize {
    /// Indices given back by exited threads; touched only at a thread's first use and exit.
    static FREE: parking_lot::Mutex<Vec<usize>> = parking_lot::const_mutex(Vec::new());
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// Gives the index back at thread exit. Kept apart from `INDEX`, which has no destructor,
    /// so reading the index is a plain thread-local load.
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            let i = INDEX.with(|i| i.replace(EXITED));
            if i < UNSET {
                // Everything this thread wrote to its shards happens before the next owner
                // takes the index through this lock.
                FREE.lock().push(i);
            }
        }
    }
    std::thread_local! {
        static RELEASE: Release = const { Release };
    }
    #[cold]
    fn assign() -> usize {
        // Registers the exit hook; fails once the thread's destructors have started.
        if RELEASE.try_with(|_| ()).is_err() {
            return EXITED;
        }
        let mut free = FREE.lock();
        // Lowest first, so the live threads keep the low (owned) shards.
        let i = match free.iter().enumerate().min_by_key(|(_, &i)| i) {
            Some((at, _)) => free.swap_remove(at),
            None => NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        INDEX.with(|c| c.set(i));
        i
    }
    match thread_index_if_set() {
        UNSET => assign(),
        i => i,
    }
}

/// The coarse clock word and its ticker thread. Process-wide by nature, so std atomics in
/// statics, outside every model.
pub(crate) mod coarse {
    use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
    use std::time::Duration;

    const STOPPED: u8 = 0;
    const STARTING: u8 = 1;
    const RUNNING: u8 = 2;
    const TICK: Duration = Duration::from_millis(1);

    static NOW: AtomicU64 = AtomicU64::new(0);
    static STATE: AtomicU8 = AtomicU8::new(STOPPED);

    /// The clock word, starting the ticker when it is not running (first use, or after fork).
    #[inline]
    pub(crate) fn now(source: fn() -> Box<dyn FnMut() -> u64 + Send>) -> u64 {
        if STATE.load(Ordering::Relaxed) != RUNNING {
            ensure_ticking(source);
        }
        NOW.load(Ordering::Relaxed)
    }

    pub(crate) fn ensure_ticking(source: fn() -> Box<dyn FnMut() -> u64 + Send>) {
        if STATE
            .compare_exchange(STOPPED, STARTING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let mut read = source();
            // Publish a first reading before anyone sees RUNNING; never move backwards.
            NOW.fetch_max(read(), Ordering::AcqRel);
            register_atfork();
            let spawned = std::thread::Builder::new()
                .name("portcullis-clock".into())
                .spawn(move || loop {
                    NOW.fetch_max(read(), Ordering::AcqRel);
                    std::thread::sleep(TICK);
                });
            let state = if spawned.is_ok() { RUNNING } else { STOPPED };
            STATE.store(state, Ordering::Release);
        }
        // Another thread is starting it: its first reading is published before RUNNING.
        while STATE.load(Ordering::Acquire) == STARTING {
            std::hint::spin_loop();
        }
        if NOW.load(Ordering::Acquire) == 0 {
            // The ticker could not be started: read the source directly this once.
            NOW.fetch_max(source()(), Ordering::AcqRel);
        }
    }

    /// A forked child has no ticker thread: mark it stopped so the first read restarts it.
    fn register_atfork() {
        extern "C" fn child() {
            STATE.store(STOPPED, Ordering::Release);
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: registering a handler that only stores to a static atomic.
            unsafe {
                libc::pthread_atfork(None, None, Some(child));
            }
        });
    }
}
