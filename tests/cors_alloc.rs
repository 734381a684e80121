//! Deciding an allowed actual request allocates nothing: a counting global allocator proves it.
//! Counts are per thread, so other tests running in parallel do not disturb them.

mod common;

use common::alloc::{allocations_during, Counting};
use portcullis::cors::{CorsPolicy, CorsRequest};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn policy(debug: bool) -> CorsPolicy {
    CorsPolicy::builder()
        .allow_origins([
            "https://app.example.com",
            "https://*.example.org",
            "http://localhost:*",
        ])
        .allow_methods(["PUT", "DELETE"])
        .allow_headers(["Content-Type", "X-Request-Id"])
        .expose_headers(["X-RateLimit-Limit", "X-RateLimit-Remaining", "Retry-After"])
        .allow_credentials(true)
        .max_age_secs(600)
        .debug(debug)
        .build()
        .expect("valid policy")
}

#[test]
fn allowed_actual_request_allocates_nothing() {
    let policy = policy(true);
    for origin in [
        "https://app.example.com",
        "https://a.b.example.org",
        "http://localhost:5173",
    ] {
        let req = CorsRequest::new("POST").with_origin(origin);
        let (n, headers) = allocations_during(|| {
            let d = policy.decide(&req);
            assert!(d.is_allowed());
            d.headers().count()
        });
        assert_eq!(headers, 4, "origin, credentials, expose, vary");
        assert_eq!(n, 0, "{origin}: {n} allocations");
    }
}

#[test]
fn allowed_preflight_and_non_cors_allocate_nothing() {
    let policy = policy(true);
    let preflight = CorsRequest::new("OPTIONS")
        .with_origin("https://app.example.com")
        .with_request_method("PUT")
        .with_request_headers("content-type, x-request-id");
    let (n, status) = allocations_during(|| policy.decide(&preflight).status());
    assert_eq!((n, status), (0, Some(204)));
    let (n, _) = allocations_during(|| policy.decide(&CorsRequest::new("GET")).headers().count());
    assert_eq!(n, 0);
}

#[test]
fn refusal_allocates_only_in_debug_mode() {
    let req = CorsRequest::new("GET").with_origin("https://evil.example");
    let quiet = policy(false);
    let (n, allowed) = allocations_during(|| quiet.decide(&req).is_allowed());
    assert_eq!((n, allowed), (0, false));
    let debug = policy(true);
    let (n, _) = allocations_during(|| debug.decide(&req).is_allowed());
    assert!(n >= 1, "the debug header renders the reason");
}
