"""Keep a child of the local mesh running: when it dies, start it again, with back-off.

The local mesh supervises its Envoy (:class:`~meshctl.localmesh.mesh.LocalMesh`): a data
plane that crashed, or was killed, comes back on the same ports, and the xDS server gives
the new process the current state. While it is down the rollout's steps wait for the data
plane (nothing is observed), so nothing moves on a split that cannot be seen.

Back-off (:func:`backoff`): the first restart after ``first`` seconds, each further one
within ``healthy_after`` seconds of the last twice as late, at most ``cap``; a process that
stayed up ``healthy_after`` seconds starts the count again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from meshctl.localmesh.procs import LocalMeshError

log = logging.getLogger(__name__)


def backoff(failures: int, first: float = 0.2, cap: float = 5.0) -> float:
    """Seconds to wait before restart number ``failures + 1`` of a quick succession.

    E.g. 0 -> 0.2, 1 -> 0.4, 2 -> 0.8; 10 -> 5.0 (the cap)."""
    return min(cap, first * 2.0 ** min(failures, 32))


class Supervisor:
    """Watches ``alive()`` every ``poll`` seconds; when it turns false, waits the back-off
    and calls ``restart()``. ``on_notice`` gets one line per death and restart."""

    def __init__(self, name: str, alive: Callable[[], bool], restart: Callable[[], None], *,
                 on_notice: Callable[[str], None] | None = None, poll: float = 0.1,
                 first: float = 0.2, cap: float = 5.0, healthy_after: float = 30.0) -> None:
        self.name = name
        self._alive, self._restart = alive, restart
        self._on_notice = on_notice
        self._poll, self._first, self._cap = poll, first, cap
        self._healthy_after = healthy_after
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0

    def start(self) -> Supervisor:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"meshctl-supervise-{self.name}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (before the child is stopped on purpose). Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)

    def _notice(self, text: str) -> None:
        log.warning("%s", text)
        if self._on_notice is not None:
            self._on_notice(text)

    def _run(self) -> None:
        failures, up_since = 0, time.monotonic()
        while not self._stop.wait(self._poll):
            if self._alive():
                continue
            if time.monotonic() - up_since >= self._healthy_after:
                failures = 0
            delay = backoff(failures, self._first, self._cap)
            self._notice(f"{self.name} died; starting it again in {delay:g} s")
            if self._stop.wait(delay):
                return
            failures += 1
            try:
                self._restart()
            except (LocalMeshError, OSError) as exc:
                self._notice(f"{self.name} did not start again: {exc}")
                continue
            finally:
                up_since = time.monotonic()
            self.restarts += 1
            self._notice(f"{self.name} started again (restart {self.restarts})")
