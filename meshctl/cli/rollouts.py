"""``meshctl rollout start|status|list|history|promote|abort|pause|resume|retry|undo``.

Thin: parse, one call of a :class:`meshctl.ops.rollouts.Rollouts`, render. Rollouts are read
and steered where the global options point: the API server (default; ``--kubeconfig``,
``--context``), the controller's gRPC API (``--server`` with ``--tls-cert``, ``--tls-key``,
``--tls-ca``), or, for ``status`` and the intents, a local run's state files
(``--state-dir``).

Nothing heavy is imported at module level (``meshctl --help`` stays fast): the Kubernetes
client, gRPC and the domain are imported inside the commands.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import click

from meshctl.cli import exitcodes
from meshctl.cli.options import (
    Decorator,
    expand_files,
    fail,
    files_option,
    timeout_option,
)
from meshctl.cli.render import emit, table
from meshctl.cli.results import ENDING_EXIT, FAILURE_EXIT

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from meshctl.ops.history import History
    from meshctl.ops.views import JudgementView, JudgeMetricView, RolloutView
    from meshctl.ops.wait import WaitResult

# How a wait ended (meshctl.domain.phases.Ending values) to exit codes: one table.
WAIT_EXIT = ENDING_EXIT


def _fail(ctx: click.Context, code: int, message: str, hint: str | None = None) -> NoReturn:
    fail(ctx, code, message, hint=hint)


HINTS = {"NotFound": "'meshctl rollout list -A' shows the Rollouts there are",
         "Unavailable": "check --kubeconfig and --context (or --server); for a local run "
                        "use --state-dir"}


def complete_rollout_names(ctx: click.Context, param: click.Parameter,
                           incomplete: str) -> list[CompletionItem]:
    """Shell completion of a Rollout NAME from the cluster the global options point at (as
    parsed so far); nothing when none is reachable. Never raises: a shell must not break."""
    from click.shell_completion import CompletionItem

    root = ctx.find_root()  # the root's options, then those given after the command
    options = {k: v for k, v in root.params.items() if v is not None}
    options.update(root.obj if isinstance(root.obj, dict) else {})
    try:
        from meshctl.ops.connect import connect
        from meshctl.ops.rollouts import ClusterRollouts

        kube, namespace = connect(options.get("kubeconfig"), options.get("kube_context"),
                                  options.get("namespace"))
        source = ClusterRollouts(kube)
        try:
            names = sorted(v.name for v in source.list(namespace))
        finally:
            source.close()
    except Exception:  # completion offers what it can; a shell must not break
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def name_argument(required: bool = True) -> Decorator:
    return click.argument("name", required=required, shell_complete=complete_rollout_names)


@contextmanager
def _rollouts(ctx: click.Context, state_dir: str | None = None) -> Iterator[tuple[Any, str]]:
    """Where rollouts are (see the module docstring) and the namespace to use. Every
    failure inside becomes one line on stderr and its exit code."""
    from meshctl.ops.failures import RolloutError

    obj = ctx.obj
    source: Any = None
    try:
        if state_dir is not None:
            from pathlib import Path

            from meshctl.ops.rollouts import LocalRollouts

            yield LocalRollouts(Path(state_dir)), obj["namespace"] or "default"
        elif obj["server"]:
            from meshctl.api.client import RemoteRollouts

            source = RemoteRollouts(obj["server"], obj["tls_cert"], obj["tls_key"], obj["tls_ca"])
            yield source, obj["namespace"] or "default"
        else:
            from meshctl.ops.connect import connect
            from meshctl.ops.rollouts import ClusterRollouts

            kube, namespace = connect(obj["kubeconfig"], obj["kube_context"], obj["namespace"])
            source = ClusterRollouts(kube)
            yield source, namespace
    except RolloutError as exc:
        _fail(ctx, FAILURE_EXIT[exc.failure.value], exc.message, HINTS.get(exc.failure.value))
    finally:
        if source is not None:
            source.close()


# --- rendering ---------------------------------------------------------------------------


def _step(view: RolloutView) -> str:
    return f"{view.step}/{view.total_steps}" if view.total_steps else str(view.step)


def _labels(view: RolloutView) -> str:
    return "stable/canary/baseline" if view.weights.baseline else "stable/canary"


def _weights(view: RolloutView) -> str:
    text = view.weights.described()
    seen = view.observed_weights
    if seen is not None and seen != view.weights:
        text += f" (observed {seen.described()})"
    elif seen is None and view.not_observed:
        text += f" ({view.not_observed})"
    return text


def _measurements(view: RolloutView) -> str:
    def fmt(metric: str, value: float | None, outcome: str) -> str:
        if value is None:
            return "no data" if outcome != "Error" else "error"
        if "availability" in metric:
            return f"{value * 100:.3f}%"
        if "latency" in metric:
            return f"{value:.1f}ms"
        return f"{value:g}"

    return " ".join(f"{m.metric}={fmt(m.metric, m.value, m.outcome)}" for m in view.measurements)


def judgement_text(j: JudgementView) -> str:
    """``Fail, score 50 against stable (step-1): latency Fail +300.0% p=1e-09; ...``
    (``(step-1, envoy samples)`` when read from Envoy directly)."""
    def metric(m: JudgeMetricView) -> str:
        if m.verdict == "NoData":
            return f"{m.name} no data ({m.canary_samples}/{m.baseline_samples} samples)"
        effect = "n/a" if m.effect_size is None else f"{m.effect_size:+.1%}"
        p = "n/a" if m.p_value is None else f"{m.p_value:.2g}"
        return f"{m.name} {m.verdict} {effect} p={p}"

    score = "no score" if j.score is None else f"score {j.score:g}"
    run = j.run if j.source == "prometheus" else f"{j.run}, {j.source} samples"
    return (f"{j.verdict}, {score} against {j.baseline} ({run}): "
            + "; ".join(metric(m) for m in j.metrics))


def progress_line(view: RolloutView) -> str:
    """One line per change: phase, step, weights, latest measurements, the reason."""
    parts = [f"{view.namespace}/{view.name}", f"{view.phase:<11}",
             f"step {_step(view)}", f"{_labels(view)} {_weights(view)}"]
    if view.measurements:
        parts.append(_measurements(view))
    line = " ".join(parts)
    return f"{line} | {view.message}" if view.message else line


class Progress:
    """Timestamped plain lines on stderr, one when the rollout changes; the same on a
    terminal and in a CI log, so a pipeline's log reads like the terminal did."""

    def __init__(self) -> None:
        self._last = ""

    def __call__(self, view: RolloutView) -> None:
        line = progress_line(view)
        if line != self._last:
            self._last = line
            click.echo(f"{datetime.now(UTC).strftime('%H:%M:%S')} {line}", err=True)


def view_text(view: RolloutView) -> str:
    rows = [("Rollout", f"{view.namespace}/{view.name}"),
            ("Phase", view.phase + (f" ({view.pause_reason})" if view.pause_reason else "")),
            ("Step", _step(view)),
            ("Image", view.image or "-"),
            ("Revision", f"{view.revision or '-'} (stable {view.stable_revision or '-'})"),
            ("Weights", f"{_labels(view)} {_weights(view)}"),
            ("Analysis", _measurements(view) or "-")]
    if view.judgement is not None:
        rows.append(("Judge", judgement_text(view.judgement)))
    if view.paused:
        rows.append(("Paused", "spec.paused is true (meshctl rollout resume)"))
    if view.abort_reason:
        rows.append(("Aborted", view.abort_reason))
    rows.append(("Message", view.message or "-"))
    if not view.current:
        rows.append(("Note", f"the controller has not seen generation {view.generation} yet"))
    text = "\n".join(f"{k + ':':<10}{v}" for k, v in rows)
    if view.conditions:
        text += "\nConditions:\n" + table(
            ["  TYPE", "STATUS", "REASON", "SINCE"],
            [[f"  {c.type}", c.status, c.reason, c.last_transition_time]
             for c in view.conditions])
    return text


def _show(ctx: click.Context, view: RolloutView) -> None:
    if ctx.obj["output"] == "table":
        click.echo(view_text(view))
    else:
        emit(view.to_json(), ctx.obj["output"])


def _list_text(views: list[RolloutView]) -> str:
    def short(text: str, size: int = 60) -> str:
        return text if len(text) <= size else text[: size - 3] + "..."

    return table(["NAMESPACE", "NAME", "PHASE", "STEP", "STABLE/CANARY", "IMAGE", "MESSAGE"],
                 [[v.namespace, v.name, v.phase, _step(v),
                   f"{v.weights.stable}/{v.weights.canary}", v.image or "-",
                   short(v.message) or "-"] for v in views])


def _history_text(found: History) -> str:
    revisions = table(["ROLE", "REVISION", "IMAGE"],
                      [[r.role, r.revision or "-", r.image or "-"] for r in found.revisions])
    events = table(["TIME", "TYPE", "REASON", "MESSAGE"],
                   [[e.time, e.type, e.reason, e.message] for e in found.events])
    if not found.audit:
        return f"{revisions}\n\n{events}"
    audit = table(["TIME", "ACTION", "BY", "VIA", "COMMENT / DETAIL"],
                  [[a.time, a.action, a.by or "-", a.via or "-",
                    " | ".join(t for t in (a.comment, a.detail) if t) or "-"]
                   for a in found.audit])
    return f"{revisions}\n\n{events}\n\nAudit trail:\n{audit}"


def _finish_wait(ctx: click.Context, result: WaitResult) -> NoReturn:
    if ctx.obj["output"] != "table":
        emit(result.view.to_json(), ctx.obj["output"])
    code = WAIT_EXIT[result.ending.value]
    summary = {
        "Healthy": "is Healthy", "Degraded": f"was rolled back ({result.view.abort_reason})",
        "Paused": f"is paused waiting for a person ({result.view.pause_reason}): "
                  "meshctl rollout promote|resume|abort",
        "InvalidSpec": "has an invalid spec", "TimedOut": "did not finish in time",
    }[result.ending.value]
    view = result.view
    click.echo(f"rollout {view.namespace}/{view.name} {summary}"
               + (f": {result.message}" if result.message else ""), err=True)
    ctx.exit(code)


# --- commands ----------------------------------------------------------------------------

_wait_options = [
    click.option("--wait", is_flag=True, help="Follow the rollout and exit with its outcome: "
                 "0 Healthy, 1 rolled back, 2 invalid spec, 3 timed out, 4 paused for a person."),
    timeout_option("With --wait: give up after this long; exit 3."),
]


def _with_wait(f: Any) -> Any:
    for option in reversed(_wait_options):
        f = option(f)
    return f


@click.command("start", help="Start rolling out a new version: --image sets the first "
               "container's image in spec.template (a Rollout without one starts from its "
               "Deployment's); -f applies a Rollout file (server-side apply, validated first).")
@name_argument(required=False)
@click.option("--image", help="The new image of the first container.")
@files_option("Rollout file, and AnalysisTemplate files it uses.")
@_with_wait
@click.pass_context
def start(ctx: click.Context, name: str | None, image: str | None, files: tuple[str, ...],
          wait: bool, timeout: float | None) -> None:
    if bool(image) == bool(files):
        _fail(ctx, exitcodes.INVALID, "give exactly one of --image IMG or -f FILE",
              "meshctl rollout start web --image web:2, or meshctl rollout start -f rollout.yaml")
    if image and not name:
        _fail(ctx, exitcodes.INVALID, "rollout start --image needs the Rollout's NAME")
    from meshctl.ops.wait import wait as wait_for

    with _rollouts(ctx) as (rollouts, namespace):
        view = (rollouts.start(namespace, name, image) if image
                else rollouts.apply_files(expand_files(files), namespace, name))
        if not wait:
            return _show(ctx, view)
        click.echo(f"started {view.namespace}/{view.name} (generation {view.generation})",
                   err=True)
        result = wait_for(rollouts, view.namespace, view.name, timeout, view.generation,
                          Progress())
    _finish_wait(ctx, result)


@click.command("status", help="Show a rollout: phase, step, weights (written and observed "
               "at the data plane), latest measurements, conditions. --watch follows it and "
               "exits like start --wait.")
@name_argument()
@click.option("-w", "--watch", is_flag=True, help="Follow until Healthy, rolled back or "
              "paused for a person; exit 0, 1 or 4 (3 after --timeout).")
@timeout_option("With --watch: give up after this long; exit 3.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="A local run's state directory (meshctl rollout run) instead of a cluster.")
@click.pass_context
def status(ctx: click.Context, name: str, watch: bool, timeout: float | None,
           state_dir: str | None) -> None:
    from meshctl.ops.wait import wait as wait_for

    with _rollouts(ctx, state_dir) as (rollouts, namespace):
        if not watch:
            return _show(ctx, rollouts.get(namespace, name))
        result = wait_for(rollouts, namespace, name, timeout, 0, Progress())
    _finish_wait(ctx, result)


@click.command("list", help="List rollouts with their phase, step and weights.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="A local run's state directory instead of a cluster.")
@click.pass_context
def list_(ctx: click.Context, all_namespaces: bool, state_dir: str | None) -> None:
    with _rollouts(ctx, state_dir) as (rollouts, namespace):
        views = rollouts.list(None if all_namespaces else namespace)
    if ctx.obj["output"] == "table":
        click.echo(_list_text(views))
    else:
        emit({"rollouts": [v.to_json() for v in views]}, ctx.obj["output"])


@click.command("history", help="Revisions (current, stable, the one before the last start) "
               "and the rollout's events, oldest first.")
@name_argument()
@click.pass_context
def history(ctx: click.Context, name: str) -> None:
    with _rollouts(ctx) as (rollouts, namespace):
        found = rollouts.history(namespace, name)
    if ctx.obj["output"] == "table":
        click.echo(_history_text(found))
    else:
        emit(found.to_json(), ctx.obj["output"])


@click.command("undo", help="Go back to the pod template from before the last start "
               "(recorded by start); the controller returns traffic to it.")
@name_argument()
@_with_wait
@click.pass_context
def undo(ctx: click.Context, name: str, wait: bool, timeout: float | None) -> None:
    from meshctl.ops.wait import wait as wait_for

    with _rollouts(ctx) as (rollouts, namespace):
        view = rollouts.undo(namespace, name)
        if not wait:
            return _show(ctx, view)
        result = wait_for(rollouts, namespace, name, timeout, view.generation, Progress())
    _finish_wait(ctx, result)


def _intent_command(action: str, help_text: str) -> click.Command:
    @click.command(action, help=help_text + " The controller acts on its next pass; "
                   "`meshctl rollout status NAME --watch` follows it.")
    @name_argument()
    @click.option("--state-dir", type=click.Path(file_okay=False), default=None,
                  help="Steer a local run (meshctl rollout run) through its state directory.")
    @click.pass_context
    def command(ctx: click.Context, /, name: str, state_dir: str | None, **flags: Any) -> None:
        from meshctl.domain.intents import Action

        chosen = Action.PROMOTE_FULL if flags.get("full") else Action(action)
        with _rollouts(ctx, state_dir) as (rollouts, namespace):
            view = rollouts.request(namespace, name, chosen)
        if ctx.obj["output"] == "table":
            click.echo(f"{chosen.value} requested for {namespace}/{name} "
                       f"(now {view.phase}, step {_step(view)})")
        else:
            emit({"action": chosen.value, "rollout": view.to_json()}, ctx.obj["output"])

    return command


promote = click.option("--full", is_flag=True, help="Skip every remaining step.")(
    _intent_command("promote", "Release the current gate: end a pause, skip an analysis, "
                    "let a blue-green cut-over happen (--full: skip every remaining step)."))
abort = _intent_command("abort", "Abort: 100% of traffic back to stable first, then the "
                        "canary scales down; the rollout ends Degraded.")
pause = _intent_command("pause", "Pause the rollout where it is (sets spec.paused).")
resume = _intent_command("resume", "Resume a paused rollout (clears spec.paused; after an "
                         "inconclusive analysis, measures again).")
retry = _intent_command("retry", "Start an aborted (Degraded) rollout again from step 0.")



@click.command("approve", help="Approve the revision being rolled out, for its approval "
               "gates (spec.gates[].approval). You approve as whom the API server says your "
               "credentials are (SelfSubjectReview), or through --server as your client "
               "certificate; an approval the gates would not count is refused.")
@name_argument()
@click.option("--comment", default="", help="Why, for the audit trail.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Approve a local run (meshctl rollout run) as this machine's user.")
@click.pass_context
def approve(ctx: click.Context, name: str, comment: str, state_dir: str | None) -> None:
    with _rollouts(ctx, state_dir) as (rollouts, namespace):
        view = rollouts.approve(namespace, name, comment)
    if ctx.obj["output"] == "table":
        click.echo(f"approved {namespace}/{name} revision {view.revision or '-'} "
                   f"(now {view.phase}, step {_step(view)})")
    else:
        emit({"action": "approve", "rollout": view.to_json()}, ctx.obj["output"])


COMMANDS = [start, status, list_, history, promote, abort, pause, resume, retry, undo, approve]
