"""Ekuaibao (seed 000) as the local run needs it: a channel that learns of applications out of band
and pushes its results to the hub's callback URL.

- ``POST /_sandbox/applications`` ``{"requestNumber": "...", "order": {...}, "outcome": "issued",
  "switches": "duplicate"}``: an application reaches the channel (as the business's own Ekuaibao
  integration would hand it over); a background pusher (:mod:`sandbox.pusher`) sends the result
  after ``delay_ms``, signed when a secret is set, with the switches of
  :class:`sandbox.pusher.Switches` (``duplicate``, ``out_of_order``, ``late=2``, ``never``, ...).
  A request number handed over again is not issued again (its first invoice is pushed again).
- ``GET /files/<invoice number>.pdf``: the invoice's PDF (``originalsUrl`` of every pushed invoice).
- ``GET /_sandbox/pushes``: every push made and the hub's HTTP status for it.
- ``GET /_sandbox/issued`` -> ``{"counts": {"<requestNumber>": n}, "total": N}``: invoices issued
  (the oracle; extra and "rejected but issued" invoices included); ``GET /_sandbox/issued/<no>``
  -> ``{"requestNumber", "count", "invoices"}``.
- ``GET``/``POST /_sandbox/config`` ``{"seed", "rates", "latency_ms", "timeout_ms"}`` and
  ``GET``/``POST /_sandbox/faults`` ``{"<requestNumber>": ["wrong_amount"]}``: fault switches
  (:mod:`sandbox.faults`); ``POST /_sandbox/reset`` forgets invoices and faults.

The order (what the invoice reflects)
-------------------------------------
``order`` is the application in seed 000's own field names (``fapiao_hub.channels.ekuaibao.hand_over``
writes it from a hub application): ``sellerTaxNo``, ``sellerName``, ``buyerTaxNo``, ``buyerName``,
``invoiceTypeCode`` (004/007/026/028/01/02), ``invoiceType`` (0 blue, 1 red), for a red one
``originalInvoiceNumber`` / ``originalInvoiceCode``, and ``details``: lines with ``goodsName``,
``goodsCost`` (tax-exclusive), ``goodsVat``, ``taxRate`` and optionally ``goodsNum``,
``goodsPrice``, ``goodsUnit``, ``goodsSpecification``, ``taxTaxonomyCode``, ``invRowType``. The
invoice carries them as given (a red order's negative amounts stay negative), its totals are the
sums of the lines, ``invoiceDate`` is today in China (00:00 UTC+8, in ms). Without an order the
sandbox has nothing to reflect and pushes seed 000's example invoice (:func:`sandbox.pusher.sample_invoice`),
which matches no application: hand the order over.

Faults (one decision per hand-over, keyed by the request number)
----------------------------------------------------------------
``latency`` (the push waits ``latency_ms`` more), ``reject`` (result 1, nothing issued), and the
wrong results: ``wrong_amount``, ``wrong_seller``, ``wrong_type`` (the pushed invoice is wrong),
``extra_invoice`` (a second, different invoice in the same push: both counted; a channel that
answers two invoices where one was asked), ``reject_but_issue`` (result 1 is pushed, the invoice
is counted as issued; Ekuaibao has no query). The other shared faults are about answering a
request, which this channel never does: they are accepted and have no effect.

Binds 127.0.0.1 only. ``callback_url`` may be set after start (the hub's port may be chosen later).

Saved across a restart of the local run (:class:`sandbox.base.SavedState`): the invoices issued per
request number and the pushes not yet taken by the hub (handed over, not yet answered), which
:meth:`EkuaibaoSimulator.restore` pushes again.
"""

from __future__ import annotations

import copy
import hashlib
import re
import threading
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote, urlsplit

from sandbox import faults
from sandbox.base import (
    HOST,
    BadRequest,
    SandboxHandler,
    SandboxServer,
    SavedState,
    check_host,
    china_midnight_millis,
    china_today,
)
from sandbox.partner import invoice_pdf
from sandbox.pusher import BackgroundPusher, Pusher, PushJob, PushRecord, Switches, sample_invoice

#: ``wrong_type``: special <-> normal of the same medium (seed 000 codes).
OTHER_TYPES = {"004": "007", "007": "004", "026": "028", "028": "026", "01": "02", "02": "01"}
REJECT_MESSAGE = "沙箱驳回：购方信息有误"


def _money(value: Any, path: str) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise BadRequest(f"{path}: not a number: {value!r}") from None
    if not number.is_finite():
        raise BadRequest(f"{path}: not a finite number")
    return number


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _numbers(key: str) -> tuple[str, str, str]:
    """Invoice number, code and check code, deterministic per key (request number and position)."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    number = str(int(digest[:12], 16) % 10**8).zfill(8)
    code = "0" + str(int(digest[12:24], 16) % 10**11).zfill(11)
    check_code = str(int(digest[24:44], 16) % 10**20).zfill(20)
    return number, code, check_code


def order_invoice(request_number: str, order: Mapping[str, Any], *, position: int = 0) -> dict[str, Any]:
    """The invoice (seed 000 shape) Ekuaibao issues for ``order``, today, numbered from the request
    number (``position`` > 0: a further invoice for the same request number)."""
    details = order.get("details")
    if not isinstance(details, list) or not details or not all(isinstance(d, Mapping) for d in details):
        raise BadRequest("order.details: a non-empty list of lines is required")
    for field in ("sellerTaxNo", "invoiceTypeCode"):
        if not _text(order.get(field)).strip():
            raise BadRequest(f"order.{field}: required")
    if order["invoiceTypeCode"] not in OTHER_TYPES:
        raise BadRequest(f"order.invoiceTypeCode: one of {', '.join(OTHER_TYPES)}")
    lines = []
    amount = tax = Decimal(0)
    for row, given in enumerate(details):
        cost = _money(given.get("goodsCost"), f"order.details[{row}].goodsCost")
        vat = _money(given.get("goodsVat"), f"order.details[{row}].goodsVat")
        amount, tax = amount + cost, tax + vat
        line = {
            "billNumber": str(row + 1),
            "detailRowNo": str(row + 1),
            "goodsCost": f"{cost:f}",
            "goodsName": _text(given.get("goodsName")),
            "goodsNum": _text(given.get("goodsNum")),
            "goodsPrice": _text(given.get("goodsPrice")),
            "goodsSpecification": _text(given.get("goodsSpecification")),
            "goodsSum": f"{cost + vat:f}",
            "goodsUnit": _text(given.get("goodsUnit")),
            "goodsVat": f"{vat:f}",
            "preferPolicyName": "",
            "preferPolicySign": "",
            "taxTaxonomyCode ": _text(given.get("taxTaxonomyCode")),  # seed 000's trailing space, on purpose
            "taxRate": _text(given.get("taxRate")),
            "zeroTaxSign": "",
        }
        if _text(given.get("invRowType")).strip():
            line["invRowType"] = int(given["invRowType"])
        lines.append(line)
    number, code, check_code = _numbers(request_number if position == 0 else f"{request_number}#{position}")
    millis = china_midnight_millis(china_today())
    red = str(order.get("invoiceType", 0)) == "1"
    return {
        "invoiceType": 1 if red else 0,
        "invoiceTypeCode": order["invoiceTypeCode"],
        "buyerName": _text(order.get("buyerName")),
        "buyerTaxNo": _text(order.get("buyerTaxNo")),
        "invoiceTotalPriceTax": f"{amount + tax:f}",
        "sellerName": _text(order.get("sellerName")),
        "sellerTaxNo": order["sellerTaxNo"],
        "orderNo": "",
        "originals": 0,
        "originalsUrl": "",
        "previewUrl": "",
        "invoicingDate": "",
        "invoicingStatus": "00",
        "originalInvoiceNumber": _text(order.get("originalInvoiceNumber")) if red else "",
        "originalInvoiceCode": _text(order.get("originalInvoiceCode")) if red else "",
        "invoiceCode": code,
        "invoiceNumber": number,
        "invoiceDate": millis,
        "invoiceAmount": f"{amount:f}",
        "invoiceTaxRate": _text(details[0].get("taxRate")),
        "invoiceTaxAmount": f"{tax:f}",
        "checkCode": check_code,
        "ext": {},
        "details": lines,
    }


def spoil(invoice: dict[str, Any], fault: str) -> dict[str, Any]:
    """``invoice`` as a wrong-result fault issues it (see :mod:`sandbox.faults`)."""
    wrong = copy.deepcopy(invoice)
    if fault == faults.WRONG_AMOUNT:
        amount = Decimal(wrong["invoiceAmount"]) + faults.WRONG_AMOUNT_DELTA
        tax = Decimal(wrong["invoiceTaxAmount"]) + faults.WRONG_TAX_DELTA
        wrong.update(invoiceAmount=f"{amount:f}", invoiceTaxAmount=f"{tax:f}", invoiceTotalPriceTax=f"{amount + tax:f}")
        first = wrong["details"][0]
        cost = Decimal(first["goodsCost"]) + faults.WRONG_AMOUNT_DELTA
        vat = Decimal(first["goodsVat"]) + faults.WRONG_TAX_DELTA
        first.update(goodsCost=f"{cost:f}", goodsVat=f"{vat:f}", goodsSum=f"{cost + vat:f}")
    elif fault == faults.WRONG_SELLER:
        wrong.update(sellerTaxNo=faults.OTHER_SELLER_TAX_NUMBER, sellerName=faults.OTHER_SELLER_NAME)
    elif fault == faults.WRONG_TYPE:
        wrong["invoiceTypeCode"] = faults.other_type(wrong["invoiceTypeCode"], OTHER_TYPES)
    return wrong


class EkuaibaoSimulator(SandboxServer, SavedState):
    thread_name = "ekuaibao-sandbox"
    saved_fields = ("_issued", "_pending")
    saved_types = (PushJob, Switches)

    def __init__(
        self,
        port: int = 0,
        *,
        access_token: str,
        hmac_secret: str | None = None,
        delay_ms: int = 1000,
        seed: int = 0,
        verbose: bool = False,
    ):
        self.access_token = access_token
        self.hmac_secret = hmac_secret
        self.delay_ms = delay_ms
        self.callback_url = ""
        self.injector = faults.FaultInjector(seed=seed)
        self._lock = threading.Lock()
        self._invoices: dict[str, dict[str, Any]] = {}  # by invoice number (for the PDFs)
        self._issued: dict[str, list[dict[str, Any]]] = {}  # by request number (the oracle)
        self._pending: dict[str, PushJob] = {}  # by request number: handed over, not yet taken by the hub
        self._background: BackgroundPusher | None = None
        super().__init__(port, _Handler, verbose=verbose)

    def _restored(self) -> None:
        self._invoices = {invoice["invoiceNumber"]: invoice for items in self._issued.values() for invoice in items}

    def restore(self, snapshot: dict[str, Any], base_url: str | None = None) -> None:
        """Take the records back, then push what the hub had not taken before the stop."""
        super().restore(snapshot, base_url)
        with self._lock:
            pending = list(self._pending.values())
        for job in pending:
            self._push_later([job], self.delay_ms / 1000)

    def shutdown(self) -> None:
        if self._background is not None:
            self._background.close()
        super().shutdown()

    def reset(self) -> None:
        with self._lock:
            self._invoices.clear()
            self._issued.clear()
            self._pending.clear()
        self.injector.reset()

    def config(self) -> dict[str, Any]:
        return self.injector.snapshot()

    def configure(self, given: dict[str, Any]) -> dict[str, Any]:
        self.injector.configure(given)
        return self.injector.snapshot()

    def _pusher(self) -> BackgroundPusher:
        with self._lock:
            if self._background is None:
                pusher = Pusher(self.callback_url, self.access_token, self.hmac_secret, channel_code="ekuaibao")
                self._background = BackgroundPusher(pusher, on_pushed=self._pushed)
            return self._background

    def _pushed(self, job: PushJob, records: list[PushRecord]) -> None:
        """A job pushed: no longer pending once the hub answered (a push that reached nobody stays)."""
        if not records or any(record.status is not None for record in records):
            with self._lock:
                if self._pending.get(job.request_number) is job:
                    del self._pending[job.request_number]

    def _push_later(self, jobs: list[PushJob], delay: float) -> None:
        def push() -> None:
            for job in jobs:
                self._pusher().submit(job)

        timer = threading.Timer(delay, push)
        timer.daemon = True
        timer.start()

    def _record(self, request_number: str, invoice: dict[str, Any]) -> dict[str, Any]:
        invoice["originalsUrl"] = f"{self.base_url}/files/{invoice['invoiceNumber']}.pdf"
        invoice["originals"] = 1
        self._invoices[invoice["invoiceNumber"]] = invoice
        self._issued.setdefault(request_number, []).append(invoice)
        return invoice

    def submit(
        self,
        request_number: str,
        outcome: str = "issued",
        switches: str = "",
        order: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Hand an application over; the result is pushed after ``delay_ms`` (see the docstring)."""
        parsed = Switches.parse(switches) if switches else Switches()
        decision = self.injector.decide(request_number)
        fault = decision.fault
        if order is not None:
            invoice = order_invoice(request_number, order)
            extra = order_invoice(request_number, order, position=1) if fault == faults.EXTRA_INVOICE else None
        else:
            invoice, extra = sample_invoice(request_number, china_today()), None
        if decision.wrong_result:
            invoice = spoil(invoice, fault or "")
        issues = outcome == "issued" and fault != faults.REJECT
        pushed_outcome = "rejected" if fault in (faults.REJECT, faults.REJECT_BUT_ISSUE) else outcome
        with self._lock:
            first = self._issued.get(request_number)
            if first:  # handed over again: nothing issued again, the first invoice pushed again
                invoice, extra = first[0], None
            elif issues:
                self._record(request_number, invoice)
                if extra is not None:
                    self._record(request_number, extra)
        pushed = (invoice,) if extra is None or not issues else (invoice, extra)
        jobs = [
            PushJob(
                request_number,
                pushed_outcome,
                parsed,
                pushed if pushed_outcome == "issued" else None,
                REJECT_MESSAGE if pushed_outcome == "rejected" else None,
            )
        ]
        with self._lock:
            for job in jobs:
                self._pending[job.request_number] = job
        self._push_later(jobs, self.delay_ms / 1000 + (self.injector.latency_seconds if decision.latency else 0))
        number = invoice["invoiceNumber"]
        return {"requestNumber": request_number, "invoiceNumber": number, "faults": decision.describe()}

    def pdf(self, number: str) -> bytes | None:
        with self._lock:
            invoice = self._invoices.get(number)
        if invoice is None:
            return None
        return invoice_pdf(
            [
                f"Ekuaibao sandbox invoice {invoice['invoiceCode']} {number}",
                f"Seller {invoice['sellerTaxNo']}  Buyer {invoice['buyerTaxNo'] or '-'}",
                f"Type {invoice['invoiceTypeCode']}  {invoice['invoiceAmount']} + {invoice['invoiceTaxAmount']}",
                china_today().isoformat(),
            ]
        )

    def pushes(self) -> list[dict[str, Any]]:
        if self._background is None:
            return []
        return [
            {"requestNumber": r.request_number, "kind": r.kind, "result": r.result, "status": r.status}
            for r in self._background.pusher.history
        ]

    def summary(self) -> dict[str, Any]:
        with self._lock:
            counts = {number: len(items) for number, items in self._issued.items()}
        return {"counts": counts, "total": sum(counts.values())}

    def for_number(self, request_number: str) -> dict[str, Any]:
        with self._lock:
            items = [copy.deepcopy(i) for i in self._issued.get(request_number, [])]
        return {"requestNumber": request_number, "count": len(items), "invoices": items}


class _Handler(SandboxHandler):
    server: EkuaibaoSimulator

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        simulator = self.server
        match = re.fullmatch(r"/files/(\w+)\.pdf", path)
        if match:
            pdf = simulator.pdf(match.group(1))
            if pdf is None:
                self._send_json(404, {"error": "no such invoice"})
            else:
                self._send(200, pdf, "application/pdf")
        elif path == "/_sandbox/pushes":
            self._send_json(200, simulator.pushes())
        elif path == "/_sandbox/issued":
            self._send_json(200, simulator.summary())
        elif path.startswith("/_sandbox/issued/"):
            self._send_json(200, simulator.for_number(unquote(path.removeprefix("/_sandbox/issued/"))))
        elif not self._control_get(path):
            self._send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        simulator = self.server
        try:
            raw = self._read_body()
            if path == "/_sandbox/applications":
                request = self._control_json(raw)
                number = request.get("requestNumber")
                if not isinstance(number, str | int) or isinstance(number, bool) or not str(number):
                    raise BadRequest("requestNumber: a non-empty string is required")
                order = request.get("order")
                if order is not None and not isinstance(order, dict):
                    raise BadRequest("order: an object is required")
                answer = simulator.submit(
                    str(number), request.get("outcome", "issued"), request.get("switches", ""), order
                )
            else:
                answer = self._control_post(path, raw)
                if answer is None:
                    self._send_json(404, {"error": "not found"})
                    return
        except (BadRequest, faults.FaultConfigError, ValueError, KeyError, TypeError) as error:
            self._send_json(400, {"error": str(error)})
            return
        self._send_json(200, answer)


def run(
    host: str = HOST,
    port: int = 0,
    *,
    access_token: str,
    hmac_secret: str | None = None,
    delay_ms: int = 1000,
    seed: int = 0,
) -> EkuaibaoSimulator:
    check_host(host)
    return EkuaibaoSimulator(
        port, access_token=access_token, hmac_secret=hmac_secret, delay_ms=delay_ms, seed=seed
    ).start()
