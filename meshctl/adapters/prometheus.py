"""Prometheus as a :class:`~meshctl.domain.ports.MetricProvider`; the one home of
``prometheus-api-client``.

:meth:`PrometheusProvider.measure` runs one instant query and translates the answer into a
measurement, never raising for data problems:

- an empty result, or NaN (``0/0`` when nothing happened in the window) -> ``NoData``;
- a scalar, or a vector with exactly one series -> ``Value``;
- a vector with more series -> ``Error("query returned N series; aggregate it")``;
- a query Prometheus rejects (400/422) -> ``Error`` with Prometheus's message, at once;
- transport failures and 5xx/429 -> retried (tenacity, exponential back-off) until
  ``timeout_seconds`` is spent, then ``Unavailable`` (a kind of ``NoData``) naming the last
  failure: Prometheus down, or slower than the timeout, says nothing about the canary. It
  counts toward ``inconclusiveLimit`` (the rollout pauses, AnalysisUnavailable; it never
  promotes on it, and the pause lifts itself once Prometheus answers again), not toward
  ``consecutiveErrorLimit`` (a monitoring outage does not roll a good version back).

:meth:`PrometheusProvider.check_query` asks Prometheus whether it accepts a query (spec
validation: "a PromQL query that Prometheus rejects" is an invalid spec).

A Prometheus that gave no answer at all (no connection, or none before the timeout) is not
asked again for ``down_hold`` seconds (:class:`~meshctl.adapters.retries.Silence`):
measurements and checks then say so at once, and the pause the first such measurement
caused is the same.
"""

from __future__ import annotations

import ast
import json
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from meshctl.adapters.errors import (
    AdapterError,
    Invalid,
    TransientError,
    from_http_status,
    translate,
)
from meshctl.adapters.retries import Silence, before_deadline
from meshctl.domain.measurements import (
    Error,
    Measurement,
    NoData,
    QueryCheck,
    Sampled,
    Series,
    Unavailable,
    Value,
)

_STATUS = re.compile(r"^HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)
_ERRNO = re.compile(r"\[Errno -?\d+\][^'\")]*")
_MIN_ATTEMPT_SECONDS = 0.2


class PrometheusProvider:
    """Instant queries against the Prometheus at ``address`` (``http://host:port``)."""

    def __init__(self, address: str, *, headers: dict[str, str] | None = None,
                 down_hold: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.address = address.rstrip("/")
        self._silence = Silence(f"Prometheus {self.address}", down_hold, clock)
        # Retries are ours (tenacity, bounded by the measurement's timeout): the client's own
        # urllib3 retries would sleep past it.
        self._client = PrometheusConnect(
            url=self.address, headers=dict(headers or {}), retry=Retry(total=0, raise_on_status=False)
        )

    def measure(self, query: str, timeout_seconds: float) -> Measurement:
        held = self._held()
        if held:
            return Unavailable(held)
        deadline = time.monotonic() + timeout_seconds
        try:
            result = self._with_retries(query, deadline)
        except TransientError as exc:
            self._note(exc)
            return Unavailable(f"Prometheus {self.address} did not answer within "
                          f"{timeout_seconds:g}s: {exc.message}")
        except AdapterError as exc:
            return Error(f"Prometheus {self.address}: {exc.message}")
        return _measurement(result)

    def samples(self, query: str, start: datetime, end: datetime, step_seconds: float,
                timeout_seconds: float) -> Sampled:
        """A range query: the one series' values from ``start`` to ``end`` every
        ``step_seconds`` (no series: no samples; several: an error, as for an instant
        query)."""
        held = self._held()
        if held:
            return Unavailable(held)
        deadline = time.monotonic() + timeout_seconds
        try:
            result = before_deadline(
                lambda: self._range_once(query, start, end, step_seconds, deadline), deadline)
        except TransientError as exc:
            self._note(exc)
            return Unavailable(f"Prometheus {self.address} did not answer within "
                               f"{timeout_seconds:g}s: {exc.message}")
        except AdapterError as exc:
            return Error(f"Prometheus {self.address}: {exc.message}")
        return _series(result)

    def check_query(self, query: str, timeout_seconds: float = 5.0) -> QueryCheck:
        """Ask Prometheus to parse and run ``query`` once; it says whether it accepts it."""
        held = self._held()
        if held:
            return QueryCheck(False, held, reachable=False)
        try:
            self._with_retries(query, time.monotonic() + timeout_seconds)
        except TransientError as exc:
            self._note(exc)
            return QueryCheck(False, exc.message, reachable=False)
        except AdapterError as exc:
            return QueryCheck(False, exc.message)
        return QueryCheck(True)

    def range(self, query: str, start: float, end: float, step_seconds: float,
              timeout_seconds: float = 5.0) -> list[tuple[float, float | None]]:
        """A range query's one series as (unix seconds, value) pairs, NaN as None; no
        series, or more than one: []. Raises an AdapterError when Prometheus cannot answer
        (the chart is drawn without these points then)."""
        deadline = time.monotonic() + timeout_seconds
        result = before_deadline(
            lambda: self._range_once(query, _utc(start), _utc(end), step_seconds, deadline),
            deadline)
        if not isinstance(result, list) or len(result) != 1:
            return []
        return [(float(t), _float_or_none(v)) for t, v in result[0].get("values", [])]

    def close(self) -> None:
        self._client.close()

    def _held(self) -> str:
        return self._silence.reason()

    def _note(self, exc: TransientError) -> None:
        if not exc.status:  # no answer at all (an HTTP status, even 503, is an answer)
            self._silence.heard_nothing(exc.message)

    def _with_retries(self, query: str, deadline: float) -> Any:
        return before_deadline(lambda: self._query_once(query, deadline), deadline)

    def _query_once(self, query: str, deadline: float) -> Any:
        timeout = max(_MIN_ATTEMPT_SECONDS, deadline - time.monotonic())
        try:
            return self._client.custom_query(
                query,
                params={"timeout": f"{timeout:.3f}"},  # Prometheus stops evaluating then
                timeout=timeout,  # type: ignore[arg-type]  # requests takes float seconds
            )
        except PrometheusApiClientException as exc:
            raise _http_error(str(exc)) from exc
        except Exception as exc:  # requests' errors are OSErrors: translate() sorts them
            error = translate(exc)
            raise type(error)(_brief(str(exc)) or error.message) from exc


    def _range_once(self, query: str, start: datetime, end: datetime, step: float,
                    deadline: float) -> Any:
        timeout = max(_MIN_ATTEMPT_SECONDS, deadline - time.monotonic())
        try:
            # start and end to the millisecond (the client's own would round to seconds)
            return self._client.custom_query_range(
                query, start_time=start, end_time=end, step=f"{step:g}",
                params={"timeout": f"{timeout:.3f}", "start": f"{start.timestamp():.3f}",
                        "end": f"{end.timestamp():.3f}"},
                timeout=timeout,  # type: ignore[arg-type]
            )
        except PrometheusApiClientException as exc:
            raise _http_error(str(exc)) from exc
        except Exception as exc:
            error = translate(exc)
            raise type(error)(_brief(str(exc)) or error.message) from exc


def _series(result: Any) -> Sampled:
    """Translate the ``data.result`` of a range query (a matrix)."""
    if not isinstance(result, list):
        return Error(f"unexpected Prometheus result: {result!r:.200}")
    if not result:
        return Series(())
    if len(result) > 1:
        return Error(f"query returned {len(result)} series; aggregate it")
    try:
        return Series(tuple(float(v) for _, v in result[0].get("values", [])))
    except (TypeError, ValueError):
        return Error(f"unexpected Prometheus samples: {result[0]!r:.200}")


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _float_or_none(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def _brief(text: str) -> str:
    """The useful end of a requests/urllib3 transport error ("[Errno 111] Connection
    refused" rather than three nested reprs)."""
    errno = _ERRNO.search(text)
    return errno.group(0) if errno else text[:300]


def _http_error(text: str) -> AdapterError:
    """Translate the client's "HTTP Status Code 400 (b'{...}')" into the error tree,
    keeping Prometheus's own ``error`` message."""
    match = _STATUS.match(text)
    if match is None:
        return Invalid(text)
    code, body = int(match.group(1)), match.group(2)
    message = body
    try:
        raw = ast.literal_eval(body)
        decoded = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        parsed = json.loads(decoded)
        message = f"{parsed.get('errorType', 'error')}: {parsed.get('error', decoded)}"
    except (ValueError, SyntaxError, AttributeError):
        pass
    return from_http_status(code, None, f"HTTP {code}: {message}")


def _measurement(result: Any) -> Measurement:
    """Translate the ``data.result`` of an instant query (vector or scalar)."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return _number(result[1])  # a scalar: [timestamp, "value"]
    if not isinstance(result, list):
        return Error(f"unexpected Prometheus result: {result!r:.200}")
    if not result:
        return NoData("query returned no series")
    if len(result) > 1:
        return Error(f"query returned {len(result)} series; aggregate it")
    sample = result[0].get("value")
    if not isinstance(sample, list) or len(sample) != 2:
        return Error(f"unexpected Prometheus sample: {result[0]!r:.200}")
    return _number(sample[1])


def _number(text: Any) -> Measurement:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return Error(f"Prometheus returned a non-number: {text!r:.100}")
    if math.isnan(value):
        return NoData("query returned NaN (nothing happened in the window)")
    return Value(value)
