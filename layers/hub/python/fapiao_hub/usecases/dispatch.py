"""Dispatch and callbacks: what happens to an application once it is stored, with no I/O of its own.

Ports (store, queue, channels, files, events) are passed in, so unit tests run it with fakes or
moto alike. Intake's use case is fapiao_hub.usecases.intake; the poller's fapiao_hub.usecases.polling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Protocol

from aws_lambda_powertools import Logger

from fapiao_hub.channels.base import CallbackRejected, Channel
from fapiao_hub.channels.registry import ChannelRegistry
from fapiao_hub.domain import invoice_files, logkeys, verification
from fapiao_hub.domain.config import HubConfig
from fapiao_hub.domain.models import Application, Difference, Finding, FindingKind, Status, invoice_key
from fapiao_hub.domain.results import (
    Accepted,
    CallbackResult,
    InvoiceFile,
    InvoiceState,
    Issued,
    IssuedInvoice,
    NotFound,
    NotSent,
    Rejected,
    Unknown,
)
from fapiao_hub.infra import alarms, events, file_fetch
from fapiao_hub.infra.events import EventPublisher
from fapiao_hub.infra.files import FileStore, InvalidFile, decode_base64_strict
from fapiao_hub.infra.queues import DispatchQueue
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.base import iso, utc_now
from fapiao_hub.infra.store.errors import IllegalTransition, InvoiceNumberTaken, StaleWrite
from fapiao_hub.infra.store.records import StoredApplication, finding_item
from fapiao_hub.usecases import health
from fapiao_hub.usecases.callback_auth import authenticate_callback
from fapiao_hub.usecases.health import ChannelHealth, Gate, Verdict

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


class ChannelDirectory(Protocol):
    """Routing and channel construction (channels.registry in production, fakes in tests)."""

    def channel_for(self, application: Application, proposed: str | None) -> tuple[str | None, Channel | None]: ...

    def quiet_period(self, name: str) -> int: ...

    def channel(self, name: str) -> Channel | None: ...


# The channels an application may go to, in order of preference (failover: health.py).
ChannelOrder = Callable[[Application, str | None], list[str]]


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
        fetcher: Callable[[str], bytes] | None = None,
        health: ChannelHealth | None = None,
        channel_order: ChannelOrder | None = None,
    ):
        # A test's own fetcher (no policy); None: file_fetch under the channel's policy.
        self._fetcher = fetcher
        self._health = health
        self._channel_order = channel_order
        self._store = store
        self._queue = queue
        self._events = events
        self._channels = channels
        self._files = files
        self._policy = policy or DispatchPolicy()
        self._clock = clock

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
            self._publish(stored)
        now = int(self._clock())
        if claimed_until is not None and stored.next_poll_at == claimed_until:
            stored = replace(stored, next_poll_at=now, claim=claimed_until)  # the claim stands for "due now"
        status = stored.status
        leased = status is Status.DISPATCHING and (stored.lease_until or 0) > now
        if status.is_open and not leased and self._past_deadline(stored, now):
            hours = self._policy.deadline_seconds / 3600
            # An expired DISPATCHING lease: that attempt may have reached the channel (not "never sent").
            return self._finish(
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
                return self._later(stored, stored.next_poll_at - now)
            return self._attempt(stored)
        if status is Status.UNKNOWN:
            return self._resolve_unknown(stored, now)
        if status is Status.VOIDING and stored.extra.get("void_request") and not stored.extra.get("void_sent"):
            return self._send_void(stored)
        if status in (Status.SUBMITTED, Status.VOIDING, Status.STUCK):
            return self._ask(stored, now)  # STUCK: only while it is in due work (a queryable channel)
        if status is Status.ISSUED and stored.extra.get("files_pending"):
            return self._fetch_pending_files(stored)
        return "nothing to do"  # outcomes

    def apply_result(self, stored: StoredApplication, outcome: object, channel: Channel) -> str:
        """A result the channel pushed (callback): applied like the answer to a query, except a rejection
        while an earlier attempt's outcome is unknown (_doubted_rejection)."""
        doubted = stored.uncertain or stored.status is Status.UNKNOWN
        if isinstance(outcome, Rejected) and doubted and stored.status not in _AFTER_OUTCOME:
            return self._doubted_rejection(stored, outcome, channel)
        return self._apply(stored, outcome, channel, queried=True, fetch_files=False, source="callback")

    def _doubted_rejection(self, stored: StoredApplication, rejected: Rejected, channel: Channel) -> str:
        """A pushed rejection for an application whose earlier attempt's outcome is unknown: that attempt
        may have issued an invoice, and REJECTED frees the business system to send it again. So it is
        believed only as a query's answer is: the channel is asked (UNKNOWN, then _resolve_unknown's
        query decides); a channel that cannot be asked leaves it to a person (MANUAL_REVIEW)."""
        name = stored.channel or channel.name
        text = f"{name} pushed a rejection: {rejected.reason}" + (f" ({rejected.code})" if rejected.code else "")
        doubt = "an earlier attempt's outcome is unknown, so an invoice may exist"
        answerable = (Status.SUBMITTED, Status.DISPATCHING, Status.UNKNOWN)
        if stored.status in answerable and channel.can_query:
            note = f"{text}; not believed yet ({doubt}): asking {name}"
            if stored.status is Status.UNKNOWN:
                self._store.note(stored, note)  # its query is scheduled already
                return "asking"
            quiet = self._channels.quiet_period(name)
            moved = self._move(stored, Status.UNKNOWN, note, {"reason": text}, int(self._clock()) + quiet)
            return moved if moved in ("lost race", "ignored") else self._later(stored, quiet, "asking")
        if stored.status in answerable:
            return self._finish(
                stored, Status.MANUAL_REVIEW,
                f"{text}, but {doubt} and {name} cannot be queried: a person confirms that no invoice was issued "
                "before the application may be sent again",
                _REVIEW,
            )  # fmt: skip
        # Already with a person (STUCK, MANUAL_REVIEW) or waiting to be sent: kept on its history for them.
        self._store.note(stored, f"{text}; not believed ({doubt}): a person decides")
        return "noted"

    def _past_deadline(self, stored: StoredApplication, now: int) -> bool:
        # An operator's requeue (operations.py) starts the deadline again; a void's counts from its request.
        began = max(stored.created_epoch or 0, int(stored.extra.get("requeued_epoch") or 0))
        if stored.status is Status.VOIDING and stored.extra.get("void_requested_epoch") is not None:
            # A requeue of a stuck void starts its deadline again too.
            began = max(int(stored.extra["void_requested_epoch"]), int(stored.extra.get("requeued_epoch") or 0))
        return began > 0 and now >= began + self._policy.deadline_seconds

    def _send_void(self, stored: StoredApplication) -> str:
        """A void request (intake moved the application ISSUED -> VOIDING): to the channel that issued
        it, once; its result comes like an issue's, by query or push (VOIDING -> VOIDED)."""
        name, channel = self._channels.channel_for(stored.application, stored.channel)
        reason = str(stored.extra.get("void_reason") or "")
        void = getattr(channel, "void", None)
        if void is None and channel is not None and channel.capabilities.voids(stored.application.invoice_type):
            # The channel voids but has no call for it (the partner: seed 003): nothing is sent, and
            # the history says so. A person voids it at the channel; its report of the void, or an
            # operator's resolve-voided, ends it VOIDED.
            numbers = ", ".join(stored.invoice_keys) or "its invoice"
            asked = f"{name} is asked until it reports the void" if channel.can_query else f"{name} pushes the void"
            note = (
                f"to be voided at the channel by a person: {name} has no void call, nothing was sent. Void {numbers} "
                f"in {name}'s portal; {asked}, or record it with resolve-voided"
            )
            try:
                self._store.mark_void_sent(stored, note, by_person=True)
            except StaleWrite:
                return "lost race"
            return self._later(stored, self._policy.poll_intervals[0], "void by person")
        if void is None:
            return self._move(
                stored, Status.ISSUED, f"void not sent: channel {name!r} cannot void", {"void_sent": None}, 0
            )
        try:
            outcome = void(stored.application, stored.sent_request_number, reason)
        except Exception as error:  # the request may have left: ask the channel, as for an issue
            logger.exception("channel raised on void")
            outcome = Unknown(f"channel {name} raised {type(error).__name__}")
        match outcome:
            case Rejected(reason=why, code=code):
                text = f"{name} refused the void: {why}" + (f" ({code})" if code else "")
                return self._move(stored, Status.ISSUED, text, {"void_refused": text}, 0)
            case NotSent():
                return self._later(stored, self._policy.retry_delays[0])
            case _:  # Accepted, Issued, Unknown: the channel has (or may have) it; its reports decide
                try:
                    self._store.mark_void_sent(stored, f"void request sent to {name}")
                except StaleWrite:
                    return "lost race"
                return self._later(stored, self._policy.poll_intervals[0], "void sent")

    def _ask(self, stored: StoredApplication, now: int) -> str:
        """A channel is working on it: query where the channel can be asked, else wait for its push."""
        if (stored.next_poll_at or 0) > now:
            return "waiting"
        _, channel = self._route(stored)
        if channel is None or not channel.can_query:
            return self._reschedule(stored, now)
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
    def _route(self, stored: StoredApplication) -> tuple[str | None, Channel | None]:
        """The application's channel: routed, or, once it failed over, the one it went to for good."""
        if stored.extra.get("failed_over_from") and stored.channel:
            return stored.channel, self._channels.channel(stored.channel)
        return self._channels.channel_for(stored.application, stored.channel)

    def _attempt(self, stored: StoredApplication) -> str:
        application = stored.application
        name, channel = self._route(stored)
        if channel is None:
            reason = (
                f"channel {name!r} is not configured"
                if name
                else f"no channel routes seller {application.seller.tax_number or application.company_code}"
            )
            return self._finish(stored, Status.REJECTED, reason, events.EventType.APPLICATION_REJECTED)
        request_number = stored.sent_request_number
        now = int(self._clock())
        gate: Gate | None = None
        failed_over_from = None
        if self._health is not None:
            gate = self._health.admit(name, now)
            if not gate.admitted:
                moved = self._failover(stored, gate, now)
                if moved is None:
                    return self._wait_for_channel(stored, gate, now)
                failed_over_from = name
                name, channel, gate = moved
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
            claimed = replace(claimed, extra={**claimed.extra, "failed_over_from": failed_over_from})
        try:
            outcome = channel.issue(application, request_number)
        except Exception as error:  # a channel bug after the request may have left: not a failure
            logger.exception("channel raised")
            outcome = Unknown(f"channel {name} raised {type(error).__name__}")
        verdict = self._health.record(gate, outcome, int(self._clock())) if self._health and gate else Verdict()
        result = self._apply(claimed, outcome, channel, circuit_open_until=verdict.open_until)
        if verdict.opened is not None:
            self._announce_circuit(verdict, outcome)
            return "circuit opened"  # the step's metric (Dispatch.circuit_opened) raises the alarm
        return result

    # ------------------------------------------------------------------ channel health
    def _failover(self, stored: StoredApplication, gate: Gate, now: int) -> tuple[str, Channel, Gate] | None:
        """The next capable channel that will take it, only if no request for it ever reached a channel."""
        assert self._health is not None
        if self._channel_order is None or not self._health.may_fail_over(gate, now):
            return None
        unsent = int(stored.extra.get("unsent_attempts", 0))
        if stored.status not in (Status.RECEIVED, Status.RETRY_WAIT) or not health.never_reached(
            stored.attempts, unsent, stored.uncertain
        ):
            return None  # it may have reached its channel (DOMAIN.md section 6): it waits for that one
        order = self._channel_order(stored.application, stored.channel)
        after = order[order.index(gate.channel) + 1 :] if gate.channel in order else order
        for name in after:
            channel = self._channels.channel(name)
            if channel is None:
                continue
            other = self._health.admit(name, now)
            if other.admitted:
                return name, channel, other
        return None

    def _wait_for_channel(self, stored: StoredApplication, gate: Gate, now: int) -> str:
        """Held by an open circuit: due again at the cool-down's end, status and attempts unchanged."""
        until = max(gate.until or now, now + 1)
        reason = f"waiting for {gate.channel}: its circuit is open (requests kept failing); next try at {until}"
        try:
            self._store.wait_for_channel(stored, next_poll_at=until, reason=reason)
        except StaleWrite:
            return "lost race"
        return self._later(replace(stored, claim=None), until - now, "circuit open")

    def _announce_circuit(self, verdict: Verdict, outcome: object) -> None:
        """ChannelCircuitOpened, once per opening (the dispatcher whose write opened it)."""
        opened = verdict.opened
        assert opened is not None
        logger.warning("channel circuit opened", extra={"channel": opened.channel, "open_until": opened.open_until})
        event = events.channel_event(
            events.EventType.CHANNEL_CIRCUIT_OPENED,
            channel=opened.channel,
            opened_at=opened.opened_at,
            open_until=opened.open_until,
            failures=opened.failures,
            last_failure=getattr(outcome, "reason", type(outcome).__name__),
        )
        try:
            self._events.publish(event)
        except events.PublishFailed:
            # The alarm (Dispatch.circuit_opened) does not depend on EventBridge; the outcome was applied.
            logger.exception("ChannelCircuitOpened not published")

    def _resolve_unknown(self, stored: StoredApplication, now: int) -> str:
        """Never a fresh submission: query, or the same number again where the channel de-duplicates."""
        name, channel = self._route(stored)
        if channel is None:
            return self._finish(stored, Status.MANUAL_REVIEW, f"outcome unknown and channel {name!r} is gone", _REVIEW)
        if (stored.next_poll_at or 0) > now:
            return self._later(stored, stored.next_poll_at - now)
        if channel.can_query:
            outcome = channel.query(stored.application, stored.sent_request_number)
            return self._apply(stored, outcome, channel, queried=True, source="poll")
        if channel.dedupes_request_number:
            return self._attempt(stored)
        return self._finish(
            stored,
            Status.MANUAL_REVIEW,
            f"outcome unknown ({stored.reason}); {name} cannot be queried and does not de-duplicate",
            _REVIEW,
        )

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
        settled = stored.status in _AFTER_OUTCOME
        waiting = stored.status in (Status.SUBMITTED, Status.VOIDING, Status.STUCK)
        match outcome:
            case Issued(invoices=invoices) if (
                stored.status in (Status.VOIDING, Status.STUCK)  # STUCK: a void past its deadline
                and stored.extra.get("void_request")
                and _status_of(invoices) is Status.ISSUED
            ):
                return self._reschedule(stored, now)  # the void is not reported yet: keep asking
            case Issued(invoices=invoices, duplicate=duplicate, raw=raw):
                note = f"issued by {name}" + (" (duplicate answer: the first result)" if duplicate else "")
                return self._issued(stored, invoices, note, fetch_files=fetch_files, source=source, raw=raw)
            case _ if settled and stored.status is not Status.VOIDING:
                return "already issued"  # an older state never overwrites a newer one
            case Accepted(channel_ref=ref):
                if waiting:
                    return self._reschedule(stored, now)
                first_wait = self._policy.poll_intervals[0]
                return self._move(
                    stored, Status.SUBMITTED, f"accepted by {name}", {"channel_ref": ref} if ref else {},
                    now + first_wait,
                )  # fmt: skip
            case NotFound() | NotSent() | Unknown() if waiting:
                return self._reschedule(stored, now)  # keep asking until the deadline
            case Rejected(reason=reason, code=code):
                text = f"{name} rejected it: {reason}" + (f" ({code})" if code else "")
                if stored.uncertain and not queried:
                    # A re-send was refused, but the attempt whose answer was lost may have issued
                    # the invoice: not proof of anything. Ask again; a person decides in the end.
                    if stored.attempts >= self._policy.max_attempts:
                        return self._finish(
                            stored, Status.MANUAL_REVIEW, f"{text}, but an earlier attempt's outcome is unknown",
                            _REVIEW,
                        )  # fmt: skip
                    quiet = self._channels.quiet_period(name)
                    moved = self._move(
                        stored, Status.UNKNOWN, f"{text} on a re-send; an earlier outcome is unknown, asking again",
                        {"reason": text}, now + quiet,
                    )  # fmt: skip
                    return moved if moved == "lost race" else self._later(stored, quiet, moved)
                return self._finish(stored, Status.REJECTED, text, events.EventType.APPLICATION_REJECTED)
            case NotFound() if queried:
                # The channel never received it; after the quiet period the same number may go again.
                if stored.status is Status.UNKNOWN:
                    return self._attempt(stored)
                return "nothing to do"
            case NotSent(reason=reason):
                if stored.status is not Status.DISPATCHING:
                    return self._later(stored, self._policy.retry_delays[0])  # a query that did not leave
                # Counted: the proof that this application never reached a channel (failover, health.py).
                unsent = {"unsent_attempts": int(stored.extra.get("unsent_attempts", 0)) + 1}
                if circuit_open_until is not None:
                    # The channel is down, not this application: wait for the circuit, never STUCK for it.
                    delay = max(circuit_open_until - now, 1)
                    moved = self._move(
                        stored, Status.RETRY_WAIT,
                        f"not sent ({reason}); {name}'s circuit is open, next try in {delay}s", unsent, now + delay,
                    )  # fmt: skip
                    return moved if moved == "lost race" else self._later(stored, delay, moved)
                if stored.attempts >= self._policy.max_attempts:
                    return self._finish(
                        stored, Status.STUCK, f"{name} unreachable after {stored.attempts} attempts: {reason}",
                        events.EventType.APPLICATION_STUCK,
                    )  # fmt: skip
                delay = self._policy.retry_delays[min(stored.attempts, len(self._policy.retry_delays)) - 1]
                moved = self._move(
                    stored, Status.RETRY_WAIT, f"not sent ({reason}); retry in {delay}s", unsent, now + delay
                )
                return moved if moved == "lost race" else self._later(stored, delay, moved)
            case Unknown(reason=reason, raw=raw):
                changes: dict[str, object] = {"reason": reason, "uncertain": True}
                if raw is not None:
                    changes["raw_answer"] = self._files.put_raw_answer(name, stored.sent_request_number, str(now), raw)
                if not (channel.can_query or channel.dedupes_request_number):
                    return self._finish(
                        stored, Status.MANUAL_REVIEW,
                        f"outcome unknown ({reason}); {name} cannot be queried and does not de-duplicate",
                        _REVIEW, changes,
                    )  # fmt: skip
                quiet = self._channels.quiet_period(name)
                if stored.status is Status.UNKNOWN:
                    return self._later(stored, quiet)
                moved = self._move(
                    stored, Status.UNKNOWN, f"outcome unknown: {reason}; asking again in {quiet}s", changes, now + quiet
                )
                return moved if moved == "lost race" else self._later(stored, quiet, moved)
        raise TypeError(f"not a channel outcome: {outcome!r}")

    # ------------------------------------------------------------------ writing outcomes
    def _issued(
        self,
        stored: StoredApplication,
        issued: tuple[IssuedInvoice, ...],
        note: str,
        *,
        fetch_files: bool = True,
        source: str = "dispatch",
        raw: bytes | None = None,
    ) -> str:
        application = stored.application
        request_number = stored.sent_request_number
        issued = tuple(verification.as_voided_original(invoice, stored.invoice_keys) for invoice in issued)
        issued, fetched = self._read_files(stored, issued, fetch=fetch_files)
        items = self._items(stored, issued, request_number)
        target = _status_of(issued)
        for _ in range(3):  # a result must never be lost: re-read and apply it to whatever is there
            try:
                if stored.status in _AFTER_OUTCOME:
                    result = self._after_outcome(stored, issued, items, target, note, source)
                else:
                    result = self._record_issued(stored, issued, items, target, note, source, raw)
            except StaleWrite:
                stored = self._store.get(application.source_system, application.open_apply_code)
                continue
            except IllegalTransition:
                logger.error("issued result for an application in %s", stored.status.value)
                return "ignored"
            except InvoiceNumberTaken as taken:
                return self._clash(stored, taken, note, source)
            self._store_files(stored, issued, items, fetch=fetch_files, fetched=fetched)
            return result
        raise StaleWrite(f"{stored.key}: could not record the issued result")  # retried by the queue

    def _after_outcome(
        self,
        stored: StoredApplication,
        issued: tuple[IssuedInvoice, ...],
        items: list[dict[str, object]],
        target: Status,
        note: str,
        source: str,
    ) -> str:
        """A result for an application that already has its outcome (ISSUED, REJECTED, MISMATCH, ...).

        The same invoices again: their states are updated (a void), nothing else. A different invoice
        is never silent: it is recorded, linked to the application, and a POSSIBLE_DUPLICATE_ISSUANCE
        finding, an event and an alarm follow; the status does not change (a person decides). This
        replaces the former "split result arriving in parts" path: every channel reports a split
        result complete (Kingdee waits until each invoice of the bill has a number, Ekuaibao pushes a
        serial number's invoices at once, the partner answers a query with all of them), so a part
        arriving later cannot be told from a second issuance; a person who sees that it was the rest
        of a split acknowledges the finding.
        """
        new_items = [i for i in items if i["pk"] not in stored.invoice_keys]
        if not new_items:
            issued_before = stored.status in (Status.ISSUED, Status.VOIDING, Status.VOIDED)
            if issued_before and not (
                stored.status is target or (stored.status is Status.VOIDED and target is not Status.VOIDED)
            ):
                return self._record_issued(stored, issued, items, target, note, source, None)  # a void, or undone
            if stored.invoice_keys:
                self._update_invoice_states(issued)
            return "already issued" if issued_before else "already recorded"
        self._store.record_invoices(stored.key, new_items)
        recorded = [str(k) for k in stored.invoice_keys]
        new_numbers = [str(i["number"]) for i in new_items]
        summary = (
            f"{note} after the application was {stored.status.value}: invoice {', '.join(new_numbers)} "
            f"is another invoice (recorded: {', '.join(recorded) or 'none'}); possibly issued twice"
        )
        kind = FindingKind.POSSIBLE_DUPLICATE_ISSUANCE
        if stored.status is Status.CANCELLED:
            kind = FindingKind.RESULT_AFTER_CANCEL
            summary = (
                f"{note} after an operator CANCELLED the application (its business system was told nothing was "
                f"issued and may send it again): invoice {', '.join(new_numbers)}; reverse it, or tell the business "
                "system"
            )
        difference = Difference(
            field="invoices",
            expected=", ".join(recorded) or f"no invoice ({stored.status.value})",
            reported=", ".join(str(i["pk"]) for i in items),
        )
        new_keys = [str(i["pk"]) for i in new_items]
        return self._late_finding(stored, summary, source, new_numbers, new_keys, difference, kind=kind)

    def _late_finding(
        self,
        stored: StoredApplication,
        summary: str,
        source: str,
        numbers: list[str],
        new_keys: list[str],
        difference: Difference | None,
        *,
        kind: FindingKind = FindingKind.POSSIBLE_DUPLICATE_ISSUANCE,
    ) -> str:
        """Record a finding (POSSIBLE_DUPLICATE_ISSUANCE unless told; once), announce it, link the new invoices."""
        finding = verification.finding_for(
            kind, stored.key, source=source, summary=summary,
            at=iso(utc_now()), differences=[difference] if difference else [], invoice_numbers=numbers,
        )  # fmt: skip
        self._record_finding(stored, finding)
        if new_keys:
            self._store.add_invoice_keys(stored, new_keys)
        return "possible duplicate" if kind is FindingKind.POSSIBLE_DUPLICATE_ISSUANCE else "result after cancel"

    def _record_finding(self, stored: StoredApplication, finding: Finding) -> bool:
        """A finding on an application without a status change: announced, recorded once (seen again:
        counted), alarmed the first time. True when it is new."""
        application = stored.application
        announced = finding_item(finding)
        announced.pop("related", None)  # other applications (maybe another tenant's): the desk's only
        # The event first: if it fails, the queue (or the channel) brings the result back and all of
        # this runs again (the finding once; a repeated event is de-duplicated by its receivers).
        self._events.publish(
            events.outcome_event(
                events.EventType.FINDING_RECORDED,
                source_system=application.source_system,
                open_apply_code=application.open_apply_code,
                status=stored.status.value,
                channel=stored.channel,
                request_number=stored.sent_request_number,
                reason=finding.summary,
                findings=[announced],
            )
        )
        new = self._store.add_finding(stored, finding, note=finding.summary)
        if new:
            alarms.finding_recorded(finding)
        return new

    def _clash(self, stored: StoredApplication, taken: InvoiceNumberTaken, note: str, source: str) -> str:
        """The channel reports, for this application, an invoice the hub holds for another one: never
        silent. The invoice stays where it was recorded; this application gets a finding naming the
        holder (for the desk) and waits in MANUAL_REVIEW, or keeps the state it is in (an outcome, a
        person's state, a void) with the finding. Ways out: resolve-issued with the invoice the channel
        really issued for it, or resolve-not-issued (closed REJECTED: the same request number would
        only bring the clashing invoice back)."""
        keys = [str(k) for k in taken.args[0]]
        summary = f"{note}, but invoice {', '.join(keys)} is recorded for another application"
        finding = verification.finding_for(
            FindingKind.INVOICE_CLASH, stored.key, source=source, summary=summary, at=iso(utc_now()),
            differences=[
                Difference(field=f"invoices[{k}].application", expected="this application", reported="another")
                for k in keys
            ],
            invoice_numbers=keys,
        ).model_copy(update={"related": tuple(sorted({h for h in taken.holders.values() if h}))})  # fmt: skip
        if stored.status.is_open and stored.status is not Status.VOIDING:
            result = self._finish(stored, Status.MANUAL_REVIEW, summary, _REVIEW, findings=[finding])
            if result == Status.MANUAL_REVIEW.value.lower():
                alarms.finding_recorded(finding)
            return result
        self._record_finding(stored, finding)
        return "clash"

    def _record_issued(
        self,
        stored: StoredApplication,
        issued: tuple[IssuedInvoice, ...],
        items: list[dict[str, object]],
        target: Status,
        note: str,
        source: str,
        raw: bytes | None,
    ) -> str:
        application = stored.application
        new_items = [i for i in items if i["pk"] not in stored.invoice_keys]
        if stored.status not in _AFTER_OUTCOME:
            today = verification.china_date(datetime.fromtimestamp(self._clock(), UTC))
            differences = verification.verify_result(application, issued, received_at=stored.created_at, today=today)
            if differences:
                return self._mismatch(stored, issued, items, new_items, differences, note, source, raw)
        event_type = {
            Status.ISSUED: events.EventType.INVOICE_ISSUED,
            Status.VOIDED: events.EventType.INVOICE_VOIDED,
        }.get(target)
        event = None
        if event_type is not None:
            event = events.outcome_event(
                event_type,
                source_system=application.source_system,
                open_apply_code=application.open_apply_code,
                status=target.value,
                channel=stored.channel,
                request_number=stored.sent_request_number,
                invoices=[_event_invoice(invoice, item) for invoice, item in zip(issued, items, strict=True)],
            )
        if stored.status is Status.ISSUED or stored.status is Status.VOIDING:
            self._update_invoice_states(issued, stored)
        done = self._store.transition(
            stored, target, note=note if target is Status.ISSUED else f"{note}: {target.value.lower()}",
            changes={"reason": None, **self._kept_answer(stored, raw)}, invoices=new_items, pending_event=event,
        )  # fmt: skip
        self._publish(done)
        return target.value.lower()

    def _kept_answer(self, stored: StoredApplication, raw: bytes | None) -> dict[str, object]:
        """A verified answer is archived too: the raw answer of every attempt is readable from the detail."""
        if raw is None:
            return {}
        request_number = stored.sent_request_number
        return {"raw_answer": self._files.put_raw_answer(stored.channel or "channel", request_number,
                                                          str(int(self._clock())), raw)}  # fmt: skip

    def _mismatch(
        self,
        stored: StoredApplication,
        issued: tuple[IssuedInvoice, ...],
        items: list[dict[str, object]],
        new_items: list[dict[str, object]],
        differences: tuple[Difference, ...],
        note: str,
        source: str,
        raw: bytes | None,
    ) -> str:
        """The result differs from the application: recorded in full, MISMATCH with a finding, review."""
        application = stored.application
        request_number = stored.sent_request_number
        unreadable = verification.only_unreadable(differences)
        kind = FindingKind.UNREADABLE_RESULT if unreadable else FindingKind.RESULT_MISMATCH
        what = "could not be read in full" if unreadable else "differs from the application"
        summary = f"{note}, but the result {what}: {verification.describe(differences)}"
        finding: Finding = verification.finding_for(
            kind, stored.key, source=source, summary=summary, at=iso(utc_now()), differences=differences,
            invoice_numbers=[str(i["number"]) for i in items],
        )  # fmt: skip
        changes: dict[str, object] = {"reason": summary}
        if raw is not None:
            # The answer as the channel sent it, for the person who looks (a callback's is archived already).
            changes["raw_answer"] = self._files.put_raw_answer(
                stored.channel or "channel", request_number, str(int(self._clock())), raw
            )
        event = events.outcome_event(
            events.EventType.APPLICATION_NEEDS_REVIEW,
            source_system=application.source_system,
            open_apply_code=application.open_apply_code,
            status=Status.MISMATCH.value,
            channel=stored.channel,
            request_number=request_number,
            reason=summary,
            invoices=[_event_invoice(invoice, item) for invoice, item in zip(issued, items, strict=True)],
            findings=[finding_item(finding)],
        )
        done = self._store.transition(
            stored, Status.MISMATCH, note=summary, changes=changes, invoices=new_items, pending_event=event,
            findings=[finding],
        )  # fmt: skip
        alarms.finding_recorded(finding)
        alarms.result_mismatch()
        self._publish(done)
        return "mismatch"

    def _update_invoice_states(
        self, issued: tuple[IssuedInvoice, ...], stored: StoredApplication | None = None
    ) -> None:
        for invoice in issued:
            if not (invoice.number or "").strip():
                continue
            changes: dict[str, object] = {"status": invoice.state.value}
            if invoice.state is InvoiceState.VOIDED and stored is not None and stored.extra.get("void_request"):
                changes.update(red_remaining_amount=0, red_remaining_tax=0)  # nothing left to reverse in red
            self._store.update_invoice(invoice_key(invoice.code, invoice.number), changes)

    def _store_files(
        self,
        stored: StoredApplication,
        issued: tuple[IssuedInvoice, ...],
        items: list[dict],
        *,
        fetch: bool,
        fetched: dict[str, bytes | Exception] | None = None,
    ) -> None:
        """Each invoice's files to S3 (base64 decoded strictly; URLs fetched where allowed, once:
        ``fetched`` holds what reading the figures fetched already, bytes or the refusal)."""
        pending = False
        fetched = fetched or {}

        def fetch_once(url: str) -> bytes:
            if url in fetched:
                got = fetched[url]
                if isinstance(got, Exception):
                    raise got
                return got
            return self._fetch(url, stored.channel)

        for invoice, item in zip(issued, items, strict=True):
            if not invoice.files:
                continue
            records = []
            for file in invoice.files:
                record = self._files.store_invoice_file(
                    seller_tax_number=stored.application.seller.tax_number or stored.application.company_code,
                    issued_on=invoice.issued_on,
                    invoice_number=invoice.number,
                    file=file,
                    fetch=fetch_once if fetch else None,
                )
                pending = pending or (record.source == "url" and not record.ok and not fetch)
                records.append(record.to_item())
                if record.error and "FetchRefused" in record.error:
                    # A URL outside the channel's file hosts, a redirect, a file over the cap: a person
                    # sees it on the history (the URL without its query), not only on the file entry.
                    self._store.note(stored.key, f"invoice {invoice.number}: file not fetched ({record.error})")
            self._store.update_invoice(str(item["pk"]), {"files": records})
        if pending:
            # Downloads are not done while a channel waits on its callback: the dispatch queue
            # brings the application back to fetch them (see dispatch()).
            self._store.mark_files_pending(stored.key, True)
            self._later(stored, 0)

    def _fetch_pending_files(self, stored: StoredApplication) -> str:
        for item in self._store.invoices(stored):
            files = item.get("files") or []
            if not any(f.get("url") and not f.get("key") for f in files):
                continue
            refreshed = []
            for f in files:
                if f.get("url") and not f.get("key"):
                    record = self._files.store_invoice_file(
                        seller_tax_number=stored.application.seller.tax_number or stored.application.company_code,
                        issued_on=_date_or_none(item.get("issued_on")),
                        invoice_number=str(item["number"]),
                        file=InvoiceFile(url=f["url"], format_hint=f.get("format")),
                        fetch=lambda url: self._fetch(url, stored.channel),
                    )
                    f = record.to_item()
                refreshed.append(f)
            self._store.update_invoice(str(item["pk"]), {"files": refreshed})
        self._store.mark_files_pending(stored.key, False)
        return "files fetched"

    def _fetch(self, url: str, channel: str | None) -> bytes:
        """An invoice file a channel linked to, within that channel's fetch policy (file_fetch.py):
        raises FetchRefused (recorded on the file entry by the file store, never a crash)."""
        if self._fetcher is not None:
            return self._fetcher(url)
        policy_for = getattr(self._channels, "fetch_policy", None)  # a test's directory may have none
        policy = policy_for(channel) if policy_for is not None and channel else file_fetch.FetchPolicy()
        return file_fetch.fetch_file(url, policy)

    def _read_files(
        self, stored: StoredApplication, issued: tuple[IssuedInvoice, ...], *, fetch: bool
    ) -> tuple[tuple[IssuedInvoice, ...], dict[str, bytes | Exception]]:
        """The figures a channel did not report, read from the invoice's own structured file (数电 XML,
        OFD: invoice_files.py) so that they are compared with the application rather than taken from
        it. Only for a result still to be verified, and only where the channel left a figure out;
        URLs only where fetching is allowed now (not while a pushing channel waits). Returns the
        invoices with what their files state (``from_file`` names it) and what was fetched, for
        _store_files to keep without fetching again."""
        fetched: dict[str, bytes | Exception] = {}
        if stored.status in _AFTER_OUTCOME:
            return issued, fetched
        read = []
        for invoice in issued:
            if not _lacks_figures(invoice):
                read.append(invoice)
                continue
            figures, problem = None, None
            for file in invoice.files:
                data = None
                if file.content_base64 is not None:
                    try:
                        data = decode_base64_strict(file.content_base64)
                    except InvalidFile:
                        continue  # the file store records why
                elif file.url and fetch:
                    if file.url not in fetched:
                        try:
                            fetched[file.url] = self._fetch(file.url, stored.channel)
                        except Exception as error:  # refused or failed: recorded with the file
                            fetched[file.url] = error
                    got = fetched[file.url]
                    data = got if isinstance(got, bytes) else None
                if data is None:
                    continue
                try:
                    figures = invoice_files.read_figures(data)
                except invoice_files.FileUnreadable as error:
                    problem = str(error)
                    continue
                if figures is not None:
                    break
            read.append(_with_file_figures(invoice, figures, problem))
        return tuple(read), fetched

    def _items(
        self, stored: StoredApplication, issued: tuple[IssuedInvoice, ...], request_number: str
    ) -> list[dict[str, object]]:
        """The invoices table items of a result, each saying what of it was compared (verification)."""
        compared = verification.provenance(stored.application, issued)
        return [
            self._invoice_item(stored, invoice, request_number, len(issued), position, compared[position])
            for position, invoice in enumerate(issued)
        ]

    def _invoice_item(
        self,
        stored: StoredApplication,
        invoice: IssuedInvoice,
        request_number: str,
        count: int,
        position: int = 0,
        compared: verification.Provenance | None = None,
    ) -> dict[str, object]:
        application = stored.application
        # One invoice for the whole application: figures the channel left out are the application's
        # (not when it sent them unreadable: then the invoice has none, and a finding says why).
        alone = count == 1 and not invoice.unreadable
        amount = invoice.amount if invoice.amount is not None else (application.amount if alone else None)
        tax = invoice.tax if invoice.tax is not None else (application.tax if alone else None)
        item: dict[str, object] = {
            "pk": _item_key(invoice, request_number, position),
            "number": invoice.number,
            "application_key": stored.key,
            "source_system": application.source_system,
            "open_apply_code": application.open_apply_code,
            "seller_tax_number": application.seller.tax_number,
            "direction": application.direction.value,
            "invoice_type": (invoice.invoice_type or application.invoice_type).value,
            "channel": stored.channel,
            "request_number": request_number,
            "status": Status.ISSUED.value,
            "recorded_at": iso(utc_now()),
        }
        optional = {
            "code": invoice.code,
            "issued_on": invoice.issued_on.isoformat() if invoice.issued_on else None,
            "amount": amount,
            "tax": tax,
            "check_code": invoice.check_code,
            "channel_invoice_id": invoice.channel_invoice_id,
        }
        if application.red is not None:
            optional["blue_invoice_key"] = invoice_key(
                application.red.blue_invoice_code, application.red.blue_invoice_number
            )
        else:
            # What red invoices may still reverse (docs/rules.md section 4); the channel's figure wins.
            optional["red_remaining_amount"] = (
                invoice.red_remaining_amount if invoice.red_remaining_amount is not None else amount
            )
            optional["red_remaining_tax"] = invoice.red_remaining_tax if invoice.red_remaining_tax is not None else tax
            if invoice.state is not InvoiceState.ISSUED:  # a void (or one on its way): nothing to reverse
                optional["red_remaining_amount"] = optional["red_remaining_tax"] = 0
        if invoice.details:
            optional["details"] = dict(invoice.details)
        if invoice.unreadable:
            optional["unreadable"] = dict(invoice.unreadable)  # raw, as the channel sent it
        if invoice.seller_tax_number is not None:
            optional["reported_seller_tax_number"] = invoice.seller_tax_number
        if invoice.buyer_tax_number is not None:
            optional["reported_buyer_tax_number"] = invoice.buyer_tax_number
        if invoice.lines:
            optional["lines"] = [{k: v for k, v in vars(line).items() if v is not None} for line in invoice.lines]
        item["status"] = invoice.state.value
        item.update({k: v for k, v in optional.items() if v is not None})
        if compared is not None:
            # What "issued" rests on: figures compared with the channel's statement (its answer or its
            # file), those an operator typed, and those the hub holds only from the application.
            stored_from_application = [f for f in verification.FROM_APPLICATION_FIGURES if f not in ("amount", "tax")]
            stored_from_application += [f for f in ("amount", "tax") if item.get(f) is not None]
            item["verified"] = list(compared.verified)
            item["from_file"] = list(compared.from_file)
            item["attested_by_operator"] = list(compared.attested_by_operator)
            item["from_application"] = list(compared.unverified(stored_from_application))
        return item

    def _finish(
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
            # The state it found cannot take this report (e.g. a refusal after a void began). The
            # state stands, but never silently: a finding says what was reported and what is stored.
            logger.info("a report that would move %s to %s is not applied", stored.status.value, to.value)
            self._record_finding(stored, verification.finding_for(
                FindingKind.REPORT_NOT_APPLIED, stored.key, source="dispatch",
                summary=f"not applied in {stored.status.value}: {reason}", at=iso(utc_now()),
                differences=[Difference(field="status", expected=stored.status.value, reported=to.value)],
            ))  # fmt: skip
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
        event = events.outcome_event(
            event_type,
            source_system=application.source_system,
            open_apply_code=application.open_apply_code,
            status=to.value,
            channel=stored.channel,
            request_number=stored.sent_request_number,
            reason=reason,
        )
        done = self._store.transition(
            stored, to, note=note or reason, changes={"reason": reason, **(changes or {})}, pending_event=event,
            next_poll_at=self._stuck_poll_at(stored) if to is Status.STUCK else None, findings=findings,
        )  # fmt: skip
        reserved_on = stored.extra.get("red_reserved_on")
        if to in (Status.REJECTED, Status.CANCELLED) and reserved_on:
            # Nothing was reversed: what it held of the blue invoice is free again.
            self._store.release_red(str(reserved_on), -application.amount, -application.tax)
        self._publish(done)
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

    def record_result(self, stored: StoredApplication, issued: tuple[IssuedInvoice, ...], note: str) -> str:
        """A result an operator vouches for (seen at the channel or the bureau, or an unmatched one):
        verified and recorded like a channel's, once, on the state read (StaleWrite if it moved; no
        retry: the operator is answered 409 and decides again). Raises InvoiceNumberTaken."""
        request_number = stored.sent_request_number
        items = self._items(stored, issued, request_number)
        result = self._record_issued(stored, issued, items, _status_of(issued), note, "operator", None)
        self._store_files(stored, issued, items, fetch=True)
        return result

    def accept_reported(self, stored: StoredApplication, items: list[dict], note: str) -> StoredApplication:
        """MISMATCH -> ISSUED: a person accepted the invoices the channel reported (already recorded);
        the business system is told as for any issued invoice (InvoiceIssued). Raises StaleWrite."""
        application = stored.application
        event = events.outcome_event(
            events.EventType.INVOICE_ISSUED,
            source_system=application.source_system,
            open_apply_code=application.open_apply_code,
            status=Status.ISSUED.value,
            channel=stored.channel,
            request_number=stored.sent_request_number,
            # No "files": the notifier reads the recorded invoices and their files.
            invoices=[{k: item[k] for k in _EVENT_INVOICE_FIELDS if k in item} for item in items],
        )
        done = self._store.transition(stored, Status.ISSUED, note=note, changes={"reason": None}, pending_event=event)
        self._publish(done)
        return done

    def _move(
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

    def _later(self, stored: StoredApplication, delay: int, result: str = "waiting") -> str:
        """Come back to this application after ``delay`` seconds (longer waits: the poller's).

        A step that acted under the poller's claim and wrote nothing leaves the claim in place: the
        message carries it on, so that it finds the application due then (not at the claim's end).
        """
        application = stored.application
        self._queue.request_dispatch(
            application.source_system, application.open_apply_code, delay_seconds=delay, claimed_until=stored.claim
        )
        return result

    def _publish(self, stored: StoredApplication) -> None:
        """Publish the outcome's event; if EventBridge fails it stays pending for the next delivery."""
        if not stored.pending_event:
            return
        self._events.publish(stored.pending_event)  # raises PublishFailed: the queue retries the message
        self._store.clear_pending_event(stored)


_REVIEW = events.EventType.APPLICATION_NEEDS_REVIEW
# Applications with an outcome: a result for one is checked for a second issuance, not verified again.
# CANCELLED too: its business system was told nothing was issued, so an invoice for it is kept and
# becomes a finding (RESULT_AFTER_CANCEL), never dropped.
_AFTER_OUTCOME = frozenset(
    {Status.ISSUED, Status.VOIDING, Status.VOIDED, Status.REJECTED, Status.MISMATCH, Status.CANCELLED}
)


def _item_key(invoice: IssuedInvoice, request_number: str, position: int) -> str:
    """The invoices table key; an invoice reported without a number gets a stable one of its own."""
    number = (invoice.number or "").strip()
    return invoice_key(invoice.code, number) if number else f"UNNUMBERED-{request_number}-{position + 1}"


def _status_of(issued: tuple[IssuedInvoice, ...]) -> Status:
    """Where the application stands given its invoices' states."""
    states = {invoice.state for invoice in issued}
    if states and states <= {InvoiceState.VOIDED}:
        return Status.VOIDED
    if InvoiceState.VOID_REQUESTED in states or InvoiceState.VOIDED in states:
        return Status.VOIDING
    return Status.ISSUED


def _date_or_none(value: object) -> date | None:
    return date.fromisoformat(str(value)) if value else None


def _lacks_figures(invoice: IssuedInvoice) -> bool:
    """The channel left out a figure its invoice's file could state."""
    return None in (invoice.amount, invoice.tax, invoice.seller_tax_number, invoice.invoice_type, invoice.issued_on)


def _with_file_figures(
    invoice: IssuedInvoice, figures: invoice_files.FileFigures | None, problem: str | None
) -> IssuedInvoice:
    """The invoice with the figures its file states where the channel said nothing (``from_file``).

    A file naming another invoice number is kept aside (``details["file_invoice_number"]``, a
    difference for verification); a structured file that cannot be read, when nothing else states
    the figures, is an unreadable field (``unreadable["file"]``): a person looks."""
    if figures is None:
        if problem is None:
            return invoice
        return replace(invoice, unreadable={**invoice.unreadable, "file": problem[:300]})
    number = (invoice.number or "").strip()
    if figures.number and number and figures.number != number:
        return replace(invoice, details={**invoice.details, "file_invoice_number": figures.number})
    filled: dict[str, object] = {}
    named: list[str] = []
    for figure, attribute in (
        ("seller", "seller_tax_number"),
        ("buyer", "buyer_tax_number"),
        ("invoice_type", "invoice_type"),
        ("issued_on", "issued_on"),
        ("amount", "amount"),
        ("tax", "tax"),
        ("blue_invoice", "original_number"),
    ):
        value = getattr(figures, attribute)
        if getattr(invoice, attribute) is None and value is not None:
            filled[attribute] = value
            named.append(figure)
    if "blue_invoice" in named and invoice.original_code is None and figures.original_code:
        filled["original_code"] = figures.original_code
    if not invoice.lines and figures.lines:
        filled["lines"] = figures.lines
        named.append("lines")
    details = dict(invoice.details)
    if figures.direction is not None and not details.get("direction"):
        details["direction"] = figures.direction.value  # the file's explicit colour (verification reads it)
        named.append("direction")
    return replace(invoice, **filled, details=details, from_file=(*invoice.from_file, *named))  # type: ignore[arg-type]


# ============================================================================ callbacks
@dataclass(frozen=True)
class CallbackAnswer:
    """What the hub answers a pushing channel (its own envelope: Ekuaibao's ``{"value": ...}``)."""

    status: int
    body: dict


class CallbackReceiver:
    """A channel pushed results: authenticate, archive, read, apply — in that order.

    Nothing is stored for a push that fails authentication. After that the raw body is archived
    before it is read, so no pushed result can be lost: not to a parsing bug, not to an unknown
    request number (those are recorded as unmatched and announced).
    """

    def __init__(
        self,
        store: ApplicationStore,
        files: FileStore,
        registry: ChannelRegistry,
        dispatcher: Dispatcher,
        events_publisher: EventPublisher,
        config: Callable[[], HubConfig],
        *,
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._files = files
        self._registry = registry
        self._dispatcher = dispatcher
        self._events = events_publisher
        self._config = config
        self._clock = clock

    def receive(self, channel_name: str, *, query: dict, headers: dict, raw_body: bytes) -> CallbackAnswer:
        settings = self._config().channels.get(channel_name)
        channel = self._registry.channel(channel_name) if settings else None
        if settings is None or channel is None or not hasattr(channel, "parse_callback"):
            return CallbackAnswer(404, {"value": False, "message": "no such channel"})
        credentials = self._registry.credentials(channel_name) or {}  # with its secret (fapiao_hub.infra.credentials)
        auth = authenticate_callback(credentials, query, headers, raw_body, self._clock(), self._store)
        if not auth.ok:
            logger.warning("callback refused", extra={"channel": channel_name, "reason": auth.reason})
            return CallbackAnswer(401, {"value": False, "message": "unauthorized"})
        raw_ref = self._files.put_raw_callback(channel_name, utc_now(), raw_body)
        try:
            results = channel.parse_callback(raw_body)
        except CallbackRejected as rejected:
            logger.warning("callback unreadable", extra={"channel": channel_name, "raw": raw_ref})
            return CallbackAnswer(400, {"value": False, "message": str(rejected)})
        unmatched = []
        for result in results:
            stored = self._store.find_by_request_number(result.request_number) if result.request_number else None
            if stored is None:
                unmatched.append(self._keep_unmatched(channel_name, result, raw_ref))
                continue
            asked = asked_channel(stored)
            if asked != channel_name:
                # Bound to the channel that was asked: anyone else's push (another channel's
                # credential, a number it should not know) changes nothing and is answered as for a
                # number the hub never sent, so the answer tells no one that the number exists.
                unmatched.append(self._keep_unmatched(channel_name, result, raw_ref, sent=stored, asked=asked))
                continue
            logger.info(
                "callback result",
                extra={
                    "channel": channel_name,
                    "status": stored.status.value,
                    "open_apply_code": stored.application.open_apply_code,
                    "correlation_id": stored.application.open_apply_code,
                    "request_number": result.request_number,
                },
            )
            self._dispatcher.apply_result(stored, result.outcome, channel)
        if unmatched:
            names = ", ".join(u or "(none)" for u in unmatched)
            return CallbackAnswer(404, {"value": False, "message": f"no application for request number {names}"})
        return CallbackAnswer(200, {"value": True})

    def _keep_unmatched(
        self,
        channel_name: str,
        result: CallbackResult,
        raw_ref: str,
        *,
        sent: StoredApplication | None = None,
        asked: str | None = None,
    ) -> str | None:
        """Keep a result no application takes: ``sent`` is the application its number belongs to when
        the pushing channel is not the one it was sent to (``asked``; None: not sent to any yet); that
        application is not touched (the finding travels with the unmatched result and its event)."""
        invoices = result.outcome.invoices if isinstance(result.outcome, Issued) else ()
        items = [_unmatched_item(channel_name, result, invoice, raw_ref) for invoice in invoices]
        finding = _unasked_finding(channel_name, result, sent, asked, items) if sent is not None else None
        if finding is not None:
            for item in items:
                item.update(finding=finding_item(finding), asked_channel=asked or "")
        kept = self._store.record_unmatched(items) if items else []
        logger.warning(
            "push for an unknown request number kept" if sent is None else "push from a channel not asked kept",
            extra={"channel": channel_name, "request_number": result.request_number, "raw": raw_ref}
            | ({"asked_channel": asked or "(none yet)"} if sent is not None else {}),
        )
        more = {"asked_channel": asked, "findings": [finding_item(finding)]} if finding is not None else {}
        self._events.publish(
            events.outcome_event(
                events.EventType.RESULT_UNMATCHED,
                source_system="",  # never an application's: no business system is told of it
                open_apply_code="",
                channel=channel_name,
                request_number=result.request_number,
                outcome=type(result.outcome).__name__,
                invoices=kept,
                raw=raw_ref,
                **more,
            )
        )
        return result.request_number


def asked_channel(stored: StoredApplication) -> str | None:
    """The channel the application's current submission was sent to (after a failover, the one it went
    to: Dispatcher._attempt stores it), or None while it has not been sent (still RECEIVED)."""
    if stored.status is Status.RECEIVED or not stored.attempts:
        return None
    return stored.channel


def _unasked_finding(
    pushing: str, result: CallbackResult, sent: StoredApplication, asked: str | None, items: list[dict]
) -> Finding:
    """RESULT_FROM_UNASKED_CHANNEL: names the pushing channel and the one asked (for the operator)."""
    outcome = type(result.outcome).__name__
    where = f"sent to {asked}" if asked else "not sent to any channel yet"
    summary = (
        f"{pushing} pushed a result ({outcome}) for request number {result.request_number}, which the hub "
        f"{where} (application {sent.key}, {sent.status.value}): not applied; kept as an unmatched result"
    )
    return verification.finding_for(
        FindingKind.RESULT_FROM_UNASKED_CHANNEL, sent.key, source="callback", summary=summary, at=iso(utc_now()),
        differences=[Difference(field="channel", expected=asked or "none (not sent)", reported=pushing)],
        invoice_numbers=[str(i["number"]) for i in items],
    )  # fmt: skip


_EVENT_INVOICE_FIELDS = (
    "number", "code", "issued_on", "invoice_type", "amount", "tax", "status",
    "verified", "from_file", "attested_by_operator", "from_application",  # what "issued" rests on
)  # fmt: skip


def _event_invoice(invoice: IssuedInvoice, item: dict) -> dict:
    """An invoice as its outcome event names it (from the item to be stored)."""
    named = {k: item[k] for k in _EVENT_INVOICE_FIELDS if k in item}
    if not invoice.files:
        # No files to store: the event is complete and the notifier need not read the invoice
        # (files are stored after the event is published).
        named["files"] = []
    return named


def _unmatched_item(channel: str, result: CallbackResult, invoice: IssuedInvoice, raw_ref: str) -> dict:
    item: dict[str, object] = {
        "pk": invoice_key(invoice.code, invoice.number),
        "number": invoice.number,
        "channel": channel,
        "status": invoice.state.value,
        "raw": raw_ref,
        "recorded_at": iso(utc_now()),
    }
    optional = {
        "code": invoice.code,
        "request_number": result.request_number,
        "issued_on": invoice.issued_on.isoformat() if invoice.issued_on else None,
        "amount": invoice.amount,
        "tax": invoice.tax,
        "check_code": invoice.check_code,
        "invoice_type": invoice.invoice_type.value if invoice.invoice_type else None,
        "lines": [{k: v for k, v in vars(line).items() if v is not None} for line in invoice.lines] or None,
        "details": dict(invoice.details) or None,
        # What the result says it belongs to: an operator may attach it only to an application of this
        # seller, and it is verified on these like a direct result (operations._attach_result).
        "seller_tax_number": invoice.seller_tax_number,
        "buyer_tax_number": invoice.buyer_tax_number,
        "buyer_name": invoice.buyer_name,
        "direction": colour.value if (colour := verification.reported_colour(invoice)) else None,
        "original_number": invoice.original_number,
        "original_code": invoice.original_code,
        "unreadable": dict(invoice.unreadable) or None,
    }
    item.update({k: v for k, v in optional.items() if v is not None})
    return item
