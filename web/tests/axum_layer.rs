//! `portcullis::tower::GateLayer` in a real axum app over a real TCP socket: limits and their
//! headers, the gate's own answers (429, 403, preflight 204) that never reach the app,
//! headers on the app's errors, leases held until the response body is done or dropped,
//! shaping that never blocks the runtime, and tiers no client can choose.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use portcullis::config::Config;
use portcullis::tower::{Decided, GateLayer};
use portcullis::Gate;
use portcullis_web::{get as req, send};
use tokio::sync::mpsc;

const CONFIG: &str = r#"
[[policy]]
name = "api"
limit = "3/m"

[[policy]]
name = "api-premium"
limit = "100/m"

[[policy]]
name = "one-at-a-time"
algorithm = "concurrency"
limit = 1
lease_timeout = "1m"

[[policy]]
name = "shaped"
algorithm = "leaky_bucket"
limit = "2/s"
max_delay = "2s"

[[route]]
match = "/stream"
limits = [{ policy = "one-at-a-time", key = "global" }]

[[route]]
match = "/shaped"
limits = [{ policy = "shaped", key = "global" }]

[[route]]
match = "/"
limits = [{ tiers = { free = "api", premium = "api-premium" }, default_tier = "free", key = "principal" }]
anonymous = [{ policy = "api", key = "ip" }]

[principals]
"premium-key" = "premium"

[cors]
allowed_origins = ["https://app.example"]
allowed_methods = ["GET", "PUT"]
allowed_headers = ["Authorization"]
"#;

struct App {
    addr: SocketAddr,
    /// Requests that reached the app's handlers.
    reached: Arc<AtomicUsize>,
    /// Feeds the body of the current `/stream` response.
    stream: mpsc::Sender<mpsc::Receiver<Result<Bytes, std::io::Error>>>,
    gate: Arc<Gate>,
}

async fn start(config: &str) -> App {
    let gate = Arc::new(Gate::new(config.parse::<Config>().unwrap()).unwrap());
    let reached = Arc::new(AtomicUsize::new(0));
    let (stream_tx, stream_rx) = mpsc::channel::<mpsc::Receiver<Result<Bytes, std::io::Error>>>(4);
    let stream_rx = Arc::new(tokio::sync::Mutex::new(stream_rx));
    let count = reached.clone();
    let app = Router::new()
        .route(
            "/hello",
            get(move |Extension(d): Extension<Decided>| async move {
                count.fetch_add(1, Ordering::SeqCst);
                format!(
                    "hello {}",
                    d.limits
                        .iter()
                        .map(|l| l.policy.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "broken") }),
        )
        .route("/shaped", get(|| async { "shaped" }))
        .route(
            "/stream",
            get(move || {
                let rx = stream_rx.clone();
                async move {
                    let chunks = rx.lock().await.recv().await.expect("a body to stream");
                    Body::new(Chunks(chunks))
                }
            }),
        )
        .layer(
            // The client address comes from axum's ConnectInfo (the feature `axum`).
            GateLayer::new(gate.clone())
                .principal_from_bearer()
                .expose_decisions(),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    App {
        addr,
        reached,
        stream: stream_tx,
        gate,
    }
}

/// A body of the chunks a test sends, ending when the test drops its sender.
struct Chunks(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|c| c.map(|c| c.map(http_body::Frame::data)))
    }
}

fn header<'a>(r: &'a http::Response<Bytes>, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn limits_answer_429_with_headers_and_a_json_body_without_calling_the_app() {
    let app = start(CONFIG).await;
    for left in ["2", "1", "0"] {
        let r = send(app.addr, req("/hello", &[("authorization", "Bearer k1")])).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some(left));
        assert_eq!(r.body(), "hello api", "the app sees the decisions");
    }
    let r = send(
        app.addr,
        req(
            "/hello",
            &[
                ("authorization", "Bearer k1"),
                ("origin", "https://app.example"),
            ],
        ),
    )
    .await;
    assert_eq!(r.status(), 429);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://app.example")
    );
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(header(&r, "content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(body["error"], "rate limited");
    assert_eq!(body["policy"], "api");
    assert_eq!(body["retry_after"], retry);
    assert!(
        !String::from_utf8_lossy(r.body()).contains("k1"),
        "the key is not echoed"
    );
    assert_eq!(app.reached.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn cors_preflights_and_refusals_are_answered_by_the_gate() {
    let app = start(CONFIG).await;
    let r = send(
        app.addr,
        http::Request::options("/hello")
            .header("host", "test")
            .header("origin", "https://app.example")
            .header("access-control-request-method", "PUT")
            .body(Default::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "access-control-allow-methods"), Some("PUT"));
    assert!(r.body().is_empty());
    let r = send(
        app.addr,
        req("/hello", &[("origin", "https://evil.example")]),
    )
    .await;
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(body["error"], "refused by the CORS policy");
    assert_eq!(app.reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_apps_errors_carry_the_gates_headers() {
    let app = start(CONFIG).await;
    let r = send(app.addr, req("/fail", &[("origin", "https://app.example")])).await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.body(), "broken");
    assert_eq!(header(&r, "x-ratelimit-remaining"), Some("2"));
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://app.example")
    );
}

#[tokio::test]
async fn tiers_come_from_the_config_never_from_the_client() {
    let app = start(CONFIG).await;
    let r = send(
        app.addr,
        req(
            "/hello",
            &[("authorization", "Bearer k"), ("x-tier", "premium")],
        ),
    )
    .await;
    assert_eq!(header(&r, "x-ratelimit-limit"), Some("3"));
    let r = send(
        app.addr,
        req("/hello", &[("authorization", "Bearer premium-key")]),
    )
    .await;
    assert_eq!(header(&r, "x-ratelimit-limit"), Some("100"));
    assert_eq!(r.body(), "hello api-premium");
}

/// Opens a `/stream` request and returns once its head arrived, with the client's connection
/// and the sender of its body chunks.
async fn open_stream(
    app: &App,
) -> (
    http::Response<hyper::body::Incoming>,
    mpsc::Sender<Result<Bytes, std::io::Error>>,
    hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let (chunks_tx, chunks_rx) = mpsc::channel(4);
    app.stream.send(chunks_rx).await.unwrap();
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let head = sender.send_request(req("/stream", &[])).await.unwrap();
    assert_eq!(head.status(), 200);
    (head, chunks_tx, sender, conn)
}

/// Waits (bounded) until `/stream` is admitted again: the lease went back.
async fn admitted_again(app: &App) -> bool {
    for _ in 0..100 {
        let state = app.gate.keys("one-at-a-time").unwrap();
        if state.iter().all(|k| k.remaining == 1) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_lease_is_held_until_the_body_is_done_or_dropped() {
    let app = start(CONFIG).await;
    // While the first response streams, a second request is over the concurrency limit.
    let (head, chunks, _sender, _conn) = open_stream(&app).await;
    let second = send(app.addr, req("/stream", &[])).await;
    assert_eq!(
        second.status(),
        429,
        "the lease is held while the body streams"
    );
    chunks.send(Ok(Bytes::from_static(b"part"))).await.unwrap();
    drop(chunks);
    let body = head.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "part");
    assert!(
        admitted_again(&app).await,
        "the lease went back when the body ended"
    );

    // A client that goes away mid-body: the server drops the body, and the lease with it.
    let (head, chunks, sender, conn) = open_stream(&app).await;
    assert_eq!(send(app.addr, req("/stream", &[])).await.status(), 429);
    drop((head, sender));
    conn.abort();
    // The next chunk finds the connection gone.
    let _ = chunks.send(Ok(Bytes::from_static(b"into the void"))).await;
    let _ = chunks.send(Ok(Bytes::from_static(b"into the void"))).await;
    assert!(
        admitted_again(&app).await,
        "the lease went back when the body was dropped"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn shaping_waits_without_blocking_the_runtime() {
    let app = start(CONFIG).await;
    // 2/s shaped: the first passes at once, the next two wait 0.5 s and 1 s.
    let first = send(app.addr, req("/shaped", &[])).await;
    assert_eq!(first.status(), 200);
    let addr = app.addr;
    let delayed = tokio::spawn(async move {
        let r = send(addr, req("/shaped", &[])).await;
        let r2 = send(addr, req("/shaped", &[])).await;
        (r.status(), r2.status())
    });
    // One runtime thread: a request elsewhere is answered while the shaped ones wait.
    tokio::task::yield_now().await;
    let other = send(app.addr, req("/hello", &[])).await;
    assert_eq!(other.status(), 200);
    assert!(
        !delayed.is_finished(),
        "the shaped requests are still waiting their turn"
    );
    assert_eq!(delayed.await.unwrap(), (StatusCode::OK, StatusCode::OK));
}

#[tokio::test(flavor = "current_thread")]
async fn immediate_durability_is_decided_off_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[store]\nkind = \"sled\"\npath = {:?}\n\n{}",
        dir.path().join("data"),
        CONFIG.replace(
            "name = \"api\"\nlimit = \"3/m\"",
            "name = \"api\"\nlimit = \"3/m\"\ndurability = \"immediate\""
        )
    );
    let app = start(&config).await;
    let probe = portcullis::GateRequest::new("GET", "/hello");
    assert!(app.gate.may_wait(&probe));
    assert!(!app
        .gate
        .may_wait(&portcullis::GateRequest::new("GET", "/shaped")));
    for left in ["2", "1", "0"] {
        let r = send(app.addr, req("/hello", &[("authorization", "Bearer k")])).await;
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some(left));
    }
    assert_eq!(
        send(app.addr, req("/hello", &[("authorization", "Bearer k")]))
            .await
            .status(),
        429
    );
}

#[tokio::test]
async fn anonymous_clients_are_keyed_by_the_connection_address_axum_reports() {
    let app = start(CONFIG).await;
    // No `.peer(..)` was given: the address comes from axum's ConnectInfo.
    for left in ["2", "1", "0"] {
        let r = send(app.addr, req("/hello", &[])).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some(left));
    }
    assert_eq!(send(app.addr, req("/hello", &[])).await.status(), 429);
    // Keyed by 127.0.0.1 under the anonymous list's policy.
    let keys = app.gate.stats();
    let text = serde_json::to_string(&keys).unwrap();
    assert!(text.contains("127.0.0.1"), "{text}");
}
