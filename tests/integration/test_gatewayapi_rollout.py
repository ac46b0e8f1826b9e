"""The example rollouts/storefront-httproute.yaml, whole, against the real API server with the
Gateway API's CRDs: the objects it expects (rollouts/objects/) are applied, the controller's
reconcile runs as the controller's ServiceAccount (the chart's RBAC), the SLO is read from a
real Prometheus, and the Deployments get real Pods from the cluster tier."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshctl.domain.spec import GROUP, VERSION
from testworld.cluster import wait_available

from .cluster_world import Driver, phase

pytestmark = [pytest.mark.kube, pytest.mark.cluster, pytest.mark.prometheus]
REPO = Path(__file__).resolve().parents[2]
GATEWAY = ("gateway.networking.k8s.io", "v1")
FAST_SLO = {"window": "4s", "interval": "1s", "count": 2, "minRequests": 5}


def example(ns: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The example Rollout (its SLO shortened, its namespace the test's) and its objects."""
    rollout = yaml.safe_load((REPO / "rollouts/storefront-httproute.yaml").read_text())
    objects = list(yaml.safe_load_all(
        (REPO / "rollouts/objects/storefront-httproute.yaml").read_text()))
    for obj in [rollout, *objects]:
        obj["metadata"]["namespace"] = ns
    rollout["spec"]["slo"] = FAST_SLO
    rollout["spec"]["abortScaleDownDelaySeconds"] = 2
    return rollout, objects


def pages(route: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in route["spec"]["rules"] if r.get("name") == "pages")


def weights(route: dict[str, Any]) -> dict[str, int]:
    return {ref["name"]: ref.get("weight", 1) for ref in pages(route)["backendRefs"]}


@pytest.fixture
def world(kube, cluster, namespace, istio_metrics):
    exporter, url = istio_metrics
    rollout, objects = example(namespace)
    template = copy.deepcopy(rollout["spec"]["template"])
    template["spec"]["containers"][0]["image"] = "registry.example/shop/storefront:3.0.0"
    kube.apply([*objects, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "storefront", "namespace": namespace},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "storefront"}},
                 "template": template}}])
    wait_available(kube, namespace, "storefront", 2)
    exporter.set(namespace, "storefront", "storefront-canary", rps=40, error_rate=0.0,
                 latency_ms=5)
    driver = Driver(kube, namespace, url, name="storefront")
    first = copy.deepcopy(rollout)
    first["spec"]["template"] = template
    driver.kube.create(GROUP, VERSION, namespace, "rollouts", first)
    driver.until(phase("Healthy"))  # adopts the running version
    return driver, exporter, rollout


def route(driver: Driver) -> dict[str, Any]:
    return driver.kube.get(*GATEWAY, driver.ns, "httproutes", "storefront")


def test_the_example_rolls_out_on_the_http_route_and_gives_it_back(world):
    driver, _, rollout = world
    original = route(driver)["spec"]
    driver.kube.merge_patch(GROUP, VERSION, driver.ns, "rollouts", "storefront",
                            {"spec": {"template": rollout["spec"]["template"]}})
    # step 0: testers reach the canary by a header rule before the managed rule
    driver.until(lambda o: any(r.get("name") == "meshctl-pages-testers"
                               for r in route(driver)["spec"]["rules"]))
    header = next(r for r in route(driver)["spec"]["rules"]
                  if r.get("name") == "meshctl-pages-testers")
    assert header["matches"][0]["headers"] == [
        {"type": "Exact", "name": "x-canary", "value": "always"}]
    assert [ref["name"] for ref in header["backendRefs"]] == ["storefront-canary"]
    # step 1: a mirror of 20% of live traffic, weights still all stable
    driver.until(lambda o: any(f.get("type") == "RequestMirror"
                               for f in pages(route(driver)).get("filters", [])))
    mirror = pages(route(driver))["filters"][0]["requestMirror"]
    assert mirror["percent"] == 20 and mirror["backendRef"]["name"] == "storefront-canary"
    assert weights(route(driver)) == {"storefront-stable": 100, "storefront-canary": 0}
    # the managed rule is claimed for this Rollout (another Rollout naming it is refused)
    assert json.loads(route(driver)["metadata"]["annotations"]["meshctl.io/routes"]) == {
        "pages": "storefront"}
    # then 10% and 50% of the traffic, each step judged by the SLO, and promotion
    seen: set[tuple[int, int]] = set()

    def healthy(obj: dict[str, Any]) -> bool:
        found = weights(route(driver))
        seen.add((found["storefront-stable"], found["storefront-canary"]))
        return phase("Healthy")(obj)

    status = driver.until(healthy, timeout=120)["status"]
    assert {(90, 10), (50, 50)} <= seen, seen
    assert status["weights"]["stable"] == 100
    final = route(driver)
    assert weights(final) == {"storefront-stable": 100, "storefront-canary": 0}
    assert [r["name"] for r in final["spec"]["rules"]] == ["assets", "pages"]
    assert final["spec"]["rules"][0] == original["rules"][0]  # the rule meshctl does not manage
    stable = driver.deployment("storefront")
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry.example/shop/storefront:3.1.0"
    assert driver.deployment("storefront-canary")["spec"]["replicas"] == 0
    # deleting the Rollout gives the HTTPRoute back as it was found
    driver.kube.delete(GROUP, VERSION, driver.ns, "rollouts", "storefront")
    driver.once()
    given_back = route(driver)
    assert given_back["spec"] == original
    assert "meshctl.io/original-spec" not in (given_back["metadata"].get("annotations") or {})
    assert "meshctl.io/routes" not in (given_back["metadata"].get("annotations") or {})


def test_a_missing_rule_marks_the_rollout_invalid_and_writes_nothing(world):
    driver, _, rollout = world
    before = route(driver)
    driver.kube.merge_patch(GROUP, VERSION, driver.ns, "rollouts", "storefront", {"spec": {
        "template": rollout["spec"]["template"],
        "trafficRouting": {"gatewayAPI": {"httpRoute": {"name": "storefront",
                                                        "rules": ["nope"]}}}}})
    driver.once()
    obj = driver.get()
    condition = next(c for c in obj["status"]["conditions"] if c["type"] == "InvalidSpec")
    assert condition["status"] == "True"
    assert ("spec.trafficRouting.gatewayAPI.httpRoute.rules[0]: rule 'nope' is not in "
            "HTTPRoute storefront (it has: 'assets', 'pages')") in condition["message"]
    assert route(driver)["spec"] == before["spec"]
    assert driver.deployment("storefront-canary") is None
