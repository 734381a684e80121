"""Bad input raises clear exceptions, with the library's message; nothing crashes."""

from __future__ import annotations

import pickle
import threading

import pytest

import portcullis
from portcullis import (
    ClosedError,
    ConfigError,
    CostTooHighError,
    InvalidArgumentError,
    NeedsLeaseError,
    NotConcurrencyError,
    PortcullisError,
    StoreError,
    StoreLockedError,
    UnknownPolicyError,
)
from conftest import GATE_CONFIG, T0, sled_config

API = '[[policy]]\nname = "api"\nlimit = "10/s"\n'


def test_zero_quota_names_line_and_column():
    with pytest.raises(ConfigError) as e:
        portcullis.Limiter.from_config('[[policy]]\nname = "zero"\nlimit = "0/s"\n')
    err = e.value
    assert err.code == 200
    assert err.name == "PORTCULLIS_RESULT_INVALID_CONFIG"
    assert str(err).startswith('3:9: policy "zero": ')
    assert err.message == str(err)
    assert isinstance(err, ValueError) and isinstance(err, PortcullisError)


def test_every_problem_is_reported_at_once():
    config = '[[policy]]\nname = "a"\nlimit = "0/s"\n[[policy]]\nname = "b"\nlimit = "5/0s"\n'
    with pytest.raises(ConfigError) as e:
        portcullis.Gate.from_config(config)
    assert "3:9" in str(e.value) and "6:9" in str(e.value)


def test_unknown_key_and_bad_toml():
    with pytest.raises(ConfigError) as e:
        portcullis.Limiter.from_config('[[policy]]\nname = "x"\nlimt = "5/s"\n')
    assert "limt" in str(e.value)
    with pytest.raises(ConfigError):
        portcullis.Limiter.from_config("this is not toml")


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as e:
        portcullis.Limiter.from_file(missing)
    assert str(missing) in str(e.value)
    with pytest.raises(ConfigError) as e:
        portcullis.Gate.from_file(str(missing))
    assert str(missing) in str(e.value)


def test_config_file_errors_name_file_line_and_column(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[policy]]\nname = "zero"\nlimit = "0/s"\n')
    with pytest.raises(ConfigError) as e:
        portcullis.Limiter.from_file(path)
    assert str(path) in str(e.value) and "3:9" in str(e.value)


def test_invalid_utf8_config_bytes():
    with pytest.raises(InvalidArgumentError) as e:
        portcullis.Limiter.from_config(b"\xff")
    assert e.value.code == 102
    assert "not valid UTF-8" in str(e.value)


def test_bad_client_ip():
    with portcullis.Gate.from_config(GATE_CONFIG) as gate:
        with pytest.raises(InvalidArgumentError) as e:
            gate.decide("POST", "/login", client_ip="not-an-ip", now_ns=T0)
        assert e.value.code == 101
        assert "not-an-ip" in str(e.value)
        assert isinstance(e.value, ValueError)
        # The gate is fine afterwards.
        assert gate.decide("POST", "/login", client_ip="192.0.2.1", now_ns=T0).allowed
        with pytest.raises(InvalidArgumentError):
            gate.reset("login", 7, "1.2.3.4")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            gate.reset("login", "planet", "1.2.3.4")
        with pytest.raises(UnknownPolicyError):
            gate.reset("nope", "ip", "1.2.3.4")


def test_unknown_policy_by_name_and_id():
    with portcullis.Limiter.from_config(API) as lim:
        with pytest.raises(UnknownPolicyError) as e:
            lim.check("nope", "k")
        assert "nope" in str(e.value)
        assert isinstance(e.value, LookupError)
        with pytest.raises(UnknownPolicyError):
            lim.check(7, "k")
        lim.check("api", "k")  # still usable


def test_policy_misuse():
    config = API + '[[policy]]\nname = "export"\nalgorithm = "concurrency"\nlimit = 2\n'
    with portcullis.Limiter.from_config(config) as lim:
        with pytest.raises(CostTooHighError):
            lim.check("api", "k", 1000)
        with pytest.raises(NeedsLeaseError):
            lim.check("export", "k")
        with pytest.raises(NotConcurrencyError):
            lim.acquire("api", "k")
        with pytest.raises(InvalidArgumentError):
            lim.check("api", "k", -1)
        with pytest.raises(InvalidArgumentError):
            lim.check("api", "k", now_ns=-5)
        with pytest.raises(TypeError):
            lim.check("api", 42)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            lim.headers([], "fancy")
        with pytest.raises(InvalidArgumentError):
            lim.headers([], 9)
        d = lim.check("api", "k")
        bogus = portcullis.Decision(True, 1, 0, 0.0, 0.0, 0, 0.0, 42, T0)
        with pytest.raises(UnknownPolicyError):
            lim.headers([d, bogus])


def test_closed_handles():
    lim = portcullis.Limiter.from_config(API)
    lim.close()
    lim.close()  # idempotent
    assert lim.closed
    with pytest.raises(ClosedError) as e:
        lim.check("api", "k")
    assert e.value.code == 105
    with pytest.raises(ClosedError):
        lim.stats()
    with portcullis.Gate.from_config(GATE_CONFIG) as gate:
        pass
    with pytest.raises(ClosedError):
        gate.decide("GET", "/")
    with pytest.raises(ClosedError):
        gate.reload(GATE_CONFIG)
    cors = portcullis.Cors.from_config(GATE_CONFIG)
    cors.close()
    with pytest.raises(ClosedError):
        cors.decide("GET")


def test_close_while_other_threads_decide():
    lim = portcullis.Limiter.from_config(API)
    busy = [threading.Event() for _ in range(4)]
    outcomes: list = []

    def work(n: int) -> None:
        decided = 0
        try:
            for i in range(10_000_000):
                lim.check("api", f"k{i}", now_ns=T0)
                decided += 1
                if decided == 100:
                    busy[n].set()
        except ClosedError:
            outcomes.append(("closed", decided))
        else:
            outcomes.append(("never closed", decided))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for event in busy:
        assert event.wait(30)
    lim.close()  # while all four are deciding
    for t in threads:
        t.join(30)
    assert sorted(kind for kind, _ in outcomes) == ["closed"] * 4
    assert all(decided >= 100 for _, decided in outcomes)


def test_second_open_of_a_sled_store_is_locked(tmp_path):
    store = tmp_path / "store"
    config = sled_config(store, API)
    first = portcullis.Limiter.from_config(config)
    with pytest.raises(StoreLockedError) as e:
        portcullis.Limiter.from_config(config)
    assert e.value.code == 300
    assert str(store) in str(e.value)
    assert isinstance(e.value, StoreError)
    with pytest.raises(StoreLockedError):
        portcullis.Gate.from_config(config)
    first.close()
    # Closed: the store can be opened again.
    with portcullis.Gate.from_config(config) as gate:
        assert gate.decide("GET", "/", now_ns=T0).allowed


def test_a_folder_that_is_not_a_store(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.write_text("not a store")
    with pytest.raises(StoreError) as e:
        portcullis.Limiter.from_config(sled_config(foreign, API))
    assert str(foreign) in str(e.value)


def test_reload_cannot_change_the_store(tmp_path):
    with portcullis.Gate.from_config(API) as gate:
        with pytest.raises(portcullis.ReloadRefusedError) as e:
            gate.reload(sled_config(tmp_path / "s", API))
        assert "[store]" in str(e.value)
        assert isinstance(e.value, ConfigError)


def test_errors_pickle():
    err = UnknownPolicyError(201, "PORTCULLIS_RESULT_UNKNOWN_POLICY", "no policy nope")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is UnknownPolicyError and back.message == "no policy nope"
    assert back.code == 201


def test_error_classes_by_code():
    from portcullis.errors import error_class

    assert error_class(300) is StoreLockedError
    assert error_class(399) is StoreError
    assert error_class(150) is InvalidArgumentError
    assert error_class(7) is PortcullisError
