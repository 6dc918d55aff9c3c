"""Every figure the tax rules are measured by, in one place: the tolerances and the rates of docs/rules.md
section 1, the slack of a reported issue date, and section 8's limits per invoice (lines, parts, the
limits one invoice may carry and the most a seller's configuration may allow).

Pure data and arithmetic on it; no I/O. The checks that apply these figures are in ``money`` (totals),
``rules`` (an application), ``verification`` (a channel's result) and ``splitting`` (parts); a seller's
configured limits are checked against the ceilings here by ``config.HubConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from fapiao_hub.domain.models import InvoiceType

# --------------------------------------------------------------------------- section 1: tolerances
# The tax bureau rejects beyond these.
PRICE_X_QTY = Decimal("0.01")  # |unit price x quantity - line amount|
LINES_VS_TOTAL = Decimal("0.01")  # |sum of line amounts - invoice amount|
LINE_TAX = Decimal("0.06")  # per line |amount x rate - tax|
INVOICE_TAX = Decimal("1.27")  # invoice |sum(amount x rate) - total tax|

# Unit price and quantity carry up to 8 decimals on every channel.
PRICE_QUANTUM = Decimal("1e-8")

# A reported issue date may be a day off the hub's own days: clocks and time zones differ by hours, not days.
ISSUE_DATE_SLACK = timedelta(days=1)

# --------------------------------------------------------------------------- section 1: tax rates
# The rates in force, and the retired ones accepted on red reversals (the hub configuration's defaults).
DEFAULT_TAX_RATES = tuple(Decimal(r) for r in ("0", "0.01", "0.015", "0.03", "0.05", "0.06", "0.09", "0.13"))
DEFAULT_RETIRED_TAX_RATES = tuple(Decimal(r) for r in ("0.04", "0.10", "0.11", "0.16", "0.17"))

# --------------------------------------------------------------------------- section 8: limits per invoice
# Lines per invoice. 数电: 2,000 recommended, more than 5,000 blocked (乐企 V4.000). A legacy e-invoice
# from a tax device 100, and it cannot carry a 清单 (Kingdee 拆分配置); paper 8 unless a 销货清单 is
# attached (then up to the hub's hard limit).
DIGITAL_MAX_LINES = 2000
HARD_MAX_LINES = 5000
LEGACY_ELECTRONIC_MAX_LINES = 100
PAPER_MAX_LINES = 8
CONSTRUCTION_SERVICE_MAX_LINES = 1  # 建筑服务 (乐企 建筑服务 V3.003): exactly one line
DIFFERENCE_TAXATION_MAX_LINES = 1  # 差额征税: one line, no discount line
MAX_PARTS = 100  # more parts are refused (大象慧云 9404)


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


class SpecialKind(StrEnum):
    """Kinds of application with their own line rules (the application does not carry them yet: the
    caller of ``splitting.effective_limits`` says)."""

    CONSTRUCTION_SERVICE = "construction_service"  # 建筑服务
    DIFFERENCE_TAXATION = "difference_taxation"  # 差额征税


def max_lines_ceiling(invoice_type: InvoiceType, *, sales_list: bool = False) -> int:
    """The most lines a configuration may allow for this type (what the bureau or the device takes)."""
    if invoice_type.is_paper and not sales_list:
        return PAPER_MAX_LINES
    if invoice_type in (InvoiceType.VAT_SPECIAL_ELECTRONIC, InvoiceType.VAT_NORMAL_ELECTRONIC):
        return LEGACY_ELECTRONIC_MAX_LINES
    return HARD_MAX_LINES


def limit_setting_problems(
    path: str,
    invoice_type: InvoiceType,
    *,
    max_lines: int | None,
    sales_list: bool,
    max_amount_excl_tax: Decimal | None,
) -> list[str]:
    """``path: why`` for each figure of one configured limit beyond what the bureau or a device takes."""
    problems = []
    ceiling = max_lines_ceiling(invoice_type, sales_list=sales_list)
    if max_lines is not None and max_lines > ceiling:
        why = f"{max_lines} is more than the {ceiling} lines a {invoice_type.value} invoice takes"
        if invoice_type.is_paper and not sales_list:
            why += " without a 销货清单 (set sales_list: true when one is attached)"
        problems.append(f"{path}.max_lines: {why}")
    if sales_list and not invoice_type.is_paper:
        problems.append(f"{path}.sales_list: only a paper invoice carries a 销货清单")
    if max_amount_excl_tax is not None and invoice_type.is_digital:
        problems.append(
            f"{path}.max_amount_excl_tax: a 数电 invoice has no per-invoice amount limit (only the monthly quota)"
        )
    return problems
