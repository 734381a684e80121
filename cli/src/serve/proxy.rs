//! `--upstream`: forwards what the gate lets through to an HTTP application, bodies streamed
//! both ways, with the forwarding headers set by the config's trusted-proxy rule.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis::Gate;
use serde_json::json;

use super::app::{json, Body};

pub struct Proxy {
    authority: Authority,
    client: Client<HttpConnector, Body>,
    gate: Arc<Gate>,
    max_body: u64,
}

/// Headers of one hop, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    // Framing is the client's to choose again from the body.
    "transfer-encoding",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

impl Proxy {
    /// `url`: `http://host:port`, no path. TLS to the upstream is not spoken here: the
    /// upstream is meant to be on this host or its private network.
    pub fn new(url: &str, gate: Arc<Gate>, max_body: u64) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--upstream {url:?} is not a URL: {e}"))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(format!(
                "--upstream {url:?}: only http:// upstreams are served (the application behind the gate, on this host or a private network)"
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "--upstream {url:?}: give the scheme, host and port only; paths are forwarded as requested"
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("--upstream {url:?} has no host"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            authority,
            client,
            gate,
            max_body,
        })
    }

    pub async fn forward(&self, req: Request<Incoming>) -> Response<Body> {
        let peer = req.extensions().get::<SocketAddr>().map(|a| a.ip());
        // A declared length past the cap was refused before the gate; a streamed body is
        // cut by `Limited`.
        let (mut parts, body) = req.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        parts.uri = match Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(target)
            .build()
        {
            Ok(uri) => uri,
            Err(_) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "bad request target" }),
                )
            }
        };
        parts.version = http::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        self.forwarding_headers(&mut parts.headers, peer);
        let max_body = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        let body = Limited::new(body, max_body).boxed();
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => {
                let (mut head, body) = response.into_parts();
                strip_hop_by_hop(&mut head.headers);
                Response::from_parts(head, body.map_err(Into::into).boxed())
            }
            Err(e) if too_long(&e) => too_large(self.max_body),
            Err(e) => json(
                StatusCode::BAD_GATEWAY,
                json!({ "error": format!("the upstream did not answer: {e}") }),
            ),
        }
    }

    /// From a trusted proxy, the chain it sent plus that proxy; from anyone else, only the
    /// peer: a client cannot have the application believe an address it made up.
    fn forwarding_headers(&self, headers: &mut HeaderMap, peer: Option<IpAddr>) {
        let xff = HeaderName::from_static("x-forwarded-for");
        let fwd = HeaderName::from_static("forwarded");
        let trusted = peer.is_some_and(|p| self.gate.trusts(p));
        let Some(peer) = peer else {
            headers.remove(&xff);
            headers.remove(&fwd);
            return;
        };
        let joined = |name: &HeaderName, headers: &HeaderMap| -> Option<String> {
            let values: Vec<&str> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        };
        let node = match peer {
            IpAddr::V4(v4) => format!("for={v4}"),
            IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
        };
        let (chain_xff, chain_fwd) = match trusted {
            true => (joined(&xff, headers), joined(&fwd, headers)),
            false => (None, None),
        };
        let xff_value = match chain_xff {
            Some(chain) => format!("{chain}, {peer}"),
            None => peer.to_string(),
        };
        let fwd_value = match chain_fwd {
            Some(chain) => format!("{chain}, {node}"),
            None => node,
        };
        headers.remove(&xff);
        headers.remove(&fwd);
        if let Ok(v) = HeaderValue::from_str(&xff_value) {
            headers.insert(xff, v);
        }
        if let Ok(v) = HeaderValue::from_str(&fwd_value) {
            headers.insert(fwd, v);
        }
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the `Connection` header names are of this hop too.
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn too_long(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn too_large(max: u64) -> Response<Body> {
    json(
        StatusCode::PAYLOAD_TOO_LARGE,
        json!({ "error": format!("the request body is larger than {max} bytes") }),
    )
}
