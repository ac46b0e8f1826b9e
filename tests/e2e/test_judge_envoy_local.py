"""The comparative judge with samples read straight from Envoy (``spec.judge.provider.kind:
envoy``): real Envoy, real traffic, no Prometheus in the judge.

The judge's samples come from meshctl's own recorder of Envoy's admin stats; Prometheus
runs beside it only for the SLO's thresholds (and not at all in the first two tests). As in
:mod:`tests.e2e.test_judge_local`, a busy machine can push any p95 over the threshold, so
the rollout tests accept the threshold acting first, and assert the judge's own verdicts
wherever it judged, and where they came from.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from meshctl.domain.engine import Decision
from meshctl.domain.judge import Judged, JudgeVerdict
from meshctl.domain.measurements import NoData
from meshctl.domain.phases import Phase
from meshctl.domain.resolve import MeshKind, resolve_analysis
from meshctl.domain.traffic import TrafficSplit, Weights
from meshctl.localmesh.load import LoadGenerator
from meshctl.localmesh.mesh import LocalMesh, SampleApp
from meshctl.localmesh.procs import LocalMeshError
from meshctl.ops.demo import DEMO_ENVOY_JUDGE, SCENARIO_3_SLO, caught_by, demo_rollout
from meshctl.ops.judging import judgement
from meshctl.ops.local import LocalRollout
from meshctl.ops.providers import Providers

from ..integration.conftest import servers_unavailable
from .test_judge_local import JUDGE, judgements, started_mesh, threshold_failed

pytestmark = [pytest.mark.envoy]


def rollout_for(mesh: LocalMesh):
    stable, canary = mesh.stable_app, mesh.canary_app
    return demo_rollout("judged", f"{stable.host}:{stable.port}", f"{canary.host}:{canary.port}",
                        judge=DEMO_ENVOY_JUDGE, background=False, slo=SCENARIO_3_SLO)


def no_prometheus(address: str | None) -> Any:
    raise AssertionError(f"the judge asked Prometheus ({address})")


def judge_live(mesh: LocalMesh) -> Judged:
    """The judge asked about 15 s of traffic at 50/50, from Envoy's stats only."""
    metric = resolve_analysis(rollout_for(mesh), {}, MeshKind.ENVOY).steps[1][-1]
    assert metric.judge is not None
    providers = Providers(no_prometheus, envoy_admin=lambda: mesh.envoy.admin_address)
    try:
        providers.prepare(resolve_analysis(rollout_for(mesh), {}, MeshKind.ENVOY))
        source = providers.samples(metric.kind, metric.address, metric.judge)
        mesh.router.apply(TrafficSplit(Weights.canary_at(50)))
        with LoadGenerator(mesh.url, rate=60, concurrency=4):
            time.sleep(16)
            now = datetime.now(UTC)
            request = metric.request("live", now - timedelta(seconds=15), now)
            assert request.judge is not None
            found = judgement(request.judge, source, 10.0)
    finally:
        providers.close()
    assert isinstance(found, Judged) and found.judgement is not None, found
    assert found.judgement.source == "envoy"
    return found


@pytest.mark.parametrize(("canary_ms", "verdict"), [(20.0, JudgeVerdict.FAIL),
                                                    (5.0, JudgeVerdict.PASS)])
def test_the_judge_needs_no_prometheus(canary_ms: float, verdict: JudgeVerdict) -> None:
    """No Prometheus runs at all: 15 ms slower fails on latency, identical passes."""
    mesh = started_mesh(canary_ms, prometheus=False)
    try:
        live = judge_live(mesh)
    finally:
        mesh.stop()

    assert live.judgement is not None
    assert live.judgement.verdict is verdict, live.judgement.describe()
    latency = live.judgement.metrics[0]
    assert latency.canary_samples >= 8 and latency.baseline_samples >= 8
    assert latency.canary_mean is not None and latency.baseline_mean is not None
    if verdict is JudgeVerdict.FAIL:
        assert latency.canary_mean > latency.baseline_mean + 10  # about 15 ms slower, seen


def test_a_new_recorder_has_no_samples_from_before_it_started() -> None:
    """What a resumed run sees: its recorder starts empty, so the judge has no data (never
    a pass) until enough sub-windows are recorded again."""
    mesh = started_mesh(5.0, prometheus=False)
    try:
        metric = resolve_analysis(rollout_for(mesh), {}, MeshKind.ENVOY).steps[1][-1]
        assert metric.judge is not None
        mesh.router.apply(TrafficSplit(Weights.canary_at(50)))
        with LoadGenerator(mesh.url, rate=60, concurrency=4):
            time.sleep(3)  # traffic before the recorder starts: Envoy counted it, nobody recorded
            providers = Providers(no_prometheus, envoy_admin=lambda: mesh.envoy.admin_address)
            try:
                source = providers.samples(metric.kind, metric.address, metric.judge)
                time.sleep(4)
                now = datetime.now(UTC)
                request = metric.request("resumed", now - timedelta(seconds=60), now)
                assert request.judge is not None
                found = judgement(request.judge, source, 10.0)
            finally:
                providers.close()
    finally:
        mesh.stop()
    # 4 s recorded: two or three 2 s sub-windows of the 8 the judge needs, or none yet
    assert isinstance(found, NoData), found
    assert "need 8 on each side" in found.reason or "recording since" in found.reason, found


def run_rollout(mesh: LocalMesh, state: Path) -> Decision:
    run = LocalRollout(rollout_for(mesh), {}, mesh, state, stable_revision="v1",
                       canary_revision="v2")
    with LoadGenerator(mesh.url, rate=60, concurrency=4):
        return run.run(timeout=240, max_sleep=0.25)


@pytest.mark.prometheus  # for the SLO's thresholds only
def test_a_canary_15ms_slower_is_rolled_back_by_the_judge_on_envoy_samples(tmp_path: Path) -> None:
    mesh = started_mesh(20.0, prometheus=True)
    try:
        decision = run_rollout(mesh, tmp_path)
    finally:
        mesh.stop()

    status = decision.status
    assert status.phase is Phase.DEGRADED, status.message
    assert status.abort is not None and status.abort.reason == "AnalysisFailed"
    if not threshold_failed(decision):  # the threshold passed it: only the judge saw it
        assert caught_by(decision) == JUDGE, status.abort.message
    found = [j for j in judgements(decision) if j is not None]
    assert found or threshold_failed(decision), "the judge judged, or the threshold acted first"
    for j in found:
        assert j.source == "envoy" and j.verdict is JudgeVerdict.FAIL, j.describe()


@pytest.mark.prometheus  # for the SLO's thresholds only
def test_an_identical_canary_is_promoted_with_the_judge_on_envoy_samples(tmp_path: Path) -> None:
    mesh = started_mesh(5.0, prometheus=True)
    try:
        decision = run_rollout(mesh, tmp_path)
    finally:
        mesh.stop()

    status = decision.status
    found = [j for j in judgements(decision) if j is not None]
    if not threshold_failed(decision):  # nothing else held it back: it promotes
        assert status.phase is Phase.HEALTHY, status.message
        assert found, "the judge judged every analysis step"
    assert JUDGE not in caught_by(decision)
    assert all(j.source == "envoy" and j.score == 100.0 for j in found), \
        [j.describe() for j in found]


@pytest.mark.prometheus  # for the SLO's thresholds only
def test_the_envoy_judge_compares_with_a_fresh_baseline_cluster(tmp_path: Path) -> None:
    """With ``baseline: fresh`` the judge's baseline samples are the third cluster's
    (``cluster.baseline.*``), read from Envoy like the canary's."""
    mesh = LocalMesh(stable=SampleApp("v1", latency_ms=5.0), canary=SampleApp("v2", latency_ms=20.0),
                     baseline=SampleApp("v1", latency_ms=5.0))
    try:
        mesh.start()
    except LocalMeshError as exc:
        servers_unavailable(str(exc))
    try:
        apps = mesh.apps
        rollout = demo_rollout(
            "fresh", f"{apps['stable'].host}:{apps['stable'].port}",
            f"{apps['canary'].host}:{apps['canary'].port}",
            steps=[{"setWeight": 20}, {"analysis": {}}, {"setWeight": 40}, {"analysis": {}}],
            judge={**DEMO_ENVOY_JUDGE, "baseline": "fresh"}, background=False,
            slo=SCENARIO_3_SLO, baseline=f"{apps['baseline'].host}:{apps['baseline'].port}")
        metric = resolve_analysis(rollout, {}, MeshKind.ENVOY).steps[1][-1]
        assert metric.judge is not None
        assert metric.judge.metrics[0].baseline_query == "cluster.baseline.upstream_rq_time"
        run = LocalRollout(rollout, {}, mesh, tmp_path, stable_revision="v1",
                           canary_revision="v2")
        with LoadGenerator(mesh.url, rate=60, concurrency=4):
            decision = run.run(timeout=240, max_sleep=0.25)
    finally:
        mesh.stop()

    # The baseline takes only the canary's 20%: fewer requests a sub-window than stable's,
    # and a busy machine's pauses hit both versions at once, so one judgement may lack the
    # power to call it; the rollback comes from a judgement that does, or the threshold.
    status = decision.status
    assert status.phase is Phase.DEGRADED, status.message
    found = [j for j in judgements(decision) if j is not None]
    assert any(j.verdict is JudgeVerdict.FAIL for j in found) or threshold_failed(decision), \
        [j.describe() for j in found]
    for j in found:
        assert (j.source, j.baseline) == ("envoy", "fresh"), j.describe()
        latency = j.metrics[0]
        assert latency.baseline_samples >= 8, j.describe()
        assert latency.canary_mean is not None and latency.baseline_mean is not None
        assert latency.canary_mean > latency.baseline_mean, j.describe()  # v1 is faster
