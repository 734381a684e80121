//! Origins: the strict parser for configured origins and patterns, and the byte-level matcher
//! for a request's `Origin` header.
//!
//! A browser serializes an origin canonically (Fetch §3.1, URL §4.4): lower-case scheme and host,
//! Punycode host, no default port, no path. A configured origin must already be written that
//! way, so that matching a request is a plain byte comparison.

use std::fmt;
use std::net::Ipv6Addr;

/// A configured origin, ready to match request origins without allocating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OriginPattern {
    /// `*`: every origin, `null` included.
    Any,
    /// One origin, compared byte for byte.
    Exact(String),
    /// A subdomain and/or port wildcard.
    Wild {
        /// `scheme://`
        prefix: String,
        /// What the host must be.
        host: HostRule,
        /// What may follow the host.
        port: PortRule,
    },
}

/// Host part of a wildcard pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostRule {
    /// This host exactly.
    Exact(String),
    /// One or more labels before this suffix, which starts with a dot (`.example.com`).
    Subdomains(String),
}

/// Port part of a wildcard pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PortRule {
    /// No port: the scheme's default.
    Default,
    /// This port, stored with its colon (`:8080`).
    Exact(String),
    /// Any port, or none.
    Any,
}

/// A configured origin with the facts the policy checks need.
#[derive(Clone, Debug)]
pub(crate) struct ParsedOrigin {
    /// How it matches.
    pub(crate) pattern: OriginPattern,
    /// The host, or for a subdomain pattern the suffix after `*.`.
    pub(crate) host: String,
    /// Whether this is a `*.` subdomain pattern.
    pub(crate) subdomains: bool,
    /// Plain `http` to a host that is not loopback: readable and writable by the network.
    pub(crate) insecure: bool,
}

/// What is wrong with a configured origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OriginProblem {
    Empty,
    Null,
    File,
    NoScheme,
    BadScheme,
    Uppercase,
    NonAscii,
    BadChar,
    Userinfo,
    TrailingSlash,
    Path,
    EmptyHost,
    BadHost(&'static str),
    TrailingDot,
    DefaultPort(u16),
    PortRange,
    BadPort,
    BadWildcard,
}

impl fmt::Display for OriginProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("is empty"),
            Self::Null => f.write_str(
                "is the `null` origin, which any page can take on (sandboxed iframes, data: URLs, \
                 redirects), so allowing it allows everyone; remove it and serve the page from a \
                 real origin",
            ),
            Self::File => f.write_str(
                "is a file: origin, which browsers send as `null` and which any local file \
                 shares; remove it and serve the page over http://localhost instead",
            ),
            Self::NoScheme => f.write_str("has no scheme (an origin is scheme://host[:port])"),
            Self::BadScheme => f.write_str("has an invalid scheme"),
            Self::Uppercase => {
                f.write_str("has upper case; browsers send scheme and host in lower case")
            }
            Self::NonAscii => f.write_str(
                "has a non-ASCII host; browsers send international domain names in Punycode \
                 (xn--...), so write the host in Punycode",
            ),
            Self::BadChar => {
                f.write_str("contains a space, control or otherwise invalid character")
            }
            Self::Userinfo => f.write_str("has user information (user@); origins never carry it"),
            Self::TrailingSlash => f.write_str("has a trailing slash; origins never end with one"),
            Self::Path => {
                f.write_str("has a path, query or fragment; an origin is only scheme://host[:port]")
            }
            Self::EmptyHost => f.write_str("has no host"),
            Self::BadHost(why) => write!(f, "has an invalid host: {why}"),
            Self::TrailingDot => f.write_str("has a host ending in a dot"),
            Self::DefaultPort(p) => write!(
                f,
                "has the explicit default port :{p}; browsers omit it, so it would never match"
            ),
            Self::PortRange => f.write_str("has a port outside 1-65535"),
            Self::BadPort => f.write_str("has an invalid port (digits, no leading zero, or *)"),
            Self::BadWildcard => f.write_str(
                "has a wildcard where none is allowed; the only wildcards are a leading `*.` \
                 label on an http(s) host (https://*.example.com), a `:*` port \
                 (http://localhost:*), or `*` alone for every origin",
            ),
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        _ => None,
    }
}

/// Parses a configured origin strictly: it must already be in the form a browser sends.
pub(crate) fn parse_origin(input: &str) -> Result<ParsedOrigin, OriginProblem> {
    if input == "*" {
        return Ok(ParsedOrigin {
            pattern: OriginPattern::Any,
            host: String::new(),
            subdomains: false,
            insecure: false,
        });
    }
    if input.is_empty() {
        return Err(OriginProblem::Empty);
    }
    if input.eq_ignore_ascii_case("null") {
        return Err(OriginProblem::Null);
    }
    if input.len() >= 5 && input.as_bytes()[..5].eq_ignore_ascii_case(b"file:") {
        return Err(OriginProblem::File);
    }
    if !input.is_ascii() {
        return Err(OriginProblem::NonAscii);
    }
    if input.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(OriginProblem::BadChar);
    }
    let Some(sep) = input.find("://") else {
        return Err(OriginProblem::NoScheme);
    };
    let scheme = &input[..sep];
    check_scheme(scheme)?;
    let rest = &input[sep + 3..];
    if rest.contains('@') {
        return Err(OriginProblem::Userinfo);
    }
    let authority = match rest.find(['/', '?', '#']) {
        Some(i) if &rest[i..] == "/" => return Err(OriginProblem::TrailingSlash),
        Some(_) => return Err(OriginProblem::Path),
        None => rest,
    };
    if authority.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(OriginProblem::Uppercase);
    }
    let (host, port) = split_host_port(authority);
    let port = parse_port(scheme, port)?;
    let is_http = scheme == "http" || scheme == "https";

    let (host_rule, host_name, subdomains) = if let Some(suffix) = host.strip_prefix("*.") {
        if !is_http || suffix.contains('*') {
            return Err(OriginProblem::BadWildcard);
        }
        check_domain(suffix)?;
        if looks_like_ipv4(suffix) {
            return Err(OriginProblem::BadWildcard);
        }
        (HostRule::Subdomains(format!(".{suffix}")), suffix, true)
    } else {
        if host.contains('*') {
            return Err(OriginProblem::BadWildcard);
        }
        check_host(host)?;
        (HostRule::Exact(host.to_owned()), host, false)
    };
    if !is_http && port == PortRule::Any {
        return Err(OriginProblem::BadWildcard);
    }

    let insecure = scheme == "http" && !is_loopback(host_name);
    let pattern = if subdomains || port == PortRule::Any {
        OriginPattern::Wild {
            prefix: format!("{scheme}://"),
            host: host_rule,
            port,
        }
    } else {
        OriginPattern::Exact(input.to_owned())
    };
    Ok(ParsedOrigin {
        pattern,
        host: host_name.to_owned(),
        subdomains,
        insecure,
    })
}

fn check_scheme(scheme: &str) -> Result<(), OriginProblem> {
    if scheme.contains('*') {
        return Err(OriginProblem::BadWildcard);
    }
    let mut bytes = scheme.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    if !first_ok
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Err(OriginProblem::BadScheme);
    }
    if scheme.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(OriginProblem::Uppercase);
    }
    if scheme == "file" {
        return Err(OriginProblem::File);
    }
    Ok(())
}

/// Splits `host[:port]`, where host may be a bracketed IPv6 address. The port part keeps its
/// colon, so an absent port is `""`.
fn split_host_port(authority: &str) -> (&str, &str) {
    if authority.starts_with('[') {
        match authority.find(']') {
            Some(i) => authority.split_at(i + 1),
            None => (authority, ""),
        }
    } else {
        match authority.find(':') {
            Some(i) => authority.split_at(i),
            None => (authority, ""),
        }
    }
}

fn parse_port(scheme: &str, port: &str) -> Result<PortRule, OriginProblem> {
    let Some(digits) = port.strip_prefix(':') else {
        return if port.is_empty() {
            Ok(PortRule::Default)
        } else {
            Err(OriginProblem::BadHost("unexpected text after the host"))
        };
    };
    if digits == "*" {
        return Ok(PortRule::Any);
    }
    if digits.contains('*') {
        return Err(OriginProblem::BadWildcard);
    }
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OriginProblem::BadPort);
    }
    if digits.len() > 5 {
        return Err(OriginProblem::PortRange);
    }
    let value: u32 = digits.parse().map_err(|_| OriginProblem::BadPort)?;
    if value == 0 || value > 65535 {
        return Err(OriginProblem::PortRange);
    }
    if digits.starts_with('0') {
        return Err(OriginProblem::BadPort);
    }
    if default_port(scheme) == Some(value as u16) {
        return Err(OriginProblem::DefaultPort(value as u16));
    }
    Ok(PortRule::Exact(port.to_owned()))
}

fn check_host(host: &str) -> Result<(), OriginProblem> {
    if host.is_empty() {
        return Err(OriginProblem::EmptyHost);
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(OriginProblem::BadHost(
            "an IPv6 address is written in brackets: [::1]",
        ))?;
        let addr: Ipv6Addr = inner
            .parse()
            .map_err(|_| OriginProblem::BadHost("not an IPv6 address"))?;
        if serialize_ipv6(addr) != inner {
            return Err(OriginProblem::BadHost(
                "write the IPv6 address in its shortest form, as browsers send it",
            ));
        }
        return Ok(());
    }
    check_domain(host)?;
    if looks_like_ipv4(host) && !is_canonical_ipv4(host) {
        return Err(OriginProblem::BadHost(
            "write the IPv4 address in dotted decimal without leading zeros (127.0.0.1), as \
             browsers send it",
        ));
    }
    Ok(())
}

/// Checks a domain (or dotted IPv4) host: lower-case labels of `a-z 0-9 - _`, none empty.
fn check_domain(host: &str) -> Result<(), OriginProblem> {
    if host.is_empty() {
        return Err(OriginProblem::EmptyHost);
    }
    if host.ends_with('.') {
        return Err(OriginProblem::TrailingDot);
    }
    if host.len() > 253 {
        return Err(OriginProblem::BadHost("longer than 253 characters"));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(OriginProblem::BadHost("empty label (two dots in a row)"));
        }
        if label.len() > 63 {
            return Err(OriginProblem::BadHost("a label longer than 63 characters"));
        }
        if !label.bytes().all(is_host_byte) {
            return Err(OriginProblem::BadChar);
        }
    }
    Ok(())
}

const fn is_host_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// The URL standard parses a host whose last label is numeric (or hex) as IPv4.
fn looks_like_ipv4(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
        || (last.starts_with("0x") && last[2..].bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_canonical_ipv4(host: &str) -> bool {
    let mut parts = 0;
    for part in host.split('.') {
        parts += 1;
        let ok = !part.is_empty()
            && part.len() <= 3
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'))
            && part.parse::<u16>().is_ok_and(|v| v <= 255);
        if !ok {
            return false;
        }
    }
    parts == 4
}

/// URL §3.6 IPv6 serializer: lower-case hex, the first longest run of two or more zero pieces
/// compressed to `::` (unlike std, it never writes an embedded IPv4 form).
fn serialize_ipv6(addr: Ipv6Addr) -> String {
    use fmt::Write;
    let segs = addr.segments();
    let (mut best_start, mut best_len) = (usize::MAX, 1);
    let mut i = 0;
    while i < 8 {
        if segs[i] == 0 {
            let start = i;
            while i < 8 && segs[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                (best_start, best_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    let mut out = String::with_capacity(39);
    let mut i = 0;
    while i < 8 {
        if i == best_start {
            out.push_str(if i == 0 { "::" } else { ":" });
            i += best_len;
            continue;
        }
        let _ = write!(out, "{:x}", segs[i]);
        if i < 7 {
            out.push(':');
        }
        i += 1;
    }
    out
}

/// Loopback hosts per Secure Contexts §3.2: `localhost`, `*.localhost`, 127.0.0.0/8, `[::1]`.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || (is_canonical_ipv4(host) && host.starts_with("127."))
}

/// Best-effort rewrite of a refused origin into the form a browser sends, for error messages.
pub(crate) fn suggest(input: &str) -> Option<String> {
    let lower = input.trim().to_ascii_lowercase();
    let (scheme, rest) = match lower.find("://") {
        Some(i) => (lower[..i].to_owned(), &lower[i + 3..]),
        None if !lower.contains(':') => ("https".to_owned(), lower.as_str()),
        None => return None,
    };
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let (host, port) = split_host_port(authority);
    let host = host.trim_end_matches('.');
    let port = match (port.strip_prefix(':'), default_port(&scheme)) {
        (Some(p), Some(d)) if p.parse::<u16>() == Ok(d) => "",
        _ => port,
    };
    let candidate = format!("{scheme}://{host}{port}");
    (candidate != input && parse_origin(&candidate).is_ok()).then_some(candidate)
}

impl OriginPattern {
    /// Whether a request's `Origin` value matches; byte comparisons only, no allocation.
    pub(crate) fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => exact.as_bytes() == origin.as_bytes(),
            Self::Wild { prefix, host, port } => {
                let Some(rest) = origin.strip_prefix(prefix.as_str()) else {
                    return false;
                };
                let (h, p) = split_host_port(rest);
                host.matches(h) && port.matches(p)
            }
        }
    }
}

impl HostRule {
    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(exact) => exact == host,
            Self::Subdomains(suffix) => {
                host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
                    && are_labels(&host[..host.len() - suffix.len()])
                    // Never across a public suffix nested in the base (see `suffix`).
                    && !super::suffix::crosses_public_suffix(host, &suffix[1..])
            }
        }
    }
}

/// One or more non-empty lower-case host labels separated by dots.
fn are_labels(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(is_host_byte))
}

impl PortRule {
    fn matches(&self, port: &str) -> bool {
        match self {
            Self::Default => port.is_empty(),
            Self::Exact(exact) => exact == port,
            Self::Any => port.is_empty() || port.strip_prefix(':').is_some_and(is_port_number),
        }
    }
}

/// Canonical decimal port 1-65535.
fn is_port_number(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && !p.starts_with('0')
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u32>().is_ok_and(|v| v <= 65535)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> OriginPattern {
        parse_origin(s).expect("valid origin").pattern
    }

    #[test]
    fn ipv6_serialization_follows_url_standard() {
        for (input, out) in [
            ("::1", "::1"),
            ("1::", "1::"),
            ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
            ("1:0:0:2:3:0:0:4", "1::2:3:0:0:4"),
            ("::ffff:192.0.2.1", "::ffff:c000:201"),
            ("1:2:3:4:5:6:0:8", "1:2:3:4:5:6:0:8"),
        ] {
            assert_eq!(serialize_ipv6(input.parse().unwrap()), out, "{input}");
        }
    }

    #[test]
    fn subdomain_matching() {
        let p = pat("https://*.example.com");
        assert!(p.matches("https://a.example.com"));
        assert!(p.matches("https://a.b.example.com"));
        assert!(!p.matches("https://example.com"));
        assert!(!p.matches("https://.example.com"));
        assert!(!p.matches("https://a..example.com"));
        assert!(!p.matches("https://evil-example.com"));
        assert!(!p.matches("https://example.com.evil.net"));
        assert!(!p.matches("https://a.example.com:8443"));
        assert!(!p.matches("http://a.example.com"));
    }

    #[test]
    fn port_matching() {
        let p = pat("http://localhost:*");
        assert!(p.matches("http://localhost:3000"));
        assert!(p.matches("http://localhost"));
        assert!(!p.matches("http://localhost:"));
        assert!(!p.matches("http://localhost:03000"));
        assert!(!p.matches("http://localhost:70000"));
        assert!(!p.matches("http://localhost.evil.com:3000"));
        assert!(pat("http://[::1]:*").matches("http://[::1]:8080"));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("HTTPS://App.Example.com:443/x").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            suggest("app.example.com").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            suggest("https://u@a.com/").as_deref(),
            Some("https://a.com")
        );
    }
}
