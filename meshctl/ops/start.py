"""Start a rollout (a new image, or a Rollout file applied) and undo one: both change
``spec.template``; the template replaced is kept in the annotation
``meshctl.io/previous-template`` so that undo can put it back. Bad input never reaches the
cluster: every template written is validated first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from meshctl.adapters.kube import Object
from meshctl.domain.keys import PREVIOUS_TEMPLATE, STARTED_BY
from meshctl.domain.problems import InvalidSpec, Problem
from meshctl.domain.release_gates import Identity
from meshctl.domain.spec import GROUP, VERSION, Rollout
from meshctl.domain.trail import actor_annotation
from meshctl.domain.validation import load_document
from meshctl.domain.workloads import OWN_LABELS
from meshctl.ops.connect import Objects
from meshctl.ops.failures import Failure, RolloutError, translated
from meshctl.ops.views import PLURAL, RolloutView, view_of


def previous_template(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(PREVIOUS_TEMPLATE)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def start(kube: Objects, namespace: str, name: str, image: str,
          started_by: Identity | None = None) -> RolloutView:
    """Roll out ``image``: the first container of ``spec.template`` gets it (a Rollout with
    no template starts from its Deployment's). The template it replaces is kept in the
    annotation ``meshctl.io/previous-template`` for :func:`undo`; ``started_by`` (the
    caller's identity) in ``meshctl.io/started-by``, for the four-eyes rule of approvals."""
    if not image.strip() or any(c.isspace() for c in image):
        raise RolloutError(Failure.INVALID, f"--image: {image!r} is not an image reference")
    with translated():
        obj = kube.get(GROUP, VERSION, namespace, PLURAL, name)
        base = (obj.get("spec") or {}).get("template") or _deployment_template(kube, obj)
        template = _with_image(base, image)
        updated = kube.update_with_retry(
            GROUP, VERSION, namespace, PLURAL, name,
            lambda o: _started_by(_with_template(o, template), started_by))
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
        previous = previous_template(obj)
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


def _started_by(obj: dict[str, Any], who: Identity | None) -> dict[str, Any]:
    """``obj`` with its starter recorded (or the old starter dropped when none is known),
    and the start in the audit trail."""
    annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
    if who is not None:
        annotations[STARTED_BY] = who.user
        key, value = actor_annotation("start", who, datetime.now(UTC))
        annotations[key] = value
    else:
        annotations.pop(STARTED_BY, None)
    return obj
