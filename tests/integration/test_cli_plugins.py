"""meshctl where Kubernetes users reach for it: as a plugin of the real kubectl (built from the
Go module proxy by testworld/build-kube.sh) and through shell completion that offers the
cluster's Rollout names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshctl.adapters.kube import Kube
from meshctl.cli.main import COMPLETE_VAR
from meshctl.domain.spec import GROUP, VERSION

from .cluster_world import rollout
from .conftest import servers_unavailable
from .running_controller import STEPS

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = ROOT / ".cache/kube/v1.34.4/kubectl"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def kubectl() -> Path:
    if not os.access(KUBECTL, os.X_OK):
        servers_unavailable(f"{KUBECTL.relative_to(ROOT)} missing: run make testenv")
    return KUBECTL


def run_kubectl(kubectl: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # only the venv's bin on PATH: kubectl discovers kubectl-meshctl there, as after pip install
    env = {**os.environ, "PATH": str(BIN), "KUBECONFIG": os.devnull}
    return subprocess.run([str(kubectl), *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_kubectl_plugin_list_finds_meshctl(kubectl):
    listed = run_kubectl(kubectl, "plugin", "list")
    assert listed.returncode == 0, listed.stderr
    assert str(BIN / "kubectl-meshctl") in listed.stdout.splitlines()


def test_kubectl_meshctl_runs_meshctl(kubectl):
    helped = run_kubectl(kubectl, "meshctl", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("Usage: kubectl meshctl")
    planned = run_kubectl(kubectl, "meshctl", "rollout", "plan", "-f",
                          "rollouts/canary-subsets.yaml", "-o", "json")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["rollout"]["name"] == "checkout"
    failed = run_kubectl(kubectl, "meshctl", "rollout", "plan", "--nope")
    assert failed.returncode == 2  # kubectl passes the plugin's exit code on
    assert "hint: see 'kubectl meshctl rollout plan --help'" in failed.stderr


@pytest.mark.kube
def test_completion_offers_the_clusters_rollout_names(kube, namespace):
    admin = Kube.from_kubeconfig(kube.kubeconfig_path)
    try:
        for name in ("web", "webshop", "api"):
            doc = rollout(namespace, f"{name}:1", STEPS)
            doc["metadata"]["name"] = name
            admin.create(GROUP, VERSION, namespace, "rollouts", doc)
    finally:
        admin.close()
    # what bash asks on TAB: global options before the command and after it both count
    for words in (["meshctl", "--kubeconfig", str(kube.kubeconfig_path), "rollout", "status",
                   "-n", namespace, "we"],
                  ["meshctl", "-n", namespace, "rollout", "history", "--kubeconfig",
                   str(kube.kubeconfig_path), "we"]):
        env = {**os.environ, COMPLETE_VAR: "bash_complete", "COMP_WORDS": " ".join(words),
               "COMP_CWORD": str(len(words) - 1)}
        result = subprocess.run([str(BIN / "meshctl")], env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["plain,web", "plain,webshop"], words
