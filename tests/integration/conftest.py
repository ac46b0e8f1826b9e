"""Fixtures shared by the integration tests. Keep each group together, under its heading."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

from meshctl.localmesh.mesh import LocalMesh, SampleApp
from meshctl.localmesh.procs import LocalMeshError
from meshctl.localmesh.prometheus import Prometheus, ScrapeTarget
from testworld.istio_exporter import IstioExporter

# --- Local mesh: real Envoy, real Prometheus -------------------------------------------
#
# ``local_mesh`` (module): xDS server + Envoy + stable (v1) and canary (v2) sample apps with
# no added latency; no Prometheus. ``local_mesh_with_prometheus`` (module): the same with
# 5 ms app latency and Prometheus scraping Envoy every second. One mesh per test module:
# tests in a module share it and put back what they change (split, faults).
#
# If Envoy or Prometheus cannot start (binary missing: ``make testenv``), the tests that need
# them are skipped with the reason, except when MESHCTL_REQUIRE_SERVERS=1 (CI): they fail.


def servers_unavailable(reason: str) -> NoReturn:
    if os.environ.get("MESHCTL_REQUIRE_SERVERS") == "1":
        pytest.fail(f"a real server is required here: {reason}", pytrace=False)
    pytest.skip(f"server unavailable: {reason}")


def start_mesh(**kwargs: Any) -> LocalMesh:
    """A started LocalMesh, or skip/fail the requesting tests with the reason."""
    mesh = LocalMesh(**kwargs)
    try:
        mesh.start()
    except LocalMeshError as exc:
        servers_unavailable(str(exc))
    return mesh


@pytest.fixture(scope="module")
def local_mesh() -> Iterator[LocalMesh]:
    mesh = start_mesh(
        stable=SampleApp("v1", latency_ms=0.0, seed=1),
        canary=SampleApp("v2", latency_ms=0.0, seed=2),
        prometheus=False,
    )
    try:
        yield mesh
    finally:
        mesh.stop()


@pytest.fixture(scope="module")
def local_mesh_with_prometheus() -> Iterator[LocalMesh]:
    mesh = start_mesh(
        stable=SampleApp("v1", latency_ms=5.0, seed=1),
        canary=SampleApp("v2", latency_ms=5.0, seed=2),
        prometheus=True,
        scrape_interval="1s",
    )
    try:
        yield mesh
    finally:
        mesh.stop()


# --- The Istio world's gateway Envoy in a real Prometheus --------------------------------------
#
# ``istio_prometheus`` (session): Prometheus scraping the stats of the Envoy istiod programs
# (testworld/istio.py, fixture ``istio``) every second; yields its URL.


@contextmanager
def running_prometheus(targets: list[ScrapeTarget], workdir: Path) -> Iterator[str]:
    """A real Prometheus scraping ``targets``, its URL while it runs; one that cannot start
    is an unavailable server (a failure in CI)."""
    prometheus = Prometheus(targets, workdir=workdir)
    try:
        prometheus.start()
    except LocalMeshError as exc:
        servers_unavailable(str(exc))
    try:
        yield prometheus.url
    finally:
        prometheus.stop()


@pytest.fixture(scope="session")
def istio_prometheus(istio: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    target = ScrapeTarget("istio-gateway", istio.envoy_admin.admin_address, "/stats/prometheus")
    with running_prometheus([target], Path(tmp_path_factory.mktemp("istio-prometheus"))) as url:
        yield url


# --- Istio-named series in a real Prometheus ----------------------------------------------
#
# ``istio_metrics`` (session): a stand-in for the sidecars (testworld/istio_exporter.py)
# serving istio_requests_total and istio_request_duration_milliseconds per workload, and a
# real Prometheus scraping it every second. Yields (exporter, prometheus URL); tests set the
# behaviour of their own namespace's workloads with ``exporter.set(...)``.


@pytest.fixture(scope="session")
def istio_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IstioExporter, str]]:
    with IstioExporter() as exporter, running_prometheus(
            [ScrapeTarget("istio", exporter.address)],
            Path(tmp_path_factory.mktemp("prometheus"))) as url:
        yield exporter, url
