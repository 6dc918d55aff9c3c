"""docs/rules.md section 2, discount lines (折扣行): the canonical shape (a discounted line, nature 2,
immediately followed by its discount line, nature 1, negative), its check, and the conversion from and
to the seed-001 shape that carries the discount on the discounted line. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal

from fapiao_hub.domain.models import Line, LineNature, Problem
from fapiao_hub.domain.money import fmt_figure, fmt_rate
from fapiao_hub.domain.text import blank


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
    a sequence ``rules.validate_application`` rejects (a discount line not right after a discounted
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


def _norm(value: str | None) -> str | None:
    return None if blank(value) else value


def check_discounts(lines: Sequence[Line], red: bool) -> Iterator[Problem]:
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
                    f"{fmt_rate(line.tax_rate)} vs {fmt_rate(previous.tax_rate)} (line {previous.index})"
                ),
            )
        if line.amount < 0 and -line.amount > previous.amount:
            yield Problem(
                path=("lines", i, "amount"),
                message=(
                    f"discount {fmt_figure(-line.amount)} exceeds the amount {fmt_figure(previous.amount)} of "
                    f"the line it discounts (line {previous.index})"
                ),
            )
