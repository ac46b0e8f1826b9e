"""User intents: one spelling, and one table of the phases each means something in, kept in
step with the engine's transitions and with what the engine actually does."""

from __future__ import annotations

import dataclasses
import json

import pytest

from meshctl.domain.engine import decide
from meshctl.domain.intents import RECORDED, Action, Intents
from meshctl.domain.phases import ALLOWED, LEADS_TO, TRANSITIONS, Phase, allows
from meshctl.domain.status import Intent, RolloutStatus
from meshctl.ops.state import read_intents, write_intent
from tests.unit.sim import Sim, canary

STEPS = ({"setWeight": 10}, {"pause": {}}, {"setWeight": 50})


def test_every_action_has_one_row_in_each_table():
    assert set(ALLOWED) == set(LEADS_TO) == set(Action)


@pytest.mark.parametrize("action", list(Action))
def test_each_allowed_action_is_a_legal_move(action):
    """Where an action is allowed, the move it makes is in TRANSITIONS (or keeps the phase,
    as promote does mid-step). Pause is spec.paused: recorded in any phase, it moves only a
    Progressing rollout; elsewhere it waits until the rollout progresses."""
    target = LEADS_TO[action]
    phases = (Phase.PROGRESSING,) if action is Action.PAUSE else ALLOWED[action]
    for phase in phases:
        assert target == phase or target in TRANSITIONS[phase], (action, phase)


def _at(phase: Phase) -> Sim:
    """A rollout world that has reached ``phase`` (and would stay there a while)."""
    if phase is Phase.PAUSED:
        return Sim(canary(*STEPS)).run()
    if phase is Phase.PROGRESSING:  # waits for canary pods that never become ready
        return Sim(canary(*STEPS), canary_becomes_ready=False).run(passes=5)
    if phase is Phase.HEALTHY:
        return Sim(canary({"setWeight": 10})).run()
    sim = Sim(canary(*STEPS)).run()
    if phase is Phase.PROMOTING:
        sim.intents = Intents(promote_full="f")
        return sim.run(passes=1)
    sim.intents = Intents(abort="a")
    if phase is Phase.ABORTING:  # the stable split is never observed: the abort holds
        sim.data_plane_applies = False
        return sim.run(passes=1)
    return sim.run()  # Degraded


REACHABLE = [p for p in Phase if p is not Phase.PENDING]  # Pending ends in a rollout's first pass


@pytest.mark.parametrize("phase", REACHABLE)
def test_the_engine_acts_on_an_intent_exactly_where_the_table_allows_it(phase):
    """The same pass with and without a new intent id: the decision differs (beyond the id
    being recorded as handled: in status, traffic or events) exactly when ALLOWED lists
    the phase. (Resume at an indefinite pause step moves on and pauses again: only its
    events tell.)"""
    sim = _at(phase)
    assert sim.status.phase is phase
    base = sim.observation()
    without = decide(sim.spec, sim.status, base, sim.now)
    for action in RECORDED:
        ids = {a: base.intents.get(a) for a in RECORDED} | {action: "new-id"}
        with_intent = decide(sim.spec, sim.status,
                             dataclasses.replace(base, intents=Intents.of(ids)), sim.now)
        assert with_intent.status.handled(action) == "new-id"
        acted = (dataclasses.replace(with_intent.status, handled_intents=())
                 != dataclasses.replace(without.status, handled_intents=())
                 or with_intent.traffic != without.traffic
                 or with_intent.events != without.events)
        assert acted == allows(action, phase), (action, phase)


@pytest.mark.parametrize("action", list(Action))
def test_one_spelling_from_the_annotation_to_the_status(action):
    assert Action.parse(action.value) is action
    assert action.annotation == f"meshctl.io/intent-{action.value}"
    if action in RECORDED:
        assert Intents.of({action: "x"}).get(action) == "x"
        handled = RolloutStatus().with_handled(action, "x")
        assert handled.to_json()["handledIntents"] == [{"action": action.value, "id": "x"}]
    else:
        assert Intents().get(action) is None


def test_promote_full_as_earlier_versions_spelled_it_is_still_read():
    """A status written before the spelling was unified does not act twice on one id."""
    old = RolloutStatus(handled_intents=(Intent("promote_full", "f1"),))
    assert old.handled(Action.PROMOTE_FULL) == "f1"
    assert old.with_handled(Action.PROMOTE_FULL, "f2").handled_intents == (
        Intent("promote-full", "f2"),)


def test_a_local_run_intents_file_uses_the_same_spelling(tmp_path):
    path = tmp_path / "intents.json"
    path.write_text(json.dumps({"promote_full": "old", "abort": "a1"}), "utf-8")
    assert read_intents(path) == Intents(promote_full="old", abort="a1")
    new = write_intent(path, Action.PROMOTE_FULL)
    assert json.loads(path.read_text("utf-8")) == {"abort": "a1", "promote-full": new}
    assert read_intents(path).get(Action.PROMOTE_FULL) == new
    with pytest.raises(ValueError, match="pause"):
        write_intent(path, Action.PAUSE)
