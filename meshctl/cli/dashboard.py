"""``meshctl rollout report NAME -o html`` and ``meshctl dashboard``: a rollout's timeline
as a self-contained HTML file, and the live dashboard (:mod:`meshctl.web`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from meshctl.cli import exitcodes
from meshctl.cli.options import fail, tls_files
from meshctl.cli.render import emit, table
from meshctl.cli.rollouts import _rollouts, name_argument

if TYPE_CHECKING:
    from meshctl.domain.timeline import Timeline
    from meshctl.ops.views import RolloutView

STATE_DIR_HELP = "A local run's state directory (meshctl rollout run) instead of a cluster."
PROMETHEUS_HELP = ("Prometheus URL (http://host:port): each metric's query over the "
                   "rollout's span fills the charts between the judged measurements.")


def write_report(ctx: click.Context, path: str,
                 sections: Sequence[tuple[Timeline, RolloutView | None]], title: str = "") -> None:
    """The HTML report of ``sections`` to ``path`` ("-": standard output)."""
    from meshctl.web.assets import MissingAsset
    from meshctl.web.report import report as render

    try:
        text = render(sections, title)
    except MissingAsset as exc:
        fail(ctx, exitcodes.INTERNAL, str(exc))
    if path == "-":
        click.echo(text, nl=False)
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        fail(ctx, exitcodes.INVALID, f"--report/--to: cannot write {path}: {exc.strerror}")
    click.echo(f"report written to {path}", err=True)


@click.command("report", help="A rollout's timeline: the canary weight written and "
               "observed, each SLO metric with its threshold, steps, verdicts, human actions "
               "and events. -o html writes one self-contained HTML file with the charts "
               "(opens offline; attach it to a change ticket); -o json the data; the "
               "default, a table of the events.")
@name_argument()
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, help=STATE_DIR_HELP)
@click.option("--prometheus", default=None, help=PROMETHEUS_HELP)
@click.option("--to", "to_file", type=click.Path(dir_okay=False), default="-",
              show_default=True, help="Write the report to this file ('-': standard output).")
@click.pass_context
def report(ctx: click.Context, name: str, state_dir: str | None, prometheus: str | None,
           to_file: str) -> None:
    output = ctx.obj["output"]
    with _rollouts(ctx, state_dir) as (rollouts, namespace):
        if not hasattr(rollouts, "timeline"):
            fail(ctx, exitcodes.INVALID, "rollout report reads the cluster or a local run, not "
                 "--server", hint="use --kubeconfig/--context, or --state-dir")
        timeline = rollouts.timeline(namespace, name, prometheus)
        view = rollouts.get(namespace, name)
    if output == "html":
        return write_report(ctx, to_file, [(timeline, view)])
    if output == "table":
        return click.echo(_marks_text(timeline))
    emit(timeline.to_json(), output)


def _marks_text(timeline: Timeline) -> str:
    return table(["TIME", "KIND", "EVENT"],
                 [[m.at.strftime("%Y-%m-%dT%H:%M:%SZ"), m.kind.value, m.label]
                  for m in timeline.marks])


@click.command("dashboard", help="Serve a live dashboard of the rollouts (all rollouts; one "
               "rollout's timeline chart, history and events), updating every second. Reads "
               "where the global options point (the cluster) or --state-dir. Anyone who can "
               "reach it may read; acting (promote, abort, pause, resume, retry) needs the "
               "login link printed at start, unless --read-only.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, help=STATE_DIR_HELP)
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Address to listen on (the loopback address: only this machine).")
@click.option("--port", type=click.IntRange(0, 65535), default=8470, show_default=True,
              help="Port (0: a free one).")
@click.option("--read-only", is_flag=True, help="No actions at all: no login link is made.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace.")
@click.option("--prometheus", default=None, help=PROMETHEUS_HELP)
@click.pass_context
def dashboard(ctx: click.Context, state_dir: str | None, address: str, port: int,
              read_only: bool, all_namespaces: bool, prometheus: str | None) -> None:
    from meshctl.web.dashboard import Dashboard, Source, new_token, server

    with _rollouts(ctx, state_dir) as (rollouts, namespace):
        if not hasattr(rollouts, "timeline"):
            fail(ctx, exitcodes.INVALID, "the dashboard reads the cluster or a local run, not "
                 "--server", hint="use --kubeconfig/--context, or --state-dir")
        listed = None if all_namespaces else namespace
        source: Source = rollouts  # what the pages read and act through (checked by mypy)
        watched = None
        if state_dir is None:  # the cluster: listed from a watch, not a list per poll
            from meshctl.ops.connect import connect
            from meshctl.ops.watched import WatchedRollouts

            obj = ctx.obj
            watch_kube, _ = connect(obj["kubeconfig"], obj["kube_context"], obj["namespace"])
            source = watched = WatchedRollouts(rollouts, watch_kube, listed)
        token = None if read_only else new_token()
        board = Dashboard(source, token, listed, prometheus)
        try:
            httpd = server(board, address, port)
        except OSError as exc:
            import errno

            fail(ctx, exitcodes.INVALID, f"--address/--port: cannot listen on {address}:{port}: "
                 f"{exc.strerror}", hint="--port 0 picks a free port" if exc.errno ==
                 errno.EADDRINUSE else "give an address of this machine, e.g. 127.0.0.1")
        host, bound = httpd.server_address[0], httpd.server_address[1]
        _stop_on_signals()
        _announce(str(host), int(bound), token)
        try:
            httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            httpd.server_close()
            if watched is not None:
                watched.close()


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM end the dashboard the same way, with exit 0: even when it was
    started with SIGINT ignored (as a background job of a shell without job control)."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def _announce(host: str, port: int, token: str | None) -> None:
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"dashboard: http://{shown}:{port}/ (read-only)", err=True)
    if token is not None:
        click.echo(f"to act (promote, abort, ...) as you: http://{shown}:{port}/login?token="
                   f"{token}  (keep it private)", err=True)
    click.echo("Ctrl-C stops it.", err=True)



class ControllerDashboard:
    """The dashboard a controller serves (``controller run --dashboard-addr``): HTTPS with
    the gRPC API's certificates, and its reader and operator identities."""

    def __init__(self, httpd: Any) -> None:
        import threading

        self.httpd = httpd
        host, port = httpd.server_address[:2]
        self.address = f"{host}:{port}"
        self._thread = threading.Thread(target=httpd.serve_forever, name="dashboard",
                                        kwargs={"poll_interval": 0.5}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def controller_dashboard(ctx: click.Context, kube: Any, addr: str,
                         files: tuple[str | None, ...], readers: tuple[str, ...],
                         operators: tuple[str, ...]) -> ControllerDashboard:
    """Started; every replica serves it (actions are only recorded, the leader acts)."""
    from meshctl.ops.rollouts import ClusterRollouts
    from meshctl.web.dashboard import Dashboard, Identities, ServeTLS, server

    cert, key, client_ca = tls_files(ctx, "--dashboard-addr", files, readers, operators,
                                     "it is served over HTTPS to client certificates")
    host, _, port = addr.rpartition(":")
    board = Dashboard(ClusterRollouts(kube), None, ctx.obj.get("namespace"),
                      identities=Identities(frozenset(readers), frozenset(operators)))
    try:
        return ControllerDashboard(server(board, host or "0.0.0.0", int(port),
                                          ServeTLS(cert, key, client_ca)))
    except (OSError, ValueError, OverflowError) as exc:
        fail(ctx, exitcodes.INVALID, f"--dashboard-addr: cannot serve the dashboard on {addr}: "
             f"{exc}", hint="give HOST:PORT, e.g. 0.0.0.0:8443")
