"""The operations desk's list: its filters (ListQuery) and an operator's reach (Reach), the listing
indexes' attributes written with every application, and a page read through them with its cursor.

The listing indexes (template.yaml, GSIs "list-*"): each key is a value and a shard of the
application's key, so no partition holds every application (docs/architecture.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from fapiao_hub.domain.china_time import CHINA_TIME
from fapiao_hub.domain.models import Application, Status
from fapiao_hub.infra.store.base import StoreBase, iso
from fapiao_hub.infra.store.errors import InvalidCursor

LIST_SHARDS = 4
# A list page reads at most this many times its size from one partition where filters drop items.
LIST_READ_FACTOR = 4
# What every listing index projects (template.yaml): enough for a list row without reading the item.
LISTED_ATTRIBUTES = (
    "source_system", "open_apply_code", "status", "company_code", "seller_tax_number", "buyer_name", "channel",
    "request_number", "invoice_type", "direction", "amount", "tax", "updated_at", "reason", "findings",
)  # fmt: skip


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


class Listing(StoreBase):
    """The operations desk's pages of applications."""

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
