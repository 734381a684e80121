"""A FastAPI app behind the portcullis gate (ASGI middleware).

    pip install fastapi uvicorn portcullis
    python examples/fastapi_app.py          # serves on 127.0.0.1:8080

    curl -i localhost:8080/api/v1/things -H 'Authorization: Bearer k1' -H 'Origin: http://localhost:5173'
    for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code} ' -X POST localhost:8080/api/v1/auth/login; done
    curl -i -X OPTIONS localhost:8080/api/x -H 'Origin: http://localhost:5173' -H 'Access-Control-Request-Method: PUT'

The principal is the bearer token of ``Authorization``, the tier comes from ``X-Tier``. Every
decision runs in a worker thread (the middleware's default), so the event loop never waits on
the gate, even with a sled store.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Optional

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from portcullis import Gate
from portcullis.asgi import PortcullisMiddleware, Scope, header

gate = Gate.from_file(Path(__file__).with_name("gate.toml"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    gate.close()  # flushes a sled store's counters


app = FastAPI(lifespan=lifespan)


@app.get("/api/v1/things")
async def things() -> dict:
    return {"things": ["a", "b", "c"]}


@app.post("/api/v1/auth/login")
async def login() -> dict:
    return {"token": "demo"}


@app.get("/api/v1/export")
async def export() -> StreamingResponse:
    async def rows() -> AsyncIterator[str]:
        yield "id,name\n"
        for i in range(3):
            await asyncio.sleep(0.1)  # a slow export: its lease is held until the last row
            yield f"{i},thing-{i}\n"

    return StreamingResponse(rows(), media_type="text/csv")


def bearer(scope: Scope) -> Optional[str]:
    value = header(scope, "authorization") or ""
    if value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


def tier(scope: Scope) -> Optional[str]:
    return header(scope, "x-tier")


app.add_middleware(PortcullisMiddleware, gate=gate, principal=bearer, tier=tier)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8080)
