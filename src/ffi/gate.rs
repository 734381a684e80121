//! The gate level: one call per request, CORS and every limit of its route.

use std::cell::OnceCell;
use std::net::IpAddr;

use crate::config::{Config, KeyKind};
use crate::gate::{Action, Gate, GateRequest, MetricsFormat, Outcome, Reason};

use super::boundary::{
    copy_out, guard, guard_drop, opt_out, take_box, try_buf, try_fields, try_mut, try_out, try_ref,
    try_str, Failure, FfiResult, Fields, Out,
};
use super::handle::Handle;
use super::headers::header_at;
use super::portcullis_str;
use super::result::portcullis_result;

/// CORS and rate limiting for every request, from one config. Thread-safe: share one handle
/// between threads; every function taking `const portcullis_gate *` may run concurrently.
pub struct portcullis_gate {
    handle: Handle<Gate>,
}

/// The gate's answer to one request, owned by the caller. Not thread-safe. It holds the
/// request's concurrency leases: free it (or call `portcullis_outcome_release`) when the
/// response is done, not before.
pub struct portcullis_outcome {
    outcome: Outcome,
    /// The reason as a sentence, rendered when first asked for.
    reason: OnceCell<String>,
}

/// One request, borrowed for the call. Optional fields are absent when their `ptr` is NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct portcullis_request {
    /// The method, case-sensitive (required).
    pub method: portcullis_str,
    /// The path; a query string is ignored (required).
    pub path: portcullis_str,
    /// The `Origin` header.
    pub origin: portcullis_str,
    /// The `Access-Control-Request-Method` header.
    pub request_method: portcullis_str,
    /// The `Access-Control-Request-Headers` header (repeated ones joined with `,`).
    pub request_headers: portcullis_str,
    /// The address the request came from as text (`203.0.113.9`, `2001:db8::1`): the TCP peer
    /// (nginx `$remote_addr`). Absent (NULL) when there is none: a route limited by address
    /// then refuses the request, or skips the limit with `on_missing_key = "skip"`; such
    /// requests never share one bucket.
    pub client_ip: portcullis_str,
    /// The authenticated user id or API key; absent for anonymous traffic.
    pub principal: portcullis_str,
    /// The principal's tier (`free`, `premium`, ...).
    pub tier: portcullis_str,
    /// Whether `Access-Control-Request-Private-Network: true` was sent.
    pub private_network: bool,
    /// The `X-Forwarded-For` header (repeated ones joined with `,`): read only when
    /// `client_ip` is a trusted proxy (`trusted_proxies` in the config).
    pub forwarded_for: portcullis_str,
    /// The RFC 7239 `Forwarded` header (repeated ones joined with `,`): read only when
    /// `client_ip` is a trusted proxy; preferred over `forwarded_for`.
    pub forwarded: portcullis_str,
}

/// What to do with a request.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum portcullis_action {
    /// Call the handler (after `delay_ns`) and add the headers to its response.
    Pass = 0,
    /// An allowed preflight: answer 204 with the headers; do not call the handler.
    Preflight = 1,
    /// Refused by CORS: answer 403 with the headers.
    Forbidden = 2,
    /// Rate limited: answer 429 with the headers.
    Limited = 3,
}

/// The numbers of an outcome. Plain data, copied out.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct portcullis_outcome_info {
    /// What to do.
    pub action: portcullis_action,
    /// The status to answer with: 204, 403 or 429; 0 when the handler answers.
    pub status: u16,
    /// Shaping: nanoseconds to wait before calling the handler.
    pub delay_ns: u64,
    /// On a 429: `Retry-After` in whole seconds, rounded up; 0 otherwise.
    pub retry_after_secs: u64,
    /// The fewest units remaining among the enforced limits that applied (`UINT32_MAX` when
    /// no limit applied).
    pub remaining: u32,
    /// The limit of that policy (0 when none applied).
    pub limit: u32,
    /// Concurrency leases held until the outcome is freed or released.
    pub leases: u32,
}

/// Which key a reset names (for `portcullis_gate_reset`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum portcullis_key_kind {
    /// A client address (text).
    Ip = 0,
    /// A principal (user id or API key).
    Principal = 1,
    /// A route, by its `match` text.
    Route = 2,
    /// The one key of a global limit.
    Global = 3,
}

fn key_kind(kind: u32) -> FfiResult<KeyKind> {
    match kind {
        0 => Ok(KeyKind::Ip),
        1 => Ok(KeyKind::Principal),
        2 => Ok(KeyKind::Route),
        3 => Ok(KeyKind::Global),
        _ => Err(Failure::invalid(format!(
            "key kind {kind} is not one of PORTCULLIS_KEY_KIND_* (0 to 3)"
        ))),
    }
}

/// Which text format `portcullis_gate_metrics` renders.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum portcullis_metrics_format {
    /// The Prometheus text format 0.0.4: serve as `text/plain; version=0.0.4`.
    Prometheus = 0,
    /// OpenMetrics 1.0: serve as `application/openmetrics-text; version=1.0.0`.
    OpenMetrics = 1,
}

fn metrics_format(format: u32) -> FfiResult<MetricsFormat> {
    match format {
        0 => Ok(MetricsFormat::Prometheus),
        1 => Ok(MetricsFormat::OpenMetrics),
        _ => Err(Failure::invalid(format!(
            "metrics format {format} is not one of PORTCULLIS_METRICS_FORMAT_* (0 or 1)"
        ))),
    }
}

impl portcullis_gate {
    /// The gate, unless the handle was closed.
    #[inline(always)]
    fn live(&self) -> FfiResult<&Gate> {
        self.handle.live()
    }
}

impl portcullis_outcome {
    fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            reason: OnceCell::new(),
        }
    }
}

/// The one body of the two opening functions: the gate of a parsed config, handed out.
fn open(config: Config, out: Out<'_, *mut portcullis_gate>) -> FfiResult {
    let handle = Handle::new(Gate::new(config)?);
    out.write(Box::into_raw(Box::new(portcullis_gate { handle })));
    Ok(())
}

/// Opens a gate from a config text (TOML). Every error in it is reported at once, each with
/// its line and column (`portcullis_last_error`). With a sled store, restores its counters and
/// holds the folder until `portcullis_gate_free`.
///
/// # Safety
/// `config` is valid for reads of `config_len` bytes; `out_gate` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_open(
    config: *const u8,
    config_len: usize,
    out_gate: *mut *mut portcullis_gate,
) -> portcullis_result {
    guard(|| {
        let out = try_out!(out_gate);
        open(Config::parse(try_str!(config, config_len))?, out)
    })
}

/// Opens a gate from a config file; errors name the file, line and column.
///
/// # Safety
/// `path` is valid for reads of `path_len` bytes; `out_gate` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_open_file(
    path: *const u8,
    path_len: usize,
    out_gate: *mut *mut portcullis_gate,
) -> portcullis_result {
    guard(|| {
        let out = try_out!(out_gate);
        open(Config::load(try_str!(path, path_len))?, out)
    })
}

/// Applies a new config text to a running gate, keeping the counters of unchanged policies.
/// An invalid config is refused and the old one keeps running.
///
/// # Safety
/// `gate` is NULL or live; `config` is valid for reads of `config_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_reload(
    gate: *const portcullis_gate,
    config: *const u8,
    config_len: usize,
) -> portcullis_result {
    guard(|| {
        let g = try_ref!(gate).live()?;
        g.reload(Config::parse(try_str!(config, config_len))?)?;
        Ok(())
    })
}

impl<'a> Fields<'a, portcullis_request> {
    /// The request as the gate reads it: `method` and `path` are required, the rest optional;
    /// `client_ip` must parse as an address.
    fn view(&self) -> FfiResult<GateRequest<'a>> {
        let r = self.get();
        // SAFETY: `optional` and `required` need their field NULL or valid for reads of its
        // length for 'a. Each call reads a `portcullis_str` field of `r`, and a `Fields` holds
        // the caller's promise (made to `fields`) that every such field of `r` is.
        unsafe {
            let client_ip = match r.client_ip.optional("request.client_ip")? {
                None => None,
                Some(ip) => Some(ip.trim().parse::<IpAddr>().map_err(|_| {
                    Failure::invalid(format!("request.client_ip {ip:?} is not an IP address"))
                })?),
            };
            Ok(GateRequest {
                method: r.method.required("request.method")?,
                path: r.path.required("request.path")?,
                origin: r.origin.optional("request.origin")?,
                request_method: r.request_method.optional("request.request_method")?,
                request_headers: r.request_headers.optional("request.request_headers")?,
                request_private_network: r.private_network,
                client_ip,
                principal: r.principal.optional("request.principal")?,
                tier: r.tier.optional("request.tier")?,
                forwarded_for: r.forwarded_for.optional("request.forwarded_for")?,
                forwarded: r.forwarded.optional("request.forwarded")?,
                // A C front end passes the tier it vouches for in `tier`.
                tier_claim: None,
            })
        }
    }
}

/// The one body of `portcullis_gate_decide` and `portcullis_gate_decide_at` (`now` `None`: the
/// gate's clock). The request's text is read after the output was checked.
#[inline(always)]
fn decide(
    g: &Gate,
    request: Fields<'_, portcullis_request>,
    out: Out<'_, *mut portcullis_outcome>,
    now: Option<u64>,
) -> FfiResult {
    let req = request.view()?;
    let outcome = match now {
        Some(now) => g.decide_at(&req, now),
        None => g.decide(&req),
    };
    out.write(Box::into_raw(Box::new(portcullis_outcome::new(outcome))));
    Ok(())
}

/// The one body of `portcullis_gate_decide_into` and `portcullis_gate_decide_into_at` (`now`
/// `None`: the gate's clock).
#[inline(always)]
fn decide_into(
    g: &Gate,
    request: Fields<'_, portcullis_request>,
    o: &mut portcullis_outcome,
    now: Option<u64>,
) -> FfiResult {
    let req = request.view()?;
    let now = now.unwrap_or_else(|| g.now());
    g.decide_into(&req, now, &mut o.outcome);
    o.reason = OnceCell::new();
    Ok(())
}

/// Creates an empty outcome to decide into with `portcullis_gate_decide_into`, again and
/// again (one per worker thread, say): no allocation per request once its buffers have grown.
/// Free it with `portcullis_outcome_free`.
///
/// # Safety
/// `out_outcome` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_outcome_new(
    out_outcome: *mut *mut portcullis_outcome,
) -> portcullis_result {
    guard(|| {
        let out = try_out!(out_outcome);
        let outcome = portcullis_outcome::new(Outcome::new());
        out.write(Box::into_raw(Box::new(outcome)));
        Ok(())
    })
}

/// Decides one request now into `outcome`, replacing what it held: its earlier concurrency
/// leases are released first, and strings borrowed from it become invalid. On a failure the
/// outcome is left empty or as it was.
///
/// # Safety
/// `gate` is NULL or live; `request` is NULL or a request whose fields are valid; `outcome` is
/// NULL or an outcome the caller owns, used by no other thread during the call.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_decide_into(
    gate: *const portcullis_gate,
    request: *const portcullis_request,
    outcome: *mut portcullis_outcome,
) -> portcullis_result {
    guard(|| {
        let g = try_ref!(gate).live()?;
        let request = try_fields!(request);
        let outcome = try_mut!(outcome);
        decide_into(g, request, outcome, None)
    })
}

/// `portcullis_gate_decide_into` at an explicit time, `now_ns` Unix-epoch nanoseconds.
///
/// # Safety
/// As `portcullis_gate_decide_into`.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_decide_into_at(
    gate: *const portcullis_gate,
    request: *const portcullis_request,
    now_ns: u64,
    outcome: *mut portcullis_outcome,
) -> portcullis_result {
    guard(|| {
        let g = try_ref!(gate).live()?;
        let request = try_fields!(request);
        let outcome = try_mut!(outcome);
        decide_into(g, request, outcome, Some(now_ns))
    })
}

/// Decides one request now. On success `*out_outcome` is an outcome to read and free with
/// `portcullis_outcome_free` (a 429 or 403 is a result of OK: read the verdict).
///
/// # Safety
/// `gate` is NULL or live; `request` is NULL or a request whose fields are valid; `out_outcome`
/// is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_decide(
    gate: *const portcullis_gate,
    request: *const portcullis_request,
    out_outcome: *mut *mut portcullis_outcome,
) -> portcullis_result {
    guard(|| {
        let g = try_ref!(gate).live()?;
        let request = try_fields!(request);
        let out = try_out!(out_outcome);
        decide(g, request, out, None)
    })
}

/// `portcullis_gate_decide` at an explicit time, `now_ns` Unix-epoch nanoseconds.
///
/// # Safety
/// As `portcullis_gate_decide`.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_decide_at(
    gate: *const portcullis_gate,
    request: *const portcullis_request,
    now_ns: u64,
    out_outcome: *mut *mut portcullis_outcome,
) -> portcullis_result {
    guard(|| {
        let g = try_ref!(gate).live()?;
        let request = try_fields!(request);
        let out = try_out!(out_outcome);
        decide(g, request, out, Some(now_ns))
    })
}

/// Forgets a key's state under a policy (unblocks a user). `key` is an IP address for
/// `PORTCULLIS_KEY_KIND_IP`, the principal, the route's `match`, or anything for global.
/// `out_had_state` (may be NULL) tells whether the key had state.
///
/// # Safety
/// `gate` is NULL or live; `policy` and `key` are valid for their lengths; `out_had_state` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_reset(
    gate: *const portcullis_gate,
    policy: *const u8,
    policy_len: usize,
    kind: u32,
    key: *const u8,
    key_len: usize,
    out_had_state: *mut bool,
) -> portcullis_result {
    guard(|| {
        let g = try_ref!(gate).live()?;
        let policy = try_str!(policy, policy_len);
        let key = try_str!(key, key_len);
        let had = g.reset(policy, key_kind(kind)?, key)?;
        if let Some(out) = opt_out!(out_had_state) {
            out.write(had);
        }
        Ok(())
    })
}

/// The gate's counters (per route and limit, per policy, top limited keys, recent denials) as
/// JSON, copied into `buf` (UTF-8, no NUL). `PORTCULLIS_RESULT_INSUFFICIENT_SIZE` with
/// `*out_len` set when `cap` is too small.
///
/// # Safety
/// `gate` is NULL or live; `buf` is valid for `cap` bytes; `out_len` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_stats_json(
    gate: *const portcullis_gate,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> portcullis_result {
    guard(|| {
        let g = try_ref!(gate).live()?;
        let json = serde_json::to_string(&g.stats())
            .map_err(|e| Failure::invalid(format!("stats: {e}")))?;
        copy_out(json.as_bytes(), try_buf!(buf, cap), try_out!(out_len))
    })
}

/// The gate's metrics (decisions by policy and outcome, CORS refusals, table occupancy,
/// evictions, leases, the store's writer) in the text `format` (a
/// `portcullis_metrics_format`), copied into `buf` (UTF-8, no NUL): what a `/metrics`
/// endpoint serves. With a shared store the counters are those of every process using it.
/// `PORTCULLIS_RESULT_INSUFFICIENT_SIZE` with `*out_len` set when `cap` is too small (the
/// counters may have grown by the next call: leave room).
///
/// # Safety
/// `gate` is NULL or live; `buf` is valid for `cap` bytes; `out_len` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_metrics(
    gate: *const portcullis_gate,
    format: u32,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> portcullis_result {
    guard(|| {
        let g = try_ref!(gate).live()?;
        let format = metrics_format(format)?;
        let mut text = String::with_capacity(8192);
        g.write_metrics(&mut text, format)
            .map_err(|e| Failure::invalid(format!("metrics: {e}")))?;
        copy_out(text.as_bytes(), try_buf!(buf, cap), try_out!(out_len))
    })
}

/// Copies this process's counters to the shared store's board now, so that a scrape served
/// by another process counts them (nothing to do without a shared store). Decisions do it at
/// most once a second; a server whose workers may sit idle calls it from a timer.
///
/// # Safety
/// `gate` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_publish_metrics(
    gate: *const portcullis_gate,
) -> portcullis_result {
    guard(|| {
        try_ref!(gate).live()?.publish_metrics();
        Ok(())
    })
}

/// Whether a decision may wait on the network (on Redis: up to its `timeout`, then
/// `on_error` answers). Servers whose event loop must never block (nginx, Node.js)
/// refuse such a gate.
///
/// # Safety
/// `gate` is NULL or live; `out_may_block` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_may_block(
    gate: *const portcullis_gate,
    out_may_block: *mut bool,
) -> portcullis_result {
    guard(|| {
        let g = try_ref!(gate).live()?;
        try_out!(out_may_block).write(g.may_block());
        Ok(())
    })
}

/// Writes every counter to the store and makes it durable, then refuses further calls with
/// `PORTCULLIS_RESULT_CLOSED`. Call once, when no other thread uses the handle.
///
/// # Safety
/// `gate` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_close(gate: *const portcullis_gate) -> portcullis_result {
    guard(|| try_ref!(gate).handle.close())
}

/// Closes (if not closed) and frees a gate, releasing its store. NULL is ignored. Outcomes
/// already returned stay valid. No other thread may use the handle during or after this call.
///
/// # Safety
/// `gate` is NULL or a gate not yet freed.
#[no_mangle]
pub unsafe extern "C" fn portcullis_gate_free(gate: *mut portcullis_gate) {
    // Dropping the handle closes the gate first if `portcullis_gate_close` did not.
    guard_drop(|| drop(take_box!(gate)));
}

/// The numbers of an outcome.
///
/// # Safety
/// `outcome` is NULL or live; `out_info` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_outcome_get_info(
    outcome: *const portcullis_outcome,
    out_info: *mut portcullis_outcome_info,
) -> portcullis_result {
    guard(|| {
        let o = &try_ref!(outcome).outcome;
        let enforced = o.applied().iter().filter(|a| !a.shadow);
        let tightest = enforced.min_by_key(|a| (a.decision.allowed, a.decision.remaining()));
        let limited = o.action() == Action::Limited;
        let info = portcullis_outcome_info {
            action: match o.action() {
                Action::Pass => portcullis_action::Pass,
                Action::Preflight => portcullis_action::Preflight,
                Action::Forbidden => portcullis_action::Forbidden,
                Action::Limited => portcullis_action::Limited,
            },
            status: o.status_code().unwrap_or(0),
            delay_ns: u64::try_from(o.delay().as_nanos()).unwrap_or(u64::MAX),
            retry_after_secs: match (limited, tightest) {
                (true, Some(a)) => a.decision.retry_after_secs(),
                _ => 0,
            },
            remaining: tightest.map_or(u32::MAX, |a| a.decision.remaining()),
            limit: tightest.map_or(0, |a| a.decision.limit),
            leases: u32::try_from(o.leases().len()).unwrap_or(u32::MAX),
        };
        try_out!(out_info).write(info);
        Ok(())
    })
}

/// Why the gate decided so, as a sentence (e.g. `limited by policy login for ip:203.0.113.9 on
/// route POST /login`), borrowed from the outcome.
///
/// # Safety
/// `outcome` is NULL or live; `out_reason` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_outcome_reason(
    outcome: *const portcullis_outcome,
    out_reason: *mut portcullis_str,
) -> portcullis_result {
    guard(|| {
        let o = try_ref!(outcome);
        let reason = o.reason.get_or_init(|| o.outcome.reason().to_string());
        try_out!(out_reason).write(portcullis_str::of(reason));
        Ok(())
    })
}

/// Whether the outcome was decided by a policy (limited): writes the policy name, borrowed
/// from the outcome; an empty string otherwise.
///
/// # Safety
/// `outcome` is NULL or live; `out_policy` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_outcome_limited_by(
    outcome: *const portcullis_outcome,
    out_policy: *mut portcullis_str,
) -> portcullis_result {
    guard(|| {
        let o = try_ref!(outcome);
        let name = match o.outcome.reason() {
            Reason::Limited { policy, .. } => policy.as_str(),
            _ => "",
        };
        try_out!(out_policy).write(portcullis_str::of(name));
        Ok(())
    })
}

/// The number of headers to add to the response.
///
/// # Safety
/// `outcome` is NULL or live; `out_count` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_outcome_header_count(
    outcome: *const portcullis_outcome,
    out_count: *mut usize,
) -> portcullis_result {
    guard(|| {
        let o = try_ref!(outcome);
        try_out!(out_count).write(o.outcome.headers().len());
        Ok(())
    })
}

/// Header `index` (from 0) to add: name and value, borrowed from the outcome. A `Vary` value is
/// to be appended to the response's own `Vary`. `PORTCULLIS_RESULT_OUT_OF_RANGE` past the end.
///
/// # Safety
/// `outcome` is NULL or live; `out_name` and `out_value` are writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_outcome_header(
    outcome: *const portcullis_outcome,
    index: usize,
    out_name: *mut portcullis_str,
    out_value: *mut portcullis_str,
) -> portcullis_result {
    guard(|| {
        let o = try_ref!(outcome);
        let (found, count) = (o.outcome.header_at(index), o.outcome.headers().len());
        let name = try_out!(out_name);
        let value = try_out!(out_value);
        header_at(found, index, count, name, value)
    })
}

/// Gives the outcome's concurrency leases back now (the response is done); the outcome stays
/// readable.
///
/// # Safety
/// `outcome` is NULL or live, used by no other thread during the call.
#[no_mangle]
pub unsafe extern "C" fn portcullis_outcome_release(
    outcome: *mut portcullis_outcome,
) -> portcullis_result {
    guard(|| {
        try_mut!(outcome).outcome.take_leases().release();
        Ok(())
    })
}

/// Frees an outcome, giving back any lease it still holds. NULL is ignored.
///
/// # Safety
/// `outcome` is NULL or an outcome not yet freed.
#[no_mangle]
pub unsafe extern "C" fn portcullis_outcome_free(outcome: *mut portcullis_outcome) {
    guard_drop(|| drop(take_box!(outcome)));
}
