"""The split a local run serves its Envoy, kept in a file so that a run started again
serves it too (meshctl/ops/state.py ServedSplit, meshctl/ops/local.py initial_split)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshctl.domain.phases import Phase
from meshctl.domain.status import RolloutStatus, WeightsStatus
from meshctl.domain.traffic import HeaderMatch, HeaderRoute, TrafficSplit, Weights
from meshctl.localmesh.xds import Nack, XdsRejected
from meshctl.ops.local import SavedRouter, initial_split
from meshctl.ops.state import ServedSplit

BETA = TrafficSplit(Weights.canary_at(20), header_routes=(
    HeaderRoute("beta", (HeaderMatch("x-beta", "1"),)),), mirror_percent=5)
AT_20 = RolloutStatus(phase=Phase.PROGRESSING, weights=WeightsStatus(stable=80, canary=20))


def test_a_saved_split_reads_back_whole(tmp_path: Path) -> None:
    served = ServedSplit(tmp_path, "default", "web")
    assert served.load() is None
    served.save(BETA)
    assert ServedSplit(tmp_path, "default", "web").load() == BETA
    assert served.path.name == "default.web.served.json"


@pytest.mark.parametrize("content", [
    b"", b"\x00\xff\xfe binary", b"[" * 100_000, b'{"virtual_hosts": 7}',
    b'{"virtual_hosts": [{"routes": [{"name": "weighted", "route": {"weighted_clusters": '
    b'{"clusters": [{"name": "stable", "weight": 500}]}}}]}]}',
])
def test_a_damaged_file_reads_as_nothing_saved(tmp_path: Path, content: bytes) -> None:
    served = ServedSplit(tmp_path, "default", "web")
    served.path.write_bytes(content)
    assert served.load() is None


def test_a_run_started_again_serves_what_the_last_one_served() -> None:
    """After an abort's 100/0 whose status save was lost, the status still says 80/20."""
    assert initial_split(AT_20, TrafficSplit.stable_only()) == TrafficSplit.stable_only()
    assert initial_split(AT_20, BETA) == BETA  # header routes and mirror included


def test_without_a_saved_split_the_status_weights_are_served() -> None:
    assert initial_split(AT_20, None) == TrafficSplit(Weights(80, 20))


def test_a_rollout_not_begun_starts_all_stable_whatever_was_saved() -> None:
    assert initial_split(RolloutStatus(), BETA) == TrafficSplit.stable_only()


class Router:
    """Envoy's side as plain values: what it was served, what it would refuse."""

    def __init__(self, served: ServedSplit, refuse: TrafficSplit | None = None) -> None:
        self.current: TrafficSplit | None = TrafficSplit.stable_only()
        self.saved_when_applied: list[TrafficSplit | None] = []
        self.served, self.refuse = served, refuse

    def written(self) -> TrafficSplit | None:
        return self.current

    def apply(self, split: TrafficSplit) -> None:
        self.saved_when_applied.append(self.served.load())
        if split == self.refuse:
            raise XdsRejected(Nack("envoy", "RouteConfiguration", 2, "no", 0.0))
        self.current = split


class Mesh:
    def __init__(self, router: Router) -> None:
        self.router = router


def test_the_split_is_saved_before_envoy_is_served_it(tmp_path: Path) -> None:
    served = ServedSplit(tmp_path, "default", "web")
    router = Router(served)
    SavedRouter(Mesh(router), served).apply(BETA)  # type: ignore[arg-type]
    assert router.saved_when_applied == [BETA] and served.load() == BETA


def test_a_split_envoy_refuses_is_not_left_saved(tmp_path: Path) -> None:
    served = ServedSplit(tmp_path, "default", "web")
    router = Router(served, refuse=BETA)
    with pytest.raises(XdsRejected):
        SavedRouter(Mesh(router), served).apply(BETA)  # type: ignore[arg-type]
    assert served.load() == TrafficSplit.stable_only()


def test_a_file_that_cannot_be_written_never_holds_back_the_write(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the state directory should be")
    served = ServedSplit(tmp_path / "state", "default", "web")
    router = Router(served)
    SavedRouter(Mesh(router), served).apply(TrafficSplit.stable_only())  # type: ignore[arg-type]
    assert router.current == TrafficSplit.stable_only()
    assert served.load() is None
