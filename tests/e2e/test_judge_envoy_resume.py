"""A local run judging on Envoy samples, SIGKILLed in its analysis step and run again: the
killed process's recorded readings are gone with it, so the resumed run judges only once
its own recorder has covered the judge's lookback (never on what it did not see), and
still rolls back a canary 15 ms slower than stable (the p95 threshold, 250 ms, would not)."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meshctl.domain.phases import Phase
from meshctl.domain.status import RolloutStatus
from testworld.kills import _sigkill, local_run, wait_for

pytestmark = [pytest.mark.envoy, pytest.mark.prometheus]
LOOKBACK = 9.0
ROLLOUT = """\
apiVersion: meshctl.io/v1alpha1
kind: Rollout
metadata: {name: judged-resume}
spec:
  service: demo
  local:
    stable: {command: [python, -m, meshctl.localmesh.app, --port, "{port}", --version, v1,
                       --latency-ms, "5"]}
    canary: {command: [python, -m, meshctl.localmesh.app, --port, "{port}", --version, v2,
                       --latency-ms, "20"]}
  slo: {latencyP95: 250ms, availability: "99.9%", window: 10s, minRequests: 10, interval: 1s,
        count: 2}
  judge: {lookback: 9s, window: 2s, step: 1s, minSamples: 8, tolerance: 25%,
          provider: {kind: envoy}}
  abortScaleDownDelaySeconds: 0
  strategy:
    canary:
      steps: [{setWeight: 50}, {analysis: {}}, {setWeight: 100}]
"""


def saved(state: Path) -> dict:
    found = list(state.glob("*.status.json"))
    return json.loads(found[0].read_text()) if found else {}


def test_a_killed_run_judges_again_only_on_what_it_recorded_itself(tmp_path: Path) -> None:
    file, state, log = tmp_path / "judged.yaml", tmp_path / "state", tmp_path / "run.log"
    file.write_text(ROLLOUT)
    state.mkdir()
    first = local_run(state, log, file=file)
    try:
        wait_for(lambda: saved(state).get("currentStep") == 1, 90, "the analysis step",
                 lambda: log.read_text()[-2000:])
        time.sleep(4)  # into the judge's lookback, before it first judges
    finally:
        _sigkill(first)
    assert first.returncode == -9
    resumed_at = datetime.now(UTC)
    second = local_run(state, log, file=file)
    try:
        code = second.wait(180)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        _sigkill(second)

    status = RolloutStatus.from_json(saved(state))
    assert code == 1 and status.phase is Phase.DEGRADED, (code, status.message,
                                                          log.read_text()[-3000:])
    assert status.abort is not None and status.abort.reason == "AnalysisFailed"
    judged = [m for run in status.analysis for metric in run.metrics if metric.name == "judge"
              for m in metric.measurements]
    assert judged, "the resumed run judged"
    for m in judged:
        # the resumed run's recorder began after resumed_at: a judgement needs its lookback
        assert m.at >= resumed_at + timedelta(seconds=LOOKBACK), (m.at, resumed_at)
        assert m.judgement is not None and m.judgement.source == "envoy", m
        latency = m.judgement.metrics[0]
        assert latency.verdict.value == "Fail", m.judgement.describe()
        assert latency.canary_samples >= 8 and latency.baseline_samples >= 8
