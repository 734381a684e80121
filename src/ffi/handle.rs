//! What the two closable handles, `portcullis_limiter` and `portcullis_gate`, share: the
//! object, whether `_close` has run, `_close` itself, and the close that `_free` does when
//! `_close` was not called.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Error, Gate, Limiter};

use super::boundary::{Failure, FfiResult};
use super::result::portcullis_result;

/// An object a thread-safe handle owns: shared by reference between the caller's threads, so
/// it must be `Sync` (and `Send`, as the thread that frees it need not be the one that opened
/// it).
pub(crate) trait Closable: Send + Sync {
    /// The message of `PORTCULLIS_RESULT_CLOSED` for this kind of handle.
    const CLOSED: &'static str;

    /// Writes everything to the store and makes it durable.
    fn close(&self) -> Result<(), Error>;
}

impl Closable for Limiter {
    const CLOSED: &'static str = "the limiter was closed: only portcullis_limiter_free may follow";

    fn close(&self) -> Result<(), Error> {
        Limiter::close(self)
    }
}

impl Closable for Gate {
    const CLOSED: &'static str = "the gate was closed: only portcullis_gate_free may follow";

    fn close(&self) -> Result<(), Error> {
        Gate::close(self)
    }
}

/// A handle's object and whether `_close` has run. Dropping it (in `_free`) closes the object
/// first if `_close` did not.
pub(crate) struct Handle<T: Closable> {
    inner: T,
    closed: AtomicBool,
}

impl<T: Closable> Handle<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            closed: AtomicBool::new(false),
        }
    }

    /// The object, unless the handle was closed.
    #[inline(always)]
    pub(crate) fn live(&self) -> FfiResult<&T> {
        match self.closed.load(Ordering::Acquire) {
            true => Err(Failure::new(portcullis_result::Closed, T::CLOSED)),
            false => Ok(&self.inner),
        }
    }

    /// `_close`: closes the object, then refuses every further call.
    pub(crate) fn close(&self) -> FfiResult {
        self.live()?.close()?;
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}

impl<T: Closable> Drop for Handle<T> {
    fn drop(&mut self) {
        if !*self.closed.get_mut() {
            // `_free` has no result to report a failure with; `_close` does.
            let _ = self.inner.close();
        }
    }
}
