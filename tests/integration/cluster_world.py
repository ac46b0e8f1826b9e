"""A service in the test world's API server, as a user would have it before meshctl: a
Deployment, a VirtualService (with a route meshctl does not manage) and a DestinationRule;
and a driver that runs the controller's reconcile on a Rollout. The world's cluster tier (the
``cluster`` fixture) makes the Pods: the Deployment controller, the scheduler and hollow nodes,
so readiness is what a user's cluster reports."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from meshctl.adapters.errors import NotFound
from meshctl.adapters.istiod import DataPlane, StoredWeights
from meshctl.adapters.kube import Kube
from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.domain.analysis import ResolvedMetric
from meshctl.domain.resolve import Target, slo_metrics
from meshctl.domain.routers.backend import MeshKind
from meshctl.domain.spec import GROUP, VERSION, Rollout
from meshctl.domain.validation import load_document
from meshctl.ops.lifecycle import Reconciled, reconcile_object
from testworld.cluster import subset_service, wait_available
from testworld.kube import KubeWorld

ADMIN_ROUTE = {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
               "route": [{"destination": {"host": "web-admin"}}]}


def template(image: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": image}]}}


def seed_service(kube: KubeWorld, ns: str, replicas: int = 2) -> None:
    """Create the service and wait until the cluster has its Pods ready."""
    kube.apply(subset_service(ns, "web", template("web:1"), replicas, [ADMIN_ROUTE]))
    wait_available(kube, ns, "web", replicas)


def rollout(ns: str, image: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "service": "web", "workloadRef": {"name": "web"}, "template": template(image),
            "trafficRouting": {"istio": {
                "virtualService": {"name": "web", "routes": ["primary"]},
                "destinationRule": {"name": "web", "stableSubset": "stable",
                                    "canarySubset": "canary"}}},
            "slo": {"window": "4s", "interval": "1s", "count": 2, "minRequests": 5},
            "abortScaleDownDelaySeconds": 2,
            "strategy": {"canary": {"steps": steps}},
            **spec,
        },
    }


def slo_checks(ns: str, **slo: Any) -> tuple[ResolvedMetric, ...]:
    """The SLO checks meshctl resolves for :func:`rollout` with these ``slo`` settings."""
    doc = load_document(rollout(ns, "web:1", [{"setWeight": 10}, {"analysis": {}}], slo=slo))
    assert isinstance(doc, Rollout)
    return slo_metrics(doc, Target.of(doc, MeshKind.ISTIO))


class Driver:
    """Runs reconcile passes like the controller would."""

    def __init__(self, world: KubeWorld, ns: str, prometheus_url: str,
                 data_plane: DataPlane | None = None, observe_timeout: float | None = None,
                 name: str = "web") -> None:
        """``data_plane``: istiod to observe the weights at; by default none (this world
        has no istiod unless a test starts one): steps proceed on the stored weights."""
        self.world, self.ns, self.name = world, ns, name
        self.data_plane = data_plane or StoredWeights()
        self.observe_timeout = observe_timeout
        self.kube = Kube.from_kubeconfig(world.kubeconfig_path)  # the user (admin)
        # the controller's passes run as its ServiceAccount: manifests/rbac must be enough
        self.controller = Kube.from_kubeconfig(
            world.service_account_kubeconfig("meshctl-system", "meshctl-controller"))
        self.provider = PrometheusProvider(prometheus_url)
        self.outcomes: list[Reconciled] = []
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # tests may set it

    def metrics(self, address: str | None) -> PrometheusProvider:
        return self.provider

    def get(self, plural: str = "rollouts", name: str | None = None, group: str = GROUP,
            version: str = VERSION) -> dict[str, Any]:
        return self.kube.get(group, version, self.ns, plural, name or self.name)

    def vs(self) -> dict[str, Any]:
        return self.get("virtualservices", "web", "networking.istio.io", "v1")

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.kube.get_or_none("apps", "v1", self.ns, "deployments", name)

    def once(self) -> Reconciled:
        try:
            obj = self.get()
        except NotFound:
            return Reconciled(deleted=True)
        outcome = reconcile_object(self.controller, obj, self.metrics, self.clock(),
                                   data_plane=self.data_plane,
                                   observe_timeout=self.observe_timeout)
        self.outcomes.append(outcome)
        return outcome

    def until(self, done: Callable[[dict[str, Any]], bool], timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            outcome = self.once()
            obj = self.get()
            if done(obj):
                return obj
            time.sleep(min(max(outcome.requeue_after or 0.5, 0.05), 0.5))
        raise AssertionError(f"timed out; status: {self.get().get('status')}")


def judged_world(kube: KubeWorld, ns: str, exporter: Any, url: str,
                 workloads: tuple[str, ...], steps: list[dict[str, Any]],
                 judge: dict[str, Any]) -> Driver:
    """The service seeded, each of ``workloads`` answering 40 requests/s at 5 ms with no
    errors (the sidecars' stand-in ``exporter``, scraped by the Prometheus at ``url``), and
    a Rollout judged by ``judge`` adopted (Healthy)."""
    seed_service(kube, ns)
    for workload in workloads:
        exporter.set(ns, "web", workload, rps=40, error_rate=0.0, latency_ms=5)
    driver = Driver(kube, ns, url)
    driver.kube.create(GROUP, VERSION, ns, "rollouts", rollout(ns, "web:1", steps, judge=judge))
    driver.until(phase("Healthy"))
    return driver


def phase(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: (obj.get("status") or {}).get("phase") == name


def weights(vs: dict[str, Any]) -> dict[str, int]:
    route = next(r for r in vs["spec"]["http"] if r.get("name") == "primary")
    return {d["destination"].get("subset", "?"): d.get("weight", 100) for d in route["route"]}
