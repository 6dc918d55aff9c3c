"""How the API shows a stored application to its callers: the summary, the invoices with their files'
download links, the findings, a page of the history, and the record both GETs share (the business
system's ``GET /v1/invoice-orders/{code}`` and the operations desk's detail). JSON names are the callers'.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fapiao_hub import runtime
from fapiao_hub.api import seed004
from fapiao_hub.api.http import Refusal
from fapiao_hub.domain.models import Finding
from fapiao_hub.infra import history as audit
from fapiao_hub.infra.store.records import StoredApplication

# Download links in GET answers are good for five minutes.
PRESIGNED_URL_SECONDS = 300

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


def summary(stored: StoredApplication) -> dict[str, Any]:
    return {
        "openApplyCode": stored.application.open_apply_code,
        "status": stored.status.value,
        "warnings": list(stored.warnings),
    }


def invoice(item: dict[str, Any]) -> dict[str, Any]:
    shown = {name: item[field] for field, name in _INVOICE_FIELDS.items() if field in item}
    if item.get("files"):
        shown["files"] = [stored_file(f) for f in item["files"]]
    return shown


def finding(found: Finding) -> dict[str, Any]:
    return {
        "id": found.id,
        "kind": found.kind.value,
        "at": found.at,
        "source": found.source,
        "summary": found.summary,
        "differences": [d.model_dump(mode="json") for d in found.differences],
        "invoiceNumbers": list(found.invoice_numbers),
        "open": found.open,
        "count": found.count,
        "lastSeen": found.last_seen,
    }


def stored_file(record: dict[str, Any]) -> dict[str, Any]:
    """A stored file with a short-lived download URL, or why there is none."""
    if record.get("key"):
        return {
            "format": record["format"],
            "size": int(record["size"]),
            "sha256": record["sha256"],
            "url": runtime.file_store().presigned_url(record["key"], PRESIGNED_URL_SECONDS),
        }
    return {"error": record.get("error"), "source": record.get("source")}


def history_page(stored: StoredApplication, shape: Any, params: dict[str, str] | None) -> dict[str, Any]:
    """A page of the application's history (never cut: the cursor gives the next) as ``shape`` shows an
    entry, from a GET's ``params``; a bad paging parameter is a 400 naming it."""
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


def record(stored: StoredApplication, history: dict[str, Any], invoices: list[dict[str, Any]]) -> dict[str, Any]:
    """What both GETs show after the application's status: versions and times, its channel and request
    number, the ``history`` page, the ``invoices``, the findings and the order as submitted. The caller
    reads the history and the invoices (each GET in its own order of requests)."""
    return {
        "version": stored.version,
        "channel": stored.channel,
        # The number every channel portal keys on (sent on every attempt).
        "requestNumber": stored.sent_request_number,
        "createdAt": stored.created_at,
        "updatedAt": stored.updated_at,
        "reason": stored.reason,
        **history,
        "invoices": [invoice(i) for i in invoices],
        "findings": [finding(f) for f in stored.findings],
        "invoiceOrder": seed004.from_application(stored.application)[seed004.ROOT],
    }
