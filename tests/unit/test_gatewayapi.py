"""The Gateway API backend as plain values: an HTTPRoute in, the HTTPRoute meshctl writes out,
and the split read back from it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshctl.domain.routers import backend_of
from meshctl.domain.routers.gatewayapi import (
    apply_split,
    live_problems,
    read_split,
    restored_http_route,
)
from meshctl.domain.spec import Rollout
from meshctl.domain.traffic import HeaderMatch, HeaderRoute, MatchKind, TrafficSplit, Weights
from meshctl.domain.validation import load_document

API = {"path": {"type": "PathPrefix", "value": "/api"}}


def rollout(rules: list[str] | None = None, **extra: Any) -> Rollout:
    routing: dict[str, Any] = {"httpRoute": {"name": "web"}, "stableService": "web",
                               "canaryService": "web-canary", **extra}
    if rules is not None:
        routing["httpRoute"]["rules"] = rules
    doc = {"apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
           "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"service": "web", "workloadRef": {"name": "web"},
                    "trafficRouting": {"gatewayAPI": routing},
                    "strategy": {"canary": {"steps": [{"setWeight": 10}]}}}}
    found = load_document(doc)
    assert isinstance(found, Rollout)
    return found


def http_route(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["web.example"],
                     "rules": list(rules)}}


PRIMARY = {"name": "primary", "matches": [API], "backendRefs": [{"name": "web", "port": 8080}]}
OTHER = {"name": "static", "backendRefs": [{"name": "static", "port": 80}]}
TESTERS = HeaderRoute("testers", (HeaderMatch("x-canary", "always"),))


def test_weights_land_on_the_backend_refs_of_the_managed_rule_only():
    """The port the rule used is kept; the other rule and the route's other fields stay."""
    out = apply_split(http_route(PRIMARY, OTHER), rollout(["primary"]),
                      TrafficSplit(Weights(90, 10)))
    assert out["spec"]["rules"] == [
        {"name": "primary", "matches": [API], "backendRefs": [
            {"name": "web", "port": 8080, "weight": 90},
            {"name": "web-canary", "port": 8080, "weight": 10}]},
        OTHER,
    ]
    assert out["spec"]["parentRefs"] == [{"name": "gw"}]


def test_a_header_route_is_a_rule_before_it_with_its_own_match_and_the_header():
    split = TrafficSplit(Weights(100, 0), (TESTERS,))
    out = apply_split(http_route(PRIMARY), rollout(), split)
    assert out["spec"]["rules"][0] == {
        "name": "meshctl-primary-testers",
        "matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                     "headers": [{"type": "Exact", "name": "x-canary", "value": "always"}]}],
        "backendRefs": [{"name": "web-canary", "port": 8080}]}
    assert read_split(out, rollout()) == split


def test_a_regex_header_is_a_regular_expression_match():
    header = HeaderRoute("beta", (HeaderMatch("cookie", ".*beta=1.*", MatchKind.REGEX),))
    out = apply_split(http_route(PRIMARY), rollout(), TrafficSplit(Weights(100, 0), (header,)))
    assert out["spec"]["rules"][0]["matches"][0]["headers"] == [
        {"type": "RegularExpression", "name": "cookie", "value": ".*beta=1.*"}]
    assert read_split(out, rollout()).header_routes == (header,)


def test_a_mirror_is_a_request_mirror_filter_to_the_canary_and_goes_with_zero():
    rule = {**PRIMARY, "filters": [{"type": "RequestHeaderModifier",
                                    "requestHeaderModifier": {"set": [{"name": "a", "value": "b"}]}}]}
    mirrored = apply_split(http_route(rule), rollout(), TrafficSplit(Weights(100, 0),
                                                                     mirror_percent=20))
    filters = mirrored["spec"]["rules"][0]["filters"]
    assert filters[0] == rule["filters"][0]
    assert filters[1] == {"type": "RequestMirror", "requestMirror": {
        "backendRef": {"name": "web-canary", "port": 8080}, "percent": 20}}
    assert read_split(mirrored, rollout()) == TrafficSplit(Weights(100, 0), mirror_percent=20)
    cleared = apply_split(mirrored, rollout(), TrafficSplit(Weights(100, 0)))
    assert cleared["spec"]["rules"][0]["filters"] == rule["filters"]


def test_writing_the_same_split_twice_changes_nothing():
    split = TrafficSplit(Weights(70, 30), (TESTERS,), 10)
    once = apply_split(http_route(PRIMARY, OTHER), rollout(["primary"]), split)
    assert apply_split(once, rollout(["primary"]), split) == once


@pytest.mark.parametrize(("refs", "expected"), [
    # the stable Service alone, no weight (Gateway API's default 1): all to stable
    ([{"name": "web", "port": 80}], Weights(100, 0)),
    # weights are proportions: 3:1 is 75/25
    ([{"name": "web", "weight": 3}, {"name": "web-canary", "weight": 1}], Weights(75, 25)),
    ([{"name": "web", "weight": 0}, {"name": "web-canary", "weight": 5}], Weights(0, 100)),
])
def test_proportions_read_as_percentages(refs, expected):
    route = http_route({"name": "primary", "backendRefs": refs})
    assert read_split(route, rollout()) == TrafficSplit(expected)


@pytest.mark.parametrize(("refs", "why"), [
    ([{"name": "web", "weight": 2}, {"name": "web-canary", "weight": 1}], "not a whole percent"),
    ([{"name": "web", "weight": 90}, {"name": "other", "weight": 10}], "a backend not managed"),
    ([{"name": "web", "weight": 0}], "no weight at all"),
    ([{"name": "web", "kind": "ServiceImport", "group": "multicluster.x-k8s.io"}], "not a Service"),
])
def test_a_rule_not_in_meshctls_shape_reads_as_none(refs, why):
    assert read_split(http_route({"name": "primary", "backendRefs": refs}), rollout()) is None, why


def test_named_rules_that_disagree_read_as_none_so_the_next_write_corrects_them():
    a = {"name": "a", "backendRefs": [{"name": "web", "weight": 90}, {"name": "web-canary", "weight": 10}]}
    b = {"name": "b", "backendRefs": [{"name": "web", "weight": 50}, {"name": "web-canary", "weight": 50}]}
    assert read_split(http_route(a, b), rollout(["a", "b"])) is None


def test_restore_gives_back_only_what_meshctl_changed():
    """Header rules go, backendRefs and mirror come back; a filter and a rule added by
    someone else during the rollout stay."""
    original = http_route(PRIMARY, OTHER)
    written = apply_split(original, rollout(["primary"]),
                          TrafficSplit(Weights(50, 50), (TESTERS,), 30))
    edited = copy.deepcopy(written)
    theirs = {"type": "RequestHeaderModifier",
              "requestHeaderModifier": {"add": [{"name": "x", "value": "y"}]}}
    edited["spec"]["rules"][1]["filters"].append(theirs)
    edited["spec"]["rules"].append({"name": "new", "backendRefs": [{"name": "new", "port": 80}]})
    restored = restored_http_route(edited, original["spec"], rollout(["primary"]))
    assert restored["spec"]["rules"] == [
        {**PRIMARY, "filters": [theirs]}, OTHER,
        {"name": "new", "backendRefs": [{"name": "new", "port": 80}]}]


@pytest.mark.parametrize(("route", "rules", "path", "text"), [
    (None, ["primary"], "spec.trafficRouting.gatewayAPI.httpRoute.name", "not found"),
    (http_route(PRIMARY), ["nope"], "spec.trafficRouting.gatewayAPI.httpRoute.rules[0]",
     "rule 'nope' is not in HTTPRoute web (it has: 'primary')"),
    (http_route(PRIMARY, OTHER), None, "spec.trafficRouting.gatewayAPI.httpRoute.rules",
     "has 2 rules; name the ones meshctl manages"),
    (http_route({"name": "primary", "backendRefs": [{"name": "web"}]}), None,
     "spec.trafficRouting.gatewayAPI.port", "give the Services' port"),
])
def test_live_problems_name_the_field_and_the_fix(route, rules, path, text):
    problems = list(live_problems(rollout(rules), [route]))
    assert [p.path for p in problems] == [path]
    assert text in problems[0].message


def test_an_unnamed_only_rule_is_managed_and_a_spec_port_needs_no_backend_port():
    rule = {"backendRefs": [{"name": "web"}]}
    assert list(live_problems(rollout(port=8080), [http_route(rule)])) == []
    out = apply_split(http_route(rule), rollout(port=8080), TrafficSplit(Weights(80, 20), (TESTERS,)))
    assert out["spec"]["rules"][0]["name"] == "meshctl-default-testers"
    assert out["spec"]["rules"][1]["backendRefs"][1] == {"name": "web-canary", "port": 8080,
                                                         "weight": 20}


def test_the_registry_chooses_the_backend_by_the_section_given():
    backend = backend_of(rollout())
    assert backend is not None and backend.key == "gatewayAPI"
    assert [(r.kind.plural, r.namespace, r.name) for r in backend.refs(rollout())] == [
        ("httproutes", "shop", "web")]
    assert backend.canary_cluster(rollout()) == "|web-canary.shop.svc.cluster.local"


def test_the_envoy_routes_istiod_makes_from_the_http_route_read_as_the_split():
    """As istiod 1.31 generates them for a Gateway API gateway (measured in the test world):
    the rule's name on the route, its config the internal VirtualService of the listener."""
    from meshctl.domain.dataplane import splits_in

    source = ("/apis/networking.istio.io/v1/namespaces/shop/virtual-service/"
              "istio-system~gw~istio-autogenerated-k8s-gateway~http~web.example")
    route = {"name": "primary", "match": {"prefix": "/"},
             "metadata": {"filter_metadata": {"istio": {"config": source}}},
             "route": {"weighted_clusters": {"clusters": [
                 {"name": "outbound|80||web.shop.svc.cluster.local", "weight": 90},
                 {"name": "outbound|80||web-canary.shop.svc.cluster.local", "weight": 10}]}}}
    configs = [{"name": "http.8080", "virtual_hosts": [{"routes": [route]}]}]
    assert splits_in(configs, rollout(), "primary") == [TrafficSplit(Weights(90, 10))]
    elsewhere = {**route, "metadata": {"filter_metadata": {"istio": {
        "config": source.replace("/shop/", "/other/")}}}}
    assert splits_in([{"virtual_hosts": [{"routes": [elsewhere]}]}], rollout(), "primary") == []


def _problems(routing: dict[str, Any], steps: list[dict[str, Any]] | None = None) -> list[str]:
    from meshctl.domain.problems import InvalidSpec

    doc = {"apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
           "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"service": "web", "workloadRef": {"name": "web"},
                    "trafficRouting": routing,
                    "strategy": {"canary": {"steps": steps or [{"setWeight": 10}]}}}}
    try:
        load_document(doc)
    except InvalidSpec as exc:
        return [str(p) for p in exc.problems]
    return []


GATEWAY = {"gatewayAPI": {"httpRoute": {"name": "web"}, "stableService": "web",
                          "canaryService": "web-canary"}}


@pytest.mark.parametrize(("routing", "steps", "expected"), [
    # a prefix header match has no HTTPRoute spelling
    (GATEWAY, [{"setHeaderRoute": {"name": "t", "match": [
        {"headerName": "x-a", "headerValue": {"prefix": "b"}}]}}],
     "spec.strategy.canary.steps[0].setHeaderRoute.match[0].headerValue.prefix: the Gateway "
     "API matches headers exactly or by regular expression; use exact or regex"),
    ({"gatewayAPI": {**GATEWAY["gatewayAPI"], "canaryService": "web"}}, None,
     "spec.trafficRouting.gatewayAPI.canaryService: must differ from stableService"),
    ({"gatewayAPI": {**GATEWAY["gatewayAPI"], "httpRoute": {"name": "web",
                                                            "rules": ["a", "meshctl-a-b"]}}},
     None, "spec.trafficRouting.gatewayAPI.httpRoute.rules[1]: names starting with "
     "'meshctl-' are meshctl's own header rules; rename the rule"),
    ({"gatewayAPI": {**GATEWAY["gatewayAPI"], "port": 0}}, None,
     "spec.trafficRouting.gatewayAPI.port: 0 is below 1; use 1 or more"),
    ({**GATEWAY, "istio": {"virtualService": {"name": "web"}, "stableService": "web",
                           "canaryService": "web-canary"}}, None,
     "spec.trafficRouting: give one of istio, gatewayAPI, not several"),
    ({}, None, "spec.trafficRouting.istio: is required (or gatewayAPI; or spec.local for a "
     "local run)"),
])
def test_the_gateway_api_section_is_checked_offline_with_field_paths(routing, steps, expected):
    assert expected in _problems(routing, steps)


def test_a_valid_gateway_api_section_has_no_problem():
    assert _problems(GATEWAY, [{"setHeaderRoute": {"name": "t", "match": [
        {"headerName": "x-a", "headerValue": {"regex": "b.*"}}]}}]) == []
