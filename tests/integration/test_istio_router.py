"""The Istio router on the real API server: header routes keep the managed route's own match,
every named route is checked, delete gives back only what meshctl changed, and the canary
subset leaves the DestinationRule once no route uses it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshctl.adapters.istio import IstioRouter
from meshctl.adapters.istiod import StoredWeights
from meshctl.adapters.kube import Kube
from meshctl.domain.spec import Rollout
from meshctl.domain.traffic import HeaderMatch, HeaderRoute, MatchKind, TrafficSplit, Weights
from meshctl.domain.validation import load_document

from .cluster_world import rollout

pytestmark = pytest.mark.kube
ISTIO = ("networking.istio.io", "v1")
API = {"name": "api", "match": [{"uri": {"prefix": "/api"}}],
       "route": [{"destination": {"host": "web", "subset": "stable"}}]}
LEGACY = {"name": "legacy", "match": [{"uri": {"prefix": "/legacy"}}],
          "route": [{"destination": {"host": "web", "subset": "stable"}}], "timeout": "5s"}
CATCH_ALL = {"name": "catch-all", "route": [{"destination": {"host": "web-v0"}}]}
BETA = HeaderRoute("beta-users", (HeaderMatch("x-beta", "1", MatchKind.EXACT),))


def seed(kube: Kube, ns: str, routes: list[str], subsets: list[dict[str, Any]] | None = None
         ) -> tuple[Rollout, IstioRouter]:
    kube.create(*ISTIO, ns, "virtualservices", {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"hosts": ["web"], "http": [API, LEGACY, CATCH_ALL]}})
    kube.create(*ISTIO, ns, "destinationrules", {
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"host": "web", "subsets": subsets or [
            {"name": "stable", "labels": {"meshctl.io/track": "stable"}}]}})
    doc = rollout(ns, "web:1", [{"setWeight": 20}])
    doc["spec"]["trafficRouting"]["istio"]["virtualService"]["routes"] = routes
    value = load_document(doc)
    assert isinstance(value, Rollout)
    return value, IstioRouter(kube, value, StoredWeights())


@pytest.fixture
def admin(kube, namespace) -> Kube:
    return Kube.from_kubeconfig(kube.kubeconfig_path)


def http(kube: Kube, ns: str) -> list[dict[str, Any]]:
    return kube.get(*ISTIO, ns, "virtualservices", "web")["spec"]["http"]


def subsets(kube: Kube, ns: str) -> list[str]:
    dr = kube.get(*ISTIO, ns, "destinationrules", "web")
    return [s["name"] for s in dr["spec"]["subsets"]]


def test_a_header_route_keeps_the_managed_routes_own_match(admin, namespace):
    _, router = seed(admin, namespace, ["api"])
    split = TrafficSplit(Weights.canary_at(20), (BETA,))
    router.apply(split)
    routes = http(admin, namespace)
    header = next(r for r in routes if r["name"] == "meshctl-api-beta-users")
    # /other with x-beta: 1 must still reach catch-all, not the canary
    assert header["match"] == [{"uri": {"prefix": "/api"}, "headers": {"x-beta": {"exact": "1"}}}]
    assert [r["name"] for r in routes] == ["meshctl-api-beta-users", "api", "legacy", "catch-all"]
    assert router.written() == split  # read back as written: no rewrite on the next pass


def test_a_change_to_any_named_route_is_seen_and_corrected(admin, namespace):
    _, router = seed(admin, namespace, ["api", "legacy"])
    split = TrafficSplit(Weights.canary_at(20))
    router.apply(split)
    assert router.written() == split
    vs = admin.get(*ISTIO, namespace, "virtualservices", "web")
    vs["spec"]["http"][1]["route"] = copy.deepcopy(LEGACY["route"])  # someone resets legacy
    admin.replace(*ISTIO, namespace, "virtualservices", vs)
    assert router.written() != split
    router.apply(split)
    weights = [[d.get("weight") for d in r["route"]] for r in http(admin, namespace)[:2]]
    assert weights == [[80, 20], [80, 20]]


def test_delete_gives_back_only_what_meshctl_changed(admin, namespace):
    _, router = seed(admin, namespace, ["api"])
    router.apply(TrafficSplit(Weights.canary_at(20), (BETA,), mirror_percent=10))
    vs = admin.get(*ISTIO, namespace, "virtualservices", "web")
    new_route = {"name": "added-later", "route": [{"destination": {"host": "web-new"}}]}
    vs["spec"]["http"].insert(2, new_route)  # others edit during the rollout
    vs["spec"]["http"][1]["timeout"] = "3s"  # ... even the managed route's other fields
    vs["spec"]["hosts"] = ["web", "web.example"]
    admin.replace(*ISTIO, namespace, "virtualservices", vs)
    router.restore()
    after = admin.get(*ISTIO, namespace, "virtualservices", "web")
    assert after["spec"]["hosts"] == ["web", "web.example"]
    assert after["spec"]["http"] == [{**API, "timeout": "3s"}, new_route, LEGACY, CATCH_ALL]
    assert "meshctl.io/original-spec" not in after["metadata"].get("annotations", {})
    assert subsets(admin, namespace) == ["stable"]



def test_two_rollouts_on_two_routes_of_one_virtual_service_each_give_back_their_own(
        admin, namespace):
    """Both share the VirtualService's one record of its spec as found: the first deleted
    used to take the record with it, and the second then left its weights in place. And
    each rebuilds only its own header routes: the first used to drop the other's."""
    _, web = seed(admin, namespace, ["api"])
    doc = rollout(namespace, "shop:1", [{"setWeight": 20}])
    doc["metadata"]["name"] = doc["spec"]["workloadRef"]["name"] = "shop"
    doc["spec"]["trafficRouting"]["istio"]["virtualService"]["routes"] = ["legacy"]
    doc["spec"]["trafficRouting"]["istio"]["destinationRule"]["canarySubset"] = "shop-canary"
    value = load_document(doc)
    assert isinstance(value, Rollout)
    shop = IstioRouter(admin, value, StoredWeights())
    web.apply(TrafficSplit(Weights.canary_at(20)))
    shop.apply(TrafficSplit(Weights.canary_at(30), (BETA,)))
    web.restore()  # web's Rollout deleted first
    after = admin.get(*ISTIO, namespace, "virtualservices", "web")
    assert after["spec"]["http"][0] == API
    assert after["metadata"]["annotations"]["meshctl.io/routes"] == '{"legacy": "shop"}'
    assert [r["name"] for r in after["spec"]["http"]] == [
        "api", "meshctl-legacy-beta-users", "legacy", "catch-all"]  # shop's header route stays
    assert [d.get("weight") for d in after["spec"]["http"][2]["route"]] == [70, 30]
    web.apply(TrafficSplit(Weights.canary_at(20)))  # web again: shop's routes are untouched
    assert admin.get(*ISTIO, namespace, "virtualservices", "web")["spec"]["http"][1:3] == \
        after["spec"]["http"][1:3]
    web.restore()
    shop.restore()
    after = admin.get(*ISTIO, namespace, "virtualservices", "web")
    assert after["spec"]["http"] == [API, LEGACY, CATCH_ALL]
    assert not after["metadata"].get("annotations")
    assert subsets(admin, namespace) == ["stable"]


def test_a_route_taken_off_the_rollouts_list_mid_rollout_is_given_back_at_once(
        admin, namespace):
    """Left as it was, the route would keep sending 20% to the canary's subset, and 503s
    once the canary is gone. The pass reads the traffic as not written yet, so the next
    pass writes even at the same step."""
    _, both = seed(admin, namespace, ["api", "legacy"])
    split = TrafficSplit(Weights.canary_at(20), (BETA,))
    both.apply(split)
    doc = rollout(namespace, "web:1", [{"setWeight": 20}])
    doc["spec"]["trafficRouting"]["istio"]["virtualService"]["routes"] = ["api"]
    value = load_document(doc)
    assert isinstance(value, Rollout)
    api_only = IstioRouter(admin, value, StoredWeights())
    assert api_only.written() is None  # a write follows
    api_only.apply(split)
    after = admin.get(*ISTIO, namespace, "virtualservices", "web")
    assert [r["name"] for r in after["spec"]["http"]] == [
        "meshctl-api-beta-users", "api", "legacy", "catch-all"]
    assert after["spec"]["http"][2] == LEGACY
    assert after["metadata"]["annotations"]["meshctl.io/routes"] == '{"api": "web"}'
    assert api_only.written() == split
    api_only.restore()
    after = admin.get(*ISTIO, namespace, "virtualservices", "web")
    assert after["spec"]["http"] == [API, LEGACY, CATCH_ALL]
    assert not after["metadata"].get("annotations")


def test_delete_gives_back_a_route_taken_off_the_list_before_any_write(admin, namespace):
    _, both = seed(admin, namespace, ["api", "legacy"])
    both.apply(TrafficSplit(Weights.canary_at(20)))
    doc = rollout(namespace, "web:1", [{"setWeight": 20}])
    doc["spec"]["trafficRouting"]["istio"]["virtualService"]["routes"] = ["api"]
    value = load_document(doc)
    assert isinstance(value, Rollout)
    IstioRouter(admin, value, StoredWeights()).restore()  # deleted right after the edit
    assert http(admin, namespace) == [API, LEGACY, CATCH_ALL]

def test_the_canary_subset_leaves_once_no_route_uses_it(admin, namespace):
    _, router = seed(admin, namespace, ["api"])
    router.apply(TrafficSplit(Weights.canary_at(20)))
    assert subsets(admin, namespace) == ["stable", "canary"]
    router.apply(TrafficSplit.stable_only())  # promoted (or aborted): 100% stable
    router.drop_canary_subset()  # what the pass does once that is settled at the proxies
    assert subsets(admin, namespace) == ["stable"]
    router.apply(TrafficSplit(Weights.all_stable(), (BETA,)))  # a header route needs it again
    assert subsets(admin, namespace) == ["stable", "canary"]


def test_a_canary_subset_the_user_defined_is_kept(admin, namespace):
    own = [{"name": "stable", "labels": {"meshctl.io/track": "stable"}},
           {"name": "canary", "labels": {"meshctl.io/track": "canary"}}]
    _, router = seed(admin, namespace, ["api"], subsets=own)
    router.apply(TrafficSplit(Weights.canary_at(20)))
    router.apply(TrafficSplit.stable_only())
    router.drop_canary_subset()
    assert subsets(admin, namespace) == ["stable", "canary"]
    router.restore()
    assert subsets(admin, namespace) == ["stable", "canary"]
