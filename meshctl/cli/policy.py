"""``meshctl policy plan|apply|audit``: zero-trust policies. Thin: parse, one ``ops`` call,
render. The Kubernetes client is imported only by the commands that reach a cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from meshctl.cli import exitcodes
from meshctl.cli.options import expand_files, fail, files_argument, files_option
from meshctl.cli.render import emit, table
from meshctl.cli.results import FAILURE_EXIT

if TYPE_CHECKING:
    from meshctl.domain.audit import Finding
    from meshctl.domain.spec import Rollout
    from meshctl.ops.policies import Executed

# The domain's Severity values and Istio's default root namespace, written out so that
# `meshctl --help` imports nothing of the domain (checked by the unit tests).
SEVERITIES = ["low", "medium", "high"]
ROOT_NAMESPACE = "istio-system"


@click.group(help="Zero trust: mutual TLS and authorization policies for Rollouts, and an "
             "audit of the mesh's security configuration.")
def policy() -> None:
    pass


def _fail(ctx: click.Context, code: int, lines: list[str], hint: str | None = None) -> NoReturn:
    fail(ctx, code, *lines, hint=hint)


@contextmanager
def _cluster(ctx: click.Context, hint: str | None = None) -> Iterator[Any]:
    """A connected client; a failure becomes one line and the exit code of its kind (5: the
    cluster cannot be reached or used, 2: it rejected what meshctl sent or lacks its
    namespace), as for ``meshctl rollout``."""
    from meshctl.ops.connect import cli_kube
    from meshctl.ops.failures import RolloutError

    try:
        with cli_kube(ctx.obj["kubeconfig"], ctx.obj["kube_context"]) as kube:
            yield kube
    except RolloutError as exc:
        code = FAILURE_EXIT[exc.failure.value]
        _fail(ctx, code, [exc.message],
              (hint or "check --kubeconfig and --context") if code == exitcodes.UNREACHABLE
              else None)


def _rollouts(ctx: click.Context, *files: tuple[str, ...]) -> list[Rollout]:
    from meshctl.ops.documents import load

    sources = expand_files(*files)
    if not sources:
        _fail(ctx, exitcodes.INVALID, ["no files given"], "-f FILE (repeatable, or a directory)")
    loaded = load(sources)
    lines = [str(p) for p in loaded.problems]
    if not lines and not loaded.rollouts:
        lines.append(f"no Rollout in {', '.join(sources)}")
    if lines:
        _fail(ctx, exitcodes.INVALID, lines)
    return loaded.rollouts


def _detail(item: dict[str, Any]) -> str:
    changes = [c["path"] for c in item["changes"]]
    parts = [item["reason"]] if item["reason"] else []
    if changes and item["action"] != "create":
        parts.append("changes " + ", ".join(changes))
    if item.get("note"):
        parts.append(item["note"])
    return "; ".join(parts) or "-"


def _render_plans(ctx: click.Context, plans: list[dict[str, Any]]) -> None:
    if ctx.obj["output"] != "table":
        emit({"rollouts": plans}, ctx.obj["output"])
        return
    for plan in plans:
        rows = [[a["action"] + (" (borrowed)" if a["borrowed"] else ""), a["kind"], a["name"],
                 _detail(a)] for a in plan["actions"]]
        click.echo(f"Rollout {plan['namespace']}/{plan['name']}")
        click.echo(table(["ACTION", "KIND", "NAME", "DETAIL"], rows))


def _plan_view(rollout: Rollout, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": rollout.name, "namespace": rollout.namespace, "actions": items}


@policy.command("plan", help="Show the policy objects a Rollout's security needs and what "
                "would change in the cluster, writing nothing.")
@files_option("Rollout file.")
@files_argument()
@click.option("--offline", is_flag=True, help="Plan against an empty namespace, no cluster.")
@click.pass_context
def plan_command(ctx: click.Context, files: tuple[str, ...], more_files: tuple[str, ...],
                 offline: bool) -> None:
    from meshctl.ops import policies

    rollouts = _rollouts(ctx, files, more_files)
    if offline:
        plans = [_plan_view(r, [a.as_dict() for a in policies.offline_plan(r)]) for r in rollouts]
    else:
        with _cluster(ctx, "use --offline to plan against an empty namespace") as kube:
            plans = [_plan_view(r, [a.as_dict() for a in policies.plan(kube, r)])
                     for r in rollouts]
    _render_plans(ctx, plans)


@policy.command("apply", help="Create, update or delete the policy objects so the cluster "
                "holds what each Rollout's security asks for.")
@files_option("Rollout file.")
@files_argument()
@click.pass_context
def apply_command(ctx: click.Context, files: tuple[str, ...], more_files: tuple[str, ...]) -> None:
    from meshctl.ops import policies

    rollouts = _rollouts(ctx, files, more_files)
    with _cluster(ctx) as kube:
        done: list[tuple[Rollout, list[Executed]]] = [(r, policies.converge(kube, r))
                                                     for r in rollouts]
    _render_plans(ctx, [_plan_view(r, [o.as_dict() for o in outcomes]) for r, outcomes in done])


def _render_findings(ctx: click.Context, findings: list[Finding]) -> None:
    from meshctl.domain.audit import Severity

    counts = {s.value: sum(f.severity is s for f in findings) for s in Severity}
    if ctx.obj["output"] != "table":
        emit({"findings": [f.as_dict() for f in findings], "summary": counts},
             ctx.obj["output"])
        return
    for f in findings:
        click.echo(f"{f.severity.value.upper():<6} {f.rule}  {f.object}\n"
                   f"       {f.message}\n       fix: {f.fix}")
    summary = ", ".join(f"{counts[s.value]} {s.value}" for s in reversed(Severity))
    click.echo(f"{len(findings)} finding(s): {summary}" if findings else "no findings")


@policy.command("audit", help="Report mTLS and authorization misconfigurations in the cluster "
                "(one namespace, or all) and/or in files, with severity. Exit 1 when a "
                "finding is at or above --fail-on.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Audit every namespace.")
@files_option("Audit objects from files; without -n or -A the cluster is not read.")
@files_argument()
@click.option("--fail-on", type=click.Choice(SEVERITIES), default="high", show_default=True)
@click.option("--root-namespace", default=ROOT_NAMESPACE, show_default=True,
              help="Istio's root namespace: mesh-wide policies live there.")
@click.pass_context
def audit_command(ctx: click.Context, all_namespaces: bool, files: tuple[str, ...],
                  more_files: tuple[str, ...], fail_on: str, root_namespace: str) -> None:
    from meshctl.domain.audit import Severity, at_or_above
    from meshctl.ops import policies

    namespace = ctx.obj["namespace"]
    files = tuple(expand_files(files, more_files))
    if namespace and all_namespaces:
        _fail(ctx, exitcodes.INVALID, ["use either --namespace or --all-namespaces"])
    objects: list[dict[str, Any]] = []
    if files:
        read = policies.read_files(files)
        if read.problems:
            _fail(ctx, exitcodes.INVALID, read.problems)
        objects += read.objects
    scope = None if all_namespaces or (files and not namespace) else namespace or "default"
    if not files or namespace or all_namespaces:
        with _cluster(ctx) as kube:
            objects += policies.read_cluster(kube, scope, root_namespace)
    findings = policies.audit_objects(objects, scope, root_namespace)
    _render_findings(ctx, findings)
    if at_or_above(findings, Severity(fail_on)):
        ctx.exit(exitcodes.ROLLED_BACK)
