"""What the WSGI and ASGI middlewares share: header merging and the answers they give."""

from __future__ import annotations

import ipaddress
import json
from typing import Dict, List, Optional, Tuple

from .types import Action, Headers, Outcome

REASONS: Dict[int, str] = {
    204: "No Content",
    403: "Forbidden",
    429: "Too Many Requests",
}


def valid_ip(value: Optional[str]) -> Optional[str]:
    """``value`` when it is an IP address (``[::1]`` unbracketed, a zone id dropped), else None.

    A server may give something that is not an address (a Unix socket path, an empty string):
    such a request is then decided without a client address.
    """
    if not value:
        return None
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return None
    return text


def split_tokens(value: str) -> List[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def merge_headers(app_headers: List[Tuple[str, str]], gate_headers: Headers) -> List[Tuple[str, str]]:
    """The response's headers with the gate's added.

    ``Vary`` is merged: the gate's tokens are appended to the response's own ``Vary`` (without
    repeating a token, and leaving ``Vary: *`` alone). Any other header the gate sets replaces
    the response's header of the same name (compared without case).
    """
    if not gate_headers:
        return list(app_headers)
    replaced = {n.lower() for n, _ in gate_headers if n.lower() != "vary"}
    vary_tokens: List[str] = []
    for n, v in gate_headers:
        if n.lower() == "vary":
            vary_tokens.extend(split_tokens(v))
    result: List[Tuple[str, str]] = []
    vary_index: Optional[int] = None
    for n, v in app_headers:
        low = n.lower()
        if low in replaced:
            continue
        if low == "vary":
            if vary_index is None:
                vary_index = len(result)
                result.append((n, v))
            else:  # several Vary headers: fold them into the first
                first_name, first_value = result[vary_index]
                result[vary_index] = (first_name, f"{first_value}, {v}" if first_value else v)
            continue
        result.append((n, v))
    for n, v in gate_headers:
        if n.lower() != "vary":
            result.append((n, v))
    if vary_tokens:
        if vary_index is None:
            result.append(("Vary", ", ".join(_dedupe(vary_tokens))))
        else:
            name, value = result[vary_index]
            existing = split_tokens(value)
            if "*" not in existing:
                seen = {t.lower() for t in existing}
                extra = [t for t in _dedupe(vary_tokens) if t.lower() not in seen]
                if extra:
                    value = ", ".join(existing + extra)
            result[vary_index] = (name, value)
    return result


def _dedupe(tokens: List[str]) -> List[str]:
    seen = set()
    out = []
    for t in tokens:
        if t.lower() not in seen:
            seen.add(t.lower())
            out.append(t)
    return out


def refusal(outcome: Outcome) -> Tuple[int, List[Tuple[str, str]], bytes]:
    """The status, headers and body the middleware answers with instead of the app.

    A preflight: 204, no body. A CORS refusal: 403 with a short JSON body. A rate limit: 429
    with a short JSON body giving ``retry_after`` (seconds), and ``Retry-After``.
    """
    status = outcome.status or (204 if outcome.action == Action.PREFLIGHT else 403)
    headers = merge_headers([], outcome.headers)
    if status == 204:
        return status, headers, b""
    if outcome.action == Action.LIMITED:
        body = {"error": "too many requests", "retry_after": outcome.retry_after_secs}
    else:
        body = {"error": "cross-origin request refused"}
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    headers.append(("Content-Type", "application/json"))
    headers.append(("Content-Length", str(len(data))))
    return status, headers, data


def status_line(status: int) -> str:
    return f"{status} {REASONS.get(status, 'Unknown')}"
