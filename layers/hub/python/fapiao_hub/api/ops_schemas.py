"""What the operations desk's routes (``api.ops``) declare in the OpenAPI document: their answer and
request models, and the answers every ops route shares. Field names are the JSON names."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from fapiao_hub.api.examples import refusal
from fapiao_hub.api.schemas import Envelope, OrderDetail, StatusChange, answer


class HistoryRecord(StatusChange):
    """An entry of the audit trail as the operations desk sees it (template.yaml HistoryTable)."""

    record: str | None = Field(
        None, description="received, transition, note, finding, finding-acknowledged or operator-action"
    )
    by: str | None = Field(None, description="who: the operator, or the hub's component (function) that wrote it")
    reason: str | None = Field(None, description="why (an operator action's reason, a status's reason)")
    action: str | None = Field(None, description="an operator action's name")
    finding_id: str | None = Field(None, description="the finding it records or acknowledges")
    version: int | None = Field(None, description="the application's version after a status change")
    before: dict[str, Any] | None = Field(None, description="the fields the change set, as they were")
    after: dict[str, Any] | None = Field(None, description="the fields the change set, as they became")


class OpsSummary(BaseModel):
    statuses: dict[str, int] = Field(
        description="open and needs-a-person statuses now; final statuses reached in the last 24 hours"
    )
    needsPerson: dict[str, int] = Field(description="MANUAL_REVIEW, MISMATCH and STUCK: what waits for a person")
    openFindings: int = Field(description="findings not yet acknowledged")
    deadLetterQueues: dict[str, int | None] = Field(description="messages waiting in each dead-letter queue")


class OpsRow(BaseModel):
    businessSystem: str
    openApplyCode: str
    status: str = Field(description="a Status value")
    companyCode: str | None
    sellerTaxNumber: str | None
    buyerName: str | None = Field(description="as the business system sent it: untrusted text")
    channel: str | None
    requestNumber: str
    invoiceType: str | None
    direction: str | None = Field(description="BLUE or RED")
    amount: str | None = Field(description="a decimal, as text")
    tax: str | None = Field(description="a decimal, as text")
    receivedAt: str = Field(description="ISO 8601, UTC")
    updatedAt: str | None = Field(description="ISO 8601, UTC")
    openFindings: int
    reason: str | None


class OpsPage(BaseModel):
    items: list[OpsRow] = Field(description="newest received first")
    nextCursor: str | None = Field(description="pass it back as cursor for the next page; null on the last")


class OpsDetail(OrderDetail):
    businessSystem: str
    needsPerson: bool = Field(
        False,
        description="a person must act: a status that needs one, an open finding, or a void to be done at the "
        "channel by hand (VOIDING)",
    )
    history: list[HistoryRecord] = Field(  # type: ignore[assignment]
        description="a page of the audit trail (oldest first unless historyOrder=newest): who, why, before and "
        "after; historyNextCursor gives the next page"
    )
    attempts: int = Field(description="dispatch attempts so far")
    leaseUntil: int | None = Field(description="epoch seconds: a worker holds it until then")
    nextPollAt: int | None = Field(description="epoch seconds: when the channel is asked next")
    rawKeys: list[str] = Field(description="keys of the archived raw requests and answers (the hub's bucket)")
    relatedApplications: list[dict[str, str]] = Field(
        default_factory=list,
        description="other applications its findings concern (an invoice clash: the application holding the "
        "invoice), as businessSystem, openApplyCode and status; outsideReach where this operator may not see it",
    )
    actions: list[str] = Field(description="the actions that apply now")


class ResolvedInvoice(BaseModel):
    number: str = Field(description="the invoice number seen at the channel or the tax bureau")
    code: str | None = Field(None, description="legacy invoices: the invoice code")
    date: str | None = Field(None, description="yyyy-mm-dd")
    amount: float | str | None = Field(
        None,
        description="amount excluding tax, as on the invoice (negative on a red invoice); required where the "
        "channel cannot be asked, recorded as attested by the operator and checked against the application",
    )
    tax: float | str | None = Field(None, description="tax, as on the invoice; required like amount")
    sellerTaxNumber: str | None = Field(None, description="the seller's tax number on the invoice; as amount")


class OperatorActionRequest(BaseModel):
    action: str = Field(
        description="query, resolve-issued, resolve-not-issued, requeue, cancel, attach-result, acknowledge-finding, "
        "resolve-voided or resolve-not-voided"
    )
    reason: str = Field(description="why: kept in the application's history and the audit event", min_length=1)
    invoice: ResolvedInvoice | None = Field(None, description="resolve-issued: the invoice that was issued")
    resultId: str | None = Field(None, description="attach-result: the unmatched result's id")
    findingId: str | None = Field(None, description="acknowledge-finding: the finding's id")
    findingIds: list[str] | None = Field(
        None, min_length=1, max_length=100,
        description="acknowledge-finding, instead of findingId: several open findings of the application, one "
        "reason for all; all are acknowledged or none (400 naming findingIds[i])",
    )  # fmt: skip


class ActionField(BaseModel):
    field: str = Field(description="the body's field at fault", examples=["reason"])


class OpsSummaryAnswer(Envelope):
    data: OpsSummary  # type: ignore[assignment]


class OpsPageAnswer(Envelope):
    data: OpsPage  # type: ignore[assignment]


class OpsDetailAnswer(Envelope):
    data: OpsDetail  # type: ignore[assignment]


class ActionRefusedAnswer(Envelope):
    data: ActionField | None = Field(description="the field at fault, where one is")  # type: ignore[assignment]


class OpsRawDocument(BaseModel):
    key: str = Field(description="the archived document's key, one of the detail's rawKeys")
    size: int = Field(description="bytes")
    sha256: str = Field(description="of the bytes as archived")
    text: str | None = Field(description="the bytes as UTF-8 text; null when they are not")
    base64: str | None = Field(description="the bytes, base64; only when they are not UTF-8 text")


class OpsRawDocumentAnswer(Envelope):
    data: OpsRawDocument  # type: ignore[assignment]


# What every ops route may answer besides its own (schemathesis holds the routes to the document).
UNAUTHORIZED = answer(
    "no operator token, an unknown or revoked one, or a business system's token",
    Envelope,
    {"WWW-Authenticate": 'Bearer realm="fapiao-hub-ops"'},
    {"noOperatorToken": refusal("no Authorization header", 401, "missing or invalid operator token")},
)
UNAVAILABLE = answer("temporarily unavailable; try again", Envelope, {"Retry-After": "seconds to wait"})
FORBIDDEN = answer("a viewer acting", Envelope)
MISSING = answer(
    "no such application (one outside this operator's business systems or sellers gets the same answer)",
    Envelope,
)
