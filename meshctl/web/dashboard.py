"""``meshctl dashboard``: the rollouts of a cluster or of a local run's state directory in a
browser, updating live (the pages poll the JSON API every second, no reload).

Pages: ``/`` lists every rollout (phase, step, weights written and observed, SLO status,
gates waiting, since when); ``/rollouts/NS/NAME`` shows one with its timeline chart and
events. Served by the standard library's threaded HTTP server, on the loopback address by
default.

Who may act: everyone who can reach the port may read. Acting (promote, abort, pause,
resume, retry) needs the token printed at start: opening ``/login?token=...`` sets it as an
HttpOnly, SameSite=Strict cookie; each action is a POST carrying that cookie and the
``X-Meshctl-Action`` header (which a cross-site form cannot send), and is carried out with
the credentials the dashboard was started with, exactly as ``meshctl rollout <action>``.
``--read-only`` makes no token at all. Served over HTTPS with a client CA (``meshctl dashboard
--serve-cert/--serve-key/--client-ca``, or the controller's ``--dashboard-addr`` with its gRPC
certificates), the caller is its client certificate instead, as in the gRPC API: an
identity (CN or SAN) listed as a reader reads, one listed as an operator may also act, any
other is refused; no token is made then. Requests naming another host than the one served are
refused (a web page elsewhere cannot reach the dashboard through DNS rebinding). Nothing
served comes from a Secret or a kubeconfig: rollouts' views, timelines and error lines.
"""

from __future__ import annotations

import hmac
import json
import secrets
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, unquote, urlsplit

from meshctl.domain.intents import Action
from meshctl.domain.phases import ALLOWED, Phase
from meshctl.domain.release_gates import Identity
from meshctl.domain.timeline import Timeline
from meshctl.ops.failures import Failure, RolloutError
from meshctl.ops.rollouts import LocalRollouts
from meshctl.ops.views import RolloutView
from meshctl.web.assets import SERVED, UPLOT_CSS, MissingAsset, asset

COOKIE = "meshctl_dashboard"
ACTION_HEADER = "X-Meshctl-Action"
ACTIONS = (Action.PROMOTE, Action.ABORT, Action.PAUSE, Action.RESUME, Action.RETRY)
APPROVE = "approve"  # not an intent: an approval counts toward a gate (the gate's rule decides)
MAX_BODY = 4096  # an approval's JSON body: {"comment": "..."}
STATUS_OF = {Failure.NOT_FOUND: 404, Failure.INVALID: 400, Failure.PRECONDITION: 409,
             Failure.UNAUTHENTICATED: 401, Failure.FORBIDDEN: 403, Failure.UNAVAILABLE: 503}


class Source(Protocol):
    """Where the dashboard reads and steers rollouts: ``ClusterRollouts`` or
    ``LocalRollouts`` of :mod:`meshctl.ops.rollouts`."""

    def list(self, namespace: str | None) -> list[RolloutView]: ...

    def get(self, namespace: str, name: str) -> RolloutView: ...

    def timeline(self, namespace: str, name: str, prometheus: str | None = None
                 ) -> Timeline: ...

    def request(self, namespace: str, name: str, action: Action) -> RolloutView: ...

    def approve(self, namespace: str, name: str, comment: str = "",
                who: Identity | None = None) -> RolloutView: ...


def slo_status(view: RolloutView) -> str:
    """The newest measurements, and the comparative judge's verdict, in one word: failing,
    no data, ok, or "-" (none yet)."""
    outcomes = {m.outcome for m in view.measurements}
    judged = view.judgement.verdict if view.judgement is not None else ""
    if judged == "Fail":
        return "failing"
    if not outcomes:
        return "ok" if judged == "Pass" else "-"
    if "Failed" in outcomes:
        return "failing"
    if outcomes & {"Inconclusive", "Error"}:
        return "no data"
    return "ok"


def gates(view: RolloutView) -> str:
    """What the rollout waits for: the pause's reason, and requests not acted on yet."""
    waiting = []
    if view.phase == Phase.PAUSED.value and view.pause_reason:
        waiting.append(view.pause_reason)
    if view.paused:
        waiting.append("spec.paused")
    waiting += [f"gate {g}" for g in view.gates_waiting]
    waiting += [f"{a} requested" for a in view.pending_intents]
    return ", ".join(dict.fromkeys(waiting))


def actions_for(view: RolloutView) -> list[str]:
    """The actions its phase gives meaning to (the engine's table), and approve while an
    approval gate waits."""
    out = []
    for action in ACTIONS:
        if Phase(view.phase) in ALLOWED[action] or (action is Action.RESUME and view.paused):
            out.append(action.value)
    if (any(g.endswith("(approval)") for g in view.gates_waiting)
            and view.phase in (Phase.PROGRESSING.value, Phase.PAUSED.value)):
        out.append(APPROVE)
    return out


def row_of(view: RolloutView, local: bool = False) -> dict[str, Any]:
    """One rollout as a row of the list page (``local``: of a local run, which has no
    spec.paused to pause with)."""
    since = max((c.last_transition_time for c in view.conditions), default="")
    actions = [a for a in actions_for(view) if not (local and a == Action.PAUSE.value)]
    return {**view.to_json(), "slo": slo_status(view), "gates": gates(view), "since": since,
            "actions": actions}


@dataclass(frozen=True)
class Identities:
    """Who may read and who may act, by client certificate identity (CN or SAN value)."""

    readers: frozenset[str] = frozenset()
    operators: frozenset[str] = frozenset()

    def may_read(self, names: Iterable[str]) -> bool:
        return bool(set(names) & (self.readers | self.operators))

    def may_act(self, names: Iterable[str]) -> bool:
        return bool(set(names) & self.operators)


@dataclass(frozen=True)
class ServeTLS:
    """HTTPS with client certificates: the server's certificate and key files, the CA file
    that signs the clients'."""

    cert: str
    key: str
    client_ca: str


@dataclass
class Dashboard:
    """What a server serves: the rollouts of ``source`` (calls to it one at a time), the
    token that lets a caller act (None: nobody may), the namespace listed (None: all); with
    ``identities``, client certificates decide instead of the token."""

    source: Source
    token: str | None
    namespace: str | None = None
    prometheus: str | None = None
    identities: Identities | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def call(self, fn: Callable[[], Any]) -> Any:
        with self._lock:
            return fn()

    def may_read(self, names: Iterable[str]) -> bool:
        return self.identities is None or self.identities.may_read(names)

    def may_act(self, presented: str | None, names: Iterable[str] = ()) -> bool:
        if self.identities is not None:
            return self.identities.may_act(names)
        return (self.token is not None and presented is not None
                and hmac.compare_digest(self.token.encode(), presented.encode()))


def identities_of(peer: Mapping[str, Any] | None) -> tuple[str, ...]:
    """A client certificate's common name and subject alternative names (as
    ``ssl.SSLSocket.getpeercert()`` gives them)."""
    if not peer:
        return ()
    names = [value for rdn in peer.get("subject", ()) for key, value in rdn
             if key == "commonName"]
    names += [value for _, value in peer.get("subjectAltName", ())]
    return tuple(dict.fromkeys(str(n) for n in names if n))


def approver_of(peer: Mapping[str, Any] | None) -> Identity | None:
    """A client certificate as an approver, as the gRPC API takes it: its first URI SAN (a
    SPIFFE ID), else its common name, else its first other SAN; None without one (the
    dashboard's own credentials approve then: whoever started ``meshctl dashboard``)."""
    names = identities_of(peer)
    if not names:
        return None
    uris = [str(v) for kind, v in (peer or {}).get("subjectAltName", ()) if kind == "URI"]
    common = [str(v) for rdn in (peer or {}).get("subject", ()) for key, v in rdn
              if key == "commonName" and v]
    return Identity((uris or common or list(names))[0], (), "certificate")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _page(title: str, body: str, page: str) -> str:
    """A page: ``page`` names what dashboard.js draws in it (no inline script: the
    Content-Security-Policy allows scripts from this server only)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/assets/{UPLOT_CSS}"><link rel="stylesheet" href="/assets/style.css">
</head><body data-page="{page}">{body}
<script src="/assets/vendor/uPlot.iife.min.js"></script>
<script src="/assets/timeline.js"></script><script src="/assets/dashboard.js"></script>
</body></html>"""


LIST_PAGE = _page("meshctl dashboard", """<h1>Rollouts</h1>
<p class="muted" id="updated">loading...</p>
<table id="rollouts"><thead><tr><th>Namespace</th><th>Name</th><th>Phase</th><th>Step</th>
<th>Stable/canary written</th><th>Observed</th><th>SLO</th><th>Waiting for</th>
<th>Since</th></tr></thead><tbody></tbody></table>""", "list")

ROLLOUT_PAGE = _page("meshctl rollout", """<p><a href="/">All rollouts</a></p>
<h1 id="title"></h1><p class="muted" id="updated">loading...</p>
<table class="summary" id="summary"></table>
<div class="actions" id="actions"></div><p id="result" role="status"></p>
<dialog id="confirm"><form method="dialog"><p id="confirm-text"></p>
<p><input id="confirm-comment" placeholder="comment (optional)" maxlength="500" hidden></p>
<button value="cancel" id="confirm-cancel">Cancel</button>
<button value="ok" id="confirm-ok">Confirm</button></form></dialog>
<h2>Timeline</h2><div id="charts"></div>
<h2>History</h2><table class="events" id="revisions"><thead><tr><th>Role</th><th>Revision</th>
<th>Image</th></tr></thead><tbody></tbody></table>
<h2>Events</h2><table class="events" id="events"><thead><tr><th>Time</th><th>Kind</th>
<th>Event</th></tr></thead><tbody></tbody></table>""", "rollout")


class Handler(BaseHTTPRequestHandler):
    dashboard: Dashboard  # set on the subclass the server is made with
    server_version = "meshctl-dashboard"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no request log
        return

    # -- plumbing ---------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'self'; "
                         "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _host_ok(self) -> bool:
        if isinstance(self.connection, ssl.SSLSocket):
            return True  # a rebound name fails the TLS handshake: the certificate is not its
        host = (self.headers.get("Host") or "").lower()
        bound, port = cast(tuple[str, int], self.server.server_address)[:2]  # an INET socket
        return host in {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}",
                        f"{bound}:{port}"}

    def _presented(self) -> str | None:
        cookie = SimpleCookie(self.headers.get("Cookie") or "")
        return cookie[COOKIE].value if COOKIE in cookie else None

    def _names(self) -> tuple[str, ...]:
        peer = getattr(self.connection, "getpeercert", None)
        return identities_of(peer()) if peer is not None else ()

    def _may_act(self) -> bool:
        return self.dashboard.may_act(self._presented(), self._names())

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return self.dashboard.call(fn)
        except RolloutError as exc:
            self._error(STATUS_OF.get(exc.failure, 500), exc.message)
            return None

    # -- routes -----------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._host_ok():
            return self._error(HTTPStatus.MISDIRECTED_REQUEST, "unknown host")
        if not self.dashboard.may_read(self._names()):
            return self._error(403, "this client certificate's identity may not read")
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        if not parts:
            return self._send(200, LIST_PAGE.encode(), "text/html; charset=utf-8")
        if parts[0] == "login":
            return self._login(parse_qs(url.query).get("token", [""])[0])
        if parts[0] == "assets":
            return self._asset("/".join(parts[1:]))
        if parts[0] == "rollouts" and len(parts) == 3:
            return self._send(200, ROLLOUT_PAGE.encode(), "text/html; charset=utf-8")
        if parts[:2] == ["api", "session"]:
            return self._json(200, {"canAct": self._may_act()})
        if parts[:2] == ["api", "rollouts"] and len(parts) == 2:
            return self._list()
        if parts[:2] == ["api", "rollouts"] and len(parts) == 4:
            return self._rollout(parts[2], parts[3])
        return self._error(404, "not found")

    def do_POST(self) -> None:
        if not self._host_ok():
            return self._error(HTTPStatus.MISDIRECTED_REQUEST, "unknown host")
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
        if parts[:2] != ["api", "rollouts"] or len(parts) != 5:
            return self._error(404, "not found")
        if self.headers.get(ACTION_HEADER) != "1" or not self._may_act():
            return self._error(403, "this caller may not act (open the login link meshctl "
                               "dashboard printed, or present an operator's certificate)")
        namespace, name = parts[2], parts[3]
        if parts[4] == APPROVE:
            return self._approve(namespace, name)
        action = Action.parse(parts[4])
        if action not in ACTIONS:
            return self._error(400, f"unknown action {parts[4]!r}; one of "
                               f"{', '.join([*(a.value for a in ACTIONS), APPROVE])}")
        assert action is not None
        view = self._call(lambda: self.dashboard.source.request(namespace, name, action))
        if view is not None:
            self._json(200, {"action": action.value, "rollout": view.to_json()})

    def _approve(self, namespace: str, name: str) -> None:
        """An approval by this caller: its client certificate's identity over HTTPS, else the
        dashboard's own credentials; ``{"comment": "..."}`` as the body, if any."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            return self._error(413, f"an approval's body is at most {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = None
        comment = body.get("comment", "") if isinstance(body, dict) else None
        if not isinstance(comment, str):
            return self._error(400, 'give the body as {"comment": "why"} (or none)')
        peer = getattr(self.connection, "getpeercert", None)
        who = approver_of(peer()) if peer is not None else None
        view = self._call(lambda: self.dashboard.source.approve(namespace, name, comment, who))
        if view is not None:
            self._json(200, {"action": APPROVE, "rollout": view.to_json()})

    def _login(self, token: str) -> None:
        if not self.dashboard.may_act(token):
            return self._error(403, "wrong token")
        self._send(303, b"", "text/plain", {
            "Location": "/",
            "Set-Cookie": f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"})

    def _asset(self, name: str) -> None:
        if name not in SERVED:
            return self._error(404, "not found")
        try:
            text = asset(name)
        except MissingAsset as exc:
            return self._error(500, str(exc))
        self._send(200, text.encode(), SERVED[name] + "; charset=utf-8")

    def _list(self) -> None:
        views = self._call(lambda: self.dashboard.source.list(self.dashboard.namespace))
        if views is not None:
            local = isinstance(self.dashboard.source, LocalRollouts)
            self._json(200, {"rollouts": [row_of(v, local) for v in views]})

    def _rollout(self, namespace: str, name: str) -> None:
        source, prometheus = self.dashboard.source, self.dashboard.prometheus

        def read() -> tuple[RolloutView, Timeline, list[dict[str, str]]]:
            revisions: list[dict[str, str]] = []
            history = getattr(source, "history", None)  # a cluster's: revisions it knows
            if history is not None:
                revisions = [{"role": r.role, "revision": r.revision, "image": r.image}
                             for r in history(namespace, name).revisions]
            return (source.get(namespace, name), source.timeline(namespace, name, prometheus),
                    revisions)

        found = self._call(read)
        if found is not None:
            view, timeline, revisions = found
            local = isinstance(source, LocalRollouts)
            self._json(200, {"rollout": row_of(view, local), "timeline": timeline.to_json(),
                             "revisions": revisions, "canAct": self._may_act()})


def server(dashboard: Dashboard, host: str = "127.0.0.1", port: int = 0,
           tls: ServeTLS | None = None) -> ThreadingHTTPServer:
    """A server for ``dashboard`` bound to ``host:port`` (0: a free port), over HTTPS that
    requires a client certificate signed by ``tls.client_ca`` when ``tls`` is given; the
    caller runs ``serve_forever`` and ``shutdown``."""
    handler = type("BoundHandler", (Handler,), {"dashboard": dashboard})
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(tls.cert, tls.key)
        context.load_verify_locations(tls.client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    return httpd
