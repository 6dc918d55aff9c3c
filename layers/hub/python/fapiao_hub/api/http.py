"""What every enveloped route shares (the intake's and the operations desk's): seed 004's answer envelope
``{success, code, message, data}``, refusals, bearer authentication, the JSON content-type check, the
request's raw bytes, and the answers to an outage or an unknown route (:func:`register_answers`).

The callback route answers channels in their own shape (``api.callbacks``): of this module it uses
only :func:`raw_body`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from fapiao_hub.domain import jsonutil

if TYPE_CHECKING:  # annotations only: the callback function's cold start loads no queue module
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

    from fapiao_hub.infra.queues import QueueUnavailable

logger = Logger(child=True)
metrics = Metrics()

# Refusals are counted per API and status: Refused400 for a business system's, OpsRefused401 for an operator's.
BUSINESS_REFUSALS = "Refused"
OPERATOR_REFUSALS = "OpsRefused"


def envelope(status: int, message: str, data: Any = None, headers: dict[str, str] | None = None) -> Response:
    """Seed 004's answer shape, for every answer of the intake and ops APIs."""
    body = {"success": 200 <= status < 300, "code": status, "message": message, "data": data}
    return Response(status, "application/json", jsonutil.dumps(body), headers=headers)


class Refusal(Exception):
    """A request refused before a use case is involved: raised anywhere in a route, answered as it says."""

    def __init__(self, status: int, message: str, data: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.response = envelope(status, message, data, headers)


def refused(refusal: Refusal, metric: str) -> Response:
    """The refusal's answer, counted as ``{metric}{status}``."""
    metrics.add_metric(name=f"{metric}{refusal.response.status_code}", unit=MetricUnit.Count, value=1)
    return refusal.response


def aws_down(_: Exception) -> Response:
    logger.exception("AWS call failed")
    return envelope(HTTPStatus.SERVICE_UNAVAILABLE, "temporarily unavailable; try again", headers={"Retry-After": "5"})


def queue_down(_: QueueUnavailable) -> Response:
    logger.warning("dispatch queue unavailable; application stays RECEIVED")
    return envelope(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "the application was stored but could not be queued for dispatch; send the same request again",
        headers={"Retry-After": "5"},
    )


def _no_route(_: Exception) -> Response:
    return envelope(HTTPStatus.NOT_FOUND, "no such route")


def register_answers(app: APIGatewayHttpResolver, refused_metric: str) -> None:
    """Registers on ``app`` the answers its routes share: a Refusal as it says (see :func:`refused`), an
    AWS error as a 503 to retry, an unknown route as a 404."""
    app.exception_handler(Refusal)(lambda refusal: refused(refusal, refused_metric))
    app.exception_handler([ClientError, BotoCoreError])(aws_down)
    app.not_found(_no_route)


def bearer[T](event: APIGatewayProxyEventV2, authenticate: Callable[[str], T | None], realm: str, message: str) -> T:
    """Whoever ``authenticate`` finds behind the request's bearer token, or a 401 (``message``, with a
    WWW-Authenticate challenge for ``realm``)."""
    header = event.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    found = authenticate(token) if scheme.lower() == "bearer" and token else None
    if found is None:
        raise Refusal(HTTPStatus.UNAUTHORIZED, message, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})
    return found


def require_json(event: APIGatewayProxyEventV2) -> None:
    """A 415 unless the body is declared application/json (parameters such as charset aside)."""
    content_type = (event.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Refusal(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")


def raw_body(event: APIGatewayProxyEventV2) -> bytes | None:
    """The request's bytes (API Gateway sends a binary body base64-encoded), or None when they cannot be
    decoded."""
    raw = event.body or ""
    try:
        return base64.b64decode(raw, validate=True) if event.is_base64_encoded else raw.encode("utf-8")
    except (binascii.Error, UnicodeEncodeError):
        return None
