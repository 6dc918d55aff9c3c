"""Xunlian (迅联云) ``serverIssue`` simulator: the test oracle for "never issue twice".

A real HTTP server on 127.0.0.1 (standard library only) that plays Xunlian's real-time issuing API
from seed 001 and counts every invoice it issues per request number, so a test can drive the hub
through timeouts, resets and unreadable answers and then assert that exactly one invoice exists.

Start it with :func:`run` (``server = run(); server.base_url; server.shutdown()``) or from a shell
with ``python -m sandbox.xunlian --port 8790``. It binds 127.0.0.1 and nothing else.

Vendor endpoint
---------------
``POST /sco-invoice-legged-biz/tax/output/openapi/serverIssue`` (query string ignored)

The request is validated like the vendor would (seed 001's tables):

- ``Content-Type: application/json`` and a JSON object body, else ``4000``.
- Required: ``requisitionApplyNo`` or ``otherId`` (``otherId`` may be a JSON integer, as in the
  seed's example); ``invoiceTypeCode`` in ``01`` (专票), ``04`` (普票), ``10`` (电子普票),
  ``08`` (电子专票); ``buyerName``; ``buyerTaxId`` for ``01``/``08``; ``sellerName``;
  ``sellerTaxId``; non-empty ``lines``; per line ``itemName``, ``taxRate`` and the amount that
  ``computeWithTax`` selects (``1`` or empty: ``lineAmountIncludeTax``; ``0``:
  ``lineAmountExcludeTax``).
- Every length of the seed's tables. String lengths are **bytes in GBK** (a Chinese character
  counts 2; a character GBK cannot encode is rejected). A ``BigDecimal`` length of *n* with *s*
  decimals is read as at most *n* digits in all, at most *s* of them after the point (trailing
  zeros do not count): amounts 2, unit price and quantity 8, ``taxRate`` 3.
- Amounts are JSON strings or numbers, parsed with ``Decimal`` (never ``float``); ``""`` and
  ``null`` mean absent; ``NaN``/``Infinity`` are rejected.
- Codes: ``specialInvoiceMark`` ``00``/``08``; ``lineAttribute`` ``0``/``2`` (a discounted line,
  ``2``, needs a positive ``discount`` or ``lineDiscountExcludeTax`` per ``computeWithTax``);
  ``zeroTaxRateFlag`` ``1``/``2``/``3``; ``favouredPolicyMark`` ``0``/``1`` (``1`` needs
  ``favouredPolicyName``); ``companyDataResource`` letters and digits; tax numbers 15, 17, 18 or
  20 characters of ``0-9A-Z``; ``0 <= taxRate < 1``.
- Quantity and unit price are both present or both empty; ``|price x quantity - amount| <= 0.01``;
  ``|lineAmountExcludeTax x taxRate - taxAmount| <= 0.06``; header totals within 0.01 of the sum of
  the lines (checked only when no line is a discounted line, whose netting the seed leaves open).
- A red invoice (a negative header total, or negative lines without header totals) needs
  ``blueInvoiceNo`` and ``blueInvoiceCode``.

Every validation failure is a business rejection, nothing issued: HTTP 200,
``{"ok": false, "status": {"returnCode": "4001", "message": "<field>: <what is wrong>; ..."}}``,
each problem naming its field path, e.g. ``lines[0].itemName: 94 bytes in GBK (a Chinese character
counts 2), limit 92, 2 too many``.

A valid request is issued: deterministic ``invoiceCode`` (12 digits: ``0`` + 4 digits derived from
the seller's tax number + 2-digit year + ``00`` + ``invoiceTypeCode`` + ``0``, so every seller has its
own codes as the bureau allocates them), ``invoiceNumber`` (8 digits, numbered from 00000001 per code),
``invoiceDate`` (today in China, UTC+8), ``invoiceParityCode`` (20 digits from a hash), ``invoiceUuid``
(a UUID5), ``docId`` (``ANI`` + yyyymmdd + 6-digit sequence), ``amount`` =
``totalAmountExcludeTax`` (derived from the lines when absent; a JSON number with 2 decimals), and
``requisitionApplyNo`` / ``otherId`` (as a string) echoed, in seed 001's envelope::

    {"body": {...}, "ok": true, "requestNum": null,
     "status": {"description": null, "message": null, "path": null, "returnCode": "200",
                "serviceCode": null, "time": null}}

Return codes (seed 001 documents only ``200``; the others are **the sandbox's own assumption**,
a client should treat any non-200 code it does not know as a rejection):

====== ==========================================================================================
200    issued
4000   the body is not a JSON object / wrong Content-Type
4001   validation failure (field named in ``status.message``)
4002   business rejection injected by the ``reject`` fault
4090   duplicate request number (see below)
====== ==========================================================================================

Duplicates
----------
The request number is ``requisitionApplyNo``, falling back to ``otherId``. With de-duplication on
(the default) a request whose number already has an invoice issues nothing and answers::

    {"ok": false, "body": {<the first invoice issued for that number, same shape as on success>},
     "status": {"returnCode": "4090", "message": "duplicate requisitionApplyNo", ...}}

(``"duplicate otherId"`` when the number came from ``otherId``), so a client can treat it as a
success path (docs/rules.md section 6). The check and the issuing are atomic, so concurrent requests
with one number still issue once. The payload is not compared: the number alone decides. With
de-duplication off, each valid request issues again: the count climbs to 2, which is exactly
what the hub must never cause.

Faults (see :mod:`sandbox.faults`)
----------------------------------
One decision per ``serverIssue`` request, taken after the body is read (a per-number script
needs the number) and before anything else:

- ``latency``: sleep ``latency_ms``, then go on normally (composes with the others).
- ``error_5xx``: answer 500 (a Spring Boot error JSON), 502 or 503 (an nginx HTML page) before
  validating or issuing; nothing issued.
- ``connection_reset``: close the socket with a TCP RST, no answer; nothing issued.
- ``reject``: answer ``ok: false``, returnCode ``4002`` before validating; nothing issued.
- ``timeout_after_issue``: validate, issue and count (or find the duplicate), then hold the
  connection for ``timeout_ms`` and close it with no answer. If validation fails nothing is issued
  and the rejection is answered normally.
- ``malformed``: validate, issue and count (or find the duplicate), then answer HTTP 200 with a
  body that is not valid JSON, shaped like the seed's own example answer (a missing comma after
  ``docId``, curly quotes around ``invoiceNumber``, ``"amount"4570.80`` without a colon). If
  validation fails the rejection is answered normally.
- the wrong results (validate first; a rejection is answered normally): ``wrong_amount`` (the
  answer's ``amount`` and the record's totals 10.00 / 0.60 over the request's), ``wrong_seller``
  (issued for ``faults.OTHER_SELLER_TAX_NUMBER``: the invoice code is that seller's), ``wrong_type``
  (01 <-> 04, 08 <-> 10: the code carries the type issued), ``extra_invoice`` (a second invoice,
  its own number, counted; the answer shows the first: seed 001's body holds one invoice),
  ``reject_but_issue`` (issue and count, answer ``ok: false`` 4002; the same number sent again
  answers 4090 with that invoice). Seed 001's answer carries no seller, buyer or type: the wrong
  ones show in ``GET /_sandbox/issued/<no>`` and in the invoice code.

A scripted entry is consumed by every request carrying its number, whatever becomes of it.

Sandbox endpoints
-----------------
- ``GET /_sandbox/issued`` -> ``{"counts": {"<no>": n}, "total": N, "attempts": {"<no>": n}}``
  (``attempts`` counts every ``serverIssue`` request per number, faulted or not).
- ``GET /_sandbox/issued/<no>`` (URL-encoded) -> ``{"requestNo", "count", "attempts", "invoices"}``,
  each invoice its answer body (``amount`` as a string) plus ``invoiceTypeCode``, ``red``,
  ``issuedAt`` and what the invoice says beyond the answer: ``sellerTaxId``, ``sellerName``,
  ``buyerTaxId``, ``buyerName``, ``totalAmountExcludeTax``, ``totalTaxAmount``, ``blueInvoiceNo``,
  ``blueInvoiceCode`` and ``lines`` (``itemName``, ``lineAttribute``, ``taxRate``,
  ``amountExcludeTax`` and ``taxAmount`` net of the line's discount, ``discountExcludeTax``,
  ``taxDiscount``). An unknown number answers count 0.
- ``GET /_sandbox/config`` / ``POST /_sandbox/config`` with ``{"seed", "rates", "latency_ms",
  "timeout_ms", "dedupe"}`` (any subset; ``rates`` replaces the whole table) -> the config.
- ``GET /_sandbox/faults`` / ``POST /_sandbox/faults`` with ``{"<no>": ["timeout_after_issue",
  "ok"]}`` -> what is left of each number's script.
- ``POST /_sandbox/reset`` -> forget every invoice, attempt and script; config back to defaults.

A bad sandbox request answers 400 ``{"error": "..."}``.

Invoices, attempts and numbering survive a restart of the local run (:class:`XunlianState` is a
:class:`sandbox.base.SavedState`): numbering goes on, so no number is issued twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote, urlsplit

from sandbox import faults
from sandbox.base import HOST, BadRequest, SandboxServer, SavedState, VendorHandler, check_host, china_now

ISSUE_PATH = "/sco-invoice-legged-biz/tax/output/openapi/serverIssue"

CODE_OK = "200"
CODE_BAD_BODY = "4000"
CODE_INVALID = "4001"
CODE_REJECTED = "4002"
#: The sandbox's assumed duplicate-request code: seed 001 does not document one.
CODE_DUPLICATE = "4090"

INVOICE_TYPES = {"01", "04", "10", "08"}
SPECIAL_TYPES = {"01", "08"}

#: Header String fields: limit in GBK bytes (seed 001, 主信息).
HEADER_TEXT: dict[str, int] = {
    "companyDataResource": 36,
    "requisitionApplyNo": 96,
    "otherId": 100,
    "invoiceTypeCode": 2,
    "buyerName": 100,
    "buyerTaxId": 20,
    "buyerAddress": 100,
    "buyerBankAndId": 100,
    "note": 212,
    "sellerName": 100,
    "sellerTaxId": 20,
    "sellerAddress": 100,
    "sellerBankAndId": 100,
    "specialInvoiceMark": 4,
    "receiveRecipient": 10,
    "receiveAddress": 200,
    "receiveMsgPhone": 12,
    "receiveMsgEmail": 64,
    "statementCode": 100,
    "noticeCodeNo": 100,
    "terminalCode": 100,
    "payee": 8,
    "drawer": 20,
    "reviewer": 8,
    "blueInvoiceNo": 8,
    "blueInvoiceCode": 12,
}
#: Header BigDecimal fields: (digits, decimals).
HEADER_DECIMAL: dict[str, tuple[int, int]] = {
    "totalAmountExcludeTax": (13, 2),
    "totalTaxAmount": (12, 2),
    "totalAmountIncludeTax": (14, 2),
}
#: Line String fields: limit in GBK bytes (seed 001, Lines明细信息). The table spells
#: ``StatementLineId``, the example ``statementLineId``: both are limited.
LINE_TEXT: dict[str, int] = {
    "id": 20,
    "itemName": 92,
    "unit": 14,
    "itemModelName": 40,
    "lineAttribute": 2,
    "taxClassificationCode": 19,
    "materialCode": 20,
    "zeroTaxRateFlag": 2,
    "favouredPolicyMark": 2,
    "favouredPolicyName": 500,
    "orderNo": 100,
    "orderLineId": 20,
    "statementCode": 100,
    "StatementLineId": 20,
    "statementLineId": 20,
    "noticeCodeNo": 100,
    "noticeLineId": 20,
}
LINE_DECIMAL: dict[str, tuple[int, int]] = {
    "discount": (12, 2),
    "lineDiscountExcludeTax": (12, 2),
    "taxDiscount": (12, 2),
    "priceExcludeTax": (16, 8),
    "priceIncludeTax": (16, 8),
    "quantity": (16, 8),
    "lineAmountExcludeTax": (12, 2),
    "lineAmountIncludeTax": (12, 2),
    "taxAmount": (12, 2),
    "taxRate": (12, 3),
}

CENT = Decimal("0.01")
AMOUNT_TOLERANCE = Decimal("0.01")
LINE_TAX_TOLERANCE = Decimal("0.06")
_TAX_ID = re.compile(r"[0-9A-Z]+")
_ALNUM = re.compile(r"[0-9A-Za-z]+")
_MAX_BODY = 10 * 1024 * 1024


def gbk_len(text: str) -> int:
    """Length in bytes as Xunlian counts it: GBK, a Chinese character counts 2."""
    return len(text.encode("gbk"))


# -- validation ------------------------------------------------------------------------------------


@dataclass
class Application:
    """What the simulator keeps of a valid request."""

    key: str
    key_field: str
    requisition_apply_no: str | None
    other_id: str | None
    invoice_type: str
    amount: Decimal
    red: bool
    seller_tax_id: str = ""
    seller_name: str = ""
    buyer_tax_id: str = ""
    buyer_name: str = ""
    tax: Decimal = Decimal(0)
    lines: tuple[dict[str, Any], ...] = ()
    blue_invoice_no: str = ""
    blue_invoice_code: str = ""


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, message: str) -> None:
        self.errors.append(message)

    def text(self, obj: Mapping[str, Any], field: str, limit: int, path: str) -> str | None:
        """A String field: None when absent or empty; numbers are taken as their digits."""
        value = obj.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.fail(f"{path}: must be a string, got {type(value).__name__}")
            return None
        text = str(value)
        try:
            size = gbk_len(text)
        except UnicodeEncodeError as exc:
            self.fail(f"{path}: character {text[exc.start]!r} cannot be encoded in GBK")
            return None
        if size > limit:
            self.fail(
                f"{path}: {size} bytes in GBK (a Chinese character counts 2), limit {limit}, {size - limit} too many"
            )
        return text or None

    def decimal(self, obj: Mapping[str, Any], field: str, spec: tuple[int, int], path: str) -> Decimal | None:
        value = obj.get(field)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            self.fail(f"{path}: must be a number or a numeric string, got {type(value).__name__}")
            return None
        try:
            number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
        except InvalidOperation:
            self.fail(f"{path}: not a number: {value!r}")
            return None
        if not number.is_finite():
            self.fail(f"{path}: not a finite number: {value!r}")
            return None
        digits, decimals = spec
        exponent = number.normalize().as_tuple().exponent
        places = max(0, -exponent) if isinstance(exponent, int) else 0
        integer_digits = max(number.adjusted() + 1, 1) if number else 1
        if places > decimals:
            self.fail(f"{path}: {places} decimal places, at most {decimals}")
        elif integer_digits + places > digits:
            self.fail(f"{path}: {integer_digits + places} digits, at most {digits}")
        return number

    def required(self, value: object, path: str) -> None:
        if value is None:
            self.fail(f"{path}: required")

    def code(self, value: str | None, allowed: set[str], path: str) -> None:
        if value is not None and value not in allowed:
            self.fail(f"{path}: {value!r} is not one of {', '.join(sorted(allowed))}")


def request_key(payload: Any) -> tuple[str | None, str | None]:
    """(request number, field it came from): ``requisitionApplyNo``, falling back to ``otherId``."""
    if not isinstance(payload, Mapping):
        return None, None
    for field in ("requisitionApplyNo", "otherId"):
        value = payload.get(field)
        if isinstance(value, str) and value:
            return value, field
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value), field
    return None, None


def validate(payload: Mapping[str, Any]) -> tuple[list[str], Application | None]:
    """Seed 001's rules; returns (problems, application). The application is None on any problem."""
    c = _Checker()
    header_text = {f: c.text(payload, f, limit, f) for f, limit in HEADER_TEXT.items()}
    totals = {f: c.decimal(payload, f, spec, f) for f, spec in HEADER_DECIMAL.items()}

    key, key_field = request_key(payload)
    if key is None:
        c.fail("requisitionApplyNo: required (or otherId)")
    invoice_type = header_text["invoiceTypeCode"]
    c.required(invoice_type, "invoiceTypeCode")
    c.code(invoice_type, INVOICE_TYPES, "invoiceTypeCode")
    c.required(header_text["buyerName"], "buyerName")
    c.required(header_text["sellerName"], "sellerName")
    c.required(header_text["sellerTaxId"], "sellerTaxId")
    if invoice_type in SPECIAL_TYPES:
        c.required(header_text["buyerTaxId"], "buyerTaxId (special invoice)")
    for field in ("buyerTaxId", "sellerTaxId"):
        tax_id = header_text[field]
        if tax_id is not None and (len(tax_id) not in (15, 17, 18, 20) or not _TAX_ID.fullmatch(tax_id)):
            c.fail(f"{field}: {tax_id!r} is not 15, 17, 18 or 20 characters of 0-9 and A-Z")
    source = header_text["companyDataResource"]
    if source is not None and not _ALNUM.fullmatch(source):
        c.fail(f"companyDataResource: {source!r} must be letters or digits only")
    c.code(header_text["specialInvoiceMark"], {"00", "08"}, "specialInvoiceMark")

    with_tax = True
    raw_cwt = payload.get("computeWithTax")
    if raw_cwt not in (None, ""):
        if raw_cwt in (0, 1, "0", "1") and not isinstance(raw_cwt, bool):
            with_tax = int(raw_cwt) == 1
        else:
            c.fail(f"computeWithTax: {raw_cwt!r} is not 0 or 1")

    lines = payload.get("lines")
    line_excl: list[Decimal | None] = []
    line_incl: list[Decimal | None] = []
    line_tax: list[Decimal] = []
    line_names: list[tuple[str, str, Decimal | None, Decimal, Decimal]] = []
    discounted = False
    if not isinstance(lines, list) or not lines:
        c.fail("lines: required, a non-empty list")
        lines = []
    amount_field = "lineAmountIncludeTax" if with_tax else "lineAmountExcludeTax"
    price_field = "priceIncludeTax" if with_tax else "priceExcludeTax"
    discount_field = "discount" if with_tax else "lineDiscountExcludeTax"
    for i, line in enumerate(lines):
        at = f"lines[{i}]"
        if not isinstance(line, Mapping):
            c.fail(f"{at}: must be an object")
            continue
        text = {f: c.text(line, f, limit, f"{at}.{f}") for f, limit in LINE_TEXT.items()}
        num = {f: c.decimal(line, f, spec, f"{at}.{f}") for f, spec in LINE_DECIMAL.items()}
        c.required(text["itemName"], f"{at}.itemName")
        rate = num["taxRate"]
        c.required(rate, f"{at}.taxRate")
        if rate is not None and not 0 <= rate < 1:
            c.fail(f"{at}.taxRate: {rate} is not in [0, 1)")
        amount = num[amount_field]
        if amount is None:
            c.fail(f"{at}.{amount_field}: required (computeWithTax={int(with_tax)})")
        attribute = text["lineAttribute"]
        c.code(attribute, {"0", "2"}, f"{at}.lineAttribute")
        if attribute == "2":
            discounted = True
            discount = num[discount_field]
            if discount is None or discount <= 0:
                c.fail(f"{at}.{discount_field}: a discounted line (lineAttribute 2) needs a positive discount")
        c.code(text["zeroTaxRateFlag"], {"1", "2", "3"}, f"{at}.zeroTaxRateFlag")
        c.code(text["favouredPolicyMark"], {"0", "1"}, f"{at}.favouredPolicyMark")
        if text["favouredPolicyMark"] == "1":
            c.required(text["favouredPolicyName"], f"{at}.favouredPolicyName (favouredPolicyMark 1)")
        quantity = num["quantity"]
        any_price = num["priceIncludeTax"] is not None or num["priceExcludeTax"] is not None
        if quantity is not None and num[price_field] is None:
            c.fail(f"{at}.{price_field}: required with quantity (computeWithTax={int(with_tax)})")
        if quantity is None and any_price:
            c.fail(f"{at}.quantity: unit price and quantity are both present or both empty")
        price = num[price_field]
        if quantity is not None and price is not None and amount is not None:
            product = price * quantity
            if abs(product - amount) > AMOUNT_TOLERANCE:
                c.fail(
                    f"{at}: {price_field} x quantity = {product} differs from {amount_field} {amount} by more than 0.01"
                )
        excl, tax = num["lineAmountExcludeTax"], num["taxAmount"]
        if excl is not None and tax is not None and rate is not None:
            expected = excl * rate
            if abs(expected - tax) > LINE_TAX_TOLERANCE:
                c.fail(
                    f"{at}.taxAmount: {tax} differs from lineAmountExcludeTax x taxRate = {expected} by more than 0.06"
                )
        incl = num["lineAmountIncludeTax"]
        if excl is None and incl is not None and rate is not None and 0 <= rate < 1:
            excl = (incl / (1 + rate)).quantize(CENT, rounding=ROUND_HALF_UP)
        line_excl.append(excl)
        line_incl.append(incl)
        if tax is None and excl is not None and incl is not None:
            tax = incl - excl
        # A discounted line carries its discount (positive): the invoice shows the line net of it.
        d_excl, d_tax = num["lineDiscountExcludeTax"], num["taxDiscount"]
        d_incl = num["discount"]
        if d_excl is None and d_incl is not None and rate is not None and 0 <= rate < 1:
            d_excl = (d_incl / (1 + rate)).quantize(CENT, rounding=ROUND_HALF_UP)
        if d_tax is None and d_incl is not None and d_excl is not None:
            d_tax = d_incl - d_excl
        line_tax.append((tax if tax is not None else Decimal(0)) - (d_tax or Decimal(0)))
        line_names.append((text["itemName"] or "", attribute or "0", rate, d_excl or Decimal(0), d_tax or Decimal(0)))

    if lines and not discounted:
        for total_field, values in (
            ("totalAmountExcludeTax", line_excl),
            ("totalAmountIncludeTax", line_incl),
        ):
            total = totals[total_field]
            if total is not None and all(v is not None for v in values):
                line_sum = sum(values, Decimal(0))
                if abs(line_sum - total) > AMOUNT_TOLERANCE:
                    c.fail(f"{total_field}: {total} differs from the sum of the lines {line_sum} by more than 0.01")

    given_totals = [t for t in totals.values() if t is not None]
    if given_totals:
        red = any(t < 0 for t in given_totals)
    else:
        red = sum((v for v in line_excl if v is not None), Decimal(0)) < 0
    if red:
        c.required(header_text["blueInvoiceNo"], "blueInvoiceNo (red invoice)")
        c.required(header_text["blueInvoiceCode"], "blueInvoiceCode (red invoice)")

    if c.errors or key is None or key_field is None or invoice_type is None:
        return c.errors, None
    amount = totals["totalAmountExcludeTax"]
    if amount is None:
        amount = sum((v for v in line_excl if v is not None), Decimal(0))
    other_id = payload.get("otherId")
    tax_total = totals["totalTaxAmount"]
    if tax_total is None:
        tax_total = sum(line_tax, Decimal(0))
    recorded = tuple(
        {
            "itemName": name,
            "lineAttribute": attribute,
            "taxRate": f"{rate:f}" if rate is not None else "",
            "amountExcludeTax": f"{((excl or Decimal(0)) - d_excl).quantize(CENT, rounding=ROUND_HALF_UP):f}",
            "taxAmount": f"{line_tax_value.quantize(CENT, rounding=ROUND_HALF_UP):f}",
            "discountExcludeTax": f"{d_excl:f}",
            "taxDiscount": f"{d_tax:f}",
        }
        for (name, attribute, rate, d_excl, d_tax), excl, line_tax_value in zip(
            line_names, line_excl, line_tax, strict=True
        )
    )
    return [], Application(
        key=key,
        key_field=key_field,
        requisition_apply_no=header_text["requisitionApplyNo"],
        other_id=None if other_id in (None, "") else str(other_id),
        invoice_type=invoice_type,
        amount=amount.quantize(CENT, rounding=ROUND_HALF_UP),
        red=red,
        seller_tax_id=header_text["sellerTaxId"] or "",
        seller_name=header_text["sellerName"] or "",
        buyer_tax_id=header_text["buyerTaxId"] or "",
        buyer_name=header_text["buyerName"] or "",
        tax=tax_total.quantize(CENT, rounding=ROUND_HALF_UP),
        lines=recorded,
        blue_invoice_no=header_text["blueInvoiceNo"] or "",
        blue_invoice_code=header_text["blueInvoiceCode"] or "",
    )


# -- state -----------------------------------------------------------------------------------------


@dataclass
class Issued:
    body: dict[str, Any]  # the answer's body; amount is a Decimal
    invoice_type: str
    red: bool
    issued_at: str
    record: dict[str, Any] = dataclasses.field(default_factory=dict)  # what the invoice says beyond the answer

    def public(self) -> dict[str, Any]:
        return {
            **self.body,
            "amount": str(self.body["amount"]),
            "invoiceTypeCode": self.invoice_type,
            "red": self.red,
            "issuedAt": self.issued_at,
            **self.record,
        }


#: ``wrong_type``: special <-> normal of the same medium (seed 001 codes).
OTHER_TYPES = {"01": "04", "04": "01", "08": "10", "10": "08"}


class XunlianState(SavedState):
    """Invoices issued per request number, attempts, numbering; one lock guards it all (saved across a
    restart: numbering goes on, so no invoice number is issued twice)."""

    saved_fields = ("_issued", "_attempts", "_numbers", "_sequence")
    saved_types = (Issued,)

    def __init__(self, dedupe: bool = True) -> None:
        self._lock = threading.Lock()
        self._default_dedupe = dedupe
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.dedupe = self._default_dedupe
            self._issued: dict[str, list[Issued]] = {}
            self._attempts: dict[str, int] = {}
            self._numbers: dict[str, int] = {}
            self._sequence = 0

    def set_dedupe(self, on: bool) -> None:
        with self._lock:
            self.dedupe = on

    def note_attempt(self, key: str | None) -> None:
        if key is None:
            return
        with self._lock:
            self._attempts[key] = self._attempts.get(key, 0) + 1

    def issue(self, app: Application, fault: str | None = None) -> tuple[Issued, bool]:
        """Issue for ``app`` (as a wrong-result ``fault`` says, see :mod:`sandbox.faults`), or return
        the existing invoice: (invoice, duplicate)."""
        with self._lock:
            existing = self._issued.get(app.key)
            if existing and self.dedupe:
                return existing[0], True
            issued = self._new(app, fault)
            self._issued.setdefault(app.key, []).append(issued)
            if fault == faults.EXTRA_INVOICE:
                self._issued[app.key].append(self._new(app, None))
            return issued, False

    def _new(self, app: Application, fault: str | None) -> Issued:
        now = china_now()
        self._sequence += 1
        seller_tax_id, seller_name = app.seller_tax_id, app.seller_name
        if fault == faults.WRONG_SELLER:
            seller_tax_id, seller_name = faults.OTHER_SELLER_TAX_NUMBER, faults.OTHER_SELLER_NAME
        invoice_type = app.invoice_type
        if fault == faults.WRONG_TYPE:
            invoice_type = faults.other_type(invoice_type, OTHER_TYPES)
        amount, tax = app.amount, app.tax
        if fault == faults.WRONG_AMOUNT:
            amount, tax = amount + faults.WRONG_AMOUNT_DELTA, tax + faults.WRONG_TAX_DELTA
        # Like the bureau's allocation: each seller has its own invoice codes (and so numbers).
        seller_part = int.from_bytes(hashlib.sha256(seller_tax_id.encode()).digest()[:4], "big") % 10**4
        code = f"0{seller_part:04d}{now.year % 100:02d}00{invoice_type}0"
        number = self._numbers.get(code, 0) + 1
        self._numbers[code] = number
        invoice_number = f"{number:08d}"
        seed = f"{code}|{invoice_number}|{app.key}".encode()
        parity = f"{int.from_bytes(hashlib.sha256(seed).digest()[:10], 'big') % 10**20:020d}"
        body = {
            "requisitionApplyNo": app.requisition_apply_no,
            "otherId": app.other_id,
            "invoiceUuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"xunlian-sandbox:{code}:{invoice_number}")),
            "docId": f"ANI{now:%Y%m%d}{self._sequence:06d}",
            "invoiceCode": code,
            "invoiceNumber": invoice_number,
            "invoiceDate": now.date().isoformat(),
            "invoiceParityCode": parity,
            "amount": amount,
        }
        lines = [dict(line) for line in app.lines]
        if fault == faults.WRONG_AMOUNT and lines:
            first = lines[0]
            first["amountExcludeTax"] = f"{Decimal(first['amountExcludeTax']) + faults.WRONG_AMOUNT_DELTA:f}"
            first["taxAmount"] = f"{Decimal(first['taxAmount']) + faults.WRONG_TAX_DELTA:f}"
        record = {
            "sellerTaxId": seller_tax_id,
            "sellerName": seller_name,
            "buyerTaxId": app.buyer_tax_id,
            "buyerName": app.buyer_name,
            "totalAmountExcludeTax": f"{amount:f}",
            "totalTaxAmount": f"{tax:f}",
            "blueInvoiceNo": app.blue_invoice_no,
            "blueInvoiceCode": app.blue_invoice_code,
            "lines": lines,
        }
        return Issued(body, invoice_type, app.red, now.isoformat(timespec="seconds"), record)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            counts = {key: len(items) for key, items in self._issued.items()}
            return {"counts": counts, "total": sum(counts.values()), "attempts": dict(self._attempts)}

    def for_key(self, key: str) -> dict[str, Any]:
        with self._lock:
            items = list(self._issued.get(key, []))
            attempts = self._attempts.get(key, 0)
        return {
            "requestNo": key,
            "count": len(items),
            "attempts": attempts,
            "invoices": [item.public() for item in items],
        }


# -- wire format -----------------------------------------------------------------------------------

_DECIMAL_MARK = "\x00decimal:"
_DECIMAL_PLACEHOLDER = re.compile(r'"\\u0000decimal:(-?[0-9]+(?:\.[0-9]+)?)"')


def _to_json(obj: Any) -> str:
    """JSON with Decimal written as a JSON number, digit for digit (never through float)."""

    def mark(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"{_DECIMAL_MARK}{value:f}"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(obj), ensure_ascii=False)
    return _DECIMAL_PLACEHOLDER.sub(r"\1", text)


def envelope(ok: bool, code: str, message: str | None = None, body: Any = None) -> dict[str, Any]:
    """Seed 001's answer envelope."""
    return {
        "body": body,
        "ok": ok,
        "requestNum": None,
        "status": {
            "description": None,
            "message": message,
            "path": None if ok else ISSUE_PATH,
            "returnCode": code,
            "serviceCode": None,
            "time": None if ok else int(time.time() * 1000),
        },
    }


def malformed_answer(body: Mapping[str, Any]) -> str:
    """The seed's example answer, flaws included, filled with this invoice."""

    def s(value: Any) -> str:
        return "null" if value is None else f'"{value}"'

    return (
        "{\n"
        '  "body":{\n'
        f'        "requisitionApplyNo":{s(body["requisitionApplyNo"])},\n'
        f'        "otherId":{s(body["otherId"])},\n'
        f'        "invoiceUuid":{s(body["invoiceUuid"])},\n'
        f'        "docId":{s(body["docId"])}\n'
        f'        "invoiceCode":{s(body["invoiceCode"])},\n'
        f'        "invoiceNumber":\u201c{body["invoiceNumber"]}\u201d,\n'
        f'        "invoiceDate":{s(body["invoiceDate"])},\n'
        f'        "invoiceParityCode":{s(body["invoiceParityCode"])},\n'
        f'        "amount"{body["amount"]:f}\n'
        "  },\n"
        '  "ok": true,\n'
        '  "requestNum": null,\n'
        '  "status": {\n'
        '    "description": null,\n'
        '    "message": null,\n'
        '    "path": null,\n'
        '    "returnCode": "200",\n'
        '    "serviceCode": null,\n'
        '    "time": null\n'
        "  }\n"
        "}\n"
    )


# -- HTTP ------------------------------------------------------------------------------------------


class _Handler(VendorHandler):
    server: XunlianServer
    max_body = _MAX_BODY

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, _to_json(obj))

    def _path(self) -> str:
        return urlsplit(self.path).path

    # -- routing

    def do_GET(self) -> None:
        path = self._path()
        state = self.server.state
        if self._control_get(path):
            return
        if path == "/_sandbox/issued":
            self._send_json(200, state.summary())
        elif path.startswith("/_sandbox/issued/"):
            self._send_json(200, state.for_key(unquote(path.removeprefix("/_sandbox/issued/"))))
        elif path == ISSUE_PATH:
            self._send_json(405, {"error": "use POST"})
        else:
            self._send_json(404, {"error": f"no such path: {path}"})

    def do_POST(self) -> None:
        path = self._path()
        try:
            raw = self._read_body()
        except BadRequest as exc:
            if path == ISSUE_PATH:
                self._send_json(200, envelope(False, CODE_BAD_BODY, str(exc)))
            else:
                self._send_json(400, {"error": str(exc)})
            return
        if path == ISSUE_PATH:
            self._issue(raw)
            return
        try:
            answer = self._control_post(path, raw)
            if answer is None:
                self._send_json(404, {"error": f"no such path: {path}"})
            else:
                self._send_json(200, answer)
        except (faults.FaultConfigError, BadRequest) as exc:
            self._send_json(400, {"error": str(exc)})

    # -- serverIssue

    def _issue(self, raw: bytes) -> None:
        server = self.server
        payload: Any = None
        parse_error: str | None = None
        content_type = self.headers.get("Content-Type", "")
        if not content_type.lower().startswith("application/json"):
            parse_error = f"Content-Type must be application/json, got {content_type!r}"
        else:
            try:
                payload = json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_no_constant)
            except (UnicodeDecodeError, ValueError) as exc:
                parse_error = f"body is not valid JSON: {exc}"
            else:
                if not isinstance(payload, dict):
                    parse_error = "body must be a JSON object"
        key, _ = request_key(payload)
        note = payload.get("note") if isinstance(payload, dict) else None
        decision = server.injector.decide(key, *([f"note:{note}"] if isinstance(note, str) and note else []))
        server.state.note_attempt(key)
        if decision.latency:
            server.stopping.wait(server.injector.latency_seconds)

        if decision.fault == faults.ERROR_5XX:
            self._answer_5xx(decision.status or 500, ISSUE_PATH)
            return
        if decision.fault == faults.CONNECTION_RESET:
            self.close_connection = True
            faults.abort_connection(self.connection, self.rfile)
            return
        if decision.fault == faults.REJECT:
            self._send_json(200, envelope(False, CODE_REJECTED, "开票失败: 税控设备繁忙 (sandbox reject fault)"))
            return
        if parse_error is not None:
            self._send_json(200, envelope(False, CODE_BAD_BODY, parse_error))
            return
        errors, app = validate(payload)
        if app is None:
            self._send_json(200, envelope(False, CODE_INVALID, "; ".join(errors)))
            return

        issued, duplicate = server.state.issue(app, decision.fault if decision.wrong_result else None)
        if decision.fault == faults.REJECT_BUT_ISSUE:
            self._send_json(200, envelope(False, CODE_REJECTED, "开票失败: 税控设备繁忙 (sandbox reject fault)"))
            return
        if decision.fault == faults.TIMEOUT_AFTER_ISSUE:
            self.close_connection = True
            server.stopping.wait(server.injector.timeout_seconds)
            return  # the server closes the connection without a byte of answer
        if decision.fault == faults.MALFORMED:
            self._send(200, malformed_answer(issued.body))
            return
        if duplicate:
            self._send_json(200, envelope(False, CODE_DUPLICATE, f"duplicate {app.key_field}", issued.body))
        else:
            self._send_json(200, envelope(True, CODE_OK, None, issued.body))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


class XunlianServer(SandboxServer):
    """The simulator; :func:`run` builds and starts one."""

    thread_name = "xunlian-sandbox"

    def __init__(self, port: int = 0, *, dedupe: bool = True, seed: int = 0, verbose: bool = False) -> None:
        self.state = XunlianState(dedupe=dedupe)
        self.injector = faults.FaultInjector(seed=seed)
        super().__init__(port, _Handler, verbose=verbose)

    @property
    def issue_url(self) -> str:
        return self.base_url + ISSUE_PATH

    def config(self) -> dict[str, Any]:
        return {**self.injector.snapshot(), "dedupe": self.state.dedupe}

    def configure(self, config: Mapping[str, Any]) -> dict[str, Any]:
        rest = dict(config)
        dedupe = rest.pop("dedupe", None)
        if dedupe is not None and not isinstance(dedupe, bool):
            raise faults.FaultConfigError(f"dedupe must be true or false, got {dedupe!r}")
        self.injector.configure(rest)
        if dedupe is not None:
            self.state.set_dedupe(dedupe)
        return self.config()

    def reset(self) -> None:
        self.state.reset()
        self.injector.reset()


def run(host: str = HOST, port: int = 0, *, dedupe: bool = True, seed: int = 0, verbose: bool = False) -> XunlianServer:
    """Start a simulator in a daemon thread; ``port=0`` picks a free port (see ``.base_url``)."""
    check_host(host)
    return XunlianServer(port, dedupe=dedupe, seed=seed, verbose=verbose).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.xunlian", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--seed", type=int, default=0, help="fault RNG seed")
    parser.add_argument("--no-dedupe", action="store_true", help="issue again for a known request number")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    server = XunlianServer(args.port, dedupe=not args.no_dedupe, seed=args.seed, verbose=not args.quiet)
    print(f"xunlian sandbox on {server.base_url} (serverIssue: {server.issue_url})", flush=True)
    server.serve_in_foreground()


if __name__ == "__main__":
    main()
