"""Checks the expositions `examples/metrics.rs` wrote with prometheus_client's own parsers:
every expected sample (the decisions the example made) has exactly its value, in the
Prometheus text format and in OpenMetrics, and every family is a counter or a gauge.

Usage: python3 ci/metrics_check.py OUT_DIR
"""

import json
import sys
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_prom


def samples(families):
    out, kinds = {}, {}
    for family in families:
        kinds[family.name] = family.type
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in out:
                raise SystemExit(f"duplicate series {key}")
            out[key] = s.value
    return out, kinds


def check(name, got, kinds, expected):
    bad = [k for k, t in kinds.items() if t not in ("counter", "gauge")]
    if bad:
        raise SystemExit(f"{name}: families of unexpected types: {bad}")
    wrong = []
    for e in expected:
        key = (e["name"], tuple(sorted(e["labels"].items())))
        if got.get(key) != e["value"]:
            wrong.append(f"{key}: expected {e['value']}, got {got.get(key)}")
    if wrong:
        raise SystemExit(f"{name}:\n  " + "\n  ".join(wrong))
    print(f"metrics: {name}: {len(got)} samples in {len(kinds)} families; "
          f"{len(expected)} expected values match")


def main():
    out = Path(sys.argv[1])
    expected = json.loads((out / "expected.json").read_text())
    got, kinds = samples(parse_prom((out / "metrics.prom").read_text()))
    check("Prometheus text format", got, kinds, expected)
    om_got, om_kinds = samples(parse_om((out / "metrics.om").read_text()))
    check("OpenMetrics", om_got, om_kinds, expected)
    # Rendered a moment apart: only the writer's lag (a clock reading) may differ.
    lag = ("portcullis_store_write_lag_seconds", ())
    differ = {k for k in set(got) | set(om_got) if got.get(k) != om_got.get(k)} - {lag}
    if differ:
        raise SystemExit(f"the two formats disagree on {sorted(differ)}")


main()
