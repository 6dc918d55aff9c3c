"""Partner (合作方) invoicing service, seed 003: ``GET {base_url}/partner/queryInvoice``.

Seed 003 documents one call, a query by the application's request number (``requestId``, 申请请求受理号).
The partner receives applications out of band (its own upload or portal); the hub only polls. So:

- ``issue()`` sends nothing and answers ``Accepted(channel_ref=request_number)``: the application is
  then polled by ``query()`` until it is issued, failed or voided.
- ``can_query`` is True; ``dedupes_request_number`` is True: the partner keys applications by
  ``requestId``, and "sending again" sends nothing anyway, so it can never issue twice.

Public API
----------
- :class:`PartnerChannel` (``name``, ``settings``, optional ``requests.Session``, keyword ``clock``
  returning seconds since the epoch, ``time.time`` by default): the Channel.
- :func:`canonical_string`, :func:`sign`, :func:`signed_params`: the request signature.
- :func:`interpret_answer`: an HTTP status and answer bytes -> a query outcome (pure, never raises).
- :func:`build_post_session`: the transport policy for the GET (timeouts are passed per request).

Configuration
-------------
``credentials``: ``client_id`` (sent as ``channel``) and ``client_secret`` (the signing key, never
sent). ``options`` (all optional): ``sign_algorithm`` (below), ``not_found_codes`` (default ``404``),
``query_retries`` (default ``2``), ``file_format`` (the hint for ``invoiceFile``, default ``pdf``;
the seed says only "电子发票文件"). ``dedupes_request_number`` is True unless the settings narrow it.

Voids: seed 003 has no void call, so the module has no ``void``: the hub sends nothing and records
the void as one a person does in the partner's portal (a needs-a-person VOIDING), then polls the blue
application's request number until the partner reports status 6 and then 2. ``CAPABILITIES`` says
what the channel can do (every type blue and red; voids of legacy types only).

Request
-------
``GET {base_url}/partner/queryInvoice?channel=&timestamp=&requestId=&sign=`` with ``channel`` =
``credentials["client_id"]``, ``timestamp`` = the clock in milliseconds, ``requestId`` = the hub's
request number, and ``sign``:

**Signature (an assumption: seed 003 names ``sign`` but does not define it).** The algorithm is the
channel option ``sign_algorithm``:

- ``hmac-sha256-sorted`` (default): the parameters except ``sign``, sorted by name, written
  ``name=value`` (values as sent, before URL encoding) and joined with ``&``, e.g.
  ``channel=C&requestId=R&timestamp=T``; ``sign`` = HMAC-SHA256 of that UTF-8 string with the key
  ``credentials["client_secret"]``, lowercase hex (64 characters).
- ``md5-sorted-secret``: ``sign`` = MD5 of the same string followed by ``&secret=<client_secret>``,
  uppercase hex (32 characters), the common scheme of Chinese vendors.

Both must be confirmed with the partner. An unknown ``sign_algorithm`` or a missing ``client_id`` /
``client_secret`` raises ``ValueError`` when the channel is built (a configuration error is loud).

Answer -> outcome
-----------------
=========================================================  ===========================================
what the partner answered                                  outcome
=========================================================  ===========================================
HTTP 2xx, ``result`` in ``options["not_found_codes"]``     NotFound (the partner does not know the
(default ``404``, comma-separated; an assumption: the      requestId)
seed documents no code but 0)
``result`` 0, ``data`` ``[]``                              NotFound
``result`` 401                                             Unknown "partner refused the signature"
                                                           (an authentication failure is never
                                                           NotFound: nothing is learnt of the request)
any other ``result`` != 0                                  Unknown (message scrubbed, answer kept)
any item with status 4 (已申请)                            Accepted (still in progress, whatever the
                                                           other items say)
every item status 3 (开票失败)                             Rejected(code "3"; reason: the partner's
                                                           message when it is not "SUCCESS")
otherwise, each item not 3:                                Issued, every such item one IssuedInvoice:
  1 已开票, 5 已寄出                                         state ISSUED
  6 已申请作废                                               state VOID_REQUESTED
  2 已作废                                                   state VOIDED, ``original_number`` /
                                                           ``original_code`` from ``originInvoice*``
some items 3 and others issued                             Issued with the issued ones; each carries
                                                           ``details["failedInvoiceIds"]``
an item status other than 1-6, an item not an object, a    Unknown (answer kept as raw)
status 2/6 item without a number, ``data`` not a list,
not JSON, no integer ``result``
=========================================================  ===========================================

Per issued item: ``number`` = ``invoiceNumber`` (for status 2 without it: ``originInvoiceNumber``);
``code`` = ``invoiceCode`` unless empty or equal to the number (数电: "无发票代码可以传发票号码");
``channel_invoice_id`` = ``invoiceId``; ``files``: ``invoiceFile`` as
``InvoiceFile(content_base64=..., format_hint=options.get("file_format", "pdf"))`` -- passed on as
text, never decoded here (the file store decodes strictly) -- and ``invoiceXml`` as
``InvoiceFile(url=..., format_hint="xml")`` when it is an http(s) URL; ``details``: ``invoiceId``,
``status``, ``expressNum``, ``expressName``, ``invoiceXml`` as the partner wrote them. An issued
item without ``invoiceFile`` is still issued (the invoice exists; the missing file is the file
store's finding).

Status 6 in the seed's own example carries only ``invoiceId`` and ``status``: the contract needs a
number, so such an answer is Unknown (reason names the invoiceIds). An *issued* item (1, 5) without a
readable ``invoiceNumber``, or with an ``invoiceFile`` / ``invoiceXml`` that is not text, is kept as
reported: ``number`` ``""`` and the raw text in ``IssuedInvoice.unreadable`` under the partner's
field name (verification turns it into a finding). The partner's answer carries no seller, buyer,
type, date or amounts (seed 003), so those fields stay None: not reported.

Transport
---------
HTTP 3xx (never followed), 408, 425, 429, 503: NotSent. Other 5xx: Unknown. Other 4xx without the
partner's envelope: Unknown (nothing is final about a failed query). Connection refused, DNS, connect
timeout: NotSent. Read timeout, reset after sending, an unreadable body: Unknown.

Retries differ from the POST channels (xunlian.py): this GET only reads, so sending it again cannot
issue anything. urllib3 retries connecting (``settings.connect_retries``), reads (read timeout, reset
while reading) and the statuses 502, 503, 504, each up to ``options["query_retries"]`` times
(default 2, 0..5), with a short backoff and ``allowed_methods`` = GET only. A retry re-sends the
same URL (same timestamp and sign; the partner's window is minutes). The worst case is therefore
``(query_retries + 1) x read_timeout_seconds`` per query: keep it inside the function's timeout.

Reasons never carry the credentials nor the buyer's email, mobile, phone, tax number or bank account
(the partner's message is scrubbed), nor the signed URL.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import requests
from urllib3.util.retry import Retry

# Generic helpers of the sibling channel: transport classification, text fields, scrubbing.
from fapiao_hub.channels.wire import (
    comma_list,
    exchange,
    mounted_session,
    no_scrub,
    raw_text,
    read_answer,
    status_outcome,
    text_or_none,
)
from fapiao_hub.domain import jsonutil
from fapiao_hub.domain.config import ChannelSettings
from fapiao_hub.domain.models import Application, InvoiceType
from fapiao_hub.domain.results import (
    Accepted,
    Capabilities,
    InvoiceFile,
    InvoiceState,
    Issued,
    IssuedInvoice,
    NotFound,
    Outcome,
    QueryOutcome,
    Rejected,
    Unknown,
)

logger = logging.getLogger(__name__)

QUERY_PATH = "/partner/queryInvoice"

HMAC_SHA256_SORTED = "hmac-sha256-sorted"
MD5_SORTED = "md5-sorted-secret"
SIGN_ALGORITHMS: tuple[str, ...] = (HMAC_SHA256_SORTED, MD5_SORTED)

#: ``result`` codes read as "this requestId is unknown". An assumption; options["not_found_codes"].
DEFAULT_NOT_FOUND_CODES: frozenset[str] = frozenset({"404"})
#: ``result`` codes read as "the partner refused the signature / the caller" (the sandbox's 401).
AUTH_FAILURE_CODES: frozenset[str] = frozenset({"401"})

# data.status (seed 003).
ISSUED = 1  # 已开票
VOIDED = 2  # 已作废
FAILED = 3  # 开票失败
APPLIED = 4  # 已申请
MAILED = 5  # 已寄出
VOID_REQUESTED = 6  # 已申请作废
STATES: dict[int, InvoiceState] = {
    ISSUED: InvoiceState.ISSUED,
    MAILED: InvoiceState.ISSUED,
    VOID_REQUESTED: InvoiceState.VOID_REQUESTED,
    VOIDED: InvoiceState.VOIDED,
}

#: Statuses retried by urllib3 (a gateway that did not get an answer from the partner).
RETRY_STATUSES: frozenset[int] = frozenset({502, 503, 504})
DEFAULT_QUERY_RETRIES = 2
_SUCCESS_MESSAGES = frozenset({"success", "ok", "成功"})
_DETAIL_FIELDS = ("invoiceId", "status", "expressNum", "expressName", "invoiceXml")


# --------------------------------------------------------------------------- signature


def canonical_string(params: Mapping[str, str]) -> str:
    """``name=value`` for every parameter except ``sign``, sorted by name, joined with ``&``."""
    return "&".join(f"{name}={params[name]}" for name in sorted(params) if name != "sign")


def sign(params: Mapping[str, str], secret: str, algorithm: str = HMAC_SHA256_SORTED) -> str:
    """The ``sign`` parameter for ``params`` (see the module docstring)."""
    text = canonical_string(params)
    if algorithm == HMAC_SHA256_SORTED:
        return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()
    if algorithm == MD5_SORTED:
        digest = hashlib.md5(f"{text}&secret={secret}".encode(), usedforsecurity=False)
        return digest.hexdigest().upper()
    raise ValueError(f"unknown sign_algorithm {algorithm!r} (known: {', '.join(SIGN_ALGORITHMS)})")


def signed_params(
    client_id: str, secret: str, request_number: str, timestamp_ms: int, algorithm: str = HMAC_SHA256_SORTED
) -> dict[str, str]:
    """The query parameters of ``queryInvoice``, ``sign`` included."""
    params = {"channel": client_id, "timestamp": str(timestamp_ms), "requestId": request_number}
    params["sign"] = sign(params, secret, algorithm)
    return params


# --------------------------------------------------------------------------- answers


def not_found_codes(options: Mapping[str, str]) -> frozenset[str]:
    """``options["not_found_codes"]`` (comma-separated), or :data:`DEFAULT_NOT_FOUND_CODES`."""
    given = options.get("not_found_codes")
    if given is None:
        return DEFAULT_NOT_FOUND_CODES
    return frozenset(comma_list(given))


def _code(value: Any) -> int | None:
    """An integer code (``result``, ``status``): a JSON integer or a string of digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


class _BadItem(ValueError):
    pass


def _item_invoice(
    position: int, item: Mapping[str, Any], status: int, file_format: str, extra: Mapping[str, str]
) -> IssuedInvoice:
    at = f"data[{position}]"
    number = text_or_none(item.get("invoiceNumber"))
    code = text_or_none(item.get("invoiceCode"))
    original_number = text_or_none(item.get("originInvoiceNumber"))
    original_code = text_or_none(item.get("originInvoiceCode"))
    invoice_id = text_or_none(item.get("invoiceId"))
    if number is None and status == VOIDED and original_number is not None:
        # The voided invoice is the original itself.
        number, code, original_number, original_code = original_number, original_code, None, None
    unreadable: dict[str, str] = {}
    if number is None and status in (ISSUED, MAILED):
        # Issued, the number unreadable: kept as reported (number "") for a person, never dropped.
        unreadable["invoiceNumber"] = raw_text(item.get("invoiceNumber"))
        number = ""
    if number is None:
        known = f" (invoiceId {invoice_id})" if invoice_id else ""
        raise _BadItem(f"{at}{known} has status {status} but no invoiceNumber")
    number = number.strip()
    if code is not None and code.strip() == number:
        code = None  # 数电: the number passed as the code
    if original_number is not None:
        original_number = original_number.strip()
        if original_code is not None and original_code.strip() == original_number:
            original_code = None
    files: list[InvoiceFile] = []
    content = item.get("invoiceFile")
    if content is not None and not isinstance(content, str):
        unreadable["invoiceFile"] = raw_text(content)
    elif content and content.strip():
        files.append(InvoiceFile(content_base64=content, format_hint=file_format))
    xml = item.get("invoiceXml")
    if xml is not None and not isinstance(xml, str):
        unreadable["invoiceXml"] = raw_text(xml)
    elif xml and xml.strip().lower().startswith(("http://", "https://")):
        files.append(InvoiceFile(url=xml.strip(), format_hint="xml"))
    details = {name: text for name in _DETAIL_FIELDS if (text := text_or_none(item.get(name))) is not None}
    details.update(extra)
    return IssuedInvoice(
        number=number,
        code=code.strip() if code else None,
        channel_invoice_id=invoice_id,
        state=STATES[status],
        files=tuple(files),
        original_number=original_number,
        original_code=original_code.strip() if original_code else None,
        details=details,
        unreadable=unreadable,
    )


def interpret_answer(
    status_code: int,
    content: bytes,
    *,
    request_number: str,
    not_found: frozenset[str] = DEFAULT_NOT_FOUND_CODES,
    file_format: str = "pdf",
    scrub: Callable[[str], str] = no_scrub,
) -> QueryOutcome:
    """What an HTTP answer to ``queryInvoice`` means (the module docstring's table). Never raises."""
    decided = status_outcome(
        status_code,
        content,
        not_processed="the partner did not process the query",
        failed="the partner could not answer the query",
    )
    if decided is not None:
        return decided
    # Nothing is final about a failed query: without the partner's envelope, whatever the status, Unknown.
    try:
        answer = jsonutil.loads(content)
    except jsonutil.InvalidJson as error:
        return Unknown(f"HTTP {status_code}: the answer is not valid JSON ({error})", raw=content)
    result = _code(answer.get("result")) if isinstance(answer, dict) else None
    if result is None:
        return Unknown(
            f"HTTP {status_code}: the answer is not the partner's envelope (no integer 'result')", raw=content
        )
    message = scrub(text_or_none(answer.get("message")) or "")
    success = 200 <= status_code < 300
    if result != 0:
        if str(result) in not_found and success:
            return NotFound()
        if str(result) in AUTH_FAILURE_CODES:
            return Unknown(
                f"partner refused the signature (result {result}: {message}); "
                "check client_id, client_secret, sign_algorithm and the clock",
                raw=content,
            )
        return Unknown(f"HTTP {status_code}, partner answered result {result}: {message}", raw=content)
    if not success:
        return Unknown(f"HTTP {status_code} with result 0", raw=content)
    data = answer.get("data")
    if not isinstance(data, list):
        return Unknown("result 0 without a data list", raw=content)
    if not data:
        return NotFound()

    items: list[tuple[int, Mapping[str, Any], int]] = []
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            return Unknown(f"data[{position}] is not an object", raw=content)
        status = _code(item.get("status"))
        if status not in (ISSUED, VOIDED, FAILED, APPLIED, MAILED, VOID_REQUESTED):
            return Unknown(
                f"data[{position}].status {item.get('status')!r} is not one seed 003 documents (1-6)", raw=content
            )
        items.append((position, item, status))

    if any(status == APPLIED for _, _, status in items):
        return Accepted(channel_ref=request_number)
    if all(status == FAILED for _, _, status in items):
        reason = "the partner reports 开票失败 (status 3)"
        if message and message.strip().lower() not in _SUCCESS_MESSAGES:
            reason = f"{reason}: {message}"
        return Rejected(reason, code=str(FAILED))

    failed = ",".join(
        text_or_none(item.get("invoiceId")) or f"data[{position}]"
        for position, item, status in items
        if status == FAILED
    )
    extra = {"failedInvoiceIds": failed} if failed else {}
    invoices: list[IssuedInvoice] = []
    for position, item, status in items:
        if status == FAILED:
            continue
        try:
            invoices.append(_item_invoice(position, item, status, file_format, extra))
        except _BadItem as error:
            return Unknown(str(error), raw=content)
    return Issued(tuple(invoices))


# --------------------------------------------------------------------------- transport


def query_retries(options: Mapping[str, str]) -> int:
    raw = options.get("query_retries")
    if raw is None:
        return DEFAULT_QUERY_RETRIES
    if not raw.strip().isdigit() or not 0 <= int(raw) <= 5:
        raise ValueError(f"options.query_retries must be an integer in 0..5, got {raw!r}")
    return int(raw)


def build_post_session(settings: ChannelSettings) -> requests.Session:
    """A session for the query GET: connect, read and 502/503/504 retries (a GET issues nothing)."""
    again = query_retries(settings.options)
    retry = Retry(
        total=None,  # each kind has its own limit
        connect=settings.connect_retries,
        read=again,
        status=again,
        other=0,
        redirect=False,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=False,
        raise_on_status=False,  # the last 5xx answer is returned, then mapped
        backoff_factor=0.1,
        backoff_max=2.0,
    )
    return mounted_session(retry)


#: What this channel can do (docs/channels.md): the partner issues every type, blue and red, from
#: applications it receives out of band, and voids (作废) what can be voided -- never a 数电 invoice
#: (DOMAIN.md section 4) -- reporting it as statuses 6 and 2.
CAPABILITIES = Capabilities(
    blue=frozenset(InvoiceType),
    red=frozenset(InvoiceType),
    void=frozenset(t for t in InvoiceType if not t.is_digital),
    can_query=True,
    dedupes_request_number=True,
)


class PartnerChannel:
    """The partner's ``queryInvoice`` channel (see the module docstring)."""

    CAPABILITIES = CAPABILITIES
    capabilities = CAPABILITIES
    can_query = True
    # The partner keys applications by requestId, and issue() sends nothing: never a second invoice.
    dedupes_request_number = True

    def __init__(
        self,
        name: str,
        settings: ChannelSettings,
        session: requests.Session | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.settings = settings
        missing = [key for key in ("client_id", "client_secret") if not settings.credentials.get(key)]
        if missing:
            raise ValueError(f"channel {name}: credentials {', '.join(missing)} missing")
        self.algorithm = settings.options.get("sign_algorithm", HMAC_SHA256_SORTED)
        if self.algorithm not in SIGN_ALGORITHMS:
            raise ValueError(
                f"channel {name}: unknown sign_algorithm {self.algorithm!r} (known: {', '.join(SIGN_ALGORITHMS)})"
            )
        self.url = settings.base_url.rstrip("/") + QUERY_PATH
        self.timeout = (settings.connect_timeout_seconds, settings.read_timeout_seconds)
        self.not_found = not_found_codes(settings.options)
        self.file_format = settings.options.get("file_format", "pdf")
        self.clock = clock
        # A session passed in is used as it is: its adapters decide retries.
        self.session = session if session is not None else build_post_session(settings)

    def issue(self, application: Application, request_number: str) -> Outcome:
        """Nothing to send: the partner receives applications out of band; the hub polls."""
        return Accepted(channel_ref=request_number)

    def query(self, application: Application, request_number: str) -> QueryOutcome:
        credentials = self.settings.credentials
        params = signed_params(
            credentials["client_id"],
            credentials["client_secret"],
            request_number,
            int(self.clock() * 1000),
            self.algorithm,
        )
        outcome = self._get(params, application, request_number)
        logger.info(
            "partner queryInvoice answered",
            extra={"channel": self.name, "request_number": request_number, "outcome": type(outcome).__name__},
        )
        return outcome

    def _get(self, params: dict[str, str], application: Application, request_number: str) -> QueryOutcome:
        response = exchange(
            self.session, "GET", self.url, vendor="the partner", timeout=self.timeout, params=params,
            headers={"Accept": "application/json"},
        )  # fmt: skip
        return read_answer(
            response,
            application,
            self.settings.credentials,
            partial(
                interpret_answer, request_number=request_number, not_found=self.not_found, file_format=self.file_format
            ),
        )
