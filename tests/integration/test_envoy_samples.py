"""The Envoy sample recorder against a real Envoy: what it keeps, a counter reset when Envoy
is SIGKILLed and its supervisor starts it again (all stats back to zero), and samples that
agree with Prometheus's of the same traffic."""

from __future__ import annotations

import itertools
import math
import os
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from meshctl.adapters.envoy_samples import EnvoySampleRecorder
from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.domain import envoy_samples, queries
from meshctl.domain.measurements import Series
from meshctl.domain.traffic import TrafficSplit, Weights
from meshctl.localmesh.load import LoadGenerator
from meshctl.localmesh.mesh import LocalMesh, SampleApp
from meshctl.localmesh.procs import LocalMeshError, wait_until

from .conftest import servers_unavailable

pytestmark = [pytest.mark.envoy]
LATENCY = envoy_samples.render(envoy_samples.LATENCY_MEAN, {"cluster": "canary"})
ERRORS = envoy_samples.render(envoy_samples.ERROR_RATIO, {"cluster": "canary"})


def test_samples_across_an_envoy_restart_and_only_the_lookback_kept() -> None:
    mesh = LocalMesh(stable=SampleApp("v1", latency_ms=5.0),
                     canary=SampleApp("v2", latency_ms=10.0, error_rate=0.2, seed=7),
                     prometheus=False)
    try:
        mesh.start()
    except LocalMeshError as exc:
        servers_unavailable(str(exc))
    stats = envoy_samples.parse(LATENCY).stats + envoy_samples.parse(ERRORS).stats
    admin = mesh.envoy.admin_address
    whole = EnvoySampleRecorder(admin, stats, window=2.0, period=0.25, keep=60.0)
    short = EnvoySampleRecorder(admin, stats, window=2.0, period=0.25, keep=2.0)
    try:
        mesh.router.apply(TrafficSplit(Weights.canary_at(50)))
        whole.start(), short.start()
        began = datetime.now(UTC)
        with LoadGenerator(mesh.url, rate=60, concurrency=4):
            time.sleep(4)
            killed = mesh.envoy.process.pid
            assert killed is not None
            os.kill(killed, signal.SIGKILL)
            wait_until(lambda: mesh.envoy.process.pid != killed and mesh.envoy.ready(),
                       timeout=30, what="Envoy started again")
            mesh.router.apply(TrafficSplit(Weights.canary_at(50)))
            time.sleep(5)
        ended = datetime.now(UTC)
        latency = whole.samples(LATENCY, began, ended, 0.5, 5.0)
        errors = whole.samples(ERRORS, began, ended, 0.5, 5.0)
        readings, kept = whole.readings(), short.readings()
    finally:
        whole.stop(), short.stop()
        mesh.stop()

    totals = [r.counters.get("cluster.canary.upstream_rq_total", 0.0) for r in readings]
    assert any(b < a for a, b in itertools.pairwise(totals)), \
        "the restart shows as counters going back"
    assert isinstance(latency, Series) and isinstance(errors, Series), (latency, errors)
    found = [v for v in latency.values if not math.isnan(v)]
    ratios = [v for v in errors.values if not math.isnan(v)]
    assert len(found) >= 8 and len(ratios) >= 8, (latency, errors)
    # a reset read as a difference would give a negative count, or a ratio outside 0..1
    assert all(8.0 <= v <= 60.0 for v in found), found
    assert all(0.0 <= v <= 1.0 for v in ratios), ratios
    assert 0.05 <= sum(ratios) / len(ratios) <= 0.4, ratios  # 20% errors, about
    assert kept and kept[-1].at - kept[0].at <= 2.0 + 0.5, "only the lookback is kept"


@pytest.mark.prometheus
def test_envoy_samples_agree_with_prometheus_samples_of_the_same_traffic() -> None:
    """The judge's built-ins, from the recorder and from Prometheus scraping the same Envoy:
    the means of the two series agree (Envoy's _sum is its buckets' midpoints too)."""
    mesh = LocalMesh(stable=SampleApp("v1", latency_ms=5.0),
                     canary=SampleApp("v2", latency_ms=20.0, error_rate=0.1, seed=3))
    try:
        mesh.start()
    except LocalMeshError as exc:
        servers_unavailable(str(exc))
    stats = envoy_samples.parse(LATENCY).stats + envoy_samples.parse(ERRORS).stats
    recorder = EnvoySampleRecorder(mesh.envoy.admin_address, stats, window=4.0, period=0.5,
                                   keep=60.0)
    prometheus = PrometheusProvider(mesh.prometheus_url)
    try:
        mesh.router.apply(TrafficSplit(Weights.canary_at(50)))
        recorder.start()
        with LoadGenerator(mesh.url, rate=60, concurrency=4):
            time.sleep(18)
        end = datetime.now(UTC)
        time.sleep(3)  # Prometheus scrapes the last second
        start = end - timedelta(seconds=10)
        variables = {"cluster": "canary", "window": "4s", "namespace": "demo",
                     "service": "demo", "workload": "canary"}
        found = {}
        for name, expression, template in (
                ("latency", LATENCY, queries.ENVOY_LATENCY_MEAN),
                ("errors", ERRORS, queries.ENVOY_ERROR_RATIO)):
            mine = recorder.samples(expression, start, end, 1.0, 5.0)
            theirs = prometheus.samples(template.render(variables), start, end, 1.0, 5.0)
            assert isinstance(mine, Series) and isinstance(theirs, Series), (mine, theirs)
            found[name] = (_mean(mine.values), _mean(theirs.values))
    finally:
        recorder.stop()
        prometheus.close()
        mesh.stop()

    envoy_ms, prometheus_ms = found["latency"]
    assert envoy_ms == pytest.approx(prometheus_ms, rel=0.1), found
    assert 18.0 <= envoy_ms <= 40.0, found  # the canary's 20 ms, and this machine's load
    envoy_errors, prometheus_errors = found["errors"]
    assert envoy_errors == pytest.approx(prometheus_errors, abs=0.05), found
    assert 0.03 <= envoy_errors <= 0.2, found  # 10% of requests fail, about


def _mean(values: tuple[float, ...]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    assert len(finite) >= 8, values
    return sum(finite) / len(finite)
