"""A fresh baseline on the local mesh: real Envoy, real Prometheus, real traffic. A third
process of the stable version behind a third Envoy cluster takes the canary's weight; the
split Envoy applies (read from its config dump) is stable/canary/baseline 60/20/20 and then
20/40/40, requests reach the baseline's cluster, and the judge compares the canary with it
(``baseline: fresh`` in each judgement) before the canary is promoted. ``rollout run``
starts the stable command a second time when no baseline endpoint is given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from meshctl.cli.main import cli
from meshctl.domain.engine import Decision
from meshctl.domain.phases import Phase
from meshctl.localmesh.load import LoadGenerator
from meshctl.localmesh.mesh import LocalMesh, SampleApp
from meshctl.localmesh.procs import LocalMeshError
from meshctl.ops.demo import DEMO_JUDGE, SCENARIO_3_SLO, demo_rollout
from meshctl.ops.local import LocalRollout

from ..integration.conftest import servers_unavailable

pytestmark = [pytest.mark.envoy, pytest.mark.prometheus]
STEPS = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 40}, {"analysis": {}}]


def address(app: object) -> str:
    return f"{app.host}:{app.port}"  # type: ignore[attr-defined]


def test_a_judged_rollout_with_a_fresh_baseline_splits_three_ways_at_envoy(tmp_path: Path):
    mesh = LocalMesh(stable=SampleApp("v1", latency_ms=5.0), canary=SampleApp("v2", latency_ms=5.0),
                     baseline=SampleApp("v1", latency_ms=5.0))
    try:
        mesh.start()
    except LocalMeshError as exc:
        servers_unavailable(str(exc))
    observed: list[tuple[int, int, int | None]] = []

    def seen(decision: Decision) -> None:
        pair = decision.status.weights.observed
        if pair is not None and (not observed or observed[-1] != (pair.stable, pair.canary,
                                                                 pair.baseline)):
            observed.append((pair.stable, pair.canary, pair.baseline))

    try:
        apps = mesh.apps
        rollout = demo_rollout("fresh", address(apps["stable"]), address(apps["canary"]),
                               steps=STEPS, judge={**DEMO_JUDGE, "baseline": "fresh"},
                               background=False, slo=SCENARIO_3_SLO,
                               baseline=address(apps["baseline"]))
        run = LocalRollout(rollout, {}, mesh, tmp_path, stable_revision="v1",
                           canary_revision="v2")
        with LoadGenerator(mesh.url, rate=60, concurrency=4):
            decision = run.run(timeout=240, max_sleep=0.25, on_pass=seen)
        stats = mesh.envoy.admin_json("/stats?format=json&filter=^cluster\\.baseline\\."
                                      "upstream_rq_total$")
    finally:
        mesh.stop()

    status = decision.status
    assert status.phase is Phase.HEALTHY, status.message
    assert (60, 20, 20) in observed and (20, 40, 40) in observed, observed
    assert observed[-1] == (100, 0, None), observed  # back to two ways, the baseline gone
    sent = {s["name"]: s["value"] for s in stats["stats"]}
    assert sent["cluster.baseline.upstream_rq_total"] > 0, sent
    judged = [m.judgement for r in status.analysis for metric in r.metrics
              if metric.name == "judge" for m in metric.measurements
              if m.judgement is not None]  # type: ignore[attr-defined]
    assert judged and all(j.baseline == "fresh" for j in judged), judged


FRESH_LOCAL = """\
apiVersion: meshctl.io/v1alpha1
kind: Rollout
metadata: {name: fresh-local}
spec:
  service: demo
  local:   # no spec.local.baseline: the stable command is started a second time for it
    stable: {command: [python, -m, meshctl.localmesh.app, --port, "{port}", --version, v1]}
    canary: {command: [python, -m, meshctl.localmesh.app, --port, "{port}", --version, v2]}
  slo: {latencyP95: 250ms, window: 10s, minRequests: 10, interval: 1s, count: 2}
  judge: {baseline: fresh, lookback: 12s, window: 4s, step: 1s, minSamples: 8, tolerance: 25%}
  strategy:
    canary:
      steps: [{setWeight: 40}, {analysis: {}}]
"""


def test_rollout_run_starts_the_stable_command_again_as_the_fresh_baseline(tmp_path: Path):
    spec = tmp_path / "fresh-local.yaml"
    spec.write_text(FRESH_LOCAL)
    result = CliRunner().invoke(cli, ["rollout", "run", "-f", str(spec), "--state-dir",
                                      str(tmp_path / "state"), "--timeout", "180"])
    assert result.exit_code == 0, result.output
    assert "stable/canary/baseline 20/40/40" in result.stderr
    status = json.loads(next((tmp_path / "state").glob("*.status.json")).read_text())
    assert status["phase"] == "Healthy"
    judged = [m["judgement"] for r in status["analysis"] for metric in r["metrics"]
              if metric["name"] == "judge" for m in metric["measurements"]
              if m.get("judgement")]
    assert judged and all(j["baseline"] == "fresh" for j in judged), judged
