"""Kubernetes: the single home of the ``kubernetes`` library in meshctl.

May: build a client (kubeconfig path and context, or in-cluster), read and write custom
objects (Rollouts, VirtualServices, DestinationRules, policies) and translate every failure
into :mod:`meshctl.adapters.errors`.
May not: decide anything. Which object to write, and what to write in it, comes from the
caller (usually a pure function of :mod:`meshctl.domain`); a mutation handed to
:meth:`Kube.update_with_retry` is a pure function of the object it is given.

Objects cross this boundary as plain ``dict`` values, exactly as the API server serves them.
Importing this module is cheap; the ``kubernetes`` package is imported when a client is built.
"""

from __future__ import annotations

import builtins
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from meshctl.adapters.errors import (
    NotFound,
    PermanentError,
    TransientError,
    Unavailable,
    translated,
)
from meshctl.adapters.retries import with_retries

FIELD_MANAGER = "meshctl"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"

Object = dict[str, Any]
Mutation = Callable[[Object], Object]


@dataclass(frozen=True)
class Updated:
    """What :meth:`Kube.update_with_retry` did: the object as stored now, how many
    read-mutate-write attempts it took, and whether anything was written."""

    object: Object
    attempts: int
    changed: bool


class Kube:
    """Typed access to namespaced custom objects through one ``ApiClient``.

    Methods take the resource as the API server names it: ``group, version, namespace,
    plural`` (e.g. ``"networking.istio.io", "v1", "shop", "virtualservices"``).
    """

    def __init__(
        self,
        api_client: Any,
        *,
        field_manager: str = FIELD_MANAGER,
        timeout_seconds: float = 30.0,
        max_attempts: int = 5,
        max_backoff_seconds: float = 2.0,
    ) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.field_manager = field_manager
        self.timeout_seconds = timeout_seconds
        # A time.monotonic() instant no request may outlast (a command's --timeout).
        self.deadline: float | None = None
        self.max_attempts = max_attempts
        self.max_backoff_seconds = max_backoff_seconds
        # Any: the generated annotations say `object` where options change the return type
        # (_preload_content=False returns the raw response).
        self._custom: Any = client.CustomObjectsApi(api_client)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_kubeconfig(
        cls, path: str | Path | None = None, context: str | None = None, **options: Any
    ) -> Kube:
        """A client for ``context`` (default: the current one) of the kubeconfig at ``path``
        (default: ``$KUBECONFIG`` or ``~/.kube/config``)."""
        from kubernetes import client, config

        configuration = client.Configuration()
        with translated():
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(path) if path is not None else None,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        return cls(_api_client(configuration, options.pop("single_attempt", False)), **options)

    @classmethod
    def in_cluster(cls, **options: Any) -> Kube:
        """A client with the pod's ServiceAccount token and the cluster's CA."""
        from kubernetes import client, config

        configuration = client.Configuration()
        with translated():
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        return cls(client.ApiClient(configuration), **options)

    @classmethod
    def connect(
        cls, kubeconfig: str | Path | None = None, context: str | None = None, **options: Any
    ) -> Kube:
        """In-cluster when running in a pod and no kubeconfig or context is named; the
        kubeconfig otherwise."""
        in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        if kubeconfig is None and context is None and in_pod and not os.environ.get("KUBECONFIG"):
            return cls.in_cluster(**options)
        return cls.from_kubeconfig(kubeconfig, context, **options)

    @staticmethod
    def default_namespace(kubeconfig: str | Path | None = None, context: str | None = None) -> str:
        """The namespace a user means by none: the kubeconfig context's (or, in a pod with
        no kubeconfig, the pod's own), else ``default``."""
        from kubernetes import config

        in_pod = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        if kubeconfig is None and context is None and not os.environ.get("KUBECONFIG") \
                and os.environ.get("KUBERNETES_SERVICE_HOST") and in_pod.exists():
            return in_pod.read_text().strip() or "default"
        with translated():
            contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig is not None else None)
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
        return str(((chosen or {}).get("context") or {}).get("namespace") or "default")

    def close(self) -> None:
        self.api_client.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request_timeout(self, seconds: float | None = None) -> float:
        """The timeout of one request: ``seconds`` (default ``timeout_seconds``), never past
        :attr:`deadline`; raises Unavailable once the deadline has passed."""
        return request_budget(seconds or self.timeout_seconds, self.deadline)

    # -- reads --------------------------------------------------------------------------

    def get(self, group: str, version: str, namespace: str, plural: str, name: str) -> Object:
        """``group`` "" is the core group: Secrets only (the key a release gate names)."""
        with translated():
            if not group and plural == "secrets":
                from kubernetes import client

                secret = client.CoreV1Api(self.api_client).read_namespaced_secret(
                    name, namespace, _request_timeout=self.request_timeout())
                found = self.api_client.sanitize_for_serialization(secret)
            else:
                found = self._custom.get_namespaced_custom_object(
                    group, version, namespace, plural, name,
                    _request_timeout=self.request_timeout())
        return _as_object(found)

    def who_am_i(self) -> Object:
        """``userInfo`` as the API server authenticated this client (SelfSubjectReview)."""
        from kubernetes import client

        with translated():
            body = client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1",
                                              kind="SelfSubjectReview")
            review = client.AuthenticationV1Api(self.api_client).create_self_subject_review(
                body, _request_timeout=self.request_timeout())
            found = self.api_client.sanitize_for_serialization(review)
        return _as_object(_as_object(found).get("status", {}).get("userInfo", {}))

    def list(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        label_selector: str | None = None,
    ) -> list[Object]:
        with translated():
            found = self._custom.list_namespaced_custom_object(
                group,
                version,
                namespace,
                plural,
                label_selector=label_selector,
                _request_timeout=self.request_timeout(),
            )
        return [_as_object(item) for item in _as_object(found).get("items", [])]

    def get_or_none(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> Object | None:
        try:
            return self.get(group, version, namespace, plural, name)
        except NotFound:
            return None

    def list_all(
        self, group: str, version: str, plural: str, label_selector: str | None = None,
        page_size: int = 500, *, namespace: str | None = None,
    ) -> tuple[builtins.list[Object], str]:
        """Objects in every namespace (or in ``namespace``: a Role there is enough), and the
        list's resourceVersion (to watch from).

        Read in pages of ``page_size`` (``limit``/``continue``), so the API server and this
        process never hold one response of 10,000 objects; all pages are one snapshot."""
        items: builtins.list[Object] = []
        token: str | None = None
        while True:
            with translated():
                if namespace is not None:
                    found = self._custom.list_namespaced_custom_object(
                        group, version, namespace, plural, label_selector=label_selector,
                        limit=page_size, _continue=token, _request_timeout=self.request_timeout(),
                    )
                else:
                    found = self._custom.list_cluster_custom_object(
                        group, version, plural, label_selector=label_selector, limit=page_size,
                        _continue=token, _request_timeout=self.request_timeout(),
                    )
            body = _as_object(found)
            items += [_as_object(item) for item in body.get("items", [])]
            meta = body.get("metadata", {})
            token = meta.get("continue") or None
            if token is None:
                return items, str(meta.get("resourceVersion", ""))

    def watch(
        self, group: str, version: str, plural: str, resource_version: str,
        timeout_seconds: int = 60, *, namespace: str | None = None,
        field_selector: str | None = None, bookmarks: bool = False,
    ) -> Iterator[tuple[str, Object]]:
        """(type, object) changes in every namespace (or in ``namespace``, of the objects
        ``field_selector`` picks, e.g. ``metadata.name=web``) after ``resource_version``,
        until the server ends the watch (``timeout_seconds``). A 410 Gone raises
        ``NotFound``: list again.

        With ``bookmarks``, the server also sends ``("BOOKMARK", {"metadata":
        {"resourceVersion": ...}})`` now and then: a version to watch again from, so a
        watch that ends need not be followed by a list."""
        from kubernetes import watch as k8s_watch

        stream = k8s_watch.Watch()  # type: ignore[no-untyped-call]
        lister = self._custom.list_cluster_custom_object
        where: tuple[str, ...] = ()
        if namespace is not None:
            lister, where = self._custom.list_namespaced_custom_object, (namespace,)
        events = stream.stream(  # type: ignore[no-untyped-call]
            lister, group, version, *where, plural,
            resource_version=resource_version, timeout_seconds=timeout_seconds,
            allow_watch_bookmarks=bookmarks, field_selector=field_selector,
            # deserialize=False: the events are parsed once, as JSON (custom objects have no
            # model class; the default parses each one twice)
            deserialize=False,
            _request_timeout=self.request_timeout(timeout_seconds + self.timeout_seconds),
        )
        with translated():
            for event in _error_events_end_the_watch(events, plural):
                kind = str(event.get("type", ""))
                obj = event.get("object")
                if kind == "ERROR":
                    code = _as_object(obj).get("code", 500) if isinstance(obj, dict) else 500
                    raise (NotFound if code == 410 else TransientError)(
                        f"watch of {plural} ended: {obj}"
                    )
                if kind == "BOOKMARK" and not bookmarks:
                    continue
                yield kind, _as_object(obj)

    # -- writes -------------------------------------------------------------------------

    def create(self, group: str, version: str, namespace: str, plural: str, body: Object) -> Object:
        with translated():
            created = self._custom.create_namespaced_custom_object(
                group,
                version,
                namespace,
                plural,
                body,
                field_manager=self.field_manager,
                _request_timeout=self.request_timeout(),
            )
        return _as_object(created)

    def merge_patch(
        self, group: str, version: str, namespace: str, plural: str, name: str, patch: Object
    ) -> Object:
        """JSON merge patch (RFC 7386): maps merge, lists and scalars replace, None deletes."""
        return self._merge_patch(self._custom.patch_namespaced_custom_object,
                                 group, version, namespace, plural, name, patch=patch)

    def merge_patch_status(
        self, group: str, version: str, namespace: str, plural: str, name: str, patch: Object
    ) -> Object:
        """JSON merge patch of the ``status`` subresource."""
        return self._merge_patch(self._custom.patch_namespaced_custom_object_status,
                                 group, version, namespace, plural, name, patch=patch)

    def _merge_patch(self, call: Callable[..., Any], *where: str, patch: Object) -> Object:
        with translated():
            patched = call(*where, patch, field_manager=self.field_manager,
                           _content_type=MERGE_PATCH, _request_timeout=self.request_timeout())
        return _as_object(patched)

    def replace(
        self, group: str, version: str, namespace: str, plural: str, body: Object
    ) -> Object:
        """PUT the whole object. ``metadata.resourceVersion`` must be the one it was read at:
        if the object changed since, the server answers 409 and this raises ``Conflict``."""
        metadata = body.get("metadata") or {}
        if not metadata.get("resourceVersion"):
            raise PermanentError("replace needs metadata.resourceVersion (read, then write)")
        with translated():
            replaced = self._custom.replace_namespaced_custom_object(
                group,
                version,
                namespace,
                plural,
                str(metadata["name"]),
                body,
                field_manager=self.field_manager,
                _request_timeout=self.request_timeout(),
            )
        return _as_object(replaced)

    def apply(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        body: Object,
        *,
        force: bool = False,
    ) -> Object:
        """Server-side apply as field manager ``meshctl``: the server merges the fields in
        ``body`` (which must carry apiVersion, kind and metadata.name) and records meshctl
        as their owner; fields owned by another manager raise ``Conflict`` unless ``force``.
        """
        name = str((body.get("metadata") or {})["name"])
        with translated():
            # The generated client decodes a PATCH answer only for 200, but an apply that
            # creates the object answers 201: take the raw answer (errors still raise).
            response = self._custom.patch_namespaced_custom_object(
                group,
                version,
                namespace,
                plural,
                name,
                body,
                field_manager=self.field_manager,
                force=force,
                _content_type=APPLY_PATCH,
                _request_timeout=self.request_timeout(),
                _preload_content=False,
            )
            applied = json.loads(response.data)
        return _as_object(applied)

    def delete(self, group: str, version: str, namespace: str, plural: str, name: str) -> None:
        with translated():
            self._custom.delete_namespaced_custom_object(
                group, version, namespace, plural, name, _request_timeout=self.request_timeout()
            )

    def update_with_retry(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str,
        mutate: Mutation,
    ) -> Updated:
        """Read the object, apply ``mutate`` to a copy, write it back with the
        resourceVersion it was read at; on a transient failure (409 Conflict above all)
        start again from a fresh read, up to ``max_attempts`` times under the adapters'
        retry policy (:mod:`meshctl.adapters.retries`). ``mutate`` must be pure: it may
        run once per attempt.

        If ``mutate`` changes nothing, nothing is written (``changed=False``). When the
        attempts run out the last error is raised (``Conflict``, ``Unavailable``...);
        permanent errors (NotFound, Invalid, Forbidden) are raised at once.
        """
        return update(self, group, version, namespace, plural, name, mutate,
                      attempts=self.max_attempts, max_backoff=self.max_backoff_seconds)


class Store(Protocol):
    """What a read-modify-write needs of a client (:class:`Kube`, or the CLI's RestKube)."""

    def get(self, group: str, version: str, namespace: str, plural: str, name: str
            ) -> Object: ...

    def replace(self, group: str, version: str, namespace: str, plural: str,
                body: Object) -> Object: ...


def update(store: Store, group: str, version: str, namespace: str, plural: str, name: str,
           mutate: Mutation, *, attempts: int, max_backoff: float,
           first: Object | None = None) -> Updated:
    """The read-modify-write of ``update_with_retry``, for any :class:`Store`. The first
    try may start from ``first`` instead of a read (a cached object: a stale one only costs
    a Conflict, and the next try reads afresh)."""

    def attempt(number: int) -> Updated:
        current = first if number == 1 and first is not None else \
            store.get(group, version, namespace, plural, name)
        desired = mutate(json_copy(current))
        if desired == current:
            return Updated(current, number, changed=False)
        desired.setdefault("metadata", {})["resourceVersion"] = \
            current["metadata"]["resourceVersion"]
        return Updated(store.replace(group, version, namespace, plural, desired), number,
                       changed=True)

    return with_retries(attempt, attempts=attempts, max_backoff=max_backoff)


def json_copy(obj: Object) -> Object:
    """A deep copy of a JSON object (dicts, lists and scalars), several times quicker than
    ``copy.deepcopy``, which must handle any Python value."""
    return {k: _json_value(v) for k, v in obj.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def _api_client(configuration: Any, single_attempt: bool) -> Any:
    """``single_attempt`` (the CLI): urllib3 must not retry a read timeout three more times
    behind the request's deadline; the controller keeps its retries of a stale connection."""
    from kubernetes import client

    if single_attempt:
        configuration.retries = 0
    return client.ApiClient(configuration)


def request_budget(seconds: float, deadline: float | None) -> float:
    """``seconds``, cut to what is left before ``deadline`` (a ``time.monotonic()`` instant);
    Unavailable when nothing is left."""
    if deadline is None:
        return seconds
    left = deadline - time.monotonic()
    if left <= 0:
        raise Unavailable("no answer from the API server before the deadline")
    return min(seconds, left)


def _as_object(value: object) -> Object:
    if not isinstance(value, dict):
        raise PermanentError(f"expected a JSON object from the API server, got {type(value)}")
    return value


def _error_events_end_the_watch(events: Iterator[Any], plural: str) -> Iterator[Any]:
    """The client's own handling of an ERROR event (an expired resourceVersion, e.g. after the
    API server restarted) reads a key that ``deserialize=False`` never sets, and raises
    KeyError: that is the server ending the watch, so list again (as for a 410 Gone)."""
    try:
        yield from events
    except KeyError as exc:
        raise NotFound(f"watch of {plural} ended with an error event: list again") from exc
