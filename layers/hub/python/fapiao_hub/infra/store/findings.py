"""Findings on an application (what a person must look at: verification, reconciliation): recorded
once by id, counted when seen again, acknowledged by an operator; each with its history note, and
the application's ``attention`` mark (GSI "attention") kept in step. None of them moves the version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from fapiao_hub.domain.models import Finding
from fapiao_hub.infra import history as audit
from fapiao_hub.infra.store.base import ATTENTION, Refused, StoreBase, conditional, iso, utc_now
from fapiao_hub.infra.store.errors import StaleWrite
from fapiao_hub.infra.store.records import StoredApplication, Transition, finding_item


class Findings(StoreBase):
    """An application's findings."""

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
        if self._inline(stored):
            expression += ", history = list_append(if_not_exists(history, :empty), :entry)"
            values[":entry"] = [entry]
        if finding.open:
            expression += ", attention = :attention"
            values[":attention"] = ATTENTION
        record = audit.record(
            key, now, entry["at"], audit.Kind.FINDING, by=self._actor, status=status, note=note,
            finding_id=finding.id, after={"finding": finding_item(finding)},
        )  # fmt: skip
        answer = conditional(
            self._write,
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
        if not isinstance(answer, Refused):
            return True
        if answer.item is None:
            raise StaleWrite(f"{key} vanished")
        self._seen_again(key, finding, answer.item.get("findings", ()))
        return False

    def _seen_again(self, key: str, finding: Finding, recorded: Any) -> None:
        """The same discrepancy seen again: count it, say when, keep what is reported now (one finding,
        never another). Open or acknowledged stays as it is: a person already owns it."""
        index = next((i for i, f in enumerate(recorded) if f.get("id") == finding.id), None)
        if index is None:  # the id is in finding_ids but not in the list: nothing to update
            return
        # Refused: the list moved meanwhile (another sighting or an acknowledgement): this sighting is
        # not counted, and the next run's is.
        conditional(
            self._table.update_item,
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
        inline = self._inline(stored, len(entries))
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
        ids = ", ".join(finding_id for finding_id, _ in notes)
        conditional(
            self._write,
            "Update",
            {
                "Key": {"pk": stored.key},
                "UpdateExpression": expression,
                "ConditionExpression": " AND ".join(conditions),
                "ExpressionAttributeNames": {"#status": "status", "#open": "open"},
                "ExpressionAttributeValues": values,
            },
            record,
            refused=StaleWrite(f"{stored.key}: finding {ids} or the application moved"),
        )
        history = (*stored.history, *(Transition.from_item(entry) for entry in entries)) if inline else stored.history
        return replace(stored, findings=tuple(findings), history=history)
