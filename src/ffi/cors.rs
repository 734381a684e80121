//! The CORS level: decide a request under the `[cors]` policy of a config.

use crate::config::Config;
use crate::cors::{CorsPolicy, CorsRequest, RequestKind};

use super::boundary::{borrow, guard, guard_drop, need_out, text, write_out, Failure};
use super::headers::header_at;
use super::portcullis_str;
use super::result::portcullis_result;

/// A validated CORS policy. Thread-safe: decide from any number of threads at once.
pub struct portcullis_cors {
    policy: CorsPolicy,
}

/// One CORS decision, owned by the caller; not thread-safe.
pub struct portcullis_cors_decision {
    info: portcullis_cors_info,
    reason: String,
    headers: Vec<(&'static str, String)>,
}

/// A request's CORS headers, borrowed for the call. Optional fields are absent when their
/// `ptr` is NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct portcullis_cors_request {
    /// The method, case-sensitive (required).
    pub method: portcullis_str,
    /// The `Origin` header.
    pub origin: portcullis_str,
    /// The `Access-Control-Request-Method` header.
    pub request_method: portcullis_str,
    /// The `Access-Control-Request-Headers` header (repeated ones joined with `,`).
    pub request_headers: portcullis_str,
    /// Whether `Access-Control-Request-Private-Network: true` was sent.
    pub private_network: bool,
}

/// The kind of request, as the Fetch standard classifies it.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum portcullis_cors_kind {
    /// No `Origin`: not a CORS request.
    NotCors = 0,
    /// `OPTIONS` with `Origin` and `Access-Control-Request-Method`: answer it yourself.
    Preflight = 1,
    /// Any other request with `Origin`: call the handler and add the headers.
    Actual = 2,
}

/// The numbers of a CORS decision. Plain data, copied out.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct portcullis_cors_info {
    /// The kind of request.
    pub kind: portcullis_cors_kind,
    /// Whether the request is allowed (always for a request that is not CORS).
    pub allowed: bool,
    /// For a preflight: 204 when allowed, 403 when refused. 0 for other requests.
    pub status: u16,
}

/// Builds the CORS policy of a config text's `[cors]` table. A config without one is
/// `PORTCULLIS_RESULT_INVALID_CORS_POLICY`.
///
/// # Safety
/// `config` is valid for reads of `config_len` bytes; `out_cors` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_cors_open(
    config: *const u8,
    config_len: usize,
    out_cors: *mut *mut portcullis_cors,
) -> portcullis_result {
    guard(|| {
        need_out(out_cors, "out_cors")?;
        // SAFETY: forwarded from the caller.
        let text = unsafe { text(config, config_len, "config") }?;
        let policy = Config::parse(text)?.cors_policy()?.ok_or_else(|| {
            Failure::new(
                portcullis_result::InvalidCorsPolicy,
                "the config has no [cors] table: add one with at least allowed_origins",
            )
        })?;
        let handle = Box::into_raw(Box::new(portcullis_cors { policy }));
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { write_out(out_cors, "out_cors", handle) }
    })
}

/// Decides one request. On success `*out_decision` is a decision to free with
/// `portcullis_cors_decision_free` (a refusal is a result of OK: read `allowed`).
///
/// # Safety
/// `cors` is NULL or live; `request` is NULL or a request whose fields are valid;
/// `out_decision` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_cors_decide(
    cors: *const portcullis_cors,
    request: *const portcullis_cors_request,
    out_decision: *mut *mut portcullis_cors_decision,
) -> portcullis_result {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let c = unsafe { borrow(cors, "cors") }?;
        // SAFETY: forwarded from the caller.
        let r = unsafe { borrow(request, "request") }?;
        need_out(out_decision, "out_decision")?;
        // SAFETY (all fields): the caller promises every non-NULL field is valid.
        let req = CorsRequest {
            method: unsafe { r.method.required("request.method") }?,
            origin: unsafe { r.origin.optional("request.origin") }?,
            access_control_request_method: unsafe {
                r.request_method.optional("request.request_method")
            }?,
            access_control_request_headers: unsafe {
                r.request_headers.optional("request.request_headers")
            }?,
            access_control_request_private_network: r.private_network,
        };
        let d = c.policy.decide(&req);
        let decision = portcullis_cors_decision {
            info: portcullis_cors_info {
                kind: match d.kind() {
                    RequestKind::NotCors => portcullis_cors_kind::NotCors,
                    RequestKind::Preflight => portcullis_cors_kind::Preflight,
                    RequestKind::Actual => portcullis_cors_kind::Actual,
                },
                allowed: d.is_allowed(),
                status: d.status().unwrap_or(0),
            },
            reason: d.reason().map(|r| r.to_string()).unwrap_or_default(),
            headers: d.headers().map(|(n, v)| (n, v.to_owned())).collect(),
        };
        let handle = Box::into_raw(Box::new(decision));
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { write_out(out_decision, "out_decision", handle) }
    })
}

/// The numbers of a decision.
///
/// # Safety
/// `decision` is NULL or live; `out_info` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_cors_decision_get_info(
    decision: *const portcullis_cors_decision,
    out_info: *mut portcullis_cors_info,
) -> portcullis_result {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let d = unsafe { borrow(decision, "decision") }?;
        // SAFETY: forwarded from the caller.
        unsafe { write_out(out_info, "out_info", d.info) }
    })
}

/// Why a refused request was refused, as a sentence (empty when allowed), borrowed from the
/// decision.
///
/// # Safety
/// `decision` is NULL or live; `out_reason` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_cors_decision_reason(
    decision: *const portcullis_cors_decision,
    out_reason: *mut portcullis_str,
) -> portcullis_result {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let d = unsafe { borrow(decision, "decision") }?;
        let view = portcullis_str {
            ptr: d.reason.as_ptr(),
            len: d.reason.len(),
        };
        // SAFETY: forwarded from the caller.
        unsafe { write_out(out_reason, "out_reason", view) }
    })
}

/// The number of headers to add.
///
/// # Safety
/// `decision` is NULL or live; `out_count` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_cors_decision_header_count(
    decision: *const portcullis_cors_decision,
    out_count: *mut usize,
) -> portcullis_result {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let d = unsafe { borrow(decision, "decision") }?;
        // SAFETY: forwarded from the caller.
        unsafe { write_out(out_count, "out_count", d.headers.len()) }
    })
}

/// Header `index` (from 0) to add: name and value, borrowed from the decision.
/// `PORTCULLIS_RESULT_OUT_OF_RANGE` past the end.
///
/// # Safety
/// `decision` is NULL or live; the out-pointers are writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_cors_decision_header(
    decision: *const portcullis_cors_decision,
    index: usize,
    out_name: *mut portcullis_str,
    out_value: *mut portcullis_str,
) -> portcullis_result {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let d = unsafe { borrow(decision, "decision") }?;
        let found = d.headers.get(index).map(|(n, v)| (*n, v.as_str()));
        header_at(found, index, d.headers.len(), out_name, out_value)
    })
}

/// Frees a decision. NULL is ignored.
///
/// # Safety
/// `decision` is NULL or a decision not yet freed.
#[no_mangle]
pub unsafe extern "C" fn portcullis_cors_decision_free(decision: *mut portcullis_cors_decision) {
    guard_drop(|| {
        if !decision.is_null() {
            // SAFETY: the caller gives back a decision this library boxed.
            drop(unsafe { Box::from_raw(decision) });
        }
    });
}

/// Frees a CORS policy. NULL is ignored. No other thread may use it during or after this call.
///
/// # Safety
/// `cors` is NULL or a policy not yet freed.
#[no_mangle]
pub unsafe extern "C" fn portcullis_cors_free(cors: *mut portcullis_cors) {
    guard_drop(|| {
        if !cors.is_null() {
            // SAFETY: the caller gives back a policy this library boxed.
            drop(unsafe { Box::from_raw(cors) });
        }
    });
}
