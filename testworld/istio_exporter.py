"""A stand-in for Istio's sidecars as Prometheus sees them: an HTTP endpoint serving
``istio_requests_total`` and ``istio_request_duration_milliseconds_bucket`` with the labels
Istio uses (``reporter="destination"``, ``destination_workload`` ...), advancing as time
passes at the rate, error share and latency set per workload (changeable while it runs).

The real Prometheus scrapes it, so meshctl's Istio queries run unchanged against real
series: this replaces the sidecars, not Prometheus.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


@dataclass
class Behaviour:
    rps: float = 20.0
    error_rate: float = 0.0
    latency_ms: float = 5.0
    mtls: bool = True


@dataclass
class _Counters:
    requests: dict[tuple[str, str], float] = field(default_factory=dict)  # (code, policy)
    buckets: dict[int, float] = field(default_factory=lambda: {b: 0.0 for b in BUCKETS})
    count: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True)
class Workload:
    namespace: str
    service: str
    workload: str


class IstioExporter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._behaviour: dict[Workload, Behaviour] = {}
        self._counters: dict[Workload, _Counters] = {}
        self._last = time.monotonic()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> IstioExporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set(self, namespace: str, service: str, workload: str, **behaviour: object) -> None:
        key = Workload(namespace, service, workload)
        with self._lock:
            self._advance()
            current = self._behaviour.get(key, Behaviour())
            self._behaviour[key] = Behaviour(**{**current.__dict__, **behaviour})  # type: ignore[arg-type]
            self._counters.setdefault(key, _Counters())

    def _advance(self) -> None:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        for key, b in self._behaviour.items():
            c = self._counters[key]
            n = b.rps * elapsed
            policy = "mutual_tls" if b.mtls else "none"
            for code, share in (("200", 1 - b.error_rate), ("503", b.error_rate)):
                c.requests[(code, policy)] = c.requests.get((code, policy), 0.0) + n * share
            c.count += n
            c.total_ms += n * b.latency_ms
            for bound in BUCKETS:
                if b.latency_ms <= bound:
                    c.buckets[bound] += n

    def render(self) -> str:
        with self._lock:
            self._advance()
            lines = ["# TYPE istio_requests_total counter",
                     "# TYPE istio_request_duration_milliseconds histogram"]
            for key, c in self._counters.items():
                base = (f'reporter="destination",destination_service_namespace="{key.namespace}",'
                        f'destination_service_name="{key.service}",'
                        f'destination_workload="{key.workload}"')
                for (code, policy), value in sorted(c.requests.items()):
                    lines.append(f'istio_requests_total{{{base},response_code="{code}",'
                                 f'connection_security_policy="{policy}"}} {value:.3f}')
                for bound in BUCKETS:
                    lines.append(f'istio_request_duration_milliseconds_bucket{{{base},le="{bound}"}} '
                                 f'{c.buckets[bound]:.3f}')
                lines.append(f'istio_request_duration_milliseconds_bucket{{{base},le="+Inf"}} {c.count:.3f}')
                lines.append(f"istio_request_duration_milliseconds_sum{{{base}}} {c.total_ms:.3f}")
                lines.append(f"istio_request_duration_milliseconds_count{{{base}}} {c.count:.3f}")
            return "\n".join(lines) + "\n"
