//! The boundary every exported function runs behind: panics become
//! [`portcullis_result::Panic`], errors become a code plus this thread's last-error message, and
//! every pointer from C is checked, then read or written, here and nowhere else (the text
//! fields of a request struct too: its module reads them through [`text`], under [`Fields`]).
//!
//! # How the pointers are argued sound
//!
//! Each kind of pointer has one `unsafe fn` below ([`borrow`], [`borrow_mut`], [`out`],
//! [`out_opt`], [`slice`], [`text`], [`out_buf`], [`fields`], [`reclaim`]) whose `# Safety`
//! section is the contract, and one macro (`try_ref!`, `try_mut!`, `try_out!`, `opt_out!`,
//! `try_slice!`, `try_str!`, `try_buf!`, `try_fields!`, `take_box!`) that the rest of `src/ffi/`
//! calls instead, holding the one `unsafe` block. Each macro's block rests on three rules, stated
//! here once rather than at every use:
//!
//! 1. The macro takes an identifier, and is invoked only on a raw-pointer *parameter* of the
//!    `unsafe fn` it appears in (every such function is an exported `unsafe extern "C" fn`),
//!    passed unchanged. The failure message names that parameter (`stringify!`).
//! 2. That function's `# Safety` section, which cbindgen copies into `include/portcullis.h`
//!    for the C caller, names the parameter and promises for it what the helper's `# Safety`
//!    section needs (NULL or live, NULL or writable, valid for `len` bytes...). A caller that
//!    breaks it is outside the contract of the C ABI; the library cannot check it. Sharing is
//!    part of that promise: the handles the header calls thread-safe are `Send + Sync`
//!    (asserted at compile time in `ffi/mod.rs`), so shared references to one from many threads
//!    at once are sound; every other object is documented as not thread-safe, so the caller
//!    promises no other thread uses it during the call.
//! 3. What the helper makes of the pointer (a reference, a slice, an [`Out`]) is used only
//!    during the call: nothing borrowed from the caller outlives the `guard` closure it was made
//!    in, so the lifetime `'a` the helpers leave open is at most the call.
//!
//! Rules 1 and 2 are checked by `pointer_macros_take_documented_parameters` in
//! `tests/ffi_boundary.rs`, which reads `src/ffi/`. So a call site says which contract applies
//! by the macro it uses, and why the precondition holds by its function's `# Safety` line; the
//! helpers do the rest (the NULL check, the length check, the UTF-8 check).
//!
//! The values the helpers hand out carry what was checked: an [`Out`] is a checked-non-NULL,
//! caller-writable pointer, written once, so an output can be checked before any work is done
//! and written after it without another `unsafe`; [`Fields`] is a request struct whose text
//! fields the caller vouched for.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use super::result::portcullis_result;

thread_local! {
    /// The message of the last failed call on this thread.
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A failed call: its code and what to tell the caller.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: portcullis_result,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: portcullis_result, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn null(name: &str) -> Self {
        Self::new(portcullis_result::NullParameter, format!("{name} is NULL"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(portcullis_result::InvalidParameter, message)
    }
}

pub(crate) type FfiResult<T = ()> = Result<T, Failure>;

pub(crate) fn set_last_error(message: &str) {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        e.clear();
        e.push_str(message);
    });
}

pub(crate) fn with_last_error<R>(f: impl FnOnce(&str) -> R) -> R {
    LAST_ERROR.with(|e| f(&e.borrow()))
}

/// Runs `body`; turns its failure or panic into a code and records the message.
#[inline]
pub(crate) fn guard(body: impl FnOnce() -> FfiResult) -> portcullis_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => portcullis_result::Ok,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.code
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error (panic): {what}"));
            portcullis_result::Panic
        }
    }
}

/// Runs a destructor behind the panic boundary; nothing to report.
pub(crate) fn guard_drop(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

// ---- The helpers: every dereference of a pointer from C is in one of these. ----

/// Borrows the object `ptr` points to, or fails naming the parameter. Macro: `try_ref!`.
///
/// # Safety
/// `ptr` is NULL, or points to a live `T` (so aligned and initialised): an object this library
/// handed out and that was not freed, or a struct the caller filled in. Nothing mutates it
/// during 'a except through `T`'s own interior mutability, and if `T` is not `Sync` no other
/// thread uses it during 'a.
#[inline(always)]
pub(crate) unsafe fn borrow<'a, T>(ptr: *const T, name: &str) -> FfiResult<&'a T> {
    // SAFETY: `as_ref` needs `ptr` NULL or pointing to a valid, aligned `T` that stays
    // unmutated (bar interior mutability) for 'a: this function's precondition, word for word.
    // Shared use from other threads is sound because a non-`Sync` `T` is promised unshared.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null(name))
}

/// Borrows the object `ptr` points to exclusively, or fails naming the parameter. Macro:
/// `try_mut!`.
///
/// # Safety
/// `ptr` is NULL, or points to a live `T` (as for [`borrow`]) that nothing else reads or writes
/// during 'a: the caller owns it and hands it to this one call.
#[inline(always)]
pub(crate) unsafe fn borrow_mut<'a, T>(ptr: *mut T, name: &str) -> FfiResult<&'a mut T> {
    // SAFETY: `as_mut` needs `ptr` NULL or pointing to a valid, aligned `T` with no other
    // access for 'a, which is this function's precondition.
    unsafe { ptr.as_mut() }.ok_or_else(|| Failure::null(name))
}

/// An output the caller gave: checked non-NULL, valid for writes of a `T` for the call. Made
/// only by [`out`], so writing it needs no further `unsafe` at the call site; checking an
/// output first and writing it after the work means a NULL output is refused before anything
/// is consumed.
pub(crate) struct Out<'a, T> {
    ptr: NonNull<T>,
    _call: PhantomData<&'a mut T>,
}

impl<T> Out<'_, T> {
    /// Writes the output (without reading or dropping what it held, which may be
    /// uninitialised).
    #[inline(always)]
    pub(crate) fn write(self, value: T) {
        // SAFETY: `ptr::write` needs a pointer valid for an aligned write of a `T`. `self` was
        // made by `out`, whose caller promised exactly that for 'a, and checked non-NULL there;
        // `self` cannot outlive 'a, and nothing else accesses the pointee meanwhile (also
        // promised to `out`).
        unsafe { self.ptr.as_ptr().write(value) }
    }
}

/// Checks an output, or fails naming the parameter. Macro: `try_out!`.
///
/// # Safety
/// `ptr` is NULL, or valid for aligned writes of a `T` during 'a (it need not hold a `T`: it
/// is written, never read), and nothing else reads or writes it during 'a.
#[inline(always)]
pub(crate) unsafe fn out<'a, T>(ptr: *mut T, name: &str) -> FfiResult<Out<'a, T>> {
    match NonNull::new(ptr) {
        Some(ptr) => Ok(Out {
            ptr,
            _call: PhantomData,
        }),
        None => Err(Failure::null(name)),
    }
}

/// An output that may be NULL (not wanted). Macro: `opt_out!`.
///
/// # Safety
/// As [`out`].
#[inline(always)]
pub(crate) unsafe fn out_opt<'a, T>(ptr: *mut T) -> Option<Out<'a, T>> {
    // SAFETY: this function's precondition is `out`'s, passed on with the same pointer.
    unsafe { out(ptr, "") }.ok()
}

/// Borrows `len` consecutive `T`s; a NULL pointer is accepted only with `len == 0`. Macro:
/// `try_slice!`.
///
/// # Safety
/// `ptr` is NULL, or points to `len` consecutive initialised `T`s (so aligned) that nothing
/// mutates during 'a.
#[inline(always)]
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize, name: &str) -> FfiResult<&'a [T]> {
    if ptr.is_null() {
        return match len {
            0 => Ok(&[]),
            _ => Err(Failure::null(name)),
        };
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(Failure::invalid(format!(
            "{name}: length {len} is not a valid length"
        )));
    }
    // SAFETY: `from_raw_parts` needs `ptr` non-NULL (checked) and aligned, valid for reads of
    // `len` initialised `T`s left unmutated for 'a (the precondition), and `len * size_of::<T>()`
    // at most `isize::MAX` (checked just above).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows `len` bytes of UTF-8; bad UTF-8 is `INVALID_UTF8`. Macro: `try_str!`.
///
/// # Safety
/// As [`slice`] for bytes.
#[inline(always)]
pub(crate) unsafe fn text<'a>(ptr: *const u8, len: usize, name: &str) -> FfiResult<&'a str> {
    // SAFETY: this function's precondition is `slice`'s for `u8`, with the same pointer.
    let b = unsafe { slice(ptr, len, name) }?;
    // Request fields are nearly always ASCII, which `is_ascii` checks a word at a time;
    // `from_utf8` checks strings this short byte by byte.
    if b.is_ascii() {
        // SAFETY: `from_utf8_unchecked` needs valid UTF-8, and ASCII (checked on the line
        // above) is valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(b) });
    }
    std::str::from_utf8(b).map_err(|e| {
        Failure::new(
            portcullis_result::InvalidUtf8,
            format!(
                "{name} is not valid UTF-8 (byte {} of {len})",
                e.valid_up_to()
            ),
        )
    })
}

/// A caller's buffer of `cap` bytes, for [`copy_out`]. Unlike an [`Out`] it may be NULL until
/// a byte has to be written into it. Made only by [`out_buf`].
pub(crate) struct OutBuf<'a> {
    ptr: *mut u8,
    cap: usize,
    _call: PhantomData<&'a mut [u8]>,
}

/// A caller's buffer. Macro: `try_buf!`.
///
/// # Safety
/// `ptr` is NULL, or valid for writes of `cap` bytes during 'a, which nothing else reads or
/// writes during 'a.
#[inline(always)]
pub(crate) unsafe fn out_buf<'a>(ptr: *mut u8, cap: usize) -> OutBuf<'a> {
    OutBuf {
        ptr,
        cap,
        _call: PhantomData,
    }
}

/// Copies `data` into a caller buffer and reports the full length in `out_len`. Fails with
/// `InsufficientSize` (having copied nothing) when the buffer is too small.
pub(crate) fn copy_out(data: &[u8], buf: OutBuf<'_>, out_len: Out<'_, usize>) -> FfiResult {
    out_len.write(data.len());
    if data.len() > buf.cap {
        return Err(Failure::new(
            portcullis_result::InsufficientSize,
            format!(
                "the buffer holds {cap} bytes, {} are needed (out_len has the size)",
                data.len(),
                cap = buf.cap
            ),
        ));
    }
    if data.is_empty() {
        return Ok(());
    }
    if buf.ptr.is_null() {
        return Err(Failure::null("buf"));
    }
    // SAFETY: `copy_nonoverlapping` needs `data` readable for `data.len()` bytes (it is a
    // slice), `buf.ptr` valid for writes of as many (non-NULL, checked; `out_buf`'s caller
    // promised `cap` writable bytes and `cap >= data.len()`, checked), and the two regions
    // apart: `out_buf`'s caller also promised nothing else accesses the buffer during the call,
    // so no live slice such as `data` covers it.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf.ptr, data.len()) };
    Ok(())
}

/// A request struct borrowed from the caller, with the caller's word for its text: every
/// [`portcullis_str`](super::portcullis_str) field of it is NULL, or valid for reads of its
/// `len` bytes (initialised, left unmutated) for 'a. Made only by [`fields`]; its text is read
/// by the struct's own module under that invariant (`view` in gate.rs and cors.rs).
pub(crate) struct Fields<'a, T>(&'a T);

impl<'a, T> Fields<'a, T> {
    /// The struct itself.
    #[inline(always)]
    pub(crate) fn get(&self) -> &'a T {
        self.0
    }
}

/// Borrows a request struct and takes the caller's word for its text fields. Macro:
/// `try_fields!`.
///
/// # Safety
/// As [`borrow`] for `ptr`; and every `portcullis_str` field of `*ptr` is NULL, or valid for
/// reads of its `len` bytes, left unmutated, during 'a.
#[inline(always)]
pub(crate) unsafe fn fields<'a, T>(ptr: *const T, name: &str) -> FfiResult<Fields<'a, T>> {
    // SAFETY: this function's precondition includes `borrow`'s, for the same pointer.
    unsafe { borrow(ptr, name) }.map(Fields)
}

/// Takes back an object this library boxed and handed out (for `_free` and `release`); NULL
/// is `None`. Macro: `take_box!`.
///
/// # Safety
/// `ptr` is NULL, or came from `Box::into_raw` of a `Box<T>` made by this library and not
/// taken back since; the caller gives it up: no thread uses it during or after the call.
#[inline(always)]
pub(crate) unsafe fn reclaim<T>(ptr: *mut T) -> Option<Box<T>> {
    match ptr.is_null() {
        true => None,
        // SAFETY: `Box::from_raw` needs a pointer from `Box::into_raw` for the same `T`, not
        // freed since and never used again: this function's precondition for a non-NULL
        // `ptr` (checked).
        false => Some(unsafe { Box::from_raw(ptr) }),
    }
}

// ---- The macros: the only way the rest of `src/ffi/` reaches the helpers above. ----
//
// Each takes a parameter's name and holds one `unsafe` block; its soundness is argued once, in
// the module docs (rules 1 to 3): the parameter's own function promises, in its `# Safety`
// section, what the helper's `# Safety` section needs. `?` returns the failure from the
// enclosing `guard` closure.

/// `try_ref!(p)`: `&*p`, or `NULL_PARAMETER` naming `p`. Contract: [`borrow`].
macro_rules! try_ref {
    ($p:ident) => {
        // SAFETY: `borrow`'s contract, by rules 1-3 of `ffi::boundary`'s docs: `$p` is a
        // parameter of the exported function, whose `# Safety` says it is NULL or live.
        unsafe { $crate::ffi::boundary::borrow($p, stringify!($p)) }?
    };
}

/// `try_mut!(p)`: `&mut *p` for an object the caller owns, or `NULL_PARAMETER` naming `p`.
/// Contract: [`borrow_mut`].
macro_rules! try_mut {
    ($p:ident) => {
        // SAFETY: `borrow_mut`'s contract, by rules 1-3 of `ffi::boundary`'s docs: `$p` is a
        // parameter of the exported function, whose `# Safety` says it is NULL or live and
        // used by no other thread during the call.
        unsafe { $crate::ffi::boundary::borrow_mut($p, stringify!($p)) }?
    };
}

/// `try_out!(p)`: an [`Out`] to write once the work is done, or `NULL_PARAMETER` naming `p`.
/// Contract: [`out`].
macro_rules! try_out {
    ($p:ident) => {
        // SAFETY: `out`'s contract, by rules 1-3 of `ffi::boundary`'s docs: `$p` is a
        // parameter of the exported function, whose `# Safety` says it is writable.
        unsafe { $crate::ffi::boundary::out($p, stringify!($p)) }?
    };
}

/// `opt_out!(p)`: `Some(Out)`, or `None` when `p` is NULL. Contract: [`out_opt`].
macro_rules! opt_out {
    ($p:ident) => {
        // SAFETY: `out_opt`'s contract, by rules 1-3 of `ffi::boundary`'s docs: `$p` is a
        // parameter of the exported function, whose `# Safety` says it is NULL or writable.
        unsafe { $crate::ffi::boundary::out_opt($p) }
    };
}

/// `try_slice!(p, len)`: `len` items at `p` (NULL only with 0), or `NULL_PARAMETER` naming
/// `p`. Contract: [`slice`].
macro_rules! try_slice {
    ($p:ident, $len:ident) => {
        // SAFETY: `slice`'s contract, by rules 1-3 of `ffi::boundary`'s docs: `$p` is a
        // parameter of the exported function, whose `# Safety` says it is valid for `$len`
        // items.
        unsafe { $crate::ffi::boundary::slice($p, $len, stringify!($p)) }?
    };
}

/// `try_str!(p, len)`: `len` bytes of UTF-8 at `p`, or `NULL_PARAMETER`/`INVALID_UTF8` naming
/// `p`. Contract: [`text`].
macro_rules! try_str {
    ($p:ident, $len:ident) => {
        // SAFETY: `text`'s contract, by rules 1-3 of `ffi::boundary`'s docs: `$p` is a
        // parameter of the exported function, whose `# Safety` says it is valid for `$len`
        // bytes.
        unsafe { $crate::ffi::boundary::text($p, $len, stringify!($p)) }?
    };
}

/// `try_buf!(p, cap)`: the caller's buffer for [`copy_out`]. Contract: [`out_buf`].
macro_rules! try_buf {
    ($p:ident, $cap:ident) => {
        // SAFETY: `out_buf`'s contract, by rules 1-3 of `ffi::boundary`'s docs: `$p` is a
        // parameter of the exported function, whose `# Safety` says it is valid for `$cap`
        // bytes.
        unsafe { $crate::ffi::boundary::out_buf($p, $cap) }
    };
}

/// `try_fields!(p)`: a request struct and its text fields, or `NULL_PARAMETER` naming `p`.
/// Contract: [`fields`].
macro_rules! try_fields {
    ($p:ident) => {
        // SAFETY: `fields`' contract, by rules 1-3 of `ffi::boundary`'s docs: `$p` is a
        // parameter of the exported function, whose `# Safety` says it is NULL or a request
        // whose fields are valid.
        unsafe { $crate::ffi::boundary::fields($p, stringify!($p)) }?
    };
}

/// `take_box!(p)`: the object `p` owned by Rust again (`None` for NULL). Contract:
/// [`reclaim`].
macro_rules! take_box {
    ($p:ident) => {
        // SAFETY: `reclaim`'s contract, by rules 1-3 of `ffi::boundary`'s docs: `$p` is a
        // parameter of the exported function, whose `# Safety` says it is NULL or an object
        // of this library not yet freed, given up by the caller.
        unsafe { $crate::ffi::boundary::reclaim($p) }
    };
}

pub(crate) use {
    opt_out, take_box, try_buf, try_fields, try_mut, try_out, try_ref, try_slice, try_str,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_code_and_a_message() {
        let code = guard(|| panic!("boom {}", 42));
        assert_eq!(code, portcullis_result::Panic);
        assert_eq!(
            with_last_error(|m| m.to_owned()),
            "internal error (panic): boom 42"
        );
        // The boundary stays usable after a panic.
        assert_eq!(guard(|| Ok(())), portcullis_result::Ok);
        guard_drop(|| panic!("in a destructor"));
    }

    #[test]
    fn failures_keep_their_code_and_message() {
        let code = guard(|| Err(Failure::invalid("bad style 9")));
        assert_eq!(code, portcullis_result::InvalidParameter);
        assert_eq!(with_last_error(|m| m.to_owned()), "bad style 9");
    }

    #[test]
    fn null_is_an_empty_slice_only_with_length_zero() {
        let bad = [0x66, 0xff];
        // SAFETY: `slice` and `text` get NULL (never read) or a live local array of the length
        // given.
        unsafe {
            assert_eq!(slice::<u8>(std::ptr::null(), 0, "key").unwrap(), b"");
            let e = slice::<u8>(std::ptr::null(), 3, "key").unwrap_err();
            assert_eq!(e.code, portcullis_result::NullParameter);
            assert_eq!(e.message, "key is NULL");
            let e = text(bad.as_ptr(), bad.len(), "name").unwrap_err();
            assert_eq!(e.code, portcullis_result::InvalidUtf8);
            assert!(e.message.contains("byte 1"), "{}", e.message);
        }
    }

    #[test]
    fn lengths_past_isize_are_refused_before_any_read() {
        let one = [0u64; 1];
        // SAFETY: the lengths are refused before `from_raw_parts`, so nothing past `one` is
        // read (the precondition is not met, and the checks are what is tested).
        unsafe {
            let e = slice(one.as_ptr(), usize::MAX, "decisions").unwrap_err();
            assert_eq!(e.code, portcullis_result::InvalidParameter);
            let e = slice(one.as_ptr(), isize::MAX as usize / 8 + 1, "decisions").unwrap_err();
            assert_eq!(e.code, portcullis_result::InvalidParameter);
            let e = text(b"x".as_ptr(), usize::MAX, "key").unwrap_err();
            assert_eq!(
                e.message,
                format!("key: length {} is not a valid length", usize::MAX)
            );
        }
    }

    #[test]
    fn text_takes_ascii_and_other_utf8_alike() {
        for ok in [
            "",
            "GET",
            "/api/v1/things?q=1",
            "caf\u{e9}",
            "\u{1f600} key",
        ] {
            // SAFETY: a live str's bytes, of its length.
            let got = unsafe { text(ok.as_ptr(), ok.len(), "path") }.unwrap();
            assert_eq!(got, ok);
        }
        // An ASCII prefix does not hide a bad byte after it.
        let bad = b"/api/v1/\xc3(";
        // SAFETY: a live array, of its length.
        let e = unsafe { text(bad.as_ptr(), bad.len(), "path") }.unwrap_err();
        assert_eq!(e.code, portcullis_result::InvalidUtf8);
        assert!(e.message.contains("byte 8"), "{}", e.message);
    }

    #[test]
    fn outputs_are_checked_then_written() {
        let mut x = 0u32;
        // SAFETY: NULL, or a live local used by nothing else while the `Out` lives.
        unsafe {
            assert_eq!(
                out::<u32>(std::ptr::null_mut(), "out_x")
                    .err()
                    .unwrap()
                    .message,
                "out_x is NULL"
            );
            assert!(out_opt::<u32>(std::ptr::null_mut()).is_none());
            out(&mut x, "out_x").unwrap().write(7);
        }
        assert_eq!(x, 7);
        // SAFETY: NULL is never dereferenced; a box made here is taken back once.
        unsafe {
            assert!(reclaim::<u32>(std::ptr::null_mut()).is_none());
            let b = reclaim(Box::into_raw(Box::new(5u32))).unwrap();
            assert_eq!(*b, 5);
        }
    }

    #[test]
    fn copy_out_reports_the_size_needed() {
        let mut buf = [0u8; 4];
        let mut len = 0usize;
        // SAFETY: `buf` and `len` are live locals of the sizes given, used by nothing else
        // while the `OutBuf` and `Out` live.
        unsafe {
            let e = copy_out(
                b"hello",
                out_buf(buf.as_mut_ptr(), buf.len()),
                out(&mut len, "out_len").unwrap(),
            )
            .unwrap_err();
            assert_eq!(e.code, portcullis_result::InsufficientSize);
            assert_eq!(len, 5);
            assert_eq!(buf, [0; 4], "nothing is copied into a short buffer");
            copy_out(
                b"hey",
                out_buf(buf.as_mut_ptr(), buf.len()),
                out(&mut len, "out_len").unwrap(),
            )
            .unwrap();
            assert_eq!((len, &buf[..3]), (3, &b"hey"[..]));
            // A NULL buffer is fine for an empty copy, not for a byte.
            copy_out(
                b"",
                out_buf(std::ptr::null_mut(), 0),
                out(&mut len, "out_len").unwrap(),
            )
            .unwrap();
            let e = copy_out(
                b"a",
                out_buf(std::ptr::null_mut(), 8),
                out(&mut len, "out_len").unwrap(),
            )
            .unwrap_err();
            assert_eq!(e.message, "buf is NULL");
        }
    }
}
