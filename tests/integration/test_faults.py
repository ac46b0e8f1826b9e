"""Faults survived, each with a real server: the controller (its own process) drives a
canary on the real API server while kube-apiserver is restarted, or Prometheus is stopped or
hung (it accepts connections and never answers: slower than any query timeout). The writes
seen through watches must show every step once, no unsafe state, and no promotion or
rollback on measurements that could not be taken, and a pause for a Prometheus that does not
answer that lifts itself when it answers again (testworld/kills.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshctl.localmesh.prometheus import Prometheus, ScrapeTarget
from testworld.kills import apiserver_restart_run, prometheus_fault_run

pytestmark = [pytest.mark.kube, pytest.mark.cluster, pytest.mark.prometheus]


def traffic(istio_metrics, ns: str) -> None:
    exporter, _ = istio_metrics
    exporter.set(ns, "web", "web", rps=40, error_rate=0.0, latency_ms=5)
    exporter.set(ns, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)


def test_kube_apiserver_restarted_mid_rollout_the_canary_goes_on_with_every_step_once(
        kube, cluster, namespace, istio_metrics, tmp_path):
    traffic(istio_metrics, namespace)
    run = apiserver_restart_run(kube, namespace, istio_metrics[1], tmp_path)
    assert run.findings.clean, run.findings.notes


@pytest.fixture
def prometheus(istio_metrics, tmp_path) -> Iterator[Prometheus]:
    """A Prometheus of this test's own (it gets stopped), scraping the shared exporter."""
    server = Prometheus([ScrapeTarget("istio", istio_metrics[0].address)],
                        workdir=tmp_path / "p1")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("fault", ["stopped", "hung"])
def test_prometheus_stopped_or_hung_pauses_the_analysis_never_promotes_and_resumes_when_back(
        kube, cluster, namespace, istio_metrics, prometheus, tmp_path, fault):
    """Stopped: SIGKILLed, then started again on the same port with the same data directory.
    The rollout pauses (AnalysisUnavailable, saying Prometheus did not answer), stays paused
    while it is gone, and resumes by itself when it answers again: nobody runs resume."""
    traffic(istio_metrics, namespace)
    run = prometheus_fault_run(kube, namespace, prometheus, tmp_path, fault)
    assert run.findings.clean, run.findings.notes
