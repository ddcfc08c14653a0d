"""The harness waits for a server by polling readiness under a generous deadline, never one short timeout.

Once, under load (18-22 on 2 cores), the first ``GET /api/v1/info`` right after ``/health`` answered took more
than the fixed 10 s the harness allowed, and five tests errored. A stand-in server plays that start-up here:
``/health`` answers at once, the API is slow or not ready yet at first.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from zenml_harness import ZenmlServer

pytestmark = pytest.mark.timeout(120)


class _StartingServer(BaseHTTPRequestHandler):
    slow_first_seconds = 0.0  # the first /api/v1/info answer takes this long
    not_ready_answers = 0  # then this many 503 answers before a 200
    info_calls = 0
    release = threading.Event()

    def do_GET(self) -> None:
        cls = type(self)
        if self.path == "/health":  # as ZenML 0.98 answers it: plain text, not JSON
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        cls.info_calls += 1
        if cls.info_calls == 1 and cls.slow_first_seconds:
            cls.release.wait(cls.slow_first_seconds)
        if cls.not_ready_answers > 0:
            cls.not_ready_answers -= 1
            self._send(503, {"detail": "starting"})
            return
        self._send(200, {"id": "server-id", "version": "0.98.0"})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Running:
    def poll(self) -> None:
        return None


def _make(handler: type[_StartingServer], tmp_path: Path) -> Iterator[ZenmlServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server = ZenmlServer.__new__(ZenmlServer)  # the harness's waiting, without starting uvicorn
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    server.proc = _Running()  # type: ignore[assignment]
    server.log_path = tmp_path / "server.log"
    server.log_path.write_text("")
    try:
        yield server
    finally:
        handler.release.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def slow_api(tmp_path: Path) -> Iterator[ZenmlServer]:
    handler = type("Slow", (_StartingServer,), {"slow_first_seconds": 12.0, "release": threading.Event()})
    yield from _make(handler, tmp_path)


@pytest.fixture
def api_not_ready(tmp_path: Path) -> Iterator[ZenmlServer]:
    handler = type("NotReady", (_StartingServer,), {"not_ready_answers": 3, "release": threading.Event()})
    yield from _make(handler, tmp_path)


def test_a_first_api_answer_slower_than_ten_seconds_is_waited_for(slow_api: ZenmlServer) -> None:
    slow_api.wait_healthy()
    assert slow_api.info()["id"] == "server-id"


def test_an_api_that_is_not_ready_yet_is_polled(api_not_ready: ZenmlServer) -> None:
    assert api_not_ready.info()["id"] == "server-id"


def test_ready_means_the_api_answers_not_only_health(tmp_path: Path) -> None:
    handler = type("NotReady", (_StartingServer,), {"not_ready_answers": 3, "release": threading.Event()})
    for server in _make(handler, tmp_path):
        server.wait_healthy()
        # wait_healthy went through every 503 of the API, not just /health.
        assert handler.not_ready_answers == 0
        assert handler.info_calls == 4


def test_a_server_that_never_answers_fails_by_the_deadline(tmp_path: Path) -> None:
    handler = type("Never", (_StartingServer,), {"not_ready_answers": 10**9, "release": threading.Event()})
    for server in _make(handler, tmp_path):
        with pytest.raises(AssertionError, match="did not answer GET /api/v1/info in time"):
            # Short on purpose: the test is about giving up at the deadline, and this server never answers.
            server.wait_healthy(timeout=2)
