"""A channel's result checked against its application (ARCHITECTURE.md principle 8): pure, no I/O.

:func:`verify_result` compares what a channel reports (a synchronous answer, a poll, a push) with
the application it belongs to and returns every field that differs, expected and reported, as text
a person reads. An empty answer means the result may be believed. What is checked, and how:

- **seller** (``seller.tax_number``): each invoice's ``seller_tax_number`` where the channel reports
  one, against the application's seller (compared without blanks, case-insensitively).
- **buyer** (``buyer.tax_number``): where both the application and the invoice have one.
- **invoice type** (``invoice_type``): where the channel reports one.
- **colour** (``direction``): a channel's explicit red marker (``details["direction"] == "RED"``,
  Ekuaibao's ``invoiceType`` 1), else the sign of the reported amounts: a red invoice's are negative.
  An invoice of zero amount and no marker has no colour and is not judged.
- **totals** (``amount``, ``tax``): summed over every reported invoice (a channel may split one
  application into several) and compared with the application's within the tolerances of docs/rules.md
  (limits.py): ``|amount| <= 0.01``, ``|tax| <= 1.27``. A red invoice the channel marks red but reports in
  positive figures (seed 000's red example) is counted negative. An invoice that reports no amount
  is not counted: with a single invoice the totals are then not checked (the channel does not say;
  ``unreadable`` catches an amount it sent but the hub could not read); with several, the missing
  figure is itself a difference (``invoices[i].amount``), since the total cannot be checked.
- **lines** (``lines[j].tax``): only where the reported lines pair with the application's, meaning
  one invoice reports exactly as many lines as the application has, or the invoices' lines taken
  in order do. Lines pair by position; each line's tax must be within 0.06 of the application's
  line. Where the counts differ (a channel folds discount lines into the discounted line, seed 001,
  or reports no lines) nothing is paired and the totals decide.
- **invoice date** (``issued_on``): not before the day the application was received (China time,
  UTC+8) minus one day, and not after ``today`` plus one day (clocks and time zones differ by hours,
  not days).
- **red reversal** (``red.blue_invoice_number``, ``red.blue_invoice_code``): for a red application,
  the blue invoice each red invoice reverses, where the channel reports it.
- **the invoice's file** (``file.number``): where the hub read figures from the invoice's own file
  (invoice_files.py) and the file names another invoice number (``details["file_invoice_number"]``).
- **malformed fields**: an invoice without a number (``number``) and every entry of
  ``IssuedInvoice.unreadable`` (``unreadable.<vendor field>``, reported: the raw text).

What was compared: :func:`provenance` says, per invoice, which figures (:data:`FIGURES`) the check
above compared with what the channel reported (``verified``; ``from_file`` the subset read from the
invoice's own file, invoice_files.py) and which an operator typed (``attested_by_operator``: checked
against the application, but nobody at the channel said so). A figure in neither was not compared:
whatever the hub stores for it is the application's (workflow's invoice item lists those as
``from_application``), and reconciliation reports such an invoice as "figures unverified".

Field names are the neutral dotted names of :class:`fapiao_hub.domain.models.Difference`; with more than one
invoice, per-invoice fields are prefixed ``invoices[i].`` (totals never are).

:func:`finding_for` turns differences into a :class:`Finding` whose id is stable for the same discovery,
so a repeated callback or poll records it once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal

from fapiao_hub.domain.china_time import china_day
from fapiao_hub.domain.limits import INVOICE_TAX, ISSUE_DATE_SLACK, LINE_TAX, LINES_VS_TOTAL
from fapiao_hub.domain.models import Application, Difference, Direction, Finding, FindingKind, invoice_key
from fapiao_hub.domain.results import InvoiceState, IssuedInvoice

UNREADABLE_PREFIX = "unreadable."
EXPECTED_READABLE = "a readable value"


def verify_result(
    application: Application,
    invoices: Sequence[IssuedInvoice],
    *,
    received_at: datetime | str,
    today: date,
) -> tuple[Difference, ...]:
    """Every difference between the reported ``invoices`` and ``application`` (empty: it matches).

    ``received_at``: when the hub received the application (aware datetime or ISO text, UTC 'Z');
    ``today``: the current date in China time (the caller's clock: this function reads none).
    """
    found: list[Difference] = []
    if not invoices:
        return (Difference(field="invoices", expected="at least one invoice", reported="none"),)
    several = len(invoices) > 1
    earliest = china_day(received_at) - ISSUE_DATE_SLACK
    latest = today + ISSUE_DATE_SLACK
    red = application.direction is Direction.RED
    for i, invoice in enumerate(invoices):
        at = f"invoices[{i}]." if several else ""
        found += _invoice_differences(application, invoice, at, earliest, latest, red)
    found += _total_differences(application, invoices, red)
    found += _line_differences(application, invoices, red)
    return tuple(found)


# The figures of an invoice that a result can state, in the words of docs/rules.md.
FIGURES = ("seller", "buyer", "invoice_type", "direction", "issued_on", "amount", "tax", "lines", "blue_invoice")
# Those the hub stores on an invoice from the application when the channel does not state them.
FROM_APPLICATION_FIGURES = ("seller", "invoice_type", "direction", "amount", "tax")


@dataclass(frozen=True)
class Provenance:
    """Which of an invoice's figures were compared, and with whose statement (see the module docstring)."""

    verified: tuple[str, ...] = ()
    from_file: tuple[str, ...] = ()
    attested_by_operator: tuple[str, ...] = ()

    def unverified(self, stored_from_application: Iterable[str] = FROM_APPLICATION_FIGURES) -> tuple[str, ...]:
        """Figures the hub holds only from the application: neither compared nor attested."""
        seen = set(self.verified) | set(self.attested_by_operator)
        return tuple(f for f in stored_from_application if f not in seen)


def provenance(application: Application, invoices: Sequence[IssuedInvoice]) -> tuple[Provenance, ...]:
    """For each invoice, what :func:`verify_result` compared (the same conditions, figure by figure)."""
    paired = _lines_pair(application, invoices)
    red = application.direction is Direction.RED
    found = []
    for invoice in invoices:
        compared = {
            "seller": invoice.seller_tax_number is not None and bool(application.seller.tax_number),
            "buyer": bool(invoice.buyer_tax_number) and bool(application.buyer.tax_number),
            "invoice_type": invoice.invoice_type is not None,
            "direction": reported_colour(invoice) is not None,
            "issued_on": invoice.issued_on is not None,
            "amount": invoice.amount is not None,
            "tax": invoice.tax is not None,
            "lines": paired and bool(invoice.lines),
            "blue_invoice": red and application.red is not None and invoice.original_number is not None,
        }
        attested = tuple(f for f in FIGURES if f in invoice.attested_by_operator and compared[f])
        verified = tuple(f for f in FIGURES if compared[f] and f not in attested)
        found.append(
            Provenance(
                verified=verified,
                from_file=tuple(f for f in verified if f in invoice.from_file),
                attested_by_operator=attested,
            )
        )
    return tuple(found)


def only_unreadable(differences: Iterable[Difference]) -> bool:
    """True when every difference is a field the hub could not read (an UNREADABLE_RESULT finding)."""
    differences = list(differences)
    return bool(differences) and all(is_unreadable(d) for d in differences)


def is_unreadable(difference: Difference) -> bool:
    return difference.expected == EXPECTED_READABLE


def finding_for(
    kind: FindingKind,
    application_key: str,
    *,
    source: str,
    summary: str,
    at: str,
    differences: Sequence[Difference] = (),
    invoice_numbers: Sequence[str] = (),
) -> Finding:
    """A finding whose id is the discrepancy's identity: kind, application, invoices and the fields that
    differ, never the values (a channel reporting another wrong figure next time is the same discrepancy:
    store.add_finding updates it rather than adding one)."""
    material = "\x1f".join(
        [kind.value, application_key, *sorted(invoice_numbers), *sorted({d.field for d in differences})]
    )
    digest = hashlib.sha256(material.encode("utf-8")).hexdigest()[:24]
    return Finding(
        id=f"{kind.value.lower()}-{digest}",
        kind=kind,
        at=at,
        source=source,
        summary=summary,
        differences=tuple(differences),
        invoice_numbers=tuple(invoice_numbers),
    )


def describe(differences: Sequence[Difference], limit: int = 3) -> str:
    """A short text for a history note or a summary: the first few fields with both values."""
    parts = [f"{d.field}: expected {d.expected}, reported {d.reported}" for d in differences[:limit]]
    more = len(differences) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


# ---------------------------------------------------------------------------- per invoice
def _invoice_differences(
    application: Application, invoice: IssuedInvoice, at: str, earliest: date, latest: date, red: bool
) -> list[Difference]:
    found: list[Difference] = []
    if not (invoice.number or "").strip():
        found.append(Difference(field=f"{at}number", expected="an invoice number", reported=invoice.number or None))
    expected_seller = application.seller.tax_number
    if (
        invoice.seller_tax_number is not None
        and expected_seller
        and not same_id(invoice.seller_tax_number, expected_seller)
    ):
        found.append(Difference(field=f"{at}seller.tax_number", expected=expected_seller,
                                reported=invoice.seller_tax_number))  # fmt: skip
    expected_buyer = application.buyer.tax_number
    if invoice.buyer_tax_number and expected_buyer and not same_id(invoice.buyer_tax_number, expected_buyer):
        found.append(Difference(field=f"{at}buyer.tax_number", expected=expected_buyer,
                                reported=invoice.buyer_tax_number))  # fmt: skip
    if invoice.invoice_type is not None and invoice.invoice_type is not application.invoice_type:
        found.append(Difference(field=f"{at}invoice_type", expected=application.invoice_type.value,
                                reported=invoice.invoice_type.value))  # fmt: skip
    colour = reported_colour(invoice)
    if colour is not None and colour is not application.direction:
        found.append(Difference(field=f"{at}direction", expected=application.direction.value, reported=colour.value))
    if invoice.issued_on is not None and not earliest <= invoice.issued_on <= latest:
        found.append(Difference(field=f"{at}issued_on", expected=f"{earliest.isoformat()} to {latest.isoformat()}",
                                reported=invoice.issued_on.isoformat()))  # fmt: skip
    if red and application.red is not None:
        blue = application.red
        if invoice.original_number is not None and invoice.original_number.strip() != blue.blue_invoice_number:
            found.append(Difference(field=f"{at}red.blue_invoice_number", expected=blue.blue_invoice_number,
                                    reported=invoice.original_number))  # fmt: skip
        if (
            invoice.original_code is not None
            and blue.blue_invoice_code
            and invoice.original_code.strip() != blue.blue_invoice_code
        ):
            found.append(Difference(field=f"{at}red.blue_invoice_code", expected=blue.blue_invoice_code,
                                    reported=invoice.original_code))  # fmt: skip
    file_number = invoice.details.get("file_invoice_number")
    if file_number:
        found.append(Difference(field=f"{at}file.number", expected=invoice.number or "the invoice's number",
                                reported=file_number))  # fmt: skip
    for vendor_field, raw in sorted(invoice.unreadable.items()):
        found.append(Difference(field=f"{at}{UNREADABLE_PREFIX}{vendor_field}", expected=EXPECTED_READABLE,
                                reported=raw))  # fmt: skip
    return found


def reported_colour(invoice: IssuedInvoice) -> Direction | None:
    """Red or blue as the channel reports it: its explicit marker, else the sign of its figures."""
    marker = (invoice.details.get("direction") or "").upper()
    if marker in (Direction.RED.value, Direction.BLUE.value):
        return Direction(marker)
    figures = [v for v in (invoice.amount, invoice.tax) if v is not None and v != 0]
    figures += [line.amount for line in invoice.lines if line.nature != "1" and line.amount != 0]
    if not figures:
        return None
    if all(v < 0 for v in figures):
        return Direction.RED
    if all(v > 0 for v in figures):
        return Direction.BLUE
    return None  # mixed signs: the totals and lines say what is wrong


def _signed(invoice: IssuedInvoice, value: Decimal, red: bool) -> Decimal:
    """A red invoice reported in positive figures (marked red explicitly) counts negative."""
    if red and value > 0 and (invoice.details.get("direction") or "").upper() == Direction.RED.value:
        return -value
    return value


# ---------------------------------------------------------------------------- totals and lines
def _total_differences(application: Application, invoices: Sequence[IssuedInvoice], red: bool) -> list[Difference]:
    found: list[Difference] = []
    several = len(invoices) > 1
    for name, expected, tolerance in (
        ("amount", application.amount, LINES_VS_TOTAL),
        ("tax", application.tax, INVOICE_TAX),
    ):
        reported = [getattr(invoice, name) for invoice in invoices]
        known = [_signed(inv, v, red) for inv, v in zip(invoices, reported, strict=True) if v is not None]
        if not known:
            continue  # the channel reports no figure at all (unreadable ones are differences already)
        if several and len(known) < len(reported):
            for i, value in enumerate(reported):
                if value is None and not _unreadable_has(invoices[i], name):
                    found.append(Difference(field=f"invoices[{i}].{name}", expected="a figure", reported=None))
            continue
        difference = figure_difference(name, expected, sum(known, Decimal(0)), tolerance)
        if difference is not None:
            found.append(difference)
    return found


def _lines_pair(application: Application, invoices: Sequence[IssuedInvoice]) -> bool:
    reported = [line for invoice in invoices for line in invoice.lines]
    return bool(reported) and len(reported) == len(application.lines)


def _line_differences(application: Application, invoices: Sequence[IssuedInvoice], red: bool) -> list[Difference]:
    reported = [(invoice, line) for invoice in invoices for line in invoice.lines]
    if not _lines_pair(application, invoices):
        return []  # nothing pairs: the totals decide
    found = []
    for j, (expected, (invoice, line)) in enumerate(zip(application.lines, reported, strict=True)):
        difference = figure_difference(f"lines[{j}].tax", expected.tax, _signed(invoice, line.tax, red), LINE_TAX)
        if difference is not None:
            found.append(difference)
    return found


def _unreadable_has(invoice: IssuedInvoice, name: str) -> bool:
    return any(name in key.lower() for key in invoice.unreadable)


def same_id(a: str, b: str) -> bool:
    """Two tax numbers (or other ids) are the same whatever their case and spacing: the one comparison
    of results and of unmatched results an operator attaches (operations.py)."""
    return "".join(a.split()).upper() == "".join(b.split()).upper()


def figure_difference(field: str, expected: Decimal, reported: Decimal, tolerance: Decimal) -> Difference | None:
    """The one comparison of two money figures: a difference (both as money text) when ``reported`` is
    more than ``tolerance`` off ``expected``; reconciliation compares the hub's record with it too."""
    if abs(reported - expected) <= tolerance:
        return None
    return Difference(field=field, expected=f"{expected:.2f}", reported=f"{reported:.2f}")


def as_voided_original(invoice: IssuedInvoice, recorded: tuple[str, ...]) -> IssuedInvoice:
    """A void report that names the invoice it voided (partner status 2: the void's own number, and
    ``originInvoice*``) is a report about that invoice when the application holds it: it is that
    invoice, now VOIDED (the void's number kept in its details). Anything else is left as reported."""
    if invoice.state is not InvoiceState.VOIDED or not invoice.original_number:
        return invoice
    if invoice_key(invoice.original_code, invoice.original_number) not in recorded:
        return invoice
    details = {**invoice.details, "voidInvoiceNumber": invoice.number}
    if invoice.code:
        details["voidInvoiceCode"] = invoice.code
    return replace(
        invoice,
        number=invoice.original_number,
        code=invoice.original_code,
        original_number=None,
        original_code=None,
        details=details,
    )
