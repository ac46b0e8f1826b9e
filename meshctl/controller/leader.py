"""Leader election on a ``coordination.k8s.io/v1`` Lease.

The holder renews every ``renew_seconds``; another candidate takes the Lease once
``renewTime + leaseDurationSeconds`` has passed. Writes use the Lease's resourceVersion, so
two candidates cannot both win a race. ``release()`` on graceful shutdown empties the holder
so a successor need not wait for the lease to expire.

``claim_delay`` (seconds, asked each time) holds a candidate back from a *free* Lease (never
taken, or released) until it has seen it free that long: a replica that already holds
shards lets an emptier one take the next (see :class:`meshctl.controller.manager.Manager`).
An *expired* Lease (its holder died) is taken at once, so takeover stays within the lease
duration.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from meshctl.adapters.errors import AdapterError, NotFound
from meshctl.adapters.kube import Kube

log = logging.getLogger(__name__)
LEASE = ("coordination.k8s.io", "v1")


def _now() -> datetime:
    return datetime.now(UTC)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _fmt(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str, identity: str,
                 lease_seconds: int = 15, renew_seconds: float = 5.0,
                 on_change: Callable[[bool], None] | None = None,
                 claim_delay: Callable[[], float] = lambda: 0.0,
                 claim_lock: threading.Lock | None = None) -> None:
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        self._on_change = on_change
        self._claim_delay = claim_delay
        # shared by the electors of one process: one free Lease claimed at a time, so the
        # delay of the next one counts it
        self._claim_lock = claim_lock or threading.Lock()
        self._free_since: float | None = None
        self._leader = False
        self._valid_until = _now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="meshctl-leader", daemon=True)

    @property
    def is_leader(self) -> bool:
        """True while this process holds a lease that has not expired, less a margin (a
        fifth of the lease, at most 2 s, like client-go's renew deadline): a pass started
        now ends before any other candidate may take the Lease."""
        margin = timedelta(seconds=min(2.0, self.lease_seconds / 5))
        return self._leader and _now() < self._valid_until - margin

    def start(self) -> None:
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        self._thread.join(timeout=self.renew_seconds + 5)
        if release and self._leader:
            try:
                self._write(lambda spec: {**spec, "holderIdentity": None})
            except AdapterError as exc:
                log.warning("cannot release the lease: %s", exc)
        self._set(False)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._leader:
                    self._try()
                else:
                    with self._claim_lock:
                        self._try()
            except AdapterError as exc:
                log.warning("leader election: %s", exc)
                if not self.is_leader:
                    self._set(False)
            self._stop.wait(self.renew_seconds if self._leader else self.renew_seconds / 2)

    def _try(self) -> None:
        now = _now()
        try:
            lease = self.kube.get(*LEASE, self.namespace, "leases", self.name)
        except NotFound:
            if not self._free_long_enough():
                return
            self.kube.create(*LEASE, self.namespace, "leases", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._claim({}, now)})
            self._won(now)
            return
        spec = lease.get("spec", {})
        holder = spec.get("holderIdentity")
        renewed = _time(spec.get("renewTime")) or now - timedelta(days=1)
        expired = renewed + timedelta(seconds=spec.get("leaseDurationSeconds", 15)) < now
        if holder not in (None, "", self.identity) and not expired:
            self._free_since = None
            self._set(False)
            return
        if holder in (None, "") and not self._free_long_enough():
            return
        lease["spec"] = self._claim(spec, now)
        self.kube.replace(*LEASE, self.namespace, "leases", lease)  # 409 if someone won
        self._won(now)

    def _free_long_enough(self) -> bool:
        if self._leader:
            return True
        now = time.monotonic()
        if self._free_since is None:
            self._free_since = now
        return now - self._free_since >= self._claim_delay()

    def _claim(self, spec: dict[str, Any], now: datetime) -> dict[str, Any]:
        mine = spec.get("holderIdentity") == self.identity
        transitions = int(spec.get("leaseTransitions", 0)) + (0 if mine else 1)
        return {**spec, "holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
                "renewTime": _fmt(now), "acquireTime": spec.get("acquireTime") if mine else _fmt(now),
                "leaseTransitions": transitions}

    def _won(self, now: datetime) -> None:
        self._free_since = None
        self._valid_until = now + timedelta(seconds=self.lease_seconds)
        self._set(True)

    def _write(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.kube.update_with_retry(*LEASE, self.namespace, "leases", self.name,
                                    lambda lease: {**lease, "spec": change(lease.get("spec", {}))})

    def _set(self, leader: bool) -> None:
        if leader != self._leader:
            log.info("%s leadership of %s/%s", "acquired" if leader else "lost",
                     self.namespace, self.name)
            self._leader = leader
            if self._on_change is not None:
                self._on_change(leader)
