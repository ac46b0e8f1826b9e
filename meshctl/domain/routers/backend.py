"""What a traffic backend is, in the domain: pure functions over plain dicts.

A backend (Istio VirtualService, Gateway API HTTPRoute) is one module beside this one that
ends with ``BACKEND = Backend(...)``, and one line in the registry
(:mod:`meshctl.domain.routers`). It says which objects it reads and writes, what its part of
the spec must satisfy (offline and against the live objects), and how a split looks in its
objects (for the plan preview). Its adapter (``meshctl.adapters.routers``) does the I/O.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from meshctl.domain.jsontext import parsed_object
from meshctl.domain.keys import ORIGINAL_SPEC, ROUTES
from meshctl.domain.problems import Problem
from meshctl.domain.traffic import TrafficSplit

if TYPE_CHECKING:  # the spec imports the registry for its trafficRouting section
    from meshctl.domain.spec import Rollout, RolloutSpec

Obj = dict[str, Any]
HEADER_ROUTE_PREFIX = "meshctl-"


class MeshKind(str, Enum):
    """Whose telemetry measures a backend's traffic (which built-in SLO queries apply)."""

    ISTIO = "istio"  # the sidecars' standard metrics (or their Envoy clusters' stats)
    ENVOY = "envoy"  # the embedded local mesh: its one Envoy's cluster stats


@dataclass(frozen=True)
class Kind:
    """A resource type a backend reads and writes (what the controller watches)."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


@dataclass(frozen=True)
class ObjectRef:
    """One object a Rollout's backend reads and writes, and the spec field naming it."""

    kind: Kind
    namespace: str
    name: str
    path: str  # e.g. spec.trafficRouting.gatewayAPI.httpRoute.name


@dataclass(frozen=True)
class EnvoyShape:
    """How the managed routes look in the Envoy routes istiod generates: the config each
    route came from (``metadata.filter_metadata.istio.config``, a shell-style pattern: ``*``
    matches any run of characters) and the Envoy clusters of the two versions,
    ``outbound|<port>|<subset>|<host>`` given as ``(subset, short host)``."""

    source: str
    stable: tuple[str, str]
    canary: tuple[str, str]
    described: str  # e.g. "VirtualService shop/web", for messages
    baseline: tuple[str, str] | None = None  # a fresh baseline's (None: the Rollout has none)

    def made(self, config: str) -> bool:
        """Whether a route istiod generated came from this backend's object."""
        return fnmatch.fnmatchcase(config, self.source)

    def track(self, cluster: str) -> str | None:
        """'stable', 'canary', 'baseline' or None for an Envoy cluster name."""
        parts = cluster.split("|")
        if len(parts) != 4 or parts[0] != "outbound":
            return None
        found = (parts[2], parts[3].split(".")[0])
        tracks = {self.stable: "stable", self.canary: "canary"}
        if self.baseline is not None:
            tracks[self.baseline] = "baseline"
        return tracks.get(found)


Found = Sequence[Mapping[str, Any] | None]  # the live objects, in the order of ``refs``


@dataclass(frozen=True)
class Backend:
    """One traffic backend's pure half.

    - ``refs``: the objects it reads and writes for a Rollout (the route object first);
    - ``spec_problems``: rules on its part of the spec that hold without a cluster;
    - ``live_problems``: rules against the live objects (``found``, aligned with ``refs``);
    - ``baseline``: the objects assumed when planning without a cluster;
    - ``planned``: the objects as they would be written for a split (the plan preview);
    - ``canary_cluster``: how Envoy names the canary's cluster after ``outbound|<port>|``
      when Istio programs the proxies ('' when unknown);
    - ``envoy_shape``: how its managed routes look in the Envoy routes istiod generates
      (None: istiod does not program them);
    - ``telemetry``: whose metrics measure its traffic;
    - ``routes_baseline``: it can route to a third destination, a fresh baseline
      (``spec.judge.baseline: fresh``);
    - ``managed``: the names of the routes the Rollout manages in its route object (the
      first of ``refs``), as found.
    """

    key: str  # its JSON name under spec.trafficRouting
    kinds: tuple[Kind, ...]
    refs: Callable[[Rollout], tuple[ObjectRef, ...]]
    spec_problems: Callable[[RolloutSpec], Iterator[Problem]]
    live_problems: Callable[[Rollout, Found], Iterator[Problem]]
    baseline: Callable[[Rollout], list[Obj | None]]
    planned: Callable[[Rollout, Found, TrafficSplit], list[Obj]]
    canary_cluster: Callable[[Rollout], str]
    envoy_shape: Callable[[Rollout], EnvoyShape] | None
    telemetry: MeshKind = MeshKind.ISTIO
    routes_baseline: bool = False
    managed: Callable[[Rollout, Mapping[str, Any]], list[str]] = lambda rollout, obj: []


def header_route_name(route_name: str, header_name: str) -> str:
    """The route meshctl adds before a managed route for a header match."""
    return f"{HEADER_ROUTE_PREFIX}{route_name or 'default'}-{header_name}"


def is_ours(route: Mapping[str, Any]) -> bool:
    return str(route.get("name", "")).startswith(HEADER_ROUTE_PREFIX)


def rebuilt_by(route: Mapping[str, Any], rollout_name: str, names: Sequence[str],
               claims: Mapping[str, str]) -> bool:
    """Whether ``route``, one of meshctl's header routes, is the Rollout ``rollout_name``'s
    to rebuild or give back: written for one of its routes ``names``, or for a route no
    other Rollout claims (a leftover). Another Rollout's header routes on the same object
    are left as they are."""
    if not is_ours(route):
        return False
    name = str(route.get("name", ""))
    others = [n for n, holder in claims.items() if holder != rollout_name and n not in names]
    written_for = [n for n in [*names, *others] if name.startswith(header_route_name(n, ""))]
    # route "a" and route "a-b" both prefix "meshctl-a-b-x": the longer name wrote it
    return not written_for or max(written_for, key=len) in names


def remember_original(obj: Obj, key: str = "", fresh: Sequence[str] = ()) -> Obj:
    """Record the object's spec, as found, before meshctl's first change (once).

    One record serves every Rollout managing a route of the object, and stays until the
    last of them gives its routes back. The routes ``fresh`` (named entries of the list
    ``spec[key]``), taken now while the record already exists, are recorded again as they
    are: a route given back by an earlier Rollout may have been edited since."""
    annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
    spec = obj.get("spec") or {}
    if ORIGINAL_SPEC not in annotations:
        annotations[ORIGINAL_SPEC] = json.dumps(spec, sort_keys=True)
        return obj
    record = parsed_object(annotations[ORIGINAL_SPEC])
    if not fresh or record is None:
        return obj
    now = {str(r.get("name", "")): r for r in named_entries(spec, key)}
    again = [n for n in fresh if n in now]
    record[key] = [r for r in named_entries(record, key)
                   if str(r.get("name", "")) not in again] + [now[n] for n in again]
    annotations[ORIGINAL_SPEC] = json.dumps(record, sort_keys=True)
    return obj


def named_entries(spec: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """The entries of the list ``spec[key]`` that are objects (routes, rules); anything
    else there (a hand-edited record) is left out."""
    found = spec.get(key)
    return [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []


def recorded_original(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The spec as meshctl found it, left recorded (None: no record, or not a spec)."""
    return parsed_object((obj.get("metadata", {}).get("annotations") or {}).get(ORIGINAL_SPEC))


def take_original(obj: Obj) -> dict[str, Any] | None:
    """The spec as meshctl found it (None if there is no record, or it does not read as a
    spec). The record is removed once no route of the object is claimed: call this after
    :func:`release_routes`."""
    found = recorded_original(obj)
    if not route_claims(obj):
        (obj.get("metadata", {}).get("annotations") or {}).pop(ORIGINAL_SPEC, None)
    return found


def route_claims(obj: Mapping[str, Any] | None) -> dict[str, str]:
    """Which Rollout manages each route of a route object (its ``meshctl.io/routes``
    annotation; what does not read as route name -> Rollout name is ignored)."""
    found = parsed_object(((obj or {}).get("metadata", {}).get("annotations") or {}).get(ROUTES))
    return {str(k): v for k, v in (found or {}).items() if isinstance(v, str)}


def claim_routes(obj: Obj, rollout_name: str, names: Sequence[str]) -> Obj:
    """Record ``rollout_name`` as the manager of the routes ``names`` (in place, like
    :func:`remember_original`)."""
    claims = route_claims(obj)
    if names and any(claims.get(n) != rollout_name for n in names):
        claims.update(dict.fromkeys(names, rollout_name))
        annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
        annotations[ROUTES] = json.dumps(claims, sort_keys=True)
    return obj


def release_routes(obj: Obj, rollout_name: str, only: Sequence[str] | None = None) -> Obj:
    """The routes ``rollout_name`` managed (``only``: those of them) no longer claimed (in
    place)."""
    claims = route_claims(obj)
    left = {k: v for k, v in claims.items()
            if v != rollout_name or (only is not None and k not in only)}
    if left != claims:
        annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
        if left:
            annotations[ROUTES] = json.dumps(left, sort_keys=True)
        else:
            annotations.pop(ROUTES, None)
    return obj


def claimed_by(obj: Mapping[str, Any] | None, rollout_name: str) -> list[str]:
    """The routes of the object ``rollout_name`` claims."""
    return sorted(n for n, holder in route_claims(obj).items() if holder == rollout_name)


def dropped_routes(obj: Mapping[str, Any] | None, rollout_name: str,
                   names: Sequence[str]) -> list[str]:
    """The routes ``rollout_name`` claims but no longer manages (``names``: those it does):
    taken off its spec's list, maybe while they carried canary weight. The next write gives
    them back as found (:func:`give_back_dropped`)."""
    return [n for n in claimed_by(obj, rollout_name) if n not in names]


# a backend's "these routes of the object given back from the original spec"
Restorer = Callable[[Obj, Mapping[str, Any], Sequence[str]], Obj]


def give_back_dropped(obj: Obj, rollout_name: str, names: Sequence[str],
                      restored: Restorer) -> Obj:
    """``obj`` with the routes ``rollout_name`` dropped from its list given back (by the
    backend's ``restored(obj, original spec, route names)``) and released; unchanged when
    there are none. Without a record to give them back from, they are released as they
    are."""
    dropped = dropped_routes(obj, rollout_name, names)
    if not dropped:
        return obj
    original = recorded_original(obj)
    release_routes(obj, rollout_name, dropped)
    return obj if original is None else restored(obj, original, dropped)


def split_written(obj: Obj, rollout_name: str, names: Sequence[str],
                  seen: Mapping[str, Any] | None, key: str, restored: Restorer,
                  applied: Callable[[Obj], Obj]) -> Obj:
    """The route object as one weight write leaves it: the routes ``names`` claimed and
    their original recorded (:func:`claimed_routes`; ``obj`` unchanged if another Rollout
    took one since ``seen``), routes dropped from the Rollout's list given back, then the
    split ``applied``."""
    mine = claimed_routes(obj, rollout_name, names, seen, key)
    if mine is None:  # another Rollout took a route since: validation says so
        return obj
    return applied(give_back_dropped(mine, rollout_name, names, restored))


def given_back(obj: Obj, rollout_name: str, names: Sequence[str], restored: Restorer) -> Obj:
    """The route object as a deleted Rollout leaves it: the routes it manages (``names``)
    and any it still holds that were taken off its list given back, its claims released,
    and the record removed once nobody claims a route (:func:`take_original`)."""
    routes = sorted({*names, *claimed_by(obj, rollout_name)})
    release_routes(obj, rollout_name)
    original = take_original(obj)
    return obj if original is None else restored(obj, original, routes)


def held_routes(obj: Mapping[str, Any] | None, rollout_name: str,
                names: Sequence[str]) -> dict[str, str]:
    """Of the routes ``names``, those another Rollout claims: route name -> that Rollout."""
    claims = route_claims(obj)
    return {n: claims[n] for n in names if claims.get(n) not in (None, rollout_name)}


def claimed_routes(obj: Obj, rollout_name: str, names: Sequence[str],
                   seen: Mapping[str, Any] | None, key: str) -> Obj | None:
    """``obj`` with the routes ``names`` (entries of ``spec[key]``) claimed for
    ``rollout_name`` and their original recorded (in place), or None when another Rollout
    claimed one of them since ``seen`` was read (a claim ``seen`` already held was judged
    when the pass validated: it is taken over)."""
    claims = route_claims(obj)
    before = route_claims(seen)
    if any(before.get(n) != holder for n, holder in held_routes(obj, rollout_name,
                                                                 names).items()):
        return None
    # A route nobody holds, on an object whose other routes are held, is as its owner left
    # it (given back, or never taken); with no claims at all, a record is an older
    # meshctl's, made before its first change: kept whole.
    fresh = [n for n in names if n not in claims] if claims else []
    return remember_original(claim_routes(obj, rollout_name, names), key, fresh)


def held_route(ref: ObjectRef, route: str, holder: str) -> Problem:
    """A route this Rollout would manage is another Rollout's: both would write its weights."""
    return Problem(ref.path, f"route {route!r} of {ref.kind.kind} {ref.name} is managed by "
                   f"Rollout {holder!r} (the {ROUTES} annotation); two Rollouts on one route "
                   "would overwrite each other's weights: name another route, or delete "
                   f"Rollout {holder!r} first")
