"""Failpoints: armed by MESHCTL_FAILPOINTS, they end the process at once, at the n-th hit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
from meshctl.ops import failpoints
for i in range(1, 4):
    print(i, flush=True)
    failpoints.hit("status-saved")
print("survived", flush=True)
"""


def run(armed: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MESHCTL_FAILPOINTS": armed}
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=30)


@pytest.mark.parametrize(("armed", "printed", "code"), [
    ("", "1 2 3 survived", 0),                       # nothing armed: no effect
    ("traffic-written", "1 2 3 survived", 0),        # another failpoint: no effect
    ("status-saved", "1", 137),                      # the first hit ends the process
    ("traffic-written,status-saved=3", "1 2 3", 137),  # the third hit
])
def test_an_armed_failpoint_exits_at_its_nth_hit(armed, printed, code):
    result = run(armed)
    assert result.returncode == code, result.stderr
    assert result.stdout.split() == printed.split()


def test_an_unknown_failpoint_is_refused_by_name():
    result = run("status-save")
    assert result.returncode == 1
    assert "unknown failpoint 'status-save'" in result.stderr
