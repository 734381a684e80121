//! The one-shot commands: check, validate, inspect, reset.

use std::net::IpAddr;
use std::process::ExitCode;

use portcullis::config::{Config, KeyKind, StoreKind};
use portcullis::gate::{Action, Gate, GateRequest, GateStats};
use serde_json::json;

use crate::args::{CheckArgs, ConfigArgs, InspectArgs, ResetArgs, ValidateArgs};

pub fn load_config(args: &ConfigArgs) -> Result<Config, String> {
    let mut config = Config::load(&args.config).map_err(|e| e.to_string())?;
    if let Some(data) = &args.data {
        config.store.path = Some(data.clone());
    }
    Ok(config)
}

pub fn open_gate(args: &ConfigArgs) -> Result<(Gate, Config), String> {
    let config = load_config(args)?;
    let gate = Gate::new(config.clone()).map_err(|e| e.to_string())?;
    Ok((gate, config))
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub fn check(a: CheckArgs, as_json: bool) -> Result<ExitCode, String> {
    let (gate, _) = open_gate(&a.config)?;
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
                "headers": headers, "limits": applied,
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
                    "{}: valid ({} policies, {} routes, CORS {})",
                    a.config.display(),
                    c.policies.len(),
                    c.routes.len(),
                    if c.cors.is_some() { "on" } else { "off" }
                );
                for p in &c.policies {
                    println!("  policy {}", p.policy);
                }
                for r in &c.routes {
                    println!("  route {} ({} limits)", r.text, r.limits.len());
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
                    "{} error{} in {}",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" },
                    a.config.display()
                );
            }
            Ok(ExitCode::from(1))
        }
    }
}

pub fn inspect(a: InspectArgs, as_json: bool) -> Result<ExitCode, String> {
    if let Some(server) = a.server {
        let (code, body) = crate::http::fetch(server, "GET", "/_portcullis/stats")
            .map_err(|e| format!("cannot reach {server}: {e}"))?;
        if code != 200 {
            return Err(format!("{server} answered {code}: {body}"));
        }
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let stats: GateStats =
            serde_json::from_value(v["gate"].clone()).map_err(|e| e.to_string())?;
        print_stats(&stats, as_json);
        return Ok(ExitCode::SUCCESS);
    }
    let (gate, config) = open_gate(&a.config)?;
    if config.store.kind == StoreKind::Memory {
        eprintln!("portcullis: the store is in memory: nothing was kept; use --server to ask a running server");
    }
    let mut policies = Vec::new();
    for p in &config.policies {
        let name = p.policy.name();
        if a.policy.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        let keys = gate.keys(name).map_err(|e| e.to_string())?;
        policies.push((name.to_owned(), keys));
    }
    if let Some(only) = &a.policy {
        if policies.is_empty() {
            return Err(format!(
                "no policy named {only:?} in {}",
                a.config.config.display()
            ));
        }
    }
    // Restored from the store with the counters: what the last server saw.
    let stats = gate.stats();
    let abuse = json!({ "top_limited": stats.top_limited, "recent_denials": stats.recent_denials });
    if as_json {
        let list: serde_json::Map<String, serde_json::Value> = policies
            .iter()
            .map(|(n, k)| (n.clone(), json!(k)))
            .collect();
        println!(
            "{}",
            json!({ "keys": list, "top_limited": abuse["top_limited"], "recent_denials": abuse["recent_denials"] })
        );
    } else {
        for (name, keys) in &policies {
            println!("policy {name}: {} live key(s)", keys.len());
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
        println!("top limited keys:");
        for o in abuse["top_limited"].as_array().into_iter().flatten() {
            println!(
                "  {:<40} {} denials",
                o["key"].as_str().unwrap_or("?"),
                o["denials"]
            );
        }
        println!("recent denials:");
        for d in abuse["recent_denials"].as_array().into_iter().flatten() {
            println!(
                "  {} {} by {} on {}",
                d["at_unix_ms"],
                d["key"].as_str().unwrap_or("?"),
                d["policy"].as_str().unwrap_or("?"),
                d["route"].as_str().unwrap_or("?")
            );
        }
    }
    gate.close().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn print_stats(stats: &GateStats, as_json: bool) {
    if as_json {
        println!("{}", json!(stats));
        return;
    }
    for l in &stats.limits {
        println!(
            "{:<32} {:<28} key={:<9}{} allowed={} denied={} delayed={}",
            l.route,
            l.policy,
            l.key,
            if l.shadow { " (shadow)" } else { "" },
            l.allowed,
            l.denied,
            l.delayed
        );
    }
    println!("top limited keys:");
    for o in &stats.top_limited {
        println!("  {:<40} {} denials", o.key, o.denials);
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
        let target = format!(
            "/_portcullis/reset?policy={}&key={}",
            encode(&a.policy),
            encode(&a.key)
        );
        let (code, body) = crate::http::fetch(server, "POST", &target)
            .map_err(|e| format!("cannot reach {server}: {e}"))?;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if code != 200 {
            return Err(v["error"].as_str().unwrap_or(&body).to_owned());
        }
        v["reset"].as_bool().unwrap_or(false)
    } else {
        let (gate, _) = open_gate(&a.config)?;
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

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
