"""The traffic backend registry: which backend a Rollout's ``spec.trafficRouting`` names.

Each backend is one pure module here (its spec section, its objects, its validation, its
``BACKEND``) and one adapter (``meshctl.adapters.istio``, ``meshctl.adapters.gatewayapi``)
that the factory ``meshctl.adapters.routers.router_for`` picks by the same key. Adding one is
a section field in :class:`TrafficRouting`, an entry in :data:`BACKENDS` and one in the
factory's ``ROUTERS``; validation, the plan, the reconcile pass, the data-plane reading and
the controller's watches ask the registry and name no backend.

    trafficRouting: {istio: {...}}       -> BACKENDS["istio"]
    trafficRouting: {gatewayAPI: {...}}  -> BACKENDS["gatewayAPI"]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshctl.domain.fields import field
from meshctl.domain.routers import gatewayapi, istio
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
BACKENDS: dict[str, Backend] = {
    istio.KEY: istio.BACKEND,
    gatewayapi.KEY: gatewayapi.BACKEND,
}


def chosen_key(spec: RolloutSpec) -> str | None:
    """The JSON name of the one section given (None: none, or more than one)."""
    routing = spec.traffic_routing
    if routing is None:
        return None
    given = [f.metadata["json"] for f in dataclasses.fields(routing)
             if getattr(routing, f.name) is not None]
    return given[0] if len(given) == 1 else None


def backend_of(rollout: Rollout) -> Backend | None:
    """The backend the Rollout's spec names (None: a local run, or an invalid spec)."""
    key = chosen_key(rollout.spec)
    return BACKENDS.get(key) if key is not None else None


def watched_kinds() -> tuple[Kind, ...]:
    """Every resource type some backend reads and writes, once each."""
    return tuple(dict.fromkeys(k for b in BACKENDS.values() for k in b.kinds))
