//! The demo API: `POST /api/v1/auth/login`, `GET /api/v1/export` (slow, concurrency-limited)
//! and any other `/api/` path.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use portcullis::tower::Decided;
use serde_json::json;

use super::app::{json, Body};
use super::redact::Redactor;
use super::sketch::TopKeys;

/// The demo's state: allowed requests per key (for the admin API), keys redacted as the admin
/// API shows them.
#[derive(Clone)]
pub struct Demo {
    pub allowed: Arc<TopKeys>,
    pub redactor: Arc<Redactor>,
}

impl Demo {
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if let Some(decided) = req.extensions().get::<Decided>() {
            for l in decided
                .limits
                .iter()
                .filter(|l| !l.shadow && l.decision.allowed)
            {
                self.allowed.add(&l.policy, &self.redactor.key(&l.key));
            }
        }
        let principal = portcullis::tower::bearer_token(req.headers());
        let path = req.uri().path();
        match (req.method(), path) {
            (&Method::POST, "/api/v1/auth/login") => {
                json(StatusCode::OK, json!({ "token": "demo-token" }))
            }
            (&Method::GET, "/api/v1/export") => {
                // An expensive operation: the concurrency limit keeps a client to a few at once.
                tokio::time::sleep(Duration::from_millis(200)).await;
                json(StatusCode::OK, json!({ "export": "done" }))
            }
            (_, p) if p == "/api" || p.starts_with("/api/") => json(
                StatusCode::OK,
                json!({ "hello": principal.map_or("anonymous".into(), |p| self.redactor.principal(p)) }),
            ),
            _ => json(StatusCode::NOT_FOUND, json!({ "error": "not found" })),
        }
    }
}
