//! The gate, rule by rule: preflights, CORS on 429s, exposed headers, all-or-nothing limits,
//! shadow mode, anonymous traffic, tiers, key namespaces, shaping, leases, reload, visibility.

use std::net::IpAddr;
use std::time::Duration;

use portcullis::config::{Config, KeyKind};
use portcullis::gate::{Action, Gate, GateRequest, Outcome, Reason};
use portcullis::ManualClock;

const T0: u64 = 1_700_000_000_000_000_000;
const APP: &str = "https://app.example.com";

const CONFIG: &str = r#"
header_style = "both"

[[policy]]
name = "login"
algorithm = "fixed_window"
limit = "5/15m"
block = "15m"

[[policy]]
name = "api-free"
limit = "100/h"

[[policy]]
name = "api-premium"
limit = "10000/h"

[[policy]]
name = "api-ip"
limit = "1000/h"

[[policy]]
name = "api-anon"
limit = "10/h"

[[policy]]
name = "one"
limit = "1/h"

[[policy]]
name = "ten"
limit = "10/h"

[[policy]]
name = "export"
algorithm = "concurrency"
limit = 1
lease_timeout = "1m"

[[policy]]
name = "shaped"
algorithm = "leaky_bucket"
limit = "10/s"
burst = 5

[[route]]
match = "POST /api/v1/auth/login"
limits = [{ policy = "login", key = "ip" }]

[[route]]
match = "/both/"
limits = [{ policy = "ten", key = "principal" }, { policy = "one", key = "ip" }]

[[route]]
match = "/lease-then-deny"
limits = [{ policy = "export", key = "principal" }, { policy = "one", key = "ip" }]

[[route]]
match = "GET /export"
limits = [{ policy = "export", key = "principal" }]

[[route]]
match = "/shadow"
limits = [{ policy = "ten", key = "ip" }, { policy = "one", key = "ip", shadow = true }]

[[route]]
match = "/shaped"
limits = [{ policy = "shaped", key = "ip" }]

[[route]]
match = "/ns/ip"
limits = [{ policy = "one", key = "ip" }]

[[route]]
match = "/ns/principal"
limits = [{ policy = "one", key = "principal" }]

[[route]]
match = "GET /api/v1/users/{id}"
limits = [{ policy = "one", key = "route" }]

[[route]]
match = "/api/"
limits = [
  { tiers = { free = "api-free", premium = "api-premium" }, default_tier = "free", key = "principal" },
  { policy = "api-ip", key = "ip" },
]
anonymous = [{ policy = "api-anon", key = "ip" }]

[cors]
allowed_origins = ["https://app.example.com"]
allow_credentials = true
allowed_methods = ["GET", "POST", "PUT", "DELETE"]
allowed_headers = ["Content-Type", "Authorization"]
max_age = "10m"
"#;

fn gate() -> (Gate, ManualClock) {
    gate_with_clock(ManualClock::new(T0))
}

fn gate_with_clock(clock: ManualClock) -> (Gate, ManualClock) {
    let config: Config = CONFIG.parse().expect("the test config is valid");
    let gate = Gate::builder(config)
        .clock(clock.clone())
        .build()
        .expect("gate builds");
    (gate, clock)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn preflights_are_answered_and_never_charged() {
    let (gate, _) = gate();
    let preflight = GateRequest::new("OPTIONS", "/api/v1/auth/login")
        .origin(APP)
        .request_method("POST")
        .request_headers("content-type")
        .ip(ip("203.0.113.9"));
    for _ in 0..20 {
        let o = gate.decide(&preflight);
        assert_eq!(o.action(), Action::Preflight);
        assert_eq!(o.status_code(), Some(204));
        assert_eq!(o.header("access-control-allow-origin"), Some(APP));
        assert_eq!(o.header("access-control-allow-methods"), Some("POST"));
        assert_eq!(o.header("access-control-max-age"), Some("600"));
        assert!(o.header("X-RateLimit-Limit").is_none());
        assert_eq!(o.reason(), &Reason::Preflight);
    }
    let login = GateRequest::new("POST", "/api/v1/auth/login")
        .origin(APP)
        .ip(ip("203.0.113.9"));
    for i in 0..5 {
        let o = gate.decide(&login);
        assert_eq!(o.action(), Action::Pass, "attempt {i}");
        assert_eq!(
            o.header("X-RateLimit-Remaining"),
            Some(&*(4 - i).to_string())
        );
    }
    assert_eq!(gate.decide(&login).action(), Action::Limited);
    assert_eq!(gate.stats().preflights, 20);
}

#[test]
fn a_refused_preflight_is_403_and_charges_nothing() {
    let (gate, _) = gate();
    let o = gate.decide(
        &GateRequest::new("OPTIONS", "/api/v1/auth/login")
            .origin(APP)
            .request_method("PATCH"),
    );
    assert_eq!(o.action(), Action::Forbidden);
    assert_eq!(o.status_code(), Some(403));
    assert!(o.header("access-control-allow-origin").is_none());
    match o.reason() {
        Reason::Cors { refusal } => assert!(refusal.contains("method PATCH"), "{refusal}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_disallowed_origin_is_refused_before_any_limit() {
    let (gate, _) = gate();
    let evil = GateRequest::new("POST", "/api/v1/auth/login")
        .origin("https://evil.example")
        .ip(ip("203.0.113.9"));
    for _ in 0..10 {
        let o = gate.decide(&evil);
        assert_eq!(o.action(), Action::Forbidden);
        assert!(o.applied().is_empty());
        assert_eq!(o.header("vary"), Some("Origin"));
    }
    // Nothing was charged to the client.
    let ok = GateRequest::new("POST", "/api/v1/auth/login").ip(ip("203.0.113.9"));
    assert_eq!(gate.decide(&ok).header("X-RateLimit-Remaining"), Some("4"));
    assert_eq!(gate.stats().cors_refused, 10);
}

#[test]
fn a_429_to_an_allowed_origin_carries_cors_and_exposes_the_rate_limit_headers() {
    let (gate, _) = gate();
    let login = GateRequest::new("POST", "/api/v1/auth/login")
        .origin(APP)
        .ip(ip("198.51.100.4"));
    let first = gate.decide(&login);
    let expose = first.header("access-control-expose-headers").unwrap();
    for name in [
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "RateLimit-Policy",
        "RateLimit",
        "Retry-After",
    ] {
        assert!(expose.contains(name), "{name} missing from {expose}");
    }
    assert_eq!(
        first.header("RateLimit-Policy"),
        Some("\"login\";q=5;w=900")
    );
    for _ in 0..4 {
        let _ = gate.decide(&login);
    }
    let o = gate.decide(&login);
    assert_eq!(o.status_code(), Some(429));
    assert_eq!(o.header("Retry-After"), Some("900"));
    assert_eq!(o.header("X-RateLimit-Remaining"), Some("0"));
    assert_eq!(o.header("access-control-allow-origin"), Some(APP));
    assert_eq!(o.header("access-control-allow-credentials"), Some("true"));
    assert!(o
        .header("access-control-expose-headers")
        .unwrap()
        .contains("Retry-After"));
    assert_eq!(
        o.reason(),
        &Reason::Limited {
            policy: "login".into(),
            key: "ip:198.51.100.4".into(),
            route: "POST /api/v1/auth/login".into()
        }
    );
}

#[test]
fn the_login_lockout_lasts_the_block_then_lifts() {
    let (gate, clock) = gate();
    let login = GateRequest::new("POST", "/api/v1/auth/login").ip(ip("192.0.2.1"));
    for _ in 0..5 {
        assert_eq!(gate.decide(&login).action(), Action::Pass);
    }
    assert_eq!(gate.decide(&login).action(), Action::Limited);
    clock.advance(Duration::from_secs(14 * 60));
    assert_eq!(gate.decide(&login).action(), Action::Limited);
    clock.advance(Duration::from_secs(16 * 60));
    assert_eq!(gate.decide(&login).action(), Action::Pass);
    // Another client was never affected.
    let other = GateRequest::new("POST", "/api/v1/auth/login").ip(ip("192.0.2.2"));
    assert_eq!(gate.decide(&other).action(), Action::Pass);
}

#[test]
fn several_limits_are_all_or_nothing() {
    let (gate, _) = gate();
    let from = |addr: &str| {
        GateRequest::new("GET", "/both/x")
            .principal("alice")
            .ip(ip(addr))
    };
    let o = gate.decide(&from("192.0.2.1"));
    assert_eq!(o.action(), Action::Pass);
    assert_eq!(o.applied()[0].decision.remaining(), 9);
    // "one" (per ip) denies: "ten" (per principal) must get its unit back.
    let o = gate.decide(&from("192.0.2.1"));
    assert_eq!(o.action(), Action::Limited);
    let o = gate.decide(&from("192.0.2.2"));
    assert_eq!(o.action(), Action::Pass);
    assert_eq!(
        o.applied()[0].decision.remaining(),
        8,
        "the denied request was refunded"
    );
}

#[test]
fn leases_are_held_until_dropped_and_given_back_on_a_denial() {
    let (gate, _) = gate();
    let export = GateRequest::new("GET", "/export").principal("bob");
    let mut first = gate.decide(&export);
    assert_eq!(first.action(), Action::Pass);
    assert_eq!(first.leases().len(), 1);
    let leases = first.take_leases();
    let second = gate.decide(&export);
    assert_eq!(second.action(), Action::Limited, "one export at a time");
    leases.release();
    assert_eq!(gate.decide(&export).action(), Action::Pass);

    // A lease taken by the first limit is released when the second denies.
    let req = |addr: &str| {
        GateRequest::new("GET", "/lease-then-deny")
            .principal("carol")
            .ip(ip(addr))
    };
    let ok = gate.decide(&req("192.0.2.7"));
    assert_eq!(ok.action(), Action::Pass);
    drop(ok);
    let denied = gate.decide(&req("192.0.2.7"));
    assert_eq!(denied.action(), Action::Limited);
    assert!(denied.leases().is_empty());
    // carol's only slot is free again.
    assert_eq!(gate.decide(&req("192.0.2.8")).action(), Action::Pass);
}

#[test]
fn shadow_limits_are_counted_but_never_enforced_nor_shown() {
    let (gate, _) = gate();
    let req = GateRequest::new("GET", "/shadow").ip(ip("192.0.2.3"));
    for i in 0..5 {
        let o = gate.decide(&req);
        assert_eq!(o.action(), Action::Pass, "request {i}");
        assert_eq!(o.applied().len(), 2);
        assert!(o.applied()[1].shadow);
        assert_eq!(o.applied()[1].decision.allowed, i == 0);
        // Only the enforced policy speaks in the headers.
        assert_eq!(o.header("RateLimit-Policy"), Some("\"ten\";q=10;w=3600"));
    }
    let stats = gate.stats();
    let shadow = stats
        .limits
        .iter()
        .find(|l| l.route == "/shadow" && l.shadow)
        .unwrap();
    assert_eq!((shadow.allowed, shadow.denied), (1, 4));
    assert!(
        stats.recent_denials.is_empty(),
        "shadow denials are not denials"
    );
}

#[test]
fn anonymous_and_authenticated_traffic_get_their_own_limits() {
    let (gate, _) = gate();
    let anon = GateRequest::new("GET", "/api/v1/things").ip(ip("192.0.2.4"));
    for _ in 0..10 {
        let o = gate.decide(&anon);
        assert_eq!(o.action(), Action::Pass);
        assert_eq!(o.applied()[0].policy(), "api-anon");
    }
    assert_eq!(gate.decide(&anon).action(), Action::Limited);
    // The same address with an API key is another matter.
    let authed = anon.principal("key-1");
    let o = gate.decide(&authed);
    assert_eq!(o.action(), Action::Pass);
    let policies: Vec<&str> = o.applied().iter().map(|a| a.policy()).collect();
    assert_eq!(policies, ["api-free", "api-ip"]);
}

#[test]
fn tiers_pick_the_quota() {
    let (gate, _) = gate();
    let free = GateRequest::new("GET", "/api/v1/things")
        .principal("free-user")
        .tier("free")
        .ip(ip("192.0.2.10"));
    for _ in 0..100 {
        assert_eq!(gate.decide(&free).action(), Action::Pass);
    }
    let o = gate.decide(&free);
    assert_eq!(o.action(), Action::Limited);
    assert_eq!(o.header("Retry-After"), Some("36"));
    let premium = GateRequest::new("GET", "/api/v1/things")
        .principal("premium-user")
        .tier("premium")
        .ip(ip("192.0.2.11"));
    for _ in 0..101 {
        assert_eq!(gate.decide(&premium).action(), Action::Pass);
    }
    assert_eq!(
        gate.decide(&premium).header("X-RateLimit-Limit"),
        Some("1000"),
        "the per-ip limit is now the most restrictive"
    );
    // An unknown or missing tier falls back to the default tier.
    let unknown = GateRequest::new("GET", "/api/x")
        .principal("u")
        .tier("gold")
        .ip(ip("192.0.2.12"));
    assert_eq!(gate.decide(&unknown).applied()[0].policy(), "api-free");
}

#[test]
fn keys_of_different_kinds_never_collide() {
    let (gate, _) = gate();
    // The IPv4 key of 97.98.99.100 is the bytes [4, 'a', 'b', 'c', 'd']; a principal made of
    // the same bytes must not share its counter.
    let by_ip = GateRequest::new("GET", "/ns/ip").ip(ip("97.98.99.100"));
    assert_eq!(gate.decide(&by_ip).action(), Action::Pass);
    assert_eq!(gate.decide(&by_ip).action(), Action::Limited);
    let by_principal = GateRequest::new("GET", "/ns/principal").principal("\u{4}abcd");
    assert_eq!(gate.decide(&by_principal).action(), Action::Pass);
}

#[test]
fn ipv6_clients_are_keyed_by_their_64() {
    let (gate, _) = gate();
    let a = GateRequest::new("GET", "/ns/ip").ip(ip("2001:db8::1"));
    let b = GateRequest::new("GET", "/ns/ip").ip(ip("2001:db8::ffff:2"));
    let c = GateRequest::new("GET", "/ns/ip").ip(ip("2001:db8:0:1::1"));
    assert_eq!(gate.decide(&a).action(), Action::Pass);
    assert_eq!(gate.decide(&b).action(), Action::Limited);
    assert_eq!(gate.decide(&c).action(), Action::Pass);
}

#[test]
fn routes_match_method_exact_prefix_and_parameters() {
    let (gate, _) = gate();
    // A GET to the login path is not the login route, but is under no other route either.
    let o = gate.decide(&GateRequest::new("GET", "/api/v1/auth/login").principal("p"));
    assert_eq!(o.route(), Some("/api/"));
    let o = gate.decide(&GateRequest::new("POST", "/api/v1/auth/login?next=/"));
    assert_eq!(o.route(), Some("POST /api/v1/auth/login"));
    let o = gate.decide(&GateRequest::new("GET", "/api/v1/users/42"));
    assert_eq!(o.route(), Some("GET /api/v1/users/{id}"));
    // Keyed by route: every client shares it.
    let o = gate.decide(&GateRequest::new("GET", "/api/v1/users/43").ip(ip("192.0.2.99")));
    assert_eq!(o.action(), Action::Limited);
    let o = gate.decide(&GateRequest::new("GET", "/api/v1/users/42/posts"));
    assert_eq!(o.route(), Some("/api/"));
    let o = gate.decide(&GateRequest::new("GET", "/elsewhere"));
    assert_eq!((o.action(), o.reason()), (Action::Pass, &Reason::NoRoute));
    assert!(o.header("X-RateLimit-Limit").is_none());
    assert_eq!(gate.stats().unrouted, 1);
}

#[test]
fn shaping_hands_out_a_delay() {
    let (gate, _) = gate();
    let req = GateRequest::new("GET", "/shaped").ip(ip("192.0.2.5"));
    let delays: Vec<Duration> = (0..6)
        .map(|_| gate.decide(&req))
        .map(|o| o.delay())
        .collect();
    assert_eq!(delays[0], Duration::ZERO);
    assert_eq!(delays[1], Duration::from_millis(100));
    assert_eq!(delays[4], Duration::from_millis(400));
    let o = gate.decide(&req);
    assert_eq!(o.action(), Action::Limited);
    let stats = gate.stats();
    let shaped = stats.limits.iter().find(|l| l.route == "/shaped").unwrap();
    assert_eq!((shaped.allowed, shaped.delayed), (5, 4));
}

#[test]
fn visibility_counts_top_keys_and_recent_denials() {
    let (gate, _) = gate();
    for n in 0..3 {
        let req = GateRequest::new("GET", "/ns/ip").ip(ip(&format!("192.0.2.{n}")));
        for _ in 0..=n + 1 {
            let _ = gate.decide(&req);
        }
    }
    let stats = gate.stats();
    let route = stats.limits.iter().find(|l| l.route == "/ns/ip").unwrap();
    assert_eq!((route.allowed, route.denied, route.delayed), (3, 6, 0));
    assert_eq!(stats.top_limited[0].key, "ip:192.0.2.2");
    assert_eq!(stats.top_limited[0].denials, 3);
    assert_eq!(stats.recent_denials.len(), 6);
    let last = stats.recent_denials.last().unwrap();
    assert_eq!(
        (last.key.as_str(), last.policy.as_str(), last.route.as_str()),
        ("ip:192.0.2.2", "one", "/ns/ip")
    );
    assert_eq!(last.at_unix_ms, T0 / 1_000_000);
    let one = stats.policies.iter().find(|p| p.name == "one").unwrap();
    assert_eq!((one.allowed, one.denied), (3, 6));
}

#[test]
fn reset_unblocks_a_key() {
    let (gate, _) = gate();
    let login = GateRequest::new("POST", "/api/v1/auth/login").ip(ip("192.0.2.50"));
    for _ in 0..6 {
        let _ = gate.decide(&login);
    }
    assert_eq!(gate.decide(&login).action(), Action::Limited);
    assert!(gate.reset("login", KeyKind::Ip, "192.0.2.50").unwrap());
    assert_eq!(gate.decide(&login).action(), Action::Pass);
    assert!(gate.reset("nope", KeyKind::Ip, "192.0.2.50").is_err());
}

#[test]
fn reload_keeps_the_counters_of_unchanged_policies() {
    let (gate, _) = gate();
    let login = GateRequest::new("POST", "/api/v1/auth/login").ip(ip("192.0.2.60"));
    for _ in 0..5 {
        let _ = gate.decide(&login);
    }
    let anon = GateRequest::new("GET", "/api/x").ip(ip("192.0.2.60"));
    for _ in 0..10 {
        let _ = gate.decide(&anon);
    }
    assert_eq!(gate.decide(&anon).action(), Action::Limited);
    // api-anon changes; login does not; a route is added.
    let changed = CONFIG.replace(
        "name = \"api-anon\"\nlimit = \"10/h\"",
        "name = \"api-anon\"\nlimit = \"20/h\"",
    )
        + "\n[[route]]\nmatch = \"/new\"\nlimits = [{ policy = \"one\", key = \"ip\" }]\n";
    let summary = gate.reload(changed.parse().unwrap()).unwrap();
    assert!(summary.kept.contains(&"login".to_string()));
    assert_eq!(summary.fresh, ["api-anon"]);
    assert_eq!(
        gate.decide(&login).action(),
        Action::Limited,
        "login kept its count"
    );
    assert_eq!(
        gate.decide(&anon).action(),
        Action::Pass,
        "api-anon starts fresh"
    );
    assert_eq!(
        gate.decide(&GateRequest::new("GET", "/new")).route(),
        Some("/new")
    );
    let stats = gate.stats();
    let l = stats.limits.iter().find(|l| l.policy == "login").unwrap();
    assert_eq!(
        (l.allowed, l.denied),
        (5, 1),
        "route counters carry over too"
    );

    // A store change cannot be applied live: refused, and the old config keeps running.
    let sled = format!("{CONFIG}\n[store]\nkind = \"sled\"\npath = \"x\"\n");
    assert!(gate.reload(sled.parse().unwrap()).is_err());
    assert_eq!(gate.decide(&login).action(), Action::Limited);
}

/// A gate is shared by every worker, and an outcome may be handed to the thread that writes the
/// response.
#[test]
fn gates_and_outcomes_cross_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Gate>();
    shared::<Outcome>();
}

/// An outcome reused across requests keeps the config it was decided under between
/// decisions, and takes the new one after a reload; one reused with another gate takes that
/// gate's.
#[test]
fn a_reused_outcome_follows_reloads_and_gates() {
    let (gate, clock) = gate();
    let mut out = Outcome::new();
    let new_route = GateRequest::new("GET", "/new").ip(ip("192.0.2.61"));
    gate.decide_into(&new_route, T0, &mut out);
    assert_eq!(out.reason(), &Reason::NoRoute);
    let changed = format!(
        "{CONFIG}\n[[route]]\nmatch = \"/new\"\nlimits = [{{ policy = \"one\", key = \"ip\" }}]\n"
    );
    gate.reload(changed.parse().unwrap()).unwrap();
    gate.decide_into(&new_route, T0, &mut out);
    assert_eq!(out.route(), Some("/new"), "the reloaded config decides");
    assert_eq!(out.reason(), &Reason::Allowed);

    // The same outcome with another gate, reloaded as often but without the route: that
    // gate's config.
    let (other, _) = gate_with_clock(clock.clone());
    other.reload(CONFIG.parse().unwrap()).unwrap();
    other.decide_into(&new_route, T0, &mut out);
    assert_eq!(out.reason(), &Reason::NoRoute);
    gate.decide_into(&new_route, T0, &mut out);
    assert_eq!(out.route(), Some("/new"));
}

#[test]
fn policies_removed_by_a_reload_disappear() {
    let (gate, _) = gate();
    let small = r#"
[[policy]]
name = "login"
algorithm = "fixed_window"
limit = "5/15m"
block = "15m"
[[route]]
match = "POST /api/v1/auth/login"
limits = [{ policy = "login", key = "ip" }]
"#;
    let summary = gate.reload(small.parse().unwrap()).unwrap();
    assert_eq!(summary.kept, ["login"]);
    assert!(summary.removed.contains(&"api-free".to_string()));
    assert_eq!(gate.stats().policies.len(), 1);
    let o = gate.decide(&GateRequest::new("GET", "/api/x"));
    assert_eq!(o.reason(), &Reason::NoRoute);
}

/// The log of recent denials and the top limited keys are kept in the store: a new gate on the
/// same folder (a restarted server, or `portcullis inspect`) sees them, whether the old gate
/// was closed or only dropped.
#[test]
fn denial_log_outlives_the_gate_in_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "[store]\nkind = \"sled\"\npath = {:?}\n\
         [[policy]]\nname = \"one\"\nlimit = \"1/h\"\n\
         [[route]]\nmatch = \"/\"\nlimits = [{{ policy = \"one\", key = \"ip\" }}]\n",
        dir.path().join("store").display().to_string()
    );
    let open = |clock: &ManualClock| {
        Gate::builder(text.parse::<Config>().expect("config"))
            .clock(clock.clone())
            .build()
            .expect("gate")
    };
    let clock = ManualClock::new(T0);
    let ip = |i: u8| IpAddr::from([203, 0, 113, i]);
    {
        let gate = open(&clock);
        for i in 1..=3u8 {
            for _ in 0..(i + 1) {
                let _ = gate.decide(&GateRequest::new("GET", "/x").ip(ip(i)));
            }
        }
        gate.close().expect("close");
    }
    let (top, recent) = {
        let gate = open(&clock);
        let stats = gate.stats();
        // A denial after the reopen, then a drop without close.
        let _ = gate.decide(&GateRequest::new("GET", "/x").ip(ip(3)));
        (stats.top_limited, stats.recent_denials)
    };
    // 1 + 2 + 3 denials: 203.0.113.3 was limited most.
    assert_eq!(recent.len(), 6);
    assert!(recent.iter().all(|d| d.policy == "one" && d.route == "/"));
    assert_eq!(top[0].key, "ip:203.0.113.3");
    assert_eq!(top[0].denials, 3);
    assert_eq!(top.len(), 3);

    let gate = open(&clock);
    let stats = gate.stats();
    assert_eq!(
        stats.recent_denials.len(),
        7,
        "the denial before the drop was kept"
    );
    assert_eq!(stats.top_limited[0].denials, 4);
}

/// The reference meaning of a route: the path up to `?` or `#`, split on `/` with empty
/// segments dropped, compared segment by segment (`{param}` matches any one segment); a pattern
/// ending in `/` also matches deeper paths.
fn reference_match(pattern: &str, method: &str, path: &str) -> bool {
    let (want_method, pat) = match pattern.split_once(' ') {
        Some((m, p)) => (Some(m), p),
        None => (None, pattern),
    };
    if want_method.is_some_and(|m| m != method) {
        return false;
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut parts = path.split('/').filter(|s| !s.is_empty());
    for seg in pat.split('/').filter(|s| !s.is_empty()) {
        match parts.next() {
            None => return false,
            Some(p) if !seg.starts_with('{') && seg != p => return false,
            _ => {}
        }
    }
    pat.ends_with('/') || parts.next().is_none()
}

proptest::proptest! {
    #[test]
    fn route_matching_agrees_with_the_reference(
        method in proptest::sample::select(vec!["", "GET ", "POST "]),
        segs in proptest::collection::vec(proptest::sample::select(vec!["a", "b", "{id}"]), 0..4),
        prefix in proptest::bool::ANY,
        req_method in proptest::sample::select(vec!["GET", "POST"]),
        path in "(/{1,2}(a|b|c|ab)){0,5}/{0,2}([?#][a/?#]{0,3})?",
    ) {
        let mut pattern = format!("{method}/{}", segs.join("/"));
        if prefix && !segs.is_empty() {
            pattern.push('/');
        }
        let parsed = portcullis::gate::RoutePattern::parse(&pattern).unwrap();
        let path = if path.is_empty() { "/".to_string() } else { path };
        proptest::prop_assert_eq!(
            parsed.matches(req_method, &path),
            reference_match(&pattern, req_method, &path),
            "pattern {:?}, path {:?}", pattern, path
        );
    }
}
