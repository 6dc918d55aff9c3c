"""Xunlian (迅联云) real-time issuing: ``POST {base_url}/sco-invoice-legged-biz/tax/output/openapi/serverIssue``.

Seed 001 documents one synchronous call: the request carries the whole invoice, the answer the
issued invoice (code, number, date, check code). There is no query call, so ``can_query`` is
False; whether the vendor recognises a repeated request number is the channel setting
``dedupes_request_number`` (the seed does not say).

Public API
----------
- :class:`XunlianChannel` (``name``, ``settings``, optional ``requests.Session``): the Channel.
- :func:`to_request` / :func:`from_request`: canonical ``Application`` <-> Xunlian request, both ways.
- :func:`check_request`: seed 001's field limits (GBK bytes, BigDecimal digits), checked before sending.
- :func:`interpret_answer`: an HTTP status and answer bytes -> an outcome (pure, never raises).
- :func:`fapiao_hub.channels.wire.build_post_session`: the transport policy (timeouts are passed per request).

Mapping notes
-------------
- ``requisitionApplyNo`` and ``otherId`` are both the hub's request number, the same on every attempt.
- ``companyDataResource``, ``terminalCode``, ``payee``, ``drawer``, ``reviewer`` come from the channel
  options ``company_data_resource``, ``terminal_code``, ``payee``, ``drawer``, ``reviewer``.
- "address and phone" is ``address + " " + phone``, "bank and account" ``bank_name + " " +
  bank_account`` (blank parts skipped). On the way back the text is split at its last blank only when
  what follows looks like a phone / account number, so the round trip is exact.
- Discounts travel on the discounted line (``lineAttribute`` 2 with ``discount`` = tax-inclusive
  discount, ``lineDiscountExcludeTax``, ``taxDiscount``, all positive): ``discounts.fold_discounts`` on the
  way out, ``discounts.unfold_inline_discount`` on the way back.
- Money is ``Decimal`` throughout and goes out as strings: amounts with 2 decimals (half up), unit
  price and quantity with 8, the tax rate as given (trailing zeros dropped). Only the unit price of the
  application's basis is sent (``priceIncludeTax`` when prices include tax, else ``priceExcludeTax``),
  as the seed allows ("取决于含税标识").
- 数电 (DIGITAL_*) invoices are not issuable here (seed 001 knows 01, 04, 08, 10): ``Rejected`` with
  code ``UNSUPPORTED_INVOICE_TYPE`` before anything is sent.
- The seed documents no authentication header; ``settings.credentials`` is not sent (its values are
  only used to scrub answers quoted in reasons).

Outcomes
--------
==============================================================  =================================
what happened                                                   outcome
==============================================================  =================================
digital type, bad discount sequence, red without blue invoice   Rejected (before sending)
a field over seed 001's limit / text GBK cannot encode          Rejected ``FIELD_TOO_LONG`` /
                                                                ``TEXT_NOT_GBK`` (before sending)
connection refused, DNS failure, connect timeout                NotSent (after the connect retries)
read timeout, reset/abort after sending, broken chunked body    Unknown
any other transport error once sending started                  Unknown
HTTP 3xx (redirects are never followed), 408, 425, 429, 503,    NotSent
other 4xx except 400/413/414/422
HTTP 400, 413, 414, 422 without a Xunlian envelope              Rejected ``HTTP_<status>``
HTTP 500, 502, 504 and any other 5xx                            Unknown (answer kept as raw)
answer not JSON / not the seed's envelope                       Unknown (answer kept as raw)
``ok: true``, returnCode 200, body with invoiceNumber           Issued
``ok: true``, an invoice in the body but no invoiceNumber       Issued, ``number`` ``""`` and
                                                                ``unreadable["invoiceNumber"]``
``ok: true`` without any invoice field, or another returnCode   Unknown
``ok: false``, a duplicate code, body with invoiceNumber        Issued(duplicate=True)
``ok: false``, a duplicate code, no invoice in the body         Unknown (it exists, unseen)
``ok: false``, another code, but an invoiceNumber in the body   Unknown (an undocumented code)
``ok: false`` otherwise                                         Rejected(message, code=returnCode)
body.requisitionApplyNo differs from the request number         Unknown (not our answer)
==============================================================  =================================

The answer's ``amount`` is the tax-exclusive total (金额); it carries no tax, seller, buyer, type or
lines, so ``seller_tax_number``, ``buyer_tax_number`` and ``tax`` stay None (not reported) and
``invoice_type`` is the type requested. A malformed ``amount`` or ``invoiceDate`` is recorded raw in
``IssuedInvoice.unreadable`` (the field left None); the invoice is kept.

Duplicates: seed 001 documents no duplicate-request answer. ``4090`` (``ok: false`` with the existing
invoice as ``body``) is **the sandbox's assumption** (sandbox/xunlian.py); :data:`DUPLICATE_CODES`
holds it and the channel option ``duplicate_codes`` (comma-separated) adds others.

Retries: only failures before the request was sent are retried, by urllib3 (``connect`` retries,
``settings.connect_retries``). Reads are never retried (``read=False``: a POST that may have arrived
is not sent again), nor statuses, redirects or other errors. ``allowed_methods`` keeps urllib3's
default (POST not included) as a second guard: ``None`` would make every method retryable.

Reasons never carry the buyer's email, mobile, phone, tax number or bank account, nor credentials:
limit violations name fields and sizes only, and a vendor message is scrubbed of those values.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

import requests

from fapiao_hub.channels.wire import (
    FIELD_TOO_LONG,
    INVALID_DISCOUNT_LINES,
    MISSING_BLUE_INVOICE,
    UNSUPPORTED_INVOICE_TYPE,
    NotExpressible,
    build_post_session,
    comma_list,
    eight_places,
    envelope_or_outcome,
    exchange,
    join_text,
    money_text,
    no_scrub,
    parse_decimal,
    rate_text,
    raw_text,
    read_answer,
    text_or_none,
)
from fapiao_hub.domain.config import ChannelSettings
from fapiao_hub.domain.discounts import fold_discounts, unfold_inline_discount
from fapiao_hub.domain.models import (
    Application,
    Direction,
    InvoiceType,
    Line,
    LineNature,
    Party,
    RedReference,
)
from fapiao_hub.domain.money import split_tax_inclusive, tax_for, totals
from fapiao_hub.domain.results import (
    Capabilities,
    Issued,
    IssuedInvoice,
    Outcome,
    QueryOutcome,
    Rejected,
    Unknown,
)

logger = logging.getLogger(__name__)

ISSUE_PATH = "/sco-invoice-legged-biz/tax/output/openapi/serverIssue"

#: Return codes meaning "this request number was already issued; here is the invoice". Seed 001
#: documents none: 4090 is the sandbox's assumption. Extended by options["duplicate_codes"].
DUPLICATE_CODES: frozenset[str] = frozenset({"4090"})
OK_CODE = "200"

#: Canonical type -> seed 001 ``invoiceTypeCode`` (docs/rules.md section 3). 数电 types are absent.
INVOICE_TYPE_CODES: dict[InvoiceType, str] = {
    InvoiceType.VAT_SPECIAL_PAPER: "01",
    InvoiceType.VAT_NORMAL_PAPER: "04",
    InvoiceType.VAT_NORMAL_ELECTRONIC: "10",
    InvoiceType.VAT_SPECIAL_ELECTRONIC: "08",
}
INVOICE_TYPES_BY_CODE: dict[str, InvoiceType] = {code: t for t, code in INVOICE_TYPE_CODES.items()}

# Outcome code of a check made before sending (the shared ones are in wire).
TEXT_NOT_GBK = "TEXT_NOT_GBK"

# Seed 001's String fields: Xunlian name -> (limit in GBK bytes, the hub's name or None when the
# hub never fills it). The line table spells ``StatementLineId``, the example ``statementLineId``.
HEADER_TEXT_LIMITS: dict[str, tuple[int, str | None]] = {
    "companyDataResource": (36, "options.company_data_resource"),
    "requisitionApplyNo": (96, "request_number"),
    "otherId": (100, "request_number"),
    "invoiceTypeCode": (2, "invoice_type"),
    "buyerName": (100, "buyer.name"),
    "buyerTaxId": (20, "buyer.tax_number"),
    "buyerAddress": (100, "buyer.address + buyer.phone"),
    "buyerBankAndId": (100, "buyer.bank_name + buyer.bank_account"),
    "note": (212, "remark"),
    "sellerName": (100, "seller.name"),
    "sellerTaxId": (20, "seller.tax_number"),
    "sellerAddress": (100, "seller.address + seller.phone"),
    "sellerBankAndId": (100, "seller.bank_name + seller.bank_account"),
    "specialInvoiceMark": (4, None),
    "receiveRecipient": (10, None),
    "receiveAddress": (200, None),
    "receiveMsgPhone": (12, "buyer.mobile"),
    "receiveMsgEmail": (64, "buyer.email"),
    "statementCode": (100, None),
    "noticeCodeNo": (100, None),
    "terminalCode": (100, "options.terminal_code"),
    "payee": (8, "options.payee"),
    "drawer": (20, "options.drawer"),
    "reviewer": (8, "options.reviewer"),
    "blueInvoiceNo": (8, "red.blue_invoice_number"),
    "blueInvoiceCode": (12, "red.blue_invoice_code"),
}
LINE_TEXT_LIMITS: dict[str, tuple[int, str | None]] = {
    "id": (20, "index"),
    "itemName": (92, "goods_name"),
    "unit": (14, "unit"),
    "itemModelName": (40, "specification"),
    "lineAttribute": (2, "nature"),
    "taxClassificationCode": (19, "tax_code"),
    "materialCode": (20, "material_code"),
    "zeroTaxRateFlag": (2, "zero_rate_flag"),
    "favouredPolicyMark": (2, "preferential_policy"),
    "favouredPolicyName": (500, "preferential_policy"),
    "orderNo": (100, None),
    "orderLineId": (20, None),
    "statementCode": (100, None),
    "StatementLineId": (20, None),
    "statementLineId": (20, None),
    "noticeCodeNo": (100, None),
    "noticeLineId": (20, None),
}
# Seed 001's BigDecimal fields: (digits in all, decimals, the hub's name). "BigDecimal 12, 2
# decimals" is read as at most 12 significant digits of which at most 2 after the point.
HEADER_DECIMAL_LIMITS: dict[str, tuple[int, int, str]] = {
    "totalAmountExcludeTax": (13, 2, "amount"),
    "totalTaxAmount": (12, 2, "tax"),
    "totalAmountIncludeTax": (14, 2, "amount_incl_tax"),
}
LINE_DECIMAL_LIMITS: dict[str, tuple[int, int, str]] = {
    "discount": (12, 2, "discount amount including tax"),
    "lineDiscountExcludeTax": (12, 2, "discount amount"),
    "taxDiscount": (12, 2, "discount tax"),
    "priceExcludeTax": (16, 8, "unit_price"),
    "priceIncludeTax": (16, 8, "unit_price"),
    "quantity": (16, 8, "quantity"),
    "lineAmountExcludeTax": (12, 2, "amount"),
    "lineAmountIncludeTax": (12, 2, "amount_incl_tax"),
    "taxAmount": (12, 2, "tax"),
    "taxRate": (12, 3, "tax_rate"),
}


# --------------------------------------------------------------------------- formatting


# --------------------------------------------------------------------------- to Xunlian


def to_request(application: Application, request_number: str, options: Mapping[str, str]) -> dict[str, Any]:
    """The ``serverIssue`` body for ``application`` under ``request_number``.

    Raises :class:`NotExpressible` for what Xunlian cannot issue (a 数电 type, a discount
    sequence ``fold_discounts`` refuses, a red application without the blue invoice's number and
    code). Limits are checked separately (:func:`check_request`). Absent values are left out.
    """
    type_code = INVOICE_TYPE_CODES.get(application.invoice_type)
    if type_code is None:
        raise NotExpressible(
            f"invoice type {application.invoice_type.value} is not issuable by Xunlian "
            "(seed 001 issues 01 special, 04 normal, 10 electronic normal, 08 electronic special)",
            UNSUPPORTED_INVOICE_TYPE,
        )
    try:
        folded = fold_discounts(application.lines)
    except ValueError as error:
        raise NotExpressible(str(error), INVALID_DISCOUNT_LINES) from None

    buyer, seller = application.buyer, application.seller
    payload: dict[str, Any] = {
        "companyDataResource": text_or_none(options.get("company_data_resource")),
        "requisitionApplyNo": request_number,
        "otherId": request_number,
        "invoiceTypeCode": type_code,
        "buyerName": buyer.name,
        "buyerTaxId": text_or_none(buyer.tax_number),
        "buyerAddress": join_text(buyer.address, buyer.phone),
        "buyerBankAndId": join_text(buyer.bank_name, buyer.bank_account),
        "note": text_or_none(application.remark),
        "sellerName": seller.name,
        "sellerTaxId": text_or_none(seller.tax_number),
        "sellerAddress": join_text(seller.address, seller.phone),
        "sellerBankAndId": join_text(seller.bank_name, seller.bank_account),
        "totalAmountExcludeTax": money_text(application.amount),
        "totalTaxAmount": money_text(application.tax),
        "totalAmountIncludeTax": money_text(application.amount_incl_tax),
        "specialInvoiceMark": "00",
        "computeWithTax": 1 if application.prices_include_tax else 0,
        "receiveMsgPhone": text_or_none(buyer.mobile),
        "receiveMsgEmail": text_or_none(buyer.email),
        "terminalCode": text_or_none(options.get("terminal_code")),
        "payee": text_or_none(options.get("payee")),
        "drawer": text_or_none(options.get("drawer")),
        "reviewer": text_or_none(options.get("reviewer")),
    }
    if application.direction == Direction.RED:
        red = application.red
        if red is None or text_or_none(red.blue_invoice_number) is None or text_or_none(red.blue_invoice_code) is None:
            raise NotExpressible(
                "a red invoice on Xunlian needs the blue invoice's number and code "
                "(red.blue_invoice_number, red.blue_invoice_code)",
                MISSING_BLUE_INVOICE,
            )
        payload["blueInvoiceNo"] = red.blue_invoice_number
        payload["blueInvoiceCode"] = red.blue_invoice_code
    payload["lines"] = [
        _line_to_request(line, discount, discount_tax, application.prices_include_tax)
        for line, discount, discount_tax in folded
    ]
    return {k: v for k, v in payload.items() if v is not None}


def _line_to_request(
    line: Line, discount: Decimal | None, discount_tax: Decimal | None, prices_include_tax: bool
) -> dict[str, Any]:
    policy = text_or_none(line.preferential_policy)
    entry: dict[str, Any] = {
        "id": str(line.index),
        "itemName": line.goods_name,
        "unit": text_or_none(line.unit),
        "itemModelName": text_or_none(line.specification),
        "lineAttribute": "2" if discount is not None else "0",
    }
    if discount is not None:
        tax = discount_tax if discount_tax is not None else Decimal(0)
        entry["discount"] = money_text(discount + tax)
        entry["lineDiscountExcludeTax"] = money_text(discount)
        entry["taxDiscount"] = money_text(tax)
    if line.unit_price is not None:
        entry["priceIncludeTax" if prices_include_tax else "priceExcludeTax"] = eight_places(line.unit_price)
    if line.quantity is not None:
        entry["quantity"] = eight_places(line.quantity)
    entry.update(
        {
            "lineAmountExcludeTax": money_text(line.amount),
            "lineAmountIncludeTax": money_text(line.amount_incl_tax),
            "taxAmount": money_text(line.tax),
            "taxRate": rate_text(line.tax_rate),
            "taxClassificationCode": text_or_none(line.tax_code),
            "materialCode": text_or_none(line.material_code),
            "zeroTaxRateFlag": text_or_none(line.zero_rate_flag),
            "favouredPolicyMark": "1" if policy else "0",
            "favouredPolicyName": policy,
        }
    )
    return {k: v for k, v in entry.items() if v is not None}


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class LimitViolation:
    """One field over seed 001's limits; ``message`` names the field, never its value."""

    xunlian_field: str
    message: str
    code: str  # FIELD_TOO_LONG or TEXT_NOT_GBK


def _label(hub: str | None, xunlian: str, prefix: str = "") -> str:
    if hub is None:
        return f"{prefix}(Xunlian {xunlian})" if prefix else f"Xunlian {xunlian}"
    return f"{prefix}{hub} (Xunlian {xunlian})"


def _check_text(label: str, xunlian: str, value: Any, limit: int) -> LimitViolation | None:
    text = text_or_none(value)
    if text is None:
        return None
    try:
        size = len(text.encode("gbk"))
    except UnicodeEncodeError as error:
        char = text[error.start]
        return LimitViolation(
            xunlian,
            f"{label} contains U+{ord(char):04X} at position {error.start + 1}, which GBK cannot encode",
            TEXT_NOT_GBK,
        )
    if size <= limit:
        return None
    return LimitViolation(
        xunlian,
        f"{label} is {size} bytes in GBK, {size - limit} over the limit of {limit}",
        FIELD_TOO_LONG,
    )


def _digits(value: Decimal) -> tuple[int, int]:
    """(significant digits in all, digits after the point), trailing zeros not counted."""
    if value == 0:
        return 1, 0
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    places = max(0, -exponent) if isinstance(exponent, int) else 0
    integer = max(normal.adjusted() + 1, 1)
    return integer + places, places


def _check_number(label: str, xunlian: str, value: Any, digits: int, decimals: int) -> LimitViolation | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return LimitViolation(xunlian, f"{label} is not a number", FIELD_TOO_LONG)
    if not number.is_finite():
        return LimitViolation(xunlian, f"{label} is not a finite number", FIELD_TOO_LONG)
    total, places = _digits(number)
    if places > decimals:
        return LimitViolation(
            xunlian,
            f"{label} has {places} decimal places, {places - decimals} over the limit of {decimals}",
            FIELD_TOO_LONG,
        )
    if total > digits:
        return LimitViolation(
            xunlian, f"{label} has {total} digits, {total - digits} over the limit of {digits}", FIELD_TOO_LONG
        )
    return None


def check_request(payload: Mapping[str, Any]) -> list[LimitViolation]:
    """Every field of a ``serverIssue`` body over seed 001's limits (empty list: none).

    Text is counted in GBK bytes (a Chinese character counts 2); a character GBK cannot encode is a
    violation too. Line fields are named by the hub's line index (the Xunlian ``id``).
    """
    found: list[LimitViolation | None] = []
    for field, (limit, hub) in HEADER_TEXT_LIMITS.items():
        found.append(_check_text(_label(hub, field), field, payload.get(field), limit))
    for field, (digits, decimals, hub) in HEADER_DECIMAL_LIMITS.items():
        found.append(_check_number(_label(hub, field), field, payload.get(field), digits, decimals))
    for position, line in enumerate(payload.get("lines") or ()):
        if not isinstance(line, Mapping):
            continue
        index = text_or_none(line.get("id")) or str(position)
        for field, (limit, hub) in LINE_TEXT_LIMITS.items():
            label = _label(hub, field, f"lines[{index}]." if hub else f"lines[{index}] ")
            found.append(_check_text(label, field, line.get(field), limit))
        for field, (digits, decimals, hub) in LINE_DECIMAL_LIMITS.items():
            label = _label(hub, field, f"lines[{index}].")
            found.append(_check_number(label, field, line.get(field), digits, decimals))
    return [v for v in found if v is not None]


# --------------------------------------------------------------------------- from Xunlian

_PHONE_TAIL = re.compile(r"(?P<head>.*\S)\s+(?P<tail>[0-9+()\-]+)", re.DOTALL)
_ACCOUNT_TAIL = re.compile(r"(?P<head>.*\S)\s+(?P<tail>[0-9\-]+)", re.DOTALL)


def _split(value: Any, tail: re.Pattern[str]) -> tuple[str | None, str | None]:
    text = text_or_none(value)
    if text is None:
        return None, None
    match = tail.fullmatch(text)
    if match is None:
        return text, None
    return match["head"], match["tail"]


def _with_tax(value: Any) -> bool:
    if value is None or value == "":
        return True  # seed 001: "若为空视为含税"
    if str(value) in ("0", "1") and not isinstance(value, bool):
        return str(value) == "1"
    raise ValueError("computeWithTax: not 0 or 1")


def from_request(
    payload: Mapping[str, Any], *, source_system: str, open_apply_code: str, company_code: str
) -> Application:
    """A ``serverIssue`` body -> the canonical application (the inverse of :func:`to_request`).

    Totals are derived from the lines (the canonical model stores line-derived figures). Fields the
    hub does not model (``orderNo``, ``statementCode``, ``receiveRecipient``...) and the channel's own
    settings (``companyDataResource``, ``terminalCode``, payee / drawer / reviewer) are not kept.
    Raises ValueError on what cannot be mapped.
    """
    type_code = text_or_none(payload.get("invoiceTypeCode"))
    if type_code not in INVOICE_TYPES_BY_CODE:
        raise ValueError("invoiceTypeCode: not one of 01, 04, 08, 10")
    mark = text_or_none(payload.get("specialInvoiceMark"))
    if mark not in (None, "00"):
        raise ValueError("specialInvoiceMark: only 00 (no special kind) is supported")
    prices_include_tax = _with_tax(payload.get("computeWithTax"))

    lines: list[Line] = []
    raw_lines = payload.get("lines")
    if not isinstance(raw_lines, list):
        raise ValueError("lines: a list is required")
    for position, raw in enumerate(raw_lines):
        if not isinstance(raw, Mapping):
            raise ValueError(f"lines[{position}]: not an object")
        lines.extend(_line_from_request(position, raw, prices_include_tax))

    seller_address, seller_phone = _split(payload.get("sellerAddress"), _PHONE_TAIL)
    seller_bank, seller_account = _split(payload.get("sellerBankAndId"), _ACCOUNT_TAIL)
    buyer_address, buyer_phone = _split(payload.get("buyerAddress"), _PHONE_TAIL)
    buyer_bank, buyer_account = _split(payload.get("buyerBankAndId"), _ACCOUNT_TAIL)
    seller = Party(
        name=text_or_none(payload.get("sellerName")) or "",
        tax_number=text_or_none(payload.get("sellerTaxId")),
        address=seller_address,
        phone=seller_phone,
        bank_name=seller_bank,
        bank_account=seller_account,
    )
    buyer = Party(
        name=text_or_none(payload.get("buyerName")) or "",
        tax_number=text_or_none(payload.get("buyerTaxId")),
        address=buyer_address,
        phone=buyer_phone,
        bank_name=buyer_bank,
        bank_account=buyer_account,
        email=text_or_none(payload.get("receiveMsgEmail")),
        mobile=text_or_none(payload.get("receiveMsgPhone")),
    )

    amount, tax = totals(lines)
    blue_number = text_or_none(payload.get("blueInvoiceNo"))
    header_total = parse_decimal(payload.get("totalAmountIncludeTax"), "totalAmountIncludeTax")
    negative = (header_total if header_total is not None else amount + tax) < 0
    red = None
    if blue_number is not None:
        red = RedReference(
            blue_invoice_number=blue_number, blue_invoice_code=text_or_none(payload.get("blueInvoiceCode"))
        )
    return Application(
        source_system=source_system,
        open_apply_code=open_apply_code,
        direction=Direction.RED if (red is not None or negative) else Direction.BLUE,
        invoice_type=INVOICE_TYPES_BY_CODE[type_code],
        company_code=company_code,
        seller=seller,
        buyer=buyer,
        lines=tuple(lines),
        prices_include_tax=prices_include_tax,
        amount=amount,
        tax=tax,
        remark=text_or_none(payload.get("note")),
        red=red,
    )


def _line_from_request(position: int, raw: Mapping[str, Any], prices_include_tax: bool) -> list[Line]:
    at = f"lines[{position}]"
    raw_id = text_or_none(raw.get("id"))
    index = int(raw_id) if raw_id is not None and raw_id.isdigit() else position
    rate = parse_decimal(raw.get("taxRate"), f"{at}.taxRate")
    if rate is None:
        raise ValueError(f"{at}.taxRate: required")
    excl = parse_decimal(raw.get("lineAmountExcludeTax"), f"{at}.lineAmountExcludeTax")
    incl = parse_decimal(raw.get("lineAmountIncludeTax"), f"{at}.lineAmountIncludeTax")
    tax = parse_decimal(raw.get("taxAmount"), f"{at}.taxAmount")
    if excl is None:
        if incl is None:
            raise ValueError(f"{at}: lineAmountExcludeTax or lineAmountIncludeTax is required")
        excl, split_tax = split_tax_inclusive(incl, rate)
        tax = split_tax if tax is None else tax
    if tax is None:
        tax = incl - excl if incl is not None else tax_for(excl, rate)
    price_field = "priceIncludeTax" if prices_include_tax else "priceExcludeTax"
    policy = text_or_none(raw.get("favouredPolicyName")) if text_or_none(raw.get("favouredPolicyMark")) == "1" else None
    line = Line(
        index=index,
        goods_name=text_or_none(raw.get("itemName")) or "",
        tax_code=text_or_none(raw.get("taxClassificationCode")),
        specification=text_or_none(raw.get("itemModelName")),
        unit=text_or_none(raw.get("unit")),
        quantity=parse_decimal(raw.get("quantity"), f"{at}.quantity"),
        unit_price=parse_decimal(raw.get(price_field), f"{at}.{price_field}"),
        amount=excl,
        tax=tax,
        tax_rate=rate,
        zero_rate_flag=text_or_none(raw.get("zeroTaxRateFlag")),
        preferential_policy=policy,
        material_code=text_or_none(raw.get("materialCode")),
    )
    attribute = text_or_none(raw.get("lineAttribute")) or "0"
    if attribute == LineNature.NORMAL.value:
        return [line]
    if attribute != LineNature.DISCOUNTED.value:
        raise ValueError(f"{at}.lineAttribute: not 0 or 2")
    d_incl = parse_decimal(raw.get("discount"), f"{at}.discount")
    d_excl = parse_decimal(raw.get("lineDiscountExcludeTax"), f"{at}.lineDiscountExcludeTax")
    d_tax = parse_decimal(raw.get("taxDiscount"), f"{at}.taxDiscount")
    if d_excl is None:
        if d_incl is None:
            raise ValueError(f"{at}: a discounted line needs discount or lineDiscountExcludeTax")
        if d_tax is None:
            d_excl, d_tax = split_tax_inclusive(d_incl, rate)
        else:
            d_excl = d_incl - d_tax
    if d_tax is None:
        d_tax = d_incl - d_excl if d_incl is not None else tax_for(d_excl, rate)
    return list(unfold_inline_discount(line, discount_amount=d_excl, discount_tax=d_tax))


# --------------------------------------------------------------------------- answers


def duplicate_codes(options: Mapping[str, str]) -> frozenset[str]:
    """:data:`DUPLICATE_CODES` plus the comma-separated option ``duplicate_codes``."""
    return DUPLICATE_CODES | frozenset(comma_list(options.get("duplicate_codes")))


#: Fields of an answer's body that describe an invoice (the echoed request numbers do not).
_INVOICE_FIELDS = ("invoiceNumber", "invoiceCode", "invoiceDate", "invoiceParityCode", "amount", "invoiceUuid")


def _invoice(body: Mapping[str, Any], invoice_type: InvoiceType | None) -> IssuedInvoice | None:
    """The invoice in an answer's body; None when the body describes none. A malformed field is
    recorded raw in ``unreadable`` (the invoice exists; an odd field does not change that)."""
    if all(text_or_none(body.get(field)) is None and not body.get(field) for field in _INVOICE_FIELDS):
        return None
    unreadable: dict[str, str] = {}
    number = text_or_none(body.get("invoiceNumber"))
    if number is None:
        unreadable["invoiceNumber"] = raw_text(body.get("invoiceNumber"))
    issued_on = None
    raw_date = text_or_none(body.get("invoiceDate"))
    if raw_date is not None:
        try:
            issued_on = dt.date.fromisoformat(raw_date.strip()[:10])
        except ValueError:
            unreadable["invoiceDate"] = raw_date
    elif body.get("invoiceDate") not in (None, ""):
        unreadable["invoiceDate"] = raw_text(body.get("invoiceDate"))
    amount = None
    if body.get("amount") not in (None, ""):
        try:
            amount = parse_decimal(body.get("amount"), "amount")
        except ValueError:
            amount = None
        if amount is None:  # not a number (true/false read as absent by parse_decimal)
            unreadable["amount"] = raw_text(body.get("amount"))
    return IssuedInvoice(
        number=(number or "").strip(),
        code=text_or_none(body.get("invoiceCode")),
        issued_on=issued_on,
        amount=amount,
        check_code=text_or_none(body.get("invoiceParityCode")),
        invoice_type=invoice_type,
        channel_invoice_id=text_or_none(body.get("invoiceUuid")),
        unreadable=unreadable,
    )


def interpret_answer(
    status_code: int,
    content: bytes,
    *,
    request_number: str,
    invoice_type: InvoiceType | None = None,
    duplicates: frozenset[str] = DUPLICATE_CODES,
    scrub: Callable[[str], str] = no_scrub,
) -> Outcome:
    """What an HTTP answer to ``serverIssue`` means (the module docstring's table). Never raises."""
    answer = envelope_or_outcome(
        status_code,
        content,
        is_envelope=lambda envelope: isinstance(envelope.get("ok"), bool),
        envelope_name="Xunlian's envelope (no boolean 'ok')",
    )
    if not isinstance(answer, dict):
        return answer
    status = answer.get("status") if isinstance(answer.get("status"), dict) else {}
    code = text_or_none(status.get("returnCode"))
    body = answer.get("body") if isinstance(answer.get("body"), dict) else {}
    echoed = text_or_none(body.get("requisitionApplyNo"))
    if echoed is not None and echoed != request_number:
        return Unknown("the answer is for another request number", raw=content)
    invoice = _invoice(body, invoice_type)

    if answer["ok"]:
        if code is not None and code != OK_CODE:
            return Unknown(f"ok is true but returnCode is {code}", raw=content)
        if invoice is None:
            return Unknown("ok is true but the answer has no invoice number", raw=content)
        return Issued((invoice,), raw=content)
    if code in duplicates:
        if invoice is None:
            return Unknown(f"returnCode {code}: already issued, but the answer does not carry the invoice", raw=content)
        return Issued((invoice,), duplicate=True, raw=content)
    if invoice is not None:
        return Unknown(f"ok is false with returnCode {code} but the answer carries an invoice", raw=content)
    message = text_or_none(status.get("message")) or text_or_none(status.get("description")) or "rejected by Xunlian"
    return Rejected(scrub(message), code=code)


#: What this channel can do (docs/channels.md): the four legacy types, blue and red (a red one needs
#: the blue invoice's number and code); no 数电, no void, no query. De-duplication of
#: ``requisitionApplyNo`` is understood (the duplicate answer) but off unless configured: the real
#: vendor must confirm it per contract.
CAPABILITIES = Capabilities(
    blue=frozenset(INVOICE_TYPE_CODES),
    red=frozenset(INVOICE_TYPE_CODES),
    can_query=False,
    dedupes_request_number=True,
    field_limits={
        **{hub: f"{limit} bytes in GBK (Xunlian {name})" for name, (limit, hub) in HEADER_TEXT_LIMITS.items() if hub},
        **{
            f"lines[].{hub}": f"{limit} bytes in GBK (Xunlian {name})"
            for name, (limit, hub) in LINE_TEXT_LIMITS.items()
            if hub
        },
    },
)


# --------------------------------------------------------------------------- transport


class XunlianChannel:
    """The Xunlian ``serverIssue`` channel (see the module docstring)."""

    CAPABILITIES = CAPABILITIES
    DEDUPES_UNLESS_CONFIGURED = False
    capabilities = CAPABILITIES
    can_query = False

    def __init__(self, name: str, settings: ChannelSettings, session: requests.Session | None = None) -> None:
        self.name = name
        self.settings = settings
        self.dedupes_request_number = bool(settings.dedupes_request_number)
        self.url = settings.base_url.rstrip("/") + ISSUE_PATH
        self.timeout = (settings.connect_timeout_seconds, settings.read_timeout_seconds)
        self.duplicates = duplicate_codes(settings.options)
        # A session passed in is used as it is: its adapters decide retries.
        self.session = session if session is not None else build_post_session(settings)

    def issue(self, application: Application, request_number: str) -> Outcome:
        try:
            payload = to_request(application, request_number, self.settings.options)
        except NotExpressible as error:
            return Rejected(error.reason, code=error.code)
        violations = check_request(payload)
        if violations:
            code = FIELD_TOO_LONG if any(v.code == FIELD_TOO_LONG for v in violations) else TEXT_NOT_GBK
            return Rejected("; ".join(v.message for v in violations), code=code)
        outcome = self._post(payload, request_number, application)
        logger.info(
            "xunlian serverIssue answered",
            extra={"channel": self.name, "request_number": request_number, "outcome": type(outcome).__name__},
        )
        return outcome

    def query(self, application: Application, request_number: str) -> QueryOutcome:
        return Unknown("Xunlian has no query by request number (seed 001 documents only serverIssue)")

    def _post(self, payload: dict[str, Any], request_number: str, application: Application) -> Outcome:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json;charset=UTF-8", "Accept": "application/json"}
        response = exchange(self.session, "POST", self.url, vendor="Xunlian", timeout=self.timeout, data=data,
                            headers=headers)  # fmt: skip
        return read_answer(
            response,
            application,
            self.settings.credentials,
            partial(
                interpret_answer,
                request_number=request_number,
                invoice_type=application.invoice_type,
                duplicates=self.duplicates,
            ),
        )
