"""Which Rollout manages each route of a route object (the ``meshctl.io/routes``
annotation): claimed with the weights, read by validation, released on delete."""

from __future__ import annotations

import copy
import json
from typing import Any

from meshctl.domain.routers.backend import (
    claim_routes,
    claimed_routes,
    held_routes,
    release_routes,
    route_claims,
)


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
    assert claimed_routes(vs(primary="shop"), "web", ["primary"], seen=vs()) is None
    taken = claimed_routes(vs(primary="gone"), "web", ["primary"], seen=vs(primary="gone"))
    assert taken is not None and route_claims(taken) == {"primary": "web"}
    mine = claimed_routes(vs(primary="web"), "web", ["primary"], seen=None)
    assert mine is not None and route_claims(mine) == {"primary": "web"}
