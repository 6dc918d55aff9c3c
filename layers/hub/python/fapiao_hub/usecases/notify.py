"""The notifier: tells each business system of its applications' outcomes, by webhook, at least once.

Every outcome event on the hub's bus (``InvoiceIssued``, ``ApplicationRejected``, ``InvoiceVoided``,
``ApplicationStuck``, ``ApplicationNeedsReview``, ``ApplicationCancelled``) reaches the notify queue
through the outcomes rule (template.yaml); one SQS record is one EventBridge event as a rule delivers it to an SQS
target (``{"version": "0", "id": ..., "detail-type": ..., "source": "fapiao-hub", "time": ...,
"detail": {...}}``). :meth:`Notifier.deliver_record` POSTs it to the business system's webhook
(``business_systems.<id>.webhook`` in the hub configuration) in the system's format
(fapiao_hub.usecases.notifications says what is sent), signed as fapiao_hub.infra.signatures says.

A webhook's ``secret`` and ``access_token`` live in the Secrets Manager secret its
``credentials_secret`` names (JSON ``{"secret": ..., "access_token": ...}``, merged over inline
values, which only a local file may hold), read through fapiao_hub.infra.credentials like a channel's.
A secret that cannot be read is a retry, like a connection error.

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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from fapiao_hub.domain import jsonutil
from fapiao_hub.domain.config import HubConfig, Webhook
from fapiao_hub.domain.models import application_key
from fapiao_hub.infra.credentials import Credentials, CredentialsUnavailable
from fapiao_hub.infra.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.records import StoredApplication
from fapiao_hub.usecases.notifications import (
    EKUAIBAO_RESULTS,
    OUTCOME_TYPES,
    ekuaibao_body,
    event_suffices,
    hub_body,
    idempotency_key,
    selected_invoices,
)

logger = Logger(child=True)
metrics = Metrics()  # flushed by the notifier function's handler

EVENT_ID_HEADER = "X-Fapiao-Event-Id"
USER_AGENT = "fapiao-hub-notifier/1"
CONNECT_TIMEOUT = 3.05
FIRST_RETRY_DELAY = 30
MAX_RETRY_DELAY = 900
RETRY_STATUSES = frozenset({408, 429})
# What a run needs after its last POST (history note, answer to SQS).
TIME_MARGIN_MS = 2000

#: Sets how long until SQS delivers a message again: (receipt handle, seconds).
Visibility = Callable[[str, int], None]
#: Sends a message body to the notify DLQ with string attributes (why it is there).
DeadLetter = Callable[[str, dict[str, str]], None]


class NotificationRetry(Exception):
    """The business system did not take the notification this time: SQS delivers it again later."""


# --------------------------------------------------------------------------- delivery helpers


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
        if webhook.format == "ekuaibao" or not event_suffices(detail_type, detail):
            # The Ekuaibao format needs the application's lines; the hub format needs the stored
            # invoices when the event does not carry their files (stored after it was published).
            delivery.stored = self.store.get(system_id, open_apply_code)
            if delivery.stored is None:
                return self._refuse(delivery, "no such application", "no application")
            stored_items = self.store.invoices(delivery.stored)
        key = idempotency_key(detail_type, detail)
        delivery.log.update(url=loggable_url(webhook.url), format=webhook.format, event_id=key)
        invoices = selected_invoices(detail_type, detail, stored_items)

        url = webhook.url
        if webhook.format == "ekuaibao":
            if detail_type not in EKUAIBAO_RESULTS:
                logger.info("no Ekuaibao equivalent for the event: not sent", extra=delivery.log)
                self._note(delivery, f"{detail_type} not sent: no Ekuaibao equivalent")
                return "not sent"
            try:
                payload = ekuaibao_body(webhook.channel_code, detail_type, detail, delivery.stored, invoices)
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
