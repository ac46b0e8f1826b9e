"""The comparative judge in the controller's reconcile, against the real API server, real
Pods and a real Prometheus holding Istio-named series (the sidecars' stand-in answers each
workload at a set latency, so the p95 threshold is exact): a canary 15 ms slower than stable
is far under the 50 ms threshold and is rolled back by the judge alone; an identical canary
promotes, and the status carries the judgement."""

from __future__ import annotations

import pytest

from meshctl.domain.spec import GROUP, VERSION
from meshctl.ops.views import view_of

from .cluster_world import Driver, judged_world, phase, weights

pytestmark = [pytest.mark.kube, pytest.mark.cluster, pytest.mark.prometheus]
STEPS = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}]
JUDGE = {"lookback": "12s", "window": "4s", "step": "1s", "minSamples": 8}


@pytest.fixture
def world(kube, cluster, namespace, istio_metrics):
    exporter, url = istio_metrics
    return judged_world(kube, namespace, exporter, url, ("web", "web-canary"), STEPS,
                        JUDGE), exporter


def start(driver: Driver, image: str) -> None:
    driver.kube.merge_patch(GROUP, VERSION, driver.ns, "rollouts", "web",
                            {"spec": {"template": {"spec": {"containers": [
                                {"name": "web", "image": image}]}}}})


def test_a_canary_15ms_slower_is_rolled_back_by_the_judge_alone(world):
    driver, exporter = world
    exporter.set(driver.ns, "web", "web-canary", latency_ms=20)
    start(driver, "web:2")

    obj = driver.until(phase("Degraded"), timeout=120)

    status = obj["status"]
    assert weights(driver.vs()) == {"stable": 100, "canary": 0}
    assert status["abort"]["reason"] == "AnalysisFailed"
    assert "judge: 1 of 1 measurements failed" in status["abort"]["message"]
    run = next(r for r in status["analysis"] if r["name"] == "step-1")
    metrics = {m["name"]: m for m in run["metrics"]}
    assert all(m["value"] < 50 for m in metrics["latency-p95"]["measurements"])  # passed it
    view = view_of(obj)
    assert view.judgement is not None and view.judgement.verdict == "Fail"
    latency = view.judgement.metrics[0]
    assert latency.name == "latency" and latency.verdict == "Fail"
    assert latency.canary_mean == pytest.approx(20, rel=0.05)
    assert latency.baseline_mean == pytest.approx(5, rel=0.05)
    assert latency.p_value is not None and latency.p_value < 0.01


def test_an_identical_canary_promotes_with_the_judge_passing(world):
    driver, _ = world
    start(driver, "web:3")

    obj = driver.until(phase("Healthy"), timeout=120)

    judged = [m["judgement"] for r in obj["status"]["analysis"] for metric in r["metrics"]
              if metric["name"] == "judge" for m in metric["measurements"] if m.get("judgement")]
    assert {r["name"] for r in obj["status"]["analysis"]} >= {"step-1", "step-3"}
    assert judged and all(j["verdict"] == "Pass" and j["score"] == 100 for j in judged)
    assert judged[-1]["baseline"] == "stable"
