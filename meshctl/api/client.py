"""The CLI's way to the controller's gRPC API (``meshctl --server HOST:PORT --tls-cert
--tls-key --tls-ca``): :class:`RemoteRollouts` answers like the cluster does (the
:class:`meshctl.ops.rollouts.Rollouts` protocol), so the CLI renders the same views, and
turns gRPC status codes back into the same :class:`~meshctl.ops.failures.Failure` kinds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from meshctl.api.gen.meshctl.v1 import rollouts_pb2 as pb
from meshctl.api.gen.meshctl.v1 import rollouts_pb2_grpc as pb_grpc
from meshctl.api.messages import from_message, history_from_message
from meshctl.domain.intents import Action
from meshctl.ops.failures import Failure, RolloutError
from meshctl.ops.history import History
from meshctl.ops.views import RolloutView

FAILURES = {
    grpc.StatusCode.NOT_FOUND: Failure.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT: Failure.INVALID,
    grpc.StatusCode.FAILED_PRECONDITION: Failure.PRECONDITION,
    grpc.StatusCode.UNAUTHENTICATED: Failure.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: Failure.FORBIDDEN,
}


def _read(option: str, path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise RolloutError(Failure.INVALID, f"{option}: cannot read {path}: "
                           f"{exc.strerror or exc}") from exc


class RemoteRollouts:
    """Rollouts through the controller's gRPC API, over mutual TLS."""

    def __init__(self, target: str, cert: str | None, key: str | None, ca: str | None,
                 timeout: float = 10.0) -> None:
        if (cert is None) != (key is None):
            raise RolloutError(Failure.INVALID, "--tls-cert and --tls-key go together")
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read("--tls-ca", ca), private_key=_read("--tls-key", key),
            certificate_chain=_read("--tls-cert", cert))
        self.target, self.timeout = target, timeout
        self.channel = grpc.secure_channel(target, credentials)
        self.stub = pb_grpc.RolloutsStub(self.channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.channel.close()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            failure = FAILURES.get(code, Failure.UNAVAILABLE)
            hint = ""
            if code is grpc.StatusCode.UNAVAILABLE and "handshake" in details.lower():
                hint = " (TLS handshake failed: check --tls-cert, --tls-key and --tls-ca)"
            raise RolloutError(failure, f"{self.target}: {code.name}: {details}{hint}") from exc

    def _unary(self, method: Callable[..., Any], request: Any) -> Any:
        with self._translated():
            return method(request, timeout=self.timeout)

    def get(self, namespace: str, name: str) -> RolloutView:
        return from_message(self._unary(self.stub.GetRollout,
                                        pb.RolloutRef(namespace=namespace, name=name)))

    def list(self, namespace: str | None) -> list[RolloutView]:
        answer = self._unary(self.stub.ListRollouts,
                             pb.ListRolloutsRequest(namespace=namespace or ""))
        return [from_message(m) for m in answer.rollouts]

    def watch(self, namespace: str, name: str, timeout: float | None = None,
              stop: Callable[[], bool] = lambda: False) -> Iterator[RolloutView]:
        request = pb.WatchRolloutRequest(namespace=namespace, name=name,
                                         timeout_seconds=timeout or 0.0)
        # the deadline is a backstop: the server ends the stream at timeout_seconds
        call = self.stub.WatchRollout(request, timeout=None if timeout is None
                                      else timeout + self.timeout)
        with self._translated():
            try:
                for message in call:
                    yield from_message(message)
                    if stop():
                        return
            finally:
                call.cancel()

    def request(self, namespace: str, name: str, action: Action) -> RolloutView:
        if action in (Action.PROMOTE, Action.PROMOTE_FULL):
            answer = self._unary(self.stub.Promote, pb.PromoteRequest(
                namespace=namespace, name=name, full=action is Action.PROMOTE_FULL))
        else:
            method = {Action.ABORT: self.stub.Abort, Action.PAUSE: self.stub.Pause,
                      Action.RESUME: self.stub.Resume, Action.RETRY: self.stub.Retry}[action]
            answer = self._unary(method, pb.RolloutRef(namespace=namespace, name=name))
        return from_message(answer)

    def start(self, namespace: str, name: str, image: str) -> RolloutView:
        return from_message(self._unary(self.stub.Start, pb.StartRequest(
            namespace=namespace, name=name, image=image)))

    def apply_files(self, files: Sequence[str], namespace: str, name: str | None
                    ) -> RolloutView:
        """``start -f`` through the API: the one Rollout of ``files`` (AnalysisTemplates are
        cluster objects: apply those with kubectl)."""
        from meshctl.adapters.files import FileProblem, iter_documents

        docs = list(iter_documents(list(files)))
        problems = [str(d) for d in docs if isinstance(d, FileProblem)]
        bodies = [d.body for d in docs if not isinstance(d, FileProblem)]
        if not problems and (len(bodies) != 1 or not isinstance(bodies[0], dict)
                             or bodies[0].get("kind") != "Rollout"):
            problems.append(f"through --server, -f takes exactly one Rollout document "
                            f"({', '.join(files)} has {len(bodies)}); apply AnalysisTemplates "
                            "to the cluster")
        if problems:
            raise RolloutError(Failure.INVALID, "; ".join(problems))
        return from_message(self._unary(self.stub.Start, pb.StartRequest(
            namespace=namespace, name=name or "", rollout_json=json.dumps(bodies[0]))))

    def approve(self, namespace: str, name: str, comment: str = "") -> RolloutView:
        """Approve as this client's certificate (the server reads the identity from it)."""
        return from_message(self._unary(self.stub.Approve, pb.ApproveRequest(
            namespace=namespace, name=name, comment=comment)))

    def undo(self, namespace: str, name: str) -> RolloutView:
        return from_message(self._unary(self.stub.Undo,
                                        pb.RolloutRef(namespace=namespace, name=name)))

    def history(self, namespace: str, name: str) -> History:
        return history_from_message(self._unary(
            self.stub.History, pb.RolloutRef(namespace=namespace, name=name)))
