"""The two versions on the local mesh, seen as workloads by the engine.

A cluster has Deployments with replicas; the local mesh has one process per version, so:

- canary replicas are logical (0 or more; the process keeps running) and ``ready`` is the
  desired count while the canary's process answers;
- promotion ("the stable workload runs the new revision") re-points Envoy's ``stable``
  cluster at the canary's endpoint over xDS, and waits for Envoy's ACK, which is what a
  rolled Deployment is to the data plane.
"""

from __future__ import annotations

from meshctl.domain.engine import DesiredWorkloads, WorkloadState
from meshctl.localmesh.mesh import LocalMesh
from meshctl.localmesh.procs import accepts
from meshctl.localmesh.resources import TYPE_CLUSTER, Upstream, cluster


class LocalWorkloads:
    def __init__(self, mesh: LocalMesh, stable_revision: str, canary_revision: str,
                 canary_replicas: int = 0) -> None:
        """``canary_replicas``: the logical count to start from (a resumed run passes what
        its saved status implies, so the canary does not look scaled to zero)."""
        self._mesh = mesh
        self._revisions = {"stable": stable_revision, "canary": canary_revision}
        self._stable_serves = stable_revision
        self._canary_replicas = canary_replicas
        self._baseline_replicas = canary_replicas  # a resumed run's, like the canary's

    def observe(self) -> tuple[WorkloadState, WorkloadState, WorkloadState]:
        layout = self._mesh.xds.layout
        stable_up = self._stable_upstream()
        stable = WorkloadState(1, 1 if accepts(stable_up.host, stable_up.port) else 0, self._stable_serves)
        ready = self._canary_replicas if accepts(layout.canary.host, layout.canary.port) else 0
        canary = WorkloadState(self._canary_replicas, ready, self._revisions["canary"])
        return stable, canary, self._baseline()

    def _baseline(self) -> WorkloadState:
        """A fresh baseline: a third process of the stable version (its revision), started
        with the mesh; its replicas are logical, like the canary's."""
        up = self._mesh.xds.layout.baseline
        if up is None:
            return WorkloadState()
        count = self._baseline_replicas
        return WorkloadState(count, count if accepts(up.host, up.port) else 0,
                             self._revisions["stable"] if count else None)

    def apply(self, desired: DesiredWorkloads) -> None:
        self._canary_replicas = desired.canary_replicas
        self._baseline_replicas = desired.baseline_replicas
        if desired.stable_revision != self._stable_serves:
            self.point_stable_at(desired.stable_revision)

    def _stable_upstream(self) -> Upstream:
        layout = self._mesh.xds.layout
        source = layout.canary if self._stable_serves == self._revisions["canary"] else layout.stable
        return Upstream(layout.stable.cluster, source.host, source.port)

    def point_stable_at(self, revision: str) -> None:
        if revision == self._stable_serves:
            return
        if revision not in self._revisions.values():
            raise ValueError(f"no local version has revision {revision}")
        self._stable_serves = revision
        xds = self._mesh.xds
        baseline = [xds.layout.baseline] if xds.layout.baseline else []
        version = xds.set_resources(TYPE_CLUSTER, [cluster(self._stable_upstream()),
                                                   cluster(xds.layout.canary),
                                                   *map(cluster, baseline)])
        xds.wait_for_ack(version, TYPE_CLUSTER)
