//! A [`tower`](https://docs.rs/tower) layer: the gate in front of any `tower::Service` over
//! `http` types, so axum, hyper, tonic and tower-http stacks take it like any other
//! middleware. Enabled by the `tower` cargo feature, or `axum` (the same, and the client address
//! read from axum's `ConnectInfo` by default).
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use portcullis::config::Config;
//! use portcullis::tower::GateLayer;
//! use portcullis::Gate;
//!
//! let config: Config = r#"
//!     [[policy]]
//!     name = "api"
//!     limit = "100/m"
//!
//!     [[route]]
//!     match = "/api/"
//!     limits = [{ policy = "api", key = "ip" }]
//! "#.parse()?;
//! let gate = Arc::new(Gate::new(config)?);
//! let layer = GateLayer::new(gate)
//!     // Who is asking: here the API key of `Authorization: Bearer`.
//!     .principal_from_bearer()
//!     // The TCP peer. This is the default (hyper users insert it as an extension; with the
//!     // feature `axum`, axum's `ConnectInfo<SocketAddr>` is read too): write your own to
//!     // read it from elsewhere.
//!     .peer(|parts| parts.extensions.get::<SocketAddr>().map(|a| a.ip()));
//! # let _ = layer;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What the service does with each request:
//! - answers a CORS preflight (204) or refusal (403), or a limit (429 with `Retry-After` and a
//!   JSON body) itself, without calling the inner service;
//! - delays a shaped request with `tokio::time::sleep`, never blocking a runtime thread, and
//!   decides off the runtime (`spawn_blocking`) only a request whose route has a policy of
//!   immediate durability ([`Gate::may_wait`](crate::Gate::may_wait));
//! - adds the gate's headers (rate limits, CORS) to every response of the inner service,
//!   errors included;
//! - holds the request's concurrency leases until the response body has been sent or dropped.

mod body;
mod decided;
mod layer;
mod response;
mod service;

pub use body::GateBody;
pub use decided::{Decided, DecidedLimit};
pub use layer::{bearer_token, GateLayer};
pub use service::{GateService, ResponseFuture};
