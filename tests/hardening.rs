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

fn gate_with(extra_top: &str, route_extra: &str) -> Gate {
    let text = format!(
        r#"
        {extra_top}
        [[policy]]
        name = "login"
        algorithm = "fixed_window"
        limit = "2/15m"

        [[route]]
        match = "POST /login"
        limits = [{{ policy = "login", key = "ip" }}]
        {route_extra}
        "#
    );
    Gate::builder(text.parse().expect("config"))
        .clock(ManualClock::new(T0))
        .build()
        .expect("gate")
}

/// Behind trusted proxies the client is the rightmost untrusted hop: a client writing its own
/// `X-Forwarded-For` entries gets nowhere, and one writing garbage is refused rather than put in
/// the proxy's bucket.
#[test]
fn forwarded_addresses_are_read_from_the_right() {
    let gate = gate_with(r#"trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]"#, "");
    let proxy: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let login = |xff: &'static str| {
        GateRequest::new("POST", "/login")
            .ip(proxy)
            .forwarded_for(xff)
    };
    // A client rotating spoofed leftmost entries is still 203.0.113.9.
    for (i, spoof) in [
        "1.1.1.1, 203.0.113.9",
        "2.2.2.2, 203.0.113.9",
        "3.3.3.3, 203.0.113.9",
    ]
    .into_iter()
    .enumerate()
    {
        let want = if i < 2 { Action::Pass } else { Action::Limited };
        assert_eq!(gate.decide(&login(spoof)).action(), want, "{spoof}");
    }
    // Another client behind the same proxy has its own quota.
    assert_eq!(gate.decide(&login("198.51.100.4")).action(), Action::Pass);
    // Garbage in the chain: refused, never counted in the proxy's bucket.
    let o = gate.decide(&login("198.51.100.4, not-an-address"));
    assert_eq!(o.action(), Action::Limited);
    assert!(
        o.reason().to_string().contains("has none"),
        "{}",
        o.reason()
    );
    // IPv4-mapped loopback is loopback, a trusted proxy here.
    let mapped = GateRequest::new("POST", "/login")
        .ip("::ffff:127.0.0.1".parse().unwrap())
        .forwarded_for("192.0.2.77");
    assert_eq!(gate.client_of(&mapped), Some("192.0.2.77".parse().unwrap()));
    // An untrusted peer's headers are ignored.
    let direct = GateRequest::new("POST", "/login")
        .ip("192.0.2.1".parse().unwrap())
        .forwarded_for("10.9.9.9");
    assert_eq!(gate.client_of(&direct), Some("192.0.2.1".parse().unwrap()));
}

/// Requests without a client address never share one bucket: refused by default, or the
/// address-keyed limits skipped with `on_missing_key = "skip"`.
#[test]
fn requests_without_an_address_share_no_bucket() {
    let deny = gate_with("", "");
    let anonymous = GateRequest::new("POST", "/login");
    for _ in 0..5 {
        let o = deny.decide(&anonymous);
        assert_eq!(o.action(), Action::Limited);
        assert_eq!(o.status_code(), Some(429));
    }
    // A client with an address is not affected by them.
    let real = GateRequest::new("POST", "/login").ip("192.0.2.9".parse().unwrap());
    assert_eq!(deny.decide(&real).action(), Action::Pass);

    let skip = gate_with("", r#"on_missing_key = "skip""#);
    for _ in 0..5 {
        assert_eq!(skip.decide(&anonymous).action(), Action::Pass);
    }
    let bad = "[[policy]]\nname = \"a\"\nlimit = \"1/s\"\n[[route]]\nmatch = \"/\"\nlimits = []\non_missing_key = \"maybe\"\n";
    let e = bad.parse::<Config>().unwrap_err().to_string();
    assert!(e.contains("7:") && e.contains("on_missing_key"), "{e}");
    let bad = "trusted_proxies = [\"10.0.0.0/40\"]\n[[policy]]\nname = \"a\"\nlimit = \"1/s\"\n";
    let e = bad.parse::<Config>().unwrap_err().to_string();
    assert!(e.contains("1:") && e.contains("prefix length"), "{e}");
}

/// A capacity that would not fit in memory is an error when the config is read, naming the
/// policy and the bytes; a reload with one is refused and the running gate keeps serving.
#[test]
fn absurd_capacities_are_refused_before_any_allocation() {
    let config = |capacity: &str, max_memory: &str| {
        format!(
            "[store]\n{max_memory}\n[[policy]]\nname = \"login\"\nlimit = \"5/m\"\ncapacity = {capacity}\n\
             [[route]]\nmatch = \"/\"\nlimits = [{{ policy = \"login\", key = \"ip\" }}]\n"
        )
    };
    // 2^30 slots is 16 GiB of table: over the default budget (a quarter of the memory) of any
    // machine with less than 64 GiB.
    let huge = config("1_073_741_824", "").parse::<Config>();
    if portcullis::config::default_max_memory() < 17_179_885_568 {
        let e = huge.unwrap_err().to_string();
        assert!(e.contains("\"login\"") && e.contains("max_memory"), "{e}");
        assert!(e.contains("17179885568 bytes"), "{e}");
    }
    // An explicit budget.
    let e = config("1_000_000", "max_memory = \"1MiB\"")
        .parse::<Config>()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("6:") && e.contains("over max_memory (1048576 bytes)"),
        "{e}"
    );
    let e = config("1000", "max_memory = \"lots\"")
        .parse::<Config>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("2:") && e.contains("is not a size"), "{e}");

    let gate = Gate::builder(config("1000", "").parse().unwrap())
        .clock(ManualClock::new(T0))
        .build()
        .unwrap();
    let req = GateRequest::new("GET", "/").ip("192.0.2.1".parse().unwrap());
    assert_eq!(gate.decide(&req).action(), Action::Pass);
    let reloaded = Config::parse(&config("1_000_000", "max_memory = \"1MiB\""));
    assert!(reloaded.is_err());
    // The running gate never saw it, and keeps its counters.
    for _ in 0..4 {
        assert_eq!(gate.decide(&req).action(), Action::Pass);
    }
    assert_eq!(gate.decide(&req).action(), Action::Limited);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Any request target and any forwarding headers: a decision, never a panic; and a path is
    /// routed as its resolved spelling is.
    #[test]
    fn hostile_targets_and_chains_never_panic(
        target in "[a-zA-Z0-9/%.;:?#\\[\\]@!$&'()*+,=_~é-]{0,80}",
        xff in proptest::option::of("[0-9a-fA-F:.,\\[\\] \"a-z_]{0,60}"),
        fwd in proptest::option::of("[0-9a-fA-F:.,;=\\[\\] \"a-z_]{0,60}"),
    ) {
        let gate = gate_with(r#"trusted_proxies = ["10.0.0.0/8"]"#, "");
        let mut req = GateRequest::new("POST", &target).ip("10.1.2.3".parse().unwrap());
        req.forwarded_for = xff.as_deref();
        req.forwarded = fwd.as_deref();
        let o = gate.decide(&req);
        proptest::prop_assert!(matches!(o.action(), Action::Pass | Action::Limited));
    }
}
