"""What a channel's outcome does to an application once the channel has issued (or voided) invoices.

Verified against the application and recorded ISSUED (or VOIDED, VOIDING), or MISMATCH with a
finding; a result for an application that already has its outcome is never silent (a second
issuance, a result after a cancel: findings); an invoice the hub holds for another application is a
clash (finding, MANUAL_REVIEW). Also the invoices table items of a result and their states.

The state machine (dispatch.Dispatcher) decides when a result is applied; this module decides what
applying it writes. Its two steps back into the machine (close an application, publish its event)
come through ``Steps``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from aws_lambda_powertools import Logger

from fapiao_hub.domain import verification
from fapiao_hub.domain.china_time import china_day
from fapiao_hub.domain.models import Difference, Finding, FindingKind, Status, invoice_key
from fapiao_hub.domain.results import InvoiceState, IssuedInvoice
from fapiao_hub.infra import alarms, events
from fapiao_hub.infra.events import EventPublisher
from fapiao_hub.infra.files import FileStore
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.base import iso, utc_now
from fapiao_hub.infra.store.errors import IllegalTransition, InvoiceNumberTaken, StaleWrite
from fapiao_hub.infra.store.records import StoredApplication, finding_item
from fapiao_hub.usecases.result_files import ResultFiles

logger = Logger(child=True)

REVIEW = events.EventType.APPLICATION_NEEDS_REVIEW
# Applications with an outcome: a result for one is checked for a second issuance, not verified again.
# CANCELLED too: its business system was told nothing was issued, so an invoice for it is kept and
# becomes a finding (RESULT_AFTER_CANCEL), never dropped.
AFTER_OUTCOME = frozenset(
    {Status.ISSUED, Status.VOIDING, Status.VOIDED, Status.REJECTED, Status.MISMATCH, Status.CANCELLED}
)


class Steps(Protocol):
    """The state machine's steps an outcome takes (dispatch.Dispatcher)."""

    def finish(
        self, stored: StoredApplication, to: Status, reason: str, event_type: events.EventType, *,
        findings: list[Finding],
    ) -> str: ...  # fmt: skip

    def publish(self, stored: StoredApplication) -> None: ...


class Outcomes:
    """Records issued results, mismatches and findings on applications."""

    def __init__(
        self,
        store: ApplicationStore,
        events_publisher: EventPublisher,
        files: FileStore,
        result_files: ResultFiles,
        steps: Steps,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._events = events_publisher
        self._files = files
        self._result_files = result_files
        self._steps = steps
        self._clock = clock

    def issued(
        self,
        stored: StoredApplication,
        issued: tuple[IssuedInvoice, ...],
        note: str,
        *,
        fetch_files: bool = True,
        source: str = "dispatch",
        raw: bytes | None = None,
    ) -> str:
        """A channel's report of issued (or voided) invoices, applied to the state the application is in;
        ``fetch_files``: linked files may be fetched now (not while a pushing channel waits)."""
        application = stored.application
        request_number = stored.sent_request_number
        issued = tuple(verification.as_voided_original(invoice, stored.invoice_keys) for invoice in issued)
        fetched: dict[str, bytes | Exception] = {}
        if stored.status not in AFTER_OUTCOME:  # only a result still to be verified
            issued, fetched = self._result_files.read_figures(stored, issued, fetch=fetch_files)
        items = self.items(stored, issued, request_number)
        target = status_of(issued)
        for _ in range(3):  # a result must never be lost: re-read and apply it to whatever is there
            try:
                if stored.status in AFTER_OUTCOME:
                    result = self._after_outcome(stored, issued, items, target, note, source)
                else:
                    result = self._record_issued(stored, issued, items, target, note, source, raw)
            except StaleWrite:
                stored = self._store.get(application.source_system, application.open_apply_code)
                continue
            except IllegalTransition:
                logger.error("issued result for an application in %s", stored.status.value)
                return "ignored"
            except InvoiceNumberTaken as taken:
                return self._clash(stored, taken, note, source)
            self._result_files.store(stored, issued, items, fetch=fetch_files, fetched=fetched)
            return result
        raise StaleWrite(f"{stored.key}: could not record the issued result")  # retried by the queue

    def _after_outcome(
        self,
        stored: StoredApplication,
        issued: tuple[IssuedInvoice, ...],
        items: list[dict[str, object]],
        target: Status,
        note: str,
        source: str,
    ) -> str:
        """A result for an application that already has its outcome (ISSUED, REJECTED, MISMATCH, ...).

        The same invoices again: their states are updated (a void), nothing else. A different invoice
        is never silent: it is recorded, linked to the application, and a POSSIBLE_DUPLICATE_ISSUANCE
        finding, an event and an alarm follow; the status does not change (a person decides). This
        replaces the former "split result arriving in parts" path: every channel reports a split
        result complete (Kingdee waits until each invoice of the bill has a number, Ekuaibao pushes a
        serial number's invoices at once, the partner answers a query with all of them), so a part
        arriving later cannot be told from a second issuance; a person who sees that it was the rest
        of a split acknowledges the finding.
        """
        new_items = [i for i in items if i["pk"] not in stored.invoice_keys]
        if not new_items:
            issued_before = stored.status in (Status.ISSUED, Status.VOIDING, Status.VOIDED)
            if issued_before and not (
                stored.status is target or (stored.status is Status.VOIDED and target is not Status.VOIDED)
            ):
                return self._record_issued(stored, issued, items, target, note, source, None)  # a void, or undone
            if stored.invoice_keys:
                self._update_invoice_states(issued)
            return "already issued" if issued_before else "already recorded"
        self._store.record_invoices(stored.key, new_items)
        recorded = [str(k) for k in stored.invoice_keys]
        new_numbers = [str(i["number"]) for i in new_items]
        summary = (
            f"{note} after the application was {stored.status.value}: invoice {', '.join(new_numbers)} "
            f"is another invoice (recorded: {', '.join(recorded) or 'none'}); possibly issued twice"
        )
        kind = FindingKind.POSSIBLE_DUPLICATE_ISSUANCE
        if stored.status is Status.CANCELLED:
            kind = FindingKind.RESULT_AFTER_CANCEL
            summary = (
                f"{note} after an operator CANCELLED the application (its business system was told nothing was "
                f"issued and may send it again): invoice {', '.join(new_numbers)}; reverse it, or tell the business "
                "system"
            )
        difference = Difference(
            field="invoices",
            expected=", ".join(recorded) or f"no invoice ({stored.status.value})",
            reported=", ".join(str(i["pk"]) for i in items),
        )
        new_keys = [str(i["pk"]) for i in new_items]
        return self._late_finding(stored, summary, source, new_numbers, new_keys, difference, kind=kind)

    def _late_finding(
        self,
        stored: StoredApplication,
        summary: str,
        source: str,
        numbers: list[str],
        new_keys: list[str],
        difference: Difference | None,
        *,
        kind: FindingKind = FindingKind.POSSIBLE_DUPLICATE_ISSUANCE,
    ) -> str:
        """Record a finding (POSSIBLE_DUPLICATE_ISSUANCE unless told; once), announce it, link the new invoices."""
        finding = verification.finding_for(
            kind, stored.key, source=source, summary=summary,
            at=iso(utc_now()), differences=[difference] if difference else [], invoice_numbers=numbers,
        )  # fmt: skip
        self.record_finding(stored, finding)
        if new_keys:
            self._store.add_invoice_keys(stored, new_keys)
        return "possible duplicate" if kind is FindingKind.POSSIBLE_DUPLICATE_ISSUANCE else "result after cancel"

    def record_finding(self, stored: StoredApplication, finding: Finding) -> bool:
        """A finding on an application without a status change: announced, recorded once (seen again:
        counted), alarmed the first time. True when it is new."""
        announced = finding_item(finding)
        announced.pop("related", None)  # other applications (maybe another tenant's): the desk's only
        # The event first: if it fails, the queue (or the channel) brings the result back and all of
        # this runs again (the finding once; a repeated event is de-duplicated by its receivers).
        self._events.publish(
            application_event(
                stored, events.EventType.FINDING_RECORDED, stored.status, reason=finding.summary, findings=[announced]
            )
        )
        new = self._store.add_finding(stored, finding, note=finding.summary)
        if new:
            alarms.finding_recorded(finding)
        return new

    def not_applied(self, stored: StoredApplication, to: Status, reason: str) -> None:
        """A report the state it found cannot take (e.g. a refusal after a void began): the state
        stands, but never silently: a finding says what was reported and what is stored."""
        logger.info("a report that would move %s to %s is not applied", stored.status.value, to.value)
        self.record_finding(stored, verification.finding_for(
            FindingKind.REPORT_NOT_APPLIED, stored.key, source="dispatch",
            summary=f"not applied in {stored.status.value}: {reason}", at=iso(utc_now()),
            differences=[Difference(field="status", expected=stored.status.value, reported=to.value)],
        ))  # fmt: skip

    def _clash(self, stored: StoredApplication, taken: InvoiceNumberTaken, note: str, source: str) -> str:
        """The channel reports, for this application, an invoice the hub holds for another one: never
        silent. The invoice stays where it was recorded; this application gets a finding naming the
        holder (for the desk) and waits in MANUAL_REVIEW, or keeps the state it is in (an outcome, a
        person's state, a void) with the finding. Ways out: resolve-issued with the invoice the channel
        really issued for it, or resolve-not-issued (closed REJECTED: the same request number would
        only bring the clashing invoice back)."""
        keys = [str(k) for k in taken.args[0]]
        summary = f"{note}, but invoice {', '.join(keys)} is recorded for another application"
        finding = verification.finding_for(
            FindingKind.INVOICE_CLASH, stored.key, source=source, summary=summary, at=iso(utc_now()),
            differences=[
                Difference(field=f"invoices[{k}].application", expected="this application", reported="another")
                for k in keys
            ],
            invoice_numbers=keys,
        ).model_copy(update={"related": tuple(sorted({h for h in taken.holders.values() if h}))})  # fmt: skip
        if stored.status.is_open and stored.status is not Status.VOIDING:
            result = self._steps.finish(stored, Status.MANUAL_REVIEW, summary, REVIEW, findings=[finding])
            if result == Status.MANUAL_REVIEW.value.lower():
                alarms.finding_recorded(finding)
            return result
        self.record_finding(stored, finding)
        return "clash"

    def _record_issued(
        self,
        stored: StoredApplication,
        issued: tuple[IssuedInvoice, ...],
        items: list[dict[str, object]],
        target: Status,
        note: str,
        source: str,
        raw: bytes | None,
    ) -> str:
        application = stored.application
        new_items = [i for i in items if i["pk"] not in stored.invoice_keys]
        if stored.status not in AFTER_OUTCOME:
            today = china_day(datetime.fromtimestamp(self._clock(), UTC))
            differences = verification.verify_result(application, issued, received_at=stored.created_at, today=today)
            if differences:
                return self._mismatch(stored, issued, items, new_items, differences, note, source, raw)
        event_type = {
            Status.ISSUED: events.EventType.INVOICE_ISSUED,
            Status.VOIDED: events.EventType.INVOICE_VOIDED,
        }.get(target)
        event = None
        if event_type is not None:
            event = application_event(stored, event_type, target, invoices=_event_invoices(issued, items))
        if stored.status is Status.ISSUED or stored.status is Status.VOIDING:
            self._update_invoice_states(issued, stored)
        done = self._store.transition(
            stored, target, note=note if target is Status.ISSUED else f"{note}: {target.value.lower()}",
            changes={"reason": None, **self._kept_answer(stored, raw)}, invoices=new_items, pending_event=event,
        )  # fmt: skip
        self._steps.publish(done)
        return target.value.lower()

    def _kept_answer(self, stored: StoredApplication, raw: bytes | None) -> dict[str, object]:
        """The answer as the channel sent it, verified or not: the raw answer of every attempt is readable
        from the detail (a callback's is archived already: ``raw`` None)."""
        if raw is None:
            return {}
        request_number = stored.sent_request_number
        return {"raw_answer": self._files.put_raw_answer(stored.channel or "channel", request_number,
                                                          str(int(self._clock())), raw)}  # fmt: skip

    def _mismatch(
        self,
        stored: StoredApplication,
        issued: tuple[IssuedInvoice, ...],
        items: list[dict[str, object]],
        new_items: list[dict[str, object]],
        differences: tuple[Difference, ...],
        note: str,
        source: str,
        raw: bytes | None,
    ) -> str:
        """The result differs from the application: recorded in full, MISMATCH with a finding, review."""
        unreadable = verification.only_unreadable(differences)
        kind = FindingKind.UNREADABLE_RESULT if unreadable else FindingKind.RESULT_MISMATCH
        what = "could not be read in full" if unreadable else "differs from the application"
        summary = f"{note}, but the result {what}: {verification.describe(differences)}"
        finding: Finding = verification.finding_for(
            kind, stored.key, source=source, summary=summary, at=iso(utc_now()), differences=differences,
            invoice_numbers=[str(i["number"]) for i in items],
        )  # fmt: skip
        event = application_event(
            stored, REVIEW, Status.MISMATCH, reason=summary, invoices=_event_invoices(issued, items),
            findings=[finding_item(finding)],
        )  # fmt: skip
        done = self._store.transition(
            stored, Status.MISMATCH, note=summary, changes={"reason": summary, **self._kept_answer(stored, raw)},
            invoices=new_items, pending_event=event,
            findings=[finding],
        )  # fmt: skip
        alarms.finding_recorded(finding)
        alarms.result_mismatch()
        self._steps.publish(done)
        return "mismatch"

    def _update_invoice_states(
        self, issued: tuple[IssuedInvoice, ...], stored: StoredApplication | None = None
    ) -> None:
        for invoice in issued:
            if not (invoice.number or "").strip():
                continue
            changes: dict[str, object] = {"status": invoice.state.value}
            if invoice.state is InvoiceState.VOIDED and stored is not None and stored.void is not None:
                changes.update(red_remaining_amount=0, red_remaining_tax=0)  # nothing left to reverse in red
            self._store.update_invoice(invoice_key(invoice.code, invoice.number), changes)

    def items(
        self, stored: StoredApplication, issued: tuple[IssuedInvoice, ...], request_number: str
    ) -> list[dict[str, object]]:
        """The invoices table items of a result, each saying what of it was compared (verification)."""
        compared = verification.provenance(stored.application, issued)
        return [
            self._invoice_item(stored, invoice, request_number, len(issued), position, compared[position])
            for position, invoice in enumerate(issued)
        ]

    def _invoice_item(
        self,
        stored: StoredApplication,
        invoice: IssuedInvoice,
        request_number: str,
        count: int,
        position: int = 0,
        compared: verification.Provenance | None = None,
    ) -> dict[str, object]:
        application = stored.application
        # One invoice for the whole application: figures the channel left out are the application's
        # (not when it sent them unreadable: then the invoice has none, and a finding says why).
        alone = count == 1 and not invoice.unreadable
        amount = invoice.amount if invoice.amount is not None else (application.amount if alone else None)
        tax = invoice.tax if invoice.tax is not None else (application.tax if alone else None)
        item: dict[str, object] = {
            "pk": _item_key(invoice, request_number, position),
            "number": invoice.number,
            "application_key": stored.key,
            "source_system": application.source_system,
            "open_apply_code": application.open_apply_code,
            "seller_tax_number": application.seller.tax_number,
            "direction": application.direction.value,
            "invoice_type": (invoice.invoice_type or application.invoice_type).value,
            "channel": stored.channel,
            "request_number": request_number,
            "status": Status.ISSUED.value,
            "recorded_at": iso(utc_now()),
        }
        optional = {
            "code": invoice.code,
            "issued_on": invoice.issued_on.isoformat() if invoice.issued_on else None,
            "amount": amount,
            "tax": tax,
            "check_code": invoice.check_code,
            "channel_invoice_id": invoice.channel_invoice_id,
        }
        if application.red is not None:
            optional["blue_invoice_key"] = invoice_key(
                application.red.blue_invoice_code, application.red.blue_invoice_number
            )
        else:
            # What red invoices may still reverse (docs/rules.md section 4); the channel's figure wins.
            optional["red_remaining_amount"] = (
                invoice.red_remaining_amount if invoice.red_remaining_amount is not None else amount
            )
            optional["red_remaining_tax"] = invoice.red_remaining_tax if invoice.red_remaining_tax is not None else tax
            if invoice.state is not InvoiceState.ISSUED:  # a void (or one on its way): nothing to reverse
                optional["red_remaining_amount"] = optional["red_remaining_tax"] = 0
        if invoice.details:
            optional["details"] = dict(invoice.details)
        if invoice.unreadable:
            optional["unreadable"] = dict(invoice.unreadable)  # raw, as the channel sent it
        if invoice.seller_tax_number is not None:
            optional["reported_seller_tax_number"] = invoice.seller_tax_number
        if invoice.buyer_tax_number is not None:
            optional["reported_buyer_tax_number"] = invoice.buyer_tax_number
        if invoice.lines:
            optional["lines"] = [{k: v for k, v in vars(line).items() if v is not None} for line in invoice.lines]
        item["status"] = invoice.state.value
        item.update({k: v for k, v in optional.items() if v is not None})
        if compared is not None:
            # What "issued" rests on: figures compared with the channel's statement (its answer or its
            # file), those an operator typed, and those the hub holds only from the application.
            stored_from_application = [f for f in verification.FROM_APPLICATION_FIGURES if f not in ("amount", "tax")]
            stored_from_application += [f for f in ("amount", "tax") if item.get(f) is not None]
            item["verified"] = list(compared.verified)
            item["from_file"] = list(compared.from_file)
            item["attested_by_operator"] = list(compared.attested_by_operator)
            item["from_application"] = list(compared.unverified(stored_from_application))
        return item

    def record_result(self, stored: StoredApplication, issued: tuple[IssuedInvoice, ...], note: str) -> str:
        """A result an operator vouches for (seen at the channel or the bureau, or an unmatched one):
        verified and recorded like a channel's, once, on the state read (StaleWrite if it moved; no
        retry: the operator is answered 409 and decides again). Raises InvoiceNumberTaken."""
        request_number = stored.sent_request_number
        items = self.items(stored, issued, request_number)
        result = self._record_issued(stored, issued, items, status_of(issued), note, "operator", None)
        self._result_files.store(stored, issued, items, fetch=True)
        return result

    def accept_reported(self, stored: StoredApplication, items: list[dict], note: str) -> StoredApplication:
        """MISMATCH -> ISSUED: a person accepted the invoices the channel reported (already recorded);
        the business system is told as for any issued invoice (InvoiceIssued). Raises StaleWrite."""
        event = application_event(
            stored, events.EventType.INVOICE_ISSUED, Status.ISSUED,
            # No "files": the notifier reads the recorded invoices and their files.
            invoices=[{k: item[k] for k in _EVENT_INVOICE_FIELDS if k in item} for item in items],
        )  # fmt: skip
        done = self._store.transition(stored, Status.ISSUED, note=note, changes={"reason": None}, pending_event=event)
        self._steps.publish(done)
        return done


def _item_key(invoice: IssuedInvoice, request_number: str, position: int) -> str:
    """The invoices table key; an invoice reported without a number gets a stable one of its own."""
    number = (invoice.number or "").strip()
    return invoice_key(invoice.code, number) if number else f"UNNUMBERED-{request_number}-{position + 1}"


def status_of(issued: tuple[IssuedInvoice, ...]) -> Status:
    """Where the application stands given its invoices' states."""
    states = {invoice.state for invoice in issued}
    if states and states <= {InvoiceState.VOIDED}:
        return Status.VOIDED
    if InvoiceState.VOID_REQUESTED in states or InvoiceState.VOIDED in states:
        return Status.VOIDING
    return Status.ISSUED


_EVENT_INVOICE_FIELDS = (
    "number", "code", "issued_on", "invoice_type", "amount", "tax", "status",
    "verified", "from_file", "attested_by_operator", "from_application",  # what "issued" rests on
)  # fmt: skip


def _event_invoices(issued: tuple[IssuedInvoice, ...], items: list[dict[str, object]]) -> list[dict]:
    """The invoices as their outcome event names them (from the items to be stored)."""
    named = []
    for invoice, item in zip(issued, items, strict=True):
        one = {k: item[k] for k in _EVENT_INVOICE_FIELDS if k in item}
        if not invoice.files:
            # No files to store: the event is complete and the notifier need not read the invoice
            # (files are stored after the event is published).
            one["files"] = []
        named.append(one)
    return named


def application_event(
    stored: StoredApplication, event_type: events.EventType, status: Status, **detail: object
) -> dict:
    """An event about a stored application (pending until published): its keys, the status it
    announces, its channel and request number, then ``detail``."""
    application = stored.application
    return events.outcome_event(
        event_type, source_system=application.source_system, open_apply_code=application.open_apply_code,
        status=status.value, channel=stored.channel, request_number=stored.sent_request_number, **detail,
    )  # fmt: skip
