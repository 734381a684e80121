//! The C ABI (`include/portcullis.h`): a translation of the Rust API, deciding nothing itself.
//!
//! Conventions, the same for every function:
//!
//! * Every fallible function returns a [`portcullis_result`]; `PORTCULLIS_RESULT_OK` is 0.
//!   Outputs go through out-pointers, written only on success. On failure,
//!   [`portcullis_last_error`] gives this thread's message.
//! * Text and bytes cross as (pointer, length) and never need a NUL. A NULL pointer is accepted
//!   only with a length of 0. Text must be UTF-8.
//! * No panic crosses the boundary: one becomes `PORTCULLIS_RESULT_PANIC`.
//! * Handles (`portcullis_gate`, `portcullis_limiter`, `portcullis_cors`) are thread-safe: every
//!   function taking a `const` handle may be called from any number of threads at once. Each
//!   handle has one `_free`, which accepts NULL. Objects returned by a call (outcomes,
//!   decisions, header lists, leases) belong to the caller and are not thread-safe.
//! * A handle with a sled store holds its folder for the life of the handle: do not `fork()`
//!   after opening one.

#![allow(non_camel_case_types)]

mod boundary;
mod cors;
mod gate;
mod headers;
mod limiter;
mod result;
mod version;

pub use cors::*;
pub use gate::*;
pub use headers::*;
pub use limiter::*;
pub use result::portcullis_result;
pub use version::*;

/// A borrowed byte string: `ptr` to `len` bytes, no NUL needed. `ptr` NULL (with `len` 0) means
/// "absent" where a field is optional.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct portcullis_str {
    /// The first byte, or NULL.
    pub ptr: *const u8,
    /// The number of bytes.
    pub len: usize,
}

impl portcullis_str {
    /// Reads an optional text field: NULL is `None`.
    ///
    /// # Safety
    /// `ptr` is NULL or valid for reads of `len` bytes for 'a.
    #[inline]
    unsafe fn optional<'a>(self, name: &str) -> boundary::FfiResult<Option<&'a str>> {
        match self.ptr.is_null() {
            true => Ok(None),
            // SAFETY: forwarded from the caller.
            false => unsafe { boundary::text(self.ptr, self.len, name) }.map(Some),
        }
    }

    /// Reads a required text field.
    ///
    /// # Safety
    /// As [`portcullis_str::optional`].
    #[inline]
    unsafe fn required<'a>(self, name: &str) -> boundary::FfiResult<&'a str> {
        // SAFETY: forwarded from the caller.
        unsafe { self.optional(name) }?.ok_or_else(|| boundary::Failure::null(name))
    }
}
