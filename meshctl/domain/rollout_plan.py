"""``meshctl rollout plan``: the schedule as data, with the objects each step would write.

Shape (stable, documented in the README)::

    {"rollout": {"name", "namespace"}, "strategy": "canary" | "blueGreen",
     "steps": [{"index", "kind", "weights": {"stable", "canary"[, "baseline"]}, "headerRoutes": [...],
                "mirrorPercent", "gates": [...], "objects": [...]}]}

Gates: ``readiness`` (canary replicas that must be ready, and a fresh baseline's),
``dataPlane`` (the weight must be observed applied), ``pause`` (a duration, or ``promote``), ``analysis`` and
``backgroundAnalysis`` (metrics with resolved queries), ``autoPromotion``, ``delay``,
``mutualTLS``, and release gates (``spec.gates``: ``{"type": "release", "name", "kind",
"at"}`` before the steps they hold). With release gates, ``releaseGates`` lists each one
with where it stands: the steps it holds, and ``promotion`` / ``afterPromotion`` /
``rollback`` for the points outside the steps. Objects: the traffic backend's (the
VirtualService and, for subset-level routing, the DestinationRule; the HTTPRoute) exactly
as they would be written once the step is done.
"""

from __future__ import annotations

from typing import Any

from meshctl.domain.analysis import ResolvedMetric
from meshctl.domain.durations import format_duration
from meshctl.domain.engine import ResolvedAnalysis
from meshctl.domain.judge import ResolvedJudge
from meshctl.domain.release_gates import GatePoint, GateSpec, gates_at
from meshctl.domain.routers.backend import Backend, Found
from meshctl.domain.schedule import (
    ANALYSIS_KINDS,
    ScheduledStep,
    StepKind,
    gate_points,
    replicas_for,
    schedule,
)
from meshctl.domain.spec import Rollout
from meshctl.domain.traffic import Weights


def _metric(plan: ResolvedMetric) -> dict[str, Any]:
    out: dict[str, Any] = {"name": plan.name, "query": plan.query}
    if plan.success is not None:
        out["successCondition"] = plan.success.text
    if plan.failure is not None:
        out["failureCondition"] = plan.failure.text
    out.update({"interval": format_duration(plan.interval), "count": plan.count,
                "failureLimit": plan.failure_limit, "inconclusiveLimit": plan.inconclusive_limit})
    if plan.judge is not None:
        out["judge"] = _judge(plan.judge)
    return out


def _judge(judge: ResolvedJudge) -> dict[str, Any]:
    s = judge.settings
    return {"baseline": judge.baseline, "lookback": format_duration(judge.lookback),
            "window": format_duration(judge.window), "step": format_duration(judge.step),
            "minSamples": s.min_samples, "tolerance": f"{s.tolerance * 100:g}%",
            "significance": s.significance, "passScore": s.pass_score,
            "marginalScore": s.marginal_score,
            "metrics": [{"name": m.name, "direction": m.direction.value,
                         "canaryQuery": m.canary_query, "baselineQuery": m.baseline_query}
                        for m in judge.metrics]}


def _release(rollout: Rollout, steps: tuple[ScheduledStep, ...], index: int
             ) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for point in gate_points(steps, index):
        for g in gates_at(rollout.spec.gates, point):
            out.setdefault(g.name, {"type": "release", "name": g.name, "kind": g.kind,
                                    "at": point.value})
    return list(out.values())


_OUTSIDE_STEPS = {GatePoint.BEFORE_PROMOTION: "promotion",
                  GatePoint.AFTER_PROMOTION: "afterPromotion",
                  GatePoint.ON_ROLLBACK: "rollback"}


def _release_gates(rollout: Rollout, steps: tuple[ScheduledStep, ...]) -> list[dict[str, Any]]:
    """Each release gate and where it stands: the steps it holds, and the points after them."""
    out = []
    for gate in rollout.spec.gates:
        held = [s.index for s in steps
                if any(p in gate.at for p in gate_points(steps, s.index))]
        where: list[int | str] = [*held, *(name for point, name in _OUTSIDE_STEPS.items()
                                          if point in gate.at)]
        out.append({"name": gate.name, "kind": gate.kind, "at": [p.value for p in gate.at],
                    "holds": where, **_detail(gate)})
    return out


def _detail(gate: GateSpec) -> dict[str, Any]:
    limit = gate.deadline_seconds
    out: dict[str, Any] = {"deadline": format_duration(limit)} if gate.window is None and limit else {}
    if gate.window is not None:
        out["timeZone"] = gate.window.time_zone
        out["windows"] = [f"{','.join(d.value for d in w.days) or 'every day'} "
                          f"{w.start}-{w.end}" for w in gate.window.windows]
        out["freezes"] = [f"{f.start}..{f.end}" for f in gate.window.freezes]
    elif gate.webhook is not None:
        out["url"] = gate.webhook.url
    elif gate.approval is not None:
        out["approvals"] = gate.approval.count
        out["fourEyes"] = gate.approval.forbid_starter
    return out


def _gates(rollout: Rollout, step: ScheduledStep, plans: ResolvedAnalysis,
           replicas: int, release: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    gates: list[dict[str, Any]] = list(release or [])
    if step.kind in (StepKind.SET_WEIGHT, StepKind.SET_HEADER_ROUTE, StepKind.SET_MIRROR,
                     StepKind.PREVIEW, StepKind.CUTOVER):
        needed = replicas_for(replicas, step.canary_scale)
        ready = {"type": "readiness", "canaryReplicas": needed}
        gates.append({**ready, "baselineReplicas": needed} if step.traffic.weights.baseline
                     else ready)
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


def _weights(rollout: Rollout, weights: Weights) -> dict[str, int]:
    """stable and canary; and the baseline's with a fresh baseline (every step)."""
    found = {"stable": weights.stable, "canary": weights.canary}
    return {**found, "baseline": weights.baseline} if rollout.spec.fresh_baseline else found


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
            "weights": _weights(rollout, step.traffic.weights),
            "headerRoutes": [r.name for r in step.traffic.header_routes],
            "mirrorPercent": step.traffic.mirror_percent,
            "gates": _gates(rollout, step, plans, replicas,
                            _release(rollout, steps, step.index)),
            "objects": objects,
        })
    strategy = "blueGreen" if rollout.spec.strategy.blue_green is not None else "canary"
    out: dict[str, Any] = {"rollout": {"name": rollout.name, "namespace": rollout.namespace},
                           "strategy": strategy, "steps": out_steps}
    if rollout.spec.gates:
        out["releaseGates"] = _release_gates(rollout, steps)
    return out
