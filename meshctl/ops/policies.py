"""Zero-trust policies against a cluster: plan, converge, clean up, audit, and the mTLS gate.

Every decision is made in :mod:`meshctl.domain.policies` and :mod:`meshctl.domain.audit`;
this module reads the live objects through :class:`meshctl.adapters.kube.Kube` and carries
out the plan. Writes are level-based: :func:`converge` reads the Rollout's namespace, plans
and writes only what differs, so a second run right after the first writes nothing. Managed
objects are updated by read-modify-write (a 409 re-reads and retries); objects meshctl did
not create are never written, except the one borrowed field of the Rollout's own
DestinationRule, which :func:`cleanup` gives back.

For the controller::

    outcomes = converge(kube, rollout)          # each reconcile of a Rollout with security
    outcomes = cleanup(kube, rollout)           # when the Rollout is deleted
    open_, reason = gate(kube, rollout, share)  # before advancing a step (requireMutualTLS)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshctl.adapters.errors import AlreadyExists, Forbidden, NotFound
from meshctl.adapters.files import Document, FileProblem, iter_documents
from meshctl.domain.audit import ROOT_NAMESPACE, Finding, Scope, audit, findings_for, mtls_gate
from meshctl.domain.measurements import Measurement
from meshctl.domain.policies import (
    RESOURCES,
    DesiredPolicies,
    PolicyStep,
    Verb,
    converged,
    desired_policies,
    policy_plan,
    with_mutual_tls,
    without_mutual_tls,
)
from meshctl.domain.routers.istio import baseline_destination_rule
from meshctl.domain.spec import GROUP, VERSION, Rollout
from meshctl.ops import failpoints

if TYPE_CHECKING:
    from meshctl.adapters.kube import Kube

Obj = dict[str, Any]

# kind -> (group, version, plural) of everything the audit reads.
AUDITED: dict[str, tuple[str, str, str]] = {
    **RESOURCES,
    "VirtualService": ("networking.istio.io", "v1", "virtualservices"),
    "Rollout": (GROUP, VERSION, "rollouts"),
}
# What the root namespace contributes to a one-namespace audit: mesh-wide policies.
ROOT_KINDS = ("PeerAuthentication", "AuthorizationPolicy", "DestinationRule")


@dataclass(frozen=True)
class Executed:
    """An action of the plan and what came of it: ``written`` is False for actions that
    write nothing and for writes the cluster made unnecessary meanwhile (``note`` says)."""

    action: PolicyStep
    written: bool
    note: str = ""

    def as_dict(self) -> Obj:
        return {**self.action.as_dict(), "written": self.written, "note": self.note}


# --- reading -----------------------------------------------------------------------------


def _listed(kube: Kube, kind: str, namespace: str | None) -> list[Obj]:
    group, version, plural = AUDITED[kind]
    if namespace is not None:
        items = kube.list(group, version, namespace, plural)
    else:
        items, _ = kube.list_all(group, version, plural)
    return [{"apiVersion": f"{group}/{version}", "kind": kind, **item} for item in items]


def observe(kube: Kube, namespace: str) -> list[Obj]:
    """The live PeerAuthentications, AuthorizationPolicies and DestinationRules of a
    namespace: what :func:`meshctl.domain.policies.policy_plan` compares with."""
    return [obj for kind in RESOURCES for obj in _listed(kube, kind, namespace)]


# --- plan and converge -------------------------------------------------------------------


def plan(kube: Kube, rollout: Rollout) -> list[PolicyStep]:
    return policy_plan(desired_policies(rollout), observe(kube, rollout.namespace))


def offline_plan(rollout: Rollout) -> list[PolicyStep]:
    """The plan without a cluster: against a namespace holding only the Rollout's own
    DestinationRule as meshctl assumes it (its stable subset, no traffic policy)."""
    user_rule = baseline_destination_rule(rollout) if rollout.spec.traffic_routing else None
    return policy_plan(desired_policies(rollout), [user_rule] if user_rule else [])


def converge(kube: Kube, rollout: Rollout) -> list[Executed]:
    """Make the cluster hold what the Rollout's security asks for; correct drift on
    meshctl's objects; delete those it no longer asks for."""
    return execute(kube, rollout.name, plan(kube, rollout))


def cleanup(kube: Kube, rollout: Rollout) -> list[Executed]:
    """Remove every object meshctl created for the Rollout and give back the borrowed TLS
    setting of its DestinationRule."""
    nothing = DesiredPolicies(rollout.name, rollout.namespace)
    return execute(kube, rollout.name, policy_plan(nothing, observe(kube, rollout.namespace)))


def execute(kube: Kube, rollout: str, actions: Iterable[PolicyStep]) -> list[Executed]:
    outcomes = []
    for action in actions:
        outcomes.append(_execute(kube, rollout, action))
        if outcomes[-1].written:
            failpoints.hit("policy-written")
    return outcomes


def _mutation(rollout: str, action: PolicyStep) -> Callable[[Obj], Obj]:
    if action.borrowed:
        borrow = with_mutual_tls if action.verb is Verb.UPDATE else without_mutual_tls
        return functools.partial(borrow, rollout=rollout)
    assert action.object is not None
    return functools.partial(converged, want=action.object)


def _execute(kube: Kube, rollout: str, action: PolicyStep) -> Executed:
    if not action.writes:
        return Executed(action, written=False)
    group, version, plural = RESOURCES[action.kind]
    try:
        if action.verb is Verb.CREATE:
            assert action.object is not None
            kube.create(group, version, action.namespace, plural, action.object)
        elif action.verb is Verb.DELETE:
            kube.delete(group, version, action.namespace, plural, action.name)
        else:
            updated = kube.update_with_retry(group, version, action.namespace, plural,
                                             action.name, _mutation(rollout, action))
            if not updated.changed:
                return Executed(action, written=False, note="already as desired")
    except AlreadyExists:
        return Executed(action, written=False,
                       note="created meanwhile by someone else; the next pass decides")
    except NotFound:
        if action.verb is Verb.CREATE:
            raise  # the namespace does not exist: the caller must know
        return Executed(action, written=False, note="gone meanwhile")
    return Executed(action, written=True)


# --- audit -------------------------------------------------------------------------------


def read_cluster(kube: Kube, namespace: str | None,
                 root_namespace: str = ROOT_NAMESPACE) -> list[Obj]:
    """The audited objects of one namespace (with the mesh-wide policies of the root
    namespace) or of all namespaces. Rollouts are skipped when their CRD is absent."""
    objects: list[Obj] = []
    for kind in AUDITED:
        try:
            objects += _listed(kube, kind, namespace)
        except NotFound:
            if kind != "Rollout":
                raise
    if namespace is not None and namespace != root_namespace:
        for kind in ROOT_KINDS:
            try:
                objects += _listed(kube, kind, root_namespace)
            except (NotFound, Forbidden):
                continue  # no root namespace, or no right to read it: audit without it
    return objects


@dataclass
class FileObjects:
    objects: list[Obj]
    problems: list[str]


def read_files(sources: Iterable[str]) -> FileObjects:
    """Every object of the files; ``kind: List`` documents (``kubectl get -o yaml``) are
    unpacked. Anything that is not an object is a problem naming the file."""
    out = FileObjects([], [])
    for item in iter_documents(list(sources)):
        if isinstance(item, FileProblem):
            out.problems.append(str(item))
            continue
        for body in _unpacked(item):
            if isinstance(body, dict) and body.get("kind"):
                out.objects.append(body)
            else:
                out.problems.append(f"{_where(item)}: not a Kubernetes object (no kind)")
    return out


def _unpacked(doc: Document) -> list[Any]:
    body = doc.body
    if isinstance(body, dict) and body.get("kind") == "List":
        return list(body.get("items") or [])
    return [body]


def _where(doc: Document) -> str:
    return doc.source if doc.index == 0 else f"{doc.source}#{doc.index + 1}"


def audit_objects(objects: Iterable[Mapping[str, Any]], namespace: str | None = None,
                  root_namespace: str = ROOT_NAMESPACE) -> list[Finding]:
    """The findings about ``objects``; with ``namespace``, only those in it and the
    mesh-wide ones that reach it."""
    found = audit(list(objects), root_namespace=root_namespace)
    if namespace is None:
        return found
    return [f for f in found if f.namespace == namespace or f.scope is Scope.MESH]


def audit_cluster(kube: Kube, namespace: str | None,
                  root_namespace: str = ROOT_NAMESPACE) -> list[Finding]:
    return audit_objects(read_cluster(kube, namespace, root_namespace), namespace,
                         root_namespace)


def gate(kube: Kube, rollout: Rollout, canary_mtls_share: Measurement,
         root_namespace: str = ROOT_NAMESPACE) -> tuple[bool, str]:
    """The ``requireMutualTLS`` promotion gate: the audit of the Rollout's namespace (findings
    about its service and pods) and the measured mTLS share of its canary traffic."""
    objects = read_cluster(kube, rollout.namespace, root_namespace)
    findings = audit(objects, rollouts=[rollout], root_namespace=root_namespace)
    security = rollout.spec.security
    opens = security is not None and security.mtls_gate_opens_without_traffic
    return mtls_gate(findings_for(findings, rollout), canary_mtls_share, opens)
