"""The sample app of the local mesh: one version of a service, with injectable faults.

Run one process per version::

    python -m meshctl.localmesh.app --port 0 --version v1 --latency-ms 5 --error-rate 0.0

It prints ``listening on http://127.0.0.1:<port>`` once it serves. Every request outside
``/admin/`` is answered after ``latency_ms`` with status 200, or with 500 for a random
``error_rate`` share of requests; the answer names the version in the ``x-version`` header and
in a JSON body. Admin endpoints (never delayed, never failed):

- ``GET /admin/health``: 200 ``ok``.
- ``GET /admin/faults`` / ``POST /admin/faults {"latency_ms": 80, "error_rate": 0.05}``:
  read or change the faults while running (either key may be left out).
- ``GET /admin/stats``: counts of requests served, 5xx sent, and mirrored copies received
  (Envoy marks a mirrored request by appending ``-shadow`` to its Host, before the port).

:class:`AppProcess` starts and drives such a process from meshctl. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from meshctl.localmesh.procs import LocalMeshError, ManagedProcess, http_call, wait_until

LISTENING = "listening on http://"


@dataclass(frozen=True)
class Faults:
    latency_ms: float = 0.0
    error_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be within 0..1, got {self.error_rate}")


class _State:
    def __init__(self, version: str, faults: Faults, seed: int | None) -> None:
        self.version = version
        self.faults = faults
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.counts = {"requests": 0, "errors": 0, "shadow": 0}

    def next_outcome(self, shadow: bool) -> tuple[Faults, bool]:
        """(faults in force, fail this request?) and count the request."""
        with self._lock:
            faults = self.faults
            fail = self._random.random() < faults.error_rate
            self.counts["requests"] += 1
            self.counts["errors"] += fail
            self.counts["shadow"] += shadow
            return faults, fail

    def set_faults(self, changes: dict[str, Any]) -> Faults:
        with self._lock:
            self.faults = Faults(
                latency_ms=float(changes.get("latency_ms", self.faults.latency_ms)),
                error_rate=float(changes.get("error_rate", self.faults.error_rate)),
            )
            return self.faults

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"version": self.version, **self.counts}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Envoy's upstream pool expects
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls
    server: _AppServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would swamp the log at load

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/admin/"):
            self._admin(body)
        else:
            self._serve()

    def _serve(self) -> None:
        state = self.server.state
        # Envoy appends "-shadow" to the host of a mirrored copy, before any ":port".
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        shadow = host.endswith("-shadow")
        faults, fail = state.next_outcome(shadow)
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000.0)
        status = 500 if fail else 200
        self._reply(status, {"version": state.version, "status": status})

    def _admin(self, body: bytes) -> None:
        state = self.server.state
        if self.path == "/admin/health":
            self._reply(200, "ok")
        elif self.path == "/admin/stats":
            self._reply(200, state.snapshot())
        elif self.path == "/admin/faults" and self.command == "POST":
            try:
                faults = state.set_faults(json.loads(body or b"{}"))
            except (ValueError, TypeError, AttributeError) as exc:
                self._reply(400, {"error": str(exc)})
                return
            self._reply(200, faults.__dict__)
        elif self.path == "/admin/faults":
            self._reply(200, state.faults.__dict__)
        else:
            self._reply(404, {"error": f"no admin endpoint {self.path}"})

    def _reply(self, status: int, payload: Any) -> None:
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-version", self.server.state.version)
        self.end_headers()
        self.wfile.write(data)


class _AppServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        super().__init__(address, _Handler)
        self.state = state


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m meshctl.localmesh.app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--version", required=True, help="the version this process serves")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    state = _State(args.version, Faults(args.latency_ms, args.error_rate), args.seed)
    server = _AppServer((args.host, args.port), state)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"{LISTENING}{args.host}:{server.server_port} version={args.version}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class AppProcess:
    """One sample-app process, started by meshctl and driven over its admin endpoints."""

    def __init__(
        self,
        version: str,
        *,
        workdir: Path,
        faults: Faults = Faults(),
        port: int = 0,
        seed: int | None = None,
        name: str | None = None,
    ) -> None:
        self.version = version
        self.name = name or f"app-{version}"
        argv = [
            sys.executable, "-m", "meshctl.localmesh.app",
            "--port", str(port),
            "--version", version,
            "--latency-ms", str(faults.latency_ms),
            "--error-rate", str(faults.error_rate),
        ]  # fmt: skip
        if seed is not None:
            argv += ["--seed", str(seed)]
        self._process = ManagedProcess(
            self.name, argv, log_path=workdir / f"{self.name}.log", env=_child_env()
        )
        self._port = 0

    def start(self, timeout: float = 15.0) -> None:
        self._process.start()

        def port() -> int | None:
            for line in self._process.log_tail(5).splitlines():
                if line.startswith(LISTENING):
                    return int(line[len(LISTENING) :].split()[0].rpartition(":")[2])
            return None

        self._port = wait_until(port, timeout=timeout, what="it to listen", process=self._process)

    def stop(self) -> None:
        self._process.stop()

    def __enter__(self) -> AppProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def process(self) -> ManagedProcess:
        return self._process

    def set_faults(self, *, latency_ms: float | None = None, error_rate: float | None = None) -> Faults:
        """Change the faults of the running app; returns the faults now in force."""
        changes: dict[str, float] = {}
        if latency_ms is not None:
            changes["latency_ms"] = latency_ms
        if error_rate is not None:
            changes["error_rate"] = error_rate
        Faults(**changes)  # validate here, with a clear error, before the request
        answer = self._admin("/admin/faults", json.dumps(changes).encode())
        return Faults(**answer)

    def faults(self) -> Faults:
        return Faults(**self._admin("/admin/faults"))

    def stats(self) -> dict[str, Any]:
        """``{"version", "requests", "errors", "shadow"}`` since the app started."""
        result: dict[str, Any] = self._admin("/admin/stats")
        return result

    def _admin(self, path: str, body: bytes | None = None) -> Any:
        answer = http_call(f"{self.url}{path}", method="POST" if body is not None else "GET", body=body)
        if answer is None or answer[0] != 200:
            raise LocalMeshError(f"{self.name} {path}: {answer!r}")
        return json.loads(answer[1])


def _child_env() -> dict[str, str]:
    """The environment for a child ``python -m meshctl...``: this meshctl on its path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


if __name__ == "__main__":
    main()
