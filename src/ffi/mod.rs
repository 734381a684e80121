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
//!
//! Words of the `# Safety` sections (which the header repeats for C; see docs/C_ABI.md): a pointer to a handle or
//! object is *live* from the call that handed it out until its `_free` (or, for a lease,
//! `portcullis_limiter_release`); *writable* means valid for a write of the pointee's type and
//! used by nothing else during the call; *valid for `len` bytes* means readable and left
//! unchanged during the call.
//!
//! Every exported function is a thin shell: its body runs behind `boundary::guard`, its
//! pointers go through the `try_*!` macros of the `boundary` module (whose docs argue why each
//! `unsafe` there is sound), and an operation with an `_at` twin has one `#[inline(always)]`
//! body both call. Nothing else here dereferences a pointer.

#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod boundary;
mod cors;
mod gate;
mod handle;
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
    /// A view of `s`, borrowed from whatever owns it (for outputs).
    #[inline]
    pub(crate) fn of(s: &str) -> Self {
        Self {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// Reads an optional text field: NULL is `None`.
    ///
    /// # Safety
    /// `self.ptr` is NULL, or valid for reads of `self.len` bytes, left unmutated, for 'a.
    #[inline]
    unsafe fn optional<'a>(self, name: &str) -> boundary::FfiResult<Option<&'a str>> {
        match self.ptr.is_null() {
            true => Ok(None),
            // SAFETY: `text` needs `ptr` NULL or valid for `len` bytes for 'a: this function's
            // precondition for the same pointer and length.
            false => unsafe { boundary::text(self.ptr, self.len, name) }.map(Some),
        }
    }

    /// Reads a required text field: NULL is `NULL_PARAMETER`.
    ///
    /// # Safety
    /// As [`portcullis_str::optional`].
    #[inline]
    unsafe fn required<'a>(self, name: &str) -> boundary::FfiResult<&'a str> {
        // SAFETY: this function's precondition is `optional`'s, for the same `self`.
        unsafe { self.optional(name) }?.ok_or_else(|| boundary::Failure::null(name))
    }
}

/// The handles the header calls thread-safe are `Send + Sync`, so the shared references the
/// boundary makes to them from any number of threads at once are sound.
const _: () = {
    const fn thread_safe<T: Send + Sync>() {}
    thread_safe::<portcullis_limiter>();
    thread_safe::<portcullis_gate>();
    thread_safe::<portcullis_cors>();
};
