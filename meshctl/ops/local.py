"""Drive a rollout on the embedded local mesh from this process (``rollout run --mesh local``).

The same reconcile pass as the controller, with local ports: the xDS-driven Envoy as the
traffic router, the two local processes as workloads, the local Prometheus for analysis and
a state file for the status. The status is saved after every decision, so killing the
process and running the command again resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from meshctl.adapters import notifications
from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.domain.analysis import without_pending_runs
from meshctl.domain.engine import Decision, Event
from meshctl.domain.fields import to_json
from meshctl.domain.phases import Phase, ending_of
from meshctl.domain.ports import MetricProvider
from meshctl.domain.resolve import resolve_analysis
from meshctl.domain.revisions import revision_of
from meshctl.domain.routers import BACKENDS, LOCAL_MESH
from meshctl.domain.spec import AnalysisTemplate, LocalVersion, Rollout
from meshctl.domain.status import RolloutStatus
from meshctl.domain.timeline import thresholds_of
from meshctl.domain.traffic import TrafficSplit, Weights
from meshctl.localmesh.load import LoadGenerator
from meshctl.localmesh.mesh import Address, Backend, Command, LocalMesh
from meshctl.localmesh.procs import LocalMeshError, free_port, recording_children
from meshctl.localmesh.router import XdsRejected, XdsTimeout
from meshctl.localmesh.workloads import LocalWorkloads
from meshctl.ops.gates import EnvSecrets, GateJudge
from meshctl.ops.providers import Providers
from meshctl.ops.reconcile import Ports, reconcile
from meshctl.ops.state import (
    FileStatusStore,
    ServedSplit,
    approvals_path,
    read_approvals,
    state_paths,
)

DEFAULT_STATE_DIR = Path(".meshctl")

log = logging.getLogger(__name__)


class LocalRunError(Exception):
    """The rollout cannot run locally (one line for the user)."""


def backend_of(version: LocalVersion) -> Backend:
    """An address as is; a command gets a free port as ``{port}`` in its args and ``PORT``
    in its environment (``python`` as the first arg means meshctl's own interpreter)."""
    if version.address is not None:
        host, text = version.address.rsplit(":", 1)
        return Address(host, int(text))
    port = free_port()
    argv = [arg.replace("{port}", str(port)) for arg in version.command]
    if argv and argv[0] in ("python", "python3"):  # the interpreter meshctl runs on
        argv[0] = sys.executable
    return Command(tuple(argv), port, env={"PORT": str(port)})


def revisions(rollout: Rollout) -> tuple[str, str]:
    """(stable, canary) revisions of a local rollout: hashes of what defines each version."""
    local = rollout.spec.local
    if local is None:
        raise LocalRunError("spec.local is required for --mesh local: give the stable and "
                            "canary versions as an address or a command")
    canary_def = rollout.spec.template if rollout.spec.template else to_json(local.canary)
    return revision_of(to_json(local.stable)), revision_of(canary_def)


def is_finished(decision: Decision) -> bool:
    """A local run ends at Healthy or Degraded, paused for a person (as the cluster's
    ``--wait``), or paused with nothing scheduled."""
    status = decision.status
    return ending_of(status.phase, status.pause_reason) is not None or (
        status.phase is Phase.PAUSED and decision.requeue_after is None)


@dataclass
class LocalRollout:
    """One rollout on a running :class:`LocalMesh`."""

    rollout: Rollout
    templates: Mapping[str, AnalysisTemplate]
    mesh: LocalMesh
    state_dir: Path = DEFAULT_STATE_DIR
    on_event: Callable[[Event], None] | None = None
    stable_revision: str | None = None
    canary_revision: str | None = None

    def __post_init__(self) -> None:
        stable, canary = revisions(self.rollout) if self.rollout.spec.local else ("", "")
        self.stable_revision = self.stable_revision or stable
        self.canary_revision = self.canary_revision or canary
        self.plans = resolve_analysis(self.rollout, self.templates,
                                      BACKENDS[LOCAL_MESH].telemetry)
        self.store = FileStatusStore(self.state_dir, self.rollout, self.on_event)
        self.store.save_thresholds(thresholds_of(self.plans))
        status, _ = self.store.load()
        running = status.phase in (Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING,
                                   Phase.ABORTING)
        self.workloads = LocalWorkloads(self.mesh, self.stable_revision, self.canary_revision,
                                        canary_replicas=1 if running else 0)
        self.router = SavedRouter(self.mesh, ServedSplit(self.state_dir, self.rollout.namespace,
                                                         self.rollout.name))
        self._providers: dict[str | None, MetricProvider] = {}
        self.providers = Providers(self.metrics, envoy_admin=lambda: self.mesh.envoy.admin_address)
        # a judge reading Envoy records from now on: its lookback fills while the rollout
        # moves (a resumed run has lost what the killed one recorded)
        self.providers.prepare(self.plans)
        if status.stable_revision == self.canary_revision:  # resumed after promotion began
            self.workloads.point_stable_at(self.canary_revision)
        if status.analysis and without_pending_runs(status.analysis) != status.analysis:
            # this mesh's Prometheus is new: measurements in flight started from data that
            # is gone, so those runs measure again (finished verdicts stand)
            self.store.save(dataclasses.replace(
                status, analysis=without_pending_runs(status.analysis)))

    def metrics(self, address: str | None) -> MetricProvider:
        if address not in self._providers:
            self._providers[address] = PrometheusProvider(address or self.mesh.prometheus_url)
        return self._providers[address]

    def ports(self) -> Ports:
        return Ports(self.router, self.workloads, self.metrics, self.store,
                     providers=self.providers, gates=GateJudge(EnvSecrets()),
                     notifier=notifications.shared())

    def reconcile(self, now: datetime | None = None) -> Decision:
        assert self.canary_revision is not None
        return reconcile(self._with_approvals(), self.plans, self.canary_revision,
                         self.ports(), now or datetime.now(UTC))

    def _with_approvals(self) -> Rollout:
        """The Rollout with the approvals given to this run (``meshctl rollout approve
        --state-dir``), as a cluster would hold them in its annotations."""
        found = read_approvals(approvals_path(self.state_dir, self.rollout.namespace,
                                              self.rollout.name))
        if not found:
            return self.rollout
        metadata = self.rollout.metadata
        merged = {**(metadata.annotations or {}), **found}
        return dataclasses.replace(self.rollout, metadata=dataclasses.replace(
            metadata, annotations=merged))

    def run(self, timeout: float | None = None,
            on_pass: Callable[[Decision], None] | None = None,
            max_sleep: float = 1.0) -> Decision:
        """Reconcile until finished (see :func:`is_finished`) or ``timeout`` seconds; the
        judge's Envoy recorders stop then."""
        try:
            return self._run(timeout, on_pass, max_sleep)
        finally:
            self.providers.close()

    def _run(self, timeout: float | None, on_pass: Callable[[Decision], None] | None,
             max_sleep: float) -> Decision:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                decision: Decision | None = self.reconcile()
            except XdsTimeout:
                # Envoy did not apply the split in time (it died and its supervisor is
                # starting it again): the split stays served, the status unsaved; the next
                # pass sees where the data plane is, as after a kill at "traffic-written".
                decision = None
            if decision is not None:
                if on_pass is not None:
                    on_pass(decision)
                if is_finished(decision):
                    return decision
            if deadline is not None and time.monotonic() >= deadline:
                status = decision.status if decision is not None else self.store.load()[0]
                raise TimeoutError(f"rollout not finished after {timeout:g}s: "
                                   f"{status.phase.value}: {status.message}")
            wait = decision.requeue_after if decision is not None else None
            time.sleep(min(max(wait or max_sleep, 0.05), max_sleep))


class SavedRouter:
    """The local mesh's router, each split saved (:class:`ServedSplit`) before Envoy is
    served it, so that a run started again serves what this one wrote last."""

    def __init__(self, mesh: LocalMesh, served: ServedSplit) -> None:
        self.mesh, self.served = mesh, served

    def written(self) -> TrafficSplit | None:
        return self.mesh.router.written()

    def observed(self) -> TrafficSplit | None:
        return self.mesh.router.observed()

    def unobserved_reason(self) -> str:
        return self.mesh.router.unobserved_reason()

    def apply(self, split: TrafficSplit) -> None:
        before = self.mesh.router.written()
        self._save(split)
        try:
            self.mesh.router.apply(split)
        except XdsRejected:  # Envoy keeps applying the one before
            if before is not None:
                self._save(before)
            raise

    def _save(self, split: TrafficSplit) -> None:
        """A file that cannot be written never holds back the traffic write (an abort's
        least of all): the file goes, and a run started again serves the status's weights."""
        try:
            self.served.save(split)
        except OSError as exc:
            log.warning("cannot save the served split in %s: %s", self.served.path, exc)
            self.served.forget()


def resumed_split(state_dir: Path, rollout: Rollout) -> TrafficSplit:
    """The split a local mesh for ``rollout`` starts with, from what its runs saved in
    ``state_dir`` (:func:`initial_split`)."""
    status, _ = FileStatusStore(state_dir, rollout).load()
    return initial_split(status, ServedSplit(state_dir, rollout.namespace, rollout.name).load())


def initial_split(status: RolloutStatus, served: TrafficSplit | None = None) -> TrafficSplit:
    """Where a restarted local mesh starts (no jump on resume): the split the killed run
    served last (``served``, header routes and mirror included), or else the weights its
    status says it wrote; a rollout not begun starts all stable."""
    if status.phase is Phase.PENDING:
        return TrafficSplit.stable_only()
    if served is not None:
        return served
    return TrafficSplit(Weights(status.weights.stable, status.weights.canary,
                                status.weights.baseline or 0))


def children_path(state_dir: Path, rollout: Rollout) -> Path:
    """Where a local run records the processes and directories it started."""
    status_path, _ = state_paths(state_dir, rollout.namespace, rollout.name)
    return status_path.with_name(status_path.name.replace(".status.json", ".children.json"))


@contextlib.contextmanager
def local_mesh_for(rollout: Rollout, state_dir: Path, load_rate: float = 0.0,
                   on_leftover: Callable[[str], None] | None = None,
                   on_notice: Callable[[str], None] | None = None) -> Iterator[LocalMesh]:
    """The local mesh for ``rollout``, with ``load_rate`` requests/s sent through it.

    What a killed earlier run of the same rollout left (its Envoy, Prometheus, apps, work
    directory) is stopped first and named to ``on_leftover``; a run of it still alive is
    refused. ``on_notice`` hears when the mesh's Envoy dies and is started again."""
    local = rollout.spec.local
    if local is None:
        raise LocalRunError("spec.local is required for --mesh local")
    with contextlib.ExitStack() as stack:
        try:
            leftovers = stack.enter_context(recording_children(children_path(state_dir, rollout)))
        except LocalMeshError as exc:
            raise LocalRunError(str(exc)) from exc
        for leftover in leftovers:
            if on_leftover is not None:
                on_leftover(leftover)
        fresh = local.fresh_baseline(rollout.spec.fresh_baseline)
        baseline = backend_of(fresh) if fresh is not None else None
        mesh = stack.enter_context(LocalMesh(stable=backend_of(local.stable),
                                             canary=backend_of(local.canary),
                                             baseline=baseline,
                                             initial_split=resumed_split(state_dir, rollout),
                                             on_notice=on_notice))
        if load_rate <= 0:
            yield mesh
            return
        load = LoadGenerator(mesh.url, rate=load_rate, concurrency=4).start()
        try:
            yield mesh
        finally:
            load.stop()
