"""The Gateway API router on the real API server, with the Gateway API's own CRDs (their
schema and CEL rules check what meshctl writes): weights on backendRefs, header rules,
a RequestMirror filter, and delete giving back only what meshctl changed."""

from __future__ import annotations

from typing import Any

import pytest

from meshctl.adapters.gatewayapi import HTTPRouteRouter
from meshctl.adapters.istiod import StoredWeights
from meshctl.adapters.kube import Kube
from meshctl.domain.spec import Rollout
from meshctl.domain.traffic import HeaderMatch, HeaderRoute, MatchKind, TrafficSplit, Weights
from meshctl.domain.validation import load_document

from .cluster_world import rollout

pytestmark = pytest.mark.kube
GATEWAY = ("gateway.networking.k8s.io", "v1")
API = {"name": "api", "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
       "backendRefs": [{"name": "web", "port": 8080}]}
STATIC = {"name": "static", "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
          "backendRefs": [{"name": "static", "port": 80}]}
BETA = HeaderRoute("beta-users", (HeaderMatch("x-beta", "1", MatchKind.EXACT),))
COOKIE = HeaderRoute("cookie", (HeaderMatch("cookie", ".*canary=1.*", MatchKind.REGEX),))


def gateway_rollout(ns: str, rules: list[str]) -> Rollout:
    doc = rollout(ns, "web:1", [{"setWeight": 20}])
    doc["spec"]["trafficRouting"] = {"gatewayAPI": {
        "httpRoute": {"name": "web", "rules": rules},
        "stableService": "web", "canaryService": "web-canary"}}
    value = load_document(doc)
    assert isinstance(value, Rollout)
    return value


def seed(kube: Kube, ns: str, rules: list[str]) -> tuple[Rollout, HTTPRouteRouter]:
    kube.create(*GATEWAY, ns, "httproutes", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"parentRefs": [{"name": "gw", "namespace": "istio-system"}],
                 "hostnames": ["web.example"], "rules": [API, STATIC]}})
    value = gateway_rollout(ns, rules)
    return value, HTTPRouteRouter(kube, value, StoredWeights())


@pytest.fixture
def admin(kube, namespace) -> Kube:
    return Kube.from_kubeconfig(kube.kubeconfig_path)


def rules(kube: Kube, ns: str) -> list[dict[str, Any]]:
    return kube.get(*GATEWAY, ns, "httproutes", "web")["spec"]["rules"]


def test_weights_header_rules_and_mirror_are_written_and_read_back(admin, namespace):
    """The API server accepts every shape meshctl writes (the CRD's schema and CEL rules),
    and what it stores reads back as the split written: no rewrite on the next pass."""
    _, router = seed(admin, namespace, ["api"])
    assert router.written() == TrafficSplit(Weights(100, 0))
    split = TrafficSplit(Weights.canary_at(20), (BETA, COOKIE), mirror_percent=10)
    router.apply(split)
    stored = rules(admin, namespace)
    assert [r["name"] for r in stored] == ["meshctl-api-beta-users", "meshctl-api-cookie",
                                           "api", "static"]
    assert stored[0]["matches"][0]["headers"] == [
        {"type": "Exact", "name": "x-beta", "value": "1"}]
    assert stored[2]["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "web", "port": 8080, "weight": 80},
        {"group": "", "kind": "Service", "name": "web-canary", "port": 8080, "weight": 20}]
    assert stored[3] == {**STATIC, "backendRefs": [
        {"group": "", "kind": "Service", "name": "static", "port": 80, "weight": 1}]}
    assert router.written() == split
    router.apply(TrafficSplit.stable_only())
    assert router.written() == TrafficSplit.stable_only()
    assert [r["name"] for r in rules(admin, namespace)] == ["api", "static"]


def test_a_weight_changed_by_someone_else_reads_as_that_weight(admin, namespace):
    _, router = seed(admin, namespace, ["api"])
    router.apply(TrafficSplit(Weights.canary_at(20)))
    route = admin.get(*GATEWAY, namespace, "httproutes", "web")
    route["spec"]["rules"][0]["backendRefs"][1]["weight"] = 60
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 40
    admin.replace(*GATEWAY, namespace, "httproutes", route)
    assert router.written() == TrafficSplit(Weights(40, 60))


def test_delete_gives_back_only_what_meshctl_changed(admin, namespace):
    _, router = seed(admin, namespace, ["api"])
    router.apply(TrafficSplit(Weights.canary_at(50), (BETA,), mirror_percent=25))
    route = admin.get(*GATEWAY, namespace, "httproutes", "web")
    route["spec"]["hostnames"].append("web2.example")  # someone else's edit meanwhile
    admin.replace(*GATEWAY, namespace, "httproutes", route)
    router.restore()
    after = admin.get(*GATEWAY, namespace, "httproutes", "web")
    assert after["spec"]["hostnames"] == ["web.example", "web2.example"]
    assert [r["name"] for r in after["spec"]["rules"]] == ["api", "static"]
    assert after["spec"]["rules"][0]["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "web", "port": 8080, "weight": 1}]
    assert "filters" not in after["spec"]["rules"][0]
    assert "meshctl.io/original-spec" not in (after["metadata"].get("annotations") or {})


def test_two_rollouts_on_two_rules_of_one_http_route_each_give_back_their_own(
        admin, namespace):
    """The record of the HTTPRoute as found is shared: it stays until the last Rollout
    gives its rules back, and each rebuilds only its own header rules."""
    _, web = seed(admin, namespace, ["api"])
    doc = rollout(namespace, "static:1", [{"setWeight": 20}])
    doc["metadata"]["name"] = doc["spec"]["workloadRef"]["name"] = "static"
    doc["spec"]["trafficRouting"] = {"gatewayAPI": {
        "httpRoute": {"name": "web", "rules": ["static"]},
        "stableService": "static", "canaryService": "static-canary"}}
    value = load_document(doc)
    assert isinstance(value, Rollout)
    static = HTTPRouteRouter(admin, value, StoredWeights())
    web.apply(TrafficSplit(Weights.canary_at(50), (BETA,)))
    static.apply(TrafficSplit(Weights.canary_at(20), (COOKIE,)))
    web.apply(TrafficSplit(Weights.canary_at(60), (BETA,)))  # static's header rule stays
    assert [r["name"] for r in rules(admin, namespace)] == [
        "meshctl-api-beta-users", "api", "meshctl-static-cookie", "static"]
    web.restore()
    after = rules(admin, namespace)
    assert [r["name"] for r in after] == ["api", "meshctl-static-cookie", "static"]
    assert [ref["weight"] for ref in after[2]["backendRefs"]] == [80, 20]
    static.restore()
    after = rules(admin, namespace)
    assert [r["name"] for r in after] == ["api", "static"]
    assert after[1]["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "static", "port": 80, "weight": 1}]
    annotations = admin.get(*GATEWAY, namespace, "httproutes", "web")["metadata"].get(
        "annotations") or {}
    assert "meshctl.io/original-spec" not in annotations
    assert "meshctl.io/routes" not in annotations


def test_a_rule_taken_off_the_rollouts_list_mid_rollout_is_given_back_at_once(
        admin, namespace):
    _, both = seed(admin, namespace, ["api", "static"])
    split = TrafficSplit(Weights.canary_at(50), (BETA,), mirror_percent=25)
    both.apply(split)
    api_only = HTTPRouteRouter(admin, gateway_rollout(namespace, ["api"]), StoredWeights())
    assert api_only.written() is None  # a write follows
    api_only.apply(split)
    after = rules(admin, namespace)
    assert [r["name"] for r in after] == ["meshctl-api-beta-users", "api", "static"]
    assert after[2]["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "static", "port": 80, "weight": 1}]
    assert "filters" not in after[2]
    assert api_only.written() == split
    api_only.restore()
    assert [r["name"] for r in rules(admin, namespace)] == ["api", "static"]
