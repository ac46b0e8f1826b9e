"""Durations as Kubernetes users write them: ``500ms``, ``30s``, ``5m``, ``1h30m``.

    >>> parse_duration("1h30m")
    5400.0
    >>> parse_duration("250ms")
    0.25
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
# Whole numbers only, as PromQL writes a range (``[1m30s]``, not ``[1.5m]``).
WHOLE_PATTERN = r"^([0-9]+(ms|s|m|h|d))+$"
# A year: longer is a typo, and a clock or a timer cannot hold every number.
MAX_SECONDS = 365 * 86400.0


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ValueError with the accepted forms when it does not parse."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a duration; write it like 30s, 5m, 1h30m or 500ms")
    if not math.isfinite(total) or total > MAX_SECONDS:
        raise ValueError(f"{text[:40]!r} is longer than a year; use at most 365d")
    return total


def format_duration(seconds: float) -> str:
    """The shortest usual spelling: 90 -> ``1m30s``, 0.25 -> ``250ms``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class Duration:
    """A duration as written (``text``) and in seconds."""

    text: str

    @property
    def seconds(self) -> float:
        return parse_duration(self.text)
