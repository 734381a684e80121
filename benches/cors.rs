//! CORS decisions, ours against tower-http's `CorsLayer` on the same policy, both turning an
//! `http::Request` into an `http::Response` with the CORS headers on it.
//!
//! `CARGO_TARGET_DIR=target/cors cargo bench --bench cors -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::header::{
    HeaderName, HeaderValue, ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use http::{Method, Request, Response, StatusCode};
use portcullis::cors::headers::{self, VARY_ACTUAL, VARY_PREFLIGHT};
use portcullis::cors::{request_headers as names, CorsPolicy, CorsRequest};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");

const ORIGINS: [&str; 3] = [
    "https://app.example.com",
    "https://admin.example.com",
    "https://www.example.com",
];

fn ours_policy() -> CorsPolicy {
    CorsPolicy::builder()
        .allow_origins(ORIGINS)
        .allow_methods(["PUT", "DELETE"])
        .allow_headers(["content-type", "x-request-id"])
        .expose_headers(["x-ratelimit-remaining"])
        .allow_credentials(true)
        .max_age_secs(600)
        .build()
        .expect("valid policy")
}

fn tower_layer() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(ORIGINS.map(HeaderValue::from_static)))
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([
            HeaderName::from_static("content-type"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([HeaderName::from_static("x-ratelimit-remaining")])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600))
}

/// The application behind both: answers 200 with an empty body.
fn app(_req: &Request<()>) -> Response<()> {
    Response::new(())
}

/// Ours, as a server built on `http` would use it: read the headers, decide, answer or call
/// the app, add the headers. Values are never copied: constants map to static header values,
/// echoes reuse the request's own values, and the policy's lists are converted once.
struct Ours {
    policy: CorsPolicy,
    expose: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
}

impl Ours {
    fn new(policy: CorsPolicy) -> Self {
        let value = |v: Option<&str>| v.and_then(|v| HeaderValue::from_str(v).ok());
        Self {
            expose: value(policy.exposed_headers()),
            max_age: value(policy.max_age_value()),
            policy,
        }
    }

    fn call(&self, req: Request<()>) -> Response<()> {
        let h = req.headers();
        let cors = CorsRequest::from_header_bytes(req.method().as_str().as_bytes(), |name| {
            let value = match name {
                names::ORIGIN => h.get(ORIGIN),
                names::REQUEST_METHOD => h.get(ACCESS_CONTROL_REQUEST_METHOD),
                names::REQUEST_HEADERS => h.get(ACCESS_CONTROL_REQUEST_HEADERS),
                _ => h.get(REQUEST_PRIVATE_NETWORK),
            };
            value.map(HeaderValue::as_bytes)
        });
        let decision = self.policy.decide(&cors);
        let mut resp = match decision.status() {
            Some(status) => {
                let mut r = Response::new(());
                *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
                r
            }
            None => app(&req),
        };
        let out = resp.headers_mut();
        for (name, value) in decision.headers() {
            if let Some(value) = self.value(&req, name, value) {
                out.append(http_name(name), value);
            }
        }
        resp
    }

    fn value(&self, req: &Request<()>, name: &str, value: &str) -> Option<HeaderValue> {
        let same = |v: &&HeaderValue| v.as_bytes() == value.as_bytes();
        let echo = |n: HeaderName| req.headers().get(n).filter(same).cloned();
        let prebuilt = |v: &Option<HeaderValue>| v.as_ref().filter(same).cloned();
        match (name, value) {
            (_, "true") => Some(HeaderValue::from_static("true")),
            (_, "*") => Some(HeaderValue::from_static("*")),
            (_, VARY_ACTUAL) => Some(HeaderValue::from_static(VARY_ACTUAL)),
            (_, VARY_PREFLIGHT) => Some(HeaderValue::from_static(VARY_PREFLIGHT)),
            (headers::ALLOW_ORIGIN, _) => echo(ORIGIN),
            (headers::ALLOW_METHODS, _) => echo(ACCESS_CONTROL_REQUEST_METHOD),
            (headers::ALLOW_HEADERS, _) => echo(ACCESS_CONTROL_REQUEST_HEADERS),
            (headers::EXPOSE_HEADERS, _) => prebuilt(&self.expose),
            (headers::MAX_AGE, _) => prebuilt(&self.max_age),
            _ => None,
        }
        .or_else(|| HeaderValue::from_str(value).ok())
    }
}

/// The `http` constant for a name the engine writes (`from_static` would parse it again).
fn http_name(name: &'static str) -> HeaderName {
    use http::header as h;
    match name {
        headers::ALLOW_ORIGIN => h::ACCESS_CONTROL_ALLOW_ORIGIN,
        headers::ALLOW_CREDENTIALS => h::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        headers::ALLOW_METHODS => h::ACCESS_CONTROL_ALLOW_METHODS,
        headers::ALLOW_HEADERS => h::ACCESS_CONTROL_ALLOW_HEADERS,
        headers::EXPOSE_HEADERS => h::ACCESS_CONTROL_EXPOSE_HEADERS,
        headers::MAX_AGE => h::ACCESS_CONTROL_MAX_AGE,
        headers::VARY => h::VARY,
        _ => HeaderName::from_static(name),
    }
}

/// A waker for futures that are ready at once: nothing ever needs waking.
struct NoopWake;

impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

/// Polls a future that is ready at once (tower-http's CORS over a synchronous service).
fn now<F: Future>(waker: &Waker, fut: F) -> F::Output {
    let mut cx = Context::from_waker(waker);
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the service is synchronous"),
    }
}

fn request(method: &str, headers: &[(&'static str, String)]) -> Request<()> {
    let mut b = Request::builder().method(method).uri("/api/items");
    for (name, value) in headers {
        b = b.header(*name, value.as_str());
    }
    b.body(()).expect("valid request")
}

/// Name, method and request headers of one benchmark case.
type Case = (&'static str, &'static str, Vec<(&'static str, String)>);

fn bench(c: &mut Criterion) {
    let ours = Ours::new(ours_policy());
    let waker = Waker::from(Arc::new(NoopWake));
    let mut svc = tower_layer().layer(tower::service_fn(|req: Request<()>| async move {
        Ok::<_, Infallible>(app(&req))
    }));

    let origin = |o: &str| ("origin", o.to_owned());
    let cases: [Case; 4] = [
        (
            "actual_allowed",
            "GET",
            vec![origin("https://www.example.com")],
        ),
        (
            "preflight_allowed",
            "OPTIONS",
            vec![
                origin("https://www.example.com"),
                ("access-control-request-method", "PUT".into()),
                (
                    "access-control-request-headers",
                    "content-type, x-request-id".into(),
                ),
            ],
        ),
        (
            "preflight_refused",
            "OPTIONS",
            vec![
                origin("https://evil.example"),
                ("access-control-request-method", "PUT".into()),
                ("access-control-request-headers", "content-type".into()),
            ],
        ),
        (
            "preflight_acrh_100kb",
            "OPTIONS",
            vec![
                origin("https://www.example.com"),
                ("access-control-request-method", "PUT".into()),
                (
                    "access-control-request-headers",
                    "x-request-id, ".repeat(100 * 1024 / 14),
                ),
            ],
        ),
    ];

    for (name, method, headers) in &cases {
        let mut group = c.benchmark_group(*name);
        group.bench_function("portcullis", |b| {
            b.iter_batched(
                || request(method, headers),
                |req| black_box(ours.call(req)),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("tower-http", |b| {
            b.iter_batched(
                || request(method, headers),
                |req| black_box(now(&waker, svc.call(req))),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
