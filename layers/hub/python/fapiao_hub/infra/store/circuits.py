"""Channel circuits as stored (usecases/health.py decides what they mean): one item per channel,
"circuit#<channel>", in the applications table like the replay guard: no due_bucket, request_number
or status, so no index and no application query sees it. Every change is one conditional update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fapiao_hub.infra.store.base import Refused, StoreBase, conditional, int_or_none
from fapiao_hub.infra.store.errors import StaleWrite


@dataclass(frozen=True)
class CircuitState:
    """A channel's circuit as stored (health.py decides what it means)."""

    channel: str
    open: bool = False
    failures: int = 0  # in a row, within the window that began at window_start
    window_start: int | None = None
    opened_at: int | None = None  # when this outage began (kept across failed probes)
    open_until: int | None = None  # the cool-down's end
    probe_until: int | None = None  # an elected probe is in flight until then
    openings: int = 0  # how many times it opened: a probe's answer only counts for its own opening


class Circuits(StoreBase):
    """The channels' circuit breakers."""

    def circuit(self, channel: str) -> CircuitState | None:
        item = self._table.get_item(Key={"pk": _circuit_key(channel)}, ConsistentRead=True).get("Item")
        return _circuit_state(channel, item) if item else None

    def count_channel_failure(self, channel: str, *, now: int, window_seconds: int) -> CircuitState:
        """One more failure in a row: in the current window, or the first of a new one."""
        cutoff = now - window_seconds
        for _ in range(3):  # each try fails only because another dispatcher moved the window
            for update, condition in (
                ("SET failures = failures + :one", "window_start > :cutoff"),
                ("SET failures = :one, window_start = :now",
                 "attribute_not_exists(window_start) OR window_start <= :cutoff"),
            ):  # fmt: skip
                values = {":one": 1, ":cutoff": cutoff, **({":now": now} if ":now" in update else {})}
                item = self._update_circuit(channel, update, condition, values)
                if item is not None:
                    return _circuit_state(channel, item)
        raise StaleWrite(f"circuit {channel}: the failure window kept moving")

    def clear_channel_failures(self, channel: str) -> None:
        """The channel answered: failures in a row start again from none."""
        self._update_circuit(channel, "SET failures = :zero", "failures > :zero", {":zero": 0})

    def open_circuit(self, channel: str, *, now: int, until: int) -> CircuitState | None:
        """Open it until ``until``; None if it was open already (another dispatcher opened it)."""
        item = self._update_circuit(
            channel,
            "SET #circuit = :open, opened_at = :now, open_until = :until, "
            "openings = if_not_exists(openings, :zero) + :one REMOVE probe_until",
            "attribute_not_exists(#circuit) OR #circuit <> :open",
            {":open": "OPEN", ":now": now, ":until": until, ":zero": 0, ":one": 1},
        )
        return _circuit_state(channel, item) if item is not None else None

    def claim_probe(self, channel: str, *, now: int, until: int, openings: int) -> bool:
        """Elect this dispatcher to probe the channel: the cool-down is over and nobody else is probing."""
        item = self._update_circuit(
            channel,
            "SET probe_until = :until",
            "#circuit = :open AND openings = :openings AND open_until <= :now "
            "AND (attribute_not_exists(probe_until) OR probe_until <= :now)",
            {":until": until, ":open": "OPEN", ":openings": openings, ":now": now},
        )
        return item is not None

    def release_probe(self, channel: str, *, openings: int) -> None:
        self._update_circuit(
            channel, "REMOVE probe_until", "#circuit = :open AND openings = :openings",
            {":open": "OPEN", ":openings": openings},
        )  # fmt: skip

    def reopen_circuit(self, channel: str, *, until: int, openings: int) -> None:
        """The probe failed: another cool-down (opened_at stays: the outage goes on)."""
        self._update_circuit(
            channel, "SET open_until = :until REMOVE probe_until", "#circuit = :open AND openings = :openings",
            {":until": until, ":open": "OPEN", ":openings": openings},
        )  # fmt: skip

    def close_circuit(self, channel: str, *, openings: int) -> bool:
        """The probe got an answer: closed, no failures counted (only for the opening it probed)."""
        item = self._update_circuit(
            channel,
            "SET #circuit = :closed, failures = :zero REMOVE probe_until, open_until, window_start",
            "#circuit = :open AND openings = :openings",
            {":closed": "CLOSED", ":zero": 0, ":open": "OPEN", ":openings": openings},
        )
        return item is not None

    def _update_circuit(
        self, channel: str, update: str, condition: str, values: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A conditional update of a circuit item: the item after it, or None if the condition failed."""
        names = {"#circuit": "circuit"} if "#circuit" in update or "#circuit" in condition else {}
        answer = conditional(
            self._table.update_item,
            Key={"pk": _circuit_key(channel)},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
            **({"ExpressionAttributeNames": names} if names else {}),
        )
        return None if isinstance(answer, Refused) else answer.get("Attributes", {})


def _circuit_key(channel: str) -> str:
    return f"circuit#{channel}"


def _circuit_state(channel: str, item: dict[str, Any]) -> CircuitState:
    return CircuitState(
        channel=channel,
        open=item.get("circuit") == "OPEN",
        failures=int(item.get("failures", 0)),
        window_start=int_or_none(item.get("window_start")),
        opened_at=int_or_none(item.get("opened_at")),
        open_until=int_or_none(item.get("open_until")),
        probe_until=int_or_none(item.get("probe_until")),
        openings=int(item.get("openings", 0)),
    )
