//! The gate's metrics: every kind of decision shows up with the count that was made, the
//! exposition is well formed, counters never go down across reloads, and with the shared
//! store a scrape of any process reports every process's counters.

#[path = "common/every_kind.rs"]
mod every_kind;

use std::collections::{BTreeMap, HashMap};

use portcullis::config::Config;
use portcullis::gate::{Action, Gate, GateRequest};
use portcullis::ManualClock;

/// Parses sample lines into `name{labels}` → value, checking each family is announced by
/// `# HELP` and `# TYPE` before its samples and appears once.
fn parse(text: &str) -> HashMap<(String, BTreeMap<String, String>), f64> {
    let mut samples = HashMap::new();
    let mut typed: Vec<String> = Vec::new();
    let mut helped: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(!helped.contains(&name), "HELP twice for {name}");
            helped.push(name);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_string();
            let kind = parts.next().unwrap();
            assert!(kind == "counter" || kind == "gauge", "{line}");
            assert_eq!(helped.last(), Some(&name), "TYPE without HELP: {line}");
            assert!(
                kind != "counter" || name.ends_with("_total"),
                "counter without _total: {line}"
            );
            typed.push(name);
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap()),
            None => (series, ""),
        };
        assert_eq!(typed.last().map(String::as_str), Some(name), "{line}");
        let mut map = BTreeMap::new();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap();
            map.insert(k.to_string(), v.trim_matches('"').to_string());
        }
        let old = samples.insert((name.to_string(), map), value.parse::<f64>().unwrap());
        assert!(old.is_none(), "duplicate series: {line}");
    }
    samples
}

fn value(
    samples: &HashMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match samples.get(&(name.to_string(), labels.clone())) {
        Some(v) => *v,
        None => panic!("no sample {name} {labels:?}"),
    }
}

#[test]
fn every_kind_of_decision_is_counted_as_made() {
    let dir = tempfile::tempdir().unwrap();
    let seen = every_kind::every_kind(dir.path());
    let samples = parse(&seen.prometheus);
    for (name, labels, want) in &seen.expected {
        let got = samples.get(&(name.clone(), labels.clone()));
        assert_eq!(got, Some(&(*want as f64)), "{name} {labels:?}");
    }
    // The writer of a healthy store is at most a few flush intervals behind.
    let lag = value(&samples, "portcullis_store_write_lag_seconds", &[]);
    assert!((0.0..60.0).contains(&lag), "lag {lag}");
    // OpenMetrics: families named without _total, samples with it, and the closing EOF.
    assert!(seen.openmetrics.ends_with("# EOF\n"));
    assert!(seen
        .openmetrics
        .contains("# TYPE portcullis_decisions counter\nportcullis_decisions_total{"));
    // No label carries a client's key.
    for addr in ["192.0.2.1", "10.0.0.3", "alice", "carol"] {
        assert!(!seen.prometheus.contains(addr), "{addr} in the exposition");
    }
}

const SIMPLE: &str = r#"
[[policy]]
name = "api"
limit = "2/h"

[[route]]
match = "/api/"
limits = [{ policy = "api", key = "ip" }]
"#;

fn decisions(gate: &Gate, outcome: &str) -> f64 {
    value(
        &parse(&gate.metrics()),
        "portcullis_decisions_total",
        &[("policy", "api"), ("outcome", outcome)],
    )
}

fn ask(gate: &Gate, addr: &str) -> Action {
    gate.decide(&GateRequest::new("GET", "/api/x").ip(addr.parse().unwrap()))
        .action()
}

#[test]
fn counters_never_go_down_when_a_reload_restarts_a_policy() {
    let config: Config = SIMPLE.parse().unwrap();
    let gate = Gate::builder(config)
        .clock(ManualClock::new(every_kind::T0))
        .build()
        .unwrap();
    for _ in 0..3 {
        ask(&gate, "192.0.2.1");
    }
    assert_eq!(decisions(&gate, "allowed"), 2.0);
    assert_eq!(decisions(&gate, "limited"), 1.0);
    // A changed limit is a new policy with fresh counters: the metric keeps counting.
    let changed: Config = SIMPLE.replace("2/h", "5/h").parse().unwrap();
    let summary = gate.reload(changed).unwrap();
    assert_eq!(summary.fresh, ["api"]);
    assert_eq!(decisions(&gate, "allowed"), 2.0);
    assert_eq!(ask(&gate, "192.0.2.1"), Action::Pass);
    assert_eq!(decisions(&gate, "allowed"), 3.0);
    assert_eq!(decisions(&gate, "limited"), 1.0);
}

fn shared_gate(dir: &std::path::Path) -> Gate {
    let config: Config = format!(
        "[store]\nkind = \"shared\"\npath = \"{}\"\ncapacity = 1024\n{SIMPLE}",
        dir.display()
    )
    .parse()
    .unwrap();
    Gate::builder(config)
        .clock(ManualClock::new(every_kind::T0))
        .build()
        .unwrap()
}

/// Two gates on one shared store stand for two worker processes (each holds its own slot of
/// the board, as a process does): a scrape of either reports both, and the counts of one
/// that goes away stay in the host's totals.
#[test]
fn a_shared_store_scrape_reports_every_process() {
    let dir = tempfile::tempdir().unwrap();
    // A gate that decides nothing (a master process that only forks workers) takes no slot,
    // even when closed.
    let idle = shared_gate(dir.path());
    idle.close().unwrap();
    let a = shared_gate(dir.path());
    let b = shared_gate(dir.path());
    // Two addresses on worker a, one on b, each over its limit once: the quota is shared.
    for _ in 0..3 {
        ask(&a, "192.0.2.1");
    }
    assert_eq!(ask(&b, "192.0.2.1"), Action::Limited);
    assert_eq!(ask(&b, "192.0.2.2"), Action::Pass);
    b.publish_metrics();
    let scrape = parse(&a.metrics());
    assert_eq!(value(&scrape, "portcullis_metrics_host_wide", &[]), 1.0);
    assert_eq!(value(&scrape, "portcullis_metrics_processes", &[]), 2.0);
    assert_eq!(decisions(&a, "allowed"), 3.0);
    assert_eq!(decisions(&a, "limited"), 2.0);
    assert_eq!(decisions(&b, "limited"), 2.0);
    // Table occupancy is the shared table's, whoever placed the keys.
    assert_eq!(
        value(&scrape, "portcullis_table_keys", &[("policy", "api")]),
        2.0
    );
    // Worker b exits: its counts stay; a new worker takes its slot and adds its own.
    drop(b);
    assert_eq!(decisions(&a, "limited"), 2.0);
    assert_eq!(
        value(&parse(&a.metrics()), "portcullis_metrics_processes", &[]),
        1.0
    );
    let c = shared_gate(dir.path());
    assert_eq!(decisions(&a, "limited"), 2.0);
    assert_eq!(ask(&c, "192.0.2.2"), Action::Pass);
    c.publish_metrics();
    assert_eq!(decisions(&a, "allowed"), 4.0);
    assert_eq!(decisions(&c, "limited"), 2.0);
}
