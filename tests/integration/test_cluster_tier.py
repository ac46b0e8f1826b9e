"""The test world's cluster tier: the real controller-manager, scheduler and hollow nodes make
a Deployment's Pods, schedule them and report them Ready; a readiness gate holds one not-Ready
and the EndpointSlice follows."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testworld.cluster import ClusterTier, _kubemark_temp, set_pod_condition, wait_available
from testworld.kube import KubeWorld

pytestmark = [pytest.mark.kube, pytest.mark.cluster]
GATE = "meshctl.io/test-ready"


def deployment(ns: str, replicas: int, gated: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "app:1",
                                            "ports": [{"name": "http", "containerPort": 8080}]}]}
    if gated:
        spec["readinessGates"] = [{"conditionType": GATE}]
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "app", "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "app"}},
                     "template": {"metadata": {"labels": {"app": "app"}}, "spec": spec}}}


def service(ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": ns},
            "spec": {"selector": {"app": "app"}, "ports": [{"port": 80, "targetPort": "http"}]}}


def pods(kube: KubeWorld, ns: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = kube.request(
        "GET", f"/api/v1/namespaces/{ns}/pods", query={"labelSelector": "app=app"})["items"]
    return found


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod["status"].get("conditions", []))


def endpoints(kube: KubeWorld, ns: str) -> list[dict[str, Any]]:
    slices = kube.request("GET", f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                          query={"labelSelector": "kubernetes.io/service-name=app"})["items"]
    return [e for s in slices for e in s.get("endpoints") or []]


def until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_deployment_gets_scheduled_ready_pods_from_the_controllers(cluster, namespace):
    cluster.apply([deployment(namespace, 3), service(namespace)])
    status = wait_available(cluster, namespace, "app", 3)["status"]
    assert status["readyReplicas"] == 3
    found = pods(cluster, namespace)
    assert len(found) == 3 and all(ready(p) for p in found)
    assert {p["spec"]["nodeName"] for p in found} <= {n["metadata"]["name"] for n in cluster.request(
        "GET", "/api/v1/nodes")["items"]}
    owners = {p["metadata"]["ownerReferences"][0]["kind"] for p in found}
    assert owners == {"ReplicaSet"}
    until("3 ready endpoints", lambda: len(
        [e for e in endpoints(cluster, namespace) if e["conditions"].get("ready")]) == 3)


def test_a_readiness_gate_holds_a_pod_not_ready_until_its_condition_is_set(cluster, namespace):
    cluster.apply([deployment(namespace, 1, gated=True), service(namespace)])
    pod = until("a running Pod", lambda: [p for p in pods(cluster, namespace)
                                          if p["status"].get("phase") == "Running"])[0]
    time.sleep(2)  # the kubelet has had time to report it
    assert not ready(pods(cluster, namespace)[0])
    status = cluster.request(
        "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/app")["status"]
    assert status.get("availableReplicas", 0) == 0
    assert [e["conditions"]["ready"] for e in until(
        "an endpoint", lambda: endpoints(cluster, namespace))] == [False]

    set_pod_condition(cluster, namespace, pod["metadata"]["name"], GATE, True)

    wait_available(cluster, namespace, "app", 1)
    until("a ready endpoint",
          lambda: [e for e in endpoints(cluster, namespace) if e["conditions"].get("ready")])


def test_stopping_the_tier_leaves_no_process_and_no_file():
    """A tier of its own (its own world: node names are the tier's), stopped: every process
    gone, and kubemark's /tmp root directory and runtime socket removed."""
    with KubeWorld() as world:
        tier = ClusterTier(world, nodes=1).start()
        pids = [p.popen.pid for p in tier._processes]
        made = _kubemark_temp(tier._node_pids())
        assert len(made) == 2  # /tmp/hollow-kubelet.<random> and /tmp/kubelet_remote_<n>.sock
        tier.stop()
        assert [p for p in made if p.exists()] == []
        assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
