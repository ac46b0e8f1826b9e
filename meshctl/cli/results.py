"""From a rollout's state to the exit code a pipeline sees."""

from __future__ import annotations

from meshctl.cli import exitcodes
from meshctl.domain.phases import Phase
from meshctl.domain.status import RolloutStatus


def exit_code_for(status: RolloutStatus) -> int:
    if status.phase is Phase.HEALTHY:
        return exitcodes.OK
    if status.phase in (Phase.DEGRADED, Phase.ABORTING):
        return exitcodes.ROLLED_BACK
    if status.phase is Phase.PAUSED:
        return exitcodes.PAUSED
    return exitcodes.TIMED_OUT
