"""docs/rules.md sections 1-5 as pure functions: tax math, discount lines, red invoices, parties, text;
and section 8's limits per invoice (the figures, a seller's and a channel's limits; splitting.py cuts by them).

Nothing here does I/O. ``validate_application`` returns every problem it finds (errors and
warnings), never stopping at the first; paths are canonical (``("lines", 3, "tax")`` uses the
line's own ``index``) and each intake shape translates them into its caller's field names.

Paths used:
- ``("lines", i, field)`` for a line's field; the price x quantity check points at
  ``"amount_incl_tax"`` when the application's prices include tax (the figure compared), else
  at ``"amount"``.
- ``("lines",)`` for the line list (count); ``("tax",)`` for the invoice-level tax check;
  ``("amount_incl_tax",)`` for the sign of the invoice total; ``("amount",)``, ``("tax",)``,
  ``("amount_incl_tax",)`` for header totals (``check_header_totals``).
- ``("buyer" | "seller", field)``, ``("red", field)``, ``("red",)``, and the dotted-out path of a
  text field (``("extras", "key")``, ``("special", "building", 0, "key")``...).

Messages name the figures compared; they never repeat a text field's value (personal data such as
a buyer's email, mobile or ID-card tax number must not end up in an error message or a log).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from stdnum.cn import uscc
from stdnum.exceptions import InvalidChecksum, ValidationError

from fapiao_hub.domain import config
from fapiao_hub.domain.models import (
    CENT,
    Application,
    Direction,
    InvoiceType,
    Line,
    LineNature,
    Problem,
    RedReason,
    round_money,
)

if TYPE_CHECKING:
    from fapiao_hub.domain.results import Capabilities

# docs/rules.md section 1: the tax bureau rejects beyond these.
PRICE_X_QTY = Decimal("0.01")  # |unit price x quantity - line amount|
LINES_VS_TOTAL = Decimal("0.01")  # |sum of line amounts - invoice amount|
LINE_TAX = Decimal("0.06")  # per line |amount x rate - tax|
INVOICE_TAX = Decimal("1.27")  # invoice |sum(amount x rate) - total tax|

ZERO = Decimal("0.00")

# Lines per invoice. 数电: 2,000 recommended, more than 5,000 blocked (乐企 V4.000); section 8 has the rest.
DIGITAL_MAX_LINES = 2000
HARD_MAX_LINES = 5000


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
        return cls(
            tax_rates=frozenset(config.DEFAULT_TAX_RATES),
            retired_tax_rates=frozenset(config.DEFAULT_RETIRED_TAX_RATES),
        )


# --------------------------------------------------------------------------- money


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


def _computed_tax(lines: Iterable[Line]) -> Decimal:
    """sum(amount x rate), unrounded: what the invoice-level tax tolerance is measured against."""
    return sum((line.amount * line.tax_rate for line in lines), ZERO)


def _fmt(value: Decimal) -> str:
    """A figure for a message: money with 2 decimals, more only when the value has them."""
    if value == value.quantize(CENT):
        return f"{value.quantize(CENT):f}"
    return f"{value.normalize():f}"


def _fmt_rate(rate: Decimal) -> str:
    return f"{rate.normalize():f}"


def _compare(
    path: tuple[str | int, ...],
    what: str,
    figure: Decimal,
    against: str,
    expected: Decimal,
    tolerance: Decimal,
) -> Problem | None:
    diff = abs(figure - expected)
    if diff <= tolerance:
        return None
    return Problem(
        path=path,
        message=(
            f"{what} {_fmt(figure)} differs from {against} {_fmt(expected)} by {_fmt(diff)} "
            f"(tolerance {_fmt(tolerance)})"
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
    beyond it, a problem naming both figures.
    """
    lines = tuple(lines)
    line_amount, line_tax = totals(lines)
    problems: list[Problem | None] = []
    if amount is not None:
        problems.append(
            _compare(
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
            _compare(
                ("tax",),
                "invoice tax",
                tax,
                "the sum of line amount x rate",
                _computed_tax(lines),
                INVOICE_TAX,
            )
        )
    if amount_incl_tax is not None:
        tolerance = LINES_VS_TOTAL if prices_include_tax else LINES_VS_TOTAL + INVOICE_TAX
        problems.append(
            _compare(
                ("amount_incl_tax",),
                "invoice amount including tax",
                amount_incl_tax,
                "the sum of the lines (amount + tax)",
                line_amount + line_tax,
                tolerance,
            )
        )
    return [p for p in problems if p is not None]


# --------------------------------------------------------------------------- discount shapes


def unfold_inline_discount(line: Line, *, discount_amount: Decimal, discount_tax: Decimal) -> tuple[Line, Line]:
    """Seed-001 shape (discount carried on the discounted line, positive figures) -> canonical pair.

    The line becomes nature DISCOUNTED and is followed by a DISCOUNT line with the same goods
    name, tax code, rate, preferential policy (and zero-rate flag), negative amount and tax, and
    no specification, unit, quantity or unit price. Both keep ``line.index`` so that a problem
    on either points at the caller's line.
    """
    discounted = line.model_copy(update={"nature": LineNature.DISCOUNTED})
    discount = Line(
        index=line.index,
        nature=LineNature.DISCOUNT,
        goods_name=line.goods_name,
        tax_code=line.tax_code,
        amount=-discount_amount,
        tax=-discount_tax,
        tax_rate=line.tax_rate,
        zero_rate_flag=line.zero_rate_flag,
        preferential_policy=line.preferential_policy,
    )
    return discounted, discount


def fold_discounts(lines: Iterable[Line]) -> list[tuple[Line, Decimal | None, Decimal | None]]:
    """Canonical lines -> the seed-001 shape: one entry per non-discount line.

    Each entry is (line, discount amount, discount tax) with the discount as positive figures,
    or None where the line has no discount. A discounted line keeps its nature (DISCOUNTED, the
    seed-001 ``lineAttribute`` 2). Inverse of ``unfold_inline_discount``. Raises ValueError on
    a sequence ``validate_application`` rejects (a discount line not right after a discounted
    line, or a discounted line without its discount line).
    """
    out: list[tuple[Line, Decimal | None, Decimal | None]] = []
    seq = list(lines)
    pos = 0
    while pos < len(seq):
        line = seq[pos]
        if line.nature == LineNature.DISCOUNT:
            raise ValueError(f"line {line.index}: a discount line must follow a discounted line")
        if line.nature == LineNature.DISCOUNTED:
            if pos + 1 >= len(seq) or seq[pos + 1].nature != LineNature.DISCOUNT:
                raise ValueError(f"line {line.index}: a discounted line must be followed by its discount")
            discount = seq[pos + 1]
            out.append((line, -discount.amount, -discount.tax))
            pos += 2
        else:
            out.append((line, None, None))
            pos += 1
    return out


# --------------------------------------------------------------------------- tax numbers

_USCC_ALPHABET = frozenset("0123456789ABCDEFGHJKLMNPQRTUWXY")  # GB 32100-2015: no I O Z S V
_LEGACY = re.compile(r"[0-9A-Z]+", re.ASCII)
_LEGACY_LENGTHS = (15, 17, 20)


def check_tax_number(path: tuple[str | int, ...], value: str, *, strict: bool = False) -> Problem | None:
    """docs/rules.md section 5: malformed -> error; wrong check character -> warning (strict: error).

    The message describes what is wrong without repeating the number (a person's tax number is
    their ID-card number).
    """
    length = len(value)
    if length == 18:
        for pos, char in enumerate(value, start=1):
            if char not in _USCC_ALPHABET:
                return Problem(
                    path=path,
                    message=(
                        f"tax number is malformed: character {pos} {char!r} is not allowed in a "
                        "unified social credit code (0-9 and A-Y without I, O, Z, S, V)"
                    ),
                )
        try:
            uscc.validate(value)
        except InvalidChecksum:
            return Problem(
                path=path,
                message=(
                    "tax number fails the unified social credit code check character "
                    f"(expected {uscc.calc_check_digit(value)!r}, got {value[-1]!r})"
                ),
                warning=not strict,
            )
        except ValidationError:
            # stdnum wants digits in the first 8 positions; GB 32100 has letters in the first
            # two (registration authority, organisation type: e.g. 'N2', 'Y1'), digits in 3-8
            # (administrative division).
            if not value[2:8].isdigit():
                return Problem(
                    path=path,
                    message=(
                        "tax number is malformed: characters 3-8 of a unified social credit code "
                        "are the administrative division code (digits only)"
                    ),
                )
            if uscc.calc_check_digit(value) != value[-1]:
                return Problem(
                    path=path,
                    message=(
                        "tax number fails the unified social credit code check character "
                        f"(expected {uscc.calc_check_digit(value)!r}, got {value[-1]!r})"
                    ),
                    warning=not strict,
                )
        return None
    if length in _LEGACY_LENGTHS:
        if _LEGACY.fullmatch(value) is None:
            bad = next(c for c in value if _LEGACY.fullmatch(c) is None)
            return Problem(
                path=path,
                message=(
                    f"tax number is malformed: {bad!r} is not allowed in a {length}-character "
                    "tax number (digits and uppercase letters A-Z only)"
                ),
            )
        return None
    return Problem(
        path=path,
        message=(
            f"tax number is malformed: it has {length} characters; a tax number has 18 "
            "(unified social credit code) or 15, 17 or 20 (legacy)"
        ),
    )


# --------------------------------------------------------------------------- text

_BAD_CATEGORIES = {
    "Cc": "control character",
    "Cf": "format character",
    "Co": "private-use character",
    "Cs": "surrogate",
    "Cn": "unassigned code point",
}


def check_text(path: tuple[str | int, ...], value: str) -> Problem | None:
    """Control and invisible characters (categories Cc, Cf, Co, Cs, Cn) are rejected."""
    if value.isprintable():  # in C: printable text has none of them (only separators Z* are also unprintable)
        return None
    for pos, char in enumerate(value, start=1):
        kind = _BAD_CATEGORIES.get(unicodedata.category(char))
        if kind is not None:
            return Problem(
                path=path,
                message=(
                    f"contains U+{ord(char):04X} ({kind}) at position {pos}; control and "
                    "invisible characters are not allowed"
                ),
            )
    return None


def _text_fields(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every str inside a model / dict / list, with its canonical path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            child = getattr(value, name)
            if name == "lines" and isinstance(value, Application):
                for line in child:
                    yield from _text_fields(line, ("lines", line.index))
            else:
                yield from _text_fields(child, (*path, name))
    elif isinstance(value, Mapping):
        for key, child in value.items():
            yield from _text_fields(child, (*path, key))
    elif isinstance(value, list | tuple):
        for pos, child in enumerate(value):
            yield from _text_fields(child, (*path, pos))


def gbk_length(text: str) -> int:
    """Length in bytes as legacy channels count it (GBK: a Chinese character counts 2).

    Characters outside GBK count 4 (their GB 18030 length): a conservative estimate.
    """
    return len(text.encode("gb18030"))


def check_byte_limit(path: tuple[str | int, ...], value: str | None, limit: int) -> Problem | None:
    """A channel's field limit in GBK bytes (docs/rules.md section 5): which field, by how much."""
    if not value:
        return None
    size = gbk_length(value)
    if size <= limit:
        return None
    return Problem(
        path=path,
        message=(f"is {size} bytes long (a Chinese character counts 2); the limit is {limit}, {size - limit} too long"),
    )


# --------------------------------------------------------------------------- application


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _norm(value: str | None) -> str | None:
    return None if _blank(value) else value


def _check_line(
    line: Line, app: Application, allowed_rates: frozenset[Decimal], policy: RulePolicy
) -> Iterator[Problem]:
    i = line.index
    red = app.direction == Direction.RED

    if _blank(line.goods_name):
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
        problem = _compare(path, "unit price x quantity =", product, against, compared, PRICE_X_QTY)
        if problem is not None:
            yield problem

    # Tax vs amount x rate.
    computed = line.amount * line.tax_rate
    diff = abs(computed - line.tax)
    if diff > LINE_TAX:
        yield Problem(
            path=("lines", i, "tax"),
            message=(
                f"tax {_fmt(line.tax)} differs from amount x rate = {_fmt(line.amount)} x "
                f"{_fmt_rate(line.tax_rate)} = {_fmt(computed)} by {_fmt(diff)} "
                f"(tolerance {_fmt(LINE_TAX)})"
            ),
        )

    # Tax rate.
    if line.tax_rate not in allowed_rates:
        listed = ", ".join(_fmt_rate(r) for r in sorted(allowed_rates))
        note = ""
        if not red and line.tax_rate in policy.retired_tax_rates:
            note = " (a retired rate, accepted only on red invoices)"
        yield Problem(
            path=("lines", i, "tax_rate"),
            message=f"tax rate {_fmt_rate(line.tax_rate)} is not allowed{note}; allowed rates: {listed}",
        )
    if line.tax_rate == 0 and _blank(line.zero_rate_flag):
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
                message=f"{name} {_fmt(value)} has more than 2 decimals",
            )

    # Signs.
    if red:
        if line.amount > 0:
            yield Problem(
                path=("lines", i, "amount"),
                message=f"amounts on a red invoice are zero or negative; this line's is {_fmt(line.amount)}",
            )
        if line.tax > 0:
            yield Problem(
                path=("lines", i, "tax"),
                message=f"taxes on a red invoice are zero or negative; this line's is {_fmt(line.tax)}",
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
                message=f"a discount line's amount must be negative; it is {_fmt(line.amount)}",
            )
        if line.tax > 0:
            yield Problem(
                path=("lines", i, "tax"),
                message=f"a discount line's tax must be zero or negative; it is {_fmt(line.tax)}",
            )
    else:
        if line.amount < 0:
            yield Problem(
                path=("lines", i, "amount"),
                message=(
                    f"amount {_fmt(line.amount)} is negative; on a blue invoice only a discount "
                    "line (nature 1) is negative"
                ),
            )
        if line.tax < 0:
            yield Problem(
                path=("lines", i, "tax"),
                message=(
                    f"tax {_fmt(line.tax)} is negative; on a blue invoice only a discount line (nature 1) is negative"
                ),
            )


def _check_discounts(lines: Sequence[Line], red: bool) -> Iterator[Problem]:
    """docs/rules.md section 2 (blue invoices); a red invoice carries no discount lines at all."""
    for pos, line in enumerate(lines):
        i = line.index
        if line.nature == LineNature.NORMAL:
            continue
        if red:
            yield Problem(
                path=("lines", i, "nature"),
                message=(
                    "a red invoice carries no discount or discounted lines; net the discount into the reversed line"
                ),
            )
            continue
        if line.nature == LineNature.DISCOUNTED:
            following = lines[pos + 1] if pos + 1 < len(lines) else None
            if following is None or following.nature != LineNature.DISCOUNT:
                yield Problem(
                    path=("lines", i, "nature"),
                    message=(
                        "a discounted line (nature 2) must be immediately followed by its discount line (nature 1)"
                    ),
                )
            continue
        # A discount line.
        for name in ("specification", "unit", "quantity", "unit_price"):
            value = getattr(line, name)
            if value is not None and not (isinstance(value, str) and not value.strip()):
                yield Problem(
                    path=("lines", i, name),
                    message=f"a discount line must leave the {name.replace('_', ' ')} empty",
                )
        previous = lines[pos - 1] if pos > 0 else None
        if previous is None or previous.nature != LineNature.DISCOUNTED:
            yield Problem(
                path=("lines", i, "nature"),
                message=(
                    "a discount line (nature 1) must immediately follow the line it discounts, which has nature 2"
                ),
            )
            continue
        for name, label in (
            ("goods_name", "goods name"),
            ("tax_code", "tax classification code"),
            ("preferential_policy", "preferential policy"),
        ):
            if _norm(getattr(line, name)) != _norm(getattr(previous, name)):
                yield Problem(
                    path=("lines", i, name),
                    message=(
                        f"a discount line must have the same {label} as the line it discounts (line {previous.index})"
                    ),
                )
        if line.tax_rate != previous.tax_rate:
            yield Problem(
                path=("lines", i, "tax_rate"),
                message=(
                    f"a discount line must have the same tax rate as the line it discounts: "
                    f"{_fmt_rate(line.tax_rate)} vs {_fmt_rate(previous.tax_rate)} (line {previous.index})"
                ),
            )
        if line.amount < 0 and -line.amount > previous.amount:
            yield Problem(
                path=("lines", i, "amount"),
                message=(
                    f"discount {_fmt(-line.amount)} exceeds the amount {_fmt(previous.amount)} of "
                    f"the line it discounts (line {previous.index})"
                ),
            )


def _check_red(app: Application) -> Iterator[Problem]:
    if app.direction == Direction.BLUE:
        if app.red is not None:
            yield Problem(path=("red",), message="a blue invoice carries no red-invoice reference")
        return
    red = app.red
    if red is None or _blank(red.blue_invoice_number):
        yield Problem(
            path=("red", "blue_invoice_number"),
            message="a red invoice needs the number of the blue invoice it reverses",
        )
    if app.invoice_type.is_digital and (
        red is None or (_blank(red.confirmation_uuid) and _blank(red.confirmation_number))
    ):
        yield Problem(
            path=("red", "confirmation_uuid"),
            message=("a digital (数电) red invoice needs its red-confirmation form (confirmation UUID or number)"),
        )


def _check_parties(app: Application, policy: RulePolicy) -> Iterator[Problem]:
    for role in ("seller", "buyer"):
        party = getattr(app, role)
        if _blank(party.name):
            yield Problem(path=(role, "name"), message=f"{role} name is empty")
        if not _blank(party.tax_number):
            problem = check_tax_number((role, "tax_number"), party.tax_number, strict=policy.strict_tax_numbers)
            if problem is not None:
                yield problem
    if app.invoice_type.is_special and _blank(app.buyer.tax_number):
        yield Problem(
            path=("buyer", "tax_number"),
            message="the buyer's tax number is required on a special (专票) invoice",
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
    problems.extend(_check_discounts(lines, red))

    # Invoice level.
    if lines:
        line_amount, line_tax = totals(lines)
        computed = _computed_tax(lines)
        problem = _compare(
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
                    message=f"the total of a red invoice must be negative; it is {_fmt(total)}",
                )
            )
        elif not red and total <= 0:
            problems.append(
                Problem(
                    path=("amount_incl_tax",),
                    message=f"the total of a blue invoice must be positive; it is {_fmt(total)}",
                )
            )

    problems.extend(_check_red(app))
    problems.extend(_check_parties(app, policy))

    for path, text in _text_fields(app, ()):
        problem = check_text(path, text)
        if problem is not None:
            problems.append(problem)
    return problems


# --------------------------------------------------------------------------- limits per invoice (section 8)


class LineSplit(StrEnum):
    """How a line over the amount limit is cut into parts (docs/rules.md section 8)."""

    NONE = "none"  # never: an application needing it is refused
    KEEP_PRICE = "keep_price"  # every piece keeps the unit price; the quantity is divided
    KEEP_QUANTITY = "keep_quantity"  # the quantity is divided in the line's own units; the price is recomputed


@dataclass(frozen=True)
class InvoiceLimits:
    """What one invoice may carry (``None``: no limit). A discounted line and its discount count as one line."""

    max_lines: int | None
    max_amount_excl_tax: Decimal | None = None
    line_split: LineSplit = LineSplit.KEEP_PRICE
    discount_lines: bool = True  # 差额征税: none allowed
    splittable: bool = True  # 差额征税 (and red, always): never split into parts

    def narrowed(self, *, max_lines: int | None = None, max_amount_excl_tax: Decimal | None = None) -> InvoiceLimits:
        """These limits with another's figures where lower (a channel's, a special business's)."""
        return replace(
            self,
            max_lines=_lower(self.max_lines, max_lines),
            max_amount_excl_tax=_lower(self.max_amount_excl_tax, max_amount_excl_tax),
        )


def _lower[T: (int, Decimal)](a: T | None, b: T | None) -> T | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


# Lines per invoice (数电: DIGITAL_MAX_LINES, HARD_MAX_LINES above). A legacy e-invoice from a tax
# device 100, and it cannot carry a 清单 (Kingdee 拆分配置); paper 8 unless a 销货清单 is attached
# (then up to the hub's hard limit).
LEGACY_ELECTRONIC_MAX_LINES = 100
PAPER_MAX_LINES = 8
CONSTRUCTION_SERVICE_MAX_LINES = 1  # 建筑服务 (乐企 建筑服务 V3.003): exactly one line
DIFFERENCE_TAXATION_MAX_LINES = 1  # 差额征税: one line, no discount line
MAX_PARTS = 100  # more parts are refused (大象慧云 9404)

# Legacy invoices carry the device's 最高开票限额 (excluding tax), configured per seller; 数电 has no
# per-invoice cap (only the monthly quota): no default amount anywhere.
DEFAULT_INVOICE_LIMITS: dict[InvoiceType, InvoiceLimits] = {
    InvoiceType.DIGITAL_SPECIAL: InvoiceLimits(max_lines=DIGITAL_MAX_LINES),
    InvoiceType.DIGITAL_NORMAL: InvoiceLimits(max_lines=DIGITAL_MAX_LINES),
    InvoiceType.VAT_SPECIAL_ELECTRONIC: InvoiceLimits(max_lines=LEGACY_ELECTRONIC_MAX_LINES),
    InvoiceType.VAT_NORMAL_ELECTRONIC: InvoiceLimits(max_lines=LEGACY_ELECTRONIC_MAX_LINES),
    InvoiceType.VAT_SPECIAL_PAPER: InvoiceLimits(max_lines=PAPER_MAX_LINES),
    InvoiceType.VAT_NORMAL_PAPER: InvoiceLimits(max_lines=PAPER_MAX_LINES),
}


def max_lines_ceiling(invoice_type: InvoiceType, *, sales_list: bool = False) -> int:
    """The most lines a configuration may allow for this type (what the bureau or the device takes)."""
    if invoice_type.is_paper and not sales_list:
        return PAPER_MAX_LINES
    if invoice_type in (InvoiceType.VAT_SPECIAL_ELECTRONIC, InvoiceType.VAT_NORMAL_ELECTRONIC):
        return LEGACY_ELECTRONIC_MAX_LINES
    return HARD_MAX_LINES


class SpecialKind(StrEnum):
    """Kinds of application with their own line rules (the application does not carry them yet: the
    caller of ``effective_limits`` says)."""

    CONSTRUCTION_SERVICE = "construction_service"  # 建筑服务
    DIFFERENCE_TAXATION = "difference_taxation"  # 差额征税


def effective_limits(
    company: config.Company | None,
    invoice_type: InvoiceType,
    capabilities: Capabilities | None = None,
    *,
    special: SpecialKind | None = None,
) -> InvoiceLimits:
    """The limits an invoice of this type for this seller, issued by a channel with these capabilities
    (channels/base.Capabilities), must keep: the defaults above, the seller's configured ``limits``
    over them, then a special business's and the channel's own figures where lower."""
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


def check_limit_settings(hub: config.HubConfig) -> list[str]:
    """``path: why`` for every configured limit beyond what the bureau or a device takes (config check)."""
    problems = []
    for system_id, system in hub.business_systems.items():
        for code, company in system.companies.items():
            for invoice_type, settings in company.limits.items():
                path = f"business_systems.{system_id}.companies.{code}.limits.{invoice_type.value}"
                ceiling = max_lines_ceiling(invoice_type, sales_list=settings.sales_list)
                if settings.max_lines is not None and settings.max_lines > ceiling:
                    why = f"{settings.max_lines} is more than the {ceiling} lines a {invoice_type.value} invoice takes"
                    if invoice_type.is_paper and not settings.sales_list:
                        why += " without a 销货清单 (set sales_list: true when one is attached)"
                    problems.append(f"{path}.max_lines: {why}")
                if settings.sales_list and not invoice_type.is_paper:
                    problems.append(f"{path}.sales_list: only a paper invoice carries a 销货清单")
                if settings.max_amount_excl_tax is not None and invoice_type.is_digital:
                    problems.append(
                        f"{path}.max_amount_excl_tax: a 数电 invoice has no per-invoice amount limit "
                        "(only the monthly quota)"
                    )
    return problems
