//! Where a request's tier comes from: the application, a trusted proxy's `tier_header`, the
//! config's `[principals]`; never a header any client can send.

use std::net::IpAddr;

use portcullis::config::Config;
use portcullis::gate::{Gate, GateRequest};

const BASE: &str = r#"
[[policy]]
name = "free"
limit = "2/h"

[[policy]]
name = "premium"
limit = "100/h"

[[route]]
match = "/api/"
limits = [{ tiers = { free = "free", premium = "premium" }, default_tier = "free", key = "principal" }]
"#;

fn gate(top: &str, tail: &str) -> Gate {
    let text = format!("{top}\n{BASE}\n{tail}");
    Gate::new(Config::parse(&text).unwrap()).unwrap()
}

/// The limit the request was counted under (`X-RateLimit-Limit`).
fn limit(gate: &Gate, req: GateRequest<'_>) -> String {
    gate.decide(&req)
        .header("X-RateLimit-Limit")
        .expect("a rate-limit header")
        .to_owned()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_tier_header_from_an_untrusted_client_changes_nothing() {
    let g = gate(
        r#"trusted_proxies = ["10.0.0.1"]
tier_header = "X-Tier""#,
        "",
    );
    let from = |peer: &str| {
        GateRequest::new("GET", "/api/x")
            .ip(ip(peer))
            .principal("k")
            .tier_claim("premium")
    };
    assert_eq!(limit(&g, from("203.0.113.9")), "2");
    assert_eq!(limit(&g, from("10.0.0.1")), "100");
}

#[test]
fn principals_name_tiers_and_the_application_comes_first() {
    let g = gate("", "[principals]\n\"key-p\" = \"premium\"\n");
    let req = |p| {
        GateRequest::new("GET", "/api/x")
            .ip(ip("203.0.113.9"))
            .principal(p)
    };
    assert_eq!(limit(&g, req("key-p")), "100");
    assert_eq!(limit(&g, req("key-other")), "2");
    // Without a tier_header in the config, a claim is never believed, even from anywhere.
    assert_eq!(limit(&g, req("key-other").tier_claim("premium")), "2");
    // The application's own tier wins over the listing.
    assert_eq!(limit(&g, req("key-p").tier("free")), "2");
}

#[test]
fn tier_config_errors_name_the_line() {
    let text = format!("tier_header = \"X-Tier\"\n{BASE}\n[principals]\n\"a\" = \"gold\"\n");
    let err = Config::parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("1:15: tier_header"), "{err}");
    assert!(err.contains("trusted_proxies"), "{err}");
    assert!(
        err.contains("tier \"gold\" is not one of the routes' tiers (free, premium)"),
        "{err}"
    );
    let bad_name = format!("trusted_proxies = [\"10.0.0.1\"]\ntier_header = \"X Tier\"\n{BASE}");
    let err = Config::parse(&bad_name).unwrap_err().to_string();
    assert!(
        err.starts_with("2:15:") && err.contains("not a header name"),
        "{err}"
    );
}

#[test]
fn a_principals_file_is_read_beside_the_config_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gate.toml");
    std::fs::write(&config, format!("principals_file = \"keys.toml\"\n{BASE}")).unwrap();
    std::fs::write(dir.path().join("keys.toml"), "\"key-p\" = \"premium\"\n").unwrap();
    let g = Gate::new(Config::load(&config).unwrap()).unwrap();
    let req = GateRequest::new("GET", "/api/x")
        .ip(ip("203.0.113.9"))
        .principal("key-p");
    assert_eq!(limit(&g, req), "100");
    // Demoted in the file: the next reload applies it.
    std::fs::write(dir.path().join("keys.toml"), "\"key-p\" = \"free\"\n").unwrap();
    g.reload_file(&config).unwrap();
    assert_eq!(limit(&g, req), "2");
    // A bad line in the file names the file and the line; the running config stays.
    std::fs::write(
        dir.path().join("keys.toml"),
        "\"key-p\" = \"free\"\n\"x\" = \"gold\"\n",
    )
    .unwrap();
    let err = Config::load(&config).unwrap_err().to_string();
    assert!(err.contains("keys.toml:2:7:"), "{err}");
}
