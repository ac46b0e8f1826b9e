"""istiod that does not answer (a real socket that accepts and never answers, or a port
nobody listens on): the weights read as not observed, and istiod is not asked again for a
few seconds, so a pass of each Rollout (an abort's included) does not wait its timeout."""

from __future__ import annotations

import pytest

from meshctl.adapters.errors import Unavailable
from meshctl.adapters.istiod import Istiod, IstiodDataPlane
from meshctl.domain.spec import Rollout
from meshctl.domain.traffic import TrafficSplit, Weights
from meshctl.domain.validation import load_document
from meshctl.localmesh.procs import free_port

from .cluster_world import rollout


def web() -> Rollout:
    found = load_document(rollout("shop", "web:2", [{"setWeight": 20}]))
    assert isinstance(found, Rollout)
    return found


def test_a_hung_istiod_is_asked_once_per_hold_and_each_read_says_why(silent_server):
    clock = [100.0]
    istiod = Istiod(f"http://127.0.0.1:{silent_server.port}", timeout=0.5, down_hold=5.0,
                    clock=lambda: clock[0])
    plane = IstiodDataPlane(istiod)
    written = TrafficSplit(Weights.canary_at(20))
    first = plane.read(web(), "primary", written)
    assert first.split is None and "cannot read istiod's debug API" in first.reason
    asked = len(silent_server.accepted)
    assert asked == 1
    again = plane.read(web(), "primary", written)  # the next pass: no wait, no connection
    assert again.split is None and "not asked again for 5 s" in again.reason
    with pytest.raises(Unavailable, match="not asked again"):
        plane.has_subset(web(), "canary")  # the canary's weight waits: the pass is retried
    assert len(silent_server.accepted) == asked
    clock[0] += 5.0
    assert plane.read(web(), "primary", written).split is None
    assert len(silent_server.accepted) == asked + 1  # asked again once the hold is over


def test_an_istiod_nobody_listens_for_is_held_too():
    istiod = Istiod(f"http://127.0.0.1:{free_port()}", timeout=0.5)
    first = IstiodDataPlane(istiod).read(web(), "primary", None)
    assert first.split is None and "not asked again" not in first.reason
    assert "not asked again" in IstiodDataPlane(istiod).read(web(), "primary", None).reason
