"""Zero-trust objects for a Rollout, and the plan that converges the cluster to them. Pure.

From ``spec.security`` meshctl derives, with deterministic names:

- ``<rollout>-meshctl-mtls``: a ``PeerAuthentication`` in STRICT mode for the workload;
- ``<rollout>-meshctl-tls``: a ``DestinationRule`` whose traffic policy is
  ``tls: {mode: ISTIO_MUTUAL}`` for the service (and ``-tls-stable`` / ``-tls-canary`` for the
  hosts of host-level routing), only when the Rollout names no DestinationRule of its own;
- ``<rollout>-meshctl-deny-all``: an ``AuthorizationPolicy`` with a selector and nothing else,
  Istio's "allow nothing" policy: every request to the workload is denied unless an ALLOW
  policy matches it;
- ``<rollout>-meshctl-allow-<i>``: one ALLOW ``AuthorizationPolicy`` per ``security.allow[i]``.

Selectors. Stable and canary pods both carry ``app: <workloadRef.name>`` (the canary Deployment
is cloned from the stable one, keeps its labels and adds ``meshctl.io/track: canary``), so the
one selector ``matchLabels: {app: <workload>}`` covers both tracks; without a workloadRef the
workload is named like the service. Policies never select on the track or a version label:
the canary would escape them.

The user's DestinationRule. When the Rollout routes by subsets of its own DestinationRule
(``spec.trafficRouting.istio.destinationRule``), a second DestinationRule for the same host
would conflict with it (Istio merges them in an unspecified order), so meshctl borrows one
field of the user's object instead: ``spec.trafficPolicy.tls`` becomes ``ISTIO_MUTUAL``. The
original value is recorded in the annotation ``meshctl.io/original-tls`` before the first
change and put back by :func:`without_mutual_tls` when security is removed or the Rollout is
deleted. Subset- and port-level TLS settings of the user stay as they are; the audit reports
any that conflict.

Ownership. Objects meshctl creates carry ``app.kubernetes.io/managed-by: meshctl`` and
``meshctl.io/rollout: <name>``; :func:`policy_plan` creates, updates and deletes only those
(and the one borrowed field) and reports, never touches, an object of someone else that
holds one of its names. The annotation ``meshctl.io/spec-hash`` (the hash of the spec meshctl
last wrote) tells a change of the Rollout from drift made by someone else.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from meshctl.domain.jsontext import parsed_object
from meshctl.domain.keys import MANAGED_BY, MANAGER, ORIGINAL_TLS, ROLLOUT, SPEC_HASH, TRACK
from meshctl.domain.routers.istio import ISTIO_NETWORKING
from meshctl.domain.spec import AllowRule, Rollout, Source

Obj = dict[str, Any]
ISTIO_SECURITY = "security.istio.io/v1"
TRUST_DOMAIN = "cluster.local"
APP_LABEL = "app"

# kind -> (group, version, plural): the resources meshctl manages for zero trust.
RESOURCES: dict[str, tuple[str, str, str]] = {
    "PeerAuthentication": ("security.istio.io", "v1", "peerauthentications"),
    "AuthorizationPolicy": ("security.istio.io", "v1", "authorizationpolicies"),
    "DestinationRule": ("networking.istio.io", "v1", "destinationrules"),
}


# --- selectors ---------------------------------------------------------------------------


def workload_name(rollout: Rollout) -> str:
    ref = rollout.spec.workload_ref
    return ref.name if ref is not None else rollout.spec.service


def workload_selector(rollout: Rollout) -> dict[str, str]:
    """The labels every pod of the workload carries, stable and canary alike."""
    return {APP_LABEL: workload_name(rollout)}


def pod_labels(rollout: Rollout, track: str) -> dict[str, str]:
    """The labels meshctl's pods of one track carry (at least)."""
    return {**workload_selector(rollout), TRACK: track}


# --- desired objects ---------------------------------------------------------------------


@dataclass(frozen=True)
class DesiredPolicies:
    """What the cluster should hold for one Rollout.

    ``objects``: the objects meshctl owns, complete. ``borrowed_destination_rule``: the name
    of the user's DestinationRule whose ``trafficPolicy.tls`` meshctl sets, if any.
    """

    rollout: str
    namespace: str
    objects: tuple[Obj, ...] = ()
    borrowed_destination_rule: str | None = None


def desired_policies(rollout: Rollout) -> DesiredPolicies:
    """Everything ``spec.security`` asks for; nothing when the Rollout has no security."""
    security = rollout.spec.security
    if security is None:
        return DesiredPolicies(rollout.name, rollout.namespace)
    objects = [peer_authentication(rollout), *managed_destination_rules(rollout),
               deny_all(rollout)]
    objects += [allow_policy(rollout, i, rule) for i, rule in enumerate(security.allow)]
    return DesiredPolicies(rollout.name, rollout.namespace, tuple(objects),
                           user_destination_rule(rollout))


def user_destination_rule(rollout: Rollout) -> str | None:
    routing = rollout.spec.traffic_routing
    istio = routing.istio if routing is not None else None
    if istio is None or istio.destination_rule is None:
        return None
    return istio.destination_rule.name


def _object(rollout: Rollout, api_version: str, kind: str, name: str, spec: Obj) -> Obj:
    labels = {MANAGED_BY: MANAGER, ROLLOUT: rollout.name}
    return {
        "apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": rollout.namespace, "labels": labels,
                     "annotations": {SPEC_HASH: spec_hash(spec)}},
        "spec": spec,
    }


def peer_authentication(rollout: Rollout) -> Obj:
    spec = {"selector": {"matchLabels": workload_selector(rollout)}, "mtls": {"mode": "STRICT"}}
    return _object(rollout, ISTIO_SECURITY, "PeerAuthentication",
                   f"{rollout.name}-meshctl-mtls", spec)


def _hosts(rollout: Rollout) -> list[tuple[str, str]]:
    """(name suffix, host) of every host the Rollout's traffic reaches, without repeats."""
    routing = rollout.spec.traffic_routing
    istio = routing.istio if routing is not None else None
    candidates = [("", rollout.spec.service)]
    if istio is not None:
        candidates += [("-stable", istio.stable_service or ""),
                       ("-canary", istio.canary_service or "")]
    out: list[tuple[str, str]] = []
    for suffix, host in candidates:
        if host and host not in (h for _, h in out):
            out.append((suffix, host))
    return out


def managed_destination_rules(rollout: Rollout) -> list[Obj]:
    """ISTIO_MUTUAL for each host, unless the Rollout uses its own DestinationRule."""
    if user_destination_rule(rollout) is not None:
        return []
    return [_object(rollout, ISTIO_NETWORKING, "DestinationRule",
                    f"{rollout.name}-meshctl-tls{suffix}",
                    {"host": host, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})
            for suffix, host in _hosts(rollout)]


def deny_all(rollout: Rollout) -> Obj:
    """A selector and no rules: Istio denies every request no ALLOW policy matches."""
    spec = {"selector": {"matchLabels": workload_selector(rollout)}}
    return _object(rollout, ISTIO_SECURITY, "AuthorizationPolicy",
                   f"{rollout.name}-meshctl-deny-all", spec)


def principal(namespace: str, service_account: str) -> str:
    return f"{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


def _sources(rollout: Rollout, sources: Iterable[Source]) -> list[Obj]:
    """Callers with a service account become principals (namespace defaults to the
    Rollout's); callers with only a namespace become namespaces. Sources are ORed."""
    principals, namespaces = [], []
    for source in sources:
        if source.service_account:
            principals.append(principal(source.namespace or rollout.namespace,
                                        source.service_account))
        elif source.namespace:
            namespaces.append(source.namespace)
    out: list[Obj] = []
    if principals:
        out.append({"source": {"principals": principals}})
    if namespaces:
        out.append({"source": {"namespaces": namespaces}})
    return out


def _operation(rule: AllowRule) -> Obj:
    operation: Obj = {}
    if rule.methods:
        operation["methods"] = list(rule.methods)
    if rule.paths:
        operation["paths"] = list(rule.paths)
    if rule.ports:
        operation["ports"] = [str(port) for port in rule.ports]
    return operation


def allow_policy(rollout: Rollout, index: int, rule: AllowRule) -> Obj:
    """``security.allow[index]`` as one ALLOW policy.

    ``from: [{namespace: web, serviceAccount: frontend}], methods: [GET], ports: [8080]`` ->
    ``rules: [{from: [{source: {principals: [cluster.local/ns/web/sa/frontend]}}],
    to: [{operation: {methods: [GET], ports: ["8080"]}}]}]``
    """
    istio_rule: Obj = {"from": _sources(rollout, rule.from_)}
    operation = _operation(rule)
    if operation:
        istio_rule["to"] = [{"operation": operation}]
    spec = {"selector": {"matchLabels": workload_selector(rollout)}, "action": "ALLOW",
            "rules": [istio_rule]}
    return _object(rollout, ISTIO_SECURITY, "AuthorizationPolicy",
                   f"{rollout.name}-meshctl-allow-{index}", spec)


def spec_hash(spec: Mapping[str, Any]) -> str:
    """A short stable hash of a spec (keys sorted), to recognise what meshctl wrote."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- the borrowed DestinationRule --------------------------------------------------------

# Keys of a TLS setting that stay valid with ISTIO_MUTUAL; certificates must go.
_KEPT_TLS_KEYS = ("sni", "subjectAltNames")


def _tls(dr: Mapping[str, Any]) -> Any:
    return dr.get("spec", {}).get("trafficPolicy", {}).get("tls")


def with_mutual_tls(dr: Mapping[str, Any], rollout: str) -> Obj:
    """The user's DestinationRule with ``trafficPolicy.tls.mode: ISTIO_MUTUAL``; the original
    ``tls`` is recorded (once) for :func:`without_mutual_tls`. Unchanged if already so."""
    out = copy.deepcopy(dict(dr))
    tls = _tls(out)
    if isinstance(tls, dict) and tls.get("mode") == "ISTIO_MUTUAL":
        return out
    annotations = out.setdefault("metadata", {}).setdefault("annotations", {})
    if ORIGINAL_TLS not in annotations:
        annotations[ORIGINAL_TLS] = json.dumps({"rollout": rollout, "tls": tls}, sort_keys=True)
    kept = {k: tls[k] for k in _KEPT_TLS_KEYS if isinstance(tls, dict) and k in tls}
    policy = out.setdefault("spec", {}).setdefault("trafficPolicy", {})
    policy["tls"] = {"mode": "ISTIO_MUTUAL", **kept}
    return out


def borrowed_by(dr: Mapping[str, Any]) -> str | None:
    """The Rollout that recorded this DestinationRule's original TLS, if any."""
    record = parsed_object((dr.get("metadata", {}).get("annotations") or {}).get(ORIGINAL_TLS))
    return None if record is None else str(record.get("rollout"))


def without_mutual_tls(dr: Mapping[str, Any], rollout: str) -> Obj:
    """The DestinationRule with the TLS setting it had before ``rollout`` borrowed it."""
    out = copy.deepcopy(dict(dr))
    if borrowed_by(out) != rollout:
        return out
    annotations = out["metadata"]["annotations"]
    original = (parsed_object(annotations.pop(ORIGINAL_TLS)) or {}).get("tls")
    if not annotations:
        del out["metadata"]["annotations"]
    policy = out.setdefault("spec", {}).setdefault("trafficPolicy", {})
    if original is None:
        policy.pop("tls", None)
    else:
        policy["tls"] = original
    if not policy:
        del out["spec"]["trafficPolicy"]
    return out


# --- the plan ----------------------------------------------------------------------------


class Verb(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    RESTORE = "restore"  # give a borrowed field back to its owner
    UNCHANGED = "unchanged"
    SKIP = "skip"  # meshctl would write it but must not: someone else's object


@dataclass(frozen=True)
class Change:
    """One difference, ``before`` and ``after`` None when the field is absent."""

    path: str
    before: Any
    after: Any

    def __str__(self) -> str:
        return f"{self.path}: {_short(self.before)} -> {_short(self.after)}"


def _short(value: Any) -> str:
    return "(absent)" if value is None else json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class PolicyStep:
    """One step of a policy plan. ``object``: the desired object (create, update; written
    over the live one with :func:`converged`), the user's object as it will be (borrowed
    update, restore), or what is there (delete, unchanged, skip). ``borrowed``: a user's
    object of which meshctl writes one field only."""

    verb: Verb
    kind: str
    namespace: str
    name: str
    object: Obj | None
    changes: tuple[Change, ...] = ()
    reason: str = ""
    borrowed: bool = False

    @property
    def writes(self) -> bool:
        return self.verb in (Verb.CREATE, Verb.UPDATE, Verb.DELETE, Verb.RESTORE)

    def as_dict(self) -> Obj:
        return {"action": self.verb.value, "kind": self.kind, "namespace": self.namespace,
                "name": self.name, "borrowed": self.borrowed, "reason": self.reason,
                "changes": [{"path": c.path, "before": c.before, "after": c.after}
                            for c in self.changes]}


def owned(obj: Mapping[str, Any], rollout: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY) == MANAGER
                and labels.get(ROLLOUT) == rollout)


def diff(before: Any, after: Any, path: str = "") -> tuple[Change, ...]:
    """Differences between two JSON values; maps recurse, lists and scalars compare whole.

    diff({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}}) == (Change("b.c", 2, 3),)
    diff({"a": [1]}, {}) == (Change("a", [1], None),)
    """
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[Change] = []
        for key in [*before, *(k for k in after if k not in before)]:
            changes += diff(before.get(key), after.get(key), f"{path}.{key}" if path else key)
        return tuple(changes)
    return () if before == after else (Change(path, before, after),)


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return str(obj.get("kind", "")), str(obj.get("metadata", {}).get("name", ""))


def _ownership_changes(live: Mapping[str, Any], want: Mapping[str, Any]) -> tuple[Change, ...]:
    """Spec differences, and desired labels the live object lacks."""
    labels = live.get("metadata", {}).get("labels") or {}
    wanted = want["metadata"]["labels"]
    missing = {k: v for k, v in wanted.items() if labels.get(k) != v}
    return (*diff(live.get("spec"), want["spec"], "spec"),
            *diff({k: labels.get(k) for k in missing}, missing, "metadata.labels"))


def _update_reason(live: Mapping[str, Any]) -> str:
    written = (live.get("metadata", {}).get("annotations") or {}).get(SPEC_HASH)
    if written == spec_hash(live.get("spec") or {}):
        return "the Rollout's security changed"
    return "drift: changed outside meshctl; restoring what meshctl wrote"


def _managed_action(desired: DesiredPolicies, want: Obj, live: Obj | None) -> PolicyStep:
    kind, name = _key(want)
    if live is None:
        return PolicyStep(Verb.CREATE, kind, desired.namespace, name, want,
                      diff(None, want["spec"], "spec"))
    if not owned(live, desired.rollout):
        manager = (live.get("metadata", {}).get("labels") or {}).get(MANAGED_BY)
        return PolicyStep(Verb.SKIP, kind, desired.namespace, name, live,
                      reason=f"exists and is not meshctl's for Rollout {desired.rollout} "
                             f"(managed-by: {manager or 'unset'}); left untouched: rename or "
                             "delete it")
    changes = _ownership_changes(live, want)
    if not changes:
        return PolicyStep(Verb.UNCHANGED, kind, desired.namespace, name, live)
    return PolicyStep(Verb.UPDATE, kind, desired.namespace, name, want, changes, _update_reason(live))


def converged(live: Mapping[str, Any], want: Mapping[str, Any]) -> Obj:
    """``live`` with meshctl's spec, labels and hash; other metadata kept. A pure mutation for
    read-modify-write: an object that is no longer meshctl's comes back unchanged."""
    out = copy.deepcopy(dict(live))
    rollout = str(want["metadata"]["labels"][ROLLOUT])
    if not owned(out, rollout):
        return out
    metadata = out.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **want["metadata"]["labels"]}
    metadata["annotations"] = {**(metadata.get("annotations") or {}),
                               **want["metadata"]["annotations"]}
    out["spec"] = copy.deepcopy(want["spec"])
    return out


def _borrowed_actions(desired: DesiredPolicies, existing: list[Obj]) -> Iterator[PolicyStep]:
    rules = {_key(o)[1]: o for o in existing if o.get("kind") == "DestinationRule"}
    name = desired.borrowed_destination_rule
    for other, dr in sorted(rules.items()):
        if other != name and borrowed_by(dr) == desired.rollout:
            restored = without_mutual_tls(dr, desired.rollout)
            yield PolicyStep(Verb.RESTORE, "DestinationRule", desired.namespace, other, restored,
                         diff(dr.get("spec"), restored.get("spec"), "spec"),
                         "no longer used: the TLS setting it had is put back", borrowed=True)
    if name is None:
        return
    live = rules.get(name)
    if live is None:
        yield PolicyStep(Verb.SKIP, "DestinationRule", desired.namespace, name, None,
                     reason="the Rollout's DestinationRule does not exist; create it first",
                     borrowed=True)
        return
    secured = with_mutual_tls(live, desired.rollout)
    changes = diff(live.get("spec"), secured.get("spec"), "spec")
    verb = Verb.UPDATE if changes else Verb.UNCHANGED
    yield PolicyStep(verb, "DestinationRule", desired.namespace, name, secured if changes else live,
                 changes, "trafficPolicy.tls of the user's DestinationRule" if changes else "",
                 borrowed=True)


def policy_plan(desired: DesiredPolicies, existing: Iterable[Mapping[str, Any]]) -> list[PolicyStep]:
    """Actions that make ``existing`` (the live objects of the Rollout's namespace) hold
    ``desired``. Only objects labelled as meshctl's for this Rollout are created, updated or
    deleted, and only ``trafficPolicy.tls`` of the Rollout's own DestinationRule is borrowed;
    any other object is never changed (a name clash is a ``skip`` with the reason)."""
    live = [dict(o) for o in existing
            if o.get("metadata", {}).get("namespace", desired.namespace) == desired.namespace
            and o.get("kind") in RESOURCES]
    by_key = {_key(o): o for o in live}
    wanted = {_key(o) for o in desired.objects}
    actions = [_managed_action(desired, want, by_key.get(_key(want)))
               for want in desired.objects]
    for obj in sorted(live, key=_key):
        if owned(obj, desired.rollout) and _key(obj) not in wanted:
            kind, name = _key(obj)
            actions.append(PolicyStep(Verb.DELETE, kind, desired.namespace, name, obj,
                                  reason="no longer asked for by the Rollout"))
    actions += _borrowed_actions(desired, live)
    return actions
