"""The life of a native handle: shared by any number of threads, closed once, freed once.

A call marks itself in flight (``_enter``/``_exit``) before it touches the pointer, and
``close()`` marks the handle closing and then waits for the calls in flight before it frees the
pointer, so a ``close()`` racing with calls on other threads makes them raise
:class:`~portcullis.errors.ClosedError` instead of touching freed memory. Marking is a list
append and pop, atomic in CPython.

Handles still open when the interpreter exits are closed by an ``atexit`` hook, so a sled store
is flushed even if the program never closed it.
"""

from __future__ import annotations

import atexit
import ctypes
import threading
import time
import weakref
from typing import Callable, List, Optional, TypeVar

from . import _native
from .errors import ClosedError, PortcullisError, error_from_code

_live: "weakref.WeakSet[Handle]" = weakref.WeakSet()
_H = TypeVar("_H", bound="Handle")


def native_error(lib: _native.Api, rc: int) -> PortcullisError:
    """The exception for result ``rc`` of a call just made on this thread."""
    return error_from_code(rc, _native.result_name(lib, rc), _native.last_error(lib))


def open_native(open_fn: Callable[..., int], lib: _native.Api, data: bytes) -> int:
    """Calls a ``portcullis_*_open*`` function on ``data``: the new pointer, or its error."""
    out = ctypes.c_void_p()
    rc = open_fn(data, len(data), ctypes.byref(out))
    if rc != _native.OK or out.value is None:
        raise native_error(lib, rc)
    return out.value


@atexit.register
def _close_all() -> None:
    for handle in list(_live):
        try:
            handle.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass


class Handle:
    """Base of Gate, Limiter and Cors: owns one native pointer.

    ``_lib`` is the :class:`~portcullis._native.Api` its calls go through: which of them hold
    the GIL and which release it follows the rule of :mod:`portcullis._native`.
    """

    _kind = "handle"

    def __init__(self, lib: _native.Api, ptr: int, close_fn: Optional[Callable[[int], int]],
                 free_fn: Callable[[int], None]) -> None:
        self._lib = lib
        self._ptr: Optional[int] = ptr
        self._calls: List[None] = []
        self._closing = False
        self._close_lock = threading.Lock()
        self._close_fn = close_fn
        self._free_fn = free_fn
        _live.add(self)

    # -- calls --------------------------------------------------------------------------------

    def _enter(self) -> int:
        """Marks a call in flight and gives the pointer; ClosedError once closing."""
        calls = self._calls
        calls.append(None)
        if self._closing:
            calls.pop()
            raise self._closed_error()
        return self._ptr  # type: ignore[return-value]

    def _exit(self) -> None:
        self._calls.pop()

    def _closed_error(self) -> ClosedError:
        return ClosedError(
            _native.CLOSED, "PORTCULLIS_RESULT_CLOSED", f"the {self._kind} is closed"
        )

    def _fail(self, rc: int) -> PortcullisError:
        """The exception for result ``rc`` of a call just made on this thread."""
        return native_error(self._lib, rc)

    # -- closing ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closing

    def close(self) -> None:
        """Flushes the counters to the store (if any) and frees the handle. Idempotent.

        Calls in flight on other threads finish first; later calls raise ClosedError. Raises a
        StoreError if the final flush failed (the handle is freed all the same).
        """
        with self._close_lock:
            if self._closing:
                return
            self._closing = True
        while self._calls:
            time.sleep(0.0005)
        ptr, self._ptr = self._ptr, None
        _live.discard(self)
        if not ptr:
            return
        error: Optional[PortcullisError] = None
        try:
            if self._close_fn is not None:
                rc = self._close_fn(ptr)
                if rc != _native.OK and rc != _native.CLOSED:
                    error = self._fail(rc)
        finally:
            self._free_fn(ptr)
        if error is not None:
            raise error

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - a failed flush at collection has no caller
            pass
