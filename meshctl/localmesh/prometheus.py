"""Run the system's Prometheus (Debian package ``prometheus``) for the local mesh.

:class:`Prometheus` writes a configuration that scrapes the given targets (Envoy's
``/stats/prometheus``) every ``scrape_interval`` (1 s by default, evaluation likewise), keeps
its TSDB in a directory of the mesh's work directory, listens on a free loopback port, and
waits until it is ready and every target has been scraped successfully. Rate windows in
queries against it must be at least 4x the scrape interval (``4s`` at 1 s; use ``5s`` or more).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from meshctl.localmesh.procs import (
    LocalMeshError,
    ManagedProcess,
    free_port,
    http_get,
    wait_until,
)

PROMETHEUS_BIN_ENV = "MESHCTL_PROMETHEUS_BIN"


@dataclass(frozen=True)
class ScrapeTarget:
    """One scrape job: ``address`` is ``host:port``."""

    job: str
    address: str
    metrics_path: str = "/metrics"


def prometheus_binary() -> Path:
    """``$MESHCTL_PROMETHEUS_BIN``, else ``prometheus`` on ``PATH``."""
    override = os.environ.get(PROMETHEUS_BIN_ENV)
    found = override or shutil.which("prometheus")
    if not found:
        raise LocalMeshError(
            f"no prometheus binary: install the system package 'prometheus' or set {PROMETHEUS_BIN_ENV}"
        )
    return Path(found)


def config(
    targets: Sequence[ScrapeTarget], *, scrape_interval: str, evaluation_interval: str
) -> dict[str, object]:
    """The prometheus.yml (as JSON, which is YAML) scraping ``targets``."""
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
            "scrape_timeout": scrape_interval,
        },
        "scrape_configs": [
            {
                "job_name": target.job,
                "metrics_path": target.metrics_path,
                "static_configs": [{"targets": [target.address]}],
            }
            for target in targets
        ],
    }


class Prometheus:
    """One Prometheus process scraping ``targets``; :attr:`url` once started."""

    def __init__(
        self,
        targets: Sequence[ScrapeTarget],
        *,
        workdir: Path,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        port: int = 0,
        binary: Path | None = None,
    ) -> None:
        self.targets = tuple(targets)
        self.scrape_interval = scrape_interval
        self._workdir = workdir
        self._config = config(
            targets, scrape_interval=scrape_interval, evaluation_interval=evaluation_interval
        )
        self._requested_port = port
        self._binary = binary
        self._port = 0
        self._process: ManagedProcess | None = None

    def start(self, timeout: float = 30.0, attempts: int = 3) -> None:
        """Start and wait until ready and every target is up.

        With ``port=0`` a free port is picked; if another process takes it first, Prometheus
        exits and the start is retried on a new port (up to ``attempts`` times).
        """
        self._workdir.mkdir(parents=True, exist_ok=True)
        config_path = self._workdir / "prometheus.yml"
        config_path.write_text(json.dumps(self._config, indent=1))
        for attempt in range(1, attempts + 1):
            self._port = self._requested_port or free_port()
            process = self._spawn(config_path)
            try:
                wait_until(self.ready, timeout=timeout, what="/-/ready", process=process)
                break
            except LocalMeshError:
                process.stop()
                if attempt == attempts or self._requested_port or process.alive:
                    raise
        wait_until(self.targets_up, timeout=timeout, what="its targets to be up", process=self._process)

    def restart(self, timeout: float = 30.0) -> None:
        """Start again after it stopped (or died): the same port, the same data directory
        (what it had stored survives), then wait as :meth:`start` does."""
        self.stop()
        process = self._spawn(self._workdir / "prometheus.yml", keep_data=True)
        wait_until(self.ready, timeout=timeout, what="/-/ready", process=process)
        wait_until(self.targets_up, timeout=timeout, what="its targets to be up", process=process)

    def _spawn(self, config_path: Path, keep_data: bool = False) -> ManagedProcess:
        data = self._workdir / "prometheus-data"
        if not keep_data:
            shutil.rmtree(data, ignore_errors=True)
        argv = [
            str(self._binary or prometheus_binary()),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{self._port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        self._process = ManagedProcess("prometheus", argv, log_path=self._workdir / "prometheus.log")
        self._process.start()
        return self._process

    def stop(self, timeout: float = 5.0) -> None:
        if self._process is not None:
            self._process.stop(timeout)

    def __enter__(self) -> Prometheus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise LocalMeshError("Prometheus was not started")
        return self._process

    def ready(self) -> bool:
        answer = http_get(f"{self.url}/-/ready", timeout=1.0)
        return answer is not None and answer[0] == 200

    def targets_up(self) -> bool:
        """True when every configured target was scraped successfully at least once."""
        answer = http_get(f"{self.url}/api/v1/targets?state=active", timeout=1.0)
        if answer is None or answer[0] != 200:
            return False
        active = json.loads(answer[1]).get("data", {}).get("activeTargets", [])
        return len(active) >= len(self.targets) and all(t.get("health") == "up" for t in active)
