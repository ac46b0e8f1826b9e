"""The engine: ``decide(spec, status, observation, now) -> Decision``, a pure function.

One pass, in order:

1. record what the data plane shows and the generation seen;
2. a new version (template revision) starts a rollout, or a revert goes back to stable;
3. user intents: abort, retry, promote (--full), resume; ``spec.paused``;
4. the phase's handler: walk the current step, run analysis, promote, abort; a pause for
   an unavailable metrics source lifts itself once the source answers again;
5. guard the traffic: never weight on a version with no ready endpoints.

Rules that hold in every decision (each has a test): weights move only when the canary has
enough ready replicas for the new weight; abort sends 100% to stable first in one write,
with header and mirror routes removed, and the canary is scaled down only after the stable
split is observed; inconclusive analysis pauses for a human, unless only the metrics
source was missing (then the pause lasts until it answers); all state is in the status, so
a restart continues exactly; a second pass on the same world changes nothing. A fresh
baseline (``spec.judge.baseline: fresh``) has the canary's replicas, gets weight only once
it has them ready, and keeps its replicas while it has weight written or observed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from meshctl.domain import analysis
from meshctl.domain.analysis import MeasurementRequest, ResolvedMetric, TakenMeasurement
from meshctl.domain.intents import Action, Intents
from meshctl.domain.measurements import NoData
from meshctl.domain.phases import (
    ANALYSIS_UNAVAILABLE,
    GATE_DEADLINE,
    Phase,
    allows,
    check_transition,
)
from meshctl.domain.release_gates import (
    RECORDING_POINTS,
    GatePoint,
    GateReport,
    GateRequest,
    GateSpec,
    GateStatus,
    GateVerdict,
    deadline_text,
    describe_opening,
    gate_key,
    gates_at,
    overdue,
    window_state,
)
from meshctl.domain.schedule import (
    ANALYSIS_KINDS,
    ScheduledStep,
    StepKind,
    gate_points,
    replicas_for,
    schedule,
    traffic_before,
)
from meshctl.domain.spec import RolloutSpec
from meshctl.domain.status import (
    AbortStatus,
    AnalysisRunStatus,
    RolloutStatus,
    StatusCondition,
    Verdict,
    WeightPair,
)
from meshctl.domain.traffic import TrafficSplit, Weights

BACKGROUND_RUN = "background"
VERIFY_REQUEUE = 1.0
GATE_REQUEUE = 5.0
# Waiting for replicas to be ready: asked again this often, as a safety net only. The
# controller's watch wakes the pass the moment a Deployment becomes ready, and a local run
# passes at least once a second; at 2 s, 50 canaries waiting for their Pods cost 25 passes
# a second that found nothing new, in line before the passes that had news.
READY_REQUEUE = 10.0


@dataclass(frozen=True)
class WorkloadState:
    """A version's workload as observed: desired replicas, ready replicas, its revision."""

    replicas: int = 0
    ready: int = 0
    revision: str | None = None
    # the stable Deployment, labelled at the Rollout's own revision, whose pod template was
    # changed outside meshctl since: the first field that differs ("" when none, or unknown)
    edited: str = ""


@dataclass(frozen=True)
class ResolvedAnalysis:
    """The resolved metrics of each analysis step (by index), and of background analysis."""

    steps: Mapping[int, tuple[ResolvedMetric, ...]] = field(default_factory=dict)
    background: tuple[ResolvedMetric, ...] = ()
    background_from: int = 0


@dataclass(frozen=True)
class Gate:
    """An outside condition every step must meet before it advances (the mTLS gate)."""

    open: bool
    reason: str


@dataclass(frozen=True)
class Observation:
    revision: str
    stable: WorkloadState
    canary: WorkloadState = WorkloadState()
    baseline: WorkloadState = WorkloadState()  # the fresh baseline (spec.judge.baseline)
    written: TrafficSplit | None = None
    observed: TrafficSplit | None = None  # at the data plane; None: not known
    unobserved: str = ""  # why ``observed`` is None, one sentence ("" when not known why)
    # The operator chose to run without a data plane to read: steps proceed on ``written``.
    trust_written: bool = False
    # After this many seconds in a step without its weights observed, say the step is held.
    observe_timeout: float | None = None
    intents: Intents = Intents()
    measurements: tuple[TakenMeasurement, ...] = ()
    analysis: ResolvedAnalysis = ResolvedAnalysis()
    generation: int = 0
    gate: Gate | None = None  # security.requireMutualTLS: None when it does not apply
    # Release gates the shell judged this pass (webhook, job, approval), by record key.
    gate_reports: Mapping[str, GateReport] = field(default_factory=dict)


@dataclass(frozen=True)
class DesiredWorkloads:
    """The versions' workloads as the pass wants them. A fresh baseline runs the stable
    revision ``baseline_revision`` (the one stable ran when the rollout began, even while
    promotion gives the stable Deployment the new one) at ``baseline_replicas``; 0 means
    it should not exist."""

    stable_revision: str
    canary_revision: str | None
    canary_replicas: int
    baseline_revision: str | None = None
    baseline_replicas: int = 0


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: RolloutStatus
    traffic: TrafficSplit
    workloads: DesiredWorkloads
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None


class _Pass:
    """The working state of one decide() call; discarded when it returns."""

    def __init__(self, spec: RolloutSpec, status: RolloutStatus, obs: Observation, now: datetime):
        self.spec, self.obs, self.now = spec, obs, now
        self.steps = schedule(spec)
        self.status = status
        self.events: list[Event] = []
        self.requeues: list[float] = []
        self.traffic: TrafficSplit | None = None
        self.canary_replicas: int | None = None
        self.gate_held = False  # a release gate holds the current step

    # -- small helpers ------------------------------------------------------------------

    def update(self, **changes: object) -> None:
        self.status = dataclasses.replace(self.status, **changes)  # type: ignore[arg-type]

    def move(self, phase: Phase, reason: str, message: str, warning: bool = False) -> None:
        check_transition(self.status.phase, phase)
        if phase != self.status.phase or message != self.status.message:
            self.events.append(Event("Warning" if warning else "Normal", reason, message))
        self.update(phase=phase, message=message)

    def requeue(self, seconds: float) -> None:
        self.requeues.append(max(0.0, seconds))

    def elapsed(self, since: datetime | None) -> float:
        return (self.now - since).total_seconds() if since is not None else 0.0

    @property
    def step(self) -> ScheduledStep | None:
        i = self.status.current_step
        return self.steps[i] if 0 <= i < len(self.steps) else None

    def held_traffic(self) -> TrafficSplit:
        """The traffic the status says is in force: that of the last completed step.

        Derived from the schedule, not read back from the world, so a weight someone else
        wrote is corrected on the next pass."""
        return traffic_before(self.steps, min(self.status.current_step, len(self.steps)))

    def needed_canary(self, scale: int) -> int:
        return replicas_for(self.obs.stable.replicas or 1, scale)

    @property
    def canary_ready(self) -> int:
        """The canary's ready replicas of the revision rolling out (pods of an earlier one,
        left from a canary that was aborted, are not ready for it)."""
        canary = self.obs.canary
        return canary.ready if canary.revision == self.status.current_revision else 0

    @property
    def baseline_ready(self) -> int:
        """The fresh baseline's ready replicas of the stable revision."""
        baseline = self.obs.baseline
        return baseline.ready if baseline.revision == self.status.stable_revision else 0

    def canary_ready_for(self, scale: int) -> bool:
        return self.canary_ready >= self.needed_canary(scale)

    def baseline_ready_for(self, scale: int) -> bool:
        """The fresh baseline runs the stable revision with the canary's replicas."""
        return self.baseline_ready >= self.needed_canary(scale)

    def observed(self, traffic: TrafficSplit) -> bool:
        """The data plane shows ``traffic`` (or, trusting what is written, nothing can be
        read there) and nothing else is written: an observation older than the last write
        (99/1 written, 100/0 still shown) does not count."""
        obs = self.obs
        if obs.written != traffic:
            return False
        if obs.observed is None and obs.trust_written:
            return True
        return obs.observed == traffic

    def not_observed(self, what: str) -> str:
        """``what`` (a waiting message), with the reason the data plane is not there yet."""
        return f"{what}: {self.obs.unobserved}" if self.obs.unobserved else what

    # -- rollouts begin and end ---------------------------------------------------------

    def start_rollout(self, reason: str) -> None:
        self.move(Phase.PROGRESSING, "RolloutStarted",
                  f"{reason}: rolling out revision {self.obs.revision}")
        self.update(current_revision=self.obs.revision, current_step=0,
                    step_started_at=self.now, analysis=(), abort=None, pause_reason=None,
                    promoted=False, gates=())

    def begin_abort(self, reason: str, message: str) -> None:
        self.move(Phase.ABORTING, reason, f"aborting: {message}", warning=True)
        self.update(abort=AbortStatus(reason=reason, at=self.now, message=message),
                    pause_reason=None)

    def advance(self) -> bool:
        """Move to the next step (or promotion); False while the gate holds the step."""
        gate = self.obs.gate
        if gate is not None and not gate.open:
            self.update(message=f"step {self.status.current_step} held by the mutual TLS "
                        f"gate: {gate.reason}")
            self.requeue(GATE_REQUEUE)
            return False
        nxt = self.status.current_step + 1
        self.update(current_step=nxt, step_started_at=self.now, promoted=False)
        self.requeue(0)
        if nxt >= len(self.steps) and _promotion_points(self):
            self.update(message=f"all {len(self.steps)} steps done; release gates before "
                        "promotion")
        elif nxt >= len(self.steps):
            self.move(Phase.PROMOTING, "Promoting",
                      f"all {len(self.steps)} steps done; promoting revision "
                      f"{self.status.current_revision} to stable")
        else:
            step = self.steps[nxt]
            self.move(Phase.PROGRESSING, "StepStarted", f"step {nxt} ({step.kind.value}) started")
            if step.kind is StepKind.PAUSE and step.waits_for_promote:
                # nothing to wait for first: the step is saved once, already paused
                self.pause_until_promote(step)
        return True

    def pause(self, reason: str, message: str) -> None:
        self.move(Phase.PAUSED, reason, message)
        self.update(pause_reason=reason)

    def pause_until_promote(self, step: ScheduledStep) -> None:
        self.traffic = self.held_traffic()
        self.pause("PausedAtStep", f"step {step.index}: paused until promote")

    def pause_inconclusive(self, run: AnalysisRunStatus, plans: tuple[ResolvedMetric, ...],
                           label: str, human: str) -> None:
        """Inconclusive analysis pauses. No data from a metrics source that answered waits
        for a person (``human`` says what they may do); when the source itself did not
        answer, the pause lifts itself once it does (:func:`_unavailable_pause`)."""
        if analysis.unavailable_only(run):
            self.pause(ANALYSIS_UNAVAILABLE, f"{label}: the metrics source does not answer; "
                       f"paused until it does (or promote to skip): {run.reason}")
            wait = analysis.seconds_until_probe(run, plans, self.now)
            if wait is not None:
                self.requeue(wait)
        else:
            self.pause("InconclusiveAnalysis", f"{label} inconclusive, needs a human "
                       f"({human}): {run.reason}")

    def restart_runs(self, names: set[str]) -> None:
        """Drop the runs ``names`` (they start again from scratch) and what this pass
        measured for them: a run restarted now takes its first measurement when due."""
        self.update(analysis=tuple(r for r in self.status.analysis if r.name not in names))
        kept = tuple(t for t in self.obs.measurements if t.run not in names)
        self.obs = dataclasses.replace(self.obs, measurements=kept)

    # -- analysis -----------------------------------------------------------------------

    def run_analysis(self, name: str, metrics: tuple[ResolvedMetric, ...]) -> AnalysisRunStatus:
        """Start the run if needed, record measurements, return its state."""
        run = self.status.run(name)
        if run is None or run.revision != self.status.current_revision:
            run = analysis.start_run(name, self.status.current_step,
                                     self.status.current_revision or "", metrics, self.now)
        before = run
        run = analysis.apply_measurements(run, metrics, self.obs.measurements)
        if run != before or self.status.run(name) != run:
            others = tuple(r for r in self.status.analysis if r.name != name)
            self.update(analysis=(*others, run))
        wait = analysis.seconds_until_due(run, metrics, self.now)
        if wait is not None:
            self.requeue(wait)
        return run

    def background_analysis(self) -> bool:
        """Runs background analysis where it applies; True when it aborted or paused."""
        resolved = self.obs.analysis
        if not resolved.background or self.status.current_step < resolved.background_from:
            return False
        run = self.run_analysis(BACKGROUND_RUN, resolved.background)
        if run.verdict is Verdict.FAILING:
            self.begin_abort("AnalysisFailed", f"background analysis: {run.reason}")
            return True
        if run.verdict is Verdict.INCONCLUSIVE and self.status.phase is Phase.PROGRESSING:
            self.pause_inconclusive(run, resolved.background, "background analysis",
                                    "promote or resume")
            return True
        return False


def measurements_due(spec: RolloutSpec, status: RolloutStatus, obs: Observation,
                     now: datetime) -> list[MeasurementRequest]:
    """The queries the shell should run before calling decide(), for the runs in status."""
    if status.phase not in (Phase.PROGRESSING, Phase.PAUSED) or _checks_end(status, obs):
        return []
    out: list[MeasurementRequest] = []
    for run, plans in _live_runs(status, obs):
        out += analysis.due(run, plans, now)
        if status.pause_reason == ANALYSIS_UNAVAILABLE:
            out += analysis.probes_due(run, plans, now)
    return out


def _checks_end(status: RolloutStatus, obs: Observation) -> bool:
    """This pass ends the current revision's checks (analysis, outside release gates)
    whatever they would say: the template changed (a new revision, or back to stable), or
    someone asked to abort. Checking first would only hold back the traffic write, by up to
    each query's or webhook's timeout when Prometheus or the gate is slow or down (often
    the very reason for the abort)."""
    if obs.revision != status.current_revision or _withdrawn(status, obs):
        return True
    abort = obs.intents.get(Action.ABORT)
    return (abort is not None and status.handled(Action.ABORT) != abort
            and allows(Action.ABORT, status.phase))


def _live_runs(status: RolloutStatus, obs: Observation
               ) -> list[tuple[AnalysisRunStatus, tuple[ResolvedMetric, ...]]]:
    """The analysis runs of the current revision that still matter, with their plans: the
    background run, and the current step's."""
    out = []
    for run in status.analysis:
        if run.revision != status.current_revision:
            continue
        if run.name == BACKGROUND_RUN:
            out.append((run, obs.analysis.background))
        elif run.step == status.current_step and run.step in obs.analysis.steps:
            out.append((run, obs.analysis.steps[run.step]))
    return out


def decide(spec: RolloutSpec, status: RolloutStatus, obs: Observation, now: datetime) -> Decision:
    p = _Pass(spec, status, obs, now)
    withdrawn = _withdrawn(status, obs)
    _record_observation(p)
    if p.status.phase is Phase.PENDING:
        _first_sight(p)
    elif obs.revision != p.status.current_revision:
        _new_revision(p)
    _intents(p)
    _promotion_underway(p)
    if withdrawn:
        _rollback_underway(p)
    _HANDLERS[p.status.phase](p)
    return _finish(p)


def _withdrawn(status: RolloutStatus, obs: Observation) -> bool:
    """The written routing is all stable (no canary or baseline weight, header route or
    mirror) while the status, Progressing or Paused at the same revision, says meshctl
    last wrote weight to the canary (or a fresh baseline). Only an abort writes that; see
    :func:`_rollback_underway`.

    A step with header routes or a mirror but no weight does not count: a local mesh
    started again without its saved split (``ops.state.ServedSplit``) serves the status's
    weights only (the status keeps header routes by name, not their matches), and that
    must not read as an abort."""
    if (status.phase not in (Phase.PROGRESSING, Phase.PAUSED)
            or obs.revision != status.current_revision
            or obs.written != TrafficSplit.stable_only()):
        return False
    return bool(status.weights.canary or status.weights.baseline)


def _rollback_underway(p: _Pass) -> None:
    """An abort writes 100% stable first and saves its status after. Finding that split
    written while the status still holds canary traffic means a pass began rolling back and
    died (or failed to save) before its status was saved, or another writer took the
    canary's traffic away: abort on, never send traffic back to the canary. The first
    reason is lost with the unsaved status; the message says so.

    E.g. status step 1 (analysis at 80/20), 100/0 written: the pass aborts and keeps 100/0
    (it would otherwise rewrite 80/20 as drift, and the analysis that failed in the lost
    pass need not fail again at once)."""
    if p.status.phase not in (Phase.PROGRESSING, Phase.PAUSED):
        return  # the user's abort or a promotion already decided this pass
    w = p.status.weights
    p.begin_abort("TrafficWithdrawn", f"the data plane's routing is written 100% stable while "
                  f"meshctl last wrote {_named(Weights(w.stable, w.canary, w.baseline or 0))}: "
                  "an abort whose status was not saved, or another writer took the canary's "
                  "traffic away; meshctl does not send it back (retry to start again)")


def _promotion_underway(p: _Pass) -> None:
    """Only promotion gives the stable Deployment the new revision. Seeing it there while
    the status is still Progressing or Paused means a pass began promoting and died before
    its status was saved: promote on, never send the last step's weights back to the canary.

    E.g. status step 4 (80% canary), stable Deployment at the new revision, 100/0 written:
    the pass moves to Promoting and keeps 100/0 (it would otherwise rewrite 20/80)."""
    rev = p.status.current_revision
    if (p.status.phase in (Phase.PROGRESSING, Phase.PAUSED) and rev is not None
            and rev != p.status.stable_revision and p.obs.stable.revision == rev):
        p.update(current_step=len(p.steps), step_started_at=p.now, pause_reason=None)
        p.move(Phase.PROMOTING, "Promoting", f"promoting revision {rev} (the stable "
               "Deployment already runs it: an earlier pass began the promotion)")


def _record_observation(p: _Pass) -> None:
    observed = p.obs.observed
    pair = WeightPair.of(observed.weights) if observed is not None else None
    note = p.obs.unobserved if observed is None else ""
    if pair != p.status.weights.observed or note != p.status.weights.not_observed:
        p.update(weights=dataclasses.replace(p.status.weights, observed=pair,
                                             not_observed=note))
    if p.status.observed_generation != p.obs.generation:
        p.update(observed_generation=p.obs.generation)


def _first_sight(p: _Pass) -> None:
    stable_rev = p.obs.stable.revision
    if stable_rev is None or stable_rev == p.obs.revision:
        p.update(stable_revision=p.obs.revision, current_revision=p.obs.revision)
        p.move(Phase.HEALTHY, "Adopted", f"revision {p.obs.revision} is stable")
        return
    p.update(stable_revision=stable_rev)
    p.start_rollout("new version")


def _new_revision(p: _Pass) -> None:
    if p.obs.revision == p.status.stable_revision:
        if p.status.phase is Phase.DEGRADED:
            p.update(current_revision=p.obs.revision, abort=None)
            p.move(Phase.HEALTHY, "RolledBack", f"template is back at stable revision "
                   f"{p.obs.revision}")
        elif p.status.phase is not Phase.HEALTHY:
            p.begin_abort("Reverted", f"template reverted to stable revision {p.obs.revision}")
            p.update(current_revision=p.obs.revision)
        return
    if p.status.phase is Phase.PROMOTING and p.obs.stable.revision == p.status.current_revision:
        p.update(stable_revision=p.status.current_revision)
    p.start_rollout("template changed")


def _intents(p: _Pass) -> None:
    phase = p.status.phase

    def pending(action: Action) -> bool:
        """A new id for ``action`` (recorded as handled now, acted on or not)."""
        intent_id = p.obs.intents.get(action)
        if intent_id is None or p.status.handled(action) == intent_id:
            return False
        p.status = p.status.with_handled(action, intent_id)
        return True

    def acts_on(action: Action) -> bool:
        return pending(action) and allows(action, phase)

    if acts_on(Action.ABORT):
        p.begin_abort("UserAbort", "aborted by user")
        return
    if acts_on(Action.RETRY) and p.status.abort:
        if p.obs.revision != p.status.stable_revision:
            p.start_rollout("retry")
        return
    if acts_on(Action.PROMOTE_FULL):
        p.update(current_step=len(p.steps), step_started_at=p.now, pause_reason=None)
        if _promotion_points(p):  # promote never skips a release gate
            _restart_waiting_gates(p)
            p.move(Phase.PROGRESSING, "PromotedFull", "promote --full: skipping remaining "
                   "steps; the release gates before promotion still apply")
            return
        p.move(Phase.PROMOTING, "PromotedFull", "promote --full: skipping remaining steps")
        return
    if acts_on(Action.PROMOTE):
        _promote_step(p)
    if acts_on(Action.RESUME):
        _resume(p)
    _user_pause(p)


def _promote_step(p: _Pass) -> None:
    """Promote releases the current step's gate: a pause ends, an analysis is skipped,
    a blue-green cut-over proceeds."""
    step = p.step
    if p.status.pause_reason == GATE_DEADLINE:
        _resume(p)  # promote never skips a release gate: it waits again, as resume does
        return
    if step is not None and _step_points(p, step) and not _gates_passed(p, step):
        p.update(message=f"step {step.index}: promote does not skip release gates; "
                 "waiting for them")
        return
    if p.status.phase is Phase.PAUSED:
        p.update(pause_reason=None)
        p.move(Phase.PROGRESSING, "Promoted", "promoted by user")
    if step is not None and step.kind is StepKind.CUTOVER:
        p.update(promoted=True)
    elif step is not None:
        p.advance()


def _resume(p: _Pass) -> None:
    if p.status.pause_reason in ("InconclusiveAnalysis", ANALYSIS_UNAVAILABLE):
        p.restart_runs({r.name for r in p.status.analysis if r.verdict is Verdict.INCONCLUSIVE})
    if p.status.pause_reason == GATE_DEADLINE:
        _restart_waiting_gates(p)
    p.update(pause_reason=None)
    p.move(Phase.PROGRESSING, "Resumed", "resumed by user")


def _user_pause(p: _Pass) -> None:
    if p.spec.paused and p.status.phase is Phase.PROGRESSING:
        p.pause("UserPaused", "paused by user (spec.paused)")
    elif not p.spec.paused and p.status.pause_reason == "UserPaused":
        p.update(pause_reason=None)
        p.move(Phase.PROGRESSING, "Resumed", "resumed (spec.paused is false)")


# -- phase handlers -----------------------------------------------------------------------


def _progressing(p: _Pass) -> None:
    if p.background_analysis():
        _HANDLERS[p.status.phase](p)
        return
    step = p.step
    if step is None:  # past the last step (or no steps at all)
        if not _gates_open(p, _promotion_points(p), len(p.steps)):
            p.traffic = p.held_traffic()
            if p.status.phase is Phase.ABORTING:
                _aborting(p)
            return
        _to_promoting(p)
        _HANDLERS[p.status.phase](p)
        return
    p.canary_replicas = _canary_replicas_for_step(p)
    if step.kind in ANALYSIS_KINDS:
        _analysis_step(p, step)
    elif step.kind in (StepKind.PAUSE, StepKind.SCALE_DOWN):
        _wait_step(p, step)
    elif ((step.kind is StepKind.CUTOVER and not _cutover_gate_open(p, step))
          or not _gates_open(p, _step_points(p, step), step.index)):
        p.traffic = p.held_traffic()
    else:
        _traffic_step(p, step)
    if (p.status.phase is Phase.PROGRESSING and p.status.current_step == step.index
            and not p.gate_held):
        _check_deadline(p, step)
    if p.status.phase is not Phase.PROGRESSING and p.status.phase is not Phase.PAUSED:
        _HANDLERS[p.status.phase](p)


def _to_promoting(p: _Pass) -> None:
    p.move(Phase.PROMOTING, "Promoting", f"promoting revision {p.status.current_revision}")


def _canary_replicas_for_step(p: _Pass) -> int:
    reached = p.steps[: p.status.current_step + 1]
    scale = max((s.canary_scale for s in reached), default=1)
    return p.needed_canary(scale)


def _traffic_step(p: _Pass, step: ScheduledStep) -> None:
    waiting = _unready(p, step)
    if waiting is not None:
        p.traffic = p.held_traffic()
        need = p.needed_canary(step.canary_scale)
        p.update(message=f"step {step.index}: waiting for {waiting[0]} ready replicas "
                 f"{waiting[1]}/{need} before {step.kind.value}")
        p.requeue(READY_REQUEUE)
        return
    p.traffic = step.traffic
    if p.observed(step.traffic):
        w = step.traffic.weights
        verified = Event("Normal", "TrafficVerified",
                         f"step {step.index}: data plane at {w.described()}")
        if p.advance() and p.obs.observed is not None:  # a trusted write verifies nothing
            p.events.append(verified)
    else:
        _hold_for_data_plane(p, step)


def _unready(p: _Pass, step: ScheduledStep) -> tuple[str, int] | None:
    """The version the step's weights wait for, and its ready replicas: the canary, then a
    fresh baseline the step gives weight to (both at the canary's replicas)."""
    if not p.canary_ready_for(step.canary_scale):
        return "canary", p.canary_ready
    if step.traffic.weights.baseline > 0 and not p.baseline_ready_for(step.canary_scale):
        return "baseline", p.baseline_ready
    return None


def _hold_for_data_plane(p: _Pass, step: ScheduledStep) -> None:
    """The step's weights are written but not seen at the data plane: the step waits, and
    after ``observe_timeout`` says it is held (a Warning event, once)."""
    w = step.traffic.weights
    held = f"step {step.index} held"
    timeout = p.obs.observe_timeout
    if timeout is not None and p.elapsed(p.status.step_started_at) >= timeout:
        message = p.not_observed(f"{held}: {_named(w)} not observed "
                                 f"at the data plane after {timeout:g} s")
        if not p.status.message.startswith(held):
            p.events.append(Event("Warning", "TrafficNotObserved", message))
    else:
        message = p.not_observed(f"step {step.index}: waiting for the data plane to apply "
                                 f"{_named(w)}")
    p.update(message=message)
    p.requeue(VERIFY_REQUEUE)


def _named(w: Weights) -> str:
    """``stable/canary 90/10``, or ``stable/canary/baseline 60/20/20``."""
    return f"stable/canary{'/baseline' if w.baseline else ''} {w.described()}"


def _wait_step(p: _Pass, step: ScheduledStep) -> None:
    if step.waits_for_promote:
        p.pause_until_promote(step)
        return
    p.traffic = p.held_traffic()
    remaining = (step.wait_seconds or 0) - p.elapsed(p.status.step_started_at)
    if remaining <= 0:
        p.advance()
    else:
        p.requeue(remaining)


def _cutover_gate_open(p: _Pass, step: ScheduledStep) -> bool:
    if p.status.promoted:
        return True
    if step.waits_for_promote:
        p.pause("AwaitingPromotion", f"step {step.index}: blue-green preview ready; "
                "cut-over waits for promote")
        return False
    remaining = (step.wait_seconds or 0) - p.elapsed(p.status.step_started_at)
    if remaining > 0:
        p.requeue(remaining)
        return False
    return True


def _analysis_step(p: _Pass, step: ScheduledStep) -> None:
    p.traffic = p.held_traffic()
    metrics = p.obs.analysis.steps.get(step.index, ())
    run = p.run_analysis(step.run_name, metrics)
    label = f"step {step.index} ({step.kind.value})"
    if run.verdict is Verdict.PASSING:
        if p.advance():
            p.events.append(Event("Normal", "AnalysisPassed", f"{label}: {run.reason}"))
    elif run.verdict is Verdict.FAILING:
        p.begin_abort("AnalysisFailed", f"{label}: {run.reason}")
    elif run.verdict is Verdict.INCONCLUSIVE:
        p.pause_inconclusive(run, metrics, label, "promote to skip, resume to measure again")
    else:
        p.update(message=f"{label}: {run.reason}")


def _check_deadline(p: _Pass, step: ScheduledStep) -> None:
    if step.kind in ANALYSIS_KINDS or step.kind in (StepKind.PAUSE, StepKind.SCALE_DOWN):
        return
    if p.elapsed(p.status.step_started_at) > p.spec.progress_deadline_seconds:
        p.begin_abort("ProgressDeadlineExceeded",
                      f"step {step.index} made no progress in "
                      f"{p.spec.progress_deadline_seconds}s: {p.status.message}")


def _paused(p: _Pass) -> None:
    if p.status.pause_reason == ANALYSIS_UNAVAILABLE and _unavailable_pause(p):
        _HANDLERS[p.status.phase](p)
        return
    if p.background_analysis() and p.status.phase is Phase.ABORTING:
        _aborting(p)
        return
    p.traffic = p.held_traffic()
    p.canary_replicas = _canary_replicas_for_step(p) if p.step else None


def _unavailable_pause(p: _Pass) -> bool:
    """Paused because the metrics source did not answer (AnalysisUnavailable): the shell
    probes it every interval (:func:`measurements_due`), and the probes are recorded.

    - A probe answered with data (a value, or an error: a query it refuses) resumes the
      rollout; the runs it held start again from scratch (True).
    - Answered without data (no series: a source that just came back has not scraped a
      window yet), the pause holds for the metric's patience
      (:func:`~meshctl.domain.analysis.patience`), then becomes a pause for a person
      (InconclusiveAnalysis): the source is back and there is still nothing to judge.
    - Not answered: the pause holds.

    E.g. interval 10 s, paused at 10:00:05: probes at 10:00:15 and 10:00:25 go unanswered;
    at 10:00:35 Prometheus answers 12.5 ms, so the pass resumes and the step's analysis
    starts again from its initial delay."""
    held = [(run, plans) for run, plans in _live_runs(p.status, p.obs)
            if run.verdict is Verdict.INCONCLUSIVE]
    names = {run.name for run, _ in held}
    probes = [t for t in p.obs.measurements if t.run in names]
    answered = [t for t in probes if not isinstance(t.measurement, NoData)]
    if answered or not held:
        p.restart_runs(names)
        source = f" ({answered[0].metric} answered)" if answered else ""
        if p.spec.paused:  # the source is back, the person's pause stays
            p.pause("UserPaused", f"the metrics source answers again{source}; paused by "
                    "user (spec.paused)")
            return False
        p.update(pause_reason=None)
        p.move(Phase.PROGRESSING, "AnalysisAvailable",
               f"resumed: the metrics source answers again{source}; analysis starts again")
        return True
    for run, plans in held:
        updated = analysis.record_probes(run, plans, probes)
        if updated != run:
            p.update(analysis=tuple(updated if r.name == run.name else r
                                    for r in p.status.analysis))
        quiet = analysis.quiet_too_long(updated, plans, p.now)
        if quiet:
            p.pause("InconclusiveAnalysis", f"the metrics source answers again but has no "
                    f"data about the version: {quiet}; needs a human (promote to skip, "
                    "resume to measure again)")
            return False
        wait = analysis.seconds_until_probe(updated, plans, p.now)
        if wait is not None:
            p.requeue(wait)
    return False


def _promoting(p: _Pass) -> None:
    """Stable takes the new template; once it is ready, traffic returns to it, then the
    canary scales down."""
    p.traffic = p.obs.written or p.held_traffic()  # as promotion found it (promote --full)
    stable = p.obs.stable
    current = p.status.current_revision
    ready = stable.ready if stable.revision == current else 0  # old pods are not ready for it
    if ready < stable.replicas or ready == 0:
        p.update(message=f"promoting: stable at revision {current}: "
                 f"{ready}/{stable.replicas} ready")
        p.requeue(READY_REQUEUE)
        return
    target = TrafficSplit.stable_only()
    p.traffic = target
    if not p.observed(target):
        p.update(message=p.not_observed("promoting: waiting for the data plane to send 100% "
                                        "to stable"))
        p.requeue(VERIFY_REQUEUE)
        return
    p.canary_replicas = 0
    p.update(stable_revision=current)
    p.move(Phase.HEALTHY, "RolloutCompleted", f"revision {current} is stable at 100%")
    _record_gates(p, GatePoint.AFTER_PROMOTION)


def _aborting(p: _Pass) -> None:
    target = TrafficSplit.stable_only()
    p.traffic = target
    if not p.observed(target):
        p.requeue(VERIFY_REQUEUE)
        return
    abort = p.status.abort
    assert abort is not None
    p.update(abort=dataclasses.replace(abort, stable_observed_at=p.now))
    if abort.reason == "Reverted":
        p.update(abort=None)
        p.move(Phase.HEALTHY, "RolledBack", "back at the stable revision, 100% stable")
        _record_gates(p, GatePoint.ON_ROLLBACK)
        return
    p.move(Phase.DEGRADED, abort.reason, f"rolled back to 100% stable: {abort.message}",
           warning=True)
    _record_gates(p, GatePoint.ON_ROLLBACK)
    _degraded(p)


def _degraded(p: _Pass) -> None:
    p.traffic = TrafficSplit.stable_only()
    _record_gates(p)
    abort = p.status.abort
    since = abort.stable_observed_at if abort else None
    remaining = p.spec.abort_scale_down_delay_seconds - p.elapsed(since)
    if since is not None and remaining <= 0:
        p.canary_replicas = 0
    else:
        p.requeue(max(remaining, 0))


def _healthy(p: _Pass) -> None:
    p.traffic = TrafficSplit.stable_only()
    _record_gates(p)
    p.canary_replicas = 0


def _pending(p: _Pass) -> None:
    p.traffic = TrafficSplit.stable_only()
    p.canary_replicas = 0


_HANDLERS = {
    Phase.PENDING: _pending,
    Phase.PROGRESSING: _progressing,
    Phase.PAUSED: _paused,
    Phase.PROMOTING: _promoting,
    Phase.ABORTING: _aborting,
    Phase.DEGRADED: _degraded,
    Phase.HEALTHY: _healthy,
}


# -- release gates (spec.gates) -----------------------------------------------------------
#
# Each gate at a point gets a record in status.gates (since: when it began waiting). A window
# is judged here from ``now``; the other kinds by the shell, whose reports arrive in
# ``obs.gate_reports`` for the records :func:`gates_due` named. Abort and rollback never
# wait for a gate: gates at afterPromotion and onRollback are judged and recorded only.

GATE_WAKE_MAX = 3600.0  # a closed window is looked at again at least this often


def _step_points(p: _Pass, step: ScheduledStep) -> tuple[GatePoint, ...]:
    return gate_points(p.steps, step.index)


def _promotion_points(p: _Pass) -> tuple[GatePoint, ...]:
    """beforePromotion, and beforeTraffic when no step passed it (promote --full early)."""
    points = []
    unpassed = [g for g in gates_at(p.spec.gates, GatePoint.BEFORE_TRAFFIC)
                if not _passed(p, g, GatePoint.BEFORE_TRAFFIC, 0)]
    if unpassed:
        points.append(GatePoint.BEFORE_TRAFFIC)
    if gates_at(p.spec.gates, GatePoint.BEFORE_PROMOTION):
        points.append(GatePoint.BEFORE_PROMOTION)
    return tuple(points)


def _key_step(point: GatePoint, step: int) -> int:
    """beforeIncrease is judged at each step; every other point once per revision."""
    return step if point is GatePoint.BEFORE_INCREASE else 0


def _passed(p: _Pass, gate: GateSpec, point: GatePoint, step: int) -> bool:
    record = p.status.gate(gate_key(gate.name, point, _key_step(point, step)))
    return record is not None and record.verdict is GateVerdict.PASSED


def _gates_passed(p: _Pass, step: ScheduledStep) -> bool:
    return all(_passed(p, g, point, step.index) for point in _step_points(p, step)
               for g in gates_at(p.spec.gates, point))


def _gates_open(p: _Pass, points: tuple[GatePoint, ...], step: int) -> bool:
    """True when every gate at ``points`` passed. A failed one aborts (before traffic moved
    nothing was written, so nothing is undone); one waiting past its deadline pauses for a
    human; otherwise the step waits and says for what."""
    waiting: list[tuple[GateSpec, GateStatus]] = []
    for point in points:
        for gate in gates_at(p.spec.gates, point):
            record = _judge(p, gate, point, step)
            if record.verdict is GateVerdict.FAILED:
                p.begin_abort("GateFailed", f"gate {gate.name} ({gate.kind}) failed "
                              f"{point.value}: {record.message}")
                return False
            if record.verdict is GateVerdict.WAITING:
                waiting.append((gate, record))
    if not waiting:
        return True
    p.gate_held = True
    late = [(g, r) for g, r in waiting if overdue(g, r.since, p.now)]
    gate, record = (late or waiting)[0]
    if late:
        p.pause(GATE_DEADLINE, f"gate {gate.name} ({gate.kind}) {record.point.value} still "
                f"waiting after its deadline of {deadline_text(gate)}: {record.message}; "
                "needs a human (resume to wait again, abort to roll back)")
        return False
    where = f"step {step}" if step < len(p.steps) else "before promotion"
    p.update(message=f"{where}: waiting for gate {gate.name} ({gate.kind}) "
             f"{record.point.value}: {record.message}")
    p.requeue(_wake_after(p, [r for _, r in waiting]))
    return False


def _wake_after(p: _Pass, waiting: list[GateStatus]) -> float:
    """Outside gates are asked again every GATE_REQUEUE; a window when it opens."""
    wakes = [(r.until - p.now).total_seconds() if r.until is not None else GATE_WAKE_MAX
             if r.kind == "window" else GATE_REQUEUE for r in waiting]
    return max(0.0, min(min(wakes), GATE_WAKE_MAX))


def _judge(p: _Pass, gate: GateSpec, point: GatePoint, step: int) -> GateStatus:
    """The gate's record after this pass: started when first met, then judged until it
    passes or fails (a verdict, once given, stands for the revision)."""
    key = gate_key(gate.name, point, _key_step(point, step))
    record = p.status.gate(key)
    if record is None or record.revision != p.status.current_revision:
        record = GateStatus(key=key, name=gate.name, point=point, since=p.now, step=step,
                            revision=p.status.current_revision or "", kind=gate.kind)
        p.events.append(Event("Normal", "GateWaiting", f"gate {gate.name} ({gate.kind}) "
                              f"{point.value}: waiting"))
        p.requeue(0)
    if record.verdict is not GateVerdict.WAITING:
        return record
    judged = _verdict(p, gate, record)
    if judged.verdict is GateVerdict.PASSED and point not in RECORDING_POINTS:
        p.update(step_started_at=p.now)  # the step's own clocks start when its gates open
    _store_gate(p, judged)
    return judged


def _verdict(p: _Pass, gate: GateSpec, record: GateStatus) -> GateStatus:
    if gate.window is not None:
        state = window_state(gate.window, p.now)
        if state.open:
            return dataclasses.replace(record, verdict=GateVerdict.PASSED, decided_at=p.now,
                                       until=None, message="inside a window")
        opening = describe_opening(gate.window, state.opens_at)
        return dataclasses.replace(record, until=state.opens_at,
                                   message=f"{state.why}; {opening}")
    report = p.obs.gate_reports.get(record.key)
    if report is None:
        return record if record.message else dataclasses.replace(
            record, message=f"waiting for the {gate.kind}")
    decided = p.now if report.verdict is not GateVerdict.WAITING else None
    return dataclasses.replace(record, verdict=report.verdict, message=report.message,
                               by=report.by, decided_at=decided)


def _store_gate(p: _Pass, record: GateStatus) -> None:
    old = p.status.gate(record.key)
    if old == record:
        return
    added = [who for who in record.by if old is None or who not in old.by]
    if added and record.verdict is GateVerdict.WAITING:
        p.events.append(Event("Normal", "Approved", f"gate {record.name} ({record.kind}) "
                              f"{record.point.value}: approved by {', '.join(added)}; "
                              f"{record.message}"))
    if record.verdict is not GateVerdict.WAITING:
        failed = record.verdict is GateVerdict.FAILED
        p.events.append(Event("Warning" if failed else "Normal",
                              "GateFailed" if failed else "GatePassed",
                              f"gate {record.name} ({record.kind}) {record.point.value}: "
                              f"{record.message}" + (f" (by {', '.join(record.by)})"
                                                     if record.by and record.by[-1]
                                                     not in record.message else "")))
    kept = tuple(g for g in p.status.gates if g.key != record.key)
    p.update(gates=(*kept, record))


def _restart_waiting_gates(p: _Pass) -> None:
    """Waiting gates start again (a fresh deadline; a webhook is asked again)."""
    p.update(gates=tuple(g for g in p.status.gates if g.verdict is not GateVerdict.WAITING))


def _record_gates(p: _Pass, begin: GatePoint | None = None) -> None:
    """Gates that only record (afterPromotion, onRollback): ``begin`` starts those of a
    point; waiting ones are judged; past the deadline they fail. Nothing waits for them."""
    if begin is not None:
        for gate in gates_at(p.spec.gates, begin):
            _judge(p, gate, begin, p.status.current_step)
    for record in p.status.gates:
        found = next((g for g in p.spec.gates if g.name == record.name), None)
        if (found is None or record.point not in RECORDING_POINTS
                or record.verdict is not GateVerdict.WAITING):
            continue
        judged = _verdict(p, found, record)
        if judged.verdict is GateVerdict.WAITING and overdue(found, record.since, p.now):
            judged = dataclasses.replace(judged, verdict=GateVerdict.FAILED, decided_at=p.now,
                                         message=f"no verdict within {deadline_text(found)}")
        _store_gate(p, judged)
        if judged.verdict is GateVerdict.WAITING:
            p.requeue(GATE_REQUEUE)


def gates_due(spec: RolloutSpec, status: RolloutStatus,
              obs: Observation | None = None) -> list[GateRequest]:
    """The outside gates (webhook, job, approval) the shell should judge before decide():
    those waiting in status for the current revision, unless a person must act first or
    the pass ends them (``obs``: what the pass observed)."""
    if status.phase is Phase.PAUSED or status.phase is Phase.PENDING:
        return []
    if obs is not None and _checks_end(status, obs):
        return []
    by_name = {g.name: g for g in spec.gates}
    out = []
    for record in status.gates:
        gate = by_name.get(record.name)
        if (gate is None or gate.window is not None or record.verdict is not GateVerdict.WAITING
                or record.revision != status.current_revision):
            continue
        out.append(GateRequest(record.key, gate, record.point, record.step, record.revision,
                               record.since))
    return out


# -- the end of a pass --------------------------------------------------------------------


HOLDING = "(holding traffic: the version that would get weight has no ready endpoints)"


def _guard(p: _Pass, target: TrafficSplit) -> TrafficSplit:
    """Never give weight to a version with no ready endpoints; hold what is written then.
    The note is said once: a pass that finds the same hold writes the same message."""
    w = target.weights
    starved = ((w.canary > 0 and p.obs.canary.ready == 0) or (w.stable > 0 and p.obs.stable.ready == 0)
               or (w.baseline > 0 and p.obs.baseline.ready == 0))
    if not starved:
        return target
    held = p.obs.written or TrafficSplit.stable_only()
    if held != target:
        if not p.status.message.endswith(HOLDING):
            p.update(message=f"{p.status.message} {HOLDING}".strip())
        p.requeue(READY_REQUEUE)
    return held


def _canary_scale(p: _Pass, traffic: TrafficSplit) -> int:
    """The canary's replicas; never 0 while it has weight written or shown by the data plane."""
    canary = p.canary_replicas
    if canary is None:
        return p.obs.canary.replicas
    observed = p.obs.observed.weights.canary if p.obs.observed is not None else 0
    if canary == 0 and (traffic.weights.canary > 0 or observed > 0):
        p.requeue(VERIFY_REQUEUE)
        return p.obs.canary.replicas
    return canary


def _baseline_scale(p: _Pass, traffic: TrafficSplit, canary: int) -> int:
    """A fresh baseline has the canary's replicas (none without one); never 0 while it has
    weight written or shown by the data plane."""
    baseline = canary if p.spec.fresh_baseline else 0
    observed = p.obs.observed.weights.baseline if p.obs.observed is not None else 0
    if baseline == 0 and (traffic.weights.baseline > 0 or observed > 0):
        p.requeue(VERIFY_REQUEUE)
        return p.obs.baseline.replicas
    return baseline


def _finish(p: _Pass) -> Decision:
    traffic = _guard(p, p.traffic or p.held_traffic())
    written, w = p.status.weights, traffic.weights
    if (written.stable, written.canary, written.baseline or 0) != (w.stable, w.canary,
                                                                  w.baseline):
        p.events.append(Event("Normal", "WeightChanged", _named(w)))
    p.update(
        weights=dataclasses.replace(p.status.weights, stable=w.stable, canary=w.canary,
                                    baseline=w.baseline or None),
        header_routes=tuple(r.name for r in traffic.header_routes),
        mirror_percent=traffic.mirror_percent,
        conditions=_conditions(p),
    )
    canary = _canary_scale(p, traffic)
    stable_rev = p.status.stable_revision or p.obs.revision
    if p.status.phase is Phase.PROMOTING:
        stable_rev = p.status.current_revision or stable_rev
    workloads = DesiredWorkloads(stable_rev, p.status.current_revision, canary,
                                 p.status.stable_revision, _baseline_scale(p, traffic, canary))
    requeue = min(p.requeues) if p.requeues else None
    return Decision(p.status, traffic, workloads, tuple(p.events), requeue)


STABLE_EDITED = "StableEdited"


def _conditions(p: _Pass) -> tuple[StatusCondition, ...]:
    phase = p.status.phase
    wanted = {
        "Progressing": ("True" if phase in (Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING,
                                            Phase.ABORTING) else "False", phase.value),
        "Paused": ("True" if phase is Phase.PAUSED else "False",
                   p.status.pause_reason or "NotPaused"),
        "Healthy": ("True" if phase is Phase.HEALTHY else "False", phase.value),
    }
    gate = p.obs.gate
    if gate is not None:
        wanted["MutualTLS"] = ("True" if gate.open else "False",
                               "Enforced" if gate.open else "Blocking")
    conditions = set_conditions(p.status.conditions, wanted, p.status.message, p.now)
    return _stable_edited(p, conditions)


def _stable_edited(p: _Pass, conditions: tuple[StatusCondition, ...]
                   ) -> tuple[StatusCondition, ...]:
    """Say so when the stable Deployment's pod template was changed outside meshctl: its
    Pods now run what no step and no analysis checked (meshctl does not undo another
    writer's change; the next release replaces it)."""
    edited = p.obs.stable.edited
    before = next((c for c in conditions if c.type == STABLE_EDITED), None)
    if not edited:
        if before is None or before.status == "False":
            return conditions
        return set_conditions(conditions, {STABLE_EDITED: ("False", "InSync")}, "", p.now)
    message = (f"the stable Deployment's pod template was changed outside meshctl "
               f"({edited}): its Pods run what no analysis checked; release a version "
               "through the Rollout's spec.template (meshctl rollout start NAME --image IMG)")
    if before is None or before.status != "True":
        p.events.append(Event("Warning", STABLE_EDITED, message))
    return set_conditions(conditions, {STABLE_EDITED: ("True", "EditedOutsideMeshctl")},
                          message, p.now)


def set_conditions(current: tuple[StatusCondition, ...], wanted: Mapping[str, tuple[str, str]],
                   message: str, now: datetime) -> tuple[StatusCondition, ...]:
    """Conditions with ``wanted`` applied; lastTransitionTime moves only when status does."""
    by_type = {c.type: c for c in current}
    for type_, (status, reason) in wanted.items():
        old = by_type.get(type_)
        changed = old is None or old.status != status
        by_type[type_] = StatusCondition(
            type=type_, status=status, reason=reason,
            message=message if status == "True" else "",
            last_transition_time=now if changed else old.last_transition_time if old else now,
        )
    return tuple(by_type[t] for t in sorted(by_type))


def invalid_spec(status: RolloutStatus, problems: str, now: datetime) -> RolloutStatus:
    """Status for a Rollout whose spec failed validation: condition set, nothing else moves."""
    conditions = set_conditions(status.conditions, {"InvalidSpec": ("True", "InvalidSpec")},
                                problems, now)
    return dataclasses.replace(status, conditions=conditions, message=f"invalid spec: {problems}")


def valid_spec(status: RolloutStatus, now: datetime) -> RolloutStatus:
    if status.condition("InvalidSpec") is None:
        return status
    conditions = set_conditions(status.conditions, {"InvalidSpec": ("False", "Valid")}, "", now)
    return dataclasses.replace(status, conditions=conditions)

