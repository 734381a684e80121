"""Which calls hold the GIL: a handle whose config has a policy of ``durability = "immediate"``
makes its state-changing calls through the GIL-releasing functions, every other handle holds
the GIL for them (see the rule in portcullis/_native.py)."""

from __future__ import annotations

import pytest

import portcullis
from portcullis import ConfigError, _native
from conftest import GATE_CONFIG, MS, T0, sled_config

PLAIN = '[[policy]]\nname = "api"\nlimit = "3/s"\n'
IMMEDIATE = '[[policy]]\nname = "api"\nlimit = "3/s"\ndurability = "immediate"\n'

ROUTED = """\
[[route]]
match = "/api/"
limits = [{ policy = "api", key = "ip" }]
"""


@pytest.mark.parametrize(
    "config, expected",
    [
        (PLAIN, False),
        (IMMEDIATE, True),
        (IMMEDIATE.encode(), True),
        (PLAIN + "[[policy]]\nname = 'b'\nlimit = '1/s'\ndurability = 'immediate'\n", True),
        ('[[policy]]\nname = "a"\nlimit = "1/s"\ndurability = """immediate"""\n', True),
        ('[[policy]]\nname = "a"\nlimit = "1/s"\ndurability = "\\u0069mmediate"\n', True),
        (PLAIN.replace('limit = "3/s"', 'limit = "3/s"\ndurability = "write_behind"'), False),
        # A comment is not a setting (read with a TOML parser).
        ("# durability = \"immediate\" would make every check wait for the disk\n" + PLAIN,
         _native._toml is None),
        # Text no TOML parser reads: any "immediate" counts.
        ("this is not toml, immediate", True),
        ("this is not toml", False),
        (b"\xff\xfe not UTF-8", True),
        ("", False),
    ],
)
def test_immediate_durability_is_read_from_the_config(config, expected):
    assert _native.immediate_durability(config) is expected


def test_file_immediate_durability(tmp_path):
    plain, immediate = tmp_path / "plain.toml", tmp_path / "immediate.toml"
    plain.write_text(PLAIN)
    immediate.write_text(IMMEDIATE)
    assert _native.file_immediate_durability(plain) is False
    assert _native.file_immediate_durability(str(immediate)) is True
    # Unreadable: the safe answer (the library then reports the missing file itself).
    assert _native.file_immediate_durability(tmp_path / "missing.toml") is True


def test_a_limiter_holds_the_gil_for_its_checks():
    with portcullis.Limiter.from_config(PLAIN) as lim:
        assert lim._lib is _native.load()
        for fn in (lim._fn_check, lim._fn_peek, lim._fn_penalize, lim._fn_refund,
                   lim._fn_check_at):
            assert fn._flags_ & _native.ctypes._FUNCFLAG_PYTHONAPI
        assert lim.check("api", "k", now_ns=T0).remaining == 2


def test_an_immediate_limiter_releases_the_gil_for_its_checks(tmp_path):
    config = sled_config(tmp_path / "store", IMMEDIATE)
    with portcullis.Limiter.from_config(config) as lim:
        assert lim._lib is _native.load(durable=True)
        for fn in (lim._fn_check, lim._fn_penalize, lim._fn_refund, lim._fn_check_at):
            assert not fn._flags_ & _native.ctypes._FUNCFLAG_PYTHONAPI
        # A peek writes nothing, so it never waits for the disk.
        assert lim._fn_peek._flags_ & _native.ctypes._FUNCFLAG_PYTHONAPI
        # Decisions are the same through either set of functions.
        assert [lim.check("api", "k", now_ns=T0 + i * MS).allowed for i in range(4)] == [
            True, True, True, False,
        ]
        assert lim.reset("api", "k") is True
        assert lim.check("api", "k", now_ns=T0 + 4 * MS).remaining == 2


def test_limiter_from_file_follows_the_file(tmp_path):
    path = tmp_path / "limiter.toml"
    path.write_text(IMMEDIATE)
    with portcullis.Limiter.from_file(path) as lim:
        assert lim._lib is _native.load(durable=True)
    path.write_text(PLAIN)
    with portcullis.Limiter.from_file(path) as lim:
        assert lim._lib is _native.load()


def test_a_gate_switches_on_reload():
    fast, durable = _native.load(), _native.load(durable=True)
    with portcullis.Gate.from_config(PLAIN + ROUTED) as gate:
        assert gate._lib is fast
        before = gate.decide("GET", "/api/x", client_ip="192.0.2.1", now_ns=T0)
        assert before.remaining == 2
        gate.reload(IMMEDIATE + ROUTED)
        assert gate._lib is durable
        # A durability change makes the policy fresh: its counters start again.
        assert gate.decide("GET", "/api/x", client_ip="192.0.2.1", now_ns=T0).remaining == 2
        with pytest.raises(ConfigError):
            gate.reload(PLAIN.replace("3/s", "0/s") + ROUTED)
        assert gate._lib is durable  # the old config runs on
        gate.reload(PLAIN + ROUTED)
        assert gate._lib is fast
        with pytest.raises(ConfigError):
            gate.reload(IMMEDIATE.replace("3/s", "0/s") + ROUTED)
        assert gate._lib is fast
    with pytest.raises(portcullis.ClosedError):
        gate.reload(IMMEDIATE + ROUTED)
    assert gate._lib is fast


def test_gate_from_file_follows_the_file(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text(IMMEDIATE + ROUTED)
    with portcullis.Gate.from_file(path) as gate:
        assert gate._lib is _native.load(durable=True)


def test_an_outcome_gives_leases_back_through_the_functions_it_was_decided_with():
    immediate = GATE_CONFIG.replace('lease_timeout = "1m"',
                                    'lease_timeout = "1m"\ndurability = "immediate"')
    assert immediate != GATE_CONFIG
    with portcullis.Gate.from_config(immediate) as gate:
        assert gate._lib is _native.load(durable=True)
        o = gate.decide("GET", "/export", principal="p")
        assert o.leases == 1 and o.holds_leases
        assert o._native._release is _native.load(durable=True).portcullis_outcome_release
        gate.reload(GATE_CONFIG)
        assert gate._lib is _native.load()
        o.release()
        assert not o.holds_leases


def test_cors_holds_the_gil():
    cors = portcullis.Cors.from_config(GATE_CONFIG)
    try:
        assert cors._lib is _native.load()
        assert cors._lib.holds_gil("portcullis_cors_decide")
        assert not cors._lib.holds_gil("portcullis_cors_open")
    finally:
        cors.close()
