"""A small JSONPath subset for the ``web`` metric provider: a path to one number.

Supported: the root ``$``, child names ``.name`` (letters, digits, ``_`` and ``-``), quoted
names ``['name']`` or ``["name"]``, and list indexes ``[0]`` (negative from the end,
``[-1]``). Not supported (refused when parsed, so a spec cannot ask for them): wildcards,
recursive descent ``..``, slices, unions and filters; a metric needs exactly one value, which
they would not guarantee.

    >>> find(parse("$.data.result[0]['value']"), {"data": {"result": [{"value": 3}]}})
    3
    >>> parse("$.items[*]")
    Traceback (most recent call last):
    ...
    ValueError: ...

Pure: standard library only.
"""

from __future__ import annotations

import re
from typing import Any

_NAME = re.compile(r"\.([A-Za-z0-9_-]+)")
_QUOTED = re.compile(r"""\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]""")
_INDEX = re.compile(r"\[(-?[0-9]+)\]")

Step = str | int


class Missing(LookupError):
    """The document has nothing at the path (no data, not an error)."""


def parse(path: str) -> tuple[Step, ...]:
    """The steps of ``path``; raises ValueError naming the offset of what is not supported."""
    if not path.startswith("$"):
        raise ValueError(f"{path!r} must start at the root, $ (e.g. $.data.value)")
    steps: list[Step] = []
    i = 1
    while i < len(path):
        for pattern in (_NAME, _QUOTED, _INDEX):
            match = pattern.match(path, i)
            if match is None:
                continue
            if pattern is _INDEX:
                steps.append(int(match.group(1)))
            elif pattern is _QUOTED:
                raw = match.group(1) if match.group(1) is not None else match.group(2)
                steps.append(re.sub(r"\\(.)", r"\1", raw))
            else:
                steps.append(match.group(1))
            i = match.end()
            break
        else:
            raise ValueError(f"{path!r}: unsupported at offset {i} ({path[i:i + 10]!r}); use "
                             ".name, ['name'] or [index] steps (no wildcards, .., slices or "
                             "filters)")
    return tuple(steps)


def find(steps: tuple[Step, ...], document: Any) -> Any:
    """The value at ``steps`` in ``document``; raises :class:`Missing` when there is none."""
    node = document
    for step in steps:
        if isinstance(step, int):
            if not isinstance(node, list) or not -len(node) <= step < len(node):
                raise Missing(f"no item [{step}]")
            node = node[step]
        else:
            if not isinstance(node, dict) or step not in node:
                raise Missing(f"no key {step!r}")
            node = node[step]
    return node
