"""The user's intents, one word each, spelled the same everywhere: the CLI command
(``meshctl rollout promote|abort|retry|resume|pause``; ``promote --full`` is
``promote-full``), the annotation (``meshctl.io/intent-<action>``), a local run's intents
file, the status's ``handledIntents``, a view's ``pendingIntents`` and the code
(:class:`Action`). Each front-end maps its own form to :class:`Action` once: the CLI its
command and flag, the gRPC API its method.

Promote, abort, retry and resume are recorded as ids the engine acts on once
(:class:`Intents`); pause is ``spec.paused``, a state rather than a request. Which action
means something in which phase is :data:`meshctl.domain.phases.ALLOWED`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from meshctl.domain.keys import INTENT_PREFIX


class Action(str, Enum):
    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    ABORT = "abort"
    RETRY = "retry"
    RESUME = "resume"
    PAUSE = "pause"

    @property
    def annotation(self) -> str:
        """The annotation an intent's id is recorded in: ``meshctl.io/intent-<action>``."""
        return INTENT_PREFIX + self.value

    @classmethod
    def parse(cls, text: str) -> Action | None:
        """The action ``text`` names; None for none. Accepts ``promote_full``, the spelling
        of earlier versions still found in stored statuses and intents files."""
        try:
            return cls(text.replace("_", "-"))
        except ValueError:
            return None


# The actions recorded as ids for the engine (pause is spec.paused).
RECORDED = (Action.PROMOTE, Action.PROMOTE_FULL, Action.ABORT, Action.RETRY, Action.RESUME)


@dataclass(frozen=True)
class Intents:
    """Ids of user intents found on the Rollout; one not yet in status is pending."""

    promote: str | None = None
    promote_full: str | None = None
    abort: str | None = None
    retry: str | None = None
    resume: str | None = None

    def get(self, action: Action) -> str | None:
        """The id recorded for ``action`` (None: none, and always for pause)."""
        return getattr(self, action.name.lower(), None) if action in RECORDED else None

    @classmethod
    def of(cls, ids: Mapping[Action, str | None]) -> Intents:
        return cls(**{a.name.lower(): ids.get(a) for a in RECORDED})
