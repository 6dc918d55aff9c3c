"""Counting AWS requests with botocore's event hooks.

``RequestCounter.attach()`` registers one ``before-call.*.*`` handler on the hub runtime's boto3
session (``fapiao_hub.runtime.watch_aws_requests``). Clients copy their session's emitter when they
are created, so the handler must be attached before the clients exist; it then sees every API call
those clients make (one event per call: botocore's own retries of a call are not counted again).

Each call is recorded with the function that made it (``local.runtime.current_function``, which
the local run sets around every handler invocation), the service, the operation, the table and,
for DynamoDB writes, enough of the request to estimate index writes (bench.cost).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Call:
    function: str
    service: str
    operation: str
    table: str | None = None
    key: str | None = None  # DynamoDB item key (pk), where the request names one
    gsi_writes: int = 0  # estimated writes to the applications table's GSIs (bench.cost)
    item_bytes: int = 0  # PutItem: the item's size as DynamoDB counts it
    body_bytes: int = 0  # S3 PutObject: the object's size
    label: str = ""  # what the call does, read from the request (see ``_label``)
    entries: int = 1  # messages or events a batch call carries (SendMessageBatch, PutEvents)

    @property
    def name(self) -> str:
        return f"{self.service}:{self.operation}"


@dataclass
class RequestCounter:
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self) -> None:
        """Count every call of the clients the hub's runtime builds from now on."""
        from fapiao_hub import runtime

        runtime.watch_aws_requests(self._before_call, "fapiao-bench-counter")

    def mark(self) -> int:
        with self._lock:
            return len(self.calls)

    def since(self, mark: int) -> list[Call]:
        with self._lock:
            return list(self.calls[mark:])

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        function = _current_function()
        call = _describe(function, service, model.name, params)
        with self._lock:
            self.calls.append(call)


def _current_function() -> str:
    try:
        from local.runtime import current_function
    except ImportError:  # pragma: no cover - bench always runs from the repository
        return "?"
    return current_function.get() or "(outside a function)"


def tally(calls: list[Call]) -> dict[str, int]:
    """``service:Operation`` -> count, most frequent first."""
    return dict(Counter(c.name for c in calls).most_common())


def by_function(calls: list[Call]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for call in calls:
        out.setdefault(call.function, {})
        out[call.function][call.name] = out[call.function].get(call.name, 0) + 1
    return out


# ---------------------------------------------------------------------------- request details
def _describe(function: str, service: str, operation: str, params: dict[str, Any]) -> Call:
    if service == "dynamodb":
        try:
            body = json.loads(params.get("body") or b"{}")
        except (TypeError, ValueError):
            body = {}
        written, suffix = operation, ""
        if operation == "TransactWriteItems" and body.get("TransactItems"):
            # the store's change and its history record (the audit trail): described by the change.
            kind, body = next(iter(body["TransactItems"][0].items()))
            written = {"Put": "PutItem", "Update": "UpdateItem"}.get(kind, "ConditionCheckItem")
            suffix = HISTORY_RECORD
        table = body.get("TableName")
        key = _pk(body.get("Key") or body.get("Item"))
        item_bytes = item_size(body["Item"]) if written == "PutItem" and "Item" in body else 0
        gsi = _gsi_writes(written, body) if table and GSI_TABLE_MARK in table else 0
        label = _dynamodb_label(written, body, key, table) + suffix
        return Call(function, service, operation, table, key, gsi, item_bytes, label=label)
    if service == "s3":
        path = str(params.get("url_path") or "")
        size = 0
        if operation == "PutObject":
            body = params.get("body")
            size = len(body) if isinstance(body, bytes | bytearray) else int(getattr(body, "_size", 0) or 0)
            if not size and hasattr(body, "seek") and hasattr(body, "tell"):
                position = body.tell()
                body.seek(0, 2)
                size = body.tell()
                body.seek(position)
        return Call(function, service, operation, body_bytes=size, label=_s3_label(operation, path))
    if service in ("sqs", "events"):
        try:
            body = json.loads(params.get("body") or b"{}")
        except (TypeError, ValueError):
            body = {}
        entries = len(body.get("Entries") or []) if operation in ("SendMessageBatch", "PutEvents") else 1
        return Call(function, service, operation, label=_message_label(service, operation, body), entries=entries)
    return Call(function, service, operation, label=operation)


def _dynamodb_label(operation: str, body: dict[str, Any], key: str | None, table: str | None) -> str:
    """What a DynamoDB request of the hub does, in the store's words (infra/store/)."""
    invoices = bool(table) and "InvoicesTable" in str(table)
    names = body.get("ExpressionAttributeNames") or {}
    values = body.get("ExpressionAttributeValues") or {}
    expression = body.get("UpdateExpression") or ""
    condition = body.get("ConditionExpression") or ""
    if operation == "GetItem":
        if key and key.startswith("circuit#"):
            return "channel circuit read"
        return "get invoice" if invoices else "get application"
    if operation == "BatchGetItem":
        return "get invoices"
    if operation == "Query":
        index = body.get("IndexName") or ""
        return {
            "due-work": "due-work query",
            "by-request-number": "find by request number",
            "attention": "backlog count",
        }.get(index, "query")
    if operation == "PutItem":
        if invoices:
            return "put unmatched invoice" if "unmatched" in (body.get("Item") or {}) else "put invoice"
        if key and key.startswith("replay#"):
            return "put replay guard"
        return "put application"
    if operation != "UpdateItem":
        return operation
    if invoices:
        if "red_remaining_amount - " in expression:
            return "reserve red (blue invoice)"
        if "red_remaining_amount + " in expression:
            return "release red (blue invoice)"
        fields = set(names.values())
        if fields == {"files"}:
            return "invoice file records"
        if fields == {"status"}:
            return "invoice state"
        return "update invoice"
    if ":expected_status" in values:
        alias = next((a for a, n in names.items() if n == "status" and a.startswith("#a")), None)
        status = values.get(f":v{alias[2:]}", {}).get("S") if alias else None
        return f"transition to {status}" if status else "transition"
    if "next_poll_at = :seen" in condition:
        return "claim due"
    if "REMOVE pending_event" in expression:
        return "clear_pending_event"
    if "list_append(if_not_exists(history" in expression:
        return "history note"
    if "files_pending" in expression:
        return "files_pending cleared" if expression.startswith("REMOVE") else "files_pending set"
    if "polls" in expression:
        return "reschedule"
    if "invoice_keys" in expression:
        return "add invoice keys"
    return "update application"


def _s3_label(operation: str, path: str) -> str:
    if "/raw/callbacks/" in path:
        return "archive push"
    if "/raw/" in path:
        return "keep raw answer"
    if "/applications/" in path:
        return "overflow document"
    if "/invoices/" in path:
        return "HEAD invoice file" if operation == "HeadObject" else "invoice file"
    return operation


def _message_label(service: str, operation: str, body: dict[str, Any]) -> str:
    if service == "events":
        types = sorted({e.get("DetailType", "?") for e in body.get("Entries") or []})
        return f"event {', '.join(types)}"
    if operation == "SendMessage":
        if "dlq" in str(body.get("QueueUrl", "")).lower():
            return "notify DLQ"
        return "dispatch request" + (" (delayed)" if int(body.get("DelaySeconds") or 0) else "")
    if operation == "SendMessageBatch":
        return "dispatch requests (batch)"
    if operation == "ChangeMessageVisibility":
        return "notify retry delay"
    return operation


# The label's tail for a write that carries its history record in the same transaction.
HISTORY_RECORD = " + history record"


def _pk(key: Any) -> str | None:
    if isinstance(key, dict) and isinstance(key.get("pk"), dict):
        return key["pk"].get("S")
    return None


# Only the applications table has indexes (its physical name carries its logical id locally).
GSI_TABLE_MARK = "ApplicationsTable"
# Attributes that are keys of the applications table's GSIs (template.yaml): due-work
# (due_bucket, next_poll_at) and by-request-number (request_number).
_GSI_KEYS = {"due-work": {"due_bucket", "next_poll_at"}, "by-request-number": {"request_number"}}


def _gsi_writes(operation: str, body: dict[str, Any]) -> int:
    """Index writes a DynamoDB write causes, estimated from the request alone.

    A new item with an index's keys: 1 write to that index. An update that sets an index key:
    2 (the old index entry deleted, the new one put; DynamoDB's rule when a key changes; it is 1
    when the item was not in the index, and 0 when the value is unchanged: this errs high). An
    update that removes an index key: 1. Items without the keys (replay guards, invoices) cost none.
    """
    if operation == "PutItem":
        item = body.get("Item") or {}
        return sum(1 for keys in _GSI_KEYS.values() if keys <= set(item))
    if operation != "UpdateItem":
        return 0
    expression = body.get("UpdateExpression") or ""
    names = body.get("ExpressionAttributeNames") or {}
    set_part, removed = _split_update(expression)
    set_attrs = {names.get(token, token) for token in _lhs_names(set_part)}
    removed_attrs = {names.get(token.strip(), token.strip()) for token in removed.split(",") if token.strip()}
    writes = 0
    for index, keys in _GSI_KEYS.items():
        if set_attrs & keys:
            # request_number is set again with its own value on every claim: unchanged, no write.
            writes += 0 if index == "by-request-number" else 2
        elif removed_attrs & keys:
            writes += 1
    return writes


def _split_update(expression: str) -> tuple[str, str]:
    upper = expression.upper()
    set_part, removed = "", ""
    if "REMOVE " in upper:
        at = upper.index("REMOVE ")
        removed = expression[at + len("REMOVE ") :]
        expression = expression[:at]
    if expression.upper().strip().startswith("SET "):
        set_part = expression.strip()[4:]
    return set_part, removed


def _lhs_names(set_part: str) -> list[str]:
    names = []
    depth = 0
    current = ""
    for char in set_part:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            names.append(current.split("=")[0].strip())
            current = ""
        else:
            current += char
    if current.strip():
        names.append(current.split("=")[0].strip())
    return names


def item_size(item: dict[str, Any]) -> int:
    """An item's size in bytes as DynamoDB bills it (attribute names plus typed values), approximately."""
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode("utf-8"))
    if kind == "N":
        digits = len(inner.lstrip("-").replace(".", "").lstrip("0")) or 1
        return (digits + 1) // 2 + 1
    if kind == "B":
        return len(inner) if isinstance(inner, bytes | bytearray) else len(inner) * 3 // 4  # base64 on the wire
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + _value_size(v) for k, v in inner.items())
    if kind in ("SS", "NS", "BS"):
        return sum(len(str(v)) for v in inner)
    return 0
