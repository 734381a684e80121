"""A Flask app behind the portcullis gate (WSGI middleware).

    pip install flask portcullis
    python examples/flask_app.py            # serves on 127.0.0.1:8080

    curl -i localhost:8080/api/v1/things -H 'Authorization: Bearer k1' -H 'Origin: http://localhost:5173'
    for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code} ' -X POST localhost:8080/api/v1/auth/login; done
    curl -i -X OPTIONS localhost:8080/api/x -H 'Origin: http://localhost:5173' -H 'Access-Control-Request-Method: PUT'

The principal is the bearer token of ``Authorization``, the tier comes from ``X-Tier``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from flask import Flask, Response, jsonify

from portcullis import Gate
from portcullis.wsgi import PortcullisMiddleware

gate = Gate.from_file(Path(__file__).with_name("gate.toml"))
app = Flask(__name__)


@app.get("/api/v1/things")
def things() -> Response:
    return jsonify(things=["a", "b", "c"])


@app.post("/api/v1/auth/login")
def login() -> Response:
    return jsonify(token="demo")


@app.get("/api/v1/export")
def export() -> Response:
    def rows():  # type: ignore[no-untyped-def]
        yield "id,name\n"
        for i in range(3):
            time.sleep(0.1)  # a slow export: its lease is held until the last row is sent
            yield f"{i},thing-{i}\n"

    return Response(rows(), mimetype="text/csv")


def bearer(environ: dict) -> Optional[str]:
    value = environ.get("HTTP_AUTHORIZATION", "")
    if value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


def tier(environ: dict) -> Optional[str]:
    return environ.get("HTTP_X_TIER")


app.wsgi_app = PortcullisMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, gate, principal=bearer, tier=tier
)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=8080, threaded=True)
