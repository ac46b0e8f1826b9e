"""The rank test the judge is given (:data:`meshctl.domain.judge.RankTest`); the one home
of scipy, imported on first use (it costs a noticeable part of a second)."""

from __future__ import annotations

from collections.abc import Sequence


def mann_whitney_greater(first: Sequence[float], second: Sequence[float]) -> float:
    """The one-sided Mann-Whitney U p-value that ``first`` tends to be greater than
    ``second``: exact for small samples without ties, the normal approximation with tie
    and continuity corrections otherwise (scipy's ``method="auto"``). All values equal:
    1.0 (nothing to tell apart)."""
    from scipy.stats import mannwhitneyu

    if len({*first, *second}) <= 1:
        return 1.0
    return float(mannwhitneyu(list(first), list(second), alternative="greater",
                              method="auto").pvalue)
