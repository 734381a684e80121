//! Script calls of threads that wait at the same time go to Redis together: one write of all
//! their `EVALSHA`s on one connection, their replies read in order (flat combining). A caller
//! queues its call, then takes a free connection if there is one and runs everything queued,
//! until its own call is answered; otherwise it waits. A thread that gives a connection back
//! while calls are queued wakes the first of them, which takes it. Each script still runs
//! atomically on the server: this changes no decision, only how many writes, reads and wake-ups
//! a busy host makes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::pool::{Pool, Taken};

/// A server's error as it said it: `CODE detail`.
macro_rules! server_error {
    ($e:expr) => {
        format!("{} {}", $e.code(), $e.details().unwrap_or_default())
    };
}

/// One queued script call.
pub(super) struct Job {
    /// The packed `EVALSHA` command.
    packed: Vec<u8>,
    /// The script's source, loaded again if Redis answers `NOSCRIPT`.
    source: &'static str,
    result: Mutex<Option<Result<::redis::Value, String>>>,
    ready: Condvar,
    /// Set when a connection came free for this call while it was queued: its owner takes it
    /// rather than wait (checked under `result`'s lock, so the wake-up is never lost).
    kick: AtomicBool,
}

impl Job {
    pub(super) fn new(packed: Vec<u8>, source: &'static str) -> Arc<Self> {
        Arc::new(Job {
            packed,
            source,
            result: Mutex::new(None),
            ready: Condvar::new(),
            kick: AtomicBool::new(false),
        })
    }

    /// The same call, to be sent again (elsewhere, after a redirect).
    pub(super) fn again(&self) -> Arc<Self> {
        Job::new(self.packed.clone(), self.source)
    }

    fn finish(&self, r: Result<::redis::Value, String>) {
        *self.result.lock() = Some(r);
        self.ready.notify_one();
    }
}

pub(super) struct Batcher {
    queue: Mutex<Vec<Arc<Job>>>,
    batches: std::sync::atomic::AtomicU64,
}

impl Batcher {
    pub(super) fn new() -> Self {
        Batcher {
            queue: Mutex::new(Vec::new()),
            batches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(super) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Runs `job` (with whatever else is queued) and returns its reply. Waits at most about
    /// three `timeout`s: a batch ahead of it, its own, and connecting.
    pub(super) fn run(
        &self,
        pool: &Pool,
        job: Arc<Job>,
        timeout: Duration,
    ) -> Result<::redis::Value, String> {
        self.queue.lock().push(Arc::clone(&job));
        let deadline = Instant::now() + timeout * 3;
        loop {
            if let Some(r) = job.result.lock().take() {
                return r;
            }
            match pool.try_take() {
                Some(Ok(conn)) => self.combine(pool, conn, &job),
                // No connection could be made; unless a batch already carries this call, that
                // is its answer.
                Some(Err(e)) if self.withdraw(&job) => return Err(e),
                // Every connection is busy (or the call is in a batch): its answer comes from
                // the thread that sends it, or a connection comes free.
                _ => {
                    let mut r = job.result.lock();
                    if r.is_none() && !job.kick.swap(false, Ordering::AcqRel) {
                        job.ready.wait_for(&mut r, timeout);
                    }
                    if let Some(r) = r.take() {
                        return r;
                    }
                    drop(r);
                    if Instant::now() >= deadline && self.withdraw(&job) {
                        return Err(format!(
                            "no connection became free within {:?}",
                            timeout * 3
                        ));
                    }
                }
            }
        }
    }

    /// Takes a job out of the queue if no batch took it yet.
    fn withdraw(&self, job: &Arc<Job>) -> bool {
        let mut q = self.queue.lock();
        let before = q.len();
        q.retain(|j| !Arc::ptr_eq(j, job));
        q.len() != before
    }

    /// Runs batches on `conn` until `own` is answered, then gives it back.
    fn combine(&self, pool: &Pool, mut conn: Taken, own: &Job) {
        loop {
            let batch = std::mem::take(&mut *self.queue.lock());
            if !batch.is_empty() {
                self.batches.fetch_add(1, Ordering::Relaxed);
            }
            if !batch.is_empty() && !Self::send(&mut conn, &batch) {
                pool.discard(conn);
                break;
            }
            if batch.is_empty() || own.result.lock().is_some() {
                pool.put(conn);
                break;
            }
        }
        // A call queued meanwhile may have found no connection: wake it to take one.
        let first = self.queue.lock().first().cloned();
        if let Some(first) = first {
            first.kick.store(true, Ordering::Release);
            let _held = first.result.lock();
            first.ready.notify_one();
        }
    }

    /// One write, the replies in order; false when the connection broke (every job of the batch
    /// then has the error).
    fn send(conn: &mut Taken, batch: &[Arc<Job>]) -> bool {
        use ::redis::ConnectionLike;
        let mut packed = Vec::with_capacity(batch.iter().map(|j| j.packed.len()).sum());
        for j in batch {
            packed.extend_from_slice(&j.packed);
        }
        let c = conn.get();
        match c.req_packed_commands(&packed, 0, batch.len()) {
            Ok(values) if values.len() == batch.len() => {
                for (j, v) in batch.iter().zip(values) {
                    j.finish(Self::reply(c, j, v));
                }
                true
            }
            Ok(values) => {
                let e = format!("{} replies to {} calls", values.len(), batch.len());
                batch.iter().for_each(|j| j.finish(Err(e.clone())));
                false
            }
            Err(e) => {
                let e = e.to_string();
                batch.iter().for_each(|j| j.finish(Err(e.clone())));
                false
            }
        }
    }

    /// Runs one call after `ASKING` on `c`: its reply or the server's error, or `Err` when
    /// the connection broke.
    pub(super) fn asking(
        c: &mut ::redis::Connection,
        j: &Job,
    ) -> Result<Result<::redis::Value, String>, String> {
        use ::redis::ConnectionLike;
        let mut packed = ::redis::cmd("ASKING").get_packed_command();
        packed.extend_from_slice(&j.packed);
        let ask = |c: &mut ::redis::Connection| {
            c.req_packed_commands(&packed, 1, 1)
                .map_err(|e| e.to_string())?
                .pop()
                .ok_or_else(|| "no reply".to_string())
        };
        match ask(c)? {
            ::redis::Value::ServerError(e) if e.code() == "NOSCRIPT" => {
                let loaded = ::redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(j.source)
                    .query::<String>(c);
                match loaded {
                    Err(e) if e.is_io_error() || e.is_timeout() => return Err(e.to_string()),
                    Err(e) => return Ok(Err(e.to_string())),
                    Ok(_) => {}
                }
                Ok(match ask(c)? {
                    ::redis::Value::ServerError(e) => Err(server_error!(e)),
                    v => Ok(v),
                })
            }
            ::redis::Value::ServerError(e) => Ok(Err(server_error!(e))),
            v => Ok(Ok(v)),
        }
    }

    /// A reply, after loading the script and running the call again on `NOSCRIPT` (Redis lost
    /// its scripts: a restart, `SCRIPT FLUSH`, a failover).
    fn reply(
        c: &mut ::redis::Connection,
        j: &Job,
        v: ::redis::Value,
    ) -> Result<::redis::Value, String> {
        use ::redis::ConnectionLike;
        match v {
            ::redis::Value::ServerError(e) if e.code() == "NOSCRIPT" => {
                ::redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(j.source)
                    .query::<String>(c)
                    .map_err(|e| e.to_string())?;
                match c.req_packed_command(&j.packed) {
                    Ok(::redis::Value::ServerError(e)) => Err(server_error!(e)),
                    Ok(v) => Ok(v),
                    Err(e) => Err(e.to_string()),
                }
            }
            ::redis::Value::ServerError(e) => Err(server_error!(e)),
            v => Ok(v),
        }
    }
}
