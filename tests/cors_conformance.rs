//! Conformance of the CORS engine with the Fetch standard (https://fetch.spec.whatwg.org/).
//! Each case cites the section it comes from.

use portcullis::cors::headers::{
    ALLOW_CREDENTIALS, ALLOW_HEADERS, ALLOW_METHODS, ALLOW_ORIGIN, ALLOW_PRIVATE_NETWORK,
    DEBUG_REASON, EXPOSE_HEADERS, MAX_AGE, VARY,
};
use portcullis::cors::{CorsDecision, CorsPolicy, CorsRequest, RequestKind};

const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// Credentialed policy with exact, subdomain and port patterns.
fn strict() -> CorsPolicy {
    CorsPolicy::builder()
        .allow_origins([
            "https://app.example.com",
            "https://*.example.org",
            "http://localhost:*",
            "https://api.example.net:8443",
        ])
        .allow_methods(["PUT", "PATCH", "DELETE"])
        .allow_headers(["Content-Type", "X-Request-Id", "Authorization"])
        .expose_headers(["X-RateLimit-Remaining", "X-Request-Id"])
        .allow_credentials(true)
        .max_age_secs(600)
        .build()
        .expect("valid policy")
}

/// Public API: every origin, anonymous only.
fn public() -> CorsPolicy {
    CorsPolicy::builder()
        .allow_origin("*")
        .allow_methods(["PUT"])
        .allow_headers(["*"])
        .expose_headers(["X-Total-Count"])
        .build()
        .expect("valid policy")
}

fn actual<'a>(policy: &'a CorsPolicy, origin: &'a str) -> CorsDecision<'a> {
    policy.decide(&CorsRequest::new("GET").with_origin(origin))
}

fn preflight<'a>(
    policy: &'a CorsPolicy,
    origin: &'a str,
    method: &'a str,
    headers: Option<&'a str>,
) -> CorsDecision<'a> {
    let mut req = CorsRequest::new("OPTIONS")
        .with_origin(origin)
        .with_request_method(method);
    req.access_control_request_headers = headers;
    policy.decide(&req)
}

/// Names of the Access-Control-* headers in a decision.
fn cors_names(d: &CorsDecision<'_>) -> Vec<&'static str> {
    d.headers()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("access-control-"))
        .collect()
}

fn assert_refused_cleanly(d: &CorsDecision<'_>) {
    assert!(!d.is_allowed(), "{d:?}");
    assert!(
        cors_names(d).is_empty(),
        "refusal carries CORS headers: {d:?}"
    );
    assert!(d.reason().is_some());
    assert_eq!(d.header(DEBUG_REASON), None, "debug is off by default");
}

// ---------------------------------------------------------------------------------------------
// Fetch §3.2.2 HTTP requests: classification.

#[test]
fn no_origin_is_not_cors() {
    // Fetch §3.2.2: a CORS request is an HTTP request that includes an `Origin` header.
    let p = strict();
    for method in ["GET", "POST", "OPTIONS"] {
        let d = p.decide(&CorsRequest::new(method).with_request_method("PUT"));
        assert_eq!(d.kind(), RequestKind::NotCors);
        assert!(d.is_allowed());
        assert_eq!(d.status(), None);
        assert!(cors_names(&d).is_empty());
    }
}

#[test]
fn options_with_origin_and_acrm_is_a_preflight() {
    // Fetch §3.2.2: a CORS-preflight request is a CORS request that checks to see if the CORS
    // protocol is understood. It uses `OPTIONS` as method and includes
    // `Access-Control-Request-Method`.
    let p = strict();
    let d = preflight(&p, "https://app.example.com", "PUT", None);
    assert_eq!(d.kind(), RequestKind::Preflight);
    assert_eq!(d.status(), Some(204));
}

#[test]
fn options_without_acrm_is_an_actual_request() {
    // Fetch §3.2.2: without `Access-Control-Request-Method` an OPTIONS request is an ordinary
    // CORS request, handled by the application.
    let p = strict();
    let req = CorsRequest::new("OPTIONS").with_origin("https://app.example.com");
    let d = p.decide(&req);
    assert_eq!(d.kind(), RequestKind::Actual);
    assert_eq!(d.status(), None);
    assert_eq!(d.header(ALLOW_ORIGIN), Some("https://app.example.com"));
    assert_eq!(d.header(ALLOW_METHODS), None);
}

#[test]
fn acrm_on_another_method_is_an_actual_request() {
    // Fetch §3.2.2: only `OPTIONS` (methods are case-sensitive) makes a preflight.
    let p = strict();
    for method in ["GET", "options", "POST"] {
        let req = CorsRequest::new(method)
            .with_origin("https://app.example.com")
            .with_request_method("PUT");
        assert_eq!(p.decide(&req).kind(), RequestKind::Actual, "{method}");
    }
}

#[test]
fn from_headers_reads_the_four_headers() {
    // Fetch §3.2.2 request headers; §3.2.7 (PNA draft) `Access-Control-Request-Private-Network`.
    let headers = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-request-id"),
        ("access-control-request-private-network", "true"),
    ];
    let req = CorsRequest::from_headers("OPTIONS", |name| {
        headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    });
    assert_eq!(req.kind(), RequestKind::Preflight);
    assert_eq!(req.access_control_request_headers, Some("x-request-id"));
    assert!(req.access_control_request_private_network);
}

// ---------------------------------------------------------------------------------------------
// Fetch §3.1 Origin header and §4.9 CORS check: origins compared byte for byte.

#[test]
fn exact_origin_matches_byte_for_byte() {
    // Fetch §4.9 CORS check: `Access-Control-Allow-Origin` must be byte-identical to the
    // serialized request origin, so the engine echoes only exact matches.
    let p = strict();
    let d = actual(&p, "https://app.example.com");
    assert!(d.is_allowed());
    assert_eq!(d.header(ALLOW_ORIGIN), Some("https://app.example.com"));
}

#[test]
fn exact_origin_near_misses_are_refused() {
    // Fetch §3.1 / URL §4.4: an origin is (scheme, host, port); the serialization a browser
    // sends has no path, no trailing slash, no userinfo, no default port, and lower case.
    let p = strict();
    for origin in [
        "http://app.example.com",           // scheme
        "https://app.example.com:444",      // port
        "https://app.example.com:443",      // explicit default port: never sent by browsers
        "https://APP.example.com",          // case
        "HTTPS://app.example.com",          // scheme case
        "https://app.example.com/",         // trailing slash
        "https://app.example.com/path",     // path
        "https://user@app.example.com",     // userinfo
        "https://app.example.com.",         // trailing dot
        " https://app.example.com",         // whitespace
        "https://app.example.co",           // prefix
        "https://app.example.com.evil.net", // suffix
        "https://example.com",              // parent
        "",                                 // empty
    ] {
        assert_refused_cleanly(&actual(&p, origin));
    }
}

#[test]
fn explicit_port_origin() {
    // URL §4.4: a non-default port is part of the serialized origin.
    let p = strict();
    assert!(actual(&p, "https://api.example.net:8443").is_allowed());
    assert_refused_cleanly(&actual(&p, "https://api.example.net"));
    assert_refused_cleanly(&actual(&p, "https://api.example.net:8444"));
}

#[test]
fn null_origin_is_refused() {
    // Fetch §3.1: `Origin: null` is sent for opaque origins (sandboxed iframes, data: URLs,
    // redirects); a policy cannot allow it except through `*`.
    let p = strict();
    assert_refused_cleanly(&actual(&p, "null"));
    assert_refused_cleanly(&preflight(&p, "null", "PUT", None));
    let any = public();
    assert_eq!(actual(&any, "null").header(ALLOW_ORIGIN), Some("*"));
}

#[test]
fn subdomain_pattern_and_near_misses() {
    // Fetch §4.9: still a byte-exact echo; the pattern only chooses which origins to echo.
    let p = strict();
    for origin in [
        "https://a.example.org",
        "https://a.b.example.org",
        "https://xn--bcher-kva.example.org",
    ] {
        let d = actual(&p, origin);
        assert_eq!(d.header(ALLOW_ORIGIN), Some(origin));
    }
    for origin in [
        "https://example.org",          // apex
        "https://evil-example.org",     // lookalike
        "https://example.org.evil.net", // suffix attack
        "https://aexample.org",         // no dot
        "https://.example.org",         // empty label
        "https://a..example.org",       // empty label
        "http://a.example.org",         // scheme
        "https://a.example.org:8443",   // port
        "https://A.example.org",        // case
        "https://a.example.org/",       // slash
        "https://a.example.org.",       // trailing dot
        "https://a@b.example.org",      // userinfo
    ] {
        assert_refused_cleanly(&actual(&p, origin));
    }
}

#[test]
fn port_pattern_and_near_misses() {
    // URL §4.4: ports serialize in decimal without leading zeros; `:*` accepts any of them.
    let p = strict();
    for origin in [
        "http://localhost:3000",
        "http://localhost:5173",
        "http://localhost",
    ] {
        assert!(actual(&p, origin).is_allowed(), "{origin}");
    }
    for origin in [
        "https://localhost:3000",
        "http://localhost:",
        "http://localhost:03000",
        "http://localhost:65536",
        "http://localhost:3000/",
        "http://localhost.evil.net:3000",
        "http://127.0.0.1:3000",
        "http://sub.localhost:3000",
    ] {
        assert_refused_cleanly(&actual(&p, origin));
    }
}

// ---------------------------------------------------------------------------------------------
// Fetch §3.2.3 CORS protocol and credentials; §3.2.4 HTTP responses.

#[test]
fn credentials_are_allowed_with_an_echoed_origin() {
    // Fetch §3.2.3: with credentials, `Access-Control-Allow-Origin` must be the origin (never
    // `*`) and `Access-Control-Allow-Credentials` must be `true`.
    let p = strict();
    let d = actual(&p, "https://app.example.com");
    assert_eq!(d.header(ALLOW_ORIGIN), Some("https://app.example.com"));
    assert_eq!(d.header(ALLOW_CREDENTIALS), Some("true"));
    let d = preflight(&p, "https://app.example.com", "PUT", None);
    assert_eq!(d.header(ALLOW_CREDENTIALS), Some("true"));
}

#[test]
fn wildcard_policy_sends_star_and_no_credentials() {
    // Fetch §3.2.3: `*` works only for requests without credentials; the engine never pairs it
    // with `Access-Control-Allow-Credentials`.
    let p = public();
    let d = actual(&p, "https://anyone.example");
    assert_eq!(d.header(ALLOW_ORIGIN), Some("*"));
    assert_eq!(d.header(ALLOW_CREDENTIALS), None);
}

#[test]
fn anonymous_policy_sends_no_credentials_header() {
    // Fetch §3.2.4: `Access-Control-Allow-Credentials` is only ever `true`; omit it otherwise.
    let p = CorsPolicy::builder()
        .allow_origin("https://app.example.com")
        .build()
        .expect("valid");
    let d = actual(&p, "https://app.example.com");
    assert_eq!(d.header(ALLOW_ORIGIN), Some("https://app.example.com"));
    assert_eq!(d.header(ALLOW_CREDENTIALS), None);
}

// ---------------------------------------------------------------------------------------------
// Fetch §3.2.5 CORS-safelisted method; §4.8 CORS-preflight fetch (methods).

#[test]
fn safelisted_methods_never_need_listing() {
    // Fetch §3.2.5: GET, HEAD and POST are CORS-safelisted methods.
    let p = CorsPolicy::builder()
        .allow_origin("https://app.example.com")
        .build()
        .expect("valid");
    for method in ["GET", "HEAD", "POST"] {
        let d = preflight(&p, "https://app.example.com", method, None);
        assert_eq!(d.status(), Some(204), "{method}");
        assert_eq!(d.header(ALLOW_METHODS), Some(method));
    }
    assert_eq!(
        preflight(&p, "https://app.example.com", "PUT", None).status(),
        Some(403)
    );
}

#[test]
fn methods_are_case_sensitive() {
    // Fetch §4.8 step 7: the request method must be in the allowed methods, compared byte for
    // byte; browsers upper-case only DELETE, GET, HEAD, OPTIONS, POST and PUT (§2.2.1 normalize),
    // so `patch` stays `patch` and is not `PATCH`.
    let p = strict();
    assert_eq!(
        preflight(&p, "https://app.example.com", "PATCH", None).status(),
        Some(204)
    );
    let d = preflight(&p, "https://app.example.com", "patch", None);
    assert_eq!(d.status(), Some(403));
    assert_refused_cleanly(&d);
    assert_eq!(
        d.reason().map(|r| r.to_string()).as_deref(),
        Some(
            "method patch is not allowed (methods are case-sensitive); allowed: GET, HEAD, \
             POST, PUT, PATCH, DELETE"
        )
    );
    assert_eq!(
        preflight(&p, "https://app.example.com", "get", None).status(),
        Some(403)
    );
}

#[test]
fn preflight_echoes_the_requested_method() {
    // Fetch §4.8 step 7: the response's methods must contain the request method.
    let p = strict();
    let d = preflight(&p, "https://app.example.com", "DELETE", None);
    assert_eq!(d.header(ALLOW_METHODS), Some("DELETE"));
}

#[test]
fn invalid_method_token_is_refused() {
    // Fetch §2.2.1: a method is a byte sequence that matches the method token production.
    let p = strict();
    for method in ["", "PU T", "PUT,DELETE", "P\u{e9}T"] {
        let d = preflight(&p, "https://app.example.com", method, None);
        assert_eq!(d.status(), Some(403), "{method:?}");
        assert_eq!(d.reason().map(|r| r.code()), Some("invalid_method"));
    }
}

#[test]
fn any_method_policy() {
    // Fetch §3.2.4: `Access-Control-Allow-Methods: *` is a wildcard only without credentials;
    // echoing the method works in both modes.
    let p = CorsPolicy::builder()
        .allow_origin("https://app.example.com")
        .allow_methods(["*"])
        .allow_credentials(true)
        .build()
        .expect("valid");
    let d = preflight(&p, "https://app.example.com", "PROPFIND", None);
    assert_eq!(d.status(), Some(204));
    assert_eq!(d.header(ALLOW_METHODS), Some("PROPFIND"));
}

// ---------------------------------------------------------------------------------------------
// Fetch §3.2.5 CORS-unsafe request-header names; §4.8 CORS-preflight fetch (headers).

#[test]
fn header_names_are_case_insensitive() {
    // Fetch §4.8 step 8: header names are compared byte-case-insensitively.
    let p = strict();
    for acrh in [
        "x-request-id",
        "X-REQUEST-ID",
        "X-Request-Id",
        "content-type,x-request-id",
    ] {
        let d = preflight(&p, "https://app.example.com", "PUT", Some(acrh));
        assert_eq!(d.status(), Some(204), "{acrh}");
        assert_eq!(d.header(ALLOW_HEADERS), Some(acrh));
    }
}

#[test]
fn header_list_whitespace_duplicates_and_empty_elements() {
    // Fetch §2.2 "get, decode, and split": elements are trimmed of HTTP whitespace; empty
    // elements and duplicates carry no meaning.
    let p = strict();
    for (acrh, echoed) in [
        (
            " x-request-id ,\tcontent-type ",
            Some("x-request-id ,\tcontent-type"),
        ),
        (
            "x-request-id, x-request-id",
            Some("x-request-id, x-request-id"),
        ),
        (
            "x-request-id,,content-type,",
            Some("x-request-id, content-type"),
        ),
        (", ,", None),
        ("", None),
    ] {
        let d = preflight(&p, "https://app.example.com", "PUT", Some(acrh));
        assert_eq!(d.status(), Some(204), "{acrh:?}");
        assert_eq!(d.header(ALLOW_HEADERS), echoed, "{acrh:?}");
    }
}

#[test]
fn unlisted_or_invalid_header_is_refused() {
    // Fetch §4.8 step 8: every CORS-unsafe request-header name must be allowed.
    let p = strict();
    let d = preflight(
        &p,
        "https://app.example.com",
        "PUT",
        Some("x-request-id, x-other"),
    );
    assert_eq!(d.status(), Some(403));
    assert_refused_cleanly(&d);
    assert_eq!(
        d.reason().map(|r| r.to_string()).as_deref(),
        Some("header x-other is not allowed; allowed: content-type, x-request-id, authorization")
    );
    let d = preflight(&p, "https://app.example.com", "PUT", Some("x request id"));
    assert_eq!(d.reason().map(|r| r.code()), Some("invalid_header_name"));
}

#[test]
fn authorization_is_never_covered_by_wildcard() {
    // Fetch §4.8 step 8 and §3.2.4: `*` in `Access-Control-Allow-Headers` does not cover
    // `Authorization`, which must be listed by name.
    let p = public();
    let d = preflight(
        &p,
        "https://a.example",
        "PUT",
        Some("x-anything, content-type"),
    );
    assert_eq!(d.status(), Some(204));
    for acrh in ["authorization", "x-a, Authorization"] {
        let d = preflight(&p, "https://a.example", "PUT", Some(acrh));
        assert_eq!(d.status(), Some(403), "{acrh}");
        assert_eq!(
            d.reason().map(|r| r.to_string()).as_deref(),
            Some(
                "header authorization is not allowed: `*` never covers Authorization; list it \
                 in allow_headers"
            )
        );
    }
    let listed = CorsPolicy::builder()
        .allow_origin("https://app.example.com")
        .allow_headers(["*", "Authorization"])
        .allow_credentials(true)
        .build()
        .expect("valid");
    let d = preflight(
        &listed,
        "https://app.example.com",
        "GET",
        Some("authorization, x-a"),
    );
    assert_eq!(d.status(), Some(204));
    assert_eq!(d.header(ALLOW_HEADERS), Some("authorization, x-a"));
}

#[test]
fn oversized_request_headers_are_refused() {
    // Fetch §4.8 has no bound; the engine caps the work so a hostile header is cheap.
    let p = strict();
    let long = "x-request-id,".repeat(10_000);
    let d = preflight(&p, "https://app.example.com", "PUT", Some(&long));
    assert_eq!(
        d.reason().map(|r| r.code()),
        Some("request_headers_too_long")
    );
    let many = ",x-request-id".repeat(101);
    let d = preflight(&p, "https://app.example.com", "PUT", Some(&many));
    assert_eq!(
        d.reason().map(|r| r.code()),
        Some("too_many_request_headers")
    );
}

// ---------------------------------------------------------------------------------------------
// Fetch §4.8 CORS-preflight fetch: order of checks and the whole answer.

#[test]
fn allowed_preflight_answer() {
    // Fetch §4.8: a 2xx (ok) status, the CORS check (§4.9) headers, methods, headers and
    // `Access-Control-Max-Age`.
    let p = strict();
    let d = preflight(&p, "https://app.example.com", "PUT", Some("content-type"));
    let headers: Vec<(&str, &str)> = d.headers().collect();
    assert_eq!(
        headers,
        [
            (ALLOW_ORIGIN, "https://app.example.com"),
            (ALLOW_CREDENTIALS, "true"),
            (ALLOW_METHODS, "PUT"),
            (ALLOW_HEADERS, "content-type"),
            (MAX_AGE, "600"),
            (VARY, PREFLIGHT_VARY),
        ]
    );
}

#[test]
fn refused_preflight_is_403_without_cors_headers() {
    // Fetch §4.8 / §4.9: any missing CORS header makes the preflight fail; a refusal sends none.
    let p = strict();
    let d = preflight(&p, "https://evil.example", "PUT", None);
    assert_eq!(d.status(), Some(403));
    assert_refused_cleanly(&d);
    assert_eq!(d.header(VARY), Some(PREFLIGHT_VARY));
    assert_eq!(
        d.reason().map(|r| r.to_string()).as_deref(),
        Some(
            "origin https://evil.example is not allowed; allowed: https://app.example.com, \
             https://*.example.org, http://localhost:*, https://api.example.net:8443"
        )
    );
}

#[test]
fn origin_is_checked_before_method_and_headers() {
    // Fetch §4.8 runs the CORS check (origin) first; the reason names the first failure.
    let p = strict();
    let d = preflight(&p, "https://evil.example", "BREW", Some("x-bad"));
    assert_eq!(d.reason().map(|r| r.code()), Some("origin_not_allowed"));
    let d = preflight(&p, "https://app.example.com", "BREW", Some("x-bad"));
    assert_eq!(d.reason().map(|r| r.code()), Some("method_not_allowed"));
}

#[test]
fn max_age_is_sent_on_preflights_only() {
    // Fetch §3.2.4: `Access-Control-Max-Age` applies to the CORS-preflight cache.
    let p = strict();
    assert_eq!(
        preflight(&p, "https://app.example.com", "PUT", None).header(MAX_AGE),
        Some("600")
    );
    assert_eq!(actual(&p, "https://app.example.com").header(MAX_AGE), None);
    let zero = CorsPolicy::builder()
        .allow_origin("https://app.example.com")
        .max_age_secs(0)
        .build()
        .expect("valid");
    assert_eq!(
        preflight(&zero, "https://app.example.com", "GET", None).header(MAX_AGE),
        Some("0")
    );
    let unset = CorsPolicy::builder()
        .allow_origin("https://app.example.com")
        .build()
        .expect("valid");
    assert_eq!(
        preflight(&unset, "https://app.example.com", "GET", None).header(MAX_AGE),
        None
    );
}

#[test]
fn wildcard_policy_preflight_lists_instead_of_echoing() {
    // Fetch §3.2.4: without credentials `*` is a wildcard for origins and headers, so a `*`
    // policy answers every preflight the same way and needs no `Vary`.
    let p = public();
    let d = preflight(&p, "https://a.example", "PUT", Some("x-one"));
    let headers: Vec<(&str, &str)> = d.headers().collect();
    assert_eq!(
        headers,
        [
            (ALLOW_ORIGIN, "*"),
            (ALLOW_METHODS, "PUT"),
            (ALLOW_HEADERS, "*")
        ]
    );
    let d = preflight(&p, "https://a.example", "DELETE", None);
    assert_eq!(d.status(), Some(403));
    assert!(cors_names(&d).is_empty());
    assert_eq!(d.header(VARY), None);
}

// ---------------------------------------------------------------------------------------------
// Fetch §3.2.4 `Access-Control-Expose-Headers`; §4.9 CORS check (actual requests).

#[test]
fn exposed_headers_on_allowed_actual_requests() {
    // Fetch §3.2.4: `Access-Control-Expose-Headers` lists response headers a page may read.
    let p = strict();
    let d = actual(&p, "https://app.example.com");
    assert_eq!(
        d.header(EXPOSE_HEADERS),
        Some("X-RateLimit-Remaining, X-Request-Id")
    );
    assert_eq!(
        preflight(&p, "https://app.example.com", "PUT", None).header(EXPOSE_HEADERS),
        None
    );
    assert_refused_cleanly(&actual(&p, "https://evil.example"));
    assert_eq!(
        actual(&public(), "https://x.example").header(EXPOSE_HEADERS),
        Some("X-Total-Count")
    );
}

#[test]
fn exposed_headers_extend_at_build_time() {
    // Fetch §3.2.4: the list is the union of what the application and the gate expose.
    let base = strict();
    let gate = base
        .to_builder()
        .expose_headers(["X-RateLimit-Limit", "x-ratelimit-remaining", "Retry-After"])
        .build()
        .expect("valid");
    assert_eq!(
        gate.exposed_headers(),
        Some("X-RateLimit-Remaining, X-Request-Id, X-RateLimit-Limit, Retry-After")
    );
}

#[test]
fn refused_actual_request_gets_nothing_cors() {
    // Fetch §4.9: without `Access-Control-Allow-Origin` the browser blocks the response.
    let p = strict();
    let d = actual(&p, "https://evil.example");
    assert_refused_cleanly(&d);
    assert_eq!(
        d.status(),
        None,
        "the handler still answers; the browser blocks the read"
    );
    assert_eq!(d.headers().collect::<Vec<_>>(), [(VARY, "Origin")]);
}

// ---------------------------------------------------------------------------------------------
// Private Network Access (WICG draft, extends Fetch §4.8).

fn pna() -> CorsPolicy {
    CorsPolicy::builder()
        .allow_origins(["https://app.example.com", "http://localhost:*"])
        .allow_private_network(true)
        .build()
        .expect("valid")
}

#[test]
fn private_network_granted_when_enabled() {
    // PNA §3.2: a preflight with `Access-Control-Request-Private-Network: true` needs
    // `Access-Control-Allow-Private-Network: true`.
    let p = pna();
    let req = CorsRequest::new("OPTIONS")
        .with_origin("https://app.example.com")
        .with_request_method("GET")
        .with_private_network(true);
    let d = p.decide(&req);
    assert_eq!(d.status(), Some(204));
    assert_eq!(d.header(ALLOW_PRIVATE_NETWORK), Some("true"));
    assert_eq!(
        d.header(VARY),
        Some(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, \
             Access-Control-Request-Private-Network"
        )
    );
    let without = p.decide(&req.with_private_network(false));
    assert_eq!(without.header(ALLOW_PRIVATE_NETWORK), None);
}

#[test]
fn private_network_refused_when_disabled() {
    // PNA §3.2: without the grant the preflight fails; checked after the origin.
    let p = strict();
    let req = CorsRequest::new("OPTIONS")
        .with_origin("https://app.example.com")
        .with_request_method("GET")
        .with_private_network(true);
    let d = p.decide(&req);
    assert_eq!(d.status(), Some(403));
    assert_refused_cleanly(&d);
    assert_eq!(
        d.reason().map(|r| r.code()),
        Some("private_network_not_allowed")
    );
    let d = p.decide(&req.with_origin("https://evil.example"));
    assert_eq!(d.reason().map(|r| r.code()), Some("origin_not_allowed"));
}

// ---------------------------------------------------------------------------------------------
// Fetch §3.2.3 (CORS protocol and HTTP caches): `Vary`.

#[test]
fn vary_on_every_kind_of_response() {
    // Fetch §3.2.3: when `Access-Control-Allow-Origin` depends on `Origin`, responses must carry
    // `Vary: Origin`, including those to requests without `Origin`.
    let p = strict();
    let vary = |d: CorsDecision<'_>| d.header(VARY).map(str::to_owned);
    assert_eq!(
        vary(p.decide(&CorsRequest::new("GET"))),
        Some("Origin".into())
    );
    assert_eq!(
        vary(actual(&p, "https://app.example.com")),
        Some("Origin".into())
    );
    assert_eq!(
        vary(actual(&p, "https://evil.example")),
        Some("Origin".into())
    );
    let allowed = preflight(&p, "https://app.example.com", "PUT", None);
    assert_eq!(vary(allowed), Some(PREFLIGHT_VARY.into()));
    let refused = preflight(&p, "https://app.example.com", "BREW", None);
    assert_eq!(vary(refused), Some(PREFLIGHT_VARY.into()));
}

#[test]
fn wildcard_policy_never_varies() {
    // Fetch §3.2.3: a response with `Access-Control-Allow-Origin: *` is the same for every
    // origin, so it is sent even without `Origin` and never varies.
    let p = public();
    for d in [
        p.decide(&CorsRequest::new("GET")),
        actual(&p, "https://a.example"),
        preflight(&p, "https://a.example", "PUT", None),
    ] {
        assert_eq!(d.header(VARY), None, "{d:?}");
        assert_eq!(d.header(ALLOW_ORIGIN), Some("*"));
    }
}

// ---------------------------------------------------------------------------------------------
// Reasons and debug mode.

#[test]
fn debug_mode_adds_the_reason_header() {
    let p = strict().to_builder().debug(true).build().expect("valid");
    let d = actual(&p, "https://a.example");
    assert_eq!(
        d.header(DEBUG_REASON),
        Some(
            "origin https://a.example is not allowed; allowed: https://app.example.com, \
             https://*.example.org, http://localhost:*, https://api.example.net:8443"
        )
    );
    assert!(cors_names(&d).is_empty());
    assert_eq!(
        actual(&p, "https://app.example.com").header(DEBUG_REASON),
        None
    );
}

#[test]
fn hostile_values_are_escaped_in_reasons() {
    let p = strict().to_builder().debug(true).build().expect("valid");
    let origin = format!("https://evil\r\nSet-Cookie: a=b{}", "x".repeat(500));
    let d = actual(&p, &origin);
    let header = d.header(DEBUG_REASON).expect("reason header");
    assert!(
        header.bytes().all(|b| (b' '..=b'~').contains(&b)),
        "{header}"
    );
    assert!(header.starts_with("origin https://evil\\u{d}\\u{a}Set-Cookie: a=b"));
    assert!(header.len() < 400);
}
