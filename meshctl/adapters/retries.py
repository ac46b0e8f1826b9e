"""The adapters' one retry policy, and the only place meshctl uses ``tenacity``.

What is retried is a :class:`~meshctl.adapters.errors.TransientError` (409 Conflict, 429,
5xx, a refused or reset connection, a timeout); a ``PermanentError`` (and anything else)
is raised at once. Back-off is exponential: it starts at 50 ms and doubles.

- :func:`with_retries`: up to ``attempts`` tries, each back-off jittered (so writers that
  conflicted do not collide again in step) and capped at ``max_backoff`` seconds. The
  Kubernetes clients' read-modify-write (``update_with_retry``) runs under it: each try
  reads afresh, so a conflict is answered with the newer object.
- :func:`before_deadline`: tries until no back-off sleep would end past ``deadline`` (a
  ``time.monotonic()`` instant); Prometheus queries run under it, bounded by the
  measurement's timeout.

When the tries run out, the last error is raised as it was.

- :class:`Silence`: after a server gave no answer at all (no connection, or none before the
  timeout), it is not asked again for a while: what would ask it is told why at once. The
  controller's clients of Prometheus and istiod keep one each, so during a hang its workers
  do not each wait out a timeout in every pass of every Rollout (an abort's included).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random_exponential,
)

from meshctl.adapters.errors import TransientError

T = TypeVar("T")
FIRST_BACKOFF = 0.05  # seconds; doubles with each try


def with_retries(attempt: Callable[[int], T], *, attempts: int, max_backoff: float) -> T:
    """``attempt(n)`` for n = 1, 2, ... until it returns, raises a non-transient error,
    or ``attempts`` tries have failed."""
    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=FIRST_BACKOFF, max=max_backoff),
        retry=retry_if_exception_type(TransientError),
        reraise=True,
    )
    for tried in retrying:
        with tried:
            return attempt(tried.retry_state.attempt_number)
    raise AssertionError("unreachable: tenacity reraises the last error")


def before_deadline(call: Callable[[], T], deadline: float, *, max_backoff: float = 1.0) -> T:
    """``call()`` until it returns, raises a non-transient error, or the next back-off
    would end past ``deadline``."""
    retrying = Retrying(
        stop=stop_before_delay(max(0.0, deadline - time.monotonic())),
        wait=wait_exponential(multiplier=2 * FIRST_BACKOFF, max=max_backoff),
        retry=retry_if_exception_type(TransientError),
        reraise=True,
    )
    return retrying(call)


class Silence:
    """Remembers that a server gave no answer, for ``hold`` seconds of ``clock``.
    Thread-safe: a tuple is replaced whole."""

    def __init__(self, server: str, hold: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.server, self.hold, self._clock = server, hold, clock
        self._since: tuple[float, str] | None = None  # until when, and the failure

    def heard_nothing(self, failure: str) -> None:
        """``server`` gave no answer (``failure`` says how): hold off from now."""
        self._since = (self._clock() + self.hold, failure)

    def reason(self) -> str:
        """Why ``server`` is not asked now ('' when it may be)."""
        since = self._since
        if since is None or self._clock() >= since[0]:
            return ""
        return (f"{self.server} did not answer ({since[1]}); not asked again for {self.hold:g} s "
                "after that")
