"""The ASGI middleware in front of a FastAPI app served by a real uvicorn server on 127.0.0.1,
driven by httpx; and, in process, its delay and pass-through paths."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional

import pytest

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

import portcullis  # noqa: E402
import portcullis.asgi  # noqa: E402
from portcullis.asgi import PortcullisMiddleware, header  # noqa: E402

ORIGIN = "https://app.example.com"

CONFIG = """\
header_style = "legacy"

[[policy]]
name = "api"
limit = "2/h"

[[policy]]
name = "export"
algorithm = "concurrency"
limit = 1

[[route]]
match = "GET /export"
limits = [{ policy = "export", key = "principal" }]

[[route]]
match = "/api/"
limits = [{ policy = "api", key = "principal" }]

[cors]
allowed_origins = ["https://app.example.com"]
allowed_methods = ["GET", "POST"]
allowed_headers = ["Content-Type", "Authorization"]
"""


class RecordingGate(portcullis.Gate):
    """A gate that remembers on which threads it decided."""

    threads: List[int]

    def decide(self, *args: Any, **kwargs: Any) -> portcullis.Outcome:
        self.threads.append(threading.get_ident())
        return super().decide(*args, **kwargs)


def bearer(scope: portcullis.asgi.Scope) -> Optional[str]:
    value = header(scope, "authorization")
    if value and value.lower().startswith("bearer "):
        return value[7:].strip()
    return None


@dataclass
class Served:
    url: str
    gate: RecordingGate
    loop_threads: List[int]
    export_entered: threading.Event
    export_release: threading.Event


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    gate = RecordingGate.from_config(CONFIG)
    gate.threads = []
    loop_threads: List[int] = []
    entered, release = threading.Event(), threading.Event()

    app = fastapi.FastAPI()

    @app.get("/api/items")
    async def items(response: fastapi.Response) -> dict:
        loop_threads.append(threading.get_ident())
        response.headers["Vary"] = "Accept-Encoding"
        return {"items": [1, 2, 3]}

    @app.get("/export")
    def export() -> dict:  # a sync endpoint: runs in a worker thread
        entered.set()
        release.wait(10)
        return {"export": "done"}

    app.add_middleware(PortcullisMiddleware, gate=gate, principal=bearer)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # a free port
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", gate, loop_threads, entered, release)
    finally:
        release.set()
        server.should_exit = True
        thread.join(20)
        sock.close()
        gate.close()
    assert not thread.is_alive()


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, trust_env=False, timeout=20) as client:
        yield client


def auth(token: str, **extra: str) -> dict:
    return {"Authorization": f"Bearer {token}", **extra}


def test_429_with_retry_after_and_cors(http):
    for remaining in ("1", "0"):
        r = http.get("/api/items", headers=auth("t-429"))
        assert r.status_code == 200
        assert r.headers["x-ratelimit-remaining"] == remaining
    r = http.get("/api/items", headers=auth("t-429", Origin=ORIGIN))
    assert r.status_code == 429
    retry = int(r.headers["Retry-After"])
    assert 1700 <= retry <= 1800  # one every 30 minutes
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "too many requests", "retry_after": retry}
    # Another principal is not limited.
    assert http.get("/api/items", headers=auth("t-429-other")).status_code == 200


def test_preflight_is_answered(http):
    r = http.options("/api/items", headers={
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    assert r.status_code == 204
    assert r.content == b""
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "Origin" in r.headers["Vary"]


def test_expose_headers_list_the_rate_limit_headers(http):
    r = http.get("/api/items", headers=auth("t-expose", Origin=ORIGIN))
    assert r.status_code == 200
    assert r.json() == {"items": [1, 2, 3]}
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = {h.strip() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
            "Retry-After"} <= exposed
    assert r.headers["X-RateLimit-Limit"] == "2"
    # The app's Vary is kept and the gate's appended, in one header.
    assert r.headers.get_list("vary") == ["Accept-Encoding, Origin"]


def test_refused_origin_is_a_403(http):
    r = http.get("/api/items", headers=auth("t-403", Origin="https://evil.example.net"))
    assert r.status_code == 403
    assert r.json() == {"error": "cross-origin request refused"}
    assert "access-control-allow-origin" not in r.headers
    # Not charged.
    r = http.get("/api/items", headers=auth("t-403"))
    assert r.headers["X-RateLimit-Remaining"] == "1"


def test_decisions_run_off_the_event_loop(http, served):
    before = len(served.gate.threads)
    assert http.get("/api/items", headers=auth("t-thread")).status_code == 200
    assert len(served.gate.threads) == before + 1
    loop_thread = served.loop_threads[-1]
    assert served.gate.threads[-1] != loop_thread


def test_lease_is_held_while_the_response_runs(http, served):
    served.export_entered.clear()
    served.export_release.clear()
    results: List[httpx.Response] = []
    first = threading.Thread(
        target=lambda: results.append(http.get("/export", headers=auth("t-export")))
    )
    first.start()
    try:
        assert served.export_entered.wait(10), "the first export never started"
        busy = http.get("/export", headers=auth("t-export"))
        assert busy.status_code == 429
        assert busy.headers["X-RateLimit-Limit"] == "1"
    finally:
        served.export_release.set()
        first.join(10)
    assert [r.status_code for r in results] == [200]
    # The first response is done: its lease is back.
    assert http.get("/export", headers=auth("t-export")).status_code == 200


# In process, through httpx's ASGI transport.


async def plain_app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello", "more_body": True})
    await send({"type": "http.response.body", "body": b" world"})


SHAPED = """\
[[policy]]
name = "shaped"
algorithm = "leaky_bucket"
limit = "10/s"
burst = 5
max_delay = "2s"

[[route]]
match = "/"
limits = [{ policy = "shaped", key = "ip" }]
"""


def run_requests(mw: PortcullisMiddleware, count: int) -> List[httpx.Response]:
    async def main() -> List[httpx.Response]:
        transport = httpx.ASGITransport(app=mw, client=("192.0.2.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return [await c.get("/hello") for _ in range(count)]

    return asyncio.run(main())


def test_delay_is_awaited(monkeypatch):
    slept: List[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(portcullis.asgi, "_sleep", fake_sleep)
    with portcullis.Gate.from_config(SHAPED) as gate:
        responses = run_requests(PortcullisMiddleware(plain_app, gate, offload=False), 3)
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert responses[0].text == "hello world"
    assert len(slept) == 2
    assert 0 < slept[0] <= 0.1 and slept[0] < slept[1] <= 0.2


def test_executor_offload_and_client_address():
    seen: List[Any] = []

    class Gate(portcullis.Gate):
        def decide(self, *args: Any, **kwargs: Any) -> portcullis.Outcome:
            seen.append((threading.current_thread().name, kwargs["client_ip"]))
            return super().decide(*args, **kwargs)

    with Gate.from_config(SHAPED) as gate, ThreadPoolExecutor(1, "gate-pool") as pool:
        responses = run_requests(PortcullisMiddleware(plain_app, gate, executor=pool), 1)
    assert responses[0].status_code == 200
    assert "x-ratelimit-remaining" in responses[0].headers
    (thread_name, client_ip), = seen
    assert thread_name.startswith("gate-pool")
    assert client_ip == "192.0.2.7"


def test_non_http_scopes_pass_through():
    calls: List[str] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        calls.append(scope["type"])

    with portcullis.Gate.from_config(SHAPED) as gate:
        mw = PortcullisMiddleware(app, gate)

        async def nothing():  # type: ignore[no-untyped-def]
            return {}

        async def ignore(message):  # type: ignore[no-untyped-def]
            return None

        asyncio.run(mw({"type": "lifespan"}, nothing, ignore))
        asyncio.run(mw({"type": "websocket", "path": "/"}, nothing, ignore))
        assert calls == ["lifespan", "websocket"]
        assert gate.stats()["policies"][0]["allowed"] == 0
