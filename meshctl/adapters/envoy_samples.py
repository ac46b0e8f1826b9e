"""The judge's samples read straight from an Envoy: a recorder of cumulative readings.

:class:`EnvoySampleRecorder` reads the stats the judge names from an Envoy's admin endpoint
(``/stats?format=json&histogram_buckets=detailed``, filtered to those stats: counters as
they are, histograms as their cumulative buckets) every ``period`` seconds on a background
thread, and keeps the readings of the last ``keep`` seconds only (memory is bounded by the
lookback, not by how long it runs). ``samples(...)`` is a
:class:`~meshctl.domain.ports.SampleSource`: each sub-window's sample is cut from those
readings by :mod:`meshctl.domain.envoy_samples` (differences, counter resets, no request is
no sample).

The readings live in this process only: a process started again (a local run killed and
resumed) has none from before it started, so the judge has no data until enough sub-windows
are recorded again; never a pass.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from meshctl.adapters.errors import AdapterError
from meshctl.adapters.web import get_json
from meshctl.domain import envoy_samples
from meshctl.domain.envoy_samples import Reading
from meshctl.domain.measurements import Error, NoData, Sampled, Series, Unavailable


class EnvoySampleRecorder:
    """Readings of ``stats`` at the Envoy admin ``address`` (``host:port``), every
    ``period`` seconds, kept ``keep`` seconds; ``window``: each sample's sub-window."""

    def __init__(self, address: str, stats: Iterable[str], window: float, period: float,
                 keep: float, clock: Callable[[], float] = time.time) -> None:
        self.address = address
        self.window = window
        self.period = period
        self.keep = keep
        self.gap = envoy_samples.max_gap(period)
        self._clock = clock
        self._stats = set(stats)
        self._readings: deque[Reading] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.since: float | None = None  # when recording began
        self.last_failure = ""  # why the last read failed ('' when it did not)

    def watch(self, stats: Iterable[str]) -> None:
        with self._lock:
            self._stats.update(stats)

    def start(self) -> EnvoySampleRecorder:
        """Take the first reading now (so that it comes before anything the caller starts
        next, such as an analysis run), then read every ``period`` in the background."""
        if self._thread is None:
            self.since = self._clock()
            self.record_once()
            self._thread = threading.Thread(target=self._run, name=f"envoy-samples {self.address}",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        due = time.monotonic()
        while True:  # a steady cadence: a slow answer does not push the next reading back
            due = max(due + self.period, time.monotonic())
            if self._stop.wait(due - time.monotonic()):
                return
            self.record_once()

    def record_once(self) -> Reading | None:
        """Read the watched stats once and keep the reading (None: Envoy did not answer)."""
        with self._lock:
            stats = sorted(self._stats)
        if not stats:
            return None
        pattern = "^(" + "|".join(re.escape(s) for s in stats) + ")$"
        url = (f"http://{self.address}/stats?format=json&histogram_buckets=detailed&filter="
               f"{urllib.parse.quote(pattern)}")
        try:
            document = get_json(url, time.monotonic() + max(self.period, 1.0))
        except AdapterError as exc:
            self.last_failure = exc.message
            return None
        reading = _reading(document, self._clock())
        self.last_failure = ""
        with self._lock:
            self._readings.append(reading)
            while self._readings and self._readings[0].at < reading.at - self.keep:
                self._readings.popleft()
        return reading

    def readings(self) -> tuple[Reading, ...]:
        with self._lock:
            return tuple(self._readings)

    def samples(self, query: str, start: datetime, end: datetime, step_seconds: float,
                timeout_seconds: float) -> Sampled:
        """Each sub-window's sample of ``query`` (an :mod:`meshctl.domain.envoy_samples`
        expression) ending every ``step_seconds`` from ``start`` to ``end``."""
        try:
            expression = envoy_samples.parse(query)
        except ValueError as exc:
            return Error(str(exc))
        self.watch(expression.stats)
        readings = self.readings()
        if not readings:
            if self.last_failure:
                return Unavailable(f"Envoy admin {self.address} did not answer: "
                                   f"{self.last_failure}")
            return NoData(f"no Envoy readings yet ({self._recording()})")
        misused = envoy_samples.misuse(readings[-1], expression)
        if misused:
            return Error(misused)
        values = envoy_samples.samples(readings, expression, start.timestamp(),
                                       end.timestamp(), step_seconds, self.window, self.gap)
        if not any(v == v for v in values):  # all NaN: say why
            if self.last_failure:
                return Unavailable(f"Envoy admin {self.address} did not answer: "
                                   f"{self.last_failure}")
            return NoData(f"no sample of {expression} from Envoy {self.address} "
                          f"({self._recording()})")
        return Series(values)

    def _recording(self) -> str:
        if self.since is None:
            return "not recording"
        began = datetime.fromtimestamp(self.since, UTC).strftime("%H:%M:%S")
        return f"recording since {began} UTC, in this process only"


def _reading(document: Any, at: float) -> Reading:
    """Envoy's ``/stats?format=json&histogram_buckets=detailed`` as a reading: ``{"name",
    "value"}`` items are counters (or gauges), ``{"histograms": {"details": [{"name",
    "totals": [{"lower_bound", "width", "count"}]}]}}`` histograms since Envoy started."""
    counters: dict[str, float] = {}
    histograms: dict[str, tuple[float, float]] = {}
    for item in document.get("stats", []) if isinstance(document, dict) else []:
        if "name" in item and isinstance(item.get("value"), int | float):
            counters[item["name"]] = float(item["value"])
        for detail in (item.get("histograms") or {}).get("details", []):
            buckets = ((float(b["lower_bound"]), float(b["width"]), float(b["count"]))
                       for b in detail.get("totals", []))
            histograms[detail["name"]] = envoy_samples.histogram_totals(buckets)
    return Reading(at, counters, histograms)
