"""Ekuaibao (易快报) result-push simulator: a channel that PUSHES results to the hub (seed 000).

Where :mod:`sandbox.xunlian` is a server the hub calls, this is a client that calls the hub: it posts
seed 000's body (``channelCode``, ``serialNo``, ``result``, ``rejectMsg``, ``data``) to a callback URL
with ``?accessToken=...``, optionally signed, and records the HTTP status of every push. It binds
nothing. It deliberately shares no code with the hub (not ``fapiao_hub.channels.ekuaibao``, not
``fapiao_hub.usecases.callback_auth``): it is a second, independent reading of seed 000 and of the
signature rule in docs, so a mistake on one side shows up as a failing push.

Usage::

    pusher = Pusher("http://127.0.0.1:3000/v1/callbacks/ekuaibao", "token", hmac_secret=b"secret")
    records = pusher.push("FH0123...", "issued", switches=Switches(duplicate=True))
    [r.status for r in records]                      # e.g. [200, 200]

or ``python -m sandbox.pusher --url URL --token T --request-number N --outcome issued
--switches duplicate,late=2``.

Outcomes: ``"issued"`` (result 0, with the invoices given or one sample invoice),
``"rejected"`` (result 1 with ``rejectMsg``), ``"in_progress"`` (result 2).

Bodies look like seed 000's example, quirks included: money as strings, the line key
``"taxTaxonomyCode "`` with its trailing space, ``taxRate`` (not the table's ``taxrate``),
``invoicingDate: ""``, ``invoiceDate`` in milliseconds (00:00 China time). Which application a push
belongs to (``identify_by``): ``"serialNo"`` (default) sets ``serialNo`` to the request number,
``"orderNo"`` sets each invoice's ``orderNo`` instead (and, for results 1 and 2, sends
``data: [{"orderNo": ...}]``), ``"none"`` sets neither, like seed 000's example.

Switches (:class:`Switches`), the ways a real channel delivers:

============  ========================================================================================
once          the default: a single push
never         no push at all (the hub must find the result by polling, or not at all)
duplicate     the same body twice, the second signed afresh (a channel re-delivering)
replay        the first request re-sent byte for byte, headers included (same timestamp, signature,
              nonce): what an attacker replaying a captured push does
out_of_order  after the final result, an "in progress" push (result 2) for the same request number
late=S        wait S seconds before the first push
============  ========================================================================================

Pushes of one call go in this order: the result, its duplicate, the replay, the out-of-order
"in progress". Signing (when ``hmac_secret`` is given): headers ``x-fapiao-timestamp`` (epoch
seconds), ``x-fapiao-nonce`` (32 hex characters, unless ``use_nonce=False``) and
``x-fapiao-signature``: hex HMAC-SHA256 over ``f"{timestamp}." + body``, or
``f"{timestamp}.{nonce}." + body`` with a nonce.

Background mode: :class:`BackgroundPusher` takes jobs from a queue on one thread (``submit``,
``wait``, ``close``); a job's ``late`` delays the jobs after it too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from sandbox.base import CHINA, china_midnight_millis

OUTCOMES = {"issued": 0, "rejected": 1, "in_progress": 2}
IDENTIFY_BY = ("serialNo", "orderNo", "none")


@dataclass(frozen=True)
class Switches:
    duplicate: bool = False
    replay: bool = False
    out_of_order: bool = False
    late: float = 0.0
    never: bool = False

    def __post_init__(self) -> None:
        if self.late < 0:
            raise ValueError("late must be >= 0 seconds")
        if self.never and (self.duplicate or self.replay or self.out_of_order or self.late):
            raise ValueError("never excludes every other switch")

    @classmethod
    def once(cls) -> Switches:
        return cls()

    @classmethod
    def parse(cls, text: str) -> Switches:
        """``"once"``, ``"never"``, or a comma-separated list such as ``"duplicate,late=1.5"``."""
        values: dict[str, Any] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part or part == "once":
                continue
            name, _, value = part.partition("=")
            if name == "late":
                values["late"] = float(value or "1")
            elif name in ("duplicate", "replay", "out_of_order", "never") and not value:
                values[name] = True
            else:
                raise ValueError(f"unknown switch {part!r}")
        return cls(**values)


@dataclass(frozen=True)
class PushRecord:
    request_number: str
    kind: str  # "result", "duplicate", "replay", "out_of_order"
    result: int  # the body's result code
    body: bytes
    headers: dict[str, str]
    status: int | None  # HTTP status, None when the request failed
    error: str | None = None  # the exception's type name when it failed
    answer: bytes = b""


def sample_invoice(request_number: str, issued_on: dt.date, *, order_no: str = "") -> dict[str, Any]:
    """One issued invoice in seed 000's shape, numbered deterministically from the request number."""
    digest = hashlib.sha256(request_number.encode("utf-8")).hexdigest()
    number = str(int(digest[:12], 16) % 10**8).zfill(8)
    code = "0" + str(int(digest[12:24], 16) % 10**11).zfill(11)
    check_code = str(int(digest[24:44], 16) % 10**20).zfill(20)
    millis = china_midnight_millis(issued_on)

    def line(row: int, name: str, cost: str, price: str, vat: str) -> dict[str, Any]:
        return {
            "billNumber": str(row),
            "detailRowNo": str(row),
            "goodsCost": cost,
            "goodsName": name,
            "goodsNum": "1",
            "goodsPrice": price,
            "goodsSpecification": "",
            "goodsSum": "",
            "goodsUnit": "次",
            "goodsVat": vat,
            "preferPolicyName": "",
            "preferPolicySign": "",
            "taxTaxonomyCode ": "",  # seed 000's trailing space, on purpose
            "taxRate": "0.06",
            "zeroTaxSign": "",
        }

    return {
        "invoiceType": 0,
        "invoiceTypeCode": "026",
        "buyerName": "北京文化产业有限公司",
        "buyerTaxNo": "91110105MA01G6XXXX",
        "invoiceTotalPriceTax": "878.00",
        "sellerName": "沙箱旅行社有限公司",
        "sellerTaxNo": "91120222300XXXXXXX",
        "orderNo": order_no,
        "originals": 0,
        "originalsUrl": "",
        "previewUrl": "",
        "invoicingDate": "",
        "invoicingStatus": "00",
        "originalInvoiceNumber": "",
        "originalInvoiceCode": "",
        "invoiceCode": code,
        "invoiceNumber": number,
        "invoiceDate": millis,
        "invoiceAmount": "828.30",
        "invoiceTaxRate": "0.06",
        "invoiceTaxAmount": "49.70",
        "checkCode": check_code,
        "ext": {},
        "details": [
            line(1, "*经纪代理服务*机票款", "745.28", "745.28301887", "44.72"),
            line(2, "*经纪代理服务*代理服务费", "83.02", "83.01886792", "4.98"),
        ],
    }


class Pusher:
    """Pushes seed 000 bodies to ``callback_url`` (see the module docstring)."""

    def __init__(
        self,
        callback_url: str,
        access_token: str,
        hmac_secret: bytes | str | None = None,
        *,
        channel_code: str = "sandbox",
        identify_by: str = "serialNo",
        use_nonce: bool = True,
        timeout: float = 5.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if identify_by not in IDENTIFY_BY:
            raise ValueError(f"identify_by must be one of {', '.join(IDENTIFY_BY)}")
        self.callback_url = callback_url
        self.access_token = access_token
        self.hmac_secret = hmac_secret.encode("utf-8") if isinstance(hmac_secret, str) else hmac_secret
        self.channel_code = channel_code
        self.identify_by = identify_by
        self.use_nonce = use_nonce
        self.timeout = timeout
        self.session = session if session is not None else requests.Session()
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._history: list[PushRecord] = []

    @property
    def history(self) -> list[PushRecord]:
        with self._lock:
            return list(self._history)

    # ------------------------------------------------------------------ bodies

    def body(
        self,
        request_number: str,
        outcome: str,
        *,
        invoices: Sequence[dict[str, Any]] | None = None,
        reject_msg: str | None = None,
    ) -> bytes:
        """The body pushed for ``outcome`` (``issued``, ``rejected``, ``in_progress``)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        result = OUTCOMES[outcome]
        payload: dict[str, Any] = {"channelCode": self.channel_code}
        if self.identify_by == "serialNo":
            payload["serialNo"] = request_number
        payload["result"] = result
        order_no = request_number if self.identify_by == "orderNo" else ""
        if result == 0:
            if invoices is None:
                today = dt.datetime.fromtimestamp(self.clock(), tz=CHINA).date()
                invoices = [sample_invoice(request_number, today, order_no=order_no)]
            elif order_no:
                invoices = [{**invoice, "orderNo": order_no} for invoice in invoices]
            payload["data"] = list(invoices)
        else:
            if result == 1:
                payload["rejectMsg"] = reject_msg if reject_msg is not None else "沙箱驳回：购方信息有误"
            if order_no:
                payload["data"] = [{"orderNo": order_no}]
        return json.dumps(payload, ensure_ascii=False).encode("utf-8")

    def headers(self, body: bytes) -> dict[str, str]:
        """Content type and, with a secret, a fresh timestamp, nonce and signature."""
        headers = {"Content-Type": "application/json"}
        if self.hmac_secret is None:
            return headers
        timestamp = str(int(self.clock()))
        signed = timestamp.encode("ascii") + b"."
        if self.use_nonce:
            nonce = uuid.uuid4().hex
            headers["x-fapiao-nonce"] = nonce
            signed += nonce.encode("ascii") + b"."
        headers["x-fapiao-timestamp"] = timestamp
        headers["x-fapiao-signature"] = hmac.new(self.hmac_secret, signed + body, hashlib.sha256).hexdigest()
        return headers

    # ------------------------------------------------------------------ pushing

    def send(self, request_number: str, kind: str, result: int, body: bytes, headers: dict[str, str]) -> PushRecord:
        """One HTTP POST; failures are recorded, never raised."""
        try:
            response = self.session.post(
                self.callback_url,
                params={"accessToken": self.access_token},
                data=body,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
            record = PushRecord(
                request_number, kind, result, body, headers, response.status_code, None, response.content
            )
        except requests.RequestException as error:
            record = PushRecord(request_number, kind, result, body, headers, None, type(error).__name__)
        with self._lock:
            self._history.append(record)
        return record

    def push(
        self,
        request_number: str,
        outcome: str,
        *,
        switches: Switches | None = None,
        invoices: Sequence[dict[str, Any]] | None = None,
        reject_msg: str | None = None,
    ) -> list[PushRecord]:
        """Push ``outcome`` for ``request_number`` as ``switches`` say; the records of this call."""
        switches = switches if switches is not None else Switches()
        if switches.out_of_order and outcome == "in_progress":
            raise ValueError("out_of_order sends 'in progress' after a final result: push issued or rejected")
        body = self.body(request_number, outcome, invoices=invoices, reject_msg=reject_msg)
        if switches.never:
            return []
        if switches.late:
            self.sleep(switches.late)
        result = OUTCOMES[outcome]
        first_headers = self.headers(body)
        records = [self.send(request_number, "result", result, body, first_headers)]
        if switches.duplicate:
            records.append(self.send(request_number, "duplicate", result, body, self.headers(body)))
        if switches.replay:
            records.append(self.send(request_number, "replay", result, body, dict(first_headers)))
        if switches.out_of_order:
            later = self.body(request_number, "in_progress")
            records.append(self.send(request_number, "out_of_order", 2, later, self.headers(later)))
        return records


@dataclass(frozen=True)
class PushJob:
    request_number: str
    outcome: str
    switches: Switches | None = None
    invoices: tuple[dict[str, Any], ...] | None = None
    reject_msg: str | None = None


class BackgroundPusher:
    """Takes :class:`PushJob` from a queue and pushes them, one at a time, on a daemon thread."""

    def __init__(self, pusher: Pusher, on_pushed: Callable[[PushJob, list[PushRecord]], None] | None = None) -> None:
        self.pusher = pusher
        self._on_pushed = on_pushed  # told of each job once pushed (the simulator keeps what is pending)
        self.errors: list[tuple[PushJob, str]] = []  # jobs that could not be pushed (bad arguments)
        self._queue: queue.Queue[PushJob | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="sandbox-pusher", daemon=True)
        self._thread.start()

    def submit(self, job: PushJob) -> None:
        self._queue.put(job)

    def wait(self) -> None:
        """Until every submitted job has been pushed."""
        self._queue.join()

    def close(self, timeout: float | None = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundPusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                records = self.pusher.push(
                    job.request_number,
                    job.outcome,
                    switches=job.switches,
                    invoices=list(job.invoices) if job.invoices is not None else None,
                    reject_msg=job.reject_msg,
                )
                if self._on_pushed is not None:
                    self._on_pushed(job, records)
            except Exception as error:  # a bad job must not stop the worker
                if job is not None:
                    self.errors.append((job, f"{type(error).__name__}: {error}"))
            finally:
                self._queue.task_done()


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Push an Ekuaibao-shaped result (seed 000) to a callback URL.")
    parser.add_argument("--url", required=True, help="the hub's callback URL, e.g. .../v1/callbacks/ekuaibao")
    parser.add_argument("--token", required=True, help="the accessToken query parameter")
    parser.add_argument("--secret", help="HMAC secret: sign the push")
    parser.add_argument("--request-number", required=True)
    parser.add_argument("--outcome", choices=sorted(OUTCOMES), default="issued")
    parser.add_argument("--switches", default="once", help="e.g. duplicate,out_of_order,late=2 (or once, never)")
    parser.add_argument("--identify-by", choices=IDENTIFY_BY, default="serialNo")
    args = parser.parse_args(list(argv) if argv is not None else None)
    pusher = Pusher(args.url, args.token, args.secret, identify_by=args.identify_by)
    for record in pusher.push(args.request_number, args.outcome, switches=Switches.parse(args.switches)):
        print(record.kind, record.result, record.status if record.status is not None else record.error)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
