"""Operator actions: a person resolves what the hub could not (docs/operations.md, the runbook).

Each action is one conditional write on the status and version the action read (or, for a query,
the Dispatcher's own conditional writes), with a history entry naming the operator and the reason,
and an ``OperatorAction`` event (the audit trail). An action that does not apply, or whose
application moved meanwhile, changes nothing and raises ActionNotApplicable with the status now
(the ops API answers 409); a bad request raises ActionInvalid naming the field (400).

Results go through the Dispatcher (workflow.py): a query is applied as a poll's answer, an invoice
an operator vouches for is verified and recorded as a channel's, so nothing here duplicates how
results, invoices and outcome events are recorded.
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
from fapiao_hub.infra.events import EventPublisher, PublishFailed
from fapiao_hub.infra.queues import DispatchQueue
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.errors import IllegalTransition, InvoiceNumberTaken, StaleWrite
from fapiao_hub.infra.store.records import StoredApplication
from fapiao_hub.usecases.dispatch import ChannelDirectory, Dispatcher

logger = Logger(child=True)

ACTIONS = (
    "query",
    "resolve-issued",
    "resolve-not-issued",
    "requeue",
    "cancel",
    "attach-result",
    "acknowledge-finding",
    "resolve-voided",
    "resolve-not-voided",
)
REASON_LIMIT = 500
FINDING_IDS_LIMIT = 100  # acknowledge-finding's findingIds: one request, one reason

# Where each action applies (a channel's abilities and the history narrow it further).
_QUERY_FROM = frozenset(
    {
        Status.RECEIVED, Status.DISPATCHING, Status.SUBMITTED, Status.UNKNOWN, Status.RETRY_WAIT, Status.VOIDING,
        Status.STUCK, Status.MANUAL_REVIEW, Status.MISMATCH,
    }
)  # fmt: skip
_RESOLVE_ISSUED_FROM = frozenset({Status.MANUAL_REVIEW, Status.STUCK, Status.MISMATCH, Status.UNKNOWN})
_RESOLVE_NOT_ISSUED_FROM = frozenset({Status.MANUAL_REVIEW, Status.STUCK, Status.UNKNOWN})
_CANCEL_FROM = frozenset({Status.RECEIVED, Status.RETRY_WAIT, Status.STUCK})
# A STUCK application came from one of these without a request leaving the hub (not uncertain).
_UNSENT_BEFORE_STUCK = frozenset({Status.RECEIVED, Status.RETRY_WAIT, Status.DISPATCHING})
# States a result may still decide (a settled application's further invoices are findings, not this).
_ATTACH_FROM = frozenset(
    {
        Status.RECEIVED, Status.DISPATCHING, Status.SUBMITTED, Status.UNKNOWN, Status.RETRY_WAIT, Status.STUCK,
        Status.MANUAL_REVIEW,
    }
)  # fmt: skip
# What decides whether an invoice was issued: not for an issued application stuck while being voided.
_NOT_WHILE_VOIDING = frozenset({"resolve-issued", "resolve-not-issued", "attach-result"})
# Findings that a person's acceptance of the reported invoice answers.
_ANSWERED_BY_ACCEPTING = frozenset({FindingKind.RESULT_MISMATCH, FindingKind.UNREADABLE_RESULT})
# Findings that a person's decision on the outcome (issued with another invoice, or not issued) answers.
_ANSWERED_BY_DECIDING = frozenset({FindingKind.INVOICE_CLASH, FindingKind.REPORT_NOT_APPLIED})


class ActionInvalid(Exception):
    """The request itself is wrong (HTTP 400): ``field`` is the caller's JSON path."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ActionNotApplicable(Exception):
    """The action does not apply to the application as it is now (HTTP 409, with ``status``)."""

    def __init__(self, status: Status | str, message: str):
        super().__init__(message)
        self.status = Status(status)
        self.message = message


class ApplicationMissing(Exception):
    """No such application (HTTP 404)."""


class Operations:
    """The operator's use cases; the ops API (ops_api.py) turns HTTP into calls of ``act``."""

    def __init__(
        self,
        store: ApplicationStore,
        dispatcher: Dispatcher,
        channels: ChannelDirectory,
        events_publisher: EventPublisher,
        queue: DispatchQueue,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._dispatcher = dispatcher
        self._channels = channels
        self._events = events_publisher
        self._queue = queue
        self._clock = clock

    # ------------------------------------------------------------------ entry points
    def available_actions(self, stored: StoredApplication) -> list[str]:
        """The actions that apply now (parameters aside): what the console and the detail offer."""
        return [action for action in ACTIONS if self._refusal(action, stored) is None]

    def act(
        self,
        source_system: str,
        open_apply_code: str,
        action: str,
        reason: str,
        operator: str,
        params: dict[str, Any] | None = None,
    ) -> StoredApplication:
        """Run one action; returns the application as it is afterwards (read again)."""
        if action not in ACTIONS:
            raise ActionInvalid("action", f"unknown action {action!r}; one of: {', '.join(ACTIONS)}")
        if not isinstance(reason, str) or not reason.strip():
            raise ActionInvalid("reason", "a reason is required (it goes on the application's history)")
        reason = reason.strip()
        if len(reason) > REASON_LIMIT:
            raise ActionInvalid("reason", f"at most {REASON_LIMIT} characters")
        params = params if isinstance(params, dict) else {}
        checked = self._params(action, params)
        stored = self._store.get(source_system, open_apply_code)
        if stored is None:
            raise ApplicationMissing(f"{source_system}/{open_apply_code}")
        refusal = self._refusal(action, stored)
        if refusal is not None:
            raise ActionNotApplicable(stored.status, refusal)
        before = stored.status
        handler = getattr(self, "_" + action.replace("-", "_"))
        detail = handler(stored, reason, operator, checked) or {}
        after = self._store.get(source_system, open_apply_code) or stored
        self._audit(after, action, reason, operator, before, detail, read=stored)
        logger.info(
            "operator action",
            extra={"action": action, "operator": operator, "from": before.value, "to": after.status.value},
        )
        return after

    # ------------------------------------------------------------------ checks
    def _params(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """The action's parameters, checked before anything is read (400 naming the field)."""
        if action == "resolve-issued":
            invoice = params.get("invoice")
            if not isinstance(invoice, dict):
                raise ActionInvalid("invoice", "the invoice seen at the channel or the bureau is required")
            number = invoice.get("number")
            if not isinstance(number, str) or not number.strip():
                raise ActionInvalid("invoice.number", "the invoice number is required")
            code = invoice.get("code")
            if code is not None and (not isinstance(code, str) or not code.strip()):
                raise ActionInvalid("invoice.code", "a text, or left out (digital invoices have none)")
            issued_on = None
            if invoice.get("date") is not None:
                try:
                    issued_on = date.fromisoformat(str(invoice["date"]))
                except ValueError:
                    raise ActionInvalid("invoice.date", "a date as yyyy-mm-dd") from None
            figures = {name: _attested_money(invoice, name) for name in ("amount", "tax")}
            seller = invoice.get("sellerTaxNumber")
            if seller is not None and (not isinstance(seller, str) or not seller.strip()):
                raise ActionInvalid("invoice.sellerTaxNumber", "the seller's tax number as on the invoice, as text")
            return {
                "number": number.strip(), "code": code.strip() if code else None, "issued_on": issued_on,
                **figures, "seller_tax_number": seller.strip() if seller else None,
            }  # fmt: skip
        if action == "acknowledge-finding" and "findingIds" in params:
            return _finding_ids(params)
        if action in ("attach-result", "acknowledge-finding"):
            name = "resultId" if action == "attach-result" else "findingId"
            value = params.get(name)
            if not isinstance(value, str) or not value.strip():
                raise ActionInvalid(name, "is required")
            return {"id": value.strip()}
        return {}

    def _refusal(self, action: str, stored: StoredApplication) -> str | None:
        """Why ``action`` does not apply to ``stored`` now (None: it does)."""
        status = stored.status
        if action in _NOT_WHILE_VOIDING and status is Status.STUCK and _stuck_from(stored) is Status.VOIDING:
            # Issued, and a void asked for: deciding whether it was issued would drop the void unsaid.
            return (
                f"{action} does not apply to a void that is stuck: requeue it (VOIDING again), then resolve-voided "
                "or resolve-not-voided"
            )
        if action == "query":
            if status not in _QUERY_FROM:
                return f"query applies to open applications and those that need a person, not {status.value}"
            return self._cannot_query(stored)
        if action == "resolve-issued":
            if status not in _RESOLVE_ISSUED_FROM:
                return f"resolve-issued applies to MANUAL_REVIEW, STUCK, MISMATCH and UNKNOWN, not {status.value}"
            return None
        if action == "resolve-not-issued":
            if status not in _RESOLVE_NOT_ISSUED_FROM:
                return f"resolve-not-issued applies to MANUAL_REVIEW, STUCK and UNKNOWN, not {status.value}"
            return None
        if action == "requeue":
            if status is not Status.STUCK:
                return f"requeue applies to STUCK applications, not {status.value}"
            if _stuck_from(stored) is None:
                return "the history does not say which state it was stuck in"
            return None
        if action == "cancel":
            unsent = status is not Status.STUCK or _stuck_from(stored) in _UNSENT_BEFORE_STUCK
            if status not in _CANCEL_FROM or not unsent:
                return f"cancel applies to applications that never reached a channel, not {status.value}"
            if stored.uncertain:
                return "a request may have reached the channel (an earlier outcome is unknown): it cannot be cancelled"
            return None
        if action == "attach-result":
            if status not in _ATTACH_FROM:
                return f"attach-result applies to applications still waiting for a result, not {status.value}"
            return None
        if action == "acknowledge-finding":
            if not stored.open_findings:
                return "the application has no open finding"
            return None
        if action in ("resolve-voided", "resolve-not-voided"):
            if status is not Status.VOIDING:
                return f"{action} applies to VOIDING applications (a void under way), not {status.value}"
            return None
        return f"unknown action {action!r}"  # pragma: no cover - act() checks the name first

    def _cannot_query(self, stored: StoredApplication) -> str | None:
        name, channel = self._channels.channel_for(stored.application, stored.channel)
        if channel is None:
            return f"channel {name or stored.channel!r} is not configured"
        if not channel.can_query:
            return f"{name} cannot be queried (it reports results by push or in its answer only)"
        return None

    def _channel(self, stored: StoredApplication) -> tuple[str | None, Channel | None]:
        return self._channels.channel_for(stored.application, stored.channel)

    def _moved(self, stored: StoredApplication, what: str) -> ActionNotApplicable:
        """The application moved between the action's read and its write: nothing of the action stands."""
        now = self._store.get(stored.application.source_system, stored.application.open_apply_code)
        status = now.status if now is not None else stored.status
        return ActionNotApplicable(status, f"the application moved meanwhile (now {status.value}); {what} not done")

    # ------------------------------------------------------------------ actions
    def _query(self, stored: StoredApplication, reason: str, operator: str, _: dict) -> dict:
        name, channel = self._channel(stored)
        assert channel is not None  # _refusal checked it
        outcome, result = self._dispatcher.query_now(stored, channel)
        if result == "lost race":
            raise self._moved(stored, "the answer was not applied by this action (the hub asks again);")
        said = describe_outcome(outcome)
        self._store.note(stored.key, f"query by operator {operator}: {reason}; {name} answers {said} ({result})")
        return {"answer": said, "result": result}

    def _resolve_issued(self, stored: StoredApplication, reason: str, operator: str, invoice: dict) -> dict:
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
                raise self._moved(stored, f"{name}'s answer is recorded ({result}); resolve-issued")
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
            done = self._dispatcher.accept_reported(stored, items, f"{note} (the reported invoice accepted)")
        except (StaleWrite, IllegalTransition):
            raise self._moved(stored, "resolve-issued") from None
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
            result = self._dispatcher.record_result(stored, issued, note)
        except (StaleWrite, IllegalTransition):
            raise self._moved(stored, "the result is not recorded;") from None
        except InvoiceNumberTaken as taken:
            keys = ", ".join(str(k) for k in taken.args[0])
            raise ActionInvalid(
                field, f"invoice {keys} is recorded for another application: give the invoice the channel issued "
                "for this one, or resolve-not-issued if it issued none",
            ) from None
        return result

    def _resolve_not_issued(self, stored: StoredApplication, reason: str, operator: str, _: dict) -> dict:
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
                raise self._moved(stored, f"{name} answers {describe_outcome(outcome)}: recorded; resolve-not-issued")
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
                raise self._moved(stored, "resolve-not-issued") from None
            self._queue.request_dispatch(stored.application.source_system, stored.application.open_apply_code)
            return {"result": "sent again", "request_number": request_number}
        # The channel may not see the same request number twice (or, after a clash, would only answer
        # it with the clashing invoice again): closed, so that the business system may send the same
        # openApplyCode again (intake accepts a REJECTED one again, under a new request number).
        text = f"not issued (operator {operator}): {reason}"
        self._close(stored, Status.REJECTED, text, events.EventType.APPLICATION_REJECTED, note)
        self._answered(stored, _ANSWERED_BY_DECIDING, operator, reason)
        return {"result": "rejected"}

    def _requeue(self, stored: StoredApplication, reason: str, operator: str, _: dict) -> dict:
        previous = _stuck_from(stored)
        assert previous is not None  # _refusal checked it
        # DISPATCHING has no holder any more: an attempt that may have left is UNKNOWN (asked, never
        # sent blind), one that never left is sent again.
        target = {Status.DISPATCHING: Status.UNKNOWN if stored.uncertain else Status.RETRY_WAIT}.get(previous, previous)
        now = int(self._clock())
        try:
            self._store.transition(
                stored, target,
                note=f"requeue by operator {operator}: {reason}; back to {target.value} (stuck in {previous.value})",
                changes={"reason": None, "attempts": 0, "polls": 0, "requeued_epoch": now},
                next_poll_at=now,
            )  # fmt: skip
        except (StaleWrite, IllegalTransition):
            raise self._moved(stored, "requeue") from None
        self._queue.request_dispatch(stored.application.source_system, stored.application.open_apply_code)
        return {"result": target.value.lower()}

    def _cancel(self, stored: StoredApplication, reason: str, operator: str, _: dict) -> dict:
        text = f"cancelled by operator {operator}: {reason}"
        note = f"cancel by operator {operator}: {reason}"
        self._close(stored, Status.CANCELLED, text, events.EventType.APPLICATION_CANCELLED, note)
        return {"result": "cancelled"}

    def _attach_result(self, stored: StoredApplication, reason: str, operator: str, params: dict) -> dict:
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

    def _acknowledge_finding(self, stored: StoredApplication, reason: str, operator: str, params: dict) -> dict:
        if "ids" in params:
            return self._acknowledge_findings(stored, reason, operator, params["ids"])
        finding_id = params["id"]
        finding = next((f for f in stored.findings if f.id == finding_id), None)
        if finding is None:
            raise ActionInvalid("findingId", f"the application has no finding {finding_id!r}")
        if not finding.open:
            raise ActionNotApplicable(
                stored.status, f"finding {finding_id} was acknowledged already by {finding.acknowledged_by}"
            )
        try:
            self._store.acknowledge_finding(
                stored, finding_id, by=operator, reason=reason,
                note=f"acknowledge-finding by operator {operator}: {reason}; "
                f"finding {finding_id} ({finding.kind.value})",
            )  # fmt: skip
        except StaleWrite:
            raise self._moved(stored, "acknowledge-finding") from None
        return {"findingId": finding_id, "kind": finding.kind.value}

    def _acknowledge_findings(self, stored: StoredApplication, reason: str, operator: str, ids: list[str]) -> dict:
        """Several findings with one reason (bulk): each must be open here; all are closed, or none."""
        findings = []
        for n, finding_id in enumerate(ids):
            finding = next((f for f in stored.findings if f.id == finding_id), None)
            if finding is None:
                raise ActionInvalid(f"findingIds[{n}]", f"the application has no finding {finding_id!r}")
            if not finding.open:
                raise ActionInvalid(
                    f"findingIds[{n}]", f"finding {finding_id} was acknowledged already by {finding.acknowledged_by}"
                )
            findings.append(finding)
        notes = [
            (f.id, f"acknowledge-finding by operator {operator}: {reason}; finding {f.id} ({f.kind.value})")
            for f in findings
        ]
        try:
            self._store.acknowledge_findings(stored, notes, by=operator, reason=reason)
        except StaleWrite:
            raise self._moved(stored, "acknowledge-finding") from None
        return {"findingIds": list(ids), "kinds": [f.kind.value for f in findings]}

    def _resolve_voided(self, stored: StoredApplication, reason: str, operator: str, _: dict) -> dict:
        """A person voided the invoice at the channel (one without a void call, or one that never
        reported it): recorded as the channel's report of the void would be (InvoiceVoided)."""
        items = self._store.invoices(stored)
        if not items:
            raise ActionNotApplicable(stored.status, "the application holds no invoice to void")
        voided = tuple(replace(_issued_invoice(item), state=InvoiceState.VOIDED) for item in items)
        note = f"resolve-voided by operator {operator}: {reason} (voided at {stored.channel or 'the channel'})"
        return {"result": self._record(stored, voided, note, "action")}

    def _resolve_not_voided(self, stored: StoredApplication, reason: str, operator: str, _: dict) -> dict:
        """The void was not done (the channel refused it, the month closed): the invoice stands."""
        text = f"void not done (operator {operator}): {reason}"
        try:
            self._store.transition(
                stored, Status.ISSUED, note=f"resolve-not-voided by operator {operator}: {reason}",
                changes={"void_refused": text},
            )  # fmt: skip
        except (StaleWrite, IllegalTransition):
            raise self._moved(stored, "resolve-not-voided") from None
        return {"result": "issued"}

    # ------------------------------------------------------------------ helpers
    def _close(self, stored: StoredApplication, to: Status, text: str, event_type: events.EventType, note: str) -> None:
        try:
            self._dispatcher.close(stored, to, text, event_type, note=note)
        except (StaleWrite, IllegalTransition):
            raise self._moved(stored, to.value.lower()) from None

    def _audit(
        self,
        after: StoredApplication,
        action: str,
        reason: str,
        operator: str,
        before: Status,
        detail: dict,
        read: StoredApplication | None = None,
    ) -> None:
        """The action's own record on the audit trail (who, why, before and after), and its OperatorAction
        event (archived: template.yaml AuditEventsRule). Each change the action made has its own history
        record already, written with the change; a failure here is logged, the action stands."""
        plain = {k: (str(v) if isinstance(v, date | Decimal) else v) for k, v in detail.items()}
        try:
            self._store.record_action(
                after, action=action, by=operator, reason=reason,
                before=_audit_fields(read) if read is not None else {"status": before.value},
                after={**_audit_fields(after), **plain},
            )  # fmt: skip
        except Exception as error:  # the action is done; its changes carry their own records
            logger.error("operator action record not written", extra={"action": action, "error": type(error).__name__})
        application = after.application
        event = events.outcome_event(
            events.EventType.OPERATOR_ACTION,
            source_system=application.source_system,
            open_apply_code=application.open_apply_code,
            action=action,
            operator=operator,
            reason=reason,
            status_before=before.value,
            status=after.status.value,
            at=int(self._clock()),
            **plain,
        )
        try:
            self._events.publish(event)
        except PublishFailed:
            logger.warning("OperatorAction event not published (the history holds the action)")


def _finding_ids(params: dict[str, Any]) -> dict[str, Any]:
    """acknowledge-finding's ``findingIds``: 1..FINDING_IDS_LIMIT distinct ids (instead of ``findingId``)."""
    if params.get("findingId") is not None:
        raise ActionInvalid("findingIds", "give findingId or findingIds, not both")
    ids = params["findingIds"]
    if not isinstance(ids, list) or not 1 <= len(ids) <= FINDING_IDS_LIMIT:
        raise ActionInvalid("findingIds", f"a list of 1 to {FINDING_IDS_LIMIT} finding ids")
    checked: list[str] = []
    for n, value in enumerate(ids):
        if not isinstance(value, str) or not value.strip():
            raise ActionInvalid(f"findingIds[{n}]", "a finding id (a non-empty string)")
        if value.strip() in checked:
            raise ActionInvalid(f"findingIds[{n}]", f"finding {value.strip()} is given twice")
        checked.append(value.strip())
    return {"ids": checked}


def _audit_fields(stored: StoredApplication) -> dict[str, Any]:
    """What an operator action may change, as it stands (its record's before and after)."""
    return {
        "status": stored.status.value,
        "version": stored.version,
        "channel": stored.channel,
        "reason": stored.reason,
        "invoice_keys": list(stored.invoice_keys),
        "open_finding_ids": [f.id for f in stored.open_findings],
    }


def _stuck_from(stored: StoredApplication) -> Status | None:
    """The state a STUCK application was stuck in: recorded with the move (store.transition), else the
    previous status of its last move to STUCK in the history."""
    if stored.extra.get("stuck_from"):
        return Status(stored.extra["stuck_from"])
    for entry in reversed(stored.history):
        if not entry.is_note and entry.status == Status.STUCK.value:
            return Status(entry.previous) if entry.previous else None
    return None


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


def _attested_money(invoice: dict[str, Any], name: str) -> Decimal | None:
    value = invoice.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ActionInvalid(f"invoice.{name}", "a number as on the invoice (negative on a red invoice)")
    try:
        number = Decimal(str(value).strip())
    except ArithmeticError:
        raise ActionInvalid(f"invoice.{name}", "a number as on the invoice (negative on a red invoice)") from None
    if not number.is_finite() or number.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ActionInvalid(f"invoice.{name}", "a number with at most two decimals")
    return number


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
