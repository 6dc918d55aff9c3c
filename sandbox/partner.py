"""Partner (合作方) ``queryInvoice`` simulator (seed 003): applications walked through their statuses.

A real HTTP server on 127.0.0.1 (standard library only) that answers seed 003's query, checks its
signature, and walks each application (``requestId``) through a script of statuses over time, so a
test can poll it like the hub does and see ``4`` (已申请), then ``1`` (已开票), ``6`` (已申请作废),
``2`` (已作废), ``3`` (开票失败) or ``5`` (已寄出). It counts every invoice it issues per requestId.

Start it with :func:`run` (``server = run(client_id=..., client_secret=...); server.base_url;
server.shutdown()``) or from a shell with ``python -m sandbox.partner --port 8791``. It binds
127.0.0.1 and nothing else.

Vendor endpoint
---------------
``GET /partner/queryInvoice?channel=&timestamp=&sign=&requestId=``, answered HTTP 200 with
``{"result": <int>, "message": <text>, "data": [...] | null}``:

- every parameter present and given once, else result ``400``;
- ``channel`` equal to the client id, else ``401`` "unknown channel";
- ``timestamp`` (milliseconds) within 300 s of the sandbox's clock, else ``401`` "timestamp out of
  window";
- ``sign`` as the sandbox's ``sign_algorithm`` computes it, else ``401`` "invalid sign". The
  signature is **an assumption** (seed 003 does not define it), implemented here independently of
  the channel: ``hmac-sha256-sorted`` (default) = HMAC-SHA256, key = client secret, over the
  parameters except ``sign`` sorted by name as ``name=value`` joined with ``&`` (decoded values),
  lowercase hex; ``md5-sorted-secret`` = MD5 of that string + ``&secret=<secret>``, uppercase hex.
- a requestId the sandbox does not know (auto off, or a script whose first step is still in the
  future): result ``404`` "requestId not found" -- or, with config ``not_found_result`` 0, result 0
  with ``data: []`` (both are what a partner might do; the seed documents neither).
- otherwise result ``0``, message ``SUCCESS`` (or the step's ``message``), one item per invoice of
  the application's current step:

  ======  =================================================================================
  4, 3    ``invoiceId``, ``status``
  1       ``invoiceId``, ``invoiceCode``, ``invoiceNumber``, ``status``, ``invoiceFile`` (base64 of
          a real one-page PDF naming the number), ``invoiceXml`` (a URL on this sandbox)
  5       as 1, plus ``expressNum`` and ``expressName``
  6       ``invoiceId``, ``invoiceCode``, ``invoiceNumber``, ``status`` (the seed's example shows
          only the id; the sandbox also names the invoice)
  2       ``invoiceId``, ``invoiceCode`` / ``invoiceNumber`` of the void (a new number, the
          sandbox's reading of "作废发票号码"), ``originInvoiceCode`` / ``originInvoiceNumber`` of
          the invoice voided, ``status``
  ======  =================================================================================

  With config ``digital`` true (the default) invoices are 数电: a 20-digit number and
  ``invoiceCode`` = the number ("数电发票无发票代码可以传发票号码"); false: a 12-digit code and an
  8-digit number. Invoice ``i`` of an application keeps its id and numbers from step to step.

``GET /partner/files/<invoiceNumber>.xml`` serves the invoice's XML (what ``invoiceXml`` points at):
number, code, requestId, issue time (China, UTC+8) and, when the application was registered with
its ``order``, what the invoice says of it: ``InvoiceTypeCode``, ``Red``, ``SellerTaxNo``,
``SellerName``, ``BuyerTaxNo``, ``BuyerName``, ``TotalAmount`` / ``TotalTax`` (the sums of the
lines), ``IssueDate``, ``OriginalInvoiceNumber`` / ``Code`` and one ``Line`` per order line
(``GoodsName``, ``Amount``, ``Tax``, ``TaxRate``); the PDF names type, seller, buyer and totals.
Seed 003's answer itself has no field for any of these.

Scripts
-------
``POST /_sandbox/applications`` ``{"requestId": "R1", "script": [{"after_ms": 0, "status": 4},
{"after_ms": 300, "status": 1, "invoices": 2}]}`` registers (or replaces) an application; its clock
starts now. A step is ``after_ms`` (non-decreasing, 0..600000) and either ``status`` (1-6) with
``invoices`` (how many items; default as many as the step before, for the first step the config's
``invoices_per_application``) or ``statuses``
(one status per item, e.g. ``[1, 4]``), optionally ``message`` (the answer's message) and
``bad_file`` (true: ``invoiceFile`` is not base64). Optional ``digital`` overrides the config. The
current step is the last one whose ``after_ms`` has passed; before the first, the requestId is
unknown. Invoices already issued for a requestId are kept when it is registered again.
Optional ``order``: the application as the partner receives it out of band, in the same shape as
``sandbox.ekuaibao``'s (seed 000's names: ``sellerTaxNo``, ``sellerName``, ``buyerTaxNo``,
``buyerName``, ``invoiceTypeCode``, ``invoiceType`` 0/1, ``originalInvoiceNumber`` / ``Code``,
``details`` with ``goodsName``, ``goodsCost``, ``goodsVat``, ``taxRate``; written by
``fapiao_hub.channels.ekuaibao.hand_over``); without ``script`` the default script applies (as for
an ``auto`` registration).

With config ``auto`` true (the default), a requestId queried for the first time is registered with
the default script: ``4`` now, ``1`` after ``issue_after_ms``; with probability ``fail_rate`` ``3``
instead of ``1``, else with probability ``void_rate`` also ``6`` after 2 x and ``2`` after 3 x
``issue_after_ms``. Two numbers are drawn from ``random.Random(seed)`` per new application.

Faults (see :mod:`sandbox.faults`)
----------------------------------
One decision per query, taken once ``requestId`` is read and before the signature is checked:
``latency``; ``error_5xx`` (500 JSON, 502/503 nginx HTML); ``connection_reset`` (TCP RST, no
answer); ``reject`` (result ``500`` "系统繁忙", a partner-side error); ``timeout_after_issue`` (the
application advances as usual, then the connection is held ``timeout_ms`` and closed with no
answer); ``malformed`` (HTTP 200, the answer cut short: not JSON). Plus this sandbox's own
``bad_file``: the answer is normal but every ``invoiceFile`` is garbage, not base64. ``bad_file``
is allowed in ``rates`` (drawn from its own ``random.Random(seed)``, one number per query) and in
per-requestId scripts, alone or with others (``["bad_file", "latency"]``).

The wrong results (the query that carries one answers from the script as usual, unless said):
``wrong_amount`` / ``wrong_seller`` / ``wrong_type`` make the application's invoices still to come
(those issued before the switch stay as issued) say 10.00 / 0.60 more,
``faults.OTHER_SELLER_TAX_NUMBER``, or the other type of the medium in their XML and PDF (seed 003's
answer has no place for them); ``extra_invoice`` adds one more issued invoice (its own id and
number, counted) to every answer that lists issued invoices; ``reject_but_issue`` issues the
application's invoices now (counted) and answers every item with status 3 (开票失败); later
queries report them issued (status 1 where the script still says 4).

Sandbox endpoints
-----------------
- ``GET /_sandbox/issued`` -> ``{"counts": {"<requestId>": n}, "total": N, "voided": {...},
  "attempts": {"<requestId>": n}}``: invoices issued per requestId (the oracle), voids, queries.
- ``GET /_sandbox/applications/<requestId>`` -> its script, elapsed time and invoices.
- ``POST /_sandbox/applications`` -> register a script (above).
- ``POST /_sandbox/voids`` ``{"requestId": "R1", "after_ms": 300}`` -> a void request for an issued
  application, out of band like its issue (seed 003 has no void call; the hub's partner channel
  sends nothing for a void): its invoices answer ``6`` (已申请作废) from now and ``2`` (已作废) after
  ``after_ms`` (default ``issue_after_ms``). 400 when the requestId has no issued invoice.
- ``GET``/``POST /_sandbox/config`` ``{"auto", "issue_after_ms", "invoices_per_application",
  "fail_rate", "void_rate", "seed", "not_found_result", "digital", "rates", "latency_ms",
  "timeout_ms"}`` (any subset; ``rates`` replaces the whole table) -> the config.
- ``GET``/``POST /_sandbox/faults`` ``{"<requestId>": ["error_502", "ok"]}`` -> scripts left.
- ``POST /_sandbox/reset`` -> forget applications, invoices, attempts and scripts; config back to
  the defaults.

A bad sandbox request answers 400 ``{"error": "..."}``.

Applications, their invoices and voids, attempts and numbering survive a restart of the local run
(:class:`PartnerState` is a :class:`sandbox.base.SavedState`; a script's clock counts the time stopped).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from sandbox import faults
from sandbox.base import HOST, MONOTONIC, BadRequest, SandboxServer, SavedState, VendorHandler, check_host, china_now

QUERY_PATH = "/partner/queryInvoice"
FILES_PREFIX = "/partner/files/"
DEFAULT_CLIENT_ID = "sandbox-partner"
DEFAULT_CLIENT_SECRET = "sandbox-partner-secret"  # noqa: S105 - the sandbox's test value, not a credential
HMAC_SHA256_SORTED = "hmac-sha256-sorted"
MD5_SORTED = "md5-sorted-secret"
SIGN_ALGORITHMS = (HMAC_SHA256_SORTED, MD5_SORTED)
TIMESTAMP_WINDOW_MS = 300_000
PARAMETERS = ("channel", "timestamp", "sign", "requestId")

RESULT_OK = 0
RESULT_BAD_REQUEST = 400
RESULT_AUTH = 401
RESULT_NOT_FOUND = 404
RESULT_BUSY = 500

ISSUED, VOIDED, FAILED, APPLIED, MAILED, VOID_REQUESTED = 1, 2, 3, 4, 5, 6
STATUSES = frozenset({ISSUED, VOIDED, FAILED, APPLIED, MAILED, VOID_REQUESTED})
NEEDS_INVOICE = frozenset({ISSUED, VOIDED, MAILED, VOID_REQUESTED})

BAD_FILE = "bad_file"
GARBAGE_FILE = "%%这不是base64%%!!not*base64=="
_MAX_MS = 600_000
_MAX_INVOICES = 20
_MAX_BODY = 1024 * 1024

DEFAULT_CONFIG: dict[str, Any] = {
    "auto": True,
    "issue_after_ms": 200,
    "invoices_per_application": 1,
    "fail_rate": 0.0,
    "void_rate": 0.0,
    "not_found_result": RESULT_NOT_FOUND,
    "digital": True,
}


class SandboxError(ValueError):
    """A control request the sandbox cannot apply (answered 400)."""


# -- signature (independent of the channel's code: the sandbox is the oracle) --------------------


def expected_sign(params: Mapping[str, str], secret: str, algorithm: str = HMAC_SHA256_SORTED) -> str:
    text = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign")
    if algorithm == HMAC_SHA256_SORTED:
        return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    if algorithm == MD5_SORTED:
        return hashlib.md5((text + "&secret=" + secret).encode(), usedforsecurity=False).hexdigest().upper()
    raise ValueError(f"unknown sign algorithm {algorithm!r}")


# -- files -----------------------------------------------------------------------------------------


def _pdf_text(text: str) -> str:
    ascii_only = text.encode("ascii", "replace").decode("ascii")
    return ascii_only.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def invoice_pdf(lines: list[str]) -> bytes:
    """A valid one-page PDF 1.4 showing ``lines`` (ASCII; others become ``?``), with a correct xref."""
    content = ["BT", "/F1 14 Tf", "18 TL", "50 370 Td"]
    content += [f"({_pdf_text(line)}) Tj T*" for line in lines]
    content.append("ET")
    stream = "\n".join(content).encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 420] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def invoice_xml(invoice: Invoice, request_id: str) -> str:
    facts = invoice.facts
    parts = [
        f"<InvoiceNumber>{invoice.number}</InvoiceNumber>",
        f"<InvoiceCode>{invoice.code}</InvoiceCode>",
        f"<RequestId>{_xml_escape(request_id)}</RequestId>",
        f"<IssueTime>{invoice.issued_at}</IssueTime>",
    ]
    for tag, key in _XML_FACTS:
        if facts.get(key) not in (None, ""):
            parts.append(f"<{tag}>{_xml_escape(str(facts[key]))}</{tag}>")
    for line in facts.get("details") or []:
        cells = "".join(f"<{tag}>{_xml_escape(str(line.get(key, '')))}</{tag}>" for tag, key in _XML_LINE_FACTS)
        parts.append(f"<Line>{cells}</Line>")
    parts.append("<Note>sandbox partner invoice, not a real fapiao</Note>")
    return '<?xml version="1.0" encoding="UTF-8"?>\n<EInvoice>' + "".join(parts) + "</EInvoice>\n"


# What the invoice XML says of the order (the order's keys: seed 000's names, see the docstring).
_XML_FACTS = (
    ("InvoiceTypeCode", "invoiceTypeCode"),
    ("Red", "invoiceType"),
    ("SellerTaxNo", "sellerTaxNo"),
    ("SellerName", "sellerName"),
    ("BuyerTaxNo", "buyerTaxNo"),
    ("BuyerName", "buyerName"),
    ("TotalAmount", "invoiceAmount"),
    ("TotalTax", "invoiceTaxAmount"),
    ("IssueDate", "invoiceDate"),
    ("OriginalInvoiceNumber", "originalInvoiceNumber"),
    ("OriginalInvoiceCode", "originalInvoiceCode"),
)
_XML_LINE_FACTS = (("GoodsName", "goodsName"), ("Amount", "goodsCost"), ("Tax", "goodsVat"), ("TaxRate", "taxRate"))
#: ``wrong_type``: special <-> normal of the same medium (seed 000 codes, which the order uses).
OTHER_TYPES = {"004": "007", "007": "004", "026": "028", "028": "026", "01": "02", "02": "01"}


def order_facts(order: Mapping[str, Any] | None, issued_on: dt.date, fault: str | None = None) -> dict[str, Any]:
    """What an invoice issued today for ``order`` says (``fault``: a wrong-result fault), or ``{}``."""
    if not order:
        return {}
    facts: dict[str, Any] = {key: order.get(key, "") for _, key in _XML_FACTS if key in order}
    details = [dict(line) for line in order.get("details") or [] if isinstance(line, Mapping)]
    amount = sum((_decimal_or_zero(line.get("goodsCost")) for line in details), Decimal(0))
    tax = sum((_decimal_or_zero(line.get("goodsVat")) for line in details), Decimal(0))
    if fault == faults.WRONG_AMOUNT:
        amount, tax = amount + faults.WRONG_AMOUNT_DELTA, tax + faults.WRONG_TAX_DELTA
        if details:
            details[0]["goodsCost"] = f"{_decimal_or_zero(details[0].get('goodsCost')) + faults.WRONG_AMOUNT_DELTA:f}"
            details[0]["goodsVat"] = f"{_decimal_or_zero(details[0].get('goodsVat')) + faults.WRONG_TAX_DELTA:f}"
    elif fault == faults.WRONG_SELLER:
        facts.update(sellerTaxNo=faults.OTHER_SELLER_TAX_NUMBER, sellerName=faults.OTHER_SELLER_NAME)
    elif fault == faults.WRONG_TYPE and facts.get("invoiceTypeCode") in OTHER_TYPES:
        facts["invoiceTypeCode"] = OTHER_TYPES[facts["invoiceTypeCode"]]
    facts.update(invoiceAmount=f"{amount:f}", invoiceTaxAmount=f"{tax:f}", invoiceDate=issued_on.isoformat())
    facts["details"] = details
    return facts


def _decimal_or_zero(value: Any) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return Decimal(0)
    return number if number.is_finite() else Decimal(0)


def _china_date(iso: str) -> dt.date:
    return dt.date.fromisoformat(iso[:10])


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- state -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    after_ms: int
    statuses: tuple[int, ...]
    message: str | None = None
    bad_file: bool = False

    def public(self) -> dict[str, Any]:
        return {"after_ms": self.after_ms, "statuses": list(self.statuses), "message": self.message}


@dataclass
class Invoice:
    code: str
    number: str
    issued_at: str
    pdf_base64: str = ""
    facts: dict[str, Any] = field(default_factory=dict)  # what it says of the order (order_facts)


@dataclass
class Slot:
    """Invoice ``i`` of an application: its id for good, its numbers once issued, its void."""

    invoice_id: int
    blue: Invoice | None = None
    void: Invoice | None = None
    express_num: str | None = None


@dataclass
class PartnerApplication:
    request_id: str
    steps: tuple[Step, ...]
    started: float = field(metadata=MONOTONIC)
    digital: bool = False
    slots: list[Slot] = field(default_factory=list)
    order: dict[str, Any] | None = None  # handed over with the registration (seed 000's names)
    spoil: str | None = None  # wrong_amount / wrong_seller / wrong_type: how its invoices come out
    extra: bool = False  # extra_invoice: one more invoice than the script says, once issued
    forced: bool = False  # reject_but_issue: issued though the script still says "applied"


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SandboxError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return value


def _rate(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise SandboxError(f"{name} must be a number in 0..1, got {value!r}")
    return float(value)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise SandboxError(f"{name} must be true or false, got {value!r}")
    return value


def parse_script(raw: Any, default_invoices: int) -> tuple[Step, ...]:
    if not isinstance(raw, list) or not raw:
        raise SandboxError("script must be a non-empty list of steps")
    steps: list[Step] = []
    last = 0
    for position, entry in enumerate(raw):
        at = f"script[{position}]"
        if not isinstance(entry, dict):
            raise SandboxError(f"{at} must be an object")
        unknown = set(entry) - {"after_ms", "status", "statuses", "invoices", "message", "bad_file"}
        if unknown:
            raise SandboxError(f"{at}: unknown keys {sorted(unknown)}")
        after = _int(entry.get("after_ms", 0), f"{at}.after_ms", 0, _MAX_MS)
        if after < last:
            raise SandboxError(f"{at}.after_ms must not be smaller than the step before")
        last = after
        if "statuses" in entry:
            if "status" in entry or "invoices" in entry:
                raise SandboxError(f"{at}: give statuses, or status with invoices, not both")
            given = entry["statuses"]
            if not isinstance(given, list) or not 1 <= len(given) <= _MAX_INVOICES:
                raise SandboxError(f"{at}.statuses must be a list of 1..{_MAX_INVOICES} statuses")
            statuses = tuple(_int(s, f"{at}.statuses[]", 1, 6) for s in given)
        else:
            status = _int(entry.get("status"), f"{at}.status", 1, 6)
            default = len(steps[-1].statuses) if steps else default_invoices
            count = _int(entry.get("invoices", default), f"{at}.invoices", 1, _MAX_INVOICES)
            statuses = (status,) * count
        message = entry.get("message")
        if message is not None and not isinstance(message, str):
            raise SandboxError(f"{at}.message must be a string")
        steps.append(Step(after, statuses, message, _bool(entry.get("bad_file", False), f"{at}.bad_file")))
    return tuple(steps)


class PartnerState(SavedState):
    """Applications, their invoices and the oracle counts (thread-safe; saved across a restart)."""

    saved_fields = ("_apps", "_slots", "_attempts", "_next_id", "_next_number", "_next_express")
    saved_types = (PartnerApplication, Step, Slot, Invoice)

    def __init__(
        self, files_url: Callable[[str], str], seed: int = 0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._files_url = files_url
        self._seed = seed
        self._monotonic = monotonic
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._config = {**DEFAULT_CONFIG, "seed": self._seed}
            self._rng = random.Random(self._config["seed"])
            self._apps: dict[str, PartnerApplication] = {}
            self._slots: dict[str, list[Slot]] = {}  # kept across re-registration
            self._by_number: dict[str, tuple[Invoice, str]] = {}
            self._attempts: dict[str, int] = {}
            self._next_id = 100_000_000_001
            self._next_number = 1
            self._next_express = 1

    def _monotonic_now(self) -> float:
        return self._monotonic()

    def _restored(self) -> None:
        # An application's slots are the list kept by request id (it outlives a re-registration), and
        # the by-number index points at the slots' own invoices: one object each, as before the stop.
        for request_id, app in self._apps.items():
            app.slots = self._slots.setdefault(request_id, app.slots)
        self._by_number = {
            slot.blue.number: (slot.blue, request_id)
            for request_id, slots in self._slots.items()
            for slot in slots
            if slot.blue is not None
        }

    # -- configuration

    def config(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._config)

    def configure(self, given: Mapping[str, Any]) -> None:
        update: dict[str, Any] = {}
        for key, value in given.items():
            if key == "auto" or key == "digital":
                update[key] = _bool(value, key)
            elif key == "issue_after_ms":
                update[key] = _int(value, key, 0, _MAX_MS)
            elif key == "invoices_per_application":
                update[key] = _int(value, key, 1, _MAX_INVOICES)
            elif key in ("fail_rate", "void_rate"):
                update[key] = _rate(value, key)
            elif key == "seed":
                update[key] = _int(value, key, -(2**63), 2**63 - 1)
            elif key == "not_found_result":
                update[key] = _int(value, key, -(2**31), 2**31 - 1)
            else:
                raise SandboxError(f"unknown config key {key!r}")
        with self._lock:
            self._config.update(update)
            if "seed" in update:
                self._rng = random.Random(update["seed"])

    def register(self, request_id: str, raw_script: Any, digital: Any = None, order: Any = None) -> dict[str, Any]:
        """Register (or replace) ``request_id``; no script: the default one (as ``auto`` would)."""
        if order is not None and (not isinstance(order, dict) or not isinstance(order.get("details"), list)):
            raise SandboxError("order must be an object with a details list (seed 000's names)")
        with self._lock:
            if raw_script is None:
                self._auto(request_id).order = order
                return self._application(request_id)
            steps = parse_script(raw_script, self._config["invoices_per_application"])
            is_digital = self._config["digital"] if digital is None else _bool(digital, "digital")
            self._apps[request_id] = PartnerApplication(
                request_id, steps, self._monotonic(), is_digital, self._slots.setdefault(request_id, []), order
            )
        return self.application(request_id)

    def void(self, request_id: str, after_ms: Any = None) -> dict[str, Any]:
        """Void an issued application (out of band): 6 from now, 2 after ``after_ms``."""
        with self._lock:
            app = self._apps.get(request_id)
            step = self._current(app) if app is not None else None
            issued = [i for i, status in enumerate(step.statuses) if status in (ISSUED, MAILED)] if step else []
            if app is None or step is None or not issued:
                raise SandboxError(f"requestId {request_id!r} has no issued invoice to void")
            wait = self._config["issue_after_ms"] if after_ms is None else _int(after_ms, "after_ms", 0, _MAX_MS)
            now = int((self._monotonic() - app.started) * 1000)
            count = len(step.statuses)
            app.steps = (
                *(s for s in app.steps if s.after_ms <= now),
                Step(now, (VOID_REQUESTED,) * count),
                Step(now + wait, (VOIDED,) * count),
            )
            return self._application(request_id)

    def note_attempt(self, request_id: str | None) -> None:
        if request_id is None:
            return
        with self._lock:
            self._attempts[request_id] = self._attempts.get(request_id, 0) + 1

    # -- the query

    def answer(self, request_id: str, bad_file: bool, wrong: str | None = None) -> dict[str, Any]:
        """The ``queryInvoice`` answer for ``request_id`` now (issuing what the script says);
        ``wrong``: a wrong-result fault this query carries (see the module docstring)."""
        with self._lock:
            app = self._apps.get(request_id)
            if app is None and self._config["auto"]:
                app = self._auto(request_id)
            if app is not None and wrong is not None:
                self._mark(app, wrong)
            step = self._current(app) if app is not None else None
            if app is None or step is None:
                if self._config["not_found_result"] == RESULT_OK:
                    return {"result": RESULT_OK, "message": "SUCCESS", "data": []}
                return {"result": self._config["not_found_result"], "message": "requestId not found", "data": None}
            statuses = list(step.statuses)
            if app.forced:
                statuses = [ISSUED if status == APPLIED else status for status in statuses]
            if app.extra and any(status in (ISSUED, MAILED) for status in statuses):
                statuses.append(ISSUED)
            bad = bad_file or step.bad_file
            items = [self._item(app, index, status, bad) for index, status in enumerate(statuses)]
            if wrong == faults.REJECT_BUT_ISSUE:
                # Issued and counted above; answered as a failure this once.
                items = [{"invoiceId": item["invoiceId"], "status": FAILED} for item in items]
                return {"result": RESULT_OK, "message": "开票失败 (sandbox reject_but_issue fault)", "data": items}
            return {"result": RESULT_OK, "message": step.message or "SUCCESS", "data": items}

    def _mark(self, app: PartnerApplication, fault: str) -> None:
        if fault == faults.EXTRA_INVOICE:
            app.extra = True
        elif fault == faults.REJECT_BUT_ISSUE:
            app.forced = True
        else:
            # What it issues from now on; an invoice issued earlier stays as it was issued.
            app.spoil = fault

    def _auto(self, request_id: str) -> PartnerApplication:
        c = self._config
        u_fail, u_void = self._rng.random(), self._rng.random()
        count, after = c["invoices_per_application"], c["issue_after_ms"]
        steps = [Step(0, (APPLIED,) * count)]
        if u_fail < c["fail_rate"]:
            steps.append(Step(after, (FAILED,) * count, "开票失败: 购方信息校验不通过 (sandbox)"))
        else:
            steps.append(Step(after, (ISSUED,) * count))
            if u_void < c["void_rate"]:
                steps += [Step(2 * after, (VOID_REQUESTED,) * count), Step(3 * after, (VOIDED,) * count)]
        app = PartnerApplication(
            request_id, tuple(steps), self._monotonic(), c["digital"], self._slots.setdefault(request_id, [])
        )
        self._apps[request_id] = app
        return app

    def _current(self, app: PartnerApplication) -> Step | None:
        elapsed_ms = (self._monotonic() - app.started) * 1000
        current = None
        for step in app.steps:
            if step.after_ms <= elapsed_ms:
                current = step
        return current

    def _slot(self, app: PartnerApplication, index: int) -> Slot:
        while len(app.slots) <= index:
            app.slots.append(Slot(self._next_id))
            self._next_id += 1
        return app.slots[index]

    def _new_invoice(self, app: PartnerApplication) -> Invoice:
        sequence = self._next_number
        self._next_number += 1
        now = china_now()
        if app.digital:
            number = f"{now.year % 100:02d}31{sequence:016d}"  # 20 digits, no code
            code = number
        else:
            number = f"{sequence:08d}"
            code = f"031002{now.year % 100:02d}0011"
        return Invoice(code, number, now.isoformat(timespec="seconds"))

    def _blue(self, app: PartnerApplication, slot: Slot) -> Invoice:
        if slot.blue is None:
            blue = self._new_invoice(app)
            blue.facts = order_facts(app.order, _china_date(blue.issued_at), app.spoil)
            facts = blue.facts
            pdf = invoice_pdf(
                [
                    "Sandbox partner invoice - not a real fapiao",
                    f"Invoice number: {blue.number}",
                    f"Invoice code: {blue.code}",
                    f"requestId: {app.request_id}",
                    f"Issued: {blue.issued_at}",
                    *(
                        [
                            f"Type {facts.get('invoiceTypeCode')}  Seller {facts.get('sellerTaxNo')}",
                            f"Buyer {facts.get('buyerTaxNo') or '-'}",
                            f"Amount {facts['invoiceAmount']}  Tax {facts['invoiceTaxAmount']}",
                        ]
                        if facts
                        else []
                    ),
                ]
            )
            blue.pdf_base64 = base64.b64encode(pdf).decode("ascii")
            slot.blue = blue
            self._by_number[blue.number] = (blue, app.request_id)
        return slot.blue

    def _item(self, app: PartnerApplication, index: int, status: int, bad_file: bool) -> dict[str, Any]:
        slot = self._slot(app, index)
        item: dict[str, Any] = {"invoiceId": slot.invoice_id}
        if status in NEEDS_INVOICE:
            blue = self._blue(app, slot)
            if status == VOIDED:
                if slot.void is None:
                    slot.void = self._new_invoice(app)
                item.update(
                    invoiceCode=slot.void.code,
                    invoiceNumber=slot.void.number,
                    originInvoiceCode=blue.code,
                    originInvoiceNumber=blue.number,
                )
            else:
                item.update(invoiceCode=blue.code, invoiceNumber=blue.number)
            if status in (ISSUED, MAILED):
                item["invoiceFile"] = GARBAGE_FILE if bad_file else blue.pdf_base64
                item["invoiceXml"] = self._files_url(blue.number)
            if status == MAILED:
                if slot.express_num is None:
                    slot.express_num = f"SF{1_400_000_000_000 + self._next_express}"
                    self._next_express += 1
                item.update(expressNum=slot.express_num, expressName="顺丰速运")
        item["status"] = status
        return item

    # -- reading

    def xml(self, number: str) -> str | None:
        with self._lock:
            found = self._by_number.get(number)
        return invoice_xml(*found) if found else None

    def summary(self) -> dict[str, Any]:
        with self._lock:
            counts = {rid: n for rid, slots in self._slots.items() if (n := sum(s.blue is not None for s in slots))}
            voided = {rid: n for rid, slots in self._slots.items() if (n := sum(s.void is not None for s in slots))}
            return {"counts": counts, "total": sum(counts.values()), "voided": voided, "attempts": dict(self._attempts)}

    def application(self, request_id: str) -> dict[str, Any]:
        with self._lock:
            return self._application(request_id)

    def _application(self, request_id: str) -> dict[str, Any]:
        """The application's view; the caller holds the lock."""
        app = self._apps.get(request_id)
        if app is None:
            return {"requestId": request_id, "known": False}
        current = self._current(app)
        return {
            "requestId": request_id,
            "known": True,
            "elapsed_ms": int((self._monotonic() - app.started) * 1000),
            "current": current.public() if current else None,
            "script": [step.public() for step in app.steps],
            "invoices": [
                {
                    "invoiceId": s.invoice_id,
                    "invoiceNumber": s.blue.number if s.blue else None,
                    "voidNumber": s.void.number if s.void else None,
                    "facts": s.blue.facts if s.blue else None,
                }
                for s in app.slots
            ],
        }


# -- faults: the shared injector plus this sandbox's bad_file ---------------------------------------


class PartnerFaults:
    """:class:`sandbox.faults.FaultInjector` with one more fault, ``bad_file`` (rate and scripts)."""

    def __init__(self, seed: int = 0) -> None:
        self.injector = faults.FaultInjector(seed=seed)
        self._seed = seed
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.injector.reset()
        with self._lock:
            self._rng = random.Random(self._seed)
            self._rate = 0.0
            self._scripts: dict[str, deque[bool]] = {}

    def configure(self, config: Mapping[str, Any]) -> None:
        given = dict(config)
        rate = None
        if isinstance(given.get("rates"), Mapping):
            rates = dict(given["rates"])
            rate = _rate(rates.pop(BAD_FILE, 0), f"rates.{BAD_FILE}")
            given["rates"] = rates
        self.injector.configure(given)  # raises FaultConfigError, nothing applied
        with self._lock:
            if rate is not None:
                self._rate = rate
            if isinstance(given.get("seed"), int):
                self._rng = random.Random(given["seed"])

    def snapshot(self) -> dict[str, Any]:
        shared = self.injector.snapshot()
        with self._lock:
            shared["rates"][BAD_FILE] = self._rate
        return shared

    def script(self, plan: Mapping[str, Any]) -> None:
        if not isinstance(plan, Mapping):
            raise faults.FaultConfigError("faults must be an object of requestId -> list of faults")
        shared: dict[str, list[Any]] = {}
        flags: dict[str, deque[bool]] = {}
        for key, entries in plan.items():
            if not isinstance(entries, list):
                raise faults.FaultConfigError(f"faults for {key!r} must be a list, got {entries!r}")
            shared[str(key)], flags[str(key)] = [], deque()
            for entry in entries:
                names = [entry] if isinstance(entry, str) else entry
                if not isinstance(names, list):
                    raise faults.FaultConfigError(f"fault entry must be a name or a list of names, got {entry!r}")
                rest = [name for name in names if name != BAD_FILE]
                flags[str(key)].append(len(rest) != len(names))
                shared[str(key)].append(rest or faults.OK)
        self.injector.script(shared)  # validates the rest; raises before anything is changed
        with self._lock:
            for key, queue in flags.items():
                if queue:
                    self._scripts[key] = queue
                else:
                    self._scripts.pop(key, None)

    def scripts(self) -> dict[str, list[list[str]]]:
        left = self.injector.scripts()
        with self._lock:
            for key, queue in self._scripts.items():
                for names, bad in zip(left.get(key, []), queue, strict=False):
                    if bad:
                        names.append(BAD_FILE)
        return left

    def decide(self, key: str | None) -> tuple[faults.Decision, bool]:
        decision = self.injector.decide(key)
        with self._lock:
            draw = self._rng.random()
            queue = self._scripts.get(key) if key is not None else None
            if queue:
                bad = queue.popleft()
                if not queue:
                    del self._scripts[key]
                return decision, bad
            return decision, (not decision.scripted) and draw < self._rate


# -- HTTP ------------------------------------------------------------------------------------------


class _Handler(VendorHandler):
    server: PartnerServer
    max_body = _MAX_BODY

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        state = self.server.state
        if path == QUERY_PATH:
            self._query(url.query)
        elif path.startswith(FILES_PREFIX) and path.endswith(".xml"):
            xml = state.xml(unquote(path.removeprefix(FILES_PREFIX).removesuffix(".xml")))
            if xml is None:
                self._send_json(404, {"error": "no such invoice"})
            else:
                self._send(200, xml, "application/xml;charset=UTF-8")
        elif path == "/_sandbox/issued":
            self._send_json(200, state.summary())
        elif path.startswith("/_sandbox/applications/"):
            self._send_json(200, state.application(unquote(path.removeprefix("/_sandbox/applications/"))))
        elif not self._control_get(path):
            self._send_json(404, {"error": f"no such path: {path}"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == QUERY_PATH:
            self._send_json(405, {"error": "use GET"})
            return
        try:
            raw = self._read_body()
            if path == "/_sandbox/voids":
                body = self._control_json(raw)
                request_id = body.get("requestId")
                if not isinstance(request_id, str) or not request_id:
                    raise BadRequest("requestId must be a non-empty string")
                unknown = set(body) - {"requestId", "after_ms"}
                if unknown:
                    raise BadRequest(f"unknown keys {sorted(unknown)}")
                self._send_json(200, self.server.state.void(request_id, body.get("after_ms")))
            elif path == "/_sandbox/applications":
                body = self._control_json(raw)
                request_id = body.get("requestId")
                if not isinstance(request_id, str) or not request_id:
                    raise BadRequest("requestId must be a non-empty string")
                unknown = set(body) - {"requestId", "script", "digital", "order"}
                if unknown:
                    raise BadRequest(f"unknown keys {sorted(unknown)}")
                state = self.server.state
                self._send_json(
                    200, state.register(request_id, body.get("script"), body.get("digital"), body.get("order"))
                )
            elif (control := self._control_post(path, raw)) is not None:
                self._send_json(200, control)
            else:
                self._send_json(404, {"error": f"no such path: {path}"})
        except (faults.FaultConfigError, SandboxError, BadRequest) as exc:
            self._send_json(400, {"error": str(exc)})

    # -- queryInvoice

    def _query(self, query: str) -> None:
        server = self.server
        parsed = parse_qs(query, keep_blank_values=True)
        request_ids = parsed.get("requestId") or [None]
        request_id = request_ids[0]
        decision, bad_file = server.faults.decide(request_id)
        server.state.note_attempt(request_id)
        if decision.latency:
            server.stopping.wait(server.faults.injector.latency_seconds)
        if decision.fault == faults.ERROR_5XX:
            self._answer_5xx(decision.status or 500, QUERY_PATH)
            return
        if decision.fault == faults.CONNECTION_RESET:
            self.close_connection = True
            faults.abort_connection(self.connection, self.rfile)
            return
        if decision.fault == faults.REJECT:
            self._send_json(200, {"result": RESULT_BUSY, "message": "系统繁忙,请稍后再试 (sandbox reject fault)"})
            return
        refusal = self._check(parsed)
        if refusal is not None:
            self._send_json(200, {"result": refusal[0], "message": refusal[1], "data": None})
            return
        assert request_id is not None  # checked above
        answer = server.state.answer(request_id, bad_file, decision.fault if decision.wrong_result else None)
        if decision.fault == faults.TIMEOUT_AFTER_ISSUE:
            self.close_connection = True
            server.stopping.wait(server.faults.injector.timeout_seconds)
            return  # closed without a byte of answer
        text = json.dumps(answer, ensure_ascii=False)
        if decision.fault == faults.MALFORMED:
            self._send(200, text[: max(1, len(text) // 2)])
            return
        self._send(200, text)

    def _check(self, parsed: dict[str, list[str]]) -> tuple[int, str] | None:
        server = self.server
        for name in PARAMETERS:
            values = parsed.get(name)
            if not values or not values[0]:
                return RESULT_BAD_REQUEST, f"missing parameter: {name}"
            if len(values) > 1:
                return RESULT_BAD_REQUEST, f"parameter given twice: {name}"
        params = {name: values[0] for name, values in parsed.items()}
        if params["channel"] != server.client_id:
            return RESULT_AUTH, "unknown channel"
        if not params["timestamp"].isdigit():
            return RESULT_BAD_REQUEST, "timestamp must be milliseconds since the epoch"
        if abs(int(server.clock() * 1000) - int(params["timestamp"])) > TIMESTAMP_WINDOW_MS:
            return RESULT_AUTH, "timestamp out of window"
        expected = expected_sign(params, server.client_secret, server.sign_algorithm)
        if not hmac.compare_digest(expected.encode(), params["sign"].encode()):
            return RESULT_AUTH, "invalid sign"
        return None


class PartnerServer(SandboxServer):
    """The simulator; :func:`run` builds and starts one."""

    thread_name = "partner-sandbox"

    def __init__(
        self,
        port: int = 0,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        sign_algorithm: str = HMAC_SHA256_SORTED,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        verbose: bool = False,
    ) -> None:
        if sign_algorithm not in SIGN_ALGORITHMS:
            raise ValueError(f"sign_algorithm must be one of {', '.join(SIGN_ALGORITHMS)}")
        self.client_id = client_id
        self.client_secret = client_secret
        self.sign_algorithm = sign_algorithm
        self.clock = clock
        self.faults = PartnerFaults(seed=seed)
        super().__init__(port, _Handler, verbose=verbose)
        self.state = PartnerState(lambda number: f"{self.base_url}{FILES_PREFIX}{quote(number)}.xml", seed=seed)

    @property
    def query_url(self) -> str:
        return self.base_url + QUERY_PATH

    def config(self) -> dict[str, Any]:
        return {**self.state.config(), **self.faults.snapshot()}

    def configure(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Validate everything, then apply: a bad key changes nothing."""
        shared_keys = {"rates", "latency_ms", "timeout_ms"}
        own = {k: v for k, v in config.items() if k not in shared_keys}
        shared = {k: v for k, v in config.items() if k in shared_keys}
        if "seed" in config:
            shared["seed"] = config["seed"]
        probe_state = PartnerState(lambda number: number)
        probe_state.configure(own)  # raises SandboxError before anything is applied
        PartnerFaults().configure(shared)  # likewise FaultConfigError
        self.state.configure(own)
        self.faults.configure(shared)
        return self.config()

    def reset(self) -> None:
        self.state.reset()
        self.faults.reset()

    def fault_switches(self) -> PartnerFaults:
        return self.faults


def run(
    host: str = HOST,
    port: int = 0,
    *,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
    sign_algorithm: str = HMAC_SHA256_SORTED,
    seed: int = 0,
    clock: Callable[[], float] = time.time,
    verbose: bool = False,
) -> PartnerServer:
    """Start a simulator in a daemon thread; ``port=0`` picks a free port (see ``.base_url``)."""
    check_host(host)
    server = PartnerServer(
        port,
        client_id=client_id,
        client_secret=client_secret,
        sign_algorithm=sign_algorithm,
        seed=seed,
        clock=clock,
        verbose=verbose,
    )
    return server.start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.partner", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--sign-algorithm", choices=SIGN_ALGORITHMS, default=HMAC_SHA256_SORTED)
    parser.add_argument("--seed", type=int, default=0, help="fault RNG seed")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    server = PartnerServer(
        args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        sign_algorithm=args.sign_algorithm,
        seed=args.seed,
        verbose=not args.quiet,
    )
    print(
        f"partner sandbox on {server.base_url} (queryInvoice: {server.query_url}, channel {server.client_id})",
        flush=True,
    )
    server.serve_in_foreground()


if __name__ == "__main__":
    main()
