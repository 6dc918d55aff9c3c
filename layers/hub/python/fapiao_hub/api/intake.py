"""Intake HTTP API: submit invoice applications (seed 004 shape), one or a batch, and read them back.

Adapter only: authentication, body parsing, and turning the intake use case's answers into status
codes in seed 004's envelope (``api.http``). Business rules live in ``domain.rules`` and
``api.seed004``; the use case in ``usecases.intake``; a batch's work in ``api.batch``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from fapiao_hub import runtime
from fapiao_hub.api import batch, examples, http, presenters, schemas, seed004
from fapiao_hub.api.http import Refusal, envelope
from fapiao_hub.domain import jsonutil, logkeys
from fapiao_hub.domain.models import Application
from fapiao_hub.infra import history as audit
from fapiao_hub.infra.queues import QueueUnavailable
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


http.register_answers(app, http.BUSINESS_REFUSALS)
app.exception_handler(QueueUnavailable)(http.queue_down)


def _caller() -> str:
    """The business system behind the bearer token, or a 401."""
    return http.bearer(
        app.current_event, runtime.authenticate_business_system, "fapiao-hub", "missing or invalid bearer token"
    )


def _json_body() -> Any:
    event = app.current_event
    http.require_json(event)
    body = http.raw_body(event)
    if body is None:
        raise Refusal(HTTPStatus.BAD_REQUEST, "body could not be decoded")
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
    if submitted.created and submitted.stored.submission > 1:
        message = "order received again with corrected content"
    return envelope(HTTPStatus.OK, message, presenters.summary(submitted.stored))


def answer_order(system_id: str, body: Any, intake: Intake) -> Response[Any]:
    """What a single POST of ``body`` answers, a refusal or an outage included (a batch item's answer)."""
    try:
        return _submit_order(system_id, body, intake)
    except Refusal as refusal:
        return http.refused(refusal, http.BUSINESS_REFUSALS)
    except _Misconfigured as error:
        return _misconfigured(error)
    except (ClientError, BotoCoreError) as error:
        return http.aws_down(error)


def submit_batch() -> Response[Any]:
    return batch.submit(_caller(), _json_body(), answer_order)


# OpenAPI (fapiao_hub.api.openapi): what the routes take and answer. Documentation only: the body is
# checked by submit() itself, after authentication.
_UNAUTHORIZED = schemas.answer(
    "missing or invalid bearer token",
    schemas.Envelope,
    {"WWW-Authenticate": 'Bearer realm="fapiao-hub"'},
    examples.ORDER_ANSWERS[401],
)
_ANSWERS = examples.ORDER_ANSWERS
_SUBMIT_DOCS: dict[str, Any] = {
    "tags": ["intake"],
    "description": "Validates the order against the shape and the tax rules (every problem is reported by the "
    "caller's JSON path), stores it once per openApplyCode and queues it for dispatch to the channel of its "
    "company (bukrs). The same body again answers the same (nothing is stored twice; key order and white space "
    "do not matter); other content under the same openApplyCode is a 409. Follow the application with GET "
    "/v1/invoice-orders/{openApplyCode} or the outcome webhook.",
    "security": [{schemas.BEARER: []}],
    "openapi_extensions": schemas.request_body(
        'the invoice application in the FAW tax platform\'s shape, {"invoiceOrder": {...}}; fields not described '
        "are carried through and returned, and codes may be sent as numbers too",
        seed004.Seed004Request,
        examples.ORDER_EXAMPLES,
    ),
    "responses": {
        200: schemas.answer(
            "received (message: 'order received' or 'order already received'); data.warnings lists what was "
            "accepted but is worth a look",
            schemas.OrderAcceptedAnswer,
            examples=_ANSWERS[200],
        ),
        400: schemas.answer(
            "invalid invoice order (data.errors: every problem, by JSON path), or an unreadable body (data null)",
            schemas.OrderRefusedAnswer,
            examples=_ANSWERS[400],
        ),
        401: _UNAUTHORIZED,
        409: schemas.answer(
            "the openApplyCode was already received with different content and may not be replaced now (only a "
            "REJECTED application may be sent again with corrected content): the message says why and what to do "
            "instead, data.status where it stands",
            schemas.OrderConflictAnswer,
            examples=_ANSWERS[409],
        ),
        413: schemas.answer(
            "the body is over the size limit (6 MiB unless configured)", schemas.Envelope, examples=_ANSWERS[413]
        ),
        415: schemas.answer("Content-Type is not application/json", schemas.Envelope, examples=_ANSWERS[415]),
        503: schemas.answer(
            "stored but not yet queued, or a moment's outage: send the same request again",
            schemas.Envelope,
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

# POST /v1/invoice-orders/batch: each item answered as its single POST (answer_order); the batch's work
# and its documentation are api.batch's.
app.post(
    batch.BATCH_PATH,
    operation_id="submitInvoiceOrderBatch",
    summary=f"Submit up to {batch.MAX_ITEMS} invoice applications at once",
    **batch.route_docs(_SUBMIT_DOCS["responses"]),
)(submit_batch)


@app.get(
    "/v1/invoice-orders/<openApplyCode>",
    operation_id="readInvoiceOrder",
    summary="Read an invoice application: status, history, invoices and their files",
    description="Only your own applications: another business system's is a 404, as is an unknown one. File "
    "links are good for five minutes; read the application again for fresh ones.",
    tags=["intake"],
    security=[{schemas.BEARER: []}],
    responses={
        200: schemas.answer("the application", schemas.OrderDetailAnswer, examples=examples.READ_ANSWERS[200]),
        401: _UNAUTHORIZED,
        404: schemas.answer(
            "no such application for this business system", schemas.Envelope, examples=examples.READ_ANSWERS[404]
        ),
        503: schemas.answer(
            "temporarily unavailable; try again",
            schemas.Envelope,
            {"Retry-After": "seconds to wait"},
            examples.READ_ANSWERS[503],
        ),
    },
)
def read(
    openApplyCode: Annotated[
        str,
        Path(description="the openApplyCode it was submitted with", openapi_examples=examples.READ_EXAMPLES),
    ],
    historyLimit: Annotated[str | None, Query(description=schemas.HISTORY_LIMIT_DOC)] = None,
    historyCursor: Annotated[str | None, Query(description=schemas.HISTORY_CURSOR_DOC)] = None,
    historyOrder: Annotated[str | None, Query(description=schemas.HISTORY_ORDER_DOC)] = None,
) -> Response[Any]:
    # The history parameters above document the query; presenters.history_page reads them from the event.
    system_id = _caller()
    open_apply_code = openApplyCode
    logkeys.set_application(system_id, open_apply_code)
    stored = runtime.intake().get(system_id, open_apply_code)
    if stored is None:  # also for another system's application: no existence is revealed
        metrics.add_metric(name="OrdersNotFound", unit=MetricUnit.Count, value=1)
        return envelope(HTTPStatus.NOT_FOUND, f"no invoice order {open_apply_code!r}")
    logkeys.name_request(stored.sent_request_number)
    metrics.add_metric(name="OrdersRead", unit=MetricUnit.Count, value=1)
    history = presenters.history_page(stored, audit.entry, app.current_event.query_string_parameters)
    invoices = runtime.intake().invoices(stored)
    return envelope(HTTPStatus.OK, "ok", {**presenters.summary(stored), **presenters.record(stored, history, invoices)})
