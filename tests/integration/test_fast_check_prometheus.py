"""The fast availability check's query against a real Prometheus (scraping Istio-named
series every 1 s): it counts from the last scrape at or before its run began, so the errors
that rolled back the previous run do not fail a retry, and errors after it show on the
first scrapes."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.domain.analysis import ResolvedMetric
from meshctl.domain.measurements import Value
from tests.integration.cluster_world import slo_checks

pytestmark = [pytest.mark.prometheus]


def fast_check(ns: str) -> ResolvedMetric:
    checks = slo_checks(ns, window="10s", interval="1s", availability="99.9%", minRequests=10)
    return next(p for p in checks if p.guard)


def poll(provider: PrometheusProvider, plan: ResolvedMetric, started: datetime, seconds: float,
         ) -> list[float]:
    """The check's values, measured every 0.25 s for ``seconds`` (no data left out)."""
    values = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = provider.measure(plan.query_at(started, datetime.now(UTC)), 5.0)
        if isinstance(found, Value):
            values.append(found.value)
        time.sleep(0.25)
    return values


def test_errors_before_the_run_are_not_counted_and_errors_after_it_are(istio_metrics):
    exporter, url = istio_metrics
    ns = "fastcheck"
    plan = fast_check(ns)
    provider = PrometheusProvider(url)
    try:
        exporter.set(ns, "web", "web-canary", rps=40, error_rate=0.5, latency_ms=5)
        time.sleep(4)  # a failing canary, scraped: the run before the retry failed on this
        exporter.set(ns, "web", "web-canary", rps=0, error_rate=0.0, latency_ms=5)
        time.sleep(2)  # rolled back: no traffic to the canary
        exporter.set(ns, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)
        retried = datetime.now(UTC)  # within its 10 s window, the old errors are still there
        clean = poll(provider, plan, retried, 4)
        assert clean and all(v == 1.0 for v in clean), clean  # only what came after
        exporter.set(ns, "web", "web-canary", rps=40, error_rate=0.5, latency_ms=5)
        broke = time.monotonic()
        while time.monotonic() - broke < 10:
            found = provider.measure(plan.query_at(retried, datetime.now(UTC)), 5.0)
            if isinstance(found, Value) and plan.failure and plan.failure.holds(found.value):
                break
            time.sleep(0.1)
        # errors show within a couple of 1 s scrapes (the bound is loose: a shared machine)
        assert time.monotonic() - broke < 10
    finally:
        provider.close()
