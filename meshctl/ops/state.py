"""Status and intents of a rollout driven from this process, kept in files.

``meshctl rollout run`` saves the status after every decision (written to a temporary file
and renamed, so a kill never leaves half a file); running the command again resumes from
it. Intents (promote, abort, ...) for such a run are a second file that
``meshctl rollout promote|abort ... --state-dir`` writes. For the dashboard and the report
(:mod:`meshctl.ops.timelines`) the run also appends each changed status as a sample and
each event, one JSON line each, and writes its metrics' thresholds once. The split served
to the run's Envoy is a file of its own (:class:`ServedSplit`).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meshctl.domain.engine import Event
from meshctl.domain.intents import RECORDED, Action, Intents
from meshctl.domain.jsontext import parsed_object
from meshctl.domain.routers.local import route_configuration, split_of
from meshctl.domain.spec import Rollout
from meshctl.domain.status import RolloutStatus
from meshctl.domain.traffic import TrafficSplit


def _write_atomically(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def state_paths(directory: Path, namespace: str, name: str) -> tuple[Path, Path]:
    """The status file and the intents file of a local run of ``namespace/name``."""
    base = f"{namespace}.{name}"
    return directory / f"{base}.status.json", directory / f"{base}.intents.json"


def timeline_paths(directory: Path, namespace: str, name: str) -> tuple[Path, Path, Path]:
    """The samples, events and thresholds files of a local run of ``namespace/name``."""
    base = directory / f"{namespace}.{name}"
    return (base.with_name(base.name + ".samples.jsonl"),
            base.with_name(base.name + ".events.jsonl"),
            base.with_name(base.name + ".thresholds.json"))


def _append_line(path: Path, value: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(value, sort_keys=True) + "\n")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FileStatusStore:
    def __init__(self, directory: Path, rollout: Rollout,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.status_path, self.intents_path = state_paths(directory, rollout.namespace,
                                                          rollout.name)
        self._on_event = on_event
        self.events: list[Event] = []
        self.samples_path, self.events_path, self.thresholds_path = timeline_paths(
            directory, rollout.namespace, rollout.name)
        self._last_sample: dict[str, Any] | None = None

    def load(self) -> tuple[RolloutStatus, Intents]:
        status = RolloutStatus()
        if self.status_path.exists():
            status = RolloutStatus.from_json(json.loads(self.status_path.read_text("utf-8")))
        return status, read_intents(self.intents_path)

    def save(self, status: RolloutStatus) -> None:
        _write_atomically(self.status_path, status.to_json())
        observed = status.weights.observed
        sample = {"phase": status.phase.value, "step": status.current_step,
                  "stable": status.weights.stable, "canary": status.weights.canary,
                  "observedCanary": None if observed is None else observed.canary}
        if sample != self._last_sample:  # a sample per change, not per pass
            self._last_sample = sample
            _append_line(self.samples_path, {**sample, "at": _now()})

    def save_thresholds(self, thresholds: Mapping[str, tuple[float | None, str]]) -> None:
        _write_atomically(self.thresholds_path, {k: list(v) for k, v in thresholds.items()})

    def record(self, events: Iterable[Event]) -> None:
        for event in events:
            self.events.append(event)
            _append_line(self.events_path, {"at": _now(), "type": event.type,
                                            "reason": event.reason, "message": event.message})
            if self._on_event is not None:
                self._on_event(event)


def read_intents(path: Path) -> Intents:
    if not path.exists():
        return Intents()
    raw = json.loads(path.read_text("utf-8"))
    ids: dict[Action, str] = {}
    for key, value in raw.items():  # earlier versions wrote promote_full: both are read
        action = Action.parse(key)
        if action is not None and (key == action.value or action not in ids):
            ids[action] = value
    return Intents.of(ids)


def write_intent(path: Path, action: Action) -> str:
    """Record a new intent id for ``action``; the next pass acts on it once."""
    if action not in RECORDED:
        raise ValueError(f"{action.value} is not recorded as an intent id")
    raw = json.loads(path.read_text("utf-8")) if path.exists() else {}
    raw = {k: v for k, v in raw.items() if Action.parse(k) is not action}
    raw[action.value] = uuid.uuid4().hex[:12]
    _write_atomically(path, raw)
    return str(raw[action.value])


def approvals_path(directory: Path, namespace: str, name: str) -> Path:
    """A local run's approvals: the annotations a cluster would hold, as one JSON map."""
    return directory / f"{namespace}.{name}.approvals.json"


def read_approvals(path: Path) -> dict[str, str]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def write_approval(path: Path, key: str, value: str) -> None:
    _write_atomically(path, {**read_approvals(path), key: value})


class ServedSplit:
    """The split a local run serves its Envoy, kept beside its status as the route
    configuration it serves, saved before Envoy gets it. A run started again serves it
    again: its first pass then sees what the killed run wrote (an abort's 100/0 included)
    rather than the status's weights, which a kill between the two saves leaves behind."""

    def __init__(self, directory: Path, namespace: str, name: str) -> None:
        self.path = directory / f"{namespace}.{name}.served.json"

    def load(self) -> TrafficSplit | None:
        """None: nothing saved, or not a route configuration meshctl wrote."""
        try:
            config = parsed_object(self.path.read_text(encoding="utf-8"))
            return split_of(config) if config is not None else None
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None

    def save(self, split: TrafficSplit) -> None:
        _write_atomically(self.path, route_configuration(split))

    def forget(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
