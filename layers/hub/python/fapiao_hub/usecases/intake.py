"""Intake's use case: store an application once per content and ask for its dispatch.

Ports (store, queue) are passed in, so unit tests run it with fakes or moto alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from fapiao_hub.domain.models import (
    NEEDS_PERSON_STATUSES,
    Application,
    Direction,
    InvoiceType,
    Problem,
    Status,
    invoice_key,
    new_request_number,
)
from fapiao_hub.infra.queues import DispatchQueue
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.errors import (
    ApplicationExists,
    BlueInvoiceTypeDiffers,
    BlueInvoiceUnknown,
    RedLimitExceeded,
    StaleWrite,
)
from fapiao_hub.infra.store.records import StoredApplication

# How long a RECEIVED application may wait for dispatch before the poller re-queues it (a lost
# queue message, or a queue failure the caller never retried).
REQUEUE_AFTER_SECONDS = 300


class ApplicationConflict(Exception):
    """The same application number arrived again with different content, and may not be replaced
    (only a REJECTED application may be sent again with corrected content). ``message`` says why and
    what to do instead."""

    def __init__(self, existing: StoredApplication):
        super().__init__(existing.key)
        self.existing = existing
        self.message = _conflict_message(existing)


def _conflict_message(existing: StoredApplication) -> str:
    code = existing.application.open_apply_code
    status = existing.status
    head = f"openApplyCode {code!r} was already received with different content"
    if status in NEEDS_PERSON_STATUSES:
        return (
            f"{head} and is waiting for a person ({status.value}): an operator resolves it first; once it is "
            "closed as not issued (REJECTED) it may be sent again with corrected content"
        )
    if status.is_open:
        return (
            f"{head} and is still being processed ({status.value}): wait for its outcome; only a REJECTED "
            "application may be sent again with corrected content"
        )
    if status is Status.REJECTED:
        return f"{head} and is REJECTED, but it changed meanwhile: send the corrected order again"
    return (
        f"{head} and was {status.value}: an issued application is not replaced; reverse its invoice with a red "
        "application (openInvoiceType 1) under a new openApplyCode"
    )


class VoidRefused(Exception):
    """A void request the hub refuses (400): ``field`` is the caller's field (seed 004 name)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class VoidConflict(Exception):
    """A void request for an application that is not ISSUED now (409)."""

    def __init__(self, stored: StoredApplication, message: str):
        super().__init__(message)
        self.stored = stored
        self.message = message


@dataclass(frozen=True)
class VoidRequest:
    """Seed 004 openInvoiceType 2 (作废): void the invoice the hub issued for this business system and
    seller. Represented as an action on the blue application (ISSUED -> VOIDING -> VOIDED)."""

    source_system: str
    open_apply_code: str  # the void request's own code, recorded on the blue application
    seller_tax_number: str | None
    blue_invoice_number: str
    blue_invoice_code: str | None
    reason: str


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


# Where a submission's request number comes from: (application key, submission) -> number.
RequestNumbers = Callable[[str, int], str]


def random_request_numbers(key: str, submission: int) -> str:
    """Production's: drawn at random (models.new_request_number), whatever the key."""
    return new_request_number()


class Intake:
    def __init__(
        self,
        store: ApplicationStore,
        queue: DispatchQueue,
        *,
        clock: Callable[[], float] = time.time,
        request_numbers: RequestNumbers = random_request_numbers,
    ):
        self._store = store
        self._queue = queue
        self._clock = clock
        # Only the local run's fault-scripting tests pass another (local/run.py); the Lambda never does.
        self._request_numbers = request_numbers

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
                return self._again(existing, payload_sha256, application, channel, warnings, reverses_outside_invoices)
        reserved_on = self._reserve_red(application, warnings, reverses_outside_invoices)
        try:
            stored = self._store.create(
                application,
                payload_sha256=payload_sha256,
                channel=channel,
                warnings=warnings,
                requeue_after_seconds=REQUEUE_AFTER_SECONDS,
                request_number=self._request_numbers(application.key, 1),
                extra_fields={"red_reserved_on": reserved_on} if reserved_on else None,
            )
        except BaseException as failure:
            if reserved_on:  # not stored: what it held of the blue invoice is free again
                self._store.release_red(reserved_on, -application.amount, -application.tax)
            if isinstance(failure, ApplicationExists):
                return self._again(
                    failure.existing, payload_sha256, application, channel, warnings, reverses_outside_invoices
                )
            raise
        self._request_dispatch(stored)
        return Submitted(stored, created=True)

    def _again(
        self,
        existing: StoredApplication,
        payload_sha256: str,
        application: Application | None = None,
        channel: str | None = None,
        warnings: list[str] | None = None,
        reverses_outside_invoices: bool = False,
    ) -> Submitted:
        if existing.payload_sha256 != payload_sha256:
            if existing.status is Status.REJECTED and application is not None:
                return self._resubmit(
                    existing, application, payload_sha256, channel, warnings or [], reverses_outside_invoices
                )
            raise ApplicationConflict(existing)
        if existing.status is Status.RECEIVED:
            # Not dispatched yet: its request may never have reached the queue (a 503), or been
            # lost. Asking again is harmless (the dispatch claim is conditional) and cheaper than
            # recording on the application that it was sent.
            self._request_dispatch(existing)
        return Submitted(existing, created=False)

    def _resubmit(
        self,
        rejected: StoredApplication,
        application: Application,
        payload_sha256: str,
        channel: str | None,
        warnings: list[str],
        reverses_outside_invoices: bool,
    ) -> Submitted:
        """A REJECTED application sent again with corrected content: a new submission with its own
        request number (the rejected one's number is never sent again), both kept in the history.

        A red one reserves from its blue invoice again (the rejection released what it held); if the
        replacing write loses (another resubmission, any change), the reservation is given back."""
        submission = rejected.submission + 1
        reserved_on = self._reserve_red(application, warnings, reverses_outside_invoices)
        try:
            stored = self._store.resubmit(
                rejected,
                application,
                payload_sha256=payload_sha256,
                channel=channel,
                warnings=warnings,
                request_number=self._request_numbers(application.key, submission),
                submission=submission,
                requeue_after_seconds=REQUEUE_AFTER_SECONDS,
                extra_fields={"red_reserved_on": reserved_on} if reserved_on else None,
            )
        except BaseException as failure:
            if reserved_on:
                self._store.release_red(reserved_on, -application.amount, -application.tax)
            if isinstance(failure, StaleWrite):
                now = self._store.get(application.source_system, application.open_apply_code)
                if now is not None and now.payload_sha256 == payload_sha256:
                    return Submitted(now, created=False)  # the same correction, sent twice at once
                raise ApplicationConflict(now or rejected) from None
            raise
        self._request_dispatch(stored)
        return Submitted(stored, created=True)

    def void(self, request: VoidRequest, *, can_void: Callable[[str | None, InvoiceType], bool]) -> Submitted:
        """Ask for the invoice's application to be voided: ISSUED -> VOIDING, then dispatch sends the
        void to the channel that issued it and follows it to VOIDED.

        VoidRefused (400, nothing changed): an invoice the hub did not issue for this business system
        and seller (one answer for unknown and someone else's), a 数电 invoice, a channel that cannot
        void it, an invoice already (partly) reversed by red invoices. VoidConflict (409): the
        application is not ISSUED. The same request again answers the same (created False).
        """
        label = (
            f"{request.blue_invoice_code}/{request.blue_invoice_number}"
            if request.blue_invoice_code
            else (request.blue_invoice_number)
        )
        unknown = VoidRefused(
            "blueInvoiceNumber",
            f"invoice {label} was not issued through the hub for this business system and seller: there is "
            "nothing here to void",
        )
        invoice = self._store.invoice(invoice_key(request.blue_invoice_code, request.blue_invoice_number))
        if (
            invoice is None
            or not request.seller_tax_number
            or invoice.get("source_system") != request.source_system
            or invoice.get("seller_tax_number") != request.seller_tax_number
            or invoice.get("direction") != Direction.BLUE.value
            or not invoice.get("open_apply_code")
        ):
            raise unknown
        stored = self._store.get(request.source_system, str(invoice["open_apply_code"]))
        if stored is None:
            raise unknown
        if stored.void is not None and stored.void.request == request.open_apply_code and stored.status in (
            Status.VOIDING, Status.VOIDED
        ):  # fmt: skip
            return Submitted(stored, created=False)
        invoice_type = InvoiceType(str(invoice.get("invoice_type") or stored.application.invoice_type.value))
        if invoice_type.is_digital:
            raise VoidRefused(
                "blueInvoiceNumber",
                f"invoice {label} is a 数电 invoice ({invoice_type.value}): a 数电 invoice cannot be voided; issue a "
                "red invoice",
            )
        if stored.status is not Status.ISSUED:
            raise VoidConflict(
                stored,
                f"invoice {label} belongs to application {stored.application.open_apply_code!r}, which is "
                f"{stored.status.value}: only an ISSUED application can be voided",
            )
        channel = str(invoice.get("channel") or stored.channel or "")
        if not can_void(channel or None, invoice_type):
            raise VoidRefused(
                "openInvoiceType",
                f"invoice {label} was issued by channel {channel or '(unknown)'}, which cannot void a "
                f"{invoice_type.value} invoice: issue a red invoice",
            )
        amount, remaining = invoice.get("amount"), invoice.get("red_remaining_amount")
        if amount is not None and remaining is not None and Decimal(str(remaining)) < Decimal(str(amount)):
            raise VoidRefused(
                "blueInvoiceNumber",
                f"invoice {label} has red invoices against it: it cannot be voided (reverse the rest in red)",
            )
        try:
            moved = self._store.transition(
                stored,
                Status.VOIDING,
                note=f"void requested ({request.open_apply_code}): {request.reason}",
                changes={
                    "void_request": request.open_apply_code,
                    "void_reason": request.reason,
                    "void_requested_epoch": int(self._clock()),
                },
                next_poll_at=int(self._clock()),
            )
        except StaleWrite:
            now = self._store.get(request.source_system, str(invoice["open_apply_code"])) or stored
            raise VoidConflict(
                now, f"application {stored.application.open_apply_code!r} changed meanwhile ({now.status.value})"
            ) from None
        self._request_dispatch(moved)
        return Submitted(moved, created=True)

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
