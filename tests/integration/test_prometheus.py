"""The Prometheus provider against a real Prometheus scraping a real Envoy.

What only the real pair can tell: that the built-in Envoy queries find Envoy's metrics and
return one number, that a missing series is "no data" (never zero), that a fault injected in
the canary shows in the canary's numbers within a bounded wait, and which queries Prometheus
refuses to parse.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.domain import queries
from meshctl.domain.measurements import Error, Measurement, NoData, Value
from meshctl.domain.queries import (
    BUILTIN_TEMPLATES,
    ENVOY_AVAILABILITY,
    ENVOY_LATENCY_P95,
    ENVOY_REQUESTS,
)
from meshctl.domain.traffic import TrafficSplit, Weights
from meshctl.localmesh.load import LoadGenerator
from meshctl.localmesh.mesh import LocalMesh
from meshctl.localmesh.procs import free_port

pytestmark = [pytest.mark.envoy, pytest.mark.prometheus]

WINDOW = "5s"  # at least 4 scrapes of 1 s
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def mesh(local_mesh_with_prometheus: LocalMesh) -> Iterator[LocalMesh]:
    """The mesh at 50/50 with a steady 100 requests/s running through Envoy all along."""
    mesh = local_mesh_with_prometheus
    mesh.router.apply(TrafficSplit(Weights.canary_at(50)))
    with LoadGenerator(mesh.url, rate=100, concurrency=8):
        provider = PrometheusProvider(mesh.prometheus_url)
        query = ENVOY_LATENCY_P95.render({"cluster": "canary", "window": WINDOW})
        wait_for(lambda: provider.measure(query, TIMEOUT), lambda m: isinstance(m, Value), 30)
        provider.close()
        yield mesh


@pytest.fixture(scope="module")
def provider(mesh: LocalMesh) -> Iterator[PrometheusProvider]:
    provider = PrometheusProvider(mesh.prometheus_url)
    yield provider
    provider.close()


def wait_for(
    measure: Callable[[], Measurement], done: Callable[[Measurement], bool], timeout: float
) -> Measurement:
    """Measure every 0.5 s until ``done`` holds; the last measurement either way."""
    deadline = time.monotonic() + timeout
    while True:
        measurement = measure()
        if done(measurement) or time.monotonic() > deadline:
            return measurement
        time.sleep(0.5)


def envoy(cluster: str) -> dict[str, str]:
    return {"cluster": cluster, "window": WINDOW}


@pytest.mark.parametrize("cluster", ["stable", "canary"])
def test_envoy_p95_and_availability_are_values_under_load(
    provider: PrometheusProvider, cluster: str
) -> None:
    p95 = provider.measure(ENVOY_LATENCY_P95.render(envoy(cluster)), TIMEOUT)
    availability = provider.measure(ENVOY_AVAILABILITY.render(envoy(cluster)), TIMEOUT)
    requests = provider.measure(ENVOY_REQUESTS.render(envoy(cluster)), TIMEOUT)

    # apps answer in 5 ms; histogram_quantile interpolates inside Envoy's 1/5/10 ms buckets,
    # so a 5 ms p95 can read a little under 5: what matters is a real, non-zero latency
    assert isinstance(p95, Value) and 2.5 <= p95.value < 1000.0, p95
    assert availability == Value(1.0)
    assert isinstance(requests, Value) and requests.value > 50, requests  # ~50/s per cluster


def test_a_series_that_does_not_exist_is_no_data_not_zero(provider: PrometheusProvider) -> None:
    for template in (ENVOY_LATENCY_P95, ENVOY_AVAILABILITY, ENVOY_REQUESTS):
        assert isinstance(provider.measure(template.render(envoy("nope")), TIMEOUT), NoData)
    assert isinstance(provider.measure('up{job="no-such-job"}', TIMEOUT), NoData)


def test_a_query_returning_many_series_is_an_error(provider: PrometheusProvider) -> None:
    measurement = provider.measure("envoy_cluster_upstream_rq_total", TIMEOUT)

    assert isinstance(measurement, Error)
    assert "series; aggregate it" in measurement.message


def test_a_scalar_is_a_value(provider: PrometheusProvider) -> None:
    assert provider.measure("scalar(vector(0.25))", TIMEOUT) == Value(0.25)


def test_an_unreachable_prometheus_is_no_data_within_the_timeout() -> None:
    """Prometheus down says nothing about the canary: no data (pause), never an error that
    counts toward rolling back."""
    provider = PrometheusProvider(f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()

    measurement = provider.measure("up", timeout_seconds=1.0)

    elapsed = time.monotonic() - started
    assert isinstance(measurement, NoData), measurement
    assert "Prometheus http://127.0.0.1" in measurement.reason
    assert "Connection refused" in measurement.reason
    assert elapsed < 3.0, elapsed  # retried within the timeout, not the client's back-off
    check = provider.check_query("up", timeout_seconds=1.0)
    assert not check.accepted and not check.reachable


def test_check_query_reports_what_prometheus_refuses(provider: PrometheusProvider) -> None:
    malformed = provider.check_query('sum(rate(envoy_cluster_upstream_rq_total{a="b"}[5m])')

    assert not malformed.accepted and malformed.reachable
    assert "parse error" in malformed.message, malformed.message
    assert isinstance(provider.measure("sum(rate(x[5m]", TIMEOUT), Error)


def test_every_builtin_template_renders_to_a_query_prometheus_accepts(
    provider: PrometheusProvider,
) -> None:
    variables = {
        "cluster": "canary", "namespace": "shop", "service": "reviews",
        "workload": "reviews-canary", "window": "1m", "since": "1796342400.5", "span": "1500ms",
        "canaryCluster": "canary|reviews.shop.svc.cluster.local",
    }  # fmt: skip
    since = (queries.ENVOY_AVAILABILITY_SINCE, queries.ENVOY_REQUESTS_SINCE,
             queries.ISTIO_ENVOY_AVAILABILITY_SINCE, queries.ISTIO_ENVOY_REQUESTS_SINCE,
             queries.ISTIO_AVAILABILITY_SINCE, queries.ISTIO_REQUESTS_SINCE)
    for name, template in [*BUILTIN_TEMPLATES.items(), *((t.name, t) for t in since)]:
        check = provider.check_query(template.render(variables))
        assert check.accepted, (name, check.message)


def test_an_injection_attempt_stays_a_label_value(provider: PrometheusProvider) -> None:
    """Rendered with a hostile value, the query is still accepted and still selects nothing:
    the value never became PromQL."""
    query = ENVOY_REQUESTS.render({"cluster": 'x"} or vector(1) #', "window": WINDOW})

    assert provider.check_query(query).accepted
    assert isinstance(provider.measure(query, TIMEOUT), NoData)


def test_canary_errors_show_in_the_canary_availability(
    mesh: LocalMesh, provider: PrometheusProvider
) -> None:
    """5 % of canary requests fail: within a bounded wait the canary's availability drops
    below 99 % while the stable's stays at 100 %."""
    query = ENVOY_AVAILABILITY.render(envoy("canary"))
    mesh.canary_app.set_faults(error_rate=0.05)
    try:
        measurement = wait_for(
            lambda: provider.measure(query, TIMEOUT),
            lambda m: isinstance(m, Value) and m.value < 0.99,
            timeout=20,
        )
    finally:
        mesh.canary_app.set_faults(error_rate=0.0)

    assert isinstance(measurement, Value) and 0.80 < measurement.value < 0.99, measurement
    stable = provider.measure(ENVOY_AVAILABILITY.render(envoy("stable")), TIMEOUT)
    assert stable == Value(1.0)


def test_canary_latency_shows_in_the_canary_p95(
    mesh: LocalMesh, provider: PrometheusProvider
) -> None:
    """80 ms more latency in the canary: within a bounded wait its p95 exceeds 80 ms while the
    stable's stays under 50 ms."""
    query = ENVOY_LATENCY_P95.render(envoy("canary"))
    mesh.canary_app.set_faults(latency_ms=85.0)
    try:
        measurement = wait_for(
            lambda: provider.measure(query, TIMEOUT),
            lambda m: isinstance(m, Value) and m.value > 80.0,
            timeout=20,
        )
    finally:
        mesh.canary_app.set_faults(latency_ms=5.0)

    assert isinstance(measurement, Value) and measurement.value > 80.0, measurement
    stable = provider.measure(ENVOY_LATENCY_P95.render(envoy("stable")), TIMEOUT)
    assert isinstance(stable, Value) and stable.value < 50.0, stable
