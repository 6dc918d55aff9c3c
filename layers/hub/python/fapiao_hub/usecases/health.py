"""Channel health: a circuit breaker per channel, shared by every dispatcher through the store.

A channel whose requests keep failing (nothing sent: refused, connect timeout, 429/503; or the
channel itself failed: other 5xx, no answer in time, a dropped connection) ``failures_to_open``
times in a row within ``window_seconds`` is *open* for ``cooldown_seconds``: dispatchers do not
call it, and applications wait for the cool-down's end without spending attempts. Then one
dispatcher, elected by a conditional write, sends one request (the probe): an answer of any kind
closes the circuit, another failure opens it for another cool-down.

The state lives in the store (ApplicationStore, "circuit#<channel>" items), so every Lambda
instance sees the same circuit; every change is a conditional write, so of many dispatchers
exactly one opens it (and announces it), exactly one probes, and a late answer from an earlier
opening never closes a newer one (``openings`` counts them).

Failover (``failover_after_seconds``) is decided by routing.Router: only for an application that
provably never reached its channel (:func:`never_reached`). docs/channels.md "Channel health".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aws_lambda_powertools import Logger

from fapiao_hub.domain.results import NotSent, Unknown
from fapiao_hub.infra import events
from fapiao_hub.infra.events import EventPublisher
from fapiao_hub.infra.store.circuits import CircuitState

logger = Logger(child=True)


@dataclass(frozen=True)
class BreakerPolicy:
    failures_to_open: int = 5
    window_seconds: int = 60
    cooldown_seconds: int = 30
    # How long an elected probe holds the slot before another dispatcher may probe (the probe's
    # own dispatcher died): the DISPATCHING lease.
    probe_seconds: int = 60
    # None: never fail over. Otherwise an application that never reached its channel may go to the
    # next capable channel once the circuit has been open this long.
    failover_after_seconds: int | None = None


class CircuitStore(Protocol):
    """What the breaker needs of the store (store.ApplicationStore, "channel circuits" section)."""

    def circuit(self, channel: str) -> CircuitState | None: ...

    def count_channel_failure(self, channel: str, *, now: int, window_seconds: int) -> CircuitState: ...

    def clear_channel_failures(self, channel: str) -> None: ...

    def open_circuit(self, channel: str, *, now: int, until: int) -> CircuitState | None: ...

    def claim_probe(self, channel: str, *, now: int, until: int, openings: int) -> bool: ...

    def release_probe(self, channel: str, *, openings: int) -> None: ...

    def reopen_circuit(self, channel: str, *, until: int, openings: int) -> None: ...

    def close_circuit(self, channel: str, *, openings: int) -> bool: ...


@dataclass(frozen=True)
class Gate:
    """May a dispatcher send to the channel now? ``probe``: it is the one elected to try."""

    channel: str
    admitted: bool
    probe: bool = False
    until: int | None = None  # not admitted: come back then
    opened_at: int | None = None
    openings: int = 0
    failures: int = 0  # as read: a success resets them only when there are some


@dataclass(frozen=True)
class Verdict:
    """The circuit after an attempt's outcome was recorded."""

    open_until: int | None = None  # open (the attempt's own failure may have opened it): until then
    opened: CircuitState | None = None  # this attempt opened it: the caller announces it


def channel_failed(outcome: object) -> bool:
    """An outcome that says the channel is unwell (not the application): counts toward opening."""
    return isinstance(outcome, NotSent) or (isinstance(outcome, Unknown) and outcome.channel_failed)


class ChannelHealth:
    def __init__(self, store: CircuitStore, policy: BreakerPolicy | None = None):
        self._store = store
        self.policy = policy or BreakerPolicy()

    def admit(self, channel: str, now: int) -> Gate:
        """One read; a conditional write only when the cool-down is over (the probe's election)."""
        state = self._store.circuit(channel)
        if state is None or not state.open:
            return Gate(channel, True, failures=state.failures if state else 0)
        held = {"opened_at": state.opened_at, "openings": state.openings}
        if state.open_until is not None and now < state.open_until:
            return Gate(channel, False, until=state.open_until, **held)
        if (state.probe_until is None or state.probe_until <= now) and self._store.claim_probe(
            channel, now=now, until=now + self.policy.probe_seconds, openings=state.openings
        ):
            return Gate(channel, True, probe=True, **held)
        # Another dispatcher is probing: look again after a cool-down (its answer decides).
        return Gate(channel, False, until=now + self.policy.cooldown_seconds, **held)

    def record(self, gate: Gate, outcome: object, now: int) -> Verdict:
        """What an attempt let through by ``gate`` says about its channel."""
        failed = channel_failed(outcome)
        if gate.probe:
            if failed:
                until = now + self.policy.cooldown_seconds
                self._store.reopen_circuit(gate.channel, until=until, openings=gate.openings)
                return Verdict(open_until=until)
            self._store.close_circuit(gate.channel, openings=gate.openings)
            return Verdict()
        if not failed:
            if gate.failures:
                self._store.clear_channel_failures(gate.channel)
            return Verdict()
        state = self._store.count_channel_failure(gate.channel, now=now, window_seconds=self.policy.window_seconds)
        if state.open:  # opened meanwhile (or a probe is out): the outage is known, wait for it
            return Verdict(open_until=max(state.open_until or 0, now + self.policy.cooldown_seconds))
        if state.failures < self.policy.failures_to_open:
            return Verdict()
        opened = self._store.open_circuit(gate.channel, now=now, until=now + self.policy.cooldown_seconds)
        if opened is None:  # another dispatcher opened it first (and announces it)
            return Verdict(open_until=now + self.policy.cooldown_seconds)
        return Verdict(open_until=opened.open_until, opened=opened)

    def abandon(self, gate: Gate) -> None:
        """An elected probe that was not sent (the application moved on): let another probe now."""
        if gate.probe:
            self._store.release_probe(gate.channel, openings=gate.openings)

    def may_fail_over(self, gate: Gate, now: int) -> bool:
        """The circuit has been open long enough for applications that never reached it to move on."""
        after = self.policy.failover_after_seconds
        return after is not None and not gate.admitted and gate.opened_at is not None and now - gate.opened_at >= after


def never_reached(attempts: int, unsent_attempts: int, uncertain: bool) -> bool:
    """Provably no request for the application left the hub: every attempt ended NotSent.

    Counted, not inferred: ``unsent_attempts`` grows only where an attempt's outcome was NotSent,
    so an attempt that ended any other way (an Unknown, a dispatcher that died mid-request, an
    answer) leaves ``attempts`` ahead of it for good.
    """
    return not uncertain and attempts == unsent_attempts


def hold(gate: Gate, now: int) -> tuple[int, str]:
    """An application held by an open circuit: when it is due again (the cool-down's end) and why."""
    until = max(gate.until or now, now + 1)
    return until, f"waiting for {gate.channel}: its circuit is open (requests kept failing); next try at {until}"


def announce_opening(publisher: EventPublisher, verdict: Verdict, outcome: object) -> None:
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
        publisher.publish(event)
    except events.PublishFailed:
        # The alarm (Dispatch.circuit_opened) does not depend on EventBridge; the outcome was applied.
        logger.exception("ChannelCircuitOpened not published")
