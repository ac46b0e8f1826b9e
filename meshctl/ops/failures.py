"""How an operation on rollouts fails: one :class:`Failure` kind per cause, carried by a
:class:`RolloutError`. The CLI turns the kind into an exit code and the gRPC server into a
status code, one table each, so both front-ends fail the same way for the same cause.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum

from meshctl.adapters.errors import AdapterError, Forbidden, Invalid, MeshctlError, NotFound
from meshctl.domain.problems import InvalidSpec


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
