"""Intake HTTP API: submit invoice applications (seed 004 shape) and read them back.

Adapter only: authentication, body parsing, the seed 004 envelope ``{success, code, message,
data}``, and turning the workflow's answers into status codes. Business rules live in
``rules``/``intake.seed004``; orchestration in ``workflow``.
"""

from __future__ import annotations

import base64
import binascii
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from fapiao_hub import runtime
from fapiao_hub.api import openapi, seed004
from fapiao_hub.domain import jsonutil, logkeys
from fapiao_hub.domain.models import Application, Finding
from fapiao_hub.infra import history as audit
from fapiao_hub.infra.queues import QueueUnavailable
from fapiao_hub.infra.store.records import StoredApplication
from fapiao_hub.usecases.intake import (
    ApplicationConflict,
    Intake,
    RedRefused,
    VoidConflict,
    VoidRefused,
    VoidRequest,
)

logger = Logger(child=True)
metrics = Metrics()
app = APIGatewayHttpResolver()

SUBMIT_PATHS = ("/v1/invoice-orders", "/extInvoiceOrder/receiveInvoiceOrder")


def envelope(status: int, message: str, data: Any = None, headers: dict[str, str] | None = None) -> Response:
    """Seed 004's answer shape, for every answer of the intake API."""
    body = {"success": 200 <= status < 300, "code": status, "message": message, "data": data}
    return Response(status, "application/json", jsonutil.dumps(body), headers=headers)


class Refusal(Exception):
    """A request refused before the workflow is involved (the ops API's routes refuse the same way)."""

    def __init__(self, status: int, message: str, data: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.response = envelope(status, message, data, headers)


@app.exception_handler(Refusal)
def _refused(refusal: Refusal) -> Response:
    metrics.add_metric(name=f"Refused{refusal.response.status_code}", unit=MetricUnit.Count, value=1)
    return refusal.response


@app.exception_handler(QueueUnavailable)
def _queue_down(_: QueueUnavailable) -> Response:
    logger.warning("dispatch queue unavailable; application stays RECEIVED")
    return envelope(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "the application was stored but could not be queued for dispatch; send the same request again",
        headers={"Retry-After": "5"},
    )


@app.exception_handler(ClientError)
@app.exception_handler(BotoCoreError)
def _aws_down(error: Exception) -> Response:
    logger.exception("AWS call failed")
    return envelope(HTTPStatus.SERVICE_UNAVAILABLE, "temporarily unavailable; try again", headers={"Retry-After": "5"})


@app.not_found
def _no_route(_: Exception) -> Response:
    return envelope(HTTPStatus.NOT_FOUND, "no such route")


def _caller() -> str:
    """The business system behind the bearer token, or a 401."""
    header = app.current_event.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    system = runtime.authenticate_business_system(token) if scheme.lower() == "bearer" and token else None
    if system is None:
        raise Refusal(
            HTTPStatus.UNAUTHORIZED,
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": 'Bearer realm="fapiao-hub"'},
        )
    return system


def _json_body() -> Any:
    event = app.current_event
    content_type = (event.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Refusal(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
    raw = event.body or ""
    try:
        body = base64.b64decode(raw, validate=True) if event.is_base64_encoded else raw.encode("utf-8")
    except (binascii.Error, UnicodeEncodeError):
        raise Refusal(HTTPStatus.BAD_REQUEST, "body could not be decoded") from None
    limit = runtime.settings().max_body_bytes
    if len(body) > limit:
        raise Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body is {len(body)} bytes; the limit is {limit}")
    if not body.strip():
        raise Refusal(HTTPStatus.BAD_REQUEST, 'body is empty; expected {"invoiceOrder": {...}}')
    try:
        return jsonutil.loads(body)
    except jsonutil.InvalidJson as error:
        raise Refusal(HTTPStatus.BAD_REQUEST, str(error)) from None


def _invalid(errors: list[seed004.FieldError]) -> Refusal:
    count = len(errors)
    return Refusal(
        HTTPStatus.BAD_REQUEST,
        f"invalid invoice order: {count} problem{'s' if count != 1 else ''}",
        {"errors": [e.as_dict() for e in errors]},
    )


def _summary(stored: StoredApplication) -> dict[str, Any]:
    return {
        "openApplyCode": stored.application.open_apply_code,
        "status": stored.status.value,
        "warnings": list(stored.warnings),
    }


_INVOICE_FIELDS = {
    "number": "invoiceNumber",
    "code": "invoiceCode",
    "issued_on": "invoiceDate",
    "invoice_type": "invoiceType",
    "amount": "amount",
    "tax": "tax",
    "check_code": "checkCode",
    "status": "status",
    "channel": "channel",
    # A blue invoice: what red invoices may still reverse (docs/rules.md section 4).
    "red_remaining_amount": "redRemainingAmount",
    "red_remaining_tax": "redRemainingTax",
    # What "issued" rests on (verification.provenance): figures compared with the channel's statement
    # (its answer or, "verifiedFromFile", the invoice's own file), typed by an operator, or held only
    # from the application (not compared with anything the channel said).
    "verified": "verified",
    "from_file": "verifiedFromFile",
    "attested_by_operator": "attestedByOperator",
    "from_application": "fromApplication",
}


def _invoice(item: dict[str, Any]) -> dict[str, Any]:
    shown = {name: item[field] for field, name in _INVOICE_FIELDS.items() if field in item}
    if item.get("files"):
        shown["files"] = [_file(f) for f in item["files"]]
    return shown


def _finding(finding: Finding) -> dict[str, Any]:
    return {
        "id": finding.id,
        "kind": finding.kind.value,
        "at": finding.at,
        "source": finding.source,
        "summary": finding.summary,
        "differences": [d.model_dump(mode="json") for d in finding.differences],
        "invoiceNumbers": list(finding.invoice_numbers),
        "open": finding.open,
        "count": finding.count,
        "lastSeen": finding.last_seen,
    }


def _file(record: dict[str, Any]) -> dict[str, Any]:
    """A stored file with a short-lived download URL, or why there is none."""
    if record.get("key"):
        return {
            "format": record["format"],
            "size": int(record["size"]),
            "sha256": record["sha256"],
            "url": runtime.file_store().presigned_url(record["key"], PRESIGNED_URL_SECONDS),
        }
    return {"error": record.get("error"), "source": record.get("source")}


# Download links in GET answers are good for five minutes.
PRESIGNED_URL_SECONDS = 300


class _Misconfigured(Exception):
    pass


@app.exception_handler(_Misconfigured)
def _misconfigured(error: _Misconfigured) -> Response:
    # The operator's mistake, not the caller's: loud in the log, a retryable answer outside.
    logger.error("hub configuration error", extra={"problem": str(error)})
    return envelope(HTTPStatus.SERVICE_UNAVAILABLE, "the hub's channel configuration is invalid; try again later")


def _route(application: Application) -> str | None:
    """The channel that issues this application (usecases.routing.intake_channel). A 400 naming
    invoiceOrder.invoiceType (what the company can issue) when the seller has configured channels and
    none can; nothing is stored then."""
    from fapiao_hub.channels.registry import ChannelConfigurationError
    from fapiao_hub.usecases import routing

    try:
        return routing.intake_channel(runtime.channel_registry(), application)
    except ChannelConfigurationError as error:
        raise _Misconfigured(str(error)) from None
    except routing.NoCapableChannel as refused:
        configured, issuable = refused.configured, refused.issuable
    colour = "red" if application.direction.value == "RED" else "blue"
    codes = _intake_codes()
    listed = "; ".join(
        f"{name}: {', '.join(f'{t.value} ({codes[t]})' if t in codes else t.value for t in types) or 'none'}"
        for name, types in issuable.items()
    )
    raise _invalid(
        [
            seed004.FieldError(
                f"{seed004.ROOT}.invoiceType",
                f"company {application.company_code} cannot issue {colour} {application.invoice_type.value} "
                f"invoices: none of its channels ({', '.join(configured)}) can; it can issue {listed}",
            )
        ]
    )


def _intake_codes() -> dict[Any, str]:
    """Canonical type -> the intake codes that mean it (for messages)."""
    codes: dict[Any, list[str]] = {}
    for code, kind in runtime.hub_config().intake_invoice_types.items():
        codes.setdefault(kind, []).append(code)
    return {kind: "/".join(found) for kind, found in codes.items()}


def _void(system_id: str, body: Any, intake: Intake) -> Response[Any]:
    from fapiao_hub.channels.registry import ChannelConfigurationError

    config = runtime.hub_config()
    order, errors = seed004.to_void(body, system=config.business_systems[system_id])
    if errors or order is None:
        raise _invalid(errors)
    logkeys.set_application(system_id, order.open_apply_code)
    registry = runtime.channel_registry()

    def can_void(channel: str | None, invoice_type: Any) -> bool:
        try:
            capabilities = registry.capabilities(channel) if channel else None
        except ChannelConfigurationError as error:
            raise _Misconfigured(str(error)) from None
        return capabilities is not None and capabilities.voids(invoice_type)

    request = VoidRequest(
        source_system=system_id,
        open_apply_code=order.open_apply_code,
        seller_tax_number=order.seller_tax_number,
        blue_invoice_number=order.blue_invoice_number,
        blue_invoice_code=order.blue_invoice_code,
        reason=order.reason,
    )
    try:
        submitted = intake.void(request, can_void=can_void)
    except VoidRefused as refused:
        metrics.add_metric(name="VoidsRefused", unit=MetricUnit.Count, value=1)
        raise _invalid([seed004.FieldError(f"{seed004.ROOT}.{refused.field}", refused.message)]) from None
    except VoidConflict as conflict:
        return envelope(HTTPStatus.CONFLICT, conflict.message, {"status": conflict.stored.status.value})
    stored = submitted.stored
    metrics.add_metric(name="VoidsAccepted" if submitted.created else "VoidsRepeated", unit=MetricUnit.Count, value=1)
    logger.info("void request accepted", extra={"new": submitted.created, "status": stored.status.value})
    return envelope(
        HTTPStatus.OK,
        "void requested" if submitted.created else "void already requested",
        {
            "openApplyCode": order.open_apply_code,
            "voids": stored.application.open_apply_code,
            "status": stored.status.value,
            "warnings": [],
        },
    )


def submit() -> Response[Any]:
    return _submit_order(_caller(), _json_body(), runtime.intake())


def _submit_order(system_id: str, body: Any, intake: Intake) -> Response[Any]:
    """One invoice order, as POST /v1/invoice-orders takes it (and each item of a batch)."""
    config = runtime.hub_config()
    if seed004.is_void(body):
        return _void(system_id, body, intake)
    result = seed004.to_application(
        body,
        source_system=system_id,
        system=config.business_systems[system_id],
        config=config,
        policy=runtime.rule_policy(),
    )
    if result.errors or result.application is None:
        logger.info("invoice order refused", extra={"problems": len(result.errors)})
        metrics.add_metric(name="OrdersRefused", unit=MetricUnit.Count, value=1)
        raise _invalid(result.errors)
    application = result.application
    logkeys.set_application(system_id, application.open_apply_code)
    channel = _route(application)
    try:
        submitted = intake.submit(
            application,
            payload_sha256=jsonutil.content_hash(body),
            channel=channel,
            warnings=[f"{w.field}: {w.message}" for w in result.warnings],
            reverses_outside_invoices=config.business_systems[system_id].reverses_outside_invoices,
        )
    except ApplicationConflict as conflict:
        return envelope(HTTPStatus.CONFLICT, conflict.message, {"status": conflict.existing.status.value})
    except RedRefused as refused:
        field = seed004.red_refusal_field(body, refused.problem.path)
        raise _invalid([seed004.FieldError(field, refused.problem.message)]) from None
    logkeys.name_request(submitted.stored.sent_request_number)
    logger.info("invoice order accepted", extra={"new": submitted.created, "status": submitted.stored.status.value})
    metrics.add_metric(name="OrdersAccepted" if submitted.created else "OrdersRepeated", unit=MetricUnit.Count, value=1)
    message = "order received" if submitted.created else "order already received"
    if submitted.created and int(submitted.stored.extra.get("submission", 1)) > 1:
        message = "order received again with corrected content"
    return envelope(HTTPStatus.OK, message, _summary(submitted.stored))


# OpenAPI (fapiao_hub.api.openapi): what the routes take and answer. Documentation only: the body is
# checked by submit() itself, after authentication.
_UNAUTHORIZED = openapi.answer(
    "missing or invalid bearer token",
    openapi.Envelope,
    {"WWW-Authenticate": 'Bearer realm="fapiao-hub"'},
    openapi.ORDER_ANSWERS[401],
)
_ANSWERS = openapi.ORDER_ANSWERS
_SUBMIT_DOCS: dict[str, Any] = {
    "tags": ["intake"],
    "description": "Validates the order against the shape and the tax rules (every problem is reported by the "
    "caller's JSON path), stores it once per openApplyCode and queues it for dispatch to the channel of its "
    "company (bukrs). The same body again answers the same (nothing is stored twice; key order and white space "
    "do not matter); other content under the same openApplyCode is a 409. Follow the application with GET "
    "/v1/invoice-orders/{openApplyCode} or the outcome webhook.",
    "security": [{openapi.BEARER: []}],
    "openapi_extensions": openapi.request_body(
        'the invoice application in the FAW tax platform\'s shape, {"invoiceOrder": {...}}; fields not described '
        "are carried through and returned, and codes may be sent as numbers too",
        seed004.Seed004Request,
        openapi.ORDER_EXAMPLES,
    ),
    "responses": {
        200: openapi.answer(
            "received (message: 'order received' or 'order already received'); data.warnings lists what was "
            "accepted but is worth a look",
            openapi.OrderAcceptedAnswer,
            examples=_ANSWERS[200],
        ),
        400: openapi.answer(
            "invalid invoice order (data.errors: every problem, by JSON path), or an unreadable body (data null)",
            openapi.OrderRefusedAnswer,
            examples=_ANSWERS[400],
        ),
        401: _UNAUTHORIZED,
        409: openapi.answer(
            "the openApplyCode was already received with different content and may not be replaced now (only a "
            "REJECTED application may be sent again with corrected content): the message says why and what to do "
            "instead, data.status where it stands",
            openapi.OrderConflictAnswer,
            examples=_ANSWERS[409],
        ),
        413: openapi.answer(
            "the body is over the size limit (6 MiB unless configured)", openapi.Envelope, examples=_ANSWERS[413]
        ),
        415: openapi.answer("Content-Type is not application/json", openapi.Envelope, examples=_ANSWERS[415]),
        503: openapi.answer(
            "stored but not yet queued, or a moment's outage: send the same request again",
            openapi.Envelope,
            {"Retry-After": "seconds to wait"},
            _ANSWERS[503],
        ),
    },
}
_SUBMIT_OPERATIONS = {
    "/v1/invoice-orders": ("submitInvoiceOrder", "Submit an invoice application"),
    "/extInvoiceOrder/receiveInvoiceOrder": (
        "receiveInvoiceOrder",
        "Submit an invoice application (the FAW tax platform's path)",
    ),
}

for _path in SUBMIT_PATHS:
    _operation_id, _summary_text = _SUBMIT_OPERATIONS[_path]
    app.post(_path, operation_id=_operation_id, summary=_summary_text, **_SUBMIT_DOCS)(submit)

# POST /v1/invoice-orders/batch: each item through _submit_order (its own module; registers on app).
from fapiao_hub.api import batch as _batch  # noqa: E402, F401


def history_page(stored: StoredApplication, shape: Any, params: dict[str, str] | None) -> dict[str, Any]:
    """A page of the application's history (never cut: the cursor gives the next) as ``shape`` shows an
    entry, from a GET's ``params``; a bad paging parameter is a 400 naming it. Shared by the ops detail."""
    try:
        limit, cursor, newest_first = audit.page_request(params)
        entries, next_cursor = runtime.application_store().history_page(
            stored, limit=limit, cursor=cursor, newest_first=newest_first, entries_only=shape is audit.entry
        )
    except audit.PageRequestInvalid as error:
        raise Refusal(HTTPStatus.BAD_REQUEST, str(error)) from None
    except audit.InvalidHistoryCursor as error:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"historyCursor: {error}") from None
    return {"history": [shape(e) for e in entries], "historyNextCursor": next_cursor}


@app.get(
    "/v1/invoice-orders/<openApplyCode>",
    operation_id="readInvoiceOrder",
    summary="Read an invoice application: status, history, invoices and their files",
    description="Only your own applications: another business system's is a 404, as is an unknown one. File "
    "links are good for five minutes; read the application again for fresh ones.",
    tags=["intake"],
    security=[{openapi.BEARER: []}],
    responses={
        200: openapi.answer("the application", openapi.OrderDetailAnswer, examples=openapi.READ_ANSWERS[200]),
        401: _UNAUTHORIZED,
        404: openapi.answer(
            "no such application for this business system", openapi.Envelope, examples=openapi.READ_ANSWERS[404]
        ),
        503: openapi.answer(
            "temporarily unavailable; try again",
            openapi.Envelope,
            {"Retry-After": "seconds to wait"},
            openapi.READ_ANSWERS[503],
        ),
    },
)
def read(
    openApplyCode: Annotated[
        str,
        Path(description="the openApplyCode it was submitted with", openapi_examples=openapi.READ_EXAMPLES),
    ],
    historyLimit: Annotated[str | None, Query(description=openapi.HISTORY_LIMIT_DOC)] = None,
    historyCursor: Annotated[str | None, Query(description=openapi.HISTORY_CURSOR_DOC)] = None,
    historyOrder: Annotated[str | None, Query(description=openapi.HISTORY_ORDER_DOC)] = None,
) -> Response[Any]:
    # The history parameters above document the query; history_page reads them from the event.
    system_id = _caller()
    open_apply_code = openApplyCode
    logkeys.set_application(system_id, open_apply_code)
    stored = runtime.intake().get(system_id, open_apply_code)
    if stored is None:  # also for another system's application: no existence is revealed
        metrics.add_metric(name="OrdersNotFound", unit=MetricUnit.Count, value=1)
        return envelope(HTTPStatus.NOT_FOUND, f"no invoice order {open_apply_code!r}")
    logkeys.name_request(stored.sent_request_number)
    metrics.add_metric(name="OrdersRead", unit=MetricUnit.Count, value=1)
    data = {
        **_summary(stored),
        "version": stored.version,
        "channel": stored.channel,
        # The number every channel portal keys on (sent on every attempt).
        "requestNumber": stored.sent_request_number,
        "createdAt": stored.created_at,
        "updatedAt": stored.updated_at,
        "reason": stored.reason,
        **history_page(stored, audit.entry, app.current_event.query_string_parameters),
        "invoices": [_invoice(i) for i in runtime.intake().invoices(stored)],
        "findings": [_finding(f) for f in stored.findings],
        "invoiceOrder": seed004.from_application(stored.application)[seed004.ROOT],
    }
    return envelope(HTTPStatus.OK, "ok", data)
