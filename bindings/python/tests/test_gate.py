"""The gate: preflights, CORS on a 429, rate-limit headers, leases, reset, stats, reload."""

from __future__ import annotations

import ipaddress

import pytest

import portcullis
from portcullis import Action, Outcome
from conftest import GATE_CONFIG, MS, SEC, T0

ORIGIN = "https://app.example.com"


def login(gate, at: int, ip: str = "203.0.113.9", **kw) -> Outcome:
    return gate.decide("POST", "/login", origin=ORIGIN, client_ip=ip, now_ns=at, **kw)


def test_preflight_is_answered_and_never_charged(gate):
    for _ in range(10):
        o = gate.decide(
            "OPTIONS", "/login", origin=ORIGIN, request_method="POST",
            request_headers=["content-type"], client_ip="203.0.113.9", now_ns=T0,
        )
        assert o.action is Action.PREFLIGHT
        assert o.status == 204
        assert not o.allowed
        assert o.header("Access-Control-Allow-Origin") == ORIGIN
        assert o.header("access-control-allow-methods") == "POST"
        assert o.remaining is None and o.limit is None
    assert login(gate, T0).remaining == 4


def test_five_logins_then_a_429_with_cors(gate):
    for i in range(5):
        o = login(gate, T0 + i * MS)
        assert o.action is Action.PASS and o.allowed
        assert o.status == 0
        assert o.remaining == 4 - i
        assert o.limit == 5
        assert o.header("X-RateLimit-Remaining") == str(4 - i)
        # Fixed windows are aligned on the Unix clock: this one ends in 100 s.
        window_left = 900 - (T0 // SEC) % 900
        assert o.header("RateLimit") == f'"login";r={4 - i};t={window_left}'
        exposed = o.header("Access-Control-Expose-Headers")
        assert exposed is not None and "X-RateLimit-Remaining" in exposed
        assert o.reason == "allowed"
        assert o.limited_by is None
    o = login(gate, T0 + 10 * MS)
    assert o.action is Action.LIMITED
    assert o.status == 429
    assert not o.allowed
    assert o.retry_after_secs == 900
    assert o.header("Retry-After") == "900"
    assert o.header("Access-Control-Allow-Origin") == ORIGIN
    assert o.header("Access-Control-Allow-Credentials") == "true"
    assert o.reason == "limited by policy login for ip:203.0.113.9 on route POST /login"
    assert o.limited_by == "login"
    # Header names: CORS ones in lower case, rate-limit ones in canonical case.
    names = [n for n, _ in o.headers]
    assert "access-control-allow-origin" in names
    assert "X-RateLimit-Limit" in names and "Retry-After" in names
    # Another client is not affected; an ipaddress object is a client address too.
    assert login(gate, T0 + 10 * MS, ip=ipaddress.ip_address("198.51.100.7")).allowed  # type: ignore[arg-type]


def test_refused_origin_is_a_403_without_cors_headers(gate):
    o = gate.decide("OPTIONS", "/login", origin="https://evil.example.net",
                    request_method="POST", client_ip="203.0.113.9", now_ns=T0)
    assert o.action is Action.FORBIDDEN
    assert o.status == 403
    assert o.header("Access-Control-Allow-Origin") is None
    assert "evil.example.net" in o.reason
    actual = gate.decide("POST", "/login", origin="https://evil.example.net",
                         client_ip="203.0.113.9", now_ns=T0)
    assert actual.action is Action.FORBIDDEN
    # Never charged.
    assert login(gate, T0).remaining == 4


def test_reset_unblocks(gate):
    for i in range(6):
        login(gate, T0 + i * MS)
    assert not login(gate, T0 + 10 * MS).allowed
    assert gate.reset("login", "ip", "203.0.113.9") is True
    assert login(gate, T0 + 20 * MS).allowed
    assert gate.reset("login", portcullis.KeyKind.IP, "192.0.2.1") is False


# An outcome gives its leases back on the system clock (the ABI has no release at an explicit
# time), so the lease tests decide on the system clock too: concurrency does not depend on it.


def test_outcome_holds_leases_until_released(gate):
    def export() -> Outcome:
        return gate.decide("GET", "/export", principal="key-1", client_ip="192.0.2.1")

    first = export()
    assert first.allowed and first.leases == 1 and first.holds_leases
    second = export()
    assert second.action is Action.LIMITED
    assert second.limited_by == "export"
    assert not second.holds_leases
    # Another principal has its own slot.
    other = gate.decide("GET", "/export", principal="key-2")
    assert other.allowed
    other.release()
    first.release()
    assert not first.holds_leases
    first.release()  # idempotent
    assert first.header("X-RateLimit-Limit") == "1"  # still readable
    with export() as third:
        assert third.allowed
    assert not third.holds_leases
    assert export().allowed


def test_outcome_gives_leases_back_when_collected(gate):
    o = gate.decide("GET", "/export", principal="key-1")
    assert o.holds_leases
    assert not gate.decide("GET", "/export", principal="key-1").allowed
    del o
    assert gate.decide("GET", "/export", principal="key-1").allowed


def test_outcomes_stay_valid_after_the_gate_is_closed():
    g = portcullis.Gate.from_config(GATE_CONFIG)
    o = g.decide("GET", "/export", principal="key-1")
    g.close()
    assert o.holds_leases
    o.release()
    assert o.header("X-RateLimit-Remaining") == "0"


def test_unrouted_requests_pass_without_limits(gate):
    o = gate.decide("GET", "/elsewhere?x=1", client_ip="192.0.2.1", now_ns=T0)
    assert o.allowed
    assert o.remaining is None and o.limit is None
    assert gate.stats()["unrouted"] == 1


def test_stats_grow_past_the_first_buffer(gate):
    for i in range(6):
        login(gate, T0 + i * MS)
    for n in range(200):  # many limited clients: a big JSON
        ip = f"10.0.{n // 250}.{n % 250}"
        for i in range(6):
            login(gate, T0 + i * MS, ip=ip)
    gate.decide("OPTIONS", "/login", origin=ORIGIN, request_method="POST", now_ns=T0)
    stats = gate.stats()
    assert stats["preflights"] == 1
    assert len(stats["recent_denials"]) == 201
    assert len(stats["top_limited"]) == 32
    policies = {p["name"]: p for p in stats["policies"]}
    assert policies["login"]["denied"] == 201
    import json

    assert len(json.dumps(stats)) > 16384


def test_reload_keeps_counters_and_refuses_a_bad_config(gate):
    for i in range(3):
        login(gate, T0 + i * MS)
    gate.reload(GATE_CONFIG)
    assert login(gate, T0 + 5 * MS).remaining == 1
    with pytest.raises(portcullis.ConfigError) as bad:
        gate.reload('[[policy]]\nname = "x"\nlimit = "0/s"\n')
    assert '3:9: policy "x"' in str(bad.value)
    assert login(gate, T0 + 6 * MS).remaining == 0  # the old config still runs


def test_from_file(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text(GATE_CONFIG)
    with portcullis.Gate.from_file(path) as g:
        assert g.decide("POST", "/login", client_ip="192.0.2.1", now_ns=T0).remaining == 4
    assert g.closed


def test_decide_uses_the_clock_without_now_ns(gate):
    o = gate.decide("POST", "/login", client_ip="192.0.2.1")
    assert o.allowed and o.remaining == 4
    assert int(o.header("X-RateLimit-Reset") or 0) > T0 // SEC
