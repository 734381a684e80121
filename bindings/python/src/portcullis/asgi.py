"""An ASGI middleware putting a :class:`~portcullis.Gate` in front of an app.

.. code-block:: python

    from fastapi import FastAPI
    from portcullis import Gate
    from portcullis.asgi import PortcullisMiddleware

    app = FastAPI()
    app.add_middleware(PortcullisMiddleware, gate=Gate.from_file("portcullis.toml"))

For every HTTP request the gate decides, and the middleware answers preflights (204), CORS
refusals (403) and rate-limited requests (429 with ``Retry-After``, the rate-limit headers and
the CORS headers of an allowed origin, and a short JSON body) itself; other requests wait for
the outcome's ``delay`` without blocking the loop, go to the app, and get the gate's headers
added to the response (``Vary`` appended to the app's own, any other header of the gate
replacing the app's of the same name). The request's concurrency leases are given back once the
last body chunk is sent, or when the app returns or fails. WebSocket and lifespan scopes pass
through untouched.

The event loop never waits on the gate: by default (``offload=True``) every ``gate.decide`` runs
in a worker thread (``anyio.to_thread.run_sync`` when anyio is installed, as it is with
Starlette and FastAPI, else the loop's default executor, or ``executor`` when given), since a
decision of a gate with a sled store may wait for a disk flush (``durability = "immediate"``);
such a decision releases the GIL while it waits, so the loop runs on. For a gate with a memory
store ``offload=False`` decides on the loop itself, which saves the thread hop (tens of
microseconds) and is safe: such a decision never does I/O.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from concurrent.futures import Executor
from typing import Any, Awaitable, Callable, Dict, List, MutableMapping, Optional, Tuple, Union

from ._http import merge_headers, refusal, valid_ip
from .gate import Gate
from .types import Outcome

try:  # anyio comes with Starlette / FastAPI; plain asyncio is used without it
    import anyio
    import anyio.to_thread

    _HAVE_ANYIO = True
except ImportError:  # pragma: no cover - exercised only without anyio
    _HAVE_ANYIO = False

__all__ = ["PortcullisMiddleware", "Scope", "Extractor"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Takes the ASGI scope, returns a value or None (or an awaitable of one).
Extractor = Callable[[Scope], Union[Optional[str], Awaitable[Optional[str]]]]


def header(scope: Scope, name: str) -> Optional[str]:
    """A request header of the scope (repeated ones joined with ``,``), or None."""
    wanted = name.lower().encode("latin-1")
    values = [v.decode("latin-1") for n, v in scope.get("headers", ()) if n.lower() == wanted]
    if not values:
        return None
    return ",".join(values)


def default_client_ip(scope: Scope) -> Optional[str]:
    """The host of ``scope["client"]`` when it is an IP address (behind a proxy, use the
    server's forwarded-headers support, e.g. uvicorn's ``--proxy-headers``)."""
    client = scope.get("client")
    if not client:
        return None
    return valid_ip(str(client[0]))


def _raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if isinstance(raw, (bytes, bytearray)) and raw:
        return bytes(raw).decode("latin-1")
    return scope.get("path") or "/"


def _none(scope: Scope) -> Optional[str]:
    return None


async def _value(extractor: Extractor, scope: Scope) -> Optional[str]:
    value = extractor(scope)
    if inspect.isawaitable(value):
        value = await value
    return value


class PortcullisMiddleware:
    """Gate every HTTP request of an ASGI app.

    ``client_ip``, ``principal`` and ``tier`` each take the scope and return text or None
    (plain or async functions): by default the client is ``scope["client"]`` and requests have
    no principal nor tier. ``offload`` and ``executor``: see the module's documentation.
    """

    def __init__(
        self,
        app: ASGIApp,
        gate: Gate,
        *,
        client_ip: Extractor = default_client_ip,
        principal: Extractor = _none,
        tier: Extractor = _none,
        offload: bool = True,
        executor: Optional[Executor] = None,
    ) -> None:
        self.app = app
        self.gate = gate
        self.client_ip = client_ip
        self.principal = principal
        self.tier = tier
        self.offload = offload
        self.executor = executor

    async def decide(self, scope: Scope) -> Outcome:
        """The gate's outcome for a request (in a worker thread when ``offload``)."""
        headers: Dict[bytes, List[bytes]] = {}
        for n, v in scope.get("headers", ()):
            headers.setdefault(bytes(n).lower(), []).append(bytes(v))

        def get(name: bytes) -> Optional[str]:
            values = headers.get(name)
            return None if values is None else ",".join(v.decode("latin-1") for v in values)

        private = get(b"access-control-request-private-network") or ""
        call = functools.partial(
            self.gate.decide,
            scope.get("method", "GET"),
            # The raw target when the server gives it: the gate resolves it as a server would.
            _raw_path(scope),
            origin=get(b"origin"),
            request_method=get(b"access-control-request-method"),
            request_headers=get(b"access-control-request-headers"),
            client_ip=await _value(self.client_ip, scope),
            principal=await _value(self.principal, scope),
            tier=await _value(self.tier, scope),
            private_network=private.strip().lower() == "true",
            forwarded_for=get(b"x-forwarded-for"),
            forwarded=get(b"forwarded"),
        )
        if not self.offload:
            return call()
        if self.executor is None and _HAVE_ANYIO:
            return await anyio.to_thread.run_sync(call)
        loop = asyncio.get_running_loop()
        outcome: Outcome = await loop.run_in_executor(self.executor, call)
        return outcome

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        outcome = await self.decide(scope)
        if not outcome.allowed:
            outcome.release()
            status, headers, body = refusal(outcome)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": _encode(headers),
                }
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        try:
            if outcome.delay > 0:
                await _sleep(outcome.delay)
            gate_headers = outcome.headers

            async def send_with_headers(message: Message) -> None:
                kind = message.get("type")
                if kind == "http.response.start":
                    message = dict(message)
                    message["headers"] = _encode(
                        merge_headers(_decode(message.get("headers", [])), gate_headers)
                    )
                    await send(message)
                elif kind == "http.response.body" and not message.get("more_body", False):
                    try:
                        await send(message)
                    finally:
                        outcome.release()
                else:
                    await send(message)

            await self.app(scope, receive, send_with_headers)
        finally:
            outcome.release()


async def _sleep(seconds: float) -> None:
    if _HAVE_ANYIO:
        await anyio.sleep(seconds)
    else:  # pragma: no cover
        await asyncio.sleep(seconds)


def _encode(headers: List[Tuple[str, str]]) -> List[Tuple[bytes, bytes]]:
    return [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]


def _decode(headers: Any) -> List[Tuple[str, str]]:
    return [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in headers]
