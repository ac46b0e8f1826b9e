"""``LocalMesh``: a whole canary setup on one machine, started and stopped as one.

::

    with LocalMesh(stable=SampleApp("v1"), canary=SampleApp("v2")) as mesh:
        mesh.router.apply(TrafficSplit(Weights.canary_at(10)))   # returns once Envoy applies it
        stats = run_load(mesh.url, 500)                          # real traffic through Envoy
        mesh.canary_app.set_faults(error_rate=0.05)              # an SLO breach on demand
        provider = PrometheusProvider(mesh.prometheus_url)       # real Prometheus scraping Envoy

It starts, in order: the two versions (meshctl's sample app, a command, or an address that
already listens), meshctl's xDS server, Envoy (configured over ADS: one listener, routes,
one cluster per version), and Prometheus scraping Envoy every second. ``__exit__`` stops
everything it started, in reverse order, also on exceptions and KeyboardInterrupt (and if
starting fails half-way); each child runs in its own process group and is stopped with its
whole group. Nothing is left behind but what ``keep_workdir`` asks to keep.

Envoy is supervised (:mod:`meshctl.localmesh.supervisor`): if it dies it is started again
with back-off, on the same listener and admin ports (the load, Prometheus's scrape and the
router's admin reads go on at the same addresses), and the xDS server sends it the current
state, so the split it applies is the one last written.

Metric names in Prometheus: Envoy's cluster stats, with ``envoy_cluster_name`` set to
:attr:`LocalMesh.clusters` ``.stable`` / ``.canary`` (that is ``stable`` and ``canary``, the
names :class:`meshctl.domain.resolve.Target` uses for the local mesh), and ``baseline`` for a
fresh baseline (``baseline=``: a third process of the stable version, started with the mesh).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from meshctl.domain.traffic import TrafficSplit
from meshctl.localmesh.app import AppProcess, Faults
from meshctl.localmesh.envoy import Envoy
from meshctl.localmesh.procs import (
    LocalMeshError,
    ManagedProcess,
    accepts,
    forget_workdir,
    http_get,
    note_workdir,
    wait_until,
)
from meshctl.localmesh.prometheus import Prometheus, ScrapeTarget
from meshctl.localmesh.resources import LISTENER_NAME, MeshLayout, Upstream
from meshctl.localmesh.router import LocalTrafficRouter
from meshctl.localmesh.supervisor import Supervisor
from meshctl.localmesh.xds import XdsServer

T = TypeVar("T")


@dataclass(frozen=True)
class SampleApp:
    """A version served by meshctl's sample app (:mod:`meshctl.localmesh.app`)."""

    version: str
    latency_ms: float = 5.0
    error_rate: float = 0.0
    seed: int | None = None


@dataclass(frozen=True)
class Address:
    """A version that already listens at ``host:port``; meshctl neither starts nor stops it."""

    host: str
    port: int


@dataclass(frozen=True)
class Command:
    """A version meshctl starts with ``argv`` (in its own process group) and stops; it must
    listen on ``127.0.0.1:port``. ``env`` is added to meshctl's environment."""

    argv: tuple[str, ...]
    port: int
    env: Mapping[str, str] = field(default_factory=dict)


Backend = SampleApp | Address | Command


@dataclass(frozen=True)
class Clusters:
    """Envoy cluster names (the ``envoy_cluster_name`` label) of the two versions."""

    stable: str
    canary: str
    baseline: str = "baseline"  # a fresh baseline's, when the mesh runs one


class LocalMesh:
    """Stable and canary behind a real Envoy driven by meshctl's xDS server.

    Args:
        stable, canary: what serves each version (:class:`SampleApp`, :class:`Command`,
            :class:`Address`).
        baseline: a fresh baseline (``spec.judge.baseline: fresh``): a new instance of the
            stable version, started with the mesh, behind a third Envoy cluster
            ``baseline``; None: the mesh has two versions.
        listener_port: Envoy's listener port; 0 lets Envoy pick one (see :attr:`url`).
        prometheus: also run Prometheus scraping Envoy (needs the ``prometheus`` binary).
        scrape_interval: Prometheus scrape and evaluation interval.
        initial_split: the split Envoy starts with (default: all traffic to stable).
        workdir: where configs, logs and the TSDB go (default: a new temporary directory,
            removed on stop unless ``keep_workdir``).
        ack_timeout: how long :attr:`router` ``.apply()`` waits for Envoy's ACK.
        supervise: start Envoy again when it dies (see the module docstring).
        on_notice: gets one line when Envoy dies and when it is started again.
    """

    def __init__(
        self,
        *,
        stable: Backend = SampleApp("v1"),
        canary: Backend = SampleApp("v2"),
        baseline: Backend | None = None,
        listener_port: int = 0,
        prometheus: bool = True,
        scrape_interval: str = "1s",
        initial_split: TrafficSplit | None = None,
        workdir: Path | None = None,
        keep_workdir: bool = False,
        envoy_concurrency: int = 1,
        ack_timeout: float = 5.0,
        supervise: bool = True,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.clusters = Clusters(stable="stable", canary="canary")
        self._backends = {"stable": stable, "canary": canary,
                          **({"baseline": baseline} if baseline is not None else {})}
        self._listener_port = listener_port
        self._with_prometheus = prometheus
        self._scrape_interval = scrape_interval
        self._initial_split = initial_split or TrafficSplit.stable_only()
        self._workdir_arg = workdir
        self._keep_workdir = keep_workdir or workdir is not None
        self._envoy_concurrency = envoy_concurrency
        self._ack_timeout = ack_timeout
        self._supervise = supervise
        self._on_notice = on_notice
        self._supervisor: Supervisor | None = None
        self._stack = contextlib.ExitStack()
        self._workdir: Path | None = None
        self._apps: dict[str, AppProcess] = {}
        self._xds: XdsServer | None = None
        self._envoy: Envoy | None = None
        self._prometheus: Prometheus | None = None
        self._router: LocalTrafficRouter | None = None
        self._url = ""
        self.startup_seconds = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> LocalMesh:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start everything; on any failure (or Ctrl-C) stop what was started, then raise."""
        began = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop everything this mesh started, in reverse order. Idempotent."""
        self._stack.close()

    def _start(self) -> None:
        workdir = self._workdir_arg or Path(tempfile.mkdtemp(prefix="meshctl-localmesh-"))
        workdir.mkdir(parents=True, exist_ok=True)
        self._workdir = workdir
        if not self._keep_workdir:
            note_workdir(workdir)
            self._stack.callback(forget_workdir, workdir)  # after the removal below
            self._stack.callback(shutil.rmtree, workdir, True)
        upstreams = {
            track: self._start_backend(track, backend, workdir) for track, backend in self._backends.items()
        }
        layout = MeshLayout(
            listener_port=self._listener_port,
            stable=upstreams["stable"],
            canary=upstreams["canary"],
            baseline=upstreams.get("baseline"),
        )
        xds = XdsServer(layout, self._initial_split)
        xds.start()
        self._stack.callback(xds.stop)
        self._xds = xds
        envoy = Envoy(xds.address, workdir=workdir, concurrency=self._envoy_concurrency)
        self._stack.callback(envoy.stop)
        envoy.start()
        self._envoy = envoy
        port = wait_until(
            lambda: envoy.listener_port(LISTENER_NAME),
            timeout=10.0, what="Envoy's listener", process=envoy.process,
        )  # fmt: skip
        self._url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: (http_get(f"{self._url}/", timeout=1.0) or (0, b""))[0] in (200, 500),
            timeout=10.0, what="a request through Envoy to succeed", process=envoy.process,
        )  # fmt: skip
        self._router = LocalTrafficRouter(xds, envoy, ack_timeout=self._ack_timeout)
        if self._supervise:
            def restart() -> None:
                xds.set_listener_port(port)  # the port the first Envoy bound
                envoy.restart()

            supervisor = Supervisor("envoy", lambda: envoy.process.alive, restart,
                                    on_notice=self._on_notice)
            self._stack.callback(supervisor.stop)  # before envoy.stop: no restart on purpose
            self._supervisor = supervisor.start()
        if self._with_prometheus:
            prometheus = Prometheus(
                [ScrapeTarget("envoy", envoy.admin_address, "/stats/prometheus")],
                workdir=workdir,
                scrape_interval=self._scrape_interval,
                evaluation_interval=self._scrape_interval,
            )
            self._stack.callback(prometheus.stop)
            prometheus.start()
            self._prometheus = prometheus

    def _start_backend(self, track: str, backend: Backend, workdir: Path) -> Upstream:
        cluster = getattr(self.clusters, track)
        if isinstance(backend, Address):
            return Upstream(cluster, backend.host, backend.port)
        if isinstance(backend, SampleApp):
            app = AppProcess(
                backend.version,
                workdir=workdir,
                faults=Faults(backend.latency_ms, backend.error_rate),
                seed=backend.seed,
                name=f"app-{track}",
            )
            self._stack.callback(app.stop)
            app.start()
            self._apps[track] = app
            return Upstream(cluster, app.host, app.port)
        process = ManagedProcess(
            f"{track}-command",
            backend.argv,
            log_path=workdir / f"{track}-command.log",
            env={**_environ(), **backend.env},
        )
        self._stack.callback(process.stop)
        process.start()
        wait_until(
            lambda: accepts("127.0.0.1", backend.port),
            timeout=30.0, what=f"port {backend.port}", process=process,
        )  # fmt: skip
        return Upstream(cluster, "127.0.0.1", backend.port)

    # -- access ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Envoy's listener: send the service's traffic here."""
        self._require(self._url)
        return self._url

    @property
    def router(self) -> LocalTrafficRouter:
        return self._require(self._router)

    @property
    def xds(self) -> XdsServer:
        return self._require(self._xds)

    @property
    def envoy(self) -> Envoy:
        return self._require(self._envoy)

    @property
    def envoy_restarts(self) -> int:
        """How many times the supervisor started Envoy again after it died."""
        return self._supervisor.restarts if self._supervisor is not None else 0

    @property
    def prometheus(self) -> Prometheus | None:
        return self._prometheus

    @property
    def prometheus_url(self) -> str:
        """Prometheus's base URL (raises if the mesh runs without Prometheus)."""
        return self._require(self._prometheus).url

    @property
    def apps(self) -> Mapping[str, AppProcess]:
        """The sample apps by track (``stable``/``canary``); only tracks that run one."""
        return dict(self._apps)

    @property
    def stable_app(self) -> AppProcess:
        return self._require(self._apps.get("stable"))

    @property
    def canary_app(self) -> AppProcess:
        return self._require(self._apps.get("canary"))

    @property
    def workdir(self) -> Path:
        return self._require(self._workdir)

    @staticmethod
    def _require(value: T | None) -> T:
        if value is None or value == "":
            raise LocalMeshError("the local mesh is not running (or has no such part)")
        return value


def _environ() -> dict[str, str]:
    return dict(os.environ)
