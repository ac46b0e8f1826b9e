"""Notifications (``spec.notifications``): what a rollout tells the outside world, and how.

A sink is a URL and a format: ``cloudEvents`` (CloudEvents 1.0, structured JSON mode, type
``io.meshctl.rollout.<kind>``) or ``slack`` (an incoming-webhook ``{"text": ...}``). Kinds:
started, step, gate-waiting, gate-passed, gate-failed, approved, paused, aborted,
rolled-back, promoted; a sink's ``events`` picks some (none: all). Which engine Event is
which kind is :func:`kind_of`; delivery is the shell's, in the background, so a sink never
delays a rollback.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from meshctl.domain.fields import field
from meshctl.domain.names import DNS_LABEL, LABEL_MAX
from meshctl.domain.problems import Problem
from meshctl.domain.release_gates import url_problems

KINDS = ("started", "step", "gate-waiting", "gate-passed", "gate-failed", "approved",
         "paused", "aborted", "rolled-back", "promoted")
CLOUDEVENT_TYPE = "io.meshctl.rollout."
_BY_REASON = {
    "RolloutStarted": "started", "StepStarted": "step", "GateWaiting": "gate-waiting",
    "GatePassed": "gate-passed", "Approved": "approved", "RolledBack": "rolled-back",
    "RolloutCompleted": "promoted",
    "PausedAtStep": "paused", "InconclusiveAnalysis": "paused", "AwaitingPromotion": "paused",
    "UserPaused": "paused", "GateDeadline": "paused", "AnalysisUnavailable": "paused",
}


class SinkFormat(str, Enum):
    CLOUD_EVENTS = "cloudEvents"
    SLACK = "slack"


@dataclass(frozen=True)
class NotificationSink:
    """Where a rollout's notifications go."""

    name: str = field("name", required=True, pattern=DNS_LABEL, max_length=LABEL_MAX)
    url: str = field("url", required=True, max_length=2048, doc="http:// or https:// URL.")
    format: SinkFormat = field("format", default=SinkFormat.CLOUD_EVENTS)
    events: tuple[str, ...] = field(
        "events", default=(), doc="Kinds to send (none: all): " + ", ".join(KINDS) + ".")
    ca_bundle: str | None = field("caBundle", multiline=True, max_length=65536,
                                  doc="PEM CA certificates of the sink's certificate.")

    def wants(self, kind: str) -> bool:
        return not self.events or kind in self.events


def sink_problems(sinks: tuple[NotificationSink, ...], base: str = "spec.notifications"
                  ) -> Iterator[Problem]:
    names = [s.name for s in sinks]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield Problem(base, f"sink name {name!r} is used twice; names must be unique")
    for i, sink in enumerate(sinks):
        yield from url_problems(sink.url, f"{base}[{i}].url")
        for j, kind in enumerate(sink.events):
            if kind not in KINDS:
                yield Problem(f"{base}[{i}].events[{j}]",
                              f"{kind[:40]!r} is not one of {', '.join(KINDS)}")


def kind_of(reason: str, message: str) -> str | None:
    """The notification kind of an engine Event (None: not one people are told about).

    E.g. ("GateFailed", "aborting: gate risk ...") is aborted (the abort it began);
    ("GateFailed", "gate risk (webhook) ...") is gate-failed; ("UserAbort",
    "rolled back to 100% stable: ...") is rolled-back."""
    if message.startswith("aborting: "):
        return "aborted"
    if message.startswith("rolled back to 100% stable"):
        return "rolled-back"
    if reason == "GateFailed":
        return "gate-failed"
    return _BY_REASON.get(reason)


@dataclass(frozen=True)
class Notice:
    """One notification, before a sink's format shapes it."""

    kind: str
    namespace: str
    rollout: str
    revision: str
    phase: str
    severity: str  # Normal | Warning
    reason: str
    message: str
    time: str

    @property
    def source(self) -> str:
        return f"/apis/meshctl.io/v1alpha1/namespaces/{self.namespace}/rollouts/{self.rollout}"

    def data(self) -> dict[str, str]:
        return {"namespace": self.namespace, "rollout": self.rollout, "kind": self.kind,
                "revision": self.revision, "phase": self.phase, "severity": self.severity,
                "reason": self.reason, "message": self.message}

    def slack_text(self) -> str:
        """One line a person reads in a channel."""
        mark = ":warning: " if self.severity == "Warning" else ""
        return (f"{mark}*{self.namespace}/{self.rollout}* {self.kind}: {self.message} "
                f"(revision {self.revision or '-'}, {self.phase})")


def notices(namespace: str, rollout: str, revision: str, phase: str,
            events: Iterable[tuple[str, str, str]], time: str) -> list[Notice]:
    """The notices of a pass's events, each ``(severity, reason, message)``."""
    out = []
    for severity, reason, message in events:
        kind = kind_of(reason, message)
        if kind is not None:
            out.append(Notice(kind, namespace, rollout, revision, phase, severity, reason,
                              message, time))
    return out


def sink_of_flag(text: str, index: int) -> tuple[NotificationSink | None, list[Problem]]:
    """A controller-wide sink from ``meshctl controller run --notify``: ``URL`` (CloudEvents)
    or ``slack=URL``. E.g. ``slack=https://hooks.example/T0`` is a Slack sink ``notify-1``
    for index 1."""
    form, _, url = text.partition("=") if text.startswith(("slack=", "cloudEvents=")) \
        else ("cloudEvents", "", text)
    path = f"--notify[{index}]"
    problems = list(url_problems(url, path))
    if problems:
        return None, problems
    return NotificationSink(f"notify-{index}", url, SinkFormat(form)), []
