"""The audit trail's records: what one history record holds, and the cursor that pages through them.

Each status change, note, finding and operator action is its own record in the history table
(template.yaml HistoryTable: pk = application key, sk = time + "#" + a unique suffix), written in the
same transaction as the change it describes (store.ApplicationStore) and never rewritten or cut.
This module only shapes records and cursors; infra/store/ is what reads and writes them.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any

# A page of history as the GET answer and the ops detail show it (the cursor gives the next one).
DEFAULT_PAGE = 100
MAX_PAGE = 500


class Kind(StrEnum):
    RECEIVED = "received"
    TRANSITION = "transition"
    NOTE = "note"
    FINDING = "finding"
    FINDING_ACKNOWLEDGED = "finding-acknowledged"
    OPERATOR_ACTION = "operator-action"


class InvalidHistoryCursor(ValueError):
    """A history cursor that is not one this application's history handed out."""


def sort_key(moment: datetime) -> str:
    """Time first (records sort by it), then a suffix so that two records never share a key."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z") + "#" + uuid.uuid4().hex[:12]


def record(
    key: str,
    moment: datetime,
    at: str,
    kind: Kind,
    *,
    by: str,
    status: str,
    previous: str | None = None,
    note: str | None = None,
    reason: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One history record as stored (DynamoDB types; absent values left out)."""
    item: dict[str, Any] = {"pk": key, "sk": sort_key(moment), "at": at, "kind": kind.value, "by": by}
    item["status"] = status
    optional = {"previous": previous, "note": note, "reason": reason, **extra}
    item.update({k: storable(v) for k, v in optional.items() if v is not None})
    if before is not None:
        item["before"] = {k: storable(v) for k, v in before.items()}
    if after is not None:
        item["after"] = {k: storable(v) for k, v in after.items()}
    return item


def storable(value: Any) -> Any:
    """A value as a DynamoDB attribute: tuples and sets as lists, enums as their value, no floats."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list | set | frozenset):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): storable(v) for k, v in value.items()}
    if isinstance(value, float):
        return Decimal(str(value))
    return value


_STATUS_CHANGES = frozenset({Kind.RECEIVED.value, Kind.TRANSITION.value})
# What a business system's GET shows of an entry: the shape the application's own copy has.
_ENTRY_FIELDS = ("at", "status", "previous", "note", "kind")


def view(item: dict[str, Any]) -> dict[str, Any]:
    """A stored record as the ops detail shows it: an entry's fields (``kind`` "note" when it is not a
    status change, as in the application's own copy) plus who (``by``), ``record`` (its kind), why,
    before and after. Plain JSON values; the table's keys left out."""
    shown = {k: _plain(v) for k, v in item.items() if k not in ("pk", "sk", "kind")}
    if "kind" in item:
        shown["record"] = item["kind"]
        if item["kind"] not in _STATUS_CHANGES:
            shown["kind"] = "note"
    return shown


def full(shown: dict[str, Any]) -> dict[str, Any]:
    """What an operator sees of an entry (the ops detail): all of it, as ``view`` shaped it."""
    return shown


def entry(shown: dict[str, Any]) -> dict[str, Any]:
    """What a business system sees of an entry (the GET answer): when, status, the note; not who or the
    internal fields before and after."""
    return {k: shown[k] for k in _ENTRY_FIELDS if shown.get(k) is not None}


class PageRequestInvalid(ValueError):
    """A history paging parameter that is not one: ``field`` names it."""

    def __init__(self, field: str, why: str):
        super().__init__(f"{field}: {why}")
        self.field = field


def page_request(params: dict[str, str] | None) -> tuple[int, str | None, bool]:
    """(limit, cursor, newest first) from a GET's ``historyLimit``, ``historyCursor``, ``historyOrder``."""
    params = params or {}
    raw_limit = params.get("historyLimit") or str(DEFAULT_PAGE)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise PageRequestInvalid("historyLimit", f"a whole number from 1 to {MAX_PAGE}")
    order = params.get("historyOrder") or "oldest"
    if order not in ("oldest", "newest"):
        raise PageRequestInvalid("historyOrder", "oldest (the default) or newest")
    return int(raw_limit), params.get("historyCursor") or None, order == "newest"


def encode_cursor(key: str, sk: str, newest_first: bool) -> str:
    raw = json.dumps({"k": key, "s": sk, "n": newest_first}, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, key: str, newest_first: bool) -> str:
    """The sort key a page ends at; InvalidHistoryCursor if the cursor is another history's or order's."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        valid = raw["k"] == key and raw["n"] is newest_first and isinstance(raw["s"], str)
    except (ValueError, TypeError, KeyError):
        valid = False
    if not valid:
        raise InvalidHistoryCursor("not a cursor of this application's history in this order: start again without one")
    return raw["s"]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)  # money stays exact
    return value
