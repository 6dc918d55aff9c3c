"""EventBridge: the only code that publishes the hub's events.

Every outcome (issued, rejected, needs review, stuck, voided) is an event on the hub's bus,
versioned by ``schema_version`` in the detail. Events are at-least-once: the workflow records an
outcome's event on the application in the same write as the outcome and clears it once published,
so a crash in between is repaired by the next delivery (or the poller).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fapiao_hub.domain import jsonutil

SOURCE = "fapiao-hub"
SCHEMA_VERSION = "1"


class EventType(StrEnum):
    APPLICATION_RECEIVED = "ApplicationReceived"
    INVOICE_ISSUED = "InvoiceIssued"
    APPLICATION_REJECTED = "ApplicationRejected"
    APPLICATION_NEEDS_REVIEW = "ApplicationNeedsReview"
    APPLICATION_STUCK = "ApplicationStuck"
    INVOICE_VOIDED = "InvoiceVoided"
    RESULT_UNMATCHED = "ResultUnmatched"
    # A finding recorded without a status change (a second invoice after the outcome, reconciliation).
    FINDING_RECORDED = "FindingRecorded"
    # A channel's circuit opened (health.py): dispatch holds its applications. Not an application's.
    CHANNEL_CIRCUIT_OPENED = "ChannelCircuitOpened"
    # An operator ended an application that never reached a channel (an outcome: notified).
    APPLICATION_CANCELLED = "ApplicationCancelled"
    # Every operator action (operations.py): who, what, why; the audit trail besides the history.
    OPERATOR_ACTION = "OperatorAction"


class PublishFailed(Exception):
    """EventBridge did not take the event; the caller leaves it pending and tries again."""


def outcome_event(event_type: EventType, *, source_system: str, open_apply_code: str, **detail: Any) -> dict:
    """The stored (pending) form of an event: its type and detail."""
    return {
        "detail_type": event_type.value,
        "detail": {
            "schema_version": SCHEMA_VERSION,
            "source_system": source_system,
            "open_apply_code": open_apply_code,
            **detail,
        },
    }


def channel_event(event_type: EventType, *, channel: str, **detail: Any) -> dict:
    """An event about a channel rather than an application (same envelope, no application named)."""
    return {"detail_type": event_type.value, "detail": {"schema_version": SCHEMA_VERSION, "channel": channel, **detail}}


class EventPublisher:
    def __init__(self, events_client: Any, bus_name: str):
        self._events = events_client
        self._bus = bus_name

    def publish(self, event: dict[str, Any]) -> None:
        entry = {
            "Source": SOURCE,
            "DetailType": event["detail_type"],
            "Detail": jsonutil.dumps(event["detail"]),
            "EventBusName": self._bus,
        }
        try:
            answer = self._events.put_events(Entries=[entry])
        except (ClientError, BotoCoreError) as error:
            raise PublishFailed(str(error)) from error
        if answer.get("FailedEntryCount"):
            raise PublishFailed(str(answer["Entries"][0].get("ErrorMessage")))
