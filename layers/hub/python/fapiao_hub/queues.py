"""SQS: the dispatch queue (the only code that sends to it)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict

MAX_DELAY_SECONDS = 900


class DispatchRequest(BaseModel):
    """The dispatch queue's message: which application to advance (the rest is in the store)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    source_system: str
    open_apply_code: str
    # Set by the poller: the next_poll_at it moved the application to when it claimed it. The
    # dispatcher takes the application as due while the value is still the same (see Poller).
    claimed_until: int | None = None


class QueueUnavailable(Exception):
    """The message was not accepted by SQS; the caller decides how to recover."""


class DispatchQueue:
    def __init__(self, sqs_client: Any, queue_url: str):
        self._sqs = sqs_client
        self._url = queue_url

    def request_dispatch(
        self, source_system: str, open_apply_code: str, *, delay_seconds: int = 0, claimed_until: int | None = None
    ) -> None:
        """Ask for a dispatch now, or after up to 15 minutes (SQS's limit; longer waits are the poller's)."""
        request = DispatchRequest(
            source_system=source_system, open_apply_code=open_apply_code, claimed_until=claimed_until
        )
        body = request.model_dump_json(exclude_none=True)
        try:
            self._sqs.send_message(
                QueueUrl=self._url,
                MessageBody=body,
                DelaySeconds=max(0, min(delay_seconds, MAX_DELAY_SECONDS)),
            )
        except (ClientError, BotoCoreError) as error:
            raise QueueUnavailable(str(error)) from error

    def request_dispatch_batch(self, requests: list[DispatchRequest]) -> None:
        """Up to ten dispatch requests in one call (the poller's fan-out)."""
        entries = [
            {"Id": str(i), "MessageBody": request.model_dump_json(exclude_none=True)}
            for i, request in enumerate(requests)
        ]
        try:
            answer = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
        except (ClientError, BotoCoreError) as error:
            raise QueueUnavailable(str(error)) from error
        if answer.get("Failed"):
            raise QueueUnavailable(f"{len(answer['Failed'])} of {len(entries)} dispatch requests refused")
