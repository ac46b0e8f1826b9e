"""The local mesh's :class:`~meshctl.domain.ports.TrafficRouter`: xDS in, Envoy admin out.

- :meth:`LocalTrafficRouter.apply` serves the split's route configuration and waits until
  the Envoy ACKs it, so when it returns the data plane applies the split. On a NACK it puts
  the last good split back in the xDS server (an Envoy that reconnects gets good config;
  the Envoy that rejected it never stopped applying it) and raises :class:`XdsRejected` with
  Envoy's message. On a timeout it raises :class:`XdsTimeout` and keeps serving the new
  split: an Envoy that comes back applies the latest intent.
- :meth:`LocalTrafficRouter.observed` reads the route configuration Envoy is applying from its
  admin ``/config_dump`` and translates it back: the data-plane observation.
- :meth:`LocalTrafficRouter.written` is the split last applied successfully (the initial
  split of the mesh before any apply).
"""

from __future__ import annotations

import logging
import threading

from meshctl.domain.traffic import TrafficSplit
from meshctl.localmesh.envoy import Envoy
from meshctl.localmesh.procs import LocalMeshError
from meshctl.localmesh.resources import (
    ROUTE_NAME,
    TYPE_ROUTE,
    route_config_from_json,
    route_config_to_split,
)
from meshctl.localmesh.xds import Nack, XdsRejected, XdsServer, XdsTimeout

log = logging.getLogger(__name__)

__all__ = ["LocalTrafficRouter", "XdsRejected", "XdsTimeout"]


class LocalTrafficRouter:
    """TrafficRouter for one local mesh: ``xds`` serves the routes ``envoy`` applies."""

    def __init__(self, xds: XdsServer, envoy: Envoy, *, ack_timeout: float = 5.0) -> None:
        self._xds = xds
        self._envoy = envoy
        self._ack_timeout = ack_timeout
        self._written = xds.split
        self._lock = threading.Lock()  # one apply at a time: written() stays truthful
        self._unobserved = ""

    def written(self) -> TrafficSplit | None:
        return self._written

    def apply(self, split: TrafficSplit) -> None:
        """Serve ``split`` and return once Envoy applies it (raises XdsRejected/XdsTimeout)."""
        with self._lock:
            version = self._xds.set_split(split)
            try:
                self._xds.wait_for_ack(version, TYPE_ROUTE, timeout=self._ack_timeout)
            except XdsRejected:
                self._restore(self._written)
                raise
            except XdsTimeout:
                self._written = split
                raise
            self._written = split

    def observed(self) -> TrafficSplit | None:
        """The split Envoy applies now; None if Envoy has no routes yet or does not answer."""
        try:
            found = self._envoy.route_config(ROUTE_NAME)
        except (LocalMeshError, ValueError) as exc:
            log.warning("cannot read Envoy's routes: %s", exc)
            self._unobserved = f"not observed: cannot read Envoy's routes ({exc})"
            return None
        if found is None:
            self._unobserved = "not observed: Envoy has no routes yet"
            return None
        config = route_config_from_json(found[1])
        self._unobserved = ""
        return route_config_to_split(config, self._xds.layout)

    def unobserved_reason(self) -> str:
        return self._unobserved

    def observed_version(self) -> int | None:
        """The route version Envoy applies (as served by the xDS server), or None."""
        found = self._envoy.route_config(ROUTE_NAME)
        return int(found[0]) if found is not None and found[0].isdigit() else None

    @property
    def last_rejection(self) -> Nack | None:
        """Envoy's last NACK (any type), with its message; kept after later successes."""
        return self._xds.last_nack

    def _restore(self, split: TrafficSplit) -> None:
        version = self._xds.set_split(split)
        try:
            self._xds.wait_for_ack(version, TYPE_ROUTE, timeout=self._ack_timeout)
        except (XdsRejected, XdsTimeout) as exc:  # keep the original error in front
            log.warning("could not re-serve the last good split: %s", exc)
