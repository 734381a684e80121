//! Tricks an attacker uses to slip past a rate limit, each tried against the example config.

use portcullis::config::{Config, StoreKind};
use portcullis::{Action, Gate, GateRequest, ManualClock};

const T0: u64 = 1_700_000_000_000_000_000;

fn example_gate() -> Gate {
    let mut config = Config::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/portcullis.toml"
    ))
    .expect("the example config");
    config.store.kind = StoreKind::Memory;
    config.store.path = None;
    Gate::builder(config)
        .clock(ManualClock::new(T0))
        .build()
        .expect("gate")
}

/// Every spelling of the login path a backend would serve as the login route is limited as the
/// login route: the example allows 5 attempts per client, then locks it out.
#[test]
fn path_tricks_do_not_skip_the_login_limit() {
    let tricks = [
        "/api/v1/auth/login",
        "/API/V1/Auth/Login",
        "/api/v1/auth/%6Cogin",
        "/api/v1/auth/%6cogin",
        "/api/v1/auth%2Flogin",
        "/api/v1/x/../auth/login",
        "/api/v1/%2e%2e/v1/auth/login",
        "/api/v1/./auth/login",
        "//api//v1///auth/login",
        "/api/v1/auth/login;jsessionid=0123",
        "/api/v1/auth/login/",
        "/api/v1/auth/login?next=/home",
        "http://api.example.com/api/v1/auth/login",
        "https://api.example.com:8443/api/v1/auth/login?x=1",
    ];
    for (i, trick) in tricks.iter().enumerate() {
        let gate = example_gate();
        let ip = format!("203.0.113.{}", i + 1);
        let plain = GateRequest::new("POST", "/api/v1/auth/login").ip(ip.parse().unwrap());
        for _ in 0..5 {
            assert_eq!(gate.decide(&plain).action(), Action::Pass);
        }
        let sneaky = GateRequest::new("POST", trick).ip(ip.parse().unwrap());
        let o = gate.decide(&sneaky);
        assert_eq!(
            o.action(),
            Action::Limited,
            "{trick} skipped the login limit"
        );
        assert_eq!(o.route(), Some("POST /api/v1/auth/login"), "{trick}");
    }
}
