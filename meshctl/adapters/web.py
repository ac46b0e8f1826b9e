"""Metric providers read over plain HTTP (the standard library's ``urllib``): the ``web``
kind (GET a URL, one number at a JSONPath) and the ``envoy`` kind (one stat from an Envoy's
admin ``/stats?format=json``). Both are :class:`~meshctl.domain.ports.MetricProvider`\\ s and
translate as the Prometheus provider does, never raising for data problems:

- no answer, a refused connection, a timeout, 429 or 5xx -> retried until the timeout, then
  ``Unavailable`` (a kind of no data: the source says nothing about the version);
- another HTTP error, a body that is not JSON, a value that is not a number -> ``Error``;
- nothing at the path, or no such stat -> ``NoData``.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from meshctl.adapters.errors import AdapterError, TransientError, from_http_status, translate
from meshctl.adapters.retries import before_deadline
from meshctl.domain import jsonpath
from meshctl.domain.measurements import Error, Measurement, NoData, Unavailable, Value
from meshctl.domain.providers import split_envoy_query

_MIN_ATTEMPT_SECONDS = 0.2


def get_json(url: str, deadline: float) -> Any:
    """GET ``url`` and decode its JSON body, retrying transient failures until ``deadline``
    (a ``time.monotonic()`` instant); raises the adapters' error tree."""
    def once() -> Any:
        timeout = max(_MIN_ATTEMPT_SECONDS, deadline - time.monotonic())
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                body = answer.read()
        except urllib.error.HTTPError as exc:
            raise from_http_status(exc.code, None, f"HTTP {exc.code} from {url}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise translate(reason if isinstance(reason, OSError) else exc) from exc
        try:
            return json.loads(body)
        except ValueError as exc:
            raise AdapterError(f"{url} did not answer JSON: {exc}") from exc

    return before_deadline(once, deadline)


def _number(value: Any, what: str) -> Measurement:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return Error(f"{what} is not a number: {value!r:.100}")
    try:
        number = float(value)
    except ValueError:
        return Error(f"{what} is not a number: {value!r:.100}")
    return NoData(f"{what} is NaN") if math.isnan(number) else Value(number)


class WebProvider:
    """The ``web`` kind: ``measure(json_path, timeout)`` GETs :attr:`url`."""

    def __init__(self, url: str) -> None:
        self.url = url

    def measure(self, query: str, timeout_seconds: float) -> Measurement:
        try:
            steps = jsonpath.parse(query)
            document = get_json(self.url, time.monotonic() + timeout_seconds)
        except ValueError as exc:
            return Error(str(exc))
        except TransientError as exc:
            return Unavailable(f"{self.url} did not answer within {timeout_seconds:g}s: "
                               f"{exc.message}")
        except AdapterError as exc:
            return Error(f"{self.url}: {exc.message}")
        try:
            return _number(jsonpath.find(steps, document), f"{query} in {self.url}")
        except jsonpath.Missing as exc:
            return NoData(f"nothing at {query} in {self.url}: {exc}")


class EnvoyStatsProvider:
    """The ``envoy`` kind: ``measure(stat, timeout)`` reads the Envoy admin at
    :attr:`address` (``host:port``)."""

    def __init__(self, address: str) -> None:
        self.address = address

    def measure(self, query: str, timeout_seconds: float) -> Measurement:
        stat, quantile = split_envoy_query(query)
        url = (f"http://{self.address}/stats?format=json&filter="
               f"{urllib.parse.quote('^' + re.escape(stat) + '$')}")
        try:
            document = get_json(url, time.monotonic() + timeout_seconds)
        except TransientError as exc:
            return Unavailable(f"Envoy admin {self.address} did not answer within "
                               f"{timeout_seconds:g}s: {exc.message}")
        except AdapterError as exc:
            return Error(f"Envoy admin {self.address}: {exc.message}")
        return _stat(document, stat, quantile)


def _stat(document: Any, stat: str, quantile: float | None) -> Measurement:
    """A counter or gauge (``{"name", "value"}``), or a histogram's cumulative quantile
    (``{"histograms": {"supported_quantiles": [...], "computed_quantiles": [{"name",
    "values": [{"cumulative": ...}]}]}}``) in Envoy's ``/stats?format=json``."""
    stats = document.get("stats", []) if isinstance(document, dict) else []
    for item in stats:
        if quantile is None and item.get("name") == stat:
            return _number(item.get("value"), f"Envoy stat {stat}")
        histograms = item.get("histograms")
        if quantile is not None and isinstance(histograms, dict):
            supported = [float(q) for q in histograms.get("supported_quantiles", [])]
            if quantile not in supported:
                return Error(f"Envoy computes quantiles {supported}, not {quantile:g}")
            for h in histograms.get("computed_quantiles", []):
                if h.get("name") == stat:
                    value = h["values"][supported.index(quantile)].get("cumulative")
                    if value is None:
                        return NoData(f"Envoy histogram {stat} has no samples yet")
                    return _number(value, f"Envoy histogram {stat} P{quantile:g}")
    return NoData(f"Envoy has no stat {stat}")
