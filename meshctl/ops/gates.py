"""Judging the release gates the engine waits on outside the domain (webhook, approval,
job): the shell's half of :mod:`meshctl.domain.release_gates`.

Each pass, :func:`meshctl.domain.engine.gates_due` names the waiting gates; :class:`GateJudge`
asks each once and reports a verdict: a webhook's 2xx passes, another answer below 500
(except 408 and 429) fails, and no answer after its retries, an untrusted certificate or an
unreadable signing key leaves it waiting (asked again next pass; past its deadline the
rollout pauses for a human). A signing key is read for the call and never logged or kept.
An approval gate counts the approvals recorded on the Rollout (:mod:`meshctl.ops.approvals`).
A job gate creates its Job once (owned by the Rollout, so deleted with it) and passes when
the Job completes, fails when it fails.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from meshctl.adapters.errors import AdapterError, PermanentError
from meshctl.adapters.webhooks import post_json
from meshctl.domain.keys import STARTED_BY
from meshctl.domain.release_gates import (
    SIGNATURE_HEADER,
    GateReport,
    GateRequest,
    GateVerdict,
    approvals_in,
    job_body,
    job_name,
    job_verdict,
    judge_approval,
    sign,
    webhook_body,
)
from meshctl.domain.spec import Rollout
from meshctl.domain.status import RolloutStatus
from meshctl.ops.connect import Objects


class Secrets(Protocol):
    """Where a gate's signing key comes from: a Secret's key in the Rollout's namespace."""

    def read(self, namespace: str, name: str, key: str) -> bytes: ...


class SecretUnreadable(Exception):
    """The key could not be read; the message names the Secret and key, never a value."""


class KubeSecrets:
    """Secrets from the API server (the controller needs ``get`` on the named Secrets)."""

    def __init__(self, kube: Objects) -> None:
        self.kube = kube

    def read(self, namespace: str, name: str, key: str) -> bytes:
        try:
            secret = self.kube.get("", "v1", namespace, "secrets", name)
        except AdapterError as exc:
            raise SecretUnreadable(f"cannot read Secret {namespace}/{name}: "
                                   f"{type(exc).__name__}") from exc
        data = (secret.get("data") or {}).get(key)
        if not isinstance(data, str):
            raise SecretUnreadable(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data)


class EnvSecrets:
    """For a local run: Secret ``name``'s ``key`` is the environment variable
    ``MESHCTL_SECRET_<NAME>_<KEY>`` (upper case, other characters as ``_``)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    @staticmethod
    def variable(name: str, key: str) -> str:
        return "MESHCTL_SECRET_" + re.sub(r"[^A-Z0-9]", "_", f"{name}_{key}".upper())

    def read(self, namespace: str, name: str, key: str) -> bytes:
        value = self.environ.get(self.variable(name, key))
        if value is None:
            raise SecretUnreadable(f"no {self.variable(name, key)} in the environment "
                                   f"(Secret {name}, key {key})")
        return value.encode()


class Jobs(Protocol):
    """Where a ``job`` gate's Jobs live (batch/v1 in the Rollout's namespace)."""

    def create(self, group: str, version: str, namespace: str, plural: str,
               body: dict[str, Any]) -> dict[str, Any]: ...

    def get_or_none(self, group: str, version: str, namespace: str, plural: str, name: str
                    ) -> dict[str, Any] | None: ...


class GateJudge:
    """Asks each outside gate the engine waits on for its verdict. ``jobs`` and
    ``owner_uid`` (the Rollout's uid, which owns the Jobs): where ``job`` gates run; without
    them (a local run) a job gate waits, saying it needs a cluster."""

    def __init__(self, secrets: Secrets | None = None, jobs: Jobs | None = None,
                 owner_uid: str = "") -> None:
        self.secrets, self.jobs, self.owner_uid = secrets, jobs, owner_uid

    def judge(self, rollout: Rollout, status: RolloutStatus, requests: list[GateRequest],
              now: datetime) -> dict[str, GateReport]:
        out: dict[str, GateReport] = {}
        for request in requests:
            if request.gate.webhook is not None:
                out[request.key] = self._webhook(rollout, status, request, now)
            elif request.gate.job is not None:
                out[request.key] = self._job(rollout, request)
            elif request.gate.approval is not None:
                annotations = rollout.metadata.annotations or {}
                out[request.key] = judge_approval(request.gate.approval,
                                                  approvals_in(annotations), request.revision,
                                                  annotations.get(STARTED_BY))
        return out

    def _webhook(self, rollout: Rollout, status: RolloutStatus, request: GateRequest,
                 now: datetime) -> GateReport:
        hook = request.gate.webhook
        assert hook is not None
        weights = (status.weights.stable, status.weights.canary)
        body = webhook_body(request, rollout.namespace, rollout.name, status.phase.value,
                            status.stable_revision or "", weights, now)
        headers = {}
        if hook.signing_secret is not None:
            ref = hook.signing_secret
            try:
                key = self._secrets().read(rollout.namespace, ref.name, ref.key)
            except SecretUnreadable as exc:
                return GateReport(GateVerdict.WAITING, f"cannot sign the request: {exc}")
            headers[SIGNATURE_HEADER] = sign(body, key)
        try:
            answer = post_json(hook.url, body, headers=headers, ca_bundle=hook.ca_bundle,
                               timeout=hook.timeout.seconds, attempts=hook.retries + 1)
        except PermanentError as exc:
            if exc.status:
                return GateReport(GateVerdict.FAILED, f"{hook.url} answered {exc.message}")
            return GateReport(GateVerdict.WAITING, f"{hook.url}: {exc.message}")
        except AdapterError as exc:
            return GateReport(GateVerdict.WAITING, f"{hook.url}: no verdict after "
                              f"{hook.retries + 1} tries: {exc.message}")
        return GateReport(GateVerdict.PASSED, f"{hook.url} answered HTTP {answer.status}"
                          + (f": {answer.text.strip()}" if answer.text.strip() else ""))

    def _job(self, rollout: Rollout, request: GateRequest) -> GateReport:
        """Create the gate's Job once (its name is the record's), then read its verdict."""
        if self.jobs is None:
            return GateReport(GateVerdict.WAITING, "a job gate needs a cluster")
        name = job_name(rollout.name, request)
        try:
            job = self.jobs.get_or_none("batch", "v1", rollout.namespace, "jobs", name)
            if job is None:
                job = self.jobs.create("batch", "v1", rollout.namespace, "jobs", job_body(
                    rollout.namespace, rollout.name, self.owner_uid, request))
        except AdapterError as exc:
            return GateReport(GateVerdict.WAITING, f"Job {name}: {exc.message}")
        return job_verdict(job)

    def _secrets(self) -> Secrets:
        if self.secrets is None:
            raise SecretUnreadable("no Secrets source in this run")
        return self.secrets
