"""Exit codes a pipeline sees, one table each: from how an operation failed (every
command that reaches a cluster), and from where a rollout ended (``--wait``,
``status --watch`` and a local ``rollout run``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshctl.cli import exitcodes

if TYPE_CHECKING:
    from meshctl.domain.status import RolloutStatus

# Failure kinds (meshctl.ops.failures.Failure values) to exit codes: 2 for what the user
# asked wrongly, 5 for a cluster or API that cannot be reached or used.
FAILURE_EXIT = {"NotFound": exitcodes.INVALID, "Invalid": exitcodes.INVALID,
                "FailedPrecondition": exitcodes.INVALID,
                "Unauthenticated": exitcodes.UNREACHABLE,
                "PermissionDenied": exitcodes.UNREACHABLE, "Unavailable": exitcodes.UNREACHABLE}

# Endings (meshctl.domain.phases.Ending values) to exit codes; by value, so that importing
# this stays light for ``meshctl --help``.
ENDING_EXIT = {"Healthy": exitcodes.OK, "Degraded": exitcodes.ROLLED_BACK,
               "InvalidSpec": exitcodes.INVALID, "TimedOut": exitcodes.TIMED_OUT,
               "Paused": exitcodes.PAUSED}


def exit_code_for(status: RolloutStatus) -> int:
    """A local run's exit code from its last status. A run that stopped before an ending
    (``rollout run`` gave up) exits as rolled back while aborting, as paused while paused,
    else as timed out."""
    from meshctl.domain.phases import Ending, Phase, ending_of

    ending = ending_of(status.phase, status.pause_reason)
    if ending is None:
        ending = {Phase.ABORTING: Ending.DEGRADED, Phase.PAUSED: Ending.PAUSED}.get(
            status.phase, Ending.TIMED_OUT)
    return ENDING_EXIT[ending.value]
