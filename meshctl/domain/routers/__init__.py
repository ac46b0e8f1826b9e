"""The traffic backend registry: which backend moves a Rollout's traffic.

Each backend is one pure module here (its spec section, its objects, its validation, whose
telemetry measures it, its ``BACKEND``) and one adapter. In a cluster the Rollout's
``spec.trafficRouting`` section names it and the factory
``meshctl.adapters.routers.router_for`` picks its adapter (``meshctl.adapters.istio``,
``meshctl.adapters.gatewayapi``) by the same key; a run on the embedded local mesh
(``--mesh local``) takes the local backend, whose adapter is the local mesh's own router.
Adding a cluster backend is a section field in :class:`TrafficRouting`, an entry in
:data:`BACKENDS` and one in the factory's ``ROUTERS``; validation, the plan, the analysis
queries, the reconcile pass, the data-plane reading and the controller's watches ask the
registry and name no backend.

    trafficRouting: {istio: {...}}       -> BACKENDS["istio"]
    trafficRouting: {gatewayAPI: {...}}  -> BACKENDS["gatewayAPI"]
    spec.local + --mesh local            -> BACKENDS["local"]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshctl.domain.fields import field
from meshctl.domain.routers import gatewayapi, istio, local
from meshctl.domain.routers.backend import Backend, Kind
from meshctl.domain.routers.gatewayapi import GatewayAPIRouting
from meshctl.domain.routers.istio import IstioRouting

if TYPE_CHECKING:
    from meshctl.domain.spec import Rollout, RolloutSpec


@dataclass(frozen=True)
class TrafficRouting:
    """Exactly one backend."""

    istio: IstioRouting | None = field("istio")
    gateway_api: GatewayAPIRouting | None = field("gatewayAPI")

    __schema_extra__ = {"maxProperties": 1}


DEFAULT_BACKEND = "istio"  # named when a Rollout names none
LOCAL_MESH = local.KEY  # the run's mesh that takes the local backend, whatever the spec routes
BACKENDS: dict[str, Backend] = {
    istio.KEY: istio.BACKEND,
    gatewayapi.KEY: gatewayapi.BACKEND,
    local.KEY: local.BACKEND,
}


def chosen_key(spec: RolloutSpec) -> str | None:
    """The JSON name of the one section given (None: none, or more than one)."""
    routing = spec.traffic_routing
    if routing is None:
        return None
    given = [f.metadata["json"] for f in dataclasses.fields(routing)
             if getattr(routing, f.name) is not None]
    return given[0] if len(given) == 1 else None


def routing_keys() -> tuple[str, ...]:
    """The backends a ``spec.trafficRouting`` section can name, by their JSON names."""
    return tuple(f.metadata["json"] for f in dataclasses.fields(TrafficRouting))


def backend_of(rollout: Rollout) -> Backend | None:
    """The backend the Rollout's ``spec.trafficRouting`` names in a cluster (None: it names
    none, or several)."""
    key = chosen_key(rollout.spec)
    return BACKENDS.get(key) if key is not None else None


def backend_for(rollout: Rollout, mesh: str) -> Backend | None:
    """The backend of a run on ``mesh``: the local one on :data:`LOCAL_MESH`, else the one
    the spec names (:func:`backend_of`)."""
    return BACKENDS[LOCAL_MESH] if mesh == LOCAL_MESH else backend_of(rollout)


def watched_kinds() -> tuple[Kind, ...]:
    """Every resource type some backend reads and writes, once each."""
    return tuple(dict.fromkeys(k for b in BACKENDS.values() for k in b.kinds))
