"""``meshctl controller run``: the in-cluster controller process."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

import click

from meshctl.cli import exitcodes


@click.group(help="The in-cluster controller.")
def controller() -> None:
    pass


@controller.command("run", help="Watch Rollouts and drive them (leader-elected).")
@click.option("--prometheus-url", envvar="MESHCTL_PROMETHEUS_URL", required=True,
              help="Prometheus the analysis queries go to (e.g. http://prometheus:9090).")
@click.option("--health-addr", default="0.0.0.0:8080", show_default=True,
              help="Where /healthz, /readyz and /metrics are served.")
@click.option("--workers", type=int, default=4, show_default=True)
@click.option("--lease-namespace", default="meshctl-system", show_default=True)
@click.option("--identity", envvar="POD_NAME", default=None, help="Leader election identity.")
@click.option("--resync-seconds", type=float, default=30.0, show_default=True)
@click.pass_context
def run(ctx: click.Context, prometheus_url: str, health_addr: str, workers: int,
        lease_namespace: str, identity: str | None, resync_seconds: float) -> None:
    from meshctl.adapters.errors import AdapterError
    from meshctl.adapters.kube import Kube
    from meshctl.controller.manager import Manager

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options: dict[str, Any] = ctx.obj
    try:
        if options.get("kubeconfig") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            kube = Kube.from_kubeconfig(options.get("kubeconfig"), options.get("kube_context"))
        else:
            kube = Kube.in_cluster()
    except AdapterError as exc:
        click.echo(f"cannot reach the cluster: {exc}", err=True)
        ctx.exit(exitcodes.UNREACHABLE)
    host, _, port = health_addr.rpartition(":")
    manager = Manager(kube, prometheus_url=prometheus_url, identity=identity,
                      namespace=options.get("namespace"), lease_namespace=lease_namespace,
                      workers=workers, health_host=host or "0.0.0.0", health_port=int(port),
                      resync_seconds=resync_seconds)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    manager.start()
    click.echo(f"meshctl controller {manager.identity}: health on {manager.health_url}", err=True)
    stopping.wait()
    click.echo("shutting down: finishing passes in flight, releasing the lease", err=True)
    manager.stop()
