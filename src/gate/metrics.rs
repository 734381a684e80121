//! The gate's counters as metrics, in the Prometheus text format (0.0.4) or OpenMetrics 1.0.
//!
//! A small renderer rather than a metrics crate: the counters already exist, striped per
//! thread on the check path ([`crate::core::stats`]), and a registry would either count a
//! second time or read them through callbacks for every scrape anyway. What is rendered is
//! checked by real parsers (`promtool check metrics`, Python's `prometheus_client`) in
//! `ci/metrics.sh` and `tests/metrics.rs`.
//!
//! Label values come from the config only (policy names, CORS refusal reasons, outcomes), never
//! from a client's key: the series are bounded by the config. The top offenders stay in
//! [`super::Gate::stats`] and the denial log.
//!
//! With the shared store, counters are the host's: every process publishes its own into the
//! store's board ([`crate::store::Board`]) and a scrape sums the board (see docs/MONITORING.md).

use std::collections::HashMap;
use std::fmt::{self, Write};
use std::sync::Arc;

use super::abuse::{OTHER_REFUSAL, REFUSAL_REASONS};
use super::compile::Inner;
use super::Gate;
use crate::core::stats::OutcomeTotals;
use crate::limit::limiter::Limiter;
use crate::limit::policy::Algorithm;

/// Which text format [`Gate::write_metrics`] renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsFormat {
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), which every
    /// Prometheus-compatible scraper reads.
    #[default]
    Prometheus,
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`): counter families
    /// named without `_total`, and a closing `# EOF`.
    OpenMetrics,
}

impl MetricsFormat {
    /// The `Content-Type` to serve the format with.
    pub fn content_type(self) -> &'static str {
        match self {
            MetricsFormat::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            MetricsFormat::OpenMetrics => {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

#[derive(Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

/// One metric family: its name (with `_total` for counters), help and samples.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(Vec<(&'static str, String)>, Value)>,
}

impl Family {
    fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn push(&mut self, labels: &[(&'static str, &str)], value: Value) {
        let labels = labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
        self.samples.push((labels, value));
    }

    fn int(mut self, labels: &[(&'static str, &str)], value: u64) -> Self {
        self.push(labels, Value::Int(value));
        self
    }
}

/// The families in rendering order; counters first, so publishing reads no gauge.
pub(super) struct Metrics(Vec<Family>);

/// The outcomes `portcullis_decisions_total` is labelled with.
const OUTCOMES: [&str; 5] = ["allowed", "limited", "blocked", "shadow_limited", "error"];

fn outcome_values(t: &OutcomeTotals) -> [u64; 5] {
    [t.allowed, t.limited, t.blocked, t.shadow_limited, t.errors]
}

/// The distinct limiters of a config (a reload may leave policies on several).
fn limiters(inner: &Inner) -> Vec<&Arc<Limiter>> {
    let mut out: Vec<&Arc<Limiter>> = Vec::new();
    for p in &inner.policies {
        if !out.iter().any(|l| Arc::ptr_eq(l, &p.limiter)) {
            out.push(&p.limiter);
        }
    }
    out
}

impl Gate {
    /// The counters of this process (before the board and the retired counts are added).
    pub(super) fn counters(&self, inner: &Inner) -> Metrics {
        use Kind::Counter;
        let mut by_policy: Vec<OutcomeTotals> =
            vec![OutcomeTotals::default(); inner.policies.len()];
        for route in &inner.routes {
            for limit in route.limits.iter().chain(route.anonymous.iter().flatten()) {
                for (p, counts) in limit.policies() {
                    if let Some(t) = by_policy.get_mut(p) {
                        t.add(&counts.get());
                    }
                }
            }
        }
        let mut decisions = Family::new(
            "portcullis_decisions_total",
            Counter,
            "Decisions of the gate's limits, by the policy that made them and outcome: allowed, \
             limited, blocked (lockout), shadow_limited (denied in shadow mode, not enforced), \
             error (failed closed).",
        );
        let mut delayed = Family::new(
            "portcullis_delayed_decisions_total",
            Counter,
            "Allowed decisions that came with a shaping delay, by policy.",
        );
        let mut placed = Family::new(
            "portcullis_table_placed_keys_total",
            Counter,
            "New keys placed in a policy's table.",
        );
        let mut evictions = Family::new(
            "portcullis_table_evictions_total",
            Counter,
            "Live keys pushed out of a policy's full table.",
        );
        let mut limited_evictions = Family::new(
            "portcullis_table_limited_evictions_total",
            Counter,
            "Evicted keys that were being denied: the table is too small for its traffic.",
        );
        let mut acquired = Family::new(
            "portcullis_leases_acquired_total",
            Counter,
            "Concurrency leases granted, by policy.",
        );
        let mut released = Family::new(
            "portcullis_leases_released_total",
            Counter,
            "Concurrency leases given back (leases never given back expire uncounted).",
        );
        let mut fallbacks = Family::new(
            "portcullis_store_fallback_decisions_total",
            Counter,
            "Decisions made without the Redis store, by policy: its on_error answered (fail_open, \
             fail_closed, or the local table's share of the quota) because Redis did not.",
        );
        let mut cache_hits = Family::new(
            "portcullis_store_deny_cache_hits_total",
            Counter,
            "Denials answered from the local deny cache without asking the Redis store, by policy.",
        );
        for (slot, totals) in inner.policies.iter().zip(&by_policy) {
            let policy = [("policy", slot.name)];
            for (outcome, v) in OUTCOMES.iter().zip(outcome_values(totals)) {
                decisions.push(
                    &[("policy", slot.name), ("outcome", outcome)],
                    Value::Int(v),
                );
            }
            delayed.push(&policy, Value::Int(totals.delayed));
            let Some(s) = slot.limiter.policy_stats(slot.id, None) else {
                continue;
            };
            placed.push(&policy, Value::Int(s.placed));
            if self.redis.is_some() {
                fallbacks.push(&policy, Value::Int(s.store_fallbacks));
                cache_hits.push(&policy, Value::Int(s.deny_cache_hits));
            }
            evictions.push(&policy, Value::Int(s.evictions));
            limited_evictions.push(&policy, Value::Int(s.limited_evictions));
            if slot.settings.policy.algorithm() == Algorithm::Concurrency {
                acquired.push(&policy, Value::Int(s.allowed));
                released.push(&policy, Value::Int(s.leases_released));
            }
        }
        let a = &self.abuse;
        let mut refusals = Family::new(
            "portcullis_cors_refusals_total",
            Counter,
            "Requests refused by CORS (403), by reason.",
        );
        for (i, reason) in REFUSAL_REASONS.iter().enumerate() {
            refusals.push(&[("reason", reason)], Value::Int(a.refusals.by_reason(i)));
        }
        refusals.push(
            &[("reason", "other")],
            Value::Int(a.refusals.by_reason(OTHER_REFUSAL)),
        );
        let mut families = vec![
            decisions,
            delayed,
            Family::new(
                "portcullis_preflights_total",
                Counter,
                "CORS preflights, answered (204) or refused (403).",
            )
            .int(&[("result", "answered")], a.preflights.0.get())
            .int(&[("result", "refused")], a.refusals.preflights()),
            refusals,
            Family::new(
                "portcullis_requests_unrouted_total",
                Counter,
                "Requests that matched no route (passed without a limit).",
            )
            .int(&[], a.unrouted.0.get()),
            Family::new(
                "portcullis_requests_without_client_address_total",
                Counter,
                "Requests refused because a limit keyed by address found no client address.",
            )
            .int(&[], a.no_client.0.get()),
            Family::new(
                "portcullis_denials_unlogged_total",
                Counter,
                "Denials left out of the denial log and top keys (another thread held them).",
            )
            .int(&[], a.unlogged.0.get()),
            placed,
            evictions,
            limited_evictions,
            acquired,
            released,
        ];
        // The writer's counters, summed over the config's limiters.
        let mut writer = None;
        for l in limiters(inner) {
            if let Some(s) = l.store_stats() {
                let w = writer.get_or_insert([0u64; 4]);
                w[0] += s.flushes;
                w[1] += s.pages_written;
                w[2] += s.write_errors;
                w[3] += s.names_dropped;
            }
        }
        if let (Some(w), None) = (writer, &self.shared) {
            families.extend([
                Family::new(
                    "portcullis_store_flushes_total",
                    Counter,
                    "Writes of changed pages to the store, each followed by a flush.",
                )
                .int(&[], w[0]),
                Family::new(
                    "portcullis_store_pages_written_total",
                    Counter,
                    "Pages of table slots written to the store.",
                )
                .int(&[], w[1]),
                Family::new(
                    "portcullis_store_write_errors_total",
                    Counter,
                    "Failed writes to the store (retried in full at the next interval).",
                )
                .int(&[], w[2]),
                Family::new(
                    "portcullis_store_names_dropped_total",
                    Counter,
                    "Key names not recorded because the writer's queue was full.",
                )
                .int(&[], w[3]),
            ]);
        }
        if let Some(redis) = &self.redis {
            let r = redis.stats();
            families.push(fallbacks);
            families.push(cache_hits);
            families.extend([
                Family::new(
                    "portcullis_store_redis_calls_total",
                    Counter,
                    "Calls this process made to Redis (script runs and deletes, failed ones included).",
                )
                .int(&[], r.round_trips),
                Family::new(
                    "portcullis_store_redis_failures_total",
                    Counter,
                    "Calls to Redis that failed: no answer within the timeout, a refused \
                     connection or password, a server error such as a full Redis.",
                )
                .int(&[], r.failures),
                Family::new(
                    "portcullis_store_redis_redirects_total",
                    Counter,
                    "Calls a Redis Cluster node sent to another (MOVED, ASK), each followed.",
                )
                .int(&[], r.redirects),
            ]);
        }
        Metrics(families)
    }

    /// The gauges: table occupancy (a scan of every table) and the store's state.
    fn gauges(&self, inner: &Inner, processes: usize, host_wide: bool) -> Vec<Family> {
        use Kind::Gauge;
        let now = self.clock.now();
        let mut keys = Family::new(
            "portcullis_table_keys",
            Gauge,
            "Keys with live state in a policy's table.",
        );
        let mut capacity = Family::new(
            "portcullis_table_capacity_keys",
            Gauge,
            "Slots in a policy's table: the most keys it holds.",
        );
        for slot in &inner.policies {
            if let Some(s) = slot.limiter.policy_stats(slot.id, Some(now)) {
                let policy = [("policy", slot.name)];
                keys.push(&policy, Value::Int(s.live_keys as u64));
                capacity.push(&policy, Value::Int(s.capacity as u64));
            }
        }
        let mut families = vec![keys, capacity];
        let stores: Vec<_> = limiters(inner)
            .into_iter()
            .filter_map(|l| l.store_stats())
            .collect();
        if !stores.is_empty() {
            let lag = stores.iter().map(|s| s.write_lag).max().unwrap_or_default();
            let size = stores.iter().map(|s| s.size_on_disk).max().unwrap_or(0);
            if self.shared.is_none() {
                families.push(
                    Family::new(
                        "portcullis_store_write_lag_seconds",
                        Gauge,
                        "Time since the store's writer last had every change written (up to \
                         one flush interval when healthy; grows while writes fail).",
                    )
                    .float(lag.as_secs_f64()),
                );
            }
            families.push(
                Family::new(
                    "portcullis_store_size_bytes",
                    Gauge,
                    "Bytes the store occupies on disk.",
                )
                .int(&[], size),
            );
        }
        if let Some(redis) = &self.redis {
            let r = redis.stats();
            families.push(
                Family::new(
                    "portcullis_store_redis_up",
                    Gauge,
                    "1 when every Redis server this process uses answers, 0 while one is \
                     backed off (its keys get on_error).",
                )
                .int(&[], u64::from(!r.down)),
            );
            families.push(
                Family::new(
                    "portcullis_store_redis_nodes",
                    Gauge,
                    "Redis servers this process talks to: 1, or the cluster's nodes met so far.",
                )
                .int(&[], r.nodes as u64),
            );
        }
        families.push(
            Family::new(
                "portcullis_metrics_processes",
                Gauge,
                "Processes whose counters this scrape sums (1 unless a shared store's board \
                 gathers several).",
            )
            .int(&[], processes as u64),
        );
        families.push(
            Family::new(
                "portcullis_metrics_host_wide",
                Gauge,
                "1 when the counters are the whole host's (shared store), 0 when this \
                 process's only.",
            )
            .int(&[], u64::from(host_wide)),
        );
        families
    }

    /// Renders the gate's metrics into `out` in `format`. With the shared store, this
    /// process's counters are published first and the counters rendered are the sums over
    /// every process using the store.
    pub fn write_metrics(&self, out: &mut impl Write, format: MetricsFormat) -> fmt::Result {
        let inner = self.inner.read().clone();
        let mut counters = self.counters(&inner);
        let values = self.monotonic(&counters);
        let (values, processes) = match self.publish_values(&values) {
            Some((sums, processes)) => (sums, processes),
            None => (values, 1),
        };
        for family in &mut counters.0 {
            for (labels, value) in &mut family.samples {
                let key = series_key(family.name, labels);
                *value = Value::Int(values.get(&key).copied().unwrap_or(0));
            }
        }
        let host_wide = processes > 0 && self.board.lock().as_ref().is_some_and(|b| b.claimed());
        let gauges = self.gauges(&inner, processes, host_wide);
        for family in counters.0.iter().chain(&gauges) {
            render(out, family, format)?;
        }
        if format == MetricsFormat::OpenMetrics {
            out.write_str("# EOF\n")?;
        }
        Ok(())
    }

    /// [`Gate::write_metrics`] in the Prometheus text format, as a string.
    pub fn metrics(&self) -> String {
        let mut s = String::with_capacity(8192);
        // Writing into a `String` cannot fail.
        let _ = self.write_metrics(&mut s, MetricsFormat::Prometheus);
        s
    }

    /// This process's counters by series key, never lower than last time: the counts of
    /// limits and policies a reload dropped are kept in `retired`.
    pub(super) fn monotonic(&self, counters: &Metrics) -> HashMap<u64, u64> {
        let retired = self.retired.lock();
        let mut last = self.last_values.lock();
        // Only the series of the config in force are kept: a reload into new names leaves
        // nothing behind.
        let mut kept = HashMap::with_capacity(last.len());
        let mut values = HashMap::new();
        for family in &counters.0 {
            for (labels, value) in &family.samples {
                let key = series_key(family.name, labels);
                let raw = match value {
                    Value::Int(v) => *v,
                    Value::Float(_) => continue,
                };
                let v = raw.saturating_add(retired.get(&key).copied().unwrap_or(0));
                // A reload's instant can lose a few counts; a counter still never goes down.
                let v = v.max(last.get(&key).copied().unwrap_or(0));
                kept.insert(key, v);
                values.insert(key, v);
            }
        }
        *last = kept;
        values
    }

    /// Keeps, after a reload, the counts of what the new config dropped or started afresh.
    pub(super) fn retire_counters(&self, old: &Inner, new: &Inner) {
        let before = self.counters(old).values();
        let after = self.counters(new).values();
        let mut retired = self.retired.lock();
        // Series the new config no longer renders are forgotten (should one come back, its
        // counter restarts, which `rate()` reads as a reset).
        retired.retain(|key, _| after.contains_key(key));
        for (key, v) in before {
            let Some(&now) = after.get(&key) else {
                continue;
            };
            if v > now {
                *retired.entry(key).or_insert(0) += v - now;
            }
        }
    }
}

impl Metrics {
    fn values(&self) -> HashMap<u64, u64> {
        let mut out = HashMap::new();
        for family in &self.0 {
            for (labels, value) in &family.samples {
                if let Value::Int(v) = value {
                    out.insert(series_key(family.name, labels), *v);
                }
            }
        }
        out
    }
}

impl Family {
    fn float(mut self, value: f64) -> Self {
        self.push(&[], Value::Float(value));
        self
    }
}

/// A series' identity on the board: FNV-1a of its name and labels. Stable across builds and
/// processes (unlike std's hasher), which is what the board needs.
pub(super) fn series_key(name: &str, labels: &[(&'static str, String)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes.iter().chain(&[0u8]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(name.as_bytes());
    for (k, v) in labels {
        eat(k.as_bytes());
        eat(v.as_bytes());
    }
    h
}

fn render(out: &mut impl Write, f: &Family, format: MetricsFormat) -> fmt::Result {
    // OpenMetrics names a counter family without its `_total`; its samples keep it.
    let family = match (format, f.kind) {
        (MetricsFormat::OpenMetrics, Kind::Counter) => {
            f.name.strip_suffix("_total").unwrap_or(f.name)
        }
        _ => f.name,
    };
    let kind = match f.kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    };
    out.write_str("# HELP ")?;
    out.write_str(family)?;
    out.write_char(' ')?;
    escape(out, f.help, false)?;
    writeln!(out, "\n# TYPE {family} {kind}")?;
    for (labels, value) in &f.samples {
        out.write_str(f.name)?;
        if !labels.is_empty() {
            out.write_char('{')?;
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                out.write_str(k)?;
                out.write_str("=\"")?;
                escape(out, v, true)?;
                out.write_char('"')?;
            }
            out.write_char('}')?;
        }
        match value {
            Value::Int(v) => writeln!(out, " {v}")?,
            Value::Float(v) => writeln!(out, " {v:?}")?,
        }
    }
    Ok(())
}

/// Escapes a label value (backslash, double quote, newline) or a help text (backslash and
/// newline only), as the text format requires.
fn escape(out: &mut impl Write, s: &str, quote: bool) -> fmt::Result {
    for c in s.chars() {
        match c {
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '"' if quote => out.write_str("\\\"")?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        let f = Family::new("x_total", Kind::Counter, "a \\ b\nc \"d\"")
            .int(&[("policy", "we\"ird\\name\nx")], 3);
        let mut s = String::new();
        render(&mut s, &f, MetricsFormat::Prometheus).unwrap();
        assert_eq!(
            s,
            "# HELP x_total a \\\\ b\\nc \"d\"\n# TYPE x_total counter\n\
             x_total{policy=\"we\\\"ird\\\\name\\nx\"} 3\n"
        );
        let mut s = String::new();
        render(&mut s, &f, MetricsFormat::OpenMetrics).unwrap();
        assert!(s.starts_with("# HELP x a"), "{s}");
        assert!(s.contains("# TYPE x counter\nx_total{"), "{s}");
    }

    #[test]
    fn series_keys_tell_labels_apart() {
        let a = series_key("m", &[("policy", "ab".into())]);
        let b = series_key("m", &[("policy", "a".into())]);
        let c = series_key("mp", &[("olicy", "ab".into())]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, series_key("m", &[("policy", "ab".into())]));
    }
}
