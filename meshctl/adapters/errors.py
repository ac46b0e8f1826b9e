"""The one error tree of the adapters, and the translation into it.

Every adapter translates the failures of the library it wraps (a ``kubernetes``
``ApiException``, a refused connection, a timeout) into this tree at its boundary, with
``raise ... from exc`` so the original stays in the traceback. Callers catch these classes
and nothing library-specific; retry policies (tenacity) key on ``TransientError`` only.

::

    MeshctlError
    └── AdapterError                 an adapter could not do what it was asked
        ├── TransientError           the same request may succeed later: retry it
        │   ├── Conflict             409 Conflict: the object changed since it was read
        │   └── Unavailable          429, 5xx, connection refused/reset, timeouts
        └── PermanentError           the same request will fail the same way: do not retry
            ├── NotFound             404, or 410 Gone
            ├── AlreadyExists        409 AlreadyExists (a create of an existing object)
            ├── Forbidden            401 Unauthorized, 403 Forbidden
            └── Invalid              400 BadRequest, 422 Invalid (schema, CEL rules)

HTTP statuses map by reason first (the Kubernetes ``Status`` body says ``Conflict`` or
``AlreadyExists`` for the same 409), then by code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


class MeshctlError(Exception):
    """The root of every error meshctl raises on purpose."""


@dataclass(frozen=True)
class Cause:
    """One reason the server gave, e.g. the field path and message of a schema violation."""

    field: str
    message: str
    reason: str = ""


class AdapterError(MeshctlError):
    """An adapter could not do what it was asked.

    ``status`` is the HTTP status when there was a response (0 otherwise), ``reason`` the
    Kubernetes ``Status.reason`` (``"Invalid"``, ``"Conflict"``...), ``causes`` the
    per-field details the server listed.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        reason: str = "",
        causes: tuple[Cause, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.causes = causes


class TransientError(AdapterError):
    """The same request may succeed if made again later."""


class PermanentError(AdapterError):
    """The same request will fail the same way; change it instead of retrying."""


class Conflict(TransientError):
    """409: the object's resourceVersion moved since it was read. Re-read and retry."""


class Unavailable(TransientError):
    """The server is overloaded (429), failing (5xx) or unreachable, or the call timed out."""


class NotFound(PermanentError):
    """404 (or 410 Gone): the object or the resource type does not exist."""


class AlreadyExists(PermanentError):
    """409 AlreadyExists: a create named an object that exists."""


class Forbidden(PermanentError):
    """401/403: the identity is unknown or lacks the permission (RBAC)."""


class Invalid(PermanentError):
    """400/422: the request or the object is malformed or breaks the schema."""


def _status_body(body: object) -> dict[str, Any]:
    """The Kubernetes ``Status`` object of an error response, or {} if there is none."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _causes(status: dict[str, Any]) -> tuple[Cause, ...]:
    details = status.get("details")
    raw = (details.get("causes") or []) if isinstance(details, dict) else []
    return tuple(
        Cause(
            field=str(c.get("field", "")),
            message=str(c.get("message", "")),
            reason=str(c.get("reason", "")),
        )
        for c in raw
        if isinstance(c, dict)
    )


def from_http_status(code: int, body: object = None, fallback: str = "") -> AdapterError:
    """Translate one HTTP error response (code and raw body) into the tree.

    >>> type(from_http_status(409, '{"reason": "AlreadyExists", "message": "exists"}'))
    <class 'meshctl.adapters.errors.AlreadyExists'>
    >>> type(from_http_status(503)).__name__
    'Unavailable'
    """
    status = _status_body(body)
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or fallback or f"HTTP {code}")
    cls: type[AdapterError]
    if code == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
    elif code in (404, 410):
        cls = NotFound
    elif code in (401, 403):
        cls = Forbidden
    elif code in (400, 422):
        cls = Invalid
    elif code == 429 or code >= 500:
        cls = Unavailable
    else:
        cls = PermanentError
    return cls(message, status=code, reason=reason, causes=_causes(status))


def translate(exc: BaseException) -> AdapterError:
    """Translate a library exception into the tree. Raise the result ``from exc``.

    An ``ApiException`` (anything with an integer ``status`` and a ``body``) maps by its HTTP
    status; connection failures and timeouts (``OSError``, urllib3's errors) are
    ``Unavailable``; anything else is a ``PermanentError`` carrying the original text.
    """
    if isinstance(exc, AdapterError):
        return exc
    code = getattr(exc, "status", None)
    if isinstance(code, int) and code > 0 and hasattr(exc, "body"):
        fallback = str(getattr(exc, "reason", "") or "")
        return from_http_status(code, getattr(exc, "body", None), fallback)
    if isinstance(exc, OSError) or _is_urllib3_transport_error(exc):
        return Unavailable(describe(exc))
    return PermanentError(describe(exc))


def describe(exc: BaseException) -> str:
    """The library's own words for a failure, as a user reads them: never a Python class
    name (``[Errno 111] Connection refused``, ``timed out``)."""
    text = str(exc).strip()
    if text:
        return text
    if isinstance(exc, TimeoutError):
        return "timed out"
    return "the connection failed without a message"


def _is_urllib3_transport_error(exc: BaseException) -> bool:
    # urllib3's HTTPError is the base of MaxRetryError, ProtocolError, TimeoutError...;
    # matched by module so this file needs no urllib3 import.
    return any(
        klass.__module__.startswith("urllib3.") and klass.__name__ == "HTTPError"
        for klass in type(exc).__mro__
    )


@contextmanager
def translated() -> Iterator[None]:
    """Run a block of library calls; re-raise whatever they raise as the tree's error.

    >>> with translated():
    ...     raise ConnectionRefusedError("no server")
    Traceback (most recent call last):
    ...
    meshctl.adapters.errors.Unavailable: ConnectionRefusedError: no server
    """
    try:
        yield
    except MeshctlError:
        raise
    except Exception as exc:
        raise translate(exc) from exc
