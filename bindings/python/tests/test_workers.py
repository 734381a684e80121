"""One quota across worker processes: the WSGI middleware under real ``gunicorn -w 4`` (the app
loaded in each worker, and with ``--preload`` in the master before the fork) and the ASGI
middleware under ``uvicorn --workers 4``, on the shared store, and gunicorn on the Redis store
(a redis-server of the test's own: ``PORTCULLIS_REDIS_SERVER``, which ci/python.sh sets). 40
requests from one client against 10/minute: exactly 10 pass, 30 get 429 with ``Retry-After``.

With a memory store each worker would count alone (up to 4 x 10 allowed); the shared store
makes the four one. The app is loaded per worker, and with ``--preload`` in the master before
the fork.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

CONFIG = """\
[store]
kind = "shared"
path = "{store}"
capacity = 1024

[[policy]]
name = "per-minute"
algorithm = "fixed_window"
limit = "10/m"

[[route]]
match = "/"
limits = [{{ policy = "per-minute", key = "ip" }}]
"""

REDIS_CONFIG = """\
[store]
kind = "redis"
url = "{url}"
timeout = "2s"
key_prefix = "{prefix}"

[[policy]]
name = "per-minute"
algorithm = "fixed_window"
limit = "10/m"

[[route]]
match = "/"
limits = [{{ policy = "per-minute", key = "ip" }}]
"""

WSGI_APP = """\
import os
from portcullis import Gate
from portcullis.wsgi import PortcullisMiddleware

gate = Gate.from_file(os.environ["PORTCULLIS_TEST_CONFIG"])

def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

app = PortcullisMiddleware(hello, gate)
"""

ASGI_APP = """\
import os
from portcullis import Gate
from portcullis.asgi import PortcullisMiddleware

gate = Gate.from_file(os.environ["PORTCULLIS_TEST_CONFIG"])

async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})

app = PortcullisMiddleware(hello, gate)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the server did not start listening")


def get(port: int) -> Tuple[int, dict]:
    # A new connection per request, so the server's workers share the load.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/things", headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def serve(cmd: List[str], app_dir: Path, config: Path, port: int) -> Iterator[None]:
    env = dict(os.environ, PORTCULLIS_TEST_CONFIG=str(config))
    env["PYTHONPATH"] = os.pathsep.join([str(app_dir), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        cmd, cwd=app_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_listening(port, proc)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def forty_requests(port: int) -> None:
    results = [get(port) for _ in range(40)]
    statuses = [s for s, _ in results]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 30, statuses
    for status, headers in results:
        if status == 429:
            assert int(headers["retry-after"]) >= 1


def setup(tmp_path: Path, app: str) -> Tuple[Path, Path]:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "app_module.py").write_text(app)
    config = tmp_path / "portcullis.toml"
    config.write_text(CONFIG.format(store=tmp_path / "shared-store"))
    return app_dir, config


def module_cmd(tool: str) -> List[str]:
    if shutil.which(tool) is None and not (Path(sys.executable).parent / tool).exists():
        pytest.skip(f"{tool} is not installed")
    return [str(Path(sys.executable).parent / tool)]


@pytest.mark.parametrize("store", ["shared", "redis"])
@pytest.mark.parametrize("preload", [False, True], ids=["per-worker", "preload"])
def test_gunicorn_four_workers_share_one_quota(
    tmp_path: Path, preload: bool, store: str, request: pytest.FixtureRequest
) -> None:
    app_dir, config = setup(tmp_path, WSGI_APP)
    if store == "redis":
        # With --preload the gate connects to Redis in the master; each worker must then make
        # connections of its own rather than share the master's socket.
        url = request.getfixturevalue("redis_url")
        config.write_text(REDIS_CONFIG.format(url=url, prefix=f"gunicorn-{preload}:"))
    port = free_port()
    cmd = module_cmd("gunicorn") + [
        "-w", "4", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5",
    ]
    if preload:
        cmd.append("--preload")
    cmd.append("app_module:app")
    for _ in serve(cmd, app_dir, config, port):
        forty_requests(port)


def test_uvicorn_four_workers_share_one_quota(tmp_path: Path) -> None:
    app_dir, config = setup(tmp_path, ASGI_APP)
    port = free_port()
    cmd = module_cmd("uvicorn") + [
        "app_module:app", "--workers", "4", "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log",
    ]
    for _ in serve(cmd, app_dir, config, port):
        forty_requests(port)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = os.environ.get("PORTCULLIS_REDIS_SERVER")
    if not server:
        pytest.skip("PORTCULLIS_REDIS_SERVER is not set (ci/python.sh sets it)")
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()

