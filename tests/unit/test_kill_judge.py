"""The crash tests' judge finds repeated and skipped steps (so a clean verdict means
something): a history walked along the expected sequence."""

from __future__ import annotations

import pytest

from testworld.kills import Findings, _align

WEIGHTS = [0, 20, 40, 60, 80, 0]


@pytest.mark.parametrize(("seen", "repeated", "skipped"), [
    ([0, 20, 40, 60, 80, 0], 0, 0),              # every step once, in order
    ([0, 20, 60, 80, 0], 0, 1),                  # 40 skipped
    ([0, 20, 40, 20, 40, 60, 80, 0], 1, 0),      # went back to 20: a repeated step
    ([0, 20, 40], 0, 3),                         # stopped half way
    ([0, 0, 20, 40, 60, 80, 0], 0, 0),           # writing the same value again is no step
])
def test_the_judge_counts_repeated_and_skipped_steps(seen, repeated, skipped):
    findings = Findings()
    _align(seen, WEIGHTS, "weights", findings)
    assert (findings.repeated, findings.skipped) == (repeated, skipped), findings.notes
