"""Envoy SIGKILLed under ``meshctl rollout run --mesh local``: the run's supervisor starts it
again on the same ports, the xDS server gives the new Envoy the current split (measured with
real requests through it), and the rollout finishes with every step once (testworld/kills.py).
"""

from __future__ import annotations

import pytest

from testworld.kills import envoy_kill_run

pytestmark = [pytest.mark.envoy, pytest.mark.prometheus]


@pytest.mark.timeout(600)
def test_envoy_killed_mid_run_is_restarted_with_the_current_split_and_the_rollout_finishes(
        tmp_path):
    log = tmp_path / "run.log"
    kill = envoy_kill_run(tmp_path / "state", log)
    text = log.read_text()
    assert kill.run.findings.clean, (kill.run.findings.notes, text[-3000:])
    assert kill.restarted_pid not in (0, kill.killed_pid)
    assert kill.same_ports
    assert kill.canary_weight == 50 and 0.43 <= kill.canary_share <= 0.57, kill
    assert "local mesh: envoy died" in text and "envoy started again (restart 1)" in text
