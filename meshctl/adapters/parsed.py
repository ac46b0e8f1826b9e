"""Parses made once per object version, shared by the controller's threads.

An object's uid and resourceVersion name one content, so a pure parse of it (a frozen
value: a Rollout, its status) can be kept and handed to every pass that reads that version.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class Parsed:
    """What a pure parse made of one version of an object: an object's uid and
    resourceVersion name one content, so its parse (a frozen value) is made once. A pass
    woken by a Deployment reads the same Rollout version as the pass before it and skips
    parsing its spec and its status again. Bounded: the least recently used go first."""

    def __init__(self, limit: int = 20_000) -> None:
        self._lock = threading.Lock()
        self._found: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._limit = limit

    def of(self, obj: Mapping[str, Any], what: str, parse: Callable[[Mapping[str, Any]], T]) -> T:
        """``parse(obj)``, made once per version; ``what`` names the parse."""
        meta = obj.get("metadata") or {}
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        if not uid or not version:
            return parse(obj)
        key = (what, str(uid), str(version))
        with self._lock:
            if key in self._found:
                self._found.move_to_end(key)
                return self._found[key]  # type: ignore[no-any-return]
        value = parse(obj)
        with self._lock:
            self._found[key] = value
            while len(self._found) > self._limit:
                self._found.popitem(last=False)
        return value


PARSED = Parsed()
