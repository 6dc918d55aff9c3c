"""Routing: which channel an application goes to.

At intake, the first of the seller's channels whose capabilities cover the application's type and
colour (intake_channel; the seller's channels and their order are the configuration's:
HubConfig.channel_preferences, ChannelRegistry.capable_channels). At dispatch, the channel stored
on it, unless that channel's circuit is open (health.py): then the application waits for it, or,
when it provably never reached any channel, fails over to the next capable one (Router.admit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fapiao_hub.channels.base import Channel
from fapiao_hub.domain.models import Application, InvoiceType, Status
from fapiao_hub.infra.store.records import StoredApplication
from fapiao_hub.usecases import health
from fapiao_hub.usecases.health import ChannelHealth, Gate

if TYPE_CHECKING:
    from fapiao_hub.channels.registry import ChannelRegistry


class ChannelDirectory(Protocol):
    """Routing and channel construction (channels.registry in production, fakes in tests)."""

    def channel_for(self, application: Application, proposed: str | None) -> tuple[str | None, Channel | None]: ...

    def quiet_period(self, name: str) -> int: ...

    def channel(self, name: str) -> Channel | None: ...


# The channels an application may go to, most preferred first (a failover takes the next: Router.admit).
ChannelOrder = Callable[[Application, str | None], list[str]]


class NoCapableChannel(Exception):
    """Intake: the seller has configured channels and none of them can issue the application."""

    def __init__(self, configured: list[str], issuable: dict[str, list[InvoiceType]]):
        super().__init__(f"none of {', '.join(configured)} can issue it")
        self.configured = configured
        self.issuable = issuable  # what they can issue, by colour ("blue", "red"): for the refusal


def intake_channel(registry: ChannelRegistry, application: Application) -> str | None:
    """The channel that issues this application: the first of the seller's channels whose capabilities
    cover its type and colour. NoCapableChannel when the seller has configured channels and none can;
    raises ChannelConfigurationError for a configuration that asks more of a channel than it can do."""
    capable = registry.capable_channels(application)
    if capable:
        return capable[0]
    preferred = registry.preferred_channels(application)
    configured = [name for name in preferred if registry.configured(name)]
    if not configured:
        # Nothing configured to judge by: dispatch reports it (no channel / not configured).
        return preferred[0] if preferred else None
    raise NoCapableChannel(configured, registry.issuable(application))


@dataclass(frozen=True)
class Admitted:
    """Send it now: to ``name`` (another than routed after a failover: ``failed_over_from``)."""

    name: str
    channel: Channel
    gate: Gate | None  # None: no breaker
    failed_over_from: str | None = None


@dataclass(frozen=True)
class Held:
    """Do not send: the channel's circuit is open and there is nowhere else to go."""

    gate: Gate


class Router:
    """The dispatcher's routing: the application's channel now, and whether an attempt may go to it."""

    def __init__(
        self, channels: ChannelDirectory, health: ChannelHealth | None = None, channel_order: ChannelOrder | None = None
    ):
        self._channels = channels
        self._health = health
        self._channel_order = channel_order

    def current(self, stored: StoredApplication) -> tuple[str | None, Channel | None]:
        """The application's channel: routed, or, once it failed over, the one it went to for good."""
        if stored.failed_over_from and stored.channel:
            return stored.channel, self._channels.channel(stored.channel)
        return self._channels.channel_for(stored.application, stored.channel)

    def admit(self, stored: StoredApplication, name: str, channel: Channel, now: int) -> Admitted | Held:
        """May an attempt go to its channel now (its circuit), or to which other one (failover)."""
        if self._health is None:
            return Admitted(name, channel, None)
        gate = self._health.admit(name, now)
        if gate.admitted:
            return Admitted(name, channel, gate)
        moved = self._failover(stored, gate, now)
        if moved is None:
            return Held(gate)
        return Admitted(*moved, failed_over_from=name)

    def _failover(self, stored: StoredApplication, gate: Gate, now: int) -> tuple[str, Channel, Gate] | None:
        """The next capable channel that will take it, only if no request for it ever reached a channel."""
        assert self._health is not None
        if self._channel_order is None or not self._health.may_fail_over(gate, now):
            return None
        unsent = stored.unsent_attempts
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
