"""Rollouts as a person or a pipeline sees them: :class:`RolloutView`, the same from the
API server, from the gRPC API and from a local run's files; and reading them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshctl.domain.intents import RECORDED
from meshctl.domain.problems import InvalidSpec
from meshctl.domain.release_gates import GateVerdict
from meshctl.domain.schedule import schedule
from meshctl.domain.spec import GROUP, VERSION, Rollout
from meshctl.domain.status import RolloutStatus
from meshctl.domain.validation import load_document
from meshctl.ops.connect import Objects
from meshctl.ops.failures import translated

PLURAL = "rollouts"


@dataclass(frozen=True)
class WeightsView:
    stable: int
    canary: int
    baseline: int = 0  # a fresh baseline's

    def to_json(self) -> dict[str, int]:
        found = {"stable": self.stable, "canary": self.canary}
        return {**found, "baseline": self.baseline} if self.baseline else found

    def described(self) -> str:
        """``90/10``, or ``60/20/20`` with a fresh baseline (stable/canary/baseline)."""
        parts = (self.stable, self.canary, *((self.baseline,) if self.baseline else ()))
        return "/".join(map(str, parts))


@dataclass(frozen=True)
class MeasurementView:
    """The newest measurement of one metric (``value`` None: no data or an error)."""

    metric: str
    run: str
    value: float | None
    outcome: str
    at: str


@dataclass(frozen=True)
class JudgeMetricView:
    """One metric of the comparative judge: its verdict, p-value and effect size."""

    name: str
    verdict: str  # Pass, Fail or NoData
    direction: str
    p_value: float | None = None
    effect_size: float | None = None  # relative change of the mean (0.2 = +20%)
    canary_mean: float | None = None
    baseline_mean: float | None = None
    canary_samples: int = 0
    baseline_samples: int = 0


@dataclass(frozen=True)
class JudgementView:
    """The newest judgement of the comparative judge."""

    run: str
    at: str
    verdict: str  # Pass, Marginal, Fail
    score: float | None
    baseline: str  # what the canary was compared with: stable (or baseline)
    metrics: tuple[JudgeMetricView, ...] = ()
    source: str = "prometheus"  # where the samples came from: prometheus or envoy

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source,
                "run": self.run, "at": self.at, "verdict": self.verdict, "score": self.score,
                "baseline": self.baseline,
                "metrics": [{"name": m.name, "verdict": m.verdict, "direction": m.direction,
                             "pValue": m.p_value, "effectSize": m.effect_size,
                             "canaryMean": m.canary_mean, "baselineMean": m.baseline_mean,
                             "canarySamples": m.canary_samples,
                             "baselineSamples": m.baseline_samples} for m in self.metrics]}


@dataclass(frozen=True)
class ConditionView:
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: str


@dataclass(frozen=True)
class RolloutView:
    """One rollout as a person or a pipeline needs it; the same from the API server and
    from the gRPC API. ``step`` counts from 0; at ``total_steps`` every step is done."""

    name: str
    namespace: str
    phase: str
    step: int = 0
    total_steps: int = 0
    weights: WeightsView = WeightsView(100, 0)
    observed_weights: WeightsView | None = None
    not_observed: str = ""  # why observed_weights is None ("stored, not observed: ...")
    measurements: tuple[MeasurementView, ...] = ()
    message: str = ""
    conditions: tuple[ConditionView, ...] = ()
    abort_reason: str = ""
    pause_reason: str = ""
    revision: str = ""
    stable_revision: str = ""
    image: str = ""
    paused: bool = False
    generation: int = 0
    observed_generation: int = 0
    pending_intents: tuple[str, ...] = ()
    judgement: JudgementView | None = None
    gates_waiting: tuple[str, ...] = ()  # release gates not decided yet: "name (kind)"

    @property
    def invalid(self) -> bool:
        return any(c.type == "InvalidSpec" and c.status == "True" for c in self.conditions)

    @property
    def current(self) -> bool:
        """The status describes the latest spec and every intent recorded (the controller
        has seen them)."""
        return self.observed_generation >= self.generation and not self.pending_intents

    def to_json(self) -> dict[str, Any]:
        observed = self.observed_weights
        return {
            "name": self.name, "namespace": self.namespace, "phase": self.phase,
            "step": self.step, "totalSteps": self.total_steps,
            "weights": self.weights.to_json(),
            "observedWeights": None if observed is None else observed.to_json(),
            "notObserved": self.not_observed,
            "measurements": [{"metric": m.metric, "run": m.run, "value": m.value,
                              "outcome": m.outcome, "at": m.at} for m in self.measurements],
            "message": self.message,
            "conditions": [{"type": c.type, "status": c.status, "reason": c.reason,
                            "message": c.message, "lastTransitionTime": c.last_transition_time}
                           for c in self.conditions],
            "abortReason": self.abort_reason, "pauseReason": self.pause_reason,
            "revision": self.revision, "stableRevision": self.stable_revision,
            "image": self.image, "paused": self.paused, "generation": self.generation,
            "observedGeneration": self.observed_generation,
            "pendingIntents": list(self.pending_intents),
            "judgement": self.judgement.to_json() if self.judgement is not None else None,
            "gatesWaiting": list(self.gates_waiting),
        }


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z") if value is not None else ""


def _measurements(status: RolloutStatus) -> tuple[MeasurementView, ...]:
    latest: dict[str, MeasurementView] = {}
    for run in status.analysis:
        for metric in run.metrics:
            if not metric.measurements:
                continue
            m = metric.measurements[-1]
            view = MeasurementView(metric.name, run.name, m.value, m.outcome.value, _iso(m.at))
            if metric.name not in latest or latest[metric.name].at < view.at:
                latest[metric.name] = view
    return tuple(latest[name] for name in sorted(latest))


def _judgement(status: RolloutStatus) -> JudgementView | None:
    """The newest judgement recorded in any analysis run."""
    found = [(m.at, run.name, m.judgement) for run in status.analysis for metric in run.metrics
             for m in metric.measurements if m.judgement is not None]
    if not found:
        return None
    at, run, j = max(found, key=lambda item: item[0])
    return JudgementView(run, _iso(at), j.verdict.value, j.score, j.baseline, tuple(
        JudgeMetricView(m.name, m.verdict.value, m.direction.value, m.p_value, m.effect_size,
                        m.canary_mean, m.baseline_mean, m.canary_samples, m.baseline_samples)
        for m in j.metrics), j.source)


def first_image(template: Any) -> str:
    containers = ((template or {}).get("spec") or {}).get("containers") or [{}]
    return str(containers[0].get("image") or "")


def _total_steps(obj: Mapping[str, Any]) -> int:
    try:
        rollout = load_document(obj)
    except InvalidSpec:
        return 0
    return len(schedule(rollout.spec)) if isinstance(rollout, Rollout) else 0


def view_of(obj: Mapping[str, Any]) -> RolloutView:
    """The view of a Rollout object as the API server serves it."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    try:
        status = RolloutStatus.from_json(obj.get("status"))
        message = status.message
    except InvalidSpec as exc:  # a damaged status is shown, not fatal
        status, message = RolloutStatus(), f"status unreadable: {exc}"
    observed = status.weights.observed
    return RolloutView(
        name=str(meta.get("name", "")), namespace=str(meta.get("namespace", "")),
        phase=status.phase.value, step=status.current_step, total_steps=_total_steps(obj),
        weights=WeightsView(status.weights.stable, status.weights.canary,
                            status.weights.baseline or 0),
        observed_weights=None if observed is None else WeightsView(
            observed.stable, observed.canary, observed.baseline or 0),
        not_observed=status.weights.not_observed,
        measurements=_measurements(status), message=message,
        conditions=tuple(ConditionView(c.type, c.status, c.reason, c.message,
                                       _iso(c.last_transition_time))
                         for c in status.conditions),
        abort_reason=status.abort.reason if status.abort else "",
        pause_reason=status.pause_reason or "", revision=status.current_revision or "",
        stable_revision=status.stable_revision or "", image=first_image(spec.get("template")),
        paused=bool(spec.get("paused", False)), generation=int(meta.get("generation", 0)),
        observed_generation=status.observed_generation,
        pending_intents=_pending_intents(meta, status), judgement=_judgement(status),
        gates_waiting=tuple(f"{g.name} ({g.kind})" if g.kind else g.name for g in status.gates
                            if g.verdict is GateVerdict.WAITING),
    )


def _pending_intents(meta: Mapping[str, Any], status: RolloutStatus) -> tuple[str, ...]:
    """Intents recorded on the Rollout that the controller has not acted on yet."""
    annotations = meta.get("annotations") or {}
    return tuple(action.value for action in RECORDED
                 if annotations.get(action.annotation)
                 and status.handled(action) != annotations[action.annotation])


def get(kube: Objects, namespace: str, name: str) -> RolloutView:
    with translated():
        return view_of(kube.get(GROUP, VERSION, namespace, PLURAL, name))


def list_rollouts(kube: Objects, namespace: str | None) -> list[RolloutView]:
    """The rollouts of ``namespace`` (None: of every namespace), by namespace and name."""
    with translated():
        if namespace is None:
            items, _ = kube.list_all(GROUP, VERSION, PLURAL)
        else:
            items = kube.list(GROUP, VERSION, namespace, PLURAL)
    views = [remembered_view_of(item) for item in items]
    return sorted(views, key=lambda v: (v.namespace, v.name))


_VIEWS: dict[tuple[str, str], RolloutView] = {}
_VIEWS_KEPT = 20_000  # then forgotten all at once: a dashboard's next poll fills it again


def remembered_view_of(obj: Mapping[str, Any]) -> RolloutView:
    """:func:`view_of`, remembered by the object's uid and resourceVersion: an object at one
    resourceVersion never changes, and a dashboard listing 1,000 rollouts every second
    would otherwise parse every spec and status again each time."""
    meta = obj.get("metadata") or {}
    key = (str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""))
    if not all(key):
        return view_of(obj)
    view = _VIEWS.get(key)
    if view is None:
        if len(_VIEWS) >= _VIEWS_KEPT:
            _VIEWS.clear()
        view = _VIEWS[key] = view_of(obj)
    return view
