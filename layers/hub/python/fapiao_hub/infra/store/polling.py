"""Due work: the poller's reads of what is due and its claims, and an application's next look
(rescheduled, or waiting for its channel's circuit), none of them a transition.

The poller's sparse index (template.yaml, ApplicationsTable GSI "due-work"): only open applications
carry due_bucket, so a poller's query reads due work, never the whole table.
"""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Key

from fapiao_hub.domain.models import application_key
from fapiao_hub.infra.store.base import Refused, StoreBase, conditional
from fapiao_hub.infra.store.errors import StaleWrite
from fapiao_hub.infra.store.records import StoredApplication

DUE_BUCKET = "OPEN"


class DueWork(StoreBase):
    """The poller's index and an application's next poll."""

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
        while len(found) < limit:  # each page asks for no more than is still wanted
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
        answer = conditional(
            self._table.update_item,
            Key={"pk": application_key(source_system, open_apply_code)},
            UpdateExpression="SET next_poll_at = :until",
            ConditionExpression="next_poll_at = :seen AND attribute_exists(due_bucket)",
            ExpressionAttributeValues={":seen": seen, ":until": until},
        )
        return not isinstance(answer, Refused)

    def reschedule(self, stored: StoredApplication, *, next_poll_at: int, polls: int) -> None:
        """When to look at an application again (no transition, no history entry)."""
        self._due_again(stored, next_poll_at, "polls", polls)

    def wait_for_channel(self, stored: StoredApplication, *, next_poll_at: int, reason: str) -> None:
        """An application whose channel's circuit is open: due again then, status and attempts as they are."""
        self._due_again(stored, next_poll_at, "reason", reason)

    def _due_again(self, stored: StoredApplication, next_poll_at: int, name: str, value: Any) -> None:
        """Set ``next_poll_at`` and one more attribute, if the application is still as read; else StaleWrite."""
        conditional(
            self._table.update_item,
            refused=StaleWrite(stored.key),
            Key={"pk": stored.key},
            UpdateExpression=f"SET next_poll_at = :next, {name} = :{name}",
            ConditionExpression="#status = :status AND #version = :version",
            ExpressionAttributeNames={"#status": "status", "#version": "version"},
            ExpressionAttributeValues={
                ":next": next_poll_at, f":{name}": value, ":status": stored.status.value, ":version": stored.version,
            },
        )  # fmt: skip
