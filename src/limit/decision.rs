//! The answer to one request under one policy, and its HTTP header renderings.
//!
//! Two styles, chosen by the caller:
//!
//! * **Legacy**: `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix
//!   seconds at which the key is fully recovered) and, on a denial, `Retry-After` (seconds).
//! * **IETF** (draft-ietf-httpapi-ratelimit-headers, structured fields, syntax of -08 to -11):
//!   `RateLimit-Policy: "api";q=100;w=3600` and `RateLimit: "api";r=42;t=30`, one list item
//!   per policy that applied.
//!
//! All seconds are whole and rounded **up**, so a client is never told to come back too early.
//!
//! What `t` means, per algorithm (seconds until the quota "resets"):
//!
//! | algorithm | `r > 0` | `r = 0` |
//! | --- | --- | --- |
//! | GCRA, leaky bucket | until fully refilled | until the next request would be allowed |
//! | fixed window | until the window ends | until the window ends |
//! | sliding window | until both windows have aged out | until the next request would be allowed |
//! | concurrency | until every lease held would have expired | until enough leases expire (earlier if released) |

use std::fmt;
use std::time::Duration;

use crate::core::clock::Nanos;
use crate::core::texts::Texts;
use crate::limit::algo::{Rule, Verdict};

/// Identifies a policy of one [`crate::limit::limiter::Limiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(pub(crate) u32);

impl PolicyId {
    /// The policy's position in its limiter.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The outcome of one request under one policy.
///
/// The verdict, limit, policy and time are fields. The numbers that follow from the key's state
/// (units remaining, time to reset, retry-after, shaping delay) are methods, worked out when
/// asked for: a caller that only needs the verdict does not pay for them on every check.
#[derive(Clone, Copy)]
pub struct Decision {
    /// The request may proceed (after [`Decision::delay`]).
    pub allowed: bool,
    /// The most a key can have available at once (burst, window limit or maximum in flight).
    pub limit: u32,
    /// The policy that decided.
    pub policy: PolicyId,
    /// When it was decided, Unix-epoch nanoseconds.
    pub at: Nanos,
    quote: Quote,
}

/// Where a decision's numbers come from.
#[derive(Clone, Copy)]
enum Quote {
    /// The policy's step run again on the state it decided on, at the same time and cost: a
    /// pure function, so it answers exactly as it did.
    Step { rule: Rule, state: u64, cost: u32 },
    /// Numbers fixed when the decision was made.
    Known(Verdict),
}

/// What a check's verdict is handed out as: the public [`Decision`], or a caller's own plain
/// form built straight from the verdict's nanoseconds (the C ABI's), rather than from
/// `Duration`s made only to be taken apart again.
pub(crate) trait FromVerdict {
    /// The answer for a verdict of a policy whose `limit` is given, decided `at`.
    fn from_verdict(limit: u32, policy: PolicyId, v: &Verdict, at: Nanos) -> Self;
}

/// Nanoseconds as a `Duration`; zero (no delay, nothing to wait for) is the common case and
/// skips the division.
#[inline(always)]
fn duration(ns: u64) -> Duration {
    if ns == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(ns)
    }
}

impl FromVerdict for Decision {
    #[inline(always)]
    fn from_verdict(limit: u32, policy: PolicyId, v: &Verdict, at: Nanos) -> Self {
        Decision {
            allowed: v.allowed,
            limit,
            policy,
            at,
            quote: Quote::Known(*v),
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Decision {
    /// A decision whose numbers are worked out from `rule`'s step on `state` when asked for.
    #[inline(always)]
    pub(crate) fn stepped(
        rule: &Rule,
        state: u64,
        cost: u32,
        allowed: bool,
        limit: u32,
        policy: PolicyId,
        at: Nanos,
    ) -> Self {
        Decision {
            allowed,
            limit,
            policy,
            at,
            quote: Quote::Step {
                rule: *rule,
                state,
                cost,
            },
        }
    }

    /// What a caller that fails closed uses in place of an error: denied, retry in a second.
    pub(crate) fn fail_closed(policy: PolicyId, at: Nanos) -> Self {
        let v = Verdict {
            allowed: false,
            retry_after: 1_000_000_000,
            ..Verdict::default()
        };
        Self::from_verdict(0, policy, &v, at)
    }

    /// The same decision with its numbers worked out, for a caller that reads them repeatedly.
    fn settled(&self) -> Self {
        Self::from_verdict(self.limit, self.policy, &self.verdict(), self.at)
    }

    /// The numbers behind this decision, in nanoseconds.
    #[inline(always)]
    pub(crate) fn verdict(&self) -> Verdict {
        match &self.quote {
            Quote::Step { rule, state, cost } => rule.check(*state, self.at, *cost).1,
            Quote::Known(v) => *v,
        }
    }

    /// Units available right after this decision.
    #[inline]
    pub fn remaining(&self) -> u32 {
        u32::try_from(self.verdict().remaining).unwrap_or(u32::MAX)
    }

    /// Time until the key has fully recovered.
    #[inline]
    pub fn reset_after(&self) -> Duration {
        duration(self.verdict().reset_after)
    }

    /// Denied: time until this request would be allowed. Allowed: time until another request
    /// of the same cost would be (zero if now).
    #[inline]
    pub fn retry_after(&self) -> Duration {
        duration(self.verdict().retry_after)
    }

    /// Shaping: how long to wait before proceeding. Zero otherwise.
    #[inline]
    pub fn delay(&self) -> Duration {
        duration(self.verdict().delay)
    }

    /// `Retry-After` in whole seconds, rounded up (never too early).
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after())
    }

    /// Unix time, in whole seconds rounded up, at which the key is fully recovered.
    pub fn reset_at_unix_secs(&self) -> u64 {
        // In u64 (a multiply, where u128 needs a division call); saturates past the year 2554.
        self.at
            .saturating_add(self.verdict().reset_after)
            .div_ceil(1_000_000_000)
    }

    /// The IETF `t` parameter: seconds until the next unit when none remain, else until reset.
    pub fn reset_secs(&self) -> u64 {
        let v = self.verdict();
        if v.remaining == 0 {
            ceil_secs(duration(v.retry_after))
        } else {
            ceil_secs(duration(v.reset_after))
        }
    }

    /// The decision that should speak for several: a denial (the longest wait) over any
    /// allowance, else the one with the fewest remaining.
    pub fn most_restrictive(decisions: &[Decision]) -> Option<&Decision> {
        decisions.iter().min_by(|a, b| a.restrictiveness(b))
    }

    /// `Less` when `self` is more restrictive than `other` (see [`Decision::most_restrictive`]).
    pub(crate) fn restrictiveness(&self, other: &Decision) -> std::cmp::Ordering {
        let (mine, theirs) = (self.verdict(), other.verdict());
        (self.allowed, theirs.retry_after, mine.remaining).cmp(&(
            other.allowed,
            mine.retry_after,
            theirs.remaining,
        ))
    }
}

/// Decisions are equal when everything they tell is: the verdict, limit, policy, time and
/// every number, however those are kept.
impl PartialEq for Decision {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.verdict(), other.verdict());
        (self.allowed, self.limit, self.policy, self.at)
            == (other.allowed, other.limit, other.policy, other.at)
            && (a.remaining, a.reset_after, a.retry_after, a.delay)
                == (b.remaining, b.reset_after, b.retry_after, b.delay)
    }
}

impl Eq for Decision {}

impl fmt::Debug for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decision")
            .field("allowed", &self.allowed)
            .field("limit", &self.limit)
            .field("remaining", &self.remaining())
            .field("reset_after", &self.reset_after())
            .field("retry_after", &self.retry_after())
            .field("delay", &self.delay())
            .field("policy", &self.policy)
            .field("at", &self.at)
            .finish()
    }
}

/// Which rate-limit headers to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderStyle {
    /// `X-RateLimit-*` and `Retry-After`.
    #[default]
    Legacy,
    /// IETF `RateLimit-Policy` and `RateLimit` (and `Retry-After` on a denial).
    Ietf,
    /// Both.
    Both,
    /// Only `Retry-After` on a denial.
    RetryAfterOnly,
}

/// What a header rendering needs to know about the policy behind a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyMeta<'a> {
    /// The policy name (an sf-string in IETF headers).
    pub name: &'a str,
    /// Requests per window.
    pub quota: u32,
    /// The window.
    pub window: Duration,
}

/// A rendered response header.
pub type Header = (&'static str, String);

/// A policy's IETF header texts, rendered once: its `RateLimit-Policy` item
/// (`"api";q=100;w=3600`) and the start of its `RateLimit` item (`"api";r=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IetfTexts {
    policy_item: &'static str,
    rate_start: &'static str,
}

impl IetfTexts {
    /// Renders a policy's texts once, kept in `texts` (a compiled config's).
    ///
    /// # Safety
    ///
    /// As [`Texts::keep`]: the result is read only while `texts` is alive.
    pub(crate) unsafe fn kept(meta: &PolicyMeta<'_>, texts: &mut Texts) -> Self {
        let mut item = String::new();
        let _ = write_policy_item(&mut item, meta);
        let mut start = String::new();
        let _ = write_rate_start(&mut start, meta);
        // SAFETY: forwarded: the caller reads the views only while `texts` lives.
        unsafe {
            Self {
                policy_item: texts.keep(&item),
                rate_start: texts.keep(&start),
            }
        }
    }
}

/// A policy's `RateLimit-Policy` item.
fn write_policy_item(out: &mut impl fmt::Write, meta: &PolicyMeta<'_>) -> fmt::Result {
    let mut num = itoa::Buffer::new();
    write_sf_string(out, meta.name)?;
    out.write_str(";q=")?;
    out.write_str(num.format(meta.quota))?;
    out.write_str(";w=")?;
    out.write_str(num.format(ceil_secs(meta.window)))
}

/// The start of a policy's `RateLimit` item, up to its remaining count.
fn write_rate_start(out: &mut impl fmt::Write, meta: &PolicyMeta<'_>) -> fmt::Result {
    write_sf_string(out, meta.name)?;
    out.write_str(";r=")
}

/// Where rendered headers go: [`HeaderSink::start`] opens a header, and what is written after
/// it (through [`fmt::Write`]) is its value, until the next start.
pub(crate) trait HeaderSink: fmt::Write {
    /// Starts a header named `name`.
    fn start(&mut self, name: &'static str);

    /// Adds a header whose value lives for the whole process (a sink may keep it uncopied).
    fn push_static(&mut self, name: &'static str, value: &'static str) {
        self.start(name);
        let _ = self.write_str(value);
    }

    /// Adds a header whose value is a number.
    fn push_number(&mut self, name: &'static str, n: u64) {
        self.start(name);
        let _ = self.write_str(itoa::Buffer::new().format(n));
    }
}

/// Collects headers as owned pairs.
struct Owned(Vec<Header>);

impl fmt::Write for Owned {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self.0.last_mut() {
            Some((_, value)) => {
                value.push_str(s);
                Ok(())
            }
            None => Err(fmt::Error),
        }
    }
}

impl HeaderSink for Owned {
    fn start(&mut self, name: &'static str) {
        self.0.push((name, String::new()));
    }
}

/// Renders the headers for the decisions that applied to one request.
pub fn render_headers(style: HeaderStyle, decisions: &[(PolicyMeta<'_>, Decision)]) -> Vec<Header> {
    // Each decision's numbers worked out once: the rendering reads them several times.
    let settled: Vec<_> = decisions.iter().map(|&(m, d)| (m, d.settled())).collect();
    let mut out = Owned(Vec::with_capacity(5));
    render_into(style, settled.into_iter(), &mut out);
    out.0
}

/// Renders the headers for the decisions that applied to one request into `sink`, without
/// allocating: the decisions are walked twice (the most restrictive speaks for all).
pub(crate) fn render_into<'a, I>(style: HeaderStyle, decisions: I, sink: &mut impl HeaderSink)
where
    I: Iterator<Item = (PolicyMeta<'a>, Decision)> + Clone,
{
    // Decision::most_restrictive over an iterator: the first of the most restrictive.
    let main = decisions
        .clone()
        .map(|(_, d)| d)
        .min_by(|a, b| a.restrictiveness(b));
    if let Some(main) = main {
        let items = || decisions.clone().map(|(meta, d)| (meta, d, None));
        render_with_main(style, &main, None, items, sink);
    }
}

/// [`render_into`] for a caller that has already picked the most restrictive decision; the
/// per-policy items are only walked for the IETF fields. `limit_text` is a limit rendered
/// beforehand, used when it is the main decision's.
pub(crate) fn render_with_main<'a, I>(
    style: HeaderStyle,
    main: &Decision,
    limit_text: Option<(u32, &'static str)>,
    items: impl Fn() -> I,
    sink: &mut impl HeaderSink,
) where
    I: Iterator<Item = (PolicyMeta<'a>, Decision, Option<IetfTexts>)>,
{
    // Writing into a sink that has started a header cannot fail. Integers go through itoa:
    // core::fmt costs more than the rest of the rendering.
    let mut num = itoa::Buffer::new();
    if matches!(style, HeaderStyle::Legacy | HeaderStyle::Both) {
        match limit_text {
            Some((limit, text)) if limit == main.limit => {
                sink.push_static("X-RateLimit-Limit", text)
            }
            _ => {
                sink.start("X-RateLimit-Limit");
                let _ = sink.write_str(num.format(main.limit));
            }
        }
        sink.push_number("X-RateLimit-Remaining", u64::from(main.remaining()));
        sink.push_number("X-RateLimit-Reset", main.reset_at_unix_secs());
    }
    if matches!(style, HeaderStyle::Ietf | HeaderStyle::Both) {
        // The policy field depends on the policies alone: one kept item is the whole value.
        let mut all = items();
        match (all.next(), all.next()) {
            (Some((_, _, Some(kept))), None) => {
                sink.push_static("RateLimit-Policy", kept.policy_item)
            }
            _ => {
                sink.start("RateLimit-Policy");
                for (i, (meta, _, kept)) in items().enumerate() {
                    if i > 0 {
                        let _ = sink.write_str(", ");
                    }
                    let _ = match kept {
                        Some(kept) => sink.write_str(kept.policy_item),
                        None => write_policy_item(sink, &meta),
                    };
                }
            }
        }
        sink.start("RateLimit");
        for (i, (meta, d, kept)) in items().enumerate() {
            if i > 0 {
                let _ = sink.write_str(", ");
            }
            let _ = match kept {
                Some(kept) => sink.write_str(kept.rate_start),
                None => write_rate_start(sink, &meta),
            };
            let _ = sink.write_str(num.format(d.remaining()));
            let _ = sink.write_str(";t=");
            let _ = sink.write_str(num.format(d.reset_secs()));
        }
    }
    if !main.allowed {
        sink.push_number("Retry-After", main.retry_after_secs());
    }
}

/// Writes a structured-field string: quoted, with `"` and `\` escaped; other bytes outside
/// printable ASCII are dropped (policy names are validated to never contain them).
fn write_sf_string(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    if s.bytes()
        .all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\')
    {
        // The common case: nothing to escape or drop.
        out.write_char('"')?;
        out.write_str(s)?;
        return out.write_char('"');
    }
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.write_char('\\')?;
                out.write_char(c)?;
            }
            ' '..='~' => out.write_char(c)?,
            _ => {}
        }
    }
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(allowed: bool, remaining: u32, reset: u64, retry: u64, at: Nanos) -> Decision {
        let v = Verdict {
            allowed,
            remaining: remaining.into(),
            reset_after: reset,
            retry_after: retry,
            ..Verdict::default()
        };
        Decision::from_verdict(10, PolicyId(0), &v, at)
    }

    fn d(allowed: bool, remaining: u32, retry: u64) -> Decision {
        known(allowed, remaining, 1_500_000_000, retry, 1_000_000_000_000)
    }

    #[test]
    fn sf_strings_escape() {
        let mut out = String::new();
        write_sf_string(&mut out, "a\"b\\c\u{e9}").unwrap();
        assert_eq!(out, r#""a\"b\\c""#);
    }

    #[test]
    fn the_most_restrictive_decision_speaks_for_all() {
        let meta = PolicyMeta {
            name: "p",
            quota: 10,
            window: Duration::from_secs(60),
        };
        for all in [
            vec![d(true, 0, 0), d(false, 0, 5), d(false, 0, 9), d(true, 3, 0)],
            vec![d(true, 5, 0), d(true, 2, 0), d(true, 7, 0)],
            vec![d(true, 1, 0)],
        ] {
            let expected = *Decision::most_restrictive(&all).unwrap();
            let items: Vec<_> = all.iter().map(|x| (meta, *x)).collect();
            let headers = render_headers(HeaderStyle::Legacy, &items);
            assert_eq!(
                headers[1],
                ("X-RateLimit-Remaining", expected.remaining().to_string())
            );
            let retry = headers.iter().find(|(n, _)| *n == "Retry-After");
            assert_eq!(
                retry.map(|(_, v)| v.clone()),
                (!expected.allowed).then(|| expected.retry_after_secs().to_string())
            );
        }
    }

    #[test]
    fn most_restrictive_prefers_longest_denial() {
        let all = [d(true, 0, 0), d(false, 0, 5), d(false, 0, 9), d(true, 3, 0)];
        assert_eq!(
            Decision::most_restrictive(&all)
                .unwrap()
                .retry_after()
                .as_nanos(),
            9
        );
        let all = [d(true, 5, 0), d(true, 2, 0)];
        assert_eq!(Decision::most_restrictive(&all).unwrap().remaining(), 2);
    }

    /// Rendered with each policy's kept IETF texts or from its metadata, the headers read the
    /// same, for one policy (the kept item is the whole field) and for several.
    #[test]
    fn kept_ietf_texts_render_as_the_metadata_does() {
        let metas = [
            PolicyMeta {
                name: "api",
                quota: 100,
                window: Duration::from_secs(3600),
            },
            PolicyMeta {
                name: "burst \\ \"x\"",
                quota: 7,
                window: Duration::from_millis(1500),
            },
        ];
        let decisions = [d(true, 4, 0), d(false, 0, 2_500_000_000)];
        for style in [HeaderStyle::Ietf, HeaderStyle::Both] {
            for n in 1..=2 {
                let mut texts = Texts::default();
                // SAFETY: the views are read while `texts` lives (to the end of this loop).
                let kept_texts: Vec<IetfTexts> = metas
                    .iter()
                    .map(|m| unsafe { IetfTexts::kept(m, &mut texts) })
                    .collect();
                let render = |kept: bool| {
                    let items = || {
                        metas
                            .iter()
                            .zip(&decisions)
                            .zip(&kept_texts)
                            .take(n)
                            .map(|((m, d), t)| (*m, *d, kept.then_some(*t)))
                    };
                    let main = Decision::most_restrictive(&decisions[..n]).copied();
                    let mut out = Owned(Vec::new());
                    render_with_main(style, &main.unwrap(), None, items, &mut out);
                    out.0
                };
                let plain = render(false);
                assert_eq!(render(true), plain, "{style:?}, {n} policies");
                assert!(plain.iter().any(|(h, _)| *h == "RateLimit-Policy"));
            }
        }
    }

    #[test]
    fn reset_time_rounds_up_exactly() {
        let exact = |at: u64, after: Duration| {
            u64::try_from((u128::from(at) + after.as_nanos()).div_ceil(1_000_000_000)).unwrap()
        };
        for at in [0, 1, 999_999_999, 1_000_000_000, 1_795_453_140_999_999_999] {
            for after in [0, 1, 999_999_999, 1_000_000_000, 86_400_000_000_001] {
                let d = known(true, 1, after, 0, at);
                assert_eq!(
                    d.reset_at_unix_secs(),
                    exact(at, d.reset_after()),
                    "{at} + {after}"
                );
            }
        }
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(d(false, 0, 1).retry_after_secs(), 1);
        assert_eq!(d(false, 0, 1_000_000_000).retry_after_secs(), 1);
        assert_eq!(d(false, 0, 1_000_000_001).retry_after_secs(), 2);
        // 1000 s + 1.5 s, rounded up.
        assert_eq!(d(true, 1, 0).reset_at_unix_secs(), 1002);
    }
}
