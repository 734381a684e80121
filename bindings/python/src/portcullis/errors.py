"""The exceptions of portcullis.

Every failed call of the library raises a :class:`PortcullisError` subclass carrying the result
code (``code``), its name (``name``, e.g. ``"PORTCULLIS_RESULT_STORE_LOCKED"``) and the message
the library gave for it (``message``, read on the same thread right after the call).

============================  ==========================================  ==================
exception                     result codes                                also a
============================  ==========================================  ==================
InvalidArgumentError          100 NULL_PARAMETER, 101 INVALID_PARAMETER,  ValueError
                              102 INVALID_UTF8, 106 OUT_OF_RANGE
InternalError                 103 INSUFFICIENT_SIZE, 104 PANIC            RuntimeError
ClosedError                   105 CLOSED                                  RuntimeError
ConfigError                   200 INVALID_CONFIG                          ValueError
ReloadRefusedError            205 RELOAD_REFUSED (a ConfigError)
CorsPolicyError               206 INVALID_CORS_POLICY (a ConfigError)
UnknownPolicyError            201 UNKNOWN_POLICY                          LookupError
PolicyUsageError              (202-204, below)                            ValueError
CostTooHighError              202 COST_TOO_HIGH
NeedsLeaseError               203 NEEDS_LEASE
NotConcurrencyError           204 NOT_CONCURRENCY
StoreError                    (300-307, below)
StoreLockedError              300 STORE_LOCKED
StoreCorruptError             301 STORE_CORRUPT
StoreForeignError             302 STORE_FOREIGN
StoreVersionError             303 STORE_VERSION
StoreIOError                  304 STORE_IO
StoreForkedError              305 STORE_FORKED
StoreRedisError               306 STORE_REDIS
StoreUnavailableError         307 STORE_UNAVAILABLE
LibraryError                  no code (-1): the library cannot be used    ImportError
============================  ==========================================  ==================

:class:`RateLimited` is not an error of the library but a verdict: it is raised by
``Limiter.acquire`` when no lease is available, and carries the decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional, Type

if TYPE_CHECKING:  # pragma: no cover
    from .types import Decision

__all__ = [
    "PortcullisError",
    "InvalidArgumentError",
    "InternalError",
    "ClosedError",
    "ConfigError",
    "ReloadRefusedError",
    "CorsPolicyError",
    "UnknownPolicyError",
    "PolicyUsageError",
    "CostTooHighError",
    "NeedsLeaseError",
    "NotConcurrencyError",
    "StoreError",
    "StoreLockedError",
    "StoreCorruptError",
    "StoreForeignError",
    "StoreVersionError",
    "StoreIOError",
    "StoreForkedError",
    "StoreRedisError",
    "StoreUnavailableError",
    "LibraryError",
    "RateLimited",
]


class PortcullisError(Exception):
    """A call of the portcullis library failed.

    ``code`` is the ``portcullis_result`` value, ``name`` its name and ``message`` the
    library's explanation (for a config: every problem with its line and column).
    """

    code: int
    name: str
    message: str

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message or name)
        self.code = code
        self.name = name
        self.message = message

    def __str__(self) -> str:
        return self.message or self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, name={self.name!r}, message={self.message!r})"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.code, self.name, self.message))


class InvalidArgumentError(PortcullisError, ValueError):
    """An argument is NULL, out of range or malformed (an IP address, a style, a cost)."""


class InternalError(PortcullisError, RuntimeError):
    """An internal error was caught at the boundary; the handle may be used again."""


class ClosedError(PortcullisError, RuntimeError):
    """The handle was closed."""


class ConfigError(PortcullisError, ValueError):
    """The config text or file is invalid; the message names each line and column."""


class ReloadRefusedError(ConfigError):
    """A reload changed something that cannot change while running (the store)."""


class CorsPolicyError(ConfigError):
    """The CORS part of the config is invalid, or missing where a CORS engine is asked for."""


class UnknownPolicyError(PortcullisError, LookupError):
    """No policy of that name or id."""

    def __str__(self) -> str:  # LookupError would quote the message like a KeyError does not
        return self.message or self.name


class PolicyUsageError(PortcullisError, ValueError):
    """A policy was used in a way it does not allow."""


class CostTooHighError(PolicyUsageError):
    """The cost exceeds what the policy allows at once: it would be denied forever."""


class NeedsLeaseError(PolicyUsageError):
    """A concurrency policy was checked: acquire a lease instead."""


class NotConcurrencyError(PolicyUsageError):
    """A lease was asked of a policy that is not a concurrency limit."""


class StoreError(PortcullisError):
    """The persistent store failed; the message names its path."""


class StoreLockedError(StoreError):
    """Another process (or handle) holds the sled store: several worker processes share one
    limiter through the shared store (``[store] kind = "shared"``)."""


class StoreCorruptError(StoreError):
    """The store failed its checks."""


class StoreForeignError(StoreError):
    """The folder holds something that is not a portcullis store."""


class StoreVersionError(StoreError):
    """The store was written by another format version."""


class StoreIOError(StoreError):
    """Reading or writing the store failed."""


class StoreForkedError(StoreError):
    """A sled store opened before ``fork()`` (``gunicorn --preload``) was used in the child:
    open it in each worker, or use the shared store (``[store] kind = "shared"``)."""


class StoreRedisError(StoreError):
    """The Redis store cannot be used as configured: a bad URL or key prefix, an unreachable
    server or a refused password, when the gate or limiter is opened."""


class StoreUnavailableError(StoreError):
    """Redis did not answer within its timeout for ``peek``, ``penalize``, ``refund`` or
    ``reset`` (a check never raises it: the store's ``on_error`` answers)."""


class LibraryError(PortcullisError, ImportError):  # type: ignore[misc]
    """The shared library cannot be found, loaded, or has another ABI version.

    ``code`` is -1 (not a library result); ``name`` is ``LIBRARY_NOT_FOUND``,
    ``LIBRARY_LOAD_FAILED``, ``SYMBOL_MISSING`` or ``ABI_MISMATCH``.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(-1, name, message)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.name, self.message))


class RateLimited(Exception):
    """A request was denied: ``decision`` says why and for how long (``retry_after``)."""

    decision: "Decision"

    def __init__(self, decision: "Decision", policy: Optional[str] = None) -> None:
        self.decision = decision
        self.policy = policy
        what = f"policy {policy!r}" if policy is not None else f"policy {decision.policy}"
        super().__init__(
            f"rate limited by {what}: retry after {decision.retry_after:.3f}s "
            f"(Retry-After: {decision.retry_after_secs})"
        )

    @property
    def retry_after(self) -> float:
        """Seconds until the request would be allowed."""
        return self.decision.retry_after

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.decision, self.policy))


_BY_CODE: Dict[int, Type[PortcullisError]] = {
    100: InvalidArgumentError,
    101: InvalidArgumentError,
    102: InvalidArgumentError,
    103: InternalError,
    104: InternalError,
    105: ClosedError,
    106: InvalidArgumentError,
    200: ConfigError,
    201: UnknownPolicyError,
    202: CostTooHighError,
    203: NeedsLeaseError,
    204: NotConcurrencyError,
    205: ReloadRefusedError,
    206: CorsPolicyError,
    300: StoreLockedError,
    301: StoreCorruptError,
    302: StoreForeignError,
    303: StoreVersionError,
    304: StoreIOError,
    305: StoreForkedError,
    306: StoreRedisError,
    307: StoreUnavailableError,
}


def error_class(code: int) -> Type[PortcullisError]:
    """The exception class of a result code (unknown codes: the closest family, or the base)."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls
    if 100 <= code < 200:
        return InvalidArgumentError
    if 200 <= code < 300:
        return ConfigError
    if 300 <= code < 400:
        return StoreError
    return PortcullisError


def error_from_code(code: int, name: str, message: str) -> PortcullisError:
    """The exception for a failed call."""
    return error_class(code)(code, name, message)
