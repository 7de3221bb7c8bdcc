"""A webhook receiver on loopback, for every test that checks what an alert sink sends."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class HookServer(ThreadingHTTPServer):
    """Records every request; answers with ``statuses`` in turn (then 200), after ``delay`` seconds."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HookHandler)
        self.received: list[Received] = []
        self.statuses: list[int] = []
        self.delay = 0.0

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # the client gave up (the timeout test)
            super().handle_error(request, client_address)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.base}/x"

    def alerts(self) -> list[dict[str, Any]]:
        """The JSON alerts received, in order (each a POST of application/json to /x)."""
        assert all(r.method == "POST" and r.path == "/x" and r.headers["content-type"] == "application/json"
                   for r in self.received)
        return [json.loads(r.body) for r in self.received]


class HookHandler(BaseHTTPRequestHandler):
    server: HookServer

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.received.append(Received(self.command, self.path, headers, body))
        time.sleep(self.server.delay)
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", f"{self.server.base}/elsewhere")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
        pass


@contextmanager
def running(server: HookServer) -> Iterator[HookServer]:
    """Serve in a thread until the block ends."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
