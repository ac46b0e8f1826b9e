"""The CLI's way to the API server: a Kubernetes client bounded for a person waiting
(:func:`connect`), and :class:`Objects`, what the operations on rollouts need of one."""

from __future__ import annotations

import builtins
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from meshctl.adapters.errors import PermanentError
from meshctl.adapters.kube import Kube, Mutation, Object, Updated
from meshctl.adapters.rest import RestKube
from meshctl.ops.failures import translated

REQUEST_SECONDS = 10.0  # one answer of the API server, for the CLI (the controller: 30 s)


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
                 label_selector: str | None = None, page_size: int = 500, *,
                 namespace: str | None = None) -> tuple[builtins.list[Object], str]: ...

    def watch(self, group: str, version: str, plural: str, resource_version: str,
              timeout_seconds: int = 60, *, namespace: str | None = None,
              field_selector: str | None = None) -> Iterator[tuple[str, Object]]: ...

    def merge_patch(self, group: str, version: str, namespace: str, plural: str, name: str,
                    patch: Object) -> Object: ...

    def apply(self, group: str, version: str, namespace: str, plural: str, body: Object, *,
              force: bool = False) -> Object: ...

    def update_with_retry(self, group: str, version: str, namespace: str, plural: str,
                          name: str, mutate: Mutation) -> Updated: ...

    def who_am_i(self) -> Object:
        """The caller's ``userInfo`` as the API server authenticated it."""

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


@contextmanager
def cli_kube(kubeconfig: str | None, context: str | None) -> Iterator[Kube]:
    """The full client as the CLI uses it (one attempt per request, each bounded), closed
    after; every adapter error inside, connecting included, becomes a
    :class:`~meshctl.ops.failures.RolloutError` of its kind."""
    with translated(), Kube.connect(kubeconfig, context, single_attempt=True, max_attempts=2,
                                    timeout_seconds=request_seconds()) as kube:
        yield kube
