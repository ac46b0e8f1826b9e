"""Rollouts end to end on real Pods: ``meshctl controller run`` as its own process (as its
ServiceAccount), the cluster tier's Deployment controller, scheduler and hollow kubelets
making and readying the Pods, and a real Prometheus for the analysis.

Pods here carry a readiness gate; a small gate controller in the test (as a load balancer
controller would for its targets) sets it True on every Pod, except on the track a test
holds. So a Pod stays not-Ready, or loses readiness, through the API as in a real cluster.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshctl.adapters.kube import Kube
from meshctl.domain.spec import GROUP, VERSION
from testworld.cluster import set_pod_condition, subset_service, wait_available
from testworld.kube import ApiError, KubeWorld
from testworld.poller import Poller

from .cluster_world import rollout, weights

pytestmark = [pytest.mark.kube, pytest.mark.cluster, pytest.mark.prometheus,
              pytest.mark.timeout(300)]
GATE = "meshctl.io/test-gate"
TRACK = "meshctl.io/track"


def gated_template(image: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}},
            "spec": {"readinessGates": [{"conditionType": GATE}],
                     "containers": [{"name": "web", "image": image}]}}


class GateController(Poller):
    """Sets the readiness gate of every Pod in the namespace: True, or False on the Pods of
    a held track (``hold("canary")``); runs in a thread while in its ``with`` block."""

    def __init__(self, world: KubeWorld, ns: str) -> None:
        super().__init__()
        self.world, self.ns = world, ns
        self.held: set[str] = set()

    def hold(self, track: str, held: bool = True) -> None:
        (self.held.add if held else self.held.discard)(track)

    def poll(self) -> None:
        with contextlib.suppress(ApiError, OSError, KeyError):  # a Pod going away
            for pod in self.world.request("GET", f"/api/v1/namespaces/{self.ns}/pods")["items"]:
                self._set(pod)

    def _set(self, pod: dict[str, Any]) -> None:
        # the stable Deployment's Pods from before adoption have no track label yet
        track = pod["metadata"].get("labels", {}).get(TRACK, "stable")
        want = "False" if track in self.held else "True"
        have = next((c["status"] for c in pod["status"].get("conditions", [])
                     if c["type"] == GATE), None)
        if have != want and pod["metadata"].get("deletionTimestamp") is None:
            set_pod_condition(self.world, self.ns, pod["metadata"]["name"], GATE, want == "True")


class ControllerProcess:
    """``meshctl controller run`` for one namespace, as the controller's ServiceAccount,
    trusting the stored weights (this world has no istiod); stopped with SIGTERM."""

    def __init__(self, world: KubeWorld, ns: str, prometheus_url: str) -> None:
        sa = world.service_account_kubeconfig("meshctl-system", "meshctl-controller")
        meshctl = Path(sys.executable).parent / "meshctl"
        self.process = subprocess.Popen(
            [str(meshctl), "--kubeconfig", str(sa), "-n", ns, "controller", "run",
             "--prometheus-url", prometheus_url, "--trust-stored-weights",
             "--health-addr", "127.0.0.1:0", "--resync-seconds", "5",
             "--identity", f"test-{ns}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        assert self.process.returncode == 0, err
        return err


class Service:
    """The namespace's service ``web`` (stable Deployment of ``replicas`` gated Pods), its
    Rollout, the gate controller and the controller process."""

    def __init__(self, world: KubeWorld, ns: str, prometheus_url: str, replicas: int,
                 steps: list[dict[str, Any]], **spec: Any) -> None:
        self.world, self.ns = world, ns
        self.user = Kube.from_kubeconfig(world.kubeconfig_path)
        self.gates = GateController(world, ns).__enter__()
        self.controller: ControllerProcess | None = None
        self.history: list[tuple[dict[str, int], int]] = []  # (VS weights, canary replicas)
        try:
            self._seed(prometheus_url, replicas, steps, spec)
        except BaseException:
            self.close()
            raise

    def _seed(self, prometheus_url: str, replicas: int, steps: list[dict[str, Any]],
              spec: dict[str, Any]) -> None:
        world, ns = self.world, self.ns
        world.apply(subset_service(ns, "web", gated_template("web:1"), replicas))
        wait_available(world, ns, "web", replicas)
        doc = rollout(ns, "web:1", steps, **spec)
        doc["spec"]["template"] = gated_template("web:1")
        self.user.create(GROUP, VERSION, ns, "rollouts", doc)
        self.controller = ControllerProcess(world, ns, prometheus_url)
        self.wait(lambda s: s.get("phase") == "Healthy", "adoption")

    def close(self) -> None:
        try:
            if self.controller is not None:
                self.controller.stop()
        finally:
            self.gates.__exit__()
            self.user.close()

    def status(self) -> dict[str, Any]:
        return self.user.get(GROUP, VERSION, self.ns, "rollouts", "web").get("status") or {}

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.user.get_or_none("apps", "v1", self.ns, "deployments", name)

    def pods(self, track: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.world.request(
            "GET", f"/api/v1/namespaces/{self.ns}/pods",
            query={"labelSelector": f"app=web,{TRACK}={track}"})["items"]
        return [p for p in found if p["metadata"].get("deletionTimestamp") is None]

    def vs_weights(self) -> dict[str, int]:
        return weights(self.user.get("networking.istio.io", "v1", self.ns, "virtualservices",
                                     "web"))

    def record(self) -> None:
        canary = self.deployment("web-canary")
        replicas = int(canary["spec"]["replicas"]) if canary else 0
        entry = (self.vs_weights(), replicas)
        if not self.history or self.history[-1] != entry:
            self.history.append(entry)

    def set_image(self, image: str) -> None:
        self.user.merge_patch(GROUP, VERSION, self.ns, "rollouts", "web", {"spec": {
            "template": {"spec": {"containers": [{"name": "web", "image": image}]}}}})

    def intent(self, name: str, value: str) -> None:
        self.user.merge_patch(GROUP, VERSION, self.ns, "rollouts", "web", {"metadata": {
            "annotations": {f"meshctl.io/intent-{name}": value}}})

    def wait(self, done: Callable[[dict[str, Any]], bool], what: str,
             timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.record()
            status = self.status()
            if done(status):
                return status
            assert self.controller is not None and self.controller.process.poll() is None, \
                "the controller process exited"
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; status: {self.status()}")


@pytest.fixture
def service(kube, cluster, namespace, istio_metrics) -> Iterator[Callable[..., Service]]:
    exporter, url = istio_metrics
    exporter.set(namespace, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)
    made: list[Service] = []

    def make(replicas: int, steps: list[dict[str, Any]], **spec: Any) -> Service:
        made.append(Service(cluster, namespace, url, replicas, steps, **spec))
        return made[-1]

    yield make
    for svc in made:
        svc.close()


def images(pods: list[dict[str, Any]]) -> set[str]:
    return {p["spec"]["containers"][0]["image"] for p in pods}


def ready(pods: list[dict[str, Any]]) -> int:
    return sum(1 for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                      for c in p["status"].get("conditions", [])))


def test_a_canary_scales_by_weight_on_real_pods_and_ends_with_the_new_version_stable(service):
    svc = service(4, [{"setWeight": 25}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}])
    svc.set_image("web:2")
    seen: set[int] = set()

    def progress(status: dict[str, Any]) -> bool:
        canary = svc.deployment("web-canary")
        if canary is not None:
            seen.add(ready(svc.pods("canary")))
        return status.get("phase") == "Healthy" and status.get("currentRevision") is not None \
            and images(svc.pods("stable")) == {"web:2"}

    svc.wait(progress, "the rollout to finish", timeout=150)
    # the canary Deployment was scaled by weight: 25% and 50% of 4 replicas, Pods ready
    assert {1, 2} <= seen
    assert (svc.vs_weights()) == {"stable": 100, "canary": 0}
    stable = wait_available(svc.world, svc.ns, "web", 4)
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "web:2"
    assert ready(svc.pods("stable")) == 4
    svc.wait(lambda s: not svc.pods("canary"), "the canary Pods to go")
    assert svc.deployment("web-canary")["spec"]["replicas"] == 0
    # weight never went to a canary without a ready Pod behind it
    assert all(r > 0 for w, r in svc.history if w.get("canary", 0) > 0)


def test_a_blue_green_rollout_cuts_over_to_the_ready_green_pods(service):
    svc = service(2, [{"setWeight": 50}], strategy={"blueGreen": {
        "previewRoute": {"name": "preview", "match": [
            {"headerName": "x-preview", "headerValue": {"exact": "1"}}]},
        "scaleDownDelaySeconds": 2}})
    svc.set_image("web:3")
    svc.wait(lambda s: s.get("pauseReason") == "AwaitingPromotion", "the preview")
    assert ready(svc.pods("canary")) == 2 and images(svc.pods("canary")) == {"web:3"}
    assert svc.vs_weights() == {"stable": 100, "canary": 0}
    svc.intent("promote", "p1")
    svc.wait(lambda s: s.get("phase") == "Healthy" and images(svc.pods("stable")) == {"web:3"},
             "the cut-over and promotion", timeout=120)
    assert {"stable": 0, "canary": 100} in [w for w, _ in svc.history]  # cut over at once
    assert svc.vs_weights() == {"stable": 100, "canary": 0}
    assert ready(svc.pods("stable")) == 2
    svc.wait(lambda s: not svc.pods("canary"), "the green Pods to go after the delay")


def test_a_canary_whose_pods_never_become_ready_gets_no_traffic_and_is_aborted(service):
    svc = service(2, [{"setWeight": 50}, {"pause": {}}], progressDeadlineSeconds=10,
                  abortScaleDownDelaySeconds=1)
    svc.gates.hold("canary")
    svc.set_image("web:4")
    status = svc.wait(lambda s: s.get("phase") == "Degraded", "the progress deadline")
    assert status["abort"]["reason"] == "ProgressDeadlineExceeded"
    assert svc.history and all(w.get("canary", 0) == 0 for w, _ in svc.history)
    assert svc.deployment("web")["spec"]["template"]["spec"]["containers"][0]["image"] == "web:1"
    svc.wait(lambda s: not svc.pods("canary"), "the canary scaled down")
    assert ready(svc.pods("stable")) == 2


def test_a_stable_that_loses_readiness_before_an_abort_keeps_the_canary_until_it_is_back(
        service):
    """The abort waits with the split it has while stable has no ready Pods; the canary keeps
    its Pods while it has weight, and goes only after traffic is back on a ready stable."""
    svc = service(2, [{"setWeight": 50}, {"pause": {}}], abortScaleDownDelaySeconds=1)
    svc.set_image("web:5")
    svc.wait(lambda s: s.get("pauseReason") == "PausedAtStep", "the pause at 50%")
    assert svc.vs_weights() == {"stable": 50, "canary": 50}
    svc.gates.hold("stable")
    svc.wait(lambda s: (svc.deployment("web")["status"].get("readyReplicas") or 0) == 0,
             "stable to lose readiness")
    # the controller reads Deployments from its watch cache: on a loaded machine the change
    # reaches it a moment later, and an abort before that would be a different case
    time.sleep(5)
    svc.intent("abort", "a1")
    deadline = time.monotonic() + 8  # well past abortScaleDownDelaySeconds
    while time.monotonic() < deadline:
        svc.record()
        time.sleep(0.2)
    # traffic stays where Pods are ready, and those Pods stay
    assert svc.vs_weights()["canary"] > 0, svc.history
    assert svc.status()["phase"] == "Aborting"  # not Degraded while the canary has weight
    assert all(r > 0 for w, r in svc.history if w.get("canary", 0) > 0), svc.history
    svc.gates.hold("stable", False)
    status = svc.wait(lambda s: s.get("phase") == "Degraded", "the abort to finish")
    assert status["abort"]["reason"] == "UserAbort"
    assert svc.vs_weights() == {"stable": 100, "canary": 0}
    svc.wait(lambda s: not svc.pods("canary"), "the canary scaled down after the abort")
