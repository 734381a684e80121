//! The writer thread: writes changed pages behind, and runs group commits for policies that
//! need their decisions on disk before they return.
//!
//! Check paths never wait here unless their policy is immediate: write-behind needs only the
//! dirty-page marks the table sets, and key names go through a bounded queue whose overflow is
//! counted, never waited on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_queue::ArrayQueue;
use parking_lot::{Condvar, Mutex};

use super::{PolicyChanges, Store, StoreError, WriterConfig};

/// Longest key name kept (longer keys are listed without a name).
pub(crate) const MAX_NAME: usize = 1024;
const NAME_QUEUE: usize = 1 << 16;

/// Collects the changes to write: dirty pages of every policy (in policy order).
pub(crate) type Collect = Box<dyn FnMut() -> Vec<PolicyChanges> + Send>;
/// Called after a failed write so that everything is written again next time.
pub(crate) type Remark = Box<dyn Fn() + Send>;
/// The fingerprints live in a policy's table, to prune names of keys that are gone.
pub(crate) type LiveKeys = Box<dyn Fn(usize) -> Vec<u64> + Send>;

#[derive(Default)]
struct Commit {
    /// Group-commit tickets handed out.
    requested: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// The last failed write and the tickets it covered.
    failed: Option<(u64, StoreError)>,
    shutdown: bool,
}

/// Counters of the writer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Writes of changed pages (each followed by a flush).
    pub flushes: u64,
    /// Pages written.
    pub pages: u64,
    /// Key names not recorded because the queue was full.
    pub names_dropped: u64,
    /// Writes that failed (retried in full at the next interval).
    pub errors: u64,
}

struct Shared {
    store: Arc<dyn Store>,
    config: WriterConfig,
    commit: Mutex<Commit>,
    wake: Condvar,
    done: Condvar,
    names: ArrayQueue<(u32, u64, Box<[u8]>)>,
    known: Mutex<Vec<HashMap<u64, Box<[u8]>>>>,
    flushes: AtomicU64,
    pages: AtomicU64,
    names_dropped: AtomicU64,
    errors: AtomicU64,
    /// When the writer last found everything written: nanoseconds since `started`.
    written_at: AtomicU64,
    started: std::time::Instant,
}

/// The writer of one limiter.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The fork generation the thread was started in: in a child forked later, the thread is
    /// missing (see `crate::core::fork`).
    born: u64,
}

struct Job {
    collect: Collect,
    remark: Remark,
    live: LiveKeys,
    capacity: Vec<usize>,
}

impl Writer {
    /// Starts the writer thread; `known` are the names loaded with the store, per policy.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        config: WriterConfig,
        known: Vec<HashMap<u64, Box<[u8]>>>,
        capacity: Vec<usize>,
        collect: Collect,
        remark: Remark,
        live: LiveKeys,
    ) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            store,
            config,
            commit: Mutex::new(Commit::default()),
            wake: Condvar::new(),
            done: Condvar::new(),
            names: ArrayQueue::new(NAME_QUEUE),
            known: Mutex::new(known),
            flushes: AtomicU64::new(0),
            pages: AtomicU64::new(0),
            names_dropped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            written_at: AtomicU64::new(0),
            started: std::time::Instant::now(),
        });
        let job = Job {
            collect,
            remark,
            live,
            capacity,
        };
        let born = crate::core::fork::watch();
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("portcullis-writer".into())
            .spawn(move || run(&s, job))
            .map_err(|e| StoreError::Io {
                path: shared.store.location(),
                detail: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
            born,
        })
    }

    /// This process is a child forked after the writer started: its thread is missing here.
    #[inline]
    pub(crate) fn forked(&self) -> bool {
        crate::core::fork::generation() != self.born
    }

    /// The error of a use in a forked child.
    #[cold]
    pub(crate) fn forked_error(&self) -> StoreError {
        StoreError::Forked {
            path: self.shared.store.location(),
        }
    }

    /// Remembers the name of a key just placed in policy `policy`'s table. Never blocks: a
    /// full queue drops the name and counts it.
    #[inline]
    pub(crate) fn record_name(&self, policy: usize, fp: u64, key: &[u8]) {
        if key.len() > MAX_NAME {
            return;
        }
        let item = (policy as u32, fp, Box::<[u8]>::from(key));
        if self.shared.names.push(item).is_err() {
            self.shared.names_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Returns once everything written to the table before the call is on disk, sharing the
    /// flush with every caller waiting at the same time.
    pub(crate) fn wait_durable(&self) -> Result<(), StoreError> {
        if self.forked() {
            return Err(self.forked_error());
        }
        let s = &self.shared;
        let mut c = s.commit.lock();
        c.requested += 1;
        let ticket = c.requested;
        s.wake.notify_one();
        loop {
            if c.durable >= ticket {
                return Ok(());
            }
            if let Some((covered, e)) = &c.failed {
                if *covered >= ticket {
                    return Err(e.clone());
                }
            }
            if c.shutdown {
                return Err(StoreError::Io {
                    path: s.store.location(),
                    detail: "the store was closed".into(),
                });
            }
            s.done.wait(&mut c);
        }
    }

    /// The name of a key, if recorded.
    pub(crate) fn name(&self, policy: usize, fp: u64) -> Option<Vec<u8>> {
        if self.forked() {
            return None;
        }
        self.drain_names();
        let known = self.shared.known.lock();
        known.get(policy)?.get(&fp).map(|n| n.to_vec())
    }

    fn drain_names(&self) {
        drain(&self.shared, &mut None);
    }

    /// The writer's counters.
    pub(crate) fn stats(&self) -> WriterStats {
        let s = &self.shared;
        WriterStats {
            flushes: s.flushes.load(Ordering::Relaxed),
            pages: s.pages.load(Ordering::Relaxed),
            names_dropped: s.names_dropped.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
        }
    }

    /// Time since the writer last had every change written.
    pub(crate) fn lag(&self) -> std::time::Duration {
        let s = &self.shared;
        let at = std::time::Duration::from_nanos(s.written_at.load(Ordering::Relaxed));
        s.started.elapsed().saturating_sub(at)
    }

    /// Bytes on disk.
    pub(crate) fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.shared.store.size_on_disk()
    }

    /// Writes everything, stops the thread and waits for it.
    pub(crate) fn shutdown(&self) -> Result<(), StoreError> {
        if self.forked() {
            // The thread and whatever it held belong to the parent: leave them alone (its
            // handle is not joinable here), and never wait.
            if let Some(t) = self.thread.try_lock().and_then(|mut t| t.take()) {
                std::mem::forget(t);
            }
            return Err(self.forked_error());
        }
        let result = self.wait_durable();
        {
            let mut c = self.shared.commit.lock();
            c.shutdown = true;
            self.shared.wake.notify_one();
        }
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        result
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Moves queued names into the known map, and into `changes` when given.
fn drain(s: &Shared, changes: &mut Option<&mut Vec<PolicyChanges>>) {
    let mut known = s.known.lock();
    while let Some((policy, fp, name)) = s.names.pop() {
        let p = policy as usize;
        if let Some(c) = changes.as_deref_mut().and_then(|c| c.get_mut(p)) {
            c.names.push((fp, name.to_vec()));
        }
        if let Some(k) = known.get_mut(p) {
            k.insert(fp, name);
        }
    }
}

fn run(s: &Shared, mut job: Job) {
    loop {
        let (target, immediate, shutdown) = {
            let mut c = s.commit.lock();
            if c.requested == c.durable && !c.shutdown {
                s.wake.wait_for(&mut c, s.config.flush_interval);
            }
            (c.requested, c.requested > c.durable, c.shutdown)
        };
        let result = write_once(s, &mut job, immediate);
        let mut c = s.commit.lock();
        match result {
            Ok(()) => {
                c.durable = c.durable.max(target);
                let at = u64::try_from(s.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                s.written_at.store(at, Ordering::Relaxed);
            }
            Err(e) => {
                s.errors.fetch_add(1, Ordering::Relaxed);
                (job.remark)();
                c.failed = Some((target, e));
            }
        }
        s.done.notify_all();
        if shutdown {
            return;
        }
    }
}

fn write_once(s: &Shared, job: &mut Job, power_loss: bool) -> Result<(), StoreError> {
    let mut changes = (job.collect)();
    drain(s, &mut Some(&mut changes));
    prune_names(s, job, &mut changes);
    let pages: usize = changes.iter().map(|c| c.pages.len()).sum();
    let anything = changes
        .iter()
        .any(|c| !c.pages.is_empty() || !c.names.is_empty() || !c.forget.is_empty());
    if !anything {
        return Ok(());
    }
    s.store.write(&changes)?;
    s.store.sync(power_loss)?;
    s.flushes.fetch_add(1, Ordering::Relaxed);
    s.pages.fetch_add(pages as u64, Ordering::Relaxed);
    Ok(())
}

/// Keeps the names of a policy bounded (a flood of keys must not grow them forever): past
/// twice the table's capacity, names of keys no longer in the table are forgotten.
fn prune_names(s: &Shared, job: &Job, changes: &mut [PolicyChanges]) {
    let mut known = s.known.lock();
    for (p, names) in known.iter_mut().enumerate() {
        let cap = job.capacity.get(p).copied().unwrap_or(0);
        if names.len() <= 2 * cap {
            continue;
        }
        let live: std::collections::HashSet<u64> = (job.live)(p).into_iter().collect();
        let gone: Vec<u64> = names
            .keys()
            .filter(|fp| !live.contains(fp))
            .copied()
            .collect();
        for fp in &gone {
            names.remove(fp);
        }
        if let Some(c) = changes.get_mut(p) {
            c.names.retain(|(fp, _)| live.contains(fp));
            c.forget.extend(gone);
        }
    }
}
