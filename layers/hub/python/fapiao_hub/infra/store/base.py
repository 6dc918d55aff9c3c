"""What every part of the store shares: the tables, the one conditional write, the application
item's encoding, and the clock's formats.

Every state change is a conditional write: the write itself is the check (no read-then-write
races). ``conditional`` is the only place a DynamoDB error is looked at: a failed condition becomes
the domain error (errors.py) or the answer the caller names, anything else is raised as it is.
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from boto3.dynamodb.types import Binary, TypeDeserializer
from botocore.exceptions import ClientError

from fapiao_hub.domain.models import Application, Finding, Status
from fapiao_hub.infra.store.errors import StaleWrite
from fapiao_hub.infra.store.records import StoredApplication, Transition

# The application item keeps its first history entries (appended, never rewritten) for cheap reads;
# past this many, entries go to the history table only (template.yaml HistoryTable), which holds
# every one of them and is what the GET answer and the ops detail page through. Keeps the item far
# from DynamoDB's 400 KB whatever an application lives through.
HISTORY_INLINE_LIMIT = 100
# DynamoDB items are capped at 400 KB; larger applications are kept in S3 (see FileStore).
INLINE_DOCUMENT_LIMIT = 300 * 1024
# GSI "attention": sparse, only applications that need a person carry it (this value).
ATTENTION = "PERSON"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DocumentOverflow:
    """Where applications too large for a DynamoDB item go (implemented by files.FileStore)."""

    def put_document(self, key: str, data: bytes) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def get_document(self, ref: str) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError


class Refused(NamedTuple):
    """A conditional write whose condition failed: nothing was written. ``item``: the item as it was
    (resource form), when the write asked for it (ReturnValuesOnConditionCheckFailure) and it exists."""

    item: dict[str, Any] | None


# What a failed condition means: an error to raise, or one made from the item as it was.
Refusal = BaseException | Callable[[dict[str, Any] | None], BaseException] | None


def conditional(write: Callable[..., Any], /, *args: Any, refused: Refusal = None, **params: Any) -> Any:
    """One conditional write, ``write(*args, **params)`` (put_item, update_item, StoreBase._write, ...):
    its answer, or, when its condition fails, what the caller names in ``refused``: an exception is
    raised; a callable is given the item as it was (None unless asked for) and what it returns is
    raised; None answers Refused (the caller reads the failure as an answer: "already there").

    A transaction (StoreBase._write with a history table) fails like the single write it wraps: only
    its first item's condition counts (the history record's is never expected to fail).
    """
    try:
        return write(*args, **params)
    except ClientError as error:
        failed, old = _condition_failure(error)
        if not failed:
            raise
    item = deserialize(old) if old else None
    if refused is None:
        return Refused(item)
    raise refused if isinstance(refused, BaseException) else refused(item)


def _condition_failure(error: ClientError) -> tuple[bool, dict[str, Any] | None]:
    """Whether ``error`` is a failed condition of the write, and the item as it was (low-level form)."""
    response: dict[str, Any] = dict(error.response)
    code = response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True, response.get("Item")
    if code == "TransactionCanceledException":
        reasons = response.get("CancellationReasons") or []
        first = reasons[0] if reasons else {}
        if first.get("Code") == "ConditionalCheckFailed":
            return True, first.get("Item")
    return False, None


_DESERIALIZER = TypeDeserializer()


def deserialize(raw: dict[str, Any]) -> dict[str, Any]:
    """A low-level item (as in a ClientError's response) in the resource API's form."""
    return {k: _DESERIALIZER.deserialize(v) for k, v in raw.items()}


def int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def plain_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: plain_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_tree(v) for v in value]
    return plain(value)


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    return value


def pages(query: Callable[..., dict[str, Any]], /, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every page of a Query (``query``: a table's or client's), read one after another as consumed."""
    while True:
        answer = query(**kwargs)
        yield answer
        if "LastEvaluatedKey" not in answer:
            return
        kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def batch_get(client: Any, table_name: str, keys: list[str], **options: Any) -> list[dict[str, Any]]:
    """The items under ``keys`` (pk) of a table, by BatchGetItem (100 keys a request, unprocessed ones
    asked again); ``options``: the request's per-table options (ConsistentRead, ProjectionExpression)."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), 100):  # BatchGetItem takes 100 keys
        request = {table_name: {"Keys": [{"pk": k} for k in keys[start : start + 100]], **options}}
        while request:
            answer = client.batch_get_item(RequestItems=request)
            found += answer["Responses"].get(table_name, [])
            request = answer.get("UnprocessedKeys") or {}
    return found


class StoreBase:
    """The applications table (template.yaml ApplicationsTable), the invoices and history tables beside
    it, and what every capability of the store does with them (the parts in this package extend it)."""

    def __init__(
        self,
        table: Any,
        overflow: DocumentOverflow | None = None,
        *,
        invoices_table_name: str | None = None,
        history_table_name: str | None = None,
        actor: str | None = None,
        clock=time.time,
    ):
        self._table = table
        self._overflow = overflow
        self._invoices_table_name = invoices_table_name
        # Where every history record goes (the audit trail); without it (some unit tests) only the
        # application item's own copy is kept.
        self._history_table_name = history_table_name
        # Who writes, when the caller does not say: the function (system component) this store serves.
        self._actor = actor or os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or "fapiao-hub"
        self._clock = clock

    def _write(self, kind: str, params: dict[str, Any], record: dict[str, Any]) -> Any:
        """One write to the application (``kind``: Put, Update or ConditionCheck) and its history record.

        With a history table both go in ONE TransactWriteItems (one request, as the write alone was):
        the record exists exactly when the change does. Callers pass it to ``conditional``, which reads
        a cancelled transaction's first reason as the failed condition of the write alone.
        """
        if not self._history_table_name:
            if kind == "Put":
                return self._table.put_item(**params)
            if kind == "Update":
                return self._table.update_item(**params)
            return None
        return self._table.meta.client.transact_write_items(
            TransactItems=[
                {kind: {"TableName": self._table.name, **params}},
                {
                    "Put": {
                        "TableName": self._history_table_name,
                        "Item": record,
                        "ConditionExpression": "attribute_not_exists(sk)",  # a record is never overwritten
                    }
                },
            ]
        )

    def _inline(self, stored: StoredApplication, adding: int = 1) -> bool:
        """Whether ``adding`` history entries go on the item's own copy too: while it stays within
        HISTORY_INLINE_LIMIT, and always without a history table (the copy is then the only one)."""
        return len(stored.history) + adding <= HISTORY_INLINE_LIMIT or not self._history_table_name

    def _require(self, key: str) -> StoredApplication:
        item = self._table.get_item(Key={"pk": key}, ConsistentRead=True).get("Item")
        if not item:
            raise StaleWrite(f"{key} vanished")
        return self._from_item(item)

    # ------------------------------------------------------------------ the application item's encoding
    def _encode_document(self, application: Application) -> dict[str, Any]:
        packed = gzip.compress(application.model_dump_json().encode("utf-8"), mtime=0)
        if len(packed) <= INLINE_DOCUMENT_LIMIT:
            return {"document": Binary(packed)}
        if self._overflow is None:
            raise ValueError("application too large for DynamoDB and no overflow store configured")
        ref = self._overflow.put_document(f"applications/{application.key.replace('#', '/')}.json.gz", packed)
        return {"document_ref": ref}

    def _from_item(self, item: dict[str, Any]) -> StoredApplication:
        if "document" in item:
            packed = bytes(item["document"].value if isinstance(item["document"], Binary) else item["document"])
        else:
            if self._overflow is None:
                raise ValueError("application stored in S3 but no overflow store configured")
            packed = self._overflow.get_document(item["document_ref"])
        application = Application.model_validate_json(gzip.decompress(packed))
        known = {
            "pk", "source_system", "open_apply_code", "status", "version", "payload_sha256",
            "created_at", "updated_at", "warnings", "history", "channel",
            "document", "document_ref", "due_bucket", "next_poll_at", "attempts", "request_number",
            "lease_until", "reason", "pending_event", "invoice_keys", "uncertain", "created_epoch", "polls",
            "findings", "finding_ids",
        }  # fmt: skip
        return StoredApplication(
            application=application,
            status=Status(item["status"]),
            version=int(item["version"]),
            payload_sha256=item["payload_sha256"],
            created_at=item["created_at"],
            updated_at=item["updated_at"],
            channel=item.get("channel"),
            warnings=tuple(item.get("warnings", ())),
            history=tuple(Transition.from_item(t) for t in item.get("history", ())),
            attempts=int(item.get("attempts", 0)),
            request_number=item.get("request_number"),
            lease_until=int_or_none(item.get("lease_until")),
            next_poll_at=int_or_none(item.get("next_poll_at")),
            reason=item.get("reason"),
            pending_event=plain_tree(item["pending_event"]) if item.get("pending_event") else None,
            invoice_keys=tuple(item.get("invoice_keys", ())),
            uncertain=bool(item.get("uncertain", False)),
            created_epoch=int_or_none(item.get("created_epoch")),
            polls=int(item.get("polls", 0)),
            extra={k: plain(v) for k, v in item.items() if k not in known},
            findings=tuple(Finding.model_validate(plain_tree(f)) for f in item.get("findings", ())),
        )
