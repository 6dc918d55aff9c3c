"""Dispatch: the state machine that takes a stored application to its outcome.

Each step reads the application and moves it on: send it (an attempt), apply the channel's answer,
ask about an outcome that is unknown, wait (a queue message or the poller brings it back), close it.
What an issued result writes is outcomes.py's; which channel, routing.py's; a void's request,
voids.py's; invoice files, result_files.py's; pushed results arrive through callbacks.py.

Ports (store, queue, channels, files, events) are passed in, so unit tests run it with fakes or
moto alike; it does no I/O of its own. Intake's use case is fapiao_hub.usecases.intake; the
poller's fapiao_hub.usecases.polling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from aws_lambda_powertools import Logger

from fapiao_hub.channels.base import Channel
from fapiao_hub.domain import logkeys
from fapiao_hub.domain.models import Finding, Status
from fapiao_hub.domain.results import Accepted, Issued, NotFound, NotSent, Rejected, Unknown
from fapiao_hub.infra import events
from fapiao_hub.infra.events import EventPublisher
from fapiao_hub.infra.files import FileStore, LinkedFiles
from fapiao_hub.infra.queues import DispatchQueue
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.errors import IllegalTransition, StaleWrite
from fapiao_hub.infra.store.records import StoredApplication
from fapiao_hub.usecases import health
from fapiao_hub.usecases.health import ChannelHealth, Gate, Verdict
from fapiao_hub.usecases.outcomes import AFTER_OUTCOME, REVIEW, Outcomes, application_event, status_of
from fapiao_hub.usecases.result_files import ResultFiles
from fapiao_hub.usecases.routing import ChannelDirectory, ChannelOrder, Held, Router
from fapiao_hub.usecases.voids import VoidSender

logger = Logger(child=True)


@dataclass(frozen=True)
class DispatchPolicy:
    # A DISPATCHING lease outlives any attempt: the dispatch function's timeout is 30 s.
    lease_seconds: int = 60
    # Waits after a request that never left (NotSent), by attempt.
    retry_delays: tuple[int, ...] = (5, 15, 30, 60, 120, 300, 600)
    max_attempts: int = 10
    # An application still open this long after it was received is STUCK (alarm; a person looks).
    deadline_seconds: int = 24 * 3600
    # Waits between queries while a channel is working on an application (SUBMITTED).
    poll_intervals: tuple[int, ...] = (10, 30, 60, 120, 300, 600)
    # A STUCK application of a channel that can be queried is still asked this often, so a late
    # result is recorded (no dead ends; docs/operations.md).
    stuck_poll_seconds: int = 3600


class Dispatcher:
    """Sends an application to its channel at most once per request number, and records the outcome.

    Every step is a conditional write on the status and version it read, so any number of
    dispatchers (duplicate SQS deliveries, retries, a crashed one's successor) can run the same
    application: exactly one wins each step and the others do nothing.
    """

    def __init__(
        self,
        store: ApplicationStore,
        queue: DispatchQueue,
        events: EventPublisher,
        channels: ChannelDirectory,
        files: FileStore,
        *,
        policy: DispatchPolicy | None = None,
        clock: Callable[[], float] = time.time,
        health: ChannelHealth | None = None,
        channel_order: ChannelOrder | None = None,
    ):
        self._health = health
        self._store = store
        self._queue = queue
        self._files = files
        self._events = events
        self._channels = channels
        self._policy = policy or DispatchPolicy()
        self._clock = clock
        self._router = Router(channels, health, channel_order)
        # Each channel's file hosts are the directory's (a test's directory may name none: no host).
        linked = LinkedFiles(getattr(channels, "fetch_policy", None))
        self._result_files = ResultFiles(store, files, linked, self.later)
        # Also the operator's: a result vouched for, reported invoices accepted (resolutions.py).
        self.outcomes = Outcomes(store, events, files, self._result_files, self, clock=clock)
        self._voids = VoidSender(store, channels, self)

    # ------------------------------------------------------------------ entry point
    def dispatch(self, source_system: str, open_apply_code: str, *, claimed_until: int | None = None) -> str:
        """Advance one application as far as it can go now; says what happened (for logs and tests).

        ``claimed_until``: the poller claimed it (Poller.run); while its ``next_poll_at`` still holds
        the claim, it is due now. Raises only for infrastructure failures (the queue retries).
        """
        stored = self._store.get(source_system, open_apply_code)
        if stored is None:
            logger.error("dispatch request for an unknown application")
            return "missing"
        logkeys.name_request(stored.sent_request_number)  # the dispatch function named the application only
        if stored.pending_event:
            self.publish(stored)
        now = int(self._clock())
        if claimed_until is not None and stored.next_poll_at == claimed_until:
            stored = replace(stored, next_poll_at=now, claim=claimed_until)  # the claim stands for "due now"
        status = stored.status
        leased = status is Status.DISPATCHING and (stored.lease_until or 0) > now
        if status.is_open and not leased and self._past_deadline(stored, now):
            hours = self._policy.deadline_seconds / 3600
            # An expired DISPATCHING lease: that attempt may have reached the channel (not "never sent").
            return self.finish(
                stored, Status.STUCK, f"still {status.value} {hours:g} h after it was received; needs a person",
                events.EventType.APPLICATION_STUCK, {"uncertain": True} if status is Status.DISPATCHING else None,
            )  # fmt: skip
        if status is Status.DISPATCHING:
            if leased:
                return "leased"
            # The holder died or overran: its request may have reached the channel. The quiet
            # period counts from when that attempt began.
            began = stored.lease_until - self._policy.lease_seconds if stored.lease_until else now
            quiet_until = began + self._channels.quiet_period(stored.channel) if stored.channel else now
            try:
                stored = self._store.transition(
                    stored,
                    Status.UNKNOWN,
                    note="dispatch lease expired: the earlier attempt may have reached the channel",
                    changes={"reason": "dispatch attempt interrupted", "uncertain": True},
                    next_poll_at=max(now, quiet_until),
                )
            except StaleWrite:
                return "lost race"
            status = Status.UNKNOWN
        if status in (Status.RECEIVED, Status.RETRY_WAIT):
            if status is Status.RETRY_WAIT and (stored.next_poll_at or 0) > now:
                return self.later(stored, stored.next_poll_at - now)
            return self._attempt(stored)
        if status is Status.UNKNOWN:
            return self._resolve_unknown(stored, now)
        if status is Status.VOIDING and stored.void is not None and not stored.void.sent:
            return self._voids.send(stored)
        if status in (Status.SUBMITTED, Status.VOIDING, Status.STUCK):
            return self._ask(stored, now)  # STUCK: only while it is in due work (a queryable channel)
        if status is Status.ISSUED and stored.files_pending:
            return self._result_files.fetch_pending(stored)
        return "nothing to do"  # outcomes

    def apply_result(self, stored: StoredApplication, outcome: object, channel: Channel) -> str:
        """A result the channel pushed (callback): applied like the answer to a query, except a rejection
        while an earlier attempt's outcome is unknown (_doubted_rejection)."""
        doubted = stored.uncertain or stored.status is Status.UNKNOWN
        if isinstance(outcome, Rejected) and doubted and stored.status not in AFTER_OUTCOME:
            return self._doubted_rejection(stored, outcome, channel)
        return self._apply(stored, outcome, channel, queried=True, fetch_files=False, source="callback")

    def _doubted_rejection(self, stored: StoredApplication, rejected: Rejected, channel: Channel) -> str:
        """A pushed rejection for an application whose earlier attempt's outcome is unknown: that attempt
        may have issued an invoice, and REJECTED frees the business system to send it again. So it is
        believed only as a query's answer is: the channel is asked (UNKNOWN, then _resolve_unknown's
        query decides); a channel that cannot be asked leaves it to a person (MANUAL_REVIEW)."""
        name = stored.channel or channel.name
        text = f"{name} pushed a rejection: {rejected.described}"
        doubt = "an earlier attempt's outcome is unknown, so an invoice may exist"
        answerable = (Status.SUBMITTED, Status.DISPATCHING, Status.UNKNOWN)
        if stored.status in answerable and channel.can_query:
            note = f"{text}; not believed yet ({doubt}): asking {name}"
            if stored.status is Status.UNKNOWN:
                self._store.note(stored, note)  # its query is scheduled already
                return "asking"
            quiet = self._channels.quiet_period(name)
            moved = self.move(stored, Status.UNKNOWN, note, {"reason": text}, int(self._clock()) + quiet)
            return moved if moved in ("lost race", "ignored") else self.later(stored, quiet, "asking")
        if stored.status in answerable:
            return self.finish(
                stored, Status.MANUAL_REVIEW,
                f"{text}, but {doubt} and {name} cannot be queried: a person confirms that no invoice was issued "
                "before the application may be sent again",
                REVIEW,
            )  # fmt: skip
        # Already with a person (STUCK, MANUAL_REVIEW) or waiting to be sent: kept on its history for them.
        self._store.note(stored, f"{text}; not believed ({doubt}): a person decides")
        return "noted"

    def _past_deadline(self, stored: StoredApplication, now: int) -> bool:
        # An operator's requeue (operations.py) starts the deadline again; a void's counts from its request.
        began = max(stored.created_epoch or 0, stored.requeued_epoch or 0)
        if stored.status is Status.VOIDING and stored.void is not None and stored.void.requested_epoch is not None:
            # A requeue of a stuck void starts its deadline again too.
            began = max(stored.void.requested_epoch, stored.requeued_epoch or 0)
        return began > 0 and now >= began + self._policy.deadline_seconds

    def _ask(self, stored: StoredApplication, now: int) -> str:
        """A channel is working on it: query where the channel can be asked, else wait for its push."""
        if (stored.next_poll_at or 0) > now:
            return "waiting"
        _, channel = self._router.current(stored)
        if channel is None or not channel.can_query:
            return self._reschedule(stored, now)
        return self._poll(stored, channel)

    def _poll(self, stored: StoredApplication, channel: Channel) -> str:
        """Ask the channel about the application and apply its answer."""
        outcome = channel.query(stored.application, stored.sent_request_number)
        return self._apply(stored, outcome, channel, queried=True, source="poll")

    def _reschedule(self, stored: StoredApplication, now: int) -> str:
        """Ask again later, each time a little later (poll_intervals); the poller brings it back."""
        intervals = self._policy.poll_intervals
        wait = intervals[min(stored.polls, len(intervals) - 1)]
        if stored.status is Status.STUCK:
            wait = self._policy.stuck_poll_seconds
        try:
            self._store.reschedule(stored, next_poll_at=now + wait, polls=stored.polls + 1)
        except StaleWrite:
            return "lost race"
        return "waiting"

    # ------------------------------------------------------------------ steps
    def _attempt(self, stored: StoredApplication) -> str:
        application = stored.application
        name, channel = self._router.current(stored)
        if channel is None:
            reason = (
                f"channel {name!r} is not configured"
                if name
                else f"no channel routes seller {application.seller.tax_number or application.company_code}"
            )
            return self.finish(stored, Status.REJECTED, reason, events.EventType.APPLICATION_REJECTED)
        request_number = stored.sent_request_number
        now = int(self._clock())
        route = self._router.admit(stored, name, channel, now)
        if isinstance(route, Held):
            return self._wait_for_channel(stored, route.gate, now)
        name, channel, gate, failed_over_from = route.name, route.channel, route.gate, route.failed_over_from
        note = f"sending to {name} as {request_number} (attempt {stored.attempts + 1})"
        if failed_over_from:
            note = f"failing over from {failed_over_from} (circuit open, no request ever left the hub): {note}"
        elif gate is not None and gate.probe:
            note += f": probing {name}, whose circuit is open"
        changes: dict[str, object] = {
            "lease_until": now + self._policy.lease_seconds,
            "attempts": stored.attempts + 1,
            "request_number": request_number,
            "channel": name,
        }
        if failed_over_from:
            changes["failed_over_from"] = failed_over_from
        try:
            claimed = self._store.transition(
                stored, Status.DISPATCHING, note=note, changes=changes, next_poll_at=now + self._policy.lease_seconds
            )
        except StaleWrite:
            if gate is not None and self._health is not None:
                self._health.abandon(gate)
            return "lost race"  # another dispatcher claimed it: that one sends, this one does not
        if failed_over_from:
            claimed = claimed.failing_over_from(failed_over_from)
        try:
            outcome = channel.issue(application, request_number)
        except Exception as error:  # a channel bug after the request may have left: not a failure
            logger.exception("channel raised")
            outcome = Unknown(f"channel {name} raised {type(error).__name__}")
        verdict = self._health.record(gate, outcome, int(self._clock())) if self._health and gate else Verdict()
        result = self._apply(claimed, outcome, channel, circuit_open_until=verdict.open_until)
        if verdict.opened is not None:
            health.announce_opening(self._events, verdict, outcome)
            return "circuit opened"  # the step's metric (Dispatch.circuit_opened) raises the alarm
        return result

    def _wait_for_channel(self, stored: StoredApplication, gate: Gate, now: int) -> str:
        """Held by an open circuit: due again at the cool-down's end, status and attempts unchanged."""
        until, reason = health.hold(gate, now)
        try:
            self._store.wait_for_channel(stored, next_poll_at=until, reason=reason)
        except StaleWrite:
            return "lost race"
        return self.later(replace(stored, claim=None), until - now, "circuit open")

    def _resolve_unknown(self, stored: StoredApplication, now: int) -> str:
        """Never a fresh submission: query, or the same number again where the channel de-duplicates."""
        name, channel = self._router.current(stored)
        if channel is None:
            return self.finish(stored, Status.MANUAL_REVIEW, f"outcome unknown and channel {name!r} is gone", REVIEW)
        if (stored.next_poll_at or 0) > now:
            return self.later(stored, stored.next_poll_at - now)
        if channel.can_query:
            return self._poll(stored, channel)
        if channel.dedupes_request_number:
            return self._attempt(stored)
        return self._unanswerable(stored, name, stored.reason)

    def _unanswerable(
        self, stored: StoredApplication, name: str, reason: str | None, changes: dict[str, object] | None = None
    ) -> str:
        """An outcome unknown at a channel that can neither be asked nor sent the same number again: a person's."""
        text = f"outcome unknown ({reason}); {name} cannot be queried and does not de-duplicate"
        return self.finish(stored, Status.MANUAL_REVIEW, text, REVIEW, changes)

    def _apply(
        self,
        stored: StoredApplication,
        outcome: object,
        channel: Channel,
        *,
        queried: bool = False,
        fetch_files: bool = True,
        source: str = "dispatch",
        circuit_open_until: int | None = None,
    ) -> str:
        now = int(self._clock())
        name = stored.channel or channel.name
        # An outcome stands: a later refusal, "not found" or "in progress" changes nothing.
        settled = stored.status in AFTER_OUTCOME
        waiting = stored.status in (Status.SUBMITTED, Status.VOIDING, Status.STUCK)
        match outcome:
            case Issued(invoices=invoices) if (
                stored.status in (Status.VOIDING, Status.STUCK)  # STUCK: a void past its deadline
                and stored.void is not None
                and status_of(invoices) is Status.ISSUED
            ):
                return self._reschedule(stored, now)  # the void is not reported yet: keep asking
            case Issued(invoices=invoices, duplicate=duplicate, raw=raw):
                note = f"issued by {name}" + (" (duplicate answer: the first result)" if duplicate else "")
                return self.outcomes.issued(stored, invoices, note, fetch_files=fetch_files, source=source, raw=raw)
            case _ if settled and stored.status is not Status.VOIDING:
                return "already issued"  # an older state never overwrites a newer one
            case Accepted(channel_ref=ref):
                if waiting:
                    return self._reschedule(stored, now)
                first_wait = self._policy.poll_intervals[0]
                return self.move(
                    stored, Status.SUBMITTED, f"accepted by {name}", {"channel_ref": ref} if ref else {},
                    now + first_wait,
                )  # fmt: skip
            case NotFound() | NotSent() | Unknown() if waiting:
                return self._reschedule(stored, now)  # keep asking until the deadline
            case Rejected() as rejected:
                text = f"{name} rejected it: {rejected.described}"
                if stored.uncertain and not queried:
                    # A re-send was refused, but the attempt whose answer was lost may have issued
                    # the invoice: not proof of anything. Ask again; a person decides in the end.
                    if stored.attempts >= self._policy.max_attempts:
                        return self.finish(
                            stored, Status.MANUAL_REVIEW, f"{text}, but an earlier attempt's outcome is unknown",
                            REVIEW,
                        )  # fmt: skip
                    return self._move_and_wait(
                        stored, Status.UNKNOWN, f"{text} on a re-send; an earlier outcome is unknown, asking again",
                        {"reason": text}, now, self._channels.quiet_period(name),
                    )  # fmt: skip
                return self.finish(stored, Status.REJECTED, text, events.EventType.APPLICATION_REJECTED)
            case NotFound() if queried:
                # The channel never received it; after the quiet period the same number may go again.
                if stored.status is Status.UNKNOWN:
                    return self._attempt(stored)
                return "nothing to do"
            case NotSent(reason=reason):
                if stored.status is not Status.DISPATCHING:
                    return self.later(stored, self._policy.retry_delays[0])  # a query that did not leave
                # Counted: the proof that this application never reached a channel (failover, health.py).
                unsent = {"unsent_attempts": stored.unsent_attempts + 1}
                if circuit_open_until is not None:
                    # The channel is down, not this application: wait for the circuit, never STUCK for it.
                    delay = max(circuit_open_until - now, 1)
                    return self._move_and_wait(
                        stored, Status.RETRY_WAIT,
                        f"not sent ({reason}); {name}'s circuit is open, next try in {delay}s", unsent, now, delay,
                    )  # fmt: skip
                if stored.attempts >= self._policy.max_attempts:
                    return self.finish(
                        stored, Status.STUCK, f"{name} unreachable after {stored.attempts} attempts: {reason}",
                        events.EventType.APPLICATION_STUCK,
                    )  # fmt: skip
                delay = self._policy.retry_delays[min(stored.attempts, len(self._policy.retry_delays)) - 1]
                return self._move_and_wait(
                    stored, Status.RETRY_WAIT, f"not sent ({reason}); retry in {delay}s", unsent, now, delay
                )
            case Unknown(reason=reason, raw=raw):
                changes: dict[str, object] = {"reason": reason, "uncertain": True}
                if raw is not None:
                    changes["raw_answer"] = self._files.put_raw_answer(name, stored.sent_request_number, str(now), raw)
                if not (channel.can_query or channel.dedupes_request_number):
                    return self._unanswerable(stored, name, reason, changes)
                quiet = self._channels.quiet_period(name)
                if stored.status is Status.UNKNOWN:
                    return self.later(stored, quiet)
                return self._move_and_wait(
                    stored, Status.UNKNOWN, f"outcome unknown: {reason}; asking again in {quiet}s", changes, now, quiet
                )
        raise TypeError(f"not a channel outcome: {outcome!r}")

    # ------------------------------------------------------------------ closing and moving
    def finish(
        self,
        stored: StoredApplication,
        to: Status,
        reason: str,
        event_type: events.EventType,
        changes: dict[str, object] | None = None,
        findings: list[Finding] | None = None,
    ) -> str:
        try:
            self.close(stored, to, reason, event_type, changes=changes, findings=findings)
        except StaleWrite:
            return "lost race"
        except IllegalTransition:
            if to is stored.status:
                return "ignored"  # already there, for this very reason or another: nothing new
            self.outcomes.not_applied(stored, to, reason)
            return "not applied"
        return to.value.lower()

    def close(
        self,
        stored: StoredApplication,
        to: Status,
        reason: str,
        event_type: events.EventType,
        *,
        changes: dict[str, object] | None = None,
        note: str | None = None,
        findings: list[Finding] | None = None,
    ) -> StoredApplication:
        """Move to an outcome (or a state that needs a person) and announce it; raises StaleWrite or
        IllegalTransition (operations.py answers them 409). ``note``: the history entry, if not the reason."""
        logger.warning("application %s", to.value, extra={"reason": reason[:300]})  # why it was refused, or stopped
        application = stored.application
        event = application_event(stored, event_type, to, reason=reason)
        done = self._store.transition(
            stored, to, note=note or reason, changes={"reason": reason, **(changes or {})}, pending_event=event,
            next_poll_at=self._stuck_poll_at(stored) if to is Status.STUCK else None, findings=findings,
        )  # fmt: skip
        reserved_on = stored.red_reserved_on
        if to in (Status.REJECTED, Status.CANCELLED) and reserved_on:
            # Nothing was reversed: what it held of the blue invoice is free again.
            self._store.release_red(str(reserved_on), -application.amount, -application.tax)
        self.publish(done)
        return done

    def _stuck_poll_at(self, stored: StoredApplication) -> int | None:
        """A STUCK application stays in due work, slowly, where its channel can answer a query."""
        _, channel = self._channels.channel_for(stored.application, stored.channel)
        if channel is None or not channel.can_query:
            return None
        return int(self._clock()) + self._policy.stuck_poll_seconds

    # ------------------------------------------------------------------ operator actions (operations.py)
    def query_now(self, stored: StoredApplication, channel: Channel) -> tuple[object, str]:
        """Ask the channel now and apply the answer as a poll would: (the answer, what happened)."""
        outcome = channel.query(stored.application, stored.sent_request_number)
        return outcome, self.apply_answer(stored, outcome, channel)

    def apply_answer(self, stored: StoredApplication, outcome: object, channel: Channel) -> str:
        """A channel's answer to an operator's query, applied as a poll's."""
        return self._apply(stored, outcome, channel, queried=True, source="operator")

    # ------------------------------------------------------------------ the steps' shared moves
    @property
    def first_poll_seconds(self) -> int:
        return self._policy.poll_intervals[0]

    @property
    def first_retry_seconds(self) -> int:
        return self._policy.retry_delays[0]

    def move(
        self, stored: StoredApplication, to: Status, note: str, changes: dict[str, object], next_poll_at: int
    ) -> str:
        try:
            self._store.transition(stored, to, note=note, changes=changes, next_poll_at=next_poll_at)
        except StaleWrite:
            return "lost race"
        except IllegalTransition:
            # A late, out-of-order report (e.g. "in progress" after an outcome): nothing to change.
            logger.info("ignored a report that would move %s back to %s", stored.status.value, to.value)
            return "ignored"
        return to.value.lower()

    def _move_and_wait(
        self, stored: StoredApplication, to: Status, note: str, changes: dict[str, object], now: int, delay: int
    ) -> str:
        """Move, due again after ``delay``, and come back then (unless another dispatcher moved it first)."""
        moved = self.move(stored, to, note, changes, now + delay)
        return moved if moved == "lost race" else self.later(stored, delay, moved)

    def later(self, stored: StoredApplication, delay: int, result: str = "waiting") -> str:
        """Come back to this application after ``delay`` seconds (longer waits: the poller's).

        A step that acted under the poller's claim and wrote nothing leaves the claim in place: the
        message carries it on, so that it finds the application due then (not at the claim's end).
        """
        application = stored.application
        self._queue.request_dispatch(
            application.source_system, application.open_apply_code, delay_seconds=delay, claimed_until=stored.claim
        )
        return result

    def publish(self, stored: StoredApplication) -> None:
        """Publish the outcome's event; if EventBridge fails it stays pending for the next delivery."""
        if not stored.pending_event:
            return
        self._events.publish(stored.pending_event)  # raises PublishFailed: the queue retries the message
        self._store.clear_pending_event(stored)
