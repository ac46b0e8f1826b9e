"""A local run killed in the middle of its rollback (the ``abort`` failpoint: Envoy already
sends everything to stable, the status is not saved yet) and run again: the new run's Envoy
never sends a request's worth of weight to the failing canary again, and the rollout ends
Degraded (testworld/kills.py)."""

from __future__ import annotations

import pytest

from testworld.kills import local_rollback_kill_run

pytestmark = [pytest.mark.envoy, pytest.mark.prometheus]


@pytest.mark.timeout(400)
def test_a_local_run_killed_after_its_abort_write_never_serves_the_canary_again(tmp_path):
    run = local_rollback_kill_run(tmp_path / "state", tmp_path / "runs.log")
    log = (tmp_path / "runs.log").read_text()[-3000:]
    assert run.fired, log
    assert run.served, f"the second run's Envoy was never read; {log}"
    assert set(run.served) == {0}, (run.served, log)
    assert run.last.get("phase") == "Degraded", (run.last.get("phase"), log)
    assert (run.last.get("weights") or {}).get("canary") == 0
