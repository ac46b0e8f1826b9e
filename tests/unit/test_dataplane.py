"""Reading the split the proxies apply from the routes istiod generated for them (plain JSON
in the shapes istiod's and Envoy's config dumps have)."""

from __future__ import annotations

from typing import Any

import pytest

from meshctl.domain.dataplane import (
    SKIPPED_PUSH_SECONDS,
    ProxyRoutes,
    endpoint_counts,
    has_subset,
    push_number,
    read,
    splits_in,
)
from meshctl.domain.spec import Rollout
from meshctl.domain.traffic import HeaderMatch, HeaderRoute, MatchKind, TrafficSplit, Weights
from meshctl.domain.validation import load_document

SOURCE = {"filterMetadata": {"istio": {
    "config": "/apis/networking.istio.io/v1/namespaces/shop/virtual-service/web"}}}
OTHER_SOURCE = {"filterMetadata": {"istio": {
    "config": "/apis/networking.istio.io/v1/namespaces/shop/virtual-service/other"}}}
STABLE = "outbound|80|stable|web.shop.svc.cluster.local"
CANARY = "outbound|80|canary|web.shop.svc.cluster.local"


def rollout(host_level: bool = False) -> Rollout:
    istio: dict[str, Any] = {"virtualService": {"name": "web", "routes": ["primary"]}}
    if host_level:
        istio.update(stableService="web", canaryService="web-canary")
    else:
        istio["destinationRule"] = {"name": "web", "stableSubset": "stable",
                                    "canarySubset": "canary"}
    doc = {"apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
           "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"service": "web", "workloadRef": {"name": "web"},
                    "trafficRouting": {"istio": istio},
                    "strategy": {"canary": {"steps": [{"setWeight": 10}]}}}}
    found = load_document(doc)
    assert isinstance(found, Rollout)
    return found


def weighted(*clusters: tuple[str, int]) -> dict[str, Any]:
    return {"weightedClusters": {"clusters": [{"name": n, "weight": w} for n, w in clusters]}}


def config(*routes: dict[str, Any]) -> dict[str, Any]:
    return {"name": "http.8080", "virtualHosts": [
        {"name": "web.shop.svc.cluster.local:8080", "domains": ["web.shop.svc.cluster.local"],
         "routes": list(routes)}]}


def primary(action: dict[str, Any], metadata: dict[str, Any] = SOURCE) -> dict[str, Any]:
    return {"name": "primary", "match": {"prefix": "/"}, "route": action, "metadata": metadata}


@pytest.mark.parametrize(("action", "expected"), [
    # two subsets, weighted: the split as written
    (weighted((STABLE, 90), (CANARY, 10)), TrafficSplit(Weights(90, 10))),
    # Istio leaves out a destination of weight 0 and sends one cluster: 100 to it
    ({"cluster": STABLE}, TrafficSplit(Weights(100, 0))),
    ({"cluster": CANARY}, TrafficSplit(Weights(0, 100))),
    # a mirror at 25 % is 250,000 per million
    ({**weighted((STABLE, 50), (CANARY, 50)), "requestMirrorPolicies": [
        {"cluster": CANARY, "runtimeFraction": {"defaultValue": {
            "numerator": 250000, "denominator": "MILLION"}}}]},
     TrafficSplit(Weights(50, 50), mirror_percent=25)),
    # a destination meshctl does not manage: not meshctl's shape
    (weighted((STABLE, 90), ("outbound|80||other.shop.svc.cluster.local", 10)), None),
])
def test_the_managed_route_reads_as_a_split(action, expected):
    assert splits_in([config(primary(action))], rollout(), "primary") == [expected]


def test_host_level_routing_reads_the_two_services_in_envoys_own_spelling():
    """Envoy's admin dump uses proto names (weighted_clusters, filter_metadata)."""
    route = {"name": "primary", "route": {"weighted_clusters": {"clusters": [
        {"name": "outbound|80||web.shop.svc.cluster.local", "weight": 70},
        {"name": "outbound|80||web-canary.shop.svc.cluster.local", "weight": 30}]}},
        "metadata": {"filter_metadata": SOURCE["filterMetadata"]}}
    configs = [{"name": "http.8080", "virtual_hosts": [{"routes": [route]}]}]
    assert splits_in(configs, rollout(host_level=True), "primary") == [
        TrafficSplit(Weights(70, 30))]


def test_routes_of_another_virtual_service_or_name_are_not_ours():
    configs = [config(primary({"cluster": CANARY}, OTHER_SOURCE),
                      {**primary({"cluster": CANARY}), "name": "admin"})]
    assert splits_in(configs, rollout(), "primary") == []


def test_header_routes_read_back_in_the_written_matcher_order():
    """Istio sorts a route's header matchers by name; equal matchers compare equal."""
    beta = {"name": "meshctl-primary-beta", "route": {"cluster": CANARY}, "metadata": SOURCE,
            "match": {"prefix": "/", "headers": [
                {"name": "x-b", "stringMatch": {"prefix": "a"}},
                {"name": "x-beta", "stringMatch": {"exact": "1"}}]}}
    written = TrafficSplit(Weights(90, 10), (HeaderRoute("beta", (
        HeaderMatch("x-beta", "1"), HeaderMatch("x-b", "a", MatchKind.PREFIX))),))
    proxy = ProxyRoutes("gw-0.istio-system", True,
                        (config(beta, primary(weighted((STABLE, 90), (CANARY, 10)))),), 7, 7)
    assert read([proxy], rollout(), "primary", written).split == written


def proxy(name: str, acknowledged: bool, action: dict[str, Any], routes_push: int = 7,
          acked_push: int | None = 7, unchanged_seconds: float = 0.0) -> ProxyRoutes:
    return ProxyRoutes(name, acknowledged, (config(primary(action)),), routes_push,
                       acked_push, unchanged_seconds)


AT_90 = weighted((STABLE, 90), (CANARY, 10))


@pytest.mark.parametrize(("proxies", "split", "reason"), [
    # every proxy serving the route acknowledged it and agrees: that split
    ([proxy("a", True, AT_90), proxy("b", True, AT_90)], TrafficSplit(Weights(90, 10)), ""),
    # a proxy that has not acknowledged its latest routes: not known
    ([proxy("a", True, AT_90), proxy("b", False, AT_90)], None,
     "not observed: proxy b has not acknowledged the latest routes istiod sent"),
    # proxies that disagree: not known, and both are named
    ([proxy("a", True, AT_90), proxy("b", True, {"cluster": STABLE})], None,
     "not observed: proxies disagree (a at 90/10, b at 100/0)"),
    # the routes were made from a push the proxy has not acknowledged yet (istiod prepares a
    # push, and so dumps it, before it sends it): not known, however briefly
    ([proxy("a", True, AT_90, routes_push=8, acked_push=7)], None,
     "not observed: istiod made proxy a's routes in push 8; the proxy acknowledged routes of "
     "push 7 (a push on its way, or one without routes)"),
    # a later push than the dump's (the dump is read after the acknowledgement, but reused)
    ([proxy("a", True, AT_90, routes_push=7, acked_push=9)], TrafficSplit(Weights(90, 10)), ""),
    # a push that changed no routes sent none: the dump and acknowledgement stood unchanged
    ([proxy("a", True, AT_90, 8, 7, unchanged_seconds=SKIPPED_PUSH_SECONDS)],
     TrafficSplit(Weights(90, 10)), ""),
    # an acknowledgement without a push number in it is taken only the same way
    ([proxy("a", True, AT_90, 8, None, unchanged_seconds=SKIPPED_PUSH_SECONDS - 0.1)], None,
     "not observed: istiod made proxy a's routes in push 8; the proxy acknowledged routes of "
     "an unnumbered push (a push on its way, or one without routes)"),
    # no proxy serves it (a proxy without the route does not count)
    ([ProxyRoutes("c", False, ())], None,
     "not observed: no proxy connected to istiod serves route 'primary' of VirtualService "
     "shop/web (1 connected)"),
])
def test_the_data_plane_reading_names_why_it_does_not_know(proxies, split, reason):
    reading = read(proxies, rollout(), "primary", None)
    assert (reading.split, reading.reason) == (split, reason)


@pytest.mark.parametrize(("text", "number"), [
    ("2026-12-05T04:44:23Z/20", 20),  # a push version
    ("2026-12-05T04:44:23Z/20ab0eb200-2e06-4bf8-b54d-aaeb2605f56d", 20),  # a nonce of it
    ("2026-12-05T04:44:23Z/512345678-2e06-4bf8-b54d-aaeb2605f56d", 5),  # UUID starting in digits
    ("", None), ("ab0eb200-2e06-4bf8-b54d-aaeb2605f56d", None), ("v1/x", None),
])
def test_istiods_push_number_is_read_from_a_version_or_a_nonce(text, number):
    assert push_number(text) == number


def assignment(cluster: str, *health: str, proto_names: bool = False) -> dict[str, Any]:
    endpoints = [{"endpoint": {"address": {"socketAddress": {"address": f"10.0.0.{i}"}}},
                  **({"health_status" if proto_names else "healthStatus": h} if h else {})}
                 for i, h in enumerate(health)]
    key = "lb_endpoints" if proto_names else "lbEndpoints"
    return {"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            "cluster_name" if proto_names else "clusterName": cluster,
            "endpoints": [{key: endpoints}] if endpoints else []}


def test_endpoints_that_may_take_requests_are_counted_per_cluster() -> None:
    counts = endpoint_counts([
        assignment(STABLE, "HEALTHY", "", "UNHEALTHY"),
        assignment(CANARY, "DRAINING", "TIMEOUT", proto_names=True),
    ])
    assert counts == {STABLE: 2, CANARY: 0}


@pytest.mark.parametrize(("clusters", "endpoints", "expected"), [
    ([STABLE, CANARY], None, True),  # endpoints not asked: the cluster is enough
    ([STABLE, CANARY], {CANARY: 1}, True),
    ([STABLE, CANARY], {CANARY: 0}, False),  # a route to it would answer 503
    ([STABLE, CANARY], {}, False),
    ([STABLE], {STABLE: 3}, False),
    (["outbound|80|canary|other.shop.svc.cluster.local"], {}, None),  # not this service
])
def test_a_subset_is_ready_for_traffic_once_its_cluster_has_an_endpoint(
        clusters, endpoints, expected) -> None:
    assert has_subset(clusters, rollout(), "canary", endpoints) is expected
