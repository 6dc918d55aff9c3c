"""What the notifier tells a business system of an outcome: the body, in its webhook's format.

The notifier (fapiao_hub.usecases.notify) delivers it; this module only says what it is.

Formats
-------
``hub``: the hub's own JSON event, signed::

    {"id": "<idempotency key>", "type": "InvoiceIssued", "schema_version": "1",
     "occurred_at": "2026-11-21T12:00:00Z",
     "application": {"openApplyCode": "...", "status": "ISSUED", "reason": null, "channel": "...",
                     "requestNumber": "FH..."},
     "invoices": [{"invoiceNumber": "...", "invoiceCode": null, "invoiceDate": "2026-11-21",
                   "invoiceType": "DIGITAL_SPECIAL", "amount": 5327.43, "tax": 692.57,
                   "status": "ISSUED", "files": [{"format": "pdf", "size": 1234, "sha256": "..."}]}]}

with the headers ``Content-Type: application/json``, ``X-Fapiao-Event-Id: <idempotency key>``,
``X-Fapiao-Timestamp: <epoch seconds>`` and ``X-Fapiao-Signature: sha256=<hex HMAC-SHA256 of
"{timestamp}.{body}" keyed with the webhook's secret>`` (the body: the exact bytes sent). Files are
described, not sent: the business system downloads them with ``GET /v1/invoice-orders/{code}``.
``application.requestNumber`` is the request number the channel was sent; ``ApplicationNeedsReview``
after a mismatch and ``FindingRecorded`` (e.g. a second invoice after the outcome) also carry
``findings`` (each with ``kind``, ``summary`` and the ``differences``: field, expected, reported).

``ekuaibao``: seed 000's push shape (``channels.ekuaibao.to_push_body``), POSTed to the webhook's URL
with ``accessToken=<access_token>`` added to its query, so an Ekuaibao tenant receives results as its
own API documents them: ``serialNo`` is the openApplyCode; ``result`` 0 for ``InvoiceIssued`` and
``InvoiceVoided`` (voided invoices carry ``invoicingStatus`` 03), 1 for ``ApplicationRejected`` and
``ApplicationCancelled`` (an operator ended it before it reached a channel; with ``rejectMsg``). Each
invoice's ``orderNo`` (业务请求流水号) is the request number the channel was sent.
``ApplicationStuck``, ``ApplicationNeedsReview`` and ``FindingRecorded`` have no equivalent in seed 000:
they are not sent (the application's history says so). Invoice lines are the ones the channel
reported, else (one invoice for the application) the application's lines; files are not carried
(seed 000 carries them as URLs, the hub keeps them private). The signature headers are added in
this format too when the webhook has a secret.

Idempotency
-----------
``X-Fapiao-Event-Id`` (and the hub body's ``id``) is the same for the same outcome, however often it
is delivered or published: the first 32 hex digits of the SHA-256 of the source system, the
openApplyCode, the event type, the sorted invoice keys (``code-number``, or the number) and the
status. EventBridge's own event id is not used: it changes when an outcome is published again.
Receivers de-duplicate on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

from fapiao_hub.channels import ekuaibao
from fapiao_hub.channels.wire import EIGHT_PLACES, quantize
from fapiao_hub.domain.models import Application, Direction, InvoiceType, invoice_key
from fapiao_hub.domain.results import InvoiceLine, InvoiceState, IssuedInvoice
from fapiao_hub.infra.events import EventType
from fapiao_hub.infra.store.records import StoredApplication

_ISSUE_TYPES = frozenset({EventType.INVOICE_ISSUED.value, EventType.INVOICE_VOIDED.value})
#: Seed 000's ``result`` for each outcome it has a word for; the others are not sent in that format.
EKUAIBAO_RESULTS = {
    EventType.INVOICE_ISSUED.value: ekuaibao.RESULT_ISSUED,
    EventType.INVOICE_VOIDED.value: ekuaibao.RESULT_ISSUED,
    EventType.APPLICATION_REJECTED.value: ekuaibao.RESULT_REJECTED,
    # Not invoiced, for good: seed 000 has no other word for it (rejectMsg says it was cancelled).
    EventType.APPLICATION_CANCELLED.value: ekuaibao.RESULT_REJECTED,
}
#: The events a business system is told of.
OUTCOME_TYPES = frozenset(
    {
        EventType.INVOICE_ISSUED.value,
        EventType.APPLICATION_REJECTED.value,
        EventType.INVOICE_VOIDED.value,
        EventType.APPLICATION_STUCK.value,
        EventType.APPLICATION_NEEDS_REVIEW.value,
        EventType.FINDING_RECORDED.value,
        EventType.APPLICATION_CANCELLED.value,
    }
)


def idempotency_key(detail_type: str, detail: Mapping[str, Any]) -> str:
    """The same for the same outcome, whichever delivery or publication carries it."""
    invoices = sorted(
        invoice_key(i.get("code"), str(i["number"])) for i in detail.get("invoices") or () if i.get("number")
    )
    material = [detail.get("source_system"), detail.get("open_apply_code"), detail_type, invoices, detail.get("status")]
    canonical = json.dumps(material, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def event_suffices(detail_type: str, detail: Mapping[str, Any]) -> bool:
    """The hub-format body can be built from the event alone: it names every invoice with its files."""
    named = detail.get("invoices")
    if named is None:
        return detail_type not in _ISSUE_TYPES  # an outcome without invoices (rejected, stuck, ...)
    return isinstance(named, list) and all(isinstance(entry, Mapping) and "files" in entry for entry in named)


def selected_invoices(detail_type: str, detail: Mapping[str, Any], stored_items: list[dict]) -> list[dict]:
    """The invoices the outcome names, as stored, with the state the outcome announced."""
    by_key = {str(item["pk"]): item for item in stored_items}
    named = detail.get("invoices")
    if not named:
        return list(stored_items) if detail_type in _ISSUE_TYPES and named is None else []
    chosen = []
    for entry in named:
        item = by_key.get(invoice_key(entry.get("code"), str(entry.get("number"))))
        merged = {**entry, **(item or {})}
        if entry.get("status"):
            merged["status"] = entry["status"]
        chosen.append(merged)
    return chosen


def _with_order_no(invoice: IssuedInvoice, request_number: str | None) -> IssuedInvoice:
    """Seed 000's orderNo (业务请求流水号) carries the request number the channel was sent."""
    if not request_number:
        return invoice
    return replace(invoice, details={**invoice.details, "order_no": str(request_number)})


def hub_body(
    key: str, detail_type: str, detail: Mapping[str, Any], occurred_at: str | None, invoices: list[dict]
) -> dict[str, Any]:
    """The hub format's event (module docstring)."""
    return {
        "id": key,
        "type": detail_type,
        "schema_version": detail.get("schema_version"),
        "occurred_at": occurred_at,
        "application": {
            "openApplyCode": detail.get("open_apply_code"),
            "status": detail.get("status"),
            "reason": detail.get("reason"),
            "channel": detail.get("channel"),
            "requestNumber": detail.get("request_number"),
        },
        # What a person must look at (ApplicationNeedsReview after a mismatch, FindingRecorded).
        **({"findings": list(detail["findings"])} if detail.get("findings") else {}),
        "invoices": [
            {
                "invoiceNumber": item.get("number"),
                "invoiceCode": item.get("code"),
                "invoiceDate": item.get("issued_on"),
                "invoiceType": item.get("invoice_type"),
                "amount": item.get("amount"),
                "tax": item.get("tax"),
                "status": item.get("status"),
                # What was compared with the channel's statement (its answer or the invoice's file), what
                # an operator attested, and what the hub holds only from your application.
                **_provenance(item),
                "files": [
                    {"format": f.get("format"), "size": int(f["size"]), "sha256": f.get("sha256")}
                    for f in item.get("files") or ()
                    if f.get("key")
                ],
            }
            for item in invoices
        ],
    }


def _provenance(item: Mapping[str, Any]) -> dict[str, list[str]]:
    """An invoice's provenance lists (verification.provenance); none for one recorded before them."""
    if "verified" not in item:
        return {}
    return {
        "verified": list(item.get("verified") or ()),
        "verifiedFromFile": list(item.get("from_file") or ()),
        "attestedByOperator": list(item.get("attested_by_operator") or ()),
        "fromApplication": list(item.get("from_application") or ()),
    }


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _stored_line(line: Mapping[str, Any]) -> InvoiceLine:
    return InvoiceLine(
        goods_name=str(line["goods_name"]),
        amount=Decimal(str(line["amount"])),
        tax=Decimal(str(line["tax"])),
        tax_rate=_decimal(line.get("tax_rate")),
        quantity=_decimal(line.get("quantity")),
        unit_price=_decimal(line.get("unit_price")),
        unit=line.get("unit"),
        specification=line.get("specification"),
        tax_code=line.get("tax_code"),
        nature=line.get("nature"),
    )


def _application_lines(application: Application) -> tuple[InvoiceLine, ...]:
    lines = []
    for line in application.lines:
        unit_price = line.unit_price
        if application.prices_include_tax and line.quantity:  # Ekuaibao's goodsPrice is tax-exclusive
            unit_price = quantize(line.amount / line.quantity, EIGHT_PLACES)
        lines.append(
            InvoiceLine(
                goods_name=line.goods_name,
                amount=line.amount,
                tax=line.tax,
                tax_rate=line.tax_rate,
                quantity=line.quantity,
                unit_price=unit_price,
                unit=line.unit,
                specification=line.specification,
                tax_code=line.tax_code,
                nature=line.nature.value,
            )
        )
    return tuple(lines)


def issued_invoice(item: Mapping[str, Any], application: Application, *, only_invoice: bool) -> IssuedInvoice:
    """A stored invoice item back as the neutral invoice a channel would report."""
    try:
        state = InvoiceState(str(item.get("status") or InvoiceState.ISSUED.value))
    except ValueError:
        state = InvoiceState.ISSUED
    if state is InvoiceState.VOID_REQUESTED:
        state = InvoiceState.ISSUED  # not voided (yet): Ekuaibao knows 00 and 03 only
    lines = tuple(_stored_line(line) for line in item.get("lines") or ())
    if not lines and only_invoice:
        lines = _application_lines(application)
    amount, tax = _decimal(item.get("amount")), _decimal(item.get("tax"))
    details = {str(k): str(v) for k, v in (item.get("details") or {}).items()}
    known = {
        "buyer_name": application.buyer.name,
        "buyer_tax_number": application.buyer.tax_number,
        "seller_name": application.seller.name,
        "seller_tax_number": application.seller.tax_number,
        "total_incl_tax": f"{amount + tax:f}" if amount is not None and tax is not None else None,
    }
    for name, value in known.items():
        if value and not details.get(name):
            details[name] = value
    red = application.red
    if item.get("direction", application.direction.value) == Direction.RED.value:
        details[ekuaibao.DIRECTION_KEY] = "RED"
    invoice_type = item.get("invoice_type")
    return IssuedInvoice(
        number=str(item["number"]),
        code=item.get("code") or None,
        issued_on=date.fromisoformat(str(item["issued_on"])) if item.get("issued_on") else None,
        amount=amount,
        tax=tax,
        check_code=item.get("check_code"),
        invoice_type=InvoiceType(invoice_type) if invoice_type else application.invoice_type,
        state=state,
        lines=lines,
        original_number=red.blue_invoice_number if red else None,
        original_code=red.blue_invoice_code if red else None,
        details=details,
    )


def ekuaibao_body(
    channel_code: str,
    detail_type: str,
    detail: Mapping[str, Any],
    stored: StoredApplication,
    invoices: list[dict],
) -> dict[str, Any]:
    """Seed 000's push body for an outcome that has an equivalent there (:data:`EKUAIBAO_RESULTS`).
    Raises ValueError for what the format cannot express."""
    result = EKUAIBAO_RESULTS[detail_type]
    request_number = detail.get("request_number") or stored.request_number
    return ekuaibao.to_push_body(
        channel_code,
        serial_no=str(detail["open_apply_code"]),
        result=result,
        reject_msg=detail.get("reason") if result == ekuaibao.RESULT_REJECTED else None,
        invoices=[
            _with_order_no(issued_invoice(i, stored.application, only_invoice=len(invoices) == 1), request_number)
            for i in invoices
        ],
    )
