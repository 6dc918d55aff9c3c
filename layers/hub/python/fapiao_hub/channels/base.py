"""The channel contract: what the workflow may know about an invoicing channel.

A channel turns a canonical application into its wire format, talks to its vendor, and answers
with one neutral outcome. The workflow never sees a channel's field names, codes, signing or
transport; adding a channel touches its module and one configuration entry.

The outcomes, and what the workflow does with them:

- ``Issued(invoices)``: the invoice exists. Also the answer to a "duplicate request" whose
  existing invoice the channel returned: a duplicate is a success path (DOMAIN.md section 6).
- ``Accepted(channel_ref)``: the channel took the request; the result comes later (callback/poll).
- ``Rejected(reason, code)``: the channel refused it and issued nothing. Final.
- ``Unknown(reason)``: the request may have arrived and the answer was lost (read timeout,
  connection reset after sending, an unreadable answer). The invoice may exist: never resubmit
  with a new number; query, or re-send the same number where the channel de-duplicates.
- ``NotSent(reason)``: nothing left this machine (connection refused, DNS, connect timeout):
  safe to try again later with the same number.
- ``NotFound``: (queries only) the channel does not know the request number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Protocol

from fapiao_hub.models import Application, InvoiceType


@dataclass(frozen=True)
class IssuedInvoice:
    """An invoice as a channel reports it, in neutral terms."""

    number: str
    code: str | None = None  # legacy invoices only
    issued_on: date | None = None
    amount: Decimal | None = None  # tax-exclusive
    tax: Decimal | None = None
    check_code: str | None = None  # 校验码
    invoice_type: InvoiceType | None = None
    channel_invoice_id: str | None = None


@dataclass(frozen=True)
class Issued:
    invoices: tuple[IssuedInvoice, ...]
    duplicate: bool = False  # the channel said "already issued" and returned the invoice


@dataclass(frozen=True)
class Accepted:
    channel_ref: str | None = None


@dataclass(frozen=True)
class Rejected:
    reason: str
    code: str | None = None


@dataclass(frozen=True)
class Unknown:
    reason: str
    # The raw answer, when there was one (kept in S3 for a person to read).
    raw: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NotSent:
    reason: str


@dataclass(frozen=True)
class NotFound:
    pass


Outcome = Issued | Accepted | Rejected | Unknown | NotSent
QueryOutcome = Issued | Accepted | Rejected | Unknown | NotSent | NotFound


class Channel(Protocol):
    """What every channel module provides."""

    name: str
    # The channel recognises a repeated request number and answers with the first result instead
    # of issuing again. Only then may an Unknown be resolved by sending the same number again.
    dedupes_request_number: bool
    # The channel has a query by request number.
    can_query: bool

    def issue(self, application: Application, request_number: str) -> Outcome:
        """Send the application under this request number (the same on every attempt)."""
        ...

    def query(self, application: Application, request_number: str) -> QueryOutcome:
        """What the channel knows of this request number (only where can_query)."""
        ...
