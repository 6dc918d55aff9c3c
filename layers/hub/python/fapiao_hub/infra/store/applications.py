"""Applications: created, read, moved through their lifecycle, noted, sent again after a rejection,
and marked as voided at the channel; each change one conditional write with its history record
(StoreBase._write) and the index attributes it implies (due work, listing, settled, attention).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from boto3.dynamodb.conditions import Key

from fapiao_hub.domain.china_time import china_day
from fapiao_hub.domain.models import ALLOWED_TRANSITIONS, Application, Finding, Status, application_key

# Every item written from outside input passes storable_tree: a number DynamoDB cannot keep is
# written as its text rather than fail the write (channel modules mark such fields unreadable first).
from fapiao_hub.domain.number_range import storable_tree
from fapiao_hub.infra import history as audit
from fapiao_hub.infra.store.base import ATTENTION, HISTORY_INLINE_LIMIT, Refused, conditional, iso, utc_now
from fapiao_hub.infra.store.errors import ApplicationExists, IllegalTransition, StaleWrite
from fapiao_hub.infra.store.invoices import Invoices
from fapiao_hub.infra.store.listing import list_partition, listing_attributes
from fapiao_hub.infra.store.polling import DUE_BUCKET
from fapiao_hub.infra.store.records import STORED_FIELDS, StoredApplication, Transition, finding_item, stored_value
from fapiao_hub.infra.store.settled import settled_partition


class Applications(Invoices):
    """The application item's lifecycle (a transition records the invoices it brings first: Invoices)."""

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
        conditional(
            self._write,
            "Put",
            {
                "Item": storable_tree(item),
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            },
            record,
            refused=lambda old: ApplicationExists(self._from_item(old) if old else self._require(application.key)),
        )
        return self._from_item(item)

    def get(self, source_system: str, open_apply_code: str) -> StoredApplication | None:
        response = self._table.get_item(
            Key={"pk": application_key(source_system, open_apply_code)}, ConsistentRead=True
        )
        item = response.get("Item")
        return self._from_item(item) if item else None

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
        names, expression, removal = _set_and_remove(values, removed)
        extra_values: dict[str, Any] = {}
        inline = self._inline(stored)
        if inline:  # appended: a note written since this copy was read stays (never rewritten from it)
            names["#history"] = "history"
            expression += ", #history = list_append(if_not_exists(#history, :no_history), :entry)"
            extra_values |= {":no_history": [], ":entry": [entry.to_item()]}
        expression += removal
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
        before = {"status": stored.status.value, **{k: stored_value(stored, k) for k in sorted(changed)}}
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
        conditional(self._write, "Update", update, record, refused=_moved_on(stored))
        fields = {
            "status": to,
            "version": stored.version + 1,
            "updated_at": iso(now),
            "history": (*stored.history, entry) if inline else stored.history,
            **{k: v for k, v in changes.items() if k in STORED_FIELDS},
            **{k: None for k in removed if k in STORED_FIELDS},
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
            inline = self._inline(stored_or_key)
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
        if inline:
            answer = conditional(self._write, "Update", update, record)
            if not isinstance(answer, Refused):
                return
            if answer.item is None:
                raise StaleWrite(f"{key} vanished")
            # There, with its share of the history full: the record alone, as below.
        # The record alone; the item is only checked to be there.
        conditional(self._write, "ConditionCheck", check, record, refused=StaleWrite(f"{key} vanished"))

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
            "submission": rejected.submission,
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
            "submissions": [*rejected.earlier_submissions, {k: v for k, v in earlier.items() if v}],
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
        names, expression, removal = _set_and_remove(values, removed)
        history_values: dict[str, Any] = {}
        if self._inline(rejected):
            # Appended: a note written since the rejected copy was read stays.
            names["#history"] = "history"
            expression += ", #history = list_append(if_not_exists(#history, :no_history), :entry)"
            history_values = {":no_history": [], ":entry": [entry.to_item()]}
        expression += removal
        names["#status"], names["#version"], names["#invoices"] = "status", "version", "invoice_keys"
        record = audit.record(
            rejected.key, now, entry.at, audit.Kind.TRANSITION, by=self._actor, status=Status.RECEIVED.value,
            previous=rejected.status.value, note=entry.note, version=rejected.version + 1,
            before={k: v for k, v in earlier.items() if v is not None},
            after={"status": Status.RECEIVED.value, "submission": submission, "request_number": request_number,
                   "channel": channel, "payload_sha256": payload_sha256},
        )  # fmt: skip
        conditional(
            self._write,
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
            refused=_moved_on(rejected),
        )
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
            before={"void_sent": stored.void is not None and stored.void.sent},
            after={"void_sent": True, **({"void_by_person": True} if by_person else {})},
        )  # fmt: skip
        values: dict[str, Any] = {":t": True, ":status": stored.status.value, ":version": stored.version}
        expression = "SET void_sent = :t"
        if by_person:
            expression += ", void_by_person = :t, attention = :attention"
            values[":attention"] = ATTENTION
        if self._inline(stored):
            expression += ", history = list_append(if_not_exists(history, :empty), :entry)"
            values |= {":entry": [entry], ":empty": []}
        conditional(
            self._write,
            "Update",
            {
                "Key": {"pk": stored.key},
                "UpdateExpression": expression,
                "ConditionExpression": "#status = :status AND #version = :version",
                "ExpressionAttributeNames": {"#status": "status", "#version": "version"},
                "ExpressionAttributeValues": values,
            },
            record,
            refused=StaleWrite(stored.key),
        )

    def clear_pending_event(self, stored: StoredApplication) -> None:
        """The outcome event is published: forget it (only if nothing moved on since)."""
        conditional(  # refused: it moved on, and its next state carries its own event
            self._table.update_item,
            Key={"pk": stored.key},
            UpdateExpression="REMOVE pending_event",
            ConditionExpression="#version = :version",
            ExpressionAttributeNames={"#version": "version"},
            ExpressionAttributeValues={":version": stored.version},
        )

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



def _moved_on(stored: StoredApplication) -> StaleWrite:
    return StaleWrite(f"{stored.key} is no longer {stored.status.value} v{stored.version}")


def _set_and_remove(values: dict[str, Any], removed: set[str]) -> tuple[dict[str, str], str, str]:
    """An update's attribute names (#a0, ...), its SET clause (each of ``values`` to :v0, ...) and its
    REMOVE clause (empty when nothing is removed)."""
    gone = list(removed)
    names = {f"#a{i}": name for i, name in enumerate([*values, *gone])}
    alias = {name: placeholder for placeholder, name in names.items()}
    assignments = "SET " + ", ".join(f"{alias[name]} = :v{i}" for i, name in enumerate(values))
    removal = " REMOVE " + ", ".join(alias[name] for name in gone) if gone else ""
    return names, assignments, removal
