//! The boundary every exported function runs behind: panics become
//! [`portcullis_result::Panic`], errors become a code plus this thread's last-error message, and
//! pointers are checked before they are read.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

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

/// Borrows a handle, or fails naming the parameter.
///
/// # Safety
/// `ptr` is NULL or points to a live `T`.
#[inline]
pub(crate) unsafe fn borrow<'a, T>(ptr: *const T, name: &str) -> FfiResult<&'a T> {
    // SAFETY: the caller promises `ptr` is NULL or valid for 'a.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null(name))
}

/// Writes an output, or fails naming the parameter.
///
/// # Safety
/// `ptr` is NULL or valid for a write of `T`.
#[inline]
pub(crate) unsafe fn write_out<T>(ptr: *mut T, name: &str, value: T) -> FfiResult {
    if ptr.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: checked non-NULL; the caller promises it is valid and aligned.
    unsafe { ptr.write(value) };
    Ok(())
}

/// An output as a reference, or a failure naming the parameter.
///
/// # Safety
/// `ptr` is NULL or valid, aligned and unaliased for writes of `T` for 'a.
#[inline]
pub(crate) unsafe fn out_mut<'a, T>(ptr: *mut T, name: &str) -> FfiResult<&'a mut T> {
    // SAFETY: the caller promises a valid, aligned, unaliased pointer when non-NULL.
    unsafe { ptr.as_mut() }.ok_or_else(|| Failure::null(name))
}

/// Checks an out-pointer before work is done, so nothing is lost on a NULL output.
#[inline]
pub(crate) fn need_out<T>(ptr: *mut T, name: &str) -> FfiResult {
    match ptr.is_null() {
        true => Err(Failure::null(name)),
        false => Ok(()),
    }
}

/// Borrows `len` bytes; a NULL pointer is accepted only with `len == 0`.
///
/// # Safety
/// `ptr` is NULL or valid for reads of `len` bytes for 'a.
#[inline]
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize, name: &str) -> FfiResult<&'a [u8]> {
    if ptr.is_null() {
        return match len {
            0 => Ok(&[]),
            _ => Err(Failure::null(name)),
        };
    }
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!(
            "{name}: length {len} is not a valid length"
        )));
    }
    // SAFETY: non-NULL, length in range; the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows `len` bytes of UTF-8.
///
/// # Safety
/// As [`bytes`].
#[inline]
pub(crate) unsafe fn text<'a>(ptr: *const u8, len: usize, name: &str) -> FfiResult<&'a str> {
    // SAFETY: forwarded from the caller.
    let b = unsafe { bytes(ptr, len, name) }?;
    // Request fields are nearly always ASCII, which `is_ascii` checks a word at a time;
    // `from_utf8` checks strings this short byte by byte.
    if b.is_ascii() {
        // SAFETY: ASCII is UTF-8.
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

/// Copies `data` into a caller buffer of `cap` bytes and reports the full length in `out_len`.
/// Fails with `InsufficientSize` (having copied nothing) when the buffer is too small.
///
/// # Safety
/// `buf` is NULL or valid for writes of `cap` bytes; `out_len` is NULL or writable.
pub(crate) unsafe fn copy_out(
    data: &[u8],
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    unsafe { write_out(out_len, "out_len", data.len()) }?;
    if data.len() > cap {
        return Err(Failure::new(
            portcullis_result::InsufficientSize,
            format!(
                "the buffer holds {cap} bytes, {} are needed (out_len has the size)",
                data.len()
            ),
        ));
    }
    if data.is_empty() {
        return Ok(());
    }
    if buf.is_null() {
        return Err(Failure::null("buf"));
    }
    // SAFETY: `buf` holds at least `cap >= data.len()` bytes; the regions cannot overlap since
    // `data` is owned by the library.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len()) };
    Ok(())
}

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
        // SAFETY: NULL pointers are checked before any read.
        unsafe {
            assert_eq!(bytes(std::ptr::null(), 0, "key").unwrap(), b"");
            let e = bytes(std::ptr::null(), 3, "key").unwrap_err();
            assert_eq!(e.code, portcullis_result::NullParameter);
            assert_eq!(e.message, "key is NULL");
            let bad = [0x66, 0xff];
            let e = text(bad.as_ptr(), bad.len(), "name").unwrap_err();
            assert_eq!(e.code, portcullis_result::InvalidUtf8);
            assert!(e.message.contains("byte 1"), "{}", e.message);
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
            // SAFETY: a live str's bytes.
            let got = unsafe { text(ok.as_ptr(), ok.len(), "path") }.unwrap();
            assert_eq!(got, ok);
        }
        // An ASCII prefix does not hide a bad byte after it.
        let bad = b"/api/v1/\xc3(";
        // SAFETY: a live array.
        let e = unsafe { text(bad.as_ptr(), bad.len(), "path") }.unwrap_err();
        assert_eq!(e.code, portcullis_result::InvalidUtf8);
        assert!(e.message.contains("byte 8"), "{}", e.message);
    }

    #[test]
    fn copy_out_reports_the_size_needed() {
        let mut buf = [0u8; 4];
        let mut len = 0usize;
        // SAFETY: `buf` and `len` are live locals of the sizes given.
        unsafe {
            let e = copy_out(b"hello", buf.as_mut_ptr(), buf.len(), &mut len).unwrap_err();
            assert_eq!(e.code, portcullis_result::InsufficientSize);
            assert_eq!(len, 5);
            assert_eq!(buf, [0; 4], "nothing is copied into a short buffer");
            copy_out(b"hey", buf.as_mut_ptr(), buf.len(), &mut len).unwrap();
            assert_eq!((len, &buf[..3]), (3, &b"hey"[..]));
        }
    }
}
