//! What the gate is asked (a borrowed request) and what it answers (an outcome it can reuse).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::compile::Inner;
use super::headers::HeaderBuf;
use super::keys::KeyBuf;
use crate::config::KeyKind;
use crate::limit::decision::Decision;
use crate::limit::limiter::{Lease, Limiter};

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
    /// The address the request came from: the TCP peer. With `trusted_proxies` configured
    /// and the peer one of them, the gate takes the client from the forwarding headers.
    pub client_ip: Option<IpAddr>,
    /// The authenticated user id or API key; `None` for anonymous traffic.
    pub principal: Option<&'a str>,
    /// The `X-Forwarded-For` header (several joined with `,`), believed only from a trusted
    /// proxy (`trusted_proxies` in the config).
    pub forwarded_for: Option<&'a str>,
    /// The RFC 7239 `Forwarded` header (several joined with `,`), believed only from a
    /// trusted proxy; preferred over `X-Forwarded-For`.
    pub forwarded: Option<&'a str>,
    /// The principal's tier (`free`, `premium`, ...), as the application vouches for it (from
    /// its own authentication). Without it, the tier comes from [`GateRequest::tier_claim`]
    /// (trusted proxies only), then the config's `[principals]`, then the limit's default.
    pub tier: Option<&'a str>,
    /// The value of the config's `tier_header` ([`crate::gate::Gate::tier_header`]) as the
    /// request carried it: believed only when the TCP peer is one of `trusted_proxies`, since
    /// any client can send the header.
    pub tier_claim: Option<&'a str>,
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

    /// Sets `X-Forwarded-For` (believed only from a trusted proxy).
    pub fn forwarded_for(mut self, value: &'a str) -> Self {
        self.forwarded_for = Some(value);
        self
    }

    /// Sets `Forwarded` (believed only from a trusted proxy).
    pub fn forwarded(mut self, value: &'a str) -> Self {
        self.forwarded = Some(value);
        self
    }

    /// Sets the tier header's value (believed only from a trusted proxy).
    pub fn tier_claim(mut self, value: &'a str) -> Self {
        self.tier_claim = Some(value);
        self
    }
}

/// What to do with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let the handler answer (after [`Outcome::delay`]), and add the headers.
    Pass,
    /// An allowed preflight: answer 204 with the headers; do not call the handler.
    Preflight,
    /// Refused by CORS: answer 403 with the headers.
    Forbidden,
    /// Rate limited: answer 429 with the headers.
    Limited,
}

impl Action {
    /// The status code to answer with; `None` when the handler answers.
    pub fn status_code(self) -> Option<u16> {
        match self {
            Action::Pass => None,
            Action::Preflight => Some(204),
            Action::Forbidden => Some(403),
            Action::Limited => Some(429),
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
    /// A limit is keyed by the client address and the request has none (no peer address, or
    /// a forwarding chain with an entry that is not an address): refused rather than counted
    /// in one bucket shared by every such request (`on_missing_key = "skip"` skips the limit).
    NoClientAddress {
        /// The route's `match`.
        route: String,
    },
    /// A limit could not be decided (its store failed), so the request was refused: the gate
    /// fails closed.
    StoreError {
        /// The policy whose check failed.
        policy: String,
        /// What went wrong.
        message: String,
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
            Reason::NoClientAddress { route } => write!(
                f,
                "refused: route {route} limits by client address and the request has none"
            ),
            Reason::StoreError { policy, message } => {
                write!(
                    f,
                    "refused: policy {policy} could not be checked: {message}"
                )
            }
        }
    }
}

/// One limit's decision on a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Applied {
    /// The policy's name: a view into the compiled config the outcome holds, so read it
    /// through [`Applied::policy`] (valid while the outcome is).
    pub(super) policy: &'static str,
    /// What it was keyed by.
    pub key: KeyKind,
    /// Shadow mode: counted, not enforced.
    pub shadow: bool,
    /// The decision.
    pub decision: Decision,
    /// The policy's place in the gate's compiled config, for rendering its headers.
    pub(super) slot: u32,
}

impl Applied {
    /// The policy's name.
    pub fn policy(&self) -> &str {
        self.policy
    }
}

/// Concurrency leases held by a request: released when dropped (or by [`Leases::release`]),
/// so keep them until the response is done.
#[derive(Default)]
#[must_use = "dropping the leases releases them at once"]
pub struct Leases(pub(super) Vec<(Arc<Limiter>, Lease)>);

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
    pub(super) action: Action,
    pub(super) headers: HeaderBuf,
    pub(super) delay: Duration,
    pub(super) leases: Leases,
    pub(super) reason: Reason,
    pub(super) applied: Vec<Applied>,
    pub(super) route: Option<&'static str>,
    /// The config the last decision into this outcome ran under (see `Gate::decide_into`).
    /// The `&'static str`s of `headers`, `applied` and `route` are views into its texts: they
    /// are cleared (`Outcome::clear`) before it is replaced, and dropped with it.
    pub(super) config: Option<KeptConfig>,
    /// Scratch room for the limiter keys of a decision.
    pub(super) keys: KeyBuf,
}

/// A gate's config, as kept by an outcome between decisions.
pub(super) struct KeptConfig {
    pub(super) gate: u64,
    pub(super) generation: u64,
    pub(super) inner: Arc<Inner>,
}

impl fmt::Debug for KeptConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeptConfig")
            .field("gate", &self.gate)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Outcome {
    /// What to do.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The HTTP status to answer with (204, 403 or 429); `None` when the handler answers.
    pub fn status_code(&self) -> Option<u16> {
        self.action.status_code()
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

impl Default for Outcome {
    fn default() -> Self {
        Self::new()
    }
}

impl Outcome {
    /// An empty outcome, with room for a typical decision.
    pub fn new() -> Self {
        Self {
            action: Action::Pass,
            headers: HeaderBuf::new(),
            delay: Duration::ZERO,
            leases: Leases::default(),
            reason: Reason::NoRoute,
            applied: Vec::with_capacity(4),
            route: None,
            config: None,
            keys: KeyBuf::new(),
        }
    }

    /// Forgets the previous decision, keeping the buffers; its leases are released.
    pub(super) fn clear(&mut self) {
        self.headers.clear();
        self.applied.clear();
        // Most requests hold no lease: skip the drain.
        if !self.leases.0.is_empty() {
            drop(std::mem::take(&mut self.leases));
        }
        self.delay = Duration::ZERO;
        self.route = None;
    }

    pub(super) fn answer(&mut self, action: Action, reason: Reason) {
        self.action = action;
        self.reason = reason;
    }
}
