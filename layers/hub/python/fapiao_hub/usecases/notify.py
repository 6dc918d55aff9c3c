"""The notifier: tells each business system of its applications' outcomes, by webhook, at least once.

Every outcome event on the hub's bus (``InvoiceIssued``, ``ApplicationRejected``, ``InvoiceVoided``,
``ApplicationStuck``, ``ApplicationNeedsReview``, ``ApplicationCancelled``) reaches the notify queue
through the outcomes rule (template.yaml); one SQS record is one EventBridge event as a rule delivers it to an SQS
target (``{"version": "0", "id": ..., "detail-type": ..., "source": "fapiao-hub", "time": ...,
"detail": {...}}``). :meth:`Notifier.deliver_record` POSTs it to the business system's webhook
(``business_systems.<id>.webhook`` in the hub configuration) in the system's format.

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

A webhook's ``secret`` and ``access_token`` live in the Secrets Manager secret its
``credentials_secret`` names (JSON ``{"secret": ..., "access_token": ...}``, merged over inline
values, which only a local file may hold), read through fapiao_hub.infra.credentials like a channel's.
A secret that cannot be read is a retry, like a connection error.

Idempotency
-----------
``X-Fapiao-Event-Id`` (and the hub body's ``id``) is the same for the same outcome, however often it
is delivered or published: the first 32 hex digits of the SHA-256 of the source system, the
openApplyCode, the event type, the sorted invoice keys (``code-number``, or the number) and the
status. EventBridge's own event id is not used: it changes when an outcome is published again.
Receivers de-duplicate on it.

Delivery
--------
``requests`` with explicit (connect, read) timeouts from the webhook, redirects not followed.

- 2xx: delivered; history ``notified <system> (<format>): <status>``.
- 408, 429, 5xx, a connection error or a timeout: the record fails (``NotificationRetry``) and SQS
  delivers it again later. Before failing, the message's visibility is set to
  ``min(30 * 2 ** (receive_count - 1), 900)`` seconds (or a larger ``Retry-After``, capped at 900):
  30 s, 60 s, 120 s, ... 900 s. After 8 receives the queue's redrive policy moves it to the notify
  DLQ (alarm). History: ``notify attempt <n> failed: <status or error class>``.
- any other answer (a 4xx, a 3xx) or a body the format cannot express: permanent. The record is sent
  to the notify DLQ at once (its body unchanged, so a DLQ redrive delivers it again; message
  attributes say why) and the record succeeds. History: ``notification refused by <system>:
  <status>; sent to the DLQ``.
- a record this run has no time left for (less than the webhook's timeout + 2 s before the
  function's deadline) is not sent: it fails with visibility 0, for the next run at once.

No webhook configured for the system: nothing is sent ("no webhook"). Never logged: the secret, the
access token, bodies (buyer data); URLs are logged without their query string.

Verifying a webhook (README)
----------------------------
```python
import hashlib
import hmac
import time


def verify_webhook(secret, headers, body, now=None, tolerance=300):
    # secret: the webhook's secret; headers: the request's headers; body: the raw bytes received.
    headers = {name.lower(): value for name, value in headers.items()}
    timestamp = headers.get("x-fapiao-timestamp", "")
    signature = headers.get("x-fapiao-signature", "")
    if not (timestamp.isascii() and timestamp.isdigit()) or not signature.startswith("sha256="):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False  # too old (or from the future): a replay
    message = timestamp.encode("ascii") + b"." + body
    expected = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature[len("sha256=") :], expected)
```

Then de-duplicate on ``X-Fapiao-Event-Id`` (the same outcome may arrive more than once) and answer
2xx quickly; answer 4xx only for a request that can never succeed (it goes to the DLQ at once).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from fapiao_hub.channels import ekuaibao
from fapiao_hub.channels.wire import EIGHT_PLACES, quantize
from fapiao_hub.domain import jsonutil
from fapiao_hub.domain.config import HubConfig, Webhook
from fapiao_hub.domain.models import Application, Direction, InvoiceType, application_key, invoice_key
from fapiao_hub.domain.results import InvoiceLine, InvoiceState, IssuedInvoice
from fapiao_hub.infra.credentials import Credentials, CredentialsUnavailable
from fapiao_hub.infra.events import EventType
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.records import StoredApplication

logger = Logger(child=True)
metrics = Metrics()  # flushed by the notifier function's handler

SIGNATURE_PREFIX = "sha256="  # callback_auth takes the same format from channels (one format both ways)
EVENT_ID_HEADER = "X-Fapiao-Event-Id"
TIMESTAMP_HEADER = "X-Fapiao-Timestamp"
SIGNATURE_HEADER = "X-Fapiao-Signature"
USER_AGENT = "fapiao-hub-notifier/1"
CONNECT_TIMEOUT = 3.05
FIRST_RETRY_DELAY = 30
MAX_RETRY_DELAY = 900
RETRY_STATUSES = frozenset({408, 429})
# What a run needs after its last POST (history note, answer to SQS).
TIME_MARGIN_MS = 2000

_ISSUE_TYPES = frozenset({EventType.INVOICE_ISSUED.value, EventType.INVOICE_VOIDED.value})
_EKUAIBAO_RESULTS = {
    EventType.INVOICE_ISSUED.value: ekuaibao.RESULT_ISSUED,
    EventType.INVOICE_VOIDED.value: ekuaibao.RESULT_ISSUED,
    EventType.APPLICATION_REJECTED.value: ekuaibao.RESULT_REJECTED,
    # Not invoiced, for good: seed 000 has no other word for it (rejectMsg says it was cancelled).
    EventType.APPLICATION_CANCELLED.value: ekuaibao.RESULT_REJECTED,
}
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

#: Sets how long until SQS delivers a message again: (receipt handle, seconds).
Visibility = Callable[[str, int], None]
#: Sends a message body to the notify DLQ with string attributes (why it is there).
DeadLetter = Callable[[str, dict[str, str]], None]


class NotificationRetry(Exception):
    """The business system did not take the notification this time: SQS delivers it again later."""


# --------------------------------------------------------------------------- signing


def sign_webhook(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """``X-Fapiao-Signature``: ``sha256=`` + hex HMAC-SHA256(secret, "{timestamp}.{body}")."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    message = str(timestamp).encode("ascii") + b"." + raw
    return SIGNATURE_PREFIX + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None, tolerance: int = 300
) -> bool:
    """What a receiver checks (the README snippet, in the module docstring, does the same)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    signature = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not (timestamp.isascii() and timestamp.isdigit()) or not signature.startswith(SIGNATURE_PREFIX):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(signature, sign_webhook(secret, timestamp, body))


# --------------------------------------------------------------------------- pure helpers


def idempotency_key(detail_type: str, detail: Mapping[str, Any]) -> str:
    """The same for the same outcome, whichever delivery or publication carries it."""
    invoices = sorted(
        invoice_key(i.get("code"), str(i["number"])) for i in detail.get("invoices") or () if i.get("number")
    )
    material = [detail.get("source_system"), detail.get("open_apply_code"), detail_type, invoices, detail.get("status")]
    canonical = json.dumps(material, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def retry_delay(receive_count: int, retry_after: int | None = None) -> int:
    """Seconds until the next attempt: 30, 60, 120, ... at most 900 (a longer Retry-After wins)."""
    delay = min(FIRST_RETRY_DELAY * 2 ** max(receive_count - 1, 0), MAX_RETRY_DELAY)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_DELAY))
    return delay


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query (what it already has is kept)."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def loggable_url(url: str) -> str:
    """A URL without its query, fragment or user info (they may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _retry_after(response: requests.Response) -> int | None:
    value = response.headers.get("Retry-After", "").strip()
    return int(value) if value.isdigit() else None


def _event_suffices(detail_type: str, detail: Mapping[str, Any]) -> bool:
    """The hub-format body can be built from the event alone: it names every invoice with its files."""
    named = detail.get("invoices")
    if named is None:
        return detail_type not in _ISSUE_TYPES  # an outcome without invoices (rejected, stuck, ...)
    return isinstance(named, list) and all(isinstance(entry, Mapping) and "files" in entry for entry in named)


def _selected_invoices(detail_type: str, detail: Mapping[str, Any], stored_items: list[dict]) -> list[dict]:
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


# --------------------------------------------------------------------------- the notifier


@dataclass
class _Delivery:
    """One record on its way: what the log lines and history notes name."""

    record: SQSRecord
    system_id: str | None = None
    stored: StoredApplication | None = None  # read only when the event alone is not enough
    application_key: str | None = None
    status: str | None = None  # the outcome's status, for the history note
    log: dict[str, Any] = field(default_factory=dict)  # never a secret, token, query or body


class Notifier:
    """Delivers one outcome event (one SQS record) to its business system's webhook.

    Ports: ``store`` (applications and their invoices, history notes), ``config`` (the hub
    configuration, read on every record so a changed webhook applies at once), ``visibility`` (the
    notify queue's ChangeMessageVisibility), ``dead_letter`` (SendMessage to the notify DLQ) and
    ``credentials`` (a webhook's signing secret and access token from Secrets Manager, when its
    ``credentials_secret`` names one: fapiao_hub.infra.credentials).
    """

    def __init__(
        self,
        store: ApplicationStore,
        config: Callable[[], HubConfig],
        *,
        visibility: Visibility,
        dead_letter: DeadLetter,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        credentials: Credentials | None = None,
    ):
        self.store = store
        self.config = config
        self.credentials = credentials or Credentials()
        self.visibility = visibility
        self.dead_letter = dead_letter
        self.session = session or requests.Session()
        self.clock = clock

    def deliver_record(self, record: SQSRecord, lambda_context: Any = None) -> str:
        """One record: "delivered", "no webhook", "not sent", "refused", "ignored"; or raises
        NotificationRetry (the record fails; SQS delivers it again after the visibility set)."""
        if isinstance(record, Mapping) and not isinstance(record, SQSRecord):
            record = SQSRecord(dict(record))
        delivery = _Delivery(record, log={"message_id": record.message_id})
        try:
            event = jsonutil.loads(record.body)
            detail_type = str(event["detail-type"])
            detail = event["detail"]
            system_id = str(detail["source_system"])
            open_apply_code = str(detail["open_apply_code"])
        except (jsonutil.InvalidJson, KeyError, TypeError) as error:
            return self._refuse(delivery, f"unreadable event ({type(error).__name__})", "unreadable")
        delivery.system_id = system_id
        delivery.log.update(source_system=system_id, open_apply_code=open_apply_code, event_type=detail_type)
        if detail_type not in OUTCOME_TYPES:
            logger.warning("not an outcome event: not notified", extra=delivery.log)
            return "ignored"
        system = self.config().business_systems.get(system_id)
        webhook = system.webhook if system is not None else None
        if webhook is None:
            logger.info("no webhook configured for the business system: not notified", extra=delivery.log)
            return "no webhook"
        delivery.application_key = application_key(system_id, open_apply_code)
        delivery.status = detail.get("status")
        try:
            webhook = self.credentials.for_webhook(webhook)  # its secrets, from Secrets Manager when named
        except CredentialsUnavailable as error:  # names the secret, never its value
            return self._retry(delivery, str(error), None)
        stored_items: list[dict] = []
        if webhook.format == "ekuaibao" or not _event_suffices(detail_type, detail):
            # The Ekuaibao format needs the application's lines; the hub format needs the stored
            # invoices when the event does not carry their files (stored after it was published).
            delivery.stored = self.store.get(system_id, open_apply_code)
            if delivery.stored is None:
                return self._refuse(delivery, "no such application", "no application")
            stored_items = self.store.invoices(delivery.stored)
        key = idempotency_key(detail_type, detail)
        delivery.log.update(url=loggable_url(webhook.url), format=webhook.format, event_id=key)
        invoices = _selected_invoices(detail_type, detail, stored_items)

        url = webhook.url
        if webhook.format == "ekuaibao":
            result = _EKUAIBAO_RESULTS.get(detail_type)
            if result is None:
                logger.info("no Ekuaibao equivalent for the event: not sent", extra=delivery.log)
                self._note(delivery, f"{detail_type} not sent: no Ekuaibao equivalent")
                return "not sent"
            application = delivery.stored.application
            request_number = detail.get("request_number") or delivery.stored.request_number
            try:
                payload = ekuaibao.to_push_body(
                    webhook.channel_code,
                    serial_no=open_apply_code,
                    result=result,
                    reject_msg=detail.get("reason") if result == ekuaibao.RESULT_REJECTED else None,
                    invoices=[
                        _with_order_no(issued_invoice(i, application, only_invoice=len(invoices) == 1), request_number)
                        for i in invoices
                    ],
                )
            except ValueError as error:
                return self._refuse(delivery, f"not expressible in the ekuaibao format: {error}")
            if webhook.access_token:
                url = with_query(url, accessToken=webhook.access_token)
            else:
                logger.warning("ekuaibao-format webhook without access_token", extra=delivery.log)
        else:
            payload = hub_body(key, detail_type, detail, event.get("time"), invoices)
        body = jsonutil.dumps(payload).encode("utf-8")

        if lambda_context is not None:
            left = lambda_context.get_remaining_time_in_millis()
            if left < webhook.timeout_seconds * 1000 + TIME_MARGIN_MS:
                # Not an attempt: this run could not wait for the answer. Another run takes it at once.
                logger.info("not enough time left in this run: deferred", extra={**delivery.log, "remaining_ms": left})
                self._set_visibility(delivery, 0)
                raise NotificationRetry("deferred: not enough time left in this run")
        return self._post(delivery, webhook, url, key, body)

    def _post(self, delivery: _Delivery, webhook: Webhook, url: str, key: str, body: bytes) -> str:
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_ID_HEADER: key,
            TIMESTAMP_HEADER: str(timestamp),
        }
        if webhook.secret:
            headers[SIGNATURE_HEADER] = sign_webhook(webhook.secret, timestamp, body)
        elif webhook.format == "hub":
            logger.warning("hub-format webhook without a secret: sent unsigned", extra=delivery.log)
        timeout = (min(CONNECT_TIMEOUT, webhook.timeout_seconds), webhook.timeout_seconds)
        try:
            response = self.session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
            # The exception's text names the URL (with its query: the access token): only its class.
            return self._retry(delivery, type(error).__name__, None)
        except requests.RequestException as error:  # an invalid URL and such: retrying cannot help
            return self._refuse(delivery, f"request not sent ({type(error).__name__})")
        status = response.status_code
        if 200 <= status < 300:
            logger.info("notified", extra={**delivery.log, "status": status})
            metrics.add_metric(name="NotificationsDelivered", unit=MetricUnit.Count, value=1)
            self._note(delivery, f"notified {delivery.system_id} ({webhook.format}): {status}")
            return "delivered"
        if status in RETRY_STATUSES or status >= 500:
            return self._retry(delivery, str(status), _retry_after(response))
        return self._refuse(delivery, str(status))

    def _retry(self, delivery: _Delivery, what: str, retry_after: int | None) -> str:
        attempt = int(delivery.record.attributes.approximate_receive_count or 1)
        delay = retry_delay(attempt, retry_after)
        logger.warning(
            "notification failed; retried later",
            extra={**delivery.log, "failure": what, "attempt": attempt, "retry_in_s": delay},
        )
        metrics.add_metric(name="NotificationsRetried", unit=MetricUnit.Count, value=1)
        self._note(delivery, f"notify attempt {attempt} failed: {what}")
        self._set_visibility(delivery, delay)
        raise NotificationRetry(f"attempt {attempt} failed: {what}; next in {delay} s")

    def _refuse(self, delivery: _Delivery, what: str, result: str = "refused") -> str:
        """Permanent: to the DLQ now (the record then succeeds and leaves the queue)."""
        attributes = {
            "reason": what[:1000],
            "source_system": delivery.system_id or "",
            "message_id": delivery.record.message_id or "",
        }
        self.dead_letter(delivery.record.body, {k: v for k, v in attributes.items() if v})
        logger.error("notification refused; sent to the DLQ", extra={**delivery.log, "failure": what})
        metrics.add_metric(name="NotificationsRefused", unit=MetricUnit.Count, value=1)
        self._note(delivery, f"notification refused by {delivery.system_id}: {what}; sent to the DLQ")
        return result

    def _set_visibility(self, delivery: _Delivery, seconds: int) -> None:
        try:
            self.visibility(delivery.record.receipt_handle, seconds)
        except Exception as error:  # the queue's own visibility timeout applies instead
            logger.warning(
                "could not change the message's visibility", extra={**delivery.log, "error": type(error).__name__}
            )

    def _note(self, delivery: _Delivery, text: str) -> None:
        target = delivery.stored or delivery.application_key
        if target is None:
            return
        try:
            self.store.note(target, text, status=delivery.status)
        except Exception as error:  # history is for people; the delivery's outcome stands
            logger.warning(
                "could not record on the application's history", extra={**delivery.log, "error": type(error).__name__}
            )


def sqs_ports(sqs: Any, queue_url: str | None, dlq_url: str | None) -> tuple[Visibility, DeadLetter]:
    """The notify queue's ChangeMessageVisibility and the notify DLQ's SendMessage, as the ports."""

    def visibility(receipt_handle: str, seconds: int) -> None:
        if not queue_url:
            raise RuntimeError("NOTIFY_QUEUE_URL is not set")
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds)

    def dead_letter(body: str, attributes: dict[str, str]) -> None:
        if not dlq_url:
            raise RuntimeError("NOTIFY_DLQ_URL is not set")
        sqs.send_message(
            QueueUrl=dlq_url,
            MessageBody=body,
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )

    return visibility, dead_letter
