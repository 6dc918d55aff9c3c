"""SQS: the dispatch queue (the only code that sends to it)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict

MAX_DELAY_SECONDS = 900
# SendMessageBatch takes at most ten entries.
MAX_BATCH = 10


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

    def request_dispatch_each(self, requests: list[DispatchRequest]) -> list[DispatchRequest]:
        """Send dispatch requests ten per SendMessageBatch call; answers the ones SQS did not take
        (all of a call's when the call itself failed), so each caller learns its own outcome."""
        refused: list[DispatchRequest] = []
        for start in range(0, len(requests), MAX_BATCH):
            chunk = requests[start : start + MAX_BATCH]
            entries = [
                {"Id": str(i), "MessageBody": request.model_dump_json(exclude_none=True)}
                for i, request in enumerate(chunk)
            ]
            try:
                answer = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
            except (ClientError, BotoCoreError):
                refused.extend(chunk)
                continue
            refused.extend(chunk[int(failed["Id"])] for failed in answer.get("Failed") or [])
        return refused


class DeferredDispatchQueue(DispatchQueue):
    """A dispatch queue that only collects immediate requests, for a batch submission to send them
    together afterwards (``send``): one SendMessageBatch per ten orders instead of one call each."""

    def __init__(self, queue: DispatchQueue):
        super().__init__(queue._sqs, queue._url)
        self.pending: list[DispatchRequest] = []

    def request_dispatch(
        self, source_system: str, open_apply_code: str, *, delay_seconds: int = 0, claimed_until: int | None = None
    ) -> None:
        if delay_seconds or claimed_until is not None:  # not intake's kind of request: send it as asked
            super().request_dispatch(
                source_system, open_apply_code, delay_seconds=delay_seconds, claimed_until=claimed_until
            )
            return
        self.pending.append(DispatchRequest(source_system=source_system, open_apply_code=open_apply_code))

    def send(self) -> set[tuple[str, str]]:
        """Send what was collected; answers the (source_system, open_apply_code) not queued."""
        pending, self.pending = self.pending, []
        return {(r.source_system, r.open_apply_code) for r in self.request_dispatch_each(pending)}
