"""What the data plane applies, read from the routes istiod generated for each proxy.

In a cluster the data plane is Envoy, programmed by istiod. ``istioctl proxy-status`` reads
two things from istiod's debug API, and so does meshctl: which route push each proxy has
acknowledged (``/debug/syncz``), and the Envoy route configuration istiod generated for it
(``/debug/config_dump?proxyID=...``). This module turns those into a :class:`TrafficSplit`
(or says why it cannot), as plain values: the adapter fetches, this module judges.

Istio names Envoy clusters ``outbound|<port>|<subset>|<fqdn>``, keeps the VirtualService's
HTTP route names on the Envoy routes, and marks each route with the VirtualService it came
from (``metadata.filter_metadata.istio.config``). So a managed route at 90/10, subset-level::

    route "primary" of /apis/networking.istio.io/v1/namespaces/shop/virtual-service/web
      weighted_clusters: outbound|80|stable|web.shop.svc.cluster.local  90
                         outbound|80|canary|web.shop.svc.cluster.local  10
      ->  TrafficSplit(Weights(90, 10))

A fresh baseline (``spec.judge.baseline: fresh``) is a third weighted cluster, its subset's
(``outbound|80|baseline|web...  20`` -> ``Weights(60, 20, 20)``).

and host-level (``stableService: web``, ``canaryService: web-canary``), one destination::

      cluster: outbound|80||web.shop.svc.cluster.local  ->  TrafficSplit(Weights(100, 0))

Both spellings of a field are read: istiod's config dump is protobuf JSON (``weightedClusters``),
Envoy's own admin dump uses the proto names (``weighted_clusters``).

Acknowledged is not enough. istiod's dump is made from the push it last prepared for the
proxy, and it prepares a push before it sends it: for a moment the dump shows the new routes
while the proxy's last acknowledged route push is still the old one, sent and acknowledged.
Each push has a number (its version ``<time>/<n>``, which every nonce of it begins with), so a
proxy applies the dumped routes when the route push it acknowledged is numbered at least as
high as the dump. A push that changed nothing in the routes sends none (an
AuthorizationPolicy's, say): then the numbers stay apart, and the dump is taken once the
reader has seen the routes in it, and the proxy's acknowledged route push, unchanged for
:data:`SKIPPED_PUSH_SECONDS` (a push on its way is sent within milliseconds).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshctl.domain.routers import backend_of
from meshctl.domain.routers.backend import EnvoyShape, header_route_name
from meshctl.domain.spec import Rollout
from meshctl.domain.traffic import HeaderMatch, HeaderRoute, MatchKind, TrafficSplit, Weights

NOT_OBSERVED = "stored, not observed"
SKIPPED_PUSH_SECONDS = 2.0
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}


def push_number(text: str) -> int | None:
    """istiod's push number in a push version (``2026-12-05T04:44:23Z/20``) or in a nonce
    (the version followed by a UUID); None when ``text`` is neither."""
    if _UUID.search(text):
        text = text[:-36]
    _, slash, number = text.rpartition("/")
    return int(number) if slash and number.isdigit() else None


@dataclass(frozen=True)
class ProxyRoutes:
    """One proxy as istiod knows it: whether it acknowledged the last routes istiod sent,
    the Envoy route configurations istiod generates for it now (plain JSON), the numbers
    of the push those were made from and of the route push the proxy acknowledged, and how
    long the reader has seen those routes and that acknowledgement unchanged."""

    proxy: str
    acknowledged: bool
    route_configs: tuple[Mapping[str, Any], ...]
    routes_push: int | None = None
    acked_push: int | None = None
    unchanged_seconds: float = 0.0

    def applies_dump(self) -> bool:
        """The proxy applies the dumped routes (see the module's docstring)."""
        if not self.acknowledged:
            return False
        if (self.routes_push is not None and self.acked_push is not None
                and self.acked_push >= self.routes_push):
            return True
        return self.unchanged_seconds >= SKIPPED_PUSH_SECONDS


@dataclass(frozen=True)
class Reading:
    """The split the data plane applies, or None and the reason (one sentence)."""

    split: TrafficSplit | None
    reason: str = ""


def _f(obj: Mapping[str, Any], snake: str) -> Any:
    """A field by its proto name or its JSON (camelCase) name."""
    if snake in obj:
        return obj[snake]
    head, *rest = snake.split("_")
    return obj.get(head + "".join(w.title() for w in rest))


def shape(rollout: Rollout) -> EnvoyShape:
    """How the Rollout's backend shows its managed routes in istiod's Envoy routes."""
    backend = backend_of(rollout)
    if backend is None or backend.envoy_shape is None:
        raise ValueError("spec.trafficRouting names no backend istiod programs")
    return backend.envoy_shape(rollout)


def _weights(action: Mapping[str, Any], shape: EnvoyShape) -> Weights | None:
    weighted = _f(action, "weighted_clusters")
    pairs = ([(c.get("name", ""), int(c.get("weight", 0))) for c in weighted.get("clusters", [])]
             if weighted else [(str(_f(action, "cluster") or ""), 100)])
    sums = {"stable": 0, "canary": 0, "baseline": 0}
    for cluster, weight in pairs:
        track = shape.track(cluster)
        if track is None:
            return None  # not meshctl's shape: a destination it does not manage
        sums[track] += weight
    if sum(sums.values()) != 100:
        return None
    return Weights(sums["stable"], sums["canary"], sums["baseline"])


def _mirror_percent(action: Mapping[str, Any], shape: EnvoyShape) -> int:
    for policy in _f(action, "request_mirror_policies") or []:
        if shape.track(str(policy.get("cluster", ""))) != "canary":
            continue
        fraction = _f(policy, "runtime_fraction")
        if not fraction:
            return 100
        value = _f(fraction, "default_value") or {}
        denominator = _DENOMINATORS.get(str(value.get("denominator", "HUNDRED")), 100)
        return round(int(value.get("numerator", 0)) * 100 / denominator)
    return 0


def _header_matches(match: Mapping[str, Any]) -> tuple[HeaderMatch, ...]:
    found = []
    for header in match.get("headers", []):
        string = _f(header, "string_match") or {}
        if "exact" in string:
            found.append(HeaderMatch(header["name"], string["exact"], MatchKind.EXACT))
        elif "prefix" in string:
            found.append(HeaderMatch(header["name"], string["prefix"], MatchKind.PREFIX))
        elif _f(string, "safe_regex"):
            regex = _f(string, "safe_regex").get("regex", "")
            found.append(HeaderMatch(header["name"], regex, MatchKind.REGEX))
    return tuple(found)


def _virtual_hosts(route_configs: Iterable[Mapping[str, Any]]) -> Iterator[Sequence[Any]]:
    for config in route_configs:
        for host in _f(config, "virtual_hosts") or []:
            yield host.get("routes", [])


def splits_in(route_configs: Iterable[Mapping[str, Any]], rollout: Rollout,
              route_name: str) -> list[TrafficSplit | None]:
    """The split of the managed route in each virtual host that has it (None where the
    route is there but not in meshctl's shape)."""
    found_shape = shape(rollout)
    header_prefix = header_route_name(route_name, "")
    found: list[TrafficSplit | None] = []
    for routes in _virtual_hosts(route_configs):
        ours = [r for r in routes
                if found_shape.made(str(((_f(r, "metadata") or {}).get("filterMetadata")
                                         or (_f(r, "metadata") or {}).get("filter_metadata")
                                         or {}).get("istio", {}).get("config", "")))]
        managed = next((r for r in ours if r.get("name", "") == route_name), None)
        if managed is None:
            continue
        action = managed.get("route", {})
        weights = _weights(action, found_shape)
        headers = tuple(HeaderRoute(r["name"][len(header_prefix):],
                                    _header_matches(r.get("match", {})))
                        for r in ours if str(r.get("name", "")).startswith(header_prefix))
        found.append(None if weights is None else
                     TrafficSplit(weights, headers, _mirror_percent(action, found_shape)))
    return found


def has_subset(cluster_names: Iterable[str], rollout: Rollout, subset: str,
               endpoints: Mapping[str, int] | None = None) -> bool | None:
    """Whether one proxy's clusters include ``subset`` of the Rollout's service, with at
    least one endpoint when ``endpoints`` (cluster name to its endpoint count) is given: a
    route to a subset whose cluster has no endpoint yet answers 503 (None: the proxy has no
    cluster of that service at all, so it does not route it)."""
    service = rollout.spec.service.split(".")[0]
    seen = False
    for name in cluster_names:
        parts = name.split("|")
        if len(parts) != 4 or parts[0] != "outbound":
            continue
        host = parts[3].split(".")
        if host[0] != service or (len(host) > 1 and host[1] != rollout.namespace):
            continue
        seen = True
        if parts[2] == subset:
            return endpoints is None or endpoints.get(name, 0) > 0
    return False if seen else None


def endpoint_counts(load_assignments: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Each cluster's endpoints that may take requests (not UNHEALTHY, DRAINING or
    TIMEOUT), from Envoy ClusterLoadAssignments as JSON."""
    counts: dict[str, int] = {}
    for assignment in load_assignments:
        name = str(_f(assignment, "cluster_name") or "")
        total = 0
        for locality in assignment.get("endpoints") or []:
            for endpoint in _f(locality, "lb_endpoints") or []:
                health = str(_f(endpoint, "health_status") or "UNKNOWN")
                total += health not in ("UNHEALTHY", "DRAINING", "TIMEOUT")
        counts[name] = counts.get(name, 0) + total
    return counts


def _aligned(split: TrafficSplit, written: TrafficSplit | None) -> TrafficSplit:
    """Istio sorts a route's header matchers by name; give them the written order back
    when they are the same matchers, so equal splits compare equal."""
    if written is None:
        return split
    order = {h.name: h.matches for h in written.header_routes}
    routes = tuple(HeaderRoute(h.name, order[h.name])
                   if h.name in order and set(order[h.name]) == set(h.matches) else h
                   for h in split.header_routes)
    return TrafficSplit(split.weights, routes, split.mirror_percent)


def _push(number: int | None) -> str:
    return "an unnumbered push" if number is None else f"push {number}"


def read(proxies: Sequence[ProxyRoutes], rollout: Rollout, route_name: str,
         written: TrafficSplit | None) -> Reading:
    """The split every proxy serving the route applies, or why there is none to report:
    no proxy serves the route, a proxy has not acknowledged its latest routes or not yet
    been sent the dumped ones, or the proxies disagree."""
    seen: dict[str, TrafficSplit | None] = {}
    for proxy in proxies:
        splits = splits_in(proxy.route_configs, rollout, route_name)
        if not splits:
            continue
        if not proxy.acknowledged:
            return Reading(None, f"not observed: proxy {proxy.proxy} has not acknowledged "
                           "the latest routes istiod sent")
        if not proxy.applies_dump():
            return Reading(None, f"not observed: istiod made proxy {proxy.proxy}'s routes in "
                           f"{_push(proxy.routes_push)}; the proxy acknowledged routes of "
                           f"{_push(proxy.acked_push)} (a push on its way, or one without "
                           "routes)")
        if len(set(splits)) > 1 or splits[0] is None:
            return Reading(None, f"not observed: proxy {proxy.proxy} routes "
                           f"{route_name or 'the route'} in a shape meshctl does not manage")
        seen[proxy.proxy] = splits[0]
    if not seen:
        return Reading(None, f"not observed: no proxy connected to istiod serves route "
                       f"{route_name!r} of {shape(rollout).described} "
                       f"({len(proxies)} connected)")
    if len(set(seen.values())) > 1:
        shown = ", ".join(f"{p} at {s.weights.described()}"
                          for p, s in sorted(seen.items()) if s is not None)
        return Reading(None, f"not observed: proxies disagree ({shown})")
    split = next(iter(seen.values()))
    assert split is not None
    return Reading(_aligned(split, written))
