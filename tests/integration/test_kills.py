"""Crash safety, proven by real kills: ``meshctl controller run`` as its own process on the
real API server, ended by failpoints (``os._exit`` in the middle of a pass) or SIGKILL, and
started again. The VirtualService's write history and the Rollout's steps and events, seen
through watches, must show every step once and in order, never weight on a canary without
ready pods, and a consistent end (testworld/kills.py)."""

from __future__ import annotations

import pytest

from testworld.kills import (
    CANARY_FAILPOINTS,
    ROLLBACK_FAILPOINTS,
    failpoint_run,
    random_kill_run,
)

pytestmark = [pytest.mark.kube, pytest.mark.cluster, pytest.mark.prometheus]


def canary_traffic(exporter, ns: str, error_rate: float) -> None:
    exporter.set(ns, "web", "web", rps=40, error_rate=0.0, latency_ms=5)
    exporter.set(ns, "web", "web-canary", rps=40, error_rate=error_rate, latency_ms=5)


def test_killed_at_each_failpoint_in_turn_a_canary_is_promoted_with_every_step_once(
        kube, cluster, namespace, istio_metrics, tmp_path):
    exporter, url = istio_metrics
    canary_traffic(exporter, namespace, error_rate=0.0)
    run = failpoint_run(kube, namespace, url, tmp_path, CANARY_FAILPOINTS, rollback=False)
    assert run.findings.clean, run.findings.notes
    assert set(run.fired) == set(CANARY_FAILPOINTS), f"never reached: {run.missed}"


def test_killed_at_each_failpoint_in_turn_a_failing_canary_is_rolled_back_safely(
        kube, cluster, namespace, istio_metrics, tmp_path):
    exporter, url = istio_metrics
    canary_traffic(exporter, namespace, error_rate=0.5)
    run = failpoint_run(kube, namespace, url, tmp_path, ROLLBACK_FAILPOINTS, rollback=True)
    assert run.findings.clean, run.findings.notes
    assert {"abort", "traffic-written", "scaled", "status-saved"} <= set(run.fired), run.missed


@pytest.mark.timeout(600)
def test_twenty_random_sigkills_during_one_canary_repeat_or_skip_nothing(
        kube, cluster, namespace, istio_metrics, tmp_path):
    exporter, url = istio_metrics
    canary_traffic(exporter, namespace, error_rate=0.0)
    run = random_kill_run(kube, namespace, url, tmp_path, seed_value=12, kills=20)
    assert run.kills >= 20, "the canary finished before 20 kills"
    assert run.findings.clean, run.findings.notes
