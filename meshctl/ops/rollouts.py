"""Where rollouts are read and steered, behind one protocol the front-ends use
(:class:`Rollouts`): the cluster through the API server (:class:`ClusterRollouts`), a local
run's state files (:class:`LocalRollouts`), the controller's gRPC API
(:class:`meshctl.api.client.RemoteRollouts`).

May: read and write Rollout objects through a Kubernetes client of the adapters; record
intents and ``spec.paused``; change ``spec.template`` (start, undo).
May not: act on a rollout. Promote, abort, retry and resume are requests the controller
carries out on its next pass.

The operations themselves live by concept: :mod:`~meshctl.ops.views` (reading),
:mod:`~meshctl.ops.history`, :mod:`~meshctl.ops.start` (start, apply, undo),
:mod:`~meshctl.ops.intents`, :mod:`~meshctl.ops.wait` (watch and wait); failures are
:mod:`~meshctl.ops.failures`, the client :mod:`~meshctl.ops.connect`.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from meshctl.domain.intents import RECORDED, Action
from meshctl.domain.phases import Phase
from meshctl.domain.problems import InvalidSpec
from meshctl.domain.release_gates import Approval, Identity, approval_annotation
from meshctl.domain.status import RolloutStatus
from meshctl.domain.timeline import Timeline
from meshctl.ops.approvals import approve, who_am_i
from meshctl.ops.connect import Objects
from meshctl.ops.failures import Failure, RolloutError
from meshctl.ops.history import History, history
from meshctl.ops.intents import check_allowed, request
from meshctl.ops.start import apply, apply_files, start, undo
from meshctl.ops.state import (
    approvals_path,
    read_intents,
    state_paths,
    write_approval,
    write_intent,
)
from meshctl.ops.timelines import cluster_timeline, local_timeline
from meshctl.ops.views import RolloutView, list_rollouts, view_of
from meshctl.ops.views import get as get_view
from meshctl.ops.wait import watch


class Rollouts(Protocol):
    """What every front-end needs of a place that holds rollouts: the cluster (here),
    the controller's gRPC API (:mod:`meshctl.api.client`), a local run's state files."""

    def get(self, namespace: str, name: str) -> RolloutView: ...

    def list(self, namespace: str | None) -> list[RolloutView]: ...

    def watch(self, namespace: str, name: str, timeout: float | None = None,
              stop: Callable[[], bool] = ...) -> Iterator[RolloutView]: ...

    def request(self, namespace: str, name: str, action: Action) -> RolloutView: ...


class ClusterRollouts:
    """Rollouts in the cluster, through the API server."""

    def __init__(self, kube: Objects) -> None:
        self.kube = kube

    def get(self, namespace: str, name: str) -> RolloutView:
        return get_view(self.kube, namespace, name)

    def list(self, namespace: str | None) -> list[RolloutView]:
        return list_rollouts(self.kube, namespace)

    def watch(self, namespace: str, name: str, timeout: float | None = None,
              stop: Callable[[], bool] = lambda: False) -> Iterator[RolloutView]:
        return watch(self.kube, namespace, name, timeout, stop)

    def request(self, namespace: str, name: str, action: Action,
                by: Identity | None = None) -> RolloutView:
        """``by``: the caller; None asks the API server whose credentials these are."""
        return request(self.kube, namespace, name, action, by or self._caller())

    def start(self, namespace: str, name: str, image: str,
              started_by: Identity | None = None) -> RolloutView:
        """``started_by``: the caller's identity; None asks the API server whose
        credentials these are (the CLI's own)."""
        return start(self.kube, namespace, name, image, started_by or self._caller())

    def approve(self, namespace: str, name: str, comment: str = "",
                who: Identity | None = None) -> RolloutView:
        """``who``: the approver; None is whoever the API server says these credentials are."""
        return approve(self.kube, namespace, name, who or who_am_i(self.kube), comment,
                       datetime.now(UTC))

    def _caller(self) -> Identity | None:
        try:
            return who_am_i(self.kube)
        except RolloutError:  # an API server without SelfSubjectReview: no starter recorded
            return None

    def apply_files(self, files: Sequence[str], namespace: str, name: str | None
                    ) -> RolloutView:
        return apply_files(self.kube, files, namespace, name)

    def apply(self, namespace: str, body: Mapping[str, Any], name: str | None = None
              ) -> RolloutView:
        return apply(self.kube, body, namespace, name)

    def undo(self, namespace: str, name: str) -> RolloutView:
        return undo(self.kube, namespace, name)

    def history(self, namespace: str, name: str) -> History:
        return history(self.kube, namespace, name)

    def timeline(self, namespace: str, name: str, prometheus: str | None = None) -> Timeline:
        return cluster_timeline(self.kube, namespace, name, prometheus=prometheus)

    def close(self) -> None:
        self.kube.close()


class LocalRollouts:
    """Rollouts driven by ``meshctl rollout run`` on this machine: the status and intents
    files it keeps in its state directory (see :mod:`meshctl.ops.state`)."""

    POLL_SECONDS = 0.2

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def get(self, namespace: str, name: str) -> RolloutView:
        status_path, intents_path = state_paths(self.state_dir, namespace, name)
        try:
            raw = json.loads(status_path.read_text("utf-8"))
        except FileNotFoundError:
            raise RolloutError(Failure.NOT_FOUND, f"no local run of {namespace}/{name} in "
                               f"{self.state_dir} (meshctl rollout run keeps it there)") from None
        except (OSError, ValueError) as exc:
            raise RolloutError(Failure.UNAVAILABLE, f"cannot read {status_path}: {exc}") from exc
        view = view_of({"metadata": {"name": name, "namespace": namespace}, "status": raw})
        try:
            status = RolloutStatus.from_json(raw)
        except InvalidSpec:
            status = RolloutStatus()
        intents = read_intents(intents_path)
        pending = tuple(action.value for action in RECORDED
                        if intents.get(action) not in (None, status.handled(action)))
        return dataclasses.replace(view, observed_generation=view.generation,
                                   pending_intents=pending)

    def list(self, namespace: str | None) -> list[RolloutView]:
        views = []
        for path in sorted(self.state_dir.glob("*.status.json")):
            ns, _, name = path.name.removesuffix(".status.json").partition(".")
            if namespace is None or ns == namespace:
                views.append(self.get(ns, name))
        return views

    def watch(self, namespace: str, name: str, timeout: float | None = None,
              stop: Callable[[], bool] = lambda: False) -> Iterator[RolloutView]:
        deadline = None if timeout is None else time.monotonic() + timeout
        last = self.get(namespace, name)
        yield last
        while not stop() and (deadline is None or time.monotonic() < deadline):
            time.sleep(self.POLL_SECONDS)
            view = self.get(namespace, name)
            if view != last:
                last = view
                yield view

    def timeline(self, namespace: str, name: str, prometheus: str | None = None) -> Timeline:
        return local_timeline(self.state_dir, namespace, name, prometheus=prometheus)

    def request(self, namespace: str, name: str, action: Action) -> RolloutView:
        view = self.get(namespace, name)
        if action not in RECORDED:
            raise RolloutError(Failure.PRECONDITION, f"{action.value} needs the cluster "
                               "(spec.paused); a local run pauses at its pause steps")
        check_allowed(view, action)
        _, intents_path = state_paths(self.state_dir, namespace, name)
        write_intent(intents_path, action)
        return view

    def approve(self, namespace: str, name: str, comment: str = "",
                who: Identity | None = None) -> RolloutView:
        """Approve a local run as ``who`` (a client certificate's identity, from a dashboard
        over HTTPS), by default as this machine's user (``via: local``: no API server or
        certificate vouches for it; a local run is one person's). The run counts it on its
        next pass."""
        view = self.get(namespace, name)
        if view.phase not in (Phase.PROGRESSING.value, Phase.PAUSED.value):
            raise RolloutError(Failure.PRECONDITION, f"cannot approve {namespace}/{name}: it "
                               f"is {view.phase}; nothing waits for an approval")
        who = who or Identity(getpass.getuser(), (), "local")
        key, value = approval_annotation(Approval(who, view.revision, datetime.now(UTC),
                                                  comment))
        write_approval(approvals_path(self.state_dir, namespace, name), key, value)
        return view
