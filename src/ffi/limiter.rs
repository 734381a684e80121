//! The limiter level: check a policy for a key and a cost.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::limit::algo::Verdict; // layer: what `FromVerdict` builds the C struct from
use crate::limit::decision::FromVerdict; // layer: the C struct is built from the verdict's nanoseconds (see `Settled`)
use crate::limit::limiter::Settled; // layer: the one check path, answered as the C struct
use crate::{Decision, HeaderStyle, Lease, Limiter, Nanos, PolicyId};

use super::boundary::{
    borrow, bytes, copy_out, guard, guard_drop, need_out, out_mut, text, write_out, Failure,
    FfiResult,
};
use super::headers::portcullis_headers;
use super::result::portcullis_result;

/// A keyed rate limiter over the policies of a config. Thread-safe: share one handle between
/// threads; every function taking `const portcullis_limiter *` may run concurrently.
pub struct portcullis_limiter {
    limiter: Limiter,
    closed: AtomicBool,
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
    fn open(limiter: Limiter) -> Box<Self> {
        Box::new(Self {
            limiter,
            closed: AtomicBool::new(false),
        })
    }

    #[inline]
    fn live(&self) -> FfiResult<&Limiter> {
        match self.closed.load(Ordering::Acquire) {
            true => Err(Failure::new(
                portcullis_result::Closed,
                "the limiter was closed: only portcullis_limiter_free may follow",
            )),
            false => Ok(&self.limiter),
        }
    }
}

/// Borrows a live limiter.
///
/// # Safety
/// `ptr` is NULL or a live limiter.
#[inline]
unsafe fn live<'a>(ptr: *const portcullis_limiter) -> FfiResult<&'a Limiter> {
    // SAFETY: forwarded from the caller.
    unsafe { borrow(ptr, "limiter") }?.live()
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
        need_out(out_limiter, "out_limiter")?;
        // SAFETY: forwarded from the caller.
        let text = unsafe { text(config, config_len, "config") }?;
        let limiter = Config::parse(text)?.limiter()?;
        let handle = Box::into_raw(portcullis_limiter::open(limiter));
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { write_out(out_limiter, "out_limiter", handle) }
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
        need_out(out_limiter, "out_limiter")?;
        // SAFETY: forwarded from the caller.
        let path = unsafe { text(path, path_len, "path") }?;
        let limiter = Config::load(path)?.limiter()?;
        let handle = Box::into_raw(portcullis_limiter::open(limiter));
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { write_out(out_limiter, "out_limiter", handle) }
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
        // SAFETY: forwarded from the caller.
        let l = unsafe { live(limiter) }?;
        // SAFETY: forwarded from the caller.
        let name = unsafe { text(name, name_len, "name") }?;
        let id = l
            .policy_id(name)
            .ok_or_else(|| Failure::from(crate::Error::UnknownPolicy(name.into())))?;
        // SAFETY: forwarded from the caller.
        unsafe { write_out(out_policy, "out_policy", id.0) }
    })
}

/// What each deciding function does with the limiter.
#[derive(Clone, Copy)]
enum Op {
    Check,
    Peek,
    Penalize,
    Refund,
}

/// What a deciding call asks: a policy, a key and a cost.
#[derive(Clone, Copy)]
struct Ask {
    policy: u32,
    key: *const u8,
    key_len: usize,
    cost: u32,
}

/// Shared body of the deciding functions. Each exported function passes its `op` as a
/// constant, so each gets its own body with the operation chosen at compile time.
///
/// # Safety
/// As the exported functions: live handle, readable key, writable output.
#[inline(always)]
unsafe fn decide(
    limiter: *const portcullis_limiter,
    op: Op,
    ask: Ask,
    now: Option<Nanos>,
    out: *mut portcullis_decision,
) -> portcullis_result {
    fn answer(
        out: &mut portcullis_decision,
        d: Result<Decision, crate::Error>,
    ) -> Result<(), crate::Error> {
        *out = d?.into();
        Ok(())
    }
    // SAFETY (each arm): forwarded from the caller.
    match op {
        // Built straight from the verdict's nanoseconds, not through a `Decision` whose numbers
        // would be worked out again from its state.
        Op::Check => unsafe {
            decide_with(limiter, ask, now, out, |l, id, key, cost, now, out| {
                *out = l
                    .check_as::<Settled<portcullis_decision>>(id, key, cost, now)?
                    .0;
                Ok(())
            })
        },
        Op::Peek => unsafe {
            decide_with(limiter, ask, now, out, |l, id, key, cost, now, out| {
                answer(out, l.peek_at(id, key, cost, now))
            })
        },
        Op::Penalize => unsafe {
            decide_with(limiter, ask, now, out, |l, id, key, cost, now, out| {
                answer(out, l.penalize_at(id, key, cost, now))
            })
        },
        Op::Refund => unsafe {
            decide_with(limiter, ask, now, out, |l, id, key, cost, now, out| {
                answer(out, l.refund_at(id, key, cost, now))
            })
        },
    }
}

/// The checks every deciding function makes, then `op`, which writes the decision into the
/// output only when it succeeds.
///
/// # Safety
/// As [`decide`].
#[inline(always)]
unsafe fn decide_with(
    limiter: *const portcullis_limiter,
    ask: Ask,
    now: Option<Nanos>,
    out: *mut portcullis_decision,
    op: impl FnOnce(
        &Limiter,
        PolicyId,
        &[u8],
        u32,
        Nanos,
        &mut portcullis_decision,
    ) -> Result<(), crate::Error>,
) -> portcullis_result {
    guard(move || {
        // SAFETY: forwarded from the caller.
        let l = unsafe { live(limiter) }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { out_mut(out, "out_decision") }?;
        // SAFETY: forwarded from the caller.
        let key = unsafe { bytes(ask.key, ask.key_len, "key") }?;
        let now = now.unwrap_or_else(|| l.now());
        Ok(op(l, PolicyId(ask.policy), key, ask.cost, now, out)?)
    })
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
    // SAFETY: forwarded from the caller.
    unsafe {
        decide(
            limiter,
            Op::Check,
            Ask {
                policy,
                key,
                key_len,
                cost,
            },
            None,
            out_decision,
        )
    }
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
    // SAFETY: forwarded from the caller.
    unsafe {
        decide(
            limiter,
            Op::Check,
            Ask {
                policy,
                key,
                key_len,
                cost,
            },
            Some(now_ns),
            out_decision,
        )
    }
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
    // SAFETY: forwarded from the caller.
    unsafe {
        decide(
            limiter,
            Op::Peek,
            Ask {
                policy,
                key,
                key_len,
                cost,
            },
            None,
            out_decision,
        )
    }
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
    // SAFETY: forwarded from the caller.
    unsafe {
        decide(
            limiter,
            Op::Peek,
            Ask {
                policy,
                key,
                key_len,
                cost,
            },
            Some(now_ns),
            out_decision,
        )
    }
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
    // SAFETY: forwarded from the caller.
    unsafe {
        decide(
            limiter,
            Op::Penalize,
            Ask {
                policy,
                key,
                key_len,
                cost,
            },
            None,
            out_decision,
        )
    }
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
    // SAFETY: forwarded from the caller.
    unsafe {
        decide(
            limiter,
            Op::Penalize,
            Ask {
                policy,
                key,
                key_len,
                cost,
            },
            Some(now_ns),
            out_decision,
        )
    }
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
    // SAFETY: forwarded from the caller.
    unsafe {
        decide(
            limiter,
            Op::Refund,
            Ask {
                policy,
                key,
                key_len,
                cost,
            },
            None,
            out_decision,
        )
    }
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
    // SAFETY: forwarded from the caller.
    unsafe {
        decide(
            limiter,
            Op::Refund,
            Ask {
                policy,
                key,
                key_len,
                cost,
            },
            Some(now_ns),
            out_decision,
        )
    }
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
        // SAFETY: forwarded from the caller.
        let l = unsafe { live(limiter) }?;
        // SAFETY: forwarded from the caller.
        let key = unsafe { bytes(key, key_len, "key") }?;
        let had = l.reset(PolicyId(policy), key)?;
        if !out_had_state.is_null() {
            // SAFETY: non-NULL; the caller promises it is writable.
            unsafe { out_had_state.write(had) };
        }
        Ok(())
    })
}

/// Shared body of the acquire functions.
///
/// # Safety
/// As `portcullis_limiter_acquire`.
#[inline]
unsafe fn acquire(
    limiter: *const portcullis_limiter,
    ask: Ask,
    now: Option<Nanos>,
    out_decision: *mut portcullis_decision,
    out_lease: *mut *mut portcullis_lease,
) -> portcullis_result {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let l = unsafe { live(limiter) }?;
        need_out(out_decision, "out_decision")?;
        need_out(out_lease, "out_lease")?;
        // SAFETY: forwarded from the caller.
        let key = unsafe { bytes(ask.key, ask.key_len, "key") }?;
        let now = now.unwrap_or_else(|| l.now());
        let (d, lease) = l.acquire_at(PolicyId(ask.policy), key, ask.cost, now)?;
        let lease = lease.map_or(std::ptr::null_mut(), |lease| {
            Box::into_raw(Box::new(portcullis_lease { lease }))
        });
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            out_lease.write(lease);
            write_out(out_decision, "out_decision", d.into())
        }
    })
}

/// Takes `cost` leases of a concurrency policy. Allowed: `*out_lease` is a lease to give back
/// with `portcullis_limiter_release`. Denied: `*out_lease` is NULL.
///
/// # Safety
/// `limiter` is NULL or live; `key` is valid for `key_len` bytes; the out-pointers are
/// writable.
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
    // SAFETY: forwarded from the caller.
    unsafe {
        acquire(
            limiter,
            Ask {
                policy,
                key,
                key_len,
                cost,
            },
            None,
            out_decision,
            out_lease,
        )
    }
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
    // SAFETY: forwarded from the caller.
    unsafe {
        acquire(
            limiter,
            Ask {
                policy,
                key,
                key_len,
                cost,
            },
            Some(now_ns),
            out_decision,
            out_lease,
        )
    }
}

/// Shared body of the release functions: always consumes the lease.
///
/// # Safety
/// As `portcullis_limiter_release`.
unsafe fn release(
    limiter: *const portcullis_limiter,
    lease: *mut portcullis_lease,
    now: Option<Nanos>,
) -> portcullis_result {
    guard(|| {
        if lease.is_null() {
            return Err(Failure::null("lease"));
        }
        // SAFETY: the caller gives back a lease this library boxed; it is consumed whatever
        // happens next, so it cannot be released twice.
        let lease = unsafe { Box::from_raw(lease) }.lease;
        // SAFETY: forwarded from the caller.
        let l = unsafe { live(limiter) }?;
        let now = now.unwrap_or_else(|| l.now());
        l.release_at(lease, now)?;
        Ok(())
    })
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
    // SAFETY: forwarded from the caller.
    unsafe { release(limiter, lease, None) }
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
    // SAFETY: forwarded from the caller.
    unsafe { release(limiter, lease, Some(now_ns)) }
}

/// Frees a lease without giving it back: its slot frees itself after the lease timeout. NULL
/// is ignored.
///
/// # Safety
/// `lease` is NULL or not yet freed.
#[no_mangle]
pub unsafe extern "C" fn portcullis_lease_free(lease: *mut portcullis_lease) {
    guard_drop(|| {
        if !lease.is_null() {
            // SAFETY: the caller gives back a lease this library boxed.
            drop(unsafe { Box::from_raw(lease) });
        }
    });
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
        // SAFETY: forwarded from the caller.
        let l = unsafe { live(limiter) }?;
        need_out(out_headers, "out_headers")?;
        let style = header_style(style)?;
        if decisions.is_null() && count > 0 {
            return Err(Failure::null("decisions"));
        }
        let list: &[portcullis_decision] = match count {
            0 => &[],
            // SAFETY: non-NULL; the caller promises `count` decisions.
            _ => unsafe { std::slice::from_raw_parts(decisions, count) },
        };
        let mut ds = Vec::with_capacity(list.len());
        for d in list {
            if l.policy(PolicyId(d.policy)).is_none() {
                return Err(Failure::from(crate::Error::BadPolicyId(d.policy)));
            }
            ds.push(Decision::from(d));
        }
        let h = Box::into_raw(Box::new(portcullis_headers::new(l.headers(style, &ds))));
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { write_out(out_headers, "out_headers", h) }
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
        // SAFETY: forwarded from the caller.
        let l = unsafe { live(limiter) }?;
        let json = serde_json::to_string(&l.stats())
            .map_err(|e| Failure::invalid(format!("stats: {e}")))?;
        // SAFETY: forwarded from the caller.
        unsafe { copy_out(json.as_bytes(), buf, cap, out_len) }
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
    guard(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { borrow(limiter, "limiter") }?;
        h.live()?.close()?;
        h.closed.store(true, Ordering::Release);
        Ok(())
    })
}

/// Closes (if not closed) and frees a limiter, releasing its store. NULL is ignored. No other
/// thread may use the handle during or after this call.
///
/// # Safety
/// `limiter` is NULL or a limiter not yet freed.
#[no_mangle]
pub unsafe extern "C" fn portcullis_limiter_free(limiter: *mut portcullis_limiter) {
    guard_drop(|| {
        if !limiter.is_null() {
            // SAFETY: the caller gives back a limiter this library boxed.
            let h = unsafe { Box::from_raw(limiter) };
            if !h.closed.load(Ordering::Acquire) {
                let _ = h.limiter.close();
            }
        }
    });
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
