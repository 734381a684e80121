//! Fuzzes request decisions: any bytes as method and CORS headers, against fixed policies.
//! Input: fields separated by NUL (method, Origin, ACRM, ACRH); the last byte's low bit is
//! the private network flag.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis::cors::{CorsPolicy, CorsRequest, RequestKind};

fn policies() -> &'static [CorsPolicy; 2] {
    static POLICIES: OnceLock<[CorsPolicy; 2]> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let strict = CorsPolicy::builder()
            .allow_origins([
                "https://app.example.com",
                "https://*.example.org",
                "http://localhost:*",
            ])
            .allow_methods(["PUT", "PATCH"])
            .allow_headers(["content-type", "x-request-id", "authorization"])
            .expose_headers(["X-RateLimit-Remaining"])
            .allow_credentials(true)
            .allow_private_network(true)
            .max_age_secs(60)
            .debug(true)
            .build()
            .expect("valid policy");
        let public = CorsPolicy::builder()
            .allow_origin("*")
            .allow_methods(["*"])
            .allow_headers(["*"])
            .expose_headers(["*"])
            .build()
            .expect("valid policy");
        [strict, public]
    })
}

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|&b| b == 0);
    let method = fields.next().unwrap_or_default();
    let origin = fields.next();
    let acrm = fields.next();
    let acrh = fields.next();
    let pna = data.last().is_some_and(|b| b & 1 == 1);
    let req = CorsRequest::from_header_bytes(method, |name| match name {
        "origin" => origin,
        "access-control-request-method" => acrm,
        "access-control-request-headers" => acrh,
        _ => pna.then_some(b"true".as_slice()),
    });
    for policy in policies() {
        let d = policy.decide(&req);
        assert_eq!(d.kind(), req.kind());
        assert_eq!(d.status().is_some(), d.kind() == RequestKind::Preflight);
        match d.reason() {
            None => assert!(d.is_allowed()),
            Some(reason) => {
                assert!(!d.is_allowed());
                assert!(d.headers().all(|(n, _)| !n.starts_with("access-control-")));
                let text = reason.to_string();
                assert!(text.bytes().all(|b| (b' '..=b'~').contains(&b)), "{text}");
            }
        }
        if d.is_allowed() && d.kind() != RequestKind::NotCors {
            assert!(d.header("access-control-allow-origin").is_some());
        }
    }
});
