"""What a channel answers, in the hub's words: the neutral outcomes and what a channel can do.

A channel turns a canonical application into its wire format, talks to its vendor, and answers
with one neutral outcome. The workflow never sees a channel's field names, codes, signing or
transport; adding a channel touches its module and one configuration entry.

The outcomes, and what the workflow does with them:

- ``Issued(invoices)``: the invoice exists. Also the answer to a "duplicate request" whose
  existing invoice the channel returned: a duplicate is a success path (docs/rules.md section 6).
- ``Accepted(channel_ref)``: the channel took the request; the result comes later (callback/poll).
- ``Rejected(reason, code)``: the channel refused it and issued nothing. Final.
- ``Unknown(reason)``: the request may have arrived and the answer was lost (read timeout,
  connection reset after sending, an unreadable answer). The invoice may exist: never resubmit
  with a new number; query, or re-send the same number where the channel de-duplicates.
- ``NotSent(reason)``: nothing left this machine (connection refused, DNS, connect timeout), or the
  server said it did not process it (429, 503): safe to try again later with the same number, and
  proof that this attempt did not reach the channel (failover relies on it: health.py).
- ``NotFound``: (queries only) the channel does not know the request number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum

from fapiao_hub.domain.models import Direction, InvoiceType


@dataclass(frozen=True)
class Capabilities:
    """What a channel can do: declared by its module (the most it can), narrowed by configuration.

    ``blue`` / ``red``: the invoice types it issues in each colour. ``void``: the types of invoice it
    can void (作废; never 数电, which only a red invoice reverses). ``can_query``: it has a query by
    request number. ``dedupes_request_number``: it answers a repeated request number with the first
    result, never a second invoice. ``field_limits``: the channel's own limits checked before sending,
    by the hub's field name (as a person reads them, e.g. ``"92 bytes in GBK"``).
    """

    blue: frozenset[InvoiceType] = frozenset()
    red: frozenset[InvoiceType] = frozenset()
    void: frozenset[InvoiceType] = frozenset()
    can_query: bool = False
    dedupes_request_number: bool = False
    field_limits: Mapping[str, str] = field(default_factory=dict)
    # The channel's own limits per invoice, by type (absent: none of its own); they narrow the
    # seller's (splitting.effective_limits). A discounted line and its discount count as one line.
    max_lines: Mapping[InvoiceType, int] = field(default_factory=dict)
    max_amount_excl_tax: Mapping[InvoiceType, Decimal] = field(default_factory=dict)

    def issues(self, invoice_type: InvoiceType, direction: Direction) -> bool:
        return invoice_type in (self.red if direction is Direction.RED else self.blue)

    def voids(self, invoice_type: InvoiceType) -> bool:
        return invoice_type in self.void

    def narrowed(
        self,
        *,
        blue: Iterable[InvoiceType] | None = None,
        red: Iterable[InvoiceType] | None = None,
        void: Iterable[InvoiceType] | None = None,
        can_query: bool | None = None,
        dedupes_request_number: bool | None = None,
    ) -> Capabilities:
        """These capabilities with some taken away (``None``: as declared). Asking for more than is
        declared raises ValueError naming what (the registry reports it with the configuration's path)."""
        changes: dict[str, object] = {}
        for name, given in (("blue", blue), ("red", red), ("void", void)):
            if given is None:
                continue
            wanted = frozenset(given)
            extra = wanted - getattr(self, name)
            if extra:
                raise ValueError(f"{name}: {', '.join(sorted(t.value for t in extra))} not supported")
            changes[name] = wanted
        for name, flag in (("can_query", can_query), ("dedupes_request_number", dedupes_request_number)):
            if flag is None:
                continue
            if flag and not getattr(self, name):
                raise ValueError(f"{name}: the channel cannot")
            changes[name] = flag
        return replace(self, **changes)  # type: ignore[arg-type]


class InvoiceState(StrEnum):
    ISSUED = "ISSUED"
    VOID_REQUESTED = "VOID_REQUESTED"  # 作废申请中
    VOIDED = "VOIDED"  # 已作废


@dataclass(frozen=True)
class InvoiceFile:
    """An invoice file as a channel hands it over: base64 text (decoded strictly by files.py, never
    by the channel) or a URL to fetch. ``format_hint`` is what the channel claims (pdf, ofd, xml);
    the file store trusts the magic bytes, not the hint."""

    content_base64: str | None = None
    url: str | None = None
    format_hint: str | None = None


@dataclass(frozen=True)
class InvoiceLine:
    """A line of an issued invoice as the channel reports it (for records and red reversals)."""

    goods_name: str
    amount: Decimal  # tax-exclusive
    tax: Decimal
    tax_rate: Decimal | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    unit: str | None = None
    specification: str | None = None
    tax_code: str | None = None
    nature: str | None = None  # 0 normal, 1 discount, 2 discounted


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
    state: InvoiceState = InvoiceState.ISSUED
    files: tuple[InvoiceFile, ...] = ()
    lines: tuple[InvoiceLine, ...] = ()
    # What may still be reversed by red invoices, where the channel says (Kingdee canRedAmount).
    red_remaining_amount: Decimal | None = None
    red_remaining_tax: Decimal | None = None
    # For a red invoice: the blue invoice it reverses, where the channel says.
    original_number: str | None = None
    original_code: str | None = None
    # Channel facts kept as they are (express number and company, XML address, split/merge flag, ...).
    details: dict[str, str] = field(default_factory=dict)
    # The parties as the channel reports them (checked against the application: verification.py).
    seller_tax_number: str | None = None
    buyer_tax_number: str | None = None
    buyer_name: str | None = None
    # Fields of the result the channel module could not read, by the vendor's field name, with the
    # raw text: recorded and turned into a finding, never a crash (the invoice is kept as reported).
    unreadable: dict[str, str] = field(default_factory=dict)
    # Where figures came from when not from the channel's answer (set by the hub, never by a channel
    # module), by figure name (verification.FIGURES): read from the invoice's own file (数电 XML, OFD),
    # or typed by an operator (resolve-issued on a channel that cannot be asked).
    from_file: tuple[str, ...] = ()
    attested_by_operator: tuple[str, ...] = ()


@dataclass(frozen=True)
class Issued:
    invoices: tuple[IssuedInvoice, ...]
    duplicate: bool = False  # the channel said "already issued" and returned the invoice
    # The raw answer, when there was one: kept in S3 for a person to read. Evidence, not part of what the
    # outcome means: two outcomes with the same invoices are equal whatever bytes carried them.
    raw: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Accepted:
    channel_ref: str | None = None


@dataclass(frozen=True)
class Rejected:
    reason: str
    code: str | None = None

    @property
    def described(self) -> str:
        """The reason, with the channel's code when it gave one (as histories and findings say it)."""
        return f"{self.reason} ({self.code})" if self.code else self.reason


@dataclass(frozen=True)
class Unknown:
    reason: str
    # The raw answer, when there was one (kept in S3 for a person to read).
    raw: bytes | None = field(default=None, repr=False)
    # The channel itself failed (HTTP 5xx, no answer in time, the connection dropped), as opposed to
    # an answer the hub could not read: counts toward the channel's circuit breaker (health.py).
    channel_failed: bool = False


@dataclass(frozen=True)
class NotSent:
    reason: str


@dataclass(frozen=True)
class NotFound:
    pass


Outcome = Issued | Accepted | Rejected | Unknown | NotSent
QueryOutcome = Issued | Accepted | Rejected | Unknown | NotSent | NotFound


@dataclass(frozen=True)
class CallbackResult:
    """One result a channel pushed, identified by the request number the hub sent (or, where the
    channel only echoes its own reference, by ``channel_ref``). ``outcome`` is Issued (the invoices,
    whatever their state), Rejected, or Accepted (still in progress)."""

    outcome: Issued | Rejected | Accepted
    request_number: str | None = None
    channel_ref: str | None = None
