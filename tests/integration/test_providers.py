"""The envoy and web metric providers against the real Envoy and sample apps of the local
mesh, through the shell's registry (the same path a reconcile pass takes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from meshctl.domain.analysis import MeasurementRequest
from meshctl.domain.measurements import Error, NoData, Unavailable, Value
from meshctl.domain.providers import ProviderKind
from meshctl.domain.traffic import TrafficSplit, Weights
from meshctl.localmesh.load import run_load
from meshctl.localmesh.mesh import LocalMesh
from meshctl.localmesh.procs import free_port, wait_until
from meshctl.ops.providers import Providers
from meshctl.ops.reconcile import measure

pytestmark = pytest.mark.envoy
REQUESTS = 200
QUANTILE = "cluster.canary.upstream_rq_time:P95"


def no_prometheus(address: str | None) -> object:
    raise AssertionError("these metrics never ask Prometheus")


@pytest.fixture(scope="module")
def mesh(local_mesh: LocalMesh) -> Iterator[LocalMesh]:
    """200 requests sent at 50/50, then back to all-stable."""
    local_mesh.router.apply(TrafficSplit(Weights.canary_at(50)))
    run_load(local_mesh.url, REQUESTS, concurrency=4)
    yield local_mesh
    local_mesh.router.apply(TrafficSplit.stable_only())


def measured(mesh: LocalMesh, kind: ProviderKind, query: str, address: str | None = None):
    providers = Providers(no_prometheus, envoy_admin=lambda: mesh.envoy.admin_address)  # type: ignore[arg-type]
    request = MeasurementRequest("step-1", "m", query, address, 3.0, kind=kind)
    (taken,) = measure([request], no_prometheus, datetime.now(UTC), providers)  # type: ignore[arg-type]
    return taken.measurement


def test_envoy_counters_are_read_at_the_admin_endpoint(mesh: LocalMesh) -> None:
    canary = measured(mesh, ProviderKind.ENVOY, "cluster.canary.upstream_rq_total")
    stable = measured(mesh, ProviderKind.ENVOY, "cluster.stable.upstream_rq_total")

    assert isinstance(canary, Value) and isinstance(stable, Value)
    assert canary.value + stable.value >= REQUESTS
    assert canary.value > 0 and stable.value > 0  # both got a share at 50/50


def test_an_envoy_histogram_quantile_is_a_latency(mesh: LocalMesh) -> None:
    # histograms are computed at Envoy's stats flush (every second here)
    wait_until(lambda: isinstance(measured(mesh, ProviderKind.ENVOY, QUANTILE), Value),
               timeout=10, what="a computed quantile")
    p95 = measured(mesh, ProviderKind.ENVOY, QUANTILE)
    assert isinstance(p95, Value) and 0 <= p95.value < 1000, p95


def test_an_envoy_stat_that_does_not_exist_is_no_data(mesh: LocalMesh) -> None:
    assert isinstance(measured(mesh, ProviderKind.ENVOY, "cluster.nope.upstream_rq_total"), NoData)


def test_web_reads_a_number_at_a_json_path(mesh: LocalMesh) -> None:
    app = mesh.canary_app
    url = f"http://{app.host}:{app.port}/admin/stats"

    served = measured(mesh, ProviderKind.WEB, "$.requests", url)
    missing = measured(mesh, ProviderKind.WEB, "$.nope", url)
    text = measured(mesh, ProviderKind.WEB, "$.version", url)

    assert isinstance(served, Value) and served.value > 0
    assert isinstance(missing, NoData)
    assert isinstance(text, Error) and "is not a number" in text.message


def test_an_unreachable_web_source_is_unavailable_not_an_error(mesh: LocalMesh) -> None:
    found = measured(mesh, ProviderKind.WEB, "$.a", f"http://127.0.0.1:{free_port()}/x")
    assert isinstance(found, Unavailable) and "did not answer within 3s" in found.reason
