"""SQS: the dispatch queue (the only code that sends to it)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError


class QueueUnavailable(Exception):
    """The message was not accepted by SQS; the caller decides how to recover."""


class DispatchQueue:
    def __init__(self, sqs_client: Any, queue_url: str):
        self._sqs = sqs_client
        self._url = queue_url

    def request_dispatch(self, source_system: str, open_apply_code: str) -> None:
        body = json.dumps({"source_system": source_system, "open_apply_code": open_apply_code})
        try:
            self._sqs.send_message(QueueUrl=self._url, MessageBody=body)
        except (ClientError, BotoCoreError) as error:
            raise QueueUnavailable(str(error)) from error
