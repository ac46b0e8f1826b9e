"""The controller's heap and CPython's cyclic garbage collector.

The watch caches hold every Rollout, Deployment, VirtualService and DestinationRule as
decoded JSON: at 1,000 Rollouts, well over a million container objects that live for
minutes. A full (generation 2) collection walks every one of them while it holds the GIL,
so no worker and no watch runs meanwhile: at 1,000 Rollouts, before this keeper, each took
300-700 ms, 43 of them in the four minutes of ``bench.controller_scale`` (timed with
``gc.callbacks``; that section now reports them, with the keeper). Decoded JSON has no
reference cycles: the walk finds no garbage there, and reference counting frees a replaced
object at once.

So, every ``period`` seconds, the young generations are collected (only what was made since
their last collection) and everything still alive is frozen (:func:`gc.freeze`): later
collections skip it, and it is still freed by reference counting when the cache drops it.
A reference cycle alive when frozen that became garbage afterwards would stay; every
``sweep_every`` periods everything is unfrozen and collected once (one full pause) so that
such cycles are reclaimed too.
"""

from __future__ import annotations

import gc
import threading

PERIOD_SECONDS = 10.0
SWEEP_EVERY = 60  # periods: a full collection every 10 minutes


class HeapKeeper:
    """Freezes the long-lived heap from its own thread once ``ready`` is set (caches synced)."""

    def __init__(self, ready: threading.Event, stop: threading.Event,
                 period: float = PERIOD_SECONDS, sweep_every: int = SWEEP_EVERY) -> None:
        self.ready, self.stop = ready, stop
        self.period, self.sweep_every = period, sweep_every
        self.rounds = 0

    def run(self) -> None:
        while not self.stop.is_set() and not self.ready.wait(0.5):
            pass
        while not self.stop.is_set():
            self.settle()
            self.stop.wait(self.period)

    def settle(self) -> None:
        if self.rounds % self.sweep_every == 0:
            gc.unfreeze()
            gc.collect()
        else:
            gc.collect(1)
        gc.freeze()
        self.rounds += 1
