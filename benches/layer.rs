//! The tower layer's cost over a bare service, against tower_governor's `GovernorLayer` with
//! tower-http's `CorsLayer` doing the same work: one per-IP GCRA limit with rate-limit headers
//! and CORS for an allowed origin, on an allowed request. Each stack's *added* time is its
//! time minus the bare service's, measured in alternating rounds of the same run.

#![allow(missing_docs)] // criterion_group! generates undocumented functions
use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderValue, Method, Request, Response};
use http_body_util::Full;
use portcullis::config::Config;
use portcullis::tower::GateLayer;
use portcullis::Gate;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;
use tower_http::cors::CorsLayer;

const ORIGIN: &str = "https://app.example.com";

const CONFIG: &str = r#"
header_style = "legacy"
[[policy]]
name = "api"
limit = "1000000000/s"
burst = 1000000
[[route]]
match = "/"
limits = [{ policy = "api", key = "ip" }]
[cors]
allowed_origins = ["https://app.example.com"]
"#;

/// axum's body: tower_governor's refusals are built as axum responses.
type Body = axum::body::Body;

async fn bare(_: Request<Full<Bytes>>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::from("ok")))
}

fn request() -> Request<Full<Bytes>> {
    let peer: SocketAddr = "203.0.113.9:40000".parse().expect("addr");
    let mut req = Request::get("/api/v1/things")
        .header("origin", ORIGIN)
        .body(Full::new(Bytes::new()))
        .expect("request");
    req.extensions_mut().insert(peer);
    req.extensions_mut().insert(axum_like_connect_info(peer));
    req
}

/// tower_governor's `PeerIpKeyExtractor` reads axum's `ConnectInfo<SocketAddr>`.
fn axum_like_connect_info(peer: SocketAddr) -> axum::extract::ConnectInfo<SocketAddr> {
    axum::extract::ConnectInfo(peer)
}

/// Runs `n` requests through `svc`, one at a time as a server's connection would.
fn drive<S, B>(rt: &tokio::runtime::Runtime, svc: &S, n: u32) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    rt.block_on(async {
        for _ in 0..n {
            let r = svc.clone().oneshot(request()).await.expect("answered");
            black_box(r);
        }
    });
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

// Three opaque service types, named once here.
#[allow(clippy::type_complexity)]
fn stacks() -> (
    impl Service<Request<Full<Bytes>>, Response = Response<Body>, Error = Infallible> + Clone,
    impl Service<
            Request<Full<Bytes>>,
            Response = Response<portcullis::tower::GateBody<Body>>,
            Error = Infallible,
        > + Clone,
    impl Service<Request<Full<Bytes>>, Response = Response<Body>, Error = impl std::fmt::Debug> + Clone,
) {
    let gate = Arc::new(Gate::new(CONFIG.parse::<Config>().expect("config")).expect("gate"));
    let ours = GateLayer::new(gate).layer(tower::service_fn(bare));
    let governor = Arc::new(
        GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(1_000_000)
            .use_headers()
            .finish()
            .expect("governor config"),
    );
    let cors = CorsLayer::new()
        .allow_origin(HeaderValue::from_static(ORIGIN))
        .allow_methods([Method::GET]);
    let peers = ServiceBuilder::new()
        .layer(cors)
        .layer(GovernorLayer::new(governor))
        .service(tower::service_fn(bare));
    (tower::service_fn(bare), ours, peers)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (bare, ours, peers) = stacks();
    let mut g = c.benchmark_group("layer");
    g.bench_function("bare service", |b| {
        b.iter(|| rt.block_on(bare.clone().oneshot(request())))
    });
    g.bench_function("portcullis GateLayer", |b| {
        b.iter(|| rt.block_on(ours.clone().oneshot(request())))
    });
    g.bench_function("GovernorLayer + CorsLayer", |b| {
        b.iter(|| rt.block_on(peers.clone().oneshot(request())))
    });
    g.finish();
}

fn alternating(_: &mut Criterion) {
    const ROUNDS: usize = 9;
    const N: u32 = 200_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (bare, ours, peers) = stacks();
    // Both stacks answer, with their headers: what is timed is the same work.
    let r = rt.block_on(ours.clone().oneshot(request())).expect("ours");
    assert!(r.headers().contains_key("x-ratelimit-remaining"));
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    let r = rt
        .block_on(peers.clone().oneshot(request()))
        .expect("peers");
    assert!(r.headers().contains_key("x-ratelimit-remaining"));
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    // The floor: no decision at all, only our response's headers inserted (static values).
    let ours_headers: Vec<(http::HeaderName, HeaderValue)> = r_headers(&rt, &ours);
    let floor = tower::ServiceBuilder::new()
        .map_response(move |mut r: Response<Body>| {
            for (n, v) in &ours_headers {
                r.headers_mut().append(n.clone(), v.clone());
            }
            r
        })
        .service(tower::service_fn(crate::bare));
    let (mut b, mut o, mut p, mut ratio) = (vec![], vec![], vec![], vec![]);
    let mut f = vec![];
    for _ in 0..ROUNDS {
        let tb = drive(&rt, &bare, N);
        let to = drive(&rt, &ours, N);
        let tp = drive(&rt, &peers, N);
        let tf = drive(&rt, &floor, N);
        b.push(tb);
        o.push(to - tb);
        p.push(tp - tb);
        f.push(tf - tb);
        ratio.push((to - tb) / (tp - tb));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "layer overhead, {ROUNDS} alternating rounds of {N}: bare service {:.0} ns; added by \
         portcullis {:.0} ns, by GovernorLayer + CorsLayer {:.0} ns; median of the rounds' \
         ratios {:.2}",
        median(&mut b),
        median(&mut o),
        median(&mut p),
        median(&mut ratio)
    );
    println!(
        "of which inserting the same {} response headers alone (no decision) adds {:.0} ns",
        r_headers(&rt, &ours).len(),
        median(&mut f)
    );
}

/// The headers our layer puts on a passed response.
fn r_headers<S>(rt: &tokio::runtime::Runtime, svc: &S) -> Vec<(http::HeaderName, HeaderValue)>
where
    S: Service<Request<Full<Bytes>>, Response = Response<portcullis::tower::GateBody<Body>>>
        + Clone,
    S::Error: std::fmt::Debug,
{
    let r = rt
        .block_on(svc.clone().oneshot(request()))
        .expect("answered");
    r.headers()
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

criterion_group!(benches, bench, alternating);
criterion_main!(benches);
