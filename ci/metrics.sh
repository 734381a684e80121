#!/usr/bin/env bash
# The metrics and the alert rules (docs/MONITORING.md), with real parsers:
# 1. `cargo run --example metrics` renders the metrics of a gate that has seen every kind of
#    decision (allowed, limited, blocked, shadow-limited, error, preflights, CORS refusals,
#    evictions, leases) and writes the counts it made;
# 2. `promtool check metrics` lints the exposition;
# 3. prometheus_client's text and OpenMetrics parsers read it, and every count must equal the
#    decisions made (ci/metrics_check.py);
# 4. `promtool check rules` and `promtool test rules` check examples/alerts.yml and its unit
#    tests (each alert fires on a simulated attack and stays quiet on normal traffic);
# 5. the Grafana dashboard is valid JSON and queries only metrics the gate renders.
# Installs Debian's prometheus package (for promtool) when promtool is missing, and
# prometheus_client into a venv under target/ when python3 cannot import it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! command -v promtool >/dev/null 2>&1; then
  echo "metrics: installing prometheus for promtool (apt-get)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends prometheus
fi

PY=python3
if ! "$PY" -c 'import prometheus_client' 2>/dev/null; then
  VENV=target/metrics-venv
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || {
      SUDO=""
      [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      export DEBIAN_FRONTEND=noninteractive
      $SUDO apt-get update -qq
      $SUDO apt-get install -y -qq --no-install-recommends python3-venv
      python3 -m venv "$VENV"
    }
  fi
  PY="$VENV/bin/python"
  "$PY" -c 'import prometheus_client' 2>/dev/null \
    || "$PY" -m pip install -q --disable-pip-version-check prometheus_client
fi

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

step "the exposition of a gate that has seen every kind of decision"
cargo run -q -p portcullis --example metrics -- "$OUT"
wc -l "$OUT/metrics.prom"

step "promtool check metrics"
promtool check metrics <"$OUT/metrics.prom"
echo "metrics: promtool: no problem"

step "prometheus_client parses both formats; the values are the decisions made"
"$PY" ci/metrics_check.py "$OUT"

step "promtool check rules, promtool test rules"
promtool check rules examples/alerts.yml
promtool test rules examples/alerts.test.yml

step "the Grafana dashboard queries only rendered metrics"
"$PY" - "$OUT/metrics.prom" examples/grafana-dashboard.json <<'PY'
import json, re, sys
rendered = set(re.findall(r"^# TYPE (\S+) ", open(sys.argv[1]).read(), re.M))
board = json.load(open(sys.argv[2]))
exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
used = {m for e in exprs for m in re.findall(r"\bportcullis_[a-z_]+", e)}
missing = sorted(used - rendered)
assert exprs and not missing, f"queried but never rendered: {missing}"
print(f"metrics: dashboard: {len(board['panels'])} panels, {len(used)} metrics, all rendered")
PY
