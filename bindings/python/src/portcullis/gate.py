"""The gate: CORS and rate limiting for every request, from one config."""

from __future__ import annotations

import json
import os
from ctypes import byref, c_bool, c_size_t, c_void_p
from typing import Any, Iterable, Optional, Type, TypeVar, Union

from . import _native
from ._handle import Handle, native_error, open_native
from .types import Action, KeyKind, NativeOutcome, Outcome

__all__ = ["Gate", "read_outcome"]

_Self = TypeVar("_Self", bound="Gate")

_ACTIONS = {a.value: a for a in Action}


def _header_list(value: Union[None, str, bytes, Iterable[str]]) -> Optional[bytes]:
    """``Access-Control-Request-Headers``: repeated values are joined with ``,``."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return _native.as_bytes(value, "request_headers")
    return ",".join(str(v) for v in value).encode("utf-8")


def _ip(value: Any) -> Optional[bytes]:
    if value is None:
        return None
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return _native.as_bytes(value, "client_ip")
    return str(value).encode("ascii")  # an ipaddress.IPv4Address / IPv6Address


def read_outcome(lib: _native.Api, ptr: int) -> Outcome:
    """Copies a ``portcullis_outcome`` out; frees it unless it holds leases (which ``lib``
    gives back when the outcome is released)."""
    keep = False
    try:
        info = _native.OutcomeInfo()
        rc = lib.portcullis_outcome_get_info(ptr, byref(info))
        if rc != _native.OK:
            raise native_error(lib, rc)
        s = _native.Str()
        rc = lib.portcullis_outcome_reason(ptr, byref(s))
        if rc != _native.OK:
            raise native_error(lib, rc)
        reason = _native.text(s)
        rc = lib.portcullis_outcome_limited_by(ptr, byref(s))
        if rc != _native.OK:
            raise native_error(lib, rc)
        limited_by = _native.text(s) or None
        count = c_size_t(0)
        rc = lib.portcullis_outcome_header_count(ptr, byref(count))
        if rc != _native.OK:
            raise native_error(lib, rc)
        name, value = _native.Str(), _native.Str()
        headers = []
        get = lib.portcullis_outcome_header
        text = _native.text
        for i in range(count.value):
            rc = get(ptr, i, name, value)
            if rc != _native.OK:
                raise native_error(lib, rc)
            headers.append((text(name), text(value)))
        native = None
        if info.leases:
            native = NativeOutcome(
                ptr, lib.portcullis_outcome_release, lib.portcullis_outcome_free
            )
            keep = True
        action = _ACTIONS.get(info.action, info.action)
        return Outcome(
            action=action,
            status=info.status,
            allowed=action == Action.PASS,
            headers=headers,
            delay=info.delay_ns / 1e9,
            retry_after_secs=info.retry_after_secs,
            remaining=None if info.remaining == _native.U32_MAX else info.remaining,
            limit=info.limit or None,
            reason=reason,
            limited_by=limited_by,
            leases=info.leases,
            delay_ns=info.delay_ns,
            _native=native,
        )
    finally:
        if not keep:
            lib.portcullis_outcome_free(ptr)


class Gate(Handle):
    """CORS and rate limiting for every request, from one config (``[store]``, ``[[policy]]``,
    ``[[route]]``, ``[cors]``, ``header_style``).

    Thread-safe: share one gate between threads (and between requests). Outcomes stay valid
    after the gate is closed.

    Decisions hold the GIL (they take about a microsecond) unless a policy of the config has
    ``durability = "immediate"``: a decision may then wait for the disk, and releases the GIL.
    """

    _kind = "gate"

    def __init__(self, ptr: int, lib: _native.Api) -> None:
        """Wraps an open ``portcullis_gate``; use :meth:`from_config` or :meth:`from_file`.

        ``lib``: ``_native.load(durable=True)`` when a policy of the gate's config has
        ``durability = "immediate"``, else ``_native.load()``.
        """
        super().__init__(lib, ptr, lib.portcullis_gate_close, lib.portcullis_gate_free)

    @classmethod
    def from_config(cls: Type[_Self], config: Union[str, bytes]) -> _Self:
        """Opens a gate from a config text (TOML).

        Raises ConfigError (every problem at once, each with its line and column) or a
        StoreError (e.g. StoreLockedError when another process holds the sled store).
        """
        data = _native.as_bytes(config, "config")
        lib = _native.load(durable=_native.immediate_durability(data))
        return cls(open_native(lib.portcullis_gate_open, lib, data), lib)

    @classmethod
    def from_file(cls: Type[_Self], path: Union[str, "os.PathLike[str]"]) -> _Self:
        """Opens a gate from a config file; errors name the file, line and column."""
        lib = _native.load(durable=_native.file_immediate_durability(path))
        data = os.fsencode(path)
        return cls(open_native(lib.portcullis_gate_open_file, lib, data), lib)

    def decide(
        self,
        method: str,
        path: str,
        *,
        origin: Optional[str] = None,
        request_method: Optional[str] = None,
        request_headers: Union[None, str, Iterable[str]] = None,
        client_ip: Any = None,
        principal: Optional[Union[str, bytes]] = None,
        tier: Optional[str] = None,
        private_network: bool = False,
        forwarded_for: Optional[str] = None,
        forwarded: Optional[str] = None,
        now_ns: Optional[int] = None,
    ) -> Outcome:
        """Decides one request.

        ``method`` is case-sensitive; ``path`` may carry a query string (ignored). ``origin``,
        ``request_method`` and ``request_headers`` are the ``Origin``,
        ``Access-Control-Request-Method`` and ``Access-Control-Request-Headers`` headers
        (None: absent); ``private_network`` is whether
        ``Access-Control-Request-Private-Network: true`` was sent. ``client_ip`` is text
        (``"203.0.113.9"``) or an ``ipaddress`` object; a malformed one raises
        InvalidArgumentError. ``principal`` is the user id or API key (None: anonymous) and
        ``tier`` its tier. ``client_ip`` is the peer (None: there is none, and a route limited
        by address refuses the request unless its ``on_missing_key`` is ``"skip"``);
        ``forwarded_for`` and ``forwarded`` are the ``X-Forwarded-For`` and ``Forwarded``
        headers, believed only when the peer is one of the config's ``trusted_proxies``.
        ``now_ns`` (Unix-epoch nanoseconds) decides at an explicit time.

        A 429 or a 403 is an :class:`Outcome`, not an exception. Release an outcome that holds
        concurrency leases (``outcome.release()``) when the response is done. Leases are given
        back on the system clock (the C ABI has no release at an explicit time), so decide
        requests of concurrency limits without ``now_ns``.
        """
        lib = self._lib
        as_bytes, opt = _native.as_bytes, _native.optional_bytes
        req = _native.Request()
        m = as_bytes(method, "method")
        req.method.ptr, req.method.len = m, len(m)
        p = as_bytes(path, "path")
        req.path.ptr, req.path.len = p, len(p)
        set_str = _native.set_str
        set_str(req.origin, opt(origin, "origin"))
        set_str(req.request_method, opt(request_method, "request_method"))
        set_str(req.request_headers, _header_list(request_headers))
        set_str(req.client_ip, _ip(client_ip))
        set_str(req.principal, opt(principal, "principal"))
        set_str(req.tier, opt(tier, "tier"))
        req.private_network = bool(private_network)
        set_str(req.forwarded_for, opt(forwarded_for, "forwarded_for"))
        set_str(req.forwarded, opt(forwarded, "forwarded"))
        out = c_void_p()
        ptr = self._enter()
        try:
            if now_ns is None:
                rc = lib.portcullis_gate_decide(ptr, byref(req), byref(out))
            else:
                if not isinstance(now_ns, int) or not 0 <= now_ns <= _native.U64_MAX:
                    raise ValueError(f"now_ns must be an int in 0..2**64-1, not {now_ns!r}")
                rc = lib.portcullis_gate_decide_at(ptr, byref(req), now_ns, byref(out))
        finally:
            self._exit()
        if rc != _native.OK:
            raise native_error(lib, rc)
        return read_outcome(lib, out.value)  # type: ignore[arg-type]

    def reload(self, config: Union[str, bytes]) -> None:
        """Applies a new config text, keeping the counters of unchanged policies.

        An invalid config raises ConfigError and the old one keeps running; a change of
        ``[store]`` raises ReloadRefusedError. Whether decisions release the GIL follows the new
        config's durability.
        """
        data = _native.as_bytes(config, "config")
        old = self._lib
        new = _native.load(durable=_native.immediate_durability(data))
        # Release the GIL from before the new policies apply; hold it again only once the old
        # ones are gone (outcomes keep the functions they were decided with, see read_outcome).
        if new.durable:
            self._lib = new
        applied = False
        try:
            ptr = self._enter()
            try:
                rc = old.portcullis_gate_reload(ptr, data, len(data))
            finally:
                self._exit()
            if rc != _native.OK:
                raise native_error(old, rc)
            applied = True
        finally:
            self._lib = new if applied else old

    def reset(self, policy: str, kind: Union[KeyKind, str, int], key: Union[str, bytes]) -> bool:
        """Forgets a key's state under a policy (unblocks a user); True if it had state.

        ``kind`` is ``"ip"`` (key: an address), ``"principal"``, ``"route"`` (the route's
        ``match`` text) or ``"global"``.
        """
        pol = _native.as_bytes(policy, "policy")
        k = _native.as_bytes(key, "key")
        # An int goes to the library as it is (an unknown one is its InvalidArgumentError).
        kk = int(kind) if isinstance(kind, int) else KeyKind.parse(kind)
        had = c_bool(False)
        ptr = self._enter()
        try:
            rc = self._lib.portcullis_gate_reset(
                ptr, pol, len(pol), kk, k, len(k), byref(had)
            )
        finally:
            self._exit()
        if rc != _native.OK:
            raise native_error(self._lib, rc)
        return bool(had.value)

    def stats(self) -> Any:
        """The gate's counters (per route and limit, per policy, top limited keys, recent
        denials): the parsed JSON object."""
        ptr = self._enter()
        try:
            data = _native.json_out(self._lib, self._lib.portcullis_gate_stats_json, ptr)
        finally:
            self._exit()
        return json.loads(data)

    def metrics(self, openmetrics: bool = False) -> str:
        """The gate's metrics for a ``/metrics`` endpoint: the Prometheus text format 0.0.4, or
        OpenMetrics 1.0 with ``openmetrics=True``; serve it with :meth:`metrics_content_type`.
        With a shared store the counters are those of every process using it (see
        docs/MONITORING.md)."""
        fmt = _native.MetricsFormat.OPEN_METRICS if openmetrics else _native.MetricsFormat.PROMETHEUS
        fn = self._lib.portcullis_gate_metrics

        def render(handle: int, buf: Any, cap: int, size: Any) -> int:
            return int(fn(handle, int(fmt), buf, cap, size))

        ptr = self._enter()
        try:
            data = _native.json_out(self._lib, render, ptr, first=16384)
        finally:
            self._exit()
        return data.decode("utf-8")

    @staticmethod
    def metrics_content_type(openmetrics: bool = False) -> str:
        """The ``Content-Type`` to serve :meth:`metrics` with."""
        if openmetrics:
            return "application/openmetrics-text; version=1.0.0; charset=utf-8"
        return "text/plain; version=0.0.4; charset=utf-8"

    def publish_metrics(self) -> None:
        """Copies this process's counters to the shared store's board now, so that a scrape
        served by another worker counts them (decisions do it at most once a second; call it
        from a timer if workers may sit idle). Nothing to do without a shared store."""
        ptr = self._enter()
        try:
            rc = self._lib.portcullis_gate_publish_metrics(ptr)
        finally:
            self._exit()
        if rc != _native.OK:
            raise native_error(self._lib, rc)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<portcullis.Gate {state}>"
