//! The decisions themselves, in the order Fetch checks them: origin, then private network, then
//! method, then headers (§4.8 CORS-preflight fetch, §4.9 CORS check).

use std::borrow::Cow;

use super::decision::{CorsDecision, DecisionSink};
use super::headers::{
    ALLOW_CREDENTIALS, ALLOW_HEADERS, ALLOW_METHODS, ALLOW_ORIGIN, ALLOW_PRIVATE_NETWORK,
    EXPOSE_HEADERS, MAX_AGE, VARY, VARY_ACTUAL,
};
use super::policy::{CorsPolicy, Echo, Rendered};
use super::reason::CorsRefusal;
use super::request::{CorsRequest, RequestKind};
use super::token::{is_safelisted_method, is_token};

/// Longest `Access-Control-Request-Headers` read, in bytes; longer ones are refused at once.
pub const MAX_REQUEST_HEADERS_LEN: usize = 8 * 1024;
/// Most names read from `Access-Control-Request-Headers`; more are refused.
pub const MAX_REQUEST_HEADER_NAMES: usize = 100;

impl CorsPolicy {
    /// Decides a request. Never panics, whatever the input; allocates nothing unless the
    /// request is refused in debug mode or a preflight's `Access-Control-Request-Headers` has
    /// empty elements to drop.
    pub fn decide<'a>(&'a self, req: &CorsRequest<'a>) -> CorsDecision<'a> {
        let mut d = CorsDecision::new(req.kind());
        self.decide_into(req, &mut d);
        d
    }

    /// [`CorsPolicy::decide`] into a sink; returns the kind of request.
    pub(crate) fn decide_into<'a>(
        &'a self,
        req: &CorsRequest<'a>,
        d: &mut impl DecisionSink<'a>,
    ) -> RequestKind {
        let kind = req.kind();
        match (kind, req.origin, req.access_control_request_method) {
            (RequestKind::Preflight, Some(origin), Some(method)) => {
                self.preflight(req, origin, method, d)
            }
            (RequestKind::Actual, Some(origin), _) => self.actual(origin, d),
            _ => self.not_cors(d),
        }
        kind
    }

    /// No `Origin`. A `*` policy answers as to any origin, so caches may share the response;
    /// otherwise the answer would change with an `Origin`, hence `Vary: Origin`.
    fn not_cors<'a>(&'a self, d: &mut impl DecisionSink<'a>) {
        if self.any_origin {
            self.push_wildcard_actual(d);
        } else {
            d.push_static(VARY, VARY_ACTUAL);
        }
    }

    fn actual<'a>(&'a self, origin: &'a str, d: &mut impl DecisionSink<'a>) {
        if self.any_origin {
            self.push_wildcard_actual(d);
            return;
        }
        if let Some(echo) = self.echo(origin) {
            match echo {
                Echo::Kept(kept) => d.push_static(ALLOW_ORIGIN, kept),
                Echo::Request(origin) => d.push(ALLOW_ORIGIN, origin),
            }
            if self.credentials {
                d.push_static(ALLOW_CREDENTIALS, "true");
            }
            self.push_expose(d);
        } else {
            d.refuse(self.origin_refusal(origin), self.debug);
        }
        d.push_static(VARY, VARY_ACTUAL);
    }

    fn push_expose<'a>(&'a self, d: &mut impl DecisionSink<'a>) {
        match &self.expose_value {
            Some(Rendered::Kept(kept)) => d.push_static(EXPOSE_HEADERS, kept),
            Some(Rendered::Owned(text)) => d.push(EXPOSE_HEADERS, &**text),
            None => {}
        }
    }

    fn push_wildcard_actual<'a>(&'a self, d: &mut impl DecisionSink<'a>) {
        d.push_static(ALLOW_ORIGIN, "*");
        self.push_expose(d);
    }

    fn preflight<'a>(
        &'a self,
        req: &CorsRequest<'a>,
        origin: &'a str,
        method: &'a str,
        d: &mut impl DecisionSink<'a>,
    ) {
        match self.check_preflight(req, origin, method) {
            Ok(echoed_headers) => {
                self.push_preflight_allowed(d, req, origin, method, echoed_headers)
            }
            Err(refusal) => d.refuse(refusal, self.debug),
        }
        // A `*` policy answers every preflight alike (lists, not echoes), so it never varies.
        if !self.any_origin {
            d.push_static(VARY, self.preflight_vary);
        }
    }

    /// Runs the checks; on success returns the request headers to echo.
    fn check_preflight<'a>(
        &'a self,
        req: &CorsRequest<'a>,
        origin: &'a str,
        method: &'a str,
    ) -> Result<Option<Cow<'a, str>>, CorsRefusal<'a>> {
        if !self.allows_origin(origin) {
            return Err(self.origin_refusal(origin));
        }
        if req.access_control_request_private_network && !self.private_network {
            return Err(CorsRefusal::PrivateNetworkNotAllowed);
        }
        if !is_token(method) {
            return Err(CorsRefusal::InvalidMethod { method });
        }
        if !is_safelisted_method(method) && !self.methods.allows_method(method) {
            return Err(CorsRefusal::MethodNotAllowed {
                method,
                allowed: &self.methods_display,
            });
        }
        match req.access_control_request_headers {
            Some(value) => self.check_request_headers(value),
            None => Ok(None),
        }
    }

    /// Checks every name in `Access-Control-Request-Headers` in one bounded pass: empty
    /// elements, whitespace and duplicates are tolerated; length and count are capped.
    fn check_request_headers<'a>(
        &'a self,
        value: &'a str,
    ) -> Result<Option<Cow<'a, str>>, CorsRefusal<'a>> {
        if value.len() > MAX_REQUEST_HEADERS_LEN {
            return Err(CorsRefusal::RequestHeadersTooLong {
                limit: MAX_REQUEST_HEADERS_LEN,
            });
        }
        let mut count = 0;
        let mut elements = 0;
        let mut has_empty = false;
        for name in value.split(',').map(trim_ows) {
            // Empty elements count too: hundreds of them are no request a browser makes.
            elements += 1;
            if elements > MAX_REQUEST_HEADER_NAMES {
                return Err(CorsRefusal::TooManyRequestHeaders {
                    limit: MAX_REQUEST_HEADER_NAMES,
                });
            }
            if name.is_empty() {
                has_empty = true;
                continue;
            }
            count += 1;
            if !is_token(name) {
                return Err(CorsRefusal::InvalidHeaderName { header: name });
            }
            if !self.headers.allows_header(name) {
                return Err(if self.headers.any {
                    CorsRefusal::AuthorizationNotCoveredByWildcard
                } else {
                    CorsRefusal::HeaderNotAllowed {
                        header: name,
                        allowed: &self.headers_display,
                    }
                });
            }
        }
        Ok(match (count, has_empty) {
            (0, _) => None,
            (_, false) => Some(Cow::Borrowed(trim_ows(value))),
            // Rebuilt without the empty elements, which some parsers reject.
            (_, true) => Some(Cow::Owned(
                value
                    .split(',')
                    .map(trim_ows)
                    .filter(|n| !n.is_empty())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        })
    }

    fn push_preflight_allowed<'a>(
        &'a self,
        d: &mut impl DecisionSink<'a>,
        req: &CorsRequest<'a>,
        origin: &'a str,
        method: &'a str,
        echoed_headers: Option<Cow<'a, str>>,
    ) {
        if self.any_origin {
            d.push_static(ALLOW_ORIGIN, "*");
            if let Some(methods) = &self.allow_methods_value {
                d.push(ALLOW_METHODS, methods.as_str());
            }
            if let Some(headers) = &self.allow_headers_value {
                d.push(ALLOW_HEADERS, headers.as_str());
            }
        } else {
            d.push(ALLOW_ORIGIN, origin);
            if self.credentials {
                d.push_static(ALLOW_CREDENTIALS, "true");
            }
            d.push(ALLOW_METHODS, method);
            if let Some(headers) = echoed_headers {
                d.push(ALLOW_HEADERS, headers);
            }
        }
        if let Some(age) = &self.max_age_value {
            d.push(MAX_AGE, age.as_str());
        }
        if req.access_control_request_private_network {
            d.push_static(ALLOW_PRIVATE_NETWORK, "true");
        }
    }

    fn origin_refusal<'a>(&'a self, origin: &'a str) -> CorsRefusal<'a> {
        CorsRefusal::OriginNotAllowed {
            origin,
            allowed: &self.origins_display,
        }
    }
}

/// Strips optional whitespace (RFC 9110 §5.6.3: space and tab).
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}
