"""The traffic routers over a real cluster, one adapter per backend, chosen by the
Rollout's ``spec.trafficRouting`` (the domain registry: :mod:`meshctl.domain.routers`).

    router_for(kube, rollout, data_plane)   # IstioRouter, HTTPRouteRouter, ...

Each is a :class:`~meshctl.domain.ports.TrafficRouter` that also gives back what it borrowed
when the Rollout is deleted (``restore``), prepares for a canary while it starts
(``prepare``) and tidies up once the rollout is over (``settle``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from meshctl.adapters.gatewayapi import HTTPRouteRouter
from meshctl.adapters.istio import IstioRouter
from meshctl.adapters.istiod import DataPlane
from meshctl.adapters.kube import Kube
from meshctl.domain.ports import TrafficRouter
from meshctl.domain.routers import chosen_key, gatewayapi, istio
from meshctl.domain.spec import Rollout


class ClusterRouter(TrafficRouter, Protocol):
    def restore(self) -> None:
        """Give back what meshctl changed in the objects it borrowed; others' edits stay."""

    def prepare(self) -> None:
        """A canary is starting: make ready what a route to it needs (so the first weight,
        once the canary is ready, is a single write)."""

    def settle(self) -> None:
        """The rollout is over and the data plane is all stable: drop what only it needed."""


ROUTERS: dict[str, Callable[[Kube, Rollout, DataPlane], ClusterRouter]] = {
    istio.KEY: IstioRouter,
    gatewayapi.KEY: HTTPRouteRouter,
}


def router_for(kube: Kube, rollout: Rollout, data_plane: DataPlane) -> ClusterRouter:
    """The router of the backend the Rollout names; ValueError for a spec that names none
    (validation refuses those first)."""
    key = chosen_key(rollout.spec)
    if key is None or key not in ROUTERS:
        raise ValueError("spec.trafficRouting names no backend meshctl can drive in a cluster")
    return ROUTERS[key](kube, rollout, data_plane)
