"""Istio backend: weights in the named HTTP routes of a VirtualService (and DestinationRule
subsets); pure transforms of plain dicts.

meshctl owns only the HTTP routes a Rollout names (and the header routes it adds, named
``meshctl-<route>-<name>``); every other route and every other field of the VirtualService is
carried over untouched. Subset-level routing points the two destinations at subsets of one
host; host-level routing at two hosts (``stableService``, ``canaryService``).

    weights 90/10, subset-level  ->  route: [{destination: {host: web, subset: stable}, weight: 90},
                                            {destination: {host: web, subset: canary}, weight: 10}]

With a fresh baseline (``spec.judge.baseline: fresh``, subset-level only) a third destination,
the ``baselineSubset`` (pods labelled ``meshctl.io/track: baseline``), is always written::

    weights 60/20/20             ->  route: [... stable 60, ... canary 20,
                                            {destination: {host: web, subset: baseline}, weight: 20}]
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshctl.domain.fields import field
from meshctl.domain.keys import TRACK
from meshctl.domain.names import DNS_LABEL, DNS_SUBDOMAIN, LABEL_MAX, SUBDOMAIN_MAX
from meshctl.domain.problems import Problem
from meshctl.domain.routers.backend import (
    Backend,
    EnvoyShape,
    Found,
    Kind,
    MeshKind,
    Obj,
    ObjectRef,
    header_route_name,
    is_ours,
    named_entries,
    rebuilt_by,
    route_claims,
)
from meshctl.domain.traffic import HeaderMatch, HeaderRoute, MatchKind, TrafficSplit, Weights

if TYPE_CHECKING:  # the spec imports the registry for its trafficRouting section
    from meshctl.domain.spec import Rollout, RolloutSpec

KEY = "istio"
ISTIO_NETWORKING = "networking.istio.io/v1"
VIRTUAL_SERVICE = Kind("networking.istio.io", "v1", "virtualservices", "VirtualService")
DESTINATION_RULE = Kind("networking.istio.io", "v1", "destinationrules", "DestinationRule")
PATH = "spec.trafficRouting.istio"

@dataclass(frozen=True)
class VirtualServiceRef:
    name: str = field("name", required=True, pattern=DNS_LABEL)
    routes: tuple[str, ...] = field(
        "routes", default=(), items={"max_length": SUBDOMAIN_MAX},
        doc="Named HTTP routes meshctl manages; empty: the only route."
    )


@dataclass(frozen=True)
class DestinationRuleRef:
    name: str = field("name", required=True, pattern=DNS_LABEL)
    stable_subset: str = field("stableSubset", required=True, pattern=DNS_LABEL,
                               max_length=LABEL_MAX)
    canary_subset: str = field("canarySubset", required=True, pattern=DNS_LABEL,
                               max_length=LABEL_MAX)
    baseline_subset: str = field(
        "baselineSubset", default="baseline", pattern=DNS_LABEL, max_length=LABEL_MAX,
        doc="The fresh baseline's subset (spec.judge.baseline: fresh); meshctl adds it "
        "beside the canary's and removes it after the rollout.")


@dataclass(frozen=True)
class IstioRouting:
    """Subset-level (destinationRule) or host-level (stableService + canaryService)."""

    virtual_service: VirtualServiceRef = field("virtualService", required=True)
    destination_rule: DestinationRuleRef | None = field("destinationRule")
    stable_service: str | None = field("stableService", pattern=DNS_SUBDOMAIN,
                                       max_length=SUBDOMAIN_MAX)
    canary_service: str | None = field("canaryService", pattern=DNS_SUBDOMAIN,
                                       max_length=SUBDOMAIN_MAX)




def _destinations(routing: IstioRouting, service: str) -> tuple[Obj, Obj]:
    if routing.destination_rule is not None:
        dr = routing.destination_rule
        return ({"host": service, "subset": dr.stable_subset},
                {"host": service, "subset": dr.canary_subset})
    return {"host": routing.stable_service}, {"host": routing.canary_service}


def _baseline_destination(rollout: Rollout) -> Obj | None:
    """The fresh baseline's destination (None: the Rollout has none)."""
    dr = _istio(rollout).destination_rule
    if not rollout.spec.fresh_baseline or dr is None:
        return None
    return {"host": rollout.spec.service, "subset": dr.baseline_subset}


def managed_route_names(vs: Mapping[str, Any], routing: IstioRouting) -> list[str]:
    """The named routes, or the only HTTP route when none is named."""
    if routing.virtual_service.routes:
        return list(routing.virtual_service.routes)
    own = [r for r in vs.get("spec", {}).get("http", []) if not is_ours(r)]
    return [own[0].get("name", "")] if len(own) == 1 else []


def _headers(header: HeaderRoute) -> Obj:
    return {m.name: {m.kind.value: m.value} for m in header.matches}


def _match(header: HeaderRoute, route: Mapping[str, Any]) -> list[Obj]:
    """The managed route's own match (each alternative) AND the header match, so a request
    the managed route would not take (meant for a later route) never reaches the canary.

    ``match: [{uri: {prefix: /api}}]`` + ``x-beta: 1`` ->
    ``[{uri: {prefix: /api}, headers: {x-beta: {exact: "1"}}}]``; no match -> headers only.
    """
    out = []
    for own in route.get("match") or [{}]:
        merged = copy.deepcopy(dict(own))
        merged["headers"] = {**merged.get("headers", {}), **_headers(header)}
        out.append(merged)
    return out


def _with_port(dest: Obj, existing: list[Any]) -> Obj:
    """Keep a port the user set on the stable destination."""
    for item in existing:
        port = item.get("destination", {}).get("port") if isinstance(item, dict) else None
        if port is not None:
            return {**dest, "port": port}
    return dest


def apply_split(vs: Mapping[str, Any], rollout: Rollout, split: TrafficSplit) -> Obj:
    """The VirtualService with ``split`` applied to the managed routes only."""
    routing = _istio(rollout)
    out = copy.deepcopy(dict(vs))
    http = out.setdefault("spec", {}).setdefault("http", [])
    names = managed_route_names(out, routing)
    stable_dest, canary_dest = _destinations(routing, rollout.spec.service)
    baseline_dest = _baseline_destination(rollout)
    claims = route_claims(out)
    kept: list[Obj] = []
    for route in http:
        if rebuilt_by(route, rollout.name, names, claims):
            continue  # this Rollout's header routes are rebuilt below
        if route.get("name", "") in names:
            existing = route.get("route", [])
            stable, canary = _with_port(stable_dest, existing), _with_port(canary_dest, existing)
            for header in split.header_routes:
                kept.append({"name": header_route_name(route.get("name", ""), header.name),
                             "match": _match(header, route), "route": [{"destination": canary}]})
            route = {**route, "route": [
                {"destination": stable, "weight": split.weights.stable},
                {"destination": canary, "weight": split.weights.canary},
            ]}
            if baseline_dest is not None:
                route["route"].append({"destination": _with_port(baseline_dest, existing),
                                       "weight": split.weights.baseline})
            route.pop("mirror", None)
            route.pop("mirrorPercentage", None)
            if split.mirror_percent > 0:
                route["mirror"] = canary
                route["mirrorPercentage"] = {"value": float(split.mirror_percent)}
        kept.append(route)
    out["spec"]["http"] = kept
    return out


def read_split(vs: Mapping[str, Any], rollout: Rollout) -> TrafficSplit | None:
    """The split written in the VirtualService's managed routes; None when a route is not in
    meshctl's shape or the named routes disagree (so every one of them is checked, and the
    next write corrects the one someone changed)."""
    routing = _istio(rollout)
    names = managed_route_names(vs, routing)
    claims = route_claims(vs)  # another Rollout's header routes are not read as ours
    http = [r for r in vs.get("spec", {}).get("http", [])
            if not is_ours(r) or rebuilt_by(r, rollout.name, names, claims)]
    dests = (*_destinations(routing, rollout.spec.service), _baseline_destination(rollout))
    splits = {_route_split(http, name, dests) for name in names}
    return splits.pop() if len(splits) == 1 else None


def _route_split(http: list[Any], name: str,
                 dests: tuple[Obj, Obj, Obj | None]) -> TrafficSplit | None:
    """The managed route's split: weights to the stable, canary and (with a fresh one)
    baseline destinations; a destination that is none of them counts for none."""
    route = next((r for r in http if r.get("name", "") == name and not is_ours(r)), None)
    if route is None:
        return None
    weights = {"stable": 0, "canary": 0, "baseline": 0}
    for item in route.get("route", []):
        dest = {k: v for k, v in item.get("destination", {}).items() if k != "port"}
        weight = item.get("weight", 100 if len(route.get("route", [])) == 1 else 0)
        for track, wanted in zip(weights, dests, strict=True):
            if dest == wanted:
                weights[track] += weight
                break
    if sum(weights.values()) != 100:
        return None
    mirror = int(route.get("mirrorPercentage", {}).get("value", 0)) if route.get("mirror") else 0
    prefix = header_route_name(name, "")
    own = (route.get("match") or [{}])[0].get("headers", {})
    headers = tuple(_read_header_route(r, prefix, own) for r in http
                    if str(r.get("name", "")).startswith(prefix))
    return TrafficSplit(Weights(**weights), tuple(h for h in headers if h is not None), mirror)


def _read_header_route(route: Mapping[str, Any], prefix: str,
                       own: Mapping[str, Any]) -> HeaderRoute | None:
    """The header route meshctl wrote: its name after the prefix, its headers less those
    of the managed route's own match."""
    name = str(route.get("name", ""))[len(prefix):]
    matches = (route.get("match") or [{}])[0].get("headers", {})
    found = []
    for header, spec in matches.items():
        if own.get(header) == spec:
            continue
        for kind in MatchKind:
            if kind.value in spec:
                found.append(HeaderMatch(header, spec[kind.value], kind))
    return HeaderRoute(name, tuple(found)) if found else None


def restored_virtual_service(vs: Mapping[str, Any], original: Mapping[str, Any],
                             rollout: Rollout, routes: Sequence[str] | None = None) -> Obj:
    """Only what meshctl changed, given back: its header routes go, and each managed route
    (``routes``: these routes) gets its original ``route``, ``mirror`` and
    ``mirrorPercentage``; every other route and field stays as others left it during the
    rollout."""
    routing = _istio(rollout)
    out = copy.deepcopy(dict(vs))
    before = {r.get("name", ""): r for r in named_entries(original, "http")}
    names = managed_route_names(out, routing) if routes is None else list(routes)
    claims = route_claims(out)
    kept = []
    for route in out.get("spec", {}).get("http", []):
        if rebuilt_by(route, rollout.name, names, claims):
            continue
        name = route.get("name", "")
        if name in names and name in before:
            for key in ("route", "mirror", "mirrorPercentage"):
                if key in before[name]:
                    route[key] = copy.deepcopy(before[name][key])
                else:
                    route.pop(key, None)
        kept.append(route)
    out.setdefault("spec", {})["http"] = kept
    return out


def borrowed_subsets(original: Mapping[str, Any], rollout: Rollout) -> set[str]:
    """The subsets meshctl adds (the canary's, a fresh baseline's) that the DestinationRule
    did not have as meshctl found it (``original``, its spec)."""
    had = {s.get("name") for s in named_entries(original, "subsets")}
    return set(_own_subsets(rollout)) - had


def uses_canary(split: TrafficSplit) -> bool:
    return (split.weights.canary > 0 or split.weights.baseline > 0 or bool(split.header_routes)
            or split.mirror_percent > 0)


def baseline_virtual_service(rollout: Rollout) -> Obj:
    """The VirtualService meshctl assumes when planning without a cluster."""
    routing = _istio(rollout)
    name = routing.virtual_service.routes[0] if routing.virtual_service.routes else "primary"
    stable, _ = _destinations(routing, rollout.spec.service)
    return {
        "apiVersion": ISTIO_NETWORKING, "kind": "VirtualService",
        "metadata": {"name": routing.virtual_service.name, "namespace": rollout.namespace},
        "spec": {"hosts": [rollout.spec.service],
                 "http": [{"name": name, "route": [{"destination": stable, "weight": 100}]}]},
    }


def baseline_destination_rule(rollout: Rollout) -> Obj | None:
    routing = _istio(rollout)
    if routing.destination_rule is None:
        return None
    return {
        "apiVersion": ISTIO_NETWORKING, "kind": "DestinationRule",
        "metadata": {"name": routing.destination_rule.name, "namespace": rollout.namespace},
        "spec": {"host": rollout.spec.service,
                 "subsets": [{"name": routing.destination_rule.stable_subset,
                              "labels": {TRACK: "stable"}}]},
    }


def _own_subsets(rollout: Rollout) -> dict[str, str]:
    """The subsets meshctl adds, by name: the canary's, and a fresh baseline's."""
    rule = _istio(rollout).destination_rule
    assert rule is not None
    found = {rule.canary_subset: "canary"}
    if rollout.spec.fresh_baseline:
        found[rule.baseline_subset] = "baseline"
    return found


def with_canary_subset(dr: Mapping[str, Any], rollout: Rollout) -> Obj:
    """The DestinationRule with the canary subset (and a fresh baseline's) added, before
    any route references them."""
    out = copy.deepcopy(dict(dr))
    subsets = out.setdefault("spec", {}).setdefault("subsets", [])
    for name, track in _own_subsets(rollout).items():
        if not any(s.get("name") == name for s in subsets):
            subsets.append({"name": name, "labels": {TRACK: track}})
    return out


def without_canary_subset(dr: Mapping[str, Any], rollout: Rollout,
                          only: set[str] | None = None) -> Obj:
    """The DestinationRule with the subsets meshctl added removed (after routes stop using
    them); ``only``: just those of them (the ones it borrowed)."""
    own = {name: track for name, track in _own_subsets(rollout).items()
           if only is None or name in only}
    out = copy.deepcopy(dict(dr))
    subsets = out.get("spec", {}).get("subsets", [])
    out.setdefault("spec", {})["subsets"] = [
        s for s in subsets
        if not (s.get("name") in own and s.get("labels") == {TRACK: own[s.get("name")]})
    ]
    return out


def mesh_problems(rollout: Rollout, vs: Mapping[str, Any] | None,
                  dr: Mapping[str, Any] | None) -> Iterator[Problem]:
    """Checks against the live objects: the VirtualService and its routes, the stable subset."""
    routing = _istio(rollout)
    vs_name = routing.virtual_service.name
    if vs is None:
        yield Problem(f"{PATH}.virtualService.name",
                      f"VirtualService {vs_name!r} not found in namespace {rollout.namespace}; "
                      "create it or fix the name")
        return
    present = [r.get("name", "") for r in vs.get("spec", {}).get("http", []) if not is_ours(r)]
    for i, name in enumerate(routing.virtual_service.routes):
        if name not in present:
            yield Problem(f"{PATH}.virtualService.routes[{i}]",
                          f"route {name!r} is not in VirtualService {vs_name} "
                          f"(it has: {', '.join(map(repr, present)) or 'no named routes'})")
    if not routing.virtual_service.routes and len(present) != 1:
        yield Problem(f"{PATH}.virtualService.routes",
                      f"VirtualService {vs_name} has {len(present)} HTTP routes; name the "
                      "ones meshctl manages")
    if routing.destination_rule is None:
        return
    dr_name = routing.destination_rule.name
    if dr is None:
        yield Problem(f"{PATH}.destinationRule.name",
                      f"DestinationRule {dr_name!r} not found in namespace {rollout.namespace}")
        return
    subsets = [s.get("name") for s in dr.get("spec", {}).get("subsets", [])]
    stable = routing.destination_rule.stable_subset
    if stable not in subsets:
        yield Problem(f"{PATH}.destinationRule.stableSubset",
                      f"DestinationRule {dr_name} lacks subset {stable!r}; add it with the "
                      f"stable pods' labels (has: {', '.join(map(str, subsets)) or 'none'})")


def _istio(rollout: Rollout) -> IstioRouting:
    routing = rollout.spec.traffic_routing
    if routing is None or routing.istio is None:
        raise ValueError(f"{PATH} is required for Istio routing")
    return routing.istio


# --- the Backend -------------------------------------------------------------------------


def refs(rollout: Rollout) -> tuple[ObjectRef, ...]:
    """The VirtualService, and the DestinationRule for subset-level routing."""
    routing = _istio(rollout)
    found = [ObjectRef(VIRTUAL_SERVICE, rollout.namespace, routing.virtual_service.name,
                       f"{PATH}.virtualService.name")]
    if routing.destination_rule is not None:
        found.append(ObjectRef(DESTINATION_RULE, rollout.namespace,
                               routing.destination_rule.name, f"{PATH}.destinationRule.name"))
    return tuple(found)


def spec_problems(spec: RolloutSpec) -> Iterator[Problem]:
    """One routing mode, and two different destinations."""
    routing = spec.traffic_routing
    istio = routing.istio if routing is not None else None
    if istio is None:
        return
    host_level = istio.stable_service is not None or istio.canary_service is not None
    if istio.destination_rule is not None and host_level:
        yield Problem(PATH, "use destinationRule (subset-level) or stableService and "
                      "canaryService (host-level), not both")
    elif istio.destination_rule is None and not (istio.stable_service and istio.canary_service):
        yield Problem(PATH, "give destinationRule, or both stableService and canaryService")
    rule = istio.destination_rule
    if rule is not None and rule.stable_subset == rule.canary_subset:
        yield Problem(f"{PATH}.destinationRule.canarySubset", "must differ from stableSubset")
    if host_level and istio.stable_service == istio.canary_service:
        yield Problem(f"{PATH}.canaryService", "must differ from stableService")
    if spec.fresh_baseline and istio.destination_rule is None:
        yield Problem("spec.judge.baseline", "fresh needs subset-level routing: give "
                      f"{PATH}.destinationRule (its baselineSubset is the baseline's), or use "
                      "baseline: stable")
    if (spec.fresh_baseline and rule is not None
            and rule.baseline_subset in (rule.stable_subset, rule.canary_subset)):
        yield Problem(f"{PATH}.destinationRule.baselineSubset",
                      "must differ from stableSubset and canarySubset")


def live_problems(rollout: Rollout, found: Found) -> Iterator[Problem]:
    vs = found[0] if found else None
    dr = found[1] if len(found) > 1 else None
    return mesh_problems(rollout, vs, dr)


def baseline(rollout: Rollout) -> list[Obj | None]:
    found: list[Obj | None] = [baseline_virtual_service(rollout)]
    if _istio(rollout).destination_rule is not None:
        found.append(baseline_destination_rule(rollout))
    return found


def planned(rollout: Rollout, found: Found, split: TrafficSplit) -> list[Obj]:
    """The DestinationRule with the canary subset (written first), then the VirtualService."""
    vs = found[0] if found else None
    dr = found[1] if len(found) > 1 else None
    out = [with_canary_subset(dr, rollout)] if dr is not None else []
    return out + ([apply_split(vs, rollout, split)] if vs is not None else [])


def canary_cluster(rollout: Rollout) -> str:
    """How Istio names the canary in a proxy's cluster names, after the port:
    ``canary|web.shop.svc.cluster.local`` (subset-level) or ``|web-canary.shop.svc...``."""
    istio = _istio(rollout)
    ns = rollout.namespace
    if istio.destination_rule is not None:
        host = rollout.spec.service.split(".")[0]
        return f"{istio.destination_rule.canary_subset}|{host}.{ns}.svc.cluster.local"
    host = str(istio.canary_service or "").split(".")[0]
    return f"|{host}.{ns}.svc.cluster.local" if host else ""


def envoy_shape(rollout: Rollout) -> EnvoyShape:
    routing = _istio(rollout)
    name = routing.virtual_service.name
    source = f"/apis/{ISTIO_NETWORKING}/namespaces/{rollout.namespace}/virtual-service/{name}"
    described = f"VirtualService {rollout.namespace}/{name}"
    if routing.destination_rule is not None:
        service = rollout.spec.service.split(".")[0]
        dr = routing.destination_rule
        fresh = (dr.baseline_subset, service) if rollout.spec.fresh_baseline else None
        return EnvoyShape(source, (dr.stable_subset, service), (dr.canary_subset, service),
                          described, fresh)
    return EnvoyShape(source, ("", str(routing.stable_service).split(".")[0]),
                      ("", str(routing.canary_service).split(".")[0]), described)


BACKEND = Backend(key=KEY, kinds=(VIRTUAL_SERVICE, DESTINATION_RULE), refs=refs,
                  spec_problems=spec_problems, live_problems=live_problems, baseline=baseline,
                  planned=planned, canary_cluster=canary_cluster, envoy_shape=envoy_shape,
                  telemetry=MeshKind.ISTIO, routes_baseline=True,
                  managed=lambda rollout, vs: managed_route_names(vs, _istio(rollout)))
