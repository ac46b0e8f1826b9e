"""Release gates (``spec.gates``): outside conditions a rollout meets at named points.

Points: ``beforeTraffic`` (once, before the first step that moves any traffic),
``beforeIncrease`` (before every step that raises the canary's weight), ``beforePromotion``
(after the last step, before stable takes the new version), ``afterPromotion`` and
``onRollback`` (recorded, never blocking: abort and rollback wait for no gate).

Kinds: ``window`` (days and times in an IANA time zone, and freeze dates) is judged here,
from ``now``; ``webhook``, ``job`` and ``approval`` are judged by the shell, which reports a
:class:`GateReport` for each gate :func:`gates_due` names. Verdicts: a gate passes, fails
(before traffic moves the rollout ends with traffic untouched; later it rolls back) or
waits; waiting past its deadline pauses the rollout for a human.

Everything here is pure: stdlib only (``zoneinfo`` and ``datetime`` for windows).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from meshctl.domain.durations import Duration, format_duration
from meshctl.domain.fields import field
from meshctl.domain.jsontext import parsed_object
from meshctl.domain.keys import APPROVAL_PREFIX
from meshctl.domain.names import DNS_LABEL, DNS_SUBDOMAIN, LABEL_MAX, SUBDOMAIN_MAX
from meshctl.domain.problems import Problem

HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# A window gate looks this far ahead for its next opening; none inside is "never opens".
LOOKAHEAD_DAYS = 400


class GatePoint(str, Enum):
    BEFORE_TRAFFIC = "beforeTraffic"
    BEFORE_INCREASE = "beforeIncrease"
    BEFORE_PROMOTION = "beforePromotion"
    AFTER_PROMOTION = "afterPromotion"
    ON_ROLLBACK = "onRollback"


# Gates at these points only record their verdicts: nothing waits for them.
RECORDING_POINTS = (GatePoint.AFTER_PROMOTION, GatePoint.ON_ROLLBACK)


class Weekday(str, Enum):
    MON = "Mon"
    TUE = "Tue"
    WED = "Wed"
    THU = "Thu"
    FRI = "Fri"
    SAT = "Sat"
    SUN = "Sun"


WEEKDAYS = tuple(Weekday)  # in the order of date.weekday()


# --- the spec ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Secret in the Rollout's namespace."""

    name: str = field("name", required=True, pattern=DNS_SUBDOMAIN, max_length=SUBDOMAIN_MAX)
    key: str = field("key", required=True, pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)


@dataclass(frozen=True)
class WebhookGate:
    """An HTTP POST of the rollout's context as JSON; a 2xx answer passes, another 4xx
    fails, 5xx, 408, 429 and no answer are retried and then asked again until the deadline."""

    url: str = field("url", required=True, max_length=2048, doc="http:// or https:// URL.")
    ca_bundle: str | None = field(
        "caBundle", multiline=True, max_length=65536,
        doc="PEM CA certificates that sign the receiver's certificate (https).")
    signing_secret: SecretKeyRef | None = field(
        "signingSecret", doc="HMAC-SHA256 key: the body's signature is sent as "
        "X-Meshctl-Signature: sha256=<hex>.")
    timeout: Duration = field("timeout", default=Duration("10s"), minimum=0.001)
    retries: int = field("retries", default=2, minimum=0, maximum=10)


@dataclass(frozen=True)
class JobGate:
    """A Kubernetes Job from ``template`` (a JobSpec); passes when it completes."""

    template: dict[str, Any] = field(
        "template", required=True, opaque=True,
        doc="A JobSpec; $(ROLLOUT), $(REVISION) and $(STEP) in its containers' args are "
        "replaced.")


@dataclass(frozen=True)
class ApprovalGate:
    """``count`` distinct approvals from the identities allowed here."""

    count: int = field("count", default=1, minimum=1, maximum=100,
                       doc="Distinct approvers needed.")
    users: tuple[str, ...] = field("users", default=(), items={"max_length": 253})
    groups: tuple[str, ...] = field("groups", default=(), items={"max_length": 253})
    spiffe_ids: tuple[str, ...] = field(
        "spiffeIds", default=(), items={"pattern": r"^spiffe://[^\s/]+/\S*$", "max_length": 2048})
    forbid_starter: bool = field(
        "forbidStarter", default=False,
        doc="Four eyes: whoever started the rollout may not approve it.")


@dataclass(frozen=True)
class TimeWindow:
    """Open on ``days`` (all, when empty) from ``start`` to ``end``, local time."""

    start: str = field("start", required=True, pattern=HH_MM, doc="HH:MM")
    end: str = field("end", required=True, pattern=HH_MM, doc="HH:MM, after start.")
    days: tuple[Weekday, ...] = field("days", default=())


@dataclass(frozen=True)
class Freeze:
    """Closed from ``start`` to ``end``, whole days, both included, local dates."""

    start: str = field("start", required=True, pattern=DATE, doc="YYYY-MM-DD")
    end: str = field("end", required=True, pattern=DATE, doc="YYYY-MM-DD")
    reason: str = field("reason", default="", max_length=200)


@dataclass(frozen=True)
class WindowGate:
    """Deployment windows and freezes; no windows means open whenever not frozen."""

    time_zone: str = field("timeZone", required=True, max_length=64,
                           doc="IANA time zone, e.g. Europe/Stockholm.")
    windows: tuple[TimeWindow, ...] = field("windows", default=())
    freezes: tuple[Freeze, ...] = field("freezes", default=())


@dataclass(frozen=True)
class GateSpec:
    """One release gate: a name, where it applies, and exactly one kind."""

    name: str = field("name", required=True, pattern=DNS_LABEL, max_length=LABEL_MAX)
    at: tuple[GatePoint, ...] = field(
        "at", required=True, min_items=1,
        hint="name where the gate applies, e.g. [beforeTraffic] or [beforeIncrease]")
    deadline: Duration | None = field(
        "deadline", minimum=1, doc="Waiting longer pauses the rollout for a human (default: 10m for "
        "webhook and job, 24h for approval; a window waits until it opens).")
    window: WindowGate | None = field("window")
    webhook: WebhookGate | None = field("webhook")
    approval: ApprovalGate | None = field("approval")
    job: JobGate | None = field("job")

    @property
    def kind(self) -> str:
        given = [k for k in KINDS if getattr(self, k) is not None]
        return given[0] if len(given) == 1 else ""

    @property
    def deadline_seconds(self) -> float | None:
        if self.deadline is not None:
            return self.deadline.seconds
        return {"webhook": 600.0, "job": 600.0, "approval": 86400.0}.get(self.kind)


KINDS = ("window", "webhook", "approval", "job")


# --- validation --------------------------------------------------------------------------


def gate_problems(gates: tuple[GateSpec, ...], base: str = "spec.gates", local: bool = False
                  ) -> Iterator[Problem]:
    """Rules the field bounds cannot say; each names its path and the fix. ``local``: the
    Rollout runs on the local mesh, where there is no cluster to run a Job in."""
    names = [g.name for g in gates]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield Problem(base, f"gate name {name!r} is used twice; names must be unique")
    for i, gate in enumerate(gates):
        path = f"{base}[{i}]"
        if not gate.kind:
            yield Problem(path, "give exactly one of window, webhook, approval, job")
            continue
        if len(set(gate.at)) != len(gate.at):
            yield Problem(f"{path}.at", "names a point twice; name each once")
        if gate.window is not None:
            yield from _window_problems(gate.window, f"{path}.window")
            if any(p in RECORDING_POINTS for p in gate.at):
                yield Problem(f"{path}.at", "a window holds traffic increases; use "
                              "beforeTraffic, beforeIncrease or beforePromotion")
        if gate.webhook is not None:
            yield from url_problems(gate.webhook.url, f"{path}.webhook.url")
            if gate.webhook.ca_bundle is not None and "BEGIN CERTIFICATE" not in gate.webhook.ca_bundle:
                yield Problem(f"{path}.webhook.caBundle", "is not PEM; paste the CA "
                              "certificates (-----BEGIN CERTIFICATE-----)")
        if gate.approval is not None:
            yield from _approval_problems(gate.approval, gate, f"{path}")
        if gate.job is not None and local:
            yield Problem(f"{path}.job", "a Job needs a cluster and spec.local runs on the "
                          "local mesh; use a webhook gate there")


def url_problems(url: str, path: str) -> Iterator[Problem]:
    """An http(s) URL, or the problem with it (webhook gates, notification sinks)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        yield Problem(path, f"{url[:80]!r} is not a URL ({exc}); write it like "
                      "https://risk.example.com/assess")
        return
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        yield Problem(path, f"{url[:80]!r} is not an http(s) URL; write it like "
                      "https://risk.example.com/assess")
    elif port == 0:
        yield Problem(path, "port 0 is out of range; use 1-65535")


def _approval_problems(approval: ApprovalGate, gate: GateSpec, path: str) -> Iterator[Problem]:
    if not (approval.users or approval.groups or approval.spiffe_ids):
        yield Problem(f"{path}.approval", "allows nobody; list users, groups or spiffeIds")
    elif not approval.groups and len(set(approval.users) | set(approval.spiffe_ids)) < approval.count:
        named = len(set(approval.users) | set(approval.spiffe_ids))
        yield Problem(f"{path}.approval.count", f"needs {approval.count} distinct approvers "
                      f"but only {named} are allowed; lower count or allow more")
    if any(p in RECORDING_POINTS for p in gate.at):
        yield Problem(f"{path}.at", "an approval holds the rollout; use beforeTraffic, "
                      "beforeIncrease or beforePromotion")


def zone(name: str) -> ZoneInfo | None:
    """The IANA time zone ``name``; None when there is none by that name."""
    if not name or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _window_problems(gate: WindowGate, path: str) -> Iterator[Problem]:
    if zone(gate.time_zone) is None:
        yield Problem(f"{path}.timeZone", f"{gate.time_zone[:64]!r} is not an IANA time zone; "
                      "use a name like Europe/Stockholm or UTC")
    for i, window in enumerate(gate.windows):
        where = f"{path}.windows[{i}]"
        if window.end == window.start:
            yield Problem(f"{where}.end", f"the window {window.start}-{window.end} never "
                          "opens; make end later than start")
        elif window.end < window.start:
            yield Problem(f"{where}.end", f"{window.end} is before start {window.start}; for "
                          "a window across midnight write two windows (to 23:59, from 00:00)")
        if len(set(window.days)) != len(window.days):
            yield Problem(f"{where}.days", "names a day twice; name each once")
    for i, freeze in enumerate(gate.freezes):
        where = f"{path}.freezes[{i}]"
        start, end = _date(freeze.start), _date(freeze.end)
        if start is None:
            yield Problem(f"{where}.start", f"{freeze.start!r} is not a date; use YYYY-MM-DD")
        if end is None:
            yield Problem(f"{where}.end", f"{freeze.end!r} is not a date; use YYYY-MM-DD")
        if start is not None and end is not None and end < start:
            yield Problem(f"{where}.end", f"{freeze.end} is before start {freeze.start}; "
                          "swap them")


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# --- windows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowState:
    """Open now, or closed with the next opening (None: none within LOOKAHEAD_DAYS)."""

    open: bool
    opens_at: datetime | None = None
    why: str = ""


def window_state(gate: WindowGate, now: datetime) -> WindowState:
    """Whether ``gate`` is open at ``now`` and, if not, when it next opens.

    E.g. Mon-Fri 09:00-16:00 Europe/Stockholm: at Friday 15:00 UTC (16:00 local) it is
    closed and opens Monday 08:00 UTC; at Tuesday 10:00 UTC (11:00 local) it is open. A
    freeze covering that Monday moves the opening to Tuesday 08:00 UTC."""
    tz = zone(gate.time_zone) or ZoneInfo("UTC")
    local = now.astimezone(tz)
    frozen = _freeze_on(gate, local.date())
    if frozen is None and _within(gate, local):
        return WindowState(True)
    why = f"frozen ({frozen})" if frozen is not None else "outside its windows"
    return WindowState(False, _next_opening(gate, local, tz), why)


def _freeze_on(gate: WindowGate, day: date) -> str | None:
    for freeze in gate.freezes:
        start, end = _date(freeze.start), _date(freeze.end)
        if start is not None and end is not None and start <= day <= end:
            return freeze.reason or f"{freeze.start} to {freeze.end}"
    return None


def _within(gate: WindowGate, local: datetime) -> bool:
    if not gate.windows:
        return True
    clock = local.strftime("%H:%M")
    day = WEEKDAYS[local.weekday()]
    return any((not w.days or day in w.days) and w.start <= clock < w.end for w in gate.windows)


def _next_opening(gate: WindowGate, local: datetime, tz: ZoneInfo) -> datetime | None:
    for offset in range(LOOKAHEAD_DAYS + 1):
        day = local.date() + timedelta(days=offset)
        if _freeze_on(gate, day) is not None:
            continue
        starts = sorted(w.start for w in gate.windows
                        if not w.days or WEEKDAYS[day.weekday()] in w.days)
        if not gate.windows:  # only freezes: open from the first day not frozen
            starts = ["00:00"]
        for start in starts:
            at = datetime.combine(day, time.fromisoformat(start), tz)
            if at > local:
                return at.astimezone(UTC)
    return None


def describe_opening(gate: WindowGate, opens_at: datetime | None) -> str:
    if opens_at is None:
        return f"does not open in the next {LOOKAHEAD_DAYS} days"
    tz = zone(gate.time_zone) or ZoneInfo("UTC")
    local = opens_at.astimezone(tz)
    return (f"opens {local.strftime('%a %Y-%m-%d %H:%M')} {gate.time_zone} "
            f"({opens_at.strftime('%Y-%m-%dT%H:%M:%SZ')})")


# --- verdicts ----------------------------------------------------------------------------


class GateVerdict(str, Enum):
    WAITING = "Waiting"
    PASSED = "Passed"
    FAILED = "Failed"


@dataclass(frozen=True)
class GateReport:
    """What the shell found for an outside gate (webhook, job, approval) on this pass."""

    verdict: GateVerdict
    message: str = ""
    by: tuple[str, ...] = ()  # identities behind the verdict (approvers)


@dataclass(frozen=True)
class GateRequest:
    """A gate the shell should judge before this pass's decision: ``key`` names its record."""

    key: str
    gate: GateSpec
    point: GatePoint
    step: int
    revision: str
    since: datetime


def gate_key(name: str, point: GatePoint, step: int) -> str:
    """The record of a gate at a point: ``risk@beforeIncrease#2`` (step 2)."""
    return f"{name}@{point.value}#{step}"


def gates_at(gates: tuple[GateSpec, ...], point: GatePoint) -> tuple[GateSpec, ...]:
    return tuple(g for g in gates if point in g.at)


def overdue(gate: GateSpec, since: datetime, now: datetime) -> bool:
    """Waited past its deadline (a window has none: it waits until it opens)."""
    limit = gate.deadline_seconds
    return gate.window is None and limit is not None and (now - since).total_seconds() > limit


def deadline_text(gate: GateSpec) -> str:
    limit = gate.deadline_seconds
    return format_duration(limit) if limit is not None else "none"


@dataclass(frozen=True)
class GateStatus:
    """A gate's record at one point of one revision; ``since`` never moves once set."""

    key: str = field("key", required=True, doc="name@point#step")
    name: str = field("name", required=True)
    point: GatePoint = field("point", required=True)
    since: datetime = field("since", required=True)
    step: int = field("step", default=0)
    revision: str = field("revision", default="")
    kind: str = field("kind", default="")
    verdict: GateVerdict = field("verdict", default=GateVerdict.WAITING)
    decided_at: datetime | None = field("decidedAt")
    until: datetime | None = field("until", doc="A closed window: when it next opens.")
    message: str = field("message", default="")
    by: tuple[str, ...] = field("by", default=(), doc="Identities behind the verdict.")


# --- webhooks ------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Meshctl-Signature"


def sign(body: bytes, key: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER`: ``sha256=`` and the hex HMAC-SHA256 of the
    exact body bytes; a receiver recomputes it with the shared key and compares in constant
    time (the body's ``time`` and ``id`` let it refuse a replay)."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def webhook_body(request: GateRequest, namespace: str, name: str, phase: str,
                 stable_revision: str, weights: tuple[int, int], now: datetime) -> bytes:
    """The rollout's context as the receiver gets it (compact JSON, keys sorted)."""
    context = {
        "id": f"{namespace}/{name}/{request.key}/{request.revision}",
        "rollout": {"namespace": namespace, "name": name},
        "gate": request.gate.name, "point": request.point.value, "step": request.step,
        "revision": request.revision, "stableRevision": stable_revision, "phase": phase,
        "weights": {"stable": weights[0], "canary": weights[1]},
        "waitingSince": request.since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "time": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


# --- approvals -----------------------------------------------------------------------------


def stamp(at: datetime) -> str:
    """A recorded action's time, to the millisecond (actions follow each other fast)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: as the API server reported it (SelfSubjectReview), or a
    client certificate's names (its first SAN URI, else its common name, is ``user``)."""

    user: str
    groups: tuple[str, ...] = ()
    via: str = "kubernetes"  # kubernetes | grpc | local


@dataclass(frozen=True)
class Approval:
    """One approver's approval of one revision, kept in an annotation per approver."""

    identity: Identity
    revision: str
    at: datetime
    comment: str = ""


def approval_annotation(approval: Approval) -> tuple[str, str]:
    """``approval.meshctl.io/<hash of the user>`` and its JSON: one key per approver, so two
    approvals by one person are one, and two people never overwrite each other."""
    who = approval.identity
    key = APPROVAL_PREFIX + hashlib.sha256(who.user.encode()).hexdigest()[:20]
    value = {"user": who.user, "groups": list(who.groups), "via": who.via,
             "revision": approval.revision, "comment": approval.comment,
             "at": stamp(approval.at)}
    return key, json.dumps(value, sort_keys=True)


def approvals_in(annotations: dict[str, str] | None) -> tuple[Approval, ...]:
    """The approvals recorded on a Rollout; a damaged one is left out."""
    out = []
    for key, text in sorted((annotations or {}).items()):
        if not key.startswith(APPROVAL_PREFIX):
            continue
        try:
            raw = parsed_object(text) or {}
            who = Identity(str(raw["user"]), tuple(str(g) for g in raw.get("groups", [])),
                           str(raw.get("via", "")))
            at = datetime.fromisoformat(str(raw["at"]).replace("Z", "+00:00"))
            out.append(Approval(who, str(raw["revision"]), at, str(raw.get("comment", ""))))
        except (ValueError, KeyError, TypeError):
            continue
    return tuple(out)


def may_approve(gate: ApprovalGate, who: Identity, starter: str | None) -> str:
    """Why ``who`` may not approve under ``gate`` ("" when they may)."""
    if gate.forbid_starter and starter is not None and who.user == starter:
        return f"{who.user} started this rollout; four eyes: someone else must approve"
    if who.user in gate.users or who.user in gate.spiffe_ids:
        return ""
    if set(who.groups) & set(gate.groups):
        return ""
    return f"{who.user} is not among the approvers this gate allows"


def judge_approval(gate: ApprovalGate, approvals: tuple[Approval, ...], revision: str,
                   starter: str | None) -> GateReport:
    """Passed with ``count`` distinct allowed approvers of ``revision``; waiting before.

    E.g. count 2, forbidStarter, started by ann: approvals by ann and bob leave it waiting
    (1/2: bob); one more by cem passes it (by bob, cem)."""
    counted = sorted({a.identity.user for a in approvals
                      if a.revision == revision and not may_approve(gate, a.identity, starter)})
    if len(counted) >= gate.count:
        return GateReport(GateVerdict.PASSED, f"approved by {', '.join(counted)}",
                          tuple(counted))
    so_far = f" ({', '.join(counted)})" if counted else ""
    return GateReport(GateVerdict.WAITING, f"{len(counted)}/{gate.count} approvals{so_far}; "
                      "meshctl rollout approve NAME", tuple(counted))


# --- jobs --------------------------------------------------------------------------------------

JOB_ARGS = ("$(ROLLOUT)", "$(NAMESPACE)", "$(REVISION)", "$(STEP)", "$(GATE)")


def job_name(rollout: str, request: GateRequest) -> str:
    """``<rollout>-<gate>-<hash>``, at most 63 characters; one Job per gate record and
    revision (the hash), so a pass that finds it created does not create another."""
    digest = hashlib.sha256(f"{request.key}/{request.revision}".encode()).hexdigest()[:8]
    return f"{rollout[:27].rstrip('-')}-{request.gate.name[:26].rstrip('-')}-{digest}"


def job_body(namespace: str, rollout: str, owner_uid: str, request: GateRequest
             ) -> dict[str, Any]:
    """The Job of a ``job`` gate: its template with ``$(ROLLOUT)``, ``$(NAMESPACE)``,
    ``$(REVISION)``, ``$(STEP)`` and ``$(GATE)`` replaced in every container's command and
    args, labelled as meshctl's and owned by the Rollout (deleted with it)."""
    assert request.gate.job is not None
    values = dict(zip(JOB_ARGS, (rollout, namespace, request.revision, str(request.step),
                                 request.gate.name), strict=True))
    spec = json.loads(json.dumps(request.gate.job.template))
    pod = (spec.get("template") or {}).get("spec") or {}
    for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
        for field_name in ("command", "args"):
            if isinstance(container.get(field_name), list):
                container[field_name] = [_replaced(str(a), values)
                                         for a in container[field_name]]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(rollout, request), "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "meshctl",
                                    "meshctl.io/rollout": rollout,
                                    "meshctl.io/gate": request.gate.name},
                         "ownerReferences": [{"apiVersion": "meshctl.io/v1alpha1",
                                              "kind": "Rollout", "name": rollout,
                                              "uid": owner_uid, "controller": True}]},
            "spec": spec}


def _replaced(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def job_verdict(job: dict[str, Any]) -> GateReport:
    """Passed when the Job's ``Complete`` condition is true, failed when ``Failed`` is."""
    name = (job.get("metadata") or {}).get("name", "")
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return GateReport(GateVerdict.PASSED, f"Job {name} completed")
        if condition.get("type") == "Failed":
            why = condition.get("message") or condition.get("reason") or ""
            return GateReport(GateVerdict.FAILED, f"Job {name} failed: {why}".rstrip(": "))
    active = (job.get("status") or {}).get("active") or 0
    return GateReport(GateVerdict.WAITING, f"Job {name} running ({active} active)")
