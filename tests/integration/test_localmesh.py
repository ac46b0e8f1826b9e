"""The local mesh: meshctl's xDS server driving a real Envoy in front of real processes.

What only the real Envoy can tell: that the weights it applies deliver the configured share
of requests, that it rejects a bad update and keeps serving the last good one (and says why),
that header routes and mirroring reach the canary, and that an ACK means "applied".
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl.domain.traffic import HeaderMatch, HeaderRoute, MatchKind, TrafficSplit, Weights
from meshctl.localmesh.envoy import Envoy
from meshctl.localmesh.load import binomial_interval, run_load
from meshctl.localmesh.mesh import LocalMesh, SampleApp
from meshctl.localmesh.procs import wait_until
from meshctl.localmesh.resources import (
    ROUTE_NAME,
    TYPE_CLUSTER,
    TYPE_ROUTE,
    Upstream,
    cluster,
    route_config_from_json,
    route_config_to_split,
)
from meshctl.localmesh.xds import XdsRejected

from .conftest import start_mesh

pytestmark = pytest.mark.envoy

REQUESTS = 2000


@pytest.fixture
def mesh(local_mesh: LocalMesh) -> Iterator[LocalMesh]:
    """The module's mesh, put back to all-stable after each test."""
    yield local_mesh
    local_mesh.router.apply(TrafficSplit.stable_only())


@pytest.mark.parametrize("canary", [10, 50])
def test_delivered_share_is_within_the_binomial_interval(
    mesh: LocalMesh, canary: int
) -> None:
    """Given weights stable/canary, the canary's share of 2,000 requests is a binomial draw
    with p = canary/100: it must land inside the interval a correct split misses once in a
    million draws."""
    split = TrafficSplit(Weights.canary_at(canary))
    mesh.router.apply(split)
    assert mesh.router.observed() == split

    stats = run_load(mesh.url, REQUESTS, concurrency=8)

    assert stats.by_status == {200: REQUESTS}
    lo, hi = binomial_interval(REQUESTS, canary / 100)
    assert lo <= stats.by_version.get("v2", 0) <= hi, (lo, hi, stats.by_version)
    assert stats.by_version.get("v1", 0) == REQUESTS - stats.by_version.get("v2", 0)


@pytest.mark.parametrize(("canary", "version"), [(0, "v1"), (100, "v2")])
def test_a_version_at_weight_zero_gets_no_request(
    mesh: LocalMesh, canary: int, version: str
) -> None:
    mesh.router.apply(TrafficSplit(Weights.canary_at(canary)))

    stats = run_load(mesh.url, 300, concurrency=4)

    assert stats.by_version == {version: 300}


def test_a_rejected_update_keeps_the_last_good_split_and_reports_envoys_message(
    mesh: LocalMesh,
) -> None:
    """An invalid regex is valid protobuf but Envoy cannot compile it: it NACKs the route
    configuration, keeps applying the previous one, and meshctl raises with Envoy's words."""
    good = TrafficSplit(Weights.canary_at(20))
    mesh.router.apply(good)
    bad = TrafficSplit(
        Weights.canary_at(60),
        header_routes=(HeaderRoute("broken", (HeaderMatch("x-user", "([a-z", MatchKind.REGEX),)),),
    )

    with pytest.raises(XdsRejected) as rejected:
        mesh.router.apply(bad)

    nack = rejected.value.nack
    assert nack.type_url == TYPE_ROUTE
    assert "missing ]" in nack.message  # RE2's own words, relayed by Envoy
    assert mesh.router.last_rejection == nack
    assert mesh.xds.last_nack == nack
    assert mesh.router.written() == good
    assert mesh.router.observed() == good
    stats = run_load(mesh.url, 1000, concurrency=8)
    assert stats.by_status == {200: 1000}
    lo, hi = binomial_interval(1000, 0.2)
    assert lo <= stats.by_version.get("v2", 0) <= hi, stats.by_version

    recovered = TrafficSplit(Weights.canary_at(30))
    mesh.router.apply(recovered)
    assert mesh.router.observed() == recovered


def test_a_rejected_cluster_update_is_reported_for_its_type(mesh: LocalMesh) -> None:
    """A STATIC cluster must have an IP address: Envoy NACKs the clusters, keeps the old ones
    and the routes keep working; the server records the NACK under the Cluster type."""
    layout = mesh.xds.layout
    bad = Upstream(layout.canary.cluster, "not-an-ip", layout.canary.port)
    version = mesh.xds.set_resources(TYPE_CLUSTER, [cluster(layout.stable), cluster(bad)])

    with pytest.raises(XdsRejected) as rejected:
        mesh.xds.wait_for_ack(version, TYPE_CLUSTER)

    assert rejected.value.nack.type_url == TYPE_CLUSTER
    assert "not-an-ip" in rejected.value.nack.message
    (stream,) = mesh.xds.status().streams
    assert stream.acked[TYPE_CLUSTER] < version
    mesh.router.apply(TrafficSplit(Weights.canary_at(50)))
    assert set(run_load(mesh.url, 200).by_version) == {"v1", "v2"}

    restored = mesh.xds.set_resources(TYPE_CLUSTER, [cluster(layout.stable), cluster(layout.canary)])
    mesh.xds.wait_for_ack(restored, TYPE_CLUSTER)


def test_a_header_route_reaches_the_canary_at_weight_zero(mesh: LocalMesh) -> None:
    split = TrafficSplit(
        Weights.all_stable(),
        header_routes=(
            HeaderRoute("testers", (HeaderMatch("x-canary", "true"),)),
            HeaderRoute(
                "beta",
                (
                    HeaderMatch("x-user", "beta-", MatchKind.PREFIX),
                    HeaderMatch("x-region", "eu-[a-z]+", MatchKind.REGEX),
                ),
            ),
        ),
    )
    mesh.router.apply(split)
    assert mesh.router.observed() == split

    flagged = run_load(mesh.url, 200, concurrency=4, headers={"x-canary": "true"})
    both = run_load(mesh.url, 50, headers={"x-user": "beta-7", "x-region": "eu-west"})
    only_one = run_load(mesh.url, 50, headers={"x-user": "beta-7", "x-region": "us-east"})
    plain = run_load(mesh.url, 200, concurrency=4)

    assert flagged.by_version == {"v2": 200}
    assert both.by_version == {"v2": 50}
    assert only_one.by_version == {"v1": 50}
    assert plain.by_version == {"v1": 200}


@pytest.mark.parametrize("percent", [100, 50])
def test_mirroring_sends_copies_to_the_canary(mesh: LocalMesh, percent: int) -> None:
    """Clients only see stable; the canary receives mirrored copies (Host ends in -shadow)."""
    mesh.router.apply(TrafficSplit(Weights.all_stable(), mirror_percent=percent))
    before = mesh.canary_app.stats()["shadow"]
    sent = 1000

    stats = run_load(mesh.url, sent, concurrency=8)

    assert stats.by_version == {"v1": sent}
    lo, hi = binomial_interval(sent, percent / 100)

    def mirrored() -> int | None:  # copies are sent asynchronously: wait for them to land
        count = mesh.canary_app.stats()["shadow"] - before
        return count if count >= lo else None

    count = wait_until(mirrored, timeout=10.0, what=f">= {lo} mirrored requests")
    time.sleep(0.2)
    count = mesh.canary_app.stats()["shadow"] - before
    assert lo <= count <= hi, (lo, hi, count)


def test_apply_returns_once_envoy_applies_the_split(mesh: LocalMesh) -> None:
    """apply() waits for Envoy's ACK, so right after it Envoy's own config dump shows the
    split, every time (how long it takes is measured in bench.local_mesh, not here)."""
    for i in range(40):
        split = TrafficSplit(Weights.canary_at(i % 2 * 10 + 5))
        mesh.router.apply(split)
        assert mesh.router.observed() == split, f"change {i}"


def test_every_connected_envoy_is_pushed_and_must_ack(mesh: LocalMesh, tmp_path: Path) -> None:
    """A second Envoy on the same xDS server gets the current split at once, and apply()
    returns only when both applied the next one."""
    second = Envoy(mesh.xds.address, workdir=tmp_path, node_id="second")
    second.start()
    try:
        assert len(mesh.xds.status().streams) == 2
        split = TrafficSplit(Weights.canary_at(40), mirror_percent=10)

        mesh.router.apply(split)

        for envoy in (mesh.envoy, second):
            found = envoy.route_config(ROUTE_NAME)
            assert found is not None
            version, config = found
            assert int(version) == mesh.xds.version(TYPE_ROUTE)
            assert route_config_to_split(route_config_from_json(config), mesh.xds.layout) == split
    finally:
        second.stop()
    wait_until(lambda: len(mesh.xds.status().streams) == 1, timeout=5.0, what="stream to close")


def test_stop_leaves_no_process_behind() -> None:
    """An exception inside the with-block still stops every process the mesh started."""
    mesh = start_mesh(prometheus=False, stable=SampleApp("v1"), canary=SampleApp("v2"))
    pids = [
        mesh.envoy.process.pid,
        mesh.stable_app.process.pid,
        mesh.canary_app.process.pid,
    ]
    workdir = mesh.workdir
    with pytest.raises(RuntimeError, match="boom"), mesh:
        raise RuntimeError("boom")

    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not workdir.exists()
