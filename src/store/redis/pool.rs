//! A few synchronous connections, each with the call timeout on its socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A connection taken from the pool: give it back with [`Pool::put`] or drop it with
/// [`Pool::discard`].
pub(super) struct Taken(::redis::Connection);

impl Taken {
    pub(super) fn get(&mut self) -> &mut ::redis::Connection {
        &mut self.0
    }
}

struct Idle {
    conns: Vec<::redis::Connection>,
    /// Connections open or being opened, idle or not.
    open: usize,
}

pub(super) struct Pool {
    client: ::redis::Client,
    size: usize,
    timeout: Duration,
    idle: Mutex<Idle>,
    freed: Condvar,
    connects: AtomicU64,
}

impl Pool {
    pub(super) fn new(client: ::redis::Client, size: usize, timeout: Duration) -> Self {
        Self {
            client,
            size,
            timeout,
            idle: Mutex::new(Idle {
                conns: Vec::with_capacity(size),
                open: 0,
            }),
            freed: Condvar::new(),
            connects: AtomicU64::new(0),
        }
    }

    pub(super) fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// An idle connection, a new one while fewer than `size` are open, or the first one given
    /// back within the timeout.
    pub(super) fn take(&self) -> Result<Taken, String> {
        let deadline = Instant::now() + self.timeout;
        let mut idle = self.idle.lock();
        loop {
            if let Some(c) = idle.conns.pop() {
                return Ok(Taken(c));
            }
            if idle.open < self.size {
                idle.open += 1;
                drop(idle);
                return self.connect().inspect_err(|_| self.idle.lock().open -= 1);
            }
            if self.freed.wait_until(&mut idle, deadline).timed_out() {
                return Err(format!(
                    "all {} connections stayed busy for {:?}",
                    self.size, self.timeout
                ));
            }
        }
    }

    /// An idle connection, or a new one while fewer than `size` are open; `None` when all are
    /// busy (never waits for one).
    pub(super) fn try_take(&self) -> Option<Result<Taken, String>> {
        let mut idle = self.idle.lock();
        if let Some(c) = idle.conns.pop() {
            return Some(Ok(Taken(c)));
        }
        if idle.open < self.size {
            idle.open += 1;
            drop(idle);
            return Some(self.connect().inspect_err(|_| self.idle.lock().open -= 1));
        }
        None
    }

    fn connect(&self) -> Result<Taken, String> {
        self.connects.fetch_add(1, Ordering::Relaxed);
        let c = self
            .client
            .get_connection_with_timeout(self.timeout)
            .map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(self.timeout))
            .and_then(|_| c.set_write_timeout(Some(self.timeout)))
            .map_err(|e| e.to_string())?;
        Ok(Taken(c))
    }

    pub(super) fn put(&self, c: Taken) {
        self.idle.lock().conns.push(c.0);
        self.freed.notify_one();
    }

    pub(super) fn discard(&self, c: Taken) {
        drop(c);
        self.idle.lock().open -= 1;
        self.freed.notify_one();
    }
}
