"""A slow HTTP upstream for the nginx module's tests: counts the requests in flight.

GET /slow/...?ms=N answers after N ms (default 1000), or stops as soon as nginx closes the
connection (a client that went away); GET /stats gives {"inflight", "max", "served", "aborted"}
as JSON; GET /reset zeroes max, served and aborted. Usage: slow_upstream.py PORT
"""

import json
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

lock = threading.Lock()
stats = {"inflight": 0, "max": 0, "served": 0, "aborted": 0}


def closed(conn: socket.socket) -> bool:
    """Whether the peer closed the connection (readable with nothing to read)."""
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        url = urlparse(self.path)
        if url.path == "/stats":
            with lock:
                body = json.dumps(stats).encode()
            self.reply(200, body)
            return
        if url.path == "/reset":
            with lock:
                stats.update(max=stats["inflight"], served=0, aborted=0)
            self.reply(200, b"reset\n")
            return
        ms = int(parse_qs(url.query).get("ms", ["1000"])[0])
        with lock:
            stats["inflight"] += 1
            stats["max"] = max(stats["max"], stats["inflight"])
        aborted = False
        try:
            deadline = time.monotonic() + ms / 1000
            while time.monotonic() < deadline:
                if closed(self.connection):
                    aborted = True
                    break
                time.sleep(0.01)
        finally:
            with lock:
                stats["inflight"] -= 1
                stats["aborted" if aborted else "served"] += 1
        if not aborted:
            self.reply(200, b"slow\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
