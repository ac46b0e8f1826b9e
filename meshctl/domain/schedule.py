"""The schedule: a strategy expanded into the steps the engine walks, one index each.

Canary steps are the user's steps. Blue-green expands into fixed stages:
``preview`` (new version up, reachable by the preview route), ``prePromotionAnalysis``,
``cutover`` (0/100 in one write, after promote or ``autoPromotionSeconds``),
``postPromotionAnalysis`` (failing switches back to 100/0 at once) and ``scaleDown``
(``scaleDownDelaySeconds`` with the old version kept warm).

Each planned step carries the traffic in force once it is done, so the plan command and the
engine agree by construction.

With a fresh baseline (``spec.judge.baseline: fresh``) each weight step gives the baseline
the canary's weight from stable: setWeight 20 -> stable/canary/baseline 60/20/20; the
baseline runs at the canary's replicas.

Canary replicas needed for a weight (``replicas_for``): ceil(replicas * weight / 100), at
least one. With 4 replicas: weight 10 -> 1, weight 50 -> 2, weight 100 -> 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from meshctl.domain.release_gates import GatePoint
from meshctl.domain.spec import AnalysisRef, BlueGreenStrategy, HeaderRouteSpec, RolloutSpec
from meshctl.domain.traffic import HeaderMatch, HeaderRoute, MatchKind, TrafficSplit, Weights


class StepKind(str, Enum):
    SET_WEIGHT = "setWeight"
    PAUSE = "pause"
    ANALYSIS = "analysis"
    SET_HEADER_ROUTE = "setHeaderRoute"
    SET_MIRROR = "setMirror"
    PREVIEW = "preview"
    PRE_PROMOTION_ANALYSIS = "prePromotionAnalysis"
    CUTOVER = "cutover"
    POST_PROMOTION_ANALYSIS = "postPromotionAnalysis"
    SCALE_DOWN = "scaleDown"


ANALYSIS_KINDS = frozenset(
    {StepKind.ANALYSIS, StepKind.PRE_PROMOTION_ANALYSIS, StepKind.POST_PROMOTION_ANALYSIS}
)


@dataclass(frozen=True)
class ScheduledStep:
    index: int
    kind: StepKind
    traffic: TrafficSplit
    canary_scale: int  # percent of the service's replicas the canary needs for this step
    wait_seconds: float | None = None  # pause / scale-down delay / auto-promotion
    waits_for_promote: bool = False
    analysis: AnalysisRef | None = None

    @property
    def run_name(self) -> str:
        return f"step-{self.index}"


def header_route(spec: HeaderRouteSpec) -> HeaderRoute:
    matches = []
    for m in spec.match:
        v = m.header_value
        kind, value = (
            (MatchKind.EXACT, v.exact) if v.exact is not None
            else (MatchKind.PREFIX, v.prefix) if v.prefix is not None
            else (MatchKind.REGEX, v.regex or "")
        )
        matches.append(HeaderMatch(m.header_name, value or "", kind))
    return HeaderRoute(spec.name, tuple(matches))


def replicas_for(replicas: int, scale_percent: int) -> int:
    if scale_percent <= 0:
        return 0
    return max(1, math.ceil(replicas * scale_percent / 100))


def schedule(spec: RolloutSpec) -> tuple[ScheduledStep, ...]:
    if spec.strategy.blue_green is not None:
        return _blue_green(spec.strategy.blue_green)
    return _canary(spec)


def _canary(spec: RolloutSpec) -> tuple[ScheduledStep, ...]:
    assert spec.strategy.canary is not None
    weight, mirror = 0, 0
    routes: dict[str, HeaderRoute] = {}
    out = []
    for index, step in enumerate(spec.strategy.canary.steps):
        kind = StepKind(step.kind)
        wait, waits_for_promote = None, False
        if step.set_weight is not None:
            weight = step.set_weight
        elif step.set_mirror is not None:
            mirror = step.set_mirror.percent
        elif step.set_header_route is not None:
            route = header_route(step.set_header_route)
            if route.matches:
                routes[route.name] = route
            else:
                routes.pop(route.name, None)
        elif step.pause is not None:
            duration = step.pause.duration
            wait = duration.seconds if duration is not None else None
            waits_for_promote = duration is None
        weights = Weights.canary_at(weight, spec.fresh_baseline)
        traffic = TrafficSplit(weights, tuple(routes.values()), mirror)
        out.append(ScheduledStep(index, kind, traffic, max(weight, 1), wait, waits_for_promote,
                               step.analysis))
    return tuple(out)


def _blue_green(bg: BlueGreenStrategy) -> tuple[ScheduledStep, ...]:
    preview = tuple([header_route(bg.preview_route)]) if bg.preview_route is not None else ()
    before = TrafficSplit(Weights.all_stable(), preview)
    after = TrafficSplit(Weights.canary_at(100))
    kinds: list[tuple[StepKind, TrafficSplit, AnalysisRef | None]] = [
        (StepKind.PREVIEW, before, None)
    ]
    if bg.pre_promotion_analysis is not None:
        kinds.append((StepKind.PRE_PROMOTION_ANALYSIS, before, bg.pre_promotion_analysis))
    kinds.append((StepKind.CUTOVER, after, None))
    if bg.post_promotion_analysis is not None:
        kinds.append((StepKind.POST_PROMOTION_ANALYSIS, after, bg.post_promotion_analysis))
    kinds.append((StepKind.SCALE_DOWN, after, None))
    out = []
    for index, (kind, traffic, analysis) in enumerate(kinds):
        wait: float | None = None
        waits_for_promote = False
        if kind is StepKind.CUTOVER:
            auto = bg.auto_promotion_seconds
            wait, waits_for_promote = (float(auto), False) if auto is not None else (None, True)
        elif kind is StepKind.SCALE_DOWN:
            wait = float(bg.scale_down_delay_seconds)
        out.append(ScheduledStep(index, kind, traffic, 100, wait, waits_for_promote, analysis))
    return tuple(out)


def traffic_before(steps: tuple[ScheduledStep, ...], index: int) -> TrafficSplit:
    """Traffic in force when step ``index`` begins (all stable before the first)."""
    return steps[index - 1].traffic if index > 0 else TrafficSplit.stable_only()


def gate_points(steps: tuple[ScheduledStep, ...], index: int) -> tuple[GatePoint, ...]:
    """The release-gate points before step ``index``: beforeTraffic at the first step that
    moves any traffic, beforeIncrease at each step that raises the canary's weight.

    E.g. setWeight 20, pause, setWeight 60: step 0 has both, step 1 none, step 2
    beforeIncrease; a blue-green preview with a preview route has beforeTraffic, its
    cut-over beforeIncrease."""
    step = steps[index]
    before = traffic_before(steps, index)
    if step.traffic == before:
        return ()
    moved = any(s.traffic != traffic_before(steps, s.index) for s in steps[:index])
    points = [] if moved else [GatePoint.BEFORE_TRAFFIC]
    if step.traffic.weights.canary > before.weights.canary:
        points.append(GatePoint.BEFORE_INCREASE)
    return tuple(points)
