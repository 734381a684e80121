"""The CORS engine alone, from the ``[cors]`` table of a config."""

from __future__ import annotations

import os
from ctypes import byref, c_size_t, c_void_p
from pathlib import Path
from typing import Iterable, Optional, Type, TypeVar, Union

from . import _native
from ._handle import Handle, native_error, open_native
from .errors import PortcullisError, error_class
from .gate import _header_list
from .types import CorsDecision, CorsKind

__all__ = ["Cors"]

_Self = TypeVar("_Self", bound="Cors")

_KINDS = {k.value: k for k in CorsKind}


class Cors(Handle):
    """A validated CORS policy (the ``[cors]`` table of a config). Thread-safe.

    Header names it renders are in lower case.
    """

    _kind = "CORS policy"

    def __init__(self, ptr: int, lib: _native.Api) -> None:
        """Wraps an open ``portcullis_cors``; use :meth:`from_config` or :meth:`from_file`."""
        super().__init__(lib, ptr, None, lib.portcullis_cors_free)

    @classmethod
    def from_config(cls: Type[_Self], config: Union[str, bytes]) -> _Self:
        """Builds the policy of a config text's ``[cors]`` table.

        A config without one raises CorsPolicyError; an insecure or malformed policy raises
        ConfigError.
        """
        lib = _native.load()
        data = _native.as_bytes(config, "config")
        return cls(open_native(lib.portcullis_cors_open, lib, data), lib)

    @classmethod
    def from_file(cls: Type[_Self], path: Union[str, "os.PathLike[str]"]) -> _Self:
        """As :meth:`from_config`, reading the file; errors are prefixed with its path."""
        text = Path(path).read_bytes()
        try:
            return cls.from_config(text)
        except PortcullisError as e:
            raise error_class(e.code)(e.code, e.name, f"{os.fspath(path)}: {e.message}") from None

    def decide(
        self,
        method: str,
        *,
        origin: Optional[str] = None,
        request_method: Optional[str] = None,
        request_headers: Union[None, str, Iterable[str]] = None,
        private_network: bool = False,
    ) -> CorsDecision:
        """Decides one request from its method and CORS headers (None: absent).

        A refusal is a CorsDecision with ``allowed`` False (``status`` 403 for a preflight),
        with a ``reason``.
        """
        lib = self._lib
        opt = _native.optional_bytes
        req = _native.CorsRequest()
        m = _native.as_bytes(method, "method")
        req.method.ptr, req.method.len = m, len(m)
        _native.set_str(req.origin, opt(origin, "origin"))
        _native.set_str(req.request_method, opt(request_method, "request_method"))
        _native.set_str(req.request_headers, _header_list(request_headers))
        req.private_network = bool(private_network)
        out = c_void_p()
        ptr = self._enter()
        try:
            rc = lib.portcullis_cors_decide(ptr, byref(req), byref(out))
        finally:
            self._exit()
        if rc != _native.OK:
            raise native_error(lib, rc)
        d = out.value
        try:
            info = _native.CorsInfo()
            rc = lib.portcullis_cors_decision_get_info(d, byref(info))
            if rc != _native.OK:
                raise native_error(lib, rc)
            s = _native.Str()
            rc = lib.portcullis_cors_decision_reason(d, byref(s))
            if rc != _native.OK:
                raise native_error(lib, rc)
            reason = _native.text(s)
            count = c_size_t(0)
            rc = lib.portcullis_cors_decision_header_count(d, byref(count))
            if rc != _native.OK:
                raise native_error(lib, rc)
            name, value = _native.Str(), _native.Str()
            headers = []
            for i in range(count.value):
                rc = lib.portcullis_cors_decision_header(d, i, name, value)
                if rc != _native.OK:
                    raise native_error(lib, rc)
                headers.append((_native.text(name), _native.text(value)))
        finally:
            lib.portcullis_cors_decision_free(d)
        return CorsDecision(
            kind=_KINDS.get(info.kind, info.kind),
            allowed=bool(info.allowed),
            status=info.status,
            headers=headers,
            reason=reason,
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<portcullis.Cors {state}>"
