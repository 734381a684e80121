//! The responses the gate writes itself, and its headers on the inner service's responses.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, VARY};
use http::{HeaderMap, Response, StatusCode};
use serde_json::json;

use super::body::GateBody;
use crate::gate::{Action, Outcome, Reason};

/// The names the gate sends, ready made (a name parsed per response would be allocated).
fn known(name: &str) -> Option<HeaderName> {
    use http::header;
    const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
    const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
    const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
    const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
    const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
    Some(match name {
        "X-RateLimit-Limit" => LIMIT,
        "X-RateLimit-Remaining" => REMAINING,
        "X-RateLimit-Reset" => RESET,
        "RateLimit-Policy" => POLICY,
        "RateLimit" => RATELIMIT,
        "Retry-After" => header::RETRY_AFTER,
        "Vary" => header::VARY,
        "Access-Control-Allow-Origin" => header::ACCESS_CONTROL_ALLOW_ORIGIN,
        "Access-Control-Allow-Credentials" => header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        "Access-Control-Allow-Methods" => header::ACCESS_CONTROL_ALLOW_METHODS,
        "Access-Control-Allow-Headers" => header::ACCESS_CONTROL_ALLOW_HEADERS,
        "Access-Control-Expose-Headers" => header::ACCESS_CONTROL_EXPOSE_HEADERS,
        "Access-Control-Max-Age" => header::ACCESS_CONTROL_MAX_AGE,
        _ => return None,
    })
}

/// Copies the outcome's headers into `headers`. `Vary` is added to the service's own; every
/// other header replaces a value of the same name (the gate is the authority on its limits and
/// CORS). A header the outcome could not render as a header value is left out.
pub(super) fn add_headers(outcome: &Outcome, headers: &mut HeaderMap) {
    // Every value in one allocation, each header a view of it.
    let mut text = String::with_capacity(256);
    let mut spans = [(0usize, 0usize); 16];
    for (span, (_, value)) in spans.iter_mut().zip(outcome.headers()) {
        let start = text.len();
        text.push_str(value);
        *span = (start, text.len());
    }
    let text = Bytes::from(text);
    for (i, (name, value)) in outcome.headers().enumerate() {
        let value = match spans.get(i) {
            Some(&(start, end)) => HeaderValue::from_maybe_shared(text.slice(start..end)),
            None => HeaderValue::from_str(value),
        };
        let name = match known(name) {
            Some(n) => Ok(n),
            None => HeaderName::from_bytes(name.as_bytes()),
        };
        let (Ok(name), Ok(value)) = (name, value) else {
            continue;
        };
        if name == VARY {
            headers.append(name, value);
        } else {
            headers.insert(name, value);
        }
    }
}

/// The gate's own answer for an outcome with a status: an empty 204 to a preflight, a JSON
/// body saying why to a refusal or a limit.
pub(super) fn answer<B>(outcome: &Outcome) -> Response<GateBody<B>> {
    let status = outcome.status_code().unwrap_or(500);
    let body = match outcome.action() {
        Action::Preflight => Bytes::new(),
        _ => Bytes::from(error_body(outcome).to_string()),
    };
    let json = !body.is_empty();
    let mut response = Response::new(GateBody::own(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    add_headers(outcome, response.headers_mut());
    if json {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response
}

/// `{"error": ..., ...}`: what a client may learn of its refusal (never the key it was
/// counted under: that may be its API key, and responses end up in logs).
fn error_body(outcome: &Outcome) -> serde_json::Value {
    let retry_after = || {
        outcome
            .header("Retry-After")
            .and_then(|s| s.parse::<u64>().ok())
    };
    match outcome.reason() {
        Reason::Limited { policy, .. } => json!({
            "error": "rate limited",
            "policy": policy,
            "retry_after": retry_after(),
        }),
        Reason::Cors { refusal } => {
            json!({ "error": "refused by the CORS policy", "reason": refusal })
        }
        Reason::NoClientAddress { .. } => {
            json!({ "error": "no client address to count the request against" })
        }
        Reason::StoreError { .. } => {
            json!({ "error": "the rate limiter cannot reach its store", "retry_after": retry_after() })
        }
        other => json!({ "error": other.to_string() }),
    }
}

/// 503 with a JSON body: the request could not be decided (the runtime is shutting down).
pub(super) fn unavailable<B>() -> Response<GateBody<B>> {
    let body = json!({ "error": "the server is shutting down" }).to_string();
    let mut response = Response::new(GateBody::own(Bytes::from(body)));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
