"""istiod's debug API: which proxies acknowledged what, and the routes istiod made for them.

The same two reads as ``istioctl proxy-status``: ``GET /debug/syncz`` (one entry per
connected proxy, with the route push it was last sent and the one it acknowledged) and
``GET /debug/config_dump?proxyID=<proxy>`` (the Envoy configuration istiod generates for
that proxy, with the version of the push it was made from; ``types=rds`` would leave the
version out). In a cluster the debug API is istiod's port 15014, which wants a
bearer token (a projected ServiceAccount token with audience ``istio-ca``); in the test world
it is istiod's plain ``--httpAddr``.

:class:`IstiodDataPlane` judges nothing itself: it fetches and hands plain values to
:func:`meshctl.domain.dataplane.read`. A failure to reach istiod is the reading
"stored, not observed: ..." (never an exception, never the stored weights).
:class:`StoredWeights` is the explicit choice to run without istiod: it observes nothing and
says so, and lets steps proceed on the weights as written.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from meshctl.adapters.errors import AdapterError, Forbidden, Unavailable
from meshctl.adapters.retries import Silence
from meshctl.domain.dataplane import (
    NOT_OBSERVED,
    ProxyRoutes,
    Reading,
    endpoint_counts,
    has_subset,
    push_number,
    read,
)
from meshctl.domain.spec import Rollout
from meshctl.domain.traffic import TrafficSplit

ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


class DataPlane(Protocol):
    """Where a cluster's data plane is read (istiod), or the choice not to read it."""

    trusts_written: bool

    def has_subset(self, rollout: Rollout, subset: str) -> bool:
        """Every proxy that routes the service has the subset's cluster (and its endpoints)
        and acknowledged them: a route may now send traffic to it. Raises AdapterError
        when that cannot be known."""

    def read(self, rollout: Rollout, route_name: str, written: TrafficSplit | None) -> Reading:
        """The split the proxies serving the Rollout's route apply, or why it is unknown."""


class Istiod:
    """A client of istiod's debug API at ``url`` (``http(s)://host:port``).

    Thread-safe. An answer is reused for ``reuse_seconds``, so the passes of many Rollouts
    at the same moment cost istiod one /debug/syncz and one dump per proxy, not one each.
    When istiod gives no usable answer (no connection, none within ``timeout``, or not
    JSON), it is not asked again for ``down_hold`` seconds
    (:class:`~meshctl.adapters.retries.Silence`)."""

    def __init__(self, url: str, token_file: str | None = None, timeout: float = 2.0,
                 reuse_seconds: float = 0.1, down_hold: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url.rstrip("/")
        self.token_file = token_file
        self.timeout = timeout
        self.reuse_seconds = reuse_seconds
        self._clock = clock
        self._silence = Silence("istiod", down_hold, clock)
        self._answers: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _get(self, path: str, query: dict[str, str] | None = None) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        with self._lock:
            at, answer = self._answers.get(url, (0.0, None))
        if self._clock() - at < self.reuse_seconds:
            return answer
        silent = self._silence.reason()
        if silent:
            raise Unavailable(silent)
        try:
            answer = self._fetch(path, url)
        except Unavailable as exc:
            if not exc.status:  # no usable answer (an HTTP error status is one, and says why)
                self._silence.heard_nothing(exc.message)
            raise
        with self._lock:
            if len(self._answers) > 1000:
                self._answers.clear()
            self._answers[url] = (self._clock(), answer)
        return answer

    def _fetch(self, path: str, url: str) -> Any:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.token_file:  # re-read each time: projected tokens rotate
            token = Path(self.token_file).read_text().strip()
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise Forbidden(f"istiod {path}: {exc.code} (check --istiod-token-file)",
                                status=exc.code) from exc
            raise Unavailable(f"istiod {path}: HTTP {exc.code}", status=exc.code) from exc
        except (OSError, ValueError) as exc:
            raise Unavailable(f"istiod {path}: {type(exc).__name__}: {exc}") from exc

    def acknowledged(self, *types: str) -> dict[str, bool]:
        """Each connected proxy: has it acknowledged the last push of each of ``types``
        (default: routes) istiod sent it?"""
        return {proxy: all(bool(sent) and sent == acked
                           for sent, acked in (pushes.get(kind, ("", "")) for kind in
                                               types or (ROUTE_TYPE,)))
                for proxy, pushes in self._pushes().items()}

    def route_sync(self) -> dict[str, tuple[bool, str]]:
        """Each connected proxy: has it acknowledged the last route push istiod sent it,
        and the nonce of the route push it acknowledged (one read of /debug/syncz)."""
        out = {}
        for proxy, pushes in self._pushes().items():
            sent, acked = pushes.get(ROUTE_TYPE, ("", ""))
            out[proxy] = (bool(sent) and sent == acked, acked)
        return out

    def _pushes(self) -> dict[str, dict[str, tuple[str, str]]]:
        """Each connected proxy: for each type URL, the nonces istiod last sent and the
        proxy last acknowledged (one read of /debug/syncz)."""
        out = {}
        for entry in self._get("/debug/syncz") or []:
            out[str(entry.get("proxy", ""))] = {
                str(kind): (str((push or {}).get("sent", "")), str((push or {}).get("acked", "")))
                for kind, push in (entry.get("resources") or {}).items()}
        return out

    def cluster_names(self, proxy: str) -> tuple[str, ...]:
        """The names of the Envoy clusters istiod generates for ``proxy`` now."""
        dump = self._get("/debug/config_dump", {"proxyID": proxy, "types": "cds"})
        names = []
        for section in dump.get("configs", []):
            if str(section.get("@type", "")).endswith(".Cluster"):
                names.append(str(section.get("name", "")))
            for entry in section.get("dynamicActiveClusters", []):
                names.append(str((entry.get("cluster") or {}).get("name", "")))
        return tuple(names)

    def load_assignments(self, proxy: str) -> tuple[dict[str, Any], ...]:
        """The Envoy ClusterLoadAssignments (each cluster's endpoints) istiod generates for
        ``proxy`` now."""
        dump = self._get("/debug/config_dump", {"proxyID": proxy, "types": "eds"})
        return tuple(section for section in dump.get("configs", [])
                     if str(section.get("@type", "")).endswith(".ClusterLoadAssignment"))

    def route_configs(self, proxy: str) -> tuple[str, tuple[dict[str, Any], ...]]:
        """The Envoy RouteConfigurations istiod generates for ``proxy`` now, and the version
        of the push they are made from ("" when the dump names none)."""
        dump = self._get("/debug/config_dump", {"proxyID": proxy})
        version, configs = "", []
        for section in dump.get("configs", []):
            for entry in section.get("dynamicRouteConfigs", []):
                if entry.get("routeConfig"):
                    version = version or str(entry.get("versionInfo", ""))
                    configs.append(entry["routeConfig"])
        return version, tuple(configs)


class IstiodDataPlane:
    """Observes a Rollout's managed route at the proxies istiod programs.

    Thread-safe. It remembers, per proxy, since when it has seen the same routes in its dump
    and the same acknowledged route push: a push that leaves the routes alone is told from
    one on its way by that time (see :mod:`meshctl.domain.dataplane`)."""

    trusts_written = False

    def __init__(self, istiod: Istiod, clock: Callable[[], float] = time.monotonic) -> None:
        self.istiod = istiod
        self._clock = clock
        self._since: dict[str, tuple[tuple[object, ...], float]] = {}
        self._lock = threading.Lock()

    def read(self, rollout: Rollout, route_name: str, written: TrafficSplit | None) -> Reading:
        try:  # syncz first: what a proxy acknowledged is read no later than its dump
            sync = self.istiod.route_sync()
            proxies = []
            for proxy, (acked, nonce) in sorted(sync.items()):
                version, configs = self.istiod.route_configs(proxy)
                proxies.append(ProxyRoutes(
                    proxy, acked, configs, push_number(version), push_number(nonce),
                    self._unchanged_for(proxy, (nonce, configs))))
        except AdapterError as exc:
            return Reading(None, f"{NOT_OBSERVED}: cannot read istiod's debug API at "
                           f"{self.istiod.url} ({exc.message})")
        return read(proxies, rollout, route_name, written)

    def _unchanged_for(self, proxy: str, state: tuple[object, ...]) -> float:
        """Seconds since this reader first saw ``state`` for ``proxy`` (0 when it changed).
        Not the dump's version: pushes that change no routes may follow each other faster
        than the wait, and must not keep the routes unobserved."""
        now = self._clock()
        with self._lock:
            seen, since = self._since.get(proxy, (None, now))
            if seen != state:
                if len(self._since) > 10_000:
                    self._since.clear()
                self._since[proxy], since = (state, now), now
        return now - since

    def has_subset(self, rollout: Rollout, subset: str) -> bool:
        found = []  # istiod unreachable: the AdapterError says so (the pass is retried)
        for proxy, acked in self.istiod.acknowledged(CLUSTER_TYPE, ENDPOINT_TYPE).items():
            present = has_subset(self.istiod.cluster_names(proxy), rollout, subset,
                                 endpoint_counts(self.istiod.load_assignments(proxy)))
            if present is not None:  # a proxy that routes the service
                found.append(present and acked)
        return bool(found) and all(found)


class StoredWeights:
    """No data plane to read (the controller runs without ``--istiod-debug-url``, by the
    operator's explicit choice): nothing is observed, and steps proceed on the weights as
    written, as Argo Rollouts does."""

    trusts_written = True

    def read(self, rollout: Rollout, route_name: str, written: TrafficSplit | None) -> Reading:
        return Reading(None, f"{NOT_OBSERVED}: the controller runs without istiod "
                       "(--trust-stored-weights)")

    def has_subset(self, rollout: Rollout, subset: str) -> bool:
        return True  # cannot know; the route is written right after the subset
