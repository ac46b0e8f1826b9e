"""The controller process: watches, a work queue, workers, leader election, health.

::

    Manager(kube, prometheus_url=..., data_plane=..., identity=...).start()   # threads work
    ...
    manager.stop()                                              # graceful: finish, release

Each worker: take a key, read the Rollout fresh, :func:`reconcile_object`, requeue after
``requeue_after`` or back off on error. Only while this process holds the Lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from meshctl.adapters.cache import CachedKube, ObjectCache
from meshctl.adapters.cluster import EventWriter
from meshctl.adapters.errors import AdapterError, NotFound
from meshctl.adapters.istiod import DataPlane
from meshctl.adapters.kube import Kube
from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.controller.health import HealthServer
from meshctl.controller.leader import LeaderElector
from meshctl.controller.metrics import ControllerMetrics
from meshctl.controller.queue import WorkQueue
from meshctl.domain.ports import MetricProvider
from meshctl.domain.spec import GROUP, VERSION
from meshctl.ops.cluster import reconcile_object

log = logging.getLogger(__name__)
Key = tuple[str, str]
WATCH_SECONDS = 300
WATCHED = ("rollouts", "deployments", "virtualservices", "destinationrules", "analysistemplates")


def _no_keys(kind: str, obj: dict[str, Any]) -> Iterable[Key]:
    return ()


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class _Index:
    """Which Rollouts use which Deployment and VirtualService (from the Rollout cache)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uses: dict[Key, set[tuple[str, str, str]]] = {}

    def update(self, key: Key, obj: dict[str, Any] | None) -> None:
        refs: set[tuple[str, str, str]] = set()
        if obj is not None:
            spec = obj.get("spec") or {}
            workload = (spec.get("workloadRef") or {}).get("name")
            if workload:
                refs |= {("deployments", key[0], workload),
                         ("deployments", key[0], f"{workload}-canary")}
            vs = (((spec.get("trafficRouting") or {}).get("istio") or {})
                  .get("virtualService") or {}).get("name")
            if vs:
                refs.add(("virtualservices", key[0], vs))
        with self._lock:
            self._uses[key] = refs
            if obj is None:
                del self._uses[key]

    def rollouts(self) -> list[Key]:
        with self._lock:
            return list(self._uses)

    def users(self, plural: str, namespace: str, name: str) -> list[Key]:
        with self._lock:
            return [k for k, refs in self._uses.items() if (plural, namespace, name) in refs]


class Manager:
    def __init__(self, kube: Kube, *, prometheus_url: str, data_plane: DataPlane,
                 observe_timeout: float | None = 30.0, identity: str | None = None,
                 namespace: str | None = None, lease_namespace: str = "meshctl-system",
                 lease_name: str = "meshctl-controller", workers: int = 2,
                 health_host: str = "127.0.0.1", health_port: int = 0,
                 resync_seconds: float = 30.0, lease_seconds: int = 15,
                 renew_seconds: float = 5.0) -> None:
        self.cache = ObjectCache()
        self.kube = CachedKube(kube, self.cache)  # reads from the watches, writes through
        self.events = EventWriter(kube)
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.metrics = ControllerMetrics()
        self.queue = WorkQueue()
        self.index = _Index()
        self.resync_seconds = resync_seconds
        self._prometheus_url = prometheus_url
        self.data_plane = data_plane
        self.observe_timeout = observe_timeout
        self._providers: dict[str, MetricProvider] = {}
        self._stop = threading.Event()
        self._synced = threading.Event()
        self.elector = LeaderElector(kube, lease_namespace, lease_name, self.identity,
                                     lease_seconds, renew_seconds, on_change=self._leadership)
        self.health = HealthServer(health_host, health_port, self.ready, self.metrics.exposition)
        self._workers = workers
        self._threads = [threading.Thread(target=self._worker, name=f"meshctl-worker-{i}",
                                          daemon=True) for i in range(workers)]
        self._threads += [
            threading.Thread(target=self._watch, args=(GROUP, VERSION, "rollouts", self._on_rollout),
                             name="meshctl-watch-rollouts", daemon=True),
            threading.Thread(target=self._watch, args=("apps", "v1", "deployments",
                                                       self._on_used("deployments")),
                             name="meshctl-watch-deployments", daemon=True),
            threading.Thread(target=self._watch, args=("networking.istio.io", "v1",
                                                       "virtualservices",
                                                       self._on_used("virtualservices")),
                             name="meshctl-watch-virtualservices", daemon=True),
            threading.Thread(target=self._watch, args=("networking.istio.io", "v1",
                                                       "destinationrules", _no_keys),
                             name="meshctl-watch-destinationrules", daemon=True),
            threading.Thread(target=self._watch, args=(GROUP, VERSION, "analysistemplates",
                                                       self._on_template),
                             name="meshctl-watch-analysistemplates", daemon=True),
            threading.Thread(target=self._resync, name="meshctl-resync", daemon=True),
        ]

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.elector.is_leader

    @property
    def health_url(self) -> str:
        return self.health.url

    def ready(self) -> bool:
        return self._synced.is_set() and not self._stop.is_set()

    def start(self) -> Manager:
        self.health.start()
        self.elector.start()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        """Stop taking work, let passes in flight finish, give up the lease."""
        self._stop.set()
        self.queue.close()
        for thread in self._threads[: self._workers]:
            thread.join(timeout=30)  # passes in flight finish under the lease
        self.elector.stop(release=release)
        self.events.close()
        self.health.stop()
        # watch threads end with their long poll (daemon threads: they never block exit)

    def metrics_provider(self, address: str | None) -> MetricProvider:
        target = address or self._prometheus_url
        if target not in self._providers:
            self._providers[target] = PrometheusProvider(target)
        return self._providers[target]

    # -- events in --------------------------------------------------------------------------

    def _leadership(self, leader: bool) -> None:
        self.metrics.leader.set(1 if leader else 0)
        if leader:
            for key in self.index.rollouts():
                self.queue.add(key)

    def _on_rollout(self, kind: str, obj: dict[str, Any]) -> Iterable[Key]:
        meta = obj["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        self.index.update(key, None if kind == "DELETED" else obj)
        if kind == "DELETED":
            self.metrics.forget(f"{key[0]}/{key[1]}")
            return []
        return [key]

    def _on_template(self, kind: str, obj: dict[str, Any]) -> Iterable[Key]:
        namespace = obj["metadata"].get("namespace", "default")
        return [k for k in self.index.rollouts() if k[0] == namespace]

    def _on_used(self, plural: str) -> Callable[[str, dict[str, Any]], Iterable[Key]]:
        def keys(kind: str, obj: dict[str, Any]) -> Iterable[Key]:
            meta = obj["metadata"]
            return self.index.users(plural, meta.get("namespace", "default"), meta["name"])
        return keys

    def _resync(self) -> None:
        """Every ``resync_seconds``, every Rollout is reconciled again (from the cache: a
        resync costs no list), so a change no watch reported is still noticed."""
        while not self._stop.wait(self.resync_seconds):
            for key in self.index.rollouts():
                self.queue.add(key)

    def _watch(self, group: str, version: str, plural: str,
               to_keys: Callable[[str, dict[str, Any]], Iterable[Key]]) -> None:
        """List, then watch until the server ends the watch (``WATCH_SECONDS``) or says
        410 Gone; then list again."""
        failures = 0
        while not self._stop.is_set():
            try:
                # one watched namespace: list and watch there only, so a Role is enough
                items, version_seen = self.kube.list_all(group, version, plural,
                                                         namespace=self.namespace)
                items = [i for i in items if self._wanted(i)]
                self.cache.replace(plural, items, version_seen)
                for item in items:
                    if self._wanted(item):
                        for key in to_keys("ADDED", item):
                            self.queue.add(key)
                if self.synced():
                    self._synced.set()
                failures = 0
                for kind, obj in self.kube.watch(group, version, plural, version_seen,
                                                 timeout_seconds=WATCH_SECONDS,
                                                 namespace=self.namespace):
                    if self._stop.is_set():
                        return
                    if self._wanted(obj):
                        if kind == "DELETED":
                            self.cache.delete(plural, obj)
                        else:
                            self.cache.put(plural, obj)
                        for key in to_keys(kind, obj):
                            self.queue.add(key)
            except NotFound:
                continue  # 410 Gone: list again
            except AdapterError as exc:
                failures += 1
                self.metrics.api_errors.labels("watch").inc()
                log.warning("watch %s: %s", plural, exc)
                self._stop.wait(min(30.0, 0.5 * 2 ** failures))

    def synced(self) -> bool:
        return all(self.cache.synced(p) for p in WATCHED)

    def _wanted(self, obj: dict[str, Any]) -> bool:
        return self.namespace is None or obj["metadata"].get("namespace") == self.namespace

    # -- work ---------------------------------------------------------------------------

    def _worker(self) -> None:
        while not self._stop.is_set():
            if not self.elector.is_leader:
                self._stop.wait(0.2)
                continue
            key = self.queue.get(timeout=0.5)
            if key is None:
                continue
            try:
                self._process(key)  # type: ignore[arg-type]
            finally:
                self.queue.done(key)

    def _process(self, key: Key) -> None:
        namespace, name = key
        started = time.perf_counter()
        result = "ok"
        try:
            obj = self.kube.get_or_none(GROUP, VERSION, namespace, "rollouts", name)
            if obj is None or not self.elector.is_leader:
                return
            outcome = reconcile_object(self.kube, obj, self.metrics_provider, datetime.now(UTC),
                                       self.events, data_plane=self.data_plane,
                                       observe_timeout=self.observe_timeout)
            self.queue.forget(key)
            events = outcome.decision.events if outcome.decision else ()
            self.metrics.observe(f"{namespace}/{name}", outcome.decision, events)
            if outcome.requeue_after is not None:
                self.queue.add_after(key, outcome.requeue_after)
        except AdapterError as exc:
            result = "error"
            self.metrics.api_errors.labels(type(exc).__name__).inc()
            delay = self.queue.backoff(key)
            log.warning("reconcile %s/%s: %s (retry in %.1fs)", namespace, name, exc, delay)
        except Exception:
            result = "error"
            delay = self.queue.backoff(key)
            log.exception("reconcile %s/%s failed (retry in %.1fs)", namespace, name, delay)
        finally:
            self.metrics.reconcile_seconds.labels(result).observe(time.perf_counter() - started)
