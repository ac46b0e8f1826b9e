"""The ``meshctl`` command line. Thin: parse, one ``ops`` call, render.

Imports of anything heavy (the Kubernetes client, gRPC, Prometheus) happen inside the
commands that need them, so ``meshctl --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from meshctl.cli import exitcodes
from meshctl.cli.options import (
    ERROR,
    HINT,
    expand_files,
    fail,
    files_argument,
    files_option,
    share_global_options,
    timeout_option,
)
from meshctl.cli.render import emit

if TYPE_CHECKING:
    from meshctl.ops.documents import Loaded


@click.group(help=f"Progressive delivery for Istio: canary and blue-green with SLO gates.\n\n"
             f"{exitcodes.HELP}", context_settings={"auto_envvar_prefix": "MESHCTL",
                                                    "help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meshctl")
@click.pass_context
def cli(ctx: click.Context, /, **options: Any) -> None:
    ctx.obj = options


def _load_one(ctx: click.Context, files: list[str]) -> Loaded:
    """Exactly one Rollout (and any AnalysisTemplates) from ``files``, or exit 2."""
    from meshctl.ops.documents import load

    loaded = load(files)
    if loaded.problems:
        fail(ctx, exitcodes.INVALID, *(str(p) for p in loaded.problems))
    if len(loaded.rollouts) != 1:
        fail(ctx, exitcodes.INVALID, f"expected exactly one Rollout in {', '.join(files)}, "
             f"found {len(loaded.rollouts)}", hint="pass the Rollout's file and the "
             "AnalysisTemplate files it uses")
    return loaded


@cli.command(help="Check Rollout and AnalysisTemplate files offline (files, directories, "
             "'-' for standard input).")
@files_option("A file to check.")
@files_argument()
@click.option("--prometheus-url", default=None, metavar="URL",
              help="Also ask this Prometheus to parse every query the Rollouts would run "
              "(with their AnalysisTemplates); a query it rejects is a problem. Exit 5 when "
              "it cannot be reached.")
@click.pass_context
def lint(ctx: click.Context, files: tuple[str, ...], more_files: tuple[str, ...],
         prometheus_url: str | None) -> None:
    from meshctl.ops.documents import load

    if not files and not more_files:
        fail(ctx, exitcodes.INVALID, "no files given", hint="meshctl lint rollouts/*.yaml")
    loaded = load(expand_files(files, more_files))
    if loaded.problems:
        fail(ctx, exitcodes.INVALID, *(str(p) for p in loaded.problems))
    if prometheus_url:
        _lint_queries(ctx, loaded, prometheus_url)
    count = len(loaded.rollouts) + len(loaded.templates)
    if ctx.obj["output"] == "table":
        click.echo(f"{count} document(s) valid")
    else:
        emit({"valid": count, "problems": []}, ctx.obj["output"])


def _lint_queries(ctx: click.Context, loaded: Loaded, prometheus_url: str) -> None:
    from datetime import UTC, datetime

    from meshctl.ops.query_checks import lint_queries

    report = lint_queries(zip(loaded.rollout_sources, loaded.rollouts, strict=True),
                          loaded.templates, prometheus_url, datetime.now(UTC))
    if report.problems:
        fail(ctx, exitcodes.INVALID, *report.problems)
    if report.unreachable:
        fail(ctx, exitcodes.UNREACHABLE, f"cannot check the queries: Prometheus "
             f"{prometheus_url} does not answer: {report.unreachable}",
             hint="check --prometheus-url, or lint without it to check the files offline")


@cli.group(help="Run, inspect and steer rollouts.")
def rollout() -> None:
    pass


MESH_HELP = ("istio: the objects the controller writes in a cluster; local: the embedded "
             "mesh 'rollout run' drives.")


@rollout.command("plan", help="Show the weight schedule, gates and objects without writing.")
@files_option("Rollout file, and AnalysisTemplate files it uses.")
@files_argument()
@click.option("--mesh", type=click.Choice(["istio", "local"]), default="istio", show_default=True,
              help="Where the plan is for. " + MESH_HELP + " The default is istio because "
              "a plan is most often read before applying to a cluster.")
@click.pass_context
def plan(ctx: click.Context, files: tuple[str, ...], more_files: tuple[str, ...],
         mesh: str) -> None:
    from meshctl.cli.render import plan_table
    from meshctl.ops.rollout_plan import PlanError, plan_for

    loaded = _load_one(ctx, expand_files(files, more_files))
    try:
        result = plan_for(loaded.rollouts[0], loaded.templates, mesh)
    except PlanError as exc:
        fail(ctx, exitcodes.INVALID, *exc.lines)
    if ctx.obj["output"] == "table":
        click.echo(plan_table(result))
    else:
        emit(result, ctx.obj["output"])


@rollout.command("run", help="Drive a rollout from this process, no controller needed. The "
                 "status is saved after every decision; running again resumes.")
@files_option("Rollout file, and AnalysisTemplate files it uses.")
@files_argument()
@click.option("--mesh", type=click.Choice(["local", "istio"]), default="local", show_default=True,
              help="Where to run. " + MESH_HELP + " The default is local because only the "
              "local mesh is driven from this process (in a cluster the controller drives: "
              "'meshctl rollout start').")
@click.option("--state-dir", type=click.Path(file_okay=False), default=".meshctl",
              show_default=True, help="Where the status of local runs is kept.")
@timeout_option("Give up after this long; exit 3.", default="30m")
@click.option("--load", "load_rate", type=float, default=50.0, show_default=True,
              help="Local mesh: requests per second meshctl sends through Envoy so the SLO "
                   "gates have traffic to judge (0: none, bring your own).")
@click.pass_context
def run(ctx: click.Context, files: tuple[str, ...], more_files: tuple[str, ...], mesh: str,
        state_dir: str, timeout: float | None, load_rate: float) -> None:
    from pathlib import Path

    from meshctl.cli.progress import ProgressPrinter
    from meshctl.cli.results import exit_code_for
    from meshctl.ops.local import LocalRollout, LocalRunError, local_mesh_for

    loaded = _load_one(ctx, expand_files(files, more_files))
    if mesh != "local":
        fail(ctx, exitcodes.INVALID, "rollout run drives the local mesh only",
             hint="in a cluster run 'meshctl controller run' and use 'meshctl rollout start'")
    rollout_ = loaded.rollouts[0]
    printer = ProgressPrinter()
    try:
        def leftover(what: str) -> None:
            click.echo(f"stopped what a killed earlier run left: {what}", err=True)

        def notice(what: str) -> None:
            click.echo(f"local mesh: {what}", err=True)

        with _terminate_like_interrupt(), \
                local_mesh_for(rollout_, Path(state_dir), load_rate, leftover,
                               notice) as local_mesh:
            driver = LocalRollout(rollout_, loaded.templates, local_mesh, Path(state_dir),
                                  on_event=printer.event)
            decision = driver.run(timeout=timeout, on_pass=printer)
    except LocalRunError as exc:
        fail(ctx, exitcodes.INVALID, str(exc))
    except TimeoutError as exc:
        fail(ctx, exitcodes.TIMED_OUT, str(exc))
    if ctx.obj["output"] != "table":
        emit(decision.status.to_json(), ctx.obj["output"])
    ctx.exit(exit_code_for(decision.status))


@cli.command(help="Run a whole canary on this machine: real Envoy, real Prometheus, live "
             "load; a healthy version is promoted, a breaking one is rolled back. Exits 1 "
             "when a scenario does not end as it should.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=".meshctl",
              show_default=True, help="Where the demo records the processes it starts (so "
              "a later demo stops what a killed one left).")
@click.option("--report", "report_file", type=click.Path(dir_okay=False), default=None,
              help="Also write an HTML report of both scenarios (charts of weights and SLO "
              "metrics; opens offline) to this file.")
@click.pass_context
def demo(ctx: click.Context, as_json: bool, state_dir: str, report_file: str | None) -> None:
    import json
    from pathlib import Path

    from meshctl.cli.progress import ProgressPrinter, demo_summary
    from meshctl.localmesh.procs import LocalMeshError
    from meshctl.ops.demo import run_demo

    printer = ProgressPrinter()
    try:
        with _terminate_like_interrupt():
            scenarios = run_demo(printer, printer.event,
                                 lambda text: click.echo(f"\n== {text}", err=True),
                                 Path(state_dir))
    except LocalMeshError as exc:
        fail(ctx, exitcodes.UNREACHABLE, f"cannot run the demo: {exc}")
    except TimeoutError as exc:
        fail(ctx, exitcodes.TIMED_OUT, f"demo: {exc}")
    if report_file is not None:
        from meshctl.cli.dashboard import write_report

        write_report(ctx, report_file, [(s.timeline, s.view) for s in scenarios
                                        if s.timeline is not None], "meshctl demo")
    if as_json:
        click.echo(json.dumps({"scenarios": [s.to_json() for s in scenarios]}, indent=2))
    else:
        click.echo(demo_summary([s.to_json() for s in scenarios]))
    wrong = [f"demo scenario {s.name} ended {s.result}, expected {s.expected}"
             for s in scenarios if not s.as_expected]
    if wrong:
        fail(ctx, exitcodes.ROLLED_BACK, *wrong)


@cli.command(help="Print the shell completion script for bash, zsh or fish. Rollout names "
             "are completed from the cluster the global options point at.\n\n"
             "bash: source <(meshctl completion bash)\n\n"
             "zsh: source <(meshctl completion zsh)\n\n"
             "fish: meshctl completion fish | source")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    from click.shell_completion import get_completion_class

    script = get_completion_class(shell)
    assert script is not None  # the three choices are click's own
    # for meshctl itself, also under kubectl: kubectl completes its plugins by name only
    click.echo(script(cli, {}, "meshctl", COMPLETE_VAR).source())


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: context managers unwind and stop what they started."""


@contextlib.contextmanager
def _terminate_like_interrupt() -> Iterator[None]:
    """For commands that start processes (``rollout run``, ``demo``): SIGTERM raises
    :class:`Terminated` in the main thread; a second one during the clean-up is ignored so
    the clean-up finishes. The previous handler is put back after."""
    import signal

    def terminate(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


from meshctl.cli.controller import controller  # noqa: E402
from meshctl.cli.dashboard import dashboard, report  # noqa: E402
from meshctl.cli.policy import policy  # noqa: E402
from meshctl.cli.rollouts import COMMANDS as ROLLOUT_COMMANDS  # noqa: E402

for _command in ROLLOUT_COMMANDS:
    rollout.add_command(_command)
rollout.add_command(report)
cli.add_command(dashboard)

cli.add_command(policy)
cli.add_command(controller)
share_global_options(cli)


COMPLETE_VAR = "_MESHCTL_COMPLETE"


def main(prog_name: str = "meshctl") -> None:
    """The ``meshctl`` command: exit codes as in ``exitcodes``, one ``error:`` line for a
    user's mistake, never a traceback unless ``MESHCTL_DEBUG`` is set."""
    try:
        # not standalone: click returns ctx.exit()'s code instead of exiting, and leaves
        # the errors below to us
        code = cli.main(prog_name=prog_name, complete_var=COMPLETE_VAR, standalone_mode=False)
        sys.exit(code if isinstance(code, int) else exitcodes.OK)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        click.echo(ERROR + exc.format_message(), err=True)
        if exc.ctx is not None:
            click.echo(f"{HINT}see '{exc.ctx.command_path} --help'", err=True)
        sys.exit(exitcodes.INVALID)
    except click.ClickException as exc:
        click.echo(ERROR + exc.format_message(), err=True)
        sys.exit(exitcodes.INVALID)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:  # click turns Ctrl-C into Abort
        if isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated):
            click.echo(ERROR + "terminated", err=True)
            sys.exit(exitcodes.TERMINATED)
        click.echo(ERROR + "interrupted", err=True)
        sys.exit(exitcodes.INTERRUPTED)
    except Exception as exc:  # a bug: one line, the traceback only on request
        if os.environ.get("MESHCTL_DEBUG"):
            raise
        click.echo(f"{ERROR}internal error in meshctl: {exc or 'no message'} (a bug; run with "
                   "MESHCTL_DEBUG=1 for the traceback)", err=True)
        sys.exit(exitcodes.INTERNAL)


def kubectl_main() -> None:
    """``kubectl meshctl ...``: kubectl's plugin discovery runs ``kubectl-meshctl`` from PATH."""
    main(prog_name="kubectl meshctl")
