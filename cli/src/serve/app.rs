//! The application behind the gate: the demo API, or the upstream (`--upstream`), with a
//! deadline on every request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;

use super::demo::Demo;
use super::proxy::Proxy;

pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A JSON response.
pub fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

pub fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).map_err(|e| match e {}).boxed()
}

enum Kind {
    Demo(Demo),
    Proxy(Box<Proxy>),
}

/// The service the gate layer wraps. Cheap to clone.
#[derive(Clone)]
pub struct App {
    kind: Arc<Kind>,
    request_timeout: Duration,
}

impl App {
    pub fn demo(demo: Demo, request_timeout: Duration) -> Self {
        Self {
            kind: Arc::new(Kind::Demo(demo)),
            request_timeout,
        }
    }

    pub fn proxy(proxy: Proxy, request_timeout: Duration) -> Self {
        Self {
            kind: Arc::new(Kind::Proxy(Box::new(proxy))),
            request_timeout,
        }
    }
}

impl tower_service::Service<Request<Incoming>> for App {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let (kind, timeout) = (self.kind.clone(), self.request_timeout);
        Box::pin(async move {
            let answer = async {
                match &*kind {
                    Kind::Demo(d) => d.handle(req).await,
                    Kind::Proxy(p) => p.forward(req).await,
                }
            };
            Ok(match tokio::time::timeout(timeout, answer).await {
                Ok(response) => response,
                Err(_) => json(
                    StatusCode::GATEWAY_TIMEOUT,
                    json!({ "error": "the request took too long" }),
                ),
            })
        })
    }
}
