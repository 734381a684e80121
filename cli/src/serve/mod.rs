//! `serve`: the gate in front of the demo API or, with `--upstream`, of a real application,
//! on hyper and tokio with the `portcullis::tower` layer; the admin API on its own listener
//! when `--admin-listen` is given. SIGHUP reloads the config; SIGINT and SIGTERM stop
//! accepting, let requests in flight finish (up to 10 s), and write every counter to the store.

mod admin;
mod app;
mod conn;
mod demo;
mod proxy;
mod redact;
mod sketch;

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use portcullis::tower::{GateLayer, GateService};
use portcullis::Gate;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tower_layer::Layer;
use tower_service::Service;

use crate::args::ServeArgs;
use crate::commands::open_gate;
use app::{App, Body};
use conn::{Handler, InFlight, Limits, Registry};

/// How long a stop waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// Whether the request says its length twice (RFC 9112 section 6.1), or more than once.
fn ambiguous_length(headers: &HeaderMap) -> bool {
    let te = headers.contains_key(http::header::TRANSFER_ENCODING);
    let cl = headers.get_all(http::header::CONTENT_LENGTH).iter().count();
    (te && cl > 0) || cl > 1
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

/// Keeps `guard` until the body is done (hyper drops a body once written).
fn holding<B>(body: B, guard: InFlight) -> Body
where
    B: hyper::body::Body<Data = bytes::Bytes, Error = Box<dyn std::error::Error + Send + Sync>>
        + Send
        + Sync
        + 'static,
{
    Holding {
        body,
        _guard: guard,
    }
    .boxed()
}

pin_project_lite::pin_project! {
    /// A body that keeps a value alive as long as itself, and says what its body says of
    /// its size (so a known length is sent as `content-length`, not chunked).
    struct Holding<B, G> {
        #[pin]
        body: B,
        _guard: G,
    }
}

impl<B: hyper::body::Body, G> hyper::body::Body for Holding<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The public listener: the gate, then the application.
#[derive(Clone)]
struct Front {
    service: GateService<App>,
    max_body: u64,
}

impl Handler for Front {
    type Body = Body;
    type BodyError = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<Response<Body>>;

    fn call(&self, mut req: Request<Incoming>, peer: SocketAddr, guard: InFlight) -> Self::Future {
        if ambiguous_length(req.headers()) {
            // Request smuggling's signature: refused, and the connection closes after.
            let mut r = app::json(
                http::StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": "both Content-Length and Transfer-Encoding" }),
            );
            r.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            return Box::pin(async move { Ok(r.map(|body| holding(body, guard))) });
        }
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body) {
            let r = app::json(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                serde_json::json!({ "error": format!("the request body is larger than {} bytes", self.max_body) }),
            );
            return Box::pin(async move { Ok(r.map(|body| holding(body, guard))) });
        }
        req.extensions_mut().insert(peer);
        let mut service = self.service.clone();
        Box::pin(async move {
            // The demo and the proxy are always ready; asked anyway, as the contract says.
            if let Err(never) = std::future::poll_fn(|cx| service.poll_ready(cx)).await {
                match never {}
            }
            let response = service.call(req).await?;
            Ok(response.map(|body| holding(body, guard)))
        })
    }
}

/// The admin listener.
#[derive(Clone)]
struct Back {
    admin: Arc<admin::Admin>,
}

impl Handler for Back {
    type Body = Body;
    type BodyError = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<Response<Body>>;

    fn call(&self, req: Request<Incoming>, _: SocketAddr, guard: InFlight) -> Self::Future {
        let admin = self.admin.clone();
        Box::pin(async move { Ok(admin.handle(req).await.map(|body| holding(body, guard))) })
    }
}

pub fn run(args: ServeArgs) -> Result<ExitCode, String> {
    // Checked before anything listens: a bad flag never leaves a half-started server.
    let token = match args.admin_listen {
        Some(_) => Some(admin::load_token(args.admin_token_file.as_deref())?),
        None => None,
    };
    let (gate, _) = open_gate(
        &args.config,
        "stop the other server, or give this one its own store with --data",
    )?;
    let gate = Arc::new(gate);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = args.workers {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = runtime.block_on(serve(args, gate.clone(), token));
    // Every connection task is gone with the runtime: the gate's last owner closes it.
    drop(runtime);
    result?;
    gate.close()
        .map_err(|e| format!("could not write the counters to the store: {e}"))?;
    println!("portcullis: stopped");
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs, gate: Arc<Gate>, token: Option<Vec<u8>>) -> Result<(), String> {
    let limits = Limits {
        max_connections: args.max_connections,
        header_timeout: Duration::from_secs(args.header_timeout.max(1)),
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        request_timeout: Duration::from_secs(args.request_timeout.max(1)),
        max_header_bytes: args.max_header_bytes,
    };
    let request_timeout = limits.request_timeout;
    let redactor = Arc::new(redact::Redactor::new(args.admin_principals));
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let admin_listener = match args.admin_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(|e| format!("cannot listen on {a} (--admin-listen): {e}"))?,
        ),
        None => None,
    };
    let (app, allowed) = match &args.upstream {
        Some(url) => (
            App::proxy(
                proxy::Proxy::new(url, gate.clone(), args.max_body_bytes)?,
                request_timeout,
            ),
            None,
        ),
        None => {
            let allowed = Arc::new(sketch::TopKeys::default());
            let demo = demo::Demo {
                allowed: allowed.clone(),
                redactor: redactor.clone(),
            };
            (App::demo(demo, request_timeout), Some(allowed))
        }
    };
    let layer = GateLayer::new(gate.clone())
        .principal_from_bearer()
        .expose_decisions();
    let front = Front {
        service: layer.layer(app),
        max_body: args.max_body_bytes,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let registry = Registry::new(limits);
    tokio::spawn(registry.clone().sweep());
    let mut servers = vec![tokio::spawn(conn::serve(
        listener,
        front,
        registry.clone(),
        stop_rx.clone(),
    ))];
    println!("portcullis: listening on http://{addr}");
    if let (Some(l), Some(token)) = (admin_listener, token) {
        let admin_addr = l.local_addr().map_err(|e| e.to_string())?;
        let back = Back {
            admin: Arc::new(admin::Admin {
                gate: gate.clone(),
                token,
                hosts: admin::hosts(admin_addr, &args.admin_host),
                redactor: redactor.clone(),
                allowed,
                started: Instant::now(),
            }),
        };
        let admin_registry = Registry::new(Limits {
            max_connections: 64,
            ..limits
        });
        tokio::spawn(admin_registry.clone().sweep());
        servers.push(tokio::spawn(conn::serve(
            l,
            back,
            admin_registry,
            stop_rx.clone(),
        )));
        println!("portcullis: admin API on http://{admin_addr}");
    }
    println!("portcullis: config {}", args.config.config.display());
    if let Some(up) = &args.upstream {
        println!("portcullis: forwarding to {up}");
    }
    let _ = std::io::stdout().flush();

    let signal_error = |e: std::io::Error| format!("cannot install the signal handlers: {e}");
    let mut hup = signal(SignalKind::hangup()).map_err(signal_error)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let (gate, config) = (gate.clone(), args.config.clone());
                // Reading and compiling a config touches the disk: off the runtime's threads.
                let _ = tokio::task::spawn_blocking(move || reload(&gate, &config)).await;
            }
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    let _ = stop_tx.send(true);
    for s in servers {
        let _ = s.await;
    }
    registry.drained(DRAIN).await;
    Ok(())
}

fn reload(gate: &Gate, args: &crate::args::ConfigArgs) {
    let config = match crate::commands::load_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis: reload refused, the running config stays:\n{e}");
            return;
        }
    };
    match gate.reload(config) {
        Ok(s) => println!(
            "portcullis: reloaded (kept {:?}, fresh {:?}, removed {:?})",
            s.kept, s.fresh, s.removed
        ),
        Err(e) => eprintln!("portcullis: reload refused, the running config stays: {e}"),
    }
    let _ = std::io::stdout().flush();
}
