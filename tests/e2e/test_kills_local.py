"""``meshctl rollout run --mesh local`` as a process, ended at each failpoint in turn and by
seeded SIGKILLs, run again each time: the saved statuses show every step once and in order,
and the canary ends promoted (testworld/kills.py)."""

from __future__ import annotations

import pytest

from testworld.kills import LOCAL_FAILPOINTS, local_kill_run

pytestmark = [pytest.mark.envoy, pytest.mark.prometheus]


@pytest.mark.timeout(900)
def test_a_local_run_killed_at_each_failpoint_and_by_sigkills_promotes_with_every_step_once(
        tmp_path):
    run = local_kill_run(tmp_path / "state", tmp_path / "runs.log", LOCAL_FAILPOINTS,
                         kills=5, seed_value=12)
    assert run.findings.clean, (run.findings.notes, (tmp_path / "runs.log").read_text()[-3000:])
    assert set(run.fired) == set(LOCAL_FAILPOINTS), f"never reached: {run.missed}"
    assert run.kills >= len(LOCAL_FAILPOINTS) + 3
