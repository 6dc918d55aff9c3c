"""The operations desk's HTTP API: find, understand and act on applications (operator tokens only).

Adapter only, like api/intake.py: who is asking (an operator of the hub configuration, its role and
reach), the query parameters, the intake's envelope ``{success, code, message, data}`` (``api.http``).
Lists and counts come from the store's indexes; actions from the operations use case
(usecases/operations.py).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
from datetime import date, timedelta
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.metrics import MetricUnit

from fapiao_hub import runtime
from fapiao_hub.api import http, ops_schemas, presenters, schemas
from fapiao_hub.api.http import Refusal, envelope
from fapiao_hub.domain import jsonutil, logkeys
from fapiao_hub.domain.config import Operator
from fapiao_hub.domain.models import NEEDS_PERSON_STATUSES, OPEN_STATUSES, Status, request_number_for
from fapiao_hub.domain.spreadsheet import csv_safe
from fapiao_hub.infra import history as audit
from fapiao_hub.infra.store.base import utc_now
from fapiao_hub.infra.store.errors import InvalidCursor
from fapiao_hub.infra.store.listing import ListQuery, Reach
from fapiao_hub.infra.store.records import StoredApplication

logger = Logger(child=True)
metrics = Metrics()
app = APIGatewayHttpResolver()

DEFAULT_PAGE = 50
MAX_PAGE = 500
# A list row: the JSON names, in the CSV's column order.
ROW_FIELDS = (
    "businessSystem", "openApplyCode", "status", "companyCode", "sellerTaxNumber", "buyerName", "channel",
    "requestNumber", "invoiceType", "direction", "amount", "tax", "receivedAt", "updatedAt", "openFindings", "reason",
)  # fmt: skip
_ROW_SOURCES = {
    "businessSystem": "source_system", "openApplyCode": "open_apply_code", "status": "status",
    "companyCode": "company_code", "sellerTaxNumber": "seller_tax_number", "buyerName": "buyer_name",
    "channel": "channel", "requestNumber": "request_number", "invoiceType": "invoice_type",
    "direction": "direction", "receivedAt": "created_at", "updatedAt": "updated_at", "reason": "reason",
}  # fmt: skip


http.register_answers(app, http.OPERATOR_REFUSALS)


def _operator() -> tuple[str, Operator]:
    """The operator behind the bearer token, or a 401 (a business system's token is not one)."""
    found = http.bearer(
        app.current_event, runtime.authenticate_operator, "fapiao-hub-ops", "missing or invalid operator token"
    )
    logger.append_keys(operator=found[0])
    return found


def _missing(business_system: str, open_apply_code: str) -> Refusal:
    """The answer for an application that does not exist, and for one outside the operator's reach."""
    return Refusal(HTTPStatus.NOT_FOUND, f"no application {open_apply_code!r} of {business_system!r}")


def _within_reach(operator: Operator, stored: StoredApplication | None, business_system: str, code: str) -> None:
    """An application outside the operator's business systems or sellers is answered as one that does not
    exist (404, the same message): an operator learns nothing of what it may not see, not even that it is."""
    if operator.business_systems is not None and business_system not in operator.business_systems:
        raise _missing(business_system, code)
    if stored is None:
        return
    if not operator.may_see(business_system, stored.application.seller.tax_number):
        raise _missing(business_system, code)


def _reachable(operator: Operator, business_system: str, code: str) -> StoredApplication:
    """The application, or the 404 of one that does not exist or is outside the operator's reach."""
    logkeys.set_application(business_system, code)
    stored = runtime.intake().get(business_system, code)
    if stored is None:
        raise _missing(business_system, code)
    _within_reach(operator, stored, business_system, code)
    return stored


def reach(operator: Operator) -> Reach:
    return Reach(operator.business_systems, operator.sellers)


# ------------------------------------------------------------------ GET /v1/ops/summary
def _dead_letter_depths() -> dict[str, int | None]:
    # {"<logical id>": "<queue URL>"} from the template. Read per request, not through the cached
    # Settings: the local run's functions share one process and one Settings (the first function's).
    queues = jsonutil.loads(os.environ.get("DEAD_LETTER_QUEUES") or "{}")
    if not queues:
        return {}
    sqs = runtime.sqs_client()
    depths: dict[str, int | None] = {}
    for name, url in sorted(queues.items()):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        depths[name] = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
    return depths


@app.get(
    "/v1/ops/summary",
    operation_id="opsSummary",
    summary="Counts per status, open findings and dead-letter queue depths",
    description="Open and needs-a-person statuses as they are now; final statuses reached in the last 24 hours. "
    "An operator limited to some business systems or sellers gets the counts of those only (dead-letter queue "
    "depths are the hub's).",
    tags=["operations"],
    security=[{schemas.BEARER: []}],
    responses={
        200: schemas.answer("the counts", ops_schemas.OpsSummaryAnswer),
        401: ops_schemas.UNAUTHORIZED,
        503: ops_schemas.UNAVAILABLE,
    },
)
def summary() -> Response[Any]:
    _, operator = _operator()
    scope = reach(operator)
    scope = None if scope.whole_hub else scope
    store = runtime.application_store()
    statuses = {s.value: store.count_status(s, scope) for s in sorted(OPEN_STATUSES | NEEDS_PERSON_STATUSES)}
    for status, count in store.settled_since(utc_now() - timedelta(hours=24), scope).items():
        if status not in statuses:
            statuses[status] = count
    data = {
        "statuses": statuses,
        "needsPerson": {s.value: statuses.get(s.value, 0) for s in sorted(NEEDS_PERSON_STATUSES)},
        "openFindings": store.count_open_findings(scope),
        "deadLetterQueues": _dead_letter_depths(),
    }
    return envelope(HTTPStatus.OK, "ok", data)


# ------------------------------------------------------------------ GET /v1/ops/applications
def _day(name: str, value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"{name}: expected a date yyyy-mm-dd (China time)") from None


def _list_query(operator: Operator) -> tuple[ListQuery, int, str | None]:
    params = app.current_event.query_string_parameters or {}
    status = params.get("status") or None
    if status is not None and status not in Status.__members__:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"status: unknown status {status!r}")
    raw_limit = params.get("limit") or str(DEFAULT_PAGE)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"limit: a whole number from 1 to {MAX_PAGE}")
    query = ListQuery(
        status=status,
        business_system=params.get("businessSystem") or None,
        seller=params.get("seller") or None,
        channel=params.get("channel") or None,
        received_from=_day("receivedFrom", params.get("receivedFrom")),
        received_to=_day("receivedTo", params.get("receivedTo")),
        business_systems=operator.business_systems,
        sellers=operator.sellers,
        with_findings=_open_findings_only(params),
    )
    if query.received_from and query.received_to and query.received_from > query.received_to:
        raise Refusal(HTTPStatus.BAD_REQUEST, "receivedFrom: after receivedTo")
    return query, int(raw_limit), params.get("cursor") or None


def _open_findings_only(params: dict[str, str]) -> bool:
    value = (params.get("openFindings") or "").lower()
    if value not in ("", "true", "false"):
        raise Refusal(HTTPStatus.BAD_REQUEST, f"openFindings: expected true or false, not {value!r}")
    return value == "true"


def row(item: dict[str, Any]) -> dict[str, Any]:
    """A list row from a listing index's projection (store.LISTED_ATTRIBUTES)."""
    shown: dict[str, Any] = {name: item.get(source) for name, source in _ROW_SOURCES.items()}
    shown["requestNumber"] = shown["requestNumber"] or request_number_for(item["pk"])
    shown["amount"] = str(item["amount"]) if item.get("amount") is not None else None
    shown["tax"] = str(item["tax"]) if item.get("tax") is not None else None
    shown["openFindings"] = sum(1 for f in item.get("findings", ()) if f.get("open", True))
    return {name: shown[name] for name in ROW_FIELDS}


def rows_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV, a header row first (the same columns as the JSON)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(ROW_FIELDS)
    for shown in rows:
        writer.writerow(["" if shown[name] is None else csv_safe(str(shown[name])) for name in ROW_FIELDS])
    return out.getvalue()


@app.get(
    "/v1/ops/applications",
    operation_id="opsListApplications",
    summary="List applications, newest received first (JSON, or CSV with Accept: text/csv)",
    description="Filters: status, businessSystem, seller (tax number), channel, receivedFrom / receivedTo (China "
    "days, both included), openFindings=true (only applications with an open finding). Pages of `limit` (1-500, "
    "default 50); pass `nextCursor` back as `cursor` for the next page (a page may hold fewer rows while there is a "
    "next one: where filters drop many, a page reads a bounded number). An operator limited to some business "
    "systems or sellers lists only those. With Accept: text/csv the same page comes as CSV and the next cursor in "
    "the X-Next-Cursor header.",
    tags=["operations"],
    security=[{schemas.BEARER: []}],
    responses={
        200: {
            "description": "one page (JSON; with Accept: text/csv the same rows as CSV, the next cursor in "
            "X-Next-Cursor)",
            "content": {
                "application/json": {"model": ops_schemas.OpsPageAnswer},
                "text/csv": {"schema": {"type": "string", "description": "a header row, then one row each"}},
            },
            "headers": {
                "X-Next-Cursor": {"description": "CSV only: the next page's cursor", "schema": {"type": "string"}}
            },
        },
        400: schemas.answer("a parameter out of range, named first in the message", schemas.Envelope),
        401: ops_schemas.UNAUTHORIZED,
        503: ops_schemas.UNAVAILABLE,
    },
)
def list_applications(
    status: Annotated[str | None, Query(description="a Status value")] = None,
    businessSystem: Annotated[str | None, Query(description="a business system's name")] = None,
    seller: Annotated[str | None, Query(description="the seller's tax number")] = None,
    channel: Annotated[str | None, Query(description="a channel's name")] = None,
    receivedFrom: Annotated[str | None, Query(description="yyyy-mm-dd, China time, included")] = None,
    receivedTo: Annotated[str | None, Query(description="yyyy-mm-dd, China time, included")] = None,
    openFindings: Annotated[str | None, Query(description="true: only applications with an open finding")] = None,
    limit: Annotated[str | None, Query(description=f"1-{MAX_PAGE}, default {DEFAULT_PAGE}")] = None,
    cursor: Annotated[str | None, Query(description="the previous page's nextCursor")] = None,
) -> Response[Any]:
    # The parameters above document the query; they are read from the event (this resolver has no validation).
    _, operator = _operator()
    query, limit, cursor = _list_query(operator)
    try:
        items, next_cursor = runtime.application_store().list_page(query, limit, cursor)
    except InvalidCursor as error:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"cursor: {error}") from None
    rows = [row(item) for item in items]
    if query.with_findings:  # the index filter keeps those with any finding; only open ones are asked for
        rows = [shown for shown in rows if shown["openFindings"]]
    metrics.add_metric(name="OpsListed", unit=MetricUnit.Count, value=1)
    accept = (app.current_event.headers.get("accept") or "").lower()
    if "text/csv" in accept:
        headers = {"X-Next-Cursor": next_cursor} if next_cursor else {}
        return Response(HTTPStatus.OK, "text/csv; charset=utf-8", rows_csv(rows), headers=headers)
    return envelope(HTTPStatus.OK, "ok", {"items": rows, "nextCursor": next_cursor})


# ------------------------------------------------------------------ GET .../{businessSystem}/{openApplyCode}
def _available_actions(stored: StoredApplication) -> list[str]:
    use_case = _use_case()
    return list(use_case.available_actions(stored)) if use_case is not None else []


def _use_case() -> Any:
    """The operations use case (operations.py), or None in a build that has none yet."""
    try:
        return runtime.operations()
    except ImportError:  # the use case ships with the "act" half of the desk
        return None


def _related(stored: StoredApplication, operator: Operator | None) -> list[dict[str, str]]:
    """The other applications its findings concern (an invoice clash's holder), as links, where the
    operator may see them (else counted as outside its reach, never named)."""
    shown: list[dict[str, str]] = []
    for key in dict.fromkeys(k for f in stored.findings for k in f.related):
        system, _, code = key.partition("#")
        other = runtime.intake().get(system, code)
        if other is not None and (operator is None or operator.may_see(system, other.application.seller.tax_number)):
            shown.append({"businessSystem": system, "openApplyCode": code, "status": other.status.value})
        else:
            shown.append({"outsideReach": "another application outside this operator's reach"})
    return shown


def detail(stored: StoredApplication, operator: Operator | None = None) -> dict[str, Any]:
    """Everything the business system's GET shows, and what an operator needs besides."""
    intake = runtime.intake()
    invoices = intake.invoices(stored)
    raw_keys = _raw_keys(stored, invoices)
    return {
        "businessSystem": stored.application.source_system,
        "openApplyCode": stored.application.open_apply_code,
        "status": stored.status.value,
        "needsPerson": stored.needs_person,
        "warnings": list(stored.warnings),
        # Every record, paged (historyLimit, historyCursor, historyOrder): who, why, before and after.
        **presenters.record(
            stored, presenters.history_page(stored, audit.full, app.current_event.query_string_parameters), invoices
        ),
        "attempts": stored.attempts,
        "leaseUntil": stored.lease_until,
        "nextPollAt": stored.next_poll_at,
        "rawKeys": raw_keys,
        "relatedApplications": _related(stored, operator),
        "actions": _available_actions(stored),
    }


def _raw_keys(stored: StoredApplication, invoices: list[dict[str, Any]]) -> list[str]:
    """The archived raw documents this application owns: the answers kept of each attempt under its request
    number (the last one is also named on the application), the pushed bodies of its results."""
    raw_keys: list[str] = []
    if stored.channel:
        request_number = stored.sent_request_number
        raw_keys += runtime.file_store().raw_answer_refs(stored.channel, request_number)
    if stored.raw_answer and stored.raw_answer not in raw_keys:
        raw_keys.append(stored.raw_answer)
    raw_keys += [i["raw"] for i in invoices if i.get("raw") and i["raw"] not in raw_keys]
    return raw_keys


_SYSTEM = Annotated[str, Path(description="the business system that submitted it")]
_CODE = Annotated[str, Path(description="its openApplyCode")]


@app.get(
    "/v1/ops/applications/<businessSystem>/<openApplyCode>",
    operation_id="opsReadApplication",
    summary="One application: what its business system sees, plus channel, attempts, lease, raw keys, actions",
    tags=["operations"],
    security=[{schemas.BEARER: []}],
    responses={
        200: schemas.answer("the application", ops_schemas.OpsDetailAnswer),
        401: ops_schemas.UNAUTHORIZED,
        404: ops_schemas.MISSING,
        503: ops_schemas.UNAVAILABLE,
    },
)
def read(
    businessSystem: _SYSTEM,
    openApplyCode: _CODE,
    historyLimit: Annotated[str | None, Query(description=schemas.HISTORY_LIMIT_DOC)] = None,
    historyCursor: Annotated[str | None, Query(description=schemas.HISTORY_CURSOR_DOC)] = None,
    historyOrder: Annotated[str | None, Query(description=schemas.HISTORY_ORDER_DOC)] = None,
) -> Response[Any]:
    # The history parameters above document the query; detail() reads them from the event.
    _, operator = _operator()
    _within_reach(operator, None, businessSystem, openApplyCode)
    stored = _reachable(operator, businessSystem, openApplyCode)
    return envelope(HTTPStatus.OK, "ok", detail(stored, operator))


# ------------------------------------------------------------------ GET .../raw?key=
# A raw document is a channel's answer or pushed body: small. A bigger one is read from the bucket.
MAX_RAW_BYTES = 1024 * 1024


@app.get(
    "/v1/ops/applications/<businessSystem>/<openApplyCode>/raw",
    operation_id="opsReadRawDocument",
    summary="One archived raw answer or pushed body of an application (a key from its detail's rawKeys)",
    description="The bytes as the channel sent them: as text when they are UTF-8, else base64. Only keys the "
    "application owns (its detail's rawKeys) are read; any other key is a 404.",
    tags=["operations"],
    security=[{schemas.BEARER: []}],
    responses={
        200: schemas.answer("the document", ops_schemas.OpsRawDocumentAnswer),
        400: schemas.answer("no key given", schemas.Envelope),
        401: ops_schemas.UNAUTHORIZED,
        403: ops_schemas.FORBIDDEN,
        404: schemas.answer("no such application, or the key is not one of its rawKeys", schemas.Envelope),
        413: schemas.answer("larger than 1 MiB: read it from the bucket", schemas.Envelope),
        503: ops_schemas.UNAVAILABLE,
    },
)
def read_raw(
    businessSystem: _SYSTEM,
    openApplyCode: _CODE,
    key: Annotated[str | None, Query(description="one of the detail's rawKeys")] = None,
) -> Response[Any]:
    _, operator = _operator()
    _within_reach(operator, None, businessSystem, openApplyCode)
    wanted = (app.current_event.query_string_parameters or {}).get("key") or ""
    if not wanted:
        raise Refusal(HTTPStatus.BAD_REQUEST, "key: required, one of the application's rawKeys")
    stored = _reachable(operator, businessSystem, openApplyCode)
    # Only what the application names: a key is never a path into the rest of the bucket.
    if wanted not in _raw_keys(stored, runtime.intake().invoices(stored)):
        return envelope(HTTPStatus.NOT_FOUND, "key: not one of this application's rawKeys")
    body = runtime.file_store().get_document(wanted)
    if len(body) > MAX_RAW_BYTES:
        return envelope(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"key: {len(body)} bytes; read it from the bucket")
    try:
        text, encoded = body.decode("utf-8"), None
    except UnicodeDecodeError:
        text, encoded = None, base64.b64encode(body).decode("ascii")
    data = {"key": wanted, "size": len(body), "sha256": hashlib.sha256(body).hexdigest(), "text": text,
            "base64": encoded}  # fmt: skip
    return envelope(HTTPStatus.OK, "ok", data)


# ------------------------------------------------------------------ POST .../actions
def _action_body() -> dict[str, Any]:
    event = app.current_event
    http.require_json(event)
    try:
        body = jsonutil.loads((event.decoded_body or "").encode("utf-8"))
    except jsonutil.InvalidJson as error:
        raise Refusal(HTTPStatus.BAD_REQUEST, str(error)) from None
    if not isinstance(body, dict):
        raise Refusal(HTTPStatus.BAD_REQUEST, 'body: expected {"action": "...", "reason": "..."}')
    for name in ("action", "reason"):
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            raise Refusal(HTTPStatus.BAD_REQUEST, f"{name}: required, a non-empty string")
    return body


@app.post(
    "/v1/ops/applications/<businessSystem>/<openApplyCode>/actions",
    operation_id="opsAct",
    summary="Act on an application (operator role): query, resolve-issued, resolve-not-issued, requeue, cancel, "
    "attach-result, acknowledge-finding, resolve-voided, resolve-not-voided",
    description='Body {"action", "reason", and per action: resolve-issued "invoice" {"number", "code"?, "date"?}, '
    'attach-result "resultId", acknowledge-finding "findingId" or "findingIds" (up to 100, all or none)}. 200 '
    "with the application after the action; 400 naming the field; 409 with data.status when the action does not "
    "apply now or the application moved.",
    tags=["operations"],
    security=[{schemas.BEARER: []}],
    openapi_extensions=schemas.request_body("the action and why", ops_schemas.OperatorActionRequest),
    responses={
        200: schemas.answer("done: the application after the action", ops_schemas.OpsDetailAnswer),
        400: schemas.answer(
            "the field at fault (an unknown action, no reason, a missing parameter)", ops_schemas.ActionRefusedAnswer
        ),
        401: ops_schemas.UNAUTHORIZED,
        403: ops_schemas.FORBIDDEN,
        404: ops_schemas.MISSING,
        409: schemas.answer(
            "the action does not apply now, or the application moved meanwhile", schemas.OrderConflictAnswer
        ),
        415: schemas.answer("not application/json", schemas.Envelope),
        503: ops_schemas.UNAVAILABLE,
    },
)
def act(businessSystem: _SYSTEM, openApplyCode: _CODE) -> Response[Any]:
    name, operator = _operator()
    _within_reach(operator, None, businessSystem, openApplyCode)
    if not operator.can_act:
        raise Refusal(HTTPStatus.FORBIDDEN, f"operator {name!r} is a viewer: viewers do not act")
    body = _action_body()
    _reachable(operator, businessSystem, openApplyCode)
    use_case = _use_case()
    if use_case is None:
        return envelope(HTTPStatus.SERVICE_UNAVAILABLE, "actions are not available in this build")
    from fapiao_hub.usecases import action_checks  # with the use case: only this route needs its errors

    params = {k: v for k, v in body.items() if k not in ("action", "reason")}
    try:
        after = use_case.act(businessSystem, openApplyCode, body["action"], body["reason"].strip(), name, params)
    except action_checks.ActionInvalid as invalid:
        field, message = _parts(invalid, "field")
        return envelope(HTTPStatus.BAD_REQUEST, f"{field}: {message}", {"field": field})
    except action_checks.ActionNotApplicable as refused:
        status, message = _parts(refused, "status")
        return envelope(HTTPStatus.CONFLICT, message, {"status": _status_text(status)})
    except action_checks.ApplicationMissing:
        raise _missing(businessSystem, openApplyCode) from None
    logger.info("operator action", extra={"action": body["action"], "status": after.status.value})
    metrics.add_metric(name="OpsActions", unit=MetricUnit.Count, value=1)
    return envelope(HTTPStatus.OK, f"{body['action']} done", detail(after))


def _parts(error: Exception, first: str) -> tuple[Any, str]:
    """(field or status, message) of the use case's errors, built as Error(first, message)."""
    args = (*error.args, None, None)
    return getattr(error, first, args[0]), str(getattr(error, "message", args[1]))


def _status_text(status: Any) -> str:
    return status.value if isinstance(status, Status) else str(status)
