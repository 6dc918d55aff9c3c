"""Callback HTTP API: ``POST /v1/callbacks/{channel}``, where channels push results.

Public (no bearer token): each channel authenticates with its own credentials (callback_auth).
Adapter only; CallbackReceiver in workflow does the work.
"""

from __future__ import annotations

import base64
import binascii

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit

from fapiao_hub import jsonutil, runtime

logger = Logger(child=True)
metrics = Metrics()
app = APIGatewayHttpResolver()

# A pushed result is small; a body this size is not one (and is refused before it is archived).
MAX_CALLBACK_BYTES = 2 * 1024 * 1024


def _answer(status: int, body: dict) -> Response:
    metrics.add_metric(name=f"Callback{status}", unit=MetricUnit.Count, value=1)
    return Response(status, "application/json", jsonutil.dumps(body))


@app.post("/v1/callbacks/<channel>")
def receive(channel: str) -> Response:
    event = app.current_event
    try:
        raw = (
            base64.b64decode(event.body or "", validate=True)
            if event.is_base64_encoded
            else (event.body or "").encode()
        )
    except (binascii.Error, UnicodeEncodeError):
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
