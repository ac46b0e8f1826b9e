"""Success and failure conditions: simple comparisons of ``result`` with a number.

Grammar: ``result OP NUMBER`` joined by ``&&`` / ``||`` (also ``and`` / ``or``), where OP is
one of ``< <= > >= == !=``. ``&&`` binds tighter than ``||``. No names but ``result``, no
calls: a condition is data, never code that is executed.

    >>> Condition.parse("result < 50").holds(42.0)
    True
    >>> Condition.parse("result >= 0.99 && result <= 1").holds(0.5)
    False
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt,
}
_COMPARISON = re.compile(r"^\s*result\s*(<=|>=|==|!=|<|>)\s*(-?[0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?)\s*$")


@dataclass(frozen=True)
class Comparison:
    op: str
    number: float

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.number)


@dataclass(frozen=True)
class Condition:
    """Disjunction of conjunctions of comparisons."""

    text: str
    any_of: tuple[tuple[Comparison, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Condition:
        """Raises ValueError naming the part that is not ``result OP NUMBER``."""
        normal = text.replace(" and ", " && ").replace(" or ", " || ")
        groups = []
        for alternative in normal.split("||"):
            group = []
            for part in alternative.split("&&"):
                match = _COMPARISON.match(part)
                if not match:
                    raise ValueError(
                        f"{part.strip()!r} is not a comparison; write it like 'result < 50'"
                    )
                group.append(Comparison(match.group(1), float(match.group(2))))
            groups.append(tuple(group))
        return cls(text, tuple(groups))

    def holds(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return any(all(c.holds(value) for c in group) for group in self.any_of)
