//! HTTP grammar shared by policy validation and request decisions: tokens, forbidden methods and
//! forbidden header names, after RFC 9110 §5.6.2 and Fetch §2.2.

/// `tchar` of RFC 9110 §5.6.2: the bytes a method or a header name may hold.
const fn is_tchar(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'#'
            | b'$'
            | b'%'
            | b'&'
            | b'\''
            | b'*'
            | b'+'
            | b'-'
            | b'.'
            | b'^'
            | b'_'
            | b'`'
            | b'|'
            | b'~'
    ) || b.is_ascii_alphanumeric()
}

/// Whether `s` is a non-empty `token` (a valid method or header name).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Fetch §2.2.1: forbidden methods, matched byte-case-insensitively. Browsers never send them.
pub(crate) fn is_forbidden_method(method: &str) -> bool {
    ["CONNECT", "TRACE", "TRACK"]
        .iter()
        .any(|f| method.eq_ignore_ascii_case(f))
}

/// Fetch §2.2.1: methods a browser upper-cases before sending (`fetch(u, {method: "put"})` sends
/// `PUT`), so listing them in another case can never match.
pub(crate) fn normalized_method(method: &str) -> Option<&'static str> {
    ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]
        .into_iter()
        .find(|n| method.eq_ignore_ascii_case(n))
}

/// Fetch §3.2.5: CORS-safelisted methods, compared byte for byte; they never need a preflight
/// listing.
pub(crate) fn is_safelisted_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "POST")
}

/// Fetch §2.2.2 forbidden request-header names (lower case), plus the private network request
/// header, which the browser sets itself as well.
const FORBIDDEN_REQUEST_HEADERS: [&str; 23] = [
    "accept-charset",
    "accept-encoding",
    "access-control-request-headers",
    "access-control-request-method",
    "access-control-request-private-network",
    "connection",
    "content-length",
    "cookie",
    "cookie2",
    "date",
    "dnt",
    "expect",
    "host",
    "keep-alive",
    "origin",
    "referer",
    "set-cookie",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "via",
    "permissions-policy",
];

/// Whether a page can never set this request header, so listing it is a mistake.
pub(crate) fn is_forbidden_request_header(name: &str) -> bool {
    FORBIDDEN_REQUEST_HEADERS
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f))
        || starts_with_ignore_case(name, "proxy-")
        || starts_with_ignore_case(name, "sec-")
}

/// Fetch §2.2.3 forbidden response-header names: never exposed to a page, whatever is listed.
pub(crate) fn is_forbidden_response_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("set-cookie") || name.eq_ignore_ascii_case("set-cookie2")
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(is_token("X-Request-Id"));
        assert!(!is_token(""));
        assert!(!is_token("a b"));
        assert!(!is_token("a,b"));
        assert!(!is_token("é"));
    }

    #[test]
    fn forbidden_names() {
        assert!(is_forbidden_request_header("Cookie"));
        assert!(is_forbidden_request_header("Sec-Fetch-Mode"));
        assert!(is_forbidden_request_header("PROXY-Authorization"));
        assert!(!is_forbidden_request_header("Authorization"));
        assert!(!is_forbidden_request_header("se"));
        assert!(is_forbidden_method("trace"));
        assert_eq!(normalized_method("delete"), Some("DELETE"));
        assert_eq!(normalized_method("patch"), None);
    }
}
