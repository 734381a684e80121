//! Header lists handed to C: owned names and values, read by index.

use super::boundary::{borrow, guard, guard_drop, write_out, Failure, FfiResult};
use super::portcullis_str;
use super::result::portcullis_result;

/// Response headers to add, owned by the caller until `portcullis_headers_free`. Not
/// thread-safe; names and values stay valid until it is freed.
pub struct portcullis_headers {
    pub(crate) list: Vec<(&'static str, String)>,
}

impl portcullis_headers {
    pub(crate) fn new(list: Vec<(&'static str, String)>) -> Self {
        Self { list }
    }
}

/// Writes header `index` (`found`, out of `count`) to `out_name` and `out_value`, borrowed from
/// the object it came from.
pub(crate) fn header_at(
    found: Option<(&str, &str)>,
    index: usize,
    count: usize,
    out_name: *mut portcullis_str,
    out_value: *mut portcullis_str,
) -> FfiResult {
    super::boundary::need_out(out_name, "out_name")?;
    super::boundary::need_out(out_value, "out_value")?;
    let (name, value) = found.ok_or_else(|| {
        Failure::new(
            portcullis_result::OutOfRange,
            format!("header index {index} is past the end ({count} headers)"),
        )
    })?;
    let view = |s: &str| portcullis_str {
        ptr: s.as_ptr(),
        len: s.len(),
    };
    // SAFETY: both checked non-NULL above; the caller promises they are writable.
    unsafe {
        write_out(out_name, "out_name", view(name))?;
        write_out(out_value, "out_value", view(value))
    }
}

/// The number of headers in `headers`.
///
/// # Safety
/// `headers` is NULL or a live list; `out_count` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_headers_count(
    headers: *const portcullis_headers,
    out_count: *mut usize,
) -> portcullis_result {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { borrow(headers, "headers") }?;
        // SAFETY: forwarded from the caller.
        unsafe { write_out(out_count, "out_count", h.list.len()) }
    })
}

/// Header `index` (from 0) of `headers`: its name and value, borrowed from the list.
/// `PORTCULLIS_RESULT_OUT_OF_RANGE` past the end.
///
/// # Safety
/// `headers` is NULL or a live list; the out-pointers are writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_headers_get(
    headers: *const portcullis_headers,
    index: usize,
    out_name: *mut portcullis_str,
    out_value: *mut portcullis_str,
) -> portcullis_result {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { borrow(headers, "headers") }?;
        let found = h.list.get(index).map(|(n, v)| (*n, v.as_str()));
        header_at(found, index, h.list.len(), out_name, out_value)
    })
}

/// Frees a header list. NULL is ignored.
///
/// # Safety
/// `headers` is NULL or a list not yet freed.
#[no_mangle]
pub unsafe extern "C" fn portcullis_headers_free(headers: *mut portcullis_headers) {
    guard_drop(|| {
        if !headers.is_null() {
            // SAFETY: the caller gives back a list this library boxed.
            drop(unsafe { Box::from_raw(headers) });
        }
    });
}
