"""A work queue for reconcile keys.

- a key is queued at most once (adding it again only moves its time earlier);
- a key being processed is never handed to a second worker; if it is added meanwhile, it
  is queued again when the first worker is done;
- ``add_after`` schedules a key (``requeue_after``); ``backoff`` schedules it after an
  error, doubling per consecutive error (0.5 s, 1 s, ... up to 60 s); ``forget`` resets;
- ``add(key, Rank.URGENT)`` puts the key ahead of keys that are merely due: what a person
  or a pipeline just asked (a new template, a promotion) and what a waiting step waits for
  (its canary ready) is not served after the controller's own follow-ups and timers.
  ``Rank.ABORT`` goes ahead of those too: an abort is never served after new canaries.
  Keys of one rank are served in the order they came (or fell due).
- A rank is a head start, not a wall (:data:`LEAD`): an urgent key goes before a timer that
  fell due less than a second before it, an abort before one that fell due less than a
  minute before it. So a stream of urgent keys the workers cannot keep up with delays an
  analysis measurement by about a second, and never starves it (a failing canary's
  measurement is what rolls it back).

- ``get(urgent_only=True)`` hands out only ranked keys (an abort, then urgent keys): the
  controller keeps one such worker besides the others, so what someone asked never waits
  for a pass of another Rollout that is waiting on a slow API server.

``on_wait(urgent, seconds)``, when given, hears how long each key handed out waited for a
worker after it was due (the controller's ``meshctl_queue_wait_seconds``; ``urgent``: any
rank above due): the part of a reaction the passes of other Rollouts cost.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Hashable
from enum import IntEnum

Key = Hashable


class Rank(IntEnum):
    ABORT = 0
    URGENT = 1
    DUE = 2


LEAD = {Rank.ABORT: 60.0, Rank.URGENT: 1.0, Rank.DUE: 0.0}  # a rank's head start, seconds


class WorkQueue:
    def __init__(self, base_backoff: float = 0.5, max_backoff: float = 60.0,
                 on_wait: Callable[[bool, float], None] | None = None) -> None:
        self._on_wait = on_wait
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # the workers that take any key wait here
        self._ranked_only = threading.Condition(lock)  # the ranked-only worker waits here
        # key -> (place, rank): its place in line is the time it is due less its rank's lead
        self._due: dict[Key, tuple[float, Rank]] = {}
        self._heap: list[tuple[float, Rank, int, Key]] = []  # (place, rank, seq, key)
        self._ranked: list[tuple[float, Rank, int, Key]] = []  # its entries ranked above due
        self._seq = 0
        self._active: set[Key] = set()
        self._dirty: dict[Key, tuple[float, Rank]] = {}  # added while a worker had it
        self._failures: dict[Key, int] = {}
        self._base, self._max = base_backoff, max_backoff
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)

    def add(self, key: Key, rank: Rank = Rank.DUE) -> None:
        self._add(key, (time.monotonic() - LEAD[rank], rank))

    def add_after(self, key: Key, delay: float) -> None:
        self._add(key, (time.monotonic() + max(0.0, delay), Rank.DUE))

    def _add(self, key: Key, entry: tuple[float, Rank]) -> None:
        with self._cond:
            if key in self._active:
                self._dirty[key] = min(entry, self._dirty.get(key, entry))
                return
            if key in self._due and self._due[key] <= entry:
                return
            self._due[key] = entry
            self._seq += 1
            heapq.heappush(self._heap, (*entry, self._seq, key))
            if entry[1] is not Rank.DUE:
                heapq.heappush(self._ranked, (*entry, self._seq, key))
                self._ranked_only.notify()
            self._cond.notify()

    def backoff(self, key: Key) -> float:
        with self._cond:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
        delay = float(min(self._max, self._base * 2 ** (failures - 1)))
        self.add_after(key, delay)
        return delay

    def forget(self, key: Key) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def get(self, timeout: float | None = None, urgent_only: bool = False) -> Key | None:
        """The next due key (marked active), or None on timeout or close; ``urgent_only``:
        the next ranked key (an abort or an urgent key)."""
        handed = (self._next(timeout, self._ranked, self._ranked_only) if urgent_only
                  else self._next(timeout, self._heap, self._cond))
        if handed is None:
            return None
        key, rank, waited = handed
        if self._on_wait is not None:
            self._on_wait(rank is not Rank.DUE, waited)
        return key

    def _next(self, timeout: float | None, heap: list[tuple[float, Rank, int, Key]],
              cond: threading.Condition) -> tuple[Key, Rank, float] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while heap and self._due.get(heap[0][3]) != heap[0][:2]:
                    heapq.heappop(heap)  # superseded, or handed out from the other heap
                # ranked entries are due at once and placed before now, so the top of the
                # heap is the next due key, or nothing is due yet
                if heap and heap[0][0] + LEAD[heap[0][1]] <= now:
                    place, rank, _, key = heapq.heappop(heap)
                    del self._due[key]
                    self._active.add(key)
                    return key, rank, now - (place + LEAD[rank])
                wait = heap[0][0] - now if heap else None
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                cond.wait(wait)
            return None

    def done(self, key: Key) -> None:
        with self._cond:
            self._active.discard(key)
            entry = self._dirty.pop(key, None)
        if entry is not None:
            self._add(key, entry)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._ranked_only.notify_all()
