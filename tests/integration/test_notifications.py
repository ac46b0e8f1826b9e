"""Notifications to real local HTTPS sinks (real TLS, CA from testworld.certs): CloudEvents
1.0 in structured mode read back with the CloudEvents SDK, a Slack-compatible text, and a
dead sink (accepts, never answers) that does not hold back a rollback: the reconcile pass
that aborts returns, with 100% written back to stable, while that sink's delivery is still
hanging."""

from __future__ import annotations

import dataclasses
import http.server
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_structured_event

from meshctl.adapters.notifications import Notifier
from meshctl.domain.engine import Decision
from meshctl.domain.intents import Intents
from meshctl.domain.phases import Phase
from meshctl.domain.spec import Rollout
from meshctl.domain.validation import load_document
from meshctl.ops.reconcile import _notify
from tests.unit.sim import Sim
from testworld.certs import CertificateAuthority


class Sink:
    """An HTTPS receiver that records each POST (headers and body) and answers 200; with
    ``hang``, it reads the request and then waits until released."""

    def __init__(self, directory: Path, ca: CertificateAuthority, name: str,
                 hang: bool = False) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                sink.arrived.set()
                if hang:
                    sink.release.wait(30)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        cert, key = ca.issue(name, dns=["localhost"], ips=["127.0.0.1"],
                             server=True).write(directory / name)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority("sinks CA")


@pytest.fixture
def sinks(tmp_path: Path, ca: CertificateAuthority) -> Iterator[dict[str, Sink]]:
    found = {"events": Sink(tmp_path, ca, "events"), "chat": Sink(tmp_path, ca, "chat"),
             "dead": Sink(tmp_path, ca, "dead", hang=True)}
    yield found
    for sink in found.values():
        sink.stop()


def rollout(sinks: list[dict[str, Any]]) -> Rollout:
    doc = {"apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
           "metadata": {"name": "payments", "namespace": "pay"},
           "spec": {"service": "payments", "workloadRef": {"name": "payments"},
                    "trafficRouting": {"istio": {
                        "virtualService": {"name": "payments"},
                        "destinationRule": {"name": "payments", "stableSubset": "stable",
                                            "canarySubset": "canary"}}},
                    "notifications": sinks,
                    "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}},
                                                      {"setWeight": 60}]}}}}
    found = load_document(doc)
    assert isinstance(found, Rollout)
    return found


@dataclasses.dataclass
class NotifyingSim(Sim):
    """The in-memory world whose passes send their notices as the reconcile pass does."""

    rollout: Rollout | None = None
    notifier: Notifier | None = None
    sinks: tuple[Any, ...] = ()

    def reconcile(self) -> Decision:
        decision = super().reconcile()
        assert self.rollout is not None and self.notifier is not None
        from meshctl.ops.reconcile import Ports

        ports = Ports(None, None, None, None, notifier=self.notifier,  # type: ignore[arg-type]
                      sinks=self.sinks)
        _notify(self.rollout, decision.status, list(decision.events), ports, self.now)
        return decision


def drained(notifier: Notifier, timeout: float = 30.0) -> bool:
    done = threading.Event()

    def wait() -> None:
        notifier.queue.join()
        done.set()

    threading.Thread(target=wait, daemon=True).start()
    return done.wait(timeout)


def test_cloudevents_and_slack_sinks_get_the_rollouts_story(sinks, ca):
    pem = ca.cert_pem.decode()
    spec = rollout([{"name": "events", "url": sinks["events"].url, "caBundle": pem},
                    {"name": "chat", "url": sinks["chat"].url, "format": "slack",
                     "caBundle": pem, "events": ["paused", "promoted", "rolled-back"]}])
    notifier = Notifier()
    sim = NotifyingSim(spec.spec, rollout=spec, notifier=notifier,
                       now=datetime.now(UTC).replace(microsecond=0))
    sim.run(until=lambda s: s.status.phase is Phase.PAUSED)
    sim.intents = Intents(promote="p1")
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    assert drained(notifier)
    events = []
    for headers, body in sinks["events"].got:
        assert headers["content-type"].startswith("application/cloudevents+json")
        events.append(from_structured_event(HTTPMessage(headers, body)))
    kinds = [e.get_type() for e in events]
    assert kinds[0] == "io.meshctl.rollout.started"
    assert "io.meshctl.rollout.paused" in kinds and kinds[-1] == "io.meshctl.rollout.promoted"
    first = events[0]
    assert first.get_source() == "/apis/meshctl.io/v1alpha1/namespaces/pay/rollouts/payments"
    assert first.get_attributes()["specversion"] == "1.0"
    assert first.get_data()["rollout"] == "payments"
    texts = [json.loads(body)["text"] for _, body in sinks["chat"].got]
    assert [t.split(": ", 1)[0] for t in texts] == ["*pay/payments* paused",
                                                     "*pay/payments* promoted"]
    assert notifier.failed == 0


def test_a_dead_sink_never_delays_the_rollback(sinks, ca):
    """Given a sink that accepts and never answers; when the rollout is aborted; then the
    pass that aborts returns with 100% stable written while that delivery still hangs."""
    pem = ca.cert_pem.decode()
    spec = rollout([{"name": "dead", "url": sinks["dead"].url, "caBundle": pem}])
    notifier = Notifier(attempts=1, timeout=30.0)
    sim = NotifyingSim(spec.spec, rollout=spec, notifier=notifier)
    sim.run(until=lambda s: s.status.phase is Phase.PAUSED)
    assert sinks["dead"].arrived.wait(10)  # the first notice is stuck at the sink
    sim.intents = Intents(abort="a1")
    aborting = sim.reconcile()
    assert aborting.traffic.weights.canary == 0
    assert aborting.status.phase in (Phase.ABORTING, Phase.DEGRADED)
    assert not sinks["dead"].release.is_set() and notifier.pending() > 0
    sim.run()
    assert sim.status.phase is Phase.DEGRADED
    sinks["dead"].release.set()
    assert drained(notifier)
    delivered = [json.loads(body)["type"] for _, body in sinks["dead"].got]
    assert "io.meshctl.rollout.aborted" in delivered
    assert delivered[-1] == "io.meshctl.rollout.rolled-back"


def test_an_untrusted_sink_is_never_sent_anything(sinks):
    spec = rollout([{"name": "events", "url": sinks["events"].url,
                     "caBundle": CertificateAuthority("other").cert_pem.decode()}])
    notifier = Notifier(attempts=1)
    sim = NotifyingSim(spec.spec, rollout=spec, notifier=notifier).run(passes=3)
    # a sink refused never holds the rollout: it went on to its pause
    assert (sim.status.phase, sim.status.current_step) == (Phase.PAUSED, 1)
    assert drained(notifier)
    assert sinks["events"].got == [] and notifier.failed > 0


def test_an_unreachable_sink_is_counted_failed():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = rollout([{"name": "gone", "url": f"http://127.0.0.1:{port}/"}])
    notifier = Notifier(attempts=2, timeout=1.0)
    NotifyingSim(spec.spec, rollout=spec, notifier=notifier).run(passes=2)
    assert drained(notifier)
    assert notifier.failed >= 1 and notifier.delivered == 0



def test_the_controllers_own_sink_gets_every_rollouts_notices(sinks, ca):
    """`meshctl controller run --notify slack=URL`: a sink for Rollouts that name none."""
    from meshctl.domain.notifications import sink_of_flag

    sink, problems = sink_of_flag(f"slack={sinks['chat'].url}", 0)
    assert sink is not None and not problems
    sink = dataclasses.replace(sink, ca_bundle=ca.cert_pem.decode())
    spec = rollout([])
    notifier = Notifier()
    sim = NotifyingSim(spec.spec, rollout=spec, notifier=notifier, sinks=(sink,))
    sim.run(until=lambda s: s.status.phase is Phase.PAUSED)
    assert drained(notifier)
    texts = [json.loads(body)["text"] for _, body in sinks["chat"].got]
    assert texts[0].startswith("*pay/payments* started") and any(" paused: " in t for t in texts)
