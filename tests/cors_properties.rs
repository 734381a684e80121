//! Properties of the engine over generated requests: refusals carry no CORS header, hostile
//! `Access-Control-Request-Headers` end in bounded work without panicking, and decisions are
//! consistent with the policy's own origin check.

use std::time::{Duration, Instant};

use portcullis::cors::{
    CorsPolicy, CorsRequest, RequestKind, MAX_REQUEST_HEADERS_LEN, MAX_REQUEST_HEADER_NAMES,
};
use proptest::prelude::*;

fn policy() -> CorsPolicy {
    CorsPolicy::builder()
        .allow_origins([
            "https://app.example.com",
            "https://*.example.org",
            "http://localhost:*",
        ])
        .allow_methods(["PUT", "PATCH"])
        .allow_headers(["content-type", "x-request-id", "authorization"])
        .expose_headers(["X-RateLimit-Remaining"])
        .allow_credentials(true)
        .max_age_secs(60)
        .debug(true)
        .build()
        .expect("valid policy")
}

/// Origins near the allowed ones, plus arbitrary text.
fn origin() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("https://app.example.com".to_owned()),
        "(https?)://([a-z.-]{0,12}\\.)?example\\.(com|org)(:[0-9]{1,6})?/?",
        "http://(localhost|127\\.0\\.0\\.1)(:[0-9]{0,6})?",
        ".{0,40}",
    ]
}

fn header_list() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "content-type",
            "X-Request-ID",
            "authorization",
            "[ \t,]{0,3}",
            "[ -~]{0,12}"
        ],
        0..12,
    )
    .prop_map(|parts| parts.join(","))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn refusals_never_carry_cors_headers(
        method in prop_oneof!["OPTIONS", "GET", "PUT", "patch", "[A-Z]{1,8}"],
        origin in origin(),
        acrm in proptest::option::of(prop_oneof!["PUT", "PATCH", "patch", "DELETE", ".{0,8}"]),
        acrh in proptest::option::of(header_list()),
        pna in any::<bool>(),
    ) {
        let policy = policy();
        let req = CorsRequest {
            method: &method,
            origin: Some(&origin),
            access_control_request_method: acrm.as_deref(),
            access_control_request_headers: acrh.as_deref(),
            access_control_request_private_network: pna,
        };
        let d = policy.decide(&req);
        prop_assert_eq!(d.kind(), req.kind());
        prop_assert!(d.header("vary").is_some());
        if !policy.allows_origin(&origin) {
            prop_assert!(!d.is_allowed());
        }
        if d.is_allowed() {
            prop_assert_eq!(d.header("access-control-allow-origin"), Some(origin.as_str()));
            prop_assert!(d.reason().is_none());
        } else {
            prop_assert!(d.headers().all(|(n, _)| !n.starts_with("access-control-")));
            let reason = d.reason().expect("refusal has a reason").to_string();
            prop_assert_eq!(d.header("x-cors-reason"), Some(reason.as_str()));
            prop_assert!(reason.bytes().all(|b| (b' '..=b'~').contains(&b)));
        }
        if d.kind() == RequestKind::Preflight {
            prop_assert_eq!(d.status(), Some(if d.is_allowed() { 204 } else { 403 }));
        } else {
            prop_assert_eq!(d.status(), None);
        }
    }

    #[test]
    fn hostile_request_headers_end_in_bounded_work(
        unit in "[ -~]{1,16}",
        repeat in 1usize..20_000,
    ) {
        let policy = policy();
        let acrh = unit.repeat(repeat);
        let req = CorsRequest::new("OPTIONS")
            .with_origin("https://app.example.com")
            .with_request_method("PUT")
            .with_request_headers(&acrh);
        let d = policy.decide(&req);
        if acrh.len() > MAX_REQUEST_HEADERS_LEN {
            prop_assert_eq!(d.reason().map(|r| r.code()), Some("request_headers_too_long"));
        }
        let names = acrh.split(',').filter(|n| !n.trim_matches([' ', '\t']).is_empty()).count();
        if names > MAX_REQUEST_HEADER_NAMES {
            prop_assert!(!d.is_allowed());
        }
    }
}

#[test]
fn a_huge_request_headers_value_is_refused_at_once() {
    let policy = policy();
    let acrh = "x-request-id,".repeat(1 << 20);
    let req = CorsRequest::new("OPTIONS")
        .with_origin("https://app.example.com")
        .with_request_method("PUT")
        .with_request_headers(&acrh);
    let start = Instant::now();
    let d = policy.decide(&req);
    assert_eq!(d.status(), Some(403));
    // Refused on length alone; generous bound for a loaded debug build.
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "{:?}",
        start.elapsed()
    );
}
