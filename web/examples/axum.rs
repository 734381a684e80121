//! portcullis in front of an axum app: rate limits and CORS from one config, the principal
//! from the API key, the client from the connection.
//!
//! `cargo run -p portcullis-web --example axum`, then
//! `curl -si localhost:3000/api/hello -H 'Authorization: Bearer k1'`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use portcullis::config::Config;
use portcullis::tower::GateLayer;
use portcullis::Gate;

const CONFIG: &str = r#"
[[policy]]
name = "api"
limit = "60/m"
burst = 10

[[route]]
match = "/api/"
limits = [{ policy = "api", key = "principal" }]

[cors]
allowed_origins = ["http://localhost:5173"]
allowed_methods = ["GET", "POST"]
allowed_headers = ["Authorization"]
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gate = Arc::new(Gate::new(CONFIG.parse::<Config>()?)?);
    let app = Router::new()
        .route("/api/hello", get(|| async { "hello\n" }))
        // With the feature `axum`, the client is read from `ConnectInfo` (see below).
        .layer(GateLayer::new(gate).principal_from_bearer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
