"""meshctl's own xDS control plane: gRPC ADS, state of the world, Envoy v3 types.

One :class:`XdsServer` serves one local mesh (:class:`~meshctl.localmesh.resources.MeshLayout`):
a listener, a route configuration and one cluster per version (see
:mod:`meshctl.localmesh.resources`). Any number of Envoys may connect; every open stream is
pushed whenever a resource type changes.

Protocol, per stream and per type URL (the xDS "state of the world" variant over ADS):

- A request with an empty ``response_nonce`` subscribes: the server answers with the
  current resources of that type, a fresh nonce and the type's version.
- A request carrying the nonce of the last response for its type is an ACK (no
  ``error_detail``: that version is now in force at this Envoy) or a NACK (``error_detail``
  set: Envoy rejected that version and keeps the last one it accepted). A NACK is recorded
  with Envoy's message (:attr:`XdsServer.last_nack`); the server does not resend the rejected
  version, it waits for the next change.
- A request with an older nonce is stale and ignored.

Versions are integers (sent as decimal strings) from one counter: a type's version is the
counter value when its resources last changed, so versions only grow, and pushing resources
identical to the current ones changes nothing.

Waiting: :meth:`XdsServer.wait_for_ack` blocks until every connected Envoy ACKed a version
(or raises :class:`XdsRejected` with Envoy's message, or :class:`XdsTimeout`). It wakes on the
ACK itself (no polling), so push-to-applied latency is Envoy's own.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from meshctl.domain.traffic import TrafficSplit
from meshctl.localmesh import _protos as pb
from meshctl.localmesh.resources import (
    TYPE_CLUSTER,
    TYPE_ENDPOINT,
    TYPE_LISTENER,
    TYPE_ROUTE,
    MeshLayout,
    cluster,
    listener,
    route_config,
)

log = logging.getLogger(__name__)

# The order in which a change touching several types is pushed (clusters before the
# listeners and routes that refer to them, as the xDS protocol recommends).
PUSH_ORDER = (TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, TYPE_ROUTE)


@dataclass(frozen=True)
class Nack:
    """Envoy rejected ``version`` of ``type_url``; it keeps applying the last version it ACKed."""

    node_id: str
    type_url: str
    version: int
    message: str
    at: float  # time.time() when received


@dataclass(frozen=True)
class StreamStatus:
    """One connected Envoy, as the server sees it."""

    node_id: str
    sent: dict[str, int]
    acked: dict[str, int]
    nacked: dict[str, Nack]


@dataclass(frozen=True)
class XdsStatus:
    """What the server serves (``versions``) and what each Envoy accepted or rejected."""

    versions: dict[str, int]
    streams: tuple[StreamStatus, ...]
    last_nack: Nack | None


class XdsRejected(Exception):
    """Envoy NACKed a version; ``nack.message`` is Envoy's own explanation."""

    def __init__(self, nack: Nack) -> None:
        super().__init__(
            f"Envoy {nack.node_id!r} rejected {_short(nack.type_url)} version {nack.version}: {nack.message}"
        )
        self.nack = nack


class XdsTimeout(TimeoutError):
    """No (or not every) connected Envoy ACKed a version in time."""


@dataclass
class _Snapshot:
    version: int
    resources: tuple[Any, ...]
    serialized: tuple[bytes, ...]


@dataclass(eq=False)  # identity: streams live in a set
class _Stream:
    requests: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    node_id: str = ""
    subscribed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sent: dict[str, tuple[int, str]] = field(default_factory=dict)  # type -> (version, nonce)
    acked: dict[str, int] = field(default_factory=dict)
    nacked: dict[str, Nack] = field(default_factory=dict)


_WAKE = object()  # queued on a stream when resources changed
_CLOSE = object()  # queued when the stream ended


class XdsServer:
    """An ADS server for one local mesh.

    >>> server = XdsServer(layout)          # doctest: +SKIP
    >>> server.start()                      # binds 127.0.0.1:<free port>
    >>> v = server.set_split(TrafficSplit(Weights.canary_at(10)))
    >>> server.wait_for_ack(v)              # Envoy applies 90/10 when this returns
    >>> server.stop()
    """

    def __init__(
        self,
        layout: MeshLayout,
        initial: TrafficSplit | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_streams: int = 16,
    ) -> None:
        self.layout = layout
        self._host = host
        self._requested_port = port
        self._max_streams = max_streams
        self._cond = threading.Condition(threading.RLock())
        self._counter = itertools.count(1)
        self._nonces = itertools.count(1)
        self._snapshots: dict[str, _Snapshot] = {}
        self._streams: set[_Stream] = set()
        self._nacks: collections.deque[Nack] = collections.deque(maxlen=32)
        self._server: Any = None
        self._port = 0
        self._split = initial or TrafficSplit.stable_only()
        self._set(TYPE_CLUSTER, [cluster(u) for u in layout.upstreams()])
        self._set(TYPE_LISTENER, [listener(layout)])
        self._set(TYPE_ROUTE, [route_config(self._split, layout)])

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start serving; afterwards :attr:`port` is the bound port."""
        if self._server is not None:
            return
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_streams, thread_name_prefix="meshctl-xds")
        )
        pb.ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_AdsServicer(self), server)
        self._port = server.add_insecure_port(f"{self._host}:{self._requested_port}")
        if self._port == 0:
            raise OSError(f"xDS server cannot bind {self._host}:{self._requested_port}")
        server.start()
        self._server = server
        log.debug("xDS server listening on %s", self.address)

    def stop(self, grace: float = 0.5) -> None:
        """Stop serving; open streams are cancelled. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()
        with self._cond:
            for stream in self._streams:
                stream.requests.put(_CLOSE)
            self._cond.notify_all()

    def __enter__(self) -> XdsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` for an Envoy bootstrap."""
        return f"{self._host}:{self._port}"

    # -- what is served ----------------------------------------------------------------

    @property
    def split(self) -> TrafficSplit:
        """The split the current route configuration was built from."""
        return self._split

    def set_split(self, split: TrafficSplit) -> int:
        """Serve the route configuration for ``split`` and push it to every Envoy.

        Returns the route version to wait for (unchanged if the routes are identical).
        Does not wait: see :meth:`wait_for_ack`.
        """
        config = route_config(split, self.layout)
        with self._cond:  # the served routes and the split they came from change together
            version = self._set(TYPE_ROUTE, [config])
            self._split = split
            return version

    def set_listener_port(self, port: int) -> int:
        """Serve the listener on ``port`` from now on: an Envoy started after one that died
        binds the port its predecessor had (which that one may have picked from port 0)."""
        with self._cond:
            self.layout = dataclasses.replace(self.layout, listener_port=port)
            return self._set(TYPE_LISTENER, [listener(self.layout)])

    def set_resources(self, type_url: str, resources: Sequence[Any]) -> int:
        """Serve arbitrary resources of one type (low level: tests, experiments).

        The next :meth:`set_split` replaces route configurations set this way.
        """
        return self._set(type_url, resources)

    def version(self, type_url: str = TYPE_ROUTE) -> int:
        with self._cond:
            return self._snapshots[type_url].version

    def _set(self, type_url: str, resources: Sequence[Any]) -> int:
        serialized = tuple(r.SerializeToString(deterministic=True) for r in resources)
        with self._cond:
            current = self._snapshots.get(type_url)
            if current is not None and current.serialized == serialized:
                return current.version
            version = next(self._counter)
            self._snapshots[type_url] = _Snapshot(version, tuple(resources), serialized)
            for stream in self._streams:
                stream.requests.put(_WAKE)
            return version

    # -- what Envoy accepted ------------------------------------------------------------

    def wait_for_ack(
        self,
        version: int,
        type_url: str = TYPE_ROUTE,
        timeout: float = 5.0,
        min_streams: int = 1,
    ) -> None:
        """Block until every connected Envoy subscribed to ``type_url`` ACKed ``version``
        (or a later one), and at least ``min_streams`` Envoys are connected.

        Raises :class:`XdsRejected` if an Envoy NACKs ``version`` or a later one, and
        :class:`XdsTimeout` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                streams = [s for s in self._streams if type_url in s.subscribed]
                for stream in streams:
                    nack = stream.nacked.get(type_url)
                    if nack is not None and nack.version >= version:
                        raise XdsRejected(nack)
                acked = [s for s in streams if s.acked.get(type_url, 0) >= version]
                if len(streams) >= min_streams and len(acked) == len(streams):
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise XdsTimeout(
                        f"{len(acked)} of {len(streams)} Envoy(s) ACKed {_short(type_url)} "
                        f"version {version} within {timeout:g}s (need at least {min_streams})"
                    )
                self._cond.wait(remaining)

    def wait_for_streams(self, count: int = 1, timeout: float = 10.0) -> None:
        """Block until ``count`` Envoys have subscribed to routes (raises XdsTimeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(TYPE_ROUTE in s.subscribed for s in self._streams) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise XdsTimeout(f"fewer than {count} Envoy(s) connected in {timeout:g}s")
                self._cond.wait(remaining)

    @property
    def last_nack(self) -> Nack | None:
        """The most recent rejection from any Envoy (kept after a later ACK, for reports)."""
        with self._cond:
            return self._nacks[-1] if self._nacks else None

    @property
    def nacks(self) -> tuple[Nack, ...]:
        """The last 32 rejections, oldest first."""
        with self._cond:
            return tuple(self._nacks)

    def status(self) -> XdsStatus:
        with self._cond:
            return XdsStatus(
                versions={t: s.version for t, s in self._snapshots.items()},
                streams=tuple(
                    StreamStatus(
                        node_id=s.node_id,
                        sent={t: v for t, (v, _) in s.sent.items()},
                        acked=dict(s.acked),
                        nacked=dict(s.nacked),
                    )
                    for s in self._streams
                ),
                last_nack=self._nacks[-1] if self._nacks else None,
            )

    # -- the stream protocol (called from _AdsServicer) ----------------------------------

    def _open(self) -> _Stream:
        stream = _Stream()
        with self._cond:
            self._streams.add(stream)
        return stream

    def _close(self, stream: _Stream) -> None:
        with self._cond:
            self._streams.discard(stream)
            self._cond.notify_all()

    def _on_request(self, stream: _Stream, request: Any) -> list[Any]:
        type_url = request.type_url
        names = tuple(request.resource_names)
        with self._cond:
            if request.node.id:
                stream.node_id = request.node.id
            if type_url not in self._snapshots:
                log.debug("ignoring request for unserved type %s", type_url)
                return []
            sent = stream.sent.get(type_url)
            if not request.response_nonce:
                stream.subscribed[type_url] = names
                return [self._response(stream, type_url)]
            if sent is None or request.response_nonce != sent[1]:
                return []  # stale: answers a response that was superseded
            if request.HasField("error_detail"):
                self._record_nack(stream, type_url, sent[0], request.error_detail.message)
            else:
                stream.acked[type_url] = sent[0]
                self._cond.notify_all()
            if names != stream.subscribed.get(type_url):
                stream.subscribed[type_url] = names
                return [self._response(stream, type_url)]
            return []

    def _record_nack(self, stream: _Stream, type_url: str, version: int, message: str) -> None:
        nack = Nack(stream.node_id, type_url, version, message, time.time())
        stream.nacked[type_url] = nack
        self._nacks.append(nack)
        self._cond.notify_all()
        log.warning("%s", XdsRejected(nack))

    def _on_wake(self, stream: _Stream) -> list[Any]:
        with self._cond:
            return [
                self._response(stream, type_url)
                for type_url in PUSH_ORDER
                if type_url in stream.subscribed
                and stream.sent.get(type_url, (0, ""))[0] != self._snapshots[type_url].version
            ]

    def _response(self, stream: _Stream, type_url: str) -> Any:
        snapshot = self._snapshots[type_url]
        wanted = stream.subscribed.get(type_url, ())
        resources = [r for r in snapshot.resources if not wanted or _resource_name(r) in wanted]
        nonce = str(next(self._nonces))
        stream.sent[type_url] = (snapshot.version, nonce)
        response = pb.discovery_pb2.DiscoveryResponse(
            version_info=str(snapshot.version), type_url=type_url, nonce=nonce
        )
        for resource in resources:
            response.resources.add().Pack(resource)
        return response


class _AdsServicer(pb.ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """Runs each ADS stream: a reader thread feeds requests into the stream's queue; the
    handler thread answers them and the server's wake-ups, in order."""

    def __init__(self, server: XdsServer) -> None:
        self._server = server

    def StreamAggregatedResources(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        stream = self._server._open()
        context.add_callback(lambda: stream.requests.put(_CLOSE))
        reader = threading.Thread(
            target=_read_requests,
            args=(request_iterator, stream),
            daemon=True,
            name="meshctl-xds-reader",
        )
        reader.start()
        try:
            while True:
                item = stream.requests.get()
                if item is _CLOSE:
                    return
                if item is _WAKE:
                    responses = self._server._on_wake(stream)
                else:
                    responses = self._server._on_request(stream, item)
                yield from responses
        finally:
            self._server._close(stream)

    def DeltaAggregatedResources(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "meshctl serves state-of-the-world ADS only")
        yield from ()


def _read_requests(request_iterator: Iterator[Any], stream: _Stream) -> None:
    try:
        for request in request_iterator:
            stream.requests.put(request)
    except Exception as exc:  # the stream was cancelled or broke: end it either way
        log.debug("ADS stream ended: %s", exc)
    finally:
        stream.requests.put(_CLOSE)


def _resource_name(resource: Any) -> str:
    name = getattr(resource, "name", "") or getattr(resource, "cluster_name", "")
    return str(name)


def _short(type_url: str) -> str:
    return type_url.rsplit(".", 1)[-1]
