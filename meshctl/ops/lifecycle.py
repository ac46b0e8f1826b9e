"""One reconcile of one Rollout object in a cluster: the controller's unit of work.

    1. a Rollout being deleted: give back what meshctl changed in its traffic backend's
       objects (VirtualService and DestinationRule, HTTPRoute), delete the canary
       Deployment (and a fresh baseline's), drop the finalizer;
    2. make sure the finalizer is there (so deletion comes through step 1);
    3. validate: the spec, the backend's live objects, the canary's and baseline's
       Deployment names (free, or meshctl's for this Rollout), the analysis templates, and
       every rendered query, parsed by Prometheus (:mod:`meshctl.ops.query_checks`); an
       invalid Rollout gets the InvalidSpec condition and nothing else is touched;
    4. zero trust: converge the Rollout's policies; with ``requireMutualTLS`` the gate;
    5. the shared reconcile pass (:mod:`meshctl.ops.reconcile`) with the cluster's ports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from meshctl.adapters import notifications
from meshctl.adapters.events import EventWriter, emit_event
from meshctl.adapters.istiod import DataPlane, StoredWeights
from meshctl.adapters.kube import Kube
from meshctl.adapters.parsed import PARSED
from meshctl.adapters.routers import router_for
from meshctl.adapters.status import KubeStatusStore
from meshctl.adapters.workloads import KubeWorkloads
from meshctl.domain import queries
from meshctl.domain.engine import Decision, Event, Gate, invalid_spec, valid_spec
from meshctl.domain.keys import FINALIZER
from meshctl.domain.notifications import NotificationSink
from meshctl.domain.phases import Phase
from meshctl.domain.ports import MetricProvider
from meshctl.domain.problems import InvalidSpec, Problem
from meshctl.domain.resolve import Target, resolve_analysis
from meshctl.domain.routers import DEFAULT_BACKEND, backend_of
from meshctl.domain.routers.backend import Backend, MeshKind, held_route, held_routes
from meshctl.domain.spec import GROUP, VERSION, AnalysisTemplate, Rollout
from meshctl.domain.status import RolloutStatus, WeightPair
from meshctl.domain.traffic import TrafficSplit
from meshctl.domain.validation import load_document
from meshctl.domain.workloads import (
    baseline_name,
    canary_name,
    claimant,
    foreign_workloads,
    held_elsewhere,
    template_revision,
)
from meshctl.ops import policies
from meshctl.ops.gates import GateJudge, KubeSecrets
from meshctl.ops.query_checks import check_queries
from meshctl.ops.reconcile import Ports, reconcile

MetricsFactory = Callable[[str | None], MetricProvider]
# (address, query) pairs Prometheus accepted: asked once per process, not on every pass
_ACCEPTED: set[tuple[str | None, str]] = set()


@dataclass(frozen=True)
class Reconciled:
    requeue_after: float | None = None
    decision: Decision | None = None
    problems: tuple[str, ...] = ()
    deleted: bool = False


def reconcile_object(kube: Kube, obj: dict[str, Any], metrics: MetricsFactory,
                     now: datetime, events: EventWriter | None = None, *,
                     data_plane: DataPlane, observe_timeout: float | None = None,
                     sinks: tuple[NotificationSink, ...] = ()) -> Reconciled:
    """``events``: write Events from that writer's thread (default: in this pass).
    ``data_plane``: where the weights the proxies apply are read (istiod), or
    :class:`StoredWeights` to proceed on written weights, reported as not observed.
    ``sinks``: the controller's own notification sinks, beside each Rollout's.
    ``observe_timeout``: seconds after which a step whose weights are not observed says
    it is held."""
    meta = obj["metadata"]
    if meta.get("deletionTimestamp"):
        finalize(kube, obj)
        return Reconciled(deleted=True)
    if FINALIZER not in (meta.get("finalizers") or []):
        obj = kube.merge_patch(GROUP, VERSION, meta["namespace"], "rollouts", meta["name"],
                               {"metadata": {"finalizers": [*(meta.get("finalizers") or []),
                                                            FINALIZER]}})
    try:
        rollout, plans = _validated(kube, obj)
    except InvalidSpec as exc:
        return _mark_invalid(kube, obj, exc.problems, now)
    rejected = check_queries(plans, metrics, now, _ACCEPTED, timeout=2.0).problems
    if rejected:
        return _mark_invalid(kube, obj, rejected, now)
    store = KubeStatusStore(kube, obj, events)
    gate = _zero_trust(kube, rollout, store, metrics)
    router = router_for(kube, rollout, data_plane)
    ports = Ports(router, KubeWorkloads(kube, rollout, str(meta.get("uid") or "")),
                  metrics, _ValidStore(store, now), trust_written=data_plane.trusts_written,
                  observe_timeout=observe_timeout,
                  gates=GateJudge(KubeSecrets(kube), kube, str(meta.get("uid") or "")),
                  notifier=notifications.shared(), sinks=sinks)
    assert rollout.spec.template is not None
    decision = reconcile(rollout, plans, template_revision(rollout.spec.template), ports, now,
                         gate)
    if _starting(decision):
        router.prepare()  # e.g. the canary subset, so that the first weight is one write
    elif _settled(decision, data_plane):
        router.settle()  # e.g. the canary subset no route uses, at the proxies too
    return Reconciled(requeue_after=decision.requeue_after, decision=decision)


def _starting(decision: Decision) -> bool:
    """A canary is being brought up and takes no traffic yet."""
    return (decision.status.phase is Phase.PROGRESSING
            and decision.workloads.canary_replicas > 0
            and decision.traffic == TrafficSplit.stable_only())


def _settled(decision: Decision, data_plane: DataPlane) -> bool:
    """The rollout is over and every proxy sends all traffic to stable: what only the
    rollout needed may go (a canary subset removed earlier would leave a route without its
    cluster)."""
    status = decision.status
    return (status.phase in (Phase.HEALTHY, Phase.DEGRADED)
            and decision.traffic == TrafficSplit.stable_only()
            and (status.weights.observed == WeightPair(100, 0) or data_plane.trusts_written))


def _zero_trust(kube: Kube, rollout: Rollout, store: KubeStatusStore,
                metrics: MetricsFactory) -> Gate | None:
    """Converge the Rollout's mTLS and authorization policies (drift is corrected and named
    in an event); with ``requireMutualTLS``, the gate every step must pass."""
    security = rollout.spec.security
    if security is None:
        return None
    changed = [o for o in policies.converge(kube, rollout) if o.written]
    store.record(Event("Normal" if o.action.verb == "create" else "Warning", "PolicyConverged",
                       f"{o.action.verb.value} {o.action.kind} {o.action.name}: {o.action.reason}")
                 for o in changed)
    if not security.require_mutual_tls:
        return None
    target = Target.of(rollout, MeshKind.ISTIO)
    query = queries.ISTIO_MTLS_SHARE.render(target.variables(rollout.spec.slo.window.text))
    share = metrics(None).measure(query, 10.0)
    is_open, reason = policies.gate(kube, rollout, share)
    return Gate(is_open, reason)


class _ValidStore:
    """The status store of a valid Rollout: an InvalidSpec condition left from an earlier
    version of the spec is cleared in the same status write."""

    def __init__(self, store: KubeStatusStore, now: datetime) -> None:
        self.store, self.now = store, now

    def load(self) -> Any:
        status, intents = self.store.load()
        return valid_spec(status, self.now), intents

    def save(self, status: RolloutStatus) -> None:
        self.store.save(status)

    def record(self, events: Any) -> None:
        self.store.record(events)


def load_templates(kube: Kube, namespace: str) -> dict[str, AnalysisTemplate]:
    out = {}
    for item in kube.list(GROUP, VERSION, namespace, "analysistemplates"):
        try:
            template = load_document(item)
        except InvalidSpec:
            continue  # reported when a Rollout names it (as not found / invalid)
        if isinstance(template, AnalysisTemplate):
            out[template.name] = template
    return out


def _validated(kube: Kube, obj: Mapping[str, Any]) -> tuple[Rollout, Any]:
    rollout = PARSED.of(obj, "document", load_document)
    if not isinstance(rollout, Rollout):
        raise InvalidSpec([Problem("kind", "expected a Rollout")])
    problems: list[Problem] = []
    ref = rollout.spec.workload_ref
    if ref is None:
        problems.append(Problem("spec.workloadRef", "is required in a cluster"))
    else:
        problems += foreign_workloads(rollout.name, (
            kube.get_or_none("apps", "v1", rollout.namespace, "deployments", name)
            for name in (canary_name(ref.name), baseline_name(ref.name))))
        holder = _other_holder(kube, rollout, ref.name)
        if holder is not None:
            problems.append(held_elsewhere(rollout.name, ref.name, holder))
    if not rollout.spec.template:
        problems.append(Problem("spec.template", "is required in a cluster: the pod template "
                                "of the new version (meshctl rollout start --image sets it)"))
    backend = backend_of(rollout)
    if backend is not None:
        found = [kube.get_or_none(r.kind.group, r.kind.version, r.namespace, r.kind.plural,
                                  r.name) for r in backend.refs(rollout)]
        problems += list(backend.live_problems(rollout, found))
        problems += [held_route(backend.refs(rollout)[0], route, holder) for route, holder
                     in _route_holders(kube, rollout, backend, found[0] if found else None)]
    else:
        problems.append(Problem(f"spec.trafficRouting.{DEFAULT_BACKEND}",
                                "is required in a cluster"))
    if problems:
        raise InvalidSpec(problems)
    assert backend is not None
    plans = resolve_analysis(rollout, load_templates(kube, rollout.namespace), backend.telemetry)
    return rollout, plans


def _other_holder(kube: Kube, rollout: Rollout, stable_name: str) -> str | None:
    """Another Rollout that manages the stable Deployment (a claim left by a Rollout
    deleted without its finalizer, or since pointed at another Deployment, is taken over)."""
    holder = claimant(kube.get_or_none("apps", "v1", rollout.namespace, "deployments",
                                       stable_name))
    if holder is None or holder == rollout.name:
        return None

    def names_it(other: Rollout) -> bool:
        ref = other.spec.workload_ref
        return ref is not None and ref.name == stable_name

    return holder if _still_holds(kube, rollout.namespace, holder, names_it) else None


def _route_holders(kube: Kube, rollout: Rollout, backend: Backend,
                   obj: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(route, Rollout) for each route this Rollout manages in its route object ``obj``
    that another Rollout manages."""
    refs = backend.refs(rollout)
    if obj is None or not refs:
        return []
    ref = refs[0]

    def names_it(other: Rollout) -> bool:
        theirs = backend_of(other)
        return theirs is None or any(r.kind == ref.kind and r.name == ref.name
                                     for r in theirs.refs(other))

    return [(route, holder) for route, holder
            in held_routes(obj, rollout.name, backend.managed(rollout, obj)).items()
            if _still_holds(kube, rollout.namespace, holder, names_it)]


def _still_holds(kube: Kube, namespace: str, holder: str,
                 names_it: Callable[[Rollout], bool]) -> bool:
    """The Rollout ``holder``, named in a claim, still holds it: it exists and still names
    the object (``names_it``), or its spec does not parse (it may once it is fixed)."""
    found = kube.get_or_none(GROUP, VERSION, namespace, "rollouts", holder)
    if found is None:
        return False
    try:
        other = PARSED.of(found, "document", load_document)
    except InvalidSpec:
        return True
    return not isinstance(other, Rollout) or names_it(other)


def _mark_invalid(kube: Kube, obj: dict[str, Any], problems: tuple[Problem, ...],
                  now: datetime) -> Reconciled:
    lines = tuple(str(p) for p in problems)
    store = KubeStatusStore(kube, obj)
    try:
        status, _ = store.load()
    except InvalidSpec:
        status = RolloutStatus()
    generation = int(obj["metadata"].get("generation", 0))
    updated = dataclasses.replace(invalid_spec(status, "; ".join(lines), now),
                                  observed_generation=generation)
    if updated != status:
        store.save(updated)
        store.record([Event("Warning", "InvalidSpec", "; ".join(lines))])
    return Reconciled(problems=lines)


def finalize(kube: Kube, obj: Mapping[str, Any]) -> None:
    """Undo what meshctl did for a Rollout being deleted, then let it go."""
    meta = obj["metadata"]
    try:
        document = load_document(obj)
    except InvalidSpec:
        document = None
    rollout = document if isinstance(document, Rollout) else None
    ref = rollout.spec.workload_ref if rollout is not None else None
    holder = _other_holder(kube, rollout, ref.name) if rollout and ref else None
    if ref is not None and holder is not None:
        # routes, subsets and policies are the other Rollout's now: leave them be
        emit_event(kube, obj, Event("Normal", "Finalized",
                                    f"changed nothing: Deployment {ref.name} is managed by "
                                    f"Rollout {holder!r}"))
    elif rollout is not None:
        backend = backend_of(rollout)
        refs = backend.refs(rollout) if backend is not None else ()
        route = kube.get_or_none(refs[0].kind.group, refs[0].kind.version, rollout.namespace,
                                 refs[0].kind.plural, refs[0].name) if refs else None
        if backend is not None and not _route_holders(kube, rollout, backend, route):
            # (routes another Rollout manages, and their subsets, are that one's: left be)
            router_for(kube, rollout, StoredWeights()).restore()
        if ref is not None:
            workloads = KubeWorkloads(kube, rollout)
            workloads.delete_canary()
            workloads.release()
        if rollout.spec.security is not None:
            policies.cleanup(kube, rollout)
        kinds = " and ".join(k.kind for k in backend.kinds) if backend else "objects"
        emit_event(kube, obj, Event("Normal", "Finalized",
                                    f"gave back what meshctl changed in the {kinds}"))
    finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
    kube.merge_patch(GROUP, VERSION, meta["namespace"], "rollouts", meta["name"],
                     {"metadata": {"finalizers": finalizers or None}})
