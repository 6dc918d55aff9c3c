"""What the business systems' routes declare in the OpenAPI document: their answer models, and the
helpers a route's decorator uses to declare its answers and its request body.

Field names are the JSON names (camelCase where the callers use it). The operations desk's models are
in ``ops_schemas``, the channels' pushes in ``callback_schemas``, the examples in ``examples``;
``openapi`` builds the document from the routes.

Request bodies: Powertools documents a body only from a ``Body()``-annotated handler parameter,
and only its validation middleware fills such a parameter, before any middleware of ours runs. The
intake API must authenticate before it validates, so it validates by hand, and a route declares its
body with :func:`request_body` (an ``openapi_extensions`` entry); the document adds the body model's
JSON schema (by alias: the caller's field names) to the components from :data:`BODY_MODELS`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from fapiao_hub.domain.models import FindingKind, Status

SCHEMA_REF = "#/components/schemas/"

# Security scheme names, as routes refer to them.
BEARER = "bearerToken"
CALLBACK_TOKEN = "callbackAccessToken"  # noqa: S105 (a scheme name)

# Models named by request_body(): their schemas go into the document's components.
BODY_MODELS: dict[str, type[BaseModel]] = {}


# ---------------------------------------------------------------------------- answer models
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


# ---------------------------------------------------------------------------- batches (api.batch)
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
        BODY_MODELS[model.__name__] = model
        schema: dict[str, Any] = {"$ref": SCHEMA_REF + model.__name__}
    else:
        schema = {"type": "object", "additionalProperties": True}
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = examples
    return {"requestBody": {"description": description, "required": True, "content": {"application/json": media}}}
