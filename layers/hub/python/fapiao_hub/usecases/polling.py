"""The poller's use case: hand due applications to the dispatch queue, each claimed first."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fapiao_hub.domain.models import NEEDS_PERSON_STATUSES
from fapiao_hub.infra.queues import DispatchQueue, DispatchRequest
from fapiao_hub.infra.store import ApplicationStore

POLL_CLAIM_SECONDS = 300  # the default of config.Settings.poll_claim_seconds


@dataclass(frozen=True)
class PollReport:
    due: int
    queued: int


# The backlog metrics (template.yaml: one alarm each while above zero; docs/operations.md).
BACKLOG_METRICS = {
    **{status.value: f"Backlog.{status.value}" for status in NEEDS_PERSON_STATUSES},
    "VOIDING": "Backlog.VOIDING",  # voids to be done at the channel by a person
    "FINDINGS": "Backlog.OPEN_FINDINGS",
}


def backlog(store: ApplicationStore) -> dict[str, int]:
    """Applications waiting for a person, by metric name (every one present, zeros included).

    Counts what waits, however it got there (dispatch, callback, poll, reconciliation), so an alarm
    lasts as long as the backlog does. ``Backlog.OPEN_FINDINGS``: applications held only by an open
    finding (one in a needs-a-person status is counted under its status)."""
    counts = store.attention_counts()
    return {metric: counts.get(name, 0) for name, metric in BACKLOG_METRICS.items()}


class Poller:
    """Finds due applications through the sparse due-work index and hands them to the dispatch queue.

    The dispatch function advances each one (query a channel, re-send after a quiet period,
    re-queue a stale RECEIVED one, mark STUCK past the deadline): one code path for every step, and
    a burst of due work fans out over as many dispatchers as the queue's event source allows. Reads
    grow with due work, never with the table.
    """

    def __init__(
        self,
        store: ApplicationStore,
        queue: DispatchQueue,
        *,
        clock: Callable[[], float] = time.time,
        claim_seconds: int = POLL_CLAIM_SECONDS,
    ):
        self._store = store
        self._queue = queue
        self._clock = clock
        self._claim_seconds = claim_seconds

    def run(self, *, limit: int = 5000, time_left_ms: Callable[[], int] | None = None) -> PollReport:
        """One scheduled run: at most ``limit`` applications, stopping well before the deadline.

        Each due application is claimed before it is queued (its ``next_poll_at`` moved on by
        ``claim_seconds``, conditional on the value read): while the dispatch queue has a backlog,
        the next runs do not queue it again, and a lost message only delays it by the claim.
        """
        now = int(self._clock())
        due = self._store.due(now, limit)
        until = now + self._claim_seconds
        queued = 0
        for start in range(0, len(due), 10):
            if time_left_ms is not None and time_left_ms() < 5000:
                break  # the rest stays due: the next run takes it
            claimed = [
                DispatchRequest(source_system=system, open_apply_code=code, claimed_until=until)
                for system, code, seen in due[start : start + 10]
                if self._store.claim_due(system, code, seen=seen, until=until)
            ]
            if claimed:
                self._queue.request_dispatch_batch(claimed)
            queued += len(claimed)
        return PollReport(due=len(due), queued=queued)
