"""Loading ``libportcullis`` and declaring its C ABI (``include/portcullis.h``) for ctypes.

Finding the library
-------------------

The library is looked for, in order:

1. the path in the ``PORTCULLIS_LIBRARY`` environment variable (it must exist);
2. a ``libportcullis.so`` (``.dylib`` on macOS, ``portcullis.dll`` on Windows) next to the
   package's files: the copy an installed package (``pip install ./bindings/python``, or its
   wheel) carries;
3. ``target/release/`` then ``target/debug/`` of every folder from the package's up to the root
   (a checkout of the repository after ``cargo build --release --lib``: the editable install);
4. ``$CARGO_TARGET_DIR/release`` then ``$CARGO_TARGET_DIR/debug`` when that variable is set.

It is loaded once, on first use (or by :func:`load`), and refused unless its
``portcullis_abi_version()`` is :data:`ABI_VERSION`.

The GIL: held for fast calls, released for calls that can block
-----------------------------------------------------------------

The library is opened twice, as :class:`ctypes.PyDLL` (its functions run with the GIL held) and
as :class:`ctypes.CDLL` (its functions release the GIL for the call). Releasing and taking back
the GIL costs little alone, but threads deciding at once then fight over it on every call: four
threads checking one hot key made as few as a third of the checks per second of one thread. The
rule:

- Calls that can wait on the disk or do heavy work release the GIL, always (:data:`BLOCKING`):
  opening a handle (it parses the config, reads files, opens and restores a sled store),
  ``*_close`` and the limiter's and gate's ``*_free`` (they write every counter to the store and
  make it durable), ``portcullis_gate_reload``, and the gate's metrics (they scan every table
  and, with a shared store, write to its board).
- Calls that change a key's state (:data:`DURABLE`: checks, penalties, refunds, resets, lease
  acquisitions and releases, gate decisions, giving an outcome's leases back) wait until the
  state is on disk when the policy has ``durability = "immediate"``. A handle whose config
  gives any policy that durability makes them through the releasing handle
  (``load(durable=True)``); every other handle makes them with the GIL held.
- Everything else holds the GIL: it works in memory and returns in about a microsecond or less
  (peeks, policy lookups, header rendering, outcome and decision getters, CORS decisions,
  stats, frees of outcomes, decisions, header lists and leases, error messages).

A handle picks its :class:`Api` when it is opened (:func:`immediate_durability` reads the
config); a gate picks again on ``reload``. A call holding the GIL never waits for Python, so a
call made while another thread is inside a releasing one cannot deadlock: the library never
calls back into the interpreter.
"""

from __future__ import annotations

import ctypes
import enum
import os
import sys
import threading
from ctypes import (
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_size_t,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional, Tuple, Type, Union

from .errors import LibraryError, error_from_code

try:  # Python 3.11+
    import tomllib as _toml
except ImportError:  # pragma: no cover - Python 3.9 and 3.10
    try:
        import tomli as _toml  # type: ignore[no-redef]
    except ImportError:
        _toml = None  # type: ignore[assignment]

#: The ABI version this binding was written for (``PORTCULLIS_ABI_VERSION`` of the header).
ABI_VERSION = 2

#: The environment variable naming the shared library to load.
ENV_VAR = "PORTCULLIS_LIBRARY"

#: ``UINT32_MAX``: an outcome's ``remaining`` when no limit applied.
U32_MAX = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF

# The enums of the header. tests/test_native.py compiles the header and checks every value
# here against it: ``PORTCULLIS_RESULT_<NAME>`` is the constant ``<NAME>`` of this module, and
# ``PORTCULLIS_<ENUM>_<NAME>`` of ``enum portcullis_<enum>`` is member ``<NAME>`` of the IntEnum
# named ``<enum>`` in CamelCase (``portcullis_cors_kind``: :class:`CorsKind`).

# Result codes (enum portcullis_result).
OK = 0
NULL_PARAMETER = 100
INVALID_PARAMETER = 101
INVALID_UTF8 = 102
INSUFFICIENT_SIZE = 103
PANIC = 104
CLOSED = 105
OUT_OF_RANGE = 106
INVALID_CONFIG = 200
UNKNOWN_POLICY = 201
COST_TOO_HIGH = 202
NEEDS_LEASE = 203
NOT_CONCURRENCY = 204
RELOAD_REFUSED = 205
INVALID_CORS_POLICY = 206
STORE_LOCKED = 300
STORE_CORRUPT = 301
STORE_FOREIGN = 302
STORE_VERSION = 303
STORE_IO = 304
STORE_FORKED = 305
STORE_REDIS = 306
STORE_UNAVAILABLE = 307


class CorsKind(enum.IntEnum):
    """The kind of request, as the Fetch standard classifies it (``portcullis_cors_kind``)."""

    #: No ``Origin``: not a CORS request.
    NOT_CORS = 0
    #: ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``.
    PREFLIGHT = 1
    #: Any other request with ``Origin``.
    ACTUAL = 2


class Action(enum.IntEnum):
    """What to do with a request (``portcullis_action``)."""

    #: Call the handler (after ``delay``) and add the headers to its response.
    PASS = 0
    #: An allowed preflight: answer 204 with the headers; do not call the handler.
    PREFLIGHT = 1
    #: Refused by CORS: answer 403 with the headers.
    FORBIDDEN = 2
    #: Rate limited: answer 429 with the headers.
    LIMITED = 3


class HeaderStyle(enum.IntEnum):
    """Which rate-limit headers to render (``portcullis_header_style``)."""

    #: ``X-RateLimit-Limit``, ``-Remaining``, ``-Reset`` and ``Retry-After`` on a denial.
    LEGACY = 0
    #: IETF ``RateLimit-Policy`` and ``RateLimit`` (and ``Retry-After`` on a denial).
    IETF = 1
    #: Both.
    BOTH = 2
    #: Only ``Retry-After`` on a denial.
    RETRY_AFTER_ONLY = 3

    @classmethod
    def parse(cls, value: "HeaderStyle | str | int") -> "HeaderStyle":
        """A style from its name (``"legacy"``, ``"ietf"``, ``"both"``, ``"retry_after_only"``)."""
        if isinstance(value, HeaderStyle):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper().replace("-", "_")]
            except KeyError:
                names = ", ".join(repr(m.name.lower()) for m in cls)
                raise ValueError(f"unknown header style {value!r}: use one of {names}") from None
        if isinstance(value, int):
            return cls(value)
        raise TypeError(f"header style must be a str or HeaderStyle, not {type(value).__name__}")


class KeyKind(enum.IntEnum):
    """Which key a gate reset names (``portcullis_key_kind``)."""

    #: A client address (text).
    IP = 0
    #: A principal (user id or API key).
    PRINCIPAL = 1
    #: A route, by its ``match`` text.
    ROUTE = 2
    #: The one key of a global limit.
    GLOBAL = 3

    @classmethod
    def parse(cls, value: "KeyKind | str | int") -> "KeyKind":
        """A kind from its name (``"ip"``, ``"principal"``, ``"route"``, ``"global"``)."""
        if isinstance(value, KeyKind):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                names = ", ".join(repr(m.name.lower()) for m in cls)
                raise ValueError(f"unknown key kind {value!r}: use one of {names}") from None
        if isinstance(value, int):
            return cls(value)
        raise TypeError(f"key kind must be a str or KeyKind, not {type(value).__name__}")


class MetricsFormat(enum.IntEnum):
    """Which text format a gate's metrics are rendered in (``portcullis_metrics_format``)."""

    #: The Prometheus text format 0.0.4 (``text/plain; version=0.0.4``).
    PROMETHEUS = 0
    #: OpenMetrics 1.0 (``application/openmetrics-text; version=1.0.0``).
    OPEN_METRICS = 1


class Str(Structure):
    """``portcullis_str`` as an output: a borrowed (pointer, length) byte string.

    ``ptr`` is a ``char *`` so that slicing it copies the bytes out in one step.
    """

    _fields_ = [("ptr", POINTER(c_char)), ("len", c_size_t)]


class InStr(Structure):
    """``portcullis_str`` as an input: ``ptr`` is set from Python bytes, kept alive by the struct.

    Same layout as :class:`Str`; an empty bytes is a present, empty string, None is absent.
    """

    _fields_ = [("ptr", c_char_p), ("len", c_size_t)]


class CorsRequest(Structure):
    """``portcullis_cors_request``."""

    _fields_ = [
        ("method", InStr),
        ("origin", InStr),
        ("request_method", InStr),
        ("request_headers", InStr),
        ("private_network", c_bool),
    ]


class CorsInfo(Structure):
    """``portcullis_cors_info``."""

    _fields_ = [("kind", c_uint32), ("allowed", c_bool), ("status", c_uint16)]


class Request(Structure):
    """``portcullis_request``."""

    _fields_ = [
        ("method", InStr),
        ("path", InStr),
        ("origin", InStr),
        ("request_method", InStr),
        ("request_headers", InStr),
        ("client_ip", InStr),
        ("principal", InStr),
        ("tier", InStr),
        ("private_network", c_bool),
        ("forwarded_for", InStr),
        ("forwarded", InStr),
    ]


class OutcomeInfo(Structure):
    """``portcullis_outcome_info``."""

    _fields_ = [
        ("action", c_uint32),
        ("status", c_uint16),
        ("delay_ns", c_uint64),
        ("retry_after_secs", c_uint64),
        ("remaining", c_uint32),
        ("limit", c_uint32),
        ("leases", c_uint32),
    ]


class NativeDecision(Structure):
    """``portcullis_decision``."""

    _fields_ = [
        ("allowed", c_bool),
        ("limit", c_uint32),
        ("remaining", c_uint32),
        ("policy", c_uint32),
        ("reset_after_ns", c_uint64),
        ("retry_after_ns", c_uint64),
        ("retry_after_secs", c_uint64),
        ("delay_ns", c_uint64),
        ("at_ns", c_uint64),
    ]


#: Every struct of the header with a layout, by its C name: the ctypes classes declaring it.
#: tests/test_native.py checks that the header has no other struct and that each class has
#: the C struct's size, field names, field offsets and field sizes.
STRUCTS: Dict[str, Tuple[Type[Structure], ...]] = {
    "portcullis_str": (Str, InStr),
    "portcullis_cors_request": (CorsRequest,),
    "portcullis_cors_info": (CorsInfo,),
    "portcullis_request": (Request,),
    "portcullis_outcome_info": (OutcomeInfo,),
    "portcullis_decision": (NativeDecision,),
}


# Opaque handles travel as void pointers (ints on the Python side).
_H = c_void_p
_R = c_uint32
_SIZE_P = POINTER(c_size_t)
_BOOL_P = POINTER(c_bool)
_U32_P = POINTER(c_uint32)
_H_P = POINTER(c_void_p)
_STR_P = POINTER(Str)
_DEC_P = POINTER(NativeDecision)
# Text and byte inputs are passed as Python bytes (c_char_p: no copy, no NUL needed).
_BYTES = c_char_p
_BUF = POINTER(c_uint8)

# name: (restype, argtypes), every function of the header (tests/test_abi.py checks each
# against its prototype: the number of arguments and the type of each).
SIGNATURES: Dict[str, Tuple[Any, List[Any]]] = {
    # CORS
    "portcullis_cors_open": (_R, [_BYTES, c_size_t, _H_P]),
    "portcullis_cors_decide": (_R, [_H, POINTER(CorsRequest), _H_P]),
    "portcullis_cors_decision_get_info": (_R, [_H, POINTER(CorsInfo)]),
    "portcullis_cors_decision_reason": (_R, [_H, _STR_P]),
    "portcullis_cors_decision_header_count": (_R, [_H, _SIZE_P]),
    "portcullis_cors_decision_header": (_R, [_H, c_size_t, _STR_P, _STR_P]),
    "portcullis_cors_decision_free": (None, [_H]),
    "portcullis_cors_free": (None, [_H]),
    # Gate
    "portcullis_gate_open": (_R, [_BYTES, c_size_t, _H_P]),
    "portcullis_gate_open_file": (_R, [_BYTES, c_size_t, _H_P]),
    "portcullis_gate_reload": (_R, [_H, _BYTES, c_size_t]),
    "portcullis_gate_decide": (_R, [_H, POINTER(Request), _H_P]),
    "portcullis_gate_decide_at": (_R, [_H, POINTER(Request), c_uint64, _H_P]),
    "portcullis_gate_decide_into": (_R, [_H, POINTER(Request), _H]),
    "portcullis_gate_decide_into_at": (_R, [_H, POINTER(Request), c_uint64, _H]),
    "portcullis_gate_reset": (_R, [_H, _BYTES, c_size_t, c_uint32, _BYTES, c_size_t, _BOOL_P]),
    "portcullis_gate_stats_json": (_R, [_H, _BUF, c_size_t, _SIZE_P]),
    "portcullis_gate_metrics": (_R, [_H, c_uint32, _BUF, c_size_t, _SIZE_P]),
    "portcullis_gate_publish_metrics": (_R, [_H]),
    "portcullis_gate_may_block": (_R, [_H, _BOOL_P]),
    "portcullis_gate_close": (_R, [_H]),
    "portcullis_gate_free": (None, [_H]),
    # Outcomes
    "portcullis_outcome_get_info": (_R, [_H, POINTER(OutcomeInfo)]),
    "portcullis_outcome_reason": (_R, [_H, _STR_P]),
    "portcullis_outcome_limited_by": (_R, [_H, _STR_P]),
    "portcullis_outcome_header_count": (_R, [_H, _SIZE_P]),
    "portcullis_outcome_header": (_R, [_H, c_size_t, _STR_P, _STR_P]),
    "portcullis_outcome_new": (_R, [_H_P]),
    "portcullis_outcome_release": (_R, [_H]),
    "portcullis_outcome_free": (None, [_H]),
    # Header lists
    "portcullis_headers_count": (_R, [_H, _SIZE_P]),
    "portcullis_headers_get": (_R, [_H, c_size_t, _STR_P, _STR_P]),
    "portcullis_headers_free": (None, [_H]),
    # Limiter
    "portcullis_limiter_open": (_R, [_BYTES, c_size_t, _H_P]),
    "portcullis_limiter_open_file": (_R, [_BYTES, c_size_t, _H_P]),
    "portcullis_limiter_policy": (_R, [_H, _BYTES, c_size_t, _U32_P]),
    "portcullis_limiter_check": (_R, [_H, c_uint32, _BYTES, c_size_t, c_uint32, _DEC_P]),
    "portcullis_limiter_check_at": (
        _R,
        [_H, c_uint32, _BYTES, c_size_t, c_uint32, c_uint64, _DEC_P],
    ),
    "portcullis_limiter_peek": (_R, [_H, c_uint32, _BYTES, c_size_t, c_uint32, _DEC_P]),
    "portcullis_limiter_peek_at": (
        _R,
        [_H, c_uint32, _BYTES, c_size_t, c_uint32, c_uint64, _DEC_P],
    ),
    "portcullis_limiter_penalize": (_R, [_H, c_uint32, _BYTES, c_size_t, c_uint32, _DEC_P]),
    "portcullis_limiter_penalize_at": (
        _R,
        [_H, c_uint32, _BYTES, c_size_t, c_uint32, c_uint64, _DEC_P],
    ),
    "portcullis_limiter_refund": (_R, [_H, c_uint32, _BYTES, c_size_t, c_uint32, _DEC_P]),
    "portcullis_limiter_refund_at": (
        _R,
        [_H, c_uint32, _BYTES, c_size_t, c_uint32, c_uint64, _DEC_P],
    ),
    "portcullis_limiter_reset": (_R, [_H, c_uint32, _BYTES, c_size_t, _BOOL_P]),
    "portcullis_limiter_acquire": (
        _R,
        [_H, c_uint32, _BYTES, c_size_t, c_uint32, _DEC_P, _H_P],
    ),
    "portcullis_limiter_acquire_at": (
        _R,
        [_H, c_uint32, _BYTES, c_size_t, c_uint32, c_uint64, _DEC_P, _H_P],
    ),
    "portcullis_limiter_release": (_R, [_H, _H]),
    "portcullis_limiter_release_at": (_R, [_H, _H, c_uint64]),
    "portcullis_lease_free": (None, [_H]),
    "portcullis_limiter_headers": (_R, [_H, c_uint32, _DEC_P, c_size_t, _H_P]),
    "portcullis_limiter_stats_json": (_R, [_H, _BUF, c_size_t, _SIZE_P]),
    "portcullis_limiter_may_block": (_R, [_H, _BOOL_P]),
    "portcullis_limiter_close": (_R, [_H]),
    "portcullis_limiter_free": (None, [_H]),
    # Library
    "portcullis_version": (c_char_p, []),
    "portcullis_abi_version": (c_uint32, []),
    "portcullis_result_name": (c_char_p, [c_uint32]),
    "portcullis_last_error": (_R, [_BUF, c_size_t, _SIZE_P]),
}


#: Functions that may wait on the disk (or parse a config): they always release the GIL.
BLOCKING: FrozenSet[str] = frozenset(
    {
        "portcullis_cors_open",
        "portcullis_gate_open",
        "portcullis_gate_open_file",
        "portcullis_gate_reload",
        "portcullis_gate_metrics",
        "portcullis_gate_publish_metrics",
        "portcullis_gate_close",
        "portcullis_gate_free",
        "portcullis_limiter_open",
        "portcullis_limiter_open_file",
        "portcullis_limiter_close",
        "portcullis_limiter_free",
    }
)

#: Functions that change a key's state, and so wait until it is on disk under a policy with
#: ``durability = "immediate"``, or change it on the Redis store (a round trip): they release
#: the GIL for the handles of such a config. (A peek on Redis holds the GIL for its round trip.)
DURABLE: FrozenSet[str] = frozenset(
    {
        "portcullis_limiter_check",
        "portcullis_limiter_check_at",
        "portcullis_limiter_penalize",
        "portcullis_limiter_penalize_at",
        "portcullis_limiter_refund",
        "portcullis_limiter_refund_at",
        "portcullis_limiter_reset",
        "portcullis_limiter_acquire",
        "portcullis_limiter_acquire_at",
        "portcullis_limiter_release",
        "portcullis_limiter_release_at",
        "portcullis_gate_decide",
        "portcullis_gate_decide_at",
        "portcullis_gate_decide_into",
        "portcullis_gate_decide_into_at",
        "portcullis_gate_reset",
        "portcullis_outcome_release",
        "portcullis_outcome_free",
    }
)


def library_filename() -> str:
    """The shared library's file name on this platform."""
    if sys.platform == "darwin":
        return "libportcullis.dylib"
    if sys.platform == "win32":
        return "portcullis.dll"
    return "libportcullis.so"


def candidates(package_dir: Optional[Path] = None) -> List[Path]:
    """Every path looked at, in order, when ``PORTCULLIS_LIBRARY`` is not set."""
    name = library_filename()
    here = (package_dir or Path(__file__).resolve().parent).resolve()
    found: List[Path] = [here / name]
    for folder in [here, *here.parents]:
        for profile in ("release", "debug"):
            found.append(folder / "target" / profile / name)
    target_dir = os.environ.get("CARGO_TARGET_DIR")
    if target_dir:
        for profile in ("release", "debug"):
            found.append(Path(target_dir).resolve() / profile / name)
    return found


def find_library(package_dir: Optional[Path] = None) -> Path:
    """The path of the library to load; :class:`LibraryError` (listing where) if none."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise LibraryError(
                "LIBRARY_NOT_FOUND",
                f"{ENV_VAR} is set to {explicit!r}, which is not a file",
            )
        return path
    looked = candidates(package_dir)
    for path in looked:
        if path.is_file():
            return path
    where = "\n  ".join(str(p) for p in looked)
    raise LibraryError(
        "LIBRARY_NOT_FOUND",
        f"{library_filename()} not found. Install the package with `pip install "
        f"./bindings/python` from a checkout of the portcullis repository (it builds the "
        f"library and bundles it), build it with `cargo build --release --lib` there, or set "
        f"{ENV_VAR} to its path. Looked at ({ENV_VAR} unset):\n"
        f"  {where}",
    )


def declare(lib: Any) -> None:
    """Sets restype and argtypes of every function of the header on ``lib``."""
    for name, (restype, argtypes) in SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError as e:
            raise LibraryError(
                "SYMBOL_MISSING", f"{name} is missing from {getattr(lib, '_name', lib)}"
            ) from e
        fn.restype = restype
        fn.argtypes = argtypes


def check_abi(lib: Any, path: Path, expected: int = ABI_VERSION) -> None:
    """Refuses a library whose ABI version is not ``expected``."""
    found = int(lib.portcullis_abi_version())
    if found != expected:
        raise LibraryError(
            "ABI_MISMATCH",
            f"{path} has ABI version {found}, but this binding was written for ABI version "
            f"{expected}: install the portcullis Python package that matches the library, or "
            f"point {ENV_VAR} at a matching build",
        )


class Api:
    """The library's functions as one handle calls them: an attribute per function of the
    header, each a ctypes function that either holds the GIL (from a :class:`ctypes.PyDLL`) or
    releases it (from a :class:`ctypes.CDLL`), following the rule of this module.

    :func:`load` gives the two there are: ``load()`` releases the GIL for :data:`BLOCKING`
    functions only; ``load(durable=True)`` for :data:`DURABLE` ones too.
    """

    def __init__(self, holding: ctypes.PyDLL, releasing: ctypes.CDLL, path: Path,
                 releases: FrozenSet[str]) -> None:
        #: The path of the library.
        self.path = path
        #: The names of the functions that release the GIL.
        self.releases: FrozenSet[str] = releases
        self._holding = holding
        self._releasing = releasing
        for name in SIGNATURES:
            setattr(self, name, getattr(self._lib_of(name), name))

    def _lib_of(self, name: str) -> Any:
        return self._releasing if name in self.releases else self._holding

    @property
    def durable(self) -> bool:
        """Whether the calls of :data:`DURABLE` release the GIL."""
        return DURABLE <= self.releases

    def raw(self, name: str) -> Any:
        """A second function object for ``name``, without argtypes (restype: the result code),
        holding or releasing the GIL as ``name`` does here.

        Calling it with ready-made ctypes values skips ctypes' per-argument conversion, which
        costs about as much as a check itself.
        """
        lib = self._lib_of(name)
        fn = lib._FuncPtr((name, lib))
        fn.restype = c_uint32
        return fn

    def holds_gil(self, name: str) -> bool:
        """Whether function ``name`` runs with the GIL held (read from its ctypes flags)."""
        flags: int = getattr(self, name)._flags_
        return bool(flags & ctypes._FUNCFLAG_PYTHONAPI)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        # Only reached for a name that is not a function of the header.
        raise AttributeError(f"{name} is not a function of include/portcullis.h")

    def __repr__(self) -> str:
        kind = "durable" if self.durable else "fast"
        return f"<portcullis._native.Api {kind} {self.path}>"


_lock = threading.Lock()
_apis: Optional[Tuple[Api, Api]] = None


def load(durable: bool = False) -> Api:
    """The library's functions (found, loaded, declared and checked on the first call).

    ``durable``: the :class:`Api` for a handle with a policy of ``durability = "immediate"``,
    whose state-changing calls release the GIL; otherwise only :data:`BLOCKING` calls do.
    """
    apis = _apis
    if apis is None:
        apis = _load()
    return apis[1] if durable else apis[0]


def _load() -> Tuple[Api, Api]:
    global _apis
    with _lock:
        if _apis is not None:
            return _apis
        path = find_library()
        try:
            # One dlopen: the second returns the same handle, so both share the library's
            # state (and its thread-local last error).
            releasing = ctypes.CDLL(str(path))
            holding = ctypes.PyDLL(str(path))
        except OSError as e:
            raise LibraryError("LIBRARY_LOAD_FAILED", f"cannot load {path}: {e}") from e
        # The ABI version first: a library of another ABI may lack or change other symbols.
        holding.portcullis_abi_version.restype = c_uint32
        holding.portcullis_abi_version.argtypes = []
        check_abi(holding, path)
        declare(holding)
        declare(releasing)
        _apis = (
            Api(holding, releasing, path, BLOCKING),
            Api(holding, releasing, path, BLOCKING | DURABLE),
        )
        return _apis


def library_path() -> Path:
    """The path of the loaded library (loading it if needed)."""
    return load().path


def immediate_durability(config: Union[bytes, str]) -> bool:
    """Whether a config text may give a policy ``durability = "immediate"``, or names the
    Redis store (``[store] kind = "redis"``): its handle's state-changing calls can then wait
    on the disk or the network and must release the GIL.

    Read with :mod:`tomllib` (``tomli`` before Python 3.11); without a TOML parser, or for a
    text it cannot parse, any ``immediate`` in the text (or an escape that could spell it)
    counts: a false yes only costs speed, a false no would hold the GIL during a disk write.
    """
    if isinstance(config, bytes):
        try:
            text = config.decode("utf-8")
        except UnicodeDecodeError:
            return True  # the library refuses it anyway
    else:
        text = config
    if _toml is not None:
        try:
            doc = _toml.loads(text)
        except Exception:
            pass
        else:
            store = doc.get("store", {})
            if isinstance(store, dict) and store.get("kind") == "redis":
                return True
            policies = doc.get("policy", [])
            if not isinstance(policies, list):
                return False  # not a valid config: the library refuses it
            return any(
                isinstance(p, dict) and p.get("durability") == "immediate" for p in policies
            )
    return "immediate" in text or "redis" in text or "\\u" in text or "\\U" in text


def file_immediate_durability(path: Union[str, "os.PathLike[str]"]) -> bool:
    """:func:`immediate_durability` of a config file (True when it cannot be read: the library
    reports the error when it opens it)."""
    try:
        data = Path(os.fsdecode(path)).read_bytes()
    except (OSError, ValueError):
        return True
    return immediate_durability(data)


def last_error(lib: Any) -> str:
    """This thread's last error message from the library."""
    size = c_size_t(0)
    buf = (c_uint8 * 1024)()
    rc = lib.portcullis_last_error(buf, 1024, ctypes.byref(size))
    if rc == INSUFFICIENT_SIZE:
        cap = size.value
        buf = (c_uint8 * cap)()
        rc = lib.portcullis_last_error(buf, cap, ctypes.byref(size))
    if rc != OK:
        return ""
    return bytes(buf[: size.value]).decode("utf-8", "replace")


def result_name(lib: Any, code: int) -> str:
    """The name of a result code, e.g. ``PORTCULLIS_RESULT_STORE_LOCKED``."""
    name = lib.portcullis_result_name(code)
    return name.decode("ascii", "replace") if name else "PORTCULLIS_RESULT_UNKNOWN"


def text(s: Str) -> str:
    """Copies a borrowed ``portcullis_str`` out as text."""
    n = s.len
    if not n:
        return ""
    data: bytes = s.ptr[:n]
    return data.decode("utf-8", "replace")


def json_out(lib: Any, fn: Any, handle: int, first: int = 4096) -> bytes:
    """Calls a ``*_stats_json`` (or ``*_metrics``) function, growing the buffer on
    ``INSUFFICIENT_SIZE``."""
    cap = first
    for _ in range(8):
        buf = (c_uint8 * cap)()
        size = c_size_t(0)
        rc = fn(handle, buf, cap, ctypes.byref(size))
        if rc == OK:
            return bytes(buf[: size.value])
        if rc != INSUFFICIENT_SIZE:
            raise error_from_code(rc, result_name(lib, rc), last_error(lib))
        # Counters may grow between the two calls: leave some room.
        cap = max(size.value + 1024, cap * 2)
    raise error_from_code(
        INSUFFICIENT_SIZE, result_name(lib, INSUFFICIENT_SIZE), "stats kept growing"
    )


def as_bytes(value: Any, what: str) -> bytes:
    """Text as UTF-8, bytes-like as bytes; anything else is a TypeError."""
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def optional_bytes(value: Any, what: str) -> Optional[bytes]:
    """As :func:`as_bytes`, None staying None."""
    if value is None:
        return None
    return as_bytes(value, what)


def set_str(field: InStr, value: Optional[bytes]) -> None:
    """Points an input string at ``value`` (None: absent); the struct keeps ``value`` alive."""
    if value is None:
        field.ptr = None
        field.len = 0
    else:
        field.ptr = value
        field.len = len(value)
