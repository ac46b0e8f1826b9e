"""The ``meshctl`` command line. Thin: parse, one ``ops`` call, render.

Imports of anything heavy (the Kubernetes client, gRPC, Prometheus) happen inside the
commands that need them, so ``meshctl --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import click

from meshctl.cli import exitcodes
from meshctl.cli.render import OUTPUT_CHOICES, emit


@click.group(help=f"Progressive delivery for Istio: canary and blue-green with SLO gates.\n\n"
             f"{exitcodes.HELP}", context_settings={"auto_envvar_prefix": "MESHCTL",
                                                    "help_option_names": ["-h", "--help"]})
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Path to a kubeconfig.")
@click.option("--context", "kube_context", help="Kubeconfig context to use.")
@click.option("-n", "--namespace", default=None, help="Namespace (default: the context's).")
@click.option("-o", "--output", type=click.Choice(OUTPUT_CHOICES), default="table",
              show_default=True, help="Output format.")
@click.option("--server", help="Use the controller's gRPC API at HOST:PORT.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="Client certificate (gRPC).")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="Client key (gRPC).")
@click.option("--tls-ca", type=click.Path(dir_okay=False), help="CA bundle (gRPC).")
@click.version_option(package_name="meshctl")
@click.pass_context
def cli(ctx: click.Context, /, **options: Any) -> None:
    ctx.obj = options


@cli.command(help="Check Rollout and AnalysisTemplate files offline. '-' reads standard input.")
@click.argument("files", nargs=-1, required=True)
@click.pass_context
def lint(ctx: click.Context, files: tuple[str, ...]) -> None:
    from meshctl.ops.documents import load

    loaded = load(list(files))
    for problem in loaded.problems:
        click.echo(str(problem), err=True)
    if loaded.problems:
        ctx.exit(exitcodes.INVALID)
    count = len(loaded.rollouts) + len(loaded.templates)
    if ctx.obj["output"] == "table":
        click.echo(f"{count} document(s) valid")
    else:
        emit({"valid": count, "problems": []}, ctx.obj["output"])


@cli.group(help="Run, inspect and steer rollouts.")
def rollout() -> None:
    pass


@rollout.command("plan", help="Show the weight schedule, gates and objects without writing.")
@click.option("-f", "--filename", "files", multiple=True, required=True,
              help="Rollout file, and AnalysisTemplate files it uses.")
@click.option("--mesh", type=click.Choice(["istio", "local"]), default="istio", show_default=True)
@click.pass_context
def plan(ctx: click.Context, files: tuple[str, ...], mesh: str) -> None:
    from meshctl.cli.render import plan_table
    from meshctl.ops.documents import load
    from meshctl.ops.plans import PlanError, plan_for

    loaded = load(list(files))
    if loaded.problems or len(loaded.rollouts) != 1:
        for problem in loaded.problems:
            click.echo(str(problem), err=True)
        if not loaded.problems:
            click.echo(f"expected exactly one Rollout in {', '.join(files)}, found "
                       f"{len(loaded.rollouts)}", err=True)
        ctx.exit(exitcodes.INVALID)
    try:
        result = plan_for(loaded.rollouts[0], loaded.templates, mesh)
    except PlanError as exc:
        for line in exc.lines:
            click.echo(line, err=True)
        ctx.exit(exitcodes.INVALID)
    if ctx.obj["output"] == "table":
        click.echo(plan_table(result))
    else:
        emit(result, ctx.obj["output"])


@rollout.command("run", help="Drive a rollout from this process, no controller needed. The "
                 "status is saved after every decision; running again resumes.")
@click.option("-f", "--filename", "files", multiple=True, required=True,
              help="Rollout file, and AnalysisTemplate files it uses.")
@click.option("--mesh", type=click.Choice(["local", "istio"]), default="local", show_default=True)
@click.option("--state-dir", type=click.Path(file_okay=False), default=".meshctl",
              show_default=True, help="Where the status of local runs is kept.")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
@click.option("--load", "load_rate", type=float, default=50.0, show_default=True,
              help="Local mesh: requests per second meshctl sends through Envoy so the SLO "
                   "gates have traffic to judge (0: none, bring your own).")
@click.pass_context
def run(ctx: click.Context, files: tuple[str, ...], mesh: str, state_dir: str,
        timeout: float | None, load_rate: float) -> None:
    from pathlib import Path

    from meshctl.cli.progress import ProgressPrinter
    from meshctl.cli.results import exit_code_for
    from meshctl.ops.documents import load
    from meshctl.ops.local import LocalRollout, LocalRunError, local_mesh_for

    loaded = load(list(files))
    if loaded.problems or len(loaded.rollouts) != 1:
        for problem in loaded.problems:
            click.echo(str(problem), err=True)
        if not loaded.problems:
            click.echo(f"expected exactly one Rollout, found {len(loaded.rollouts)}", err=True)
        ctx.exit(exitcodes.INVALID)
    if mesh != "local":
        click.echo("rollout run --mesh istio: use `meshctl controller run` in the cluster "
                   "and `meshctl rollout start`", err=True)
        ctx.exit(exitcodes.INVALID)
    rollout_ = loaded.rollouts[0]
    printer = ProgressPrinter()
    try:
        def leftover(what: str) -> None:
            click.echo(f"stopped what a killed earlier run left: {what}", err=True)

        with _terminate_like_interrupt(), \
                local_mesh_for(rollout_, Path(state_dir), load_rate, leftover) as local_mesh:
            driver = LocalRollout(rollout_, loaded.templates, local_mesh, Path(state_dir),
                                  on_event=printer.event)
            decision = driver.run(timeout=timeout, on_pass=printer)
    except LocalRunError as exc:
        click.echo(str(exc), err=True)
        ctx.exit(exitcodes.INVALID)
    except TimeoutError as exc:
        click.echo(str(exc), err=True)
        ctx.exit(exitcodes.TIMED_OUT)
    if ctx.obj["output"] != "table":
        emit(decision.status.to_json(), ctx.obj["output"])
    ctx.exit(exit_code_for(decision.status))


@cli.command(help="Run a whole canary on this machine: real Envoy, real Prometheus, live "
             "load; a healthy version is promoted, a breaking one is rolled back.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=".meshctl",
              show_default=True, help="Where the demo records the processes it starts (so "
              "a later demo stops what a killed one left).")
@click.pass_context
def demo(ctx: click.Context, as_json: bool, state_dir: str) -> None:
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
        click.echo(f"cannot run the demo: {exc}", err=True)
        ctx.exit(exitcodes.UNREACHABLE)
    if as_json:
        click.echo(json.dumps({"scenarios": [s.to_json() for s in scenarios]}, indent=2))
    else:
        click.echo(demo_summary([s.to_json() for s in scenarios]))


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
from meshctl.cli.policy import policy  # noqa: E402
from meshctl.cli.rollouts import COMMANDS as ROLLOUT_COMMANDS  # noqa: E402

for _command in ROLLOUT_COMMANDS:
    rollout.add_command(_command)

cli.add_command(policy)
cli.add_command(controller)


def main() -> None:
    try:
        # not standalone: click returns ctx.exit()'s code instead of exiting, and leaves
        # the errors below to us
        code = cli.main(prog_name="meshctl", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else exitcodes.OK)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exitcodes.INVALID)
    except (click.exceptions.Abort, Terminated) as exc:  # click turns Ctrl-C into Abort
        if isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated):
            click.echo("terminated", err=True)
            sys.exit(exitcodes.TERMINATED)
        click.echo("interrupted", err=True)
        sys.exit(exitcodes.INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(exitcodes.INTERRUPTED)
    except Exception as exc:  # a bug: one line, the traceback only on request
        if os.environ.get("MESHCTL_DEBUG"):
            raise
        click.echo(f"meshctl: internal error: {type(exc).__name__}: {exc} "
                   "(run with MESHCTL_DEBUG=1 for the traceback)", err=True)
        sys.exit(exitcodes.INTERNAL)
