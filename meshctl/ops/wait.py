"""Follow a rollout: :func:`watch` streams its views as the API server stores them;
:func:`wait` follows any place that holds rollouts until the rollout is Healthy, rolled
back, paused for a person or invalid, and says which (``--wait``, ``status --watch``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshctl.adapters.errors import NotFound, Unavailable
from meshctl.adapters.kube import Object
from meshctl.domain.phases import Ending, Phase, ending_of
from meshctl.domain.spec import GROUP, VERSION
from meshctl.ops.connect import Objects
from meshctl.ops.failures import Failure, RolloutError, translated
from meshctl.ops.views import PLURAL, RolloutView, view_of

if TYPE_CHECKING:
    from meshctl.ops.rollouts import Rollouts

WATCH_CHUNK_SECONDS = 5  # one server-side watch lasts at most this; then it is renewed


def watch(kube: Objects, namespace: str, name: str, timeout: float | None = None,
          stop: Callable[[], bool] = lambda: False) -> Iterator[RolloutView]:
    """The rollout's view now, then each time it changes, until ``timeout`` seconds pass
    or ``stop()`` is true (checked at least every few seconds). Every stored status is
    seen: this follows the API server's watch from the resourceVersion it read."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if deadline is not None:
        kube.deadline = deadline  # no request outlasts the command's --timeout
    with translated():
        obj = kube.get(GROUP, VERSION, namespace, PLURAL, name)
    last = view_of(obj)
    yield last
    version = str(obj["metadata"].get("resourceVersion", ""))
    while not stop():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        chunk = WATCH_CHUNK_SECONDS if left is None else max(1, min(WATCH_CHUNK_SECONDS,
                                                                     math.ceil(left)))
        with translated():
            try:
                changes = list_changes(kube, namespace, name, version, chunk)
                for kind, changed in changes:
                    if kind == "DELETED":
                        raise RolloutError(Failure.NOT_FOUND, f"rollout {namespace}/{name} "
                                           "was deleted")
                    version = str(changed["metadata"].get("resourceVersion", version))
                    view = view_of(changed)
                    if view != last:
                        last = view
                        yield view
                    if stop():
                        return
            except Unavailable:
                if deadline is not None and time.monotonic() >= deadline:
                    return  # the --timeout passed while the server did not answer
                raise
            except NotFound:  # the watch expired (410 Gone): read again, go on from there
                obj = kube.get(GROUP, VERSION, namespace, PLURAL, name)
                version = str(obj["metadata"].get("resourceVersion", ""))
                view = view_of(obj)
                if view != last:
                    last = view
                    yield view


def list_changes(kube: Objects, namespace: str, name: str, version: str,
                 seconds: int) -> Iterator[tuple[str, Object]]:
    return kube.watch(GROUP, VERSION, PLURAL, version, seconds, namespace=namespace,
                      field_selector=f"metadata.name={name}")


@dataclass(frozen=True)
class WaitResult:
    ending: Ending
    view: RolloutView
    message: str


def judge(view: RolloutView, generation: int = 0) -> Ending | None:
    """Where a wait ends, if it ends at ``view``; None: keep waiting. A status older than
    ``generation`` (the spec the caller wrote) or than the spec itself says nothing yet."""
    if view.observed_generation < max(generation, view.generation) or view.pending_intents:
        return None
    return ending_of(Phase(view.phase), view.pause_reason, view.invalid)


def wait(source: Rollouts, namespace: str, name: str, timeout: float | None,
         generation: int = 0, on_change: Callable[[RolloutView], None] | None = None
         ) -> WaitResult:
    """Follow the rollout until it is Healthy, rolled back, paused for a person, or its
    spec is invalid; or until ``timeout`` seconds have passed."""
    last: RolloutView | None = None
    for view in source.watch(namespace, name, timeout):
        last = view
        if on_change is not None:
            on_change(view)
        ending = judge(view, generation)
        if ending is not None:
            return WaitResult(ending, view, view.message)
    assert last is not None
    return WaitResult(Ending.TIMED_OUT, last, _timeout_message(last, timeout, generation))


def _timeout_message(view: RolloutView, timeout: float | None, generation: int) -> str:
    waited = f"after {timeout:g}s" if timeout is not None else ""
    if view.observed_generation < max(generation, view.generation) or view.pending_intents:
        seen = ", ".join([f"generation {max(generation, view.generation)}",
                          *(f"the {a} request" for a in view.pending_intents)])
        return (f"timed out {waited}: the controller has not acted on {seen} of "
                f"{view.namespace}/{view.name} (is `meshctl controller run` running?)")
    return f"timed out {waited}: {view.phase} at step {view.step}/{view.total_steps}: {view.message}"
