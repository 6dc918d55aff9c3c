"""China time (UTC+8): the day an invoice, a report or a settled-index partition belongs to.

China Standard Time is UTC+8 all year (no daylight saving since 1991), so a fixed offset is exact
and needs no time-zone database. Every date the hub derives from an instant is taken here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

CHINA_TIME = timezone(timedelta(hours=8))


def china_day(moment: datetime | str) -> date:
    """The date in China of an instant: an aware datetime, a naive one (taken as UTC) or ISO text (UTC 'Z')."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(CHINA_TIME).date()
