"""docs/rules.md sections 1-5 applied to an application: ``validate_application`` and what it checks itself
(the line count, each line's figures, rate and signs, the invoice's tax and sign, a red application's
reference to its blue invoice), calling ``money`` (tolerances), ``discounts`` (section 2), ``parties``
and ``text`` (section 5) for the rest. :class:`RulePolicy` is what is configurable about them.

Nothing here does I/O. ``validate_application`` returns every problem it finds (errors and
warnings), never stopping at the first; paths are canonical (``("lines", 3, "tax")`` uses the
line's own ``index``) and each intake shape translates them into its caller's field names.

Paths used:
- ``("lines", i, field)`` for a line's field; the price x quantity check points at
  ``"amount_incl_tax"`` when the application's prices include tax (the figure compared), else
  at ``"amount"``.
- ``("lines",)`` for the line list (count); ``("tax",)`` for the invoice-level tax check;
  ``("amount_incl_tax",)`` for the sign of the invoice total; ``("amount",)``, ``("tax",)``,
  ``("amount_incl_tax",)`` for header totals (``money.check_header_totals``).
- ``("buyer" | "seller", field)``, ``("red", field)``, ``("red",)``, and the dotted-out path of a
  text field (``("extras", "key")``, ``("special", "building", 0, "key")``...).

Messages name the figures compared; they never repeat a text field's value (personal data such as
a buyer's email, mobile or ID-card tax number must not end up in an error message or a log).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from fapiao_hub.domain.discounts import check_discounts
from fapiao_hub.domain.limits import (
    DEFAULT_RETIRED_TAX_RATES,
    DEFAULT_TAX_RATES,
    DIGITAL_MAX_LINES,
    HARD_MAX_LINES,
    INVOICE_TAX,
    LINE_TAX,
    PRICE_X_QTY,
)
from fapiao_hub.domain.models import CENT, Application, Direction, Line, LineNature, Problem, RedReason
from fapiao_hub.domain.money import beyond_tolerance, computed_tax, fmt_figure, fmt_rate, totals
from fapiao_hub.domain.parties import check_parties
from fapiao_hub.domain.text import blank, check_text, text_fields


@dataclass(frozen=True)
class RulePolicy:
    """What is configurable about the rules (hub configuration and settings)."""

    tax_rates: frozenset[Decimal]  # rates in force
    retired_tax_rates: frozenset[Decimal]  # accepted only on red applications
    strict_tax_numbers: bool = False  # a checksum failure is a warning (False) or an error (True)
    max_lines: int = HARD_MAX_LINES  # hard limit: error above
    recommended_lines: int = DIGITAL_MAX_LINES  # warning above

    @classmethod
    def default(cls) -> RulePolicy:
        return cls(tax_rates=frozenset(DEFAULT_TAX_RATES), retired_tax_rates=frozenset(DEFAULT_RETIRED_TAX_RATES))


def _check_line(
    line: Line, app: Application, allowed_rates: frozenset[Decimal], policy: RulePolicy
) -> Iterator[Problem]:
    i = line.index
    red = app.direction == Direction.RED

    if blank(line.goods_name):
        yield Problem(path=("lines", i, "goods_name"), message="goods name is empty")

    # Quantity and unit price: both or neither; then price x quantity vs the line amount.
    if line.quantity is None and line.unit_price is not None:
        yield Problem(
            path=("lines", i, "quantity"),
            message="quantity is empty but unit price is given (both or neither)",
        )
    elif line.quantity is not None and line.unit_price is None:
        yield Problem(
            path=("lines", i, "unit_price"),
            message="unit price is empty but quantity is given (both or neither)",
        )
    elif line.quantity is not None and line.unit_price is not None:
        product = line.unit_price * line.quantity
        if app.prices_include_tax:
            path, against, compared = (
                ("lines", i, "amount_incl_tax"),
                "the line amount including tax",
                line.amount_incl_tax,
            )
        else:
            path, against, compared = ("lines", i, "amount"), "the line amount", line.amount
        problem = beyond_tolerance(path, "unit price x quantity =", product, against, compared, PRICE_X_QTY)
        if problem is not None:
            yield problem

    # Tax vs amount x rate.
    computed = line.amount * line.tax_rate
    diff = abs(computed - line.tax)
    if diff > LINE_TAX:
        yield Problem(
            path=("lines", i, "tax"),
            message=(
                f"tax {fmt_figure(line.tax)} differs from amount x rate = {fmt_figure(line.amount)} x "
                f"{fmt_rate(line.tax_rate)} = {fmt_figure(computed)} by {fmt_figure(diff)} "
                f"(tolerance {fmt_figure(LINE_TAX)})"
            ),
        )

    # Tax rate.
    if line.tax_rate not in allowed_rates:
        listed = ", ".join(fmt_rate(r) for r in sorted(allowed_rates))
        note = ""
        if not red and line.tax_rate in policy.retired_tax_rates:
            note = " (a retired rate, accepted only on red invoices)"
        yield Problem(
            path=("lines", i, "tax_rate"),
            message=f"tax rate {fmt_rate(line.tax_rate)} is not allowed{note}; allowed rates: {listed}",
        )
    if line.tax_rate == 0 and blank(line.zero_rate_flag):
        yield Problem(
            path=("lines", i, "zero_rate_flag"),
            message="a zero tax rate needs a zero-rate flag",
        )

    # Money has 2 decimals.
    for name in ("amount", "tax"):
        value: Decimal = getattr(line, name)
        if value != value.quantize(CENT):
            yield Problem(
                path=("lines", i, name),
                message=f"{name} {fmt_figure(value)} has more than 2 decimals",
            )

    # Signs.
    if red:
        if line.amount > 0:
            yield Problem(
                path=("lines", i, "amount"),
                message=f"amounts on a red invoice are zero or negative; this line's is {fmt_figure(line.amount)}",
            )
        if line.tax > 0:
            yield Problem(
                path=("lines", i, "tax"),
                message=f"taxes on a red invoice are zero or negative; this line's is {fmt_figure(line.tax)}",
            )
        if (
            app.red is not None
            and app.red.reason == RedReason.SALES_ALLOWANCE
            and (line.quantity is not None or line.unit_price is not None)
        ):
            field = "quantity" if line.quantity is not None else "unit_price"
            yield Problem(
                path=("lines", i, field),
                message="a red invoice for a sales allowance (reason 04) has no quantity or unit price",
            )
    elif line.nature == LineNature.DISCOUNT:
        if line.amount >= 0:
            yield Problem(
                path=("lines", i, "amount"),
                message=f"a discount line's amount must be negative; it is {fmt_figure(line.amount)}",
            )
        if line.tax > 0:
            yield Problem(
                path=("lines", i, "tax"),
                message=f"a discount line's tax must be zero or negative; it is {fmt_figure(line.tax)}",
            )
    else:
        if line.amount < 0:
            yield Problem(
                path=("lines", i, "amount"),
                message=(
                    f"amount {fmt_figure(line.amount)} is negative; on a blue invoice only a discount "
                    "line (nature 1) is negative"
                ),
            )
        if line.tax < 0:
            yield Problem(
                path=("lines", i, "tax"),
                message=(
                    f"tax {fmt_figure(line.tax)} is negative; on a blue invoice only a discount line "
                    "(nature 1) is negative"
                ),
            )


def _check_red(app: Application) -> Iterator[Problem]:
    if app.direction == Direction.BLUE:
        if app.red is not None:
            yield Problem(path=("red",), message="a blue invoice carries no red-invoice reference")
        return
    red = app.red
    if red is None or blank(red.blue_invoice_number):
        yield Problem(
            path=("red", "blue_invoice_number"),
            message="a red invoice needs the number of the blue invoice it reverses",
        )
    if app.invoice_type.is_digital and (
        red is None or (blank(red.confirmation_uuid) and blank(red.confirmation_number))
    ):
        yield Problem(
            path=("red", "confirmation_uuid"),
            message=("a digital (数电) red invoice needs its red-confirmation form (confirmation UUID or number)"),
        )


def validate_application(app: Application, policy: RulePolicy) -> list[Problem]:
    """Every problem found (errors and warnings), never stops at the first."""
    problems: list[Problem] = []
    lines = app.lines
    red = app.direction == Direction.RED
    allowed = (policy.tax_rates | policy.retired_tax_rates) if red else policy.tax_rates

    # Line count.
    count = len(lines)
    if count == 0:
        problems.append(Problem(path=("lines",), message="an invoice needs at least one line"))
    elif count > policy.max_lines:
        problems.append(Problem(path=("lines",), message=f"{count} lines; the limit is {policy.max_lines}"))
    elif count > policy.recommended_lines:
        problems.append(
            Problem(
                path=("lines",),
                message=(
                    f"{count} lines; more than {policy.recommended_lines} is not recommended (some channels reject it)"
                ),
                warning=True,
            )
        )

    for line in lines:
        problems.extend(_check_line(line, app, allowed, policy))
    problems.extend(check_discounts(lines, red))

    # Invoice level.
    if lines:
        line_amount, line_tax = totals(lines)
        computed = computed_tax(lines)
        problem = beyond_tolerance(
            ("tax",),
            "the sum of line taxes",
            line_tax,
            "the sum of line amount x rate",
            computed,
            INVOICE_TAX,
        )
        if problem is not None:
            problems.append(problem)
        total = line_amount + line_tax
        if red and total >= 0:
            problems.append(
                Problem(
                    path=("amount_incl_tax",),
                    message=f"the total of a red invoice must be negative; it is {fmt_figure(total)}",
                )
            )
        elif not red and total <= 0:
            problems.append(
                Problem(
                    path=("amount_incl_tax",),
                    message=f"the total of a blue invoice must be positive; it is {fmt_figure(total)}",
                )
            )

    problems.extend(_check_red(app))
    problems.extend(check_parties(app, strict_tax_numbers=policy.strict_tax_numbers))

    for path, text in text_fields(app, ()):
        problem = check_text(path, text)
        if problem is not None:
            problems.append(problem)
    return problems
