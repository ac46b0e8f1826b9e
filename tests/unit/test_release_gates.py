"""Release gates (spec.gates): validation with field paths, windows judged from a fixed
clock, and whole rollouts stepped through decide() with gates that pass, fail, wait and
outlive their deadlines. Outside gates (webhook, job, approval) are judged here by a plain
function standing where the shell would report."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from meshctl.domain.engine import Observation, gates_due
from meshctl.domain.intents import Action, Intents
from meshctl.domain.phases import GATE_DEADLINE, Ending, Phase, ending_of
from meshctl.domain.problems import InvalidSpec
from meshctl.domain.release_gates import (
    GateReport,
    GateRequest,
    GateVerdict,
    TimeWindow,
    Weekday,
    WindowGate,
    window_state,
)
from meshctl.domain.schedule import gate_points, schedule
from meshctl.domain.status import RolloutStatus
from meshctl.domain.validation import load_document

from .sim import T0, Sim, canary
from .test_validation import BASE

# 2026-12-04 is a Friday; Stockholm is UTC+1 in winter, UTC+2 in summer.
FRIDAY_1630_LOCAL = datetime(2026, 12, 4, 15, 30, tzinfo=UTC)
MONDAY_0900_LOCAL = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
BUSINESS_HOURS = {"timeZone": "Europe/Stockholm",
                  "windows": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
                               "start": "09:00", "end": "16:00"}]}
STEPS = ({"setWeight": 20}, {"pause": {"duration": "1m"}}, {"setWeight": 60})


def gated(*gates: dict[str, Any], steps: tuple[dict[str, Any], ...] = STEPS) -> Any:
    return canary(*steps, gates=list(gates))


def webhook(name: str = "risk", at: str = "beforeTraffic", **extra: Any) -> dict[str, Any]:
    return {"name": name, "at": [at], "webhook": {"url": "https://risk.example/assess"},
            **extra}


Judge = Callable[[GateRequest, datetime], GateReport | None]


@dataclasses.dataclass
class GatedSim(Sim):
    """The in-memory world, with the shell's judgement of outside gates."""

    judge: Judge = lambda request, now: None
    asked: list[str] = dataclasses.field(default_factory=list)

    def observation(self) -> Observation:
        obs = super().observation()
        reports = {}
        for request in gates_due(self.spec, self.status, obs):
            self.asked.append(request.key)
            report = self.judge(request, self.now)
            if report is not None:
                reports[request.key] = report
        return dataclasses.replace(obs, gate_reports=reports)


def answer(verdict: GateVerdict, message: str = "", after: float = 0.0) -> Judge:
    """Every outside gate answers ``verdict`` once it has waited ``after`` seconds."""
    def judge(request: GateRequest, now: datetime) -> GateReport | None:
        if (now - request.since).total_seconds() < after:
            return GateReport(GateVerdict.WAITING, "not yet")
        return GateReport(verdict, message or verdict.value.lower())
    return judge


# --- validation --------------------------------------------------------------------------


def with_gates(*gates: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["spec"]["gates"] = list(gates)
    return doc


@pytest.mark.parametrize("gate, path, fragment", [
    ({"name": "hours", "at": ["beforeIncrease"], "window": {"timeZone": "Europe/Stokholm"}},
     "spec.gates[0].window.timeZone", "is not an IANA time zone; use a name like "
     "Europe/Stockholm"),
    ({"name": "hours", "at": ["beforeIncrease"], "window": {"timeZone": "../../etc/passwd"}},
     "spec.gates[0].window.timeZone", "is not an IANA time zone"),
    ({"name": "cab", "at": ["beforePromotion"], "approval": {"count": 0, "users": ["ann"]}},
     "spec.gates[0].approval.count", "0 is below 1; use 1 or more"),
    ({"name": "cab", "at": ["beforePromotion"], "approval": {"count": 2, "users": ["ann"]}},
     "spec.gates[0].approval.count", "needs 2 distinct approvers but only 1 are allowed"),
    ({"name": "cab", "at": ["beforePromotion"], "approval": {"count": 1}},
     "spec.gates[0].approval", "allows nobody; list users, groups or spiffeIds"),
    ({"name": "hours", "at": ["beforeIncrease"], "window": {
        "timeZone": "UTC", "windows": [{"start": "09:00", "end": "09:00"}]}},
     "spec.gates[0].window.windows[0].end", "never opens; make end later than start"),
    ({"name": "hours", "at": ["beforeIncrease"], "window": {
        "timeZone": "UTC", "windows": [{"start": "22:00", "end": "02:00"}]}},
     "spec.gates[0].window.windows[0].end", "write two windows"),
    ({"name": "hours", "at": ["beforeIncrease"], "window": {
        "timeZone": "UTC", "windows": [{"start": "9:00", "end": "16:00"}]}},
     "spec.gates[0].window.windows[0].start", "does not match"),
    ({"name": "hours", "at": ["beforeIncrease"], "window": {
        "timeZone": "UTC", "freezes": [{"start": "2026-12-31", "end": "2026-12-20"}]}},
     "spec.gates[0].window.freezes[0].end", "is before start 2026-12-31; swap them"),
    ({"name": "hours", "at": ["beforeIncrease"], "window": {
        "timeZone": "UTC", "freezes": [{"start": "2026-02-30", "end": "2026-03-01"}]}},
     "spec.gates[0].window.freezes[0].start", "is not a date; use YYYY-MM-DD"),
    (webhook(webhook={"url": "risk.example.com/assess"}), "spec.gates[0].webhook.url",
     "is not an http(s) URL; write it like https://"),
    (webhook(webhook={"url": "ftp://risk.example.com/"}), "spec.gates[0].webhook.url",
     "is not an http(s) URL"),
    (webhook(webhook={"url": "https://risk.example.com:99999/"}), "spec.gates[0].webhook.url",
     "is not a URL"),
    (webhook(webhook={"url": "https://r.example/", "caBundle": "not pem"}),
     "spec.gates[0].webhook.caBundle", "is not PEM"),
    ({"name": "risk", "at": ["beforeTraffic"]}, "spec.gates[0]",
     "give exactly one of window, webhook, approval, job"),
    ({"name": "risk", "at": []}, "spec.gates[0].at", "name where the gate applies"),
    ({"name": "risk", "at": ["beforeLunch"], "webhook": {"url": "https://r.example/"}},
     "spec.gates[0].at[0]", "is not one of beforeTraffic"),
    ({"name": "cab", "at": ["onRollback"], "approval": {"users": ["ann"]}},
     "spec.gates[0].at", "an approval holds the rollout"),
])
def test_a_bad_gate_is_refused_with_its_field_path_and_the_fix(gate, path, fragment):
    with pytest.raises(InvalidSpec) as caught:
        load_document(with_gates(gate))
    found = [p for p in caught.value.problems if p.path == path]
    assert found, caught.value.problems
    assert fragment in found[0].message, found[0].message


def test_two_gates_with_one_name_are_refused():
    with pytest.raises(InvalidSpec, match="gate name 'risk' is used twice"):
        load_document(with_gates(webhook(), webhook(at="beforePromotion")))


def test_the_payment_example_gates_validate():
    rollout = load_document(with_gates(
        {"name": "hours", "at": ["beforeTraffic", "beforeIncrease"], "window": BUSINESS_HOURS},
        webhook(),
        {"name": "cab", "at": ["beforePromotion"],
         "approval": {"count": 2, "groups": ["release-managers"], "forbidStarter": True}},
        {"name": "compliance", "at": ["beforeTraffic"], "deadline": "15m",
         "job": {"template": {"template": {"spec": {"containers": [{"name": "c"}]}}}}}))
    assert [g.kind for g in rollout.spec.gates] == ["window", "webhook", "approval", "job"]


# --- windows -------------------------------------------------------------------------------


def window(*windows: TimeWindow, freezes: tuple[Any, ...] = ()) -> WindowGate:
    return WindowGate("Europe/Stockholm", windows, freezes)


WEEKDAYS = (Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI)
OFFICE = TimeWindow("09:00", "16:00", WEEKDAYS)


@pytest.mark.parametrize("now, is_open, opens_at", [
    # Tuesday 10:00 UTC is 11:00 in Stockholm: open.
    (datetime(2026, 12, 8, 10, 0, tzinfo=UTC), True, None),
    # Friday 16:30 local: closed until Monday 09:00 local (08:00 UTC).
    (FRIDAY_1630_LOCAL, False, MONDAY_0900_LOCAL),
    # Saturday noon: the same Monday.
    (datetime(2026, 12, 5, 12, 0, tzinfo=UTC), False, MONDAY_0900_LOCAL),
    # Tuesday 07:30 UTC (08:30 local): the same day at 09:00 local.
    (datetime(2026, 12, 8, 7, 30, tzinfo=UTC), False, datetime(2026, 12, 8, 8, 0, tzinfo=UTC)),
    # Summer time: Wednesday 2026-06-10 06:30 UTC is 08:30 local (UTC+2), opens 07:00 UTC.
    (datetime(2026, 6, 10, 6, 30, tzinfo=UTC), False, datetime(2026, 6, 10, 7, 0, tzinfo=UTC)),
    # 16:00 local is already closed (end is excluded).
    (datetime(2026, 12, 8, 15, 0, tzinfo=UTC), False, datetime(2026, 12, 9, 8, 0, tzinfo=UTC)),
])
def test_a_window_is_open_inside_its_hours_and_says_when_it_opens(now, is_open, opens_at):
    state = window_state(window(OFFICE), now)
    assert (state.open, state.opens_at) == (is_open, opens_at)


def test_a_freeze_closes_a_window_and_moves_the_next_opening_past_it():
    from meshctl.domain.release_gates import Freeze

    gate = window(OFFICE, freezes=(Freeze("2026-12-07", "2026-12-08", "year-end"),))
    state = window_state(gate, FRIDAY_1630_LOCAL)
    assert state.opens_at == datetime(2026, 12, 9, 8, 0, tzinfo=UTC)
    frozen = window_state(gate, datetime(2026, 12, 8, 10, 0, tzinfo=UTC))
    assert not frozen.open and "frozen (year-end)" in frozen.why


def test_a_window_frozen_for_longer_than_the_lookahead_says_it_does_not_open():
    from meshctl.domain.release_gates import Freeze

    state = window_state(window(OFFICE, freezes=(Freeze("2026-01-01", "2029-01-01"),)),
                         FRIDAY_1630_LOCAL)
    assert not state.open and state.opens_at is None


# --- where gates stand in the schedule ---------------------------------------------------


def test_gate_points_are_before_the_first_move_and_before_each_increase():
    steps = schedule(canary({"setWeight": 20}, {"pause": {}}, {"setWeight": 60},
                            {"analysis": {}}, {"setWeight": 60}))
    points = [[p.value for p in gate_points(steps, i)] for i in range(len(steps))]
    assert points == [["beforeTraffic", "beforeIncrease"], [], ["beforeIncrease"], [], []]


def test_a_header_route_first_moves_traffic_without_increasing_the_weight():
    steps = schedule(canary({"setHeaderRoute": {"name": "beta", "match": [
        {"headerName": "x-beta", "headerValue": {"exact": "1"}}]}}, {"setWeight": 10}))
    assert [[p.value for p in gate_points(steps, i)] for i in range(2)] == [
        ["beforeTraffic"], ["beforeIncrease"]]


# --- rollouts through gates ------------------------------------------------------------------


def test_outside_the_window_no_traffic_moves_until_it_opens_and_status_says_until_when():
    """Given a business-hours window before every increase, started Friday 16:30 in
    Stockholm; when the rollout is driven on a clock; then nothing reaches the canary before
    Monday 09:00 local, and the status said so while it waited."""
    sim = GatedSim(gated({"name": "hours", "at": ["beforeIncrease"], "window": BUSINESS_HOURS}),
                   now=FRIDAY_1630_LOCAL)
    sim.run(until=lambda s: s.now > FRIDAY_1630_LOCAL + timedelta(hours=1))
    assert sim.weights_written() in ([], [(100, 0)])
    assert sim.status.phase is Phase.PROGRESSING
    assert "opens Mon 2026-12-07 09:00 Europe/Stockholm (2026-12-07T08:00:00Z)" in sim.status.message
    assert sim.decisions[-1].requeue_after is not None and sim.decisions[-1].requeue_after > 0
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    first_canary = next(d for d in sim.decisions if d.traffic.weights.canary > 0)
    assert first_canary.status.gates[0].decided_at == MONDAY_0900_LOCAL


def test_a_window_closing_mid_rollout_holds_the_next_increase_only():
    """Given a window that closes at 16:00 local and a pause of an hour after 20%; then
    20% stays (a window never takes traffic back) and 60% waits until the next morning."""
    spec = gated({"name": "hours", "at": ["beforeIncrease"], "window": BUSINESS_HOURS},
                 steps=({"setWeight": 20}, {"pause": {"duration": "1h"}}, {"setWeight": 60}))
    start = datetime(2026, 12, 8, 14, 30, tzinfo=UTC)  # Tuesday 15:30 local
    sim = GatedSim(spec, now=start).run(until=lambda s: s.now > start + timedelta(hours=3))
    assert sim.weights_written()[-1] == (80, 20)
    assert "outside its windows; opens Wed 2026-12-09 09:00" in sim.status.message
    sim.run()
    assert sim.status.phase is Phase.HEALTHY and (40, 60) in sim.weights_written()


def test_a_failed_gate_before_traffic_ends_the_rollout_without_touching_traffic():
    sim = GatedSim(gated(webhook()), judge=answer(GateVerdict.FAILED, "risk too high")).run()
    assert sim.status.phase is Phase.DEGRADED
    assert sim.status.abort is not None and sim.status.abort.reason == "GateFailed"
    assert "gate risk (webhook) failed beforeTraffic: risk too high" in sim.status.message
    assert all(w.weights.canary == 0 for w in sim.writes)
    assert sim.canary.replicas == 0


def test_a_failed_gate_after_traffic_moved_rolls_back():
    sim = GatedSim(gated(webhook(at="beforeIncrease")),
                   judge=lambda r, now: GateReport(
                       GateVerdict.FAILED if r.step == 2 else GateVerdict.PASSED, "no"))
    sim.run()
    assert sim.weights_written() == [(100, 0), (80, 20), (100, 0)]
    assert sim.status.phase is Phase.DEGRADED and sim.status.abort.reason == "GateFailed"


def test_passing_gates_record_their_verdicts_and_the_rollout_completes():
    sim = GatedSim(gated(webhook(), webhook("cab", at="beforePromotion")),
                   judge=answer(GateVerdict.PASSED, "ok", after=30)).run()
    assert sim.status.phase is Phase.HEALTHY
    assert {(g.key, g.verdict) for g in sim.status.gates} == {
        ("risk@beforeTraffic#0", GateVerdict.PASSED), ("cab@beforePromotion#0", GateVerdict.PASSED)}
    reasons = [e.reason for d in sim.decisions for e in d.events]
    assert reasons.count("GatePassed") == 2 and reasons.count("GateWaiting") == 2
    # the promotion waited for its gate: promoting came after the cab verdict
    cab = next(g for g in sim.status.gates if g.name == "cab")
    promoted = next(d for d in sim.decisions if d.status.phase is Phase.PROMOTING)
    assert cab.decided_at is not None and promoted.status.step_started_at >= cab.decided_at


def test_an_abort_asks_no_gate_first():
    """A webhook gate waits (each pass asks it); the pass that aborts asks nothing: a slow or
    silent gate endpoint must not hold the rollback back by its timeout."""
    sim = GatedSim(gated(webhook("cab", at="beforePromotion")),
                   judge=answer(GateVerdict.PASSED, "ok", after=3600))
    sim.run(passes=40, until=lambda s: len(s.asked) >= 3)
    asked = len(sim.asked)
    assert asked >= 3 and sim.status.phase is Phase.PROGRESSING
    sim.intents = Intents(abort="a1")
    d = sim.reconcile()
    assert len(sim.asked) == asked
    assert d.status.phase is Phase.ABORTING and d.traffic.weights.canary == 0


def test_a_gate_waiting_past_its_deadline_pauses_for_a_human_and_resume_waits_again():
    sim = GatedSim(gated(webhook(deadline="2m")), judge=answer(GateVerdict.WAITING, "pending"))
    sim.run(until=lambda s: s.status.phase is Phase.PAUSED)
    assert sim.status.pause_reason == GATE_DEADLINE
    assert ending_of(sim.status.phase, sim.status.pause_reason) is Ending.PAUSED  # --wait: 4
    assert "still waiting after its deadline of 2m" in sim.status.message
    assert sim.weights_written() in ([], [(100, 0)])
    sim.judge = answer(GateVerdict.PASSED, "ok")
    sim.intents = Intents(resume="r1")
    sim.run()
    assert sim.status.phase is Phase.HEALTHY


def test_promote_does_not_skip_a_release_gate():
    sim = GatedSim(gated(webhook()))
    sim.run(until=lambda s: bool(s.status.gates))
    sim.intents = Intents(promote="p1")
    sim.run(passes=5)
    assert sim.weights_written() in ([], [(100, 0)])
    sim.intents = Intents(promote="p1", promote_full="f1")
    sim.run(passes=5)
    assert sim.status.phase is Phase.PROGRESSING
    assert sim.stable.revision == "v1"  # promotion waits for the gate before traffic


def test_abort_is_never_blocked_by_a_waiting_gate():
    sim = GatedSim(gated(webhook(at="beforeIncrease")),
                   judge=lambda r, now: GateReport(
                       GateVerdict.PASSED if r.step == 0 else GateVerdict.WAITING, "pending"))
    sim.run(until=lambda s: s.status.current_step == 2 and bool(s.status.gate(
        "risk@beforeIncrease#2")))
    sim.intents = Intents(abort="a1")
    decision = sim.reconcile()
    assert decision.status.phase in (Phase.ABORTING, Phase.DEGRADED)
    assert decision.traffic.weights.canary == 0


def test_a_rollback_gate_is_recorded_and_never_delays_the_rollback():
    """An onRollback webhook that never answers: the rollback writes 100/0 in the pass that
    aborts, and the gate's record fails at its deadline while the rollout rests Degraded."""
    sim = GatedSim(gated(webhook("page", at="onRollback", deadline="1m")),
                   judge=answer(GateVerdict.WAITING, "no answer"))
    sim.run(until=lambda s: s.status.current_step == 2)
    sim.intents = Intents(abort="a1")
    aborting = sim.reconcile()
    assert aborting.traffic.weights.canary == 0
    sim.run()
    assert sim.status.phase is Phase.DEGRADED
    record = sim.status.gate("page@onRollback#0")
    assert record is not None and record.verdict is GateVerdict.FAILED
    assert "no verdict within 1m" in record.message
    assert any(k.startswith("page@onRollback") for k in sim.asked)


def test_after_promotion_gates_are_judged_once_healthy():
    sim = GatedSim(gated(webhook("smoke", at="afterPromotion")),
                   judge=answer(GateVerdict.PASSED, "smoke ok")).run()
    assert sim.status.phase is Phase.HEALTHY
    assert sim.status.gate("smoke@afterPromotion#0").verdict is GateVerdict.PASSED


def test_gates_survive_a_restart_every_pass():
    sim = GatedSim(gated({"name": "hours", "at": ["beforeIncrease"], "window": BUSINESS_HOURS},
                         webhook()), now=FRIDAY_1630_LOCAL, restart_every_pass=True,
                   judge=answer(GateVerdict.PASSED, "ok")).run()
    assert sim.status.phase is Phase.HEALTHY
    assert RolloutStatus.from_json(sim.status.to_json()) == sim.status


def test_a_second_pass_on_the_same_world_writes_nothing():
    sim = GatedSim(gated(webhook()), judge=answer(GateVerdict.WAITING, "pending"))
    sim.run(passes=3)
    before = sim.status
    sim.reconcile()
    assert sim.status == before


def test_no_gates_no_change_in_behaviour():
    plain = Sim(canary(*STEPS)).run()
    assert plain.status.phase is Phase.HEALTHY and plain.status.gates == ()


def test_intents_table_still_names_every_action():
    assert {a.value for a in Action} >= {"promote", "abort", "resume"}


# --- lint and plan ---------------------------------------------------------------------------


def test_the_payment_example_lints_and_its_plan_shows_where_each_gate_stands():
    import json

    from click.testing import CliRunner

    from meshctl.cli.main import cli

    runner = CliRunner()
    assert runner.invoke(cli, ["lint", "-f", "rollouts/payments.yaml"]).exit_code == 0
    planned = runner.invoke(cli, ["-o", "json", "rollout", "plan", "-f", "rollouts/payments.yaml"])
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    holds = {g["name"]: g["holds"] for g in plan["releaseGates"]}
    assert holds == {"compliance": [0], "risk-assessment": [0], "change-approval": ["promotion"],
                     "business-hours": [0, 2, 4]}
    first = [g["name"] for g in plan["steps"][0]["gates"] if g["type"] == "release"]
    assert first == ["compliance", "risk-assessment", "business-hours"]
    table = runner.invoke(cli, ["rollout", "plan", "-f", "rollouts/payments.yaml"]).stdout
    assert "Mon,Tue,Wed,Thu 09:00-16:00 Europe/Stockholm; frozen 2026-12-18..2027-01-06" in table


def test_lint_refuses_a_bad_time_zone_with_exit_2_and_the_field_path(tmp_path):
    from pathlib import Path

    from click.testing import CliRunner

    from meshctl.cli.main import cli

    text = Path("rollouts/payments.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("Europe/Stockholm", "Europe/Stockholmm"), encoding="utf-8")
    linted = CliRunner().invoke(cli, ["lint", "-f", str(bad)])
    assert linted.exit_code == 2
    assert "spec.gates[3].window.timeZone: 'Europe/Stockholmm' is not an IANA time zone" in (
        linted.output)


# --- the audit trail ---------------------------------------------------------------------------


def test_approvals_are_events_as_they_come_and_the_trail_names_everyone():
    from meshctl.domain.release_gates import Approval, Identity, approval_annotation
    from meshctl.domain.trail import actor_annotation, trail

    spec = gated({"name": "cab", "at": ["beforePromotion"],
                  "approval": {"count": 2, "users": ["ann", "bob", "cem"],
                               "forbidStarter": True}})
    approvals: dict[str, str] = {}

    def judge(request: GateRequest, now: datetime) -> GateReport:
        from meshctl.domain.release_gates import approvals_in, judge_approval

        assert request.gate.approval is not None
        return judge_approval(request.gate.approval, approvals_in(approvals), request.revision,
                              "ann")

    sim = GatedSim(spec, judge=judge)
    sim.run(until=lambda s: bool(s.status.gates))
    for who in ("ann", "bob"):  # ann started it: four eyes leaves her out
        key, value = approval_annotation(Approval(Identity(who), "v2", sim.now, "ok"))
        approvals[key] = value
    sim.run(passes=3)
    assert sim.status.phase is Phase.PROGRESSING
    key, value = approval_annotation(Approval(Identity("cem", (), "grpc"), "v2", sim.now, "go"))
    approvals[key] = value
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    notes = [(e.reason, e.message) for d in sim.decisions for e in d.events
             if e.reason in ("Approved", "GatePassed")]
    assert notes[0][0] == "Approved" and "approved by bob; 1/2 approvals (bob)" in notes[0][1]
    assert notes[-1] == ("GatePassed", "gate cab (approval) beforePromotion: approved by bob, "
                                       "cem")
    start_key, start_value = actor_annotation("start", Identity("ann"), T0, "release 2.4")
    entries = trail({**approvals, start_key: start_value}, sim.status.gates)
    assert [(e.action, e.by, e.via) for e in entries] == [
        ("start", "ann", "kubernetes"), ("approve", "ann", "kubernetes"),
        ("approve", "bob", "kubernetes"), ("approve", "cem", "grpc"),
        ("gate-passed", "bob, cem", "controller")]

    hostile = {"approval.meshctl.io/x": "[" * 100_000, "meshctl.io/actor-abort": "{" * 100_000,
               "approval.meshctl.io/y": "[1]"}  # damaged approvals count for nobody
    assert trail({**approvals, start_key: start_value, **hostile}, sim.status.gates) == entries


# --- notifications -------------------------------------------------------------------------


@pytest.mark.parametrize("reason, message, kind", [
    ("RolloutStarted", "new version: rolling out revision v2", "started"),
    ("StepStarted", "step 1 (pause) started", "step"),
    ("GateFailed", "gate risk (webhook) beforeTraffic: HTTP 403", "gate-failed"),
    ("GateFailed", "aborting: gate risk (webhook) failed beforeTraffic: HTTP 403", "aborted"),
    ("UserAbort", "aborting: aborted by user", "aborted"),
    ("UserAbort", "rolled back to 100% stable: aborted by user", "rolled-back"),
    ("GateDeadline", "gate cab (approval) ... needs a human", "paused"),
    ("Approved", "gate cab (approval) beforePromotion: approved by bob", "approved"),
    ("RolloutCompleted", "revision v2 is stable at 100%", "promoted"),
    ("WeightChanged", "stable/canary 80/20", None),
])
def test_each_engine_event_is_one_notification_kind_or_none(reason, message, kind):
    from meshctl.domain.notifications import kind_of

    assert kind_of(reason, message) == kind


@pytest.mark.parametrize("sink, path, fragment", [
    ({"name": "ops", "url": "hooks.slack.example/T0"}, "spec.notifications[0].url",
     "is not an http(s) URL"),
    ({"name": "ops", "url": "https://h.example/", "events": ["promotd"]},
     "spec.notifications[0].events[0]", "is not one of started, step"),
    ({"name": "ops", "url": "https://h.example/", "format": "teams"},
     "spec.notifications[0].format", "is not one of cloudEvents, slack"),
])
def test_a_bad_notification_sink_is_refused_with_its_path(sink, path, fragment):
    doc = copy.deepcopy(BASE)
    doc["spec"]["notifications"] = [sink]
    with pytest.raises(InvalidSpec) as caught:
        load_document(doc)
    found = [p for p in caught.value.problems if p.path == path]
    assert found and fragment in found[0].message, caught.value.problems


def test_events_of_a_persons_action_name_who_asked_for_it():
    from meshctl.domain.release_gates import Identity
    from meshctl.domain.trail import acted_by, actor_annotation

    key, value = actor_annotation("abort", Identity("bob", (), "grpc"), T0, "pager 4711")
    annotations = {key: value}
    assert acted_by("UserAbort", "aborting: aborted by user", annotations) == (
        "aborting: aborted by user (bob via grpc: pager 4711)")
    assert acted_by("Promoted", "promoted by user", annotations) == "promoted by user"
    assert acted_by("AnalysisFailed", "aborting: latency", annotations) == "aborting: latency"


def test_any_gate_past_its_deadline_pauses_even_behind_a_closed_window():
    sim = GatedSim(gated({"name": "hours", "at": ["beforeTraffic"], "window": BUSINESS_HOURS},
                         webhook(deadline="5m")), now=FRIDAY_1630_LOCAL,
                   judge=answer(GateVerdict.WAITING, "pending"))
    sim.run(until=lambda s: s.status.phase is Phase.PAUSED)
    assert sim.status.pause_reason == GATE_DEADLINE and "gate risk (webhook)" in sim.status.message


@pytest.mark.parametrize("flag, url, form", [
    ("https://bus.example/e", "https://bus.example/e", "cloudEvents"),
    ("slack=https://hooks.example/T0", "https://hooks.example/T0", "slack"),
    ("cloudEvents=http://bus:8080/", "http://bus:8080/", "cloudEvents"),
])
def test_a_controller_notify_flag_is_a_sink(flag, url, form):
    from meshctl.domain.notifications import sink_of_flag

    sink, problems = sink_of_flag(flag, 0)
    assert problems == [] and sink is not None
    assert (sink.url, sink.format.value, sink.name) == (url, form, "notify-0")


def test_a_bad_controller_notify_flag_exits_2_before_connecting():
    from click.testing import CliRunner

    from meshctl.cli.main import cli

    done = CliRunner().invoke(cli, ["--kubeconfig", "/nonexistent", "controller", "run",
                                    "--prometheus-url", "http://p:9090",
                                    "--notify", "teams=https://x.example/"])
    assert done.exit_code == 2
    assert "--notify[0]: 'teams=https://x.example/' is not an http(s) URL" in done.output


def test_a_sinks_url_is_logged_without_its_path_which_may_hold_its_credential() -> None:
    from meshctl.adapters.notifications import where

    assert where("https://hooks.chat.example/services/T0/B0/s3cr3t?x=1") \
        == "https://hooks.chat.example"
    assert where("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080"
