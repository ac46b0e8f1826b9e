"""The Istio traffic router over a real cluster: the Rollout's VirtualService (its named
routes) and DestinationRule subsets.

Translate, never decide: what to write comes from :mod:`meshctl.domain.routers.istio`; this class
reads and writes it, records what it borrowed, and puts it back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from meshctl.adapters.errors import NotFound, Unavailable
from meshctl.adapters.istiod import DataPlane
from meshctl.adapters.kube import Kube, Object
from meshctl.domain.routers.backend import (
    dropped_routes,
    given_back,
    recorded_original,
    remember_original,
    split_written,
    take_original,
)
from meshctl.domain.routers.istio import (
    apply_split,
    borrowed_subsets,
    managed_route_names,
    read_split,
    restored_virtual_service,
    uses_canary,
    with_canary_subset,
    without_canary_subset,
)
from meshctl.domain.spec import Rollout
from meshctl.domain.traffic import TrafficSplit

ISTIO = ("networking.istio.io", "v1")
SUBSET_TIMEOUT = 10.0  # seconds a new DestinationRule subset may take to reach the proxies


class IstioRouter:
    """TrafficRouter over the Rollout's VirtualService (and DestinationRule subsets).

    ``written()`` reads the VirtualService as the API server holds it; ``observed()`` reads
    the proxies through ``data_plane`` (istiod's debug API), never the stored object.
    """

    def __init__(self, kube: Kube, rollout: Rollout, data_plane: DataPlane) -> None:
        self.kube, self.rollout = kube, rollout
        routing = rollout.spec.traffic_routing
        assert routing is not None and routing.istio is not None
        self.routing = routing.istio
        self.data_plane = data_plane
        self._vs: Object | None = None
        self._unobserved = ""

    def _get_vs(self) -> Object:
        self._vs = self.kube.get(*ISTIO, self.rollout.namespace, "virtualservices",
                                 self.routing.virtual_service.name)
        return self._vs

    def written(self) -> TrafficSplit | None:
        """The split in the managed routes; None (a write follows) while a route taken off
        the Rollout's list still has to be given back."""
        vs = self._get_vs()
        if dropped_routes(vs, self.rollout.name, managed_route_names(vs, self.routing)):
            return None
        return read_split(vs, self.rollout)

    def observed(self) -> TrafficSplit | None:
        vs = self._vs if self._vs is not None else self._get_vs()
        names = managed_route_names(vs, self.routing)
        if not names:
            self._unobserved = "not observed: the VirtualService has no route meshctl manages"
            return None
        reading = self.data_plane.read(self.rollout, names[0], read_split(vs, self.rollout))
        self._unobserved = reading.reason
        return reading.split

    def unobserved_reason(self) -> str:
        return self._unobserved

    def apply(self, split: TrafficSplit) -> None:
        """Write ``split``; the canary subset (and a fresh baseline's) exists, at the
        proxies too, before a route uses it. They leave once the rollout is settled
        (:meth:`drop_canary_subset`)."""
        rollout = self.rollout
        dr = self.routing.destination_rule
        if dr is not None and uses_canary(split):
            self.prepare()  # written already while the canary started: no write then
            self._wait_for_subset(dr.canary_subset)
            if rollout.spec.fresh_baseline:
                self._wait_for_subset(dr.baseline_subset)
        seen, routing = self._vs, self.routing

        def change(vs: Object) -> Object:
            return split_written(vs, rollout.name, managed_route_names(vs, routing), seen,
                                 "http", self._restored,
                                 lambda mine: apply_split(mine, rollout, split))

        updated = self.kube.update_with_retry(
            *ISTIO, rollout.namespace, "virtualservices", self.routing.virtual_service.name,
            change)
        self._vs = updated.object

    def prepare(self) -> None:
        """Add the canary subset to the DestinationRule while the canary starts: istiod has
        pushed it to the proxies by the time the canary is ready, and the first weight is
        then one write of the VirtualService. A subset no route uses changes no traffic."""
        dr, rollout = self.routing.destination_rule, self.rollout
        if dr is not None:
            self.kube.update_with_retry(
                *ISTIO, rollout.namespace, "destinationrules", dr.name,
                lambda obj: with_canary_subset(remember_original(obj), rollout))

    def _wait_for_subset(self, subset: str) -> None:
        """A route to a subset the proxies do not have yet answers 503 (no cluster): wait
        until the data plane has it (istiod pushes it about 100 ms after the write)."""
        deadline = time.monotonic() + SUBSET_TIMEOUT
        while not self.data_plane.has_subset(self.rollout, subset):
            if time.monotonic() > deadline:
                raise Unavailable(f"subset {subset!r} has not reached the proxies with an "
                                  f"endpoint after {SUBSET_TIMEOUT:g} s; the route to it is "
                                  "not written yet")
            time.sleep(0.05)

    def restore(self) -> None:
        """Give back what meshctl changed (the Rollout is being deleted): the managed routes'
        destinations and mirror, its header routes, the canary subset it added. Edits
        others made meanwhile stay."""
        rollout = self.rollout

        def virtual_service(vs: Object) -> Object:
            return given_back(vs, rollout.name, managed_route_names(vs, self.routing),
                              self._restored)

        self._restore("virtualservices", self.routing.virtual_service.name, virtual_service)
        if self.routing.destination_rule is not None:
            self._restore("destinationrules", self.routing.destination_rule.name,
                          self._without_borrowed_subset)

    def _restored(self, vs: Object, original: Mapping[str, Any], routes: Sequence[str]
                  ) -> Object:
        return restored_virtual_service(vs, original, self.rollout, routes)

    def _restore(self, plural: str, name: str, change: Callable[[Object], Object]) -> None:
        with contextlib.suppress(NotFound):
            self.kube.update_with_retry(*ISTIO, self.rollout.namespace, plural, name, change)

    def _without_borrowed_subset(self, dr: Object) -> Object:
        original = take_original(dr)
        if original is None:
            return without_canary_subset(dr, self.rollout)
        return without_canary_subset(dr, self.rollout, borrowed_subsets(original, self.rollout))

    def settle(self) -> None:
        """The rollout is over and the proxies send everything to stable: the canary subset
        meshctl added may go (removing it earlier would leave a route without its cluster)."""
        self.drop_canary_subset()

    def drop_canary_subset(self) -> None:
        """Remove the canary subset if meshctl added it (kept when the user defined it)."""
        if self.routing.destination_rule is None:
            return
        rollout, remove = self.rollout, self._remove_borrowed_subset
        self.kube.update_with_retry(*ISTIO, rollout.namespace, "destinationrules",
                                    self.routing.destination_rule.name, remove)

    def _remove_borrowed_subset(self, dr: Object) -> Object:
        original = recorded_original(dr)
        if original is None:
            return without_canary_subset(dr, self.rollout)
        return without_canary_subset(dr, self.rollout, borrowed_subsets(original, self.rollout))
