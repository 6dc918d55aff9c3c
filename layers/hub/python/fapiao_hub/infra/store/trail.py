"""An application's audit trail as read (every record, paged), and an operator action's own record.

The records themselves are shaped by infra/history.py and written with each change (StoreBase._write);
this part reads them back and adds the one record no change carries: the operator action's.
"""

from __future__ import annotations

from typing import Any

from fapiao_hub.infra import history as audit
from fapiao_hub.infra.store.base import HISTORY_INLINE_LIMIT, StoreBase, iso, utc_now
from fapiao_hub.infra.store.records import StoredApplication


class Trail(StoreBase):
    """The history table (template.yaml HistoryTable), read and appended to."""

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

