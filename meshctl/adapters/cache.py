"""A watch-fed object cache, and a Kube that reads from it.

The controller's watches keep :class:`ObjectCache` current; :class:`CachedKube` answers
``get``/``list`` from it for the kinds it holds (a read costs no request), and writes
through to the API server, putting what the server returns into the cache at once, so the
next pass never reads an object older than its own last write. Read-modify-write
(``update_with_retry``) always reads fresh from the server: a 409 is never answered from a
stale cache. Objects are copied on the way out; callers may mutate what they get.
"""

from __future__ import annotations

import builtins
import copy
import threading

from meshctl.adapters.errors import NotFound
from meshctl.adapters.kube import Kube, Mutation, Object, Updated

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

    def put(self, plural: str, obj: Object) -> None:
        """Keep ``obj`` unless the cache already holds a newer version of it."""
        key = self._key(plural, obj)
        with self._lock:
            shelf = self._shelf(key)
            held = shelf.get(key[2])
            if held is None or _version(obj) >= _version(held):
                shelf[key[2]] = obj

    def delete(self, plural: str, obj: Object) -> None:
        key = self._key(plural, obj)
        with self._lock:
            self._shelf(key).pop(key[2], None)

    def synced(self, plural: str) -> bool:
        with self._lock:
            return plural in self._synced

    def get(self, plural: str, namespace: str, name: str) -> Object | None:
        with self._lock:
            found = self._shelves.get((plural, namespace), {}).get(name)
        return copy.deepcopy(found) if found is not None else None

    def list(self, plural: str, namespace: str) -> builtins.list[Object]:
        with self._lock:
            found = list(self._shelves.get((plural, namespace), {}).values())
        return copy.deepcopy(found)


class CachedKube(Kube):
    """A :class:`Kube` whose reads of cached kinds come from an :class:`ObjectCache`.

    It shares the wrapped client; methods it does not override (apply, delete, watch,
    list_all) are the plain ones."""

    def __init__(self, kube: Kube, cache: ObjectCache) -> None:  # shares kube's client
        self.__dict__.update(kube.__dict__)
        self.kube, self.cache = kube, cache

    def get(self, group: str, version: str, namespace: str, plural: str, name: str) -> Object:
        if not self.cache.synced(plural):
            return self.kube.get(group, version, namespace, plural, name)
        found = self.cache.get(plural, namespace, name)
        if found is None:
            raise NotFound(f"{plural} {namespace}/{name} not found")
        return found

    def get_or_none(self, group: str, version: str, namespace: str, plural: str,
                    name: str) -> Object | None:
        if not self.cache.synced(plural):
            return self.kube.get_or_none(group, version, namespace, plural, name)
        return self.cache.get(plural, namespace, name)

    def list(self, group: str, version: str, namespace: str, plural: str,
             label_selector: str | None = None) -> builtins.list[Object]:
        if label_selector is not None or not self.cache.synced(plural):
            return self.kube.list(group, version, namespace, plural, label_selector)
        return self.cache.list(plural, namespace)

    def _keep(self, plural: str, obj: Object) -> Object:
        if obj.get("metadata", {}).get("name") and self.cache.synced(plural):
            self.cache.put(plural, copy.deepcopy(obj))
        return obj

    def create(self, group: str, version: str, namespace: str, plural: str, body: Object) -> Object:
        return self._keep(plural, self.kube.create(group, version, namespace, plural, body))

    def merge_patch(self, group: str, version: str, namespace: str, plural: str, name: str,
                    patch: Object) -> Object:
        return self._keep(plural, self.kube.merge_patch(group, version, namespace, plural, name,
                                                        patch))

    def merge_patch_status(self, group: str, version: str, namespace: str, plural: str,
                           name: str, patch: Object) -> Object:
        return self._keep(plural, self.kube.merge_patch_status(group, version, namespace, plural,
                                                               name, patch))

    def replace(self, group: str, version: str, namespace: str, plural: str,
                body: Object) -> Object:
        return self._keep(plural, self.kube.replace(group, version, namespace, plural, body))

    def update_with_retry(self, group: str, version: str, namespace: str, plural: str,
                          name: str, mutate: Mutation) -> Updated:
        updated = self.kube.update_with_retry(group, version, namespace, plural, name, mutate)
        self._keep(plural, updated.object)
        return updated
