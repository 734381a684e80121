//! Policy validation errors: each names the builder field at fault and says what to write
//! instead; a build reports all of them at once.

use std::fmt;

/// Which rule a policy broke. Stable for matching in code; the message says it for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CorsConfigErrorKind {
    /// No origin is allowed at all.
    NoOrigins,
    /// `*` together with specific origins.
    WildcardMixedWithOrigins,
    /// `*` origins with credentials.
    WildcardOriginWithCredentials,
    /// The `null` origin.
    NullOrigin,
    /// A `file:` origin.
    FileOrigin,
    /// No `scheme://`.
    OriginWithoutScheme,
    /// A path, query or fragment after the host.
    OriginWithPath,
    /// A trailing `/`.
    OriginWithTrailingSlash,
    /// `user@` before the host.
    OriginWithUserinfo,
    /// `:443` on https, `:80` on http.
    OriginWithDefaultPort,
    /// A port of 0 or above 65535.
    OriginPortOutOfRange,
    /// Upper case in scheme or host.
    OriginNotLowercase,
    /// A non-ASCII host.
    OriginNotPunycode,
    /// Any other malformed origin (bad characters, host or port syntax).
    OriginMalformed,
    /// A wildcard other than a leading `*.` label or a `:*` port.
    OriginBadWildcard,
    /// `*.` in front of a public suffix, with credentials.
    PublicSuffixWildcardWithCredentials,
    /// Credentials with a plain-http origin that is not loopback.
    InsecureOriginWithCredentials,
    /// CONNECT, TRACE or TRACK.
    ForbiddenMethod,
    /// A method that is not a token.
    InvalidMethod,
    /// A method browsers upper-case (`delete`), written in another case.
    MethodNotUppercase,
    /// A header name that is not a token.
    InvalidHeaderName,
    /// A wildcard inside a header name (`X-*`).
    HeaderNameWildcard,
    /// A forbidden request header (`Cookie`, `Host`, `Sec-*`, `Proxy-*`, ...).
    ForbiddenRequestHeader,
    /// `Set-Cookie` among exposed headers.
    ExposedSetCookie,
    /// A response header (`Access-Control-Allow-Origin`, `Retry-After`...) among the request
    /// headers a page may send.
    ResponseHeaderAllowed,
    /// A request header (`Access-Control-Request-Method`, `Origin`...) among the exposed
    /// (response) headers.
    RequestHeaderExposed,
    /// `*` exposed headers with credentials.
    ExposeWildcardWithCredentials,
    /// A max age above 86400 seconds.
    MaxAgeOutOfRange,
    /// Private network access with `*` origins.
    PrivateNetworkWithWildcardOrigin,
    /// Private network access with an insecure origin.
    PrivateNetworkWithInsecureOrigin,
}

/// One problem in a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsConfigError {
    kind: CorsConfigErrorKind,
    field: &'static str,
    message: String,
}

impl CorsConfigError {
    pub(crate) fn new(
        kind: CorsConfigErrorKind,
        field: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field,
            message: message.into(),
        }
    }

    /// The rule that was broken.
    pub fn kind(&self) -> CorsConfigErrorKind {
        self.kind
    }

    /// The builder field at fault, as named by its method: `allow_origins`, `allow_methods`,
    /// `allow_headers`, `expose_headers`, `allow_credentials`, `max_age`,
    /// `allow_private_network`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong and what to write instead, without the field prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CorsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for CorsConfigError {}

/// Every problem found while building a policy (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsConfigErrors {
    errors: Vec<CorsConfigError>,
}

impl CorsConfigErrors {
    pub(crate) fn new(errors: Vec<CorsConfigError>) -> Self {
        Self { errors }
    }

    /// The problems, in the order the fields were checked.
    pub fn errors(&self) -> &[CorsConfigError] {
        &self.errors
    }

    /// Whether any problem is of this kind.
    pub fn contains(&self, kind: CorsConfigErrorKind) -> bool {
        self.errors.iter().any(|e| e.kind == kind)
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a build that finds no problem succeeds.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl IntoIterator for CorsConfigErrors {
    type Item = CorsConfigError;
    type IntoIter = std::vec::IntoIter<CorsConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

/// One line per problem.
impl fmt::Display for CorsConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            fmt::Display::fmt(e, f)?;
        }
        Ok(())
    }
}

impl std::error::Error for CorsConfigErrors {}
