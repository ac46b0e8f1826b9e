"""A stand-in for Istio's sidecars as Prometheus sees them, in the shape a real istio-proxy
reports: ``istio_requests_total`` and ``istio_request_duration_milliseconds`` for each
request twice, once by the caller's proxy (``reporter="source"``) and once by the
workload's (``reporter="destination"``), with Istio's standard labels (``response_flags``,
``connection_security_policy`` -- ``unknown`` at the source, as Istio reports it there --,
``destination_service_name``, ``destination_workload`` ...), Istio's default latency
buckets, and latencies spread around the set value rather than one value. The counters
advance as time passes at the rate, error share and latency set per workload (changeable
while it runs).

Only for tests that say so: SLO gates over real data run on the proxies' own Envoy stats
(testworld/istio.py). This exporter serves tests of Istio's standard metrics, which need
sidecars with Istio's telemetry filters (upstream Envoy has none). The real Prometheus
scrapes it, so meshctl's Istio queries run unchanged against real series.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Istio's default buckets for istio_request_duration_milliseconds
BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
           300000, 600000, 1800000, 3600000)
# How latencies spread around the set value: (share of requests, factor); the mean is ~1x
# and the 95th percentile between 1.2x and 2x.
SPREAD = ((0.1, 0.5), (0.3, 0.8), (0.3, 1.0), (0.2, 1.2), (0.1, 2.0))
SOURCE = "istio-ingressgateway"  # the caller every request comes from
SOURCE_NAMESPACE = "istio-system"


@dataclass
class Behaviour:
    rps: float = 20.0
    error_rate: float = 0.0
    latency_ms: float = 5.0
    mtls: bool = True


@dataclass
class _Counters:
    requests: dict[str, float] = field(default_factory=dict)  # by response code
    buckets: dict[float, float] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0.0))
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
            for code, share in (("200", 1 - b.error_rate), ("503", b.error_rate)):
                c.requests[code] = c.requests.get(code, 0.0) + n * share
            c.count += n
            c.total_ms += n * b.latency_ms
            for share, factor in SPREAD:
                for bound in BUCKETS:
                    if b.latency_ms * factor <= bound:
                        c.buckets[bound] += n * share

    def render(self) -> str:
        with self._lock:
            self._advance()
            lines = ["# TYPE istio_requests_total counter",
                     "# TYPE istio_request_duration_milliseconds histogram"]
            for key, c in self._counters.items():
                mtls = self._behaviour[key].mtls
                for reporter in ("source", "destination"):
                    lines += _series(key, c, reporter, mtls)
            return "\n".join(lines) + "\n"


def _labels(key: Workload, reporter: str, mtls: bool) -> str:
    fqdn = f"{key.service}.{key.namespace}.svc.cluster.local"
    # the source cannot know the server's policy: Istio reports "unknown" there
    policy = ("mutual_tls" if mtls else "none") if reporter == "destination" else "unknown"
    principal = (f"spiffe://cluster.local/ns/{key.namespace}/sa/{key.service}"
                 if mtls else "unknown")
    return (f'reporter="{reporter}",source_workload="{SOURCE}",'
            f'source_workload_namespace="{SOURCE_NAMESPACE}",source_app="{SOURCE}",'
            f'source_principal="spiffe://cluster.local/ns/{SOURCE_NAMESPACE}/sa/{SOURCE}",'
            f'source_cluster="Kubernetes",destination_service="{fqdn}",'
            f'destination_service_name="{key.service}",'
            f'destination_service_namespace="{key.namespace}",'
            f'destination_workload="{key.workload}",'
            f'destination_workload_namespace="{key.namespace}",'
            f'destination_app="{key.service}",destination_principal="{principal}",'
            f'destination_cluster="Kubernetes",request_protocol="http",'
            f'connection_security_policy="{policy}"')


def _series(key: Workload, c: _Counters, reporter: str, mtls: bool) -> list[str]:
    base = _labels(key, reporter, mtls)
    lines = [f'istio_requests_total{{{base},response_code="{code}",response_flags="-"}} '
             f"{value:.3f}" for code, value in sorted(c.requests.items())]
    for bound in BUCKETS:
        lines.append(f'istio_request_duration_milliseconds_bucket{{{base},le="{bound}"}} '
                     f"{c.buckets[bound]:.3f}")
    lines.append(f'istio_request_duration_milliseconds_bucket{{{base},le="+Inf"}} {c.count:.3f}')
    lines.append(f"istio_request_duration_milliseconds_sum{{{base}}} {c.total_ms:.3f}")
    lines.append(f"istio_request_duration_milliseconds_count{{{base}}} {c.count:.3f}")
    return lines
