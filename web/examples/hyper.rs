//! portcullis in front of a plain hyper service: the connection's peer address goes into the
//! request's extensions, where the layer looks by default.
//!
//! `cargo run -p portcullis-web --example hyper`, then `curl -si localhost:3001/api/x`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use portcullis::config::Config;
use portcullis::tower::GateLayer;
use portcullis::Gate;
use tower::ServiceBuilder;

const CONFIG: &str = r#"
[[policy]]
name = "per-ip"
limit = "10/m"

[[route]]
match = "/api/"
limits = [{ policy = "per-ip", key = "ip" }]
"#;

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gate = Arc::new(Gate::new(CONFIG.parse::<Config>()?)?);
    let layer = GateLayer::new(gate);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, peer) = listener.accept().await?;
        let service = ServiceBuilder::new()
            // The peer, where the layer looks for it by default.
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert::<SocketAddr>(peer);
                req
            })
            .layer(layer.clone())
            .service(tower::service_fn(hello));
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
        });
    }
}
