"""The embedded local mesh as a traffic backend: one Envoy whose routes meshctl serves itself
over xDS (``rollout run --mesh local``, ``meshctl demo``).

Its part of the spec is ``spec.local`` (the two versions, each an address or a command to
start), not a ``trafficRouting`` section: it names processes on this machine, not objects
in a cluster, and the same Rollout file can name both. The run's ``--mesh local`` chooses
it (:func:`meshctl.domain.routers.backend_for`).

Its one object is Envoy's ``RouteConfiguration`` (:data:`ROUTE_NAME`) in the JSON form Envoy
prints in its admin ``/config_dump`` (proto field names):

    virtual_hosts: [{name: service, domains: ["*"], routes: [
        <one route per header route, named header-<its name>: all its header matchers hold
         -> cluster canary>,
        {name: weighted, match: {prefix: /}, route: {weighted_clusters: {clusters: [
            {name: stable, weight: 90}, {name: canary, weight: 10}]},
            request_mirror_policies: [<when mirroring: canary, N percent>]}}]}]

:func:`route_configuration` writes it from a split and :func:`split_of` reads a split back
(the data-plane observation: what Envoy applies). The adapter is the local mesh's router
(``meshctl.localmesh.router``), which serves it and reads it back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from meshctl.domain.problems import Problem
from meshctl.domain.routers.backend import Backend, Found, MeshKind, Obj
from meshctl.domain.traffic import HeaderMatch, HeaderRoute, MatchKind, TrafficSplit, Weights

if TYPE_CHECKING:
    from meshctl.domain.spec import Rollout, RolloutSpec

KEY = "local"
STABLE_CLUSTER = "stable"
CANARY_CLUSTER = "canary"
BASELINE_CLUSTER = "baseline"  # a fresh baseline's (spec.local.baseline)
ROUTE_NAME = "meshctl_route"
WEIGHTED_ROUTE = "weighted"
HEADER_ROUTE_PREFIX = "header-"  # so that no header route's name is the weighted route's
VIRTUAL_HOST = "service"

_MATCH_FIELDS = {MatchKind.EXACT: "exact", MatchKind.PREFIX: "prefix"}
_DENOMINATOR_SCALE = {"HUNDRED": 1, "TEN_THOUSAND": 100, "MILLION": 10_000}


def route_configuration(split: TrafficSplit, stable: str = STABLE_CLUSTER,
                        canary: str = CANARY_CLUSTER) -> Obj:
    """The RouteConfiguration that makes Envoy apply ``split``. Header routes come first
    (Envoy takes the first route that matches), then the weighted one."""
    routes: list[Obj] = [
        {"name": HEADER_ROUTE_PREFIX + route.name,
         "match": {"prefix": "/", "headers": [_matcher(m) for m in route.matches]},
         "route": {"cluster": canary}}
        for route in split.header_routes
    ]
    clusters = [{"name": stable, "weight": split.weights.stable},
                {"name": canary, "weight": split.weights.canary}]
    if split.weights.baseline:  # only while it has weight: a mesh without one has no cluster
        clusters.append({"name": BASELINE_CLUSTER, "weight": split.weights.baseline})
    action: Obj = {"weighted_clusters": {"clusters": clusters}}
    if split.mirror_percent > 0:
        action["request_mirror_policies"] = [{
            "cluster": canary,
            "runtime_fraction": {"default_value": {"numerator": split.mirror_percent,
                                                   "denominator": "HUNDRED"}},
        }]
    routes.append({"name": WEIGHTED_ROUTE, "match": {"prefix": "/"}, "route": action})
    return {"name": ROUTE_NAME,
            "virtual_hosts": [{"name": VIRTUAL_HOST, "domains": ["*"], "routes": routes}]}


def split_of(config: Mapping[str, Any], stable: str = STABLE_CLUSTER,
             canary: str = CANARY_CLUSTER) -> TrafficSplit:
    """The split a RouteConfiguration applies (inverse of :func:`route_configuration`).
    Fields at their default value may be absent, as in Envoy's JSON. ValueError for a
    configuration meshctl did not write."""
    routes = [r for vh in config.get("virtual_hosts", ()) for r in vh.get("routes", ())]
    weighted = [r for r in routes if r.get("name") == WEIGHTED_ROUTE]
    if len(weighted) != 1:
        raise ValueError(f"route configuration {config.get('name', '')!r} has no single "
                         f"{WEIGHTED_ROUTE!r} route")
    action = weighted[0].get("route", {})
    weights = {c.get("name"): int(c.get("weight", 0))
               for c in action.get("weighted_clusters", {}).get("clusters", ())}
    mirror = 0
    for policy in action.get("request_mirror_policies", ()):
        if policy.get("cluster") == canary:
            fraction = policy.get("runtime_fraction", {}).get("default_value", {})
            scale = _DENOMINATOR_SCALE[fraction.get("denominator", "HUNDRED")]
            mirror = round(float(fraction.get("numerator", 0)) / scale)
    header_routes = tuple(
        HeaderRoute(name=r["name"].removeprefix(HEADER_ROUTE_PREFIX),
                    matches=tuple(_match(h) for h in r.get("match", {}).get("headers", ())))
        for r in routes
        if str(r.get("name", "")).startswith(HEADER_ROUTE_PREFIX)
        and r.get("route", {}).get("cluster") == canary
    )
    return TrafficSplit(
        weights=Weights(stable=weights.get(stable, 0), canary=weights.get(canary, 0),
                        baseline=weights.get(BASELINE_CLUSTER, 0)),
        header_routes=header_routes, mirror_percent=mirror)


def _matcher(match: HeaderMatch) -> Obj:
    if match.kind is MatchKind.REGEX:
        string_match: Obj = {"safe_regex": {"regex": match.value}}
    else:
        string_match = {_MATCH_FIELDS[match.kind]: match.value}
    return {"name": match.name, "string_match": string_match}


def _match(matcher: Mapping[str, Any]) -> HeaderMatch:
    name = str(matcher.get("name", ""))
    string_match = matcher.get("string_match", {})
    for kind, key in _MATCH_FIELDS.items():
        if key in string_match:
            return HeaderMatch(name, str(string_match[key]), kind)
    if "safe_regex" in string_match:
        return HeaderMatch(name, str(string_match["safe_regex"].get("regex", "")),
                           MatchKind.REGEX)
    raise ValueError(f"header matcher on {name!r} uses {sorted(string_match)}, "
                     "not written by meshctl")


def _spec_problems(spec: RolloutSpec) -> Iterator[Problem]:
    """``spec.local``, when given: each version is an address or a command; a fresh
    baseline's endpoint exactly when ``spec.judge.baseline`` is fresh."""
    if spec.local is None:
        return
    if spec.fresh_baseline and spec.local.baseline is None and not spec.local.stable.command:
        yield Problem("spec.local.baseline", "is required with spec.judge.baseline fresh and "
                      "a stable address: give the address or command of a new instance of "
                      "the stable version (a stable command is started twice by default)")
    elif spec.local.baseline is not None and not spec.fresh_baseline:
        yield Problem("spec.local.baseline", "is used only with spec.judge.baseline fresh; "
                      "remove it or set that")
    for version in ("stable", "canary", "baseline"):
        local = getattr(spec.local, version)
        if local is None:
            continue
        if (local.address is None) == (not local.command):
            yield Problem(f"spec.local.{version}", "give exactly one of address or command")
        port = int(local.address.rsplit(":", 1)[1]) if local.address else 1
        if not 0 < port <= 65535:
            yield Problem(f"spec.local.{version}.address",
                          f"port {port} is out of range; use 1-65535")


def _planned(rollout: Rollout, found: Found, split: TrafficSplit) -> list[Obj]:
    return [route_configuration(split)]


BACKEND = Backend(
    key=KEY,
    kinds=(),  # nothing in a cluster
    refs=lambda rollout: (),
    spec_problems=_spec_problems,
    live_problems=lambda rollout, found: iter(()),
    baseline=lambda rollout: [],
    planned=_planned,
    canary_cluster=lambda rollout: CANARY_CLUSTER,
    envoy_shape=None,  # its routes are served by meshctl, not generated by istiod
    telemetry=MeshKind.ENVOY,
    routes_baseline=True,
)
