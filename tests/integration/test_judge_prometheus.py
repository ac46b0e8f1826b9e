"""The judge through the real Prometheus provider, on exact history: Envoy-named series
backfilled with promtool (testworld/backfill.py), read by the judge's built-in queries as
``rollout run`` would read a live local mesh."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.domain.analysis import ResolvedMetric
from meshctl.domain.judge import Judged, JudgeVerdict
from meshctl.domain.measurements import NoData
from meshctl.domain.resolve import MeshKind, resolve_analysis
from meshctl.domain.spec import Rollout
from meshctl.domain.validation import load_document
from meshctl.localmesh.procs import LocalMeshError
from meshctl.ops.judging import judgement
from testworld.backfill import (
    BackfillUnavailable,
    Span,
    backfilled_prometheus,
    envoy_history,
)

from .conftest import servers_unavailable

pytestmark = [pytest.mark.prometheus]

SPAN = 600  # seconds: one lookback
START = (int(time.time()) // 3600 - 3) * 3600  # three hours ago, on the hour
CASES = {  # name -> (stable ms, canary ms, canary error ratio)
    "identical": (20.0, 20.0, 0.0),
    "slower-20pct": (20.0, 24.0, 0.0),
    "slower-1pct": (20.0, 20.2, 0.0),
    "failing-5pct": (20.0, 20.0, 0.05),
}
SPANS = {name: Span(START + i * SPAN, SPAN, stable, canary, canary_errors=errors)
         for i, (name, (stable, canary, errors)) in enumerate(CASES.items())}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        server = backfilled_prometheus(envoy_history(list(SPANS.values())),
                                       tmp_path_factory.mktemp("backfill"))
    except (BackfillUnavailable, LocalMeshError) as exc:
        servers_unavailable(str(exc))
    try:
        yield server.url
    finally:
        server.stop()


def judge_metric(**judge: Any) -> ResolvedMetric:
    rollout = load_document({
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "demo"},
        "spec": {"service": "demo", "local": {"stable": {"address": "127.0.0.1:1"},
                                              "canary": {"address": "127.0.0.1:2"}},
                 "judge": {"lookback": "10m", "window": "30s", **judge},
                 "strategy": {"canary": {"steps": [{"setWeight": 10}, {"analysis": {}}]}}}})
    assert isinstance(rollout, Rollout)
    metric = resolve_analysis(rollout, {}, MeshKind.ENVOY).steps[1][-1]
    assert metric.name == "judge"
    return metric


def judged_at(url: str, span: Span, metric: ResolvedMetric, seconds: float = SPAN) -> Any:
    """The judgement a run begun at the span's start makes ``seconds`` later."""
    started = datetime.fromtimestamp(span.start, UTC)
    now = datetime.fromtimestamp(span.start + seconds, UTC)
    request = metric.request("step-1", started, now)
    assert request.judge is not None
    provider = PrometheusProvider(url)
    try:
        return judgement(request.judge, provider, 10.0)
    finally:
        provider.close()


@pytest.mark.parametrize(("case", "verdict", "score", "failing"), [
    ("identical", JudgeVerdict.PASS, 100.0, []),
    ("slower-20pct", JudgeVerdict.FAIL, 50.0, ["latency"]),
    ("slower-1pct", JudgeVerdict.PASS, 100.0, []),  # inside the 5% tolerance
    ("failing-5pct", JudgeVerdict.FAIL, 50.0, ["error-ratio"]),
])
def test_backfilled_history_gets_the_expected_verdict(
        prometheus: str, case: str, verdict: JudgeVerdict, score: float, failing: list[str]) -> None:
    found = judged_at(prometheus, SPANS[case], judge_metric())

    assert isinstance(found, Judged) and found.judgement is not None, found
    j = found.judgement
    assert (j.verdict, j.score) == (verdict, score), j.describe()
    assert [m.name for m in j.metrics if m.verdict is JudgeVerdict.FAIL] == failing
    latency = j.metrics[0]
    # 10 min, a 30 s sample every 30 s from a window after the start to the end: 20 each
    assert latency.canary_samples == latency.baseline_samples == 20
    stable_ms, canary_ms, _ = CASES[case]
    assert latency.baseline_mean == pytest.approx(stable_ms, rel=0.03)
    assert latency.canary_mean == pytest.approx(canary_ms, rel=0.03)


def test_too_short_a_history_is_no_data(prometheus: str) -> None:
    """Two minutes into a run with a 10-minute lookback: 4 samples a side, not 10."""
    found = judged_at(prometheus, SPANS["slower-20pct"], judge_metric(), seconds=120)

    assert isinstance(found, NoData), found
    assert "latency no data (4 canary, 4 baseline samples)" in found.reason
