"""The gate's metrics through the binding: parsed with prometheus_client's own parser, the
values are the decisions made; OpenMetrics too; publishing is harmless without a shared
store."""

from __future__ import annotations

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_prom

import portcullis
from conftest import MS, T0

ORIGIN = "https://app.example.com"


def samples(families) -> dict:
    out = {}
    for family in families:
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def decide_some(gate) -> None:
    # 5 logins allowed, 2 refused while locked out; one preflight answered, one refused;
    # one request from a foreign origin refused.
    for i in range(7):
        gate.decide("POST", "/login", origin=ORIGIN, client_ip="203.0.113.9", now_ns=T0 + i * MS)
    gate.decide("OPTIONS", "/login", origin=ORIGIN, request_method="POST", now_ns=T0)
    gate.decide("OPTIONS", "/login", origin="https://evil.example", request_method="POST",
                now_ns=T0)
    gate.decide("POST", "/login", origin="https://evil.example", client_ip="203.0.113.9",
                now_ns=T0)


def test_metrics_parse_and_count_the_decisions(gate):
    decide_some(gate)
    text = gate.metrics()
    got = samples(parse_prom(text))
    login = lambda outcome: got[("portcullis_decisions_total",
                                 (("outcome", outcome), ("policy", "login")))]
    assert login("allowed") == 5
    assert login("blocked") == 2
    assert login("limited") == 0
    assert got[("portcullis_preflights_total", (("result", "answered"),))] == 1
    assert got[("portcullis_preflights_total", (("result", "refused"),))] == 1
    assert got[("portcullis_cors_refusals_total", (("reason", "origin_not_allowed"),))] == 2
    # Occupancy is judged at the gate's clock, long after these decisions at T0.
    assert got[("portcullis_table_keys", (("policy", "login"),))] == 0
    assert got[("portcullis_table_placed_keys_total", (("policy", "login"),))] == 1
    assert got[("portcullis_metrics_host_wide", ())] == 0
    assert "203.0.113.9" not in text
    assert portcullis.Gate.metrics_content_type() == "text/plain; version=0.0.4; charset=utf-8"


def test_openmetrics_parses_with_the_openmetrics_parser(gate):
    decide_some(gate)
    text = gate.metrics(openmetrics=True)
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_om(text)}
    assert families["portcullis_decisions"].type == "counter"
    got = samples(families.values())
    assert got[("portcullis_decisions_total", (("outcome", "blocked"), ("policy", "login")))] == 2
    assert "openmetrics" in portcullis.Gate.metrics_content_type(openmetrics=True)


def test_publish_without_a_shared_store_changes_nothing(gate):
    decide_some(gate)
    before = gate.metrics()
    gate.publish_metrics()
    assert gate.metrics() == before
