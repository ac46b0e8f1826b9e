"""The Istio query templates against Istio-shaped series in a real Prometheus, served by the
synthetic sidecar exporter (testworld/istio_exporter.py): this file tests the templates'
selection of series, not a rollout, so the exporter is the point here.

Each request is reported twice (``reporter="source"`` and ``"destination"``), next to it
are the stable workload and a same-named service in another namespace: each template must
count the canary's destination-side series and nothing else.
"""

from __future__ import annotations

import os
import time

import pytest

from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.domain import queries
from meshctl.domain.measurements import Value

pytestmark = [pytest.mark.prometheus]

WINDOW = "20s"


def measure(url: str, template: queries.QueryTemplate, ns: str) -> float:
    query = template.render({"namespace": ns, "service": "web", "workload": "web-canary",
                             "window": WINDOW})
    found = PrometheusProvider(url).measure(query, 5.0)
    assert isinstance(found, Value), (template.name, found)
    return found.value


def test_each_istio_template_counts_only_the_canarys_destination_series(istio_metrics):
    exporter, url = istio_metrics
    ns, other = f"q-{os.urandom(3).hex()}", f"q-{os.urandom(3).hex()}"
    # the canary: 40 rps, 10 % errors, ~20 ms, mutual TLS
    exporter.set(ns, "web", "web-canary", rps=40, error_rate=0.1, latency_ms=20, mtls=True)
    # beside it, what must not be counted: stable, and the same names in another namespace
    exporter.set(ns, "web", "web", rps=400, error_rate=0.0, latency_ms=400, mtls=False)
    exporter.set(other, "web", "web-canary", rps=400, error_rate=0.5, latency_ms=2000,
                 mtls=False)
    time.sleep(22)  # one window of data, scraped every second

    requests = measure(url, queries.ISTIO_REQUESTS, ns)
    assert 40 * 20 * 0.8 <= requests <= 40 * 20 * 1.2  # once per request, not per reporter
    availability = measure(url, queries.ISTIO_AVAILABILITY, ns)
    assert availability == pytest.approx(0.9, abs=0.02)
    latency = measure(url, queries.ISTIO_LATENCY_P95, ns)
    assert 20 <= latency <= 50  # the canary's spread (p95 between 1.2x and 2x), not 400/2000
    # the source side reports "unknown": counted, it would halve the share
    assert measure(url, queries.ISTIO_MTLS_SHARE, ns) == pytest.approx(1.0)
