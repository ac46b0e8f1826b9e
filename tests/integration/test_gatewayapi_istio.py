"""The Gateway API backend through the real Istio control plane: meshctl writes the
HTTPRoute, istiod (the Gateway API implementation) programs the real gateway Envoy, and real
backend processes answer. "Observed" comes from istiod's debug API, the split is measured at
the backends.

Per namespace: Services ``web`` (stable, answers ``v1``) and ``web-canary`` (``v2``), each with
an EndpointSlice to its process, and an HTTPRoute ``web`` attached to the world's Gateway API
Gateway with a hostname of its own.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from meshctl.adapters.gatewayapi import HTTPRouteRouter
from meshctl.adapters.istiod import Istiod, IstiodDataPlane
from meshctl.adapters.kube import Kube
from meshctl.domain.dataplane import splits_in
from meshctl.domain.spec import GROUP, VERSION, Rollout
from meshctl.domain.traffic import HeaderMatch, HeaderRoute, TrafficSplit, Weights
from meshctl.domain.validation import load_document
from meshctl.localmesh.load import LoadGenerator, LoadStats, binomial_interval
from testworld.cluster import wait_available
from testworld.istio import ISTIO_NAMESPACE, IstioWorld
from testworld.kube import KubeWorld

from .cluster_world import Driver, phase, rollout, template

pytestmark = [pytest.mark.kube, pytest.mark.istio, pytest.mark.timeout(300)]
# the last test also needs the cluster tier (Pods for the Deployment): marked there
GATEWAY = ("gateway.networking.k8s.io", "v1")
TESTERS = HeaderRoute("testers", (HeaderMatch("x-canary", "always"),))


class Route:
    """The service's two versions, its HTTPRoute on the Gateway API gateway, and meshctl's
    router over it, observing through istiod."""

    def __init__(self, kube: KubeWorld, istio: IstioWorld, ns: str) -> None:
        self.istio, self.ns = istio, ns
        self.port = istio.gateway_api_gateway()
        self.v1, self.v2 = istio.backend("v1"), istio.backend("v2")
        istio.host_service(ns, "web", self.v1)
        istio.host_service(ns, "web-canary", self.v2)
        self.hostname = f"web.{ns}.example"
        kube.apply({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                    "metadata": {"name": "web", "namespace": ns},
                    "spec": {"parentRefs": [{"name": "meshctl-gateway-api",
                                             "namespace": ISTIO_NAMESPACE}],
                             "hostnames": [self.hostname],
                             "rules": [{"name": "primary",
                                        "backendRefs": [{"name": "web", "port": 80}]}]}})
        doc = rollout(ns, "web:1", [{"setWeight": 30}])
        doc["spec"]["trafficRouting"] = {"gatewayAPI": {
            "httpRoute": {"name": "web", "rules": ["primary"]},
            "stableService": "web", "canaryService": "web-canary"}}
        value = load_document(doc)
        assert isinstance(value, Rollout)
        self.rollout = value
        self.kube = Kube.from_kubeconfig(kube.kubeconfig_path)
        self.router = HTTPRouteRouter(self.kube, value, IstiodDataPlane(
            Istiod(istio.istiod_debug_url)))

    def observe(self, split: TrafficSplit, timeout: float = 30.0) -> float:
        """Seconds until istiod reports every proxy applies ``split``."""
        began = time.monotonic()
        while self.router.observed() != split:
            assert time.monotonic() - began < timeout, self.router.unobserved_reason()
            time.sleep(0.02)
        return time.monotonic() - began

    def send(self, count: int, headers: dict[str, str] | None = None) -> LoadStats:
        load = LoadGenerator(f"http://127.0.0.1:{self.port}/", rate=None, concurrency=4,
                             count=count, headers={"Host": self.hostname, **(headers or {})})
        return load.start().wait(60)

    def at_envoy(self) -> list[TrafficSplit | None]:
        """The split of the managed route in each of the gateway Envoy's own routes for it
        (its admin config dump: what it applies)."""
        return splits_in(self.istio.envoy_routes(), self.rollout, "primary")

    def http_route(self) -> dict[str, Any]:
        return self.kube.get(*GATEWAY, self.ns, "httproutes", "web")


def test_httproute_weights_reach_envoy_through_istiod_and_split_the_traffic(
        kube, istio, namespace):
    route = Route(kube, istio, namespace)
    route.observe(TrafficSplit(Weights(100, 0)))  # as the user wrote it: stable alone
    split = TrafficSplit(Weights.canary_at(30))
    written_at = time.monotonic()
    route.router.apply(split)
    seconds = route.observe(split)
    stats = route.send(2000)
    lo, hi = binomial_interval(stats.answered, 0.30)
    canary = stats.by_version.get("v2", 0)
    print(f"HTTPRoute 70/30: observed at istiod {seconds * 1000:.0f} ms after the write "
          f"({(time.monotonic() - written_at):.1f} s with the load); measured {canary}/"
          f"{stats.answered} to canary, interval [{lo}, {hi}]")
    assert stats.by_status == {200: 2000}
    assert lo <= canary <= hi


def test_a_header_rule_and_a_mirror_filter_are_applied_at_the_envoy(kube, istio, namespace):
    route = Route(kube, istio, namespace)
    split = TrafficSplit(Weights(100, 0), (TESTERS,), mirror_percent=100)
    route.router.apply(split)
    route.observe(split)  # istiod's routes for the gateway: the header rule and the mirror
    before = route.v2.stats()["requests"]
    testers = route.send(200, {"x-canary": "always"})
    others = route.send(200)
    assert testers.by_version == {"v2": 200}  # the header rule
    assert others.by_version == {"v1": 200}  # answers come from stable only
    deadline = time.monotonic() + 10  # and a copy of each reached the canary
    while route.v2.stats()["requests"] - before < 400 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert route.v2.stats()["requests"] - before == 400
    route.router.apply(TrafficSplit.stable_only())
    route.observe(TrafficSplit.stable_only())
    assert [r["name"] for r in route.http_route()["spec"]["rules"]] == ["primary"]


def test_a_split_observed_at_istiod_is_the_one_envoy_applies_when_it_is_observed(
        kube, istio, namespace):
    """istiod dumps a push's routes before it sends them: an HTTPRoute made and changed at
    once is the widest window, and Envoy's own routes are read the moment istiod's are
    observed. Ten routes, each on a hostname of its own."""
    split = TrafficSplit(Weights(100, 0), (TESTERS,), mirror_percent=100)
    made = []
    try:
        for i in range(10):
            made.append(kube.create_namespace(f"{namespace[:50]}-{i}"))
            route = Route(kube, istio, made[-1])
            route.router.apply(split)
            route.observe(split)
            assert route.at_envoy() == [split], f"route {i}"
    finally:
        for ns in made:
            kube.delete_namespace(ns)


@pytest.mark.cluster
def test_a_rollout_on_the_httproute_is_observed_at_istiod_and_splits_the_traffic(
        kube, cluster, istio, namespace):
    """The controller's pass, as its ServiceAccount, on the Gateway API backend: the step's
    weights are written into the HTTPRoute, observed from istiod, and measured."""
    route = Route(kube, istio, namespace)
    kube.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                         "template": template("web:1")}})
    wait_available(kube, namespace, "web", 2)
    driver = Driver(kube, namespace, "http://127.0.0.1:9",
                    data_plane=IstiodDataPlane(Istiod(istio.istiod_debug_url)))
    doc = rollout(namespace, "web:1", [{"setWeight": 30}, {"pause": {}}])
    doc["spec"]["trafficRouting"] = {"gatewayAPI": {
        "httpRoute": {"name": "web", "rules": ["primary"]},
        "stableService": "web", "canaryService": "web-canary"}}
    driver.kube.create(GROUP, VERSION, namespace, "rollouts", doc)
    driver.until(phase("Healthy"))
    driver.kube.merge_patch(GROUP, VERSION, namespace, "rollouts", "web",
                            {"spec": {"template": template("web:2")}})
    status = driver.until(phase("Paused"))["status"]
    assert status["weights"]["observed"] == {"stable": 70, "canary": 30}  # from istiod
    assert status["weights"].get("notObserved", "") == ""
    stats = route.send(2000)
    lo, hi = binomial_interval(stats.answered, 0.30)
    print(f"Rollout on the HTTPRoute at 70/30: {stats.by_version.get('v2', 0)}/"
          f"{stats.answered} to canary, interval [{lo}, {hi}]")
    assert stats.by_status == {200: 2000}
    assert lo <= stats.by_version.get("v2", 0) <= hi
