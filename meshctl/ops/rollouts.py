"""Rollouts in a cluster as the CLI and the gRPC API see them: views, start, the user's
intents, undo, watch and wait. The front-ends call one of these and render the result.

May: read and write Rollout objects through a Kubernetes client of the adapters; record
intents (annotations ``meshctl.io/intent-<action>: <id>``) and ``spec.paused``; change
``spec.template`` (start, undo).
May not: act on a rollout. Promote, abort, retry and resume are requests the controller
carries out on its next pass (``meshctl.domain.engine`` acts on each intent id once).

Every failure leaves this module as a :class:`RolloutError` whose :class:`Failure` says what
kind it is; the CLI turns the kind into an exit code and the gRPC server into a status code,
one table each, so both front-ends fail the same way for the same cause.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from meshctl.adapters.cluster import INTENT_ACTIONS, INTENT_PREFIX
from meshctl.adapters.errors import (
    AdapterError,
    Forbidden,
    Invalid,
    MeshctlError,
    NotFound,
    PermanentError,
    Unavailable,
)
from meshctl.adapters.kube import Kube, Mutation, Object, Updated
from meshctl.adapters.rest import RestKube
from meshctl.domain.phases import HUMAN_PAUSES, Phase
from meshctl.domain.problems import InvalidSpec, Problem
from meshctl.domain.schedule import schedule
from meshctl.domain.spec import GROUP, VERSION, Rollout
from meshctl.domain.status import RolloutStatus
from meshctl.domain.validation import load_document
from meshctl.domain.workloads import OWN_LABELS
from meshctl.ops.state import read_intents, state_paths, write_intent

PLURAL = "rollouts"
PREVIOUS_TEMPLATE = "meshctl.io/previous-template"
REQUEST_SECONDS = 10.0  # one answer of the API server, for the CLI (the controller: 30 s)
WATCH_CHUNK_SECONDS = 5  # one server-side watch lasts at most this; then it is renewed


# --- errors ------------------------------------------------------------------------------


class Failure(str, Enum):
    """What kind of failure; each front-end maps it once (exit code, gRPC status code)."""

    NOT_FOUND = "NotFound"
    INVALID = "Invalid"  # bad input: an invalid spec, an image name with spaces
    PRECONDITION = "FailedPrecondition"  # valid, but not now (retry of a Healthy rollout)
    UNAUTHENTICATED = "Unauthenticated"
    FORBIDDEN = "PermissionDenied"
    UNAVAILABLE = "Unavailable"  # the cluster cannot be reached (or keeps failing)


class RolloutError(MeshctlError):
    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure, self.message = failure, message


@contextmanager
def translated() -> Iterator[None]:
    """Adapter and validation errors become :class:`RolloutError`."""
    try:
        yield
    except RolloutError:
        raise
    except InvalidSpec as exc:
        raise RolloutError(Failure.INVALID, f"invalid spec: {exc}") from exc
    except NotFound as exc:
        raise RolloutError(Failure.NOT_FOUND, f"not found: {exc.message}") from exc
    except Invalid as exc:
        raise RolloutError(Failure.INVALID, f"rejected by the API server: {exc.message}") from exc
    except Forbidden as exc:
        failure = Failure.UNAUTHENTICATED if exc.status == 401 else Failure.FORBIDDEN
        raise RolloutError(failure, f"not allowed by the API server: {exc.message}") from exc
    except AdapterError as exc:
        raise RolloutError(Failure.UNAVAILABLE, f"cannot reach the cluster: {exc.message}") from exc


class Objects(Protocol):
    """What these operations need of a Kubernetes client: :class:`Kube`, or the CLI's
    quicker :class:`RestKube` (same methods, same objects, same errors)."""

    def get(self, group: str, version: str, namespace: str, plural: str, name: str
            ) -> Object: ...

    def get_or_none(self, group: str, version: str, namespace: str, plural: str, name: str
                    ) -> Object | None: ...

    def list(self, group: str, version: str, namespace: str, plural: str,
             label_selector: str | None = None) -> list[Object]: ...

    def list_all(self, group: str, version: str, plural: str,
                 label_selector: str | None = None) -> tuple[builtins.list[Object], str]: ...

    def watch(self, group: str, version: str, plural: str, resource_version: str,
              timeout_seconds: int = 60, *, namespace: str | None = None,
              field_selector: str | None = None) -> Iterator[tuple[str, Object]]: ...

    def merge_patch(self, group: str, version: str, namespace: str, plural: str, name: str,
                    patch: Object) -> Object: ...

    def apply(self, group: str, version: str, namespace: str, plural: str, body: Object, *,
              force: bool = False) -> Object: ...

    def update_with_retry(self, group: str, version: str, namespace: str, plural: str,
                          name: str, mutate: Mutation) -> Updated: ...

    def close(self) -> None: ...

    deadline: float | None  # a time.monotonic() instant no request may outlast


def connect(kubeconfig: str | None, context: str | None, namespace: str | None
            ) -> tuple[Objects, str]:
    """A client and the namespace to use (``namespace``, or the context's). The quick
    standard-library client when the kubeconfig allows it (no ``kubernetes`` import: the
    CLI answers in a fraction of the time), the full client otherwise."""
    with translated():
        options = {"max_attempts": 2, "timeout_seconds": request_seconds()}
        quick = RestKube.connect(kubeconfig, context, **options)
        if quick is not None:
            return quick, namespace or quick.namespace
        kube = Kube.connect(kubeconfig, context, single_attempt=True, **options)
        return kube, namespace or Kube.default_namespace(kubeconfig, context)


def request_seconds() -> float:
    """How long the CLI waits for one answer of the API server: ``$MESHCTL_REQUEST_TIMEOUT``
    seconds, by default :data:`REQUEST_SECONDS`."""
    raw = os.environ.get("MESHCTL_REQUEST_TIMEOUT", "")
    try:
        seconds = float(raw) if raw else REQUEST_SECONDS
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise PermanentError(f"MESHCTL_REQUEST_TIMEOUT={raw!r}: give seconds above 0, e.g. 10")
    return seconds


def cli_kube(kubeconfig: str | None, context: str | None) -> Kube:
    """The full client as the CLI uses it: one attempt per request, each bounded."""
    return Kube.connect(kubeconfig, context, single_attempt=True, max_attempts=2,
                        timeout_seconds=request_seconds())


# --- views -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsView:
    stable: int
    canary: int


@dataclass(frozen=True)
class MeasurementView:
    """The newest measurement of one metric (``value`` None: no data or an error)."""

    metric: str
    run: str
    value: float | None
    outcome: str
    at: str


@dataclass(frozen=True)
class ConditionView:
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: str


@dataclass(frozen=True)
class RolloutView:
    """One rollout as a person or a pipeline needs it; the same from the API server and
    from the gRPC API. ``step`` counts from 0; at ``total_steps`` every step is done."""

    name: str
    namespace: str
    phase: str
    step: int = 0
    total_steps: int = 0
    weights: WeightsView = WeightsView(100, 0)
    observed_weights: WeightsView | None = None
    not_observed: str = ""  # why observed_weights is None ("stored, not observed: ...")
    measurements: tuple[MeasurementView, ...] = ()
    message: str = ""
    conditions: tuple[ConditionView, ...] = ()
    abort_reason: str = ""
    pause_reason: str = ""
    revision: str = ""
    stable_revision: str = ""
    image: str = ""
    paused: bool = False
    generation: int = 0
    observed_generation: int = 0
    pending_intents: tuple[str, ...] = ()

    @property
    def invalid(self) -> bool:
        return any(c.type == "InvalidSpec" and c.status == "True" for c in self.conditions)

    @property
    def current(self) -> bool:
        """The status describes the latest spec and every intent recorded (the controller
        has seen them)."""
        return self.observed_generation >= self.generation and not self.pending_intents

    def to_json(self) -> dict[str, Any]:
        observed = self.observed_weights
        return {
            "name": self.name, "namespace": self.namespace, "phase": self.phase,
            "step": self.step, "totalSteps": self.total_steps,
            "weights": {"stable": self.weights.stable, "canary": self.weights.canary},
            "observedWeights": None if observed is None else {
                "stable": observed.stable, "canary": observed.canary},
            "notObserved": self.not_observed,
            "measurements": [{"metric": m.metric, "run": m.run, "value": m.value,
                              "outcome": m.outcome, "at": m.at} for m in self.measurements],
            "message": self.message,
            "conditions": [{"type": c.type, "status": c.status, "reason": c.reason,
                            "message": c.message, "lastTransitionTime": c.last_transition_time}
                           for c in self.conditions],
            "abortReason": self.abort_reason, "pauseReason": self.pause_reason,
            "revision": self.revision, "stableRevision": self.stable_revision,
            "image": self.image, "paused": self.paused, "generation": self.generation,
            "observedGeneration": self.observed_generation,
            "pendingIntents": list(self.pending_intents),
        }


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z") if value is not None else ""


def _measurements(status: RolloutStatus) -> tuple[MeasurementView, ...]:
    latest: dict[str, MeasurementView] = {}
    for run in status.analysis:
        for metric in run.metrics:
            if not metric.measurements:
                continue
            m = metric.measurements[-1]
            view = MeasurementView(metric.name, run.name, m.value, m.outcome.value, _iso(m.at))
            if metric.name not in latest or latest[metric.name].at < view.at:
                latest[metric.name] = view
    return tuple(latest[name] for name in sorted(latest))


def _first_image(template: Any) -> str:
    containers = ((template or {}).get("spec") or {}).get("containers") or [{}]
    return str(containers[0].get("image") or "")


def _total_steps(obj: Mapping[str, Any]) -> int:
    try:
        rollout = load_document(obj)
    except InvalidSpec:
        return 0
    return len(schedule(rollout.spec)) if isinstance(rollout, Rollout) else 0


def view_of(obj: Mapping[str, Any]) -> RolloutView:
    """The view of a Rollout object as the API server serves it."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    try:
        status = RolloutStatus.from_json(obj.get("status"))
        message = status.message
    except InvalidSpec as exc:  # a damaged status is shown, not fatal
        status, message = RolloutStatus(), f"status unreadable: {exc}"
    observed = status.weights.observed
    return RolloutView(
        name=str(meta.get("name", "")), namespace=str(meta.get("namespace", "")),
        phase=status.phase.value, step=status.current_step, total_steps=_total_steps(obj),
        weights=WeightsView(status.weights.stable, status.weights.canary),
        observed_weights=None if observed is None else WeightsView(observed.stable,
                                                                   observed.canary),
        not_observed=status.weights.not_observed,
        measurements=_measurements(status), message=message,
        conditions=tuple(ConditionView(c.type, c.status, c.reason, c.message,
                                       _iso(c.last_transition_time))
                         for c in status.conditions),
        abort_reason=status.abort.reason if status.abort else "",
        pause_reason=status.pause_reason or "", revision=status.current_revision or "",
        stable_revision=status.stable_revision or "", image=_first_image(spec.get("template")),
        paused=bool(spec.get("paused", False)), generation=int(meta.get("generation", 0)),
        observed_generation=status.observed_generation,
        pending_intents=_pending_intents(meta, status),
    )


def _pending_intents(meta: Mapping[str, Any], status: RolloutStatus) -> tuple[str, ...]:
    """Intents recorded on the Rollout that the controller has not acted on yet."""
    annotations = meta.get("annotations") or {}
    return tuple(action for action in INTENT_ACTIONS
                 if annotations.get(INTENT_PREFIX + action)
                 and status.handled(action.replace("-", "_")) != annotations[INTENT_PREFIX + action])


def get(kube: Objects, namespace: str, name: str) -> RolloutView:
    with translated():
        return view_of(kube.get(GROUP, VERSION, namespace, PLURAL, name))


def list_rollouts(kube: Objects, namespace: str | None) -> list[RolloutView]:
    """The rollouts of ``namespace`` (None: of every namespace), by namespace and name."""
    with translated():
        if namespace is None:
            items, _ = kube.list_all(GROUP, VERSION, PLURAL)
        else:
            items = kube.list(GROUP, VERSION, namespace, PLURAL)
    views = [view_of(item) for item in items]
    return sorted(views, key=lambda v: (v.namespace, v.name))


# --- history -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RevisionView:
    role: str  # current, stable, previous
    revision: str
    image: str


@dataclass(frozen=True)
class EventView:
    time: str
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class History:
    rollout: RolloutView
    revisions: tuple[RevisionView, ...]
    events: tuple[EventView, ...]

    def to_json(self) -> dict[str, Any]:
        return {"rollout": self.rollout.to_json(),
                "revisions": [{"role": r.role, "revision": r.revision, "image": r.image}
                              for r in self.revisions],
                "events": [{"time": e.time, "type": e.type, "reason": e.reason,
                            "message": e.message} for e in self.events]}


def history(kube: Objects, namespace: str, name: str) -> History:
    """The revisions the Rollout knows (current, stable, the template before the last
    start) and its events, oldest first (every phase change is an event)."""
    from meshctl.domain.workloads import template_revision

    with translated():
        obj = kube.get(GROUP, VERSION, namespace, PLURAL, name)
        events = kube.list("events.k8s.io", "v1", namespace, "events")
    view = view_of(obj)
    revisions = [RevisionView("current", view.revision, view.image)]
    if view.stable_revision and view.stable_revision != view.revision:
        revisions.append(RevisionView("stable", view.stable_revision, ""))
    previous = _previous_template(obj)
    if previous is not None:
        revisions.append(RevisionView("previous", template_revision(previous),
                                      _first_image(previous)))
    uid = obj["metadata"].get("uid")
    mine = [e for e in events if (e.get("regarding") or {}).get("kind") == "Rollout"
            and (e.get("regarding") or {}).get("name") == name
            and (e.get("regarding") or {}).get("uid") in (uid, None)]
    rows = [EventView(str(e.get("eventTime") or e["metadata"].get("creationTimestamp") or ""),
                      str(e.get("type", "")), str(e.get("reason", "")), str(e.get("note", "")))
            for e in mine]
    return History(view, tuple(revisions), tuple(sorted(rows, key=lambda e: e.time)))


def _previous_template(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(PREVIOUS_TEMPLATE)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# --- start and undo ----------------------------------------------------------------------


def start(kube: Objects, namespace: str, name: str, image: str) -> RolloutView:
    """Roll out ``image``: the first container of ``spec.template`` gets it (a Rollout with
    no template starts from its Deployment's). The template it replaces is kept in the
    annotation ``meshctl.io/previous-template`` for :func:`undo`."""
    if not image.strip() or any(c.isspace() for c in image):
        raise RolloutError(Failure.INVALID, f"--image: {image!r} is not an image reference")
    with translated():
        obj = kube.get(GROUP, VERSION, namespace, PLURAL, name)
        base = (obj.get("spec") or {}).get("template") or _deployment_template(kube, obj)
        template = _with_image(base, image)
        updated = kube.update_with_retry(GROUP, VERSION, namespace, PLURAL, name,
                                         lambda o: _with_template(o, template))
    return view_of(updated.object)


def apply(kube: Objects, body: Mapping[str, Any], namespace: str,
          name: str | None = None) -> RolloutView:
    """Server-side apply of a Rollout read from a file (validated first; an invalid one is
    refused and nothing is written). The template it replaces is kept, as by :func:`start`."""
    doc = _placed(body, namespace, name)
    with translated():
        if not isinstance(load_document(doc), Rollout):
            raise InvalidSpec([Problem("kind", "expected a Rollout")])
        current = kube.get_or_none(GROUP, VERSION, namespace, PLURAL, doc["metadata"]["name"])
        if current is not None:
            kept = _replaced(json.loads(json.dumps(current)),
                             (doc.get("spec") or {}).get("template"))
            previous = (kept["metadata"].get("annotations") or {}).get(PREVIOUS_TEMPLATE)
            if previous is not None:
                doc["metadata"].setdefault("annotations", {})[PREVIOUS_TEMPLATE] = previous
        return view_of(kube.apply(GROUP, VERSION, namespace, PLURAL, doc, force=True))


def apply_files(kube: Objects, files: Sequence[str], namespace: str,
                name: str | None = None) -> RolloutView:
    """Apply the one Rollout in ``files`` ("-": standard input) and the AnalysisTemplates
    with it, after checking them all; any problem and nothing is written."""
    from meshctl.adapters.files import FileProblem, iter_documents

    problems: list[str] = []
    bodies: list[tuple[str, dict[str, Any]]] = []
    for item in iter_documents(list(files)):
        if isinstance(item, FileProblem):
            problems.append(str(item))
            continue
        try:
            kind = "rollouts" if isinstance(load_document(item.body), Rollout) \
                else "analysistemplates"
        except InvalidSpec as exc:
            problems += [f"{item.source}: {p}" for p in exc.problems]
            continue
        bodies.append((kind, item.body))
    rollouts = [body for kind, body in bodies if kind == PLURAL]
    if not problems and len(rollouts) != 1:
        problems.append(f"expected exactly one Rollout in {', '.join(files)}, found "
                        f"{len(rollouts)}")
    if problems:
        raise RolloutError(Failure.INVALID, "; ".join(problems))
    placed = [_placed(body, namespace, None) for kind, body in bodies if kind != PLURAL]
    with translated():
        for template in placed:
            kube.apply(GROUP, VERSION, namespace, "analysistemplates", template, force=True)
    return apply(kube, rollouts[0], namespace, name)


def _placed(body: Mapping[str, Any], namespace: str, name: str | None) -> dict[str, Any]:
    """A private copy of a document from a file, in ``namespace``, without status."""
    doc: dict[str, Any] = json.loads(json.dumps(dict(body)))
    doc.pop("status", None)
    meta = doc.setdefault("metadata", {})
    if meta.get("namespace") and meta["namespace"] != namespace:
        raise RolloutError(Failure.INVALID, f"metadata.namespace: the file says "
                           f"{meta['namespace']!r}, the command line {namespace!r}")
    meta["namespace"] = namespace
    if name is not None and meta.get("name") != name:
        raise RolloutError(Failure.INVALID, f"metadata.name: the file's Rollout is "
                           f"{meta.get('name')!r}, not {name!r}")
    return doc


def undo(kube: Objects, namespace: str, name: str) -> RolloutView:
    """Put back the template from before the last start (undo twice: forward again)."""
    with translated():
        obj = kube.get(GROUP, VERSION, namespace, PLURAL, name)
        previous = _previous_template(obj)
        if previous is None:
            raise RolloutError(Failure.PRECONDITION, f"rollout {namespace}/{name} has no "
                               f"previous template to go back to ({PREVIOUS_TEMPLATE} is set "
                               "by meshctl rollout start)")
        updated = kube.update_with_retry(GROUP, VERSION, namespace, PLURAL, name,
                                         lambda o: _with_template(o, previous))
    return view_of(updated.object)


def _deployment_template(kube: Objects, obj: Mapping[str, Any]) -> dict[str, Any]:
    ref = (obj.get("spec") or {}).get("workloadRef") or {}
    if not ref.get("name"):
        raise RolloutError(Failure.PRECONDITION, "the Rollout has neither spec.template nor "
                           "spec.workloadRef to take a pod template from")
    deployment = kube.get("apps", "v1", obj["metadata"]["namespace"], "deployments", ref["name"])
    template: dict[str, Any] = json.loads(json.dumps(deployment["spec"]["template"]))
    labels = (template.get("metadata") or {}).get("labels") or {}
    for label in OWN_LABELS:
        labels.pop(label, None)
    return template


def _with_image(template: Mapping[str, Any], image: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(dict(template)))
    containers = out.setdefault("spec", {}).get("containers") or []
    if not containers:
        raise RolloutError(Failure.PRECONDITION, "the pod template has no container to set "
                           "the image of")
    containers[0]["image"] = image
    return out


def _replaced(obj: Object, template: Any) -> Object:
    """``obj`` with ``spec.template`` set and the replaced one recorded (pure)."""
    spec = obj.setdefault("spec", {})
    old = spec.get("template")
    if old == template or template is None:
        return obj
    if old:
        annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
        annotations[PREVIOUS_TEMPLATE] = json.dumps(old, sort_keys=True)
    spec["template"] = template
    return obj


def _with_template(obj: Object, template: Any) -> Object:
    """:func:`_replaced`, validated: bad input never reaches the cluster."""
    out = _replaced(obj, template)
    load_document(out)  # raises InvalidSpec
    return out


# --- intents -----------------------------------------------------------------------------


class Action(str, Enum):
    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    ABORT = "abort"
    RETRY = "retry"
    RESUME = "resume"
    PAUSE = "pause"


_ACTIVE = (Phase.PROGRESSING, Phase.PAUSED)
# The phases in which an action means something; elsewhere it is refused (FailedPrecondition).
ALLOWED: dict[Action, tuple[Phase, ...]] = {
    Action.PROMOTE: _ACTIVE,
    Action.PROMOTE_FULL: _ACTIVE,
    Action.ABORT: (*_ACTIVE, Phase.PROMOTING),
    Action.RETRY: (Phase.DEGRADED,),
    Action.RESUME: (Phase.PAUSED,),
    Action.PAUSE: tuple(Phase),
}


def request(kube: Objects, namespace: str, name: str, action: Action) -> RolloutView:
    """Record the user's ``action`` on the Rollout for the controller to carry out.

    An action the rollout's phase makes meaningless is refused, unless the controller has
    not yet seen the latest spec (the phase may be about to change). ``pause`` sets
    ``spec.paused``; ``resume`` clears it and records a resume intent (which also ends a
    pause for an inconclusive analysis, measuring again).
    """
    with translated():
        obj = kube.get(GROUP, VERSION, namespace, PLURAL, name)
        _check_allowed(view_of(obj), action)
        patch: dict[str, Any] = {}
        if action is Action.PAUSE:
            patch["spec"] = {"paused": True}
        else:
            patch["metadata"] = {"annotations": {INTENT_PREFIX + action.value: uuid.uuid4().hex[:12]}}
        if action is Action.RESUME and (obj.get("spec") or {}).get("paused"):
            patch["spec"] = {"paused": False}
        return view_of(kube.merge_patch(GROUP, VERSION, namespace, PLURAL, name, patch))


def _check_allowed(view: RolloutView, action: Action) -> None:
    phases = ALLOWED[action]
    if not view.current or Phase(view.phase) in phases:
        return
    if action is Action.RESUME and view.paused:
        return
    wanted = " or ".join(p.value for p in phases)
    raise RolloutError(Failure.PRECONDITION, f"cannot {action.value.replace('-', ' ')} "
                       f"{view.namespace}/{view.name}: it is {view.phase} (needs {wanted})")


# --- watch and wait ----------------------------------------------------------------------


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


class WaitOutcome(str, Enum):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"  # rolled back
    PAUSED = "Paused"  # waiting for a person
    INVALID = "InvalidSpec"
    TIMED_OUT = "TimedOut"


@dataclass(frozen=True)
class WaitResult:
    outcome: WaitOutcome
    view: RolloutView
    message: str


def judge(view: RolloutView, generation: int = 0) -> WaitOutcome | None:
    """Where a wait ends, if it ends at ``view``; None: keep waiting. A status older than
    ``generation`` (the spec the caller wrote) or than the spec itself says nothing yet."""
    if view.observed_generation < max(generation, view.generation) or view.pending_intents:
        return None
    if view.invalid:
        return WaitOutcome.INVALID
    phase = Phase(view.phase)
    if phase is Phase.HEALTHY:
        return WaitOutcome.HEALTHY
    if phase is Phase.DEGRADED:
        return WaitOutcome.DEGRADED
    if phase is Phase.PAUSED and view.pause_reason in HUMAN_PAUSES:
        return WaitOutcome.PAUSED
    return None


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
        outcome = judge(view, generation)
        if outcome is not None:
            return WaitResult(outcome, view, view.message)
    assert last is not None
    return WaitResult(WaitOutcome.TIMED_OUT, last, _timeout_message(last, timeout, generation))


def _timeout_message(view: RolloutView, timeout: float | None, generation: int) -> str:
    waited = f"after {timeout:g}s" if timeout is not None else ""
    if view.observed_generation < max(generation, view.generation) or view.pending_intents:
        seen = ", ".join([f"generation {max(generation, view.generation)}",
                          *(f"the {a} request" for a in view.pending_intents)])
        return (f"timed out {waited}: the controller has not acted on {seen} of "
                f"{view.namespace}/{view.name} (is `meshctl controller run` running?)")
    return f"timed out {waited}: {view.phase} at step {view.step}/{view.total_steps}: {view.message}"


# --- where rollouts are read and steered ------------------------------------------------


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
        return get(self.kube, namespace, name)

    def list(self, namespace: str | None) -> list[RolloutView]:
        return list_rollouts(self.kube, namespace)

    def watch(self, namespace: str, name: str, timeout: float | None = None,
              stop: Callable[[], bool] = lambda: False) -> Iterator[RolloutView]:
        return watch(self.kube, namespace, name, timeout, stop)

    def request(self, namespace: str, name: str, action: Action) -> RolloutView:
        return request(self.kube, namespace, name, action)

    def start(self, namespace: str, name: str, image: str) -> RolloutView:
        return start(self.kube, namespace, name, image)

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

    def close(self) -> None:
        self.kube.close()


class LocalRollouts:
    """Rollouts driven by ``meshctl rollout run`` on this machine: the status and intents
    files it keeps in its state directory (see :mod:`meshctl.ops.state`)."""

    POLL_SECONDS = 0.2
    _ACTIONS = {Action.PROMOTE: "promote", Action.PROMOTE_FULL: "promote_full",
                Action.ABORT: "abort", Action.RETRY: "retry", Action.RESUME: "resume"}

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
        pending = tuple(action.value for action, field in self._ACTIONS.items()
                        if getattr(intents, field) not in (None, status.handled(field)))
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

    def request(self, namespace: str, name: str, action: Action) -> RolloutView:
        view = self.get(namespace, name)
        if action not in self._ACTIONS:
            raise RolloutError(Failure.PRECONDITION, f"{action.value} needs the cluster "
                               "(spec.paused); a local run pauses at its pause steps")
        _check_allowed(view, action)
        _, intents_path = state_paths(self.state_dir, namespace, name)
        write_intent(intents_path, self._ACTIONS[action])
        return view

