"""A watch-fed object cache, and a Kube that reads from it.

The controller's watches keep :class:`ObjectCache` current; :class:`CachedKube` answers
``get``/``list`` from it for the kinds it holds (a read costs no request), and writes
through to the API server, putting what the server returns into the cache at once, so the
next pass never reads an object older than its own last write.

Objects are shared, never copied: what ``get`` and ``list`` return is the cached object
itself, and callers must not change it (the domain's functions copy before they change
anything; ``update_with_retry`` hands ``mutate`` a copy). The cache replaces an object by a
newer one, never edits it, so an object a pass holds stays as it was read.

``update_with_retry`` starts from the cached object and writes with its resourceVersion:
when the cache was behind, the server answers 409 Conflict and the next attempt reads fresh
from the server. When the cached object needs no change, nothing is read or written.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from meshctl.adapters.errors import NotFound
from meshctl.adapters.kube import Kube, Mutation, Object, Updated, update
from meshctl.adapters.rest import RestKube

Key = tuple[str, str, str]  # plural, namespace, name
Shelf = tuple[str, str]  # plural, namespace: a list reads one shelf, never the whole cache


def _version(obj: Object) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


class ObjectCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shelves: dict[Shelf, dict[str, Object]] = {}
        self._synced: set[str] = set()

    def _key(self, plural: str, obj: Object) -> Key:
        meta = obj["metadata"]
        return plural, meta.get("namespace", ""), meta["name"]

    def _shelf(self, key: Key) -> dict[str, Object]:
        return self._shelves.setdefault(key[:2], {})

    def replace(self, plural: str, items: builtins.list[Object], list_version: str = "") -> None:
        """A fresh list: the plural's whole content, except objects written after the list
        was taken (their resourceVersion is newer than the list's)."""
        try:
            taken = int(list_version)
        except ValueError:
            taken = 0
        with self._lock:
            for shelf, objects in self._shelves.items():
                if shelf[0] == plural:
                    for name in [n for n, o in objects.items()
                                 if not taken or _version(o) <= taken]:
                        del objects[name]
            for item in items:
                key = self._key(plural, item)
                self._shelf(key)[key[2]] = item
            self._synced.add(plural)

    def put(self, plural: str, obj: Object) -> bool:
        """Keep ``obj`` unless the cache already holds a newer version of it. False when the
        cache already held this very version: this process's own write echoing back through
        the watch (put here when the server answered it). An older version is not kept but
        is news all the same: a write of this process's may have merged it unseen."""
        key = self._key(plural, obj)
        with self._lock:
            shelf = self._shelf(key)
            held = shelf.get(key[2])
            if held is None or _version(obj) >= _version(held):
                shelf[key[2]] = obj
            return held is None or _version(obj) != _version(held)

    def delete(self, plural: str, obj: Object) -> None:
        key = self._key(plural, obj)
        with self._lock:
            self._shelf(key).pop(key[2], None)

    def synced(self, plural: str) -> bool:
        with self._lock:
            return plural in self._synced

    def get(self, plural: str, namespace: str, name: str) -> Object | None:
        """The cached object itself (shared: never change it)."""
        with self._lock:
            return self._shelves.get((plural, namespace), {}).get(name)

    def list(self, plural: str, namespace: str) -> builtins.list[Object]:
        """The cached objects themselves (shared: never change them)."""
        with self._lock:
            return list(self._shelves.get((plural, namespace), {}).values())


class ApiClock:
    """How long each thread waited for the API server: its calls' wall times summed per
    thread (a reconcile pass reads the difference), and each call handed to ``observe``
    (verb, plural, seconds). A call's time is the request, the answer and its decoding."""

    def __init__(self, observe: Callable[[str, str, float], None] | None = None) -> None:
        self.observe = observe
        self._local = threading.local()

    def waited(self) -> float:
        """Seconds this thread has spent in timed calls so far."""
        return getattr(self._local, "seconds", 0.0)

    @contextmanager
    def timing(self, verb: str, plural: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - started
            self._local.seconds = self.waited() + took
            if self.observe is not None:
                self.observe(verb, plural, took)


class CachedKube(Kube):
    """A :class:`Kube` whose reads of cached kinds come from an :class:`ObjectCache`; every
    other call goes to the wrapped client (:class:`Kube` or :class:`RestKube`), timed by
    ``clock`` (watches, long polls of their own threads, are not timed)."""

    def __init__(self, kube: Kube | RestKube, cache: ObjectCache,
                 clock: ApiClock | None = None) -> None:
        # not Kube.__init__: this client has no ApiClient of its own
        self.kube, self.cache = kube, cache
        self.clock = clock or ApiClock()
        self.field_manager = kube.field_manager
        self.timeout_seconds = kube.timeout_seconds
        self.deadline = None
        self.max_attempts = kube.max_attempts
        self.max_backoff_seconds = kube.max_backoff_seconds

    def close(self) -> None:
        self.kube.close()

    def get(self, group: str, version: str, namespace: str, plural: str, name: str) -> Object:
        if not self.cache.synced(plural):
            with self.clock.timing("GET", plural):
                return self.kube.get(group, version, namespace, plural, name)
        found = self.cache.get(plural, namespace, name)
        if found is None:
            raise NotFound(f"{plural} {namespace}/{name} not found")
        return found

    def get_or_none(self, group: str, version: str, namespace: str, plural: str,
                    name: str) -> Object | None:
        if not self.cache.synced(plural):
            with self.clock.timing("GET", plural):
                return self.kube.get_or_none(group, version, namespace, plural, name)
        return self.cache.get(plural, namespace, name)

    def list(self, group: str, version: str, namespace: str, plural: str,
             label_selector: str | None = None) -> builtins.list[Object]:
        if label_selector is not None or not self.cache.synced(plural):
            with self.clock.timing("LIST", plural):
                return self.kube.list(group, version, namespace, plural, label_selector)
        return self.cache.list(plural, namespace)

    def list_all(self, group: str, version: str, plural: str,
                 label_selector: str | None = None, page_size: int = 500, *,
                 namespace: str | None = None) -> tuple[builtins.list[Object], str]:
        with self.clock.timing("LIST", plural):
            return self.kube.list_all(group, version, plural, label_selector, page_size,
                                      namespace=namespace)

    def watch(self, group: str, version: str, plural: str, resource_version: str,
              timeout_seconds: int = 60, *, namespace: str | None = None,
              field_selector: str | None = None,
              bookmarks: bool = False) -> Iterator[tuple[str, Object]]:
        return self.kube.watch(group, version, plural, resource_version, timeout_seconds,
                               namespace=namespace, field_selector=field_selector,
                               bookmarks=bookmarks)

    def _keep(self, plural: str, obj: Object) -> Object:
        if obj.get("metadata", {}).get("name") and self.cache.synced(plural):
            self.cache.put(plural, obj)  # shared from now on, as every cached object
        return obj

    def create(self, group: str, version: str, namespace: str, plural: str, body: Object) -> Object:
        with self.clock.timing("POST", plural):
            created = self.kube.create(group, version, namespace, plural, body)
        return self._keep(plural, created)

    def merge_patch(self, group: str, version: str, namespace: str, plural: str, name: str,
                    patch: Object) -> Object:
        with self.clock.timing("PATCH", plural):
            patched = self.kube.merge_patch(group, version, namespace, plural, name, patch)
        return self._keep(plural, patched)

    def merge_patch_status(self, group: str, version: str, namespace: str, plural: str,
                           name: str, patch: Object) -> Object:
        with self.clock.timing("PATCH", f"{plural}/status"):
            patched = self.kube.merge_patch_status(group, version, namespace, plural, name,
                                                   patch)
        return self._keep(plural, patched)

    def replace(self, group: str, version: str, namespace: str, plural: str,
                body: Object) -> Object:
        with self.clock.timing("PUT", plural):
            replaced = self.kube.replace(group, version, namespace, plural, body)
        return self._keep(plural, replaced)

    def apply(self, group: str, version: str, namespace: str, plural: str, body: Object, *,
              force: bool = False) -> Object:
        with self.clock.timing("APPLY", plural):
            applied = self.kube.apply(group, version, namespace, plural, body, force=force)
        return self._keep(plural, applied)

    def delete(self, group: str, version: str, namespace: str, plural: str, name: str) -> None:
        with self.clock.timing("DELETE", plural):
            self.kube.delete(group, version, namespace, plural, name)

    def update_with_retry(self, group: str, version: str, namespace: str, plural: str,
                          name: str, mutate: Mutation) -> Updated:
        """From the cached object (see the module docstring); fresh reads after a Conflict."""
        cached = self.cache.get(plural, namespace, name) if self.cache.synced(plural) else None
        return update(_Fresh(self), group, version, namespace, plural, name, mutate,
                      attempts=self.max_attempts, max_backoff=self.max_backoff_seconds,
                      first=cached)


class _Fresh:
    """A :class:`CachedKube` whose reads go to the API server (after a Conflict, the cache
    is not to be trusted) and whose writes still go into the cache."""

    def __init__(self, cached: CachedKube) -> None:
        self.cached = cached

    def get(self, group: str, version: str, namespace: str, plural: str, name: str) -> Object:
        with self.cached.clock.timing("GET", plural):
            return self.cached.kube.get(group, version, namespace, plural, name)

    def replace(self, group: str, version: str, namespace: str, plural: str,
                body: Object) -> Object:
        return self.cached.replace(group, version, namespace, plural, body)

