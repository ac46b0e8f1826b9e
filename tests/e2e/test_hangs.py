"""An API server that accepts connections and never answers: every command ends on its
own deadline with a one-line error, and `--timeout` bounds the whole command. The server is
a real listening socket that holds every connection it accepts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent / "meshctl"


def kubeconfig(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "hung",
        "clusters": [{"name": "hung", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                  "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "hung", "context": {"cluster": "hung", "user": "u",
                                                  "namespace": "shop"}}],
    }))
    return path


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MESHCTL_REQUEST_TIMEOUT": "2"}
    # the guard of a hang; the command must end long before it
    return subprocess.run([str(BIN), "--kubeconfig", str(config), *args], env=env,
                          capture_output=True, text=True, timeout=90)


@pytest.mark.parametrize("args", [
    ("rollout", "status", "web"),
    ("rollout", "list"),
    ("policy", "audit", "-n", "shop"),
    ("rollout", "status", "web", "--watch", "--timeout", "3"),
    ("rollout", "start", "web", "--image", "web:2", "--wait", "--timeout", "3"),
])
def test_a_server_that_never_answers_ends_the_command_with_exit_5(tmp_path, silent_server, args):
    result = run(kubeconfig(tmp_path, silent_server.port), *args)
    assert result.returncode == 5, result.stderr
    errors = [line for line in result.stderr.strip().splitlines()
              if not line.startswith("hint: ")]  # a hint may follow the one error line
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
