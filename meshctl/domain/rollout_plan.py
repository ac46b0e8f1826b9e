"""``meshctl rollout plan``: the schedule as data, with the objects each step would write.

Shape (stable, documented in the README)::

    {"rollout": {"name", "namespace"}, "strategy": "canary" | "blueGreen",
     "steps": [{"index", "kind", "weights": {"stable", "canary"}, "headerRoutes": [...],
                "mirrorPercent", "gates": [...], "objects": [...]}]}

Gates: ``readiness`` (canary replicas that must be ready), ``dataPlane`` (the weight must be
observed applied), ``pause`` (a duration, or ``promote``), ``analysis`` and
``backgroundAnalysis`` (metrics with resolved queries), ``autoPromotion``, ``delay``,
``mutualTLS``. Objects: the traffic backend's (the VirtualService and, for subset-level
routing, the DestinationRule; the HTTPRoute) exactly as they would be written once the step
is done.
"""

from __future__ import annotations

from typing import Any

from meshctl.domain.analysis import ResolvedMetric
from meshctl.domain.durations import format_duration
from meshctl.domain.engine import ResolvedAnalysis
from meshctl.domain.routers.backend import Backend, Found
from meshctl.domain.schedule import ANALYSIS_KINDS, ScheduledStep, StepKind, replicas_for, schedule
from meshctl.domain.spec import Rollout


def _metric(plan: ResolvedMetric) -> dict[str, Any]:
    out: dict[str, Any] = {"name": plan.name, "query": plan.query}
    if plan.success is not None:
        out["successCondition"] = plan.success.text
    if plan.failure is not None:
        out["failureCondition"] = plan.failure.text
    out.update({"interval": format_duration(plan.interval), "count": plan.count,
                "failureLimit": plan.failure_limit, "inconclusiveLimit": plan.inconclusive_limit})
    return out


def _gates(rollout: Rollout, step: ScheduledStep, plans: ResolvedAnalysis,
           replicas: int) -> list[dict[str, Any]]:
    gates: list[dict[str, Any]] = []
    if step.kind in (StepKind.SET_WEIGHT, StepKind.SET_HEADER_ROUTE, StepKind.SET_MIRROR,
                     StepKind.PREVIEW, StepKind.CUTOVER):
        gates.append({"type": "readiness",
                      "canaryReplicas": replicas_for(replicas, step.canary_scale)})
    if step.kind is StepKind.CUTOVER:
        gates.insert(0, {"type": "promote"} if step.waits_for_promote
                     else {"type": "autoPromotion", "seconds": int(step.wait_seconds or 0)})
    if step.kind is StepKind.PAUSE:
        gates.append({"type": "pause", "duration": "promote" if step.waits_for_promote
                      else format_duration(step.wait_seconds or 0)})
    if step.kind is StepKind.SCALE_DOWN:
        gates.append({"type": "delay", "seconds": int(step.wait_seconds or 0)})
    if step.kind in ANALYSIS_KINDS:
        templates = [t.template_name for t in step.analysis.templates] if step.analysis else []
        gates.append({"type": "analysis", "templates": templates or ["slo"],
                      "metrics": [_metric(m) for m in plans.steps.get(step.index, ())]})
    if plans.background and step.index >= plans.background_from:
        gates.append({"type": "backgroundAnalysis",
                      "metrics": [_metric(m) for m in plans.background]})
    if step.kind not in (StepKind.PAUSE, StepKind.SCALE_DOWN) and step.kind not in ANALYSIS_KINDS:
        gates.append({"type": "dataPlane"})
    security = rollout.spec.security
    if security is not None and security.require_mutual_tls:
        gates.append({"type": "mutualTLS"})
    return gates


def rollout_plan(rollout: Rollout, plans: ResolvedAnalysis, backend: Backend | None,
                 replicas: int = 1, found: Found | None = None) -> dict[str, Any]:
    """The whole plan. Objects are ``backend``'s as it would write them (none without one),
    from the live ones when given (``found``, in the order of the backend's refs), else
    from the objects it assumes (its baseline)."""
    steps = schedule(rollout.spec)
    start: Found = (found or backend.baseline(rollout)) if backend is not None else []
    out_steps = []
    for step in steps:
        objects = backend.planned(rollout, start, step.traffic) if backend is not None else []
        out_steps.append({
            "index": step.index,
            "kind": step.kind.value,
            "weights": {"stable": step.traffic.weights.stable,
                        "canary": step.traffic.weights.canary},
            "headerRoutes": [r.name for r in step.traffic.header_routes],
            "mirrorPercent": step.traffic.mirror_percent,
            "gates": _gates(rollout, step, plans, replicas),
            "objects": objects,
        })
    strategy = "blueGreen" if rollout.spec.strategy.blue_green is not None else "canary"
    return {"rollout": {"name": rollout.name, "namespace": rollout.namespace},
            "strategy": strategy, "steps": out_steps}
