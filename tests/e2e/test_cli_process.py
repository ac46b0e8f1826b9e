"""The installed `meshctl` command, as a CI pipeline runs it: real process, real exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent / "meshctl"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=60)


def test_a_valid_file_exits_0():
    assert run("lint", "rollouts/blue-green.yaml").returncode == 0


def test_an_invalid_file_exits_2_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: meshctl.io/v1alpha1\nkind: Rollout\nmetadata: {name: x}\n"
                   "spec: {service: x, strategy: {canary: {steps: [{setWeight: 120}]}}}\n")
    result = run("lint", str(bad))
    assert result.returncode == 2
    assert "spec.strategy.canary.steps[0].setWeight: 120 is above 100" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_option_exits_2():
    result = run("rollout", "plan", "--no-such-option")
    assert result.returncode == 2
    assert "No such option" in result.stderr
