"""The channel contract: what the workflow may know about an invoicing channel.

A channel turns a canonical application into its wire format, talks to its vendor, and answers
with one neutral outcome (fapiao_hub.domain.results, where each is explained). The workflow never
sees a channel's field names, codes, signing or transport; adding a channel touches its module and
one configuration entry.
"""

from __future__ import annotations

from typing import Protocol

from fapiao_hub.domain.models import Application
from fapiao_hub.domain.results import CallbackResult, Capabilities, Outcome, QueryOutcome


class CallbackRejected(Exception):
    """A pushed body that cannot be read as a result at all (the reason names the field)."""


class Channel(Protocol):
    """What every channel module provides."""

    name: str
    # The channel recognises a repeated request number and answers with the first result instead
    # of issuing again. Only then may an Unknown be resolved by sending the same number again.
    dedupes_request_number: bool
    # The channel has a query by request number.
    can_query: bool
    # What it can do (its module's declaration, narrowed by its configuration).
    capabilities: Capabilities

    def issue(self, application: Application, request_number: str) -> Outcome:
        """Send the application under this request number (the same on every attempt)."""
        ...

    def query(self, application: Application, request_number: str) -> QueryOutcome:
        """What the channel knows of this request number (only where can_query)."""
        ...


class VoidingChannel(Protocol):
    """A channel with a void (作废) call. One whose ``capabilities.void`` allows a void but that has no
    such call (the partner) gets none sent: the hub records the void as one a person does at the
    channel (usecases.voids.VoidSender.send), never as "sent"."""

    def void(self, application: Application, request_number: str, reason: str) -> Outcome:
        """Ask for the invoices issued under ``request_number`` to be voided. Accepted: the channel
        reports the void later (the application is polled); Rejected: refused, nothing changed."""
        ...


class PushingChannel(Protocol):
    """A channel that pushes results to the hub (POST /v1/callbacks/{channel})."""

    def parse_callback(self, body: bytes) -> list[CallbackResult]:
        """The results in a pushed body (authentication is checked before, by the callback route).

        Liberal where the vendor's own documents deviate (see each module), strict elsewhere;
        raises CallbackRejected naming the field when the body is not a result at all."""
        ...
