//! `rediss://` against a redis-server speaking TLS with a certificate of a private CA (made here
//! with openssl): refused while the CA is not trusted, decided once `SSL_CERT_FILE` names it.
//! Built with the feature `redis-tls` only: `ci/redis.sh` runs it.
#![cfg(feature = "redis-tls")]

mod common;

use std::process::Command;

use common::redis::RedisServer;
use portcullis::store::redis::RedisOptions;
use portcullis::store::StoreConfig;
use portcullis::{Limiter, Policy, Quota};

/// A CA and a server certificate for 127.0.0.1 in `dir`.
fn certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl")
            .status
            .success();
        assert!(ok, "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=portcullis-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[test]
fn rediss_urls_speak_tls() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let server = RedisServer::start_tls(dir.path());
    let url = format!("rediss://127.0.0.1:{}/0", server.port);
    // The system does not trust the test's CA: a clear error at open.
    let e = StoreConfig::redis(RedisOptions::new(&url))
        .expect_err("untrusted")
        .to_string();
    assert!(e.contains("cannot connect"), "{e}");
    // Set before any TLS client of this binary (its only test) reads the trust store again.
    std::env::set_var("SSL_CERT_FILE", dir.path().join("ca.crt"));
    let l = Limiter::builder()
        .policy(Policy::gcra("api", Quota::per_hour(2).unwrap()))
        .store(StoreConfig::redis(RedisOptions::new(&url)).unwrap())
        .build()
        .unwrap();
    let id = l.policy_id("api").unwrap();
    let got: Vec<bool> = (0..3)
        .map(|_| l.check(id, "k", 1).unwrap().allowed)
        .collect();
    assert_eq!(got, [true, true, false]);
    assert_eq!(l.stats()[0].store_fallbacks, 0);
}
