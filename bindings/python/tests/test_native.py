"""Finding, loading and checking the shared library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import portcullis
from portcullis import LibraryError, _native


def test_loaded_library_matches_the_binding():
    path = portcullis.load_library()
    assert path.is_file()
    assert path.name == _native.library_filename()
    lib = _native.load()
    assert lib.portcullis_abi_version() == portcullis.ABI_VERSION == 2
    assert portcullis.library_version() == "0.1.0"
    assert _native.result_name(lib, 300) == "PORTCULLIS_RESULT_STORE_LOCKED"
    assert _native.result_name(lib, 12345) == "PORTCULLIS_RESULT_UNKNOWN"


def test_a_checkout_loads_its_own_release_build():
    repo = Path(__file__).resolve().parents[3]
    built = repo / "target" / "release" / _native.library_filename()
    if os.environ.get(_native.ENV_VAR) or not built.is_file():
        pytest.skip("not an editable install in a built checkout")
    if Path(portcullis.__file__).resolve().parents[4] != repo:
        pytest.skip("the package is installed elsewhere")
    assert portcullis.load_library().resolve() == built.resolve()


def test_abi_mismatch_names_both_versions_and_the_path():
    lib = _native.load()
    path = portcullis.load_library()
    with pytest.raises(LibraryError) as e:
        _native.check_abi(lib, path, expected=3)
    message = str(e.value)
    assert "ABI version 2" in message and "ABI version 3" in message
    assert str(path) in message
    assert e.value.name == "ABI_MISMATCH"
    assert isinstance(e.value, ImportError)
    _native.check_abi(lib, path)  # the real one passes


def test_env_var_wins_and_must_exist(monkeypatch, tmp_path):
    real = portcullis.load_library()
    monkeypatch.setenv(_native.ENV_VAR, str(real))
    assert _native.find_library(tmp_path) == real
    monkeypatch.setenv(_native.ENV_VAR, str(tmp_path / "missing.so"))
    with pytest.raises(LibraryError) as e:
        _native.find_library(tmp_path)
    assert "missing.so" in str(e.value) and _native.ENV_VAR in str(e.value)


def test_found_next_to_the_package_then_in_a_cargo_target(monkeypatch, tmp_path):
    monkeypatch.delenv(_native.ENV_VAR, raising=False)
    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)
    name = _native.library_filename()
    package = tmp_path / "repo" / "bindings" / "python" / "src" / "portcullis"
    package.mkdir(parents=True)
    debug = tmp_path / "repo" / "target" / "debug" / name
    debug.parent.mkdir(parents=True)
    debug.write_bytes(b"")
    assert _native.find_library(package) == debug
    release = tmp_path / "repo" / "target" / "release" / name
    release.parent.mkdir(parents=True)
    release.write_bytes(b"")
    assert _native.find_library(package) == release  # release before debug
    beside = package / name
    beside.write_bytes(b"")
    assert _native.find_library(package) == beside  # next to the package first


def test_not_found_lists_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.delenv(_native.ENV_VAR, raising=False)
    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)
    package = tmp_path / "site-packages" / "portcullis"
    package.mkdir(parents=True)
    if any(p.is_file() for p in _native.candidates(package)):
        pytest.skip("a library lies above the temporary folder")
    with pytest.raises(LibraryError) as e:
        _native.find_library(package)
    message = str(e.value)
    assert e.value.name == "LIBRARY_NOT_FOUND"
    assert "cargo build --release --lib" in message
    assert str(package / _native.library_filename()) in message
    assert str(tmp_path / "target" / "release" / _native.library_filename()) in message


def test_a_file_that_is_not_a_library_fails_on_first_use(tmp_path):
    bogus = tmp_path / "libportcullis.so"
    bogus.write_text("not a library")
    env = dict(os.environ, **{_native.ENV_VAR: str(bogus)})
    code = (
        "import portcullis\n"
        "try:\n"
        "    portcullis.Limiter.from_config('')\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, e.name, e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("LibraryError LIBRARY_LOAD_FAILED cannot load")
    assert str(bogus) in done.stdout


def test_decision_layout_matches_the_fast_unpack():
    import ctypes
    import struct

    assert struct.calcsize("=?3x3I5Q") == ctypes.sizeof(_native.NativeDecision) == 56
    offsets = [getattr(_native.NativeDecision, name).offset
               for name, _ in _native.NativeDecision._fields_]
    assert offsets == [0, 4, 8, 12, 16, 24, 32, 40, 48]
