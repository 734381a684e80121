"""Plain values returned by portcullis: decisions, outcomes and the enums they use.

Durations are ``float`` seconds everywhere (``reset_after``, ``retry_after``, ``delay``); the
exact nanosecond values are kept next to them (``*_ns``), and ``retry_after_secs`` is the
whole-second ``Retry-After`` value, rounded up.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

from . import _native

__all__ = [
    "Action",
    "CorsKind",
    "HeaderStyle",
    "KeyKind",
    "Decision",
    "Outcome",
    "CorsDecision",
    "Headers",
]

#: Response headers as (name, value) pairs, in the order the library gave them.
Headers = List[Tuple[str, str]]

_NS = 1e9


# The enums are declared with the rest of the C ABI (checked against the header there).
Action = _native.Action
CorsKind = _native.CorsKind
HeaderStyle = _native.HeaderStyle
KeyKind = _native.KeyKind


@dataclass(frozen=True)
class Decision:
    """One policy's verdict on one request (``portcullis_decision``)."""

    #: The request may proceed (after ``delay``).
    allowed: bool
    #: The most a key can have available at once (burst, window limit or leases).
    limit: int
    #: Units available right after this decision.
    remaining: int
    #: Seconds until the key has fully recovered.
    reset_after: float
    #: Denied: seconds until this request would be allowed. Allowed: until another of the same
    #: cost would be (0 if now).
    retry_after: float
    #: ``Retry-After`` in whole seconds, rounded up (never too early).
    retry_after_secs: int
    #: Shaping: seconds to wait before proceeding; 0 otherwise.
    delay: float
    #: The id of the policy that decided.
    policy: int
    #: When it was decided, Unix-epoch nanoseconds.
    at_ns: int
    #: ``reset_after`` in exact nanoseconds.
    reset_after_ns: int = field(default=0, repr=False)
    #: ``retry_after`` in exact nanoseconds.
    retry_after_ns: int = field(default=0, repr=False)
    #: ``delay`` in exact nanoseconds.
    delay_ns: int = field(default=0, repr=False)

    def __bool__(self) -> bool:
        return self.allowed

    def to_native(self) -> _native.NativeDecision:
        """The C struct of this decision (for rendering headers)."""
        d = _native.NativeDecision()
        d.allowed = self.allowed
        d.limit = self.limit
        d.remaining = self.remaining
        d.policy = self.policy
        d.reset_after_ns = self.reset_after_ns or round(self.reset_after * _NS)
        d.retry_after_ns = self.retry_after_ns or round(self.retry_after * _NS)
        d.retry_after_secs = self.retry_after_secs
        d.delay_ns = self.delay_ns or round(self.delay * _NS)
        d.at_ns = self.at_ns
        return d


_new = object.__new__
# portcullis_decision: bool, 3 x uint32, 5 x uint64 (56 bytes, C alignment, native order).
_unpack = struct.Struct("=?3x3I5Q").unpack_from


def decision_from_native(d: _native.NativeDecision) -> Decision:
    """A :class:`Decision` from the C struct (the fast path of every limiter call)."""
    allowed, limit, remaining, policy, reset_ns, retry_ns, retry_secs, delay_ns, at_ns = _unpack(d)
    obj = _new(Decision)
    obj.__dict__.update(
        allowed=allowed,
        limit=limit,
        remaining=remaining,
        reset_after=reset_ns / _NS,
        retry_after=retry_ns / _NS,
        retry_after_secs=retry_secs,
        delay=delay_ns / _NS,
        policy=policy,
        at_ns=at_ns,
        reset_after_ns=reset_ns,
        retry_after_ns=retry_ns,
        delay_ns=delay_ns,
    )
    return obj


def header_value(headers: Headers, name: str) -> Optional[str]:
    """The first value of a header, its name compared without case; None when absent."""
    wanted = name.lower()
    for n, v in headers:
        if n.lower() == wanted:
            return v
    return None


class NativeOutcome:
    """Owns a ``portcullis_outcome`` that still holds concurrency leases."""

    __slots__ = ("_ptr", "_lock", "_release", "_free", "__weakref__")

    def __init__(self, ptr: int, release: Callable[[Any], int], free: Callable[[Any], None]):
        self._ptr: Optional[int] = ptr
        self._lock = threading.Lock()
        self._release = release
        self._free = free

    @property
    def held(self) -> bool:
        return self._ptr is not None

    def release(self) -> bool:
        """Gives the leases back and frees the outcome; True the first time only."""
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr is None:
            return False
        try:
            self._release(ptr)
        finally:
            self._free(ptr)
        return True

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


@dataclass(frozen=True)
class Outcome:
    """The gate's answer to one request.

    Everything is copied out of the library's memory. When the request took concurrency
    leases (``leases > 0``), the outcome keeps the native outcome alive and holds them until
    :meth:`release` is called (or the outcome is garbage-collected): call it when the response
    is done, or use the outcome as a context manager.
    """

    #: What to do: pass the request to the handler, or answer it (204, 403 or 429).
    action: Action
    #: The HTTP status to answer with: 204, 403 or 429; 0 when the handler answers.
    status: int
    #: Whether the handler is to be called (``action`` is ``PASS``).
    allowed: bool
    #: Headers to add to the response. A ``Vary`` value is to be appended to the response's own.
    headers: Headers
    #: Shaping: seconds to wait before calling the handler.
    delay: float
    #: On a 429: ``Retry-After`` in whole seconds, rounded up; 0 otherwise.
    retry_after_secs: int
    #: The fewest units remaining among the enforced limits that applied (None: none applied).
    remaining: Optional[int]
    #: The limit of that policy (None: none applied).
    limit: Optional[int]
    #: Why the gate decided so, as a sentence.
    reason: str
    #: The name of the policy that limited the request, or None.
    limited_by: Optional[str]
    #: Concurrency leases taken for this request, held until :meth:`release`.
    leases: int = 0
    #: ``delay`` in exact nanoseconds.
    delay_ns: int = field(default=0, repr=False)
    _native: Optional[NativeOutcome] = field(default=None, repr=False, compare=False)

    def header(self, name: str) -> Optional[str]:
        """The value of a header of the outcome (name compared without case), or None."""
        return header_value(self.headers, name)

    @property
    def holds_leases(self) -> bool:
        """Whether leases are still held (not yet released)."""
        return self._native is not None and self._native.held

    def release(self) -> None:
        """Gives the request's concurrency leases back (idempotent; the values stay readable)."""
        if self._native is not None:
            self._native.release()

    def __enter__(self) -> "Outcome":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True)
class CorsDecision:
    """One CORS decision (``portcullis_cors_decision``), copied out."""

    #: The kind of request.
    kind: CorsKind
    #: Whether the request is allowed (always for a request that is not CORS).
    allowed: bool
    #: For a preflight: 204 when allowed, 403 when refused; 0 for other requests.
    status: int
    #: Headers to add (names in lower case). A ``Vary`` value is to be appended.
    headers: Headers
    #: Why a refused request was refused (empty when allowed).
    reason: str

    def header(self, name: str) -> Optional[str]:
        """The value of a header (name compared without case), or None."""
        return header_value(self.headers, name)
