"""Callbacks: a channel pushes results; each is authenticated, archived, read, and applied by the
dispatcher to the application its request number names, or kept as an unmatched result.

A push only ever reaches the application whose current submission went to the pushing channel
(asked_channel); anything else is kept and announced (ResultUnmatched), never applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aws_lambda_powertools import Logger

from fapiao_hub.channels.base import CallbackRejected, Channel
from fapiao_hub.channels.registry import ChannelRegistry
from fapiao_hub.domain import verification
from fapiao_hub.domain.config import HubConfig
from fapiao_hub.domain.models import Difference, Finding, FindingKind, Status, invoice_key
from fapiao_hub.domain.results import CallbackResult, Issued, IssuedInvoice
from fapiao_hub.infra import events
from fapiao_hub.infra.events import EventPublisher
from fapiao_hub.infra.files import FileStore
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.base import iso, utc_now
from fapiao_hub.infra.store.records import StoredApplication, finding_item
from fapiao_hub.usecases.callback_auth import authenticate_callback

logger = Logger(child=True)


class ResultTaker(Protocol):
    """Applies a pushed result to its application (dispatch.Dispatcher.apply_result)."""

    def apply_result(self, stored: StoredApplication, outcome: object, channel: Channel) -> str: ...


@dataclass(frozen=True)
class CallbackAnswer:
    """What the hub answers a pushing channel (its own envelope: Ekuaibao's ``{"value": ...}``)."""

    status: int
    body: dict


class CallbackReceiver:
    """A channel pushed results: authenticate, archive, read, apply — in that order.

    Nothing is stored for a push that fails authentication. After that the raw body is archived
    before it is read, so no pushed result can be lost: not to a parsing bug, not to an unknown
    request number (those are recorded as unmatched and announced).
    """

    def __init__(
        self,
        store: ApplicationStore,
        files: FileStore,
        registry: ChannelRegistry,
        dispatcher: ResultTaker,
        events_publisher: EventPublisher,
        config: Callable[[], HubConfig],
        *,
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._files = files
        self._registry = registry
        self._dispatcher = dispatcher
        self._events = events_publisher
        self._config = config
        self._clock = clock

    def receive(self, channel_name: str, *, query: dict, headers: dict, raw_body: bytes) -> CallbackAnswer:
        settings = self._config().channels.get(channel_name)
        channel = self._registry.channel(channel_name) if settings else None
        if settings is None or channel is None or not hasattr(channel, "parse_callback"):
            return CallbackAnswer(404, {"value": False, "message": "no such channel"})
        credentials = self._registry.credentials(channel_name) or {}  # with its secret (fapiao_hub.infra.credentials)
        auth = authenticate_callback(credentials, query, headers, raw_body, self._clock(), self._store)
        if not auth.ok:
            logger.warning("callback refused", extra={"channel": channel_name, "reason": auth.reason})
            return CallbackAnswer(401, {"value": False, "message": "unauthorized"})
        raw_ref = self._files.put_raw_callback(channel_name, utc_now(), raw_body)
        try:
            results = channel.parse_callback(raw_body)
        except CallbackRejected as rejected:
            logger.warning("callback unreadable", extra={"channel": channel_name, "raw": raw_ref})
            return CallbackAnswer(400, {"value": False, "message": str(rejected)})
        unmatched = []
        for result in results:
            stored = self._store.find_by_request_number(result.request_number) if result.request_number else None
            if stored is None:
                unmatched.append(self._keep_unmatched(channel_name, result, raw_ref))
                continue
            asked = asked_channel(stored)
            if asked != channel_name:
                # Bound to the channel that was asked: anyone else's push (another channel's
                # credential, a number it should not know) changes nothing and is answered as for a
                # number the hub never sent, so the answer tells no one that the number exists.
                unmatched.append(self._keep_unmatched(channel_name, result, raw_ref, sent=stored, asked=asked))
                continue
            logger.info(
                "callback result",
                extra={
                    "channel": channel_name,
                    "status": stored.status.value,
                    "open_apply_code": stored.application.open_apply_code,
                    "correlation_id": stored.application.open_apply_code,
                    "request_number": result.request_number,
                },
            )
            self._dispatcher.apply_result(stored, result.outcome, channel)
        if unmatched:
            names = ", ".join(u or "(none)" for u in unmatched)
            return CallbackAnswer(404, {"value": False, "message": f"no application for request number {names}"})
        return CallbackAnswer(200, {"value": True})

    def _keep_unmatched(
        self,
        channel_name: str,
        result: CallbackResult,
        raw_ref: str,
        *,
        sent: StoredApplication | None = None,
        asked: str | None = None,
    ) -> str | None:
        """Keep a result no application takes: ``sent`` is the application its number belongs to when
        the pushing channel is not the one it was sent to (``asked``; None: not sent to any yet); that
        application is not touched (the finding travels with the unmatched result and its event)."""
        invoices = result.outcome.invoices if isinstance(result.outcome, Issued) else ()
        items = [unmatched_item(channel_name, result, invoice, raw_ref) for invoice in invoices]
        finding = _unasked_finding(channel_name, result, sent, asked, items) if sent is not None else None
        if finding is not None:
            for item in items:
                item.update(finding=finding_item(finding), asked_channel=asked or "")
        kept = self._store.record_unmatched(items) if items else []
        logger.warning(
            "push for an unknown request number kept" if sent is None else "push from a channel not asked kept",
            extra={"channel": channel_name, "request_number": result.request_number, "raw": raw_ref}
            | ({"asked_channel": asked or "(none yet)"} if sent is not None else {}),
        )
        more = {"asked_channel": asked, "findings": [finding_item(finding)]} if finding is not None else {}
        self._events.publish(
            events.outcome_event(
                events.EventType.RESULT_UNMATCHED,
                source_system="",  # never an application's: no business system is told of it
                open_apply_code="",
                channel=channel_name,
                request_number=result.request_number,
                outcome=type(result.outcome).__name__,
                invoices=kept,
                raw=raw_ref,
                **more,
            )
        )
        return result.request_number


def asked_channel(stored: StoredApplication) -> str | None:
    """The channel the application's current submission was sent to (after a failover, the one it went
    to: Dispatcher._attempt stores it), or None while it has not been sent (still RECEIVED)."""
    if stored.status is Status.RECEIVED or not stored.attempts:
        return None
    return stored.channel


def _unasked_finding(
    pushing: str, result: CallbackResult, sent: StoredApplication, asked: str | None, items: list[dict]
) -> Finding:
    """RESULT_FROM_UNASKED_CHANNEL: names the pushing channel and the one asked (for the operator)."""
    outcome = type(result.outcome).__name__
    where = f"sent to {asked}" if asked else "not sent to any channel yet"
    summary = (
        f"{pushing} pushed a result ({outcome}) for request number {result.request_number}, which the hub "
        f"{where} (application {sent.key}, {sent.status.value}): not applied; kept as an unmatched result"
    )
    return verification.finding_for(
        FindingKind.RESULT_FROM_UNASKED_CHANNEL, sent.key, source="callback", summary=summary, at=iso(utc_now()),
        differences=[Difference(field="channel", expected=asked or "none (not sent)", reported=pushing)],
        invoice_numbers=[str(i["number"]) for i in items],
    )  # fmt: skip


def unmatched_item(channel: str, result: CallbackResult, invoice: IssuedInvoice, raw_ref: str) -> dict:
    item: dict[str, object] = {
        "pk": invoice_key(invoice.code, invoice.number),
        "number": invoice.number,
        "channel": channel,
        "status": invoice.state.value,
        "raw": raw_ref,
        "recorded_at": iso(utc_now()),
    }
    optional = {
        "code": invoice.code,
        "request_number": result.request_number,
        "issued_on": invoice.issued_on.isoformat() if invoice.issued_on else None,
        "amount": invoice.amount,
        "tax": invoice.tax,
        "check_code": invoice.check_code,
        "invoice_type": invoice.invoice_type.value if invoice.invoice_type else None,
        "lines": [{k: v for k, v in vars(line).items() if v is not None} for line in invoice.lines] or None,
        "details": dict(invoice.details) or None,
        # What the result says it belongs to: an operator may attach it only to an application of this
        # seller, and it is verified on these like a direct result (resolutions.Resolutions.attach_result).
        "seller_tax_number": invoice.seller_tax_number,
        "buyer_tax_number": invoice.buyer_tax_number,
        "buyer_name": invoice.buyer_name,
        "direction": colour.value if (colour := verification.reported_colour(invoice)) else None,
        "original_number": invoice.original_number,
        "original_code": invoice.original_code,
        "unreadable": dict(invoice.unreadable) or None,
    }
    item.update({k: v for k, v in optional.items() if v is not None})
    return item
