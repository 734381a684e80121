//! The request as CORS sees it: a borrowed view of the method and the four headers that matter,
//! and its classification after Fetch §3.2.

use super::decide::MAX_REQUEST_HEADERS_LEN;

/// Stands for a header value that is not UTF-8: never a valid origin, method or header name.
const INVALID: &str = "\u{fffd}";

/// Stands for an `Access-Control-Request-Headers` over the limit: just as long, so it is refused
/// as too long, without reading the real value at all.
const TOO_LONG: &str = match std::str::from_utf8(&[b','; MAX_REQUEST_HEADERS_LEN + 1]) {
    Ok(s) => s,
    Err(_) => "",
};

/// Header names a [`CorsRequest`] reads (lower case).
pub mod names {
    /// `Origin`.
    pub const ORIGIN: &str = "origin";
    /// `Access-Control-Request-Method`.
    pub const REQUEST_METHOD: &str = "access-control-request-method";
    /// `Access-Control-Request-Headers`.
    pub const REQUEST_HEADERS: &str = "access-control-request-headers";
    /// `Access-Control-Request-Private-Network`.
    pub const REQUEST_PRIVATE_NETWORK: &str = "access-control-request-private-network";
}

/// What kind of request this is for CORS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// No `Origin` header: not a CORS request (same-origin navigation, curl, server to server).
    NotCors,
    /// `OPTIONS` with `Origin` and `Access-Control-Request-Method` (Fetch §4.8): answered by
    /// the engine, never by the handler.
    Preflight,
    /// Any other request with `Origin` (an `OPTIONS` without `Access-Control-Request-Method`
    /// too): the handler runs and the engine adds headers to its response.
    Actual,
}

/// A request, borrowed: the method and the CORS request headers, as received.
///
/// Values are taken byte for byte; the engine trims nothing but the optional whitespace inside
/// `Access-Control-Request-Headers`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CorsRequest<'a> {
    /// The request method, case-sensitive (`OPTIONS`, `GET`, ...).
    pub method: &'a str,
    /// The `Origin` header, if present.
    pub origin: Option<&'a str>,
    /// The `Access-Control-Request-Method` header, if present.
    pub access_control_request_method: Option<&'a str>,
    /// The `Access-Control-Request-Headers` header, if present (join repeated ones with `,`).
    pub access_control_request_headers: Option<&'a str>,
    /// Whether `Access-Control-Request-Private-Network: true` was sent.
    pub access_control_request_private_network: bool,
}

impl<'a> CorsRequest<'a> {
    /// A request with this method and no CORS headers.
    pub const fn new(method: &'a str) -> Self {
        Self {
            method,
            origin: None,
            access_control_request_method: None,
            access_control_request_headers: None,
            access_control_request_private_network: false,
        }
    }

    /// Builds the view from a header lookup, e.g. over `http::HeaderMap` or a C server's
    /// header table. `get` receives the lower-case names in [`names`].
    pub fn from_headers(
        method: &'a str,
        mut get: impl FnMut(&'static str) -> Option<&'a str>,
    ) -> Self {
        Self {
            method,
            origin: get(names::ORIGIN),
            access_control_request_method: get(names::REQUEST_METHOD),
            access_control_request_headers: get(names::REQUEST_HEADERS),
            access_control_request_private_network: get(names::REQUEST_PRIVATE_NETWORK)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        }
    }

    /// Builds the view from raw header bytes, as a C server or `http::HeaderValue::as_bytes`
    /// gives them, without scanning more than the engine reads: an
    /// `Access-Control-Request-Headers` longer than [`MAX_REQUEST_HEADERS_LEN`] is not read (it is
    /// refused as too long), and a value that is not UTF-8 becomes
    /// U+FFFD, which matches no origin, method or header name.
    pub fn from_header_bytes(
        method: &'a [u8],
        mut get: impl FnMut(&'static str) -> Option<&'a [u8]>,
    ) -> Self {
        let text = |bytes: &'a [u8]| std::str::from_utf8(bytes).unwrap_or(INVALID);
        let bounded = |bytes: &'a [u8]| match bytes.len() > MAX_REQUEST_HEADERS_LEN {
            true => TOO_LONG,
            false => text(bytes),
        };
        Self {
            method: text(method),
            origin: get(names::ORIGIN).map(text),
            access_control_request_method: get(names::REQUEST_METHOD).map(text),
            access_control_request_headers: get(names::REQUEST_HEADERS).map(bounded),
            access_control_request_private_network: get(names::REQUEST_PRIVATE_NETWORK)
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"true")),
        }
    }

    /// Sets `Origin`.
    pub const fn with_origin(mut self, origin: &'a str) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Sets `Access-Control-Request-Method`.
    pub const fn with_request_method(mut self, method: &'a str) -> Self {
        self.access_control_request_method = Some(method);
        self
    }

    /// Sets `Access-Control-Request-Headers`.
    pub const fn with_request_headers(mut self, headers: &'a str) -> Self {
        self.access_control_request_headers = Some(headers);
        self
    }

    /// Sets `Access-Control-Request-Private-Network: true` (or removes it).
    pub const fn with_private_network(mut self, requested: bool) -> Self {
        self.access_control_request_private_network = requested;
        self
    }

    /// Classifies the request as Fetch does: a preflight is `OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`; anything else with `Origin` is an actual CORS request.
    pub fn kind(&self) -> RequestKind {
        match (self.origin, self.access_control_request_method) {
            (None, _) => RequestKind::NotCors,
            (Some(_), Some(_)) if self.method == "OPTIONS" => RequestKind::Preflight,
            (Some(_), _) => RequestKind::Actual,
        }
    }
}
