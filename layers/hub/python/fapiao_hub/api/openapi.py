"""The HTTP API's OpenAPI document: the answer models the routes declare, and the document itself.

The intake routes (``intake.api``) and the callback route (``callback_api``) declare their
summaries, security, request body and answers on their Powertools decorators; Powertools generates
each resolver's OpenAPI schema and :func:`document` merges the two (``OpenAPIMerge``). ``make
openapi`` writes the result to docs/openapi.json (:func:`main`); tests/unit/test_openapi.py fails
when that file is out of date. The local run serves it at ``/openapi.json`` and as Swagger UI at
``/swagger`` (:func:`swagger_html`).

Request bodies: Powertools documents a body only from a ``Body()``-annotated handler parameter,
and only its validation middleware fills such a parameter, before any middleware of ours runs. The
intake API must authenticate before it validates, so it validates by hand, and a route declares its
body with :func:`request_body` (an ``openapi_extensions`` entry); :func:`document` adds the body
model's JSON schema (by alias: the caller's field names) to the components.

Examples: a request example and the response example it gets share a name (``blueOrder`` under
the request body and under 200, ``ruleProblems`` under the body and under 400); response examples
without a request example of their name (401, 413, 415, 503) show the answer to a request broken
as their description says. tests/integration/test_openapi_examples.py sends every example to the
local run and checks it gets its documented answer. The outbound notification (the business
system's webhook) is described under ``webhooks``.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fapiao_hub.domain.models import FindingKind, Status, application_key, request_number_for

TITLE = "fapiao-hub"
DOCUMENT_PATH = Path("docs/openapi.json")
SCHEMA_REF = "#/components/schemas/"

# Security scheme names, as routes refer to them.
BEARER = "bearerToken"
CALLBACK_TOKEN = "callbackAccessToken"  # noqa: S105 (a scheme name)

# Models named by request_body(): their schemas go into the document's components.
_BODY_MODELS: dict[str, type[BaseModel]] = {}


# ---------------------------------------------------------------------------- answer models
# Field names are the JSON names (camelCase where the callers use it).
class Envelope(BaseModel):
    """The FAW tax platform's answer shape: every answer of the intake API has it."""

    success: bool = Field(description="true for a 2xx answer")
    code: int = Field(description="the HTTP status code, repeated")
    message: str = Field(description="what happened, for people")
    data: None = Field(description="null: nothing more to say")


class FieldProblem(BaseModel):
    field: str = Field(
        description="where, as the caller's JSON path", examples=["invoiceOrder.invoiceOrderSub[0].amtInclTax"]
    )
    message: str = Field(description="what is wrong, with the figures involved")


class OrderErrors(BaseModel):
    errors: list[FieldProblem] = Field(description="every problem found, not only the first")


class OrderAccepted(BaseModel):
    openApplyCode: str = Field(description="the application number it was submitted with")
    status: Status = Field(
        description="RECEIVED (queued for dispatch), DISPATCHING, SUBMITTED (the channel is working on it), "
        "UNKNOWN (an attempt's outcome is being established; never sent twice), RETRY_WAIT, ISSUED, REJECTED, "
        "VOIDING, VOIDED, MANUAL_REVIEW / MISMATCH (a person must look), STUCK (open for 24 h)"
    )
    warnings: list[str] = Field(description="accepted, but worth a look: 'field: message'")


HISTORY_LIMIT_DOC = "history entries per page: 1-500, default 100"
HISTORY_CURSOR_DOC = "the previous answer's historyNextCursor (same historyOrder): the next page of the history"
HISTORY_ORDER_DOC = "oldest (default: oldest first) or newest (newest first)"


class StatusChange(BaseModel):
    at: str = Field(description="ISO 8601, UTC")
    status: Status = Field(description="the status it moved to (a note: the status it was in)")
    previous: Status | None = Field(None, description="the status it left")
    note: str | None = Field(None, description="why, and the request number sent to the channel")
    kind: str | None = Field(None, description="note: something that happened without a status change")


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


class StoredFile(BaseModel):
    format: str = Field(description="pdf, ofd (the legal original when both exist) or xml", examples=["pdf"])
    size: int = Field(description="bytes")
    sha256: str = Field(description="hex SHA-256 of the bytes")
    url: str = Field(description="a download link, good for five minutes")


class MissingFile(BaseModel):
    error: str | None = Field(description="why the file could not be kept")
    source: str | None = Field(description="where the channel offered it (a URL or 'inline')")


_FIGURES = "seller, buyer, invoice_type, direction, issued_on, amount, tax, lines, blue_invoice"
VERIFIED_FIELD = Field(
    None,
    description=f"the invoice's figures ({_FIGURES}) compared with what the channel stated (its answer or the "
    "invoice's own file) and found to match your application",
    examples=[["seller", "invoice_type", "direction", "issued_on", "amount", "tax"]],
)
FROM_FILE_FIELD = Field(
    None, description="those of verified read from the invoice's own file (数电 XML, OFD), not the channel's answer"
)
ATTESTED_FIELD = Field(
    None,
    description="figures an operator typed from the invoice seen at the channel or the tax bureau "
    "(checked against your application; the channel could not be asked)",
)
FROM_APPLICATION_FIELD = Field(
    None,
    description="figures the hub holds only from your application: nobody at the channel stated them "
    "(not compared; reconciliation reports such an invoice as figures unverified)",
)


class Invoice(BaseModel):
    invoiceNumber: str = Field(description="数电: 20 digits; legacy: 8 digits")
    invoiceCode: str | None = Field(None, description="legacy invoices only: 10 or 12 digits (数电: null)")
    invoiceDate: str | None = Field(None, description="issue date, yyyy-mm-dd")
    invoiceType: str | None = Field(
        None,
        description="DIGITAL_SPECIAL, DIGITAL_NORMAL, VAT_SPECIAL_PAPER, VAT_NORMAL_PAPER, VAT_NORMAL_ELECTRONIC or "
        "VAT_SPECIAL_ELECTRONIC",
    )
    amount: float | None = Field(None, description="amount excluding tax (negative on a red invoice)")
    tax: float | None = Field(None, description="tax (negative on a red invoice)")
    checkCode: str | None = Field(None, description="check code (校验码), where the channel reports one")
    status: str | None = Field(None, description="ISSUED, VOID_REQUESTED or VOIDED")
    channel: str | None = Field(None, description="the channel that issued it")
    redRemainingAmount: float | None = Field(
        None, description="a blue invoice: the amount red invoices may still reverse"
    )
    redRemainingTax: float | None = Field(None, description="a blue invoice: the tax red invoices may still reverse")
    verified: list[str] | None = VERIFIED_FIELD
    verifiedFromFile: list[str] | None = FROM_FILE_FIELD
    attestedByOperator: list[str] | None = ATTESTED_FIELD
    fromApplication: list[str] | None = FROM_APPLICATION_FIELD
    files: list[StoredFile | MissingFile] | None = Field(None, description="the invoice's files, with download links")


class Difference(BaseModel):
    field: str = Field(description="the field that differs, e.g. seller.tax_number, invoice_type, amount")
    expected: str | None = Field(description="what the application (or the hub's record) says")
    reported: str | None = Field(description="what the channel reported")


class Finding(BaseModel):
    id: str = Field(
        description="the discrepancy's identity (kind, application, invoices, fields): seen again, it is updated, "
        "never repeated"
    )
    kind: FindingKind
    at: str = Field(description="ISO 8601, UTC")
    source: str = Field(description="dispatch, poll, callback or reconciliation")
    summary: str
    differences: list[Difference]
    invoiceNumbers: list[str]
    open: bool = Field(description="true until a person acknowledges it")
    count: int = Field(description="how many times it was seen (a later reconciliation run counts it again)")
    lastSeen: str | None = Field(description="ISO 8601, UTC: the latest sighting after the first (at); null if once")


class OrderDetail(OrderAccepted):
    version: int = Field(description="increases with every change")
    channel: str | None = Field(description="the channel the application is routed to")
    createdAt: str = Field(description="ISO 8601, UTC")
    updatedAt: str = Field(description="ISO 8601, UTC")
    reason: str | None = Field(description="why it is in its status (a rejection, an unknown outcome)")
    requestNumber: str = Field(description="the request number sent to the channel on every attempt")
    history: list[StatusChange] = Field(
        description="a page of every status change and note (oldest first unless historyOrder=newest); "
        "nothing is cut: historyNextCursor gives the next page"
    )
    historyNextCursor: str | None = Field(
        None, description="pass it back as historyCursor for the next page of the history; null on the last"
    )
    invoices: list[Invoice] = Field(description="the invoices issued for it (a red application: the red invoice)")
    findings: list[Finding] = Field(description="what a person must look at (see the operations runbook, Findings)")
    invoiceOrder: dict[str, Any] = Field(
        description="the application in the submitted invoiceOrder shape, with the line-derived totals the hub stored"
    )


class OrderAcceptedAnswer(Envelope):
    data: OrderAccepted  # type: ignore[assignment]


class OrderRefusedAnswer(Envelope):
    data: OrderErrors | None = Field(description="the problems, for an invalid invoice order")  # type: ignore[assignment]


class ConflictStatus(BaseModel):
    status: str = Field(description="where the application stands now (a Status value)", examples=["ISSUED"])


class OrderConflictAnswer(Envelope):
    data: ConflictStatus = Field(  # type: ignore[assignment]
        description="where the application stands; the message says why it may not be replaced and what to do"
    )


class OrderDetailAnswer(Envelope):
    data: OrderDetail  # type: ignore[assignment]


# ---------------------------------------------------------------------------- batches (intake.batch)
class BatchRequest(BaseModel):
    """POST /v1/invoice-orders/batch: several bodies of POST /v1/invoice-orders in one call."""

    invoiceOrders: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=100,
        description='1 to 100 items, each a body of POST /v1/invoice-orders ({"invoiceOrder": {...}}, see '
        "Seed004Request); an openApplyCode may appear only once per batch",
    )


class BatchItemAnswer(BaseModel):
    index: int = Field(description="the item's position in invoiceOrders, from 0")
    openApplyCode: str | None = Field(description="the item's openApplyCode, where it has one")
    success: bool = Field(description="true when the item was received (code 200)")
    code: int = Field(description="the status a single POST of the item answers: 200, 400, 409 or 503")
    message: str = Field(description="the single POST's message ('order received', 'order already received', ...)")
    data: OrderAccepted | OrderErrors | ConflictStatus | None = Field(
        description="the single POST's data; error field paths start with invoiceOrders[index]"
    )


class BatchResult(BaseModel):
    accepted: int = Field(description="items answered 200 (new or already received)")
    refused: int = Field(description="the other items (400, 409; 503: stored or not, send them again)")
    invoiceOrders: list[BatchItemAnswer] = Field(description="every item's answer, in the order sent")


class BatchAnswer(Envelope):
    data: BatchResult  # type: ignore[assignment]


# ---------------------------------------------------------------------------- the operations desk (ops_api)
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


class CallbackAnswer(BaseModel):
    """What the hub answers a pushing channel, in Ekuaibao's shape: value, and why not."""

    value: bool = Field(description="true: the push was taken")
    message: str | None = Field(None, description="why not")


# ---------------------------------------------------------------------------- pushed results (Ekuaibao)
# Documentation of what channels push; channels.ekuaibao.parse_push is the reader (liberal where
# Ekuaibao's own example deviates from its field table: numbers as strings or numbers, "" as absent).
_DECIMAL = "a number or a numeric string"


class _Liberal(BaseModel):
    model_config = ConfigDict(extra="allow")


class EkuaibaoPushLine(_Liberal):
    goodsName: str = Field(description="goods or service name")
    goodsCost: str | float = Field(description=f"line amount excluding tax; {_DECIMAL}")
    goodsVat: str | float = Field(description=f"line tax; {_DECIMAL}")
    taxrate: str | float | None = Field(None, description=f"tax rate (also accepted as taxRate); {_DECIMAL}")
    goodsNum: str | float | None = Field(None, description="quantity")
    goodsPrice: str | float | None = Field(None, description="unit price excluding tax")
    goodsUnit: str | None = Field(None, description="unit")
    goodsSpecification: str | None = Field(None, description="specification")
    taxTaxonomyCode: str | None = Field(None, description="tax classification code, 19 digits")
    invRowType: int | str | None = Field(None, description="line nature: 0 normal, 1 discount, 2 discounted")


class EkuaibaoPushInvoice(_Liberal):
    invoiceNumber: str = Field(description="the invoice number")
    invoiceCode: str | None = Field(None, description="legacy invoices' code; empty for 数电")
    invoiceTypeCode: str = Field(
        description="004 paper special, 007 paper normal, 026 electronic normal, 028 electronic special, "
        "01 数电 special, 02 数电 normal",
        json_schema_extra={"enum": ["004", "007", "026", "028", "01", "02"]},
    )
    invoiceType: int | str | None = Field(None, description="0 blue (default), 1 red")
    invoiceDate: int | str | None = Field(None, description="issue date, milliseconds since the epoch (UTC+8 date)")
    invoicingDate: int | str | None = Field(None, description="used when invoiceDate is absent")
    invoiceAmount: str | float = Field(description=f"amount excluding tax; {_DECIMAL}")
    invoiceTaxAmount: str | float | None = Field(None, description=f"tax; {_DECIMAL}")
    invoiceTotalPriceTax: str | float | None = Field(None, description=f"total including tax; {_DECIMAL}")
    checkCode: str | None = Field(None, description="check code (校验码)")
    invoicingStatus: str | None = Field(None, description="00 issued (default), 03 voided")
    orderNo: str | None = Field(None, description="the request number, when serialNo is absent")
    buyerName: str | None = Field(None, description="buyer name as issued")
    buyerTaxNo: str | None = Field(None, description="buyer tax number as issued")
    sellerName: str | None = Field(None, description="seller name as issued")
    sellerTaxNo: str | None = Field(None, description="seller tax number as issued")
    originalInvoiceNumber: str | None = Field(None, description="red: the reversed blue invoice's number")
    originalInvoiceCode: str | None = Field(None, description="red: the reversed blue invoice's code")
    originalsUrl: str | None = Field(None, description="the invoice file (PDF/OFD/XML), fetched by the hub")
    previewUrl: str | None = Field(None, description="a preview file, fetched by the hub")
    details: list[EkuaibaoPushLine] = Field(description="the invoice's lines (at least one)")


class EkuaibaoPush(_Liberal):
    """Ekuaibao's (易快报) invoicing-result push (POST /api/openapi/v2/invoicing in its API), as the hub takes it."""

    channelCode: str = Field(description="the channel's code at Ekuaibao", examples=["jcsk"])
    serialNo: str | None = Field(
        None,
        description="批次号: the hub's request number (20 characters, FH...), as sent to the channel; "
        "without it, each invoice's orderNo",
    )
    result: int | str | None = Field(
        None,
        description="0 issued (also when absent), 1 rejected, 2 in progress",
        json_schema_extra={"enum": [0, 1, 2, "0", "1", "2", "", None]},
    )
    rejectMsg: str | None = Field(None, description="why it was rejected (result 1)")
    data: list[EkuaibaoPushInvoice] | str | None = Field(
        None, description="the invoices (also accepted as a JSON string holding the list); result 0: at least one"
    )


# ---------------------------------------------------------------------------- outcome notifications
class NotifiedFile(BaseModel):
    format: str = Field(description="pdf, ofd or xml")
    size: int = Field(description="bytes")
    sha256: str = Field(description="hex SHA-256; download with GET /v1/invoice-orders/{openApplyCode}")


class NotifiedInvoice(BaseModel):
    invoiceNumber: str | None
    invoiceCode: str | None = Field(description="legacy invoices only")
    invoiceDate: str | None = Field(description="yyyy-mm-dd")
    invoiceType: str | None = Field(description="the canonical type, e.g. VAT_SPECIAL_ELECTRONIC")
    amount: float | str | None = Field(description="amount excluding tax")
    tax: float | str | None
    status: str | None = Field(description="ISSUED or VOIDED")
    verified: list[str] | None = VERIFIED_FIELD
    verifiedFromFile: list[str] | None = FROM_FILE_FIELD
    attestedByOperator: list[str] | None = ATTESTED_FIELD
    fromApplication: list[str] | None = FROM_APPLICATION_FIELD
    files: list[NotifiedFile]


class NotifiedApplication(BaseModel):
    model_config = ConfigDict(extra="allow")

    openApplyCode: str | None = Field(description="your application number")
    status: str | None = Field(
        description="ISSUED, REJECTED, VOIDED, CANCELLED, STUCK, MANUAL_REVIEW or MISMATCH (a person looks)"
    )
    reason: str | None = Field(description="why (rejected, stuck, needs review)")
    channel: str | None = Field(description="the channel it went to")
    requestNumber: str = Field(description="the request number sent to the channel (its portal keys on it)")


class OutcomeNotification(BaseModel):
    """The hub's outcome event, as POSTed to a business system's webhook (format "hub")."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="the idempotency key, also in X-Fapiao-Event-Id: the same outcome, the same id")
    type: str = Field(
        description="the outcome",
        json_schema_extra={
            "enum": [
                "InvoiceIssued",
                "ApplicationRejected",
                "InvoiceVoided",
                "ApplicationStuck",
                "ApplicationNeedsReview",
                "ApplicationCancelled",
                "FindingRecorded",
            ]
        },
    )
    schema_version: str | None = Field(description="1")
    occurred_at: str | None = Field(description="ISO 8601, UTC")
    application: NotifiedApplication = Field(description="the application the outcome is about")
    invoices: list[NotifiedInvoice] = Field(description="the invoices the outcome concerns (issued, voided)")
    findings: list[Finding] | None = Field(
        None,
        description="ApplicationNeedsReview and FindingRecorded: what a person should look at (each difference "
        "between the application and what the channel reported)",
    )


# ---------------------------------------------------------------------------- examples
# What the local run (make run) accepts: company VB5 of the sample business system goes to the
# Xunlian sandbox, EK1 to the Ekuaibao sandbox.
EXAMPLE_CODE = "swagger-example-0001"
EXAMPLE_LINE = {
    "goodsName": "CA7201HA6TA智联旗畅版(2024款)",
    "taxonomyCode": "1090305010300000000",
    "MaterialCode": "HFCECMCC2J2JDY0001",
    "taxrate": 0.13,
    "vehicleNo": "THFCECMCC2J2J1270",
}
EXAMPLE_ORDER: dict[str, Any] = {
    "invoiceOrder": {
        "openApplyCode": EXAMPLE_CODE,
        "bukrs": "VB5",
        "openInvoiceType": "0",
        "invoiceType": "028",
        "amtInclTaxSign": "1",
        "businessTypeCode": "098",
        "businessTypeName": "整车销售",
        "purchaserTaxpayerName": "吉林省神州红旗汽车销售服务有限公司",
        "purchaserTaxpayerNo": "91220101MA0Y5K3N4H",
        "purchaserTaxpayerCode": "DJL606",
        "invoiceAmt": 5318.58,
        "invoiceTax": 691.42,
        "invoiceAmtInclTax": 6010.0,
        "invoiceOrderSub": [
            {**EXAMPLE_LINE, "invoiceLineNature": "2", "model": "THFCECMCC2J2J1270", "unit": "辆", "quantity": 1,
             "price": 48.0, "amtInclTax": 48.0},
            {**EXAMPLE_LINE, "invoiceLineNature": "1", "amtInclTax": -38.0},
            {**EXAMPLE_LINE, "invoiceLineNature": "0", "model": "THFCECMCC2J2J1270", "unit": "辆", "quantity": 1,
             "price": 6000.0, "amtInclTax": 6000.0},
        ],
    }
}  # fmt: skip


def _order(**changes: Any) -> dict[str, Any]:
    return {"invoiceOrder": {**EXAMPLE_ORDER["invoiceOrder"], **changes}}


def _line(index: int, **changes: Any) -> list[dict[str, Any]]:
    lines = [dict(line) for line in EXAMPLE_ORDER["invoiceOrder"]["invoiceOrderSub"]]
    lines[index].update(changes)
    return lines


def example(summary: str, value: Any) -> dict[str, Any]:
    return {"summary": summary, "value": value}


def refusal(summary: str, status: int, message: str, data: Any = None) -> dict[str, Any]:
    """An answer in the intake's envelope for a refused request."""
    return example(summary, {"success": False, "code": status, "message": message, "data": data})


ORDER_EXAMPLES = {
    "blueOrder": example(
        "a blue 增值税电子专用发票 (028) with a discount pair, company VB5", EXAMPLE_ORDER
    ),
    "ruleProblems": example(
        "breaks tax rules: a buyer tax number that is none, a discount line with a unit",
        _order(openApplyCode="swagger-example-0002", purchaserTaxpayerNo="dddddmarkForTax",
               invoiceOrderSub=_line(1, unit="辆")),
    ),
    "unknownCodes": example(
        "codes the hub does not know: invoiceType, openInvoiceType",
        _order(openApplyCode="swagger-example-0003", invoiceType="0999", openInvoiceType="9"),
    ),
    "sameCodeOtherContent": example(
        "blueOrder's openApplyCode again with other content", _order(remark="changed after submitting")
    ),
}  # fmt: skip
ORDER_ANSWERS: dict[int, dict[str, Any]] = {
    200: {
        "blueOrder": example(
            "stored and queued ('order already received' when the same body comes again)",
            {
                "success": True,
                "code": 200,
                "message": "order received",
                "data": {"openApplyCode": EXAMPLE_CODE, "status": "RECEIVED", "warnings": []},
            },
        )
    },
    400: {
        "ruleProblems": refusal(
            "every problem, by JSON path",
            400,
            "invalid invoice order: 2 problems",
            {
                "errors": [
                    {
                        "field": "invoiceOrder.invoiceOrderSub[1].unit",
                        "message": "a discount line must leave the unit empty",
                    },
                    {
                        "field": "invoiceOrder.purchaserTaxpayerNo",
                        "message": "tax number is malformed: 'd' is not allowed in a 15-character tax number "
                        "(digits and uppercase letters A-Z only)",
                    },
                ]
            },
        ),
        "unknownCodes": refusal(
            "unknown codes, with the accepted ones",
            400,
            "invalid invoice order: 2 problems",
            {
                "errors": [
                    {
                        "field": "invoiceOrder.invoiceType",
                        "message": "unknown invoice type code '0999' (accepted: 004, 007, 01, 0112, 02, 0212, 026, "
                        "028)",
                    },
                    {
                        "field": "invoiceOrder.openInvoiceType",
                        "message": "must be 0 (blue), 1 (red) or 2 (void), got '9'",
                    },
                ]
            },
        ),
    },
    401: {"noToken": refusal("no Authorization header (or an unknown token)", 401, "missing or invalid bearer token")},
    409: {
        "sameCodeOtherContent": refusal(
            "the openApplyCode is taken by other content",
            409,
            f"openApplyCode {EXAMPLE_CODE!r} was already received with different content and was ISSUED: an "
            "issued application is not replaced; reverse its invoice with a red application (openInvoiceType 1) "
            "under a new openApplyCode",
            {"status": "ISSUED"},
        )
    },
    413: {"tooLarge": refusal("a body over the limit", 413, "body is 6291457 bytes; the limit is 6291456")},
    415: {"notJson": refusal("Content-Type text/plain", 415, "Content-Type must be application/json")},
    503: {
        "queueDown": refusal(
            "stored, not yet queued",
            503,
            "the application was stored but could not be queued for dispatch; send the same request again",
        )
    },
}
READ_EXAMPLES = {
    "submitted": example("blueOrder's application (submit it first)", EXAMPLE_CODE),
    "unknown": example("an application this business system does not have", "no-such-order"),
}
READ_ANSWERS: dict[int, dict[str, Any]] = {
    200: {
        "submitted": example(
            "issued by the Xunlian sandbox",
            {
                "success": True,
                "code": 200,
                "message": "ok",
                "data": {
                    "openApplyCode": EXAMPLE_CODE,
                    "status": "ISSUED",
                    "warnings": [],
                    "version": 4,
                    "channel": "xunlian",
                    "createdAt": "2026-11-21T12:00:00.000Z",
                    "updatedAt": "2026-11-21T12:00:01.200Z",
                    "reason": None,
                    "history": [
                        {"at": "2026-11-21T12:00:00.000Z", "status": "RECEIVED", "note": "received"},
                        {"at": "2026-11-21T12:00:00.900Z", "status": "DISPATCHING", "previous": "RECEIVED",
                         "note": "attempt 1 (request number FH2V6Q3X7ABCDEFGHIJK)"},
                        {"at": "2026-11-21T12:00:01.200Z", "status": "ISSUED", "previous": "DISPATCHING",
                         "note": "issued"},
                    ],
                    "historyNextCursor": None,
                    "requestNumber": request_number_for(application_key("sample-erp", EXAMPLE_CODE)),
                    "findings": [],
                    "invoices": [
                        {"invoiceNumber": "00000001", "invoiceCode": "044002300111", "invoiceDate": "2026-11-21",
                         "invoiceType": "VAT_SPECIAL_ELECTRONIC", "amount": 5318.58, "tax": 691.42,
                         "status": "ISSUED", "channel": "xunlian",
                         "redRemainingAmount": 5318.58, "redRemainingTax": 691.42,
                         "verified": ["seller", "buyer", "invoice_type", "direction", "issued_on", "amount", "tax"],
                         "verifiedFromFile": [], "attestedByOperator": [], "fromApplication": [],
                         "files": [{"format": "pdf", "size": 1234, "sha256": "9f86d081884c7d65...",
                                    "url": "https://files.example/invoices/...?X-Amz-Expires=300"}]},
                    ],
                    "invoiceOrder": {**EXAMPLE_ORDER["invoiceOrder"], "invoiceAmt": 5318.58},
                },
            },
        )
    },
    401: ORDER_ANSWERS[401],
    404: {"unknown": refusal("not yours, or no such application", 404, "no invoice order 'no-such-order'")},
    503: {"awsDown": refusal("a moment's outage", 503, "temporarily unavailable; try again")},
}  # fmt: skip

# A batch: a new order and a broken one (each answered as its own POST).
BATCH_CODES = ("swagger-example-0010", "swagger-example-0011")
BATCH_EXAMPLES = {
    "batchOrders": example(
        "two orders: the second with an unknown invoiceType",
        {"invoiceOrders": [_order(openApplyCode=BATCH_CODES[0]),
                           _order(openApplyCode=BATCH_CODES[1], invoiceType="0999")]},
    ),
    "emptyBatch": example("no orders at all", {"invoiceOrders": []}),
}  # fmt: skip
BATCH_ANSWERS: dict[int, dict[str, Any]] = {
    200: {
        "batchOrders": example(
            "one received ('order already received' when sent again), one refused naming invoiceOrders[1]",
            {
                "success": True,
                "code": 200,
                "message": "batch of 2: 1 accepted, 1 refused",
                "data": {
                    "accepted": 1,
                    "refused": 1,
                    "invoiceOrders": [
                        {"index": 0, "openApplyCode": BATCH_CODES[0], "success": True, "code": 200,
                         "message": "order received",
                         "data": {"openApplyCode": BATCH_CODES[0], "status": "RECEIVED", "warnings": []}},
                        {"index": 1, "openApplyCode": BATCH_CODES[1], "success": False, "code": 400,
                         "message": "invalid invoice order: 1 problem",
                         "data": {"errors": [ORDER_ANSWERS[400]["unknownCodes"]["value"]["data"]["errors"][0]
                                             | {"field": "invoiceOrders[1].invoiceOrder.invoiceType"}]}},
                    ],
                },
            },
        )
    },
    400: {
        "emptyBatch": refusal(
            "an empty batch: nothing stored",
            400,
            "invalid batch: must hold 1 to 100 invoice orders, got 0",
            {"errors": [{"field": "invoiceOrders", "message": "must hold 1 to 100 invoice orders, got 0"}]},
        )
    },
}  # fmt: skip

# The Ekuaibao sandbox's application in the local run: docs/examples/order-ekuaibao.json submitted by
# the sample business system; its request number is derived from that key.
EXAMPLE_PUSH_NUMBER = request_number_for(application_key("sample-erp", "demo-ekuaibao-0001"))
PUSH_EXAMPLES = {
    "issued": example(
        "result 0: issued, with the invoice and its lines (an application of the local run's EK1)",
        {
            "channelCode": "jcsk",
            "serialNo": EXAMPLE_PUSH_NUMBER,
            "result": 0,
            "data": [
                {
                    "invoiceType": 0,
                    "invoiceTypeCode": "028",
                    "invoiceCode": "044002300111",
                    "invoiceNumber": "90000001",
                    "invoiceDate": 1787284800000,
                    "invoiceAmount": "5327.43",
                    "invoiceTaxAmount": "692.57",
                    "invoiceTotalPriceTax": "6020.00",
                    "checkCode": "58428259812242286445",
                    "buyerName": "吉林省神州红旗汽车销售服务有限公司",
                    "buyerTaxNo": "91220101MA0Y5K3N4H",
                    "invoicingStatus": "00",
                    "details": [
                        {"goodsName": "CA7201HA6TA智联旗畅版(2024款)", "goodsCost": "5327.43", "goodsVat": "692.57",
                         "taxrate": "0.13", "goodsNum": "1", "goodsPrice": "5327.43362832", "goodsUnit": "辆",
                         "taxTaxonomyCode": "1090305010300000000"},
                    ],
                }
            ],
        },
    ),
    "inProgress": example(
        "result 2: still in progress", {"channelCode": "jcsk", "serialNo": EXAMPLE_PUSH_NUMBER, "result": 2}
    ),
    "unknownRequestNumber": example(
        "result 1 (rejected) for a request number the hub never sent: kept as unmatched",
        {"channelCode": "jcsk", "serialNo": "FH000000000000000000", "result": 1, "rejectMsg": "购方税号有误"},
    ),
    "noInvoice": example("result 0 without an invoice", {"channelCode": "jcsk", "serialNo": "FH000000000000000000",
                                                          "result": 0, "data": []}),
}  # fmt: skip
PUSH_ANSWERS: dict[int, dict[str, Any]] = {
    200: {
        "issued": example("taken", {"value": True}),
        "inProgress": example("taken", {"value": True}),
    },
    400: {
        "noInvoice": example(
            "unreadable: the JSON path and why",
            {"value": False, "message": "data: result 0 (issued) carries no invoice"},
        )
    },
    401: {
        "noAccessToken": example(
            "no accessToken, or a wrong one (or a bad signature)", {"value": False, "message": "unauthorized"}
        )
    },
    404: {
        "unknownRequestNumber": example(
            "kept as an unmatched result",
            {"value": False, "message": "no application for request number FH000000000000000000"},
        )
    },
    413: {"tooLarge": example("over 2 MiB", {"value": False, "message": "body over 2097152 bytes"})},
}


STATUS_DESCRIPTION = (
    "An application's status; it only moves forward. Open: RECEIVED, DISPATCHING, SUBMITTED, UNKNOWN (an "
    "attempt's outcome is being established: never sent twice), RETRY_WAIT, VOIDING. Settled: ISSUED, REJECTED, "
    "VOIDED. A person must look: MANUAL_REVIEW, MISMATCH, STUCK (still open 24 h after it was received)."
)


# ---------------------------------------------------------------------------- route metadata
def answer(
    description: str,
    model: type[BaseModel],
    headers: dict[str, str] | None = None,
    examples: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One entry of a route's ``responses``: a JSON answer of ``model``, with documented headers and examples."""
    media: dict[str, Any] = {"model": model}
    if examples:
        media["examples"] = examples
    declared: dict[str, Any] = {"description": description, "content": {"application/json": media}}
    if headers:
        declared["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    return declared


def request_body(
    description: str, model: type[BaseModel] | None = None, examples: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``openapi_extensions`` declaring a required JSON body: ``model``'s schema, else any object."""
    if model is not None:
        _BODY_MODELS[model.__name__] = model
        schema: dict[str, Any] = {"$ref": SCHEMA_REF + model.__name__}
    else:
        schema = {"type": "object", "additionalProperties": True}
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = examples
    return {"requestBody": {"description": description, "required": True, "content": {"application/json": media}}}


SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "a business system's token on /v1/invoice-orders, an operator's token on /v1/ops (their "
        "SHA-256 digests are in the hub configuration)",
    },
    CALLBACK_TOKEN: {
        "type": "apiKey",
        "in": "query",
        "name": "accessToken",
        "description": "the channel's access token. A channel with an HMAC secret also signs each push: "
        "x-fapiao-timestamp (epoch seconds, within 5 minutes), optional x-fapiao-nonce, and x-fapiao-signature = "
        'hex HMAC-SHA256 with the secret over "{timestamp}.{body}" ("{timestamp}.{nonce}.{body}" with a nonce)',
    },
}


# ---------------------------------------------------------------------------- the outbound webhook
def _header(name: str, description: str, example_value: str, required: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
        "example": example_value,
    }


NOTIFICATION_EXAMPLE = {
    "id": "3f1c2a9d8b7e6f5a4c3b2a1908f7e6d5",
    "type": "InvoiceIssued",
    "schema_version": "1",
    "occurred_at": "2026-11-21T12:00:01Z",
    "application": {
        "openApplyCode": EXAMPLE_CODE,
        "status": "ISSUED",
        "reason": None,
        "channel": "xunlian",
        "requestNumber": "FH2V6Q3X7ABCDEFGHIJK",
    },
    "invoices": [
        {
            "invoiceNumber": "00000001",
            "invoiceCode": "044002300111",
            "invoiceDate": "2026-11-21",
            "invoiceType": "VAT_SPECIAL_ELECTRONIC",
            "amount": 5318.58,
            "tax": 691.42,
            "status": "ISSUED",
            "verified": ["seller", "buyer", "invoice_type", "direction", "issued_on", "amount", "tax"],
            "verifiedFromFile": [],
            "attestedByOperator": [],
            "fromApplication": [],
            "files": [{"format": "pdf", "size": 1234, "sha256": "9f86d081884c7d65..."}],
        }
    ],
}


def webhooks() -> dict[str, Any]:
    """OpenAPI 3.1 ``webhooks``: what the hub POSTs to a business system's webhook."""
    return {
        "outcome": {
            "post": {
                "operationId": "outcomeNotification",
                "summary": "The hub tells your business system an application's outcome",
                "description": "Sent to the webhook URL in your business system's entry of the hub configuration, "
                "at least once per outcome (InvoiceIssued, ApplicationRejected, InvoiceVoided, ApplicationStuck, "
                "ApplicationNeedsReview). Verify the signature: hex HMAC-SHA256 keyed with the webhook's secret "
                'over the bytes "{X-Fapiao-Timestamp}." + body, compared with X-Fapiao-Signature after its '
                "'sha256=' prefix; refuse timestamps more than 5 minutes off. Then de-duplicate on "
                "X-Fapiao-Event-Id and answer 2xx quickly. Files are described, not sent: download them with "
                "GET /v1/invoice-orders/{openApplyCode}. A webhook configured with the format 'ekuaibao' "
                "receives the EkuaibaoPush shape instead (serialNo = the openApplyCode, result 0 issued or "
                "voided, 1 rejected; stuck and needs-review outcomes are not sent), with accessToken in the query.",
                "tags": ["notifications"],
                "parameters": [
                    _header(
                        "X-Fapiao-Event-Id",
                        "the idempotency key: the same outcome always carries the same id (also the body's id)",
                        NOTIFICATION_EXAMPLE["id"],
                    ),
                    _header("X-Fapiao-Timestamp", "when it was signed, seconds since the epoch", "1787313601"),
                    _header(
                        "X-Fapiao-Signature",
                        'sha256= + hex HMAC-SHA256(webhook secret, "{timestamp}." + body); sent when the webhook '
                        "has a secret",
                        "sha256=5d41402abc4b2a76b9719d911017c592...",
                        required=False,
                    ),
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": SCHEMA_REF + OutcomeNotification.__name__},
                            "examples": {"issued": example("an invoice issued", NOTIFICATION_EXAMPLE)},
                        }
                    },
                },
                "responses": {
                    "200": {"description": "any 2xx: delivered"},
                    "400": {
                        "description": "any other 4xx (and 3xx): refused for good; the notification goes to the "
                        "hub's dead-letter queue at once (an operator redrives it)"
                    },
                    "503": {
                        "description": "408, 429, 5xx or a timeout: sent again after 30 s, doubling to 15 min, 8 "
                        "tries in all (a Retry-After is honoured up to 15 min)"
                    },
                },
            }
        }
    }


_WEBHOOK_MODELS: dict[str, type[BaseModel]] = {OutcomeNotification.__name__: OutcomeNotification}


def version() -> str:
    try:
        return metadata.version("fapiao-hub")
    except metadata.PackageNotFoundError:  # the Lambda layer carries no distribution metadata
        return "0.0.0"


def document() -> dict[str, Any]:
    """The HTTP API's OpenAPI 3.1 document (intake and callback routes), as JSON values.

    Imports the route modules. In a process that also runs the handlers, load the handlers first:
    a route module imported earlier creates its Powertools child logger without their parent.
    """
    from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
    from aws_lambda_powertools.event_handler.openapi.models import OpenAPI
    from pydantic.json_schema import models_json_schema

    from fapiao_hub.api import callbacks as callback_api
    from fapiao_hub.api import intake as intake_api
    from fapiao_hub.api import ops as ops_api

    merge = OpenAPIMerge(
        title=TITLE,
        version=version(),
        description="Serverless hub for Chinese VAT e-invoices (发票 / 数电票). Business systems submit invoice "
        "applications (开票申请单) in the FAW (一汽) tax platform's invoice-order shape and read them back; the hub "
        "checks them against the tax rules (tolerances 0.01 / 0.06 / 1.27, rates in force, discount lines, red "
        "invoices, tax numbers, no control characters), issues each through its channel exactly once, and tells "
        "the business system the outcome by webhook (see webhooks). Channels (Ekuaibao 易快报) push their "
        "results to /v1/callbacks/{channel}. Every answer of the intake is an envelope {success, code, message, "
        "data} with code = the HTTP status. The operations desk (/v1/ops, operator tokens) finds, explains and "
        "resolves applications. Examples: a request example and its answer share a name.",
        tags=["intake", "callbacks", "operations"],
        on_conflict="error",
    )
    for app in (intake_api.app, callback_api.app, ops_api.app):
        merge.add_schema(app.get_openapi_schema(title=TITLE, security_schemes=SECURITY_SCHEMES))
    merged = merge.get_openapi_schema()
    components = merged.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    _, bodies = models_json_schema(
        [(model, "validation") for _, model in sorted({**_BODY_MODELS, **_WEBHOOK_MODELS}.items())],
        by_alias=True,
        ref_template=SCHEMA_REF + "{model}",
    )
    components.setdefault("schemas", {}).update(bodies.get("$defs", {}))
    merged["webhooks"] = webhooks()
    # The enum's docstring is written for the code's readers; this is the integrator's.
    components["schemas"]["Status"]["description"] = STATUS_DESCRIPTION
    doc = OpenAPI.model_validate(merged).model_dump(mode="json", by_alias=True, exclude_none=True)
    _drop_unreferenced_schemas(doc)
    return json.loads(json.dumps(doc))  # response codes as strings, as in the JSON file


def _drop_unreferenced_schemas(doc: dict[str, Any]) -> None:
    """Powertools always adds its validation-error schemas; this API never answers them."""
    schemas = doc.get("components", {}).get("schemas", {})

    def refs(node: Any) -> set[str]:
        found: set[str] = set()
        stack = [node]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                ref = item.get("$ref")
                if isinstance(ref, str) and ref.startswith(SCHEMA_REF):
                    found.add(ref.removeprefix(SCHEMA_REF))
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        return found

    used = refs(doc.get("paths", {})) | refs(doc.get("webhooks", {}))
    pending = list(used)
    while pending:
        for name in refs(schemas.get(pending.pop(), {})) - used:
            used.add(name)
            pending.append(name)
    for name in set(schemas) - used:
        del schemas[name]


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def swagger_html(doc: dict[str, Any] | None = None) -> str:
    """A Swagger UI page for the document, with Swagger UI's JS and CSS inline (no CDN).

    Powertools ships Swagger UI's dist files and inlines them the same way in its own
    ``enable_swagger`` route when no ``swagger_base_url`` is given.
    """
    from aws_lambda_powertools.event_handler.openapi import swagger_ui

    dist = Path(swagger_ui.__file__).parent
    spec = json.dumps(document() if doc is None else doc, ensure_ascii=False).replace("</", "<\\/")
    return swagger_ui.generate_swagger_html(
        spec,
        (dist / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (dist / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",
        None,
    ).replace("<title>Swagger UI</title>", f"<title>{TITLE} API</title>")


def main(argv: list[str] | None = None) -> int:
    """``python -m fapiao_hub.api.openapi [PATH]``: write the document (default docs/openapi.json)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else DOCUMENT_PATH
    target.write_text(to_json(document()), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    # Run as the imported module: the routes register their body models there, not in __main__.
    from fapiao_hub.api.openapi import main as _main

    sys.exit(_main())
