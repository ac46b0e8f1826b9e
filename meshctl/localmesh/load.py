"""A load generator for the local mesh: a steady request rate through Envoy, counted.

:class:`LoadGenerator` sends requests from ``concurrency`` worker threads (one keep-alive
connection each) at ``rate`` requests per second (``None``: as fast as the workers go),
until ``count`` requests were sent, ``duration`` seconds passed, or :meth:`~LoadGenerator.stop`
is called. It counts responses per version (the app's ``x-version`` header; ``"-"`` when the
response did not come from an app, e.g. Envoy's own 503) and per status, plus transport
failures by exception type. :func:`run_load` is the blocking one-liner.

:func:`binomial_interval` gives the range of counts a correct split produces: the tests and
benchmarks use it to judge whether Envoy delivers the configured weights. Its default,
:data:`SPLIT_CONFIDENCE`, lets a correct split fall outside once in a million draws: a suite
with dozens of such checks must not fail on chance, and a wrong weight (20 % for 30 %) is
still far outside at 2,000 requests.

Standard library only (``http.client``, ``threading``).
"""

from __future__ import annotations

import http.client
import math
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

NO_VERSION = "-"


@dataclass(frozen=True)
class LoadStats:
    """What came back: counts by version, by status, and transport failures by kind."""

    sent: int = 0
    by_version: Mapping[str, int] = field(default_factory=dict)
    by_status: Mapping[int, int] = field(default_factory=dict)
    failures: Mapping[str, int] = field(default_factory=dict)
    elapsed_seconds: float = 0.0

    @property
    def answered(self) -> int:
        return sum(self.by_status.values())

    def share(self, version: str) -> float:
        """The fraction of answered requests that ``version`` served (0.0 if none answered)."""
        return self.by_version.get(version, 0) / self.answered if self.answered else 0.0

    def errors(self) -> int:
        """Responses with a 5xx status plus transport failures."""
        return sum(n for s, n in self.by_status.items() if s >= 500) + sum(self.failures.values())


class LoadGenerator:
    """Sends GET ``url`` requests in background threads; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        rate: float | None = 50.0,
        concurrency: int = 4,
        count: int | None = None,
        duration: float | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"load generator needs an http:// URL, got {url!r}")
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._host = parsed.hostname
        self._port = parsed.port or 80
        self._path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self._rate = rate
        self._concurrency = max(1, concurrency)
        self._count = count
        self._duration = duration
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._tickets = 0
        self._epoch = 0.0  # when sending started: the schedule's origin
        self._counted_since = 0.0  # when the current counts started
        self._active = 0
        self._finished: float | None = None
        self._by_version: Counter[str] = Counter()
        self._by_status: Counter[int] = Counter()
        self._failures: Counter[str] = Counter()

    def start(self) -> LoadGenerator:
        self._epoch = self._counted_since = time.monotonic()
        self._active = self._concurrency
        self._threads = [
            threading.Thread(target=self._work, name=f"meshctl-load-{i}", daemon=True)
            for i in range(self._concurrency)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadStats:
        """Stop sending (requests in flight finish) and return the counts."""
        self._stop.set()
        return self.wait()

    def wait(self, timeout: float | None = None) -> LoadStats:
        """Wait until the count or duration is reached (or :meth:`stop`); return the counts."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.stats()

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> LoadStats:
        """Return the counts so far and start counting from zero (keeps sending)."""
        with self._lock:
            stats = self._stats_locked()
            self._by_version.clear()
            self._by_status.clear()
            self._failures.clear()
            self._counted_since = time.monotonic()
            return stats

    def stats(self) -> LoadStats:
        with self._lock:
            return self._stats_locked()

    def _stats_locked(self) -> LoadStats:
        end = self._finished if self._finished is not None else time.monotonic()
        return LoadStats(
            sent=sum(self._by_status.values()) + sum(self._failures.values()),
            by_version=dict(self._by_version),
            by_status=dict(self._by_status),
            failures=dict(self._failures),
            elapsed_seconds=max(0.0, end - self._counted_since),
        )

    def _next_send_time(self) -> float | None:
        """Claim the next request: when to send it, or None when done."""
        with self._lock:
            if self._stop.is_set() or (self._count is not None and self._tickets >= self._count):
                return None
            ticket = self._tickets
            self._tickets += 1
        at = self._epoch if self._rate is None else self._epoch + ticket / self._rate
        if self._duration is not None and (max(at, time.monotonic()) - self._epoch >= self._duration):
            return None
        return at

    def _work(self) -> None:
        connection: http.client.HTTPConnection | None = None
        try:
            while True:
                at = self._next_send_time()
                if at is None:
                    return
                delay = at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                if connection is None:
                    connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
                if not self._send(connection):
                    connection.close()
                    connection = None
        finally:
            if connection is not None:
                connection.close()
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._finished = time.monotonic()

    def _send(self, connection: http.client.HTTPConnection) -> bool:
        """One request; True if the connection can be reused."""
        try:
            connection.request("GET", self._path, headers=self._headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            with self._lock:
                self._failures[type(exc).__name__] += 1
            return False
        version = response.getheader("x-version") or NO_VERSION
        with self._lock:
            self._by_version[version] += 1
            self._by_status[response.status] += 1
        return not response.will_close


def run_load(
    url: str,
    count: int,
    *,
    concurrency: int = 8,
    rate: float | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> LoadStats:
    """Send ``count`` requests (as fast as ``concurrency`` allows by default) and count them."""
    generator = LoadGenerator(url, rate=rate, concurrency=concurrency, count=count, headers=headers).start()
    stats = generator.wait(timeout)
    generator.stop()
    return stats


SPLIT_CONFIDENCE = 1.0 - 1e-6


def binomial_interval(
    n: int, p: float, confidence: float = SPLIT_CONFIDENCE
) -> tuple[int, int]:
    """The equal-tailed range [lo, hi] of successes in ``n`` trials of probability ``p``
    that holds with at least ``confidence`` (exact binomial, no normal approximation).

    lo is the smallest k with P(X <= k) > (1 - confidence)/2 and hi the smallest k with
    P(X <= k) >= 1 - (1 - confidence)/2. For example 2,000 requests at 10 % canary give
    (166, 235) at 99 % and (138, 269) at the default; at 30 %, (501, 702) at the default.
    """
    if n < 0 or not 0.0 <= p <= 1.0 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need n >= 0, 0 <= p <= 1, 0 < confidence < 1; got {n}, {p}, {confidence}")
    if p in (0.0, 1.0):
        k = round(n * p)
        return k, k
    tail = (1.0 - confidence) / 2.0
    log_p, log_q = math.log(p), math.log1p(-p)
    cdf = 0.0
    lo: int | None = None
    for k in range(n + 1):
        log_pmf = (
            math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * log_p + (n - k) * log_q
        )  # fmt: skip
        cdf += math.exp(log_pmf)
        if lo is None and cdf > tail:
            lo = k
        if cdf >= 1.0 - tail:
            return (k if lo is None else lo), k
    return (n if lo is None else lo), n
