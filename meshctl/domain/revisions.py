"""Revision hashes: a short, stable name for a version's definition.

    >>> revision_of({"image": "web:2"}) == revision_of({"image": "web:2"})
    True
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def revision_of(definition: Any) -> str:
    """10 hex digits of the SHA-256 of the canonical JSON of ``definition``."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]
