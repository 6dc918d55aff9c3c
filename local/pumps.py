"""Event sources Lambda would run, done locally: SQS pollers, EventBridge bridges, schedules.

* :class:`SqsPump` is Lambda's SQS event source mapping: it long-polls the queue, hands the
  handler a batch (the SQS event shape Lambda builds), and deletes what succeeded. With
  ``ReportBatchItemFailures`` only the records not named in ``batchItemFailures`` are deleted; an
  exception, or an answer naming an unknown or empty id, fails the whole batch. Failed records stay
  in the queue, come back after the visibility timeout and, after ``maxReceiveCount`` receives,
  the queue's redrive policy (moto applies it) moves them to the DLQ.
* :class:`BridgePump` delivers EventBridge rule matches to a function: moto cannot invoke a
  Lambda, so the rule targets a bridge queue (see local.provision) and this pump invokes the
  handler with each event (``Input``/``InputPath`` applied), like an asynchronous invocation:
  a failure is retried twice, then dropped with an error in the log.
* :class:`SchedulePump` fires ``rate(...)`` schedules (moto never fires schedules). ``cron`` and
  ``at`` expressions are listed but not fired; invoke the function by hand to test them.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from typing import Any

from local.gateway import Invocable

log = logging.getLogger("local.pumps")


class Pump(threading.Thread):
    """A daemon thread calling :meth:`poll_once` until :meth:`stop`."""

    idle_wait = 1.0

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("%s: poll failed", self.name)
                self._stop_event.wait(self.idle_wait)

    def poll_once(self) -> int:
        raise NotImplementedError

    def stop(self, timeout: float = 10) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()


def _message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, attr in attributes.items():
        binary = attr.get("BinaryValue")
        out[name] = {
            "stringValue": attr.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode() if binary is not None else None,
            "stringListValues": attr.get("StringListValues", []),
            "binaryListValues": [base64.b64encode(b).decode() for b in attr.get("BinaryListValues", [])],
            "dataType": attr.get("DataType"),
        }
        out[name] = {k: v for k, v in out[name].items() if v is not None}
    return out


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of the SQS event Lambda builds."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": _message_attributes(message.get("MessageAttributes") or {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class SqsPump(Pump):
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        function: Invocable,
        *,
        batch_size: int = 10,
        report_batch_item_failures: bool = False,
        wait_seconds: int = 1,
        region: str = "us-east-1",
    ) -> None:
        super().__init__(f"sqs:{queue_arn.rsplit(':', 1)[-1]}->{function.name}")
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.function = function
        self.batch_size = max(1, min(batch_size, 10))  # one ReceiveMessage returns at most 10
        self.report_batch_item_failures = report_batch_item_failures
        self.wait_seconds = wait_seconds
        self.region = region

    def poll_once(self) -> int:
        """Receive one batch, invoke, delete what succeeded. Returns the number received."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        records = [sqs_record(m, self.queue_arn, self.region) for m in messages]
        try:
            response = self.function.invoke({"Records": records})
        except Exception:
            log.exception("%s: batch of %d failed; it returns after the visibility timeout", self.name, len(records))
            return len(records)
        succeeded = self._succeeded(records, response)
        for start in range(0, len(succeeded), 10):
            chunk = succeeded[start : start + 10]
            result = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )
            for failure in result.get("Failed", []):
                log.warning("%s: delete failed: %s", self.name, failure)
        return len(records)

    def _succeeded(self, records: list[dict[str, Any]], response: Any) -> list[dict[str, Any]]:
        if not self.report_batch_item_failures:
            return records
        failures = response.get("batchItemFailures") if isinstance(response, dict) else None
        if not failures:
            return records
        ids = {r["messageId"] for r in records}
        failed = set()
        for failure in failures:
            item = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not item or item not in ids:
                # Lambda treats an invalid answer as a failure of the whole batch.
                log.error("%s: invalid batchItemFailures entry %r; whole batch failed", self.name, failure)
                return []
            failed.add(item)
        log.info("%s: %d of %d records failed", self.name, len(failed), len(records))
        return [r for r in records if r["messageId"] not in failed]


def _input_path(event: Any, path: str) -> Any:
    """InputPath: the JSONPath subset EventBridge targets use ($, $.a.b)."""
    value = event
    for part in [p for p in path.removeprefix("$").split(".") if p]:
        value = value[part]
    return value


class BridgePump(Pump):
    max_attempts = 3  # an asynchronous invocation is retried twice
    retry_delay = 1  # seconds before a failed event is tried again

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        function: Invocable,
        *,
        input: str | None = None,
        input_path: str | None = None,
        wait_seconds: int = 1,
    ) -> None:
        super().__init__(f"bridge:{queue_url.rsplit('/', 1)[-1]}->{function.name}")
        self.sqs = sqs
        self.queue_url = queue_url
        self.function = function
        self.input = input
        self.input_path = input_path
        self.wait_seconds = wait_seconds

    def poll_once(self) -> int:
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self.wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            VisibilityTimeout=max(1, int(getattr(self.function, "timeout", 30))),
        ).get("Messages", [])
        for message in messages:
            attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            try:
                event = json.loads(message["Body"])
                if self.input is not None:
                    event = json.loads(self.input)
                elif self.input_path:
                    event = _input_path(event, self.input_path)
                self.function.invoke(event)
            except Exception:
                if attempt < self.max_attempts:
                    log.exception("%s: attempt %d failed; retrying", self.name, attempt)
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue_url,
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=self.retry_delay,
                    )
                    continue
                log.exception("%s: attempt %d failed; event dropped: %s", self.name, attempt, message["Body"])
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)


_RATE = re.compile(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> int | None:
    m = _RATE.fullmatch(expression.strip())
    if not m:
        return None
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2).rstrip("s")]


class SchedulePump(Pump):
    def __init__(
        self,
        function: Invocable,
        expression: str,
        *,
        input: str | None = None,
        scheduler: bool = False,  # EventBridge Scheduler (ScheduleV2) rather than a rule
        rule_arn: str = "",
        region: str = "us-east-1",
        account_id: str = "123456789012",
        interval: float | None = None,
    ) -> None:
        super().__init__(f"schedule:{expression}->{function.name}")
        self.function = function
        self.expression = expression
        self.input = input
        self.scheduler = scheduler
        self.rule_arn = rule_arn
        self.region = region
        self.account_id = account_id
        self.interval = interval if interval is not None else rate_seconds(expression)

    def event(self) -> Any:
        if self.input is not None:
            return json.loads(self.input)
        if self.scheduler:
            return {}
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.account_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.region,
            "resources": [self.rule_arn] if self.rule_arn else [],
            "detail": {},
        }

    def run(self) -> None:
        if self.interval is None:
            log.info("%s: only rate(...) schedules fire locally; invoke the function by hand", self.name)
            return
        while not self._stop_event.wait(self.interval):
            try:
                self.function.invoke(self.event())
            except Exception:
                log.exception("%s: scheduled invocation failed", self.name)
