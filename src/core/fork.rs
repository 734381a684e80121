//! Noticing `fork()`. Threads do not survive it: a child has none of the threads its parent
//! started (a store's writer thread, say), and locks they held stay locked. Code that relies
//! on such a thread records the generation when it starts it, and treats a later generation
//! as "this is a child": it neither waits for that thread nor joins it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Once;

/// Bumped in every child, by the `pthread_atfork` handler.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// This process's id, once [`watch`] ran (0 before): kept here because `getpid` is a system
/// call, too slow for a placement path that wants it.
static PID: AtomicU32 = AtomicU32::new(0);

extern "C" fn in_child() {
    // An atomic add and `getpid`: both async-signal-safe, as a fork handler must be.
    GENERATION.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `getpid` has no preconditions.
    PID.store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
}

/// Starts watching for forks (once per process) and returns the current generation.
pub(crate) fn watch() -> u64 {
    static WATCH: Once = Once::new();
    WATCH.call_once(|| {
        PID.store(std::process::id(), Ordering::Relaxed);
        // SAFETY: registers a handler that only does an atomic add and a store; it is never
        // unregistered, and `in_child` lives as long as the program.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
    generation()
}

/// This process's id if [`watch`] has run (any store that may be shared calls it), else 0.
#[inline]
pub(crate) fn pid() -> u32 {
    PID.load(Ordering::Relaxed)
}

/// How many forks this process descends from since [`watch`] was first called: a relaxed
/// load, cheap enough for a check path.
#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}
