"""Gateway API backend: weights on the ``backendRefs`` of named ``HTTPRoute`` rules.

meshctl owns only the rules a Rollout names (and the header rules it adds before them,
named ``meshctl-<rule>-<name>``); every other rule and field of the HTTPRoute is carried
over untouched. A managed rule sends to two Services, the stable and the canary one::

    weights 90/10  ->  backendRefs: [{name: web, port: 80, weight: 90},
                                     {name: web-canary, port: 80, weight: 10}]
    mirror 20      ->  filters: [..., {type: RequestMirror, requestMirror:
                                       {backendRef: {name: web-canary, port: 80}, percent: 20}}]
    header route   ->  a rule before it: its own matches AND the headers, to the canary only

With a fresh baseline (``spec.judge.baseline: fresh``) a third backendRef, the
``baselineService`` (a Service selecting the pods labelled ``meshctl.io/track: baseline``),
takes the canary's weight: 60/20/20 -> ``[web 60, web-canary 20, web-baseline 20]``.

Gateway API weights are proportions (default 1), so a rule with the stable Service alone
reads as 100/0. A header rule wins over the managed rule because, for the same path, the
Gateway API prefers the match with more headers (rule order does not decide). Header
values match ``Exact`` or ``RegularExpression``; a prefix match cannot be written here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshctl.domain.fields import field
from meshctl.domain.names import DNS_LABEL, DNS_SUBDOMAIN, LABEL_MAX, SUBDOMAIN_MAX
from meshctl.domain.problems import Problem
from meshctl.domain.routers.backend import (
    HEADER_ROUTE_PREFIX,
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

if TYPE_CHECKING:
    from meshctl.domain.spec import Rollout, RolloutSpec

KEY = "gatewayAPI"
PATH = f"spec.trafficRouting.{KEY}"
HTTP_ROUTE = Kind("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")
DEFAULT_PORT = 80  # only for a plan without a cluster and without spec port
_MATCH_TYPES = {MatchKind.EXACT: "Exact", MatchKind.REGEX: "RegularExpression"}


@dataclass(frozen=True)
class HTTPRouteRef:
    name: str = field("name", required=True, pattern=DNS_SUBDOMAIN, max_length=SUBDOMAIN_MAX)
    rules: tuple[str, ...] = field(
        "rules", default=(), items={"pattern": DNS_SUBDOMAIN, "max_length": SUBDOMAIN_MAX},
        doc="Named rules meshctl manages; empty: the only rule.")


@dataclass(frozen=True)
class GatewayAPIRouting:
    """Weights on the backendRefs of an HTTPRoute's rules: the stable and canary Services."""

    http_route: HTTPRouteRef = field("httpRoute", required=True)
    stable_service: str = field("stableService", required=True, pattern=DNS_LABEL,
                                max_length=LABEL_MAX)
    canary_service: str = field("canaryService", required=True, pattern=DNS_LABEL,
                                max_length=LABEL_MAX)
    port: int | None = field("port", minimum=1, maximum=65535,
                             doc="The Services' port; default: the port the rule's "
                             "backendRefs already use.")
    baseline_service: str | None = field(
        "baselineService", pattern=DNS_LABEL, max_length=LABEL_MAX,
        doc="With spec.judge.baseline fresh: a Service selecting the fresh baseline's pods "
        "(label meshctl.io/track: baseline), the third backendRef.")


def routing_of(rollout: Rollout) -> GatewayAPIRouting:
    routing = rollout.spec.traffic_routing
    section = getattr(routing, "gateway_api", None) if routing is not None else None
    if not isinstance(section, GatewayAPIRouting):
        raise ValueError(f"{PATH} is required for Gateway API routing")
    return section


def _rules(route: Mapping[str, Any]) -> list[Any]:
    return list((route.get("spec") or {}).get("rules") or [])


def managed_rule_names(route: Mapping[str, Any], routing: GatewayAPIRouting) -> list[str]:
    """The named rules, or the only rule when none is named ('' when it has no name)."""
    if routing.http_route.rules:
        return list(routing.http_route.rules)
    own = [r for r in _rules(route) if not is_ours(r)]
    return [str(own[0].get("name", ""))] if len(own) == 1 else []


def _port(rule: Mapping[str, Any], routing: GatewayAPIRouting) -> int | None:
    if routing.port is not None:
        return routing.port
    for ref in rule.get("backendRefs") or []:
        if isinstance(ref, Mapping) and ref.get("port") is not None:
            return int(ref["port"])
    return None


def _ref(service: str, port: int | None) -> Obj:
    return {"name": service} if port is None else {"name": service, "port": port}


def _headers(header: HeaderRoute) -> list[Obj]:
    return [{"type": _MATCH_TYPES.get(m.kind, "Exact"), "name": m.name, "value": m.value}
            for m in header.matches]


def _matches(header: HeaderRoute, rule: Mapping[str, Any]) -> list[Obj]:
    """The rule's own matches (each alternative) AND the headers, so a request the managed
    rule would not take never reaches the canary. No matches: every path, with the headers."""
    out = []
    for own in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
        merged = copy.deepcopy(dict(own))
        mine = {h["name"].lower() for h in _headers(header)}
        kept = [h for h in merged.get("headers", []) if str(h.get("name", "")).lower() not in mine]
        merged["headers"] = kept + _headers(header)
        out.append(merged)
    return out


def _is_our_mirror(item: Any, routing: GatewayAPIRouting) -> bool:
    return (isinstance(item, Mapping) and item.get("type") == "RequestMirror"
            and ((item.get("requestMirror") or {}).get("backendRef") or {}).get("name")
            == routing.canary_service)


def _baseline_service(rollout: Rollout) -> str | None:
    """The fresh baseline's Service (None: the Rollout has none)."""
    return routing_of(rollout).baseline_service if rollout.spec.fresh_baseline else None


def _managed(rule: Obj, routing: GatewayAPIRouting, split: TrafficSplit,
             baseline_service: str | None) -> Obj:
    port = _port(rule, routing)
    refs = [{**_ref(routing.stable_service, port), "weight": split.weights.stable},
            {**_ref(routing.canary_service, port), "weight": split.weights.canary}]
    if baseline_service is not None:
        refs.append({**_ref(baseline_service, port), "weight": split.weights.baseline})
    out = {**rule, "backendRefs": refs}
    filters = [f for f in rule.get("filters") or [] if not _is_our_mirror(f, routing)]
    if split.mirror_percent > 0:
        filters.append({"type": "RequestMirror", "requestMirror": {
            "backendRef": _ref(routing.canary_service, port), "percent": split.mirror_percent}})
    if filters:
        out["filters"] = filters
    else:
        out.pop("filters", None)
    return out


def apply_split(route: Mapping[str, Any], rollout: Rollout, split: TrafficSplit) -> Obj:
    """The HTTPRoute with ``split`` applied to the managed rules only."""
    routing = routing_of(rollout)
    out = copy.deepcopy(dict(route))
    names = managed_rule_names(out, routing)
    claims = route_claims(out)
    kept: list[Obj] = []
    for rule in _rules(out):
        if rebuilt_by(rule, rollout.name, names, claims):
            continue  # this Rollout's header rules are rebuilt below
        name = str(rule.get("name", ""))
        if name in names:
            port = _port(rule, routing)
            for header in split.header_routes:
                kept.append({"name": header_route_name(name, header.name),
                             "matches": _matches(header, rule),
                             "backendRefs": [_ref(routing.canary_service, port)]})
            rule = _managed(rule, routing, split, _baseline_service(rollout))
        kept.append(rule)
    out.setdefault("spec", {})["rules"] = kept
    return out


def read_split(route: Mapping[str, Any], rollout: Rollout) -> TrafficSplit | None:
    """The split written in the managed rules; None when a rule is not in meshctl's shape
    or the named rules disagree (the next write corrects the one someone changed)."""
    routing = routing_of(rollout)
    names, claims = managed_rule_names(route, routing), route_claims(route)
    rules = [r for r in _rules(route)  # another Rollout's header rules are not read as ours
             if not is_ours(r) or rebuilt_by(r, rollout.name, names, claims)]
    fresh = _baseline_service(rollout)
    splits = {_rule_split(rules, name, routing, fresh) for name in names}
    return splits.pop() if len(splits) == 1 else None


def _weights(rule: Mapping[str, Any], routing: GatewayAPIRouting,
             baseline_service: str | None = None) -> Weights | None:
    """Proportions to percentages: {web: 1} -> 100/0, {web: 3, web-canary: 1} -> 75/25;
    another backend, no weight at all, or a share that is not a whole percent: None."""
    sums = {"stable": 0, "canary": 0, "baseline": 0}
    tracks = {routing.stable_service: "stable", routing.canary_service: "canary"}
    if baseline_service is not None:
        tracks[baseline_service] = "baseline"
    for ref in rule.get("backendRefs") or []:
        track = tracks.get(str(ref.get("name", "")))
        if track is None or ref.get("kind", "Service") != "Service" or ref.get("group", ""):
            return None
        sums[track] += int(ref.get("weight", 1))
    total = sum(sums.values())
    if total <= 0 or any((n * 100) % total for n in sums.values()):
        return None
    return Weights(*(n * 100 // total for n in sums.values()))


def _mirror_percent(rule: Mapping[str, Any], routing: GatewayAPIRouting) -> int:
    for item in rule.get("filters") or []:
        if not _is_our_mirror(item, routing):
            continue
        mirror = item["requestMirror"]
        if "percent" in mirror:
            return int(mirror["percent"])
        fraction = mirror.get("fraction")
        if fraction:
            return round(int(fraction.get("numerator", 0)) * 100
                         / int(fraction.get("denominator", 100) or 100))
        return 100
    return 0


def _rule_split(rules: list[Any], name: str, routing: GatewayAPIRouting,
                baseline_service: str | None = None) -> TrafficSplit | None:
    rule = next((r for r in rules if str(r.get("name", "")) == name and not is_ours(r)), None)
    if rule is None:
        return None
    weights = _weights(rule, routing, baseline_service)
    if weights is None:
        return None
    prefix = header_route_name(name, "")
    own = {str(h.get("name", "")).lower() for m in (rule.get("matches") or [{}])[:1]
           for h in m.get("headers", [])}
    headers = tuple(_read_header_rule(r, prefix, own) for r in rules
                    if str(r.get("name", "")).startswith(prefix))
    return TrafficSplit(weights, tuple(h for h in headers if h is not None),
                        _mirror_percent(rule, routing))


def _read_header_rule(rule: Mapping[str, Any], prefix: str, own: set[str]) -> HeaderRoute | None:
    """The header rule meshctl wrote: its name after the prefix, its headers less those of
    the managed rule's own match."""
    kinds = {v: k for k, v in _MATCH_TYPES.items()}
    found = []
    for header in (rule.get("matches") or [{}])[0].get("headers", []):
        name = str(header.get("name", ""))
        if name.lower() in own:
            continue
        kind = kinds.get(str(header.get("type", "Exact")), MatchKind.EXACT)
        found.append(HeaderMatch(name, str(header.get("value", "")), kind))
    return HeaderRoute(str(rule["name"])[len(prefix):], tuple(found)) if found else None


def restored_http_route(route: Mapping[str, Any], original: Mapping[str, Any],
                        rollout: Rollout, rules: Sequence[str] | None = None) -> Obj:
    """Only what meshctl changed, given back: its header rules go, each managed rule
    (``rules``: these rules) gets its original ``backendRefs`` and loses meshctl's mirror
    filter (a mirror filter the rule had is put back); every other rule and field stays as
    others left it."""
    routing = routing_of(rollout)
    out = copy.deepcopy(dict(route))
    before = {str(r.get("name", "")): r for r in named_entries(original, "rules")}
    names = managed_rule_names(out, routing) if rules is None else list(rules)
    claims = route_claims(out)
    kept = []
    for rule in _rules(out):
        if rebuilt_by(rule, rollout.name, names, claims):
            continue
        name = str(rule.get("name", ""))
        if name in names and name in before:
            old = before[name]
            if "backendRefs" in old:
                rule["backendRefs"] = copy.deepcopy(old["backendRefs"])
            else:
                rule.pop("backendRefs", None)
            filters = [f for f in rule.get("filters") or [] if not _is_our_mirror(f, routing)]
            filters += [copy.deepcopy(f) for f in old.get("filters") or []
                        if _is_our_mirror(f, routing)]
            if filters:
                rule["filters"] = filters
            else:
                rule.pop("filters", None)
        kept.append(rule)
    out.setdefault("spec", {})["rules"] = kept
    return out


# --- the Backend -------------------------------------------------------------------------


def refs(rollout: Rollout) -> tuple[ObjectRef, ...]:
    routing = routing_of(rollout)
    return (ObjectRef(HTTP_ROUTE, rollout.namespace, routing.http_route.name,
                      f"{PATH}.httpRoute.name"),)


def spec_problems(spec: RolloutSpec) -> Iterator[Problem]:
    """The two Services differ; header matches are ones an HTTPRoute can express."""
    routing = spec.traffic_routing
    section = getattr(routing, "gateway_api", None)
    if not isinstance(section, GatewayAPIRouting):
        return
    if section.stable_service == section.canary_service:
        yield Problem(f"{PATH}.canaryService", "must differ from stableService")
    if spec.fresh_baseline and section.baseline_service is None:
        yield Problem(f"{PATH}.baselineService", "is required with spec.judge.baseline fresh: "
                      "name a Service that selects the pods labelled meshctl.io/track: "
                      "baseline (and the stable Service's other labels)")
    if section.baseline_service in (section.stable_service, section.canary_service):
        yield Problem(f"{PATH}.baselineService", "must differ from stableService and "
                      "canaryService")
    names = section.http_route.rules
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield Problem(f"{PATH}.httpRoute.rules", f"rule {name!r} is named twice")
    for i, name in enumerate(names):
        if name.startswith(HEADER_ROUTE_PREFIX):
            yield Problem(f"{PATH}.httpRoute.rules[{i}]",
                          f"names starting with {HEADER_ROUTE_PREFIX!r} are meshctl's own "
                          "header rules; rename the rule")
    for path, route in _header_routes(spec):
        for j, match in enumerate(route.match):
            if match.header_value.prefix is not None:
                yield Problem(f"{path}.match[{j}].headerValue.prefix",
                              "the Gateway API matches headers exactly or by regular "
                              "expression; use exact or regex")


def _header_routes(spec: RolloutSpec) -> Iterator[tuple[str, Any]]:
    if spec.strategy.blue_green is not None and spec.strategy.blue_green.preview_route:
        yield "spec.strategy.blueGreen.previewRoute", spec.strategy.blue_green.preview_route
    for i, step in enumerate(spec.strategy.canary.steps if spec.strategy.canary else ()):
        if step.set_header_route is not None:
            yield f"spec.strategy.canary.steps[{i}].setHeaderRoute", step.set_header_route


def live_problems(rollout: Rollout, found: Found) -> Iterator[Problem]:
    """Checks against the live HTTPRoute: it exists, has the named rules, and a port."""
    routing = routing_of(rollout)
    name = routing.http_route.name
    route = found[0] if found else None
    if route is None:
        yield Problem(f"{PATH}.httpRoute.name", f"HTTPRoute {name!r} not found in namespace "
                      f"{rollout.namespace}; create it or fix the name")
        return
    present = [str(r.get("name", "")) for r in _rules(route) if not is_ours(r)]
    for i, rule in enumerate(routing.http_route.rules):
        if rule not in present:
            shown = ", ".join(repr(p) for p in present if p) or "no named rules"
            yield Problem(f"{PATH}.httpRoute.rules[{i}]",
                          f"rule {rule!r} is not in HTTPRoute {name} (it has: {shown})")
    if not routing.http_route.rules and len(present) != 1:
        yield Problem(f"{PATH}.httpRoute.rules", f"HTTPRoute {name} has {len(present)} rules; "
                      "name the ones meshctl manages")
    for rule in _rules(route):
        if str(rule.get("name", "")) in managed_rule_names(route, routing) and \
                _port(rule, routing) is None:
            yield Problem(f"{PATH}.port", f"a rule of HTTPRoute {name} has no backendRef "
                          "port to reuse; give the Services' port")
            return


def baseline(rollout: Rollout) -> list[Obj | None]:
    """The HTTPRoute meshctl assumes when planning without a cluster."""
    routing = routing_of(rollout)
    rule = routing.http_route.rules[0] if routing.http_route.rules else "primary"
    port = routing.port or DEFAULT_PORT
    return [{
        "apiVersion": HTTP_ROUTE.api_version, "kind": HTTP_ROUTE.kind,
        "metadata": {"name": routing.http_route.name, "namespace": rollout.namespace},
        "spec": {"rules": [{"name": rule, "backendRefs": [
            {"name": routing.stable_service, "port": port, "weight": 1}]}]},
    }]


def planned(rollout: Rollout, found: Found, split: TrafficSplit) -> list[Obj]:
    return [apply_split(route, rollout, split) for route in found if route is not None]


def canary_cluster(rollout: Rollout) -> str:
    """Istio names a Service backend's cluster ``outbound|<port>||<host FQDN>``."""
    return f"|{routing_of(rollout).canary_service}.{rollout.namespace}.svc.cluster.local"


def envoy_shape(rollout: Rollout) -> EnvoyShape:
    """istiod merges the HTTPRoutes of a Gateway listener and hostname into one internal
    VirtualService in the route's namespace, ``<gateway ns>~<gateway>~
    istio-autogenerated-k8s-gateway~<listener>~<hostname>``, and keeps each rule's name on
    its Envoy route; a Service backend is the cluster ``outbound|<port>||<host FQDN>``. The
    rule is known by its name and its two Services (the config names no HTTPRoute)."""
    routing = routing_of(rollout)
    source = (f"/apis/networking.istio.io/v1/namespaces/{rollout.namespace}/virtual-service/"
              "*~istio-autogenerated-k8s-gateway~*")
    fresh = _baseline_service(rollout)
    return EnvoyShape(source, ("", routing.stable_service), ("", routing.canary_service),
                      f"HTTPRoute {rollout.namespace}/{routing.http_route.name}",
                      ("", fresh) if fresh is not None else None)


BACKEND = Backend(key=KEY, kinds=(HTTP_ROUTE,), refs=refs, spec_problems=spec_problems,
                  live_problems=live_problems, baseline=baseline, planned=planned,
                  canary_cluster=canary_cluster, envoy_shape=envoy_shape,
                  telemetry=MeshKind.ISTIO,  # istiod implements the Gateway API
                  routes_baseline=True,
                  managed=lambda rollout, route: managed_rule_names(route, routing_of(rollout)))
