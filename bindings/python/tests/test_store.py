"""The sled store keeps counters across a restart of the Python process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import portcullis
from conftest import MS, SEC, sled_config

LOGIN = """\
[[policy]]
name = "login"
algorithm = "fixed_window"
limit = "5/15m"
block = "15m"

[[route]]
match = "POST /login"
limits = [{ policy = "login", key = "ip" }]
"""

# Runs in a fresh interpreter. argv: level (limiter | gate), store folder, t0, phase.
# Phase "first" makes 5 logins; phase "second" makes the 6th. Neither closes its handle: the
# package's exit hook writes the counters to the store.
CHILD = r"""
import json, sys
import portcullis
level, store, t0, phase = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
config = "[store]\nkind = \"sled\"\npath = '%s'\n" % store + sys.argv[5]
ip = "203.0.113.9"
if level == "limiter":
    h = portcullis.Limiter.from_config(config)
    decide = lambda at: h.check("login", ip, now_ns=at)
    view = lambda d: {"allowed": d.allowed, "retry_after_secs": d.retry_after_secs}
else:
    h = portcullis.Gate.from_config(config)
    decide = lambda at: h.decide("POST", "/login", client_ip=ip, now_ns=at)
    view = lambda o: {"allowed": o.allowed, "retry_after_secs": o.retry_after_secs,
                      "status": o.status}
if phase == "first":
    out = [view(decide(t0 + i * 1000000)) for i in range(5)]
else:
    out = [view(decide(t0 + 10 * 1000000))]
print(json.dumps(out))
"""


def window_start_ahead() -> int:
    """The start of the next 15-minute window (plus 1 s), Unix-epoch ns.

    Fixed windows are aligned on the Unix clock; deciding in the next window keeps the five
    logins and the sixth in one window whatever the time now, and a state "in the future" is
    never dropped as recovered when the store is opened again.
    """
    window = 900 * SEC
    return (time.time_ns() // window + 1) * window + SEC


def child(level: str, store: Path, t0: int, phase: str) -> list:
    env = dict(os.environ)
    env.setdefault("PORTCULLIS_LIBRARY", str(portcullis.load_library()))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, level, str(store), str(t0), phase, LOGIN],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_limiter_counters_survive_a_restart(tmp_path):
    store = tmp_path / "store"
    t0 = window_start_ahead()
    first = child("limiter", store, t0, "first")
    assert [d["allowed"] for d in first] == [True] * 5
    (sixth,) = child("limiter", store, t0, "second")
    assert sixth["allowed"] is False
    assert sixth["retry_after_secs"] > 0
    assert sixth["retry_after_secs"] == 900  # the 15-minute block


def test_gate_counters_survive_a_restart(tmp_path):
    store = tmp_path / "store"
    t0 = window_start_ahead()
    first = child("gate", store, t0, "first")
    assert [o["allowed"] for o in first] == [True] * 5
    (sixth,) = child("gate", store, t0, "second")
    assert sixth["allowed"] is False
    assert sixth["status"] == 429
    assert sixth["retry_after_secs"] == 900


def test_a_fresh_store_hands_out_fresh_quota(tmp_path):
    # The control: without the first process, the same login is allowed.
    (only,) = child("limiter", tmp_path / "fresh", window_start_ahead(), "second")
    assert only["allowed"] is True


def test_close_flushes_in_process(tmp_path):
    config = sled_config(tmp_path / "store", LOGIN)
    t0 = window_start_ahead()
    with portcullis.Limiter.from_config(config) as lim:
        for i in range(5):
            assert lim.check("login", "192.0.2.1", now_ns=t0 + i * MS).allowed
    with portcullis.Limiter.from_config(config) as lim:
        assert not lim.check("login", "192.0.2.1", now_ns=t0 + 10 * MS).allowed
