"""Kingdee invoice cloud (金蝶发票云) ``openApi`` simulator: bills in, invoices out, counted.

A real HTTP server on 127.0.0.1 (standard library only) that plays Kingdee's bill interfaces through
``POST /kapi/app/sim/openApi?access_token=...`` (seed 002) and counts every invoice it issues per
bill, so a test can drive the hub's push and poll paths through faults and then assert that each
bill was issued once.

Start it with :func:`run` (``server = run(access_token="t"); server.base_url; server.shutdown()``)
or from a shell with ``python -m sandbox.kingdee --port 8791``. It binds 127.0.0.1 and nothing else.

Vendor endpoint
---------------
``POST /kapi/app/sim/openApi?access_token=<token>`` with ``{"requestId", "businessSystemCode",
"interfaceCode", "data"}``; ``data`` is base64 of the interface's JSON object (strict base64; the
sandbox has no encryption). Every answer is HTTP 200 ``{"data": <base64 JSON or null>,
"errorCode": "0" | <code>, "errorMsg": "...", "success": true | false}``.

==================  ============================================================================
``0``               success
``AUTH_FAILED``     ``access_token`` missing or not the configured one (nothing is looked at)
``PARAM_ERROR``     not a JSON object, no ``businessSystemCode``, ``data`` not base64 of a JSON
                    object, query without ``sellerTaxpayerId`` / ``serialNo``
``INTERFACE_NOT_FOUND``  an ``interfaceCode`` other than the two below
``BILL_INVALID``    a pushed bill fails validation (``errorMsg`` names each field)
``BILL_EXISTS``     a bill with that ``billNo`` is already stored: nothing stored again
``BILL_NOT_FOUND``  a query for a bill the sandbox does not hold (with ``not_found`` "error")
``SANDBOX_REJECT``  the ``reject`` fault
==================  ============================================================================

Only ``0`` and the shape of ``BILL.INVOICE.QUERY`` come from the seed; the codes and ``BILL.PUSH``
are **the sandbox's assumptions**, mirrored by ``fapiao_hub.channels.kingdee``.

``BILL.PUSH`` (data: one bill, field names as in the query's answer, see the channel's docstring):
required ``billNo``, ``sellerTaxpayerId`` (15-20 characters of 0-9A-Z), ``invoiceType`` (004, 007,
026, 028, 01, 02), ``buyerName``, ``buyerTaxpayerId`` for special types (004, 028, 01), a non-empty
``billDetail`` with per line ``goodsName``, ``taxRate`` in [0, 1), ``amount`` and ``taxAmount``
(2 decimals, numbers or strings, never through float), ``lineProperty`` 0/1/2 (a 1 line follows a
2 line, has a negative amount not above it); ``|amount x taxRate - taxAmount| <= 0.06`` per line,
header ``totalAmount`` / ``totalTaxAmount`` within 0.01 of the lines when given; a red bill
(negative total) needs ``originalInvoiceNumber``. A valid new bill is stored and answered
``success: true`` with ``data`` ``{"billNo"}``; a known ``billNo`` answers ``BILL_EXISTS`` (with
the same ``data``), whatever the payload: the sandbox always de-duplicates by ``billNo``.

``BILL.INVOICE.QUERY`` (data ``{"sellerTaxpayerId", "serialNo"}``; ``serialNo`` is the bill
number): a bill of that seller is answered ``[{"billNo", "invoiceList": [...]}]``. The list is
empty until ``issue_delay_ms`` has passed since the bill arrived (the delay in force when asked
counts, so setting it to 0 issues pending bills at the next query); then the bill is issued once:
``split_into`` invoices (``splitOrMergeFlag`` "1" when more than one, else "0"), each line's
amount and tax divided in cents so the invoices add up exactly to the bill, with the seed's
fields (51 per invoice plus ``goods``): deterministic ``invoiceCode`` (10 digits for paper, 12
for electronic, empty for 数电) and ``invoiceNumber`` (8 digits per code; 20 for 数电),
``invoiceDate`` (today's midnight in Asia/Shanghai, ms epoch), ``checkCode`` (20 digits for
normal invoices), ``canRedAmount`` / ``canRedTaxAmount`` equal to the invoice's own totals (0 on a
red invoice), ``invoiceFileUrl`` (a PDF this server serves, electronic types only). A bill that
is not held: with ``auto`` on it is created then, as if it had reached Kingdee out of band (one
line, 100.00 + 6.00 at 6 %, type 026, for that seller); otherwise ``BILL_NOT_FOUND``
(``not_found`` "error", the default) or ``success: true`` with ``data`` ``[]`` (``not_found``
"empty").

Faults (:mod:`sandbox.faults`)
------------------------------
One decision per openApi request, keyed by the bill number (``billNo`` or ``serialNo``), taken
once the body is decoded: ``latency`` (sleep, then go on), ``error_5xx`` (500 JSON or 502/503
nginx page before anything), ``connection_reset`` (RST, nothing done), ``reject``
(``SANDBOX_REJECT``, nothing done), ``timeout_after_issue`` (do the work - store the bill, or
answer the query, issuing if due - then hold the connection ``timeout_ms`` and close it without an
answer), ``malformed`` (do the work, then answer ``success: true`` with a ``data`` that is not
valid base64). A per-bill script is consumed by pushes and queries alike.

The wrong results, carried by a ``BILL.PUSH`` (a valid new bill) or a query of a held bill not yet
issued: the bill's invoices are issued so that ``wrong_amount`` puts the first
invoice's ``totalAmount`` / ``totalTaxAmount`` (and its first goods line, ``canRed*``) 10.00 / 0.60
over the bill's, ``wrong_seller`` makes every invoice ``faults.OTHER_SELLER_TAX_NUMBER``'s,
``wrong_type`` swaps special and normal (004 <-> 007, 026 <-> 028, 01 <-> 02), ``extra_invoice``
adds a second, different invoice for the whole bill (its own number; counted); the answer itself is
normal. A bill already issued is answered as it was issued, whatever fault a later request
carries: a switch applies to what is issued while it is on. ``reject_but_issue`` issues the bill
at once (whatever ``issue_delay_ms``), counts it, and answers ``SANDBOX_REJECT``; later queries answer the invoices.

Sandbox endpoints
-----------------
- ``GET /_sandbox/issued`` -> ``{"counts": {"<billNo>": invoices issued}, "total": N,
  "bills": {"<billNo>": "push" | "out_of_band" | "auto" | "preload"}, "pushes": {"<billNo>": n}}``
  (``pushes`` counts every ``BILL.PUSH`` request that reached the bill logic, duplicates included).
- ``GET /_sandbox/bills/<billNo>`` -> ``{"billNo", "stored", "source", "pushes", "count", "bill",
  "invoices"}``.
- ``POST /_sandbox/bills`` with a bill (``BILL.PUSH`` data) or a list of bills: stored as reaching
  Kingdee out of band (validated; a known number is a 400).
- ``POST /_sandbox/preload`` with the decoded ``data`` of a query answer (``[{"billNo",
  "invoiceList"}]``, e.g. seed 002's example): those invoices are held as issued, answered as given.
- ``GET /_sandbox/files/<name>.pdf``: a small PDF (the ``invoiceFileUrl`` target).
- ``GET`` / ``POST /_sandbox/config`` with ``{"seed", "rates", "latency_ms", "timeout_ms",
  "access_token", "issue_delay_ms", "split_into", "auto", "not_found"}`` (any subset).
- ``GET`` / ``POST /_sandbox/faults`` with ``{"<billNo>": ["malformed", "ok"]}``.
- ``POST /_sandbox/reset`` -> forget every bill, invoice, push and script; config back to the
  values :func:`run` was given.

A bad sandbox request answers 400 ``{"error": "..."}``.

Bills, invoices, pushes and numbering survive a restart of the local run (:class:`KingdeeState` is a
:class:`sandbox.base.SavedState`; a bill's age counts the time stopped); fault switches and settings do not.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import datetime as dt
import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sandbox import faults
from sandbox.base import (
    HOST,
    MONOTONIC,
    BadRequest,
    SandboxServer,
    SavedState,
    VendorHandler,
    check_host,
    china_midnight,
    china_now,
)

API_PATH = "/kapi/app/sim/openApi"
DEFAULT_ACCESS_TOKEN = "kingdee-sandbox-token"  # noqa: S105 - a local simulator's well-known token

BILL_PUSH = "BILL.PUSH"
BILL_INVOICE_QUERY = "BILL.INVOICE.QUERY"

CODE_OK = "0"
CODE_AUTH = "AUTH_FAILED"
CODE_PARAM = "PARAM_ERROR"
CODE_INTERFACE = "INTERFACE_NOT_FOUND"
CODE_INVALID = "BILL_INVALID"
CODE_EXISTS = "BILL_EXISTS"
CODE_NOT_FOUND = "BILL_NOT_FOUND"
CODE_REJECTED = "SANDBOX_REJECT"

PAPER_TYPES = {"004", "007"}
#: ``wrong_type``: special <-> normal of the same medium.
OTHER_TYPES = {"004": "007", "007": "004", "026": "028", "028": "026", "01": "02", "02": "01"}
ELECTRONIC_TYPES = {"026", "028"}
DIGITAL_TYPES = {"01", "02"}
INVOICE_TYPES = PAPER_TYPES | ELECTRONIC_TYPES | DIGITAL_TYPES
SPECIAL_TYPES = {"004", "028", "01"}

CENT = Decimal("0.01")
AMOUNT_TOLERANCE = Decimal("0.01")
LINE_TAX_TOLERANCE = Decimal("0.06")
_TEN = Decimal("1E-10")
_EIGHT = Decimal("1E-8")
_TAX_ID = re.compile(r"[0-9A-Z]{15,20}")
_MAX_BODY = 8 * 1024 * 1024
_MAX_SPLIT = 50
_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 100]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
#: What ``auto`` creates for a bill it has never seen (seller and number from the query).
AUTO_BILL: dict[str, Any] = {
    "invoiceType": "026",
    "buyerName": "沙箱购方有限公司",
    "sellerName": "沙箱销方有限公司",
    "remark": "",
    "billDetail": [
        {
            "goodsName": "*信息技术服务*软件服务费",
            "revenueCode": "3040201010000000000",
            "units": "项",
            "quantity": "1",
            "price": "100",
            "amount": Decimal("100.00"),
            "taxAmount": Decimal("6.00"),
            "taxRate": "0.06",
            "lineProperty": 0,
        }
    ],
}


# -- JSON ------------------------------------------------------------------------------------------


_DECIMAL_MARK = "\x00decimal:"
_DECIMAL_PLACEHOLDER = re.compile(r'"\\u0000decimal:(-?[0-9]+(?:\.[0-9]+)?)"')


def _dumps(value: Any) -> str:
    """Compact JSON with every Decimal written as a JSON number, digit for digit (never via float)."""

    def mark(item: Any) -> Any:
        if isinstance(item, Decimal):
            return f"{_DECIMAL_MARK}{item:f}"
        if isinstance(item, dict):
            return {k: mark(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [mark(v) for v in item]
        return item

    text = json.dumps(mark(value), ensure_ascii=False, separators=(",", ":"))
    return _DECIMAL_PLACEHOLDER.sub(r"\1", text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _loads(raw: bytes | str) -> Any:
    return json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)


def encode_data(value: Any) -> str:
    """The openApi ``data`` encoding: base64 of compact UTF-8 JSON."""
    return base64.b64encode(_dumps(value).encode("utf-8")).decode("ascii")


def decode_data(text: Any) -> Any:
    """Strict: raises ValueError unless ``text`` is base64 of UTF-8 JSON."""
    if not isinstance(text, str):
        raise ValueError("data must be base64 text")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError(f"data is not valid base64: {exc}") from None
    try:
        return _loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"data is not JSON once decoded: {exc}") from None


def answer(success: bool, code: str, message: str = "", data: Any = None) -> dict[str, Any]:
    return {
        "data": None if data is None else encode_data(data),
        "errorCode": code,
        "errorMsg": message,
        "success": success,
    }


# -- bills -----------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        text = str(value).strip()
        return text or None
    return None


def _decimal(value: Any) -> Decimal | None:
    """A number or numeric string (never float); None when absent or empty; ValueError otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, Decimal | int):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("not a number") from None
    else:
        raise ValueError("not a number")
    if not number.is_finite():
        raise ValueError("not a finite number")
    return number


class _Check:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, message: str) -> None:
        self.errors.append(message)

    def number(self, obj: Mapping[str, Any], name: str, at: str, *, places: int | None = None) -> Decimal | None:
        try:
            value = _decimal(obj.get(name))
        except ValueError as exc:
            self.fail(f"{at}{name}: {exc}")
            return None
        if value is not None and places is not None:
            exponent = value.normalize().as_tuple().exponent
            if isinstance(exponent, int) and -exponent > places:
                self.fail(f"{at}{name}: {value} has more than {places} decimal places")
        return value


def validate_bill(bill: Any) -> list[str]:
    """The problems of a ``BILL.PUSH`` bill (empty: valid), each naming its field."""
    if not isinstance(bill, dict):
        return ["data: must be a JSON object (one bill)"]
    c = _Check()
    if _text(bill.get("billNo")) is None:
        c.fail("billNo: required")
    elif len(str(bill["billNo"])) > 64:
        c.fail("billNo: longer than 64 characters")
    seller = _text(bill.get("sellerTaxpayerId"))
    if seller is None:
        c.fail("sellerTaxpayerId: required")
    elif not _TAX_ID.fullmatch(seller):
        c.fail("sellerTaxpayerId: not 15-20 characters of 0-9 and A-Z")
    invoice_type = _text(bill.get("invoiceType"))
    if invoice_type not in INVOICE_TYPES:
        c.fail(f"invoiceType: {invoice_type!r} is not one of {', '.join(sorted(INVOICE_TYPES))}")
    if _text(bill.get("buyerName")) is None:
        c.fail("buyerName: required")
    if invoice_type in SPECIAL_TYPES and _text(bill.get("buyerTaxpayerId")) is None:
        c.fail("buyerTaxpayerId: required on a special invoice")
    lines = bill.get("billDetail")
    sum_amount = sum_tax = Decimal(0)
    if not isinstance(lines, list) or not lines:
        c.fail("billDetail: required, a non-empty list")
        lines = []
    previous: tuple[str, Decimal | None] | None = None
    for i, line in enumerate(lines):
        at = f"billDetail[{i}]."
        if not isinstance(line, dict):
            c.fail(f"billDetail[{i}]: must be an object")
            previous = None
            continue
        if _text(line.get("goodsName")) is None:
            c.fail(f"{at}goodsName: required")
        rate = c.number(line, "taxRate", at)
        amount = c.number(line, "amount", at, places=2)
        tax = c.number(line, "taxAmount", at, places=2)
        if rate is None:
            c.fail(f"{at}taxRate: required")
        elif not 0 <= rate < 1:
            c.fail(f"{at}taxRate: {rate} is not in [0, 1)")
        if amount is None:
            c.fail(f"{at}amount: required")
        if tax is None:
            c.fail(f"{at}taxAmount: required")
        if amount is not None and tax is not None:
            sum_amount += amount
            sum_tax += tax
            if rate is not None and abs(amount * rate - tax) > LINE_TAX_TOLERANCE:
                c.fail(f"{at}taxAmount: {tax} differs from amount x taxRate = {amount * rate} by more than 0.06")
        nature = _text(line.get("lineProperty")) or "0"
        if nature not in ("0", "1", "2"):
            c.fail(f"{at}lineProperty: {nature!r} is not 0, 1 or 2")
        if nature == "1":
            if previous is None or previous[0] != "2":
                c.fail(f"{at}lineProperty: a discount line (1) must follow a discounted line (2)")
            elif amount is not None and (amount >= 0 or (previous[1] is not None and -amount > previous[1])):
                c.fail(f"{at}amount: a discount line is negative and not above its discounted line")
        previous = (nature, amount)
    for name, line_sum in (("totalAmount", sum_amount), ("totalTaxAmount", sum_tax)):
        header = c.number(bill, name, "", places=2)
        if header is not None and lines and abs(header - line_sum) > AMOUNT_TOLERANCE:
            c.fail(f"{name}: {header} differs from the sum of the lines {line_sum} by more than 0.01")
    if sum_amount + sum_tax < 0 and _text(bill.get("originalInvoiceNumber")) is None:
        c.fail("originalInvoiceNumber: required on a red bill")
    return c.errors


@dataclass
class Bill:
    bill_no: str
    seller_tax_id: str | None  # None: any seller may query it (a preload without one)
    payload: dict[str, Any]
    source: str  # push, out_of_band, auto, preload
    received: float = field(metadata=MONOTONIC)  # time.monotonic()
    invoices: list[dict[str, Any]] | None = None  # None until issued
    issued_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    spoil: str | None = None  # a wrong-result fault the bill is (or was) issued with


def _split_cents(value: Decimal, parts: int) -> list[Decimal]:
    cents = int((value / CENT).to_integral_value(rounding=ROUND_HALF_UP))
    sign = -1 if cents < 0 else 1
    share, rest = divmod(abs(cents), parts)
    return [Decimal(sign * (share + (1 if i < rest else 0))) * CENT for i in range(parts)]


def _q(value: Decimal, exponent: Decimal) -> str:
    return f"{value.quantize(exponent, rounding=ROUND_HALF_UP):f}"


class KingdeeState(SavedState):
    """Bills, invoices, pushes and numbering; one lock guards it all (saved across a restart)."""

    saved_fields = ("_bills", "_pushes", "_numbers", "_sequence")
    saved_types = (Bill,)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._bills: dict[str, Bill] = {}
            self._pushes: dict[str, int] = {}
            self._numbers: dict[str, int] = {}
            self._sequence = 0

    # -- bills

    def push(self, bill: dict[str, Any], source: str = "push") -> bool:
        """Store a validated bill; False when its number is already held (nothing stored)."""
        bill_no = str(bill["billNo"]).strip()
        with self._lock:
            if source == "push":
                self._pushes[bill_no] = self._pushes.get(bill_no, 0) + 1
            if bill_no in self._bills:
                return False
            self._bills[bill_no] = Bill(
                bill_no, str(bill["sellerTaxpayerId"]).strip(), dict(bill), source, time.monotonic()
            )
            return True

    def note_push_attempt(self, bill_no: str) -> None:
        """A ``BILL.PUSH`` that failed validation still counts as a push of that number."""
        with self._lock:
            self._pushes[bill_no] = self._pushes.get(bill_no, 0) + 1

    def known(self, bill_no: str) -> bool:
        with self._lock:
            return bill_no in self._bills

    def preload(self, entries: list[dict[str, Any]]) -> None:
        with self._lock:
            for entry in entries:
                bill_no = str(entry["billNo"]).strip()
                invoices = [dict(i) for i in entry.get("invoiceList") or []]
                sellers = {_text(i.get("sellerTaxpayerId")) for i in invoices} - {None}
                seller = sellers.pop() if len(sellers) == 1 else None
                self._bills[bill_no] = Bill(
                    bill_no, seller, {"billNo": bill_no}, "preload", time.monotonic(), invoices, _now_text()
                )

    def query(
        self,
        bill_no: str,
        seller: str,
        *,
        delay_s: float,
        split_into: int,
        auto: bool,
        base_url: str,
        fault: str | None = None,
    ) -> list[dict[str, Any]] | None:
        """The query's data for a bill (issuing it when due), or None when the bill is not held.
        ``fault``: a wrong-result fault this query carries (``reject_but_issue`` issues now)."""
        with self._lock:
            bill = self._bills.get(bill_no)
            if bill is None and auto:
                payload = {**copy.deepcopy(AUTO_BILL), "billNo": bill_no, "sellerTaxpayerId": seller}
                bill = Bill(bill_no, seller, payload, "auto", time.monotonic())
                self._bills[bill_no] = bill
            if bill is None or (bill.seller_tax_id is not None and bill.seller_tax_id != seller):
                return None
            if fault is not None:
                self._mark(bill, fault, split_into, base_url)
            if bill.invoices is None and time.monotonic() - bill.received >= delay_s:
                self._issue(bill, split_into, base_url)
            invoices = bill.invoices or []
            return [{"invoiceList": [dict(i) for i in invoices], "billNo": bill_no}]

    def mark(self, bill_no: str, fault: str, split_into: int, base_url: str) -> None:
        """A wrong-result fault carried by a push of ``bill_no`` (see :meth:`_mark`)."""
        with self._lock:
            bill = self._bills.get(bill_no)
            if bill is not None:
                self._mark(bill, fault, split_into, base_url)

    def _mark(self, bill: Bill, fault: str, split_into: int, base_url: str) -> None:
        """The bill is issued wrong: marked before issuing, spoiled when it is issued; ``reject_but_issue``
        issues it now (the caller answers a refusal). A bill already issued keeps its invoices as they
        were issued: a switch turned on later never changes them (and the answers stay the same)."""
        if bill.invoices is not None:
            return
        if fault == faults.REJECT_BUT_ISSUE:
            self._issue(bill, split_into, base_url)
            return
        bill.spoil = fault

    def _issue(self, bill: Bill, split_into: int, base_url: str) -> None:
        payload = bill.payload
        lines = [line for line in payload.get("billDetail") or [] if isinstance(line, dict)]
        parts = max(1, split_into)
        shares: list[list[tuple[dict[str, Any], Decimal, Decimal]]] = [[] for _ in range(parts)]
        for line in lines:
            amount = _decimal(line.get("amount")) or Decimal(0)
            tax = _decimal(line.get("taxAmount")) or Decimal(0)
            for i, (a, t) in enumerate(zip(_split_cents(amount, parts), _split_cents(tax, parts), strict=True)):
                if a != 0 or t != 0:
                    shares[i].append((line, a, t))
        shares = [s for s in shares if s] or [[]]
        flag = "1" if len(shares) > 1 else "0"
        now = china_now()
        midnight = china_midnight(now.date())
        invoices = [self._invoice(bill, share, flag, now, midnight, base_url) for share in shares]
        bill.invoices = invoices
        bill.issued_at = now.isoformat(timespec="seconds")
        if bill.spoil is not None:
            self._spoil(bill, base_url)

    def _spoil(self, bill: Bill, base_url: str) -> None:
        """Apply the bill's wrong-result fault to its issued invoices (see :mod:`sandbox.faults`)."""
        invoices = bill.invoices or []
        fault, bill.spoil = bill.spoil, None
        if not invoices:
            return
        if fault == faults.WRONG_AMOUNT:
            first = invoices[0]
            first["totalAmount"] += faults.WRONG_AMOUNT_DELTA
            first["totalTaxAmount"] += faults.WRONG_TAX_DELTA
            first["includeTaxAmount"] = first["totalAmount"] + first["totalTaxAmount"]
            if first["canRedAmount"]:
                first["canRedAmount"], first["canRedTaxAmount"] = first["totalAmount"], first["totalTaxAmount"]
            if first["goods"]:
                goods = first["goods"][0]
                goods["amount"] += faults.WRONG_AMOUNT_DELTA
                goods["taxAmount"] += faults.WRONG_TAX_DELTA
                goods["includeTaxAmount"] = goods["amount"] + goods["taxAmount"]
        elif fault == faults.WRONG_SELLER:
            for invoice in invoices:
                invoice.update(sellerTaxpayerId=faults.OTHER_SELLER_TAX_NUMBER, sellerName=faults.OTHER_SELLER_NAME)
        elif fault == faults.WRONG_TYPE:
            for invoice in invoices:
                invoice["invoiceType"] = faults.other_type(invoice["invoiceType"], OTHER_TYPES)
        elif fault == faults.EXTRA_INVOICE:
            lines = [line for line in bill.payload.get("billDetail") or [] if isinstance(line, dict)]
            share = [(line, _decimal(line.get("amount")) or Decimal(0), _decimal(line.get("taxAmount")) or Decimal(0))
                     for line in lines]  # fmt: skip
            now = china_now()
            midnight = china_midnight(now.date())
            invoices.append(self._invoice(bill, share, invoices[0]["splitOrMergeFlag"], now, midnight, base_url))

    def _invoice(
        self,
        bill: Bill,
        share: list[tuple[dict[str, Any], Decimal, Decimal]],
        flag: str,
        now: dt.datetime,
        midnight: dt.datetime,
        base_url: str,
    ) -> dict[str, Any]:
        payload = bill.payload
        invoice_type = str(payload.get("invoiceType") or "026")
        seller = bill.seller_tax_id or ""
        self._sequence += 1
        seq = self._sequence
        seller_part = int.from_bytes(hashlib.sha256(seller.encode()).digest()[:4], "big") % 10**4
        year = now.year % 100
        if invoice_type in DIGITAL_TYPES:
            code = ""
            key = f"digital:{seller_part}"
            number = self._numbers.get(key, 0) + 1
            self._numbers[key] = number
            invoice_number = f"{year:02d}44{seller_part:04d}{invoice_type[-1]}{number:011d}"
        else:
            width = 10 if invoice_type in PAPER_TYPES else 12
            code = f"{seller_part:04d}{year:02d}{invoice_type}".ljust(width - 1, "0") + "1"
            number = self._numbers.get(code, 0) + 1
            self._numbers[code] = number
            invoice_number = f"{number:08d}"
        goods = []
        total_amount = total_tax = Decimal(0)
        for row, (line, amount, tax) in enumerate(share):
            total_amount += amount
            total_tax += tax
            goods.append(_goods(row, line, amount, tax, seq, payload.get("taxFlag")))
        red = total_amount + total_tax < 0
        digest = hashlib.sha256(f"{code}|{invoice_number}|{bill.bill_no}".encode()).digest()
        check_code = "" if invoice_type in SPECIAL_TYPES else f"{int.from_bytes(digest[:10], 'big') % 10**20:020d}"
        invoice_id = 1_800_000_000_000_000_000 + seq
        file_url = f"{base_url}/_sandbox/files/{invoice_id}.pdf" if invoice_type not in PAPER_TYPES else ""
        return {
            "abolishReason": "",
            "billNo": bill.bill_no,
            "buyerAddressAndTel": payload.get("buyerAddressAndTel", ""),
            "buyerBankAndAccount": payload.get("buyerBankAndAccount", ""),
            "buyerName": payload.get("buyerName", ""),
            "buyerProperty": 0,
            "buyerRecipientMail": payload.get("buyerRecipientMail", ""),
            "buyerRecipientPhone": payload.get("buyerRecipientPhone", ""),
            "buyerTaxpayerId": payload.get("buyerTaxpayerId", ""),
            "canRedAmount": Decimal(0) if red else total_amount,
            "canRedTaxAmount": Decimal(0) if red else total_tax,
            "canceler": "",
            "checkCode": check_code,
            "contractNo": "",
            "deviceNo": f"4466{seller_part:04d}662214",
            "downloadFlag": 0,
            "drawer": payload.get("drawer", "沙箱"),
            "goods": goods,
            "id": invoice_id,
            "invoiceFileUrl": file_url,
            "invoiceImageUrl": "",
            "includeTaxAmount": total_amount + total_tax,
            "inventoryFlag": 0,
            "invoiceCode": code,
            "invoiceDate": int(midnight.timestamp() * 1000),
            "invoiceNumber": invoice_number,
            "invoiceProperty": 1 if red else 0,
            "invoiceSource": "4",
            "invoiceStatus": 0,
            "invoiceType": invoice_type,
            "issueStatus": "0",
            "mergeDifferTaxAmount": 0,
            "orgName": "发票云沙箱",
            "originalInvoiceCode": payload.get("originalInvoiceCode", ""),
            "originalInvoiceNumber": payload.get("originalInvoiceNumber", ""),
            "payee": payload.get("payee", ""),
            "printFlag": 0,
            "redInfoBillNo": payload.get("redInfoBillNo", ""),
            "redReason": payload.get("redReason", ""),
            "remark": payload.get("remark", ""),
            "reviewer": payload.get("reviewer", ""),
            "sellerAddressAndTel": payload.get("sellerAddressAndTel", ""),
            "sellerBankAndAccount": payload.get("sellerBankAndAccount", ""),
            "sellerName": payload.get("sellerName", ""),
            "sellerTaxpayerId": seller,
            "serialNo": f"200_{now:%Y%m%d%H%M%S}{now.microsecond // 1000:03d}_{seq:04d}",
            "specialRedFlag": 0,
            "splitOrMergeFlag": flag,
            "terminalNo": "",
            "totalAmount": total_amount,
            "totalTaxAmount": total_tax,
        }

    # -- oracle

    def summary(self) -> dict[str, Any]:
        with self._lock:
            counts = {no: len(b.invoices) for no, b in self._bills.items() if b.invoices}
            return {
                "counts": counts,
                "total": sum(counts.values()),
                "bills": {no: b.source for no, b in self._bills.items()},
                "pushes": dict(self._pushes),
            }

    def for_bill(self, bill_no: str) -> dict[str, Any]:
        with self._lock:
            bill = self._bills.get(bill_no)
            return {
                "billNo": bill_no,
                "stored": bill is not None,
                "source": bill.source if bill else None,
                "pushes": self._pushes.get(bill_no, 0),
                "count": len(bill.invoices or []) if bill else 0,
                "bill": bill.payload if bill else None,
                "invoices": list(bill.invoices or []) if bill else [],
            }


def _goods(row: int, line: Mapping[str, Any], amount: Decimal, tax: Decimal, seq: int, tax_flag: Any) -> dict[str, Any]:
    rate = _decimal(line.get("taxRate")) or Decimal(0)
    full = _decimal(line.get("amount")) or Decimal(0)
    quantity = _decimal(line.get("quantity"))
    price = _decimal(line.get("price"))
    incl_price = _decimal(line.get("includeTaxPrice"))
    if price is None and incl_price is not None:
        price = incl_price / (1 + rate)
    if incl_price is None and price is not None:
        incl_price = price * (1 + rate)
    if quantity is not None and full != 0 and amount != full:
        quantity = quantity * amount / full
    return {
        "amount": amount,
        "billSourceId": str(line.get("seq", row)),
        "detailId": str(1_900_000_000_000_000_000 + seq * 1000 + row),
        "detailRowNo": row,
        "goodsName": line.get("goodsName", ""),
        "includeTaxAmount": amount + tax,
        "includeTaxPrice": _q(incl_price, _TEN) if incl_price is not None and quantity is not None else "",
        "lineProperty": int(_text(line.get("lineProperty")) or 0),
        "price": _q(price, _TEN) if price is not None and quantity is not None else "",
        "privilegeContent": line.get("privilegeContent", ""),
        "privilegeFlag": line.get("privilegeFlag", 0),
        "quantity": _q(quantity, _TEN) if quantity is not None else "",
        "revenueCode": line.get("revenueCode", ""),
        "revenueName": "",
        "seq": row,
        "specification": line.get("specification", ""),
        "taxAmount": tax,
        "taxFlag": "1" if str(tax_flag) == "1" else "0",
        "taxRate": f"{rate.normalize():f}" if rate else "0",
        "units": line.get("units", ""),
        "zeroTaxRateFlag": line.get("zeroTaxRateFlag", ""),
    }


def _now_text() -> str:
    return china_now().isoformat(timespec="seconds")


# -- HTTP ------------------------------------------------------------------------------------------

#: What the ``malformed`` fault puts in ``data``: base64 with a character outside the alphabet.
MALFORMED_DATA = "W3siYmlsbE5vIjoi*ZmFwaWFvIn1d"


class _Handler(VendorHandler):
    server: KingdeeServer
    max_body = _MAX_BODY

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, _dumps(obj).encode("utf-8"))

    # -- routing

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        server = self.server
        if self._control_get(path):
            return
        if path == "/_sandbox/issued":
            self._send_json(200, server.state.summary())
        elif path.startswith("/_sandbox/bills/"):
            self._send_json(200, server.state.for_bill(unquote(path.removeprefix("/_sandbox/bills/"))))
        elif path.startswith("/_sandbox/files/") and path.endswith(".pdf"):
            self._send(200, _PDF, "application/pdf")
        elif path == API_PATH:
            self._send_json(405, {"error": "use POST"})
        else:
            self._send_json(404, {"error": f"no such path: {path}"})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        try:
            raw = self._read_body()
        except BadRequest as exc:
            if path == API_PATH:
                self._send_json(200, answer(False, CODE_PARAM, str(exc)))
            else:
                self._send_json(400, {"error": str(exc)})
            return
        if path == API_PATH:
            self._open_api(raw, parse_qs(parts.query).get("access_token", [None])[0])
            return
        server = self.server
        try:
            if path == "/_sandbox/bills":  # amounts digit for digit: Decimal
                self._send_json(200, {"stored": server.register(self._control_json(raw, list_ok=True, decimals=True))})
            elif path == "/_sandbox/preload":
                preload = self._control_json(raw, list_ok=True, decimals=True)
                self._send_json(200, {"preloaded": server.preload(preload)})
            elif (control := self._control_post(path, raw)) is not None:
                self._send_json(200, control)
            else:
                self._send_json(404, {"error": f"no such path: {path}"})
        except (faults.FaultConfigError, BadRequest) as exc:
            self._send_json(400, {"error": str(exc)})

    @staticmethod
    def _control_json(raw: bytes, *, list_ok: bool = False, decimals: bool = False) -> Any:
        """A control body. ``decimals``: numbers with a fraction as Decimal (bills, whose amounts are
        kept digit for digit); otherwise as float, so fault rates like 0.05 read as in the other
        sandboxes (faults.FaultInjector takes int or float)."""
        try:
            obj = _loads(raw or b"{}") if decimals else json.loads(raw or b"{}", parse_constant=_no_constant)
        except ValueError as exc:
            raise BadRequest(f"body is not JSON: {exc}") from exc
        if not isinstance(obj, dict) and not (list_ok and isinstance(obj, list)):
            raise BadRequest("body must be a JSON object" + (" or a list" if list_ok else ""))
        return obj

    # -- openApi

    def _open_api(self, raw: bytes, token: str | None) -> None:
        server = self.server
        envelope: Any = None
        data: Any = None
        problem: str | None = None
        try:
            envelope = _loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            problem = f"body is not valid JSON: {exc}"
        if problem is None and not isinstance(envelope, dict):
            problem = "body must be a JSON object"
        if problem is None:
            try:
                data = decode_data(envelope.get("data"))
            except ValueError as exc:
                problem = str(exc)
        if problem is None and not isinstance(data, dict):
            problem = "data must be base64 of a JSON object"
        interface = _text(envelope.get("interfaceCode")) if isinstance(envelope, dict) else None
        key = None
        if isinstance(data, dict):
            key = _text(data.get("billNo") if interface == BILL_PUSH else data.get("serialNo"))

        decision = server.injector.decide(key)
        if decision.latency:
            server.stopping.wait(server.injector.latency_seconds)
        if decision.fault == faults.ERROR_5XX:
            self._answer_5xx(decision.status or 500, API_PATH)
            return
        if decision.fault == faults.CONNECTION_RESET:
            self.close_connection = True
            faults.abort_connection(self.connection, self.rfile)
            return
        if token is None or token != server.access_token:
            self._send_json(200, answer(False, CODE_AUTH, "access_token 无效或已过期"))
            return
        if decision.fault == faults.REJECT:
            self._send_json(200, answer(False, CODE_REJECTED, "请求被拒绝: 系统繁忙 (sandbox reject fault)"))
            return
        if problem is None and _text(envelope.get("businessSystemCode")) is None:
            problem = "businessSystemCode: required"
        if problem is not None:
            self._send_json(200, answer(False, CODE_PARAM, problem))
            return
        wrong = decision.fault if decision.wrong_result else None
        if interface == BILL_PUSH:
            result = self._push(data)
            if wrong is not None and result["success"]:
                server.state.mark(str(data["billNo"]).strip(), wrong, server.split_into, server.base_url)
        elif interface == BILL_INVOICE_QUERY:
            result = self._query(data, wrong)
        else:
            self._send_json(200, answer(False, CODE_INTERFACE, f"interfaceCode {interface!r} is not supported"))
            return

        if wrong == faults.REJECT_BUT_ISSUE and (result["success"] or result["errorCode"] == CODE_EXISTS):
            self._send_json(200, answer(False, CODE_REJECTED, "请求被拒绝: 系统繁忙 (sandbox reject fault)"))
            return
        if decision.fault == faults.TIMEOUT_AFTER_ISSUE:
            self.close_connection = True
            server.stopping.wait(server.injector.timeout_seconds)
            return  # closed without a byte of answer
        if decision.fault == faults.MALFORMED:
            self._send_json(200, {"data": MALFORMED_DATA, "errorCode": CODE_OK, "errorMsg": "", "success": True})
            return
        self._send_json(200, result)

    def _push(self, bill: dict[str, Any]) -> dict[str, Any]:
        errors = validate_bill(bill)
        if errors:
            bill_no = _text(bill.get("billNo"))
            if bill_no is not None:
                self.server.state.note_push_attempt(bill_no)
            return answer(False, CODE_INVALID, "; ".join(errors))
        bill_no = str(bill["billNo"]).strip()
        if self.server.state.push(bill):
            return answer(True, CODE_OK, "", {"billNo": bill_no})
        return answer(False, CODE_EXISTS, f"单据编号已存在: {bill_no}", {"billNo": bill_no})

    def _query(self, data: dict[str, Any], wrong: str | None = None) -> dict[str, Any]:
        seller = _text(data.get("sellerTaxpayerId"))
        bill_no = _text(data.get("serialNo"))
        if seller is None or bill_no is None:
            return answer(False, CODE_PARAM, "sellerTaxpayerId and serialNo are required")
        if len(seller) > 20:
            return answer(False, CODE_PARAM, "sellerTaxpayerId: longer than 20 characters")
        server = self.server
        found = server.state.query(
            bill_no,
            seller,
            delay_s=server.issue_delay_ms / 1000,
            split_into=server.split_into,
            auto=server.auto,
            base_url=server.base_url,
            fault=wrong,
        )
        if found is None:
            if server.not_found == "empty":
                return answer(True, CODE_OK, "", [])
            return answer(False, CODE_NOT_FOUND, f"开票申请单不存在: {bill_no}")
        return answer(True, CODE_OK, "", found)


class KingdeeServer(SandboxServer):
    """The simulator; :func:`run` builds and starts one."""

    thread_name = "kingdee-sandbox"

    def __init__(
        self,
        port: int = 0,
        *,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        issue_delay_ms: int = 0,
        split_into: int = 1,
        auto: bool = False,
        not_found: str = "error",
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self.state = KingdeeState()
        self.injector = faults.FaultInjector(seed=seed)
        self._defaults = {
            "access_token": access_token,
            "issue_delay_ms": issue_delay_ms,
            "split_into": split_into,
            "auto": auto,
            "not_found": not_found,
        }
        self._settings_lock = threading.Lock()
        self._apply(self._defaults)
        super().__init__(port, _Handler, verbose=verbose)

    @property
    def api_url(self) -> str:
        return self.base_url + API_PATH

    # -- configuration

    @staticmethod
    def _checked(config: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "access_token" in config:
            token = config["access_token"]
            if not isinstance(token, str) or not token:
                raise faults.FaultConfigError("access_token must be a non-empty string")
            out["access_token"] = token
        if "issue_delay_ms" in config:
            out["issue_delay_ms"] = faults._milliseconds(config["issue_delay_ms"], "issue_delay_ms")
        if "split_into" in config:
            split = config["split_into"]
            if isinstance(split, bool) or not isinstance(split, int) or not 1 <= split <= _MAX_SPLIT:
                raise faults.FaultConfigError(f"split_into must be an integer in 1..{_MAX_SPLIT}, got {split!r}")
            out["split_into"] = split
        if "auto" in config:
            if not isinstance(config["auto"], bool):
                raise faults.FaultConfigError(f"auto must be true or false, got {config['auto']!r}")
            out["auto"] = config["auto"]
        if "not_found" in config:
            if config["not_found"] not in ("error", "empty"):
                raise faults.FaultConfigError(f"not_found must be error or empty, got {config['not_found']!r}")
            out["not_found"] = config["not_found"]
        return out

    def _apply(self, config: Mapping[str, Any]) -> None:
        checked = self._checked(config)
        with self._settings_lock:
            for name, value in checked.items():
                setattr(self, name, value)

    def config(self) -> dict[str, Any]:
        with self._settings_lock:
            own = {name: getattr(self, name) for name in self._defaults}
        own["access_token"] = "***"  # noqa: S105 - the oracle never shows the token
        return {**self.injector.snapshot(), **own}

    def configure(self, config: Mapping[str, Any]) -> dict[str, Any]:
        own = {k: v for k, v in config.items() if k in self._defaults}
        rest = {k: v for k, v in config.items() if k not in self._defaults}
        checked = self._checked(own)  # all or nothing: check both before applying either
        if rest:
            self.injector.configure(rest)
        self._apply(checked)
        return self.config()

    def register(self, body: Any) -> int:
        bills = body if isinstance(body, list) else [body]
        problems: list[str] = []
        for i, bill in enumerate(bills):
            problems += [f"[{i}] {p}" for p in validate_bill(bill)]
            if not problems and self.state.known(str(bill["billNo"]).strip()):
                problems.append(f"[{i}] billNo {bill['billNo']!r} is already held")
        if problems:
            raise BadRequest("; ".join(problems))
        for bill in bills:
            self.state.push(bill, source="out_of_band")
        return len(bills)

    def preload(self, body: Any) -> int:
        entries = body if isinstance(body, list) else [body]
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or _text(entry.get("billNo")) is None:
                raise BadRequest(f"[{i}]: an object with billNo is required")
            listed = entry.get("invoiceList")
            if listed is not None and (not isinstance(listed, list) or not all(isinstance(x, dict) for x in listed)):
                raise BadRequest(f"[{i}].invoiceList: a list of objects is required")
        self.state.preload(entries)
        return len(entries)

    def reset(self) -> None:
        self.state.reset()
        self.injector.reset()
        self._apply(self._defaults)


def run(
    host: str = HOST,
    port: int = 0,
    *,
    access_token: str = DEFAULT_ACCESS_TOKEN,
    issue_delay_ms: int = 0,
    split_into: int = 1,
    auto: bool = False,
    not_found: str = "error",
    seed: int = 0,
    verbose: bool = False,
) -> KingdeeServer:
    """Start a simulator in a daemon thread; ``port=0`` picks a free port (see ``.base_url``)."""
    check_host(host)
    return KingdeeServer(
        port,
        access_token=access_token,
        issue_delay_ms=issue_delay_ms,
        split_into=split_into,
        auto=auto,
        not_found=not_found,
        seed=seed,
        verbose=verbose,
    ).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.kingdee", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--access-token", default=DEFAULT_ACCESS_TOKEN, help="the access_token to accept")
    parser.add_argument("--issue-delay-ms", type=int, default=0, help="time from a bill's arrival to its invoices")
    parser.add_argument("--split-into", type=int, default=1, help="invoices per bill")
    parser.add_argument("--auto", action="store_true", help="treat a queried unknown bill as pushed out of band")
    parser.add_argument("--seed", type=int, default=0, help="fault RNG seed")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    server = KingdeeServer(
        args.port,
        access_token=args.access_token,
        issue_delay_ms=args.issue_delay_ms,
        split_into=args.split_into,
        auto=args.auto,
        seed=args.seed,
        verbose=not args.quiet,
    )
    print(f"kingdee sandbox on {server.base_url} (openApi: {server.api_url})", flush=True)
    server.serve_in_foreground()


if __name__ == "__main__":
    main()
