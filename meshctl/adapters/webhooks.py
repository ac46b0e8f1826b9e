"""Outgoing HTTP POSTs of JSON (release-gate webhooks), with the standard library's client.

One call is :func:`post_json`: a body, optional headers (the caller signs), a CA bundle for
https (PEM text; without one the system's trust store), a timeout per try and a number of
tries under the one retry policy (:func:`meshctl.adapters.retries.with_retries`).

What comes back is translated into the adapters' error tree: a 2xx answer is returned; 5xx,
408, 429, a refused or reset connection, a TLS handshake that failed midway and a timeout
are :class:`~meshctl.adapters.errors.Unavailable` (retried); any other answer is a
:class:`~meshctl.adapters.errors.PermanentError` carrying its status and the first 200
characters of its body (not retried: the receiver has judged). A certificate that does not
verify is permanent too: retrying will not make it trusted.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from meshctl.adapters.errors import AdapterError, PermanentError, Unavailable
from meshctl.adapters.retries import with_retries

RETRIED_STATUSES = frozenset({408, 429})
MAX_BACKOFF = 2.0  # seconds between tries, at most


@dataclass(frozen=True)
class Answer:
    status: int
    text: str  # the body's first 200 characters


def post_json(url: str, body: bytes, *, headers: dict[str, str] | None = None,
              ca_bundle: str | None = None, timeout: float = 10.0, attempts: int = 3) -> Answer:
    """POST ``body`` (JSON) to ``url``; the 2xx answer, or an :class:`AdapterError`."""
    parts = urlsplit(url)
    context = _tls(ca_bundle) if parts.scheme == "https" else None
    given = headers or {}
    defaults = {"Content-Type": "application/json", "User-Agent": "meshctl"}
    named = {k.lower() for k in given}
    all_headers = {**{k: v for k, v in defaults.items() if k.lower() not in named}, **given}

    def attempt(_: int) -> Answer:
        return _post_once(url, body, all_headers, context, timeout)

    return with_retries(attempt, attempts=max(1, attempts), max_backoff=MAX_BACKOFF)


def _tls(ca_bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle:
        try:
            context.load_verify_locations(cadata=ca_bundle)
        except (ssl.SSLError, ValueError) as exc:
            raise PermanentError(f"caBundle holds no usable CA certificate: {exc}") from exc
    return context


def _post_once(url: str, body: bytes, headers: dict[str, str], context: ssl.SSLContext | None,
               timeout: float) -> Answer:
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection = (
        http.client.HTTPSConnection(host, parts.port, timeout=timeout, context=context)
        if context is not None else http.client.HTTPConnection(host, parts.port, timeout=timeout))
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read(4096).decode("utf-8", "replace")[:200]
    except ssl.SSLCertVerificationError as exc:
        raise PermanentError(f"{host}: certificate not trusted: {exc.verify_message}") from exc
    except TimeoutError as exc:
        raise Unavailable(f"{host}: no answer within {timeout:g}s") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise Unavailable(f"{host}: {type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()
    return _answer(response.status, text)


def _answer(status: int, text: str) -> Answer:
    if 200 <= status < 300:
        return Answer(status, text)
    brief = f"HTTP {status}" + (f": {text.strip()}" if text.strip() else "")
    if status >= 500 or status in RETRIED_STATUSES:
        raise Unavailable(brief, status=status)
    error: AdapterError = PermanentError(brief, status=status)
    raise error
