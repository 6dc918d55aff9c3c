"""A person decides an application's outcome: resolve-issued, resolve-not-issued, cancel,
attach-result, resolve-voided and resolve-not-voided (docs/operations.md, the runbook).

Where the channel can be asked, its answer decides and is applied as a poll's; an invoice an operator
vouches for, or an unmatched result attached, is verified and recorded as a channel's would be. Every
result goes through the Dispatcher (usecases/dispatch.py), so nothing here repeats how results,
invoices and outcome events are recorded. Called by the Operations use case (operations.py), which
has checked the request and that the action applies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger

from fapiao_hub.channels.base import Channel
from fapiao_hub.domain import verification
from fapiao_hub.domain.models import FindingKind, InvoiceType, Status, invoice_key
from fapiao_hub.domain.results import (
    Accepted,
    InvoiceLine,
    InvoiceState,
    Issued,
    IssuedInvoice,
    NotFound,
    NotSent,
    Rejected,
    Unknown,
)
from fapiao_hub.infra import events
from fapiao_hub.infra.queues import DispatchQueue
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.errors import IllegalTransition, InvoiceNumberTaken, StaleWrite
from fapiao_hub.infra.store.records import StoredApplication
from fapiao_hub.usecases.action_checks import ActionInvalid, ActionNotApplicable, moved
from fapiao_hub.usecases.dispatch import Dispatcher
from fapiao_hub.usecases.routing import ChannelDirectory

logger = Logger(child=True)

# Findings that a person's acceptance of the reported invoice answers.
_ANSWERED_BY_ACCEPTING = frozenset({FindingKind.RESULT_MISMATCH, FindingKind.UNREADABLE_RESULT})
# Findings that a person's decision on the outcome (issued with another invoice, or not issued) answers.
_ANSWERED_BY_DECIDING = frozenset({FindingKind.INVOICE_CLASH, FindingKind.REPORT_NOT_APPLIED})


class Resolutions:
    """The actions that decide an outcome, each ``(stored, reason, operator, checked params) -> detail``."""

    def __init__(
        self,
        store: ApplicationStore,
        dispatcher: Dispatcher,
        channels: ChannelDirectory,
        queue: DispatchQueue,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._dispatcher = dispatcher
        self._channels = channels
        self._queue = queue
        self._clock = clock

    def _channel(self, stored: StoredApplication) -> tuple[str | None, Channel | None]:
        return self._channels.channel_for(stored.application, stored.channel)

    def resolve_issued(self, stored: StoredApplication, reason: str, operator: str, invoice: dict) -> dict:
        number, code = invoice["number"], invoice["code"]
        note = f"resolve-issued by operator {operator}: {reason}; invoice {invoice_key(code, number)}"
        if stored.status is Status.MISMATCH:
            return self._accept_reported(stored, number, code, note, operator, reason)
        name, channel = self._channel(stored)
        if channel is not None and channel.can_query:
            # Checked where the channel can answer: its answer, recorded as a poll's, decides.
            request_number = stored.sent_request_number
            outcome = channel.query(stored.application, request_number)
            reported = outcome.invoices if isinstance(outcome, Issued) else ()
            if not any(i.number == number and (code is None or i.code == code) for i in reported):
                raise ActionInvalid(
                    "invoice.number",
                    f"{name} does not report invoice {invoice_key(code, number)} for request number "
                    f"{request_number}: it answers {describe_outcome(outcome)}",
                )
            # The channel's answer is a fact: applied as a poll's (never lost, even if it moved meanwhile).
            result = self._dispatcher.apply_answer(stored, outcome, channel)
            self._store.note(stored.key, f"{note}, confirmed by a query of {name} ({result})")
            if result not in ("issued", "mismatch", "voiding", "voided"):
                raise moved(self._store, stored, f"{name}'s answer is recorded ({result}); resolve-issued")
            return {"checked_by": f"query of {name}", "result": result}
        result = self._record(stored, (_attested(invoice, name),), note, "invoice.number")
        current = self._store.get(stored.application.source_system, stored.application.open_apply_code) or stored
        self._answered(current, _ANSWERED_BY_DECIDING, operator, reason)
        return {"checked_by": "the operator", "result": result}

    def _accept_reported(
        self, stored: StoredApplication, number: str, code: str | None, note: str, operator: str, reason: str
    ) -> dict:
        items = self._store.invoices(stored)
        if not any(item.get("number") == number and (code is None or item.get("code") == code) for item in items):
            reported = ", ".join(str(item["pk"]) for item in items) or "none"
            wanted = invoice_key(code, number)
            raise ActionInvalid("invoice.number", f"the channel reported {reported} for this application, not {wanted}")
        try:
            done = self._dispatcher.outcomes.accept_reported(stored, items, f"{note} (the reported invoice accepted)")
        except (StaleWrite, IllegalTransition):
            raise moved(self._store, stored, "resolve-issued") from None
        self._answered(done, _ANSWERED_BY_ACCEPTING, operator, reason)
        return {"result": "issued", "checked_by": "the channel's report"}

    def _answered(self, stored: StoredApplication, kinds: frozenset[FindingKind], operator: str, reason: str) -> None:
        """The person's decision answers the open findings of these kinds: acknowledged with its reason."""
        source_system, code = stored.application.source_system, stored.application.open_apply_code
        for finding in stored.open_findings:
            if finding.kind in kinds:
                current = self._store.get(source_system, code) or stored
                try:
                    self._store.acknowledge_finding(
                        current, finding.id, by=operator, reason=reason,
                        note=f"finding {finding.id} acknowledged by operator {operator}: {reason}",
                    )  # fmt: skip
                except (StaleWrite, StopIteration):
                    logger.warning("finding left open", extra={"finding": finding.id})

    def _record(self, stored: StoredApplication, issued: tuple[IssuedInvoice, ...], note: str, field: str) -> str:
        try:
            result = self._dispatcher.outcomes.record_result(stored, issued, note)
        except (StaleWrite, IllegalTransition):
            raise moved(self._store, stored, "the result is not recorded;") from None
        except InvoiceNumberTaken as taken:
            keys = ", ".join(str(k) for k in taken.args[0])
            raise ActionInvalid(
                field,
                f"invoice {keys} is recorded for another application: give the invoice the channel issued "
                "for this one, or resolve-not-issued if it issued none",
            ) from None
        return result

    def resolve_not_issued(self, stored: StoredApplication, reason: str, operator: str, _: dict) -> dict:
        name, channel = self._channel(stored)
        note = f"resolve-not-issued by operator {operator}: {reason}"
        # Invoices the channel reports that the hub holds for other applications (the clash the person
        # is deciding on): the channel repeating them is not news.
        clashing = {n for f in stored.open_findings if f.kind is FindingKind.INVOICE_CLASH for n in f.invoice_numbers}
        clash = bool(clashing)
        if channel is not None and channel.can_query:
            # The channel's word first: an invoice it reports is recorded, never overruled.
            # Only an invoice is applied here: any other answer leaves the operator's decision to stand.
            outcome = channel.query(stored.application, stored.sent_request_number)
            invoices = outcome.invoices if isinstance(outcome, Issued) else ()
            reported = {invoice_key(i.code, i.number) for i in invoices}
            if reported and not reported <= clashing:
                self._dispatcher.apply_answer(stored, outcome, channel)
                said = describe_outcome(outcome)
                raise moved(self._store, stored, f"{name} answers {said}: recorded; resolve-not-issued")
        if channel is not None and channel.dedupes_request_number and not clash:
            now = int(self._clock())
            request_number = stored.sent_request_number
            try:
                self._store.transition(
                    stored, Status.RETRY_WAIT,
                    note=f"{note}; sent again as {request_number} ({name} de-duplicates request numbers)",
                    changes={
                        "reason": None, "uncertain": False, "attempts": 0, "polls": 0, "requeued_epoch": now,
                    },
                    next_poll_at=now,
                )  # fmt: skip
            except (StaleWrite, IllegalTransition):
                raise moved(self._store, stored, "resolve-not-issued") from None
            self._queue.request_dispatch(stored.application.source_system, stored.application.open_apply_code)
            return {"result": "sent again", "request_number": request_number}
        # The channel may not see the same request number twice (or, after a clash, would only answer
        # it with the clashing invoice again): closed, so that the business system may send the same
        # openApplyCode again (intake accepts a REJECTED one again, under a new request number).
        text = f"not issued (operator {operator}): {reason}"
        self._close(stored, Status.REJECTED, text, events.EventType.APPLICATION_REJECTED, note)
        self._answered(stored, _ANSWERED_BY_DECIDING, operator, reason)
        return {"result": "rejected"}

    def cancel(self, stored: StoredApplication, reason: str, operator: str, _: dict) -> dict:
        text = f"cancelled by operator {operator}: {reason}"
        note = f"cancel by operator {operator}: {reason}"
        self._close(stored, Status.CANCELLED, text, events.EventType.APPLICATION_CANCELLED, note)
        return {"result": "cancelled"}

    def attach_result(self, stored: StoredApplication, reason: str, operator: str, params: dict) -> dict:
        result_id = params["id"]
        # One answer whether the result does not exist, is attached already, or is another seller's,
        # business system's or channel's: nothing about a result the application cannot take shows.
        cannot = ActionInvalid("resultId", f"no unmatched result {result_id!r} this application could take")
        item = self._store.invoice(result_id)
        if not _could_belong(item, stored):
            raise cannot
        assert item is not None  # _could_belong checked it
        note = (
            f"attach-result by operator {operator}: {reason}; unmatched result {result_id} "
            f"(reported by {item.get('channel')}, request number {item.get('request_number') or 'none'}, "
            f"raw {item.get('raw') or 'not kept'})"
        )
        try:
            result = self._record(stored, (_issued_invoice(item),), note, "resultId")
        except ActionNotApplicable:
            self._store.restore_unmatched(item, stored.key)  # it stays to be attached again
            raise
        except ActionInvalid:
            raise cannot from None  # attached to another application meanwhile: not named
        return {"result": result, "resultId": result_id}

    def resolve_voided(self, stored: StoredApplication, reason: str, operator: str, _: dict) -> dict:
        """A person voided the invoice at the channel (one without a void call, or one that never
        reported it): recorded as the channel's report of the void would be (InvoiceVoided)."""
        items = self._store.invoices(stored)
        if not items:
            raise ActionNotApplicable(stored.status, "the application holds no invoice to void")
        voided = tuple(replace(_issued_invoice(item), state=InvoiceState.VOIDED) for item in items)
        note = f"resolve-voided by operator {operator}: {reason} (voided at {stored.channel or 'the channel'})"
        return {"result": self._record(stored, voided, note, "action")}

    def resolve_not_voided(self, stored: StoredApplication, reason: str, operator: str, _: dict) -> dict:
        """The void was not done (the channel refused it, the month closed): the invoice stands."""
        text = f"void not done (operator {operator}): {reason}"
        try:
            self._store.transition(
                stored, Status.ISSUED, note=f"resolve-not-voided by operator {operator}: {reason}",
                changes={"void_refused": text},
            )  # fmt: skip
        except (StaleWrite, IllegalTransition):
            raise moved(self._store, stored, "resolve-not-voided") from None
        return {"result": "issued"}

    def _close(self, stored: StoredApplication, to: Status, text: str, event_type: events.EventType, note: str) -> None:
        try:
            self._dispatcher.close(stored, to, text, event_type, note=note)
        except (StaleWrite, IllegalTransition):
            raise moved(self._store, stored, to.value.lower()) from None


def describe_outcome(outcome: object) -> str:
    """A channel's answer in a few words, for a history note and an error message."""
    match outcome:
        case Issued(invoices=invoices):
            return "issued: " + (", ".join(invoice_key(i.code, i.number) for i in invoices) or "no invoice")
        case Rejected(reason=reason):
            return f"rejected ({reason})"
        case Accepted():
            return "in progress"
        case NotFound():
            return "not found (never received)"
        case NotSent(reason=reason):
            return f"no answer (not sent: {reason})"
        case Unknown(reason=reason):
            return f"unknown ({reason})"
    return type(outcome).__name__


# What an operator must state of an invoice a channel cannot be asked about (resolve-issued): the
# figures that are otherwise only the application's, by their JSON names.
ATTESTED_FIGURES = (("amount", "amount"), ("tax", "tax"), ("sellerTaxNumber", "seller_tax_number"))


def _attested(invoice: dict[str, Any], channel: str | None) -> IssuedInvoice:
    """The invoice an operator saw, where the channel cannot be asked: its figures are required (they are
    checked against the application, and recorded as the operator's, never as the channel's)."""
    for json_name, name in ATTESTED_FIGURES:
        if invoice.get(name) is None:
            raise ActionInvalid(
                f"invoice.{json_name}",
                f"required: {channel or 'the channel'} cannot be asked, so the invoice's figures (amount, tax, "
                "sellerTaxNumber) come from the invoice you saw",
            )
    attested = ("seller", "amount", "tax", "direction") + (("issued_on",) if invoice["issued_on"] else ())
    return IssuedInvoice(
        number=invoice["number"],
        code=invoice["code"],
        issued_on=invoice["issued_on"],
        amount=invoice["amount"],
        tax=invoice["tax"],
        seller_tax_number=invoice["seller_tax_number"],
        attested_by_operator=attested,
    )


def _could_belong(item: dict[str, Any] | None, stored: StoredApplication) -> bool:
    """Whether an unmatched result may be attached to ``stored``: still unmatched, reported for the
    application's seller (a result that names none cannot be shown to be this seller's), and, where
    known, for its business system and by its channel. The application is within the operator's
    reach (ops_api checks it first), so a result that may be attached is within it too."""
    if item is None or not item.get("unmatched") or item.get("application_key"):
        return False
    application = stored.application
    seller = item.get("seller_tax_number")
    expected = application.seller.tax_number
    if not seller or not expected or not verification.same_id(seller, expected):  # compared as results are
        return False
    if item.get("source_system") and item["source_system"] != application.source_system:
        return False
    return not (stored.channel and item.get("channel") and item["channel"] != stored.channel)


def _issued_invoice(item: dict[str, Any]) -> IssuedInvoice:
    """An unmatched result as kept in the invoices table (CallbackReceiver._keep_unmatched), as a result again."""

    def money(name: str) -> Decimal | None:
        return Decimal(str(item[name])) if item.get(name) is not None else None

    lines = tuple(
        InvoiceLine(**{k: (Decimal(str(v)) if k in _LINE_MONEY and v is not None else v) for k, v in line.items()})
        for line in item.get("lines") or ()
    )
    details = {str(k): str(v) for k, v in (item.get("details") or {}).items()}
    if item.get("direction"):  # the colour the channel reported, read by verification as its marker
        details.setdefault("direction", str(item["direction"]))
    return IssuedInvoice(
        number=str(item["number"]),
        code=item.get("code"),
        issued_on=date.fromisoformat(item["issued_on"]) if item.get("issued_on") else None,
        amount=money("amount"),
        tax=money("tax"),
        check_code=item.get("check_code"),
        invoice_type=InvoiceType(item["invoice_type"]) if item.get("invoice_type") else None,
        state=InvoiceState(item.get("status") or InvoiceState.ISSUED.value),
        lines=lines,
        details=details,
        original_number=item.get("original_number"),
        original_code=item.get("original_code"),
        seller_tax_number=item.get("seller_tax_number"),
        buyer_tax_number=item.get("buyer_tax_number"),
        buyer_name=item.get("buyer_name"),
        unreadable={str(k): str(v) for k, v in (item.get("unreadable") or {}).items()},
    )


_LINE_MONEY = frozenset({"amount", "tax", "tax_rate", "quantity", "unit_price"})
