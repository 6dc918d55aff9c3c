"""Voids: a void request (intake moved the application ISSUED -> VOIDING) sent to the channel that
issued it, once. Its result comes like an issue's, by query or push (VOIDING -> VOIDED: outcomes.py).
"""

from __future__ import annotations

from typing import Protocol

from aws_lambda_powertools import Logger

from fapiao_hub.domain.models import Status
from fapiao_hub.domain.results import NotSent, Rejected, Unknown
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.errors import StaleWrite
from fapiao_hub.infra.store.records import StoredApplication
from fapiao_hub.usecases.routing import ChannelDirectory

logger = Logger(child=True)


class Steps(Protocol):
    """The state machine's steps a void takes (dispatch.Dispatcher)."""

    @property
    def first_poll_seconds(self) -> int: ...

    @property
    def first_retry_seconds(self) -> int: ...

    def move(
        self, stored: StoredApplication, to: Status, note: str, changes: dict[str, object], next_poll_at: int
    ) -> str: ...

    def later(self, stored: StoredApplication, delay: int, result: str = "waiting") -> str: ...


class VoidSender:
    """Sends an application's void request to its channel, or hands the void to a person there."""

    def __init__(self, store: ApplicationStore, channels: ChannelDirectory, steps: Steps):
        self._store = store
        self._channels = channels
        self._steps = steps

    def send(self, stored: StoredApplication) -> str:
        """Send the void to the channel that issued the invoice; says what happened (for logs and tests)."""
        name, channel = self._channels.channel_for(stored.application, stored.channel)
        reason = stored.void.reason if stored.void is not None else ""
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
            return self._steps.later(stored, self._steps.first_poll_seconds, "void by person")
        if void is None:
            return self._steps.move(
                stored, Status.ISSUED, f"void not sent: channel {name!r} cannot void", {"void_sent": None}, 0
            )
        try:
            outcome = void(stored.application, stored.sent_request_number, reason)
        except Exception as error:  # the request may have left: ask the channel, as for an issue
            logger.exception("channel raised on void")
            outcome = Unknown(f"channel {name} raised {type(error).__name__}")
        match outcome:
            case Rejected() as rejected:
                text = f"{name} refused the void: {rejected.described}"
                return self._steps.move(stored, Status.ISSUED, text, {"void_refused": text}, 0)
            case NotSent():
                return self._steps.later(stored, self._steps.first_retry_seconds)
            case _:  # Accepted, Issued, Unknown: the channel has (or may have) it; its reports decide
                try:
                    self._store.mark_void_sent(stored, f"void request sent to {name}")
                except StaleWrite:
                    return "lost race"
                return self._steps.later(stored, self._steps.first_poll_seconds, "void sent")
