"""The comparative judge on the local mesh: real Envoy, real Prometheus, real traffic.

A canary 15 ms slower than stable stays far under the 50 ms p95 threshold on a quiet machine,
so the SLO alone would promote it; the judge catches it and it is rolled back. An identical
canary promotes. On a busy machine tail latencies can push any p95 over 50 ms (the threshold
then acts first, as it should), so each test compares within its run: whichever gate acted
is the one the status names, the judge's own verdicts are asserted wherever it measured, and
the judge is also asked directly about the live traffic at 50/50.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.domain.engine import Decision
from meshctl.domain.judge import Judged, JudgeVerdict
from meshctl.domain.phases import Phase
from meshctl.domain.resolve import MeshKind, resolve_analysis
from meshctl.domain.status import Verdict
from meshctl.domain.traffic import TrafficSplit, Weights
from meshctl.localmesh.load import LoadGenerator
from meshctl.localmesh.mesh import LocalMesh, SampleApp
from meshctl.localmesh.procs import LocalMeshError
from meshctl.ops.demo import DEMO_JUDGE, SCENARIO_3_SLO, caught_by, demo_rollout
from meshctl.ops.judging import judgement
from meshctl.ops.local import LocalRollout

from ..integration.conftest import servers_unavailable

pytestmark = [pytest.mark.envoy, pytest.mark.prometheus]
JUDGE = "comparative judge (spec.judge)"


def started_mesh(canary_ms: float, prometheus: bool = True) -> LocalMesh:
    mesh = LocalMesh(stable=SampleApp("v1", latency_ms=5.0),
                     canary=SampleApp("v2", latency_ms=canary_ms), prometheus=prometheus)
    try:
        mesh.start()
    except LocalMeshError as exc:
        servers_unavailable(str(exc))
    return mesh


def rollout_for(mesh: LocalMesh):
    stable, canary = mesh.stable_app, mesh.canary_app
    return demo_rollout("judged", f"{stable.host}:{stable.port}", f"{canary.host}:{canary.port}",
                        judge=DEMO_JUDGE, background=False, slo=SCENARIO_3_SLO)


def run_rollout(mesh: LocalMesh, state: Path) -> Decision:
    run = LocalRollout(rollout_for(mesh), {}, mesh, state, stable_revision="v1",
                       canary_revision="v2")
    with LoadGenerator(mesh.url, rate=60, concurrency=4):
        return run.run(timeout=240, max_sleep=0.25)


def judge_live(mesh: LocalMesh) -> Judged:
    """The demo's judge asked about 15 s of traffic at 50/50, the canary against stable."""
    metric = resolve_analysis(rollout_for(mesh), {}, MeshKind.ENVOY).steps[1][-1]
    mesh.router.apply(TrafficSplit(Weights.canary_at(50)))
    with LoadGenerator(mesh.url, rate=60, concurrency=4):
        time.sleep(16)
        now = datetime.now(UTC)
        request = metric.request("live", now - timedelta(seconds=15), now)
    assert request.judge is not None
    provider = PrometheusProvider(mesh.prometheus_url)
    try:
        found = judgement(request.judge, provider, 10.0)
    finally:
        provider.close()
    assert isinstance(found, Judged) and found.judgement is not None, found
    return found


def judgements(decision: Decision) -> list[Judged | None]:
    return [m.judgement for run in decision.status.analysis for metric in run.metrics
            if metric.name == "judge" for m in metric.measurements]  # type: ignore[misc]


def threshold_failed(decision: Decision) -> bool:
    return any(m.verdict is Verdict.FAILING for run in decision.status.analysis
               for m in run.metrics if m.name in ("latency-p95", "availability"))


def test_a_canary_15ms_slower_but_under_the_threshold_is_rolled_back_by_the_judge(tmp_path):
    mesh = started_mesh(20.0)
    try:
        decision = run_rollout(mesh, tmp_path)
        live = judge_live(mesh)
    finally:
        mesh.stop()

    status = decision.status
    assert status.phase is Phase.DEGRADED, status.message
    assert status.abort is not None and status.abort.reason == "AnalysisFailed"
    gates = caught_by(decision)
    if not threshold_failed(decision):  # the threshold passed it: only the judge saw it
        assert gates == JUDGE, status.abort.message
        assert "judge: 1 of 1 measurements failed" in status.abort.message
    for found in judgements(decision):  # wherever the judge judged, it saw the slowdown
        assert found is None or found.verdict is JudgeVerdict.FAIL, found.describe()
    assert live.judgement is not None
    latency = live.judgement.metrics[0]
    assert latency.verdict is JudgeVerdict.FAIL, live.judgement.describe()
    assert latency.canary_mean is not None and latency.baseline_mean is not None
    assert latency.canary_mean > latency.baseline_mean + 10  # about 15 ms slower, seen


def test_an_identical_canary_is_promoted_with_the_judge_passing(tmp_path):
    mesh = started_mesh(5.0)
    try:
        decision = run_rollout(mesh, tmp_path)
        live = judge_live(mesh)
    finally:
        mesh.stop()

    status = decision.status
    scores = [j.score for j in judgements(decision) if j is not None]
    if not threshold_failed(decision):  # nothing else held it back: it promotes
        assert status.phase is Phase.HEALTHY, status.message
        assert scores, "the judge judged every analysis step"
    assert JUDGE not in caught_by(decision)
    assert all(score == 100.0 for score in scores), scores
    assert live.judgement is not None and live.judgement.verdict is JudgeVerdict.PASS, \
        live.judgement.describe()
