//! The service: decides, answers or calls the inner service, and finishes its response.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderMap, HeaderName};
use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::GateBody;
use super::decided::Decided;
use super::layer::Shared;
use super::response::{add_headers, answer, unavailable};
use crate::gate::{GateRequest, Leases, Outcome};

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

pin_project! {
    /// The response future of [`GateService`].
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        // Decided at once and passed: the inner service's future, then the gate's headers.
        Inner { #[pin] future: F, outcome: Option<Outcome> },
        // The gate's own answer.
        Answer { response: Option<Response<GateBody<B>>> },
        // A shaped request, or one decided off the runtime.
        Waiting { future: Pin<Box<dyn Future<Output = Answer<B, E>> + Send>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Answer<B, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, outcome } => {
                let response = std::task::ready!(future.poll(cx))?;
                Poll::Ready(Ok(finish(response, outcome.take())))
            }
            KindProj::Answer { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Ready(Ok(unavailable())),
            },
            KindProj::Waiting { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, B, E> std::fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// The inner service's response with the gate's headers, holding the request's leases.
fn finish<B>(response: Response<B>, outcome: Option<Outcome>) -> Response<GateBody<B>> {
    let (mut head, body) = response.into_parts();
    let leases = match outcome {
        Some(mut outcome) => {
            add_headers(&outcome, &mut head.headers);
            outcome.take_leases()
        }
        None => Leases::default(),
    };
    Response::from_parts(head, GateBody::inner(body, leases))
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
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let (mut parts, body) = req.into_parts();
        let facts = Facts::read(shared, &parts);
        let decided = {
            let mut joined = Joined::default();
            let req = facts.request(&parts, &mut joined);
            // Most decisions are a few atomic operations: made here, without a task.
            (!shared.gate.may_wait(&req)).then(|| shared.gate.decide(&req))
        };
        let kind = match decided {
            Some(outcome) if outcome.status_code().is_some() => Kind::Answer {
                response: Some(answer(&outcome)),
            },
            Some(outcome) if outcome.delay().is_zero() => {
                expose(shared, &facts, &mut parts, &outcome);
                // The inner service was polled ready: it serves this request now.
                let future = self.inner.call(Request::from_parts(parts, body));
                Kind::Inner {
                    future,
                    outcome: Some(outcome),
                }
            }
            decided => {
                // The clone that was not polled ready stays here; the ready one waits with
                // the request.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                Kind::Waiting {
                    future: Box::pin(wait(inner, shared.clone(), facts, parts, body, decided)),
                }
            }
        };
        ResponseFuture { kind }
    }
}

/// Hands the inner service the decisions, when the layer was asked to.
fn expose(shared: &Shared, facts: &Facts, parts: &mut Parts, outcome: &Outcome) {
    if shared.expose {
        let mut joined = Joined::default();
        let decided = Decided::of(&shared.gate, &facts.request(parts, &mut joined), outcome);
        parts.extensions.insert(decided);
    }
}

/// The slow path: a decision off the runtime, a shaping delay, then the inner service.
async fn wait<S, ReqBody, ResBody>(
    mut inner: S,
    shared: Arc<Shared>,
    facts: Facts,
    parts: Parts,
    body: ReqBody,
    decided: Option<Outcome>,
) -> Answer<ResBody, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
{
    let (mut parts, facts, outcome) = match decided {
        Some(outcome) => (parts, facts, outcome),
        None => match decide_off_runtime(shared.clone(), facts, parts).await {
            Some(decided) => decided,
            None => return Ok(unavailable()),
        },
    };
    if outcome.status_code().is_some() {
        return Ok(answer(&outcome));
    }
    if !outcome.delay().is_zero() {
        // Shaping: the request waits its turn without holding a thread.
        tokio::time::sleep(outcome.delay()).await;
    }
    expose(&shared, &facts, &mut parts, &outcome);
    let response = inner.call(Request::from_parts(parts, body)).await?;
    Ok(finish(response, Some(outcome)))
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
        use http::header::{ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
        const PRIVATE_NETWORK: HeaderName =
            HeaderName::from_static("access-control-request-private-network");
        const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
        let h = &parts.headers;
        let mut req = GateRequest::new(parts.method.as_str(), parts.uri.path());
        req.origin = h.get(ORIGIN).and_then(text);
        req.request_method = h.get(ACCESS_CONTROL_REQUEST_METHOD).and_then(text);
        req.request_headers = h.get(ACCESS_CONTROL_REQUEST_HEADERS).and_then(text);
        req.request_private_network = h
            .get(PRIVATE_NETWORK)
            .and_then(text)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        req.client_ip = self.peer;
        req.principal = self.principal.as_deref();
        req.tier = self.tier.as_deref();
        let Joined {
            forwarded_for,
            forwarded,
        } = joined;
        req.forwarded_for = all(h, FORWARDED_FOR, forwarded_for);
        req.forwarded = all(h, http::header::FORWARDED, forwarded);
        req.tier_claim = self
            .tier_header
            .as_deref()
            .and_then(|name| h.get(name))
            .and_then(text);
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
fn all<'a>(headers: &'a HeaderMap, name: HeaderName, room: &'a mut String) -> Option<&'a str> {
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
