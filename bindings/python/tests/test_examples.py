"""The example apps under examples/ work as their docstrings say."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        yield module
    finally:
        module.gate.close()


@pytest.fixture
def flask_example() -> Iterator[ModuleType]:
    pytest.importorskip("flask")
    yield from load("flask_app")


@pytest.fixture
def fastapi_example() -> Iterator[ModuleType]:
    pytest.importorskip("fastapi")
    yield from load("fastapi_app")


def test_flask_example(flask_example):
    client = flask_example.app.test_client()
    codes = [client.post("/api/v1/auth/login").status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    r = client.post("/api/v1/auth/login")
    assert r.headers["Retry-After"] == "900"
    r = client.get("/api/v1/things", headers={
        "Authorization": "Bearer k1", "Origin": "http://localhost:5173"})
    assert r.status_code == 200
    assert r.headers["X-RateLimit-Limit"] == "20"
    assert r.headers["RateLimit-Policy"] == '"api-free";q=100;w=3600'
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    r = client.get("/api/v1/things", headers={"Authorization": "Bearer k1", "X-Tier": "premium"})
    assert r.headers["X-RateLimit-Limit"] == "10000"


def test_fastapi_example(fastapi_example):
    httpx = pytest.importorskip("httpx")

    async def main() -> None:
        transport = httpx.ASGITransport(app=fastapi_example.app, client=("198.51.100.4", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.options("/api/x", headers={
                "Origin": "http://localhost:5173", "Access-Control-Request-Method": "PUT"})
            assert r.status_code == 204
            assert r.headers["access-control-max-age"] == "600"
            r = await c.get("/api/v1/export", headers={"Authorization": "Bearer k9"})
            assert r.status_code == 200
            assert r.text.startswith("id,name\n0,thing-0\n")
            assert r.headers["X-RateLimit-Remaining"] == "1"  # 2 exports in flight at most
            codes = [(await c.post("/api/v1/auth/login")).status_code for _ in range(6)]
            assert codes == [200] * 5 + [429]

    asyncio.run(main())
