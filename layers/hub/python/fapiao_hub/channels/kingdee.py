"""Kingdee invoice cloud (金蝶发票云): bills (开票申请单) through ``POST {base_url}/kapi/app/sim/openApi``.

Seed 002 documents ``BILL.INVOICE.QUERY``: the invoices issued for one bill. Every call goes to the
same URL with ``?access_token=...`` and the body ``{requestId, businessSystemCode, interfaceCode,
data}``, where ``data`` is the interface's JSON object encoded as base64 text; the answer
``{data, errorCode, success}`` carries its ``data`` base64-encoded as well.

Public API
----------
- :class:`KingdeeChannel` (``name``, ``settings``, optional ``requests.Session``): the Channel, with
  ``can_query = True`` and ``dedupes_request_number = True``.
- :func:`encode_data` / :func:`decode_data`: the ``data`` envelope (base64 of compact UTF-8 JSON,
  optionally AES-GCM encrypted); decoding is strict and raises :class:`KingdeeEnvelopeError`.
- :func:`build_request`: the whole request body for an interface code and its data.
- :func:`to_bill`: canonical ``Application`` -> the ``BILL.PUSH`` data (see "Assumptions").
- :func:`invoice_from_answer`: one element of ``invoiceList`` -> :class:`IssuedInvoice`.
- :func:`interpret_query_answer` / :func:`interpret_push_answer`: an HTTP status and the answer's
  bytes -> an outcome (pure, never raise).
- :func:`parse_options`: the channel options, checked (raises :class:`KingdeeConfigError`).

Settings
--------
- ``credentials["access_token"]``: sent as the ``access_token`` query parameter (seed 002 marks it
  optional; it is left out when not configured). Tokens are not refreshed here.
- ``options["business_system_code"]`` (required): ``businessSystemCode``.
- ``options["submit"]``: ``"bill_push"`` to send bills with ``BILL.PUSH``; absent or
  ``"out_of_band"``: bills reach Kingdee some other way (the business system pushes them, an RPA, a
  person), ``issue`` sends nothing and answers ``Accepted(channel_ref=request_number)``, and the
  hub's poller finds the invoices with ``BILL.INVOICE.QUERY``.
- ``options["encryption"]``: absent / ``"none"`` (plain base64) or ``"aes-gcm"``: ``data`` is
  ``base64(nonce[12] + AES-GCM(ciphertext + tag))`` with the key ``base64(credentials["aes_key"])``
  (16, 24 or 32 bytes), no associated data, both ways. Needs the ``cryptography`` package; where it
  is not installed the channel refuses to be built (:class:`KingdeeConfigError`).
- ``options["not_found_codes"]`` (default ``"BILL_NOT_FOUND,1004"``), ``options["duplicate_codes"]``
  (default ``"BILL_EXISTS"``), ``options["auth_codes"]`` (default ``"AUTH_FAILED"``): comma-separated
  ``errorCode`` values; ``options["voided_statuses"]`` (default ``"2"``) and
  ``options["void_requested_statuses"]`` (default empty): ``invoiceStatus`` values.
- ``options["drawer"]``, ``options["payee"]``, ``options["reviewer"]``: sent on ``BILL.PUSH``.

Field mapping (``invoiceList`` element -> :class:`IssuedInvoice`)
-----------------------------------------------------------------
==========================================  ==============================================
``invoiceNumber`` (``invoiceNum``)          ``number`` (an entry without one is not issued yet)
``invoiceCode``                             ``code`` (None when empty: 数电)
``invoiceDate`` (ms epoch, or text)         ``issued_on``: the date in Asia/Shanghai (UTC+8)
``totalAmount`` / ``totalTaxAmount``        ``amount`` / ``tax``
``checkCode``                               ``check_code``
``invoiceType``                             ``invoice_type`` (:data:`INVOICE_TYPES_BY_CODE`;
                                            an unknown code: None, kept in details and
                                            ``unreadable``)
``sellerTaxpayerId`` / ``buyerTaxpayerId``  ``seller_tax_number`` / ``buyer_tax_number``
``id``                                      ``channel_invoice_id``
``invoiceStatus``                           ``state`` (see below)
``goods[]``                                 ``lines``: ``goodsName``, ``amount``, ``taxAmount``,
                                            ``taxRate``, ``quantity``, ``price`` (tax-exclusive),
                                            ``units``, ``specification``, ``revenueCode`` (tax
                                            code), ``lineProperty`` (nature 0/1/2)
``canRedAmount`` / ``canRedTaxAmount``      ``red_remaining_amount`` / ``red_remaining_tax``
``originalInvoiceNumber`` / ``...Code``     ``original_number`` / ``original_code``
``invoiceFileUrl`` / ``ofdFileUrl`` /       ``files`` as URLs (``format_hint`` pdf / ofd / xml /
``xmlFileUrl`` / ``invoiceImageUrl``        the image's extension, else ``image``); never fetched
the rest                                    ``details`` (:data:`DETAIL_FIELDS`, non-empty only;
                                            ``bill_no`` is the bill queried)
==========================================  ==============================================

Money is parsed as ``Decimal`` from numbers or strings (never through float). A malformed field never
makes the answer unreadable (the invoice exists all the same): an unreadable figure (not a number,
or one DynamoDB cannot keep: number_range), rate, quantity, price, date or invoice type leaves the
field None and its raw text is recorded in ``IssuedInvoice.unreadable`` under Kingdee's name
(``totalAmount``, ``invoiceDate``, ``goods[1].taxAmount``); a ``goods`` entry
without a readable amount and tax is left out of ``lines``, counted in
``details["unreadable_goods"]`` and its fields recorded the same way.

Outcomes
--------
=====================================================================  ============================
what happened                                                          outcome
=====================================================================  ============================
issue, ``submit`` is not ``bill_push``                                 Accepted(request number),
                                                                       nothing sent
issue: red without the blue invoice's number, a bad discount           Rejected (before sending)
sequence, no seller tax number, ``sellerTaxpayerId`` over 20
connection refused, DNS failure, connect timeout                       NotSent
read timeout, reset after sending, any other error once sending began  Unknown
HTTP 3xx (never followed), 408, 425, 429, 503, other 4xx               NotSent
HTTP 400/413/414/422 without an envelope                               issue: Rejected
                                                                       ``HTTP_<status>``; query:
                                                                       Unknown
HTTP 5xx (but 503)                                                     Unknown (answer kept)
not JSON, no boolean ``success``, ``data`` not strict base64 / JSON,   Unknown (answer kept)
``data`` of an unexpected shape, an answer for another bill
``success: false`` with an auth code                                   Unknown (check the token)
push ``success: true``                                                 Accepted(billNo)
push ``success: false`` with a duplicate code                          Accepted(billNo): the bill
                                                                       exists, the query finds it
push ``success: false`` otherwise                                      Rejected(errorMsg,
                                                                       errorCode)
query ``success: false`` with a not-found code                         NotFound
query ``success: false`` otherwise                                     Unknown
query ``success: true``, ``data`` ``[]``                               NotFound (no such bill)
query: the bill with no invoice, or one still without a number         Accepted(billNo)
query: the bill with invoices, all numbered                            Issued(all of them)
=====================================================================  ============================

``invoiceStatus`` (assumed, after the bureau's 查验 codes): ``0`` normal, ``1`` out of control
(失控), ``2`` voided (作废), ``3`` reversed by a red invoice (红冲), ``4`` abnormal (异常). ``2`` is
:attr:`InvoiceState.VOIDED` (``options["voided_statuses"]``), ``options["void_requested_statuses"]``
:attr:`InvoiceState.VOID_REQUESTED`; every other value is ISSUED (a reversed invoice still exists:
``canRedAmount`` says what is left) with the code in ``details["invoiceStatus"]``.

``splitOrMergeFlag`` (assumed): ``0`` one bill, one invoice; ``1`` the bill was split into several
invoices (over the per-invoice limit): all of them are the bill's; ``2`` several bills were merged
into one invoice: the same invoice is listed under each bill and is returned for each (the hub keys
invoices by code and number, so the second application sees a number it already holds).
``details["split_or_merge"]`` says ``normal`` / ``split`` / ``merge``.

Assumptions
-----------
- Kingdee keys bills by ``billNo``, which is the hub's request number; the query's ``serialNo``
  ("单据编号") is that same bill number (the invoice's own ``serialNo`` in the answer is Kingdee's
  issuing serial and is only kept in details). A bill pushed twice is stored once
  (``dedupes_request_number = True``); the duplicate answer is ``success: false`` with
  ``errorCode`` ``BILL_EXISTS`` (not in the seed: the sandbox's assumption, extended by
  ``options["duplicate_codes"]``).
- ``BILL.PUSH`` is not in the seed. Its ``data`` is one bill in the field names of the query's
  answer: ``billNo`` (request number), ``billDate`` (ms epoch), ``sellerTaxpayerId``,
  ``sellerName``, ``sellerAddressAndTel``, ``sellerBankAndAccount``, ``buyerName``,
  ``buyerTaxpayerId``, ``buyerAddressAndTel``, ``buyerBankAndAccount``, ``buyerRecipientMail``,
  ``buyerRecipientPhone``, ``invoiceType`` (:data:`INVOICE_TYPE_CODES`), ``remark``,
  ``totalAmount``, ``totalTaxAmount``, ``includeTaxAmount``, ``taxFlag`` (``"1"`` prices include
  tax), ``drawer`` / ``payee`` / ``reviewer``, for a red bill ``originalInvoiceCode``,
  ``originalInvoiceNumber``, ``redReason`` and ``redInfoBillNo`` (the red-confirmation number,
  else its UUID), and ``billDetail``: one entry per canonical line (a discount line stays its own
  line, ``lineProperty`` 1 after its ``lineProperty`` 2 line) with ``seq``, ``goodsName``,
  ``revenueCode``, ``specification``, ``units``, ``quantity``, ``price`` (tax-exclusive basis) or
  ``includeTaxPrice`` (tax-inclusive basis), ``amount``, ``taxAmount``, ``includeTaxAmount``,
  ``taxRate``, ``lineProperty``, ``zeroTaxRateFlag``, ``privilegeFlag`` / ``privilegeContent``
  (preferential policy), ``goodsCode`` (material code). Amounts are JSON numbers with 2 decimals,
  rate / price / quantity strings, as in the seed's answer. The answer's ``data``, when present, is
  ``{"billNo": ...}``.
- An empty ``data`` list to a successful query means Kingdee has no such bill (NotFound); a bill
  listed with an empty ``invoiceList`` is known and not issued yet (Accepted).
- While any invoice of the bill has no number yet (a split still being issued), the bill is
  Accepted, so the application is never marked issued with only some of its invoices.
- ``invoiceType`` codes: 004 增值税专用发票, 007 增值税普通发票, 026 增值税电子普通发票, 028 增值税电子专用发票
  (as Ekuaibao / Baiwang), 01 数电专票, 02 数电普票.
- A rejected ``access_token`` is Unknown, not Rejected: the bill was not looked at, and the
  application must not end REJECTED for a credentials problem.
- ``success`` decides; ``errorCode`` is read only when it is false. The seed's page prints the
  answer's ``data`` decoded, but says it travels encoded ("需要解密"): an answer whose ``data`` is
  plain JSON rather than base64 text is Unknown, like any other unreadable ``data``.

Retries and transport are those of :mod:`fapiao_hub.channels.xunlian` (connect retries only, no
redirects). Reasons never carry the buyer's email, mobile, phone, tax number or bank account, nor
credentials (the access token travels in the URL, which is never put in a reason or a log).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

import requests

from fapiao_hub.channels.wire import (
    CENT,
    FIELD_TOO_LONG,
    INVALID_DISCOUNT_LINES,
    MISSING_BLUE_INVOICE,
    UNSUPPORTED_INVOICE_TYPE,
    NotExpressible,
    blank,
    build_post_session,
    comma_list,
    eight_places,
    envelope_or_outcome,
    exchange,
    join_text,
    money_text,
    no_scrub,
    parse_decimal,
    quantize,
    rate_text,
    raw_text,
    read_answer,
    text_or_none,
)
from fapiao_hub.domain import jsonutil
from fapiao_hub.domain.china_time import CHINA_TIME
from fapiao_hub.domain.config import ChannelSettings
from fapiao_hub.domain.discounts import fold_discounts
from fapiao_hub.domain.models import Application, Direction, InvoiceType, Line
from fapiao_hub.domain.number_range import MAX_DIGITS
from fapiao_hub.domain.results import (
    Accepted,
    Capabilities,
    InvoiceFile,
    InvoiceLine,
    InvoiceState,
    Issued,
    IssuedInvoice,
    NotFound,
    NotSent,
    Outcome,
    QueryOutcome,
    Rejected,
    Unknown,
)

logger = logging.getLogger(__name__)

API_PATH = "/kapi/app/sim/openApi"
BILL_PUSH = "BILL.PUSH"
BILL_INVOICE_QUERY = "BILL.INVOICE.QUERY"

#: Canonical type -> Kingdee ``invoiceType`` (docs/rules.md section 3, legacy column).
INVOICE_TYPE_CODES: dict[InvoiceType, str] = {
    InvoiceType.DIGITAL_SPECIAL: "01",
    InvoiceType.DIGITAL_NORMAL: "02",
    InvoiceType.VAT_SPECIAL_PAPER: "004",
    InvoiceType.VAT_NORMAL_PAPER: "007",
    InvoiceType.VAT_NORMAL_ELECTRONIC: "026",
    InvoiceType.VAT_SPECIAL_ELECTRONIC: "028",
}
INVOICE_TYPES_BY_CODE: dict[str, InvoiceType] = {code: t for t, code in INVOICE_TYPE_CODES.items()}

DEFAULT_NOT_FOUND_CODES = "BILL_NOT_FOUND,1004"
DEFAULT_DUPLICATE_CODES = "BILL_EXISTS"
DEFAULT_AUTH_CODES = "AUTH_FAILED"
DEFAULT_VOIDED_STATUSES = "2"

#: ``splitOrMergeFlag`` -> what it is taken to mean (assumed; the seed only shows "0").
SPLIT_OR_MERGE: dict[str, str] = {"0": "normal", "1": "split", "2": "merge"}

#: Answer fields kept in ``IssuedInvoice.details`` (when not empty), under their own names.
DETAIL_FIELDS: tuple[str, ...] = (
    "billNo",
    "serialNo",
    "deviceNo",
    "terminalNo",
    "splitOrMergeFlag",
    "mergeDifferTaxAmount",
    "invoiceStatus",
    "issueStatus",
    "invoiceSource",
    "invoiceProperty",
    "invoiceType",
    "specialRedFlag",
    "redReason",
    "redInfoBillNo",
    "abolishReason",
    "includeTaxAmount",
    "contractNo",
    "orgName",
    "drawer",
    "payee",
    "reviewer",
    "printFlag",
    "downloadFlag",
)

# Outcome code of a check made before sending (the shared ones are in wire).
MISSING_SELLER_TAX_NUMBER = "MISSING_SELLER_TAX_NUMBER"

SELLER_TAX_ID_LIMIT = 20  # seed 002: sellerTaxpayerId <= 20 characters

_NONCE_BYTES = 12
_TAG_BYTES = 16
_SUBMIT_MODES = ("bill_push", "out_of_band")


class KingdeeConfigError(ValueError):
    """The channel's settings cannot work (raised when the channel is built)."""


class KingdeeEnvelopeError(ValueError):
    """A ``data`` field that is not strict base64 of (possibly encrypted) JSON."""


# --------------------------------------------------------------------------- options


def _codes(value: str | None) -> frozenset[str]:
    return frozenset(comma_list(value))


@dataclass(frozen=True)
class KingdeeOptions:
    business_system_code: str
    submit: str
    aes_key: bytes | None
    not_found_codes: frozenset[str]
    duplicate_codes: frozenset[str]
    auth_codes: frozenset[str]
    states: Mapping[str, InvoiceState]


def parse_options(options: Mapping[str, str], credentials: Mapping[str, str]) -> KingdeeOptions:
    """The channel options, checked; raises :class:`KingdeeConfigError` naming the setting."""
    code = text_or_none(options.get("business_system_code"))
    if code is None:
        raise KingdeeConfigError("options.business_system_code is required (Kingdee businessSystemCode)")
    submit = (text_or_none(options.get("submit")) or "out_of_band").strip()
    if submit not in _SUBMIT_MODES:
        raise KingdeeConfigError(f"options.submit must be one of {', '.join(_SUBMIT_MODES)}, got {submit!r}")
    encryption = (text_or_none(options.get("encryption")) or "none").strip().lower()
    aes_key = None
    if encryption == "aes-gcm":
        aes_key = _aes_key(credentials.get("aes_key"))
    elif encryption != "none":
        raise KingdeeConfigError(f"options.encryption must be none or aes-gcm, got {encryption!r}")
    states: dict[str, InvoiceState] = {}
    for status in _codes(options.get("void_requested_statuses")):
        states[status] = InvoiceState.VOID_REQUESTED
    for status in _codes(options.get("voided_statuses", DEFAULT_VOIDED_STATUSES)):
        states[status] = InvoiceState.VOIDED
    return KingdeeOptions(
        business_system_code=code,
        submit=submit,
        aes_key=aes_key,
        not_found_codes=_codes(options.get("not_found_codes", DEFAULT_NOT_FOUND_CODES)),
        duplicate_codes=_codes(options.get("duplicate_codes", DEFAULT_DUPLICATE_CODES)),
        auth_codes=_codes(options.get("auth_codes", DEFAULT_AUTH_CODES)),
        states=states,
    )


def _aes_key(encoded: str | None) -> bytes:
    if not encoded:
        raise KingdeeConfigError("options.encryption is aes-gcm but credentials.aes_key is not set")
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KingdeeConfigError("credentials.aes_key is not valid base64") from None
    if len(key) not in (16, 24, 32):
        raise KingdeeConfigError(f"credentials.aes_key is {len(key)} bytes; AES needs 16, 24 or 32")
    _aesgcm(key)  # fails here, at configuration time, when cryptography is missing
    return key


def _aesgcm(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise KingdeeConfigError(
            "options.encryption aes-gcm needs the 'cryptography' package, which is not installed"
        ) from None
    return AESGCM(key)


# --------------------------------------------------------------------------- envelope


def encode_data(value: Any, aes_key: bytes | None = None) -> str:
    """``value`` as compact UTF-8 JSON, optionally AES-GCM encrypted (nonce first), in base64."""
    raw = jsonutil.dumps(value).encode("utf-8")
    if aes_key is not None:
        nonce = os.urandom(_NONCE_BYTES)
        raw = nonce + _aesgcm(aes_key).encrypt(nonce, raw, None)
    return base64.b64encode(raw).decode("ascii")


def decode_data(text: Any, aes_key: bytes | None = None) -> Any:
    """The JSON value in a ``data`` field; strict: raises :class:`KingdeeEnvelopeError`."""
    if not isinstance(text, str):
        raise KingdeeEnvelopeError(f"data is a JSON {type(text).__name__}, not base64 text")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as error:
        raise KingdeeEnvelopeError(f"data is not valid base64 ({error})") from None
    if aes_key is not None:
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise KingdeeEnvelopeError("data is too short for AES-GCM (nonce and tag)")
        try:
            raw = _aesgcm(aes_key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None)
        except KingdeeConfigError:
            raise
        except Exception:  # cryptography's InvalidTag: wrong key, or not our ciphertext
            raise KingdeeEnvelopeError("data could not be decrypted (AES-GCM authentication failed)") from None
    try:
        return jsonutil.loads(raw)
    except jsonutil.InvalidJson as error:
        raise KingdeeEnvelopeError(f"data is not JSON once decoded ({error})") from None


def build_request(
    interface_code: str,
    data: Any,
    *,
    business_system_code: str,
    aes_key: bytes | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The body of one openApi call (``requestId`` is a millisecond timestamp, as the seed says)."""
    return {
        "requestId": request_id if request_id is not None else str(time.time_ns() // 1_000_000),
        "businessSystemCode": business_system_code,
        "interfaceCode": interface_code,
        "data": encode_data(data, aes_key),
    }


# --------------------------------------------------------------------------- to Kingdee


def _number(value: Decimal) -> Decimal:
    """An amount as a 2-decimal Decimal (jsonutil writes it as a JSON number, digit for digit)."""
    return Decimal(money_text(value))


def to_bill(application: Application, request_number: str, options: Mapping[str, str]) -> dict[str, Any]:
    """The ``BILL.PUSH`` data for ``application`` under ``request_number`` (module docstring).

    Raises :class:`NotExpressible` for what cannot be sent. Absent values are left out.
    """
    seller, buyer = application.seller, application.buyer
    seller_tax = text_or_none(seller.tax_number)
    if seller_tax is None:
        raise NotExpressible("seller.tax_number is required (Kingdee sellerTaxpayerId)", MISSING_SELLER_TAX_NUMBER)
    if len(seller_tax) > SELLER_TAX_ID_LIMIT:
        raise NotExpressible(
            f"seller.tax_number (Kingdee sellerTaxpayerId) is {len(seller_tax)} characters, "
            f"{len(seller_tax) - SELLER_TAX_ID_LIMIT} over the limit of {SELLER_TAX_ID_LIMIT}",
            FIELD_TOO_LONG,
        )
    type_code = INVOICE_TYPE_CODES.get(application.invoice_type)
    if type_code is None:  # every canonical type has a code today; kept for new types
        raise NotExpressible(
            f"invoice type {application.invoice_type.value} has no Kingdee code", UNSUPPORTED_INVOICE_TYPE
        )
    try:
        fold_discounts(application.lines)  # the sequence check only: lines travel unfolded
    except ValueError as error:
        raise NotExpressible(str(error), INVALID_DISCOUNT_LINES) from None

    bill: dict[str, Any] = {
        "billNo": request_number,
        "billDate": time.time_ns() // 1_000_000,
        "sellerTaxpayerId": seller_tax,
        "sellerName": text_or_none(seller.name),
        "sellerAddressAndTel": join_text(seller.address, seller.phone),
        "sellerBankAndAccount": join_text(seller.bank_name, seller.bank_account),
        "buyerName": buyer.name,
        "buyerTaxpayerId": text_or_none(buyer.tax_number),
        "buyerAddressAndTel": join_text(buyer.address, buyer.phone),
        "buyerBankAndAccount": join_text(buyer.bank_name, buyer.bank_account),
        "buyerRecipientMail": text_or_none(buyer.email),
        "buyerRecipientPhone": text_or_none(buyer.mobile),
        "invoiceType": type_code,
        "remark": text_or_none(application.remark),
        "totalAmount": _number(application.amount),
        "totalTaxAmount": _number(application.tax),
        "includeTaxAmount": _number(application.amount_incl_tax),
        "taxFlag": "1" if application.prices_include_tax else "0",
        "drawer": text_or_none(options.get("drawer")),
        "payee": text_or_none(options.get("payee")),
        "reviewer": text_or_none(options.get("reviewer")),
    }
    if application.direction == Direction.RED:
        red = application.red
        if red is None or text_or_none(red.blue_invoice_number) is None:
            raise NotExpressible(
                "a red bill needs the blue invoice's number (red.blue_invoice_number)", MISSING_BLUE_INVOICE
            )
        bill["originalInvoiceNumber"] = red.blue_invoice_number
        bill["originalInvoiceCode"] = text_or_none(red.blue_invoice_code)
        bill["redReason"] = red.reason.value if red.reason is not None else None
        bill["redInfoBillNo"] = text_or_none(red.confirmation_number) or text_or_none(red.confirmation_uuid)
    bill["billDetail"] = [
        _line_to_bill(seq, line, application.prices_include_tax) for seq, line in enumerate(application.lines)
    ]
    return {k: v for k, v in bill.items() if v is not None}


def _line_to_bill(seq: int, line: Line, prices_include_tax: bool) -> dict[str, Any]:
    policy = text_or_none(line.preferential_policy)
    entry: dict[str, Any] = {
        "seq": seq,
        "goodsName": line.goods_name,
        "revenueCode": text_or_none(line.tax_code),
        "goodsCode": text_or_none(line.material_code),
        "specification": text_or_none(line.specification),
        "units": text_or_none(line.unit),
        "quantity": eight_places(line.quantity) if line.quantity is not None else None,
        "amount": _number(line.amount),
        "taxAmount": _number(line.tax),
        "includeTaxAmount": _number(line.amount_incl_tax),
        "taxRate": rate_text(line.tax_rate),
        "lineProperty": int(line.nature.value),
        "zeroTaxRateFlag": text_or_none(line.zero_rate_flag),
        "privilegeFlag": 1 if policy else 0,
        "privilegeContent": policy,
    }
    if line.unit_price is not None:
        entry["includeTaxPrice" if prices_include_tax else "price"] = eight_places(line.unit_price)
    return {k: v for k, v in entry.items() if v is not None}


# --------------------------------------------------------------------------- from Kingdee


def _number_or_none(value: Any) -> Decimal | None:
    """A number DynamoDB can keep (parse_decimal), or None (not a number, or outside its range)."""
    try:
        return parse_decimal(value, "number")
    except ValueError:
        return None


def _money_or_none(value: Any) -> Decimal | None:
    """An amount; written with 2 decimals when it has at most 2 (91.7 -> 91.70), else as sent."""
    number = _number_or_none(value)
    if number is None:
        return None
    exponent = number.as_tuple().exponent
    # Only while the 2 decimals keep it within DynamoDB's 38 digits (a larger one stays as sent).
    if isinstance(exponent, int) and exponent >= -2 and number.adjusted() < MAX_DIGITS - 2:
        return quantize(number, CENT)
    return number


def _code_text(value: Any) -> str | None:
    """A code that may arrive as a number or a string (``invoiceStatus`` 0 or "0")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return str(int(value)) if value == value.to_integral_value() else f"{value:f}"
    return text_or_none(value) if isinstance(value, int | str) else None


def _issued_on(value: Any) -> dt.date | None:
    """``invoiceDate``: milliseconds since the epoch (the seed), or ``yyyy-MM-dd[ HH:mm:ss]`` text."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        value = int(value) if value == value.to_integral_value() else None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    try:
        if isinstance(value, int):
            return dt.datetime.fromtimestamp(value / 1000, CHINA_TIME).date()
        if isinstance(value, str) and value.strip():
            return dt.date.fromisoformat(value.strip()[:10])
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _raw_text(value: Any) -> str:
    # A number read as Decimal is kept in plain notation here (wire.raw_text would write JSON).
    if isinstance(value, Decimal):
        return f"{value:f}"
    return raw_text(value)


def _read_money(raw: Mapping[str, Any], field: str, name: str, unreadable: dict[str, str]) -> Decimal | None:
    """An amount, or None; a value that is there but not a number is recorded as ``name``."""
    value = raw.get(field)
    number = _money_or_none(value)
    if number is None and not blank(value):
        unreadable[name] = _raw_text(value)
    return number


def _read_number(raw: Mapping[str, Any], field: str, name: str, unreadable: dict[str, str]) -> Decimal | None:
    """A rate, quantity or price, or None; a value that is there but unusable is recorded as ``name``."""
    value = raw.get(field)
    number = _number_or_none(value)
    if number is None and not blank(value):
        unreadable[name] = _raw_text(value)
    return number


def _line(raw: Mapping[str, Any], at: str, unreadable: dict[str, str]) -> InvoiceLine | None:
    amount = _read_money(raw, "amount", f"{at}.amount", unreadable)
    tax = _read_money(raw, "taxAmount", f"{at}.taxAmount", unreadable)
    if amount is None or tax is None:
        for field, value in (("amount", amount), ("taxAmount", tax)):
            if value is None:
                unreadable.setdefault(f"{at}.{field}", _raw_text(raw.get(field)))
        return None
    nature = _code_text(raw.get("lineProperty"))
    return InvoiceLine(
        goods_name=text_or_none(raw.get("goodsName")) or "",
        amount=amount,
        tax=tax,
        tax_rate=_read_number(raw, "taxRate", f"{at}.taxRate", unreadable),
        quantity=_read_number(raw, "quantity", f"{at}.quantity", unreadable),
        unit_price=_read_number(raw, "price", f"{at}.price", unreadable),
        unit=text_or_none(raw.get("units")),
        specification=text_or_none(raw.get("specification")),
        tax_code=text_or_none(raw.get("revenueCode")),
        nature=nature if nature in ("0", "1", "2") else None,
    )


_IMAGE_HINTS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".gif": "gif"}


def _files(raw: Mapping[str, Any]) -> tuple[InvoiceFile, ...]:
    files: list[InvoiceFile] = []
    for field, hint in (("invoiceFileUrl", "pdf"), ("ofdFileUrl", "ofd"), ("xmlFileUrl", "xml")):
        url = text_or_none(raw.get(field))
        if url is not None:
            files.append(InvoiceFile(url=url.strip(), format_hint=hint))
    image = text_or_none(raw.get("invoiceImageUrl"))
    if image is not None:
        path = image.strip().split("?", 1)[0].lower()
        hint = next((h for ext, h in _IMAGE_HINTS.items() if path.endswith(ext)), "image")
        files.append(InvoiceFile(url=image.strip(), format_hint=hint))
    return tuple(files)


def _has_number(raw: Mapping[str, Any]) -> bool:
    return text_or_none(raw.get("invoiceNumber")) is not None or text_or_none(raw.get("invoiceNum")) is not None


def invoice_from_answer(
    raw: Mapping[str, Any],
    *,
    bill_no: str | None = None,
    states: Mapping[str, InvoiceState] | None = None,
) -> IssuedInvoice | None:
    """One ``invoiceList`` element as an :class:`IssuedInvoice`; None while it has no number."""
    number = text_or_none(raw.get("invoiceNumber")) or text_or_none(raw.get("invoiceNum"))
    if number is None:
        return None
    states = states if states is not None else {DEFAULT_VOIDED_STATUSES: InvoiceState.VOIDED}
    status = _code_text(raw.get("invoiceStatus"))
    type_code = _code_text(raw.get("invoiceType"))
    unreadable: dict[str, str] = {}
    goods_field = "goods"
    goods = raw.get("goods")
    if not isinstance(goods, list):
        goods_field = "invoiceDetail"
        goods = raw.get("invoiceDetail") if isinstance(raw.get("invoiceDetail"), list) else []
    lines = []
    for i, item in enumerate(goods):
        if isinstance(item, Mapping):
            lines.append(_line(item, f"{goods_field}[{i}]", unreadable))
        else:
            unreadable[f"{goods_field}[{i}]"] = _raw_text(item)
            lines.append(None)
    invoice_type = INVOICE_TYPES_BY_CODE.get(type_code) if type_code is not None else None
    if invoice_type is None and not blank(raw.get("invoiceType")):
        unreadable["invoiceType"] = _raw_text(raw.get("invoiceType"))
    issued_on = _issued_on(raw.get("invoiceDate"))
    if issued_on is None and not blank(raw.get("invoiceDate")):
        unreadable["invoiceDate"] = _raw_text(raw.get("invoiceDate"))
    details: dict[str, str] = {}
    for field in DETAIL_FIELDS:
        value = _code_text(raw.get(field))
        if value is not None and value.strip():
            details[field] = value.strip()
    flag = details.get("splitOrMergeFlag")
    if flag is not None:
        details["split_or_merge"] = SPLIT_OR_MERGE.get(flag, "unknown")
    if bill_no is not None:
        details["bill_no"] = bill_no
    unreadable_goods = sum(1 for line in lines if line is None)
    if unreadable_goods:
        details["unreadable_goods"] = str(unreadable_goods)
    return IssuedInvoice(
        number=number.strip(),
        code=(text_or_none(raw.get("invoiceCode")) or "").strip() or None,
        issued_on=issued_on,
        amount=_read_money(raw, "totalAmount", "totalAmount", unreadable),
        tax=_read_money(raw, "totalTaxAmount", "totalTaxAmount", unreadable),
        check_code=(text_or_none(raw.get("checkCode")) or "").strip() or None,
        invoice_type=invoice_type,
        channel_invoice_id=_code_text(raw.get("id")),
        state=states.get(status, InvoiceState.ISSUED) if status is not None else InvoiceState.ISSUED,
        files=_files(raw),
        lines=tuple(line for line in lines if line is not None),
        red_remaining_amount=_read_money(raw, "canRedAmount", "canRedAmount", unreadable),
        red_remaining_tax=_read_money(raw, "canRedTaxAmount", "canRedTaxAmount", unreadable),
        original_number=text_or_none(raw.get("originalInvoiceNumber")),
        original_code=text_or_none(raw.get("originalInvoiceCode")),
        details=details,
        seller_tax_number=(text_or_none(raw.get("sellerTaxpayerId")) or "").strip() or None,
        buyer_tax_number=(text_or_none(raw.get("buyerTaxpayerId")) or "").strip() or None,
        unreadable=unreadable,
    )


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class _Answer:
    success: bool
    code: str | None
    message: str | None
    data: Any  # decoded; None when the answer carried none


def _read_answer(
    status_code: int, content: bytes, *, aes_key: bytes | None, issuing: bool
) -> _Answer | NotSent | Rejected | Unknown:
    """The envelope of an answer, or the outcome when there is none to read."""
    answer = envelope_or_outcome(
        status_code,
        content,
        is_envelope=lambda envelope: isinstance(envelope.get("success"), bool),
        envelope_name="Kingdee's envelope (no boolean 'success')",
        issuing=issuing,
    )
    if not isinstance(answer, dict):
        return answer
    data = answer.get("data")
    if data is not None and data != "":
        try:
            data = decode_data(data, aes_key)
        except KingdeeEnvelopeError as error:
            return Unknown(f"the answer's data cannot be read: {error}", raw=content)
    else:
        data = None
    message = (
        text_or_none(answer.get("errorMsg"))
        or text_or_none(answer.get("message"))
        or text_or_none(answer.get("description"))
    )
    return _Answer(answer["success"], _code_text(answer.get("errorCode")), message, data)


def _auth_failure(answer: _Answer, scrub: Callable[[str], str], raw: bytes) -> Unknown:
    said = f": {scrub(answer.message)}" if answer.message else ""
    return Unknown(
        f"Kingdee refused the access_token (errorCode {answer.code}{said}); the request was not processed: "
        "check credentials.access_token",
        raw=raw,
    )


def interpret_push_answer(
    status_code: int,
    content: bytes,
    *,
    request_number: str,
    aes_key: bytes | None = None,
    duplicates: frozenset[str] = _codes(DEFAULT_DUPLICATE_CODES),
    auth_codes: frozenset[str] = _codes(DEFAULT_AUTH_CODES),
    scrub: Callable[[str], str] = no_scrub,
) -> Outcome:
    """What an answer to ``BILL.PUSH`` means (the module docstring's table). Never raises."""
    answer = _read_answer(status_code, content, aes_key=aes_key, issuing=True)
    if not isinstance(answer, _Answer):
        return answer
    data = answer.data
    if data is not None:
        if not isinstance(data, dict):
            return Unknown("the answer's data is not an object", raw=content)
        echoed = _code_text(data.get("billNo"))
        if echoed is not None and echoed != request_number:
            return Unknown("the answer is for another bill", raw=content)
    if answer.success:
        return Accepted(channel_ref=request_number)
    if answer.code in auth_codes:
        return _auth_failure(answer, scrub, content)
    if answer.code in duplicates:
        return Accepted(channel_ref=request_number)
    return Rejected(scrub(answer.message or "rejected by Kingdee"), code=answer.code)


def interpret_query_answer(
    status_code: int,
    content: bytes,
    *,
    request_number: str,
    aes_key: bytes | None = None,
    not_found_codes: frozenset[str] = _codes(DEFAULT_NOT_FOUND_CODES),
    auth_codes: frozenset[str] = _codes(DEFAULT_AUTH_CODES),
    states: Mapping[str, InvoiceState] | None = None,
    scrub: Callable[[str], str] = no_scrub,
) -> QueryOutcome:
    """What an answer to ``BILL.INVOICE.QUERY`` means (the module docstring's table). Never raises."""
    answer = _read_answer(status_code, content, aes_key=aes_key, issuing=False)
    if not isinstance(answer, _Answer):
        return answer
    if not answer.success:
        if answer.code in not_found_codes:
            return NotFound()
        if answer.code in auth_codes:
            return _auth_failure(answer, scrub, content)
        said = scrub(answer.message) if answer.message else "no message"
        return Unknown(f"the query failed (errorCode {answer.code}: {said})", raw=content)
    data = answer.data
    if not isinstance(data, list):
        return Unknown("the answer's data is not a list of bills", raw=content)
    if not data:
        return NotFound()
    bills = [b for b in data if isinstance(b, dict)]
    if len(bills) != len(data):
        return Unknown("the answer's data holds something that is not a bill", raw=content)
    ours = [b for b in bills if _code_text(b.get("billNo")) == request_number]
    if not ours and len(bills) == 1 and _code_text(bills[0].get("billNo")) is None:
        ours = bills  # one bill without its number: the one asked for
    if not ours:
        return Unknown("the answer is for another bill", raw=content)
    raw_invoices: list[Mapping[str, Any]] = []
    for bill in ours:
        listed = bill.get("invoiceList")
        if listed is None:
            continue
        if not isinstance(listed, list) or not all(isinstance(i, dict) for i in listed):
            return Unknown("the bill's invoiceList is not a list of invoices", raw=content)
        raw_invoices.extend(listed)
    if not raw_invoices or not all(_has_number(i) for i in raw_invoices):
        return Accepted(channel_ref=request_number)
    invoices: list[IssuedInvoice] = []
    seen: set[tuple[str | None, str]] = set()
    for raw in raw_invoices:
        invoice = invoice_from_answer(raw, bill_no=request_number, states=states)
        if invoice is None:  # pragma: no cover - every entry has a number here
            continue
        key = (invoice.code, invoice.number)
        if key not in seen:
            seen.add(key)
            invoices.append(invoice)
    return Issued(tuple(invoices))


# --------------------------------------------------------------------------- the channel


#: What this channel can do (docs/channels.md): all six types (数电 included), blue and red (a red
#: bill needs the blue invoice's number); queried by bill number; no void call.
CAPABILITIES = Capabilities(
    blue=frozenset(INVOICE_TYPE_CODES),
    red=frozenset(INVOICE_TYPE_CODES),
    can_query=True,
    dedupes_request_number=True,
    field_limits={"seller.tax_number": f"{SELLER_TAX_ID_LIMIT} characters (Kingdee sellerTaxpayerId)"},
)


class KingdeeChannel:
    """The Kingdee invoice-cloud channel (see the module docstring)."""

    CAPABILITIES = CAPABILITIES
    capabilities = CAPABILITIES
    can_query = True
    # Kingdee keys bills by billNo (our request number): a bill pushed again is not stored twice.
    dedupes_request_number = True

    def __init__(self, name: str, settings: ChannelSettings, session: requests.Session | None = None) -> None:
        self.name = name
        self.settings = settings
        self.options = parse_options(settings.options, settings.credentials)
        self.url = settings.base_url.rstrip("/") + API_PATH
        self.timeout = (settings.connect_timeout_seconds, settings.read_timeout_seconds)
        token = text_or_none(settings.credentials.get("access_token"))
        self.params = {"access_token": token} if token is not None else {}
        # A session passed in is used as it is: its adapters decide retries.
        self.session = session if session is not None else build_post_session(settings)

    # -- Channel

    def issue(self, application: Application, request_number: str) -> Outcome:
        if self.options.submit != "bill_push":
            return Accepted(channel_ref=request_number)  # the bill reaches Kingdee out of band
        try:
            bill = to_bill(application, request_number, self.settings.options)
        except NotExpressible as error:
            return Rejected(error.reason, code=error.code)
        outcome = read_answer(
            self._post(BILL_PUSH, bill),
            application,
            self.settings.credentials,
            partial(
                interpret_push_answer,
                request_number=request_number,
                aes_key=self.options.aes_key,
                duplicates=self.options.duplicate_codes,
                auth_codes=self.options.auth_codes,
            ),
        )
        self._log(BILL_PUSH, request_number, outcome)
        return outcome

    def query(self, application: Application, request_number: str) -> QueryOutcome:
        seller_tax = text_or_none(application.seller.tax_number)
        if seller_tax is None:
            return Unknown("cannot query Kingdee without the seller's tax number (sellerTaxpayerId)")
        outcome = read_answer(
            self._post(BILL_INVOICE_QUERY, {"sellerTaxpayerId": seller_tax, "serialNo": request_number}),
            application,
            self.settings.credentials,
            partial(
                interpret_query_answer,
                request_number=request_number,
                aes_key=self.options.aes_key,
                not_found_codes=self.options.not_found_codes,
                auth_codes=self.options.auth_codes,
                states=self.options.states,
            ),
        )
        self._log(BILL_INVOICE_QUERY, request_number, outcome)
        return outcome

    # -- transport

    def _post(self, interface_code: str, data: Any) -> requests.Response | NotSent | Unknown:
        body = build_request(
            interface_code,
            data,
            business_system_code=self.options.business_system_code,
            aes_key=self.options.aes_key,
        )
        payload = jsonutil.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json;charset=UTF-8", "Accept": "application/json"}
        return exchange(
            self.session, "POST", self.url, vendor="Kingdee", timeout=self.timeout, params=self.params,
            data=payload, headers=headers,
        )  # fmt: skip

    def _log(self, interface_code: str, request_number: str, outcome: QueryOutcome) -> None:
        logger.info(
            "kingdee answered",
            extra={
                "channel": self.name,
                "interface": interface_code,
                "request_number": request_number,
                "outcome": type(outcome).__name__,
            },
        )
