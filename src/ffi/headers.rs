//! Header lists handed to C: owned names and values, read by index.

use super::boundary::{guard, guard_drop, take_box, try_out, try_ref, Failure, FfiResult, Out};
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
/// the object it came from. The outputs were checked before the index.
pub(crate) fn header_at(
    found: Option<(&str, &str)>,
    index: usize,
    count: usize,
    out_name: Out<'_, portcullis_str>,
    out_value: Out<'_, portcullis_str>,
) -> FfiResult {
    let (name, value) = found.ok_or_else(|| {
        Failure::new(
            portcullis_result::OutOfRange,
            format!("header index {index} is past the end ({count} headers)"),
        )
    })?;
    out_name.write(portcullis_str::of(name));
    out_value.write(portcullis_str::of(value));
    Ok(())
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
        let h = try_ref!(headers);
        try_out!(out_count).write(h.list.len());
        Ok(())
    })
}

/// Header `index` (from 0) of `headers`: its name and value, borrowed from the list.
/// `PORTCULLIS_RESULT_OUT_OF_RANGE` past the end.
///
/// # Safety
/// `headers` is NULL or a live list; `out_name` and `out_value` are writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_headers_get(
    headers: *const portcullis_headers,
    index: usize,
    out_name: *mut portcullis_str,
    out_value: *mut portcullis_str,
) -> portcullis_result {
    guard(|| {
        let h = try_ref!(headers);
        let found = h.list.get(index).map(|(n, v)| (*n, v.as_str()));
        let name = try_out!(out_name);
        let value = try_out!(out_value);
        header_at(found, index, h.list.len(), name, value)
    })
}

/// Frees a header list. NULL is ignored.
///
/// # Safety
/// `headers` is NULL or a list not yet freed.
#[no_mangle]
pub unsafe extern "C" fn portcullis_headers_free(headers: *mut portcullis_headers) {
    guard_drop(|| drop(take_box!(headers)));
}
