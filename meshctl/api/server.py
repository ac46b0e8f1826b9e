"""The controller's gRPC API (``meshctl.v1.Rollouts``): mutual TLS, per-method
authorization by the client certificate's identity, and a servicer that is a few lines per
method over :class:`meshctl.ops.rollouts.ClusterRollouts` (the same calls the CLI makes).

Identity: the certificate's subject common name and each subject alternative name (DNS,
URI such as ``spiffe://cluster.local/ns/ops/sa/oncall``, ...); a call is allowed when any of
them is listed for the method's role in :class:`Access`. Read-only identities may list, get
and watch and read the history, and approve (whether an approval counts is the Rollout's
approval gate's rule, with the certificate as the approver); operators may also start,
undo, promote, abort, pause, resume and retry (the same rules as ``meshctl rollout ...``
through ``--server``).

What a client without a certificate sees: the server requires one during the TLS handshake
(``require_client_auth=True``), so the handshake fails and the call ends with UNAVAILABLE
before any method runs; nothing is served without a certificate signed by the CA. A
certificate that carries no identity at all gets UNAUTHENTICATED; a known identity calling
a method its role lacks, or an unknown one, gets PERMISSION_DENIED.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc

from meshctl.api.gen.meshctl.v1 import rollouts_pb2 as pb
from meshctl.api.gen.meshctl.v1 import rollouts_pb2_grpc as pb_grpc
from meshctl.api.messages import history_message, to_message
from meshctl.domain.intents import Action
from meshctl.domain.release_gates import Identity
from meshctl.ops.failures import Failure, RolloutError
from meshctl.ops.rollouts import ClusterRollouts

log = logging.getLogger(__name__)
T = TypeVar("T")

CODES = {
    Failure.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Failure.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Failure.PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Failure.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Failure.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    Failure.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}


class Role(str, Enum):
    READ = "read"
    OPERATE = "operate"


METHOD_ROLES = {
    "ListRollouts": Role.READ, "GetRollout": Role.READ, "WatchRollout": Role.READ,
    "History": Role.READ,
    "Promote": Role.OPERATE, "Abort": Role.OPERATE, "Pause": Role.OPERATE,
    "Resume": Role.OPERATE, "Retry": Role.OPERATE, "Start": Role.OPERATE, "Undo": Role.OPERATE,
    # Any known identity may approve: whether it counts is the Rollout's approval gate's rule.
    "Approve": Role.READ,
}


@dataclass(frozen=True)
class Access:
    """Who may do what: identities (CN or SAN values) that may read, and that may operate
    (operators may read too)."""

    readers: frozenset[str] = frozenset()
    operators: frozenset[str] = frozenset()

    @classmethod
    def of(cls, readers: Iterable[str] = (), operators: Iterable[str] = ()) -> Access:
        return cls(frozenset(readers), frozenset(operators))

    def allows(self, identities: Iterable[str], method: str) -> bool:
        names = set(identities)
        if names & self.operators:
            return True
        return METHOD_ROLES[method] is Role.READ and bool(names & self.readers)


@dataclass(frozen=True)
class ServerTLS:
    """PEM bytes: the server's certificate chain and key, and the CA that signs clients."""

    cert: bytes = field(repr=False)
    key: bytes = field(repr=False)
    client_ca: bytes = field(repr=False)

    @classmethod
    def from_files(cls, cert: str | Path, key: str | Path, client_ca: str | Path) -> ServerTLS:
        return cls(Path(cert).read_bytes(), Path(key).read_bytes(), Path(client_ca).read_bytes())


def identities_of(context: grpc.ServicerContext) -> tuple[str, ...]:
    """The client certificate's common name and subject alternative names."""
    auth: dict[str, list[bytes]] = context.auth_context() or {}
    values = [*auth.get("x509_common_name", []), *auth.get("x509_subject_alternative_name", [])]
    names = (v.decode("utf-8", "replace") for v in values)
    return tuple(dict.fromkeys(n for n in names if n))  # an absent CN shows as b""


def approver_of(context: grpc.ServicerContext) -> Identity:
    """The client certificate as an approver: its first URI SAN (a SPIFFE ID), else its
    common name, else its first other SAN."""
    auth: dict[str, list[bytes]] = context.auth_context() or {}
    sans = [v.decode("utf-8", "replace") for v in auth.get("x509_subject_alternative_name", [])]
    uris = [n for n in sans if "://" in n]
    names = identities_of(context)
    common = [v.decode("utf-8", "replace") for v in auth.get("x509_common_name", []) if v]
    return Identity((uris or common or list(names) or [""])[0], (), "grpc")


class RolloutsServicer(pb_grpc.RolloutsServicer):
    def __init__(self, rollouts: ClusterRollouts, access: Access,
                 default_namespace: str = "default"):
        self.rollouts, self.access, self.default_namespace = rollouts, access, default_namespace

    # -- reads ----------------------------------------------------------------------------

    def ListRollouts(self, request: pb.ListRolloutsRequest,
                     context: grpc.ServicerContext) -> pb.ListRolloutsResponse:
        views = self._call(context, "ListRollouts",
                           lambda: self.rollouts.list(request.namespace or None))
        return pb.ListRolloutsResponse(rollouts=[to_message(v) for v in views])

    def GetRollout(self, request: pb.RolloutRef, context: grpc.ServicerContext) -> pb.Rollout:
        ns, name = self._ref(context, request)
        return to_message(self._call(context, "GetRollout", lambda: self.rollouts.get(ns, name)))

    def WatchRollout(self, request: pb.WatchRolloutRequest,
                     context: grpc.ServicerContext) -> Iterator[pb.Rollout]:
        ns, name = self._ref(context, request)
        views = self._call(context, "WatchRollout", lambda: self.rollouts.watch(
            ns, name, request.timeout_seconds or None, stop=lambda: not context.is_active()))
        try:
            for view in views:
                yield to_message(view)
        except RolloutError as exc:
            _abort(context, exc)

    # -- intents --------------------------------------------------------------------------

    def Promote(self, request: pb.PromoteRequest, context: grpc.ServicerContext) -> pb.Rollout:
        action = Action.PROMOTE_FULL if request.full else Action.PROMOTE
        return self._request(context, "Promote", request, action)

    def Abort(self, request: pb.RolloutRef, context: grpc.ServicerContext) -> pb.Rollout:
        return self._request(context, "Abort", request, Action.ABORT)

    def Pause(self, request: pb.RolloutRef, context: grpc.ServicerContext) -> pb.Rollout:
        return self._request(context, "Pause", request, Action.PAUSE)

    def Resume(self, request: pb.RolloutRef, context: grpc.ServicerContext) -> pb.Rollout:
        return self._request(context, "Resume", request, Action.RESUME)

    def Retry(self, request: pb.RolloutRef, context: grpc.ServicerContext) -> pb.Rollout:
        return self._request(context, "Retry", request, Action.RETRY)

    # -- the spec: start and undo, and the history they leave -----------------------------

    def Start(self, request: pb.StartRequest, context: grpc.ServicerContext) -> pb.Rollout:
        ns = request.namespace or self.default_namespace
        if request.WhichOneof("source") == "rollout_json":
            body = _document(context, request.rollout_json)
            view = self._call(context, "Start", lambda: self.rollouts.apply(
                ns, body, request.name or None))
        else:
            ns, name = self._ref(context, request)
            starter = approver_of(context)
            view = self._call(context, "Start",
                              lambda: self.rollouts.start(ns, name, request.image, starter))
        log.info("Start %s/%s by %s", view.namespace, view.name,
                 ", ".join(identities_of(context)))
        return to_message(view)

    def Undo(self, request: pb.RolloutRef, context: grpc.ServicerContext) -> pb.Rollout:
        ns, name = self._ref(context, request)
        view = self._call(context, "Undo", lambda: self.rollouts.undo(ns, name))
        log.info("Undo %s/%s by %s", ns, name, ", ".join(identities_of(context)))
        return to_message(view)

    def Approve(self, request: pb.ApproveRequest, context: grpc.ServicerContext) -> pb.Rollout:
        ns, name = self._ref(context, request)
        who = approver_of(context)
        view = self._call(context, "Approve", lambda: self.rollouts.approve(
            ns, name, request.comment, who))
        log.info("Approve %s/%s by %s", ns, name, who.user)
        return to_message(view)

    def History(self, request: pb.RolloutRef,
                context: grpc.ServicerContext) -> pb.HistoryResponse:
        ns, name = self._ref(context, request)
        return history_message(self._call(context, "History",
                                          lambda: self.rollouts.history(ns, name)))

    # -- the common part ------------------------------------------------------------------

    def _request(self, context: grpc.ServicerContext, method: str, request: Any,
                 action: Action) -> pb.Rollout:
        ns, name = self._ref(context, request)
        who = approver_of(context)
        view = self._call(context, method, lambda: self.rollouts.request(ns, name, action, who))
        log.info("%s %s/%s by %s", method, ns, name, ", ".join(identities_of(context)))
        return to_message(view)

    def _ref(self, context: grpc.ServicerContext, request: Any) -> tuple[str, str]:
        if not request.name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name is required")
        return request.namespace or self.default_namespace, request.name

    def _call(self, context: grpc.ServicerContext, method: str, call: Callable[[], T]) -> T:
        """Authorize ``method`` for the caller, then ``call``; errors become status codes."""
        names = identities_of(context)
        if not names:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "a client certificate with a subject name is required")
        if not self.access.allows(names, method):
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"{', '.join(names)} may not call {method}")
        try:
            return call()
        except RolloutError as exc:
            _abort(context, exc)


def _document(context: grpc.ServicerContext, text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError as exc:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"rollout_json: not JSON: {exc}")
    if not isinstance(body, dict):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "rollout_json: not a JSON object")
    out: dict[str, Any] = body
    return out


def _abort(context: grpc.ServicerContext, exc: RolloutError) -> NoReturn:
    context.abort(CODES[exc.failure], exc.message)
    raise AssertionError("context.abort raises")


class RolloutServer:
    """A started gRPC server on ``address`` (``host:0`` picks a free port: see ``port``)."""

    def __init__(self, rollouts: ClusterRollouts, address: str, tls: ServerTLS, access: Access,
                 default_namespace: str = "default", max_workers: int = 16) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                             thread_name_prefix="meshctl-grpc"))
        pb_grpc.add_RolloutsServicer_to_server(  # type: ignore[no-untyped-call]
            RolloutsServicer(rollouts, access, default_namespace), self.server)
        credentials = grpc.ssl_server_credentials([(tls.key, tls.cert)],
                                                  root_certificates=tls.client_ca,
                                                  require_client_auth=True)
        host = address.rpartition(":")[0]
        self.port = int(self.server.add_secure_port(address, credentials))
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        self.address = f"{host}:{self.port}"
        self.server.start()

    def stop(self, grace: float = 5.0) -> None:
        self.server.stop(grace).wait()
