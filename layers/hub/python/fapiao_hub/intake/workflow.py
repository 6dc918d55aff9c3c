"""Intake's use case: store an application once per content and ask for its dispatch.

Ports (store, queue) are passed in, so unit tests run it with fakes or moto alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from fapiao_hub.models import Application, Status, invoice_key, request_number_for
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

        Raises ApplicationConflict for the same number with other content, RedLimitExceeded when a
        red application asks for more than its blue invoice has left, and queues.QueueUnavailable
        when the dispatch request could not be sent: the application is then stored and stays
        RECEIVED, and a repeat of the same body sends the request again.
        """
        if application.red is not None:
            # A red application reserves from its blue invoice before it is stored: a repeat must be
            # recognised first, or it would reserve twice. A blue one needs no read: the conditional
            # put hands back what is stored (ApplicationExists).
            existing = self._store.get(application.source_system, application.open_apply_code)
            if existing is not None:
                return self._again(existing, payload_sha256)
        reserved_on = self._reserve_red(application, warnings)
        try:
            stored = self._store.create(
                application,
                payload_sha256=payload_sha256,
                channel=channel,
                warnings=warnings,
                requeue_after_seconds=REQUEUE_AFTER_SECONDS,
                request_number=request_number_for(application.key),
                extra_fields={"red_reserved_on": reserved_on} if reserved_on else None,
            )
        except BaseException as failure:
            if reserved_on:  # not stored: what it held of the blue invoice is free again
                self._store.release_red(reserved_on, -application.amount, -application.tax)
            if isinstance(failure, ApplicationExists):
                return self._again(failure.existing, payload_sha256)
            raise
        self._request_dispatch(stored)
        return Submitted(stored, created=True)

    def _again(self, existing: StoredApplication, payload_sha256: str) -> Submitted:
        if existing.payload_sha256 != payload_sha256:
            raise ApplicationConflict(existing)
        if existing.status is Status.RECEIVED:
            # Not dispatched yet: its request may never have reached the queue (a 503), or been
            # lost. Asking again is harmless (the dispatch claim is conditional) and cheaper than
            # recording on the application that it was sent.
            self._request_dispatch(existing)
        return Submitted(existing, created=False)

    def _reserve_red(self, application: Application, warnings: list[str]) -> str | None:
        """Take a red application's amount from what its blue invoice has left (DOMAIN.md 4)."""
        if application.red is None:
            return None
        blue = invoice_key(application.red.blue_invoice_code, application.red.blue_invoice_number)
        if self._store.invoice(blue) is None:
            warnings.append(
                f"blue invoice {application.red.blue_invoice_number} was not issued through the hub: "
                "what is left to reverse cannot be checked"
            )
            return None
        self._store.reserve_red(blue, -application.amount, -application.tax)  # raises RedLimitExceeded
        return blue

    def _request_dispatch(self, stored: StoredApplication) -> None:
        application = stored.application
        self._queue.request_dispatch(application.source_system, application.open_apply_code)

    def get(self, source_system: str, open_apply_code: str) -> StoredApplication | None:
        return self._store.get(source_system, open_apply_code)

    def invoices(self, stored: StoredApplication) -> list[dict]:
        return self._store.invoices(stored)
