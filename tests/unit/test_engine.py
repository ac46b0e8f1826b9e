"""Scenario tests of decide(): whole rollouts stepped through the pure simulated world.

Each test reads Given / When / Then and asserts traffic and status, never call sequences.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import timedelta

import pytest

from meshctl.domain.analysis import TakenMeasurement
from meshctl.domain.engine import (
    Observation,
    ResolvedAnalysis,
    WorkloadState,
    decide,
    measurements_due,
)
from meshctl.domain.intents import Intents
from meshctl.domain.measurements import Error, NoData, Unavailable, Value
from meshctl.domain.phases import Phase
from meshctl.domain.status import MAX_MEASUREMENTS_KEPT, AbortStatus, RolloutStatus, Verdict
from meshctl.domain.traffic import TrafficSplit, Weights
from meshctl.ops.local import is_finished

from .sim import T0, Sim, canary, rollout_spec, slo_metric

STEPS = ({"setWeight": 10}, {"pause": {"duration": "30s"}}, {"setWeight": 50},
         {"pause": {"duration": "30s"}})


def test_healthy_canary_walks_every_step_then_promotes():
    """Given passing conditions, the weights follow the steps and the new version becomes stable."""
    sim = Sim(canary(*STEPS)).run()
    assert sim.status.phase is Phase.HEALTHY
    assert sim.weights_written() == [(100, 0), (90, 10), (50, 50), (100, 0)]
    assert sim.stable.revision == "v2" and sim.status.stable_revision == "v2"
    assert sim.canary.replicas == 0


def test_first_sight_of_a_running_version_adopts_it_without_moving_traffic():
    sim = Sim(canary(*STEPS), revision="v1").run()
    assert sim.status.phase is Phase.HEALTHY
    assert sim.weights_written() == [(100, 0)]
    assert sim.canary.replicas == 0


def test_weights_wait_for_enough_ready_canary_replicas():
    """When the canary has no ready pods, the weight does not move and the status says why."""
    sim = Sim(canary({"setWeight": 50}), canary_becomes_ready=False)
    sim.run(passes=5)
    assert sim.weights_written() == [(100, 0)]
    assert "waiting for canary ready replicas 0/2" in sim.status.message
    sim.canary_becomes_ready = True
    sim.run()
    assert (50, 50) in sim.weights_written()


def test_step_waits_until_the_data_plane_applies_the_weight():
    """A weight written but not observed at the data plane holds the step."""
    sim = Sim(canary({"setWeight": 20}, {"setWeight": 40}), data_plane_applies=False)
    sim.run(passes=10)
    assert sim.status.current_step == 0
    assert sim.weights_written()[-1] == (80, 20)
    assert "waiting for the data plane" in sim.status.message


def test_a_step_unobserved_past_the_timeout_is_held_and_says_why_once():
    """istiod cannot be read: the step never proceeds on the write, the status says the
    weights are stored, not observed, and after the timeout one Warning names the hold."""
    sim = Sim(canary({"setWeight": 20}, {"setWeight": 40}), data_plane_applies=False,
              unobserved="stored, not observed: istiod is unreachable", observe_timeout=5.0)
    sim.run(passes=30)
    assert sim.status.current_step == 0
    assert sim.status.weights.observed is None
    assert sim.status.weights.not_observed == "stored, not observed: istiod is unreachable"
    assert sim.status.message == ("step 0 held: stable/canary 80/20 not observed at the data "
                                  "plane after 5 s: stored, not observed: istiod is unreachable")
    held = [e for d in sim.decisions for e in d.events if e.reason == "TrafficNotObserved"]
    assert len(held) == 1 and held[0].type == "Warning"


def test_trusting_written_weights_proceeds_but_never_reports_them_observed():
    """--trust-stored-weights: steps move on the written split; observed stays empty."""
    sim = Sim(canary({"setWeight": 20}, {"setWeight": 40}), data_plane_applies=False,
              trust_written=True, unobserved="stored, not observed: no istiod")
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    assert sim.status.weights.observed is None
    assert sim.status.weights.not_observed == "stored, not observed: no istiod"
    # nothing was seen at the data plane, so no event says it was (the dashboard plots
    # TrafficVerified as the observed weight)
    reasons = [e.reason for d in sim.decisions for e in d.events]
    assert "WeightChanged" in reasons and "TrafficVerified" not in reasons


def test_each_step_seen_at_the_data_plane_is_reported_verified():
    sim = Sim(canary({"setWeight": 20}, {"setWeight": 40})).run()
    verified = [e.message for d in sim.decisions for e in d.events
                if e.reason == "TrafficVerified"]
    assert verified == ["step 0: data plane at 80/20", "step 1: data plane at 60/40"]


def test_a_pause_until_promote_is_saved_paused_by_the_pass_that_starts_it():
    """The pass that moves on to an indefinite pause pauses too: one status save for the
    step, not a Progressing one and then a Paused one (each save is an API write that an
    abort of the same Rollout waits behind)."""
    sim = Sim(canary({"setWeight": 10}, {"pause": {}}, {"setWeight": 50})).run(passes=20)
    at_pause = [d.status for d in sim.decisions if d.status.current_step == 1]
    assert at_pause and all(s.phase is Phase.PAUSED for s in at_pause)
    assert at_pause[0].message == "step 1: paused until promote"
    assert sim.weights_written() == [(100, 0), (90, 10)]
    reasons = [e.reason for d in sim.decisions for e in d.events]
    assert reasons.count("StepStarted") == 1 and reasons.count("PausedAtStep") == 1


def _failing_analysis_sim(**kw):
    spec = canary({"setWeight": 20}, {"setHeaderRoute": {"name": "beta", "match": [
        {"headerName": "x-beta", "headerValue": {"exact": "1"}}]}},
        {"setMirror": {"percent": 50}}, {"analysis": {}}, {"setWeight": 60})
    plans = ResolvedAnalysis(steps={3: (slo_metric(),)})
    return Sim(spec, analysis=plans, metric=lambda run, m: Value(83.2), **kw)


def test_failed_analysis_sends_all_traffic_to_stable_first_in_one_write():
    sim = _failing_analysis_sim(data_plane_applies=True)
    sim.run(until=lambda s: s.status.current_step == 3)  # analysis step, mirror + route live
    live = sim.written
    assert live.mirror_percent == 50 and live.header_routes
    canary_replicas, writes = sim.canary.replicas, len(sim.writes)
    sim.data_plane_applies = False
    sim.run(passes=3)
    assert sim.status.phase is Phase.ABORTING  # stable not observed yet
    assert sim.writes[writes:] == [TrafficSplit.stable_only()]  # one write: weights, routes, mirror
    assert sim.canary.replicas == canary_replicas  # not scaled down before stable is observed
    assert "83.2" in sim.status.abort.message


def test_canary_scales_down_only_after_stable_is_observed_and_the_delay():
    sim = _failing_analysis_sim()
    sim.run(until=lambda s: s.status.phase is Phase.DEGRADED)
    assert sim.observed == TrafficSplit.stable_only()
    assert sim.canary.replicas > 0  # kept for abortScaleDownDelaySeconds (30s)
    sim.run()
    assert sim.canary.replicas == 0
    assert sim.status.phase is Phase.DEGRADED
    assert sim.status.abort.reason == "AnalysisFailed"
    assert "latency" in sim.status.message and "83.2" in sim.status.message


@pytest.mark.parametrize("measurement, verdict, phase", [
    (Value(10.0), Verdict.PASSING, Phase.HEALTHY),
    (Value(80.0), Verdict.FAILING, Phase.DEGRADED),
    (NoData("0 requests"), Verdict.INCONCLUSIVE, Phase.PAUSED),
    (Error("connection refused"), Verdict.FAILING, Phase.DEGRADED),
])
def test_analysis_step_outcomes(measurement, verdict, phase):
    """Passing advances, failing aborts, no data pauses for a human, errors past the limit fail."""
    spec = canary({"setWeight": 10}, {"analysis": {}}, {"setWeight": 100})
    sim = Sim(spec, analysis=ResolvedAnalysis(steps={1: (slo_metric(count=1, interval=1),)}),
              metric=lambda run, m: measurement)
    sim.run(passes=400)
    assert sim.status.phase is phase
    run = sim.status.run("step-1")
    assert run is not None and run.verdict is verdict


def test_inconclusive_never_promotes_and_resume_measures_again():
    spec = canary({"setWeight": 10}, {"analysis": {}}, {"setWeight": 100})
    sim = Sim(spec, analysis=ResolvedAnalysis(steps={1: (slo_metric(),)}),
              metric=lambda run, m: NoData("0 requests"))
    sim.run()
    assert sim.status.phase is Phase.PAUSED and sim.status.pause_reason == "InconclusiveAnalysis"
    assert sim.weights_written()[-1] == (90, 10)
    sim.run(passes=20)  # nothing happens while paused
    assert sim.status.phase is Phase.PAUSED
    sim.metric = lambda run, m: Value(5.0)
    sim.intents = Intents(resume="r1")
    sim.run()
    assert sim.status.phase is Phase.HEALTHY


def test_promote_skips_an_inconclusive_analysis():
    spec = canary({"setWeight": 10}, {"analysis": {}}, {"setWeight": 30})
    sim = Sim(spec, analysis=ResolvedAnalysis(steps={1: (slo_metric(),)}), metric=lambda r, m: NoData())
    sim.run()
    sim.intents = Intents(promote="p1")
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    assert (70, 30) in sim.weights_written()


def test_indefinite_pause_waits_for_promote():
    sim = Sim(canary({"setWeight": 10}, {"pause": {}}, {"setWeight": 50})).run()
    assert sim.status.phase is Phase.PAUSED and sim.status.pause_reason == "PausedAtStep"
    sim.run(passes=10)
    assert sim.status.phase is Phase.PAUSED
    sim.intents = Intents(promote="p1")
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    assert sim.weights_written() == [(100, 0), (90, 10), (50, 50), (100, 0)]


def test_promote_full_skips_remaining_steps():
    sim = Sim(canary({"setWeight": 10}, {"pause": {}}, {"setWeight": 50})).run()
    sim.intents = Intents(promote_full="f1")
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    assert (50, 50) not in sim.weights_written()


def test_user_abort_then_retry_starts_again_at_step_zero():
    sim = Sim(canary({"setWeight": 10}, {"pause": {}}, {"setWeight": 50})).run()
    sim.intents = Intents(abort="a1")
    sim.run()
    assert sim.status.phase is Phase.DEGRADED and sim.status.abort.reason == "UserAbort"
    assert sim.observed == TrafficSplit.stable_only()
    sim.intents = Intents(abort="a1", retry="r1")
    sim.run()
    assert sim.status.phase is Phase.PAUSED and sim.status.current_step == 1
    assert sim.weights_written()[-1] == (90, 10)


def test_an_intent_is_acted_on_once():
    """The same abort id seen again after a retry does not abort the retried rollout."""
    sim = Sim(canary({"setWeight": 10}, {"pause": {}})).run()
    sim.intents = Intents(abort="a1")
    sim.run()
    sim.intents = Intents(abort="a1", retry="r1")
    sim.run()
    assert sim.status.phase is Phase.PAUSED


def test_spec_paused_holds_the_rollout_and_unpausing_resumes():
    spec = canary({"setWeight": 10}, {"pause": {"duration": "10s"}}, {"setWeight": 50})
    sim = Sim(spec).run(until=lambda s: s.status.current_step == 1)
    sim.spec = dataclasses.replace(spec, paused=True)
    sim.run(passes=30)
    assert sim.status.phase is Phase.PAUSED and sim.status.pause_reason == "UserPaused"
    assert sim.weights_written()[-1] == (90, 10)
    sim.spec = spec
    sim.run()
    assert sim.status.phase is Phase.HEALTHY


def test_progress_deadline_aborts_a_stuck_step():
    sim = Sim(canary({"setWeight": 10}, progressDeadlineSeconds=60), canary_becomes_ready=False)
    sim.run(passes=200)
    assert sim.status.phase is Phase.DEGRADED
    assert sim.status.abort.reason == "ProgressDeadlineExceeded"


def test_background_analysis_aborts_from_its_starting_step():
    spec = rollout_spec({"strategy": {"canary": {
        "steps": [{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50},
                  {"pause": {"duration": "1m"}}],
        "analysis": {"startingStep": 2}}}})
    plans = ResolvedAnalysis(background=(slo_metric(count=None, interval=5),), background_from=2)
    sim = Sim(spec, analysis=plans, metric=lambda r, m: Value(99.0))
    sim.run()
    assert sim.status.phase is Phase.DEGRADED
    run = sim.status.run("background")
    assert run is not None and run.verdict is Verdict.FAILING
    assert run.step == 2  # started at its starting step, not before
    assert run.metrics[0].measurements[0].at >= T0 + timedelta(seconds=60)  # after step 1's pause


def test_new_revision_mid_rollout_restarts_from_stable():
    sim = Sim(canary({"setWeight": 30}, {"pause": {}}, {"setWeight": 60})).run()
    assert sim.weights_written()[-1] == (70, 30)
    sim.revision = "v3"
    d = sim.reconcile()
    assert d.traffic == TrafficSplit.stable_only()
    assert sim.status.current_revision == "v3" and sim.status.current_step == 0
    sim.run()
    assert sim.status.phase is Phase.PAUSED and sim.canary.revision == "v3"


def test_reverting_the_template_to_stable_rolls_back_to_healthy():
    sim = Sim(canary({"setWeight": 30}, {"pause": {}})).run()
    sim.revision = "v1"
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    assert sim.observed == TrafficSplit.stable_only() and sim.stable.revision == "v1"


def test_restart_at_every_pass_gives_the_same_rollout():
    """A controller killed and restarted between every pass repeats and skips nothing."""
    spec = canary(*STEPS, {"analysis": {}}, {"setWeight": 80})
    plans = ResolvedAnalysis(steps={4: (slo_metric(count=3, interval=5),)})
    plain = Sim(spec, analysis=plans).run()
    restarted = Sim(spec, analysis=plans, restart_every_pass=True).run()
    assert restarted.writes == plain.writes
    assert restarted.status == plain.status
    assert restarted.status.run("step-4").metrics[0].count == 3


def test_second_pass_on_the_same_world_writes_nothing():
    """Idempotence: a pass right after a pass that did not advance changes nothing."""
    spec = canary(*STEPS, {"analysis": {}}, {"setWeight": 80})
    sim = Sim(spec, analysis=ResolvedAnalysis(steps={4: (slo_metric(count=2, interval=5),)}))
    checked = 0
    for _ in range(60):
        before = sim.status
        obs = sim.observation()
        due = measurements_due(sim.spec, before, obs, sim.now)
        obs = dataclasses.replace(obs, measurements=tuple(
            TakenMeasurement(r.run, r.metric, sim.now, Value(5.0)) for r in due))
        d1 = decide(sim.spec, before, obs, sim.now)
        d2 = decide(sim.spec, d1.status, dataclasses.replace(obs, written=d1.traffic), sim.now)
        if (d1.status.phase, d1.status.current_step) == (before.phase, before.current_step):
            assert d2.status == d1.status and d2.traffic == d1.traffic
            checked += 1
        sim.apply(d1)
        sim.now += timedelta(seconds=max(d1.requeue_after or 5, 0.5))
    assert checked > 10 and sim.status.phase is Phase.HEALTHY


def test_stable_with_no_ready_endpoints_gets_no_weight():
    sim = Sim(canary({"setWeight": 30}, {"pause": {}})).run()
    sim.stable = WorkloadState(4, 0, "v1")
    sim.intents = Intents(abort="a1")
    d = sim.reconcile()
    assert d.traffic.weights.canary == 30  # holds; 100% to a stable with no endpoints is worse
    assert "no ready endpoints" in d.status.message
    sim.stable = WorkloadState(4, 4, "v1")
    sim.run()
    assert sim.status.phase is Phase.DEGRADED


# -- blue-green ---------------------------------------------------------------------------


def blue_green(**bg):
    return rollout_spec({"strategy": {"blueGreen": {"previewRoute": {"name": "preview", "match": [
        {"headerName": "x-preview", "headerValue": {"exact": "1"}}]}, **bg}}})


def test_blue_green_previews_then_cuts_over_on_promote_and_scales_down_later():
    sim = Sim(blue_green(scaleDownDelaySeconds=60)).run()
    assert sim.status.phase is Phase.PAUSED and sim.status.pause_reason == "AwaitingPromotion"
    assert sim.written.weights.stable == 100 and sim.written.header_routes[0].name == "preview"
    assert sim.canary.replicas == 4  # the whole new version is up before cut-over
    sim.intents = Intents(promote="p1")
    sim.run(until=lambda s: s.written.weights.canary == 100)
    assert sim.written.weights.canary == 100
    assert sim.stable.revision == "v1"  # blue kept warm during the scale-down delay
    sim.run()
    assert sim.status.phase is Phase.HEALTHY and sim.stable.revision == "v2"
    assert sim.weights_written() == [(100, 0), (0, 100), (100, 0)]


def test_blue_green_post_promotion_failure_switches_back_at_once():
    spec = blue_green(autoPromotionSeconds=0, postPromotionAnalysis={})
    post_index = 2
    sim = Sim(spec, analysis=ResolvedAnalysis(steps={post_index: (slo_metric(),)}),
              metric=lambda r, m: Value(500.0))
    sim.run()
    assert sim.status.phase is Phase.DEGRADED
    assert sim.weights_written() == [(100, 0), (0, 100), (100, 0)]
    assert sim.stable.revision == "v1"


def test_blue_green_auto_promotion_waits_its_seconds():
    sim = Sim(blue_green(autoPromotionSeconds=120)).run(
        until=lambda s: s.written is not None and s.written.weights.canary == 100)
    cutover = sim.decisions[-1].status.step_started_at
    assert sim.now - cutover >= timedelta(seconds=120)


def test_a_closed_mutual_tls_gate_holds_the_step_and_says_why():
    from meshctl.domain.engine import Gate

    class GatedSim(Sim):
        gate: Gate | None = None

        def observation(self):
            return dataclasses.replace(super().observation(), gate=self.gate)

    sim = GatedSim(canary({"setWeight": 10}, {"setWeight": 50}))
    sim.gate = Gate(False, "canary traffic without mutual_tls: mTLS share 0.8")
    sim.run(passes=20)
    assert sim.status.current_step == 0 and sim.weights_written()[-1] == (90, 10)
    assert "held by the mutual TLS gate: canary traffic without mutual_tls" in sim.status.message
    assert sim.status.condition("MutualTLS").status == "False"
    assert not any(e.reason == "TrafficVerified" for d in sim.decisions for e in d.events)
    sim.gate = Gate(True, "")
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    assert sim.status.condition("MutualTLS").status == "True"


def test_a_promotion_whose_status_saves_were_lost_goes_on_and_never_sends_traffic_back():
    """Given passes that began the promotion (the stable Deployment took the new template,
    then traffic went back to it) and died before saving the status, the next pass finds
    the stable Deployment at the new revision and continues promoting: it never writes the
    last step's weights again."""
    sim = Sim(canary({"setWeight": 20}, {"setWeight": 80}))
    sim.run(until=lambda s: s.status.current_step == 1 and s.observed is not None
            and s.observed.weights.canary == 80)
    for _ in range(3):
        saved = sim.status
        sim.reconcile()
        sim.status = saved  # killed before the status save: only the world changed
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    assert sim.weights_written() == [(100, 0), (80, 20), (20, 80), (100, 0)]


def _killed_after_the_abort_write() -> Sim:
    """Analysis at 80/20 fails once (83.2 ms); the pass writes 100/0 and dies before saving
    its status. Every later measurement passes (10 ms)."""
    answers = iter([Value(83.2)])
    sim = Sim(canary({"setWeight": 20}, {"analysis": {}}, {"setWeight": 60}),
              analysis=ResolvedAnalysis(steps={1: (slo_metric(),)}),
              metric=lambda run, metric: next(answers, Value(10.0)))
    sim.run(until=lambda s: s.status.current_step == 1)
    for _ in range(10):
        saved = sim.status
        decision = sim.reconcile()
        if sim.written == TrafficSplit.stable_only():
            sim.status = saved  # killed before the status save: only the world changed
            return sim
        sim.now += timedelta(seconds=decision.requeue_after or 1)
    raise AssertionError("the analysis never failed")


def test_an_abort_whose_status_save_was_lost_goes_on_and_never_sends_traffic_back():
    """Given a pass that wrote the rollback and died before saving its status, the next
    pass finds 100/0 written while the status holds 80/20: it aborts on, although the
    analysis would now pass, and never writes the canary's weight again."""
    sim = _killed_after_the_abort_write()
    assert measurements_due(sim.spec, sim.status, sim.observation(), sim.now) == []
    sim.run()
    assert sim.weights_written() == [(100, 0), (80, 20), (100, 0)]
    assert sim.status.phase is Phase.DEGRADED
    assert sim.status.abort.reason == "TrafficWithdrawn"
    assert "an abort whose status was not saved" in sim.status.message
    assert sim.canary.replicas == 0


@pytest.mark.parametrize("written, corrected", [
    (TrafficSplit(Weights(50, 50)), True),  # other weights: drift, put back
    (TrafficSplit.stable_only(), False),  # the canary's traffic taken away: abort
])
def test_weights_someone_else_wrote_are_put_back_unless_the_canary_lost_all(written, corrected):
    sim = Sim(canary({"setWeight": 20}, {"pause": {}}))
    sim.run(until=lambda s: s.status.phase is Phase.PAUSED)
    sim.written = sim.observed = written
    sim.run()
    assert (sim.written.weights.canary == 20) is corrected
    assert sim.status.phase is (Phase.PAUSED if corrected else Phase.DEGRADED)


def test_header_routes_lost_at_a_step_without_weight_are_written_again():
    """A header route but no weight yet: 100/0 written is what a restarted local mesh
    serves (the status keeps the route's name only), not an abort."""
    spec = canary({"setHeaderRoute": {"name": "beta", "match": [
        {"headerName": "x-beta", "headerValue": {"exact": "1"}}]}}, {"pause": {}})
    sim = Sim(spec)
    sim.run(until=lambda s: s.status.phase is Phase.PAUSED)
    routes = sim.written.header_routes
    assert routes
    sim.written = sim.observed = TrafficSplit.stable_only()
    sim.run()
    assert sim.status.phase is Phase.PAUSED and sim.written.header_routes == routes


def test_a_new_revision_after_a_lost_status_save_starts_again_and_does_not_abort():
    """The new revision's first pass writes 100/0 (its canary is not ready) and dies before
    saving: the next pass sees the old revision's 80/20 in status, 100/0 written, and a
    revision that is not the status's: it starts the new rollout."""
    sim = Sim(canary({"setWeight": 20}, {"pause": {}}))
    sim.run(until=lambda s: s.status.phase is Phase.PAUSED)
    saved = sim.status
    sim.revision = "v3"
    sim.reconcile()
    assert sim.written == TrafficSplit.stable_only()
    sim.status = saved
    sim.reconcile()
    assert sim.status.phase is Phase.PROGRESSING
    assert sim.status.current_revision == "v3" and sim.status.abort is None


def _abort_while_stable_has_no_ready_pods() -> Sim:
    """Canary at 99/1 written but not yet applied (the data plane still shows 100/0), then
    stable loses every ready pod and the user aborts: the case hypothesis found."""
    sim = Sim(canary({"setWeight": 1}), replicas=4)
    sim.reconcile()  # adopt the baseline: 100/0 written and observed
    sim.data_plane_applies = False
    sim.run(passes=20, until=lambda s: s.written is not None and s.written.weights.canary == 1)
    assert sim.written is not None and sim.written.weights.canary == 1
    assert sim.observed == TrafficSplit.stable_only()
    sim.stable = dataclasses.replace(sim.stable, ready=0)
    sim.intents = Intents(abort="a1")
    return sim


def test_abort_while_stable_has_no_ready_pods_never_strands_weight_on_a_scaled_down_canary():
    sim = _abort_while_stable_has_no_ready_pods()
    for i in range(40):
        sim.data_plane_applies = i >= 2  # the data plane catches up with 99/1 later
        d = sim.reconcile()
        written = sim.written.weights if sim.written else None
        assert not (d.status.phase is Phase.DEGRADED and written and written.canary > 0), \
            f"pass {i}: Degraded with {written} still written"
        assert not (d.workloads.canary_replicas == 0 and written and written.canary > 0), \
            f"pass {i}: canary scaled to 0 while it takes {written.canary}%"
        sim.now += timedelta(seconds=5)
    assert sim.status.phase is Phase.ABORTING  # waits for stable, with the weight held
    sim.stable = dataclasses.replace(sim.stable, ready=4)  # stable recovers
    sim.run()
    assert sim.status.phase is Phase.DEGRADED
    assert sim.written == TrafficSplit.stable_only() and sim.canary.replicas == 0


def test_a_pass_that_changes_nothing_writes_nothing_while_traffic_is_held():
    sim = _abort_while_stable_has_no_ready_pods()
    sim.data_plane_applies = True
    sim.reconcile()
    sim.now += timedelta(seconds=2)
    first = sim.reconcile().status
    sim.now += timedelta(seconds=2)
    second = sim.reconcile().status
    assert "holding traffic" in second.message
    assert second.message.count("holding traffic") == 1
    assert second == first


# -- a metrics source that does not answer ------------------------------------------------

DOWN = Unavailable("Prometheus http://127.0.0.1:9 did not answer within 10s: connection refused")


def _analysis_sim(**kw):
    spec = canary({"setWeight": 10}, {"analysis": {}}, {"setWeight": 100})
    return Sim(spec, analysis=ResolvedAnalysis(steps={1: (slo_metric(interval=10),)}), **kw)


def test_a_source_that_does_not_answer_pauses_then_resumes_by_itself_when_it_does():
    """Given Prometheus down at the analysis step, the rollout pauses (AnalysisUnavailable)
    at 90/10 and asks again every interval; when Prometheus answers it resumes, measures
    afresh and promotes, with no one touching it."""
    sim = _analysis_sim(metric=lambda run, m: DOWN)
    sim.run(passes=30)
    assert sim.status.phase is Phase.PAUSED
    assert sim.status.pause_reason == "AnalysisUnavailable"
    assert "does not answer" in sim.status.message and "connection refused" in sim.status.message
    assert sim.weights_written()[-1] == (90, 10)
    probes = sim.status.run("step-1").metrics[0].measurements
    assert len(probes) == MAX_MEASUREMENTS_KEPT and all(r.unavailable for r in probes)
    assert [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(probes)] == [10.0] * 9
    assert not is_finished(sim.decisions[-1])  # a local run keeps waiting
    sim.metric = lambda run, m: Value(5.0)
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    assert sim.weights_written() == [(100, 0), (90, 10), (0, 100), (100, 0)]
    reasons = [e.reason for d in sim.decisions for e in d.events]
    assert reasons.count("AnalysisAvailable") == 1 and "Resumed" not in reasons


def test_after_the_source_answers_the_analysis_starts_again_from_scratch():
    """The answering probe is not the new run's first measurement: the run starts at the
    resume and takes its measurement when due (its initial delay)."""
    sim = _analysis_sim(metric=lambda run, m: DOWN)
    sim.run(passes=5)
    sim.metric = lambda run, m: Value(5.0)
    sim.run(until=lambda s: s.status.phase is Phase.PROGRESSING)
    run = sim.status.run("step-1")
    assert run is not None and run.verdict is Verdict.PENDING
    assert run.started_at == sim.now and run.metrics[0].count == 0


@pytest.mark.parametrize("answer", [Value(500.0), Error("bad_data: parse error")])
def test_a_source_that_answers_with_bad_news_resumes_into_a_verdict_with_data(answer):
    """Resuming never promotes on its own: the fresh run judges what Prometheus now says."""
    sim = _analysis_sim(metric=lambda run, m: DOWN)
    sim.run(passes=5)
    sim.metric = lambda run, m: answer
    sim.run()
    assert sim.status.phase is Phase.DEGRADED
    assert sim.status.abort.reason == "AnalysisFailed"


def test_no_data_from_a_source_that_answers_waits_for_a_person():
    """Too little traffic (Prometheus answered) is a verdict with data: the pause stays
    when measurements would now pass, until `rollout resume`."""
    sim = _analysis_sim(metric=lambda run, m: NoData("3 requests, fewer than minRequests 5"))
    sim.run()
    assert sim.status.pause_reason == "InconclusiveAnalysis"
    sim.metric = lambda run, m: Value(5.0)
    sim.run(passes=30)
    assert sim.status.phase is Phase.PAUSED and sim.status.pause_reason == "InconclusiveAnalysis"
    sim.intents = Intents(resume="r1")
    sim.run()
    assert sim.status.phase is Phase.HEALTHY


def test_a_user_pause_is_not_lifted_when_the_source_answers():
    """spec.paused during an outage: when Prometheus answers, the pause becomes the user's
    (UserPaused) and nothing moves until spec.paused is false."""
    sim = _analysis_sim(metric=lambda run, m: DOWN)
    sim.run(passes=5)
    sim.spec = dataclasses.replace(sim.spec, paused=True)
    sim.metric = lambda run, m: Value(5.0)
    sim.run(passes=30)
    assert sim.status.phase is Phase.PAUSED and sim.status.pause_reason == "UserPaused"
    assert sim.weights_written()[-1] == (90, 10)
    sim.spec = dataclasses.replace(sim.spec, paused=False)
    sim.run()
    assert sim.status.phase is Phase.HEALTHY


def test_the_unavailable_pause_survives_a_restart_and_still_lifts_itself():
    sim = _analysis_sim(metric=lambda run, m: DOWN, restart_every_pass=True)
    sim.run(passes=10)
    assert sim.status.pause_reason == "AnalysisUnavailable"
    sim.metric = lambda run, m: Value(5.0)
    sim.run()
    assert sim.status.phase is Phase.HEALTHY


def test_background_analysis_unavailable_pauses_and_resumes():
    spec = canary({"setWeight": 10}, {"pause": {"duration": "60s"}}, {"setWeight": 50},
                  {"pause": {"duration": "60s"}})
    resolved = ResolvedAnalysis(background=(slo_metric(count=None, interval=10),),
                                background_from=1)
    sim = Sim(spec, analysis=resolved, metric=lambda run, m: DOWN)
    sim.run(passes=20)
    assert sim.status.pause_reason == "AnalysisUnavailable"
    assert sim.weights_written() == [(100, 0), (90, 10)]  # the 60 s pause never ended
    sim.metric = lambda run, m: Value(5.0)
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    assert sim.weights_written() == [(100, 0), (90, 10), (50, 50), (100, 0)]


def test_a_resume_or_promote_during_an_outage_is_honoured():
    sim = _analysis_sim(metric=lambda run, m: DOWN)
    sim.run(passes=5)
    sim.intents = Intents(promote="p1")
    sim.run()
    assert sim.status.phase is Phase.HEALTHY  # a person chose to skip the analysis


def test_a_source_back_without_data_yet_holds_the_pause_until_its_data_comes():
    """Prometheus answers again with an empty window ("no series": it has not scraped a
    window since it came back): the pause holds; data then resumes the rollout."""
    sim = _analysis_sim(metric=lambda run, m: DOWN)
    sim.run(passes=5)
    sim.metric = lambda run, m: NoData("query returned no series")
    sim.run(passes=2)  # 10 s of answers without data: within the patience (20 s)
    assert sim.status.pause_reason == "AnalysisUnavailable"
    sim.metric = lambda run, m: Value(5.0)
    sim.run()
    assert sim.status.phase is Phase.HEALTHY


def test_a_source_back_without_data_for_too_long_waits_for_a_person():
    """Answering with no data past the metric's patience (2 x (0 s + 1 x 10 s) = 20 s) is
    a verdict with data: the pause becomes InconclusiveAnalysis and stays."""
    sim = _analysis_sim(metric=lambda run, m: DOWN)
    sim.run(passes=5)
    sim.metric = lambda run, m: NoData("query returned no series")
    sim.run(passes=30)
    assert sim.status.phase is Phase.PAUSED
    assert sim.status.pause_reason == "InconclusiveAnalysis"
    assert "answers again but has no data" in sim.status.message
    quiet = [r for r in sim.status.run("step-1").metrics[0].measurements if not r.unavailable]
    assert (quiet[-1].at - quiet[0].at).total_seconds() == 20.0
    sim.metric = lambda run, m: Value(5.0)
    sim.run(passes=30)
    assert sim.status.phase is Phase.PAUSED  # no probes now: a person resumes


# -- boundaries and guards, one decide() each (found by flipping an operator in engine.py) --

V1, V2 = "v1", "v2"
SPLIT_90_10 = TrafficSplit(Weights(90, 10))
STABLE_PODS, CANARY_POD = WorkloadState(4, 4, V1), WorkloadState(1, 1, V2)


def _status(phase: Phase, **fields) -> RolloutStatus:
    given = {"stable_revision": V1, "current_revision": V2, "step_started_at": T0, **fields}
    return dataclasses.replace(RolloutStatus(), phase=phase, **given)


def _obs(written: TrafficSplit, observed: TrafficSplit | None = None, *,
         stable: WorkloadState = STABLE_PODS, canary_pods: WorkloadState = CANARY_POD,
         **fields) -> Observation:
    return Observation(revision=V2, stable=stable, canary=canary_pods, written=written,
                       observed=written if observed is None else observed, **fields)


def test_pods_left_from_an_earlier_canary_are_not_counted_ready_for_the_new_one():
    """A new template right after an abort: the canary Deployment still runs the aborted
    revision, 1/1 ready. The step waits and says 0 of the new revision are ready, the same
    message it keeps while the new pods start (no status write in between)."""
    status = _status(Phase.PROGRESSING)
    old = decide(canary({"setWeight": 10}), status, _obs(
        TrafficSplit.stable_only(), canary_pods=WorkloadState(1, 1, "v0")), T0)
    starting = decide(canary({"setWeight": 10}), old.status, _obs(
        TrafficSplit.stable_only(), canary_pods=WorkloadState(1, 0, V2)), T0)
    assert old.traffic == TrafficSplit.stable_only()
    assert old.status.message == "step 0: waiting for canary ready replicas 0/1 before setWeight"
    assert starting.status == old.status


def test_promotion_counts_only_stable_pods_of_the_new_revision_ready():
    """Promoting: the stable Deployment's pods of the old revision are 4/4 ready, but none
    runs the new one yet. The status says 0/4, the same as while the new pods start."""
    status = _status(Phase.PROMOTING)
    before = decide(canary({"setWeight": 10}), status, _obs(SPLIT_90_10), T0)
    starting = decide(canary({"setWeight": 10}), before.status, _obs(
        SPLIT_90_10, stable=WorkloadState(4, 0, V2)), T0)
    assert before.traffic == SPLIT_90_10
    assert before.status.message == "promoting: stable at revision v2: 0/4 ready"
    assert starting.status == before.status


def test_the_canary_keeps_its_pods_while_the_data_plane_still_shows_it_weight():
    """Healthy again, 100/0 written but the data plane still applies 90/10: scaling the
    canary to 0 now would drop the requests still routed to it."""
    status = _status(Phase.HEALTHY, stable_revision=V2)
    held = decide(canary({"setWeight": 10}), status, _obs(TrafficSplit.stable_only(),
                                                          SPLIT_90_10), T0)
    assert held.workloads.canary_replicas == 1 and held.requeue_after is not None
    done = decide(canary({"setWeight": 10}), status, _obs(TrafficSplit.stable_only()), T0)
    assert done.workloads.canary_replicas == 0


@pytest.mark.parametrize("seconds, replicas", [(29.9, 1), (30, 0)])
def test_the_canary_scales_down_when_the_abort_delay_has_passed(seconds, replicas):
    """abortScaleDownDelaySeconds 30, stable observed at T0: at T0+30 s, not before."""
    spec = canary({"setWeight": 10}, abortScaleDownDelaySeconds=30)
    status = _status(Phase.DEGRADED, abort=AbortStatus("AnalysisFailed", T0,
                                                       stable_observed_at=T0))
    d = decide(spec, status, _obs(TrafficSplit.stable_only()), T0 + timedelta(seconds=seconds))
    assert d.workloads.canary_replicas == replicas


@pytest.mark.parametrize("seconds, phase", [(60, Phase.PROGRESSING), (60.5, Phase.DEGRADED)])
def test_the_progress_deadline_aborts_once_it_is_exceeded(seconds, phase):
    """progressDeadlineSeconds 60, the canary never ready: 60 s without progress is within
    the deadline; past it, the step aborts (traffic is still all on stable: Degraded in the
    same pass)."""
    spec = canary({"setWeight": 10}, progressDeadlineSeconds=60)
    status = _status(Phase.PROGRESSING)
    d = decide(spec, status, _obs(TrafficSplit.stable_only(),
                                  canary_pods=WorkloadState(1, 0, V2)),
               T0 + timedelta(seconds=seconds))
    assert d.status.phase is phase


@pytest.mark.parametrize("ready, traffic", [(2, TrafficSplit(Weights(50, 50))),
                                            (4, TrafficSplit.stable_only())])
def test_promotion_returns_traffic_to_stable_only_when_every_stable_pod_is_ready(ready, traffic):
    spec = canary({"setWeight": 50})
    status = _status(Phase.PROMOTING, current_step=1)
    d = decide(spec, status, _obs(TrafficSplit(Weights(50, 50)),
                                  stable=WorkloadState(4, ready, V2),
                                  canary_pods=WorkloadState(2, 2, V2)), T0)
    assert d.traffic == traffic
    if ready < 4:
        assert f"{ready}/4 ready" in d.status.message


@pytest.mark.parametrize("seconds, step", [(29.9, 1), (30, 2)])
def test_a_timed_pause_ends_when_its_duration_has_passed(seconds, step):
    spec = canary({"setWeight": 10}, {"pause": {"duration": "30s"}}, {"setWeight": 50})
    status = _status(Phase.PROGRESSING, current_step=1)
    d = decide(spec, status, _obs(SPLIT_90_10, canary_pods=WorkloadState(2, 2, V2)),
               T0 + timedelta(seconds=seconds))
    assert d.status.current_step == step


@pytest.mark.parametrize("seconds, held", [(9.9, False), (10, True)])
def test_a_step_says_it_is_held_once_the_observe_timeout_has_passed(seconds, held):
    spec = canary({"setWeight": 10})
    status = _status(Phase.PROGRESSING)
    d = decide(spec, status, _obs(SPLIT_90_10, TrafficSplit.stable_only(), observe_timeout=10),
               T0 + timedelta(seconds=seconds))
    assert d.status.message.startswith("step 0 held") is held
    assert any(e.reason == "TrafficNotObserved" for e in d.events) is held


def test_background_no_data_during_a_pause_for_promote_keeps_the_pause_reason():
    """Paused at an indefinite pause step, background analysis finds no data: the rollout
    stays paused for the step (PausedAtStep); the analysis pauses it once it moves on."""
    spec = canary({"setWeight": 10}, {"pause": {}}, {"setWeight": 50})
    resolved = ResolvedAnalysis(background=(slo_metric(count=None, interval=10),),
                                background_from=1)
    sim = Sim(spec, analysis=resolved, metric=lambda run, m: NoData("0 requests"))
    sim.run(passes=10)
    assert sim.status.phase is Phase.PAUSED and sim.status.pause_reason == "PausedAtStep"
    assert sim.status.run("background").verdict is Verdict.INCONCLUSIVE
    sim.intents = Intents(promote="p1")
    sim.run(passes=10)
    assert sim.status.pause_reason == "InconclusiveAnalysis" and sim.status.current_step == 2


def test_a_stable_deployment_edited_outside_meshctl_is_reported_once_and_cleared_when_undone():
    """Given a Healthy rollout whose stable Deployment someone changed by hand (its Pods run
    what no analysis checked), the status says so with the field, one Warning is emitted,
    no traffic moves, and the condition clears once the template is back."""
    sim = Sim(canary(*STEPS), revision="v1").run()
    assert sim.status.phase is Phase.HEALTHY
    edited = "spec.template.spec.containers[0].image: web:3, not web:1"
    sim.stable = dataclasses.replace(sim.stable, edited=edited)
    first, second = sim.reconcile(), sim.reconcile()
    condition = sim.status.condition("StableEdited")
    assert condition is not None and condition.status == "True"
    assert edited in condition.message and "changed outside meshctl" in condition.message
    assert [e.reason for e in first.events] == ["StableEdited"]
    assert first.events[0].type == "Warning"
    assert second.events == ()
    assert sim.status.phase is Phase.HEALTHY and sim.weights_written() == [(100, 0)]
    sim.stable = dataclasses.replace(sim.stable, edited="")
    sim.reconcile()
    cleared = sim.status.condition("StableEdited")
    assert cleared is not None and cleared.status == "False" and cleared.reason == "InSync"


@pytest.mark.parametrize("ending", ["abort", "new template", "template reverted"])
def test_a_pass_that_ends_the_analysis_measures_nothing_first(ending):
    """An abort (or a new template) mid-analysis writes the traffic at once: the queries it
    would make first cannot change the outcome, and with Prometheus slow or down they held
    the rollback back by each query's timeout."""
    measured: list[str] = []

    def metric(run: str, name: str) -> Value:
        measured.append(run)
        return Value(10.0)

    spec = canary({"setWeight": 20}, {"analysis": {}}, {"setWeight": 80})
    sim = Sim(spec, analysis=ResolvedAnalysis(steps={1: (slo_metric(count=5, interval=5),)}),
              metric=metric)
    sim.run(until=lambda s: bool(measured))  # in the analysis, measuring
    assert sim.status.phase is Phase.PROGRESSING and sim.written == TrafficSplit(
        Weights.canary_at(20))
    sim.now += timedelta(seconds=5)  # the next measurement is due
    assert measurements_due(sim.spec, sim.status, sim.observation(), sim.now)
    if ending == "abort":
        sim.intents = Intents(abort="a1")
    else:
        sim.revision = "v3" if ending == "new template" else "v1"
    taken = len(measured)
    d = sim.reconcile()
    assert len(measured) == taken
    assert d.traffic == TrafficSplit.stable_only()
    assert d.status.phase is (Phase.PROGRESSING if ending == "new template" else Phase.ABORTING)
