"""DynamoDB repository: the only code that touches DynamoDB.

Every state change is a conditional write: the write itself is the check (no read-then-write
races). A failed condition becomes a domain error the workflow understands.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import Binary, TypeDeserializer
from botocore.exceptions import ClientError

from fapiao_hub.domain.china_time import CHINA_TIME, china_day
from fapiao_hub.domain.models import (
    ALLOWED_TRANSITIONS,
    Application,
    Direction,
    Finding,
    Status,
    application_key,
    request_number_for,
)

# Every item written from outside input passes storable_tree: a number DynamoDB cannot keep is
# written as its text rather than fail the write (channel modules mark such fields unreadable first).
from fapiao_hub.domain.number_range import storable_tree
from fapiao_hub.infra import history as audit

# The poller's sparse index (template.yaml, ApplicationsTable GSI "due-work"): only open
# applications carry due_bucket, so a poller's query reads due work, never the whole table.
DUE_BUCKET = "OPEN"
# The application item keeps its first history entries (appended, never rewritten) for cheap reads;
# past this many, entries go to the history table only (template.yaml HistoryTable), which holds
# every one of them and is what the GET answer and the ops detail page through. Keeps the item far
# from DynamoDB's 400 KB whatever an application lives through.
HISTORY_INLINE_LIMIT = 100
# DynamoDB items are capped at 400 KB; larger applications are kept in S3 (see FileStore).
INLINE_DOCUMENT_LIMIT = 300 * 1024
# The operations desk's listing indexes (template.yaml, GSIs "list-*"): each key is a value and a
# shard of the application's key, so no partition holds every application (docs/architecture.md).
LIST_SHARDS = 4
# A list page reads at most this many times its size from one partition where filters drop items.
LIST_READ_FACTOR = 4
# GSI "settled" (template.yaml): applications that reached a state that is not open, filed under the
# China day of that transition and a shard, so that reconciliation reads a window in a few partitions
# and one busy day is not one hot partition.
SETTLED_SHARDS = 4
# GSI "attention": sparse, only applications that need a person carry it (this value).
ATTENTION = "PERSON"


class ApplicationExists(Exception):
    """A conditional create found an application under the same key."""

    def __init__(self, existing: StoredApplication):
        super().__init__(existing.key)
        self.existing = existing


class IllegalTransition(Exception):
    """A transition the lifecycle does not allow (state moves forward only)."""


class RedLimitExceeded(Exception):
    """A red application asks for more than its blue invoice has left to reverse."""

    def __init__(self, remaining_amount: Decimal, remaining_tax: Decimal):
        super().__init__(f"left to reverse: {remaining_amount} + tax {remaining_tax}")
        self.remaining_amount = remaining_amount
        self.remaining_tax = remaining_tax


class BlueInvoiceUnknown(Exception):
    """No blue invoice under that key that the red application's business system and seller own.

    Deliberately one answer for "not there" and "someone else's": a tenant learns nothing of another's.
    """


class BlueInvoiceTypeDiffers(Exception):
    """The owner's blue invoice is of a type the red application may not reverse (docs/rules.md section 4)."""

    def __init__(self, blue_invoice_type: str):
        super().__init__(blue_invoice_type)
        self.blue_invoice_type = blue_invoice_type


class InvoiceNumberTaken(Exception):
    """A channel reported an invoice number the hub recorded for another application.

    ``args[0]``: the invoice keys; ``holders``: invoice key -> the application that holds it."""

    def __init__(self, keys: list[str], holders: dict[str, str] | None = None):
        super().__init__(keys)
        self.holders = holders or {}


class StaleWrite(Exception):
    """A conditional update lost: the application moved on (another writer, a newer state)."""


def settled_partition(pk: str, day: date) -> str:
    """The "settled" index partition of an application settled on ``day`` (China time)."""
    shard = int.from_bytes(hashlib.sha256(pk.encode()).digest()[:2], "big") % SETTLED_SHARDS
    return f"{day.isoformat()}#{shard}"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def finding_item(finding: Finding) -> dict[str, Any]:
    """A finding as stored on its application (JSON types; absent values left out)."""
    return finding.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True)
class Transition:
    """A history entry: a status change, or (``is_note``) something that happened without one."""

    at: str
    status: str
    previous: str | None = None
    note: str | None = None
    is_note: bool = False

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"at": self.at, "status": self.status}
        if self.previous:
            item["previous"] = self.previous
        if self.note:
            item["note"] = self.note
        if self.is_note:
            item["kind"] = "note"
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Transition:
        return cls(
            at=item["at"],
            status=item["status"],
            previous=item.get("previous"),
            note=item.get("note"),
            is_note=item.get("kind") == "note",
        )


@dataclass(frozen=True)
class StoredApplication:
    """An application as stored: the canonical document plus its lifecycle."""

    application: Application
    status: Status
    version: int
    payload_sha256: str
    created_at: str
    updated_at: str
    channel: str | None = None
    warnings: tuple[str, ...] = ()
    history: tuple[Transition, ...] = ()
    attempts: int = 0
    request_number: str | None = None
    lease_until: int | None = None  # epoch seconds; guards DISPATCHING
    next_poll_at: int | None = None  # epoch seconds; when the application is due again
    reason: str | None = None  # why it is in its status (rejection, unknown outcome, ...)
    pending_event: dict[str, Any] | None = None  # an outcome event not yet known to be published
    invoice_keys: tuple[str, ...] = ()
    # An earlier attempt's outcome was unknown: an invoice may exist whatever a later attempt hears.
    uncertain: bool = False
    created_epoch: int | None = None
    polls: int = 0  # queries made while waiting for a result (for growing intervals)
    extra: dict[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()  # what a person must look at (verification, reconciliation)
    # Not stored: the poller's claim (its next_poll_at) a dispatch step acts under (Dispatcher.dispatch).
    claim: int | None = None

    @property
    def key(self) -> str:
        return self.application.key

    @property
    def sent_request_number(self) -> str:
        """The number its current submission is sent under: the stored one (drawn at intake); items
        stored before numbers were drawn at random carry none and keep the derived one they were sent under."""
        return self.request_number or request_number_for(self.key)

    @property
    def open_findings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.open)

    @property
    def void_by_person(self) -> bool:
        """A void the channel has no call for, waiting to be done at the channel by a person."""
        return self.status is Status.VOIDING and bool(self.extra.get("void_by_person"))

    @property
    def needs_person(self) -> bool:
        return self.status.needs_person or bool(self.open_findings) or self.void_by_person


@dataclass(frozen=True)
class IndexedApplication:
    """What the reconciliation's indexes hold of an application (their projection)."""

    source_system: str
    open_apply_code: str
    status: Status
    channel: str | None = None

    @property
    def key(self) -> str:
        return application_key(self.source_system, self.open_apply_code)


@dataclass(frozen=True)
class CircuitState:
    """A channel's circuit as stored (health.py decides what it means)."""

    channel: str
    open: bool = False
    failures: int = 0  # in a row, within the window that began at window_start
    window_start: int | None = None
    opened_at: int | None = None  # when this outage began (kept across failed probes)
    open_until: int | None = None  # the cool-down's end
    probe_until: int | None = None  # an elected probe is in flight until then
    openings: int = 0  # how many times it opened: a probe's answer only counts for its own opening


class DocumentOverflow:
    """Where applications too large for a DynamoDB item go (implemented by files.FileStore)."""

    def put_document(self, key: str, data: bytes) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def get_document(self, ref: str) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError


class ApplicationStore:
    """Applications table (template.yaml ApplicationsTable)."""

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

    # ------------------------------------------------------------------ create / read
    def create(
        self,
        application: Application,
        *,
        payload_sha256: str,
        channel: str | None,
        warnings: list[str],
        requeue_after_seconds: int,
        request_number: str,
        extra_fields: dict[str, Any] | None = None,
    ) -> StoredApplication:
        """Store a new application as RECEIVED, or raise ApplicationExists with what is there."""
        now = utc_now()
        document = self._encode_document(application)
        first = Transition(at=iso(now), status=Status.RECEIVED.value, note="received")
        item: dict[str, Any] = {
            "pk": application.key,
            "source_system": application.source_system,
            "open_apply_code": application.open_apply_code,
            "status": Status.RECEIVED.value,
            "version": 1,
            "payload_sha256": payload_sha256,
            "created_at": iso(now),
            "created_epoch": int(self._clock()),
            "updated_at": iso(now),
            "request_number": request_number,
            "warnings": list(warnings),
            "history": [first.to_item()],
            # Until dispatch picks it up, the poller re-queues it if the queue message was lost.
            "due_bucket": DUE_BUCKET,
            "next_poll_at": int(self._clock()) + requeue_after_seconds,
            **document,
        }
        if channel:
            item["channel"] = channel
        item.update(listing_attributes(application, channel, Status.RECEIVED))
        item.update(extra_fields or {})
        record = audit.record(
            application.key, now, iso(now), audit.Kind.RECEIVED, by=self._actor, status=Status.RECEIVED.value,
            note="received", after={"status": Status.RECEIVED.value, "channel": channel,
                                    "request_number": request_number, "payload_sha256": payload_sha256},
        )  # fmt: skip
        try:
            self._write(
                "Put",
                {
                    "Item": storable_tree(item),
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                },
                record,
            )
        except ClientError as error:
            if _is_condition_failure(error):
                old = error.response.get("Item")
                existing = self._from_item(_deserialize(old)) if old else self._require(application.key)
                raise ApplicationExists(existing) from None
            raise
        return self._from_item(item)

    def get(self, source_system: str, open_apply_code: str) -> StoredApplication | None:
        response = self._table.get_item(
            Key={"pk": application_key(source_system, open_apply_code)}, ConsistentRead=True
        )
        item = response.get("Item")
        return self._from_item(item) if item else None

    def _require(self, key: str) -> StoredApplication:
        item = self._table.get_item(Key={"pk": key}, ConsistentRead=True).get("Item")
        if not item:
            raise StaleWrite(f"{key} vanished")
        return self._from_item(item)

    # ------------------------------------------------------------------ updates
    def transition(
        self,
        stored: StoredApplication,
        to: Status,
        *,
        note: str,
        changes: dict[str, Any] | None = None,
        remove: tuple[str, ...] = (),
        next_poll_at: int | None = None,
        invoices: list[dict[str, Any]] | None = None,
        pending_event: dict[str, Any] | None = None,
        findings: list[Finding] | None = None,
    ) -> StoredApplication:
        """Move an application on, if nobody else did: the condition is the status and version read.

        Open statuses stay in the due-work index (at ``next_poll_at``); others leave it and enter the
        "settled" index (``settled_day``, ``settled_at``). ``attention`` marks an application that
        needs a person (its status, or an open finding). ``findings`` are recorded in the same write
        (appended, each id once: one already there fails the condition like a stale read). Invoice
        items, when given, are recorded first (record_invoices). Raises StaleWrite when the
        condition fails.
        """
        if to not in ALLOWED_TRANSITIONS[stored.status]:
            raise IllegalTransition(f"{stored.status.value} -> {to.value} is not a forward move")
        now = utc_now()
        entry = Transition(at=iso(now), status=to.value, previous=stored.status.value, note=note)
        changes = changes or {}
        values: dict[str, Any] = {
            "status": to.value,
            "version": stored.version + 1,
            "updated_at": iso(now),
            **{k: v for k, v in changes.items() if v is not None},
        }
        if to is Status.STUCK:  # what an operator's requeue goes back to (the history may be long)
            values["stuck_from"] = stored.status.value
        removed = set(remove) | {k for k, v in changes.items() if v is None}
        # A STUCK application stays in due work when given a next_poll_at (its channel can be queried:
        # a late result is still asked for, slowly; workflow.Dispatcher.close).
        in_due_work = to.is_open or (to is Status.STUCK and next_poll_at is not None)
        if in_due_work:
            values["due_bucket"] = DUE_BUCKET
            values["next_poll_at"] = next_poll_at if next_poll_at is not None else int(self._clock())
            if not to.is_open:
                removed.add("lease_until")
        else:
            removed |= {"due_bucket", "next_poll_at", "lease_until"}
        values["list_status"] = list_partition(to.value, stored.key)  # the listing index follows the status
        if not to.is_open:
            values["settled_day"] = settled_partition(stored.key, china_day(now))
            values["settled_at"] = iso(now)
        new_findings = [f for f in findings or () if f.id not in {g.id for g in stored.findings}]
        all_findings = (*stored.findings, *new_findings)
        if to.needs_person or any(f.open for f in all_findings):
            values["attention"] = ATTENTION
        else:
            removed.add("attention")
        if pending_event is not None:
            values["pending_event"] = pending_event
        if invoices:
            values["invoice_keys"] = [
                *stored.invoice_keys,
                *(i["pk"] for i in invoices if i["pk"] not in stored.invoice_keys),
            ]
        removed -= set(values)
        removed.discard("history")
        names = {f"#a{i}": name for i, name in enumerate([*values, *removed])}
        alias = {name: placeholder for placeholder, name in names.items()}
        expression = "SET " + ", ".join(f"{alias[name]} = :v{i}" for i, name in enumerate(values))
        extra_values: dict[str, Any] = {}
        inline = len(stored.history) < HISTORY_INLINE_LIMIT or not self._history_table_name
        if inline:  # appended: a note written since this copy was read stays (never rewritten from it)
            names["#history"] = "history"
            expression += ", #history = list_append(if_not_exists(#history, :no_history), :entry)"
            extra_values |= {":no_history": [], ":entry": [entry.to_item()]}
        if removed:
            expression += " REMOVE " + ", ".join(alias[name] for name in removed)
        names["#status"], names["#version"] = "status", "version"
        condition = "#status = :expected_status AND #version = :expected_version"
        if new_findings:
            # Appended, never rewritten: add_finding may have added one since this copy was read.
            names["#findings"], names["#finding_ids"] = "findings", "finding_ids"
            expression = expression.replace(
                "SET ", "SET #findings = list_append(if_not_exists(#findings, :no_findings), :new_findings), ", 1
            )
            expression += " ADD #finding_ids :new_finding_ids"
            extra_values |= {
                ":no_findings": [],
                ":new_findings": [finding_item(f) for f in new_findings],
                ":new_finding_ids": {f.id for f in new_findings},
            }
            for n, finding in enumerate(new_findings):
                condition += f" AND (attribute_not_exists(#finding_ids) OR NOT contains(#finding_ids, :fid{n}))"
                extra_values[f":fid{n}"] = finding.id
        update = {
            "Key": {"pk": stored.key},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {
                **{f":v{i}": storable_tree(value) for i, value in enumerate(values.values())},
                ":expected_status": stored.status.value,
                ":expected_version": stored.version,
                **extra_values,
            },
        }
        changed = {k for k in changes if k != "history"} | (set(remove) - {"history"})
        before = {"status": stored.status.value, **{k: _stored_value(stored, k) for k in sorted(changed)}}
        after: dict[str, Any] = {"status": to.value, **{k: changes.get(k) for k in sorted(changed)}}
        if invoices:
            after["invoice_keys_added"] = [i["pk"] for i in invoices]
        if new_findings:
            after["finding_ids_added"] = [f.id for f in new_findings]
        record = audit.record(
            stored.key, now, entry.at, audit.Kind.TRANSITION, by=self._actor, status=to.value,
            previous=stored.status.value, note=note, reason=changes.get("reason"), before=before, after=after,
            version=stored.version + 1,
        )  # fmt: skip
        if invoices:
            self.record_invoices(stored.key, invoices)
        try:
            self._write("Update", update, record)
        except ClientError as error:
            if _is_condition_failure(error):
                raise StaleWrite(f"{stored.key} is no longer {stored.status.value} v{stored.version}") from None
            raise
        fields = {
            "status": to,
            "version": stored.version + 1,
            "updated_at": iso(now),
            "history": (*stored.history, entry) if inline else stored.history,
            **{k: v for k, v in changes.items() if k in _STORED_FIELDS},
            **{k: None for k in removed if k in _STORED_FIELDS},
            "claim": None,  # every transition writes next_poll_at: a poller's claim is gone
        }
        if in_due_work:
            fields["next_poll_at"] = values["next_poll_at"]
        if pending_event is not None:
            fields["pending_event"] = pending_event
        if invoices:
            fields["invoice_keys"] = tuple(values["invoice_keys"])
        if new_findings:
            fields["findings"] = all_findings
        if to is Status.STUCK:
            fields["extra"] = {**stored.extra, "stuck_from": stored.status.value}
        return replace(stored, **fields)

    def add_finding(self, stored_or_key: StoredApplication | str, finding: Finding, *, note: str) -> bool:
        """Record a finding on an application without a status change; False if it is there already.

        Idempotent by ``finding.id`` (the write's condition: a repeated callback or a second
        reconciliation run records nothing); appends a history ``note`` and marks the application as
        needing a person (``attention``). The version is not touched, so no transition loses a race
        to it. Raises StaleWrite if the application vanished.
        """
        stored = stored_or_key if isinstance(stored_or_key, StoredApplication) else self._require(stored_or_key)
        key, status = stored.key, stored.status.value
        now = utc_now()
        entry = Transition(at=iso(now), status=status, note=note, is_note=True).to_item()
        values: dict[str, Any] = {
            ":finding": [finding_item(finding)],
            ":ids": {finding.id},
            ":id": finding.id,
            ":empty": [],
        }
        expression = "SET findings = list_append(if_not_exists(findings, :empty), :finding)"
        if len(stored.history) < HISTORY_INLINE_LIMIT or not self._history_table_name:
            expression += ", history = list_append(if_not_exists(history, :empty), :entry)"
            values[":entry"] = [entry]
        if finding.open:
            expression += ", attention = :attention"
            values[":attention"] = ATTENTION
        record = audit.record(
            key, now, entry["at"], audit.Kind.FINDING, by=self._actor, status=status, note=note,
            finding_id=finding.id, after={"finding": finding_item(finding)},
        )  # fmt: skip
        try:
            self._write(
                "Update",
                {
                    "Key": {"pk": key},
                    "UpdateExpression": expression + " ADD finding_ids :ids",
                    "ConditionExpression": "attribute_exists(pk) AND "
                    "(attribute_not_exists(finding_ids) OR NOT contains(finding_ids, :id))",
                    "ExpressionAttributeValues": values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                },
                record,
            )
        except ClientError as error:
            if _is_condition_failure(error):
                old = error.response.get("Item")
                if not old:
                    raise StaleWrite(f"{key} vanished") from None
                self._seen_again(key, finding, _deserialize(old).get("findings", ()))
                return False
            raise
        return True

    def _seen_again(self, key: str, finding: Finding, recorded: Any) -> None:
        """The same discrepancy seen again: count it, say when, keep what is reported now (one finding,
        never another). Open or acknowledged stays as it is: a person already owns it."""
        index = next((i for i, f in enumerate(recorded) if f.get("id") == finding.id), None)
        if index is None:  # the id is in finding_ids but not in the list: nothing to update
            return
        try:
            self._table.update_item(
                Key={"pk": key},
                UpdateExpression=f"SET findings[{index}].#count = if_not_exists(findings[{index}].#count, :one) "
                f"+ :one, findings[{index}].last_seen = :at, findings[{index}].differences = :differences, "
                f"findings[{index}].summary = :summary",
                ConditionExpression=f"findings[{index}].id = :id",
                ExpressionAttributeNames={"#count": "count"},
                ExpressionAttributeValues={
                    ":one": 1,
                    ":at": finding.at,
                    ":differences": finding_item(finding).get("differences", []),
                    ":summary": finding.summary,
                    ":id": finding.id,
                },
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            # The list moved meanwhile (another sighting or an acknowledgement): this sighting is not
            # counted, and the next run's is.

    def note(
        self, stored_or_key: StoredApplication | str, text: str, *, status: str | None = None, by: str | None = None
    ) -> None:
        """Add a history entry without a status change (e.g. the notifier's deliveries).

        The entry carries the status as read (``stored``), as the caller knows it (``status``), or
        as it is now (a key alone: one read); the version is not touched, so no transition loses a
        race to a note. Raises StaleWrite if it vanished.
        """
        inline = True  # a note by key alone is not read first: the write's condition keeps the copy short
        if isinstance(stored_or_key, StoredApplication):
            key, status = stored_or_key.key, stored_or_key.status.value
            inline = len(stored_or_key.history) < HISTORY_INLINE_LIMIT
        else:
            key = stored_or_key
            status = status or self._require(stored_or_key).status.value
        now = utc_now()
        entry = Transition(at=iso(now), status=status, note=text, is_note=True).to_item()
        record = audit.record(key, now, entry["at"], audit.Kind.NOTE, by=by or self._actor, status=status, note=text)
        check: dict[str, Any] = {"Key": {"pk": key}, "ConditionExpression": "attribute_exists(pk)"}
        update = {
            **check,
            "UpdateExpression": "SET history = list_append(if_not_exists(history, :empty), :entry)",
            "ExpressionAttributeValues": {":entry": [entry], ":empty": []},
        }
        if self._history_table_name and not isinstance(stored_or_key, StoredApplication):
            # Past the item's share of the history, the record alone (a second request, then only).
            update["ConditionExpression"] += " AND (attribute_not_exists(history) OR size(history) < :inline)"
            update["ExpressionAttributeValues"][":inline"] = HISTORY_INLINE_LIMIT
            update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            if inline or not self._history_table_name:
                try:
                    self._write("Update", update, record)
                except ClientError as error:
                    if not (_is_condition_failure(error) and error.response.get("Item")):
                        raise
                    self._write("ConditionCheck", check, record)  # there, with its share of the history full
            else:  # the record alone; the item is only checked to be there
                self._write("ConditionCheck", check, record)
        except ClientError as error:
            if _is_condition_failure(error):
                raise StaleWrite(f"{key} vanished") from None
            raise

    # ------------------------------------------------------------------ the audit trail (history table)
    def _write(self, kind: str, params: dict[str, Any], record: dict[str, Any]) -> None:
        """One write to the application (``kind``: Put, Update or ConditionCheck) and its history record.

        With a history table both go in ONE TransactWriteItems (one request, as the write alone was):
        the record exists exactly when the change does. A failed condition on the application is
        raised as the ConditionalCheckFailedException a single write raises (with the item as it was,
        when asked for), so callers map it as before (StaleWrite, ApplicationExists, ...).
        """
        if not self._history_table_name:
            if kind == "Put":
                self._table.put_item(**params)
            elif kind == "Update":
                self._table.update_item(**params)
            return
        try:
            self._table.meta.client.transact_write_items(
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
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = error.response.get("CancellationReasons") or []
            first = reasons[0] if reasons else {}
            if first.get("Code") != "ConditionalCheckFailed":
                raise
            response: dict[str, Any] = {"Error": {"Code": "ConditionalCheckFailedException", "Message": "condition"}}
            if first.get("Item"):
                response["Item"] = first["Item"]
            raise ClientError(response, "TransactWriteItems") from None  # type: ignore[arg-type]

    def record_action(
        self,
        stored: StoredApplication,
        *,
        action: str,
        by: str,
        reason: str,
        before: dict[str, Any],
        after: dict[str, Any],
    ) -> None:
        """An operator action's own record (operations.Operations.act): who, why, before and after.

        Written after the action's own changes (each with its record): a record of the whole action
        that nothing rewrites. Without a history table there is nowhere to put it (nothing is written).
        """
        if not self._history_table_name:
            return
        now = utc_now()
        item = audit.record(
            stored.key, now, iso(now), audit.Kind.OPERATOR_ACTION, by=by, status=stored.status.value,
            reason=reason, action=action, before=before, after=after,
            note=f"{action} by operator {by}: {reason}",
        )  # fmt: skip
        self._table.meta.client.put_item(
            TableName=self._history_table_name, Item=item, ConditionExpression="attribute_not_exists(sk)"
        )

    def history_page(
        self,
        stored: StoredApplication,
        *,
        limit: int = audit.DEFAULT_PAGE,
        cursor: str | None = None,
        newest_first: bool = False,
        entries_only: bool = False,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of an application's history (every record, never cut) and the cursor of the next page.

        From the history table (one Query); without one, from the application's own copy. With
        ``entries_only`` (the caller shows no who, before or after: the business system's GET), a
        history that the item's own copy holds whole and that fits the page is read from it: no request.
        Raises audit.InvalidHistoryCursor for a cursor this history and order did not hand out.
        """
        limit = max(1, min(limit, audit.MAX_PAGE))
        # Below the item's share, every entry was appended to the item too (each writer appends while
        # the copy it read, or the item, is below it): the copy is the whole history.
        whole = len(stored.history) < HISTORY_INLINE_LIMIT and len(stored.history) <= limit and not cursor
        if not self._history_table_name or (entries_only and whole):
            entries = [t.to_item() for t in stored.history]
            if newest_first:
                entries.reverse()
            start = 0
            if cursor:
                try:
                    start = int(audit.decode_cursor(cursor, stored.key, newest_first))
                except ValueError as error:  # InvalidHistoryCursor, or a position that is not a number
                    raise audit.InvalidHistoryCursor(str(error)) from None
            page = entries[start : start + limit]
            more = start + limit < len(entries)
            return page, audit.encode_cursor(stored.key, str(start + limit), newest_first) if more else None
        kwargs: dict[str, Any] = {
            "TableName": self._history_table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": stored.key},  # the resource's client: plain values
            "ScanIndexForward": not newest_first,
            "Limit": limit,
            "ConsistentRead": True,
        }
        if cursor:
            sk = audit.decode_cursor(cursor, stored.key, newest_first)
            kwargs["ExclusiveStartKey"] = {"pk": stored.key, "sk": sk}
        answer = self._table.meta.client.query(**kwargs)
        last = answer.get("LastEvaluatedKey")
        next_cursor = audit.encode_cursor(stored.key, last["sk"], newest_first) if last else None
        return [audit.view(i) for i in answer.get("Items", [])], next_cursor

    def record_invoices(self, application_pk: str, invoices: list[dict[str, Any]]) -> None:
        """Record the invoices a channel issued for an application, before the application moves on.

        Written first so that a result, once heard, is never lost: if the dispatcher dies before
        the application's transition, the invoice is already on record and the next delivery
        finishes the job. Idempotent for the same application; an invoice number recorded for
        another application raises InvoiceNumberTaken.
        """
        table = self._table.meta.client  # the resource's client: it takes plain Python values
        taken: dict[str, str] = {}
        for invoice in invoices:
            try:
                table.put_item(
                    TableName=self._invoices_table_name,
                    Item=storable_tree(invoice),
                    # Free, unmatched (reported before its application was known), or already ours.
                    ConditionExpression="attribute_not_exists(pk) OR attribute_not_exists(application_key) "
                    "OR application_key = :app",
                    ExpressionAttributeValues={":app": application_pk},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",  # who holds it: the finding names it
                )
            except ClientError as error:
                if not _is_condition_failure(error):
                    raise
                holder = _deserialize(error.response.get("Item") or {}).get("application_key")
                taken[invoice["pk"]] = str(holder or "")
        if taken:
            raise InvoiceNumberTaken(list(taken), taken)

    def invoices(self, stored: StoredApplication) -> list[dict[str, Any]]:
        """The invoices recorded for an application, in the order they were issued."""
        if not stored.invoice_keys:
            return []
        client = self._table.meta.client
        found: dict[str, dict[str, Any]] = {}
        keys = [{"pk": key} for key in stored.invoice_keys]
        for start in range(0, len(keys), 100):  # BatchGetItem takes 100 keys
            request = {self._invoices_table_name: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            while request:
                answer = client.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self._invoices_table_name, []):
                    found[item["pk"]] = item
                request = answer.get("UnprocessedKeys") or {}
        return [found[key] for key in stored.invoice_keys if key in found]

    def reschedule(self, stored: StoredApplication, *, next_poll_at: int, polls: int) -> None:
        """When to look at an application again (no transition, no history entry)."""
        try:
            self._table.update_item(
                Key={"pk": stored.key},
                UpdateExpression="SET next_poll_at = :next, polls = :polls",
                ConditionExpression="#status = :status AND #version = :version",
                ExpressionAttributeNames={"#status": "status", "#version": "version"},
                ExpressionAttributeValues={
                    ":next": next_poll_at, ":polls": polls, ":status": stored.status.value, ":version": stored.version,
                },
            )  # fmt: skip
        except ClientError as error:
            if _is_condition_failure(error):
                raise StaleWrite(stored.key) from None
            raise

    def add_invoice_keys(self, stored: StoredApplication, keys: list[str]) -> None:
        self._table.update_item(
            Key={"pk": stored.key},
            UpdateExpression="SET invoice_keys = list_append(if_not_exists(invoice_keys, :empty), :keys)",
            ExpressionAttributeValues={":keys": keys, ":empty": []},
        )

    def mark_files_pending(self, application_pk: str, pending: bool) -> None:
        if pending:
            self._table.update_item(
                Key={"pk": application_pk},
                UpdateExpression="SET files_pending = :t",
                ExpressionAttributeValues={":t": True},
            )
        else:
            self._table.update_item(Key={"pk": application_pk}, UpdateExpression="REMOVE files_pending")

    def first_time(self, key: str, expires_at: int) -> bool:
        """Replay guard for signed callbacks (callback_auth.ReplayGuard): one conditional write.

        Kept in the applications table under its own key prefix; DynamoDB's TTL on expires_at
        removes it once its timestamp can no longer pass the signature window.
        """
        try:
            self._table.put_item(
                Item={"pk": f"replay#{key}", "expires_at": expires_at},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def record_unmatched(self, invoices: list[dict[str, Any]]) -> list[str]:
        """Invoices a channel reported for no application the hub knows: kept, never dropped.

        An application that later turns out to own one takes it over (record_invoices allows it).
        """
        kept = []
        client = self._table.meta.client
        for invoice in invoices:
            try:
                client.put_item(
                    TableName=self._invoices_table_name,
                    Item=storable_tree({**invoice, "unmatched": True}),
                    ConditionExpression="attribute_not_exists(pk) OR attribute_not_exists(application_key)",
                )
                kept.append(invoice["pk"])
            except ClientError as error:
                if not _is_condition_failure(error):
                    raise
        return kept

    def find_by_request_number(self, request_number: str) -> StoredApplication | None:
        """The application sent under a request number (GSI by-request-number, set at intake)."""
        answer = self._table.query(
            IndexName="by-request-number",
            KeyConditionExpression=Key("request_number").eq(request_number),
            Limit=2,
        )
        items = answer.get("Items", [])
        if not items:
            return None
        return self._require(items[0]["pk"])

    def due(self, now: int, limit: int) -> list[tuple[str, str, int]]:
        """Open applications due by ``now``, oldest first: (source_system, open_apply_code, next_poll_at).

        Reads the sparse due-work index only: the cost follows the due work, not the table.
        """
        found: list[tuple[str, str, int]] = []
        kwargs: dict[str, Any] = {
            "IndexName": "due-work",
            "KeyConditionExpression": Key("due_bucket").eq(DUE_BUCKET) & Key("next_poll_at").lte(now),
            "ProjectionExpression": "source_system, open_apply_code, next_poll_at",
        }
        while len(found) < limit:
            answer = self._table.query(Limit=min(limit - len(found), 1000), **kwargs)
            found += [
                (i["source_system"], i["open_apply_code"], int(i["next_poll_at"])) for i in answer.get("Items", [])
            ]
            if "LastEvaluatedKey" not in answer:
                break
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return found

    def claim_due(self, source_system: str, open_apply_code: str, *, seen: int, until: int) -> bool:
        """Move a due application's ``next_poll_at`` from ``seen`` to ``until``: it is being handed on.

        Conditional on the value read, so of two poller runs only one hands it on, and a backlog in
        the dispatch queue gets one more request per application per claim, not one per run.
        False when it moved meanwhile (dispatch got to it, or another run claimed it).
        """
        try:
            self._table.update_item(
                Key={"pk": application_key(source_system, open_apply_code)},
                UpdateExpression="SET next_poll_at = :until",
                ConditionExpression="next_poll_at = :seen AND attribute_exists(due_bucket)",
                ExpressionAttributeValues={":seen": seen, ":until": until},
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def update_invoice(self, invoice_pk: str, changes: dict[str, Any]) -> None:
        """Facts learnt about a recorded invoice later (its files, its state)."""
        names = {f"#f{i}": k for i, k in enumerate(changes)}
        self._table.meta.client.update_item(
            TableName=self._invoices_table_name,
            Key={"pk": invoice_pk},
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(changes))),
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":v{i}": storable_tree(v) for i, v in enumerate(changes.values())},
        )

    def invoice(self, invoice_pk: str) -> dict[str, Any] | None:
        answer = self._table.meta.client.get_item(
            TableName=self._invoices_table_name, Key={"pk": invoice_pk}, ConsistentRead=True
        )
        return answer.get("Item")

    def reserve_red(
        self,
        blue_pk: str,
        amount: Decimal,
        tax: Decimal,
        *,
        source_system: str,
        seller_tax_number: str,
        invoice_types: tuple[str, ...],
    ) -> None:
        """Take a red application's (positive) amount and tax from what its blue invoice has left.

        One conditional write, which is also the ownership check: the blue invoice must have been
        issued for ``source_system`` and ``seller_tax_number``, be of one of ``invoice_types``, and
        have at least the amount and the tax left; concurrent red applications can never together
        exceed it. On failure the item as it was (handed back by the failed write, no second read)
        says why: BlueInvoiceUnknown (absent, or not this owner's: the same answer),
        BlueInvoiceTypeDiffers, or RedLimitExceeded with the owner's figures left.
        """
        try:
            self._table.meta.client.update_item(
                TableName=self._invoices_table_name,
                Key={"pk": blue_pk},
                UpdateExpression="SET red_remaining_amount = red_remaining_amount - :a, "
                "red_remaining_tax = red_remaining_tax - :t",
                ConditionExpression="source_system = :system AND seller_tax_number = :seller "
                "AND direction = :blue AND invoice_type IN ("
                + ", ".join(f":type{i}" for i in range(len(invoice_types)))
                + ") AND red_remaining_amount >= :a AND red_remaining_tax >= :t",
                ExpressionAttributeValues={
                    ":a": amount,
                    ":t": tax,
                    ":system": source_system,
                    ":seller": seller_tax_number,
                    ":blue": Direction.BLUE.value,
                    **{f":type{i}": value for i, value in enumerate(invoice_types)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            old = error.response.get("Item")
            blue = _deserialize(old) if old else None
            if (
                blue is None
                or blue.get("source_system") != source_system
                or blue.get("seller_tax_number") != seller_tax_number
                or blue.get("direction") != Direction.BLUE.value
                or "red_remaining_amount" not in blue
            ):
                raise BlueInvoiceUnknown(blue_pk) from None
            if blue.get("invoice_type") not in invoice_types:
                raise BlueInvoiceTypeDiffers(str(blue.get("invoice_type"))) from None
            raise RedLimitExceeded(
                Decimal(str(blue.get("red_remaining_amount", 0))), Decimal(str(blue.get("red_remaining_tax", 0)))
            ) from None

    def release_red(self, blue_pk: str, amount: Decimal, tax: Decimal) -> None:
        """Give a red application's reservation back (it was rejected, or never stored)."""
        self._table.meta.client.update_item(
            TableName=self._invoices_table_name,
            Key={"pk": blue_pk},
            UpdateExpression="SET red_remaining_amount = red_remaining_amount + :a, "
            "red_remaining_tax = red_remaining_tax + :t",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":a": amount, ":t": tax},
        )

    def resubmit(
        self,
        rejected: StoredApplication,
        application: Application,
        *,
        payload_sha256: str,
        channel: str | None,
        warnings: list[str],
        request_number: str,
        submission: int,
        requeue_after_seconds: int,
        extra_fields: dict[str, Any] | None = None,
    ) -> StoredApplication:
        """A REJECTED application sent again with corrected content: a new submission (RECEIVED) under
        the same key, with its own request number; the history and the earlier submissions are kept.

        One conditional write on the status and version read (and no invoice recorded for it), so a
        concurrent resubmission or any other change makes it fail: StaleWrite, and nothing changed.
        """
        now = utc_now()
        epoch = int(self._clock())
        earlier = {
            "submission": int(rejected.extra.get("submission", 1)),
            "request_number": rejected.request_number,
            "channel": rejected.channel,
            "status": rejected.status.value,
            "reason": rejected.reason,
            "payload_sha256": rejected.payload_sha256,
            "received_at": rejected.created_at,
        }
        entry = Transition(
            at=iso(now),
            status=Status.RECEIVED.value,
            previous=rejected.status.value,
            note=f"received again with corrected content: submission {submission}, request number "
            f"{request_number} (submission {earlier['submission']}, {earlier['request_number']}, was "
            f"{rejected.status.value.lower()}: {rejected.reason or 'no reason recorded'})",
        )
        values: dict[str, Any] = {
            "status": Status.RECEIVED.value,
            "version": rejected.version + 1,
            "payload_sha256": payload_sha256,
            "updated_at": iso(now),
            "created_epoch": epoch,  # the open deadline counts from this submission
            "request_number": request_number,
            "submission": submission,
            "submissions": [*rejected.extra.get("submissions", []), {k: v for k, v in earlier.items() if v}],
            "warnings": list(warnings),
            "due_bucket": DUE_BUCKET,
            "next_poll_at": epoch + requeue_after_seconds,
            "attempts": 0,
            "polls": 0,
            **self._encode_document(application),
            **(extra_fields or {}),
        }
        if channel:
            values["channel"] = channel
        removed = {
            "reason", "uncertain", "lease_until", "channel_ref", "raw_answer", "red_reserved_on", "files_pending",
            "document", "document_ref", "settled_day", "settled_at", "attention",
        } - set(values)  # fmt: skip
        if not channel:
            removed.add("channel")
        names = {f"#a{i}": name for i, name in enumerate([*values, *removed])}
        alias = {name: placeholder for placeholder, name in names.items()}
        expression = "SET " + ", ".join(f"{alias[name]} = :v{i}" for i, name in enumerate(values))
        history_values: dict[str, Any] = {}
        if len(rejected.history) < HISTORY_INLINE_LIMIT or not self._history_table_name:
            # Appended: a note written since the rejected copy was read stays.
            names["#history"] = "history"
            expression += ", #history = list_append(if_not_exists(#history, :no_history), :entry)"
            history_values = {":no_history": [], ":entry": [entry.to_item()]}
        expression += " REMOVE " + ", ".join(alias[name] for name in removed)
        names["#status"], names["#version"], names["#invoices"] = "status", "version", "invoice_keys"
        record = audit.record(
            rejected.key, now, entry.at, audit.Kind.TRANSITION, by=self._actor, status=Status.RECEIVED.value,
            previous=rejected.status.value, note=entry.note, version=rejected.version + 1,
            before={k: v for k, v in earlier.items() if v is not None},
            after={"status": Status.RECEIVED.value, "submission": submission, "request_number": request_number,
                   "channel": channel, "payload_sha256": payload_sha256},
        )  # fmt: skip
        try:
            self._write(
                "Update",
                {
                    "Key": {"pk": rejected.key},
                    "UpdateExpression": expression,
                    "ConditionExpression": "#status = :expected_status AND #version = :expected_version "
                    "AND (attribute_not_exists(#invoices) OR size(#invoices) = :none)",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": {
                        **{f":v{i}": value for i, value in enumerate(values.values())},
                        ":expected_status": rejected.status.value,
                        ":expected_version": rejected.version,
                        ":none": 0,
                        **history_values,
                    },
                },
                record,
            )
        except ClientError as error:
            if _is_condition_failure(error):
                raise StaleWrite(f"{rejected.key} is no longer {rejected.status.value} v{rejected.version}") from None
            raise
        return self._require(rejected.key)

    def mark_void_sent(self, stored: StoredApplication, note: str, *, by_person: bool = False) -> None:
        """The void request went to the channel (never sent twice by later steps), with a history note;
        ``by_person``: the channel has no void call, so a person must void it at the channel: the
        application needs a person (``attention``: listed, counted under VOIDING, alarmed) until the
        channel reports the void or an operator records it.

        Conditional on the status and version read; the version is not bumped (a note, not a move)."""
        now = utc_now()
        entry = Transition(at=iso(now), status=stored.status.value, note=note, is_note=True).to_item()
        record = audit.record(
            stored.key, now, entry["at"], audit.Kind.NOTE, by=self._actor, status=stored.status.value, note=note,
            before={"void_sent": bool(stored.extra.get("void_sent"))},
            after={"void_sent": True, **({"void_by_person": True} if by_person else {})},
        )  # fmt: skip
        values: dict[str, Any] = {":t": True, ":status": stored.status.value, ":version": stored.version}
        expression = "SET void_sent = :t"
        if by_person:
            expression += ", void_by_person = :t, attention = :attention"
            values[":attention"] = ATTENTION
        if len(stored.history) < HISTORY_INLINE_LIMIT or not self._history_table_name:
            expression += ", history = list_append(if_not_exists(history, :empty), :entry)"
            values |= {":entry": [entry], ":empty": []}
        try:
            self._write(
                "Update",
                {
                    "Key": {"pk": stored.key},
                    "UpdateExpression": expression,
                    "ConditionExpression": "#status = :status AND #version = :version",
                    "ExpressionAttributeNames": {"#status": "status", "#version": "version"},
                    "ExpressionAttributeValues": values,
                },
                record,
            )
        except ClientError as error:
            if _is_condition_failure(error):
                raise StaleWrite(stored.key) from None
            raise

    def clear_pending_event(self, stored: StoredApplication) -> None:
        """The outcome event is published: forget it (only if nothing moved on since)."""
        try:
            self._table.update_item(
                Key={"pk": stored.key},
                UpdateExpression="REMOVE pending_event",
                ConditionExpression="#version = :version",
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues={":version": stored.version},
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise

    # ------------------------------------------------------------------ reconciliation reads
    def settled_between(self, start: datetime, end: datetime) -> list[IndexedApplication]:
        """Applications whose last move to a status that is not open fell in [start, end] (GSI "settled").

        One query per (China-time day, shard) of the window, each bounded by ``settled_at``: the cost
        follows the applications settled in the window, never the table.
        """
        found: list[IndexedApplication] = []
        day, last = start.astimezone(CHINA_TIME).date(), end.astimezone(CHINA_TIME).date()
        while day <= last:
            for shard in range(SETTLED_SHARDS):
                found += self._index_entries(
                    "settled",
                    Key("settled_day").eq(f"{day.isoformat()}#{shard}")
                    & Key("settled_at").between(iso(start), iso(end)),
                )
            day += timedelta(days=1)
        return found

    def needing_person(self) -> list[IndexedApplication]:
        """Every application waiting for a person (GSI "attention", sparse: only they carry it)."""
        return self._index_entries("attention", Key("attention").eq(ATTENTION))

    def _index_entries(self, index: str, condition: Any) -> list[IndexedApplication]:
        kwargs: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ProjectionExpression": "source_system, open_apply_code, #status, channel",
            "ExpressionAttributeNames": {"#status": "status"},
        }
        found: list[IndexedApplication] = []
        while True:
            answer = self._table.query(**kwargs)
            found += [
                IndexedApplication(i["source_system"], i["open_apply_code"], Status(i["status"]), i.get("channel"))
                for i in answer.get("Items", [])
            ]
            if "LastEvaluatedKey" not in answer:
                return found
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
    # ------------------------------------------------------------------ channel circuits (health.py)
    # One item per channel, "circuit#<channel>", in the applications table like the replay guard:
    # no due_bucket, request_number or status, so no index and no application query sees it.

    def circuit(self, channel: str) -> CircuitState | None:
        item = self._table.get_item(Key={"pk": _circuit_key(channel)}, ConsistentRead=True).get("Item")
        return _circuit_state(channel, item) if item else None

    def count_channel_failure(self, channel: str, *, now: int, window_seconds: int) -> CircuitState:
        """One more failure in a row: in the current window, or the first of a new one."""
        cutoff = now - window_seconds
        for _ in range(3):  # each try fails only because another dispatcher moved the window
            for update, condition in (
                ("SET failures = failures + :one", "window_start > :cutoff"),
                ("SET failures = :one, window_start = :now",
                 "attribute_not_exists(window_start) OR window_start <= :cutoff"),
            ):  # fmt: skip
                values = {":one": 1, ":cutoff": cutoff, **({":now": now} if ":now" in update else {})}
                item = self._update_circuit(channel, update, condition, values)
                if item is not None:
                    return _circuit_state(channel, item)
        raise StaleWrite(f"circuit {channel}: the failure window kept moving")

    def clear_channel_failures(self, channel: str) -> None:
        """The channel answered: failures in a row start again from none."""
        self._update_circuit(channel, "SET failures = :zero", "failures > :zero", {":zero": 0})

    def open_circuit(self, channel: str, *, now: int, until: int) -> CircuitState | None:
        """Open it until ``until``; None if it was open already (another dispatcher opened it)."""
        item = self._update_circuit(
            channel,
            "SET #circuit = :open, opened_at = :now, open_until = :until, "
            "openings = if_not_exists(openings, :zero) + :one REMOVE probe_until",
            "attribute_not_exists(#circuit) OR #circuit <> :open",
            {":open": "OPEN", ":now": now, ":until": until, ":zero": 0, ":one": 1},
        )
        return _circuit_state(channel, item) if item is not None else None

    def claim_probe(self, channel: str, *, now: int, until: int, openings: int) -> bool:
        """Elect this dispatcher to probe the channel: the cool-down is over and nobody else is probing."""
        item = self._update_circuit(
            channel,
            "SET probe_until = :until",
            "#circuit = :open AND openings = :openings AND open_until <= :now "
            "AND (attribute_not_exists(probe_until) OR probe_until <= :now)",
            {":until": until, ":open": "OPEN", ":openings": openings, ":now": now},
        )
        return item is not None

    def release_probe(self, channel: str, *, openings: int) -> None:
        self._update_circuit(
            channel, "REMOVE probe_until", "#circuit = :open AND openings = :openings",
            {":open": "OPEN", ":openings": openings},
        )  # fmt: skip

    def reopen_circuit(self, channel: str, *, until: int, openings: int) -> None:
        """The probe failed: another cool-down (opened_at stays: the outage goes on)."""
        self._update_circuit(
            channel, "SET open_until = :until REMOVE probe_until", "#circuit = :open AND openings = :openings",
            {":until": until, ":open": "OPEN", ":openings": openings},
        )  # fmt: skip

    def close_circuit(self, channel: str, *, openings: int) -> bool:
        """The probe got an answer: closed, no failures counted (only for the opening it probed)."""
        item = self._update_circuit(
            channel,
            "SET #circuit = :closed, failures = :zero REMOVE probe_until, open_until, window_start",
            "#circuit = :open AND openings = :openings",
            {":closed": "CLOSED", ":zero": 0, ":open": "OPEN", ":openings": openings},
        )
        return item is not None

    def _update_circuit(
        self, channel: str, update: str, condition: str, values: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A conditional update of a circuit item: the item after it, or None if the condition failed."""
        names = {"#circuit": "circuit"} if "#circuit" in update or "#circuit" in condition else {}
        try:
            answer = self._table.update_item(
                Key={"pk": _circuit_key(channel)},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                **({"ExpressionAttributeNames": names} if names else {}),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return None
            raise
        return answer.get("Attributes", {})

    def wait_for_channel(self, stored: StoredApplication, *, next_poll_at: int, reason: str) -> None:
        """An application whose channel's circuit is open: due again then, status and attempts as they are."""
        try:
            self._table.update_item(
                Key={"pk": stored.key},
                UpdateExpression="SET next_poll_at = :next, reason = :reason",
                ConditionExpression="#status = :status AND #version = :version",
                ExpressionAttributeNames={"#status": "status", "#version": "version"},
                ExpressionAttributeValues={
                    ":next": next_poll_at, ":reason": reason, ":status": stored.status.value,
                    ":version": stored.version,
                },
            )  # fmt: skip
        except ClientError as error:
            if _is_condition_failure(error):
                raise StaleWrite(stored.key) from None
            raise
    # ------------------------------------------------------------------ operator actions (operations.py)
    def acknowledge_finding(
        self, stored: StoredApplication, finding_id: str, *, by: str, reason: str, note: str
    ) -> StoredApplication:
        """Close an open finding (who, when, why): :meth:`acknowledge_findings` with one."""
        return self.acknowledge_findings(stored, [(finding_id, note)], by=by, reason=reason)

    def acknowledge_findings(
        self, stored: StoredApplication, notes: Sequence[tuple[str, str]], *, by: str, reason: str
    ) -> StoredApplication:
        """Close open findings, ``(finding id, history note)`` each, in one write (all or none), and
        clear ``attention`` when nothing else needs a person.

        Conditional on the status read (attention follows from it), on the number of findings read
        (one added meanwhile might need a person) and on each finding still being open; the version is
        not touched, so no result loses a race to it. Raises StaleWrite when the condition fails,
        StopIteration for a finding the application does not hold.
        """
        at = iso(utc_now())
        findings = list(stored.findings)
        values: dict[str, Any] = {":status": stored.status.value, ":count": len(stored.findings), ":open": True}
        sets, conditions, entries = [], ["#status = :status", "size(findings) = :count"], []
        indexes = []
        for n, (finding_id, note) in enumerate(notes):
            index = next(i for i, f in enumerate(stored.findings) if f.id == finding_id)
            indexes.append(index)
            findings[index] = findings[index].model_copy(
                update={"open": False, "acknowledged_by": by, "acknowledged_at": at, "acknowledged_reason": reason}
            )
            values[f":finding{n}"], values[f":id{n}"] = finding_item(findings[index]), finding_id
            sets.append(f"findings[{index}] = :finding{n}")
            conditions.append(f"findings[{index}].id = :id{n} AND findings[{index}].#open = :open")
            entries.append(Transition(at=at, status=stored.status.value, note=note, is_note=True).to_item())
        still = stored.status.needs_person or any(f.open for f in findings)
        # The item's own copy only while it is short (HISTORY_INLINE_LIMIT); the history table has all.
        inline = len(stored.history) + len(entries) <= HISTORY_INLINE_LIMIT or not self._history_table_name
        expression = "SET " + ", ".join(sets)
        if inline:
            expression += ", history = list_append(if_not_exists(history, :empty), :entry)"
            values |= {":entry": entries, ":empty": []}
        expression += ", attention = :attention" if still else " REMOVE attention"
        if still:
            values[":attention"] = ATTENTION
        # One record for the acknowledgement (one or many findings, one reason), before and after each.
        record = audit.record(
            stored.key, datetime.fromisoformat(at), at, audit.Kind.FINDING_ACKNOWLEDGED, by=by,
            status=stored.status.value, note="; ".join(note for _, note in notes), reason=reason,
            finding_id=notes[0][0] if len(notes) == 1 else None,
            finding_ids=[finding_id for finding_id, _ in notes] if len(notes) > 1 else None,
            before={"findings": [finding_item(stored.findings[i]) for i in indexes]},
            after={"findings": [finding_item(findings[i]) for i in indexes]},
        )  # fmt: skip
        try:
            self._write(
                "Update",
                {
                    "Key": {"pk": stored.key},
                    "UpdateExpression": expression,
                    "ConditionExpression": " AND ".join(conditions),
                    "ExpressionAttributeNames": {"#status": "status", "#open": "open"},
                    "ExpressionAttributeValues": values,
                },
                record,
            )
        except ClientError as error:
            if _is_condition_failure(error):
                ids = ", ".join(finding_id for finding_id, _ in notes)
                raise StaleWrite(f"{stored.key}: finding {ids} or the application moved") from None
            raise
        history = (*stored.history, *(Transition.from_item(entry) for entry in entries)) if inline else stored.history
        return replace(stored, findings=tuple(findings), history=history)

    def attention_counts(self, limit: int = 10000, reach: Reach | None = None) -> dict[str, int]:
        """How many applications need a person, by status, through the sparse "attention" index (never
        a scan: it holds only those). An application there whose status needs no person is held by an
        open finding: counted under "FINDINGS". Small pages of keys and the status only; with
        ``reach``, only the applications within it."""
        counts: dict[str, int] = {}
        kwargs: dict[str, Any] = {
            "IndexName": "attention",
            "KeyConditionExpression": Key("attention").eq(ATTENTION),
            "ProjectionExpression": "pk, source_system, #status",
            "ExpressionAttributeNames": {"#status": "status"},
        }
        seen = 0
        while seen < limit:
            answer = self._table.query(Limit=1000, **kwargs)
            for item in self._within(answer.get("Items", []), reach):
                status = Status(item["status"])
                # VOIDING there: a void to be done at the channel by a person (or an open finding).
                name = status.value if status.needs_person or status is Status.VOIDING else "FINDINGS"
                counts[name] = counts.get(name, 0) + 1
                seen += 1
            if "LastEvaluatedKey" not in answer:
                break
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return counts

    def restore_unmatched(self, item: dict[str, Any], application_pk: str) -> None:
        """Put an unmatched result back as it was, if an operator's attach-result took it for an
        application and then lost its race (the application moved): it stays to be attached again."""
        try:
            self._table.meta.client.put_item(
                TableName=self._invoices_table_name,
                Item=storable_tree(item),
                ConditionExpression="attribute_not_exists(pk) OR application_key = :app",
                ExpressionAttributeValues={":app": application_pk},
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
    # ------------------------------------------------------------------ operations desk: list, count
    def list_page(
        self, query: ListQuery, limit: int, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of applications, newest received first, and the cursor of the next (None: the last).

        Served by one listing index (ListQuery.partitions: the operator's business systems or sellers
        when it is limited, else the most selective filter given), each value's LIST_SHARDS partitions
        read side by side and merged: a page costs LIST_SHARDS queries per value, however many
        applications are stored. Where other filters drop items, a partition reads at most
        LIST_READ_FACTOR x ``limit`` items for one page, so a page may hold fewer than ``limit`` rows
        and still have a next cursor (the cost of a page is bounded, not the reading of an index to
        its end). The items hold the index's projection (LISTED_ATTRIBUTES). Raises InvalidCursor for
        a cursor of another query.
        """
        index, hash_attribute, values = query.partitions()
        partitions = [f"{value}#{shard}" for value in values for shard in range(LIST_SHARDS)]
        if not partitions:
            return [], None  # nothing within the operator's reach matches: nothing is read
        fingerprint = query.fingerprint()
        positions = (
            _decode_cursor(cursor, fingerprint, len(partitions)) if cursor else dict.fromkeys(range(len(partitions)))
        )
        key = Key(hash_attribute)
        condition_range = query.received_range()
        filters = query.filter_expression()
        fetched: dict[int, list[dict[str, Any]]] = {}
        ended: dict[int, bool] = {}
        # Where a partition stopped short of ``limit`` matches without reaching its end: (pk, created_at)
        # of the last item it read. Nothing it has not read is newer.
        stopped: dict[int, tuple[str, str]] = {}
        for number, start in positions.items():
            if start is False:  # this partition is read to its end
                continue
            partition = partitions[number]
            kwargs: dict[str, Any] = {
                "IndexName": index,
                "KeyConditionExpression": _key_condition(key.eq(partition), condition_range),
                "ScanIndexForward": False,
            }
            if filters is not None:
                kwargs["FilterExpression"] = filters
            if start:
                kwargs["ExclusiveStartKey"] = {"pk": start[0], "created_at": start[1], hash_attribute: partition}
            items: list[dict[str, Any]] = []
            for _ in range(LIST_READ_FACTOR):
                answer = self._table.query(Limit=limit, **kwargs)
                items += answer.get("Items", [])
                if "LastEvaluatedKey" not in answer or len(items) >= limit:
                    break
                kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
            fetched[number] = items
            ended[number] = "LastEvaluatedKey" not in answer
            if not ended[number] and len(items) < limit:
                last = answer["LastEvaluatedKey"]
                stopped[number] = (last["pk"], last["created_at"])
        # Only what is at least as new as every stopped partition's last read item can be shown in order.
        frontier = max((at for _, at in stopped.values()), default="")
        # Newest first; equal times keep each partition's own order, so what a partition gives is always
        # a prefix of what it read and its position can be carried in the cursor.
        merged = sorted(
            (
                (item["created_at"], -number, -n)
                for number, items in fetched.items()
                for n, item in enumerate(items)
                if item["created_at"] >= frontier
            ),
            reverse=True,
        )[:limit]
        page = [fetched[-number][-n] for _, number, n in merged]
        next_positions: dict[int, Any] = dict(positions)
        for number, items in fetched.items():
            used = sum(1 for _, m, _ in merged if -m == number)
            if used:
                last_used = items[used - 1]
                next_positions[number] = [last_used["pk"], last_used["created_at"]]
            if used == len(items):
                if ended[number]:
                    next_positions[number] = False
                elif number in stopped:  # what it read past its last match matched nothing
                    next_positions[number] = list(stopped[number])
        if all(position is False for position in next_positions.values()):
            return page, None
        return page, _encode_cursor(next_positions, fingerprint)

    def count_status(self, status: Status, reach: Reach | None = None) -> int:
        """How many applications are in ``status`` now (its listing partitions, counted, not read);
        with ``reach``, only those within it (a filter on the partitions' projection: the same requests)."""
        total = 0
        condition = reach.condition() if reach is not None else None
        for shard in range(LIST_SHARDS):
            kwargs: dict[str, Any] = {
                "IndexName": "list-status",
                "KeyConditionExpression": Key("list_status").eq(f"{status.value}#{shard}"),
                "Select": "COUNT",
            }
            if condition is not None:
                kwargs["FilterExpression"] = condition
            while True:
                answer = self._table.query(**kwargs)
                total += int(answer.get("Count", 0))
                if "LastEvaluatedKey" not in answer:
                    break
                kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return total

    def settled_since(self, since: datetime, reach: Reach | None = None) -> dict[str, int]:
        """Applications that reached a state that is not open since ``since``, by status (the "settled"
        index); with ``reach``, only those within it."""
        entries: list[dict[str, Any]] = []
        day, last = china_day(since), china_day(utc_now())
        while day <= last:
            for shard in range(SETTLED_SHARDS):
                kwargs: dict[str, Any] = {
                    "IndexName": "settled",
                    "KeyConditionExpression": Key("settled_day").eq(f"{day.isoformat()}#{shard}")
                    & Key("settled_at").gte(iso(since)),
                    "ProjectionExpression": "pk, source_system, #status",
                    "ExpressionAttributeNames": {"#status": "status"},
                }
                while True:
                    answer = self._table.query(**kwargs)
                    entries += answer.get("Items", [])
                    if "LastEvaluatedKey" not in answer:
                        break
                    kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
            day += timedelta(days=1)
        counts: dict[str, int] = {}
        for item in self._within(entries, reach):
            counts[item["status"]] = counts.get(item["status"], 0) + 1
        return counts

    def count_open_findings(self, reach: Reach | None = None) -> int:
        """Open findings on the applications that need a person (the sparse "attention" index); with
        ``reach``, only on those within it."""
        entries: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "IndexName": "attention",
            "KeyConditionExpression": Key("attention").eq(ATTENTION),
            "ProjectionExpression": "pk, source_system",
        }
        while True:
            answer = self._table.query(**kwargs)
            entries += answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                break
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        if reach is not None and reach.business_systems is not None:
            entries = [e for e in entries if e.get("source_system") in reach.business_systems]
        total = 0
        for item in self._read_keys([e["pk"] for e in entries], "pk, findings, seller_tax_number"):
            if reach is None or reach.sellers is None or item.get("seller_tax_number") in reach.sellers:
                total += sum(1 for f in item.get("findings", ()) if f.get("open", True))
        return total

    def _within(self, entries: list[dict[str, Any]], reach: Reach | None) -> list[dict[str, Any]]:
        """Index entries (pk, source_system, ...) of applications within ``reach``. The business system
        is in every index's projection; the seller only in the listing ones', so for a reach of sellers
        the entries left are read (by key, 100 at a time) for it."""
        if reach is None or reach.whole_hub:
            return entries
        if reach.business_systems is not None:
            entries = [e for e in entries if e.get("source_system") in reach.business_systems]
        if reach.sellers is None or not entries:
            return entries
        read = self._read_keys([e["pk"] for e in entries], "pk, seller_tax_number")
        sellers = {i["pk"]: i.get("seller_tax_number") for i in read}
        return [e for e in entries if sellers.get(e["pk"]) in reach.sellers]

    def _read_keys(self, keys: list[str], projection: str) -> list[dict[str, Any]]:
        client, name, found = self._table.meta.client, self._table.name, []
        for start in range(0, len(keys), 100):  # BatchGetItem takes 100 keys
            request = {
                name: {"Keys": [{"pk": k} for k in keys[start : start + 100]], "ProjectionExpression": projection}
            }
            while request:
                answer = client.batch_get_item(RequestItems=request)
                found += answer["Responses"].get(name, [])
                request = answer.get("UnprocessedKeys") or {}
        return found

    # ------------------------------------------------------------------ encoding
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
            lease_until=_int_or_none(item.get("lease_until")),
            next_poll_at=_int_or_none(item.get("next_poll_at")),
            reason=item.get("reason"),
            pending_event=_plain_tree(item["pending_event"]) if item.get("pending_event") else None,
            invoice_keys=tuple(item.get("invoice_keys", ())),
            uncertain=bool(item.get("uncertain", False)),
            created_epoch=_int_or_none(item.get("created_epoch")),
            polls=int(item.get("polls", 0)),
            extra={k: _plain(v) for k, v in item.items() if k not in known},
            findings=tuple(Finding.model_validate(_plain_tree(f)) for f in item.get("findings", ())),
        )


def _circuit_key(channel: str) -> str:
    return f"circuit#{channel}"


def _circuit_state(channel: str, item: dict[str, Any]) -> CircuitState:
    return CircuitState(
        channel=channel,
        open=item.get("circuit") == "OPEN",
        failures=int(item.get("failures", 0)),
        window_start=_int_or_none(item.get("window_start")),
        opened_at=_int_or_none(item.get("opened_at")),
        open_until=_int_or_none(item.get("open_until")),
        probe_until=_int_or_none(item.get("probe_until")),
        openings=int(item.get("openings", 0)),
    )
# ---------------------------------------------------------------------------- listing (operations desk)
# What every listing index projects (template.yaml): enough for a list row without reading the item.
LISTED_ATTRIBUTES = (
    "source_system", "open_apply_code", "status", "company_code", "seller_tax_number", "buyer_name", "channel",
    "request_number", "invoice_type", "direction", "amount", "tax", "updated_at", "reason", "findings",
)  # fmt: skip


class InvalidCursor(ValueError):
    """A cursor that is not one this query handed out."""


def list_partition(value: str, pk: str) -> str:
    """A listing index's partition for ``value`` (a status, a business system, ...) and an application."""
    shard = int.from_bytes(hashlib.sha256(pk.encode("utf-8")).digest()[:2], "big") % LIST_SHARDS
    return f"{value}#{shard}"


def listing_attributes(application: Application, channel: str | None, status: Status) -> dict[str, Any]:
    """The attributes the listing indexes key on and project, written with the application (no extra request)."""
    pk = application.key
    attributes: dict[str, Any] = {
        "list_all": list_partition("ALL", pk),
        "list_system": list_partition(application.source_system, pk),
        "list_status": list_partition(status.value, pk),
        "company_code": application.company_code,
        "buyer_name": application.buyer.name,
        "invoice_type": application.invoice_type.value,
        "direction": application.direction.value,
        "amount": application.amount,
        "tax": application.tax,
    }
    if application.seller.tax_number:
        attributes["seller_tax_number"] = application.seller.tax_number
        attributes["list_seller"] = list_partition(application.seller.tax_number, pk)
    if channel:
        attributes["list_channel"] = list_partition(channel, pk)
    return attributes


@dataclass(frozen=True)
class ListQuery:
    """The operations desk's filters; ``business_systems`` / ``sellers`` are an operator's reach (None: all)."""

    status: str | None = None
    business_system: str | None = None
    seller: str | None = None
    channel: str | None = None
    received_from: date | None = None  # China days, both ends included
    received_to: date | None = None
    business_systems: tuple[str, ...] | None = None
    sellers: tuple[str, ...] | None = None
    # Only applications that ever had a finding (the projected ``findings``); the caller keeps the open ones.
    with_findings: bool = False

    @property
    def reach(self) -> Reach:
        return Reach(self.business_systems, self.sellers)

    def partitions(self) -> tuple[str, str, tuple[str, ...]]:
        """(index, its partition attribute, the values before the shard) that hold every match.

        An operator limited to some business systems is served from those systems' partitions (limited
        to sellers only: those sellers'), so what other systems store is never read; none when the
        filters and the reach leave nothing.
        """
        if self.business_systems is not None:
            wanted = (self.business_system,) if self.business_system else self.business_systems
            return "list-system", "list_system", tuple(v for v in dict.fromkeys(wanted) if v in self.business_systems)
        if self.sellers is not None:
            wanted = (self.seller,) if self.seller else self.sellers
            return "list-seller", "list_seller", tuple(v for v in dict.fromkeys(wanted) if v in self.sellers)
        index, attribute, value = self.index()
        return index, attribute, (value,)

    def index(self) -> tuple[str, str, str]:
        """(index, its partition attribute, the value before the shard): the most selective filter given."""
        if self.seller:
            return "list-seller", "list_seller", self.seller
        if self.business_system:
            return "list-system", "list_system", self.business_system
        if self.status:
            return "list-status", "list_status", self.status
        if self.channel:
            return "list-channel", "list_channel", self.channel
        return "list-all", "list_all", "ALL"

    def received_range(self) -> tuple[str | None, str | None]:
        # created_at is stored in UTC ('Z'): the China day's bounds are compared in UTC too.
        start = None
        if self.received_from:
            start = iso(datetime.combine(self.received_from, datetime.min.time(), CHINA_TIME).astimezone(UTC))
        end = None
        if self.received_to:
            after = datetime.combine(self.received_to + timedelta(days=1), datetime.min.time(), CHINA_TIME)
            end = iso((after - timedelta(milliseconds=1)).astimezone(UTC))
        return start, end

    def filter_expression(self) -> Any:
        """The filters the chosen partitions do not answer, and the operator's reach."""
        _, attribute, _ = self.partitions()
        conditions = []
        if self.status and attribute != "list_status":
            conditions.append(Attr("status").eq(self.status))
        if self.business_system and attribute != "list_system":
            conditions.append(Attr("source_system").eq(self.business_system))
        if self.seller and attribute != "list_seller":
            conditions.append(Attr("seller_tax_number").eq(self.seller))
        if self.channel and attribute != "list_channel":
            conditions.append(Attr("channel").eq(self.channel))
        if self.with_findings:
            conditions.append(Attr("findings").exists())
        reach = self.reach.condition()
        if reach is not None:
            conditions.append(reach)
        return _all_of(conditions)

    def fingerprint(self) -> str:
        text = json.dumps([str(getattr(self, f.name)) for f in fields(self)])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Reach:
    """What an operator may see (config.Operator): its business systems and sellers (None: all)."""

    business_systems: tuple[str, ...] | None = None
    sellers: tuple[str, ...] | None = None

    @property
    def whole_hub(self) -> bool:
        return self.business_systems is None and self.sellers is None

    def condition(self) -> Any:
        """A filter on a listing index's projection (None: the whole hub)."""
        conditions = []
        if self.business_systems is not None:
            conditions.append(Attr("source_system").is_in(list(self.business_systems) or [""]))
        if self.sellers is not None:
            conditions.append(Attr("seller_tax_number").is_in(list(self.sellers) or [""]))
        return _all_of(conditions)


def _all_of(conditions: list[Any]) -> Any:
    if not conditions:
        return None
    expression = conditions[0]
    for condition in conditions[1:]:
        expression = expression & condition
    return expression


def _key_condition(partition: Any, received: tuple[str | None, str | None]) -> Any:
    start, end = received
    created = Key("created_at")
    if start and end:
        return partition & created.between(start, end)
    if start:
        return partition & created.gte(start)
    if end:
        return partition & created.lte(end)
    return partition


def _encode_cursor(positions: dict[int, Any], fingerprint: str) -> str:
    raw = json.dumps({"q": fingerprint, "s": [positions[s] for s in range(len(positions))]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str, fingerprint: str, partitions: int) -> dict[int, Any]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        shards = raw["s"]
        valid = raw["q"] == fingerprint and isinstance(shards, list) and len(shards) == partitions
        valid = valid and all(
            s is None or s is False or (isinstance(s, list) and len(s) == 2 and all(isinstance(v, str) for v in s))
            for s in shards
        )
    except (ValueError, TypeError, KeyError):
        valid = False
    if not valid:
        raise InvalidCursor("not a cursor of this query: start again without one")
    return dict(enumerate(shards))


def _stored_value(stored: StoredApplication, name: str) -> Any:
    """A field's value as ``stored`` holds it (for a history record's "before")."""
    if name in _STORED_FIELDS:
        return getattr(stored, name)
    return stored.extra.get(name)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _plain_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_tree(v) for v in value]
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    return value


_DESERIALIZER = TypeDeserializer()
_STORED_FIELDS = {f.name for f in fields(StoredApplication)}


def _deserialize(raw: dict[str, Any]) -> dict[str, Any]:
    """A low-level item (as in a ClientError's response) in the resource API's form."""
    return {k: _DESERIALIZER.deserialize(v) for k, v in raw.items()}


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
