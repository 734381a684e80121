//! Fuzzes policy building: lines of text become origins, methods, headers and exposed headers
//! (by their first byte); the first byte of the input sets the flags. A policy that builds must
//! allow each exact origin it was given; one that fails must say why, one line per problem.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::cors::{CorsPolicy, CorsRequest};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut builder = CorsPolicy::builder()
        .allow_credentials(flags & 1 != 0)
        .allow_private_network(flags & 2 != 0)
        .debug(flags & 4 != 0);
    if flags & 8 != 0 {
        builder = builder.max_age_secs(u64::from(flags) * 700);
    }
    let mut origins = Vec::new();
    for line in text.split('\n') {
        let kind = line.chars().next();
        let value = &line[kind.map_or(0, char::len_utf8)..];
        match kind {
            Some('m') => builder = builder.allow_methods([value]),
            Some('h') => builder = builder.allow_headers([value]),
            Some('e') => builder = builder.expose_headers([value]),
            _ => origins.push(value.to_owned()),
        }
    }
    builder = builder.allow_origins(origins.iter().cloned());
    match builder.build() {
        Ok(policy) => {
            for origin in origins.iter().filter(|o| !o.contains('*')) {
                assert!(policy.allows_origin(origin), "{origin:?}");
                let req = CorsRequest::new("OPTIONS")
                    .with_origin(origin)
                    .with_request_method("GET");
                assert_eq!(policy.decide(&req).status(), Some(204), "{origin:?}");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            assert_eq!(errors.to_string().lines().count(), errors.len(), "{errors}");
        }
    }
});
