"""A fresh baseline (``spec.judge.baseline: fresh``) on the real API server with the world's
cluster tier making the Pods: the controller's reconcile makes ``web-baseline`` at the
canary's size before any weight reaches it, writes three weighted destinations, judges the
canary against it, and removes it at promotion and at rollback; a controller process killed
mid-rollout (a failpoint right after the baseline was made, then SIGKILL mid-step) finds the
same Deployment again and finishes with every step once."""

from __future__ import annotations

import time
from typing import Any

import pytest

from meshctl.adapters.kube import Kube
from meshctl.domain.spec import GROUP, VERSION
from testworld.kills import ControllerProcess, History, promoted, wait_for

from .cluster_world import judged_world, phase, rollout, seed_service

pytestmark = [pytest.mark.kube, pytest.mark.cluster, pytest.mark.prometheus]
STEPS = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 40}, {"analysis": {}}]
JUDGE = {"lookback": "12s", "window": "4s", "step": "1s", "minSamples": 8, "baseline": "fresh"}
WORKLOADS = ("web", "web-canary", "web-baseline")


def route(vs: dict[str, Any]) -> dict[str, int]:
    primary = next(r for r in vs["spec"]["http"] if r.get("name") == "primary")
    return {d["destination"].get("subset", "?"): d.get("weight", 100) for d in primary["route"]}


def start(kube: Kube, ns: str, image: str) -> None:
    kube.merge_patch(GROUP, VERSION, ns, "rollouts", "web",
                     {"spec": {"template": {"spec": {"containers": [
                         {"name": "web", "image": image}]}}}})


@pytest.fixture
def world(kube, cluster, namespace, istio_metrics):
    exporter, url = istio_metrics
    return judged_world(kube, namespace, exporter, url, WORKLOADS, STEPS, JUDGE), exporter


def at_first_weight(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return status.get("currentStep", 0) >= 1 and status.get("phase") == "Progressing"


def test_the_baseline_runs_beside_the_canary_with_its_weight_and_goes_at_promotion(world):
    driver, _ = world
    start(driver.kube, driver.ns, "web:2")

    obj = driver.until(at_first_weight, timeout=60)

    baseline = driver.deployment("web-baseline")
    canary = driver.deployment("web-canary")
    assert baseline is not None and canary is not None
    assert baseline["spec"]["replicas"] == canary["spec"]["replicas"] == 1  # 2 x 20%
    assert baseline["status"].get("readyReplicas") == 1
    assert baseline["spec"]["template"]["spec"]["containers"][0]["image"] == "web:1"
    assert baseline["spec"]["template"]["metadata"]["labels"]["meshctl.io/track"] == "baseline"
    owner = baseline["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Rollout", "web",
                                                            obj["metadata"]["uid"])
    assert route(driver.vs()) == {"stable": 60, "canary": 20, "baseline": 20}
    subsets = driver.get("destinationrules", "web", "networking.istio.io", "v1")["spec"]["subsets"]
    assert {"name": "baseline", "labels": {"meshctl.io/track": "baseline"}} in subsets
    assert obj["status"]["weights"]["baseline"] == 20

    obj = driver.until(phase("Healthy"), timeout=180)

    assert driver.deployment("web-baseline") is None
    assert route(driver.vs()) == {"stable": 100, "canary": 0, "baseline": 0}
    dr = driver.get("destinationrules", "web", "networking.istio.io", "v1")
    assert [s["name"] for s in dr["spec"]["subsets"]] == ["stable"]
    judged = [m["judgement"] for r in obj["status"]["analysis"] for metric in r["metrics"]
              if metric["name"] == "judge" for m in metric["measurements"] if m.get("judgement")]
    assert judged and all(j["verdict"] == "Pass" and j["baseline"] == "fresh" for j in judged)


def test_a_canary_slower_than_the_fresh_baseline_is_rolled_back_and_the_baseline_removed(world):
    driver, exporter = world
    exporter.set(driver.ns, "web", "web-canary", latency_ms=20)
    # stable itself is slow: against stable the canary would look fine
    exporter.set(driver.ns, "web", "web", latency_ms=30)
    start(driver.kube, driver.ns, "web:2")

    obj = driver.until(lambda o: phase("Degraded")(o)
                       and driver.deployment("web-baseline") is None, timeout=150)

    assert obj["status"]["abort"]["reason"] == "AnalysisFailed"
    assert "judge: 1 of 1 measurements failed" in obj["status"]["abort"]["message"]
    assert route(driver.vs()) == {"stable": 100, "canary": 0, "baseline": 0}
    latency = next(m for r in obj["status"]["analysis"] for metric in r["metrics"]
                   if metric["name"] == "judge" for m in metric["measurements"]
                   if m.get("judgement"))["judgement"]["metrics"][0]
    assert latency["baselineMean"] == pytest.approx(5, rel=0.05)  # the baseline's, not stable's


def test_a_killed_controller_finds_the_same_baseline_again(kube, cluster, namespace,
                                                           istio_metrics, tmp_path):
    exporter, url = istio_metrics
    seed_service(kube, namespace)
    for workload in WORKLOADS:
        exporter.set(namespace, "web", workload, rps=40, error_rate=0.0, latency_ms=5)
    admin = Kube.from_kubeconfig(kube.kubeconfig_path)
    admin.create(GROUP, VERSION, namespace, "rollouts", rollout(
        namespace, "web:1", [{"setWeight": 20}, {"pause": {"duration": "3s"}},
                             {"setWeight": 40}, {"pause": {"duration": "3s"}}], judge=JUDGE))
    process = ControllerProcess(kube, namespace, url, tmp_path / "controller.log")
    try:
        process.start()
        wait_for(lambda: _phase(admin, namespace) == "Healthy", 60, "adoption")
        process.kill()
        with History(kube, namespace) as history:
            start(admin, namespace, "web:2")
            process.start("baseline-scaled")  # exits right after the baseline is made
            assert process.wait_exit(timeout=60) == 137, "failpoint baseline-scaled not reached"
            process.start()
            wait_for(lambda: route(_vs(admin, namespace)).get("baseline") == 20, 60,
                     "the baseline's first weight")
            time.sleep(1.0)
            process.kill()  # SIGKILL mid-step
            process.start()
            wait_for(lambda: promoted(admin, namespace), 120, "promotion",
                     lambda: admin.get(GROUP, VERSION, namespace, "rollouts", "web")["status"])
            process.kill()
    finally:
        process.kill()

    changes = history.ordered()
    uids = {c.obj["metadata"]["uid"] for c in changes
            if c.plural == "deployments" and c.name == "web-baseline"}
    assert len(uids) == 1, f"{len(uids)} baseline Deployments were made"
    splits, ready, unsafe = [], 0, []
    for c in changes:  # in the order etcd committed them
        if c.plural == "deployments" and c.name == "web-baseline":
            ready = int((c.obj.get("status") or {}).get("readyReplicas") or 0)
        if c.plural == "virtualservices":
            found = route(c.obj)
            split = (found.get("stable"), found.get("canary"), found.get("baseline"))
            if (found.get("baseline") or 0) > 0 and ready == 0:
                unsafe.append(split)  # weight on a baseline with no ready pod
            if not splits or splits[-1] != split:
                splits.append(split)
    assert [s for s in splits if s[1]] == [(60, 20, 20), (20, 40, 40)]  # each step once
    assert unsafe == []
    assert admin.get_or_none("apps", "v1", namespace, "deployments", "web-baseline") is None


def _phase(kube: Kube, ns: str) -> str | None:
    return (kube.get(GROUP, VERSION, ns, "rollouts", "web").get("status") or {}).get("phase")


def _vs(kube: Kube, ns: str) -> dict[str, Any]:
    return kube.get("networking.istio.io", "v1", ns, "virtualservices", "web")
