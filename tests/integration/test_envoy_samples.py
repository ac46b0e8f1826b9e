"""The Envoy sample recorder against a real Envoy: what it keeps, and a counter reset when
Envoy is SIGKILLed and its supervisor starts it again (all stats back to zero)."""

from __future__ import annotations

import itertools
import math
import os
import signal
import time
from datetime import UTC, datetime

import pytest

from meshctl.adapters.envoy_samples import EnvoySampleRecorder
from meshctl.domain import envoy_samples
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
