//! The gate: one call per request joins CORS and rate limiting, and says what to answer.
//!
//! A [`Gate`] is built from a [`Config`]: it owns the limiter of every policy and the CORS
//! policy. [`Gate::decide`] takes the request's method, path, CORS headers, client address,
//! principal and tier, and returns an [`Outcome`]: the status (pass, 204 preflight, 403 CORS
//! refusal, 429 limited), every header to add, a delay for shaping, the concurrency leases to
//! give back when the response is done, and a reason.
//!
//! What it gets right that stacks of middleware get wrong:
//!
//! * preflights are answered before any limit and never charged;
//! * a 429 to an allowed origin carries the CORS headers, so the browser shows the 429 and not a
//!   CORS error;
//! * the rate-limit headers are listed in `Access-Control-Expose-Headers`, so pages can read
//!   them;
//! * several limits on one request are all-or-nothing: when one denies, what the others took is
//!   refunded and their leases released;
//! * a limit in shadow mode is decided and counted but never enforced;
//! * requests without a principal get the route's `anonymous` limits.
//!
//! ```
//! use portcullis::config::Config;
//! use portcullis::gate::{Gate, GateRequest, Status};
//! use portcullis::ManualClock;
//!
//! let config: Config = r#"
//!     [[policy]]
//!     name = "login"
//!     algorithm = "fixed_window"
//!     limit = "5/15m"
//!     block = "15m"
//!
//!     [[route]]
//!     match = "POST /api/v1/auth/login"
//!     limits = [{ policy = "login", key = "ip" }]
//!
//!     [cors]
//!     allowed_origins = ["https://app.example.com"]
//! "#.parse()?;
//! let gate = Gate::builder(config).clock(ManualClock::new(1_700_000_000_000_000_000)).build()?;
//!
//! let login = GateRequest::new("POST", "/api/v1/auth/login")
//!     .origin("https://app.example.com")
//!     .ip("203.0.113.9".parse()?);
//! for _ in 0..5 {
//!     assert_eq!(gate.decide(&login).status(), Status::Pass);
//! }
//! let refused = gate.decide(&login);
//! assert_eq!(refused.status(), Status::Limited);
//! assert_eq!(refused.status().code(), Some(429));
//! assert_eq!(refused.header("Retry-After"), Some("900"));
//! // The browser can read the 429 and its headers.
//! assert_eq!(refused.header("access-control-allow-origin"), Some("https://app.example.com"));
//! assert!(refused.header("access-control-expose-headers").unwrap().contains("Retry-After"));
//!
//! // A preflight is answered at once and charges nothing.
//! let preflight = GateRequest::new("OPTIONS", "/api/v1/auth/login")
//!     .origin("https://app.example.com")
//!     .request_method("POST");
//! assert_eq!(gate.decide(&preflight).status().code(), Some(204));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Reload.** [`Gate::reload`] swaps in a new config while requests run. The gate's state sits
//! behind a `parking_lot::RwLock`: a request takes the read lock for the length of its decision
//! (no allocation, no contention with other readers beyond the lock word), and a reload takes
//! the write lock only to swap a pointer. Policies whose definition did not change keep their
//! limiter, so their counters carry over; new or changed policies start fresh. An invalid config
//! never reaches the gate: [`Config`] refuses it first.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::config::{Config, KeyKind, LimitSettings, PolicySelect, PolicySettings, StoreKind};
use crate::cors::{CorsPolicy, CorsRequest, RequestKind};
use crate::store::{SledStore, Store, StoreConfig};
use crate::{
    Algorithm, Clock, CoarseClock, Decision, Error, HeaderStyle, IpKeyer, Lease, Limiter, PolicyId,
    PolicyMeta, PolicyStats,
};

// ---------------------------------------------------------------------------------------------
// Route patterns.

/// A route's `match`: an optional method and a path pattern.
///
/// `"POST /api/v1/auth/login"` matches that method and path exactly; `"/api/"` (ending in `/`)
/// matches `/api` and every path under it, any method; `"GET /api/v1/users/{id}"` matches one
/// path segment in place of `{id}`. Empty segments in request paths (`//`) are skipped and the
/// query string is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    method: Option<String>,
    segments: Vec<Segment>,
    prefix: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

impl RoutePattern {
    /// Parses a pattern; the error says what to write instead.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (method, path) = match text.split_once(char::is_whitespace) {
            Some((m, p)) => (Some(m), p.trim()),
            None if text.starts_with('/') => (None, text),
            None => {
                return Err(format!(
                    "route \"{text}\" has no path: write \"/path\" or \"METHOD /path\", e.g. \"POST /api/v1/auth/login\""
                ))
            }
        };
        let method = match method {
            Some(m) if m.bytes().all(|b| b.is_ascii_uppercase()) => Some(m.to_owned()),
            Some(m) if m.bytes().all(|b| b.is_ascii_alphabetic()) => {
                return Err(format!(
                    "route method \"{m}\" must be upper case, as clients send it: write \"{}\"",
                    m.to_ascii_uppercase()
                ))
            }
            Some(m) => {
                return Err(format!(
                    "route method \"{m}\" is not a method: write one method such as GET or POST, then the path"
                ))
            }
            None => None,
        };
        if !path.starts_with('/') {
            return Err(format!(
                "route path \"{path}\" must start with '/': write \"/{}\"",
                path.trim_start_matches('/')
            ));
        }
        let prefix = path.ends_with('/');
        let mut segments = Vec::new();
        let inner = path.trim_start_matches('/').trim_end_matches('/');
        if !inner.is_empty() {
            for seg in inner.split('/') {
                segments.push(Self::segment(path, seg)?);
            }
        }
        Ok(Self {
            method,
            segments,
            prefix,
        })
    }

    fn segment(path: &str, seg: &str) -> Result<Segment, String> {
        if seg.is_empty() {
            return Err(format!(
                "route path \"{path}\" has an empty segment (//): write single slashes"
            ));
        }
        if let Some(name) = seg.strip_prefix('{') {
            let valid = name.strip_suffix('}').filter(|n| {
                !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
            return match valid {
                Some(_) => Ok(Segment::Param),
                None => Err(format!(
                    "route segment \"{seg}\" is not a parameter: write a whole segment such as {{id}}"
                )),
            };
        }
        if let Some(bad) = seg
            .chars()
            .find(|c| matches!(c, '{' | '}' | '?' | '#' | '*') || c.is_whitespace())
        {
            let hint = match bad {
                '*' => "end the path with '/' to match everything under it",
                '?' | '#' => "routes match the path only; remove the query or fragment",
                '{' | '}' => "a parameter is a whole segment such as {id}",
                _ => "remove the space",
            };
            return Err(format!("route path \"{path}\" contains '{bad}': {hint}"));
        }
        Ok(Segment::Literal(seg.to_owned()))
    }

    /// Whether a request matches. Empty segments (`//`) are skipped, as in the pattern.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        let end = path
            .bytes()
            .position(|b| b == b'?' || b == b'#')
            .unwrap_or(path.len());
        let mut rest = &path[..end];
        for seg in &self.segments {
            rest = rest.trim_start_matches('/');
            if rest.is_empty() {
                return false;
            }
            let (part, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            if let Segment::Literal(l) = seg {
                if l != part {
                    return false;
                }
            }
            rest = tail;
        }
        self.prefix || rest.trim_start_matches('/').is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and outcomes.

/// What the gate needs to know about one request. Borrowed; build it with the setters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateRequest<'a> {
    /// The method, case-sensitive.
    pub method: &'a str,
    /// The path (a query string is ignored).
    pub path: &'a str,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The `Access-Control-Request-Method` header.
    pub request_method: Option<&'a str>,
    /// The `Access-Control-Request-Headers` header.
    pub request_headers: Option<&'a str>,
    /// Whether `Access-Control-Request-Private-Network: true` was sent.
    pub request_private_network: bool,
    /// The client address (the peer, or the address a trusted proxy reports).
    pub client_ip: Option<IpAddr>,
    /// The authenticated user id or API key; `None` for anonymous traffic.
    pub principal: Option<&'a str>,
    /// The principal's tier (`free`, `premium`, ...).
    pub tier: Option<&'a str>,
}

impl<'a> GateRequest<'a> {
    /// A request with this method and path.
    pub fn new(method: &'a str, path: &'a str) -> Self {
        Self {
            method,
            path,
            ..Self::default()
        }
    }

    /// Sets `Origin`.
    pub fn origin(mut self, origin: &'a str) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Sets `Access-Control-Request-Method`.
    pub fn request_method(mut self, method: &'a str) -> Self {
        self.request_method = Some(method);
        self
    }

    /// Sets `Access-Control-Request-Headers`.
    pub fn request_headers(mut self, headers: &'a str) -> Self {
        self.request_headers = Some(headers);
        self
    }

    /// Sets `Access-Control-Request-Private-Network: true`.
    pub fn private_network(mut self, requested: bool) -> Self {
        self.request_private_network = requested;
        self
    }

    /// Sets the client address.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    /// Sets the principal.
    pub fn principal(mut self, principal: &'a str) -> Self {
        self.principal = Some(principal);
        self
    }

    /// Sets the tier.
    pub fn tier(mut self, tier: &'a str) -> Self {
        self.tier = Some(tier);
        self
    }
}

/// What to do with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Let the handler answer (after [`Outcome::delay`]), and add the headers.
    Pass,
    /// An allowed preflight: answer 204 with the headers; do not call the handler.
    Preflight,
    /// Refused by CORS: answer 403 with the headers.
    Forbidden,
    /// Rate limited: answer 429 with the headers.
    Limited,
}

impl Status {
    /// The status code to answer with; `None` when the handler answers.
    pub fn code(self) -> Option<u16> {
        match self {
            Status::Pass => None,
            Status::Preflight => Some(204),
            Status::Forbidden => Some(403),
            Status::Limited => Some(429),
        }
    }
}

/// Why the gate decided as it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// Every limit that applied allowed the request.
    Allowed,
    /// No route matched: no limit applied.
    NoRoute,
    /// An allowed preflight, answered without charging any limit.
    Preflight,
    /// CORS refused the request.
    Cors {
        /// The refusal, as a sentence.
        refusal: String,
    },
    /// A limit denied the request.
    Limited {
        /// The policy that denied.
        policy: String,
        /// The key it counted, e.g. `ip:203.0.113.9`.
        key: String,
        /// The route's `match`.
        route: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Allowed => f.write_str("allowed"),
            Reason::NoRoute => f.write_str("no route matched; no limit applies"),
            Reason::Preflight => f.write_str("preflight allowed; not charged"),
            Reason::Cors { refusal } => write!(f, "CORS: {refusal}"),
            Reason::Limited { policy, key, route } => {
                write!(f, "limited by policy {policy} for {key} on route {route}")
            }
        }
    }
}

/// One limit's verdict on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The policy.
    pub policy: &'static str,
    /// What it was keyed by.
    pub key: KeyKind,
    /// Shadow mode: counted, not enforced.
    pub shadow: bool,
    /// The decision.
    pub decision: Decision,
}

/// Concurrency leases held by a request: released when dropped (or by [`Leases::release`]),
/// so keep them until the response is done.
#[derive(Default)]
#[must_use = "dropping the leases releases them at once"]
pub struct Leases(Vec<(Arc<Limiter>, Lease)>);

impl Leases {
    /// Whether no lease is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many leases are held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Gives every lease back now.
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        for (limiter, lease) in self.0.drain(..) {
            // Releasing cannot fail for a lease the limiter issued itself.
            let _ = limiter.release(lease);
        }
    }
}

impl fmt::Debug for Leases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Leases").field(&self.0.len()).finish()
    }
}

/// The gate's answer to one request.
#[derive(Debug)]
#[must_use]
pub struct Outcome {
    status: Status,
    headers: HeaderBuf,
    delay: Duration,
    leases: Leases,
    reason: Reason,
    applied: Vec<Applied>,
    route: Option<&'static str>,
}

impl Outcome {
    /// What to do.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The headers to add to the response (or to send with the gate's own status). A `Vary`
    /// header is to be appended to the response's own `Vary`, never replace it.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&'static str, &str)> + '_ {
        self.headers.iter()
    }

    /// Header `index` of [`Outcome::headers`].
    pub fn header_at(&self, index: usize) -> Option<(&'static str, &str)> {
        self.headers.get(index)
    }

    /// The value of one header to add, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// How long to wait before calling the handler (shaping by leaky-bucket policies).
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Why.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// Every limit decided, in route order (shadow ones included).
    pub fn applied(&self) -> &[Applied] {
        &self.applied
    }

    /// The route that matched, as written in the config.
    pub fn route(&self) -> Option<&str> {
        self.route
    }

    /// The concurrency leases the request holds.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// Takes the leases, to keep them past the outcome (they are released when dropped).
    pub fn take_leases(&mut self) -> Leases {
        std::mem::take(&mut self.leases)
    }
}

// ---------------------------------------------------------------------------------------------
// Visibility: counters, top limited keys, recent denials.

mod abuse;
mod headers;
mod intern;
use abuse::{Abuse, StripedCounterCell};
use headers::{CorsInto, HeaderBuf};
use intern::intern;

use crate::decision::render_into;
pub use abuse::{Denial, Offender, RECENT_DENIALS, TOP_KEYS};

/// Counters of one limit of one route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitStats {
    /// The route's `match`.
    pub route: String,
    /// The policy, or `tier:` policies.
    pub policy: String,
    /// What it is keyed by.
    pub key: String,
    /// Whether it applies to anonymous requests (the route's `anonymous` list).
    pub anonymous: bool,
    /// Shadow mode.
    pub shadow: bool,
    /// Requests it allowed.
    pub allowed: u64,
    /// Requests it denied (in shadow mode: would have denied).
    pub denied: u64,
    /// Requests it allowed with a delay.
    pub delayed: u64,
}

/// One key of a policy, as [`Gate::keys`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// The key, e.g. `ip:203.0.113.9`, `principal:alice`.
    pub key: String,
    /// Whether it is blocked (lockout).
    pub blocked: bool,
    /// Units left now.
    pub remaining: u32,
    /// The most it can have at once.
    pub limit: u32,
    /// Milliseconds until a request would be allowed (0 if now).
    pub retry_after_ms: u64,
    /// Milliseconds until it has fully recovered.
    pub reset_after_ms: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Reads a limiter key written by the gate back as people write it (`ip:203.0.113.9`,
/// `ip:2001:db8::/64`, `principal:alice`, `route:/api/`, `global`).
pub fn describe_key(bytes: &[u8]) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match bytes.split_first() {
        Some((&TAG_PRINCIPAL, rest)) => format!("principal:{}", text(rest)),
        Some((&TAG_ROUTE, rest)) => format!("route:{}", text(rest)),
        Some((&TAG_GLOBAL, _)) => "global".into(),
        Some((&TAG_IP, [])) => "ip:unknown".into(),
        Some((&TAG_IP, [4, a, b, c, d])) => format!("ip:{a}.{b}.{c}.{d}"),
        Some((&TAG_IP, [6, prefix, rest @ ..])) if rest.len() == 16 => {
            let mut raw = [0u8; 16];
            raw.copy_from_slice(rest);
            format!("ip:{}/{prefix}", std::net::Ipv6Addr::from(raw))
        }
        _ => format!("raw:{}", text(bytes)),
    }
}

/// Everything the gate counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateStats {
    /// Per route and limit.
    pub limits: Vec<LimitStats>,
    /// Per policy, from the limiter (all routes together).
    pub policies: Vec<PolicyStatsView>,
    /// Requests that matched no route.
    pub unrouted: u64,
    /// Preflights answered.
    pub preflights: u64,
    /// Requests refused by CORS.
    pub cors_refused: u64,
    /// The most limited keys.
    pub top_limited: Vec<Offender>,
    /// The latest denials, oldest first.
    pub recent_denials: Vec<Denial>,
}

/// [`PolicyStats`] with its quota, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatsView {
    /// The policy.
    pub name: String,
    /// Its algorithm.
    pub algorithm: String,
    /// Requests per window (in flight, for concurrency).
    pub count: u32,
    /// The window in milliseconds (the lease timeout, for concurrency).
    pub window_ms: u64,
    /// Requests a fresh key may make at once.
    pub burst: u32,
    /// Requests allowed.
    pub allowed: u64,
    /// Requests denied.
    pub denied: u64,
    /// Requests delayed.
    pub delayed: u64,
    /// Keys with live state.
    pub live_keys: usize,
    /// Table slots.
    pub capacity: usize,
}

#[derive(Default)]
struct Counters {
    allowed: StripedCounterCell,
    denied: StripedCounterCell,
    delayed: StripedCounterCell,
}

// ---------------------------------------------------------------------------------------------
// The compiled config.

struct PolicySlot {
    name: &'static str,
    settings: PolicySettings,
    limiter: Arc<Limiter>,
    id: PolicyId,
    concurrency: bool,
}

enum Select {
    Fixed(usize),
    Tiers {
        tiers: Vec<(String, usize)>,
        default: usize,
    },
}

struct Limit {
    select: Select,
    key: KeyKind,
    shadow: bool,
    label: String,
    counters: Arc<Counters>,
}

struct Route {
    pattern: RoutePattern,
    text: &'static str,
    limits: Vec<Limit>,
    anonymous: Option<Vec<Limit>>,
}

struct Inner {
    config: Config,
    policies: Vec<PolicySlot>,
    routes: Vec<Route>,
    cors: Option<CorsPolicy>,
    style: HeaderStyle,
    keyer: IpKeyer,
}

/// Why a gate could not be built or reloaded.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The config file is invalid.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    /// The limiter refused a policy or a setting.
    #[error(transparent)]
    Limiter(#[from] Error),
    /// The CORS policy, extended with the rate-limit headers, was refused.
    #[error("{0}")]
    Cors(#[from] crate::cors::CorsConfigErrors),
    /// A setting that cannot change while the gate runs.
    #[error("{0}")]
    Reload(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The header names a style can send, to expose them to pages.
fn rate_limit_header_names(style: HeaderStyle) -> &'static [&'static str] {
    match style {
        HeaderStyle::Legacy => &[
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "Retry-After",
        ],
        HeaderStyle::Ietf => &["RateLimit-Policy", "RateLimit", "Retry-After"],
        HeaderStyle::Both => &[
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "RateLimit-Policy",
            "RateLimit",
            "Retry-After",
        ],
        HeaderStyle::RetryAfterOnly => &["Retry-After"],
    }
}

/// Builds a [`Gate`].
pub struct GateBuilder {
    config: Config,
    clock: Option<Arc<dyn Clock>>,
}

impl GateBuilder {
    /// The clock every limiter reads (default: [`CoarseClock`]); tests pass a
    /// [`crate::ManualClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// A shared clock.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the limiters and the CORS policy.
    pub fn build(self) -> Result<Gate, GateError> {
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(CoarseClock::new()) as Arc<dyn Clock>);
        let store: Option<Arc<dyn Store>> = match (&self.config.store.kind, &self.config.store.path)
        {
            (StoreKind::Sled, Some(path)) => Some(Arc::new(SledStore::open(
                path,
                self.config.store.cache_capacity.unwrap_or(64 << 20),
            )?)),
            _ => None,
        };
        let abuse = Arc::new(Abuse::restore(store.as_deref())?);
        let inner = compile(self.config, None, &clock, store.as_ref())?;
        Ok(Gate {
            inner: RwLock::new(Arc::new(inner)),
            clock,
            abuse,
            store,
        })
    }
}

/// CORS and rate limiting for every request, from one config. `Send + Sync`: share it.
pub struct Gate {
    inner: RwLock<Arc<Inner>>,
    clock: Arc<dyn Clock>,
    abuse: Arc<Abuse>,
    /// Opened once and shared by every limiter the gate builds, reloads included.
    store: Option<Arc<dyn Store>>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.read();
        f.debug_struct("Gate")
            .field("policies", &inner.policies.len())
            .field("routes", &inner.routes.len())
            .field("cors", &inner.cors.is_some())
            .finish()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // The log of recent denials outlives the process, as the counters do.
        if let Some(store) = &self.store {
            let _ = self.abuse.save(store.as_ref(), self.clock.now());
        }
    }
}

/// What a reload kept and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    /// Policies whose counters carried over.
    pub kept: Vec<String>,
    /// Policies new or changed, starting fresh.
    pub fresh: Vec<String>,
    /// Policies no longer in the config.
    pub removed: Vec<String>,
}

fn compile(
    config: Config,
    old: Option<&Inner>,
    clock: &Arc<dyn Clock>,
    store: Option<&Arc<dyn Store>>,
) -> Result<Inner, GateError> {
    if let Some(old) = old {
        if old.config.store != config.store {
            return Err(GateError::Reload(
                "[store] cannot change while the gate runs: restart to apply it".into(),
            ));
        }
    }
    // Policies whose definition is unchanged keep their limiter (and counters); the rest go
    // into one new limiter.
    let mut kept: Vec<Option<(Arc<Limiter>, PolicyId)>> = Vec::with_capacity(config.policies.len());
    let mut builder = Limiter::builder().shared_clock(clock.clone());
    if let Some(store) = store {
        // Limiters share the store; each writes the pages of its own policies.
        builder = builder
            .store(StoreConfig::custom(store.clone()).flush_interval(config.store.flush_interval));
    }
    let mut fresh = 0;
    for p in &config.policies {
        let reuse = old.and_then(|o| {
            o.policies
                .iter()
                .find(|s| s.settings == *p)
                .map(|s| (s.limiter.clone(), s.id))
        });
        if reuse.is_none() {
            builder = builder.policy_with_capacity(p.policy.clone(), p.capacity);
            fresh += 1;
        }
        kept.push(reuse);
    }
    let limiter = match fresh {
        0 => None,
        _ => Some(Arc::new(builder.build()?)),
    };
    let mut policies = Vec::with_capacity(config.policies.len());
    for (p, reuse) in config.policies.iter().zip(kept) {
        let (limiter, id) = match (reuse, &limiter) {
            (Some(r), _) => r,
            (None, Some(l)) => match l.policy_id(p.policy.name()) {
                Some(id) => (l.clone(), id),
                None => return Err(Error::UnknownPolicy(p.policy.name().into()).into()),
            },
            (None, None) => return Err(Error::UnknownPolicy(p.policy.name().into()).into()),
        };
        policies.push(PolicySlot {
            name: intern(p.policy.name()),
            concurrency: p.policy.algorithm() == Algorithm::Concurrency,
            settings: p.clone(),
            limiter,
            id,
        });
    }
    let index = |name: &str| policies.iter().position(|p| p.name == name);
    let compile_limits = |route: &str, anonymous: bool, limits: &[LimitSettings]| {
        limits
            .iter()
            .map(|l| {
                let select = match &l.select {
                    PolicySelect::Fixed(name) => Select::Fixed(index(name).unwrap_or(0)),
                    PolicySelect::Tiers { tiers, default } => {
                        let tiers: Vec<(String, usize)> = tiers
                            .iter()
                            .map(|(t, p)| (t.clone(), index(p).unwrap_or(0)))
                            .collect();
                        let default = tiers
                            .iter()
                            .find(|(t, _)| t == default)
                            .map_or(0, |(_, p)| *p);
                        Select::Tiers { tiers, default }
                    }
                };
                let policy = match &l.select {
                    PolicySelect::Fixed(name) => name.clone(),
                    PolicySelect::Tiers { tiers, .. } => tiers
                        .iter()
                        .map(|(t, p)| format!("{t}:{p}"))
                        .collect::<Vec<_>>()
                        .join(","),
                };
                let label = format!(
                    "{route}|{}|{policy}|{}|{}",
                    if anonymous { "anonymous" } else { "limits" },
                    l.key.name(),
                    l.shadow
                );
                // Counters of a limit that survived the reload carry over.
                let counters = old
                    .and_then(|o| o.find_counters(&label))
                    .unwrap_or_default();
                Limit {
                    select,
                    key: l.key,
                    shadow: l.shadow,
                    label,
                    counters,
                }
            })
            .collect::<Vec<_>>()
    };
    let routes = config
        .routes
        .iter()
        .map(|r| Route {
            pattern: r.pattern.clone(),
            text: intern(&r.text),
            limits: compile_limits(&r.text, false, &r.limits),
            anonymous: r
                .anonymous
                .as_ref()
                .map(|a| compile_limits(&r.text, true, a)),
        })
        .collect();
    let cors = match &config.cors {
        None => None,
        Some(b) => Some(
            b.clone()
                .expose_headers(rate_limit_header_names(config.header_style).iter().copied())
                .build()?,
        ),
    };
    let keyer = IpKeyer::new(config.ipv6_prefix).unwrap_or_default();
    Ok(Inner {
        style: config.header_style,
        config,
        policies,
        routes,
        cors,
        keyer,
    })
}

impl Inner {
    fn find_counters(&self, label: &str) -> Option<Arc<Counters>> {
        self.routes
            .iter()
            .flat_map(|r| r.limits.iter().chain(r.anonymous.iter().flatten()))
            .find(|l| l.label == label)
            .map(|l| l.counters.clone())
    }
}

/// A limiter key: a namespace byte, then the key, so keys of different kinds never collide.
struct KeyBuf {
    inline: [u8; 64],
    len: usize,
    spill: Vec<u8>,
}

impl KeyBuf {
    fn new() -> Self {
        Self {
            inline: [0; 64],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn set(&mut self, tag: u8, bytes: &[u8]) -> &[u8] {
        if bytes.len() < self.inline.len() {
            self.inline[0] = tag;
            self.inline[1..=bytes.len()].copy_from_slice(bytes);
            self.len = bytes.len() + 1;
            &self.inline[..self.len]
        } else {
            self.spill.clear();
            self.spill.push(tag);
            self.spill.extend_from_slice(bytes);
            &self.spill
        }
    }
}

const TAG_IP: u8 = b'i';
const TAG_PRINCIPAL: u8 = b'p';
const TAG_ROUTE: u8 = b'r';
const TAG_GLOBAL: u8 = b'g';

/// The namespaced limiter key of a request for a key kind: what the gate passes to the
/// limiter, and what [`Gate::reset`] needs.
pub fn limiter_key(
    kind: KeyKind,
    route: &str,
    ip: Option<IpAddr>,
    principal: Option<&str>,
    keyer: IpKeyer,
) -> Vec<u8> {
    let mut buf = KeyBuf::new();
    key_bytes(&mut buf, kind, route, ip, principal, keyer).to_vec()
}

fn key_bytes<'b>(
    buf: &'b mut KeyBuf,
    kind: KeyKind,
    route: &str,
    ip: Option<IpAddr>,
    principal: Option<&str>,
    keyer: IpKeyer,
) -> &'b [u8] {
    match (kind, principal) {
        (KeyKind::Principal, Some(p)) => buf.set(TAG_PRINCIPAL, p.as_bytes()),
        // Without a principal, a principal limit counts the client address.
        (KeyKind::Ip | KeyKind::Principal, _) => match ip {
            Some(ip) => buf.set(TAG_IP, keyer.key(ip).as_bytes()),
            None => buf.set(TAG_IP, b""),
        },
        (KeyKind::Route, _) => buf.set(TAG_ROUTE, route.as_bytes()),
        (KeyKind::Global, _) => buf.set(TAG_GLOBAL, b""),
    }
}

/// The key as people read it, for logs and reports.
fn key_display(
    kind: KeyKind,
    route: &str,
    ip: Option<IpAddr>,
    principal: Option<&str>,
    keyer: IpKeyer,
) -> String {
    match (kind, principal) {
        (KeyKind::Principal, Some(p)) => format!("principal:{p}"),
        (KeyKind::Ip | KeyKind::Principal, _) => match ip {
            Some(ip) => format!("ip:{}", keyer.key(ip)),
            None => "ip:unknown".into(),
        },
        (KeyKind::Route, _) => format!("route:{route}"),
        (KeyKind::Global, _) => "global".into(),
    }
}

impl Gate {
    /// Starts a gate from a validated config.
    pub fn builder(config: Config) -> GateBuilder {
        GateBuilder {
            config,
            clock: None,
        }
    }

    /// A gate with the default clock.
    pub fn new(config: Config) -> Result<Gate, GateError> {
        Self::builder(config).build()
    }

    /// Decides one request.
    pub fn decide(&self, req: &GateRequest<'_>) -> Outcome {
        self.decide_at(req, self.clock.now())
    }

    /// [`Gate::decide`] at an explicit time (Unix-epoch nanoseconds), for deterministic tests.
    pub fn decide_at(&self, req: &GateRequest<'_>, now: u64) -> Outcome {
        let mut out = Outcome::new();
        self.decide_into(req, now, &mut out);
        out
    }

    /// [`Gate::decide_at`] into an outcome the caller reuses (one per worker thread, say): no
    /// allocation once its buffers have grown. Whatever `out` held is replaced, and its
    /// concurrency leases are released first, so reuse an outcome only once its response is
    /// done.
    pub fn decide_into(&self, req: &GateRequest<'_>, now: u64, out: &mut Outcome) {
        out.clear();
        let inner = self.inner.read();
        self.decide_in(&inner, req, now, out);
    }

    fn decide_in(&self, inner: &Inner, req: &GateRequest<'_>, now: u64, out: &mut Outcome) {
        let headers = &mut out.headers;
        let creq = CorsRequest {
            method: req.method,
            origin: req.origin,
            access_control_request_method: req.request_method,
            access_control_request_headers: req.request_headers,
            access_control_request_private_network: req.request_private_network,
        };
        if let Some(cors) = &inner.cors {
            // Written straight into the outcome's headers: CORS headers go on every answer.
            let mut sink = CorsInto {
                headers,
                refusal: None,
            };
            let kind = cors.decide_into(&creq, &mut sink);
            if let Some(refusal) = sink.refusal {
                self.abuse.cors_refused.0.add(1);
                out.answer(
                    Status::Forbidden,
                    Reason::Cors {
                        refusal: refusal.to_string(),
                    },
                );
                return;
            }
            if kind == RequestKind::Preflight {
                // Answered here, before any route or limit: preflights are never charged.
                self.abuse.preflights.0.add(1);
                out.answer(Status::Preflight, Reason::Preflight);
                return;
            }
        }
        let Some(route) = inner
            .routes
            .iter()
            .find(|r| r.pattern.matches(req.method, req.path))
        else {
            self.abuse.unrouted.0.add(1);
            out.answer(Status::Pass, Reason::NoRoute);
            return;
        };
        let limits = match (&route.anonymous, req.principal) {
            (Some(anon), None) => anon,
            _ => &route.limits,
        };
        let applied = &mut out.applied;
        let leases = &mut out.leases;
        let mut denied_by = None;
        let mut buf = KeyBuf::new();
        for (i, limit) in limits.iter().enumerate() {
            let slot = &inner.policies[limit.policy_index(req.tier)];
            let key = key_bytes(
                &mut buf,
                limit.key,
                route.text,
                req.client_ip,
                req.principal,
                inner.keyer,
            );
            let decision = if slot.concurrency {
                slot.limiter
                    .acquire_at(slot.id, key, 1, now)
                    .map(|(d, lease)| {
                        if let Some(lease) = lease {
                            leases.0.push((slot.limiter.clone(), lease));
                        }
                        d
                    })
            } else {
                slot.limiter.check_at(slot.id, key, 1, now)
            };
            // A limiter error cannot happen for a validated config (cost 1, right kind of
            // call); should one happen, the limit fails closed.
            let decision = decision.unwrap_or(Decision {
                allowed: false,
                limit: 0,
                remaining: 0,
                reset_after: Duration::ZERO,
                retry_after: Duration::from_secs(1),
                delay: Duration::ZERO,
                policy: slot.id,
                at: now,
            });
            if decision.allowed {
                limit.counters.allowed.0.add(1);
                if !decision.delay.is_zero() {
                    limit.counters.delayed.0.add(1);
                }
            } else {
                limit.counters.denied.0.add(1);
            }
            applied.push(Applied {
                policy: slot.name,
                key: limit.key,
                shadow: limit.shadow,
                decision,
            });
            if !decision.allowed && !limit.shadow {
                denied_by = Some(i);
                break;
            }
        }
        if let Some(i) = denied_by {
            // All or nothing: give back what the earlier limits took.
            drop(std::mem::take(leases));
            for (limit, a) in limits.iter().zip(applied.iter()).take(i) {
                let slot = &inner.policies[limit.policy_index(req.tier)];
                if a.decision.allowed && !slot.concurrency {
                    let key = key_bytes(
                        &mut buf,
                        limit.key,
                        route.text,
                        req.client_ip,
                        req.principal,
                        inner.keyer,
                    );
                    let _ = slot.limiter.refund_at(slot.id, key, 1, now);
                }
            }
            let limit = &limits[i];
            let key = key_display(
                limit.key,
                route.text,
                req.client_ip,
                req.principal,
                inner.keyer,
            );
            let policy = applied[i].policy.to_string();
            self.abuse.deny(key.clone(), &policy, route.text, now);
            if let Some(store) = &self.store {
                self.abuse.save_now_and_then(store.as_ref(), now);
            }
            self.rate_headers(inner, applied, headers);
            out.route = Some(route.text);
            out.answer(
                Status::Limited,
                Reason::Limited {
                    policy,
                    key,
                    route: route.text.to_string(),
                },
            );
            return;
        }
        let delay = applied
            .iter()
            .filter(|a| !a.shadow)
            .map(|a| a.decision.delay)
            .max()
            .unwrap_or_default();
        self.rate_headers(inner, applied, headers);
        out.delay = delay;
        out.route = Some(route.text);
        out.answer(Status::Pass, Reason::Allowed);
    }

    /// Renders the rate-limit headers of the enforced limits (shadow ones stay invisible).
    fn rate_headers(&self, inner: &Inner, applied: &[Applied], out: &mut HeaderBuf) {
        let items = applied.iter().filter(|a| !a.shadow).filter_map(|a| {
            // Names are interned: compare pointers, not text.
            let slot = inner
                .policies
                .iter()
                .find(|p| std::ptr::eq(p.name, a.policy))?;
            let q = slot.settings.policy.quota();
            Some((
                PolicyMeta {
                    name: slot.name,
                    quota: q.count(),
                    window: q.window(),
                },
                a.decision,
            ))
        });
        render_into(inner.style, items, out);
    }

    /// Applies a new config without losing the counters of policies that did not change.
    /// The old config keeps running if the new one cannot be applied.
    pub fn reload(&self, config: Config) -> Result<ReloadSummary, GateError> {
        let old = self.inner.read().clone();
        let inner = compile(config, Some(&old), &self.clock, self.store.as_ref())?;
        let mut summary = ReloadSummary::default();
        for p in &inner.policies {
            let kept = old
                .policies
                .iter()
                .any(|o| Arc::ptr_eq(&o.limiter, &p.limiter));
            match kept {
                true => summary.kept.push(p.name.to_string()),
                false => summary.fresh.push(p.name.to_string()),
            }
        }
        for o in &old.policies {
            if !inner.policies.iter().any(|p| p.name == o.name) {
                summary.removed.push(o.name.to_string());
            }
        }
        *self.inner.write() = Arc::new(inner);
        Ok(summary)
    }

    /// Reads, validates and applies a config file (see [`Gate::reload`]).
    pub fn reload_file(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<ReloadSummary, GateError> {
        self.reload(Config::load(path)?)
    }

    /// The config in force.
    pub fn config(&self) -> Config {
        self.inner.read().config.clone()
    }

    /// Forgets the state of a key under a policy (unblocks it). `key` is what the policy is
    /// keyed by: an IP address for `ip`, the principal for `principal`, the route's `match`
    /// for `route`, anything for `global`. Returns whether the key had state.
    pub fn reset(&self, policy: &str, kind: KeyKind, key: &str) -> Result<bool, Error> {
        let inner = self.inner.read();
        let slot = inner
            .policies
            .iter()
            .find(|p| p.name == policy)
            .ok_or_else(|| Error::UnknownPolicy(policy.into()))?;
        let bytes = match kind {
            KeyKind::Ip => {
                let ip: IpAddr = key.parse().map_err(|_| {
                    Error::UnknownPolicy(format!("{policy}: {key:?} is not an IP address"))
                })?;
                limiter_key(kind, "", Some(ip), None, inner.keyer)
            }
            KeyKind::Principal => limiter_key(kind, "", None, Some(key), inner.keyer),
            KeyKind::Route => limiter_key(kind, key, None, None, inner.keyer),
            KeyKind::Global => limiter_key(kind, "", None, None, inner.keyer),
        };
        slot.limiter.reset(slot.id, bytes)
    }

    /// Counters per route and limit, per policy, the most limited keys and the latest denials.
    pub fn stats(&self) -> GateStats {
        let inner = self.inner.read();
        let mut limits = Vec::new();
        for r in &inner.routes {
            let lists = [(false, Some(&r.limits)), (true, r.anonymous.as_ref())];
            for (anonymous, list) in lists {
                for l in list.into_iter().flatten() {
                    let policy = match &l.select {
                        Select::Fixed(i) => inner.policies[*i].name.to_string(),
                        Select::Tiers { tiers, .. } => tiers
                            .iter()
                            .map(|(t, i)| format!("{t}:{}", inner.policies[*i].name))
                            .collect::<Vec<_>>()
                            .join(","),
                    };
                    limits.push(LimitStats {
                        route: r.text.to_string(),
                        policy,
                        key: l.key.name().into(),
                        anonymous,
                        shadow: l.shadow,
                        allowed: l.counters.allowed.0.get(),
                        denied: l.counters.denied.0.get(),
                        delayed: l.counters.delayed.0.get(),
                    });
                }
            }
        }
        let mut policies = Vec::new();
        for slot in &inner.policies {
            let stats: Option<PolicyStats> = slot
                .limiter
                .stats()
                .into_iter()
                .find(|s| *s.name == *slot.name);
            let q = slot.settings.policy.quota();
            if let Some(s) = stats {
                policies.push(PolicyStatsView {
                    name: s.name,
                    algorithm: slot.settings.policy.algorithm().name().into(),
                    count: q.count(),
                    window_ms: u64::try_from(q.window().as_millis()).unwrap_or(u64::MAX),
                    burst: q.burst(),
                    allowed: s.allowed,
                    denied: s.denied,
                    delayed: s.delayed,
                    live_keys: s.live_keys,
                    capacity: s.capacity,
                });
            }
        }
        GateStats {
            limits,
            policies,
            unrouted: self.abuse.unrouted.0.get(),
            preflights: self.abuse.preflights.0.get(),
            cors_refused: self.abuse.cors_refused.0.get(),
            top_limited: self.abuse.top(),
            recent_denials: self.abuse.recent(),
        }
    }

    /// The live keys of a policy with their state, most exhausted first. Key names are known
    /// for keys seen while a store was attached (`key` is then e.g. `ip:203.0.113.9`); others
    /// show their fingerprint.
    pub fn keys(&self, policy: &str) -> Result<Vec<KeyState>, Error> {
        let inner = self.inner.read();
        let slot = inner
            .policies
            .iter()
            .find(|p| p.name == policy)
            .ok_or_else(|| Error::UnknownPolicy(policy.into()))?;
        let mut keys: Vec<KeyState> = slot
            .limiter
            .keys(slot.id)?
            .into_iter()
            .map(|k| KeyState {
                key: match &k.name {
                    Some(name) => describe_key(name),
                    None => format!("#{:016x}", k.fingerprint),
                },
                blocked: k.blocked,
                // The listed decision is that of one more request: add it back.
                remaining: match k.decision.allowed {
                    true => k.decision.remaining.saturating_add(1).min(k.decision.limit),
                    false => 0,
                },
                limit: k.decision.limit,
                retry_after_ms: millis(k.decision.retry_after),
                reset_after_ms: millis(k.decision.reset_after),
            })
            .collect();
        keys.sort_by(|a, b| (a.remaining, &a.key).cmp(&(b.remaining, &b.key)));
        Ok(keys)
    }

    /// Writes every counter and the log of recent denials to the store and makes them durable
    /// (nothing to do in memory).
    pub fn close(&self) -> Result<(), Error> {
        if let Some(store) = &self.store {
            self.abuse.save(store.as_ref(), self.clock.now())?;
        }
        let inner = self.inner.read();
        let mut done: Vec<&Arc<Limiter>> = Vec::new();
        for p in &inner.policies {
            if !done.iter().any(|l| Arc::ptr_eq(l, &p.limiter)) {
                p.limiter.close()?;
                done.push(&p.limiter);
            }
        }
        if let Some(store) = &self.store {
            // The limiters sync only what they wrote; the log is the gate's own.
            store.sync(true)?;
        }
        Ok(())
    }

    /// The gate's clock reading, Unix nanoseconds.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// The key display of a request under a key kind, as logs and stats show it.
    pub fn key_display(
        &self,
        kind: KeyKind,
        route: &str,
        ip: Option<IpAddr>,
        principal: Option<&str>,
    ) -> String {
        key_display(kind, route, ip, principal, self.inner.read().keyer)
    }
}

impl Limit {
    #[inline]
    fn policy_index(&self, tier: Option<&str>) -> usize {
        match &self.select {
            Select::Fixed(i) => *i,
            Select::Tiers { tiers, default } => tier
                .and_then(|t| tiers.iter().find(|(name, _)| name == t))
                .map_or(*default, |(_, i)| *i),
        }
    }
}

impl Default for Outcome {
    fn default() -> Self {
        Self::new()
    }
}

impl Outcome {
    /// An empty outcome, with room for a typical decision.
    pub fn new() -> Self {
        Self {
            status: Status::Pass,
            headers: HeaderBuf::new(),
            delay: Duration::ZERO,
            leases: Leases::default(),
            reason: Reason::NoRoute,
            applied: Vec::with_capacity(4),
            route: None,
        }
    }

    /// Forgets the previous decision, keeping the buffers; its leases are released.
    fn clear(&mut self) {
        self.headers.clear();
        self.applied.clear();
        drop(std::mem::take(&mut self.leases));
        self.delay = Duration::ZERO;
        self.route = None;
    }

    fn answer(&mut self, status: Status, reason: Reason) {
        self.status = status;
        self.reason = reason;
    }
}
