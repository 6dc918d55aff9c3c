"""An operator action's checks before it runs: the action names, the errors an action answers with
(the ops API's 400, 409 and 404), the request's parameters, and whether the action applies to the
application as it is (its status and history; docs/operations.md, the runbook).

Pure but for :func:`moved`, which reads the application again to say what it is now.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from fapiao_hub.domain.models import Status
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.records import StoredApplication

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


def checked_request(action: str, reason: Any, params: Any) -> tuple[str, dict[str, Any]]:
    """The reason (stripped) and the action's parameters, checked before anything is read (400 naming
    the field)."""
    if action not in ACTIONS:
        raise ActionInvalid("action", f"unknown action {action!r}; one of: {', '.join(ACTIONS)}")
    if not isinstance(reason, str) or not reason.strip():
        raise ActionInvalid("reason", "a reason is required (it goes on the application's history)")
    reason = reason.strip()
    if len(reason) > REASON_LIMIT:
        raise ActionInvalid("reason", f"at most {REASON_LIMIT} characters")
    return reason, checked_params(action, params if isinstance(params, dict) else {})


def checked_params(action: str, params: dict[str, Any]) -> dict[str, Any]:
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


def refusal(action: str, stored: StoredApplication) -> str | None:
    """Why ``action`` does not apply to ``stored`` as it is now (None: it does). For ``query``, whether
    its channel can be asked is the use case's to check (it knows the channels)."""
    status = stored.status
    if action in _NOT_WHILE_VOIDING and status is Status.STUCK and stuck_from(stored) is Status.VOIDING:
        # Issued, and a void asked for: deciding whether it was issued would drop the void unsaid.
        return (
            f"{action} does not apply to a void that is stuck: requeue it (VOIDING again), then resolve-voided "
            "or resolve-not-voided"
        )
    if action == "query":
        if status not in _QUERY_FROM:
            return f"query applies to open applications and those that need a person, not {status.value}"
        return None
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
        if stuck_from(stored) is None:
            return "the history does not say which state it was stuck in"
        return None
    if action == "cancel":
        unsent = status is not Status.STUCK or stuck_from(stored) in _UNSENT_BEFORE_STUCK
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
    return f"unknown action {action!r}"  # pragma: no cover - checked_request checks the name first


def stuck_from(stored: StoredApplication) -> Status | None:
    """The state a STUCK application was stuck in: recorded with the move (store.transition), else the
    previous status of its last move to STUCK in the history."""
    if stored.stuck_from is not None:
        return stored.stuck_from
    for entry in reversed(stored.history):
        if not entry.is_note and entry.status == Status.STUCK.value:
            return Status(entry.previous) if entry.previous else None
    return None


def moved(store: ApplicationStore, stored: StoredApplication, what: str) -> ActionNotApplicable:
    """The application moved between the action's read and its write: nothing of the action stands."""
    now = store.get(stored.application.source_system, stored.application.open_apply_code)
    status = now.status if now is not None else stored.status
    return ActionNotApplicable(status, f"the application moved meanwhile (now {status.value}); {what} not done")
