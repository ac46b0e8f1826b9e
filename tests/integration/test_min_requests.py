"""The ``slo.minRequests`` guard against a real Prometheus: the SLO queries a Rollout's
analysis runs give no data while the canary has had fewer requests than the guard over the
window, and a value once it has more. (A guard joined with ``or on()`` instead of
``and on()`` answers in both cases and fails here.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.domain.measurements import NoData, Value
from tests.integration.cluster_world import slo_checks

pytestmark = [pytest.mark.prometheus]
WINDOW_SECONDS = 10
MIN_REQUESTS = 100


def measure_after_a_window(istio_metrics, ns: str, rps: float) -> dict[str, object]:
    exporter, url = istio_metrics
    exporter.set(ns, "web", "web-canary", rps=rps, error_rate=0.0, latency_ms=5)
    plans = slo_checks(ns, window=f"{WINDOW_SECONDS}s", minRequests=MIN_REQUESTS)
    started = datetime.now(UTC)
    time.sleep(WINDOW_SECONDS + 3)  # a whole window of traffic at this rate, scraped
    provider = PrometheusProvider(url)
    try:
        # each query as the engine runs it (the fast check's counts from a moment)
        return {p.name: provider.measure(p.query_at(started, datetime.now(UTC)), 5.0)
                for p in plans}
    finally:
        provider.close()


def test_below_min_requests_the_slo_queries_are_no_data(istio_metrics):
    # 2 requests/s over 10 s: about 20 requests, under the guard of 100
    found = measure_after_a_window(istio_metrics, "minrequests-below", rps=2)
    assert all(isinstance(m, NoData) for m in found.values()), found


def test_above_min_requests_the_slo_queries_are_values(istio_metrics):
    # 40 requests/s over 10 s: about 400 requests, over the guard
    found = measure_after_a_window(istio_metrics, "minrequests-above", rps=40)
    assert isinstance(found["latency-p95"], Value) and 0 < found["latency-p95"].value < 50, found
    assert found["availability"] == Value(1.0), found
