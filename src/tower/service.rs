//! The service: decides, answers or calls the inner service, and finishes its response.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderMap, HeaderName};
use http::request::Parts;
use http::{Request, Response};
use tower_service::Service;

use super::body::GateBody;
use super::decided::Decided;
use super::layer::Shared;
use super::response::{add_headers, answer, unavailable};
use crate::gate::{GateRequest, Outcome};

/// The gate in front of `S` (made by [`super::GateLayer`]).
#[derive(Clone)]
pub struct GateService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for GateService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateService").finish_non_exhaustive()
    }
}

impl<S> GateService<S> {
    pub(super) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

type Answer<B, E> = Result<Response<GateBody<B>>, E>;

/// The response future of [`GateService`].
pub struct ResponseFuture<B, E> {
    inner: Pin<Box<dyn Future<Output = Answer<B, E>> + Send>>,
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<GateBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B, E> std::fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GateService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<GateBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone that was not polled ready stays here; the ready one serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let (parts, body) = req.into_parts();
        let facts = Facts::read(&shared, &parts);
        let blocking = {
            let mut joined = Joined::default();
            shared.gate.may_block(&facts.request(&parts, &mut joined))
        };
        let decided = (!blocking).then(|| decide(&shared, &facts, &parts));

        ResponseFuture {
            inner: Box::pin(async move {
                let (mut parts, facts, outcome) = match decided {
                    Some(outcome) => (parts, facts, outcome),
                    None => match decide_off_runtime(shared.clone(), facts, parts).await {
                        Some(decided) => decided,
                        None => return Ok(unavailable()),
                    },
                };
                if let Some(status) = outcome.status_code() {
                    return Ok(answer(&outcome, status));
                }
                if !outcome.delay().is_zero() {
                    // Shaping: the request waits its turn without holding a thread.
                    tokio::time::sleep(outcome.delay()).await;
                }
                let mut outcome = outcome;
                if shared.expose {
                    let mut joined = Joined::default();
                    let decided =
                        Decided::of(&shared.gate, &facts.request(&parts, &mut joined), &outcome);
                    parts.extensions.insert(decided);
                }
                let response = inner.call(Request::from_parts(parts, body)).await?;
                let leases = outcome.take_leases();
                let (mut head, body) = response.into_parts();
                add_headers(&outcome, &mut head.headers);
                Ok(Response::from_parts(head, GateBody::inner(body, leases)))
            }),
        }
    }
}

/// What the layer's extractors say of a request, owned so it can move to a blocking thread.
struct Facts {
    principal: Option<String>,
    tier: Option<String>,
    peer: Option<IpAddr>,
    tier_header: Option<String>,
}

/// Room for header values the request carried several times, joined with `,`.
#[derive(Default)]
struct Joined {
    forwarded_for: String,
    forwarded: String,
}

impl Facts {
    fn read(shared: &Shared, parts: &Parts) -> Self {
        Self {
            principal: shared.principal.as_ref().and_then(|f| f(parts)),
            tier: shared.tier.as_ref().and_then(|f| f(parts)),
            peer: (shared.peer)(parts),
            tier_header: shared.gate.tier_header(),
        }
    }

    fn request<'a>(&'a self, parts: &'a Parts, joined: &'a mut Joined) -> GateRequest<'a> {
        let h = &parts.headers;
        let one = |name: &str| h.get(name).and_then(text);
        let mut req = GateRequest::new(parts.method.as_str(), parts.uri.path());
        req.origin = one("origin");
        req.request_method = one("access-control-request-method");
        req.request_headers = one("access-control-request-headers");
        req.request_private_network = one("access-control-request-private-network")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        req.client_ip = self.peer;
        req.principal = self.principal.as_deref();
        req.tier = self.tier.as_deref();
        let Joined {
            forwarded_for,
            forwarded,
        } = joined;
        req.forwarded_for = all(h, "x-forwarded-for", forwarded_for);
        req.forwarded = all(h, "forwarded", forwarded);
        req.tier_claim = self.tier_header.as_deref().and_then(one);
        req
    }
}

/// A header value as text: UTF-8 (HTTP allows bytes past ASCII, and clients send UTF-8
/// tokens); `None` otherwise.
pub(super) fn text(value: &http::HeaderValue) -> Option<&str> {
    std::str::from_utf8(value.as_bytes()).ok()
}

/// Every value of a header, joined with `,` into `room` when there are several (a proxy
/// chain may send each hop on its own line); `None` when absent or not text.
fn all<'a>(headers: &'a HeaderMap, name: &str, room: &'a mut String) -> Option<&'a str> {
    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
    let mut values = headers.get_all(&name).iter();
    let first = text(values.next()?)?;
    let Some(second) = values.next() else {
        return Some(first);
    };
    room.push_str(first);
    for v in std::iter::once(second).chain(values) {
        room.push(',');
        room.push_str(text(v)?);
    }
    Some(room)
}

fn decide(shared: &Shared, facts: &Facts, parts: &Parts) -> Outcome {
    let mut joined = Joined::default();
    shared.gate.decide(&facts.request(parts, &mut joined))
}

/// Decides a request whose route writes through to the disk on a blocking thread, so the
/// runtime's threads keep serving; inline when there is no runtime to ask.
/// `None` when the runtime is shutting down (its blocking pool takes no more work).
async fn decide_off_runtime(
    shared: Arc<Shared>,
    facts: Facts,
    parts: Parts,
) -> Option<(Parts, Facts, Outcome)> {
    if tokio::runtime::Handle::try_current().is_err() {
        let outcome = decide(&shared, &facts, &parts);
        return Some((parts, facts, outcome));
    }
    let task = tokio::task::spawn_blocking(move || {
        let outcome = decide(&shared, &facts, &parts);
        (parts, facts, outcome)
    });
    task.await.ok()
}
