"""The engine's ports over a real cluster: traffic in a VirtualService, workloads in
Deployments, status and intents on the Rollout, events.

Translate, never decide: what to write comes from :mod:`meshctl.domain` (``istio``,
``workloads``); these classes read and write it, record what they borrowed, and put it back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from meshctl.adapters.errors import AdapterError, AlreadyExists, NotFound, Unavailable
from meshctl.adapters.istiod import DataPlane
from meshctl.adapters.kube import Kube, Object
from meshctl.domain.engine import DesiredWorkloads, Event, Intents, WorkloadState
from meshctl.domain.istio import (
    apply_split,
    canary_subset_is_borrowed,
    managed_route_names,
    read_split,
    restored_virtual_service,
    uses_canary,
    with_canary_subset,
    without_canary_subset,
)
from meshctl.domain.spec import GROUP, VERSION, Rollout
from meshctl.domain.status import RolloutStatus
from meshctl.domain.traffic import TrafficSplit
from meshctl.domain.workloads import (
    canary_deployment,
    canary_name,
    promoted_template,
    workload_state,
)

ISTIO = ("networking.istio.io", "v1")
APPS = ("apps", "v1")
ORIGINAL = "meshctl.io/original-spec"
INTENT_PREFIX = "meshctl.io/intent-"
# the annotation spelling of each Intents field: promote, promote-full, abort, retry, resume
INTENT_ACTIONS = tuple(f.name.replace("_", "-") for f in dataclasses.fields(Intents))
FINALIZER = "meshctl.io/cleanup"
SUBSET_TIMEOUT = 10.0  # seconds a new DestinationRule subset may take to reach the proxies
log = logging.getLogger(__name__)


def _remember_original(obj: Object) -> Object:
    """Record the object's spec, as found, before meshctl's first change (once)."""
    annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
    if ORIGINAL not in annotations:
        annotations[ORIGINAL] = json.dumps(obj.get("spec", {}), sort_keys=True)
    return obj


def _original(obj: Object) -> dict[str, Any] | None:
    """The spec as meshctl found it, and the record removed; None if there is none."""
    annotations = obj.get("metadata", {}).get("annotations") or {}
    raw = annotations.pop(ORIGINAL, None)
    return json.loads(raw) if raw else None


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
        return read_split(self._get_vs(), self.rollout)

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
        """Write ``split``; the canary subset exists (at the proxies too) before a route
        uses it. It leaves once the rollout is settled (:meth:`drop_canary_subset`)."""
        ns, rollout = self.rollout.namespace, self.rollout
        dr = self.routing.destination_rule
        if dr is not None and uses_canary(split):
            self.kube.update_with_retry(
                *ISTIO, ns, "destinationrules", dr.name,
                lambda obj: with_canary_subset(_remember_original(obj), rollout))
            self._wait_for_subset(dr.canary_subset)
        updated = self.kube.update_with_retry(
            *ISTIO, ns, "virtualservices", self.routing.virtual_service.name,
            lambda vs: apply_split(_remember_original(vs), rollout, split))
        self._vs = updated.object

    def _wait_for_subset(self, subset: str) -> None:
        """A route to a subset the proxies do not have yet answers 503 (no cluster): wait
        until the data plane has it (istiod pushes it about 100 ms after the write)."""
        deadline = time.monotonic() + SUBSET_TIMEOUT
        while not self.data_plane.has_subset(self.rollout, subset):
            if time.monotonic() > deadline:
                raise Unavailable(f"subset {subset!r} has not reached the proxies after "
                                  f"{SUBSET_TIMEOUT:g} s; the route to it is not written yet")
            time.sleep(0.05)

    def restore(self) -> None:
        """Give back what meshctl changed (the Rollout is being deleted): the managed routes'
        destinations and mirror, its header routes, the canary subset it added. Edits
        others made meanwhile stay."""
        rollout = self.rollout

        def virtual_service(vs: Object) -> Object:
            original = _original(vs)
            return vs if original is None else restored_virtual_service(vs, original, rollout)

        self._restore("virtualservices", self.routing.virtual_service.name, virtual_service)
        if self.routing.destination_rule is not None:
            self._restore("destinationrules", self.routing.destination_rule.name,
                          self._without_borrowed_subset)

    def _restore(self, plural: str, name: str, change: Callable[[Object], Object]) -> None:
        with contextlib.suppress(NotFound):
            self.kube.update_with_retry(*ISTIO, self.rollout.namespace, plural, name, change)

    def _without_borrowed_subset(self, dr: Object) -> Object:
        original = _original(dr)
        if original is None or canary_subset_is_borrowed(original, self.rollout):
            return without_canary_subset(dr, self.rollout)
        return dr

    def drop_canary_subset(self) -> None:
        """Remove the canary subset if meshctl added it (kept when the user defined it)."""
        if self.routing.destination_rule is None:
            return
        rollout, remove = self.rollout, self._remove_borrowed_subset
        self.kube.update_with_retry(*ISTIO, rollout.namespace, "destinationrules",
                                    self.routing.destination_rule.name, remove)

    def _remove_borrowed_subset(self, dr: Object) -> Object:
        raw = (dr.get("metadata", {}).get("annotations") or {}).get(ORIGINAL)
        if raw is not None and not canary_subset_is_borrowed(json.loads(raw), self.rollout):
            return dr
        return without_canary_subset(dr, self.rollout)


class KubeWorkloads:
    """Workloads over the stable Deployment and the ``<name>-canary`` Deployment."""

    def __init__(self, kube: Kube, rollout: Rollout) -> None:
        self.kube, self.rollout = kube, rollout
        ref = rollout.spec.workload_ref
        assert ref is not None
        self.stable_name = ref.name
        self.canary_name = canary_name(ref.name)

    def _get(self, name: str) -> Object | None:
        return self.kube.get_or_none(*APPS, self.rollout.namespace, "deployments", name)

    def observe(self) -> tuple[WorkloadState, WorkloadState]:
        return workload_state(self._get(self.stable_name)), workload_state(self._get(self.canary_name))

    def apply(self, desired: DesiredWorkloads) -> None:
        template = self.rollout.spec.template
        stable = self._get(self.stable_name)
        if stable is None or template is None:
            return
        ns = self.rollout.namespace
        canary = self._get(self.canary_name)
        if desired.canary_revision is not None and (desired.canary_replicas > 0 or canary):
            want = canary_deployment(stable, template, desired.canary_replicas, self.rollout.name)
            created = False
            if canary is None:
                try:
                    self.kube.create(*APPS, ns, "deployments", want)
                    created = True
                except AlreadyExists:  # a read from a cache that had not seen it yet
                    pass
            if not created and (canary is None
                                or canary["spec"].get("replicas") != want["spec"]["replicas"]
                                or workload_state(canary).revision != desired.canary_revision):
                self.kube.update_with_retry(*APPS, ns, "deployments", self.canary_name,
                                            lambda d: {**d, "spec": {**d["spec"], **{
                                                "replicas": want["spec"]["replicas"],
                                                "template": want["spec"]["template"]}}})
        if workload_state(stable).revision != desired.stable_revision and \
                desired.stable_revision == desired.canary_revision:
            new_template = promoted_template(template)
            self.kube.update_with_retry(*APPS, ns, "deployments", self.stable_name,
                                        lambda d: {**d, "spec": {**d["spec"],
                                                                 "template": new_template}})

    def delete_canary(self) -> None:
        with contextlib.suppress(NotFound):
            self.kube.delete(*APPS, self.rollout.namespace, "deployments", self.canary_name)


class KubeStatusStore:
    """Status in the Rollout's status subresource; intents in its annotations; events."""

    def __init__(self, kube: Kube, obj: Mapping[str, Any],
                 events: EventWriter | None = None) -> None:
        self.kube = kube
        self.obj = obj
        self.events = events
        meta = obj["metadata"]
        self.namespace, self.name = meta.get("namespace", "default"), meta["name"]

    def load(self) -> tuple[RolloutStatus, Intents]:
        return RolloutStatus.from_json(self.obj.get("status")), intents_of(self.obj)

    def save(self, status: RolloutStatus) -> None:
        # status is written whole: fields the engine no longer sets must go away, at any
        # depth (a merge patch keeps what it does not name)
        patch = _whole(self.obj.get("status") or {}, status.to_json())
        self.obj = self.kube.merge_patch_status(GROUP, VERSION, self.namespace, "rollouts",
                                                self.name, {"status": patch})

    def record(self, events: Iterable[Event]) -> None:
        if self.events is not None:
            for event in events:
                self.events.put(self.obj, event)
            return
        for event in events:
            _emit_best_effort(self.kube, self.obj, event)


def _whole(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning ``current`` into exactly ``new`` (keys it lacks become null)."""
    patch: dict[str, Any] = {k: None for k in current if k not in new}
    for key, value in new.items():
        old = current.get(key)
        patch[key] = (_whole(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping)
                      else value)
    return patch


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
            _emit_best_effort(self.kube, obj, event)


def _emit_best_effort(kube: Kube, obj: Mapping[str, Any], event: Event) -> None:
    """Events are best effort: a failure to record one never fails a pass."""
    try:
        emit_event(kube, obj, event)
    except AdapterError as exc:
        log.warning("cannot record event %s: %s", event.reason, exc)


def intents_of(obj: Mapping[str, Any]) -> Intents:
    annotations = obj.get("metadata", {}).get("annotations") or {}
    values = {a.replace("-", "_"): annotations.get(INTENT_PREFIX + a) for a in INTENT_ACTIONS}
    return Intents(**values)


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
