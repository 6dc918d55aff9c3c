"""The orchestration: what happens to an application, with no I/O of its own.

Ports (store, queue) are passed in, so unit tests run it with fakes or moto alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from fapiao_hub.models import Application, Status
from fapiao_hub.queues import DispatchQueue
from fapiao_hub.store import ApplicationExists, ApplicationStore, StoredApplication

# How long a RECEIVED application may wait for dispatch before the poller re-queues it (a lost
# queue message, or a queue failure the caller never retried).
REQUEUE_AFTER_SECONDS = 300


class ApplicationConflict(Exception):
    """The same application number arrived again with different content."""

    def __init__(self, existing: StoredApplication):
        super().__init__(existing.key)
        self.existing = existing


@dataclass(frozen=True)
class Submitted:
    stored: StoredApplication
    created: bool


class Intake:
    def __init__(self, store: ApplicationStore, queue: DispatchQueue):
        self._store = store
        self._queue = queue

    def submit(
        self, application: Application, *, payload_sha256: str, channel: str | None, warnings: list[str]
    ) -> Submitted:
        """Store the application as RECEIVED and ask for its dispatch, exactly once per content.

        Raises ApplicationConflict for the same number with other content, and
        queues.QueueUnavailable when the dispatch request could not be sent: the application is
        then stored and stays RECEIVED, and a repeat of the same body sends the request again.
        """
        try:
            stored = self._store.create(
                application,
                payload_sha256=payload_sha256,
                channel=channel,
                warnings=warnings,
                requeue_after_seconds=REQUEUE_AFTER_SECONDS,
            )
        except ApplicationExists as exists:
            existing = exists.existing
            if existing.payload_sha256 != payload_sha256:
                raise ApplicationConflict(existing) from None
            if existing.status is Status.RECEIVED and existing.queued_at is None:
                self._request_dispatch(existing)
            return Submitted(existing, created=False)
        self._request_dispatch(stored)
        return Submitted(stored, created=True)

    def _request_dispatch(self, stored: StoredApplication) -> None:
        application = stored.application
        self._queue.request_dispatch(application.source_system, application.open_apply_code)
        self._store.mark_queued(stored)

    def get(self, source_system: str, open_apply_code: str) -> StoredApplication | None:
        return self._store.get(source_system, open_apply_code)
