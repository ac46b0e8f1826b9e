"""Faults survived, each with a real server: the controller (its own process) drives a
canary on the real API server while kube-apiserver is restarted, or Prometheus is stopped or
hung (it accepts connections and never answers: slower than any query timeout). The
writes seen through watches must show every step once, no unsafe state, and no promotion
on measurements that could not be taken (testworld/kills.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from meshctl.domain.spec import GROUP, VERSION
from meshctl.localmesh.prometheus import Prometheus, ScrapeTarget
from testworld.kills import (
    CANARY_STEPS,
    ControllerProcess,
    History,
    Readiness,
    events_of,
    judge,
    phase_of,
    promoted,
    seed,
    start_canary,
    wait_for,
    weights_of,
)

pytestmark = [pytest.mark.kube, pytest.mark.prometheus]


@pytest.fixture
def prometheus(istio_metrics, tmp_path) -> Iterator[Prometheus]:
    """A Prometheus of this test's own (it gets stopped), scraping the shared exporter."""
    exporter, _ = istio_metrics
    server = Prometheus([ScrapeTarget("istio", exporter.address)], workdir=tmp_path / "p1")
    server.start()
    yield server
    server.stop()


def traffic(istio_metrics, ns: str) -> None:
    exporter, _ = istio_metrics
    exporter.set(ns, "web", "web", rps=40, error_rate=0.0, latency_ms=5)
    exporter.set(ns, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)


def status_of(kube, ns: str) -> dict:
    return kube.get(GROUP, VERSION, ns, "rollouts", "web").get("status") or {}


def test_kube_apiserver_restarted_mid_rollout_the_canary_goes_on_with_every_step_once(
        kube, namespace, istio_metrics, tmp_path):
    _, url = istio_metrics
    traffic(istio_metrics, namespace)
    admin = seed(kube, namespace, CANARY_STEPS)
    process = ControllerProcess(kube, namespace, url, tmp_path / "controller.log").start()
    try:
        with Readiness(kube, namespace, ("web", "web-canary")):
            wait_for(lambda: phase_of(admin, namespace) == "Healthy", 60, "adoption")
            before = {e["metadata"]["name"]
                      for e in admin.list("events.k8s.io", "v1", namespace, "events")}
            with History(kube, namespace) as history:
                start_canary(admin, namespace)
                wait_for(lambda: status_of(admin, namespace).get("currentStep", 0) >= 1, 60,
                         "the first step")
                kube.restart_apiserver(down_seconds=3)
                wait_for(lambda: promoted(admin, namespace), 150, "promotion")
        assert process.alive, "the controller survived the API server's restart"
    finally:
        process.kill()
    findings = judge(history, events_of(admin, namespace, before), weights_of(CANARY_STEPS),
                     list(range(len(CANARY_STEPS) + 1)), "Healthy")
    assert findings.clean, findings.notes


STEPS = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 60}]


@pytest.mark.parametrize("fault", ["stopped", "hung"])
def test_prometheus_stopped_or_hung_pauses_the_analysis_never_promotes_and_resumes(
        kube, namespace, istio_metrics, prometheus, tmp_path, fault):
    traffic(istio_metrics, namespace)
    admin = seed(kube, namespace, STEPS)
    process = ControllerProcess(kube, namespace, prometheus.url, tmp_path / "controller.log")
    process.start()
    port = int(prometheus.url.rsplit(":", 1)[1])
    replacement: Prometheus | None = None
    try:
        with Readiness(kube, namespace, ("web", "web-canary")):
            wait_for(lambda: phase_of(admin, namespace) == "Healthy", 60, "adoption")
            with History(kube, namespace) as history:
                start_canary(admin, namespace)
                wait_for(lambda: status_of(admin, namespace).get("currentStep", 0) >= 1, 60,
                         "the analysis step")
                pid = prometheus.process.pid
                assert pid is not None
                if fault == "stopped":
                    prometheus.stop()
                else:  # accepts connections, never answers
                    os.kill(pid, signal.SIGSTOP)
                wait_for(lambda: status_of(admin, namespace).get("pauseReason")
                         == "InconclusiveAnalysis", 120, "the pause")
                paused = status_of(admin, namespace)
                assert "did not answer" in paused.get("message", ""), paused.get("message")
                if fault == "stopped":
                    exporter, _ = istio_metrics
                    replacement = Prometheus([ScrapeTarget("istio", exporter.address)],
                                             workdir=tmp_path / "p2", port=port)
                    replacement.start()
                else:
                    os.kill(pid, signal.SIGCONT)
                admin.merge_patch(GROUP, VERSION, namespace, "rollouts", "web", {"metadata": {
                    "annotations": {"meshctl.io/intent-resume": "prometheus-is-back"}}})
                wait_for(lambda: promoted(admin, namespace), 120, "promotion")
    finally:
        process.kill()
        if replacement is not None:
            replacement.stop()
    phases = [(c.obj.get("status") or {}).get("phase") for c in history.ordered()
              if c.plural == "rollouts"]
    at_pause = phases.index("Paused")
    assert "Promoting" not in phases[:at_pause] and "Aborting" not in phases, phases
    findings = judge(history, [], weights_of(STEPS), [0, 1, 2, 3], "Healthy")
    assert findings.clean, findings.notes
