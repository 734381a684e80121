//! One test per policy validation rule: each asserts the kind, the field and the message.

use std::time::Duration;

use portcullis::cors::{CorsConfigErrorKind as Kind, CorsPolicy, CorsPolicyBuilder};

/// Builds, expects exactly one error, and returns (kind, field, message).
fn only_error(builder: CorsPolicyBuilder) -> (Kind, &'static str, String) {
    let errors = builder.build().expect_err("policy must be refused");
    assert_eq!(errors.len(), 1, "{errors}");
    let e = &errors.errors()[0];
    assert_eq!(e.to_string(), format!("{}: {}", e.field(), e.message()));
    (e.kind(), e.field(), e.message().to_owned())
}

fn origin(o: &str) -> (Kind, &'static str, String) {
    only_error(CorsPolicy::builder().allow_origin(o))
}

fn with_origin() -> CorsPolicyBuilder {
    CorsPolicy::builder().allow_origin("https://app.example.com")
}

#[test]
fn no_origins() {
    let (kind, field, msg) = only_error(CorsPolicy::builder());
    assert_eq!((kind, field), (Kind::NoOrigins, "allow_origins"));
    assert_eq!(
        msg,
        "no origin is allowed, so every CORS request would be refused; add one, e.g. \
         allow_origin(\"https://app.example.com\"), or \"*\" for a public API without credentials"
    );
}

#[test]
fn wildcard_with_credentials() {
    let (kind, field, msg) = only_error(
        CorsPolicy::builder()
            .allow_origin("*")
            .allow_credentials(true),
    );
    assert_eq!(
        (kind, field),
        (Kind::WildcardOriginWithCredentials, "allow_credentials")
    );
    assert!(
        msg.starts_with("credentials cannot go with `*` origins"),
        "{msg}"
    );
    assert!(
        msg.ends_with(
            "list the origins instead (https://app.example.com) or write allow_credentials(false)"
        ),
        "{msg}"
    );
}

#[test]
fn wildcard_mixed_with_origins() {
    let (kind, _, msg) =
        only_error(CorsPolicy::builder().allow_origins(["*", "https://a.example"]));
    assert_eq!(kind, Kind::WildcardMixedWithOrigins);
    assert!(
        msg.contains("keep either `*` or the list of origins"),
        "{msg}"
    );
}

#[test]
fn null_origin() {
    let (kind, field, msg) = origin("null");
    assert_eq!((kind, field), (Kind::NullOrigin, "allow_origins"));
    assert!(
        msg.starts_with("`null` is the `null` origin, which any page can take on"),
        "{msg}"
    );
    assert!(
        msg.ends_with("remove it and serve the page from a real origin"),
        "{msg}"
    );
    assert_eq!(origin("NULL").0, Kind::NullOrigin);
}

#[test]
fn file_origin() {
    for o in ["file://", "file:///home/me/index.html"] {
        let (kind, _, msg) = origin(o);
        assert_eq!(kind, Kind::FileOrigin);
        assert!(
            msg.contains("serve the page over http://localhost instead"),
            "{msg}"
        );
    }
}

#[test]
fn origin_with_path() {
    let (kind, _, msg) = origin("https://app.example.com/login?next=1");
    assert_eq!(kind, Kind::OriginWithPath);
    assert_eq!(
        msg,
        "`https://app.example.com/login?next=1` has a path, query or fragment; an origin is \
         only scheme://host[:port]; write `https://app.example.com`"
    );
}

#[test]
fn origin_with_trailing_slash() {
    let (kind, _, msg) = origin("https://app.example.com/");
    assert_eq!(kind, Kind::OriginWithTrailingSlash);
    assert_eq!(
        msg,
        "`https://app.example.com/` has a trailing slash; origins never end with one; write \
         `https://app.example.com`"
    );
}

#[test]
fn origin_with_userinfo() {
    let (kind, _, msg) = origin("https://me@app.example.com");
    assert_eq!(kind, Kind::OriginWithUserinfo);
    assert!(msg.ends_with("; write `https://app.example.com`"), "{msg}");
}

#[test]
fn origin_with_default_port() {
    let (kind, _, msg) = origin("https://app.example.com:443");
    assert_eq!(kind, Kind::OriginWithDefaultPort);
    assert_eq!(
        msg,
        "`https://app.example.com:443` has the explicit default port :443; browsers omit it, \
         so it would never match; write `https://app.example.com`"
    );
    assert_eq!(
        origin("http://app.example.com:80").0,
        Kind::OriginWithDefaultPort
    );
}

#[test]
fn origin_port_out_of_range() {
    for o in [
        "https://app.example.com:0",
        "https://app.example.com:65536",
        "http://a.example:9999999",
    ] {
        let (kind, _, msg) = origin(o);
        assert_eq!(kind, Kind::OriginPortOutOfRange, "{o}");
        assert!(msg.contains("has a port outside 1-65535"), "{msg}");
    }
}

#[test]
fn origin_not_lowercase() {
    let (kind, _, msg) = origin("https://App.Example.com");
    assert_eq!(kind, Kind::OriginNotLowercase);
    assert_eq!(
        msg,
        "`https://App.Example.com` has upper case; browsers send scheme and host in lower case; \
         write `https://app.example.com`"
    );
    assert_eq!(
        origin("HTTPS://app.example.com").0,
        Kind::OriginNotLowercase
    );
}

#[test]
fn origin_not_punycode() {
    let (kind, _, msg) = origin("https://bücher.example");
    assert_eq!(kind, Kind::OriginNotPunycode);
    assert!(msg.contains("write the host in Punycode"), "{msg}");
    assert!(CorsPolicy::builder()
        .allow_origin("https://xn--bcher-kva.example")
        .build()
        .is_ok());
}

#[test]
fn origin_without_scheme() {
    let (kind, _, msg) = origin("app.example.com");
    assert_eq!(kind, Kind::OriginWithoutScheme);
    assert_eq!(
        msg,
        "`app.example.com` has no scheme (an origin is scheme://host[:port]); write \
         `https://app.example.com`"
    );
}

#[test]
fn origin_malformed() {
    for o in [
        "",
        "https://",
        "https://app..example.com",
        "https://app.example.com.",
        "https://app example.com",
        "https://app.example.com:08080",
        "https://[::0001]",
        "https://127.1",
        "https://010.0.0.1",
        "1https://a.example",
    ] {
        let (kind, field, msg) = origin(o);
        assert_eq!(
            (kind, field),
            (Kind::OriginMalformed, "allow_origins"),
            "{o}: {msg}"
        );
        assert!(msg.contains("write"), "{o}: {msg}");
    }
    assert!(CorsPolicy::builder()
        .allow_origins([
            "https://[::1]:8443",
            "https://10.0.0.1",
            "chrome-extension://abcdef"
        ])
        .build()
        .is_ok());
}

#[test]
fn origin_bad_wildcard() {
    for o in [
        "https://*",
        "https://*example.com",
        "https://a.*.example.com",
        "https://*.*.example.com",
        "*://app.example.com",
        "https://app.example.com:8*",
        "https://*.10.0.0.1",
        "chrome-extension://*.abc",
        "*.example.com",
    ] {
        let (kind, _, msg) = origin(o);
        if o == "*.example.com" {
            // No scheme is the first problem found; the suggestion adds it.
            assert_eq!(kind, Kind::OriginWithoutScheme, "{msg}");
            continue;
        }
        assert_eq!(kind, Kind::OriginBadWildcard, "{o}: {msg}");
        assert!(
            msg.contains("the only wildcards are a leading `*.` label"),
            "{o}: {msg}"
        );
    }
    assert!(CorsPolicy::builder()
        .allow_origins([
            "https://*.example.com",
            "http://localhost:*",
            "https://*.example.net:*"
        ])
        .build()
        .is_ok());
}

#[test]
fn public_suffix_wildcard_with_credentials() {
    for (o, suffix) in [
        ("https://*.com", "com"),
        ("https://*.github.io", "github.io"),
        ("https://*.co.uk", "co.uk"),
        ("https://*.vercel.app", "vercel.app"),
    ] {
        let (kind, field, msg) = only_error(
            CorsPolicy::builder()
                .allow_origin(o)
                .allow_credentials(true),
        );
        assert_eq!(
            (kind, field),
            (Kind::PublicSuffixWildcardWithCredentials, "allow_origins")
        );
        assert_eq!(
            msg,
            format!(
                "`{o}` trusts, with credentials, every site under {suffix}, a public suffix \
                 where anyone can register a name; list your own origins or write a pattern \
                 under a domain you control (https://*.example.com)"
            )
        );
    }
    // Anonymous requests carry no user data, so the pattern is tolerated there.
    assert!(CorsPolicy::builder()
        .allow_origin("https://*.github.io")
        .build()
        .is_ok());
    assert!(CorsPolicy::builder()
        .allow_origin("https://*.me.github.io")
        .allow_credentials(true)
        .build()
        .is_ok());
}

#[test]
fn insecure_origin_with_credentials() {
    let (kind, field, msg) = only_error(
        CorsPolicy::builder()
            .allow_origin("http://app.example.com")
            .allow_credentials(true),
    );
    assert_eq!(
        (kind, field),
        (Kind::InsecureOriginWithCredentials, "allow_origins")
    );
    assert!(msg.contains("write `https://app.example.com`"), "{msg}");
    assert!(CorsPolicy::builder()
        .allow_origins([
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "http://[::1]:*",
            "http://app.localhost"
        ])
        .allow_credentials(true)
        .build()
        .is_ok());
}

#[test]
fn forbidden_methods() {
    for m in ["CONNECT", "TRACE", "TRACK", "trace"] {
        let (kind, field, msg) = only_error(with_origin().allow_methods([m]));
        assert_eq!((kind, field), (Kind::ForbiddenMethod, "allow_methods"));
        assert_eq!(
            msg,
            format!("`{m}` is a forbidden method that browsers never send from a page; remove it")
        );
    }
}

#[test]
fn invalid_method() {
    let (kind, field, msg) = only_error(with_origin().allow_methods(["PUT, DELETE"]));
    assert_eq!((kind, field), (Kind::InvalidMethod, "allow_methods"));
    assert_eq!(
        msg,
        "`PUT, DELETE` is not a method (a token such as PATCH); list methods one per element, \
         e.g. [\"PUT\", \"DELETE\"]"
    );
    assert_eq!(
        only_error(with_origin().allow_methods([""])).0,
        Kind::InvalidMethod
    );
}

#[test]
fn method_not_uppercase() {
    let (kind, _, msg) = only_error(with_origin().allow_methods(["delete"]));
    assert_eq!(kind, Kind::MethodNotUppercase);
    assert_eq!(msg, "`delete` is upper-cased by browsers before it is sent, so it would never match; write `DELETE`");
    // `patch` is not normalized by browsers, so it is a distinct, valid method.
    assert!(with_origin()
        .allow_methods(["patch", "PATCH"])
        .build()
        .is_ok());
}

#[test]
fn forbidden_request_headers() {
    for h in [
        "Cookie",
        "Host",
        "Sec-Fetch-Mode",
        "Proxy-Authorization",
        "Content-Length",
        "Origin",
    ] {
        let (kind, field, msg) = only_error(with_origin().allow_headers([h]));
        assert_eq!(
            (kind, field),
            (Kind::ForbiddenRequestHeader, "allow_headers"),
            "{h}"
        );
        assert!(
            msg.starts_with(&format!(
                "`{h}` is a forbidden request header: browsers set it themselves"
            )),
            "{msg}"
        );
    }
    let (_, _, msg) = only_error(with_origin().allow_headers(["cookie"]));
    assert!(
        msg.ends_with("(to send cookies, write allow_credentials(true))"),
        "{msg}"
    );
}

#[test]
fn invalid_header_name() {
    let (kind, field, msg) = only_error(with_origin().allow_headers(["X Request Id"]));
    assert_eq!((kind, field), (Kind::InvalidHeaderName, "allow_headers"));
    assert_eq!(
        msg,
        "`X Request Id` is not a header name (a token such as X-Request-Id); list names one per element"
    );
    let (kind, field, _) = only_error(with_origin().expose_headers(["X:Y"]));
    assert_eq!((kind, field), (Kind::InvalidHeaderName, "expose_headers"));
}

#[test]
fn header_name_wildcard() {
    let (kind, _, msg) = only_error(with_origin().allow_headers(["X-*"]));
    assert_eq!(kind, Kind::HeaderNameWildcard);
    assert!(msg.contains("patterns are not supported"), "{msg}");
    assert!(
        msg.ends_with("for any header (never covering Authorization)"),
        "{msg}"
    );
}

#[test]
fn exposed_set_cookie() {
    for h in ["Set-Cookie", "set-cookie2"] {
        let (kind, field, msg) = only_error(with_origin().expose_headers([h]));
        assert_eq!((kind, field), (Kind::ExposedSetCookie, "expose_headers"));
        assert!(
            msg.starts_with(&format!("`{h}` is never exposed to pages by browsers")),
            "{msg}"
        );
    }
}

#[test]
fn expose_wildcard_with_credentials() {
    let (kind, field, msg) =
        only_error(with_origin().expose_headers(["*"]).allow_credentials(true));
    assert_eq!(
        (kind, field),
        (Kind::ExposeWildcardWithCredentials, "expose_headers")
    );
    assert!(
        msg.contains("list the headers to expose, e.g. X-Request-Id"),
        "{msg}"
    );
    assert!(with_origin().expose_headers(["*"]).build().is_ok());
}

#[test]
fn max_age_out_of_range() {
    let (kind, field, msg) = only_error(with_origin().max_age_secs(86_401));
    assert_eq!((kind, field), (Kind::MaxAgeOutOfRange, "max_age"));
    assert_eq!(
        msg,
        "86401s is outside 0-86400 seconds (browsers cap it: Chromium at 7200, Firefox at \
         86400); write at most 86400, e.g. max_age_secs(7200)"
    );
    assert_eq!(
        only_error(with_origin().max_age(Duration::from_millis(86_400_001))).0,
        Kind::MaxAgeOutOfRange
    );
    assert!(with_origin().max_age_secs(86_400).build().is_ok());
    assert!(with_origin().max_age_secs(0).build().is_ok());
}

#[test]
fn private_network_with_wildcard_origin() {
    let (kind, field, msg) = only_error(
        CorsPolicy::builder()
            .allow_origin("*")
            .allow_private_network(true),
    );
    assert_eq!(
        (kind, field),
        (
            Kind::PrivateNetworkWithWildcardOrigin,
            "allow_private_network"
        )
    );
    assert!(msg.ends_with("list the https origins that may"), "{msg}");
}

#[test]
fn private_network_with_insecure_origin() {
    let (kind, field, msg) = only_error(
        CorsPolicy::builder()
            .allow_origin("http://app.example.com")
            .allow_private_network(true),
    );
    assert_eq!(
        (kind, field),
        (
            Kind::PrivateNetworkWithInsecureOrigin,
            "allow_private_network"
        )
    );
    assert_eq!(
        msg,
        "`http://app.example.com` is not a secure context, and browsers let only secure \
         contexts reach a private network; write `https://app.example.com`"
    );
    assert!(CorsPolicy::builder()
        .allow_origins(["https://app.example.com", "http://localhost:*"])
        .allow_private_network(true)
        .build()
        .is_ok());
}

#[test]
fn every_error_is_reported_at_once() {
    let errors = CorsPolicy::builder()
        .allow_origins(["*", "null", "https://A.example/"])
        .allow_methods(["TRACE"])
        .allow_headers(["Cookie"])
        .expose_headers(["Set-Cookie", "*"])
        .allow_credentials(true)
        .max_age_secs(100_000)
        .allow_private_network(true)
        .build()
        .expect_err("refused");
    let fields: Vec<&str> = errors.errors().iter().map(|e| e.field()).collect();
    assert_eq!(
        fields,
        [
            "allow_origins",
            "allow_origins",
            "allow_credentials",
            "allow_private_network",
            "allow_methods",
            "allow_headers",
            "expose_headers",
            "expose_headers",
            "max_age",
        ]
    );
    let text = errors.to_string();
    assert_eq!(text.lines().count(), errors.len());
    assert!(errors.contains(Kind::ExposeWildcardWithCredentials));
    let as_error: &dyn std::error::Error = &errors;
    assert!(as_error.to_string().starts_with("allow_origins: `null`"));
}

/// Names on the wrong side: a response header cannot be asked for, a request header cannot be
/// exposed.
#[test]
fn headers_on_the_wrong_side_are_refused() {
    use portcullis::cors::{CorsConfigErrorKind as K, CorsPolicy};
    for name in [
        "Access-Control-Allow-Origin",
        "retry-after",
        "Set-Cookie",
        "X-RateLimit-Limit",
    ] {
        let e = CorsPolicy::builder()
            .allow_origin("https://app.example.com")
            .allow_headers([name])
            .build()
            .unwrap_err();
        assert!(e.contains(K::ResponseHeaderAllowed), "{name}: {e}");
    }
    for name in [
        "Access-Control-Request-Method",
        "origin",
        "Authorization",
        "Cookie",
    ] {
        let e = CorsPolicy::builder()
            .allow_origin("https://app.example.com")
            .expose_headers([name])
            .build()
            .unwrap_err();
        assert!(e.contains(K::RequestHeaderExposed), "{name}: {e}");
    }
}

/// A preflight whose `Access-Control-Request-Headers` is hundreds of empty elements is refused,
/// like one naming too many headers.
#[test]
fn hundreds_of_empty_request_header_elements_are_refused() {
    use portcullis::cors::{CorsPolicy, CorsRequest};
    let policy = CorsPolicy::builder()
        .allow_origin("https://app.example.com")
        .allow_methods(["PUT"])
        .allow_headers(["X-Request-Id"])
        .build()
        .unwrap();
    let empties = ",".repeat(500);
    let req = CorsRequest {
        method: "OPTIONS",
        origin: Some("https://app.example.com"),
        access_control_request_method: Some("PUT"),
        access_control_request_headers: Some(&empties),
        access_control_request_private_network: false,
    };
    let d = policy.decide(&req);
    assert!(!d.is_allowed());
    assert_eq!(
        d.reason().map(|r| r.code()),
        Some("too_many_request_headers")
    );
    let few = ", ,X-Request-Id,";
    let ok = CorsRequest {
        access_control_request_headers: Some(few),
        ..req
    };
    assert!(policy.decide(&ok).is_allowed());
}

/// Wildcards are checked against the full Public Suffix List, private section included: a base
/// that is a public suffix is refused with credentials, and a wildcard above nested public
/// suffixes (`*.amazonaws.com` above `s3.amazonaws.com`) never echoes an origin registered
/// under one of them.
#[test]
fn wildcards_never_cross_a_public_suffix() {
    use portcullis::cors::{CorsConfigErrorKind as K, CorsPolicy, CorsRequest};
    for base in [
        "*.s3.amazonaws.com",
        "*.pages.dev",
        "*.github.io",
        "*.co.uk",
    ] {
        let e = CorsPolicy::builder()
            .allow_origin(format!("https://{base}"))
            .allow_credentials(true)
            .build()
            .unwrap_err();
        assert!(
            e.contains(K::PublicSuffixWildcardWithCredentials),
            "{base}: {e}"
        );
    }
    let policy = CorsPolicy::builder()
        .allow_origin("https://*.amazonaws.com")
        .allow_credentials(true)
        .build()
        .expect("amazonaws.com is not itself a public suffix");
    let get = |origin: &'static str| CorsRequest {
        method: "GET",
        origin: Some(origin),
        access_control_request_method: None,
        access_control_request_headers: None,
        access_control_request_private_network: false,
    };
    assert!(!policy
        .decide(&get("https://customer-bucket.s3.amazonaws.com"))
        .is_allowed());
    assert!(!policy
        .decide(&get("https://x.execute-api.us-east-1.amazonaws.com"))
        .is_allowed());
    assert!(policy
        .decide(&get("https://console.amazonaws.com"))
        .is_allowed());
}
