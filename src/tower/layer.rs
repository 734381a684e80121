//! The layer and how it reads a request: principal, tier and the TCP peer.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::request::Parts;
use tower_layer::Layer;

use super::service::GateService;
use crate::gate::Gate;

type Extract<T> = Arc<dyn Fn(&Parts) -> Option<T> + Send + Sync>;

/// Puts a [`Gate`] in front of a service. Cheap to clone; every service it makes shares the
/// gate.
#[derive(Clone)]
pub struct GateLayer {
    pub(super) shared: Arc<Shared>,
}

/// The TCP peer, from the extensions the servers this layer knows put on a request.
fn default_peer(parts: &Parts) -> Option<IpAddr> {
    if let Some(a) = parts.extensions.get::<SocketAddr>() {
        return Some(a.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(c) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(c.0.ip());
    }
    None
}

/// What every service of one layer shares.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) gate: Arc<Gate>,
    pub(super) principal: Option<Extract<String>>,
    pub(super) tier: Option<Extract<String>>,
    pub(super) peer: Extract<IpAddr>,
    pub(super) expose: bool,
}

impl fmt::Debug for GateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateLayer")
            .field("gate", &self.shared.gate)
            .field("principal", &self.shared.principal.is_some())
            .field("tier", &self.shared.tier.is_some())
            .finish_non_exhaustive()
    }
}

impl GateLayer {
    /// A layer deciding with `gate`. By default every request is anonymous (limits keyed by
    /// principal fall back to the route's `anonymous` list), without a tier of the
    /// application's, and its client is the TCP peer ([`GateLayer::peer`]) or, behind the
    /// config's `trusted_proxies`, the client their forwarding headers name.
    pub fn new(gate: impl Into<Arc<Gate>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                gate: gate.into(),
                principal: None,
                tier: None,
                peer: Arc::new(default_peer),
                expose: false,
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        change(&mut shared);
        Self {
            shared: Arc::new(shared),
        }
    }

    /// How to find the principal (user id, API key) of a request, e.g. from an extension
    /// the application's authentication layer set. `None`: anonymous.
    pub fn principal<F>(self, extract: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.with(|s| s.principal = Some(Arc::new(extract)))
    }

    /// The principal is the token of `Authorization: Bearer <token>` (API keys).
    pub fn principal_from_bearer(self) -> Self {
        self.principal(|parts| bearer_token(&parts.headers).map(str::to_owned))
    }

    /// How to find the tier the application vouches for (from its own authentication, never
    /// a header any client can send). Without it, the config's `[principals]` and trusted
    /// `tier_header` decide.
    pub fn tier<F>(self, extract: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.with(|s| s.tier = Some(Arc::new(extract)))
    }

    /// How to find the TCP peer's address. By default: the request's `SocketAddr` extension
    /// (which hyper users insert per connection), and with the crate feature `axum`, axum's
    /// `ConnectInfo<SocketAddr>` (serve the app with `into_make_service_with_connect_info`).
    /// A request whose peer is not found is refused by any limit keyed by address (and counted
    /// in `portcullis_requests_without_client_address_total`). Forwarding headers are believed
    /// only from the config's `trusted_proxies`.
    pub fn peer<F>(self, extract: F) -> Self
    where
        F: Fn(&Parts) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.with(|s| s.peer = Arc::new(extract))
    }

    /// Hands the inner service the gate's decisions as a [`super::Decided`] request
    /// extension (one allocation per request, so off by default).
    pub fn expose_decisions(self) -> Self {
        self.with(|s| s.expose = true)
    }

    /// The gate.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.shared.gate
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case), if the request
/// carries a non-empty one as UTF-8 text.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = super::service::text(headers.get(http::header::AUTHORIZATION)?)?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl<S> Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService::new(inner, self.shared.clone())
    }
}
