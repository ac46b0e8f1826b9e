"""The README's examples, run exactly as printed: every `meshctl ...` line of its ```sh
blocks goes to a real shell (bash, so globs expand as a user's would), offline or against the
test world, and must exit 0. ```text blocks are synopses (``a|b``, ``[--flag]``): their
commands must exist. A README example can never fail again unnoticed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from meshctl.adapters.files import dump_yaml
from meshctl.cli.main import cli

from .cluster_world import rollout
from .running_controller import STEPS, RunningController

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)
# Lines that need a cluster: run against the test world (the rest run offline).
CLUSTER = re.compile(r"^meshctl rollout (start|status|list|history|undo|promote|abort|pause|"
                     r"resume|retry)\b")


def readme_lines(kind: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = []
    for lang, body in BLOCK.findall(text):
        if lang != kind:
            continue
        for line in body.replace("\\\n", " ").splitlines():  # join continued lines
            command = line.split("  #", 1)[0].strip()  # a comment after two spaces
            if command.startswith("meshctl "):
                lines.append(command)
    return lines


EXAMPLES = readme_lines("sh")
OFFLINE = [line for line in EXAMPLES if not CLUSTER.match(line)]
IN_CLUSTER = [line for line in EXAMPLES if CLUSTER.match(line)]


def shell(line: str, cwd: Path, env: dict[str, str] | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=timeout)


def test_the_readme_has_examples_of_both_kinds():
    assert len(OFFLINE) >= 3 and len(IN_CLUSTER) >= 5, EXAMPLES


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory like the user's checkout: the example files, and room for .meshctl/."""
    (tmp_path / "rollouts").symlink_to(ROOT / "rollouts")
    return tmp_path


@pytest.mark.envoy
@pytest.mark.prometheus
@pytest.mark.parametrize("line", OFFLINE)
def test_an_offline_example_runs_as_printed(line, workdir):
    done = shell(line, workdir)
    assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
    assert "error:" not in done.stderr


@pytest.fixture
def world(kube, cluster, namespace, istio_metrics, workdir) -> Iterator[dict[str, str]]:
    """The test world holding the README's Rollout `web`, a controller acting on it, and a
    pipeline's rollout.yaml in the working directory."""
    exporter, url = istio_metrics
    exporter.set(namespace, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)
    doc = rollout(namespace, "web:3", STEPS)
    del doc["metadata"]["namespace"]
    (workdir / "rollout.yaml").write_text(dump_yaml(doc))
    with RunningController(kube, namespace, url):
        # the environment stands in for a user's kubeconfig context (MESHCTL_ prefix)
        yield {"MESHCTL_KUBECONFIG": str(kube.kubeconfig_path), "MESHCTL_NAMESPACE": namespace}


@pytest.mark.kube
@pytest.mark.cluster
@pytest.mark.prometheus
def test_the_cluster_examples_run_as_printed_in_order(world, workdir):
    for line in IN_CLUSTER:
        done = shell(line, workdir, world, timeout=180)
        assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
        assert "error:" not in done.stderr, line


def test_every_synopsis_names_commands_that_exist():
    for line in readme_lines("text"):
        words = [w for w in line.split() if not w.startswith(("-", "[", "<"))]
        group: click.Command = cli
        for word in words[1:]:
            if not isinstance(group, click.Group):
                break
            names = word.split("|")
            if not set(names) & set(group.commands):
                continue  # an option's value or an argument
            missing = [n for n in names if n not in group.commands]
            assert not missing, f"{line}: no command {missing}"
            group = group.commands[names[0]]
        assert group is not cli, line
