"""The WSGI middleware in front of a small Flask app, through Flask's test client."""

from __future__ import annotations

from typing import List

import pytest

flask = pytest.importorskip("flask")

import portcullis  # noqa: E402
from portcullis.wsgi import PortcullisMiddleware  # noqa: E402

ORIGIN = "https://app.example.com"

CONFIG = """\
[[policy]]
name = "api"
limit = "2/h"

[[policy]]
name = "export"
algorithm = "concurrency"
limit = 1

[[policy]]
name = "shaped"
algorithm = "leaky_bucket"
limit = "10/s"
burst = 5
max_delay = "2s"

[[policy]]
name = "premium"
limit = "100/h"

[[route]]
match = "GET /export"
limits = [{ policy = "export", key = "principal" }]

[[route]]
match = "/shaped"
limits = [{ policy = "shaped", key = "ip" }]

[[route]]
match = "/api/"
limits = [{ tiers = { free = "api", premium = "premium" }, default_tier = "free", key = "principal" }]

[cors]
allowed_origins = ["https://app.example.com"]
allowed_methods = ["GET", "POST"]
allowed_headers = ["Content-Type"]
"""


def make_app(gate: portcullis.Gate, sleeps: List[float]) -> "flask.Flask":
    app = flask.Flask(__name__)

    @app.get("/api/items")
    def items():  # type: ignore[no-untyped-def]
        response = flask.jsonify(items=[1, 2, 3])
        response.headers["Vary"] = "Accept-Encoding"
        return response

    @app.get("/export")
    def export():  # type: ignore[no-untyped-def]
        def chunks():  # type: ignore[no-untyped-def]
            yield b"a,b\n"
            yield b"1,2\n"

        return flask.Response(chunks(), mimetype="text/csv")

    @app.get("/shaped")
    def shaped():  # type: ignore[no-untyped-def]
        return "ok"

    app.wsgi_app = PortcullisMiddleware(  # type: ignore[method-assign]
        app.wsgi_app,
        gate,
        principal=lambda environ: environ.get("HTTP_X_API_KEY"),
        tier=lambda environ: environ.get("HTTP_X_TIER"),
        sleep=sleeps.append,
    )
    return app


@pytest.fixture
def sleeps() -> List[float]:
    return []


@pytest.fixture
def client(sleeps):
    with portcullis.Gate.from_config(CONFIG) as gate:
        yield make_app(gate, sleeps).test_client()


def test_passing_response_gets_the_gate_headers(client):
    r = client.get("/api/items", headers={"Origin": ORIGIN, "X-Api-Key": "k1"})
    assert r.status_code == 200
    assert r.get_json() == {"items": [1, 2, 3]}
    assert r.headers["X-RateLimit-Limit"] == "2"
    assert r.headers["X-RateLimit-Remaining"] == "1"
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-RateLimit-Remaining" in r.headers["Access-Control-Expose-Headers"]
    # The app's Vary is kept, the gate's appended.
    assert r.headers.getlist("Vary") == ["Accept-Encoding, Origin"]


def test_429_with_retry_after_and_cors(client):
    for _ in range(2):
        assert client.get("/api/items", headers={"X-Api-Key": "k1"}).status_code == 200
    r = client.get("/api/items", headers={"Origin": ORIGIN, "X-Api-Key": "k1"})
    assert r.status_code == 429
    retry = int(r.headers["Retry-After"])
    assert 1700 <= retry <= 1800  # one every 30 minutes
    assert r.get_json() == {"error": "too many requests", "retry_after": retry}
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert r.headers["X-RateLimit-Remaining"] == "0"
    # Another principal, and the premium tier of the same one... is another limit.
    assert client.get("/api/items", headers={"X-Api-Key": "k2"}).status_code == 200
    r = client.get("/api/items", headers={"X-Api-Key": "k1", "X-Tier": "premium"})
    assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "100"


def test_preflight_and_cors_refusal_are_answered(client):
    r = client.options("/api/items", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    })
    assert r.status_code == 204
    assert r.data == b""
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    r = client.get("/api/items", headers={"Origin": "https://evil.example.net"})
    assert r.status_code == 403
    assert r.get_json() == {"error": "cross-origin request refused"}
    assert "Access-Control-Allow-Origin" not in r.headers
    # Neither was charged.
    assert client.get("/api/items").headers["X-RateLimit-Remaining"] == "1"


def test_leases_are_held_until_the_response_is_closed(client):
    streaming = client.get("/export", headers={"X-Api-Key": "k1"}, buffered=False)
    assert streaming.status_code == 200
    busy = client.get("/export", headers={"X-Api-Key": "k1"})
    assert busy.status_code == 429
    streaming.close()  # the server closes the iterable: the lease goes back
    # A buffered response is read whole and closed at once.
    done = client.get("/export", headers={"X-Api-Key": "k1"}, buffered=True)
    assert done.status_code == 200
    assert done.data == b"a,b\n1,2\n"
    again = client.get("/export", headers={"X-Api-Key": "k1"}, buffered=True)
    assert again.status_code == 200


def test_shaping_delay_is_slept(client, sleeps):
    for _ in range(3):
        assert client.get("/shaped").status_code == 200
    # The first request is not delayed; the next ones wait up to 100 ms more each (less the
    # time the requests took).
    assert len(sleeps) == 2
    assert 0 < sleeps[0] <= 0.1
    assert sleeps[0] < sleeps[1] <= 0.2


def test_app_errors_give_leases_back(sleeps):
    with portcullis.Gate.from_config(CONFIG) as gate:
        calls = []

        def failing(environ, start_response):  # type: ignore[no-untyped-def]
            calls.append(1)
            raise RuntimeError("boom")

        mw = PortcullisMiddleware(failing, gate, principal=lambda e: "k1")
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/export", "REMOTE_ADDR": "192.0.2.1"}
        for _ in range(3):  # a held lease would make the second one a 429 without a call
            with pytest.raises(RuntimeError):
                mw(environ, lambda *a: None)
        assert len(calls) == 3


def test_a_remote_addr_that_is_not_an_address_is_refused_not_shared(client):
    # A Unix socket gives no client address: clients must not share one bucket, so a route
    # limited by address refuses the request (on_missing_key = "deny", the default).
    r = client.get("/shaped", environ_base={"REMOTE_ADDR": "unix:/run/app.sock"})
    assert r.status_code == 429
