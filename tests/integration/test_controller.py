"""The controller process (Manager) against the real API server, running as the
meshctl-controller ServiceAccount bound by manifests/rbac: restarts, leader election."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from meshctl.adapters.istiod import StoredWeights
from meshctl.adapters.kube import Kube
from meshctl.adapters.rest import RestKube, controller_client
from meshctl.controller.manager import Manager
from meshctl.domain.spec import GROUP, VERSION
from testworld.kills import History, judge
from testworld.poller import Poller

from .cluster_world import Driver, rollout, seed_service, weights

pytestmark = [pytest.mark.kube, pytest.mark.cluster, pytest.mark.prometheus]
STEPS = [{"setWeight": 20}, {"pause": {"duration": "3s"}}, {"setWeight": 40}, {"analysis": {}},
         {"setWeight": 60}, {"pause": {}}, {"setWeight": 80}]


class Recorder(Poller):
    """Records the Rollout's step and the VirtualService weights as they change."""

    def __init__(self, driver: Driver) -> None:
        super().__init__()
        self.driver = driver
        self.steps: list[int] = []
        self.weights: list[dict[str, int]] = []

    def poll(self) -> None:
        status = self.driver.get().get("status") or {}
        step = status.get("currentStep")
        if step is not None and (not self.steps or self.steps[-1] != step):
            self.steps.append(step)
        w = weights(self.driver.vs())
        if not self.weights or self.weights[-1] != w:
            self.weights.append(w)


def controller_kube(kube) -> Kube | RestKube:
    """The client ``meshctl controller run`` builds, as the controller's ServiceAccount."""
    return controller_client(kube.service_account_kubeconfig("meshctl-system",
                                                             "meshctl-controller"))


def manager(kube, prometheus_url: str, identity: str, namespace: str,
            resync_seconds: float = 10) -> Manager:
    return Manager(controller_kube(kube), prometheus_url=prometheus_url,
                   data_plane=StoredWeights(), identity=identity,
                   namespace=namespace, lease_name=f"meshctl-{namespace}"[:60], lease_seconds=3,
                   renew_seconds=0.5, resync_seconds=resync_seconds)


@pytest.fixture
def setup(kube, cluster, namespace, istio_metrics) -> Iterator[tuple[Driver, str]]:
    exporter, url = istio_metrics
    seed_service(kube, namespace)
    exporter.set(namespace, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)
    driver = Driver(kube, namespace, url)
    driver.kube.create(GROUP, VERSION, namespace, "rollouts", rollout(namespace, "web:1", STEPS))
    yield driver, url


def wait(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def set_image(driver: Driver, image: str) -> None:
    driver.kube.merge_patch(GROUP, VERSION, driver.ns, "rollouts", "web", {"spec": {"template": {
        "spec": {"containers": [{"name": "web", "image": image}]}}}})


def status(driver: Driver) -> dict:
    return driver.get().get("status") or {}


def test_killed_mid_rollout_the_controller_resumes_without_repeating_or_skipping(kube, setup):
    driver, url = setup
    first = manager(kube, url, "first", driver.ns).start()
    with Recorder(driver) as recorded, History(kube, driver.ns) as history:
        wait(lambda: status(driver).get("phase") == "Healthy", what="adoption")
        set_image(driver, "web:2")
        wait(lambda: status(driver).get("currentStep") == 1, what="the timed pause")
        first.stop(release=False)  # killed at a pause: no graceful release of the lease
        second = manager(kube, url, "second", driver.ns).start()
        wait(lambda: status(driver).get("currentStep") == 3, what="analysis step")
        second.stop(release=False)  # killed during analysis
        third = manager(kube, url, "third", driver.ns).start()
        wait(lambda: status(driver).get("pauseReason") == "PausedAtStep", timeout=90,
             what="the indefinite pause")
        driver.kube.merge_patch(GROUP, VERSION, driver.ns, "rollouts", "web", {"metadata": {
            "annotations": {"meshctl.io/intent-promote": "go"}}})
        wait(lambda: status(driver).get("phase") == "Healthy", timeout=90, what="promotion")
        third.stop()
    assert recorded.steps == sorted(recorded.steps)  # never went back to a step
    # every write, as watched: each step once and in order, no unsafe state
    findings = judge(history, [], [0, 20, 40, 60, 80, 0], list(range(8)), "Healthy")
    assert findings.clean, findings.notes
    events = [e for e in driver.kube.list("events.k8s.io", "v1", driver.ns, "events")
              if e["reason"] == "WeightChanged"]  # the cluster's controllers write events too
    changes = [e["note"] for e in sorted(events, key=lambda e: e["eventTime"])]
    assert changes == ["stable/canary 80/20", "stable/canary 60/40", "stable/canary 40/60",
                       "stable/canary 20/80", "stable/canary 100/0"]  # each step once, in order
    run = next(r for r in status(driver)["analysis"] if r["name"] == "step-3")
    windowed = [m["count"] for m in run["metrics"] if m["name"] != "availability-fast"]
    assert windowed == [2, 2]  # measured the count, not more (the fast guard measures on)
    assert driver.deployment("web")["spec"]["template"]["spec"]["containers"][0]["image"] == "web:2"


def test_only_the_leader_works_and_the_other_takes_over(kube, setup):
    driver, url = setup
    a = manager(kube, url, "a", driver.ns).start()
    b = manager(kube, url, "b", driver.ns).start()
    try:
        wait(lambda: a.is_leader or b.is_leader, what="a leader")
        leader, other = (a, b) if a.is_leader else (b, a)
        with Recorder(driver):
            wait(lambda: status(driver).get("phase") == "Healthy", what="adoption")
        assert not other.is_leader
        assert b"meshctl_reconcile_duration_seconds_count" not in other.metrics.exposition() or \
            b'meshctl_reconcile_duration_seconds_count{result="ok"} 0.0' in other.metrics.exposition()
        leader.stop(release=False)  # killed: the lease is left to expire (3 s)
        wait(lambda: other.is_leader, timeout=3 + 5, what="takeover within the lease time")
        with Recorder(driver):
            set_image(driver, "web:2")
            wait(lambda: status(driver).get("currentStep", 0) >= 1, what="the new leader to work")
    finally:
        for m in (a, b):
            m.stop()


def test_a_second_rollout_of_a_deployment_takes_it_over_once_the_first_is_deleted(
        kube, setup):
    """Rollout web-b names web's Deployment: invalid while web holds it. Deleting web gives
    the Deployment up, and that change alone (no resync) brings web-b to take it over."""
    driver, url = setup
    m = manager(kube, url, "solo", driver.ns, resync_seconds=0)
    try:
        m.start()
        wait(lambda: status(driver).get("phase") == "Healthy", what="adoption")
        second = rollout(driver.ns, "web:1", STEPS)
        second["metadata"]["name"] = "web-b"
        driver.kube.create(GROUP, VERSION, driver.ns, "rollouts", second)
        other = Driver(kube, driver.ns, url, name="web-b")

        def condition() -> dict:
            found = [c for c in (other.get().get("status") or {}).get("conditions", [])
                     if c["type"] == "InvalidSpec"]
            return found[0] if found else {}

        wait(lambda: condition().get("status") == "True", what="web-b invalid")
        assert "is managed by Rollout 'web'" in condition()["message"]
        driver.kube.delete(GROUP, VERSION, driver.ns, "rollouts", "web")
        wait(lambda: (other.get().get("status") or {}).get("phase") == "Healthy",
             timeout=30, what="web-b to take the Deployment over")
        labels = driver.deployment("web")["metadata"]["labels"]
        assert labels["meshctl.io/rollout"] == "web-b"
        assert condition()["status"] == "False"
        assert driver.kube.get_or_none(GROUP, VERSION, driver.ns, "rollouts", "web") is None
    finally:
        m.stop()


def test_health_and_metrics_endpoints(kube, setup):
    import urllib.request

    driver, url = setup
    m = manager(kube, url, "solo", driver.ns).start()
    try:
        wait(lambda: m.is_leader and m.ready(), what="ready")
        with Recorder(driver):
            wait(lambda: status(driver).get("phase") == "Healthy", what="adoption")
        assert urllib.request.urlopen(m.health_url + "/healthz").status == 200
        assert urllib.request.urlopen(m.health_url + "/readyz").status == 200
        text = urllib.request.urlopen(m.health_url + "/metrics").read().decode()
        assert 'meshctl_rollouts{phase="Healthy"} 1.0' in text
        assert "meshctl_reconcile_duration_seconds_bucket" in text
        assert "meshctl_leader 1.0" in text
        # adoption wrote the Rollout's status: that call was timed, and its pass's share too
        status_writes = re.search(r'meshctl_api_request_duration_seconds_count\{'
                                  r'resource="rollouts/status",verb="PATCH"\} (\S+)', text)
        assert status_writes and float(status_writes.group(1)) >= 1, text
        waited = re.search(r"meshctl_reconcile_api_seconds_sum (\S+)", text)
        assert waited and float(waited.group(1)) > 0, text
    finally:
        m.stop()
