//! The policy builder and its validation: `build` checks every field, collects every problem,
//! and only then renders the header values a policy sends.

use std::time::Duration;

use super::error::{CorsConfigError, CorsConfigErrorKind as Kind, CorsConfigErrors};
use super::headers::{VARY_PREFLIGHT, VARY_PREFLIGHT_PRIVATE_NETWORK};
use super::origin::{parse_origin, suggest, OriginPattern, OriginProblem};
use super::policy::{CorsPolicy, NameRule, Rendered};
use super::suffix::is_public_suffix;
use super::token;

/// Longest `Access-Control-Max-Age` accepted, in seconds (Firefox's cap; Chromium caps at 7200).
pub const MAX_AGE_LIMIT_SECS: u64 = 86_400;

/// Collects policy settings; [`build`](CorsPolicyBuilder::build) validates them all at once.
///
/// List methods add to what was given before, so a policy can be extended in steps (the gate
/// adds its rate-limit headers to [`expose_headers`](CorsPolicyBuilder::expose_headers)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorsPolicyBuilder {
    origins: Vec<String>,
    methods: Vec<String>,
    headers: Vec<String>,
    expose: Vec<String>,
    credentials: bool,
    max_age: Option<Duration>,
    private_network: bool,
    debug: bool,
}

impl CorsPolicyBuilder {
    /// Allows one origin or pattern: `https://app.example.com`, `https://*.example.com` (any
    /// subdomain, never the apex), `http://localhost:*` (any port), or `*` (every origin,
    /// without credentials). Write it as browsers send it: lower case, no path, no default port.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.origins.push(origin.into());
        self
    }

    /// Allows several origins or patterns (see [`allow_origin`](Self::allow_origin)).
    pub fn allow_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.origins.extend(origins.into_iter().map(Into::into));
        self
    }

    /// Allows methods beyond `GET`, `HEAD` and `POST` (which never need listing). Methods are
    /// case-sensitive: `PATCH` and `patch` differ. `*` allows any method.
    pub fn allow_methods<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.methods.extend(methods.into_iter().map(Into::into));
        self
    }

    /// Allows request headers a page may set (names are case-insensitive). `*` allows any
    /// header except `Authorization`, which must be listed by name.
    pub fn allow_headers<I, S>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.headers.extend(headers.into_iter().map(Into::into));
        self
    }

    /// Lets pages read these response headers (beyond the safelisted `Cache-Control`,
    /// `Content-Language`, `Content-Length`, `Content-Type`, `Expires`, `Last-Modified`,
    /// `Pragma`). `*` exposes all, without credentials only. Adds to earlier calls.
    pub fn expose_headers<I, S>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.expose.extend(headers.into_iter().map(Into::into));
        self
    }

    /// Lets allowed origins send credentials (cookies, HTTP auth) and read the answers.
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.credentials = allow;
        self
    }

    /// How long a browser may cache a preflight answer (`Access-Control-Max-Age`), at most
    /// 86400 s; fractions of a second are dropped. Unset, browsers use 5 s.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// [`max_age`](Self::max_age) in seconds.
    pub fn max_age_secs(self, secs: u64) -> Self {
        self.max_age(Duration::from_secs(secs))
    }

    /// Grants Private Network Access preflights (`Access-Control-Allow-Private-Network`), for
    /// a server on a private address or loopback reached from public secure origins.
    pub fn allow_private_network(mut self, allow: bool) -> Self {
        self.private_network = allow;
        self
    }

    /// Adds an `X-Cors-Reason` header saying why to every refusal. Off by default: reasons
    /// describe the policy, so turn it on in development only.
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }

    /// Validates everything and builds the policy, or returns every problem found.
    pub fn build(&self) -> Result<CorsPolicy, CorsConfigErrors> {
        let mut errors = Vec::new();
        let origins = self.check_origins(&mut errors);
        let methods = self.check_methods(&mut errors);
        let headers = self.check_headers(&mut errors);
        let expose = self.check_expose(&mut errors);
        let max_age = self.check_max_age(&mut errors);
        if !errors.is_empty() {
            return Err(CorsConfigErrors::new(errors));
        }
        let any_origin = origins.contains(&OriginPattern::Any);
        Ok(CorsPolicy {
            any_origin,
            credentials: self.credentials,
            private_network: self.private_network,
            debug: self.debug,
            origins_display: dedup(&self.origins).join(", "),
            methods_display: methods_display(&methods),
            headers_display: headers_display(&headers),
            allow_methods_value: match methods.any {
                true => Some("*".to_owned()),
                false => join(&methods.names),
            },
            allow_headers_value: allow_headers_value(&headers),
            expose_value: match expose.any {
                true => Some(Rendered::Kept("*")),
                false => join(&expose.names).map(|v| Rendered::Owned(v.into())),
            },
            max_age_value: max_age.map(|secs| secs.to_string()),
            preflight_vary: if self.private_network {
                VARY_PREFLIGHT_PRIVATE_NETWORK
            } else {
                VARY_PREFLIGHT
            },
            exact_texts: Vec::new(),
            origins,
            methods,
            headers,
            spec: self.clone(),
        })
    }

    fn check_origins(&self, errors: &mut Vec<CorsConfigError>) -> Vec<OriginPattern> {
        const FIELD: &str = "allow_origins";
        if self.origins.is_empty() {
            errors.push(CorsConfigError::new(
                Kind::NoOrigins,
                FIELD,
                "no origin is allowed, so every CORS request would be refused; add one, e.g. \
                 allow_origin(\"https://app.example.com\"), or \"*\" for a public API without \
                 credentials",
            ));
        }
        let mut patterns = Vec::new();
        let mut any = false;
        for input in dedup(&self.origins) {
            let parsed = match parse_origin(input) {
                Ok(parsed) => parsed,
                Err(problem) => {
                    errors.push(origin_error(input, &problem));
                    continue;
                }
            };
            if parsed.pattern == OriginPattern::Any {
                any = true;
            } else {
                if self.credentials && parsed.insecure {
                    errors.push(CorsConfigError::new(
                        Kind::InsecureOriginWithCredentials,
                        FIELD,
                        format!(
                            "`{input}` is plain http with credentials: anyone on the network can \
                             read or impersonate it; write `{}` (plain http is accepted with \
                             credentials only for localhost and loopback addresses)",
                            input.replacen("http://", "https://", 1)
                        ),
                    ));
                }
                if self.credentials && parsed.subdomains && is_public_suffix(&parsed.host) {
                    errors.push(CorsConfigError::new(
                        Kind::PublicSuffixWildcardWithCredentials,
                        FIELD,
                        format!(
                            "`{input}` trusts, with credentials, every site under {}, a public \
                             suffix where anyone can register a name; list your own origins or \
                             write a pattern under a domain you control (https://*.example.com)",
                            parsed.host
                        ),
                    ));
                }
                if self.private_network && parsed.insecure {
                    errors.push(CorsConfigError::new(
                        Kind::PrivateNetworkWithInsecureOrigin,
                        "allow_private_network",
                        format!(
                            "`{input}` is not a secure context, and browsers let only secure \
                             contexts reach a private network; write `{}`",
                            input.replacen("http://", "https://", 1)
                        ),
                    ));
                }
            }
            patterns.push(parsed.pattern);
        }
        if any {
            if patterns.len() > 1 {
                errors.push(CorsConfigError::new(
                    Kind::WildcardMixedWithOrigins,
                    FIELD,
                    "`*` already allows every origin, so the other origins mean nothing; keep \
                     either `*` or the list of origins",
                ));
            }
            if self.credentials {
                errors.push(CorsConfigError::new(
                    Kind::WildcardOriginWithCredentials,
                    "allow_credentials",
                    "credentials cannot go with `*` origins: browsers refuse \
                     `Access-Control-Allow-Origin: *` on credentialed requests, and echoing \
                     every origin would let any site act as the user; list the origins instead \
                     (https://app.example.com) or write allow_credentials(false)",
                ));
            }
            if self.private_network {
                errors.push(CorsConfigError::new(
                    Kind::PrivateNetworkWithWildcardOrigin,
                    "allow_private_network",
                    "private network access cannot be granted to `*` origins, which would let \
                     any website reach this private server; list the https origins that may",
                ));
            }
        }
        patterns
    }

    fn check_methods(&self, errors: &mut Vec<CorsConfigError>) -> NameRule {
        const FIELD: &str = "allow_methods";
        let mut rule = NameRule::default();
        for method in dedup(&self.methods) {
            if method == "*" {
                rule.any = true;
            } else if !token::is_token(method) {
                errors.push(CorsConfigError::new(
                    Kind::InvalidMethod,
                    FIELD,
                    format!(
                        "`{}` is not a method (a token such as PATCH); list methods one per \
                         element, e.g. [\"PUT\", \"DELETE\"]",
                        method.escape_debug()
                    ),
                ));
            } else if token::is_forbidden_method(method) {
                errors.push(CorsConfigError::new(
                    Kind::ForbiddenMethod,
                    FIELD,
                    format!(
                        "`{method}` is a forbidden method that browsers never send from a page; \
                         remove it"
                    ),
                ));
            } else if let Some(upper) = token::normalized_method(method).filter(|u| u != &method) {
                errors.push(CorsConfigError::new(
                    Kind::MethodNotUppercase,
                    FIELD,
                    format!(
                        "`{method}` is upper-cased by browsers before it is sent, so it would \
                         never match; write `{upper}`"
                    ),
                ));
            } else {
                rule.names.push(method.to_owned());
            }
        }
        rule
    }

    fn check_headers(&self, errors: &mut Vec<CorsConfigError>) -> NameRule {
        const FIELD: &str = "allow_headers";
        let mut rule = NameRule::default();
        for name in &self.headers {
            if name == "*" {
                rule.any = true;
            } else if let Some(e) = header_name_error(FIELD, name) {
                errors.push(e);
            } else if is_response_only(name) {
                errors.push(CorsConfigError::new(
                    Kind::ResponseHeaderAllowed,
                    FIELD,
                    format!(
                        "`{name}` is a response header: pages never send it, so allowing it \
                         asks for nothing; remove it (to let pages read it, list it in \
                         expose_headers)"
                    ),
                ));
            } else if token::is_forbidden_request_header(name) {
                errors.push(CorsConfigError::new(
                    Kind::ForbiddenRequestHeader,
                    FIELD,
                    format!(
                        "`{name}` is a forbidden request header: browsers set it themselves and \
                         never let a page ask for it; remove it{}",
                        if name.eq_ignore_ascii_case("cookie") {
                            " (to send cookies, write allow_credentials(true))"
                        } else {
                            ""
                        }
                    ),
                ));
            } else {
                let lower = name.to_ascii_lowercase();
                if !rule.names.contains(&lower) {
                    rule.names.push(lower);
                }
            }
        }
        rule
    }

    fn check_expose(&self, errors: &mut Vec<CorsConfigError>) -> NameRule {
        const FIELD: &str = "expose_headers";
        let mut rule = NameRule::default();
        for name in &self.expose {
            if name == "*" {
                if self.credentials {
                    errors.push(CorsConfigError::new(
                        Kind::ExposeWildcardWithCredentials,
                        FIELD,
                        "`*` is read as a literal header name on credentialed requests, so it \
                         exposes nothing; list the headers to expose, e.g. X-Request-Id",
                    ));
                } else {
                    rule.any = true;
                }
            } else if let Some(e) = header_name_error(FIELD, name) {
                errors.push(e);
            } else if is_request_only(name) {
                errors.push(CorsConfigError::new(
                    Kind::RequestHeaderExposed,
                    FIELD,
                    format!(
                        "`{name}` is a request header: responses do not carry it, so exposing \
                         it shows nothing; remove it (to let pages send it, list it in \
                         allow_headers)"
                    ),
                ));
            } else if token::is_forbidden_response_header(name) {
                errors.push(CorsConfigError::new(
                    Kind::ExposedSetCookie,
                    FIELD,
                    format!(
                        "`{name}` is never exposed to pages by browsers, whatever is listed; \
                         remove it (the browser applies cookies itself, see allow_credentials)"
                    ),
                ));
            } else if !rule.names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                // Kept as written: the gate's `X-RateLimit-Limit` reads better than lower case.
                rule.names.push(name.clone());
            }
        }
        rule
    }

    fn check_max_age(&self, errors: &mut Vec<CorsConfigError>) -> Option<u64> {
        let age = self.max_age?;
        if age > Duration::from_secs(MAX_AGE_LIMIT_SECS) {
            errors.push(CorsConfigError::new(
                Kind::MaxAgeOutOfRange,
                "max_age",
                format!(
                    "{}s is outside 0-{MAX_AGE_LIMIT_SECS} seconds (browsers cap it: Chromium \
                     at 7200, Firefox at 86400); write at most {MAX_AGE_LIMIT_SECS}, e.g. \
                     max_age_secs(7200)",
                    age.as_secs()
                ),
            ));
            return None;
        }
        Some(age.as_secs())
    }
}

fn origin_error(input: &str, problem: &OriginProblem) -> CorsConfigError {
    let kind = match problem {
        OriginProblem::Null => Kind::NullOrigin,
        OriginProblem::File => Kind::FileOrigin,
        OriginProblem::NoScheme => Kind::OriginWithoutScheme,
        OriginProblem::Uppercase => Kind::OriginNotLowercase,
        OriginProblem::NonAscii => Kind::OriginNotPunycode,
        OriginProblem::Userinfo => Kind::OriginWithUserinfo,
        OriginProblem::TrailingSlash => Kind::OriginWithTrailingSlash,
        OriginProblem::Path => Kind::OriginWithPath,
        OriginProblem::DefaultPort(_) => Kind::OriginWithDefaultPort,
        OriginProblem::PortRange => Kind::OriginPortOutOfRange,
        OriginProblem::BadWildcard => Kind::OriginBadWildcard,
        OriginProblem::Empty
        | OriginProblem::BadScheme
        | OriginProblem::BadChar
        | OriginProblem::EmptyHost
        | OriginProblem::BadHost(_)
        | OriginProblem::TrailingDot
        | OriginProblem::BadPort => Kind::OriginMalformed,
    };
    let advice = match (problem, suggest(input)) {
        (OriginProblem::Null | OriginProblem::File, _) => String::new(),
        (_, Some(fixed)) => format!("; write `{fixed}`"),
        (OriginProblem::BadWildcard | OriginProblem::NonAscii, None) => String::new(),
        (_, None) => "; write it as scheme://host[:port], e.g. https://app.example.com".to_owned(),
    };
    let shown = input.escape_debug();
    CorsConfigError::new(
        kind,
        "allow_origins",
        format!("`{shown}` {problem}{advice}"),
    )
}

/// Headers only responses carry: the CORS answers themselves and the rate-limit headers.
fn is_response_only(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("access-control-allow-")
        || n.starts_with("x-ratelimit-")
        || matches!(
            n.as_str(),
            "access-control-expose-headers"
                | "access-control-max-age"
                | "set-cookie"
                | "set-cookie2"
                | "www-authenticate"
                | "retry-after"
                | "ratelimit"
                | "ratelimit-policy"
        )
}

/// Headers only requests carry: CORS preflight questions and request context.
fn is_request_only(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("access-control-request-")
        || matches!(n.as_str(), "origin" | "host" | "cookie" | "authorization")
}

fn header_name_error(field: &'static str, name: &str) -> Option<CorsConfigError> {
    if token::is_token(name) && !name.contains('*') {
        return None;
    }
    let shown = name.escape_debug();
    Some(if name.contains('*') {
        CorsConfigError::new(
            Kind::HeaderNameWildcard,
            field,
            format!(
                "`{shown}` is not a header name: patterns are not supported; list each header, \
                 or write \"*\" alone{}",
                if field == "allow_headers" {
                    " for any header (never covering Authorization)"
                } else {
                    " for all headers (without credentials)"
                }
            ),
        )
    } else {
        CorsConfigError::new(
            Kind::InvalidHeaderName,
            field,
            format!(
                "`{shown}` is not a header name (a token such as X-Request-Id); list names one \
                 per element"
            ),
        )
    })
}

/// Distinct values in first-seen order.
fn dedup(values: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(&v.as_str()) {
            out.push(v);
        }
    }
    out
}

fn join(names: &[String]) -> Option<String> {
    (!names.is_empty()).then(|| names.join(", "))
}

fn methods_display(rule: &NameRule) -> String {
    if rule.any {
        return "any method".to_owned();
    }
    let mut all = vec!["GET", "HEAD", "POST"];
    let extra = rule.names.iter().map(String::as_str);
    all.extend(extra.filter(|m| !token::is_safelisted_method(m)));
    all.join(", ")
}

fn headers_display(rule: &NameRule) -> String {
    match (rule.any, rule.names.is_empty()) {
        (true, true) => "* (not authorization)".to_owned(),
        (true, false) => format!("* (not authorization), {}", rule.names.join(", ")),
        (false, true) => "none".to_owned(),
        (false, false) => rule.names.join(", "),
    }
}

/// A `*` origin policy lists its headers instead of echoing the request, so its answer does
/// not vary. `*` there never covers Authorization, hence the explicit name when allowed.
fn allow_headers_value(rule: &NameRule) -> Option<String> {
    if rule.any {
        let authorization = rule.names.iter().any(|n| n == "authorization");
        return Some(
            if authorization {
                "*, authorization"
            } else {
                "*"
            }
            .to_owned(),
        );
    }
    join(&rule.names)
}
