"""The local mesh's supervisor: back-off as plain values, and a child that dies is started
again (a flag stands for the process: the real Envoy is killed in
tests/e2e/test_envoy_restart.py)."""

from __future__ import annotations

import threading
import time

import pytest

from meshctl.localmesh.procs import LocalMeshError
from meshctl.localmesh.supervisor import Supervisor, backoff


@pytest.mark.parametrize("failures, seconds", [
    (0, 0.2), (1, 0.4), (2, 0.8), (4, 3.2), (5, 5.0), (60, 5.0),
])
def test_backoff_doubles_up_to_its_cap(failures, seconds):
    assert backoff(failures) == pytest.approx(seconds)


def test_a_dead_child_is_started_again_and_a_failed_start_is_tried_again():
    alive = threading.Event()
    attempts: list[float] = []
    notices: list[str] = []

    def restart() -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise LocalMeshError("port taken")
        alive.set()

    supervisor = Supervisor("envoy", alive.is_set, restart, on_notice=notices.append,
                            poll=0.01, first=0.05, cap=1.0).start()
    try:
        deadline = time.monotonic() + 10
        while not alive.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        supervisor.stop()
    assert alive.is_set() and supervisor.restarts == 1 and len(attempts) == 2
    assert attempts[1] - attempts[0] >= 0.09  # the second try waited twice the first delay
    assert notices[0] == "envoy died; starting it again in 0.05 s"
    assert "envoy did not start again: port taken" in notices
    assert notices[-1] == "envoy started again (restart 1)"


def test_a_stopped_supervisor_restarts_nothing():
    calls: list[int] = []
    supervisor = Supervisor("envoy", lambda: False, lambda: calls.append(1), poll=0.01,
                            first=0.2).start()
    supervisor.stop()
    time.sleep(0.3)
    assert calls == [] and supervisor.restarts == 0
