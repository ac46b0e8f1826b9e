"""A work queue for reconcile keys.

- a key is queued at most once (adding it again only moves its time earlier);
- a key being processed is never handed to a second worker; if it is added meanwhile, it
  is queued again when the first worker is done;
- ``add_after`` schedules a key (``requeue_after``); ``backoff`` schedules it after an
  error, doubling per consecutive error (0.5 s, 1 s, ... up to 60 s); ``forget`` resets;
- ``add(key, urgent=True)`` puts the key ahead of every key that is merely due: what a
  person or a pipeline just asked (a new template, an abort) and what a waiting step waits
  for (its canary ready) is not served after the controller's own follow-ups and timers,
  however long that line is. Urgent keys are served in the order they came.

``on_wait(urgent, seconds)``, when given, hears how long each key handed out waited for a
worker after it was due (the controller's ``meshctl_queue_wait_seconds``): the part of a
reaction the passes of other Rollouts cost.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Hashable

Key = Hashable
URGENT, DUE = 0, 1  # ranks: a lower rank is served first


class WorkQueue:
    def __init__(self, base_backoff: float = 0.5, max_backoff: float = 60.0,
                 on_wait: Callable[[bool, float], None] | None = None) -> None:
        self._on_wait = on_wait
        self._cond = threading.Condition()
        self._due: dict[Key, tuple[int, float]] = {}  # key -> (rank, time), as in the heap
        self._heap: list[tuple[int, float, int, Key]] = []
        self._seq = 0
        self._active: set[Key] = set()
        self._dirty: dict[Key, tuple[int, float]] = {}  # added while a worker had it
        self._failures: dict[Key, int] = {}
        self._base, self._max = base_backoff, max_backoff
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)

    def add(self, key: Key, urgent: bool = False) -> None:
        self._add(key, (URGENT if urgent else DUE, time.monotonic()))

    def add_after(self, key: Key, delay: float) -> None:
        self._add(key, (DUE, time.monotonic() + max(0.0, delay)))

    def _add(self, key: Key, entry: tuple[int, float]) -> None:
        with self._cond:
            if key in self._active:
                self._dirty[key] = min(entry, self._dirty.get(key, entry))
                return
            if key in self._due and self._due[key] <= entry:
                return
            self._due[key] = entry
            self._seq += 1
            heapq.heappush(self._heap, (*entry, self._seq, key))
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

    def get(self, timeout: float | None = None) -> Key | None:
        """The next due key (marked active), or None on timeout or close."""
        handed = self._next(timeout)
        if handed is None:
            return None
        key, rank, waited = handed
        if self._on_wait is not None:
            self._on_wait(rank == URGENT, waited)
        return key

    def _next(self, timeout: float | None) -> tuple[Key, int, float] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while self._heap and self._due.get(self._heap[0][3]) != self._heap[0][:2]:
                    heapq.heappop(self._heap)  # superseded entry
                # an urgent entry is due at once, so the top of the heap is the next due key
                if self._heap and self._heap[0][1] <= now:
                    rank, at, _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._active.add(key)
                    return key, rank, now - at
                wait = self._heap[0][1] - now if self._heap else None
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
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
