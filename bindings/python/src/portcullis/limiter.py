"""The keyed rate limiter: ``Limiter`` and its concurrency ``Lease``."""

from __future__ import annotations

import ctypes
import json
import os
import threading
from ctypes import byref, c_bool, c_size_t, c_uint32, c_void_p
from typing import Any, Dict, Iterable, List, Optional, Type, TypeVar, Union

from . import _native
from ._handle import Handle, native_error, open_native
from .errors import InvalidArgumentError, RateLimited
from .types import Decision, Headers, HeaderStyle, decision_from_native

__all__ = ["Limiter", "Lease", "PolicyRef", "Key"]

_Self = TypeVar("_Self", bound="Limiter")

#: A policy, by name or by id.
PolicyRef = Union[str, int]
#: A key: text (encoded as UTF-8) or any bytes.
Key = Union[str, bytes, bytearray, memoryview]

_NativeDecision = _native.NativeDecision
_ONE = c_uint32(1)


def _u32(value: int, what: str) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= _native.U32_MAX:
        raise InvalidArgumentError(
            _native.INVALID_PARAMETER,
            "PORTCULLIS_RESULT_INVALID_PARAMETER",
            f"{what} {value} is out of range (0..{_native.U32_MAX})",
        )
    return value


def _u64(value: int, what: str) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= _native.U64_MAX:
        raise InvalidArgumentError(
            _native.INVALID_PARAMETER,
            "PORTCULLIS_RESULT_INVALID_PARAMETER",
            f"{what} {value} is out of range (0..{_native.U64_MAX})",
        )
    return value


class Limiter(Handle):
    """A keyed rate limiter over the ``[[policy]]`` tables of a config (and its ``[store]``).

    Thread-safe: share one limiter between threads. Times are the system clock unless a call
    is given ``now_ns`` (Unix-epoch nanoseconds), which makes decisions deterministic.

    Checks hold the GIL (they take well under a microsecond) unless a policy of the config has
    ``durability = "immediate"``: the calls that change a key's state may then wait for the
    disk, and release the GIL.

    >>> limiter = Limiter.from_config('[[policy]]\\nname = "api"\\nlimit = "10/s"\\nburst = 3\\n')
    >>> limiter.check("api", "alice").remaining
    2
    """

    _kind = "limiter"

    def __init__(self, ptr: int, lib: _native.Api) -> None:
        """Wraps an open ``portcullis_limiter``; use :meth:`from_config` or :meth:`from_file`.

        ``lib``: ``_native.load(durable=True)`` when a policy of the limiter's config has
        ``durability = "immediate"``, else ``_native.load()``.
        """
        super().__init__(lib, ptr, lib.portcullis_limiter_close, lib.portcullis_limiter_free)
        self._policies: Dict[str, int] = {}
        self._names: Dict[int, str] = {}
        # The calls without an explicit time are function objects without argtypes, called
        # with ready-made ctypes values: ctypes' per-argument conversion costs about as much as
        # the check itself. Every value passed to them is built by _decide.
        self._fn_check = lib.raw("portcullis_limiter_check")
        self._fn_check_at = lib.portcullis_limiter_check_at
        self._fn_peek = lib.raw("portcullis_limiter_peek")
        self._fn_peek_at = lib.portcullis_limiter_peek_at
        self._fn_penalize = lib.raw("portcullis_limiter_penalize")
        self._fn_penalize_at = lib.portcullis_limiter_penalize_at
        self._fn_refund = lib.raw("portcullis_limiter_refund")
        self._fn_refund_at = lib.portcullis_limiter_refund_at
        self._c_ptr = c_void_p(ptr)
        self._c_ids: Dict[int, c_uint32] = {}

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def from_config(cls: Type[_Self], config: Union[str, bytes]) -> _Self:
        """Opens a limiter from a config text (TOML: ``[store]`` and ``[[policy]]``).

        Raises ConfigError (every problem with its line and column) or a StoreError.
        """
        data = _native.as_bytes(config, "config")
        lib = _native.load(durable=_native.immediate_durability(data))
        return cls(open_native(lib.portcullis_limiter_open, lib, data), lib)

    @classmethod
    def from_file(cls: Type[_Self], path: Union[str, "os.PathLike[str]"]) -> _Self:
        """Opens a limiter from a config file; errors name the file, line and column."""
        lib = _native.load(durable=_native.file_immediate_durability(path))
        data = os.fsencode(path)
        return cls(open_native(lib.portcullis_limiter_open_file, lib, data), lib)

    # -- policies -----------------------------------------------------------------------------

    def policy(self, name: str) -> int:
        """The id of a policy by name (cached). UnknownPolicyError if there is none."""
        pid = self._policies.get(name)
        if pid is not None:
            return pid
        data = _native.as_bytes(name, "policy name")
        out = c_uint32()
        ptr = self._enter()
        try:
            rc = self._lib.portcullis_limiter_policy(ptr, data, len(data), byref(out))
        finally:
            self._exit()
        if rc != _native.OK:
            raise self._fail(rc)
        pid = out.value
        self._policies[name] = pid
        self._names[pid] = name
        return pid

    def policy_name(self, policy_id: int) -> Optional[str]:
        """The name of a policy id already looked up by :meth:`policy`, or None."""
        return self._names.get(policy_id)

    def _pid(self, policy: PolicyRef) -> int:
        if type(policy) is str:
            pid = self._policies.get(policy)
            return pid if pid is not None else self.policy(policy)
        if isinstance(policy, int) and not isinstance(policy, bool):
            return _u32(policy, "policy id")
        if isinstance(policy, str):
            return self.policy(policy)
        raise TypeError(f"policy must be a name (str) or an id (int), not {type(policy).__name__}")

    # -- deciding -----------------------------------------------------------------------------

    def _decide(self, fn: Any, fn_at: Any, policy: PolicyRef, key: Key, cost: int,
                now_ns: Optional[int]) -> Decision:
        # The hot path of every check: kept to the fewest Python operations.
        if type(policy) is str:
            pid = self._policies.get(policy)
            if pid is None:
                pid = self.policy(policy)
        elif type(policy) is int and 0 <= policy <= 0xFFFFFFFF:
            pid = policy
        else:
            pid = self._pid(policy)
        if type(key) is str:
            key = key.encode()
        elif type(key) is not bytes:
            key = _native.as_bytes(key, "key")
        if type(cost) is not int or not 0 <= cost <= 0xFFFFFFFF:
            cost = _u32(cost, "cost")
        d = _NativeDecision()
        calls = self._calls
        calls.append(None)
        try:
            if self._closing:
                raise self._closed_error()
            if now_ns is None:
                c_id = self._c_ids.get(pid)
                if c_id is None:
                    c_id = self._c_ids[pid] = c_uint32(pid)
                rc = fn(
                    self._c_ptr, c_id, key, c_size_t(len(key)),
                    _ONE if cost == 1 else c_uint32(cost), byref(d),
                )
            else:
                rc = fn_at(self._ptr, pid, key, len(key), cost, _u64(now_ns, "now_ns"), d)
        finally:
            calls.pop()
        if rc:
            raise self._fail(rc)
        return decision_from_native(d)

    def check(self, policy: PolicyRef, key: Key, cost: int = 1, *,
              now_ns: Optional[int] = None) -> Decision:
        """Decides a request of ``cost`` for ``key`` under ``policy``, consuming quota when allowed.

        A denial is a Decision with ``allowed`` False, not an exception. A concurrency policy
        raises NeedsLeaseError (use :meth:`acquire`); a cost above the policy's limit raises
        CostTooHighError.
        """
        return self._decide(self._fn_check, self._fn_check_at, policy, key, cost, now_ns)

    def peek(self, policy: PolicyRef, key: Key, cost: int = 1, *,
             now_ns: Optional[int] = None) -> Decision:
        """What :meth:`check` would answer, consuming nothing."""
        return self._decide(self._fn_peek, self._fn_peek_at, policy, key, cost, now_ns)

    def penalize(self, policy: PolicyRef, key: Key, cost: int = 1, *,
                 now_ns: Optional[int] = None) -> Decision:
        """Consumes ``cost`` whatever the verdict (e.g. count failed logins only).

        The decision is what a request of cost 1 would now get.
        """
        return self._decide(self._fn_penalize, self._fn_penalize_at, policy, key, cost, now_ns)

    def refund(self, policy: PolicyRef, key: Key, cost: int = 1, *,
               now_ns: Optional[int] = None) -> Decision:
        """Gives back ``cost`` (the backend failed). Never lifts a block.

        The decision is what a request of cost 1 would now get.
        """
        return self._decide(self._fn_refund, self._fn_refund_at, policy, key, cost, now_ns)

    def reset(self, policy: PolicyRef, key: Key) -> bool:
        """Forgets a key (unblocks a user); True if it had state."""
        pid = self._pid(policy)
        k = _native.as_bytes(key, "key")
        had = c_bool(False)
        ptr = self._enter()
        try:
            rc = self._lib.portcullis_limiter_reset(ptr, pid, k, len(k), byref(had))
        finally:
            self._exit()
        if rc != _native.OK:
            raise self._fail(rc)
        return bool(had.value)

    # -- concurrency leases ------------------------------------------------------------------

    def try_acquire(self, policy: PolicyRef, key: Key, cost: int = 1, *,
                    now_ns: Optional[int] = None) -> "Lease":
        """Takes ``cost`` leases of a concurrency policy, or none.

        Always returns a :class:`Lease`; it is truthy (``lease.acquired``) only when allowed,
        and ``lease.decision`` tells the rest. A denied lease is an inert context manager.
        """
        pid = self._pid(policy)
        k = _native.as_bytes(key, "key")
        cost = _u32(cost, "cost")
        d = _NativeDecision()
        out = c_void_p()
        ptr = self._enter()
        try:
            if now_ns is None:
                rc = self._lib.portcullis_limiter_acquire(
                    ptr, pid, k, len(k), cost, byref(d), byref(out)
                )
            else:
                rc = self._lib.portcullis_limiter_acquire_at(
                    ptr, pid, k, len(k), cost, _u64(now_ns, "now_ns"), byref(d), byref(out)
                )
        finally:
            self._exit()
        if rc != _native.OK:
            raise self._fail(rc)
        return Lease(self, out.value, decision_from_native(d), pid, now_ns)

    def acquire(self, policy: PolicyRef, key: Key, cost: int = 1, *,
                now_ns: Optional[int] = None) -> "Lease":
        """Takes ``cost`` leases of a concurrency policy; raises :class:`RateLimited` if denied.

        Use the lease as a context manager to give it back when the block ends::

            with limiter.acquire("export", api_key) as lease:
                run_export()
        """
        lease = self.try_acquire(policy, key, cost, now_ns=now_ns)
        if not lease.acquired:
            name = policy if isinstance(policy, str) else self._names.get(lease.decision.policy)
            raise RateLimited(lease.decision, name)
        return lease

    # -- headers and stats -------------------------------------------------------------------

    def headers(self, decisions: Union[Decision, Iterable[Decision]],
                style: Union[HeaderStyle, str, int] = "legacy") -> Headers:
        """The response headers for the decisions that applied to one request.

        ``style``: ``"legacy"`` (``X-RateLimit-*``), ``"ietf"`` (``RateLimit-Policy`` and
        ``RateLimit``), ``"both"`` or ``"retry_after_only"``; every style adds ``Retry-After``
        on a denial. Names are in canonical case.
        """
        items: List[Decision] = [decisions] if isinstance(decisions, Decision) else list(decisions)
        # An int goes to the library as it is (an unknown one is its InvalidArgumentError).
        st = int(style) if isinstance(style, int) else HeaderStyle.parse(style)
        array = (_NativeDecision * max(1, len(items)))()
        for i, d in enumerate(items):
            if not isinstance(d, Decision):
                raise TypeError(f"decisions must be Decision objects, not {type(d).__name__}")
            array[i] = d.to_native()
        out = c_void_p()
        ptr = self._enter()
        try:
            rc = self._lib.portcullis_limiter_headers(ptr, st, array, len(items), byref(out))
        finally:
            self._exit()
        if rc != _native.OK:
            raise self._fail(rc)
        return read_header_list(self._lib, out.value)  # type: ignore[arg-type]

    def stats(self) -> Any:
        """The limiter's counters per policy (the parsed JSON array)."""
        ptr = self._enter()
        try:
            data = _native.json_out(self._lib, self._lib.portcullis_limiter_stats_json, ptr)
        finally:
            self._exit()
        return json.loads(data)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<portcullis.Limiter {state}>"


def read_header_list(lib: _native.Api, headers: int) -> Headers:
    """Copies a ``portcullis_headers`` list out, then frees it."""
    try:
        count = ctypes.c_size_t(0)
        rc = lib.portcullis_headers_count(headers, byref(count))
        if rc != _native.OK:
            raise native_error(lib, rc)
        name, value = _native.Str(), _native.Str()
        result: Headers = []
        text = _native.text
        for i in range(count.value):
            rc = lib.portcullis_headers_get(headers, i, name, value)
            if rc != _native.OK:
                raise native_error(lib, rc)
            result.append((text(name), text(value)))
        return result
    finally:
        lib.portcullis_headers_free(headers)


class Lease:
    """Concurrency leases taken by :meth:`Limiter.acquire` / :meth:`Limiter.try_acquire`.

    Give them back with :meth:`release` or by leaving a ``with`` block; a lease garbage-collected
    while held is released then. :meth:`abandon` frees it without giving it back (the slot
    frees itself after the policy's ``lease_timeout``). Releasing is idempotent and safe from
    any thread. A lease outliving its limiter's :meth:`~Limiter.close` is abandoned. A lease
    acquired at an explicit ``now_ns`` is released at that time unless :meth:`release` is given
    another.
    """

    __slots__ = ("_limiter", "_ptr", "_lock", "_now_ns", "decision", "policy", "__weakref__")

    def __init__(self, limiter: Limiter, ptr: Optional[int], decision: Decision,
                 policy: int, now_ns: Optional[int] = None) -> None:
        self._limiter = limiter
        self._ptr = ptr or None
        self._lock = threading.Lock()
        self._now_ns = now_ns
        #: The decision of the acquisition.
        self.decision = decision
        #: The policy id.
        self.policy = policy

    @property
    def acquired(self) -> bool:
        """Whether the leases were granted."""
        return self.decision.allowed

    @property
    def held(self) -> bool:
        """Whether the leases are held (granted and not yet given back)."""
        return self._ptr is not None

    def __bool__(self) -> bool:
        return self.acquired

    def _take(self) -> Optional[int]:
        with self._lock:
            ptr, self._ptr = self._ptr, None
        return ptr

    def release(self, *, now_ns: Optional[int] = None) -> bool:
        """Gives the leases back; True if they were held.

        Released now, or at ``now_ns``; a lease acquired at an explicit ``now_ns`` is released
        at that same time unless another is given (one clock per lease).
        """
        if now_ns is None:
            now_ns = self._now_ns
        ptr = self._take()
        if ptr is None:
            return False
        limiter = self._limiter
        lib = limiter._lib
        try:
            handle = limiter._enter()
        except Exception:
            lib.portcullis_lease_free(ptr)  # the limiter is closed: abandon
            return True
        try:
            if now_ns is None:
                rc = lib.portcullis_limiter_release(handle, ptr)
            else:
                rc = lib.portcullis_limiter_release_at(handle, ptr, _u64(now_ns, "now_ns"))
        finally:
            limiter._exit()
        if rc != _native.OK:  # the library freed the lease all the same
            raise limiter._fail(rc)
        return True

    def abandon(self) -> None:
        """Frees the lease without giving it back: its slot expires after the lease timeout."""
        ptr = self._take()
        if ptr is not None:
            self._limiter._lib.portcullis_lease_free(ptr)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # pragma: no cover - nothing to report to at collection
            pass

    def __repr__(self) -> str:
        state = "held" if self.held else ("released" if self.acquired else "denied")
        return f"<portcullis.Lease policy={self.policy} {state}>"
