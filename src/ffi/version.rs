//! Versions, result names and the last error.

use std::ffi::c_char;

use super::boundary::{copy_out, guard, try_buf, try_out, with_last_error};
use super::result::portcullis_result;

/// The ABI version of this header. Bumped whenever a signature, a struct layout or a result
/// value changes; bindings compare it with [`portcullis_abi_version`] at load.
pub const PORTCULLIS_ABI_VERSION: u32 = 2;

/// The library's version, e.g. `"0.1.0"`: a static NUL-terminated string, never freed.
#[no_mangle]
pub extern "C" fn portcullis_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The library's ABI version: compare it with `PORTCULLIS_ABI_VERSION` from the header (or the
/// version a binding was written for) and refuse to run on a mismatch.
#[no_mangle]
pub extern "C" fn portcullis_abi_version() -> u32 {
    PORTCULLIS_ABI_VERSION
}

/// The name of a result code (e.g. `"PORTCULLIS_RESULT_STORE_LOCKED"`): a static
/// NUL-terminated string. An unknown code gives `"PORTCULLIS_RESULT_UNKNOWN"`.
#[no_mangle]
pub extern "C" fn portcullis_result_name(result: u32) -> *const c_char {
    let name = portcullis_result::ALL
        .iter()
        .find(|r| **r as u32 == result)
        .map_or("PORTCULLIS_RESULT_UNKNOWN\0", |r| r.c_name());
    name.as_ptr().cast()
}

/// Copies the message of the last failed call on this thread (UTF-8, no NUL) into `buf`, and
/// its length into `out_len`. Empty when no call has failed yet. Returns
/// `PORTCULLIS_RESULT_INSUFFICIENT_SIZE` (with `out_len` set) when `cap` is too small.
///
/// # Safety
/// `buf` is valid for writes of `cap` bytes (or NULL with `cap` 0); `out_len` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_last_error(
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> portcullis_result {
    // Copying the message must not replace it when the copy fails.
    let message = with_last_error(|m| m.to_owned());
    let code = guard(|| copy_out(message.as_bytes(), try_buf!(buf, cap), try_out!(out_len)));
    if code != portcullis_result::Ok {
        super::boundary::set_last_error(&message);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn result_names_match_their_variants() {
        for r in portcullis_result::ALL {
            // SAFETY: a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(portcullis_result_name(r as u32)) };
            // cbindgen spells a variant PORTCULLIS_RESULT_ + its name in SCREAMING_SNAKE_CASE.
            let mut expected = String::from("PORTCULLIS_RESULT");
            for c in format!("{r:?}").chars() {
                if c.is_ascii_uppercase() {
                    expected.push('_');
                }
                expected.push(c.to_ascii_uppercase());
            }
            assert_eq!(name.to_str().unwrap(), expected);
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(portcullis_result_name(9999)) };
        assert_eq!(unknown.to_str().unwrap(), "PORTCULLIS_RESULT_UNKNOWN");
    }
}
