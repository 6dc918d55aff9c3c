"""Callback HTTP API: ``POST /v1/callbacks/{channel}``, where channels push results.

Public (no bearer token): each channel authenticates with its own credentials (callback_auth).
Adapter only; CallbackReceiver (usecases/callbacks.py) does the work.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.metrics import MetricUnit

from fapiao_hub import runtime
from fapiao_hub.api import callback_schemas, schemas
from fapiao_hub.api.examples import example
from fapiao_hub.api.http import raw_body
from fapiao_hub.domain import jsonutil

logger = Logger(child=True)
metrics = Metrics()
app = APIGatewayHttpResolver()

# A pushed result is small; a body this size is not one (and is refused before it is archived).
MAX_CALLBACK_BYTES = 2 * 1024 * 1024


# Channels are answered in their own shape {value, message}, not in api.http's envelope.
def _answer(status: int, body: dict) -> Response:
    metrics.add_metric(name=f"Callback{status}", unit=MetricUnit.Count, value=1)
    return Response(status, "application/json", jsonutil.dumps(body))


@app.post(
    "/v1/callbacks/<channel>",
    operation_id="receiveCallback",
    summary="A channel pushes results (issued, rejected, voided invoices)",
    description="Where a channel pushes its invoicing results: Ekuaibao (易快报) in its own result-push shape "
    "(its API's POST /api/openapi/v2/invoicing). Authenticated per channel (accessToken, and an HMAC signature "
    "where the channel has a secret); the raw body is archived before it is read. serialNo is the request "
    "number the hub sent; an unknown one is kept as an unmatched result and answered 404.",
    tags=["callbacks"],
    security=[{schemas.CALLBACK_TOKEN: []}],
    openapi_extensions=schemas.request_body(
        "the channel's push: Ekuaibao's result push", callback_schemas.EkuaibaoPush, callback_schemas.PUSH_EXAMPLES
    ),
    responses={
        200: schemas.answer("taken", callback_schemas.CallbackAnswer, examples=callback_schemas.PUSH_ANSWERS[200]),
        400: schemas.answer(
            "the body could not be decoded or read: the message names the JSON path",
            callback_schemas.CallbackAnswer,
            examples=callback_schemas.PUSH_ANSWERS[400],
        ),
        401: schemas.answer(
            "bad or missing credentials; nothing is stored",
            callback_schemas.CallbackAnswer,
            examples=callback_schemas.PUSH_ANSWERS[401],
        ),
        404: schemas.answer(
            "no such channel, or no application for a pushed request number (kept as unmatched)",
            callback_schemas.CallbackAnswer,
            examples=callback_schemas.PUSH_ANSWERS[404],
        ),
        413: schemas.answer(
            f"the body is over {MAX_CALLBACK_BYTES} bytes",
            callback_schemas.CallbackAnswer,
            examples=callback_schemas.PUSH_ANSWERS[413],
        ),
    },
)
def receive(
    channel: Annotated[
        str,
        Path(
            description="the channel's name in the hub configuration",
            openapi_examples={"ekuaibao": example("the Ekuaibao channel", "ekuaibao")},
        ),
    ],
) -> Response[Any]:
    event = app.current_event
    raw = raw_body(event)
    if raw is None:
        return _answer(400, {"value": False, "message": "body could not be decoded"})
    if len(raw) > MAX_CALLBACK_BYTES:
        return _answer(413, {"value": False, "message": f"body over {MAX_CALLBACK_BYTES} bytes"})
    answer = runtime.callback_receiver().receive(
        channel,
        query=dict(event.query_string_parameters or {}),
        headers=dict(event.headers or {}),
        raw_body=raw,
    )
    return _answer(answer.status, answer.body)


@app.not_found
def _no_route(_: Exception) -> Response:
    return _answer(404, {"value": False, "message": "no such route"})
