"""Named failpoints: places in the reconcile pass where a test can make the process die.

``MESHCTL_FAILPOINTS=traffic-written,status-saved=3`` makes the process exit at once
(``os._exit``: no ``finally``, no ``atexit``, no flush; as abrupt as SIGKILL) the first time
it reaches ``traffic-written``, or the third time it reaches ``status-saved``. The variable is
read once, at import; with it unset :func:`hit` is one falsy check. Used by the crash tests
and ``bench/kills.py`` (the idea is etcd's gofail).
"""

from __future__ import annotations

import os

EXIT_CODE = 137  # what a shell reports for SIGKILL: the test treats both the same
NAMES = (
    "traffic-written",   # after the VirtualService/Envoy weights were written, before the rest
    "scaled",            # after the canary was scaled, before the status save
    "baseline-scaled",   # after a fresh baseline was made, scaled or removed, before the save
    "status-saved",      # after the status save, before the events
    "abort",             # in an aborting pass, after traffic went back, before the status save
    "promotion",         # in a promoting pass, after the workloads were converged
    "policy-written",    # inside policy convergence, after one object was written
)


def _parse(text: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for term in filter(None, (t.strip() for t in text.split(","))):
        name, _, nth = term.partition("=")
        if name not in NAMES:
            raise SystemExit(f"MESHCTL_FAILPOINTS: unknown failpoint {name!r} "
                             f"(known: {', '.join(NAMES)})")
        armed[name] = int(nth) if nth.isdigit() and int(nth) > 0 else 1
    return armed


_armed = _parse(os.environ.get("MESHCTL_FAILPOINTS", ""))


def hit(name: str) -> None:
    """Exit the process now if ``name`` is armed and this is its n-th hit."""
    if not _armed or name not in _armed:
        return
    _armed[name] -= 1
    if _armed[name] == 0:
        os.write(2, f"failpoint {name}: exiting\n".encode())
        os._exit(EXIT_CODE)
