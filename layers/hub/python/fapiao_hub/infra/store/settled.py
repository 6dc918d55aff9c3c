"""The reconciliation's reads: applications settled in a window (GSI "settled") and those waiting for
a person (GSI "attention"), as their indexes project them; and the "settled" index's partitions.

GSI "settled" (template.yaml): applications that reached a state that is not open, filed under the
China day of that transition and a shard, so that reconciliation reads a window in a few partitions
and one busy day is not one hot partition.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key

from fapiao_hub.domain.china_time import CHINA_TIME
from fapiao_hub.domain.models import Status
from fapiao_hub.infra.store.base import ATTENTION, StoreBase, iso, pages
from fapiao_hub.infra.store.records import IndexedApplication

SETTLED_SHARDS = 4


def settled_partition(pk: str, day: date) -> str:
    """The "settled" index partition of an application settled on ``day`` (China time)."""
    shard = int.from_bytes(hashlib.sha256(pk.encode()).digest()[:2], "big") % SETTLED_SHARDS
    return f"{day.isoformat()}#{shard}"


class Settled(StoreBase):
    """What reconciliation compares with the channels' reports."""

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
        return [
            IndexedApplication(i["source_system"], i["open_apply_code"], Status(i["status"]), i.get("channel"))
            for answer in pages(
                self._table.query,
                IndexName=index,
                KeyConditionExpression=condition,
                ProjectionExpression="source_system, open_apply_code, #status, channel",
                ExpressionAttributeNames={"#status": "status"},
            )
            for i in answer.get("Items", [])
        ]
