"""The controller process: watches, a work queue, workers, leader election, health.

::

    Manager(kube, prometheus_url=..., data_plane=..., identity=...).start()   # threads work
    ...
    manager.stop()                                              # graceful: finish, release

Each worker: take a key, read the Rollout fresh, :func:`reconcile_object`, requeue after
``requeue_after`` or back off on error. Only while this process holds the Lease.

With ``shards=N`` (several replicas sharing the work) each Rollout belongs to the shard
:func:`meshctl.domain.shards.shard_of` names, each shard has its own Lease, and a process
reconciles only the Rollouts of the shards whose Lease it holds; it takes a shard over when
that Lease expires (its holder died) and queues the shard's Rollouts then. A free Lease
(at start, or released) is taken after ``renew_seconds`` times the shards this process
already holds, so replicas started together split the shards rather than the first taking
all; nothing moves a shard from a live replica to an idle one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from meshctl.adapters.cache import ApiClock, CachedKube, ObjectCache
from meshctl.adapters.errors import AdapterError, NotFound
from meshctl.adapters.events import EventWriter
from meshctl.adapters.istiod import DataPlane
from meshctl.adapters.kube import Kube
from meshctl.adapters.parsed import PARSED
from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.adapters.rest import RestKube
from meshctl.controller.health import HealthServer
from meshctl.controller.heap import HeapKeeper
from meshctl.controller.leader import LeaderElector
from meshctl.controller.metrics import ControllerMetrics
from meshctl.controller.queue import Rank, WorkQueue
from meshctl.domain.intents import Action
from meshctl.domain.keys import INTENT_PREFIX
from meshctl.domain.notifications import NotificationSink
from meshctl.domain.ports import MetricProvider
from meshctl.domain.problems import InvalidSpec
from meshctl.domain.routers import backend_of, watched_kinds
from meshctl.domain.shards import lease_names, shard_of
from meshctl.domain.spec import GROUP, VERSION, Rollout
from meshctl.domain.validation import load_document
from meshctl.domain.workloads import claimant, workload_state
from meshctl.ops.lifecycle import reconcile_object

log = logging.getLogger(__name__)
Key = tuple[str, str]
WATCH_SECONDS = 300
# the traffic backends' kinds (VirtualServices, DestinationRules, HTTPRoutes) are watched too
WATCHED = ("rollouts", "deployments", "analysistemplates",
           *(kind.plural for kind in watched_kinds()))
ABSENT_RETRY_SECONDS = 60.0  # a kind whose CRD is not installed is listed again this often
# A Rollout this process wrote comes back through the watch with the version the cache
# already holds: that wakes no pass (the pass that wrote it asked for its own requeue, and
# a second pass would write nothing). Echoes of Deployment and traffic writes still wake
# one: the next step may follow at once.
ECHOES_IGNORED = frozenset({"rollouts"})
ABORT_ASKED = Action.ABORT.annotation


class Wake(Enum):
    """What a watch event asks of the queue (see :meth:`Manager._news`)."""

    NONE = "none"
    DUE = "due"
    URGENT = "urgent"
    ABORT = "abort"

    @property
    def rank(self) -> Rank:
        return {Wake.ABORT: Rank.ABORT, Wake.URGENT: Rank.URGENT}.get(self, Rank.DUE)


def wake(plural: str, before: dict[str, Any] | None, after: dict[str, Any],
         echo: bool) -> Wake:
    """Whether a watched change wakes a pass, and how soon (``echo``: the cache already
    held this version, as when this process wrote it):

    - none for an echo of this process's own Rollout write, or a Deployment change that
      leaves what the engine reads of it (replicas, ready replicas, revision) as it was,
      since the Deployment controller rewrites a Deployment's status several times per
      rollout (conditions, timestamps);
    - abort, first of all, for an abort asked;
    - urgent for what else someone asked (a Rollout created, its spec or another intent
      changed) and for a Deployment that has just become ready (what a waiting step waits
      for);
    - in turn for the rest.
    """
    if echo and plural in ECHOES_IGNORED:
        return Wake.NONE
    if plural == "rollouts":
        if before is None:
            return Wake.URGENT
        if _annotation(after, ABORT_ASKED) not in (None, _annotation(before, ABORT_ASKED)):
            return Wake.ABORT
        return Wake.URGENT if _asked(before) != _asked(after) else Wake.DUE
    if plural != "deployments" or before is None:
        return Wake.DUE
    was, now = workload_state(before), workload_state(after)
    if was == now:
        # a Deployment given up by its Rollout (deleted): another one naming it may take it
        return Wake.DUE if claimant(before) != claimant(after) else Wake.NONE
    return Wake.URGENT if now.replicas > 0 and now.ready >= now.replicas > was.ready \
        else Wake.DUE


def _annotation(obj: dict[str, Any], name: str) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(name)


def _asked(rollout: dict[str, Any]) -> tuple[object, ...]:
    """What a person or a pipeline changes in a Rollout: its spec (the generation) and
    the intent annotations."""
    meta = rollout["metadata"]
    intents = sorted((k, v) for k, v in (meta.get("annotations") or {}).items()
                     if k.startswith(INTENT_PREFIX))
    return meta.get("generation"), tuple(intents)


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class _Index:
    """Which Rollouts use which Deployment and traffic objects (the backend's: a
    VirtualService and DestinationRule, an HTTPRoute), both ways, so an event on one finds
    its Rollouts without scanning them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uses: dict[Key, set[tuple[str, str, str]]] = {}
        self._users: dict[tuple[str, str, str], set[Key]] = {}

    def update(self, key: Key, obj: dict[str, Any] | None) -> None:
        refs = _uses(key[0], obj) if obj is not None else set()
        with self._lock:
            for ref in self._uses.pop(key, set()) - refs:
                users = self._users.get(ref, set())
                users.discard(key)
                if not users:
                    self._users.pop(ref, None)
            for ref in refs:
                self._users.setdefault(ref, set()).add(key)
            if obj is not None:
                self._uses[key] = refs

    def rollouts(self) -> list[Key]:
        with self._lock:
            return list(self._uses)

    def users(self, plural: str, namespace: str, name: str) -> list[Key]:
        with self._lock:
            return list(self._users.get((plural, namespace, name), ()))


def _uses(namespace: str, obj: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(plural, namespace, name) of each object the Rollout ``obj`` reads: its Deployments
    and what its traffic backend names (nothing from a spec that does not parse: it is
    reconciled on its own events, and marked invalid)."""
    refs: set[tuple[str, str, str]] = set()
    workload = ((obj.get("spec") or {}).get("workloadRef") or {}).get("name")
    if workload:
        refs |= {("deployments", namespace, workload),
                 ("deployments", namespace, f"{workload}-canary")}
    try:
        rollout = PARSED.of(obj, "document", load_document)
    except InvalidSpec:
        return refs
    if not isinstance(rollout, Rollout):
        return refs
    backend = backend_of(rollout)
    if backend is not None:
        refs |= {(r.kind.plural, r.namespace, r.name) for r in backend.refs(rollout)}
    return refs


class Manager:
    def __init__(self, kube: Kube | RestKube, *, prometheus_url: str, data_plane: DataPlane,
                 observe_timeout: float | None = 30.0, identity: str | None = None,
                 namespace: str | None = None, lease_namespace: str = "meshctl-system",
                 lease_name: str = "meshctl-controller", workers: int = 2,
                 health_host: str = "127.0.0.1", health_port: int = 0,
                 resync_seconds: float = 0.0, lease_seconds: int = 15,
                 renew_seconds: float = 5.0, shards: int = 1,
                 sinks: tuple[NotificationSink, ...] = ()) -> None:
        self.metrics = ControllerMetrics()
        self.cache = ObjectCache()
        # reads from the watches, writes through (each call timed)
        self.kube = CachedKube(kube, self.cache, ApiClock(self.metrics.api_call))
        self.events = EventWriter(self.kube)
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.queue = WorkQueue(on_wait=self.metrics.queue_wait)
        self.index = _Index()
        self.resync_seconds = resync_seconds
        self._prometheus_url = prometheus_url
        self.data_plane = data_plane
        self.observe_timeout = observe_timeout
        self.sinks = sinks  # notification sinks for every Rollout (--notify)
        self._providers: dict[str, MetricProvider] = {}
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._absent: set[str] = set()  # kinds whose CRD the cluster does not have
        self.shards = shards
        claiming = threading.Lock()
        self.electors = [
            LeaderElector(self.kube, lease_namespace, name, self.identity, lease_seconds,
                          renew_seconds, on_change=self._on_leadership(shard),
                          claim_delay=lambda: renew_seconds * len(self.held_shards()),
                          claim_lock=claiming)
            for shard, name in enumerate(lease_names(lease_name, shards))]
        self.health = HealthServer(health_host, health_port, self.ready, self.metrics.exposition)
        # ``workers`` take any key; one more takes only what someone asked (an abort first)
        self._workers = workers + 1
        self._threads = [threading.Thread(target=self._worker, name=f"meshctl-worker-{i}",
                                          daemon=True) for i in range(workers)]
        self._threads.append(threading.Thread(target=self._worker, args=(True,),
                                              name="meshctl-worker-urgent", daemon=True))
        self._threads += [
            threading.Thread(target=self._watch, args=(GROUP, VERSION, "rollouts", self._on_rollout),
                             name="meshctl-watch-rollouts", daemon=True),
            threading.Thread(target=self._watch, args=("apps", "v1", "deployments",
                                                       self._on_used("deployments")),
                             name="meshctl-watch-deployments", daemon=True),
            *(threading.Thread(target=self._watch, args=(kind.group, kind.version, kind.plural,
                                                         self._on_used(kind.plural)),
                               name=f"meshctl-watch-{kind.plural}", daemon=True)
              for kind in watched_kinds()),
            threading.Thread(target=self._watch, args=(GROUP, VERSION, "analysistemplates",
                                                       self._on_template),
                             name="meshctl-watch-analysistemplates", daemon=True),
            threading.Thread(target=self._resync, name="meshctl-resync", daemon=True),
            threading.Thread(target=HeapKeeper(self._synced, self._stop).run,
                             name="meshctl-heap", daemon=True),
        ]

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while this process holds at least one shard's Lease."""
        return any(e.is_leader for e in self.electors)

    def held_shards(self) -> list[int]:
        return [i for i, e in enumerate(self.electors) if e.is_leader]

    def owns(self, key: Key) -> bool:
        return self.electors[shard_of(key[0], key[1], self.shards)].is_leader

    @property
    def health_url(self) -> str:
        return self.health.url

    def ready(self) -> bool:
        return self._synced.is_set() and not self._stop.is_set()

    def start(self) -> Manager:
        self.health.start()
        for elector in self.electors:
            elector.start()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        """Stop taking work, let passes in flight finish, give up the lease."""
        self._stop.set()
        self.queue.close()
        for thread in self._threads[: self._workers]:
            thread.join(timeout=30)  # passes in flight finish under the lease
        for elector in self.electors:
            elector.stop(release=release)
        self.events.close()
        self.health.stop()
        self.kube.close()  # the kept-alive connections of every thread
        # watch threads end with their long poll (daemon threads: they never block exit)

    def metrics_provider(self, address: str | None) -> MetricProvider:
        target = address or self._prometheus_url
        if target not in self._providers:
            self._providers[target] = PrometheusProvider(target)
        return self._providers[target]

    # -- events in --------------------------------------------------------------------------

    def _on_leadership(self, shard: int) -> Callable[[bool], None]:
        def changed(leader: bool) -> None:
            self.metrics.leader.set(len(self.held_shards()))
            if leader:
                for key in self.index.rollouts():
                    if shard_of(key[0], key[1], self.shards) == shard:
                        self.queue.add(key)
        return changed

    def _on_rollout(self, kind: str, obj: dict[str, Any]) -> Iterable[Key]:
        meta = obj["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        self.index.update(key, None if kind == "DELETED" else obj)
        if kind == "DELETED":
            self.metrics.forget(f"{key[0]}/{key[1]}")
            # it gave its Deployment up: another Rollout naming it may take it over now
            workload = ((obj.get("spec") or {}).get("workloadRef") or {}).get("name")
            return self.index.users("deployments", key[0], workload) if workload else []
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
        """Every ``resync_seconds`` (0: never), every Rollout is reconciled again (from the
        cache: a resync costs no list). The watches already report every change, and a
        Rollout waiting for time asks for its own requeue, so this is a safety net only:
        off by default, since at 1,000 idle Rollouts each resync is 1,000 passes."""
        if self.resync_seconds <= 0:
            return
        while not self._stop.wait(self.resync_seconds):
            for key in self.index.rollouts():
                self.queue.add(key)

    def _watch(self, group: str, version: str, plural: str,
               to_keys: Callable[[str, dict[str, Any]], Iterable[Key]]) -> None:
        """List once (in pages), then watch from the last version seen: each watch the
        server ends (``WATCH_SECONDS``) is followed by another from the last event or
        bookmark, with no list. Only a 410 Gone (that version is compacted) lists again."""
        failures = 0
        version_seen = ""
        while not self._stop.is_set():
            try:
                if not version_seen:
                    version_seen = self._list(group, version, plural, to_keys)
                    self._absent.discard(plural)
                failures = 0
                # one watched namespace: list and watch there only, so a Role is enough
                for kind, obj in self.kube.watch(group, version, plural, version_seen,
                                                 timeout_seconds=WATCH_SECONDS, bookmarks=True,
                                                 namespace=self.namespace):
                    if self._stop.is_set():
                        return
                    version_seen = obj["metadata"].get("resourceVersion") or version_seen
                    if kind == "BOOKMARK" or not self._wanted(obj):
                        continue
                    if kind == "DELETED":
                        self.cache.delete(plural, obj)
                        wake = Wake.DUE
                    else:
                        wake = self._news(plural, obj)
                        if wake is Wake.NONE:
                            continue
                    for key in to_keys(kind, obj):
                        self.queue.add(key, wake.rank)
            except NotFound:
                if version_seen:
                    version_seen = ""  # 410 Gone: list again
                    continue
                # no such resource: the cluster lacks that backend's CRD (no Gateway API,
                # say); Rollouts naming it read through to the API server and are told so
                self._absent.add(plural)
                if self.synced():
                    self._synced.set()
                self._stop.wait(ABSENT_RETRY_SECONDS)
            except AdapterError as exc:
                failures += 1
                self.metrics.api_errors.labels("watch").inc()
                log.warning("watch %s: %s", plural, exc)
                self._stop.wait(min(30.0, 0.5 * 2 ** failures))

    def _news(self, plural: str, obj: dict[str, Any]) -> Wake:
        """Cache ``obj``; what the change asks of the queue (:func:`wake`)."""
        meta = obj["metadata"]
        before = self.cache.get(plural, meta.get("namespace", ""), meta["name"]) \
            if plural in ("rollouts", "deployments") else None
        changed = self.cache.put(plural, obj)
        return wake(plural, before, obj, echo=not changed)

    def _list(self, group: str, version: str, plural: str,
              to_keys: Callable[[str, dict[str, Any]], Iterable[Key]]) -> str:
        items, version_seen = self.kube.list_all(group, version, plural,
                                                 namespace=self.namespace)
        items = [i for i in items if self._wanted(i)]
        self.cache.replace(plural, items, version_seen)
        for item in items:
            for key in to_keys("ADDED", item):
                self.queue.add(key)
        if self.synced():
            self._synced.set()
        return version_seen

    def synced(self) -> bool:
        return all(self.cache.synced(p) or p in self._absent for p in WATCHED)

    def _wanted(self, obj: dict[str, Any]) -> bool:
        return self.namespace is None or obj["metadata"].get("namespace") == self.namespace

    # -- work ---------------------------------------------------------------------------

    def _worker(self, urgent_only: bool = False) -> None:
        while not self._stop.is_set():
            if not self.is_leader:
                self._stop.wait(0.2)
                continue
            key = self.queue.get(timeout=0.5, urgent_only=urgent_only)
            if key is None:
                continue
            try:
                if self.owns(key):  # type: ignore[arg-type]
                    self._process(key)  # type: ignore[arg-type]
                # else: another replica's shard; queued again if this one takes it over
            finally:
                self.queue.done(key)

    def _process(self, key: Key) -> None:
        namespace, name = key
        started, cpu_started = time.perf_counter(), time.thread_time()
        api_started = self.kube.clock.waited()
        result, acted = "ok", False
        try:
            obj = self.kube.get_or_none(GROUP, VERSION, namespace, "rollouts", name)
            if obj is None or not self.owns(key):
                return
            acted = True
            outcome = reconcile_object(self.kube, obj, self.metrics_provider, datetime.now(UTC),
                                       self.events, data_plane=self.data_plane,
                                       observe_timeout=self.observe_timeout,
                                       sinks=self.sinks)
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
            ended = time.perf_counter()
            self.metrics.reconcile_seconds.labels(result).observe(ended - started)
            if acted:
                self.metrics.reconcile_cpu_seconds.observe(time.thread_time() - cpu_started)
                self.metrics.reconcile_api_seconds.observe(self.kube.clock.waited() - api_started)
            if acted and log.isEnabledFor(logging.DEBUG):  # CLOCK_MONOTONIC: comparable across processes
                log.debug("pass %s/%s shard %d from %.6f to %.6f %s", namespace, name,
                          shard_of(namespace, name, self.shards),
                          time.monotonic() - (ended - started), time.monotonic(), result)
