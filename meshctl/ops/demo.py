"""``meshctl demo``: a whole canary story on one machine, with real traffic.

Scenario 1 promotes a healthy new version step by step under live load. Scenario 2 rolls out
a version that turns slow and failing once it takes traffic; meshctl measures the breach in
Prometheus and sends 100% back to the stable version at the Envoy, and the summary says how
long that took from the moment the fault began. Scenario 3 rolls out a version 15 ms slower
than stable, far under the 50 ms p95 threshold: the SLO alone would promote it, the
comparative judge (canary against stable, Mann-Whitney U) rolls it back. Each summary says
which gate caught the version.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshctl.domain.engine import Decision, Event
from meshctl.domain.phases import Phase
from meshctl.domain.spec import Rollout
from meshctl.domain.status import Verdict
from meshctl.domain.timeline import Timeline
from meshctl.domain.traffic import TrafficSplit
from meshctl.domain.validation import load_document
from meshctl.localmesh.load import LoadGenerator
from meshctl.localmesh.mesh import LocalMesh, SampleApp
from meshctl.localmesh.procs import note_workdir, recording_children
from meshctl.ops.local import DEFAULT_STATE_DIR, LocalRollout
from meshctl.ops.rollouts import LocalRollouts
from meshctl.ops.timelines import local_timeline
from meshctl.ops.views import RolloutView

LOAD_RATE = 60.0
STEPS: list[dict[str, Any]] = [
    {"setWeight": 10}, {"analysis": {}}, {"setWeight": 30}, {"analysis": {}},
    {"setWeight": 60}, {"analysis": {}}, {"setWeight": 100},
]


# The comparative judge on Prometheus samples: the canary against stable over the last
# 12 s, one 4 s window a second (9 samples; the windows overlap: a short demo trades
# independence for speed), with a 25% tolerance: two identical app processes on a busy
# machine, under different shares of the load, differ by a few percent, sometimes more (at
# 5 ms). A PromQL rate window needs four 1 s scrapes.
DEMO_JUDGE: dict[str, Any] = {"lookback": "12s", "window": "4s", "step": "1s", "minSamples": 8,
                              "tolerance": "25%"}
# Scenario 3's judge: the same, its samples read from Envoy directly (no scrape to wait for),
# so a window can be 2 s and the lookback 9 s: the judge first judges 3 s sooner (measured:
# rolled back 9.8 s after the analysis step began, against 12.8 s on Prometheus samples).
DEMO_ENVOY_JUDGE: dict[str, Any] = {"lookback": "9s", "window": "2s", "step": "1s",
                                    "minSamples": 8, "tolerance": "25%",
                                    "provider": {"kind": "envoy"}}


# Scenario 3 checks the SLO in its analysis steps only, over 10 s: a p95 read every second
# over 4 s of 6 requests/s is at the mercy of two slow requests on a busy machine, and this
# scenario is about what a sound threshold cannot see.
SCENARIO_3_SLO: dict[str, Any] = {"window": "10s", "count": 2}


def demo_rollout(name: str, stable: str, canary: str,
                 steps: list[dict[str, Any]] | None = None,
                 judge: dict[str, Any] | None = None, background: bool = True,
                 slo: dict[str, Any] | None = None, baseline: str | None = None) -> Rollout:
    """The demo's rollout; ``steps``: other steps than the demo's; ``judge``: its
    spec.judge; ``background``: the SLO also checked every second from step 1 on (without
    it, only in the analysis steps); ``slo``: fields of spec.slo to change; ``baseline``:
    the address of a fresh baseline (with ``judge`` baseline fresh)."""
    doc: dict[str, Any] = {
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "namespace": "demo"},
        "spec": {
            "service": "demo",
            "local": {"stable": {"address": stable}, "canary": {"address": canary}},
            "slo": {"latencyP95": "50ms", "availability": "99.9%", "window": "4s",
                    "minRequests": 10, "interval": "1s", "count": 3},
            "abortScaleDownDelaySeconds": 0,
            "strategy": {"canary": {"steps": STEPS if steps is None else steps,
                                    "analysis": {"startingStep": 1}}},
        },
    }
    if judge is not None:
        doc["spec"]["judge"] = judge
    if baseline is not None:
        doc["spec"]["local"]["baseline"] = {"address": baseline}
    doc["spec"]["slo"].update(slo or {})
    if not background:
        del doc["spec"]["strategy"]["canary"]["analysis"]
    rollout = load_document(doc)
    assert isinstance(rollout, Rollout)
    return rollout


@dataclass
class Scenario:
    name: str
    expected: str  # the result the scenario must end with: "promoted" or "rolled_back"
    result: str = ""
    time_to_rollback_seconds: float | None = None
    caught_by: str = ""  # the gate(s) that failed the version, e.g. "comparative judge"
    steps: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    measurements: list[dict[str, Any]] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    timeline: Timeline | None = None  # for the report (meshctl demo --report)
    view: RolloutView | None = None

    @property
    def as_expected(self) -> bool:
        return self.result == self.expected

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "result": self.result, "expected": self.expected,
                "time_to_rollback_seconds": self.time_to_rollback_seconds,
                "caught_by": self.caught_by,
                "steps": self.steps, "decisions": self.decisions,
                "measurements": self.measurements, "requests": self.requests}


def _record(scenario: Scenario, decision: Decision, started: float) -> None:
    status = decision.status
    step = {"index": status.current_step, "phase": status.phase.value,
            "weights": {"stable": status.weights.stable, "canary": status.weights.canary}}
    if not scenario.steps or {k: v for k, v in scenario.steps[-1].items() if k != "at"} != step:
        scenario.steps.append({**step, "at": round(time.monotonic() - started, 2)})


GATES = {"judge": "comparative judge (spec.judge)",
         "latency-p95": "SLO threshold (latency p95)",
         "availability": "SLO threshold (availability)",
         "availability-fast": "SLO fast availability check"}


def caught_by(decision: Decision) -> str:
    """The gates whose metrics failed the version ("" when none did)."""
    failed = [m.name for run in decision.status.analysis if run.verdict is Verdict.FAILING
              for m in run.metrics if m.verdict is Verdict.FAILING]
    return ", ".join(dict.fromkeys(GATES.get(name, f"metric {name}") for name in failed))


def _finish(scenario: Scenario, decision: Decision, events: list[Event]) -> None:
    scenario.result = "promoted" if decision.status.phase is Phase.HEALTHY else "rolled_back"
    scenario.caught_by = caught_by(decision)
    scenario.decisions = [{"type": e.type, "reason": e.reason, "message": e.message}
                          for e in events if e.reason not in ("TrafficVerified",)]
    for run in decision.status.analysis:
        for metric in run.metrics:
            for m in metric.measurements[-3:]:
                scenario.measurements.append({
                    "run": run.name, "metric": metric.name, "value": m.value,
                    "outcome": m.outcome.value, "message": m.message})


def run_scenario(name: str, expected: str, canary: SampleApp,
                 on_pass: Callable[[Decision], None],
                 on_event: Callable[[Event], None], state_dir: Path,
                 fault_at_step: int | None = None, fault: dict[str, float] | None = None,
                 timeout: float = 240.0, fault_delay: float = 0.0,
                 judge: dict[str, Any] | None = None, background: bool = True,
                 slo: dict[str, Any] | None = None) -> Scenario:
    """``fault`` starts ``fault_delay`` seconds after the rollout reaches ``fault_at_step``;
    ``judge``, ``background``, ``slo``: see :func:`demo_rollout`."""
    scenario = Scenario(name, expected)
    events: list[Event] = []
    with LocalMesh(stable=SampleApp("v1"), canary=canary) as mesh:
        stable_app, canary_app = mesh.stable_app, mesh.canary_app
        rollout = demo_rollout(name, f"{stable_app.host}:{stable_app.port}",
                               f"{canary_app.host}:{canary_app.port}", judge=judge,
                               background=background, slo=slo)

        def event(e: Event) -> None:
            events.append(e)
            on_event(e)

        driver = LocalRollout(rollout, {}, mesh, state_dir, on_event=event,
                              stable_revision="v1", canary_revision=canary.version)
        started = time.monotonic()
        fault_started: float | None = None
        step_reached: float | None = None

        def each_pass(decision: Decision) -> None:
            nonlocal fault_started, step_reached
            _record(scenario, decision, started)
            on_pass(decision)
            status = decision.status
            if (fault is not None and fault_started is None and fault_at_step is not None
                    and status.current_step >= fault_at_step and status.phase is Phase.PROGRESSING):
                step_reached = step_reached or time.monotonic()
                if time.monotonic() - step_reached < fault_delay:
                    return
                canary_app.set_faults(**fault)
                fault_started = time.monotonic()
                on_event(Event("Warning", "FaultInjected",
                               f"canary {canary.version} now has {fault}"))
            if (fault_started is not None and scenario.time_to_rollback_seconds is None
                    and mesh.router.observed() == TrafficSplit.stable_only()
                    and status.phase in (Phase.ABORTING, Phase.DEGRADED)):
                scenario.time_to_rollback_seconds = round(time.monotonic() - fault_started, 2)

        with LoadGenerator(mesh.url, rate=LOAD_RATE, concurrency=4) as load:
            decision = driver.run(timeout=timeout, on_pass=each_pass, max_sleep=0.25)
            stats = load.stats()
        scenario.timeline = local_timeline(state_dir, rollout.namespace, rollout.name,
                                           prometheus=mesh.prometheus_url)
        scenario.view = LocalRollouts(state_dir).get(rollout.namespace, rollout.name)
        scenario.requests = {k: v for k, v in stats.by_version.items()}
        scenario.requests["errors"] = stats.errors()
        _finish(scenario, decision, events)
    return scenario


def run_demo(on_pass: Callable[[Decision], None], on_event: Callable[[Event], None],
             announce: Callable[[str], None], state_dir: Path = DEFAULT_STATE_DIR
             ) -> list[Scenario]:
    """The three scenarios; what a demo killed earlier left (recorded in ``state_dir``) is
    stopped first."""
    with recording_children(state_dir / "demo.children.json") as leftovers, \
            tempfile.TemporaryDirectory(prefix="meshctl-demo-") as tmp:
        if leftovers:
            announce(f"stopped what a killed earlier demo left: {', '.join(leftovers)}")
        note_workdir(Path(tmp))
        announce("scenario 1: a healthy version v2, promoted step by step under live load")
        healthy = run_scenario("healthy-canary", "promoted", SampleApp("v2", latency_ms=5.0),
                               on_pass, on_event, Path(tmp))
        announce("scenario 2: version v3 turns slow (+80 ms) and fails 5% of requests once "
                 "it takes traffic")
        breach = run_scenario("slo-breach", "rolled_back", SampleApp("v3", latency_ms=5.0),
                              on_pass, on_event, Path(tmp), fault_at_step=1,
                              fault={"latency_ms": 85.0, "error_rate": 0.05})
        announce("scenario 3: version v4 answers in 20 ms where v1 takes 5 ms: 15 ms slower, "
                 "far under the 50 ms p95 threshold; the comparative judge compares it with v1 "
                 "(samples read from Envoy directly)")
        slower = run_scenario("slower-under-threshold", "rolled_back",
                              SampleApp("v4", latency_ms=20.0), on_pass, on_event, Path(tmp),
                              judge=DEMO_ENVOY_JUDGE, background=False, slo=SCENARIO_3_SLO)
    return [healthy, breach, slower]
