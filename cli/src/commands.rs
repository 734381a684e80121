//! The one-shot commands: check, validate, inspect, reset.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use portcullis::config::{Config, KeyKind, StoreKind, StoreSettings};
use portcullis::gate::{Action, Gate, GateError, GateRequest, GateStats, KeyState, LimitStats};
use portcullis::store::StoreError;
use serde_json::json;

use crate::args::{CheckArgs, ConfigArgs, InspectArgs, ResetArgs, TokenArgs, ValidateArgs};

/// `n` and the noun, singular for 1: `1 limit`, `2 limits`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn load_config(args: &ConfigArgs) -> Result<Config, String> {
    let mut config = Config::load(&args.config).map_err(|e| e.to_string())?;
    if let Some(data) = &args.data {
        config.store.path = Some(data.clone());
    }
    Ok(config)
}

/// Opens a gate on the config's store. `when_locked` says what to do instead when another
/// process (a running server) holds the store.
pub fn open_gate(args: &ConfigArgs, when_locked: &str) -> Result<(Gate, Config), String> {
    let config = load_config(args)?;
    let gate = build_gate(&config, when_locked)?;
    Ok((gate, config))
}

fn build_gate(config: &Config, when_locked: &str) -> Result<Gate, String> {
    Gate::new(config.clone()).map_err(|e| {
        let locked = matches!(
            &e,
            GateError::Store(StoreError::Locked { .. })
                | GateError::Limiter(portcullis::Error::Store(StoreError::Locked { .. }))
        );
        match (locked, &config.store.path) {
            (true, Some(path)) => format!(
                "the store {} is locked by another process, most likely a running `portcullis serve` (one process per store): {when_locked}",
                path.display()
            ),
            _ => e.to_string(),
        }
    })
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub fn check(a: CheckArgs, as_json: bool) -> Result<ExitCode, String> {
    let mut config = load_config(&a.config)?;
    let dry_run = !a.live;
    if dry_run {
        // A copy of the store in memory: the same tables, empty, gone when check exits.
        config.store = StoreSettings {
            kind: StoreKind::Memory,
            capacity: config.store.capacity,
            ..StoreSettings::default()
        };
    }
    let gate = build_gate(
        &config,
        "stop the server to charge its store, or leave out --live for a dry run",
    )?;
    let mut req = GateRequest::new(&a.method, &a.path).ip(a.ip);
    req.origin = a.origin.as_deref();
    req.request_method = a.request_method.as_deref();
    req.request_headers = a.request_headers.as_deref();
    req.principal = a.principal.as_deref();
    req.tier = a.tier.as_deref();
    let mut outcome = gate.decide(&req);
    for _ in 1..a.repeat.max(1) {
        outcome = gate.decide(&req);
    }
    let ok = matches!(outcome.action(), Action::Pass | Action::Preflight);
    let code = outcome.status_code();
    if as_json {
        let headers: Vec<_> = outcome.headers().map(|(n, v)| json!([n, v])).collect();
        let applied: Vec<_> = outcome
            .applied()
            .iter()
            .map(|x| {
                json!({
                    "policy": x.policy(), "key": x.key.name(), "shadow": x.shadow,
                    "allowed": x.decision.allowed, "remaining": x.decision.remaining(),
                    "retry_after_ms": u64::try_from(x.decision.retry_after().as_millis()).unwrap_or(u64::MAX),
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "status": outcome.action(), "code": code, "route": outcome.route(),
                "reason": outcome.reason(), "delay_ms": outcome.delay().as_millis() as u64,
                "headers": headers, "limits": applied, "dry_run": dry_run,
            })
        );
    } else {
        let code = code.map_or("pass to the handler".into(), |c| c.to_string());
        println!("{code}: {}", outcome.reason());
        if let Some(route) = outcome.route() {
            println!("route: {route}");
        }
        if !outcome.delay().is_zero() {
            println!("delay: {:?}", outcome.delay());
        }
        for (n, v) in outcome.headers() {
            println!("{n}: {v}");
        }
        if dry_run {
            println!(
                "(dry run: decided against an in-memory copy of the store, with empty counters; nothing persistent was charged. --live charges the configured store)"
            );
        }
    }
    gate.close().map_err(|e| e.to_string())?;
    Ok(exit(ok))
}

pub fn validate(a: ValidateArgs, as_json: bool) -> Result<ExitCode, String> {
    match Config::load(&a.config) {
        Ok(c) => {
            if as_json {
                println!(
                    "{}",
                    json!({ "valid": true, "policies": c.policies.len(), "routes": c.routes.len(), "cors": c.cors.is_some() })
                );
            } else {
                println!(
                    "{}: valid ({}, {}, CORS {})",
                    a.config.display(),
                    count(c.policies.len() as u64, "policy", "policies"),
                    count(c.routes.len() as u64, "route", "routes"),
                    if c.cors.is_some() { "on" } else { "off" }
                );
                for p in &c.policies {
                    println!("  policy {}", p.policy);
                }
                for r in &c.routes {
                    let anonymous = match &r.anonymous {
                        Some(l) => format!(
                            ", {} without a principal",
                            count(l.len() as u64, "limit", "limits")
                        ),
                        None => String::new(),
                    };
                    println!(
                        "  route {} ({}{anonymous})",
                        r.text,
                        count(r.limits.len() as u64, "limit", "limits")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            if as_json {
                let list: Vec<_> = errors
                    .errors()
                    .iter()
                    .map(|e| json!({ "line": e.line(), "column": e.column(), "message": e.message() }))
                    .collect();
                println!("{}", json!({ "valid": false, "errors": list }));
            } else {
                eprintln!("{errors}");
                eprintln!(
                    "{} in {}",
                    count(errors.len() as u64, "error", "errors"),
                    a.config.display()
                );
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// The keys of each policy, in the config's order.
type PolicyKeys = Vec<(String, Vec<KeyState>)>;

pub fn inspect(a: InspectArgs, as_json: bool) -> Result<ExitCode, String> {
    let only = a.policy.as_deref();
    if let Some(dir) = &a.store {
        return inspect_shared_folder(dir, only, as_json);
    }
    if let Some(server) = a.server {
        let (keys, stats) = inspect_server(server, &a.token, only)?;
        print_inspection(&keys, &stats, only, true, as_json);
        return Ok(ExitCode::SUCCESS);
    }
    let (gate, config) = open_gate(
        &a.config,
        "ask the running server with --server ADDR, or stop it first",
    )?;
    if config.store.kind == StoreKind::Memory {
        eprintln!("portcullis: the store is in memory: nothing was kept; use --server to ask a running server");
    }
    let mut keys = Vec::new();
    for p in &config.policies {
        let name = p.policy.name();
        if only.is_some_and(|only| only != name) {
            continue;
        }
        keys.push((name.to_owned(), gate.keys(name).map_err(|e| e.to_string())?));
    }
    if let Some(only) = only {
        if keys.is_empty() {
            return Err(format!(
                "no policy named {only:?} in {}",
                a.config.config.display()
            ));
        }
    }
    // Restored from the store with the counters: what the last server saw.
    let stats = gate.stats();
    print_inspection(&keys, &stats, only, false, as_json);
    gate.close().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Asks a running `portcullis serve` for its stats and the keys of its policies (of `only`).
fn inspect_server(
    server: SocketAddr,
    token: &TokenArgs,
    only: Option<&str>,
) -> Result<(PolicyKeys, GateStats), String> {
    let target = match only {
        Some(policy) => format!("/_portcullis/stats?policy={}", encode(policy)),
        None => "/_portcullis/stats".to_owned(),
    };
    let (code, body) = crate::client::admin(server, token, http::Method::GET, &target, None)?;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if code != 200 {
        return Err(match v["error"].as_str() {
            Some(e) => format!("{server}: {e}"),
            None => format!("{server} answered {code}: {body}"),
        });
    }
    let stats: GateStats = serde_json::from_value(v["gate"].clone())
        .map_err(|e| format!("{server} sent stats this command cannot read: {e}"))?;
    let mut listed: HashMap<String, Vec<KeyState>> = serde_json::from_value(v["keys"].clone())
        .map_err(|e| format!("{server} sent no key listing this command can read: {e}"))?;
    let keys = stats
        .policies
        .iter()
        .filter_map(|p| listed.remove(&p.name).map(|k| (p.name.clone(), k)))
        .collect();
    Ok((keys, stats))
}

/// Whether a limit line of the stats applies `policy` (alone, or for one of its tiers).
fn limit_applies(limit: &LimitStats, policy: &str) -> bool {
    limit.policy == policy
        || limit.policy.split(',').any(|tier| {
            tier.strip_suffix(policy)
                .is_some_and(|name| name.ends_with(':'))
        })
}

/// Prints what inspect found: the keys of each policy, the counters of each route's limits
/// (`routes`: from a running server), the most limited keys and the latest denials; with
/// `only`, what concerns that policy.
fn print_inspection(
    keys: &[(String, Vec<KeyState>)],
    stats: &GateStats,
    only: Option<&str>,
    routes: bool,
    as_json: bool,
) {
    let mut stats = stats.clone();
    if let Some(only) = only {
        stats.limits.retain(|l| limit_applies(l, only));
        stats.policies.retain(|p| p.name == only);
        stats.recent_denials.retain(|d| d.policy == only);
    }
    if as_json {
        let list: serde_json::Map<String, serde_json::Value> =
            keys.iter().map(|(n, k)| (n.clone(), json!(k))).collect();
        let report = if routes {
            let mut report = json!(stats);
            report["keys"] = list.into();
            report
        } else {
            json!({ "keys": list, "policies": stats.policies, "top_limited": stats.top_limited, "recent_denials": stats.recent_denials })
        };
        println!("{report}");
        return;
    }
    for (name, keys) in keys {
        println!(
            "policy {name}: {}",
            count(keys.len() as u64, "live key", "live keys")
        );
        if let Some(p) = stats.policies.iter().find(|p| p.name == *name) {
            if p.limited_evictions > 0 {
                println!(
                    "  warning: {} of keys being denied (the table of {} slots is too small for \
                     its traffic: raise capacity)",
                    count(p.limited_evictions, "eviction", "evictions"),
                    p.capacity
                );
            }
            if p.store_fallbacks > 0 || p.deny_cache_hits > 0 {
                println!(
                    "  redis: {} made without Redis (on_error), {} from the deny cache",
                    count(p.store_fallbacks, "decision", "decisions"),
                    count(p.deny_cache_hits, "denial", "denials")
                );
            }
        }
        for k in keys {
            println!(
                "  {:<40} {}/{} left{}{}",
                k.key,
                k.remaining,
                k.limit,
                if k.blocked { ", blocked" } else { "" },
                if k.retry_after_ms > 0 {
                    format!(", retry in {} s", k.retry_after_ms.div_ceil(1000))
                } else {
                    String::new()
                }
            );
        }
    }
    if routes {
        println!("limits by route:");
        for l in &stats.limits {
            println!(
                "  {:<32} {:<28} key={:<9}{} allowed={} denied={} delayed={}",
                l.route,
                l.policy,
                l.key,
                if l.shadow { " (shadow)" } else { "" },
                l.allowed,
                l.denied,
                l.delayed
            );
        }
    }
    // The sketch counts keys, not policies: its list is the same whatever `only` is.
    match only {
        Some(_) => println!("top limited keys (all policies):"),
        None => println!("top limited keys:"),
    }
    for o in &stats.top_limited {
        println!("  {:<40} {}", o.key, count(o.denials, "denial", "denials"));
    }
    println!("recent denials:");
    for d in &stats.recent_denials {
        println!(
            "  {} {} by {} on {}",
            d.at_unix_ms, d.key, d.policy, d.route
        );
    }
}

/// Parses `kind:value` as inspect prints keys, and resets it.
pub fn reset_key(gate: &Gate, policy: &str, key: &str) -> Result<bool, String> {
    let (kind, value) = match key.split_once(':') {
        Some(("ip", v)) => {
            // Inspect prints IPv6 keys as their prefix: accept that form too.
            let v = v.split('/').next().unwrap_or(v);
            v.parse::<IpAddr>()
                .map_err(|_| format!("{v:?} is not an IP address"))?;
            (KeyKind::Ip, v)
        }
        Some(("principal", v)) => (KeyKind::Principal, v),
        Some(("route", v)) => (KeyKind::Route, v),
        None if key == "global" => (KeyKind::Global, ""),
        _ => {
            return Err(format!(
                "key {key:?}: write ip:ADDRESS, principal:NAME, route:MATCH or global"
            ))
        }
    };
    gate.reset(policy, kind, value).map_err(|e| e.to_string())
}

pub fn reset(a: ResetArgs, as_json: bool) -> Result<ExitCode, String> {
    let had = if let Some(server) = a.server {
        let asked = json!({ "policy": a.policy, "key": a.key }).to_string();
        let (code, body) = crate::client::admin(
            server,
            &a.token,
            http::Method::POST,
            "/_portcullis/reset",
            Some(asked),
        )?;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if code != 200 {
            return Err(v["error"].as_str().unwrap_or(&body).to_owned());
        }
        v["reset"].as_bool().unwrap_or(false)
    } else {
        let (gate, _) = open_gate(
            &a.config,
            "reset on the running server with --server ADDR, or stop it first",
        )?;
        let had = reset_key(&gate, &a.policy, &a.key)?;
        gate.close().map_err(|e| e.to_string())?;
        had
    };
    if as_json {
        println!(
            "{}",
            json!({ "policy": a.policy, "key": a.key, "had_state": had })
        );
    } else if had {
        println!("{} under {}: reset", a.key, a.policy);
    } else {
        println!("{} under {}: had no state", a.key, a.policy);
    }
    Ok(ExitCode::SUCCESS)
}

/// What a query value may keep as it is: the unreserved characters of RFC 3986.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// The table files of a shared store's folder.
fn inspect_shared_folder(
    dir: &std::path::Path,
    only: Option<&str>,
    as_json: bool,
) -> Result<ExitCode, String> {
    let tables = portcullis::store::SharedStore::list(dir).map_err(|e| e.to_string())?;
    let tables: Vec<_> = tables
        .into_iter()
        .filter(|t| only.is_none_or(|p| p == t.policy))
        .collect();
    if as_json {
        let list: Vec<_> = tables
            .iter()
            .map(|t| {
                json!({
                    "file": t.path.display().to_string(), "policy": t.policy,
                    "signature": t.signature, "capacity": t.capacity,
                    "last_opened": t.last_opened,
                })
            })
            .collect();
        println!("{}", json!({ "tables": list }));
    } else {
        println!(
            "{} in {}",
            count(tables.len() as u64, "table", "tables"),
            dir.display()
        );
        for t in &tables {
            println!(
                "  policy {} ({} slots), last opened at {} (Unix seconds)\n    {}\n    {}",
                t.policy,
                t.capacity,
                t.last_opened,
                t.signature,
                t.path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
