"""Kubernetes Events for a Rollout (``events.k8s.io/v1``): written best effort, from a
background thread off the reconcile path or in the pass itself."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from meshctl.adapters.errors import AdapterError
from meshctl.adapters.kube import Kube
from meshctl.domain.engine import Event

log = logging.getLogger(__name__)


class EventWriter:
    """Writes Events from a background thread, off the reconcile path (best effort, in
    order, bounded: when the API server is slower than the events, the oldest wait and the
    newest beyond ``limit`` are dropped with a log line)."""

    def __init__(self, kube: Kube, limit: int = 10_000) -> None:
        self.kube = kube
        self._queue: queue.Queue[tuple[Mapping[str, Any], Event] | None] = queue.Queue(limit)
        self._thread = threading.Thread(target=self._run, name="meshctl-events", daemon=True)
        self._thread.start()

    def put(self, obj: Mapping[str, Any], event: Event) -> None:
        try:
            self._queue.put_nowait((obj, event))
        except queue.Full:
            log.warning("event queue full: dropped %s %s", event.reason, event.message[:80])

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to ``timeout``), then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            obj, event = item
            emit_best_effort(self.kube, obj, event)


def emit_best_effort(kube: Kube, obj: Mapping[str, Any], event: Event) -> None:
    """Events are best effort: a failure to record one never fails a pass."""
    try:
        emit_event(kube, obj, event)
    except AdapterError as exc:
        log.warning("cannot record event %s: %s", event.reason, exc)


def emit_event(kube: Kube, obj: Mapping[str, Any], event: Event) -> None:
    meta = obj["metadata"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}-", "namespace": meta.get("namespace")},
        "eventTime": now, "reportingController": "meshctl.io/controller",
        "reportingInstance": "meshctl-controller", "action": event.reason,
        "reason": event.reason, "type": event.type, "note": event.message[:1024],
        "regarding": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                      "name": meta["name"], "namespace": meta.get("namespace"),
                      "uid": meta.get("uid")},
    }
    kube.create("events.k8s.io", "v1", meta.get("namespace", "default"), "events", body)
