"""``meshctl controller run``: the in-cluster controller process."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import click

from meshctl.cli import exitcodes
from meshctl.cli.options import fail, tls_files


@click.group(help="The in-cluster controller.")
def controller() -> None:
    pass


@controller.command("run", help="Watch Rollouts and drive them (leader-elected).")
@click.option("--prometheus-url", envvar="MESHCTL_PROMETHEUS_URL", required=True,
              help="Prometheus the analysis queries go to (e.g. http://prometheus:9090).")
@click.option("--istiod-debug-url", envvar="MESHCTL_ISTIOD_DEBUG_URL", default=None,
              help="istiod's debug API, where the weights the proxies apply are read "
              "(what istioctl proxy-status reads), e.g. https://istiod.istio-system:15014.")
@click.option("--istiod-token-file", envvar="MESHCTL_ISTIOD_TOKEN_FILE", default=None,
              type=click.Path(dir_okay=False),
              help="A bearer token for istiod's debug API (a projected ServiceAccount token "
              "with audience istio-ca); re-read on every request.")
@click.option("--trust-stored-weights", is_flag=True, envvar="MESHCTL_TRUST_STORED_WEIGHTS",
              help="Run without istiod: steps proceed on the weights as written, and status "
              "says 'stored, not observed'. One of this or --istiod-debug-url is required.")
@click.option("--observe-timeout", type=float, default=30.0, show_default=True,
              help="Seconds a step waits for its weights at the data plane before it says "
              "it is held (it keeps waiting; it never proceeds on a write alone).")
@click.option("--health-addr", default="0.0.0.0:8080", show_default=True,
              help="Where /healthz, /readyz and /metrics are served.")
@click.option("--workers", type=int, default=4, show_default=True,
              help="Workers that take any Rollout's pass; one more is kept for what someone "
              "asked (an abort first, a new template, a canary just ready).")
@click.option("--lease-namespace", default="meshctl-system", show_default=True)
@click.option("--lease-name", default="meshctl-controller", show_default=True)
@click.option("--identity", envvar="POD_NAME", default=None, help="Leader election identity.")
@click.option("--resync-seconds", type=float, default=0.0, show_default=True,
              help="Reconcile every Rollout again this often, as a safety net (0: never; "
              "the watches report every change).")
@click.option("--lease-seconds", type=click.IntRange(min=2), default=15, show_default=True,
              help="How long a Lease holds without renewal: the longest a dead replica's "
              "Rollouts wait for a survivor (renewed every third of it).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info",
              show_default=True, help="debug also logs every reconcile pass with its times.")
@click.option("--shards", type=click.IntRange(min=1), default=1, show_default=True,
              help="Split the Rollouts into this many shards (a stable hash of namespace/name), "
              "each owned through its own Lease; run several replicas with the same value. "
              "Change it only with every replica stopped.")
@click.option("--grpc-addr", default=None, help="Serve the gRPC API (meshctl.v1.Rollouts) "
              "at HOST:PORT, mutual TLS required (port 0: any free port).")
@click.option("--grpc-cert", type=click.Path(dir_okay=False), help="gRPC server certificate.")
@click.option("--grpc-key", type=click.Path(dir_okay=False), help="gRPC server key.")
@click.option("--grpc-client-ca", type=click.Path(dir_okay=False),
              help="CA bundle that signs the clients' certificates.")
@click.option("--grpc-reader", "grpc_readers", multiple=True, help="An identity (certificate "
              "CN or SAN) that may list, get and watch. Repeatable.")
@click.option("--grpc-operator", "grpc_operators", multiple=True, help="An identity that may "
              "also promote, abort, pause, resume and retry. Repeatable.")
@click.option("--notify", "notify", multiple=True, metavar="[slack=]URL",
              help="Send every Rollout's notifications here too: CloudEvents 1.0 to URL, or "
                   "Slack-compatible text with slack=URL (release gates; repeatable).")
@click.option("--dashboard-addr", default=None, help="Also serve the dashboard at HOST:PORT "
              "over HTTPS with the gRPC certificates: readers read, operators may act. Off "
              "by default.")
@click.pass_context
def run(ctx: click.Context, prometheus_url: str, istiod_debug_url: str | None,
        istiod_token_file: str | None, trust_stored_weights: bool, observe_timeout: float,
        health_addr: str, workers: int,
        lease_namespace: str, lease_name: str, identity: str | None, resync_seconds: float,
        lease_seconds: int, log_level: str, shards: int,
        grpc_addr: str | None, grpc_cert: str | None, grpc_key: str | None,
        grpc_client_ca: str | None, grpc_readers: tuple[str, ...],
        grpc_operators: tuple[str, ...], dashboard_addr: str | None,
        notify: tuple[str, ...] = ()) -> None:
    from meshctl.controller.manager import Manager
    from meshctl.controller.setup import SetupError, cluster_client, data_plane

    options: dict[str, Any] = ctx.obj
    sinks = _sinks(ctx, notify)
    try:
        observed = data_plane(istiod_debug_url, istiod_token_file, trust_stored_weights)
        kube = cluster_client(options.get("kubeconfig"), options.get("kube_context"))
    except SetupError as exc:
        fail(ctx, exitcodes.UNREACHABLE if exc.unreachable else exitcodes.INVALID,
             exc.message, hint=exc.hint)
    logging.basicConfig(level=getattr(logging, log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, _, port = health_addr.rpartition(":")
    manager = Manager(kube, prometheus_url=prometheus_url, data_plane=observed,
                      observe_timeout=observe_timeout, identity=identity,
                      namespace=options.get("namespace"), lease_namespace=lease_namespace,
                      lease_name=lease_name, workers=workers, health_host=host or "0.0.0.0",
                      health_port=int(port), resync_seconds=resync_seconds, shards=shards,
                      lease_seconds=lease_seconds, renew_seconds=lease_seconds / 3,
                      sinks=sinks)
    api = None
    if grpc_addr is not None:
        api = _grpc_api(ctx, kube, grpc_addr, (grpc_cert, grpc_key, grpc_client_ca),
                        grpc_readers, grpc_operators)
    board = None
    if dashboard_addr is not None:
        from meshctl.cli.dashboard import controller_dashboard

        board = controller_dashboard(ctx, kube, dashboard_addr, (grpc_cert, grpc_key,
                                     grpc_client_ca), grpc_readers, grpc_operators)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    manager.start()
    click.echo(f"meshctl controller {manager.identity}: health on {manager.health_url}", err=True)
    if api is not None:
        click.echo(f"meshctl controller {manager.identity}: gRPC API on {api.address} "
                   "(mutual TLS)", err=True)
    if board is not None:
        click.echo(f"meshctl controller {manager.identity}: dashboard on https://"
                   f"{board.address}/ (client certificates)", err=True)
    stopping.wait()
    click.echo("shutting down: finishing passes in flight, releasing the lease", err=True)
    if board is not None:
        board.stop()
    if api is not None:
        api.stop(grace=5)
    manager.stop()


def _sinks(ctx: click.Context, flags: tuple[str, ...]) -> tuple[Any, ...]:
    """The --notify sinks, or exit 2 naming the bad one."""
    from meshctl.domain.notifications import sink_of_flag

    sinks, problems = [], []
    for i, text in enumerate(flags):
        sink, found = sink_of_flag(text, i)
        problems += [str(p) for p in found]
        if sink is not None:
            sinks.append(sink)
    if problems:
        fail(ctx, exitcodes.INVALID, *problems)
    return tuple(sinks)


def _grpc_api(ctx: click.Context, kube: Any, addr: str, files: tuple[str | None, ...],
              readers: tuple[str, ...], operators: tuple[str, ...]) -> Any:
    """The gRPC API, started; it serves from every replica (intents are only recorded,
    the leader acts on them)."""
    from meshctl.api.server import Access, RolloutServer, ServerTLS
    from meshctl.ops.rollouts import ClusterRollouts

    cert, key, client_ca = tls_files(ctx, "--grpc-addr", files, readers, operators,
                                     "mutual TLS is required")
    try:
        tls = ServerTLS.from_files(cert, key, client_ca)
        return RolloutServer(ClusterRollouts(kube), addr, tls, Access.of(readers, operators),
                             default_namespace=ctx.obj.get("namespace") or "default")
    except (OSError, RuntimeError) as exc:
        fail(ctx, exitcodes.INVALID, f"cannot serve the gRPC API on {addr}: {exc}")
