"""Which Rollout manages each route of a route object (the ``meshctl.io/routes``
annotation): claimed with the weights, read by validation, released on delete."""

from __future__ import annotations

import copy
import json
from typing import Any

from meshctl.domain.routers import istio
from meshctl.domain.routers.backend import (
    claim_routes,
    claimed_routes,
    dropped_routes,
    give_back_dropped,
    held_routes,
    rebuilt_by,
    recorded_original,
    release_routes,
    route_claims,
    take_original,
)
from meshctl.domain.spec import Rollout
from meshctl.domain.traffic import HeaderMatch, HeaderRoute, MatchKind, TrafficSplit, Weights
from meshctl.domain.validation import load_document


def vs(**claims: str) -> dict[str, Any]:
    annotations = {"meshctl.io/routes": json.dumps(claims)} if claims else {}
    return {"metadata": {"name": "web", "annotations": annotations}, "spec": {"http": []}}


def test_claims_are_read_from_the_annotation_and_anything_else_is_none():
    assert route_claims(vs(primary="web")) == {"primary": "web"}
    assert route_claims(None) == {} and route_claims(vs()) == {}
    broken = vs()
    broken["metadata"]["annotations"]["meshctl.io/routes"] = "not json"
    assert route_claims(broken) == {}
    broken["metadata"]["annotations"]["meshctl.io/routes"] = '["primary"]'
    assert route_claims(broken) == {}
    broken["metadata"]["annotations"]["meshctl.io/routes"] = "[" * 100_000  # hostile
    assert route_claims(broken) == {}


def test_a_claim_is_added_beside_others_and_released_alone():
    obj = claim_routes(vs(api="shop"), "web", ["primary"])
    assert route_claims(obj) == {"api": "shop", "primary": "web"}
    assert route_claims(release_routes(obj, "web")) == {"api": "shop"}
    assert "meshctl.io/routes" not in release_routes(vs(primary="web"), "web")["metadata"][
        "annotations"]
    untouched = vs(primary="web")
    assert claim_routes(copy.deepcopy(untouched), "web", ["primary"]) == untouched


def test_routes_held_by_another_rollout_are_named():
    assert held_routes(vs(primary="shop", api="web"), "web", ["primary", "api"]) == {
        "primary": "shop"}
    assert held_routes(vs(), "web", ["primary"]) == {}


def test_a_write_does_not_take_a_route_claimed_since_the_pass_read_it():
    """Two Rollouts write at once: the later one, retrying on a conflict, finds the route
    claimed by the other and writes nothing; a claim the pass saw (and validation judged
    stale) is taken over."""
    assert claimed_routes(vs(primary="shop"), "web", ["primary"], vs(), "http") is None
    taken = claimed_routes(vs(primary="gone"), "web", ["primary"], vs(primary="gone"), "http")
    assert taken is not None and route_claims(taken) == {"primary": "web"}
    mine = claimed_routes(vs(primary="web"), "web", ["primary"], None, "http")
    assert mine is not None and route_claims(mine) == {"primary": "web"}


def routed(*routes: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "web"}, "spec": {"http": [copy.deepcopy(r) for r in routes]}}


PRIMARY = {"name": "primary", "route": [{"destination": {"host": "web"}}]}
API = {"name": "api", "route": [{"destination": {"host": "api"}}]}


def weighted(obj: dict[str, Any], name: str) -> None:
    """What a Rollout's weights do to its route (the record must not see them)."""
    route = next(r for r in obj["spec"]["http"] if r["name"] == name)
    route["route"] = [{"destination": {"host": "web", "subset": "canary"}, "weight": 20}]


def given_back(obj: dict[str, Any], rollout: str) -> dict[str, Any] | None:
    """What a Rollout's delete does: its routes released, then the record taken."""
    return take_original(release_routes(obj, rollout))


def test_two_rollouts_on_two_routes_share_one_record_until_the_last_gives_back():
    """The first Rollout deleted used to take the record with it: the second then had
    nothing to restore its route from, and left its canary weights in place."""
    obj = claimed_routes(routed(PRIMARY, API), "web", ["primary"], None, "http")
    assert obj is not None
    weighted(obj, "primary")
    obj = claimed_routes(obj, "shop", ["api"], copy.deepcopy(obj), "http")
    assert obj is not None
    weighted(obj, "api")
    assert given_back(obj, "web") == {"http": [PRIMARY, API]}
    assert recorded_original(obj) == {"http": [PRIMARY, API]}  # still there for shop
    assert given_back(obj, "shop") == {"http": [PRIMARY, API]}
    assert "meshctl.io/original-spec" not in obj["metadata"]["annotations"]


def test_a_route_given_back_and_edited_is_recorded_afresh_when_taken_again():
    obj = claimed_routes(routed(PRIMARY, API), "web", ["primary"], None, "http")
    assert obj is not None
    obj = claimed_routes(obj, "shop", ["api"], None, "http")
    assert obj is not None
    given_back(obj, "shop")  # shop deleted: web still holds primary, so the record stays
    edited = {"name": "api", "route": [{"destination": {"host": "api-v2"}}]}
    obj["spec"]["http"][1] = copy.deepcopy(edited)  # the owner moves api on meanwhile
    obj = claimed_routes(obj, "shop2", ["api"], None, "http")
    assert obj is not None
    weighted(obj, "primary")  # web's weights: its record must not change
    assert recorded_original(obj) == {"http": [PRIMARY, edited]}


def test_a_record_made_before_route_claims_existed_is_kept_whole():
    """An older meshctl recorded the spec without claiming routes; its route now carries
    weights, which must not become the 'original'."""
    obj = routed(PRIMARY, API)
    obj["metadata"]["annotations"] = {"meshctl.io/original-spec": json.dumps(
        {"http": [PRIMARY, API]})}
    weighted(obj, "primary")
    obj = claimed_routes(obj, "web", ["primary"], None, "http")
    assert obj is not None and recorded_original(obj) == {"http": [PRIMARY, API]}


def test_a_hostile_record_reads_as_none_and_is_never_rewritten():
    for raw in ("[" * 100_000, "not json", '["a list"]'):
        obj = routed(PRIMARY, API)
        obj["metadata"]["annotations"] = {"meshctl.io/original-spec": raw,
                                          "meshctl.io/routes": '{"primary": "web"}'}
        taken = claimed_routes(obj, "shop", ["api"], None, "http")
        assert taken is not None
        assert taken["metadata"]["annotations"]["meshctl.io/original-spec"] == raw
        assert recorded_original(taken) is None and given_back(taken, "shop") is None


def test_each_rollout_rebuilds_only_its_own_header_routes():
    claims = {"a": "web", "a-b": "shop", "": "other"}
    assert rebuilt_by({"name": "meshctl-a-beta"}, "web", ["a"], claims)
    assert not rebuilt_by({"name": "meshctl-a-b-beta"}, "web", ["a"], claims)  # shop's
    assert rebuilt_by({"name": "meshctl-a-b-beta"}, "shop", ["a-b"], claims)
    assert not rebuilt_by({"name": "meshctl-default-beta"}, "web", ["a"], claims)
    assert rebuilt_by({"name": "meshctl-gone-beta"}, "web", ["a"], claims)  # a leftover
    assert not rebuilt_by({"name": "a"}, "web", ["a"], claims)  # not a header route


def rollout_on(name: str, route: str) -> Rollout:
    found = load_document({
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"service": "web", "workloadRef": {"name": name},
                 "trafficRouting": {"istio": {
                     "virtualService": {"name": "web", "routes": [route]},
                     "destinationRule": {"name": "web", "stableSubset": "stable",
                                         "canarySubset": f"{name}-canary"}}},
                 "strategy": {"canary": {"steps": [{"setWeight": 20}]}}}})
    assert isinstance(found, Rollout), found
    return found


def test_a_rollout_reads_and_writes_its_own_header_routes_beside_anothers():
    """Route "a" and route "a-b" of one VirtualService, two Rollouts: web's header routes
    and shop's share the prefix "meshctl-a-", and neither reads or drops the other's."""
    web, shop = rollout_on("web", "a"), rollout_on("shop", "a-b")
    beta = HeaderRoute("x", (HeaderMatch("x-beta", "1", MatchKind.EXACT),))
    obj = routed({"name": "a", "route": [{"destination": {"host": "web"}}]},
                 {"name": "a-b", "route": [{"destination": {"host": "web"}}]})
    obj = claimed_routes(obj, "shop", ["a-b"], None, "http")
    assert obj is not None
    obj = istio.apply_split(obj, shop, TrafficSplit(Weights.canary_at(10), (beta,)))
    obj = claimed_routes(obj, "web", ["a"], None, "http")
    assert obj is not None
    obj = istio.apply_split(obj, web, TrafficSplit(Weights.canary_at(20)))
    assert [r["name"] for r in obj["spec"]["http"]] == ["a", "meshctl-a-b-x", "a-b"]
    assert istio.read_split(obj, web) == TrafficSplit(Weights.canary_at(20))
    assert istio.read_split(obj, shop) == TrafficSplit(Weights.canary_at(10), (beta,))


def test_routes_dropped_from_the_list_are_given_back_and_released_alone():
    obj = claimed_routes(routed(PRIMARY, API), "web", ["primary", "api"], None, "http")
    assert obj is not None
    weighted(obj, "primary")
    weighted(obj, "api")
    obj = claim_routes(obj, "shop", ["other"])
    assert dropped_routes(obj, "web", ["primary"]) == ["api"]
    seen: list[tuple[dict[str, Any], list[str]]] = []

    def restored(o: dict[str, Any], original: Any, routes: Any) -> dict[str, Any]:
        seen.append((original, list(routes)))
        return o

    give_back_dropped(obj, "web", ["primary"], restored)
    assert seen == [({"http": [PRIMARY, API]}, ["api"])]
    assert route_claims(obj) == {"primary": "web", "other": "shop"}
    assert dropped_routes(obj, "web", ["primary"]) == []
    seen.clear()
    give_back_dropped(obj, "web", ["primary"], restored)  # nothing dropped: unchanged
    assert seen == []
