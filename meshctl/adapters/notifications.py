"""Delivering notifications in the background; the one home of ``cloudevents``.

:class:`Notifier` queues each notification and returns at once: one worker thread delivers
them in order, each under the one retry policy (:func:`meshctl.adapters.webhooks.post_json`),
so a slow or dead sink delays only later notifications, never a reconcile pass (and so never
a rollback). A full queue drops the newest notification and logs that it did; a sink that
keeps failing is logged (its URL, never a body).

Formats: CloudEvents 1.0 in structured JSON mode (``application/cloudevents+json``), built
with the CloudEvents SDK; Slack-compatible ``{"text": ...}``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from datetime import datetime
from urllib.parse import urlsplit

from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.v1.event import CloudEvent

from meshctl.adapters.errors import AdapterError
from meshctl.adapters.webhooks import post_json
from meshctl.domain.notifications import CLOUDEVENT_TYPE, Notice, NotificationSink, SinkFormat

log = logging.getLogger(__name__)


def encoded(sink: NotificationSink, notice: Notice) -> tuple[bytes, dict[str, str]]:
    """The request body and headers of ``notice`` in ``sink``'s format."""
    if sink.format is SinkFormat.SLACK:
        return json.dumps({"text": notice.slack_text()}).encode(), {}
    event = CloudEvent(attributes={
        "type": CLOUDEVENT_TYPE + notice.kind, "source": notice.source,
        "id": str(uuid.uuid4()), "subject": notice.rollout,
        "time": datetime.fromisoformat(notice.time.replace("Z", "+00:00")),
        "datacontenttype": "application/json"}, data=notice.data())
    message = to_structured_event(event)
    return message.body, dict(message.headers)


class Notifier:
    """Background delivery; :meth:`send` never blocks."""

    def __init__(self, max_queue: int = 1000, attempts: int = 3, timeout: float = 5.0) -> None:
        self.attempts, self.timeout = attempts, timeout
        self.queue: queue.Queue[tuple[NotificationSink, Notice]] = queue.Queue(max_queue)
        self.delivered = 0
        self.failed = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, sink: NotificationSink, notice: Notice) -> None:
        self._start()
        try:
            self.queue.put_nowait((sink, notice))
        except queue.Full:
            log.warning("notification queue full: dropped %s of %s/%s for sink %s",
                        notice.kind, notice.namespace, notice.rollout, sink.name)

    def pending(self) -> int:
        return self.queue.unfinished_tasks

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="meshctl-notify",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            sink, notice = self.queue.get()
            try:
                body, headers = encoded(sink, notice)
                post_json(sink.url, body, headers=headers, ca_bundle=sink.ca_bundle,
                          timeout=self.timeout, attempts=self.attempts)
                self.delivered += 1
            except AdapterError as exc:
                self.failed += 1
                log.warning("notification %s of %s/%s to sink %s (%s) not delivered: %s",
                            notice.kind, notice.namespace, notice.rollout, sink.name,
                            where(sink.url), exc.message)
            except Exception:  # a bug in one delivery must not stop the others
                self.failed += 1
                log.exception("notification to sink %s failed", sink.name)
            finally:
                self.queue.task_done()


def where(url: str) -> str:
    """A sink's URL without its path and query, for logs: an incoming-webhook URL carries
    its credential in the path (``/services/T0/B0/<secret>``), and no secret is logged."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


_SHARED: Notifier | None = None
_SHARED_LOCK = threading.Lock()


def shared() -> Notifier:
    """The process's notifier (one worker thread for every Rollout)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Notifier()
        return _SHARED
