"""Intake's use case: store an application once per content and ask for its dispatch.

Ports (store, queue) are passed in, so unit tests run it with fakes or moto alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from fapiao_hub.models import Application, InvoiceType, Problem, Status, invoice_key, request_number_for
from fapiao_hub.queues import DispatchQueue
from fapiao_hub.store import (
    ApplicationExists,
    ApplicationStore,
    BlueInvoiceTypeDiffers,
    BlueInvoiceUnknown,
    RedLimitExceeded,
    StoredApplication,
)

# How long a RECEIVED application may wait for dispatch before the poller re-queues it (a lost
# queue message, or a queue failure the caller never retried).
REQUEUE_AFTER_SECONDS = 300


class ApplicationConflict(Exception):
    """The same application number arrived again with different content."""

    def __init__(self, existing: StoredApplication):
        super().__init__(existing.key)
        self.existing = existing


class RedRefused(Exception):
    """A red application its blue invoice does not allow (docs/rules.md section 4); nothing was stored or reserved.

    ``problem.path`` is canonical (``("red", "blue_invoice_number")``, ``("invoice_type",)``): the
    intake shape names the caller's field.
    """

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


@dataclass(frozen=True)
class Submitted:
    stored: StoredApplication
    created: bool


class Intake:
    def __init__(self, store: ApplicationStore, queue: DispatchQueue):
        self._store = store
        self._queue = queue

    def submit(
        self,
        application: Application,
        *,
        payload_sha256: str,
        channel: str | None,
        warnings: list[str],
        reverses_outside_invoices: bool = False,
    ) -> Submitted:
        """Store the application as RECEIVED and ask for its dispatch, exactly once per content.

        Raises ApplicationConflict for the same number with other content, RedRefused when a red
        application's blue invoice does not allow it (not this business system's and seller's, of
        the other kind, or not enough left; with ``reverses_outside_invoices``, the business
        system's configuration switch, a blue invoice it does not own is accepted with a warning
        instead, nothing reserved), and queues.QueueUnavailable
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
        reserved_on = self._reserve_red(application, warnings, reverses_outside_invoices)
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

    def _reserve_red(self, application: Application, warnings: list[str], outside_allowed: bool) -> str | None:
        """Take a red application's amount from what its blue invoice has left (docs/rules.md section 4).

        Only a blue invoice issued through the hub for this business system and seller can be
        reversed; any other reads exactly like an unknown one (no figure of anyone else's).
        """
        red = application.red
        if red is None:
            return None
        blue = invoice_key(red.blue_invoice_code, red.blue_invoice_number)
        label = (
            f"{red.blue_invoice_code}/{red.blue_invoice_number}" if red.blue_invoice_code else red.blue_invoice_number
        )
        special = application.invoice_type.is_special
        try:
            if not application.seller.tax_number:  # no seller identity to match an invoice against
                raise BlueInvoiceUnknown(blue)
            self._store.reserve_red(
                blue,
                -application.amount,
                -application.tax,
                source_system=application.source_system,
                seller_tax_number=application.seller.tax_number,
                invoice_types=tuple(t.value for t in InvoiceType if t.is_special == special),
            )
        except BlueInvoiceUnknown:
            if outside_allowed:
                warnings.append(
                    f"blue invoice {label} was not issued through the hub for this business system and seller: "
                    "what is left to reverse cannot be checked"
                )
                return None
            raise RedRefused(
                Problem(
                    path=("red", "blue_invoice_number"),
                    message=f"blue invoice {label} was not issued through the hub for this business system and "
                    "seller: there is nothing here to reverse",
                )
            ) from None
        except BlueInvoiceTypeDiffers as differs:
            kind = "special (专票)" if special else "normal (普票)"
            raise RedRefused(
                Problem(
                    path=("invoice_type",),
                    message=f"a special (专票) invoice is reversed only by a special invoice, and a normal one only "
                    f"by a normal one: blue invoice {label} is {differs.blue_invoice_type}, this red application "
                    f"is {kind} ({application.invoice_type.value})",
                )
            ) from None
        except RedLimitExceeded as exceeded:
            raise RedRefused(
                Problem(
                    path=("red", "blue_invoice_number"),
                    message=f"reverses {-application.amount} + tax {-application.tax}, but blue invoice {label} "
                    f"has {exceeded.remaining_amount} + tax {exceeded.remaining_tax} left to reverse",
                )
            ) from None
        return blue

    def _request_dispatch(self, stored: StoredApplication) -> None:
        application = stored.application
        self._queue.request_dispatch(application.source_system, application.open_apply_code)

    def get(self, source_system: str, open_apply_code: str) -> StoredApplication | None:
        return self._store.get(source_system, open_apply_code)

    def invoices(self, stored: StoredApplication) -> list[dict]:
        return self._store.invoices(stored)
