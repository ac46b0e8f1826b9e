"""Rollouts listed from memory, kept current by the API server's watch: what a dashboard
polling 1,000 rollouts every second needs (one list at start, then only the changes; each
poll costs the API server nothing). Everything but ``list`` goes to the wrapped
:class:`~meshctl.ops.rollouts.ClusterRollouts`.

The watch runs in a thread on its own client: list once, watch from the list's
resourceVersion, renew each watch from the last version seen, list again on 410 Gone, and
wait and try again when the API server cannot be reached (until :meth:`close`). Until the
first list arrives, ``list`` asks the API server directly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from meshctl.adapters.errors import AdapterError, NotFound
from meshctl.domain.intents import Action
from meshctl.domain.release_gates import Identity
from meshctl.domain.spec import GROUP, VERSION
from meshctl.domain.timeline import Timeline
from meshctl.ops.connect import Objects
from meshctl.ops.history import History
from meshctl.ops.rollouts import ClusterRollouts
from meshctl.ops.views import PLURAL, RolloutView, remembered_view_of

log = logging.getLogger(__name__)
WATCH_SECONDS = 10  # a watch the server ends sooner: close() waits at most this long
RETRY_SECONDS = 2.0


class WatchedRollouts:
    def __init__(self, rollouts: ClusterRollouts, watch_kube: Objects,
                 namespace: str | None, watch_seconds: int = WATCH_SECONDS) -> None:
        self.rollouts, self.watch_kube, self.namespace = rollouts, watch_kube, namespace
        self.watch_seconds = watch_seconds
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="rollouts-watch",
                                         daemon=True)
        self._thread.start()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def list(self, namespace: str | None) -> list[RolloutView]:
        if not self._synced.is_set():
            return self.rollouts.list(namespace)
        with self._lock:
            items = [o for (ns, _), o in self._objects.items() if namespace in (None, ns)]
        return sorted((remembered_view_of(o) for o in items),
                      key=lambda v: (v.namespace, v.name))

    def get(self, namespace: str, name: str) -> RolloutView:
        return self.rollouts.get(namespace, name)

    def history(self, namespace: str, name: str) -> History:
        return self.rollouts.history(namespace, name)

    def timeline(self, namespace: str, name: str, prometheus: str | None = None) -> Timeline:
        return self.rollouts.timeline(namespace, name, prometheus)

    def request(self, namespace: str, name: str, action: Action) -> RolloutView:
        return self.rollouts.request(namespace, name, action)

    def approve(self, namespace: str, name: str, comment: str = "",
                who: Identity | None = None) -> RolloutView:
        return self.rollouts.approve(namespace, name, comment, who)

    def watch(self, namespace: str, name: str, timeout: float | None = None,
              stop: Callable[[], bool] = lambda: False) -> Iterator[RolloutView]:
        return self.rollouts.watch(namespace, name, timeout, stop)

    def close(self, timeout: float = 1.0) -> None:
        """Stop following and close the watch's client once its thread has ended (within
        ``timeout``; else the daemon thread ends with the process). The wrapped rollouts
        are their owner's to close."""
        self._stop.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.watch_kube.close()

    # -- the watch ----------------------------------------------------------------------

    def _follow(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._relist()
                for kind, obj in self.watch_kube.watch(GROUP, VERSION, PLURAL, version,
                                                       self.watch_seconds,
                                                       namespace=self.namespace):
                    version = obj["metadata"].get("resourceVersion") or version
                    self._apply(kind, obj)
                    if self._stop.is_set():
                        return
            except NotFound:
                version = ""  # 410 Gone: that version is compacted, list again
            except AdapterError as exc:
                log.warning("watching rollouts: %s", exc)
                self._stop.wait(RETRY_SECONDS)

    def _relist(self) -> str:
        items, version = self.watch_kube.list_all(GROUP, VERSION, PLURAL,
                                                  namespace=self.namespace)
        with self._lock:
            self._objects = {_key(o): o for o in items}
        self._synced.set()
        return version

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(_key(obj), None)
            elif kind in ("ADDED", "MODIFIED"):
                self._objects[_key(obj)] = obj


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return str(meta.get("namespace", "")), str(meta["name"])
