"""Where a local `rollout run` stops: like the cluster's --wait, a pause for a person ends the
run (exit 4) even while background analysis still has measurements scheduled."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from meshctl.cli.main import cli
from meshctl.cli.results import exit_code_for
from meshctl.domain.engine import Decision, DesiredWorkloads
from meshctl.domain.phases import Phase
from meshctl.domain.status import RolloutStatus
from meshctl.domain.traffic import TrafficSplit
from meshctl.ops.local import is_finished


def decision(phase: Phase, pause_reason: str | None, requeue: float | None) -> Decision:
    status = dataclasses.replace(RolloutStatus(), phase=phase, pause_reason=pause_reason)
    return Decision(status, TrafficSplit.stable_only(), DesiredWorkloads("a", "b", 1),
                    requeue_after=requeue)


@pytest.mark.parametrize("phase, reason, requeue, finished", [
    (Phase.PAUSED, "InconclusiveAnalysis", 5.0, True),  # background analysis still measuring
    (Phase.PAUSED, "PausedAtStep", None, True),
    (Phase.PAUSED, "AwaitingPromotion", 2.0, True),
    (Phase.PAUSED, "UserPaused", 1.0, True),
    (Phase.PAUSED, "AnalysisUnavailable", 10.0, False),  # lifts itself when Prometheus answers
    (Phase.PROGRESSING, None, 1.0, False),
    (Phase.HEALTHY, None, None, True),
    (Phase.DEGRADED, None, None, True),
])
def test_a_pause_for_a_person_ends_a_local_run(phase, reason, requeue, finished):
    d = decision(phase, reason, requeue)
    assert is_finished(d) is finished
    if phase is Phase.PAUSED and finished:
        assert exit_code_for(d.status) == 4


def test_a_local_run_has_a_default_timeout():
    result = CliRunner().invoke(cli, ["rollout", "run", "--help"])
    assert "--timeout" in result.output and "default: 30m" in result.output
