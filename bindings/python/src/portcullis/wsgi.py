"""A WSGI middleware putting a :class:`~portcullis.Gate` in front of an app.

.. code-block:: python

    from portcullis import Gate
    from portcullis.wsgi import PortcullisMiddleware

    gate = Gate.from_file("portcullis.toml")
    app.wsgi_app = PortcullisMiddleware(app.wsgi_app, gate, principal=api_key_of)

For every request the gate decides, and the middleware

- answers a preflight itself (204 with the CORS headers), never calling the app;
- answers a request refused by CORS itself (403, short JSON body);
- answers a rate-limited request itself (429 with ``Retry-After``, the rate-limit headers, the
  CORS headers of an allowed origin, and a short JSON body ``{"error": ..., "retry_after": N}``);
- otherwise sleeps for the outcome's ``delay`` (shaping; this holds the worker), calls the app,
  and adds the gate's headers to its response: ``Vary`` is appended to the app's own, any other
  header of the gate replaces the app's header of the same name;
- gives the request's concurrency leases back when the response is finished (the server
  closes the response iterable), or at once if the app raises.

Errors of the gate (e.g. a malformed client address from a custom extractor, a store failure)
propagate to the server.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from ._http import merge_headers, refusal, status_line, valid_ip
from .gate import Gate
from .types import Outcome

__all__ = ["PortcullisMiddleware", "Environ", "Extractor"]

Environ = Dict[str, Any]
#: Takes the WSGI environ, returns a value or None.
Extractor = Callable[[Environ], Optional[str]]
StartResponse = Callable[..., Any]


def default_client_ip(environ: Environ) -> Optional[str]:
    """``REMOTE_ADDR`` when it is an IP address (None otherwise, e.g. on a Unix socket): the
    peer. Behind proxies, list them in the config's ``trusted_proxies``: the gate then takes the
    client from ``X-Forwarded-For`` / ``Forwarded``, which the middleware passes along."""
    return valid_ip(environ.get("REMOTE_ADDR"))


def _none(environ: Environ) -> Optional[str]:
    return None


class PortcullisMiddleware:
    """Gate every request of a WSGI app.

    ``client_ip``, ``principal`` and ``tier`` each take the environ and return text or None:
    by default the client is ``REMOTE_ADDR`` and requests have no principal nor tier.
    ``sleep`` is called with the shaping delay in seconds (default :func:`time.sleep`).
    """

    def __init__(
        self,
        app: Callable[[Environ, StartResponse], Iterable[bytes]],
        gate: Gate,
        *,
        client_ip: Extractor = default_client_ip,
        principal: Extractor = _none,
        tier: Extractor = _none,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.app = app
        self.gate = gate
        self.client_ip = client_ip
        self.principal = principal
        self.tier = tier
        self.sleep = sleep

    def decide(self, environ: Environ) -> Outcome:
        """The gate's outcome for a request."""
        # The raw target when the server gives it (gunicorn RAW_URI, uWSGI REQUEST_URI): the gate
        # resolves it as a server would, where PATH_INFO is already decoded.
        path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or (
            environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        )
        private = environ.get("HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK", "")
        return self.gate.decide(
            environ.get("REQUEST_METHOD", "GET"),
            path or "/",
            origin=environ.get("HTTP_ORIGIN"),
            request_method=environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"),
            request_headers=environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS"),
            client_ip=self.client_ip(environ),
            principal=self.principal(environ),
            tier=self.tier(environ),
            private_network=private.strip().lower() == "true",
            forwarded_for=environ.get("HTTP_X_FORWARDED_FOR"),
            forwarded=environ.get("HTTP_FORWARDED"),
        )

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        outcome = self.decide(environ)
        if not outcome.allowed:
            outcome.release()
            status, headers, body = refusal(outcome)
            start_response(status_line(status), headers)
            return [body]
        if outcome.delay > 0:
            self.sleep(outcome.delay)
        gate_headers = outcome.headers

        def start(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
            merged = merge_headers(headers, gate_headers)
            if exc_info is not None:
                return start_response(status, merged, exc_info)
            return start_response(status, merged)

        try:
            result = self.app(environ, start)
        except BaseException:
            outcome.release()
            raise
        if not outcome.holds_leases:
            return result
        return _Releasing(result, outcome)


class _Releasing:
    """The app's response iterable; gives the outcome's leases back when closed."""

    def __init__(self, result: Iterable[bytes], outcome: Outcome) -> None:
        self._result = result
        self._outcome = outcome

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._outcome.release()
