"""The Gateway API backend's adapter: an HTTPRoute read and written through the API server.

Translate, never decide: the HTTPRoute meshctl writes comes from
:mod:`meshctl.domain.routers.gatewayapi`. ``written()`` reads the HTTPRoute as the API
server holds it; ``observed()`` asks the data plane (istiod's debug API, when istiod is the
Gateway API implementation) for the split the proxies apply, never the stored object.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from meshctl.adapters.errors import NotFound
from meshctl.adapters.istiod import DataPlane
from meshctl.adapters.kube import Kube, Object
from meshctl.domain.routers.backend import dropped_routes, given_back, split_written
from meshctl.domain.routers.gatewayapi import (
    HTTP_ROUTE,
    apply_split,
    managed_rule_names,
    read_split,
    restored_http_route,
    routing_of,
)
from meshctl.domain.spec import Rollout
from meshctl.domain.traffic import TrafficSplit

API = (HTTP_ROUTE.group, HTTP_ROUTE.version)


class HTTPRouteRouter:
    """TrafficRouter over the Rollout's HTTPRoute (weights on the managed rules)."""

    def __init__(self, kube: Kube, rollout: Rollout, data_plane: DataPlane) -> None:
        self.kube, self.rollout, self.data_plane = kube, rollout, data_plane
        self.routing = routing_of(rollout)
        self._route: Object | None = None
        self._unobserved = ""

    def _get(self) -> Object:
        self._route = self.kube.get(*API, self.rollout.namespace, HTTP_ROUTE.plural,
                                    self.routing.http_route.name)
        return self._route

    def written(self) -> TrafficSplit | None:
        """The split in the managed rules; None (a write follows) while a rule taken off
        the Rollout's list still has to be given back."""
        route = self._get()
        if dropped_routes(route, self.rollout.name, managed_rule_names(route, self.routing)):
            return None
        return read_split(route, self.rollout)

    def observed(self) -> TrafficSplit | None:
        route = self._route if self._route is not None else self._get()
        names = managed_rule_names(route, self.routing)
        if not names:
            self._unobserved = "not observed: the HTTPRoute has no rule meshctl manages"
            return None
        reading = self.data_plane.read(self.rollout, names[0], read_split(route, self.rollout))
        self._unobserved = reading.reason
        return reading.split

    def unobserved_reason(self) -> str:
        return self._unobserved

    def apply(self, split: TrafficSplit) -> None:
        """Write ``split`` into the managed rules in one update (the original spec is
        recorded before meshctl's first change)."""
        rollout, seen, routing = self.rollout, self._route, self.routing

        def change(route: Object) -> Object:
            return split_written(route, rollout.name, managed_rule_names(route, routing),
                                 seen, "rules", self._restored,
                                 lambda mine: apply_split(mine, rollout, split))

        updated = self.kube.update_with_retry(
            *API, rollout.namespace, HTTP_ROUTE.plural, self.routing.http_route.name, change)
        self._route = updated.object

    def restore(self) -> None:
        """Give back what meshctl changed (the Rollout is being deleted): the managed rules'
        backendRefs and mirror, its header rules. Edits others made meanwhile stay."""
        rollout = self.rollout

        def restored(route: Object) -> Object:
            return given_back(route, rollout.name, managed_rule_names(route, self.routing),
                              self._restored)

        with contextlib.suppress(NotFound):
            self.kube.update_with_retry(*API, rollout.namespace, HTTP_ROUTE.plural,
                                        self.routing.http_route.name, restored)

    def _restored(self, route: Object, original: Mapping[str, Any], rules: Sequence[str]
                  ) -> Object:
        return restored_http_route(route, original, self.rollout, rules)

    def prepare(self) -> None:
        """Nothing to prepare: a backendRef to the canary's Service needs no other object."""

    def settle(self) -> None:
        """Nothing to tidy once the rollout is over: the HTTPRoute borrows no other object."""
