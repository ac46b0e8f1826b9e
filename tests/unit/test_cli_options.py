"""The CLI's shared conventions, in process: global options after any command, ``-f`` with
files and directories, one error vocabulary, shell completion."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from meshctl.cli.main import COMPLETE_VAR, cli
from meshctl.cli.options import GLOBAL_OPTIONS, expand_files

BIN = Path(sys.executable).parent

# One value per global option; the key is where commands read it (ctx.obj).
VALUES = {"--kubeconfig": ("kubeconfig", "k.yaml"), "--context": ("kube_context", "ctx1"),
          "-n": ("namespace", "ns1"), "-o": ("output", "json"), "--server": ("server", "h:1"),
          "--tls-cert": ("tls_cert", "c.pem"), "--tls-key": ("tls_key", "k.pem"),
          "--tls-ca": ("tls_ca", "ca.pem")}


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in sorted(group.commands.items()):
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out += command_paths(command, (*prefix, name))
    return out


def parsed_after(path: tuple[str, ...], option: str, value: str) -> dict[str, object]:
    """Parse ``meshctl PATH OPTION VALUE`` as click would and return what the commands read:
    the root's options with those given after the command laid over them."""
    root = cli.make_context("meshctl", [*path, option, value], resilient_parsing=True)
    ctx, args = root, [*root._protected_args, *root.args]
    while isinstance(ctx.command, click.Group) and args:
        name, command, rest = ctx.command.resolve_command(ctx, args)
        assert command is not None and name is not None
        ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=True)
        args = [*ctx._protected_args, *ctx.args] if isinstance(command, click.Group) else []
    return {**root.params, **(root.obj or {})}


def test_every_global_option_is_in_the_table():
    assert {decls[0] for decls, _ in GLOBAL_OPTIONS} == set(VALUES)


@pytest.mark.parametrize("option", sorted(VALUES))
@pytest.mark.parametrize("path", command_paths(cli), ids=" ".join)
def test_every_global_option_works_after_every_command(path, option):
    """kubectl users put -o, -n, --context after the verb; the value lands where the
    commands read it, as if it had come before the command."""
    key, value = VALUES[option]
    assert parsed_after(path, option, value)[key] == value


def test_an_option_after_the_command_wins_over_one_before():
    root = cli.make_context("meshctl", ["-n", "before", "lint", "-n", "after"],
                            resilient_parsing=True)
    lint = cli.get_command(root, "lint")
    assert lint is not None
    lint.make_context("lint", [*root._protected_args, *root.args][1:], parent=root)
    assert root.obj["namespace"] == "after"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_the_readme_first_example_prints_json():
    result = run("rollout", "plan", "-f", "rollouts/canary-subsets.yaml", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rollout"]["name"] == "checkout"


def test_a_global_option_given_after_the_command_is_used_by_it():
    result = run("lint", "rollouts/blue-green.yaml", "--output", "yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("valid: 1")


def test_f_takes_several_files_a_directory_and_a_shell_glob(tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    text = Path("rollouts/custom-analysis.yaml").read_text()
    template, rollout = text.split("\n---\n", 1)
    (templates / "error-budget.yaml").write_text(template)
    (templates / "notes.txt").write_text("not read")
    (tmp_path / "cart.yaml").write_text(rollout)
    planned = run("-o", "json", "rollout", "plan", "-f", str(tmp_path / "cart.yaml"),
                  "-f", str(templates))
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.stdout)["rollout"]["name"] == "cart"
    # `-f rollouts/*.yaml`: the shell passes one -f and the rest as arguments
    globbed = sorted(str(p) for p in Path("rollouts").glob("*.yaml"))
    linted = run("-o", "json", "lint", "-f", globbed[0], *globbed[1:])
    assert linted.exit_code == 0, linted.output
    documents = sum(text.count("apiVersion: meshctl.io/") for text in
                    (Path(p).read_text(encoding="utf-8") for p in globbed))
    assert json.loads(linted.stdout)["valid"] == documents
    assert run("-o", "json", "lint", "-f", "rollouts").stdout == linted.stdout
    audited = run("policy", "audit", "-f", globbed[0], *globbed[1:], "--fail-on", "high")
    assert "finding(s)" in audited.stdout, audited.output


@pytest.mark.parametrize(("given", "expected"), [
    ((("a.yaml", "-"),), ["a.yaml", "-"]),  # files and stdin pass through, in order
    # a directory: its files (rollouts/objects/, what the examples expect to find, is not)
    ((("rollouts",),), sorted(str(p) for p in Path("rollouts").iterdir() if p.is_file())),
    ((("missing/",), ("b.yml",)), ["missing/", "b.yml"]),  # kept: reading it names it
])
def test_expand_files(given, expected):
    assert expand_files(*given) == expected


def test_an_empty_directory_is_one_error_line(tmp_path):
    result = run("lint", "-f", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and str(tmp_path) in result.stderr


@pytest.mark.parametrize(("args", "fragment", "hint"), [
    (["rollout", "plan", "--no-such-option"], "No such option", "meshctl rollout plan --help"),
    (["rollout", "plan", "-f", "rollouts/custom-analysis.yaml", "-f", "rollouts/blue-green.yaml"],
     "expected exactly one Rollout", "AnalysisTemplate"),
    (["policy", "plan", "-f", "rollouts/secured.yaml", "--kubeconfig", "/nonexistent"],
     "cannot reach the cluster", "use --offline"),
    (["rollout", "status", "web", "--kubeconfig", "/nonexistent"], "cannot reach the cluster",
     "--state-dir"),
    (["rollout", "run", "-f", "rollouts/local-demo.yaml", "--timeout", "soon"],
     "soon", "meshctl rollout run --help"),
])
def test_errors_are_one_prefixed_line_and_a_hint(args, fragment, hint):
    """The installed command: every error line starts 'error: ', names no Python class, and
    the fix follows on a 'hint: ' line."""
    result = subprocess.run([str(BIN / "meshctl"), *args], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode in (2, 5), result.stderr
    error, hint_line = result.stderr.splitlines()
    assert error.startswith("error: ") and fragment in error, result.stderr
    assert hint_line.startswith("hint: ") and hint in hint_line, result.stderr
    assert "Exception" not in result.stderr and "Error:" not in result.stderr


def test_timeouts_are_kubernetes_durations_everywhere():
    timeouts = [p for path in command_paths(cli) for p in _command(path).params
                if p.name == "timeout"]
    assert len(timeouts) >= 4
    assert {p.type.name for p in timeouts} == {"duration"}
    assert {p.type.convert("1h30m", None, None) for p in timeouts} == {5400.0}


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        found = command.commands[name]
        command = found
    return command


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_generated(shell):
    result = run("completion", shell)
    assert result.exit_code == 0
    assert COMPLETE_VAR in result.stdout and "meshctl" in result.stdout


def test_a_completion_query_is_answered():
    """What bash asks when the user presses TAB after `meshctl rollout st`."""
    env = {**os.environ, COMPLETE_VAR: "bash_complete", "COMP_WORDS": "meshctl rollout st",
           "COMP_CWORD": "2"}
    result = subprocess.run([str(BIN / "meshctl")], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "plain,start" in result.stdout.splitlines()
    assert "plain,status" in result.stdout.splitlines()


def test_rollout_names_complete_to_nothing_without_a_cluster():
    env = {**os.environ, COMPLETE_VAR: "bash_complete", "COMP_CWORD": "5",
           "COMP_WORDS": "meshctl --kubeconfig /nonexistent rollout status w"}
    result = subprocess.run([str(BIN / "meshctl")], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr == ""


def test_the_kubectl_plugin_entry_point_is_installed():
    plugin = shutil.which("kubectl-meshctl", path=str(BIN))
    assert plugin is not None
    result = subprocess.run([plugin, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("Usage: kubectl meshctl")


@pytest.mark.parametrize(("expected", "result", "as_expected"), [
    ("promoted", "promoted", True),
    ("rolled_back", "rolled_back", True),
    ("rolled_back", "promoted", False),  # a breaking version that got through: exit 1
])
def test_a_demo_scenario_knows_whether_it_ended_as_it_should(expected, result, as_expected):
    from meshctl.ops.demo import Scenario

    assert Scenario("s", expected, result=result).as_expected is as_expected
