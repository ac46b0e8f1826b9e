"""Deployments as meshctl wants them: pure transforms of plain dicts.

The stable Deployment is the user's (``spec.workloadRef``). The canary is a second
Deployment, ``<name>-canary``, cloned from it with the Rollout's pod template; its pods carry
``meshctl.io/track: canary`` and ``meshctl.io/revision: <hash>``. Promotion writes the new
template into the stable Deployment (pods labelled ``track: stable``).

A fresh baseline (``spec.judge.baseline: fresh``) is a third Deployment, ``<name>-baseline``:
the stable Deployment's own pod template at the stable revision, at the canary's replicas,
its pods labelled ``meshctl.io/track: baseline`` (so neither the stable nor the canary subset
selects them), owned by the Rollout (the garbage collector removes it with the Rollout).

A revision is the hash of the Rollout's pod template (without meshctl's labels), written as
the ``meshctl.io/revision`` label into the templates meshctl writes. It is read back from that
label, never re-hashed from a stored Deployment: the API server fills in defaults, so a
stored template never hashes like the one written.

A stable Deployment without the label (first sight: meshctl has not labelled it yet) runs
the Rollout's revision when every field the Rollout's template sets is set alike in the
stored one (the API server only adds defaults to what it was given): the engine adopts it.
Otherwise it runs another version, named by its stored template's own hash, and the engine
rolls the Rollout's template out to it as a canary. Either way meshctl labels the stable
Deployment's own template in place (its pods are replaced once, running what they ran):
the Rollout's template reaches the stable Deployment only by promotion.

One Rollout manages a Deployment: its first pass labels the Deployment (metadata only)
``meshctl.io/rollout: <rollout>`` (:func:`claimed`), and another Rollout naming it is invalid
while that one exists (:func:`held_elsewhere`).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from meshctl.domain.engine import WorkloadState
from meshctl.domain.keys import MANAGED_BY, MANAGER, REVISION, ROLLOUT, TRACK
from meshctl.domain.problems import Problem
from meshctl.domain.revisions import revision_of
from meshctl.domain.spec import API_VERSION

OWN_LABELS = (TRACK, REVISION)

Obj = dict[str, Any]


def canary_name(stable_name: str) -> str:
    return f"{stable_name}-canary"


def baseline_name(stable_name: str) -> str:
    return f"{stable_name}-baseline"


def is_ours(deployment: Mapping[str, Any], rollout_name: str) -> bool:
    """Whether meshctl made this Deployment for the Rollout ``rollout_name``."""
    labels = deployment.get("metadata", {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY) == MANAGER and labels.get(ROLLOUT) == rollout_name)


def foreign_workloads(rollout_name: str, found: Iterable[Mapping[str, Any] | None]
                      ) -> Iterator[Problem]:
    """A Deployment already at a name meshctl gives the canary or the fresh baseline
    (``<workloadRef>-canary``, ``-baseline``) that meshctl did not make for this Rollout:
    meshctl would rewrite it, scale it and delete it with the Rollout."""
    for deployment in found:
        if deployment is None or is_ours(deployment, rollout_name):
            continue
        meta = deployment.get("metadata", {})
        labels = meta.get("labels") or {}
        owner = (f"made by meshctl for Rollout {labels[ROLLOUT]!r}" if ROLLOUT in labels
                 else "not made by meshctl")
        yield Problem("spec.workloadRef.name",
                      f"Deployment {meta.get('name')} exists and is {owner}; meshctl runs "
                      "this Rollout's canary and fresh baseline as <workloadRef>-canary and "
                      "<workloadRef>-baseline: rename that Deployment, or delete it if it is "
                      "left from an earlier Rollout")


def claimant(deployment: Mapping[str, Any] | None) -> str | None:
    """The Rollout a stable Deployment is managed by: its ``meshctl.io/rollout`` label,
    written by that Rollout's first pass (None: no Rollout has claimed it yet)."""
    if deployment is None:
        return None
    return (deployment.get("metadata", {}).get("labels") or {}).get(ROLLOUT)


def claimed(deployment: Mapping[str, Any], rollout_name: str | None) -> Obj:
    """The Deployment with its own labels saying which Rollout manages it (None: none).
    Only the Deployment's metadata changes: its Pods are not replaced."""
    out = dict(deployment)
    meta = dict(out.get("metadata", {}))
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != ROLLOUT}
    if rollout_name is not None:
        labels[ROLLOUT] = rollout_name
    meta["labels"] = labels
    out["metadata"] = meta
    return out


def held_elsewhere(rollout_name: str, stable_name: str, holder: str) -> Problem:
    """The Deployment is managed by another Rollout: two Rollouts of one Deployment would
    each roll their own template out over the other's."""
    return Problem("spec.workloadRef.name",
                   f"Deployment {stable_name} is managed by Rollout {holder!r} (its "
                   f"{ROLLOUT} label); two Rollouts of one Deployment would undo each "
                   f"other's releases: change Rollout {holder!r} instead, or delete it "
                   f"before Rollout {rollout_name!r} takes the Deployment over")


def template_revision(template: Mapping[str, Any]) -> str:
    clean = _without_own_labels(template)
    meta = clean.get("metadata")
    if meta is not None and not meta.get("labels", {}):
        meta.pop("labels", None)
    if meta is not None and not meta:
        clean.pop("metadata")
    return revision_of(clean)


def _labelled(template: Mapping[str, Any], track: str, revision: str) -> Obj:
    out = copy.deepcopy(dict(template))
    meta = out.setdefault("metadata", {})
    meta["labels"] = {**meta.get("labels", {}), TRACK: track, REVISION: revision}
    return out


def _track_deployment(stable: Mapping[str, Any], template: Mapping[str, Any], track: str,
                      revision: str, replicas: int, rollout_name: str,
                      name: str) -> Obj:
    """The stable Deployment's spec with ``template`` relabelled for ``track`` (its selector
    narrowed to that track) at ``replicas``, named ``name`` and labelled as meshctl's."""
    spec = copy.deepcopy(dict(stable["spec"]))
    selector = dict(spec.get("selector", {}).get("matchLabels", {}))
    spec["selector"] = {"matchLabels": {**selector, TRACK: track}}
    spec["template"] = _labelled(template, track, revision)
    spec["replicas"] = replicas
    meta = stable["metadata"]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": meta.get("namespace"),
                     "labels": {**meta.get("labels", {}), TRACK: track, REVISION: revision,
                                MANAGED_BY: MANAGER, ROLLOUT: rollout_name}},
        "spec": spec,
    }


def canary_deployment(stable: Mapping[str, Any], template: Mapping[str, Any], replicas: int,
                      rollout_name: str) -> Obj:
    """The canary Deployment: the stable one's spec with the new template and replicas."""
    return _track_deployment(stable, template, "canary", template_revision(template), replicas,
                             rollout_name, canary_name(stable["metadata"]["name"]))


def baseline_deployment(stable: Mapping[str, Any], revision: str, replicas: int,
                        rollout_name: str, owner_uid: str) -> Obj:
    """The fresh baseline: the stable Deployment's spec and template (the stable revision,
    ``revision``), relabelled ``track: baseline``, at ``replicas``, owned by the Rollout.

    E.g. stable ``web`` (selector app=web, 4 replicas), canary at 1 replica: ``web-baseline``,
    selector app=web + track=baseline, 1 replica, ownerReferences [Rollout web]."""
    out = _track_deployment(stable, stable["spec"].get("template", {}), "baseline", revision,
                            replicas, rollout_name, baseline_name(stable["metadata"]["name"]))
    out["metadata"]["ownerReferences"] = [
        {"apiVersion": API_VERSION, "kind": "Rollout", "name": rollout_name, "uid": owner_uid,
         "controller": True}] if owner_uid else []
    return out


def promoted_template(template: Mapping[str, Any]) -> Obj:
    """The template the stable Deployment gets on promotion."""
    return _labelled(template, "stable", template_revision(template))


def sets_alike(wanted: Any, stored: Any) -> bool:
    """Whether every field ``wanted`` sets is set to the same value in ``stored`` (lists
    item by item, at the same length); fields only ``stored`` has are defaults.

    E.g. ``{"image": "web:1"}`` in ``{"image": "web:1", "imagePullPolicy": "IfNotPresent"}``:
    True; ``{"image": "web:2"}`` in the same: False. Resource quantities compare by value
    (the API server stores ``cpu: 0.5`` as ``500m``); another value the server rewrites
    compares unlike: the safe side, a canary."""
    return first_unlike(wanted, stored) is None


def first_unlike(wanted: Any, stored: Any, path: str = "") -> str | None:
    """The first field ``wanted`` sets that ``stored`` does not set alike (see
    :func:`sets_alike`): ``spec.containers[0].image: web:3, not web:2`` (stored first).
    Only an image's values are shown; for any other field, the path (an env var's value
    may be a secret). None when every field is alike."""
    if isinstance(wanted, Mapping):
        if not isinstance(stored, Mapping):
            return _unlike(path or "the template", wanted, stored)
        for key, value in wanted.items():
            at = f"{path}.{key}" if path else str(key)
            if key not in stored:
                return f"{at}: not set"
            if key in _QUANTITY_MAPS and _same_quantities(value, stored[key]):
                continue
            if key in _QUANTITY_KEYS and _quantity(value) is not None and \
                    _quantity(value) == _quantity(stored[key]):
                continue
            found = first_unlike(value, stored[key], at)
            if found is not None:
                return found
        return None
    if isinstance(wanted, list):
        if not isinstance(stored, list):
            return _unlike(path, wanted, stored)
        if len(wanted) != len(stored):
            return f"{path}: {len(stored)} items, not {len(wanted)}"
        for i, (w, s) in enumerate(zip(wanted, stored, strict=True)):
            found = first_unlike(w, s, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return None if wanted == stored else _unlike(path, wanted, stored)


def _unlike(path: str, wanted: Any, stored: Any) -> str:
    if path.rsplit(".", 1)[-1] == "image" and isinstance(wanted, str) and \
            isinstance(stored, str):
        return f"{path}: {_shown(stored)}, not {_shown(wanted)}"
    return f"{path} differs"


_QUANTITY_MAPS = ("limits", "requests", "overhead")  # a container's resources, a pod's
_QUANTITY_KEYS = ("sizeLimit",)  # an emptyDir volume's
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
                       r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
_SUFFIXES = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
             "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
             "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18"),
             **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti",
                                                                   "Pi", "Ei"))}}


def _quantity(value: Any) -> Decimal | None:
    """A Kubernetes resource quantity's value (``500m`` -> 0.5), None if it is not one."""
    match = _QUANTITY.match(str(value)) if isinstance(value, (str, int, float)) else None
    if match is None:
        return None
    number, suffix = Decimal(match.group(1)), match.group(2) or ""
    if suffix in _SUFFIXES:
        return number * _SUFFIXES[suffix]
    try:
        return number.scaleb(int(suffix[1:]))
    except ArithmeticError:  # an exponent past what a Decimal holds: not a quantity
        return None


def _same_quantities(wanted: Any, stored: Any) -> bool:
    """Two maps of resource quantities with the same names and values (``cpu: 0.5`` and
    ``cpu: 500m``)."""
    if not isinstance(wanted, Mapping) or not isinstance(stored, Mapping):
        return False
    for name, value in wanted.items():
        amount = _quantity(value)
        if amount is None or name not in stored or _quantity(stored[name]) != amount:
            return False
    return True


def _shown(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _without_own_labels(template: Mapping[str, Any]) -> Obj:
    out = copy.deepcopy(dict(template))
    labels = out.get("metadata", {}).get("labels", {})
    for key in OWN_LABELS:
        labels.pop(key, None)
    return out


def running_revision(stored: Mapping[str, Any], template: Mapping[str, Any]) -> str:
    """The revision an unlabelled stable Deployment's ``stored`` pod template runs: the
    Rollout ``template``'s when it sets every field alike, else the stored one's own."""
    if sets_alike(_without_own_labels(template), _without_own_labels(stored)):
        return template_revision(template)
    return template_revision(stored)


def stable_revision(deployment: Mapping[str, Any], template: Mapping[str, Any]) -> str | None:
    """The revision the stable Deployment runs: its label's, or unlabelled (first sight)
    the revision of what its pod template runs."""
    labelled = workload_state(deployment).revision
    if labelled is not None:
        return labelled
    return running_revision(deployment.get("spec", {}).get("template", {}), template)


def stable_state(deployment: Mapping[str, Any] | None,
                 template: Mapping[str, Any]) -> WorkloadState:
    """The stable Deployment's state; unlabelled (first sight), the revision it runs.
    Labelled at the revision of ``template``, what in its pod template was changed outside
    meshctl (``kubectl set image`` on it, say: the label stays, the Pods run another
    version)."""
    state = workload_state(deployment)
    if deployment is None:
        return state
    stored = deployment.get("spec", {}).get("template", {})
    if state.revision is None:
        return dataclasses.replace(state, revision=running_revision(stored, template))
    if state.revision != template_revision(template):
        return state  # the stable revision's template is not at hand: nothing to compare
    unlike = first_unlike(_without_own_labels(template), _without_own_labels(stored),
                          "spec.template")
    return dataclasses.replace(state, edited=unlike) if unlike else state


def labelled_in_place(stored: Mapping[str, Any], revision: str) -> Obj:
    """An unlabelled stable Deployment's own pod template, labelled as the stable track at
    the revision it runs (nothing else changes)."""
    return _labelled(stored, "stable", revision)


def workload_state(deployment: Mapping[str, Any] | None) -> WorkloadState:
    """Desired and ready replicas of a Deployment, and its template's revision.

    Ready counts only when the Deployment controller has seen the current spec
    (observedGeneration) and every replica is updated: pods of an old template are not
    ready for the new revision.
    """
    if deployment is None:
        return WorkloadState()
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    replicas = int(spec.get("replicas", 1))
    current = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    updated = int(status.get("updatedReplicas", 0))
    ready = min(int(status.get("readyReplicas", 0)), updated) if current else 0
    labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    return WorkloadState(replicas, ready, labels.get(REVISION))
