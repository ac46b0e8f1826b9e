"""The local mesh as a traffic backend, as plain values: a split in, Envoy's route
configuration out (in the JSON form Envoy prints), and the split read back; and the
registry choosing it for a run on the local mesh."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from meshctl.cli.main import cli
from meshctl.domain.routers import BACKENDS, backend_for
from meshctl.domain.routers.backend import MeshKind
from meshctl.domain.routers.local import (
    BACKEND,
    WEIGHTED_ROUTE,
    route_configuration,
    split_of,
)
from meshctl.domain.spec import Rollout
from meshctl.domain.traffic import HeaderMatch, HeaderRoute, MatchKind, TrafficSplit, Weights
from meshctl.domain.validation import load_document

TESTERS = HeaderRoute("testers", (HeaderMatch("x-canary", "true"),
                                  HeaderMatch("x-team", "^qa-.*$", MatchKind.REGEX)))


def rollout(**spec: object) -> Rollout:
    doc = {"apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
           "metadata": {"name": "demo", "namespace": "default"},
           "spec": {"service": "demo",
                    "local": {"stable": {"address": "127.0.0.1:8001"},
                              "canary": {"address": "127.0.0.1:8002"}},
                    "strategy": {"canary": {"steps": [{"setWeight": 10}]}}, **spec}}
    found = load_document(doc)
    assert isinstance(found, Rollout)
    return found


def test_a_split_becomes_routes_in_envoys_order_and_comes_back() -> None:
    split = TrafficSplit(Weights.canary_at(25), header_routes=(TESTERS,), mirror_percent=5)
    config = route_configuration(split)

    routes = config["virtual_hosts"][0]["routes"]
    assert [r["name"] for r in routes] == ["header-testers", WEIGHTED_ROUTE]  # first match wins
    assert routes[0]["route"] == {"cluster": "canary"}
    assert routes[1]["route"]["weighted_clusters"]["clusters"] == [
        {"name": "stable", "weight": 75}, {"name": "canary", "weight": 25}]
    assert split_of(config) == split
    assert split_of(json.loads(json.dumps(config))) == split  # as read from the admin API


def test_fields_at_their_default_may_be_absent_as_envoy_prints_them() -> None:
    """Envoy's JSON leaves out zero weights and the default denominator."""
    printed = {"name": "meshctl_route", "virtual_hosts": [{"routes": [
        {"name": WEIGHTED_ROUTE, "route": {
            "weighted_clusters": {"clusters": [{"name": "stable", "weight": 100},
                                               {"name": "canary"}]},
            "request_mirror_policies": [{"cluster": "canary",
                                         "runtime_fraction": {"default_value": {
                                             "numerator": 20}}}]}}]}]}

    assert split_of(printed) == TrafficSplit(Weights(100, 0), mirror_percent=20)


def test_a_route_configuration_meshctl_did_not_write_is_refused() -> None:
    with pytest.raises(ValueError, match="no single 'weighted' route"):
        split_of({"name": "other", "virtual_hosts": [{"routes": [{"name": "default"}]}]})


def test_a_run_on_the_local_mesh_takes_the_local_backend_whatever_the_spec_routes() -> None:
    routed = rollout(workloadRef={"name": "demo"},
                     trafficRouting={"istio": {"virtualService": {"name": "demo"},
                                                "stableService": "demo",
                                                "canaryService": "demo-canary"}})

    assert backend_for(routed, "local") is BACKEND is BACKENDS["local"]
    assert backend_for(routed, "istio") is BACKENDS["istio"]
    assert backend_for(rollout(), "istio") is None  # nothing routes it in a cluster
    assert BACKEND.telemetry is MeshKind.ENVOY and BACKEND.envoy_shape is None


def test_its_spec_section_is_checked_by_the_backend_with_field_paths() -> None:
    spec = rollout().spec
    assert spec.local is not None
    bad = dataclasses.replace(spec.local.stable, address="127.0.0.1:70000")
    broken = dataclasses.replace(spec, local=dataclasses.replace(spec.local, stable=bad,
                                                                 canary=bad))

    assert [str(p) for p in BACKEND.spec_problems(broken)] == [
        "spec.local.stable.address: port 70000 is out of range; use 1-65535",
        "spec.local.canary.address: port 70000 is out of range; use 1-65535"]


def test_plan_on_the_local_mesh_shows_the_route_configuration_of_each_step() -> None:
    result = CliRunner().invoke(cli, ["-o", "json", "rollout", "plan", "--mesh", "local",
                                      "-f", "rollouts/local-demo.yaml"])
    assert result.exit_code == 0, result.output
    steps = json.loads(result.stdout)["steps"]

    for step in steps:
        (config,) = step["objects"]
        assert split_of(config).weights.canary == step["weights"]["canary"]
    assert [s["weights"]["canary"] for s in steps if s["kind"] == "setWeight"] == [10, 50, 100]
