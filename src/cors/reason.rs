//! Why a request was refused: a value that borrows from the request and the policy and renders
//! its sentence only when displayed, so refusing costs nothing until someone reads the reason.

use std::fmt;

/// The reason a CORS request was refused.
///
/// `Display` gives one line for logs, e.g. `origin https://a.example is not allowed; allowed:
/// https://app.example.com, https://*.example.com`. Request values in it are truncated and
/// escaped, so the line is printable ASCII whatever the client sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorsRefusal<'a> {
    /// The `Origin` matches no allowed origin.
    OriginNotAllowed {
        /// The request's `Origin`.
        origin: &'a str,
        /// The policy's origins, comma-separated.
        allowed: &'a str,
    },
    /// The preflight asked for private network access, which the policy does not allow.
    PrivateNetworkNotAllowed,
    /// `Access-Control-Request-Method` is not a method token.
    InvalidMethod {
        /// The value sent.
        method: &'a str,
    },
    /// The requested method is not allowed.
    MethodNotAllowed {
        /// The method asked for.
        method: &'a str,
        /// The policy's methods, comma-separated.
        allowed: &'a str,
    },
    /// An element of `Access-Control-Request-Headers` is not a header name.
    InvalidHeaderName {
        /// The element.
        header: &'a str,
    },
    /// A requested header is not allowed.
    HeaderNotAllowed {
        /// The header asked for.
        header: &'a str,
        /// The policy's headers, comma-separated.
        allowed: &'a str,
    },
    /// `Authorization` was requested and the policy allows `*` headers, which never cover it.
    AuthorizationNotCoveredByWildcard,
    /// `Access-Control-Request-Headers` is longer than the engine reads.
    RequestHeadersTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// `Access-Control-Request-Headers` names more headers than the engine reads.
    TooManyRequestHeaders {
        /// The limit on names.
        limit: usize,
    },
}

impl CorsRefusal<'_> {
    /// A short stable code for metrics and bindings, e.g. `origin_not_allowed`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::OriginNotAllowed { .. } => "origin_not_allowed",
            Self::PrivateNetworkNotAllowed => "private_network_not_allowed",
            Self::InvalidMethod { .. } => "invalid_method",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::InvalidHeaderName { .. } => "invalid_header_name",
            Self::HeaderNotAllowed { .. } => "header_not_allowed",
            Self::AuthorizationNotCoveredByWildcard => "authorization_not_covered_by_wildcard",
            Self::RequestHeadersTooLong { .. } => "request_headers_too_long",
            Self::TooManyRequestHeaders { .. } => "too_many_request_headers",
        }
    }
}

impl fmt::Display for CorsRefusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OriginNotAllowed { origin, allowed } => {
                write!(
                    f,
                    "origin {} is not allowed; allowed: {allowed}",
                    Shown(origin)
                )
            }
            Self::PrivateNetworkNotAllowed => f.write_str(
                "private network access is not allowed; the policy needs \
                 allow_private_network(true)",
            ),
            Self::InvalidMethod { method } => write!(
                f,
                "Access-Control-Request-Method {} is not a valid method",
                Shown(method)
            ),
            Self::MethodNotAllowed { method, allowed } => write!(
                f,
                "method {} is not allowed (methods are case-sensitive); allowed: {allowed}",
                Shown(method)
            ),
            Self::InvalidHeaderName { header } => write!(
                f,
                "Access-Control-Request-Headers element {} is not a valid header name",
                Shown(header)
            ),
            Self::HeaderNotAllowed { header, allowed } => write!(
                f,
                "header {} is not allowed; allowed: {allowed}",
                Shown(header)
            ),
            Self::AuthorizationNotCoveredByWildcard => f.write_str(
                "header authorization is not allowed: `*` never covers Authorization; list it \
                 in allow_headers",
            ),
            Self::RequestHeadersTooLong { limit } => write!(
                f,
                "Access-Control-Request-Headers is longer than the {limit} bytes read"
            ),
            Self::TooManyRequestHeaders { limit } => write!(
                f,
                "Access-Control-Request-Headers names more than {limit} headers"
            ),
        }
    }
}

/// Most characters of a request value a reason repeats.
const SHOWN_MAX: usize = 128;

/// A request value as a reason shows it: at most [`SHOWN_MAX`] characters, printable ASCII only
/// (others escaped), so a hostile value cannot flood a log or break a header line.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(empty)");
        }
        for (i, c) in self.0.chars().enumerate() {
            if i == SHOWN_MAX {
                return f.write_str("...");
            }
            if (' '..='~').contains(&c) && c != '\\' {
                fmt::Write::write_char(f, c)?;
            } else {
                write!(f, "\\u{{{:x}}}", c as u32)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_and_truncates() {
        assert_eq!(Shown("a\r\nb").to_string(), "a\\u{d}\\u{a}b");
        assert_eq!(Shown("é").to_string(), "\\u{e9}");
        let long = "x".repeat(1000);
        assert_eq!(Shown(&long).to_string().len(), SHOWN_MAX + 3);
    }
}
