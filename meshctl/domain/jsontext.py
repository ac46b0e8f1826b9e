"""JSON read from text anyone with write access can set (annotations on shared objects):
what does not parse, or nests deeper than the parser goes, reads as None, never as an
exception in the middle of a pass."""

from __future__ import annotations

import json
from typing import Any


def parsed(text: str | None) -> Any:
    """The value ``text`` holds, or None when it is empty, not JSON, or hostile."""
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        return None


def parsed_object(text: str | None) -> dict[str, Any] | None:
    """The JSON object ``text`` holds, or None when it holds anything else."""
    value = parsed(text)
    return value if isinstance(value, dict) else None
