"""Ekuaibao (易快报), seed 000: a channel pushes its invoicing result to the hub.

Seed 000 documents one call, ``POST /api/openapi/v2/invoicing?accessToken=...``, in which an invoicing
channel pushes the result of an application: ``channelCode``, ``serialNo`` (批次号), ``result``
(0 issued, 1 rejected, 2 in progress), ``rejectMsg`` and ``data``, the invoices with their
``details`` lines. The receiver answers ``{"value": true}``. The hub plays the receiver
(``POST /v1/callbacks/{channel}``, authenticated by :mod:`fapiao_hub.usecases.callback_auth` before this module
reads the body).

The seed documents no submission and no query: applications reach the channel out of band, so
:meth:`EkuaibaoChannel.issue` sends nothing and answers ``Accepted`` (the result comes by push), and
:meth:`EkuaibaoChannel.query` answers ``Unknown``. ``can_query`` is False. ``dedupes_request_number``
is True: "sending" the same request number again sends nothing, so it cannot issue twice, and a
dispatcher that died between its claim and SUBMITTED is simply repeated (not sent to review).

Public API
----------
- :class:`EkuaibaoChannel` (``name``, ``settings``): the Channel and PushingChannel.
- :func:`parse_push`: a pushed body -> ``list[CallbackResult]`` (raises ``CallbackRejected``).
- :func:`to_push_body`: neutral invoices -> a body in seed 000's shape (the write-back to business
  systems); ``parse_push(json(to_push_body(...)))`` gives the same invoices back.
- :func:`hand_over`: an application -> the order as the business's own Ekuaibao integration hands
  it to Ekuaibao, in seed 000's field names (the local run's and the tests' hand-over to
  ``sandbox.ekuaibao``; the hub itself sends nothing).

Which application a push belongs to
-----------------------------------
``serialNo`` (批次号) is the hub's request number whenever it is present and not blank: one
``CallbackResult`` carries every invoice of the body. Without it, each invoice's ``orderNo``
(来源单号, "业务请求流水号") is the request number, and invoices are grouped by it (one result per
distinct ``orderNo``, in order of first appearance). Invoices with neither, and pushes with no
invoice at all (result 1 or 2 without ``data``), give a result with ``request_number=None``: the hub
records them as unmatched results, never drops them. Seed 000's own example has neither field.

Liberal where the seed's example deviates from its own table, strict elsewhere
------------------------------------------------------------------------------
- Keys are compared after stripping whitespace (the example's ``"taxTaxonomyCode "``); two keys
  that differ only in whitespace must carry the same value.
- A line's tax rate is ``taxrate`` (table) or ``taxRate`` (example); both present must agree.
- ``""`` and ``null`` mean absent for every optional field (the example's ``invoicingDate: ""``).
- Dates (``Long``) are milliseconds since the epoch, as a JSON integer or a string of digits,
  read as a date in China Standard Time (UTC+8; China has no daylight saving time since 1991, so a
  fixed offset is used and no tz database is needed). Values outside 2000-2099 are refused (a date
  in seconds would otherwise silently become January 1970).
- Money, rates, quantities and prices are JSON strings or numbers, read as ``Decimal`` (never
  float): ``-?digits[.digits]`` for strings; NaN and infinities are refused, and so is a number
  DynamoDB cannot keep (number_range: 1E-130 .. 9.99E+125, 38 digits), as an unreadable field.
- ``data`` is a JSON list of invoices, or a JSON string holding that list (the table types it
  ``String``); ``null``, ``""`` and an absent ``data`` mean no invoice.
- ``result`` absent or blank is 0, the table's default: seed 000's example has no ``result`` (a
  deviation the seeds README does not list).
- ``result`` is 0, 1 or 2, as an integer or a string of that digit; ``channelCode`` is required;
  with result 0 ``data`` must hold at least one invoice (an object) with a non-empty ``details``
  list of objects. A violation of the body's structure raises ``CallbackRejected`` naming the JSON
  path, e.g. ``data[0].details: required``.
- A malformed *field* of an invoice (``invoiceNumber`` missing, ``invoiceTypeCode`` not one of the
  six codes, an amount that is not a number, a date that cannot be read, a line without
  ``goodsCost``/``goodsVat``, a tax rate) refuses nothing: the invoice is kept as reported, the field left empty
  (``number`` ``""``, ``amount`` None, a line's amount 0), and its raw text recorded in
  ``IssuedInvoice.unreadable`` under the vendor's name (``invoiceAmount``, ``details[1].goodsVat``),
  for verification to turn into a finding. ``invoiceType`` and ``invoicingStatus`` stay strict: a
  colour or state the hub cannot read would be recorded as something it is not.
- When the channel option ``channel_codes`` (comma-separated) is set, ``channelCode`` must be one of
  them.
- With result 1 or 2 the invoices in ``data`` (if any) are only read for ``orderNo``.

Mapping (result 0)
------------------
==========================================  =======================================================
Ekuaibao                                    neutral (``IssuedInvoice`` / ``InvoiceLine``)
==========================================  =======================================================
invoiceNumber / invoiceCode                 number / code (``""`` -> None: 数电 invoices have no code)
invoiceDate (else invoicingDate)            issued_on (ms epoch -> date in UTC+8)
invoiceAmount / invoiceTaxAmount            amount (tax-exclusive) / tax
checkCode                                   check_code
invoiceTypeCode 004/007/026/028/01/02       VAT_SPECIAL_PAPER / VAT_NORMAL_PAPER /
                                            VAT_NORMAL_ELECTRONIC / VAT_SPECIAL_ELECTRONIC /
                                            DIGITAL_SPECIAL / DIGITAL_NORMAL
invoicingStatus 00 / 03 (absent: 00)        state ISSUED / VOIDED
sellerTaxNo / buyerTaxNo / buyerName        seller_tax_number / buyer_tax_number / buyer_name (also in details)
invoiceType 0 / 1 (absent: 0)               blue / red: details["direction"] = "RED" for 1
originalInvoiceNumber / Code                original_number / original_code
originalsUrl, previewUrl (non-empty)        files: InvoiceFile(url=..., format_hint from the suffix)
details[i].goodsName                        lines[i].goods_name
details[i].goodsCost / goodsVat             lines[i].amount (tax-exclusive) / tax
details[i].taxrate or taxRate               lines[i].tax_rate
details[i].goodsNum / goodsPrice            lines[i].quantity / unit_price (tax-exclusive)
details[i].goodsUnit / goodsSpecification   lines[i].unit / specification
details[i].taxTaxonomyCode                  lines[i].tax_code
details[i].invRowType 0/1/2                 lines[i].nature "0"/"1"/"2" (normal/discount/discounted)
==========================================  =======================================================

Kept in ``IssuedInvoice.details`` when not blank (:data:`DETAIL_FIELDS`): orderNo, buyerName,
buyerTaxNo, sellerName, sellerTaxNo, invoiceTotalPriceTax, invoiceTaxRate, invoiceSpecialMark,
invoiceListMark, systemName, systemId, invoicingRemark, payee, checker, drawer, originalSerialNo,
originalInvoicingStatus, invoicingDate (as an ISO date) and ``ext`` (as JSON text). Not kept: the
buyer's and seller's address, phone and bank fields (the hub has them from the application),
``originals`` (implied by ``originalsUrl``), and the line fields ``billNumber``, ``detailRowNo``,
``goodsSum``, ``goodsPriceWithTax``, ``preferPolicyName``, ``preferPolicySign``, ``zeroTaxSign``
(``InvoiceLine`` has no place for them). Amounts are kept as the channel sends them; seed 000's red
example (``invoiceType`` 1) carries positive amounts.

result 1 is ``Rejected(rejectMsg)``; result 2 is ``Accepted`` (still in progress).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from fapiao_hub.channels.base import CallbackRejected
from fapiao_hub.channels.wire import blank, comma_list
from fapiao_hub.domain import jsonutil
from fapiao_hub.domain.china_time import CHINA_TIME
from fapiao_hub.domain.config import ChannelSettings
from fapiao_hub.domain.models import NATIONAL_INVOICE_TYPES, Application, Direction, InvoiceType
from fapiao_hub.domain.number_range import RANGE_TEXT, dynamo_number
from fapiao_hub.domain.results import (
    Accepted,
    CallbackResult,
    Capabilities,
    InvoiceFile,
    InvoiceLine,
    InvoiceState,
    Issued,
    IssuedInvoice,
    Outcome,
    QueryOutcome,
    Rejected,
    Unknown,
)

#: The path the vendor documents (the hub's own route is ``/v1/callbacks/{channel}``).
PUSH_PATH = "/api/openapi/v2/invoicing"

#: What the receiver answers to a push it accepted (seed 000, 成功响应).
SUCCESS_ANSWER: dict[str, Any] = {"value": True}

RESULT_ISSUED = 0
RESULT_REJECTED = 1
RESULT_IN_PROGRESS = 2

#: Seed 000 ``invoiceTypeCode`` is the national code (docs/rules.md section 3, legacy column).
INVOICE_TYPES_BY_CODE = NATIONAL_INVOICE_TYPES
INVOICE_TYPE_CODES: dict[InvoiceType, str] = {t: code for code, t in INVOICE_TYPES_BY_CODE.items()}

#: ``invoicingStatus`` -> invoice state.
STATES_BY_CODE: dict[str, InvoiceState] = {"00": InvoiceState.ISSUED, "03": InvoiceState.VOIDED}
STATE_CODES: dict[InvoiceState, str] = {s: code for code, s in STATES_BY_CODE.items()}

#: Invoice text fields kept as ``IssuedInvoice.details`` (Ekuaibao name -> details key).
DETAIL_FIELDS: dict[str, str] = {
    "orderNo": "order_no",
    "buyerName": "buyer_name",
    "buyerTaxNo": "buyer_tax_number",
    "sellerName": "seller_name",
    "sellerTaxNo": "seller_tax_number",
    "invoiceTotalPriceTax": "total_incl_tax",
    "invoiceTaxRate": "tax_rate",
    "invoiceSpecialMark": "special_mark",
    "invoiceListMark": "list_mark",
    "systemName": "system_name",
    "systemId": "system_id",
    "invoicingRemark": "remark",
    "payee": "payee",
    "checker": "checker",
    "drawer": "drawer",
    "originalSerialNo": "original_serial_no",
    "originalInvoicingStatus": "original_invoicing_status",
}
# Of those, the ones that are numbers (kept as the Decimal's text, checked to parse).
_NUMERIC_DETAILS = frozenset({"invoiceTotalPriceTax", "invoiceTaxRate"})
DIRECTION_KEY = "direction"  # details["direction"] == "RED" for invoiceType 1
INVOICING_DATE_KEY = "invoicing_date"  # ISO date of invoicingDate
EXT_KEY = "ext"  # ext as JSON text

_MIN_MS = int(dt.datetime(2000, 1, 1, tzinfo=CHINA_TIME).timestamp() * 1000)
_MAX_MS = int(dt.datetime(2100, 1, 1, tzinfo=CHINA_TIME).timestamp() * 1000)
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_DIGITS = re.compile(r"-?[0-9]+")
_FILE_SUFFIXES = {".pdf": "pdf", ".ofd": "ofd", ".xml": "xml"}


# --------------------------------------------------------------------------- reading helpers


def _fail(path: str, message: str) -> CallbackRejected:
    return CallbackRejected(f"{path}: {message}")


def _normalized(obj: Any, path: str) -> dict[str, Any]:
    """An object with its keys stripped of whitespace (seed 000's ``"taxTaxonomyCode "``)."""
    if not isinstance(obj, dict):
        raise _fail(path or "body", "not a JSON object")
    out: dict[str, Any] = {}
    for raw_key, value in obj.items():
        key = raw_key.strip()
        if key in out and out[key] != value:
            where = f"{path}.{key}" if path else key
            raise _fail(where, "given twice (keys differing only in whitespace) with different values")
        out[key] = value
    return out


def _field(obj: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> tuple[Any, str]:
    """A field's value (None when blank) and where it sits (``path.key``, or ``key`` at the top);
    a blank required field is refused."""
    value = obj.get(key)
    where = f"{path}.{key}" if path else key
    if blank(value):
        if required:
            raise _fail(where, "required")
        return None, where
    return value, where


def _text(obj: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    """A text field: strings as given (stripped); integers as their digits; blank -> None."""
    value, where = _field(obj, key, path, required=required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _fail(where, "not a string")
    return str(value).strip()


def _decimal(obj: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> Decimal | None:
    value, where = _field(obj, key, path, required=required)
    if value is None:
        return None
    if isinstance(value, bool):
        raise _fail(where, "not a number")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise _fail(where, "not a finite number")
        number = value
    elif isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value.strip()):
        number = Decimal(value.strip())
    else:
        raise _fail(where, "not a number")
    storable = dynamo_number(number)
    if storable is None:
        raise _fail(where, f"outside {RANGE_TEXT}")
    return storable


def _code(
    obj: Mapping[str, Any],
    key: str,
    path: str,
    allowed: tuple[str, ...],
    default: str | None,
    *,
    required: bool = False,
) -> str | None:
    """A small code (``result``, ``invoiceType``, ``invRowType``, ``invoicingStatus``): a JSON integer
    or a string; integers are compared by value (0 matches "00"); blank -> ``default``."""
    value, where = _field(obj, key, path, required=required)
    if value is None:
        return default
    if isinstance(value, str) and value.strip() in allowed:
        return value.strip()
    if isinstance(value, int | str) and not isinstance(value, bool) and _DIGITS.fullmatch(str(value).strip()):
        for code in allowed:
            if int(code) == int(str(value).strip()):
                return code
    if isinstance(value, Decimal) and value == value.to_integral_value():
        for code in allowed:
            if int(code) == int(value):
                return code
    raise _fail(where, f"must be one of {', '.join(allowed)}")


def _date(obj: Mapping[str, Any], key: str, path: str) -> dt.date | None:
    value, where = _field(obj, key, path)
    if value is None:
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        millis = int(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        millis = value
    else:
        raise _fail(where, "not a date (milliseconds since the epoch)")
    if not _MIN_MS <= millis < _MAX_MS:
        raise _fail(where, "not a date in milliseconds since the epoch between 2000 and 2099")
    return dt.datetime.fromtimestamp(millis / 1000, tz=CHINA_TIME).date()


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, "not a list")
    return value


def _data(body: Mapping[str, Any]) -> list[Any]:
    """``data``: a list, or a JSON string holding the list (the table types it String)."""
    value = body.get("data")
    if blank(value):
        return []
    if isinstance(value, str):
        try:
            value = jsonutil.loads(value)
        except jsonutil.InvalidJson as error:
            raise _fail("data", f"a string that is not a JSON list of invoices ({error})") from None
    return _list(value, "data")


def _tax_rate(line: Mapping[str, Any], path: str, at: str, unreadable: _Unreadable) -> Decimal | None:
    lower = unreadable.decimal(line, "taxrate", path, f"{at}.taxrate")
    camel = unreadable.decimal(line, "taxRate", path, f"{at}.taxRate")
    if lower is not None and camel is not None and lower != camel:
        raise _fail(f"{path}.taxrate", "taxrate and taxRate disagree")
    return lower if lower is not None else camel


def _format_hint(url: str) -> str | None:
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    for suffix, hint in _FILE_SUFFIXES.items():
        if path.endswith(suffix):
            return hint
    return None


# --------------------------------------------------------------------------- parsing


def _raw_text(value: Any) -> str:
    # A JSON null stays "null" here (wire.raw_text gives ""): the text kept as unreadable is stored.
    return value if isinstance(value, str) else jsonutil.dumps(value)


class _Unreadable:
    """Invoice fields that could not be read, by vendor field name (``invoiceAmount``,
    ``details[1].goodsVat``) with the raw text: kept on the invoice, never a refused push."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}

    def decimal(self, obj: Mapping[str, Any], key: str, path: str, name: str) -> Decimal | None:
        try:
            return _decimal(obj, key, path)
        except CallbackRejected:
            self.fields[name] = _raw_text(obj.get(key))
            return None

    def date(self, obj: Mapping[str, Any], key: str, path: str) -> dt.date | None:
        try:
            return _date(obj, key, path)
        except CallbackRejected:
            self.fields[key] = _raw_text(obj.get(key))
            return None

    def text(self, obj: Mapping[str, Any], key: str, path: str, name: str) -> str | None:
        try:
            return _text(obj, key, path)
        except CallbackRejected:
            self.fields[name] = _raw_text(obj.get(key))
            return None


def _line(raw: Any, path: str, index: int, unreadable: _Unreadable) -> InvoiceLine:
    line = _normalized(raw, path)
    at = f"details[{index}]"
    nature = _code(line, "invRowType", path, ("0", "1", "2"), None)
    amount = unreadable.decimal(line, "goodsCost", path, f"{at}.goodsCost")
    tax = unreadable.decimal(line, "goodsVat", path, f"{at}.goodsVat")
    for key, value in (("goodsCost", amount), ("goodsVat", tax)):
        if value is None and f"{at}.{key}" not in unreadable.fields:
            unreadable.fields[f"{at}.{key}"] = ""  # absent: recorded, the line kept
    return InvoiceLine(
        goods_name=unreadable.text(line, "goodsName", path, f"{at}.goodsName") or "",
        # An unreadable amount is kept as 0 on the line; the raw text is in ``unreadable``.
        amount=amount if amount is not None else Decimal(0),
        tax=tax if tax is not None else Decimal(0),
        tax_rate=_tax_rate(line, path, at, unreadable),
        quantity=unreadable.decimal(line, "goodsNum", path, f"{at}.goodsNum"),
        unit_price=unreadable.decimal(line, "goodsPrice", path, f"{at}.goodsPrice"),
        unit=_text(line, "goodsUnit", path),
        specification=_text(line, "goodsSpecification", path),
        tax_code=_text(line, "taxTaxonomyCode", path),
        nature=nature,
    )


def _invoice(raw: Any, path: str) -> IssuedInvoice:
    inv = _normalized(raw, path)
    unreadable = _Unreadable()
    number = unreadable.text(inv, "invoiceNumber", path, "invoiceNumber")
    if number is None:
        unreadable.fields.setdefault("invoiceNumber", _raw_text(inv.get("invoiceNumber", "")))
        number = ""
    type_code = unreadable.text(inv, "invoiceTypeCode", path, "invoiceTypeCode")
    invoice_type = INVOICE_TYPES_BY_CODE.get(type_code or "")
    if invoice_type is None:
        unreadable.fields.setdefault("invoiceTypeCode", _raw_text(inv.get("invoiceTypeCode", "")))
    red = _code(inv, "invoiceType", path, ("0", "1"), "0") == "1"
    state = STATES_BY_CODE[_code(inv, "invoicingStatus", path, tuple(STATES_BY_CODE), "00") or "00"]
    amount = unreadable.decimal(inv, "invoiceAmount", path, "invoiceAmount")
    if amount is None:
        unreadable.fields.setdefault("invoiceAmount", _raw_text(inv.get("invoiceAmount", "")))
    tax = unreadable.decimal(inv, "invoiceTaxAmount", path, "invoiceTaxAmount")
    issued_on = unreadable.date(inv, "invoiceDate", path)
    invoicing_date = unreadable.date(inv, "invoicingDate", path)

    if blank(inv.get("details")):
        raise _fail(f"{path}.details", "required")
    raw_lines = _list(inv["details"], f"{path}.details")
    if not raw_lines:
        raise _fail(f"{path}.details", "an issued invoice needs at least one line")
    lines = tuple(_line(item, f"{path}.details[{i}]", i, unreadable) for i, item in enumerate(raw_lines))

    files = []
    for key in ("originalsUrl", "previewUrl"):
        url = _text(inv, key, path)
        if url is not None:
            files.append(InvoiceFile(url=url, format_hint=_format_hint(url)))

    details: dict[str, str] = {}
    for key, name in DETAIL_FIELDS.items():
        if key in _NUMERIC_DETAILS:
            value = unreadable.decimal(inv, key, path, key)
            if value is not None:
                details[name] = f"{value:f}"
        else:
            text = unreadable.text(inv, key, path, key)
            if text is not None:
                details[name] = text
    if red:
        details[DIRECTION_KEY] = "RED"
    if invoicing_date is not None:
        details[INVOICING_DATE_KEY] = invoicing_date.isoformat()
    ext = inv.get("ext")
    if not blank(ext):
        if not isinstance(ext, dict):
            raise _fail(f"{path}.ext", "not a JSON object")
        if ext:
            details[EXT_KEY] = jsonutil.dumps(ext)

    return IssuedInvoice(
        number=number,
        code=_text(inv, "invoiceCode", path),
        issued_on=issued_on if issued_on is not None else invoicing_date,
        amount=amount,
        tax=tax,
        check_code=unreadable.text(inv, "checkCode", path, "checkCode"),
        invoice_type=invoice_type,
        state=state,
        files=tuple(files),
        lines=lines,
        original_number=unreadable.text(inv, "originalInvoiceNumber", path, "originalInvoiceNumber"),
        original_code=unreadable.text(inv, "originalInvoiceCode", path, "originalInvoiceCode"),
        details=details,
        seller_tax_number=details.get("seller_tax_number"),
        buyer_tax_number=details.get("buyer_tax_number"),
        buyer_name=details.get("buyer_name"),
        unreadable=unreadable.fields,
    )


def _group(keys: list[str | None]) -> dict[str | None, list[int]]:
    groups: dict[str | None, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return groups


def parse_push(body: bytes | str, *, channel_codes: Iterable[str] = ()) -> list[CallbackResult]:
    """The results in a pushed body (see the module docstring). Raises ``CallbackRejected``."""
    try:
        parsed = jsonutil.loads(body)
    except jsonutil.InvalidJson as error:
        raise CallbackRejected(f"body: {error}") from None
    top = _normalized(parsed, "")
    channel_code = _text(top, "channelCode", "", required=True)
    allowed = {c.strip() for c in channel_codes if c.strip()}
    if allowed and channel_code not in allowed:
        raise _fail("channelCode", "not a channel code configured for this channel")
    # Seed 000's example omits ``result``; the table's default is 0. A result 0 is only accepted
    # with complete invoices (strict below), so a body without ``result`` cannot pass for anything else.
    result = int(_code(top, "result", "", ("0", "1", "2"), "0") or "0")
    serial_no = _text(top, "serialNo", "")
    reject_msg = _text(top, "rejectMsg", "")
    raw_invoices = _data(top)

    if result == RESULT_ISSUED:
        if not raw_invoices:
            raise _fail("data", "result 0 (issued) carries no invoice")
        invoices = [_invoice(item, f"data[{i}]") for i, item in enumerate(raw_invoices)]
        if serial_no is not None:
            return [CallbackResult(Issued(tuple(invoices)), request_number=serial_no)]
        groups = _group([inv.details.get("order_no") for inv in invoices])
        return [
            CallbackResult(Issued(tuple(invoices[i] for i in members)), request_number=key)
            for key, members in groups.items()
        ]

    if serial_no is not None:
        numbers: list[str | None] = [serial_no]
    else:
        order_nos = [
            _text(_normalized(item, f"data[{i}]"), "orderNo", f"data[{i}]") for i, item in enumerate(raw_invoices)
        ]
        numbers = list(_group(order_nos)) or [None]
    if result == RESULT_REJECTED:
        reason = reject_msg or "Ekuaibao rejected the application (no rejectMsg given)"
        return [CallbackResult(Rejected(reason), request_number=n) for n in numbers]
    return [CallbackResult(Accepted(channel_ref=n), request_number=n) for n in numbers]


# --------------------------------------------------------------------------- writing


def _plain(value: Decimal | None) -> str:
    return "" if value is None else f"{value:f}"


def _millis(day: dt.date | None) -> int | str:
    if day is None:
        return ""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=CHINA_TIME).timestamp()) * 1000


def _line_body(index: int, line: InvoiceLine) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "billNumber": str(index + 1),
        "detailRowNo": str(index + 1),
        "goodsCost": _plain(line.amount),
        "goodsName": line.goods_name,
        "goodsNum": _plain(line.quantity),
        "goodsPrice": _plain(line.unit_price),
        "goodsSpecification": line.specification or "",
        "goodsSum": _plain(line.amount + line.tax),
        "goodsUnit": line.unit or "",
        "goodsVat": _plain(line.tax),
        "taxTaxonomyCode": line.tax_code or "",
        "taxrate": _plain(line.tax_rate),
    }
    if line.nature is not None:
        entry["invRowType"] = int(line.nature)
    return entry


def _invoice_body(invoice: IssuedInvoice) -> dict[str, Any]:
    if invoice.invoice_type is None:
        raise ValueError(f"invoice {invoice.number}: invoice_type is required by Ekuaibao (invoiceTypeCode)")
    if invoice.amount is None:
        raise ValueError(f"invoice {invoice.number}: amount is required by Ekuaibao (invoiceAmount)")
    urls = [f.url for f in invoice.files if f.url]
    if len(urls) != len(invoice.files) or len(urls) > 2:
        raise ValueError(f"invoice {invoice.number}: Ekuaibao carries at most two files, as URLs")
    if invoice.state not in STATE_CODES:
        raise ValueError(f"invoice {invoice.number}: state {invoice.state.value} has no Ekuaibao code")
    details = invoice.details
    invoicing_date = details.get(INVOICING_DATE_KEY)
    body: dict[str, Any] = {
        "invoiceType": 1 if details.get(DIRECTION_KEY) == "RED" else 0,
        "invoiceTypeCode": INVOICE_TYPE_CODES[invoice.invoice_type],
    }
    for key, name in DETAIL_FIELDS.items():
        body[key] = details.get(name, "")
    body.update(
        {
            "originals": 1 if urls else 0,
            "originalsUrl": urls[0] if urls else "",
            "previewUrl": urls[1] if len(urls) > 1 else "",
            "invoicingDate": _millis(dt.date.fromisoformat(invoicing_date)) if invoicing_date else "",
            "invoicingStatus": STATE_CODES[invoice.state],
            "originalInvoiceNumber": invoice.original_number or "",
            "originalInvoiceCode": invoice.original_code or "",
            "invoiceCode": invoice.code or "",
            "invoiceNumber": invoice.number,
            "invoiceDate": _millis(invoice.issued_on),
            "invoiceAmount": _plain(invoice.amount),
            "invoiceTaxAmount": _plain(invoice.tax),
            "checkCode": invoice.check_code or "",
            "ext": jsonutil.loads(details[EXT_KEY]) if EXT_KEY in details else {},
            "details": [_line_body(i, line) for i, line in enumerate(invoice.lines)],
        }
    )
    return body


def to_push_body(
    channel_code: str,
    serial_no: str | None,
    result: int,
    reject_msg: str | None,
    invoices: Iterable[IssuedInvoice],
) -> dict[str, Any]:
    """A body in seed 000's shape (for writing results back to business systems).

    Money goes out as strings (``Decimal`` text), dates as milliseconds at 00:00 UTC+8, ``data`` as a
    JSON list, and the line tax rate under the table's name ``taxrate``. ``serialNo`` and
    ``rejectMsg`` are left out when None. Raises ``ValueError`` for an invoice Ekuaibao cannot carry
    (no type, no amount, a file given inline or more than two files, a VOID_REQUESTED state).
    """
    if result not in (RESULT_ISSUED, RESULT_REJECTED, RESULT_IN_PROGRESS):
        raise ValueError("result must be 0, 1 or 2")
    body: dict[str, Any] = {"channelCode": channel_code}
    if serial_no is not None:
        body["serialNo"] = serial_no
    body["result"] = result
    if reject_msg is not None:
        body["rejectMsg"] = reject_msg
    body["data"] = [_invoice_body(invoice) for invoice in invoices]
    return body


def hand_over(application: Application) -> dict[str, Any]:
    """The order in seed 000's names: seller, buyer, type, colour, the blue invoice a red one
    reverses, and the lines (amounts tax-exclusive, as the application holds them)."""
    red = application.red
    return {
        "sellerTaxNo": application.seller.tax_number or "",
        "sellerName": application.seller.name,
        "buyerTaxNo": application.buyer.tax_number or "",
        "buyerName": application.buyer.name,
        "invoiceTypeCode": INVOICE_TYPE_CODES[application.invoice_type],
        "invoiceType": 1 if application.direction == Direction.RED else 0,
        "originalInvoiceNumber": red.blue_invoice_number if red else "",
        "originalInvoiceCode": (red.blue_invoice_code or "") if red else "",
        "details": [
            {
                "goodsName": line.goods_name,
                "goodsCost": _plain(line.amount),
                "goodsVat": _plain(line.tax),
                "taxRate": _plain(line.tax_rate),
                "goodsNum": _plain(line.quantity),
                "goodsPrice": _plain(line.unit_price),
                "goodsUnit": line.unit or "",
                "goodsSpecification": line.specification or "",
                "taxTaxonomyCode": line.tax_code or "",
                "invRowType": int(line.nature.value),
            }
            for line in application.lines
        ],
    }


# --------------------------------------------------------------------------- the channel


#: What this channel can do (docs/channels.md): applications reach it out of band and it pushes
#: results of all six types, blue and red; it cannot be asked, and the hub cannot ask it to void.
CAPABILITIES = Capabilities(
    blue=frozenset(InvoiceType),
    red=frozenset(InvoiceType),
    can_query=False,
    dedupes_request_number=True,
)


class EkuaibaoChannel:
    """Ekuaibao: results arrive by push (see the module docstring)."""

    CAPABILITIES = CAPABILITIES
    capabilities = CAPABILITIES
    can_query = False
    dedupes_request_number = True  # issue() sends nothing: repeating it cannot issue twice

    def __init__(self, name: str, settings: ChannelSettings) -> None:
        self.name = name
        self.settings = settings
        self.channel_codes = comma_list(settings.options.get("channel_codes"))

    def issue(self, application: Application, request_number: str) -> Outcome:
        """Nothing is sent: seed 000 documents no submission (applications reach the channel out of
        band); the result comes by push under this request number."""
        return Accepted(channel_ref=request_number)

    def query(self, application: Application, request_number: str) -> QueryOutcome:
        return Unknown("Ekuaibao has no query (seed 000 documents only the result push)")

    def parse_callback(self, body: bytes) -> list[CallbackResult]:
        return parse_push(body, channel_codes=self.channel_codes)
