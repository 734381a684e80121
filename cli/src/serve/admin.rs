//! The admin API, on its own listener (`--admin-listen`): `GET /metrics` (Prometheus text, or
//! OpenMetrics when asked), `GET /_portcullis/stats` (the live keys of every policy, or of
//! `?policy=`), `POST /_portcullis/reset` with a JSON body `{"policy": ..., "key": ...}`.
//!
//! It answers only requests that carry its bearer token (compared in constant time), name one
//! of its own hosts (DNS rebinding), carry no `Origin` (no web page can call it) and, for
//! POST, a JSON body (a form or `text/plain` post, which needs no preflight, is refused).
//! Principals are never shown in clear.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, HOST, ORIGIN, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use portcullis::gate::MetricsFormat;
use portcullis::Gate;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::app::{json, Body};
use super::redact::Redactor;
use super::sketch::TopKeys;

/// The shortest token accepted: anything shorter can be guessed.
const MIN_TOKEN: usize = 16;
const MAX_BODY: usize = 64 * 1024;

pub struct Admin {
    pub gate: Arc<Gate>,
    pub token: Vec<u8>,
    /// `Host` values it answers to (lowercase).
    pub hosts: Vec<String>,
    pub redactor: Arc<Redactor>,
    pub allowed: Option<Arc<TopKeys>>,
    pub started: Instant,
}

/// The token from `--admin-token-file` or `PORTCULLIS_ADMIN_TOKEN`.
pub fn load_token(file: Option<&Path>) -> Result<Vec<u8>, String> {
    let token = crate::client::read_token(file, "--admin-token-file")?;
    if token.len() < MIN_TOKEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "the admin token must be at least {MIN_TOKEN} characters without spaces (e.g. `openssl rand -hex 32`)"
        ));
    }
    Ok(token.into_bytes())
}

/// The hosts the admin listener at `addr` answers to: its address, localhost on its port
/// (also when it listens on every address), and `extra` names (with or without the port).
pub fn hosts(addr: SocketAddr, extra: &[String]) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![addr.to_string(), format!("localhost:{port}")];
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        hosts.push(format!("127.0.0.1:{port}"));
        hosts.push(format!("[::1]:{port}"));
    }
    for h in extra {
        let h = h.to_ascii_lowercase();
        hosts.push(format!("{h}:{port}"));
        hosts.push(h);
    }
    hosts
}

fn refuse(status: StatusCode, why: &str) -> Response<Body> {
    json(status, json!({ "error": why }))
}

impl Admin {
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if let Some(refusal) = self.refusal(&req) {
            return refusal;
        }
        let path = req.uri().path().to_owned();
        let query = req.uri().query().map(str::to_owned);
        match (req.method().clone(), path.as_str()) {
            (Method::GET, "/metrics") => self.metrics(&req),
            (Method::GET, "/_portcullis/stats") => self.stats(query.as_deref()),
            (Method::POST, "/_portcullis/reset") => {
                if !is_json(&req) {
                    return refuse(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "send Content-Type: application/json",
                    );
                }
                let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => {
                        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large")
                    }
                };
                self.reset(&body)
            }
            (_, "/metrics" | "/_portcullis/stats" | "/_portcullis/reset") => {
                refuse(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => refuse(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// Why a request is refused before it is looked at, if it is.
    fn refusal(&self, req: &Request<Incoming>) -> Option<Response<Body>> {
        if req.headers().contains_key(ORIGIN) {
            return Some(refuse(
                StatusCode::FORBIDDEN,
                "the admin API refuses cross-origin requests",
            ));
        }
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .map(|h| h.to_ascii_lowercase());
        if !host.is_some_and(|h| self.hosts.contains(&h)) {
            return Some(refuse(
                StatusCode::MISDIRECTED_REQUEST,
                "the admin API does not serve this Host",
            ));
        }
        let given = portcullis::tower::bearer_token(req.headers()).unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(&self.token)) {
            let mut r = refuse(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis admin\""),
            );
            return Some(r);
        }
        None
    }

    /// The gate's metrics: OpenMetrics when the scraper asks for it, else the Prometheus text
    /// format. A scrape only reads counters: it never waits on the store.
    fn metrics(&self, req: &Request<Incoming>) -> Response<Body> {
        let open = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/openmetrics-text"));
        let format = match open {
            true => MetricsFormat::OpenMetrics,
            false => MetricsFormat::Prometheus,
        };
        let mut text = String::with_capacity(16 * 1024);
        if self.gate.write_metrics(&mut text, format).is_err() {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be rendered",
            );
        }
        let mut r = Response::new(super::app::full(text));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        r
    }

    fn stats(&self, query: Option<&str>) -> Response<Body> {
        let only = query.and_then(|q| query_value(q, "policy"));
        let mut stats = self.gate.stats();
        let mut keys = serde_json::Map::new();
        for p in &stats.policies {
            if only.as_ref().is_some_and(|only| *only != p.name) {
                continue;
            }
            match self.gate.keys(&p.name) {
                Ok(mut k) => {
                    for ks in &mut k {
                        ks.key = self.redactor.key(&ks.key);
                    }
                    keys.insert(p.name.clone(), json!(k));
                }
                Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        if let (Some(only), true) = (&only, keys.is_empty()) {
            return refuse(StatusCode::NOT_FOUND, &format!("no policy named {only:?}"));
        }
        for o in &mut stats.top_limited {
            o.key = self.redactor.key(&o.key);
        }
        for d in &mut stats.recent_denials {
            d.key = self.redactor.key(&d.key);
        }
        let allowed: Vec<Value> = self
            .allowed
            .iter()
            .flat_map(|a| a.list())
            .map(|c| json!({ "policy": c.key.0, "key": c.key.1, "allowed": c.count, "error": c.error }))
            .collect();
        json(
            StatusCode::OK,
            json!({
                "uptime_ms": u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "gate": stats,
                "keys": keys,
                "allowed_by_key": allowed,
            }),
        )
    }

    fn reset(&self, body: &Bytes) -> Response<Body> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Reset {
            policy: String,
            key: String,
        }
        let asked: Reset = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    &format!("send {{\"policy\": ..., \"key\": ...}}: {e}"),
                )
            }
        };
        match crate::commands::reset_key(&self.gate, &asked.policy, &asked.key) {
            Ok(had) => json(StatusCode::OK, json!({ "reset": had })),
            Err(e) => refuse(StatusCode::BAD_REQUEST, &e),
        }
    }
}

fn is_json(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// A query value, percent-decoded (`+` is a space).
fn query_value(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
}
