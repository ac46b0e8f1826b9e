"""Property tests: weight invariants over random valid specs and random worlds."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshctl.domain.engine import ResolvedAnalysis, WorkloadState
from meshctl.domain.intents import Intents
from meshctl.domain.measurements import NoData, Value
from meshctl.domain.phases import Phase

from .sim import Sim, canary, slo_metric


@st.composite
def canary_steps(draw: st.DrawFn) -> list[dict[str, object]]:
    weights = sorted(draw(st.lists(st.integers(0, 100), min_size=1, max_size=5)))
    steps: list[dict[str, object]] = []
    for w in weights:
        steps.append({"setWeight": w})
        extra = draw(st.sampled_from(["none", "pause", "analysis", "mirror", "route"]))
        if extra == "pause":
            steps.append({"pause": {"duration": f"{draw(st.integers(1, 90))}s"}})
        elif extra == "analysis":
            steps.append({"analysis": {}})
        elif extra == "mirror":
            steps.append({"setMirror": {"percent": draw(st.integers(0, 100))}})
        elif extra == "route":
            steps.append({"setHeaderRoute": {"name": "beta", "match": [
                {"headerName": "x-beta", "headerValue": {"exact": "1"}}]}})
    return steps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=canary_steps(), data=st.data())
def test_every_decision_keeps_the_weight_invariants(steps, data):
    spec = canary(*steps)
    analysis_steps = {i: (slo_metric(),) for i, s in enumerate(steps) if "analysis" in s}
    sim = Sim(spec, analysis=ResolvedAnalysis(steps=analysis_steps),
              replicas=data.draw(st.integers(1, 10)))
    for _ in range(data.draw(st.integers(5, 60))):
        # the world misbehaves at random between passes
        sim.data_plane_applies = data.draw(st.booleans())
        sim.canary_becomes_ready = data.draw(st.booleans())
        if data.draw(st.integers(0, 9)) == 0:
            sim.stable = dataclasses.replace(sim.stable, ready=0)
        elif sim.stable.ready == 0:
            sim.stable = WorkloadState(sim.replicas, sim.replicas, sim.stable.revision)
        value = data.draw(st.sampled_from([Value(5.0), Value(500.0), NoData()]))
        sim.metric = lambda run, metric, v=value: v
        if data.draw(st.integers(0, 15)) == 0:
            sim.intents = Intents(abort=f"a{len(sim.decisions)}")
        obs = sim.observation()
        d = sim.reconcile()
        w = d.traffic.weights
        assert isinstance(w.stable, int) and isinstance(w.canary, int)
        assert w.stable + w.canary == 100
        # no new weight on a version without ready endpoints
        if obs.written is not None and d.traffic != obs.written:  # (the first write is the baseline)
            assert w.canary == 0 or obs.canary.ready > 0
            assert w.stable == 0 or obs.stable.ready > 0
        # the canary is never scaled down while traffic to it may still be in force
        if d.workloads.canary_replicas == 0 and obs.canary.replicas > 0:
            assert obs.observed is not None and obs.observed.weights.canary == 0
            assert w.canary == 0
        # rolled back means no weight left on the canary
        if d.status.phase is Phase.DEGRADED:
            assert w.canary == 0
        sim.now += timedelta(seconds=max(d.requeue_after or 1.0, 0.5))
