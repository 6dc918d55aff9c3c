"""POST /v1/invoice-orders/batch: up to 100 invoice orders in one call (docs/intake.md, Batches).

Each item goes through exactly what a single POST /v1/invoice-orders does (``api.intake.answer_order``,
which the batch route in ``api.intake`` hands to :func:`submit`) and gets that call's answer, in order,
with its field paths under ``invoiceOrders[i]``. The batch is never all or nothing. What a batch
saves is the dispatch queue's calls: the items' dispatch requests are collected and sent ten per
SendMessageBatch once every item is stored; an item whose request SQS did not take answers the single
POST's 503 (stored, send it again). Each item is still its own conditional put: conditional writes
cannot share a BatchWriteItem.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.metrics import MetricUnit

from fapiao_hub import runtime
from fapiao_hub.api import examples, schemas, seed004
from fapiao_hub.api.http import BUSINESS_REFUSALS, Refusal, envelope, queue_down, refused
from fapiao_hub.domain import jsonutil, logkeys
from fapiao_hub.infra.queues import DeferredDispatchQueue, QueueUnavailable
from fapiao_hub.usecases.intake import Intake

metrics = Metrics()

BATCH_PATH = "/v1/invoice-orders/batch"
ITEMS = "invoiceOrders"
MAX_ITEMS = 100


def _envelope_refusal(message: str) -> Refusal:
    return Refusal(
        HTTPStatus.BAD_REQUEST,
        f"invalid batch: {message}",
        {"errors": [seed004.FieldError(ITEMS, message).as_dict()]},
    )


def _items(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        raise _envelope_refusal(f'the body must be an object {{"{ITEMS}": [...]}}')
    items = body.get(ITEMS)
    if not isinstance(items, list):
        found = "missing" if ITEMS not in body else f"got {type(items).__name__}"
        raise _envelope_refusal(f"must be a list of 1 to {MAX_ITEMS} invoice orders; {found}")
    if not 1 <= len(items) <= MAX_ITEMS:
        raise _envelope_refusal(f"must hold 1 to {MAX_ITEMS} invoice orders, got {len(items)}")
    return items


def _code(item: Any) -> str | None:
    """The item's openApplyCode as the single POST reads it (numbers are taken as their text)."""
    order = item.get(seed004.ROOT) if isinstance(item, dict) else None
    code = order.get("openApplyCode") if isinstance(order, dict) else None
    if isinstance(code, bool) or code is None:
        return None
    return code if isinstance(code, str) else str(code)


def _repeated(codes: list[str | None]) -> set[str]:
    counts = Counter(code for code in codes if code)
    return {code for code, count in counts.items() if count > 1}


def _answer_of(response: Any) -> dict[str, Any]:
    """A single POST's answer envelope, as a batch item."""
    return jsonutil.loads(response.body)


def _within(index: int, answer: dict[str, Any]) -> dict[str, Any]:
    """The item's field paths under invoiceOrders[index] (the caller's JSON path in the batch)."""
    data = answer.get("data")
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        errors = [{**error, "field": f"{ITEMS}[{index}].{error['field']}"} for error in data["errors"]]
        answer = {**answer, "data": {**data, "errors": errors}}
    return answer


def _repeated_refusal(code: str, codes: list[str | None]) -> Refusal:
    where = ", ".join(str(i) for i, c in enumerate(codes) if c == code)
    problem = seed004.FieldError(
        f"{seed004.ROOT}.openApplyCode",
        f"openApplyCode {code!r} appears more than once in this batch (items {where}): send each application once",
    )
    return Refusal(HTTPStatus.BAD_REQUEST, "invalid invoice order: 1 problem", {"errors": [problem.as_dict()]})


def submit(system_id: str, body: Any, answer_order: Callable[[str, Any, Intake], Response[Any]]) -> Response[Any]:
    """The batch ``body`` of ``system_id``, each item answered by ``answer_order`` (the single POST's answer)."""
    items = _items(body)
    codes = [_code(item) for item in items]
    repeated = _repeated(codes)
    queue = DeferredDispatchQueue(runtime.dispatch_queue())
    intake = Intake(runtime.application_store(), queue)
    answers: list[dict[str, Any]] = []
    requested: list[slice] = []  # which of the collected dispatch requests each item made
    for item, code in zip(items, codes, strict=True):
        before = len(queue.pending)
        if code in repeated:
            # Which of them is meant cannot be known: none is stored (the rest of the batch is).
            answer = _answer_of(refused(_repeated_refusal(code, codes), BUSINESS_REFUSALS))
        else:
            answer = _answer_of(answer_order(system_id, item, intake))
        answers.append(answer)
        requested.append(slice(before, len(queue.pending)))
    logkeys.clear_application()
    pending = list(queue.pending)
    not_queued = queue.send()
    if not_queued:
        down = _answer_of(queue_down(QueueUnavailable(f"{len(not_queued)} dispatch requests refused")))
        for index, made in enumerate(requested):
            if any((r.source_system, r.open_apply_code) in not_queued for r in pending[made]):
                answers[index] = down
    shown = [{"index": i, "openApplyCode": codes[i], **_within(i, a)} for i, a in enumerate(answers)]
    accepted = sum(1 for a in answers if a["code"] == HTTPStatus.OK)
    metrics.add_metric(name="BatchesReceived", unit=MetricUnit.Count, value=1)
    return envelope(
        HTTPStatus.OK,
        f"batch of {len(items)}: {accepted} accepted, {len(items) - accepted} refused",
        {"accepted": accepted, "refused": len(items) - accepted, ITEMS: shown},
    )


# OpenAPI: documentation only (the route authenticates, then submit checks the body itself).
def route_docs(single: dict[int, Any]) -> dict[str, Any]:
    """The batch route's documentation; ``single``: the single POST's answers, whose 401, 413 and 415 it shares."""
    return {
        "tags": ["intake"],
        "description": f"1 to {MAX_ITEMS} invoice orders in one call. Each item is exactly a POST /v1/invoice-orders "
        "of that item: it is validated, stored once per openApplyCode and queued on its own, and its answer (the same "
        "success/code/message/data) comes back in data.invoiceOrders in the order sent, with field paths under "
        "invoiceOrders[i]. The batch is never all or nothing: the answer is 200 whenever the batch itself could be "
        "read, and data.accepted / data.refused count the items. An openApplyCode that appears twice in one batch "
        "is a 400 for each of those items. Items answered 503 were stored but not queued (or hit an outage): send "
        "them again, alone or in a batch; the resend of an accepted item answers 'order already received'.",
        "security": [{schemas.BEARER: []}],
        "openapi_extensions": schemas.request_body(
            f'{{"invoiceOrders": [...]}}: 1 to {MAX_ITEMS} bodies of POST /v1/invoice-orders',
            schemas.BatchRequest,
            examples.BATCH_EXAMPLES,
        ),
        "responses": {
            200: schemas.answer(
                "every item's answer, in order, with the counts",
                schemas.BatchAnswer,
                examples=examples.BATCH_ANSWERS[200],
            ),
            400: schemas.answer(
                f"the batch itself is unreadable: not an object, no invoiceOrders list, 0 or more than {MAX_ITEMS} "
                "items (nothing is stored); or an unreadable body (data null)",
                schemas.OrderRefusedAnswer,
                examples=examples.BATCH_ANSWERS[400],
            ),
            401: single[401],
            413: single[413],
            415: single[415],
        },
    }
