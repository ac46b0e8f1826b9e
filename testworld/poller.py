"""A background poller for tests: ``poll()`` runs every ``interval`` seconds in a thread
while the object's ``with`` block lasts, and once more is not attempted after it ends.

Recorders (what a Rollout went through), status watchers and stand-in controllers of the
test world share this one loop instead of each starting and stopping a thread of its own.
"""

from __future__ import annotations

import threading
from typing import Self


class Poller:
    interval = 0.2

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=type(self).__name__)

    def poll(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)
