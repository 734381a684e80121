//! The limiter level: check a policy for a key and a cost.

use crate::config::Config;
use crate::limit::algo::Verdict; // layer: what `FromVerdict` builds the C struct from
use crate::limit::decision::FromVerdict; // layer: the C struct is built from the verdict's nanoseconds (see `Settled`)
use crate::limit::limiter::Settled; // layer: the one check path, answered as the C struct
use crate::{Decision, Error, HeaderStyle, Lease, Limiter, Nanos, PolicyId};

use super::boundary::{
    copy_out, guard, guard_drop, opt_out, take_box, try_buf, try_out, try_ref, try_slice, try_str,
    Failure, FfiResult, Out,
};
use super::handle::Handle;
use super::headers::portcullis_headers;
use super::result::portcullis_result;

/// A keyed rate limiter over the policies of a config. Thread-safe: share one handle between
/// threads; every function taking `const portcullis_limiter *` may run concurrently.
pub struct portcullis_limiter {
    handle: Handle<Limiter>,
}

/// A concurrency lease: give it back with `portcullis_limiter_release` (which frees it), or
/// abandon it with `portcullis_lease_free` (the slot then frees itself after the policy's lease
/// timeout). Not thread-safe; owned by the caller.
pub struct portcullis_lease {
    lease: Lease,
}

/// One policy's verdict on one request. Plain data, copied out.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct portcullis_decision {
    /// The request may proceed (after `delay_ns`).
    pub allowed: bool,
    /// The most a key can have available at once (burst, window limit or leases).
    pub limit: u32,
    /// Units available right after this decision.
    pub remaining: u32,
    /// The policy id that decided.
    pub policy: u32,
    /// Nanoseconds until the key has fully recovered.
    pub reset_after_ns: u64,
    /// Denied: nanoseconds until this request would be allowed. Allowed: until another of the
    /// same cost would be (0 if now).
    pub retry_after_ns: u64,
    /// `Retry-After` in whole seconds, rounded up (never too early).
    pub retry_after_secs: u64,
    /// Shaping: nanoseconds to wait before proceeding; 0 otherwise.
    pub delay_ns: u64,
    /// When it was decided, Unix-epoch nanoseconds.
    pub at_ns: u64,
}

/// Straight from the verdict's nanoseconds, equal to converting its [`Decision`] (tested).
impl FromVerdict for portcullis_decision {
    #[inline(always)]
    fn from_verdict(limit: u32, policy: PolicyId, v: &Verdict, at: u64) -> Self {
        Self {
            allowed: v.allowed,
            limit,
            remaining: u32::try_from(v.remaining).unwrap_or(u32::MAX),
            policy: policy.0,
            reset_after_ns: v.reset_after,
            retry_after_ns: v.retry_after,
            retry_after_secs: v.retry_after.div_ceil(1_000_000_000),
            delay_ns: v.delay,
            at_ns: at,
        }
    }
}

impl From<Decision> for portcullis_decision {
    fn from(d: Decision) -> Self {
        Self::from_verdict(d.limit, d.policy, &d.verdict(), d.at)
    }
}

impl From<&portcullis_decision> for Decision {
    fn from(d: &portcullis_decision) -> Self {
        let v = Verdict {
            allowed: d.allowed,
            remaining: d.remaining.into(),
            reset_after: d.reset_after_ns,
            retry_after: d.retry_after_ns,
            delay: d.delay_ns,
            lease_epoch: 0,
        };
        Decision::from_verdict(d.limit, PolicyId(d.policy), &v, d.at_ns)
    }
}

/// Parses a `portcullis_header_style` value.
pub(crate) fn header_style(style: u32) -> FfiResult<HeaderStyle> {
    match style {
        0 => Ok(HeaderStyle::Legacy),
        1 => Ok(HeaderStyle::Ietf),
        2 => Ok(HeaderStyle::Both),
        3 => Ok(HeaderStyle::RetryAfterOnly),
        _ => Err(Failure::invalid(format!(
            "header style {style} is not one of PORTCULLIS_HEADER_STYLE_* (0 to 3)"
        ))),
    }
}

/// Which rate-limit headers to render (for `portcullis_limiter_headers`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum portcullis_header_style {
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset` and `Retry-After` on a denial.
    Legacy = 0,
    /// IETF `RateLimit-Policy` and `RateLimit` (and `Retry-After` on a denial).
    Ietf = 1,
    /// Both.
    Both = 2,
    /// Only `Retry-After` on a denial.
    RetryAfterOnly = 3,
}

impl portcullis_limiter {
    /// The limiter, unless the handle was closed.
    #[inline(always)]
    fn live(&self) -> FfiResult<&Limiter> {
        self.handle.live()
    }
}

/// The one body of the two opening functions: the limiter of a parsed config, handed out.
fn open(config: Config, out: Out<'_, *mut portcullis_limiter>) -> FfiResult {
    let handle = Handle::new(config.limiter()?);
    out.write(Box::into_raw(Box::new(portcullis_limiter { handle })));
    Ok(())
}

/// Opens a limiter from a config text (TOML, the same format as the gate's: `[store]` and
/// `[[policy]]` are used). With a sled store, restores its counters; the store stays held until
/// `portcullis_limiter_free`. On success writes the new handle to `out_limiter`.
///
/// # Safety
/// `config` is valid for reads of `config_len` bytes; `out_limiter` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_open(
    config: *const u8,
    config_len: usize,
    out_limiter: *mut *mut portcullis_limiter,
) -> portcullis_result {
    guard(|| {
        let out = try_out!(out_limiter);
        open(Config::parse(try_str!(config, config_len))?, out)
    })
}

/// Opens a limiter from a config file (see `portcullis_limiter_open`); errors name the file,
/// line and column.
///
/// # Safety
/// `path` is valid for reads of `path_len` bytes; `out_limiter` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_open_file(
    path: *const u8,
    path_len: usize,
    out_limiter: *mut *mut portcullis_limiter,
) -> portcullis_result {
    guard(|| {
        let out = try_out!(out_limiter);
        open(Config::load(try_str!(path, path_len))?, out)
    })
}

/// The id of a policy by name, for the deciding functions.
///
/// # Safety
/// `limiter` is NULL or live; `name` is valid for reads of `name_len` bytes; `out_policy` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_policy(
    limiter: *const portcullis_limiter,
    name: *const u8,
    name_len: usize,
    out_policy: *mut u32,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let name = try_str!(name, name_len);
        let id = l
            .policy_id(name)
            .ok_or_else(|| Failure::from(Error::UnknownPolicy(name.into())))?;
        try_out!(out_policy).write(id.0);
        Ok(())
    })
}

/// One of the limiter's deciding calls, writing its decision (as the C struct) only when it
/// succeeds. [`decide`] is monomorphised for each, and `run` is `#[inline(always)]`, so each
/// exported function gets its own body with the operation chosen at compile time and the
/// decision written straight into the caller's struct.
trait Op {
    fn run(
        l: &Limiter,
        id: PolicyId,
        key: &[u8],
        cost: u32,
        now: Nanos,
        out: Out<'_, portcullis_decision>,
    ) -> Result<(), Error>;
}

/// `portcullis_limiter_check`: straight from the verdict's nanoseconds into the C struct, not
/// through a `Decision` whose numbers would be worked out again from its state.
struct Check;

impl Op for Check {
    #[inline(always)]
    fn run(
        l: &Limiter,
        id: PolicyId,
        key: &[u8],
        cost: u32,
        now: Nanos,
        out: Out<'_, portcullis_decision>,
    ) -> Result<(), Error> {
        let Settled(decision) = l.check_as::<Settled<portcullis_decision>>(id, key, cost, now)?;
        out.write(decision);
        Ok(())
    }
}

/// An operation answered by a `Limiter` method of the same shape (`peek_at`, `penalize_at`,
/// `refund_at`), its decision converted to the C struct.
macro_rules! decision_op {
    ($(#[$doc:meta] $name:ident => $method:ident;)*) => {$(
        #[$doc]
        struct $name;

        impl Op for $name {
            #[inline(always)]
            fn run(
                l: &Limiter,
                id: PolicyId,
                key: &[u8],
                cost: u32,
                now: Nanos,
                out: Out<'_, portcullis_decision>,
            ) -> Result<(), Error> {
                out.write(l.$method(id, key, cost, now)?.into());
                Ok(())
            }
        }
    )*};
}

decision_op! {
    /// `portcullis_limiter_peek`.
    Peek => peek_at;
    /// `portcullis_limiter_penalize`.
    Penalize => penalize_at;
    /// `portcullis_limiter_refund`.
    Refund => refund_at;
}

/// The one body of the eight deciding functions (check, peek, penalize, refund, each with its
/// `_at` twin), which differ only in `O` and in `now` (`None`: the limiter's clock).
///
/// Each exported function checks `limiter`, then `out_decision`, then `key`: a NULL output is
/// refused before anything is consumed.
#[inline(always)]
fn decide<O: Op>(
    l: &Limiter,
    out: Out<'_, portcullis_decision>,
    policy: u32,
    key: &[u8],
    cost: u32,
    now: Option<Nanos>,
) -> FfiResult {
    let now = now.unwrap_or_else(|| l.now());
    O::run(l, PolicyId(policy), key, cost, now, out)?;
    Ok(())
}

/// Decides a request of `cost` for `key` (any bytes) under `policy`, now, consuming quota when
/// allowed. A denial is a result of OK with `allowed` false.
///
/// # Safety
/// `limiter` is NULL or live; `key` is valid for `key_len` bytes; `out_decision` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_check(
    limiter: *const portcullis_limiter,
    policy: u32,
    key: *const u8,
    key_len: usize,
    cost: u32,
    out_decision: *mut portcullis_decision,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let out = try_out!(out_decision);
        let key = try_slice!(key, key_len);
        decide::<Check>(l, out, policy, key, cost, None)
    })
}

/// `portcullis_limiter_check` at an explicit time, `now_ns` Unix-epoch nanoseconds.
///
/// # Safety
/// As `portcullis_limiter_check`.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_check_at(
    limiter: *const portcullis_limiter,
    policy: u32,
    key: *const u8,
    key_len: usize,
    cost: u32,
    now_ns: u64,
    out_decision: *mut portcullis_decision,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let out = try_out!(out_decision);
        let key = try_slice!(key, key_len);
        decide::<Check>(l, out, policy, key, cost, Some(now_ns))
    })
}

/// What `portcullis_limiter_check` would answer, consuming nothing.
///
/// # Safety
/// As `portcullis_limiter_check`.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_peek(
    limiter: *const portcullis_limiter,
    policy: u32,
    key: *const u8,
    key_len: usize,
    cost: u32,
    out_decision: *mut portcullis_decision,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let out = try_out!(out_decision);
        let key = try_slice!(key, key_len);
        decide::<Peek>(l, out, policy, key, cost, None)
    })
}

/// `portcullis_limiter_peek` at an explicit time.
///
/// # Safety
/// As `portcullis_limiter_check`.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_peek_at(
    limiter: *const portcullis_limiter,
    policy: u32,
    key: *const u8,
    key_len: usize,
    cost: u32,
    now_ns: u64,
    out_decision: *mut portcullis_decision,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let out = try_out!(out_decision);
        let key = try_slice!(key, key_len);
        decide::<Peek>(l, out, policy, key, cost, Some(now_ns))
    })
}

/// Consumes `cost` whatever the verdict (count failed logins only). The decision is what a
/// request of cost 1 would now get.
///
/// # Safety
/// As `portcullis_limiter_check`.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_penalize(
    limiter: *const portcullis_limiter,
    policy: u32,
    key: *const u8,
    key_len: usize,
    cost: u32,
    out_decision: *mut portcullis_decision,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let out = try_out!(out_decision);
        let key = try_slice!(key, key_len);
        decide::<Penalize>(l, out, policy, key, cost, None)
    })
}

/// `portcullis_limiter_penalize` at an explicit time.
///
/// # Safety
/// As `portcullis_limiter_check`.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_penalize_at(
    limiter: *const portcullis_limiter,
    policy: u32,
    key: *const u8,
    key_len: usize,
    cost: u32,
    now_ns: u64,
    out_decision: *mut portcullis_decision,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let out = try_out!(out_decision);
        let key = try_slice!(key, key_len);
        decide::<Penalize>(l, out, policy, key, cost, Some(now_ns))
    })
}

/// Gives back `cost` (the backend failed). Never makes a key fresher than fresh, never lifts a
/// block. The decision is what a request of cost 1 would now get.
///
/// # Safety
/// As `portcullis_limiter_check`.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_refund(
    limiter: *const portcullis_limiter,
    policy: u32,
    key: *const u8,
    key_len: usize,
    cost: u32,
    out_decision: *mut portcullis_decision,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let out = try_out!(out_decision);
        let key = try_slice!(key, key_len);
        decide::<Refund>(l, out, policy, key, cost, None)
    })
}

/// `portcullis_limiter_refund` at an explicit time.
///
/// # Safety
/// As `portcullis_limiter_check`.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_refund_at(
    limiter: *const portcullis_limiter,
    policy: u32,
    key: *const u8,
    key_len: usize,
    cost: u32,
    now_ns: u64,
    out_decision: *mut portcullis_decision,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let out = try_out!(out_decision);
        let key = try_slice!(key, key_len);
        decide::<Refund>(l, out, policy, key, cost, Some(now_ns))
    })
}

/// Forgets a key (unblocks a user). `out_had_state` (may be NULL) tells whether it had state.
///
/// # Safety
/// `limiter` is NULL or live; `key` is valid for `key_len` bytes; `out_had_state` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_reset(
    limiter: *const portcullis_limiter,
    policy: u32,
    key: *const u8,
    key_len: usize,
    out_had_state: *mut bool,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let had = l.reset(PolicyId(policy), try_slice!(key, key_len))?;
        if let Some(out) = opt_out!(out_had_state) {
            out.write(had);
        }
        Ok(())
    })
}

/// The one body of the two acquire functions (`now` `None`: the limiter's clock). Both outputs
/// were checked before: a lease is never taken that could not be handed out.
#[inline(always)]
fn acquire(
    l: &Limiter,
    out_decision: Out<'_, portcullis_decision>,
    out_lease: Out<'_, *mut portcullis_lease>,
    policy: u32,
    key: &[u8],
    cost: u32,
    now: Option<Nanos>,
) -> FfiResult {
    let now = now.unwrap_or_else(|| l.now());
    let (d, lease) = l.acquire_at(PolicyId(policy), key, cost, now)?;
    out_lease.write(lease.map_or(std::ptr::null_mut(), |lease| {
        Box::into_raw(Box::new(portcullis_lease { lease }))
    }));
    out_decision.write(d.into());
    Ok(())
}

/// Takes `cost` leases of a concurrency policy. Allowed: `*out_lease` is a lease to give back
/// with `portcullis_limiter_release`. Denied: `*out_lease` is NULL.
///
/// # Safety
/// `limiter` is NULL or live; `key` is valid for `key_len` bytes; `out_decision` and
/// `out_lease` are writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_acquire(
    limiter: *const portcullis_limiter,
    policy: u32,
    key: *const u8,
    key_len: usize,
    cost: u32,
    out_decision: *mut portcullis_decision,
    out_lease: *mut *mut portcullis_lease,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let out_d = try_out!(out_decision);
        let out_l = try_out!(out_lease);
        let key = try_slice!(key, key_len);
        acquire(l, out_d, out_l, policy, key, cost, None)
    })
}

/// `portcullis_limiter_acquire` at an explicit time.
///
/// # Safety
/// As `portcullis_limiter_acquire`.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_acquire_at(
    limiter: *const portcullis_limiter,
    policy: u32,
    key: *const u8,
    key_len: usize,
    cost: u32,
    now_ns: u64,
    out_decision: *mut portcullis_decision,
    out_lease: *mut *mut portcullis_lease,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let out_d = try_out!(out_decision);
        let out_l = try_out!(out_lease);
        let key = try_slice!(key, key_len);
        acquire(l, out_d, out_l, policy, key, cost, Some(now_ns))
    })
}

/// The one body of the two release functions (`now` `None`: the limiter's clock). The exported
/// functions take the lease back from the caller before they check `limiter`, so it is freed
/// whatever happens next and cannot be released twice.
#[inline(always)]
fn release(lease: Lease, l: &Limiter, now: Option<Nanos>) -> FfiResult {
    let now = now.unwrap_or_else(|| l.now());
    l.release_at(lease, now)?;
    Ok(())
}

/// Gives a lease back, and frees it (also on failure: never use it again).
///
/// # Safety
/// `limiter` is NULL or the live limiter that issued `lease`; `lease` is NULL or not yet freed.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_release(
    limiter: *const portcullis_limiter,
    lease: *mut portcullis_lease,
) -> portcullis_result {
    guard(|| {
        let lease = take_box!(lease).ok_or_else(|| Failure::null("lease"))?;
        release(lease.lease, try_ref!(limiter).live()?, None)
    })
}

/// `portcullis_limiter_release` at an explicit time.
///
/// # Safety
/// As `portcullis_limiter_release`.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_release_at(
    limiter: *const portcullis_limiter,
    lease: *mut portcullis_lease,
    now_ns: u64,
) -> portcullis_result {
    guard(|| {
        let lease = take_box!(lease).ok_or_else(|| Failure::null("lease"))?;
        release(lease.lease, try_ref!(limiter).live()?, Some(now_ns))
    })
}

/// Frees a lease without giving it back: its slot frees itself after the lease timeout. NULL
/// is ignored.
///
/// # Safety
/// `lease` is NULL or not yet freed.
#[no_mangle]
pub unsafe extern "C" fn portcullis_lease_free(lease: *mut portcullis_lease) {
    guard_drop(|| drop(take_box!(lease)));
}

/// Renders the response headers for the decisions that applied to one request (one or more,
/// from this limiter). On success `*out_headers` is a list to free with
/// `portcullis_headers_free`.
///
/// # Safety
/// `limiter` is NULL or live; `decisions` is valid for `count` decisions; `out_headers` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_headers(
    limiter: *const portcullis_limiter,
    style: u32,
    decisions: *const portcullis_decision,
    count: usize,
    out_headers: *mut *mut portcullis_headers,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let out = try_out!(out_headers);
        let style = header_style(style)?;
        let list = try_slice!(decisions, count);
        let mut ds = Vec::with_capacity(list.len());
        for d in list {
            if l.policy(PolicyId(d.policy)).is_none() {
                return Err(Failure::from(Error::BadPolicyId(d.policy)));
            }
            ds.push(Decision::from(d));
        }
        let headers = portcullis_headers::new(l.headers(style, &ds));
        out.write(Box::into_raw(Box::new(headers)));
        Ok(())
    })
}

/// The limiter's counters per policy, as a JSON array, copied into `buf` (UTF-8, no NUL).
/// `PORTCULLIS_RESULT_INSUFFICIENT_SIZE` with `*out_len` set when `cap` is too small.
///
/// # Safety
/// `limiter` is NULL or live; `buf` is valid for `cap` bytes; `out_len` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_stats_json(
    limiter: *const portcullis_limiter,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        let json = serde_json::to_string(&l.stats())
            .map_err(|e| Failure::invalid(format!("stats: {e}")))?;
        copy_out(json.as_bytes(), try_buf!(buf, cap), try_out!(out_len))
    })
}

/// Whether a check may wait on the network (on Redis: up to its `timeout`, then
/// `on_error` answers). Servers whose event loop must never block (nginx, Node.js)
/// refuse such a limiter.
///
/// # Safety
/// `limiter` is NULL or live; `out_may_block` is writable.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_may_block(
    limiter: *const portcullis_limiter,
    out_may_block: *mut bool,
) -> portcullis_result {
    guard(|| {
        let l = try_ref!(limiter).live()?;
        try_out!(out_may_block).write(l.may_block());
        Ok(())
    })
}

/// Writes every counter to the store and makes it durable, then refuses further calls with
/// `PORTCULLIS_RESULT_CLOSED`. Call once, when no other thread uses the handle.
///
/// # Safety
/// `limiter` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_close(
    limiter: *const portcullis_limiter,
) -> portcullis_result {
    guard(|| try_ref!(limiter).handle.close())
}

/// Closes (if not closed) and frees a limiter, releasing its store. NULL is ignored. No other
/// thread may use the handle during or after this call.
///
/// # Safety
/// `limiter` is NULL or a limiter not yet freed.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_free(limiter: *mut portcullis_limiter) {
    // Dropping the handle closes the limiter first if `portcullis_limiter_close` did not.
    guard_drop(|| drop(take_box!(limiter)));
}
#[cfg(test)]
mod tests {
    use super::*;

    /// The C decision built straight from a verdict equals the one converted from its
    /// `Decision`, at the edges of every field.
    #[test]
    fn direct_translation_equals_the_decision_route() {
        let times = [
            0,
            1,
            999_999_999,
            1_000_000_000,
            1_000_000_001,
            u64::MAX - 1,
            u64::MAX,
        ];
        let mut checked = 0;
        for allowed in [false, true] {
            for remaining in [0, 7, u64::from(u32::MAX), u64::from(u32::MAX) + 1] {
                for &reset_after in &times {
                    for &retry_after in &times {
                        for &delay in &times[..3] {
                            let v = Verdict {
                                allowed,
                                remaining,
                                reset_after,
                                retry_after,
                                delay,
                                lease_epoch: 0,
                            };
                            let (limit, policy, at) = (10, PolicyId(3), 1_700_000_000_123_456_789);
                            let direct = portcullis_decision::from_verdict(limit, policy, &v, at);
                            let via = portcullis_decision::from(Decision::from_verdict(
                                limit, policy, &v, at,
                            ));
                            assert_eq!(direct, via, "{v:?}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 4 * 7 * 7 * 3);
    }
}
