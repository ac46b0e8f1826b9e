"""A service with a Rollout and the real controller (Manager) driving it, for tests of the
front-ends: the CLI and the gRPC API only record intents and read status, so something has
to act. The controller runs as its ServiceAccount; the world's cluster tier runs the Pods."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from meshctl.adapters.istiod import StoredWeights
from meshctl.adapters.rest import controller_client
from meshctl.controller.manager import Manager
from meshctl.domain.spec import GROUP, VERSION
from testworld.kube import KubeWorld

from .cluster_world import Driver, rollout, seed_service, weights

# One analysis step keeps each rollout to about ten seconds.
STEPS: list[dict[str, Any]] = [{"setWeight": 25}, {"analysis": {}}, {"setWeight": 50}]


class RunningController:
    """``with RunningController(world, ns, prometheus_url) as c:`` the namespace holds the
    service and an adopted (Healthy) Rollout ``web`` at image ``web:1``."""

    def __init__(self, world: KubeWorld, ns: str, prometheus_url: str,
                 steps: list[dict[str, Any]] | None = None) -> None:
        self.world, self.ns, self.prometheus_url = world, ns, prometheus_url
        self.driver = Driver(world, ns, prometheus_url)
        seed_service(world, ns)
        self.driver.kube.create(GROUP, VERSION, ns, "rollouts",
                                rollout(ns, "web:1", steps or STEPS))
        sa = world.service_account_kubeconfig("meshctl-system", "meshctl-controller")
        # no istiod in this world: proceed on the stored weights, reported as not observed
        self.manager = Manager(controller_client(sa), prometheus_url=prometheus_url,
                               data_plane=StoredWeights(),
                               identity=f"test-{ns}", namespace=ns,
                               lease_name=f"meshctl-{ns}"[:60], lease_seconds=3,
                               renew_seconds=0.5, resync_seconds=10)

    def __enter__(self) -> RunningController:
        self.manager.start()
        self.wait_for(lambda obj: (obj.get("status") or {}).get("phase") == "Healthy",
                      what="the Rollout to be adopted")
        return self

    def __exit__(self, *exc: object) -> None:
        self.manager.stop()
        self.manager.kube.close()
        self.driver.kube.close()

    @property
    def kubeconfig(self) -> str:
        return str(self.world.kubeconfig_path)

    def rollout(self) -> dict[str, Any]:
        return self.driver.get()

    def weights(self) -> dict[str, int]:
        return weights(self.driver.vs())

    def image(self, deployment: str = "web") -> str:
        found = self.driver.deployment(deployment)
        assert found is not None
        return str(found["spec"]["template"]["spec"]["containers"][0]["image"])

    def wait_for(self, condition: Callable[[dict[str, Any]], bool], timeout: float = 60.0,
                 what: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            obj = self.rollout()
            if condition(obj):
                return obj
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; status: {self.rollout().get('status')}")
