"""A fresh baseline through real istiod, on a VirtualService and on an HTTPRoute: the
three-way split meshctl writes is programmed into a real Envoy gateway, meshctl observes it
from istiod (never from the stored object), and real requests reach the stable, the canary
and the baseline processes in proportion."""

from __future__ import annotations

import pytest

from meshctl.domain.spec import GROUP, VERSION
from meshctl.domain.traffic import TrafficSplit, Weights
from meshctl.localmesh.load import LoadGenerator, binomial_interval
from testworld.cluster import wait_available

from .cluster_world import Driver, rollout, template
from .test_gatewayapi_istio import Route
from .test_istio import Service, data_plane, phase_is

pytestmark = [pytest.mark.kube, pytest.mark.cluster, pytest.mark.istio,
              pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def _pods(cluster):
    """The Deployments here (the baseline's too) get their Pods from the cluster tier."""


def test_istiod_programs_the_three_way_split_and_meshctl_observes_it(kube, istio, namespace):
    svc = Service(kube, istio, namespace)
    baseline = istio.backend("v1-baseline")
    istio.subset_service(namespace, "web", {"stable": svc.v1, "canary": svc.v2,
                                            "baseline": baseline})
    driver = Driver(kube, namespace, "http://127.0.0.1:9", data_plane=data_plane(istio))
    svc.user.create(GROUP, VERSION, namespace, "rollouts", {
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"service": "web", "workloadRef": {"name": "web"},
                 "template": template("web:1"),
                 "trafficRouting": {"istio": {
                     "virtualService": {"name": "web", "routes": ["primary"]},
                     "destinationRule": {"name": "web", "stableSubset": "stable",
                                         "canarySubset": "canary"}}},
                 "slo": {"window": "4s", "interval": "1s", "count": 2, "minRequests": 5},
                 "judge": {"lookback": "12s", "window": "4s", "step": "1s", "minSamples": 8,
                           "baseline": "fresh"},
                 "strategy": {"canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}}}})
    driver.until(phase_is("Healthy"))
    svc.user.merge_patch(GROUP, VERSION, namespace, "rollouts", "web",
                         {"spec": {"template": template("web:2")}})

    status = driver.until(phase_is("Paused"), timeout=120)["status"]

    assert status["weights"]["observed"] == {"stable": 40, "canary": 30, "baseline": 30}
    assert status["weights"].get("notObserved", "") == ""
    assert svc.envoy_split() == TrafficSplit(Weights(40, 30, 30))
    load = LoadGenerator(f"{istio.gateway_url}/", rate=None, concurrency=4, count=2000,
                         headers={"Host": svc.host}).start()
    stats = load.wait(60)
    assert stats.by_status == {200: 2000}
    for version in ("v2", "v1-baseline"):
        lo, hi = binomial_interval(stats.answered, 0.30)
        assert lo <= stats.by_version.get(version, 0) <= hi, (version, stats.by_version)
    print(f"measured at 40/30/30: {stats.by_version}")


def test_a_fresh_baseline_on_the_gateway_api_is_a_third_backend_ref_istiod_programs(
        kube, istio, namespace):
    """The Gateway API backend: the baseline's Service is the third backendRef of the
    managed rule; istiod (the Gateway API implementation) programs it into the gateway
    Envoy, meshctl observes 40/30/30 from istiod, and requests reach the three processes."""
    route = Route(kube, istio, namespace)
    baseline = istio.backend("v1-baseline")
    istio.host_service(namespace, "web-baseline", baseline)
    kube.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                         "template": template("web:1")}})
    wait_available(kube, namespace, "web", 2)
    driver = Driver(kube, namespace, "http://127.0.0.1:9", data_plane=data_plane(istio))
    doc = rollout(namespace, "web:1", [{"setWeight": 30}, {"pause": {}}],
                  judge={"lookback": "12s", "window": "4s", "step": "1s", "minSamples": 8,
                         "baseline": "fresh"})
    doc["spec"]["trafficRouting"] = {"gatewayAPI": {
        "httpRoute": {"name": "web", "rules": ["primary"]},
        "stableService": "web", "canaryService": "web-canary",
        "baselineService": "web-baseline"}}
    driver.kube.create(GROUP, VERSION, namespace, "rollouts", doc)
    driver.until(phase_is("Healthy"))
    driver.kube.merge_patch(GROUP, VERSION, namespace, "rollouts", "web",
                            {"spec": {"template": template("web:2")}})

    status = driver.until(phase_is("Paused"), timeout=120)["status"]

    assert status["weights"]["observed"] == {"stable": 40, "canary": 30, "baseline": 30}
    refs = route.http_route()["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [
        ("web", 40), ("web-canary", 30), ("web-baseline", 30)]
    assert driver.deployment("web-baseline") is not None
    stats = route.send(2000)
    assert stats.by_status == {200: 2000}
    for version in ("v2", "v1-baseline"):
        lo, hi = binomial_interval(stats.answered, 0.30)
        assert lo <= stats.by_version.get(version, 0) <= hi, (version, stats.by_version)
    print(f"measured at 40/30/30: {stats.by_version}")
