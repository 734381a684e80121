"""Limiter decisions and headers, at explicit times."""

from __future__ import annotations

import dataclasses

import pytest

import portcullis
from portcullis import Decision, HeaderStyle, RateLimited
from conftest import MS, SEC, T0


def test_policy_ids_by_name_are_cached(limiter):
    assert limiter.policy("api") == 0
    assert limiter.policy("export") == 1
    assert limiter.policy("login") == 2
    assert limiter.policy_name(1) == "export"
    # A name and its id decide the same key.
    limiter.check("api", "k", now_ns=T0)
    assert limiter.check(0, "k", now_ns=T0).remaining == 1


def test_burst_then_one_every_100ms(limiter):
    for i in range(3):
        d = limiter.check("api", "alice", now_ns=T0)
        assert d.allowed
        assert d.limit == 3
        assert d.remaining == 2 - i
        assert d.at_ns == T0
        assert d.policy == 0
    d = limiter.check("api", "alice", now_ns=T0)
    assert not d.allowed
    assert not d  # a Decision is truthy when allowed
    assert d.retry_after == pytest.approx(0.1)
    assert d.retry_after_ns == 100 * MS
    assert d.retry_after_secs == 1
    assert d.reset_after == pytest.approx(0.3)
    # Another key has its own quota.
    assert limiter.check("api", "bob", now_ns=T0).allowed
    # Peek consumes nothing.
    assert limiter.peek("api", "alice", now_ns=T0 + 100 * MS).allowed
    assert limiter.peek("api", "alice", now_ns=T0 + 100 * MS).allowed
    d = limiter.check("api", "alice", now_ns=T0 + 100 * MS)
    assert d.allowed and d.remaining == 0
    assert not limiter.check("api", "alice", now_ns=T0 + 100 * MS).allowed


def test_decisions_are_frozen_dataclasses(limiter):
    d = limiter.check("api", "k", now_ns=T0)
    assert isinstance(d, Decision)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.allowed = False  # type: ignore[misc]
    fields = [f.name for f in dataclasses.fields(Decision)]
    assert fields[:9] == [
        "allowed", "limit", "remaining", "reset_after", "retry_after", "retry_after_secs",
        "delay", "policy", "at_ns",
    ]
    same = limiter.peek("api", "k", now_ns=T0)
    assert dataclasses.replace(d, remaining=same.remaining, reset_after=same.reset_after,
                               reset_after_ns=same.reset_after_ns) == same


def test_keys_are_bytes(limiter):
    # str keys are their UTF-8 bytes.
    limiter.check("api", "clé", now_ns=T0)
    assert limiter.check("api", "clé".encode(), now_ns=T0).remaining == 1
    assert limiter.check("api", bytearray("clé".encode()), now_ns=T0).remaining == 0
    # An embedded NUL is part of the key; invalid UTF-8 is a fine key.
    assert limiter.check("api", b"k\x00a", 3, now_ns=T0).remaining == 0
    assert limiter.check("api", b"k\x00b", now_ns=T0).remaining == 2
    assert limiter.check("api", b"\xff\xfe", now_ns=T0).allowed
    assert limiter.check("api", "", now_ns=T0).remaining == 2


def test_refund_penalize_reset(limiter):
    for _ in range(3):
        limiter.check("api", "alice", now_ns=T0)
    assert not limiter.check("api", "alice", now_ns=T0).allowed
    assert limiter.refund("api", "alice", now_ns=T0).allowed
    assert not limiter.penalize("api", "alice", 2, now_ns=T0).allowed
    assert limiter.reset("api", "alice") is True
    assert limiter.reset("api", "alice") is False
    d = limiter.check("api", "alice", now_ns=T0)
    assert d.allowed and d.remaining == 2


def test_fixed_window_block(limiter):
    for i in range(5):
        d = limiter.check("login", "203.0.113.9", now_ns=T0 + i * MS)
        assert d.allowed and d.remaining == 4 - i
    d = limiter.check("login", "203.0.113.9", now_ns=T0 + 10 * MS)
    assert not d.allowed
    assert d.retry_after_secs == 900  # blocked for 15 minutes
    assert d.retry_after == pytest.approx(900.0)
    # Still blocked 10 minutes later.
    assert not limiter.check("login", "203.0.113.9", now_ns=T0 + 600 * SEC).allowed


def test_leaky_bucket_delays(limiter):
    delays = [limiter.check("shaped", "k", now_ns=T0).delay for _ in range(3)]
    assert delays == pytest.approx([0.0, 0.1, 0.2])
    assert limiter.check("shaped", "k", now_ns=T0).delay_ns == 300 * MS


def test_headers_styles(limiter):
    for _ in range(3):
        limiter.check("api", "alice", now_ns=T0)
    denied = limiter.check("api", "alice", now_ns=T0)
    reset = str(T0 // SEC + 1)  # X-RateLimit-Reset: the Unix second of full recovery
    assert limiter.headers([denied], "legacy") == [
        ("X-RateLimit-Limit", "3"),
        ("X-RateLimit-Remaining", "0"),
        ("X-RateLimit-Reset", reset),
        ("Retry-After", "1"),
    ]
    assert limiter.headers(denied, "ietf") == [
        ("RateLimit-Policy", '"api";q=10;w=1'),
        ("RateLimit", '"api";r=0;t=1'),
        ("Retry-After", "1"),
    ]
    assert limiter.headers([denied], HeaderStyle.BOTH) == (
        limiter.headers([denied], "legacy")[:3] + limiter.headers([denied], "ietf")
    )
    assert limiter.headers([denied], "retry_after_only") == [("Retry-After", "1")]
    allowed = limiter.check("api", "bob", now_ns=T0)
    assert limiter.headers([allowed], "retry_after_only") == []
    assert dict(limiter.headers([allowed]))["X-RateLimit-Remaining"] == "2"
    assert limiter.headers([], "legacy") == []


def test_leases_as_context_managers(limiter):
    with limiter.acquire("export", "alice", now_ns=T0) as a:
        assert a.acquired and a.held
        with limiter.acquire("export", "alice", now_ns=T0) as b:
            assert b.decision.remaining == 0
            with pytest.raises(RateLimited) as denied:
                limiter.acquire("export", "alice", now_ns=T0)
            assert denied.value.decision.allowed is False
            assert denied.value.policy == "export"
            assert denied.value.retry_after > 0
            assert "export" in str(denied.value)
            refused = limiter.try_acquire("export", "alice", now_ns=T0)
            assert not refused and not refused.held
            with refused:  # a denied lease is an inert context manager
                pass
        assert not b.held
        # b was given back: one slot again.
        c = limiter.try_acquire("export", "alice", now_ns=T0 + MS)
        assert c.acquired
        assert c.release() is True
        assert c.release() is False  # idempotent
    assert not a.held
    d1 = limiter.acquire("export", "alice", now_ns=T0 + 2 * MS)
    d2 = limiter.acquire("export", "alice", now_ns=T0 + 2 * MS)
    d1.release()
    d2.release()


def test_abandoned_lease_expires_after_timeout(limiter):
    a = limiter.acquire("export", "k", now_ns=T0)
    b = limiter.acquire("export", "k", now_ns=T0)
    a.abandon()
    assert not a.held
    assert not limiter.try_acquire("export", "k", now_ns=T0 + SEC)
    # A lease falls out between one and two lease timeouts after it was taken.
    late = limiter.try_acquire("export", "k", now_ns=T0 + 121 * SEC)
    assert late.acquired
    late.release()
    b.release(now_ns=T0 + 121 * SEC)


def test_lease_outliving_its_limiter_is_abandoned():
    lim = portcullis.Limiter.from_config(
        '[[policy]]\nname = "export"\nalgorithm = "concurrency"\nlimit = 1\n'
    )
    lease = lim.acquire("export", "k")
    lim.close()
    assert lease.release() is True  # nothing to give it back to: freed, no crash
    assert not lease.held


def test_stats(limiter):
    for _ in range(5):
        limiter.check("api", "alice", now_ns=T0)
    limiter.peek("api", "alice", now_ns=T0)
    stats = {p["name"]: p for p in limiter.stats()}
    assert set(stats) == {"api", "export", "login", "shaped"}
    assert stats["api"]["allowed"] == 3
    assert stats["api"]["denied"] == 2


def test_real_clock_when_no_time_is_given(limiter):
    import time

    before = time.time_ns()
    d = limiter.check("api", "now")
    assert before - SEC <= d.at_ns <= time.time_ns() + SEC
