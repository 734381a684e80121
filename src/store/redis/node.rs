//! One Redis server the store talks to (the server of the URL, or one master of a cluster):
//! its connections, its queue of calls, and whether it answers.

use std::sync::Arc;
use std::time::Duration;

use super::batch::{Batcher, Job};
use super::health::Health;
use super::pool::Pool;

pub(super) struct Node {
    /// `host:port`, as a cluster names it.
    pub(super) addr: String,
    pub(super) pool: Pool,
    pub(super) batcher: Batcher,
    pub(super) health: Health,
}

impl Node {
    pub(super) fn new(
        addr: String,
        client: ::redis::Client,
        size: usize,
        timeout: Duration,
    ) -> Self {
        Node {
            addr,
            pool: Pool::new(client, size, timeout),
            batcher: Batcher::new(),
            health: Health::new(),
        }
    }

    /// Runs a queued call (with whatever else is queued) and returns its reply.
    pub(super) fn run(&self, job: Arc<Job>, timeout: Duration) -> Result<::redis::Value, String> {
        self.batcher.run(&self.pool, job, timeout)
    }

    /// Runs one call after `ASKING`, on a connection of its own: the answer to an `ASK`
    /// redirect, for one key of a slot being migrated to this node.
    pub(super) fn asking(&self, job: &Job) -> Result<::redis::Value, String> {
        let mut conn = self.pool.take()?;
        match Batcher::asking(conn.get(), job) {
            Ok(answer) => {
                self.pool.put(conn);
                answer
            }
            Err(broken) => {
                self.pool.discard(conn);
                Err(broken)
            }
        }
    }

    /// `SCRIPT LOAD`s a script now, so a script the server refuses is an error at open.
    pub(super) fn load(&self, source: &str) -> Result<(), String> {
        let mut conn = self
            .pool
            .take()
            .map_err(|e| format!("cannot connect: {e}"))?;
        let sha: ::redis::RedisResult<String> = ::redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(source)
            .query(conn.get());
        match sha {
            Ok(_) => {
                self.pool.put(conn);
                Ok(())
            }
            Err(e) => Err(format!("refused a script: {e}")),
        }
    }

    /// One command on a connection of the pool, outside the queue (setup and rare calls).
    pub(super) fn query<T: ::redis::FromRedisValue>(
        &self,
        cmd: &::redis::Cmd,
    ) -> Result<T, String> {
        let mut conn = self.pool.take()?;
        match cmd.query::<T>(conn.get()) {
            Ok(v) => {
                self.pool.put(conn);
                Ok(v)
            }
            Err(e) => {
                // A broken or timed-out connection may hold a late reply: never reuse it.
                let broken = e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_unrecoverable_error();
                if broken {
                    self.pool.discard(conn);
                } else {
                    self.pool.put(conn);
                }
                Err(e.to_string())
            }
        }
    }
}
