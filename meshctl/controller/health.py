"""``/healthz`` (the process is alive), ``/readyz`` (caches synced, able to work) and
``/metrics`` on one loopback-or-pod port."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HealthServer:
    def __init__(self, host: str, port: int, ready: Callable[[], bool],
                 metrics: Callable[[], bytes]) -> None:
        def handler_factory(*args: object) -> BaseHTTPRequestHandler:
            return _Handler(ready, metrics, *args)

        self._server = ThreadingHTTPServer((host, port), handler_factory)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="meshctl-health")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    def __init__(self, ready: Callable[[], bool], metrics: Callable[[], bytes],
                 *args: object) -> None:
        self._ready, self._metrics = ready, metrics
        super().__init__(*args)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, b"ok\n")
        elif self.path == "/readyz":
            ok = self._ready()
            self._reply(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
        elif self.path == "/metrics":
            self._reply(200, self._metrics(), "text/plain; version=0.0.4")
        else:
            self._reply(404, b"not found\n")

    def _reply(self, code: int, body: bytes, kind: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass
