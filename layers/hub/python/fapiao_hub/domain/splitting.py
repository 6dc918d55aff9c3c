"""An application over an invoice's limits, cut into parts that each fit one invoice (docs/rules.md section 8),
and the limits it is cut by: :func:`effective_limits` (limits.py holds the figures).

Pure and deterministic: the same application and limits give the same parts, every time, on every
dispatcher. Not yet wired into intake or dispatch (docs/intake.md, "Limits and splitting").

- A discounted line and its discount line are one unit: never separated, counted as one line.
- Lines are packed in their order; a part is closed when the next unit would pass a limit.
- A line over the amount limit is cut (``line_split``): every piece but the last at the limit, each
  piece's tax round(amount x rate, 2), the last piece the remainder of amount, tax and quantity. A
  cut piece keeps its line's ``index`` so a problem names the caller's line.
- Red and 差额 applications are never split; more than ``limits.MAX_PARTS`` parts is refused.
- Every part is checked with the hub's own rules (``rules.validate_application``): a tolerance the
  parts would break where the application does not is a refusal naming the field.

A refusal is a ``Problem`` in canonical paths (like ``rules``), naming the limit it concerns.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from fapiao_hub.domain.limits import (
    CONSTRUCTION_SERVICE_MAX_LINES,
    DEFAULT_INVOICE_LIMITS,
    DIFFERENCE_TAXATION_MAX_LINES,
    MAX_PARTS,
    PRICE_QUANTUM,
    InvoiceLimits,
    LineSplit,
    SpecialKind,
)
from fapiao_hub.domain.models import Application, Direction, InvoiceType, Line, LineNature, Problem
from fapiao_hub.domain.money import ZERO, fmt_figure, tax_for, totals
from fapiao_hub.domain.rules import RulePolicy, validate_application

if TYPE_CHECKING:
    from fapiao_hub.domain.config import Company
    from fapiao_hub.domain.results import Capabilities

Unit = tuple[Line, ...]  # one line, or a discounted line with its discount line


@dataclass(frozen=True)
class Part:
    """Part ``number`` (1-based) of an application: the lines one invoice carries."""

    number: int
    lines: tuple[Line, ...]

    @property
    def amount(self) -> Decimal:
        return totals(self.lines)[0]

    @property
    def tax(self) -> Decimal:
        return totals(self.lines)[1]


def effective_limits(
    company: Company | None,
    invoice_type: InvoiceType,
    capabilities: Capabilities | None = None,
    *,
    special: SpecialKind | None = None,
) -> InvoiceLimits:
    """The limits an invoice of this type for this seller, issued by a channel with these capabilities
    (results.Capabilities), must keep: the defaults (limits.DEFAULT_INVOICE_LIMITS), the seller's
    configured ``limits`` over them, then a special business's and the channel's own figures where lower."""
    limits = DEFAULT_INVOICE_LIMITS[invoice_type]
    configured = company.limits.get(invoice_type) if company is not None else None
    if configured is not None:
        limits = replace(
            limits,
            max_lines=configured.max_lines if configured.max_lines is not None else limits.max_lines,
            max_amount_excl_tax=(
                configured.max_amount_excl_tax
                if configured.max_amount_excl_tax is not None
                else limits.max_amount_excl_tax
            ),
            line_split=LineSplit(configured.line_split) if configured.line_split is not None else limits.line_split,
        )
    if special is SpecialKind.CONSTRUCTION_SERVICE:
        limits = limits.narrowed(max_lines=CONSTRUCTION_SERVICE_MAX_LINES)
    elif special is SpecialKind.DIFFERENCE_TAXATION:
        limits = replace(
            limits.narrowed(max_lines=DIFFERENCE_TAXATION_MAX_LINES), discount_lines=False, splittable=False
        )
    if capabilities is not None:
        limits = limits.narrowed(
            max_lines=capabilities.max_lines.get(invoice_type),
            max_amount_excl_tax=capabilities.max_amount_excl_tax.get(invoice_type),
        )
    return limits


def part_request_number(request_number: str, k: int) -> str:
    """The request number part ``k`` (1-based) of an application is sent under, on every try, for ever.

    Derived from the application's request number and k only, so a retry or a second dispatcher never
    makes new parts; 20 letters and digits (every channel's limit), ending in k as three digits so a
    person sees which part it is."""
    if not 1 <= k <= MAX_PARTS:
        raise ValueError(f"part {k}: parts are numbered 1 to {MAX_PARTS}")
    digest = hashlib.sha256(f"{request_number}#part-{k}".encode()).digest()
    return "FP" + base64.b32encode(digest).decode("ascii")[:15] + f"{k:03d}"


def part_application(application: Application, part: Part) -> Application:
    """The application as part ``part`` of it is issued: its lines, its totals."""
    amount, tax = totals(part.lines)
    return application.model_copy(update={"lines": part.lines, "amount": amount, "tax": tax})


def units(lines: tuple[Line, ...]) -> list[Unit]:
    """The lines grouped as the limits count them: a discounted line with the discount line after it."""
    grouped: list[Unit] = []
    pos = 0
    while pos < len(lines):
        line = lines[pos]
        following = lines[pos + 1] if pos + 1 < len(lines) else None
        if line.nature == LineNature.DISCOUNTED and following is not None and following.nature == LineNature.DISCOUNT:
            grouped.append((line, following))
            pos += 2
        else:
            grouped.append((line,))
            pos += 1
    return grouped


def _over(application: Application, limits: InvoiceLimits, unit_count: int) -> Problem | None:
    """Which limit the whole application passes (lines first), or None."""
    if limits.max_lines is not None and unit_count > limits.max_lines:
        return Problem(
            path=("lines",),
            message=f"{unit_count} lines; the limit is max_lines {limits.max_lines} (a discount pair counts as one)",
        )
    # A red invoice's amount is negative: the device's limit holds for its size.
    if limits.max_amount_excl_tax is not None and abs(application.amount) > limits.max_amount_excl_tax:
        return Problem(
            path=("amount",),
            message=(
                f"amount {fmt_figure(application.amount)} is over the limit max_amount_excl_tax "
                f"{fmt_figure(limits.max_amount_excl_tax)}"
            ),
        )
    return None


def split_application(
    application: Application, limits: InvoiceLimits, policy: RulePolicy | None = None
) -> tuple[Part, ...] | Problem:
    """The parts this application is issued as (one part when it fits), or the refusal."""
    policy = policy or RulePolicy.default()
    if not limits.discount_lines:
        for line in application.lines:
            if line.nature != LineNature.NORMAL:
                return Problem(
                    path=("lines", line.index, "nature"),
                    message="this kind of invoice (差额征税) carries no discount or discounted lines",
                )
    grouped = units(application.lines)
    over = _over(application, limits, len(grouped))
    if over is None:
        return (Part(1, application.lines),)
    if application.direction == Direction.RED or not limits.splittable:
        kind = "a red application" if application.direction == Direction.RED else "a 差额征税 application"
        return over.model_copy(update={"message": f"{over.message}; {kind} is never split into parts"})

    packed = _pack(grouped, limits, application.prices_include_tax)
    if isinstance(packed, Problem):
        return packed
    parts = tuple(Part(k, tuple(lines)) for k, lines in enumerate(packed, start=1))
    return _checked(application, parts, policy)


def _pack(grouped: list[Unit], limits: InvoiceLimits, prices_include_tax: bool) -> list[list[Line]] | Problem:
    cap = limits.max_amount_excl_tax
    parts: list[list[Line]] = []
    current: list[Line] = []
    count = 0
    amount = ZERO
    for unit in grouped:
        unit_amount = sum((line.amount for line in unit), ZERO)
        if cap is not None and unit_amount > cap:
            first = unit[0]
            if len(unit) == 2:
                return Problem(
                    path=("lines", first.index, "amount"),
                    message=(
                        f"line {first.index} with its discount comes to {fmt_figure(unit_amount)}, over the limit "
                        f"max_amount_excl_tax {fmt_figure(cap)}; a discounted line is never cut"
                    ),
                )
            if limits.line_split == LineSplit.NONE:
                return Problem(
                    path=("lines", first.index, "amount"),
                    message=(
                        f"amount {fmt_figure(unit_amount)} is over the limit max_amount_excl_tax {fmt_figure(cap)} and "
                        "line_split is none"
                    ),
                )
            pieces_needed = int((unit_amount / cap).to_integral_value(rounding=ROUND_CEILING))
            if len(parts) + (1 if current else 0) + pieces_needed > MAX_PARTS:
                return _too_many(limits)
            pieces = _cut(first, cap, pieces_needed, limits.line_split, prices_include_tax)
            if isinstance(pieces, Problem):
                return pieces
            if current:
                parts.append(current)
            parts.extend([piece] for piece in pieces[:-1])
            current, count, amount = [pieces[-1]], 1, pieces[-1].amount
            continue
        if current and (
            (limits.max_lines is not None and count + 1 > limits.max_lines)
            or (cap is not None and amount + unit_amount > cap)
        ):
            parts.append(current)
            current, count, amount = [], 0, ZERO
            if len(parts) >= MAX_PARTS:
                return _too_many(limits)
        current.extend(unit)
        count += 1
        amount += unit_amount
    if current:
        parts.append(current)
    if len(parts) > MAX_PARTS:
        return _too_many(limits)
    return parts


def _too_many(limits: InvoiceLimits) -> Problem:
    """More than MAX_PARTS parts (大象慧云 9404): named at the amount when an amount limit is set, else the lines."""
    within = [
        f"{name} {fmt_figure(value) if isinstance(value, Decimal) else value}"
        for name, value in (("max_lines", limits.max_lines), ("max_amount_excl_tax", limits.max_amount_excl_tax))
        if value is not None
    ]
    return Problem(
        path=("lines",) if limits.max_amount_excl_tax is None else ("amount",),
        message=f"the application would need more than {MAX_PARTS} invoices (parts) within {' and '.join(within)}",
    )


def _cut(line: Line, cap: Decimal, n: int, mode: LineSplit, prices_include_tax: bool) -> list[Line] | Problem:
    """``line`` as n pieces: every piece but the last at ``cap``; tax round(amount x rate, 2), the
    last the remainder; the quantity divided by ``mode`` (the price kept, or the quantity in its own units)."""
    amounts = [cap] * (n - 1) + [line.amount - cap * (n - 1)]
    taxes = [tax_for(a, line.tax_rate) for a in amounts[:-1]]
    taxes.append(line.tax - sum(taxes, ZERO))
    quantities: list[Decimal | None] = [None] * n
    prices: list[Decimal | None] = [None] * n
    if line.quantity is not None and line.unit_price is not None and line.quantity != 0:
        targets = [a + t if prices_include_tax else a for a, t in zip(amounts, taxes, strict=True)]
        if mode == LineSplit.KEEP_PRICE:
            if line.unit_price == 0:
                return Problem(path=("lines", line.index, "unit_price"), message="a zero unit price cannot be kept")
            # Rounded on the running total, so the pieces' rounding never adds up on the last one.
            running, before = Decimal(0), Decimal(0)
            quantities = []
            for target in targets[:-1]:
                running += target
                upto = (running / line.unit_price).quantize(PRICE_QUANTUM, ROUND_HALF_UP)
                quantities.append(_trim(upto - before))
                before = upto
            prices = [line.unit_price] * n
        else:
            # The quantity in the line's own units (whole units stay whole), in proportion to the amount,
            # rounded down so that the last piece keeps what is left.
            unit = min(Decimal(1), Decimal(1).scaleb(line.quantity.as_tuple().exponent))  # type: ignore[arg-type]
            quantities = [(line.quantity * a / line.amount).quantize(unit, ROUND_FLOOR) for a in amounts[:-1]]
        quantities.append(line.quantity - sum(quantities, Decimal(0)))  # type: ignore[arg-type]
        for q in quantities:
            if q is None or q <= 0:
                return Problem(
                    path=("lines", line.index, "quantity"),
                    message=(
                        f"quantity {fmt_figure(line.quantity)} cannot be divided over {n} invoices of at most "
                        f"{fmt_figure(cap)} ({mode.value})"
                    ),
                )
        if mode == LineSplit.KEEP_QUANTITY:
            prices = [
                _trim((t / q).quantize(PRICE_QUANTUM, ROUND_HALF_UP))  # type: ignore[operator]
                for t, q in zip(targets, quantities, strict=True)
            ]
    return [
        line.model_copy(update={"amount": a, "tax": t, "quantity": q, "unit_price": p})
        for a, t, q, p in zip(amounts, taxes, quantities, prices, strict=True)
    ]


def _trim(value: Decimal) -> Decimal:
    """8 decimals without the trailing zeros (2.50000000 -> 2.5; 3.00000000 -> 3)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def _checked(application: Application, parts: tuple[Part, ...], policy: RulePolicy) -> tuple[Part, ...] | Problem:
    """The parts, if each passes the rules wherever the application itself does; else the first problem."""
    already = {p.path for p in validate_application(application, policy) if not p.warning}
    for part in parts:
        for problem in validate_application(part_application(application, part), policy):
            if not problem.warning and problem.path not in already:
                return problem.model_copy(update={"message": f"part {part.number} of {len(parts)}: {problem.message}"})
    return parts
