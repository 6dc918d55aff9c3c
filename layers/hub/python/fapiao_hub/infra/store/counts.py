"""The operations desk's counts: applications needing a person by status, in a status, settled since a
moment, and open findings; each through an index (never a scan), within an operator's reach.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key

from fapiao_hub.domain.china_time import china_day
from fapiao_hub.domain.models import Status
from fapiao_hub.infra.store.base import ATTENTION, StoreBase, batch_get, iso, pages, utc_now
from fapiao_hub.infra.store.listing import LIST_SHARDS, Reach
from fapiao_hub.infra.store.settled import SETTLED_SHARDS


class Counts(StoreBase):
    """The operations desk's counts."""

    def attention_counts(self, limit: int = 10000, reach: Reach | None = None) -> dict[str, int]:
        """How many applications need a person, by status, through the sparse "attention" index (never
        a scan: it holds only those). An application there whose status needs no person is held by an
        open finding: counted under "FINDINGS". Small pages of keys and the status only; with
        ``reach``, only the applications within it."""
        counts: dict[str, int] = {}
        seen = 0
        for answer in pages(
            self._table.query,
            Limit=1000,
            IndexName="attention",
            KeyConditionExpression=Key("attention").eq(ATTENTION),
            ProjectionExpression="pk, source_system, #status",
            ExpressionAttributeNames={"#status": "status"},
        ):
            for item in self._within(answer.get("Items", []), reach):
                status = Status(item["status"])
                # VOIDING there: a void to be done at the channel by a person (or an open finding).
                name = status.value if status.needs_person or status is Status.VOIDING else "FINDINGS"
                counts[name] = counts.get(name, 0) + 1
                seen += 1
            if seen >= limit:
                break
        return counts

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
            total += sum(int(answer.get("Count", 0)) for answer in pages(self._table.query, **kwargs))
        return total

    def settled_since(self, since: datetime, reach: Reach | None = None) -> dict[str, int]:
        """Applications that reached a state that is not open since ``since``, by status (the "settled"
        index); with ``reach``, only those within it."""
        entries: list[dict[str, Any]] = []
        day, last = china_day(since), china_day(utc_now())
        while day <= last:
            for shard in range(SETTLED_SHARDS):
                for answer in pages(
                    self._table.query,
                    IndexName="settled",
                    KeyConditionExpression=Key("settled_day").eq(f"{day.isoformat()}#{shard}")
                    & Key("settled_at").gte(iso(since)),
                    ProjectionExpression="pk, source_system, #status",
                    ExpressionAttributeNames={"#status": "status"},
                ):
                    entries += answer.get("Items", [])
            day += timedelta(days=1)
        counts: dict[str, int] = {}
        for item in self._within(entries, reach):
            counts[item["status"]] = counts.get(item["status"], 0) + 1
        return counts

    def count_open_findings(self, reach: Reach | None = None) -> int:
        """Open findings on the applications that need a person (the sparse "attention" index); with
        ``reach``, only on those within it."""
        entries: list[dict[str, Any]] = []
        for answer in pages(
            self._table.query,
            IndexName="attention",
            KeyConditionExpression=Key("attention").eq(ATTENTION),
            ProjectionExpression="pk, source_system",
        ):
            entries += answer.get("Items", [])
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
        return batch_get(self._table.meta.client, self._table.name, keys, ProjectionExpression=projection)
