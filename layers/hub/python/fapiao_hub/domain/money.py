"""docs/rules.md section 1, the arithmetic: tax from an amount, an amount including tax split, totals of
lines, a figure compared with another within a tolerance (limits.py holds the tolerances), and the
check of header totals a caller sent against its lines. Pure; no I/O.

Problems name the figures compared, formatted by :func:`fmt_figure` / :func:`fmt_rate`.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from fapiao_hub.domain.limits import INVOICE_TAX, LINES_VS_TOTAL
from fapiao_hub.domain.models import CENT, Line, Problem, round_money

ZERO = Decimal("0.00")


def split_tax_inclusive(amount_incl_tax: Decimal, rate: Decimal) -> tuple[Decimal, Decimal]:
    """(amount excl., tax): excl = round(incl / (1 + rate), 2), tax = incl - excl."""
    excl = round_money(amount_incl_tax / (1 + rate))
    return excl, amount_incl_tax - excl


def tax_for(amount: Decimal, rate: Decimal) -> Decimal:
    """The tax on a tax-exclusive amount: round(amount x rate, 2)."""
    return round_money(amount * rate)


def totals(lines: Iterable[Line]) -> tuple[Decimal, Decimal]:
    """(sum of line amounts, sum of line taxes)."""
    amount = tax = ZERO
    for line in lines:
        amount += line.amount
        tax += line.tax
    return amount, tax


def computed_tax(lines: Iterable[Line]) -> Decimal:
    """sum(amount x rate), unrounded: what the invoice-level tax tolerance is measured against."""
    return sum((line.amount * line.tax_rate for line in lines), ZERO)


def fmt_figure(value: Decimal) -> str:
    """A figure for a message: money with 2 decimals, more only when the value has them."""
    if value == value.quantize(CENT):
        return f"{value.quantize(CENT):f}"
    return f"{value.normalize():f}"


def fmt_rate(rate: Decimal) -> str:
    return f"{rate.normalize():f}"


def beyond_tolerance(
    path: tuple[str | int, ...],
    what: str,
    figure: Decimal,
    against: str,
    expected: Decimal,
    tolerance: Decimal,
) -> Problem | None:
    """A problem naming both figures and the difference when ``figure`` is more than ``tolerance`` off."""
    diff = abs(figure - expected)
    if diff <= tolerance:
        return None
    return Problem(
        path=path,
        message=(
            f"{what} {fmt_figure(figure)} differs from {against} {fmt_figure(expected)} by {fmt_figure(diff)} "
            f"(tolerance {fmt_figure(tolerance)})"
        ),
    )


def check_header_totals(
    lines: Iterable[Line],
    *,
    amount: Decimal | None,
    tax: Decimal | None,
    amount_incl_tax: Decimal | None,
    prices_include_tax: bool,
) -> list[Problem]:
    """Header figures a caller sent (each may be None = not sent) vs the line-derived ones.

    Within tolerance the header is accepted (and the line-derived figure is the one stored);
    beyond it, a problem naming both figures. Paths: ``("amount",)``, ``("tax",)``, ``("amount_incl_tax",)``.
    """
    lines = tuple(lines)
    line_amount, line_tax = totals(lines)
    problems: list[Problem | None] = []
    if amount is not None:
        problems.append(
            beyond_tolerance(
                ("amount",),
                "invoice amount",
                amount,
                "the sum of the line amounts",
                line_amount,
                LINES_VS_TOTAL,
            )
        )
    if tax is not None:
        problems.append(
            beyond_tolerance(
                ("tax",),
                "invoice tax",
                tax,
                "the sum of line amount x rate",
                computed_tax(lines),
                INVOICE_TAX,
            )
        )
    if amount_incl_tax is not None:
        tolerance = LINES_VS_TOTAL if prices_include_tax else LINES_VS_TOTAL + INVOICE_TAX
        problems.append(
            beyond_tolerance(
                ("amount_incl_tax",),
                "invoice amount including tax",
                amount_incl_tax,
                "the sum of the lines (amount + tax)",
                line_amount + line_tax,
                tolerance,
            )
        )
    return [p for p in problems if p is not None]
