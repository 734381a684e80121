//! The CORS level: decide a request under the `[cors]` policy of a config.

use crate::config::Config;
use crate::cors::{CorsPolicy, CorsRequest, RequestKind};

use super::boundary::{
    guard, guard_drop, take_box, try_fields, try_out, try_ref, try_str, Failure, FfiResult, Fields,
};
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
        let out = try_out!(out_cors);
        let config = Config::parse(try_str!(config, config_len))?;
        let policy = config.cors_policy()?.ok_or_else(|| {
            Failure::new(
                portcullis_result::InvalidCorsPolicy,
                "the config has no [cors] table: add one with at least allowed_origins",
            )
        })?;
        out.write(Box::into_raw(Box::new(portcullis_cors { policy })));
        Ok(())
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
        let c = try_ref!(cors);
        let request = try_fields!(request);
        let out = try_out!(out_decision);
        let d = c.policy.decide(&request.view()?);
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
        out.write(Box::into_raw(Box::new(decision)));
        Ok(())
    })
}

impl<'a> Fields<'a, portcullis_cors_request> {
    /// The request as the CORS engine reads it: `method` is required, the rest optional.
    fn view(&self) -> FfiResult<CorsRequest<'a>> {
        let r = self.get();
        // SAFETY: `optional` and `required` need their field NULL or valid for reads of its
        // length for 'a. Each call reads a `portcullis_str` field of `r`, and a `Fields` holds
        // the caller's promise (made to `fields`) that every such field of `r` is.
        unsafe {
            Ok(CorsRequest {
                method: r.method.required("request.method")?,
                origin: r.origin.optional("request.origin")?,
                access_control_request_method: r
                    .request_method
                    .optional("request.request_method")?,
                access_control_request_headers: r
                    .request_headers
                    .optional("request.request_headers")?,
                access_control_request_private_network: r.private_network,
            })
        }
    }
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
        let d = try_ref!(decision);
        try_out!(out_info).write(d.info);
        Ok(())
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
        let d = try_ref!(decision);
        try_out!(out_reason).write(portcullis_str::of(&d.reason));
        Ok(())
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
        let d = try_ref!(decision);
        try_out!(out_count).write(d.headers.len());
        Ok(())
    })
}

/// Header `index` (from 0) to add: name and value, borrowed from the decision.
/// `PORTCULLIS_RESULT_OUT_OF_RANGE` past the end.
///
/// # Safety
/// `decision` is NULL or live; `out_name` and `out_value` are writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_cors_decision_header(
    decision: *const portcullis_cors_decision,
    index: usize,
    out_name: *mut portcullis_str,
    out_value: *mut portcullis_str,
) -> portcullis_result {
    guard(|| {
        let d = try_ref!(decision);
        let found = d.headers.get(index).map(|(n, v)| (*n, v.as_str()));
        let name = try_out!(out_name);
        let value = try_out!(out_value);
        header_at(found, index, d.headers.len(), name, value)
    })
}

/// Frees a decision. NULL is ignored.
///
/// # Safety
/// `decision` is NULL or a decision not yet freed.
#[no_mangle]
pub unsafe extern "C" fn portcullis_cors_decision_free(decision: *mut portcullis_cors_decision) {
    guard_drop(|| drop(take_box!(decision)));
}

/// Frees a CORS policy. NULL is ignored. No other thread may use it during or after this call.
///
/// # Safety
/// `cors` is NULL or a policy not yet freed.
#[no_mangle]
pub unsafe extern "C" fn portcullis_cors_free(cors: *mut portcullis_cors) {
    guard_drop(|| drop(take_box!(cors)));
}
