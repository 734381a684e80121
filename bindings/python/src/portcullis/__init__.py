"""portcullis: rate limiting and CORS decisions for HTTP APIs (Python bindings over ctypes).

- :class:`Limiter`: keyed rate limiting over named policies (GCRA, fixed and sliding windows,
  leaky-bucket shaping, concurrency leases, blocks), with ``X-RateLimit-*`` / IETF headers.
- :class:`Gate`: CORS and rate limiting for every request from one TOML config; the WSGI and
  ASGI middlewares (:mod:`portcullis.wsgi`, :mod:`portcullis.asgi`) put it in front of an app.
- :class:`Cors`: the strict CORS engine alone.

The shared library ``libportcullis`` is loaded on first use (see :mod:`portcullis._native`
for where it is looked for); :func:`load_library` loads it at once.
"""

from __future__ import annotations

from pathlib import Path

from . import _native
from .cors import Cors
from .errors import (
    ClosedError,
    ConfigError,
    CorsPolicyError,
    CostTooHighError,
    InternalError,
    InvalidArgumentError,
    LibraryError,
    NeedsLeaseError,
    NotConcurrencyError,
    PolicyUsageError,
    PortcullisError,
    RateLimited,
    ReloadRefusedError,
    StoreCorruptError,
    StoreError,
    StoreForeignError,
    StoreIOError,
    StoreForkedError,
    StoreRedisError,
    StoreUnavailableError,
    StoreLockedError,
    StoreVersionError,
    UnknownPolicyError,
)
from .gate import Gate
from .limiter import Lease, Limiter
from .types import (
    Action,
    CorsDecision,
    CorsKind,
    Decision,
    Headers,
    HeaderStyle,
    KeyKind,
    Outcome,
)

__version__ = "0.1.0"

#: The ABI version this binding was written for.
ABI_VERSION = _native.ABI_VERSION


def load_library() -> Path:
    """Loads the shared library now (LibraryError if it is missing or of another ABI), and
    returns its path."""
    return _native.library_path()


def library_version() -> str:
    """The shared library's version, e.g. ``"0.1.0"``."""
    version: bytes = _native.load().portcullis_version()
    return version.decode("ascii")


__all__ = [
    "ABI_VERSION",
    "Action",
    "ClosedError",
    "ConfigError",
    "Cors",
    "CorsDecision",
    "CorsKind",
    "CorsPolicyError",
    "CostTooHighError",
    "Decision",
    "Gate",
    "HeaderStyle",
    "Headers",
    "InternalError",
    "InvalidArgumentError",
    "KeyKind",
    "Lease",
    "LibraryError",
    "Limiter",
    "NeedsLeaseError",
    "NotConcurrencyError",
    "Outcome",
    "PolicyUsageError",
    "PortcullisError",
    "RateLimited",
    "ReloadRefusedError",
    "StoreCorruptError",
    "StoreError",
    "StoreForeignError",
    "StoreIOError",
    "StoreForkedError",
    "StoreRedisError",
    "StoreUnavailableError",
    "StoreLockedError",
    "StoreVersionError",
    "UnknownPolicyError",
    "library_version",
    "load_library",
]
