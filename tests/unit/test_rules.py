"""docs/rules.md sections 1-5 (fapiao_hub.domain.rules): every rule at its boundaries, plus properties."""

from __future__ import annotations

import unicodedata
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import uscc

from fapiao_hub.domain import limits
from fapiao_hub.domain.discounts import fold_discounts, unfold_inline_discount
from fapiao_hub.domain.limits import INVOICE_TAX, LINE_TAX, LINES_VS_TOTAL, PRICE_X_QTY
from fapiao_hub.domain.models import (
    Application,
    Direction,
    InvoiceType,
    Line,
    LineNature,
    Party,
    Problem,
    RedReason,
    RedReference,
    SpecialBusiness,
)
from fapiao_hub.domain.money import check_header_totals, split_tax_inclusive, tax_for, totals
from fapiao_hub.domain.rules import RulePolicy, validate_application
from fapiao_hub.domain.text import check_byte_limit, check_text, gbk_length

D = Decimal
POLICY = RulePolicy.default()
STRICT = RulePolicy(tax_rates=POLICY.tax_rates, retired_tax_rates=POLICY.retired_tax_rates, strict_tax_numbers=True)

_USCC_BASE = "91310000631757739"
VALID_USCC = _USCC_BASE + uscc.calc_check_digit(_USCC_BASE)  # 91310000631757739E
WRONG_CHECK_USCC = _USCC_BASE + ("A" if VALID_USCC[-1] != "A" else "B")  # seed 001's seller number
_N2_BASE = "N2370000MA3C5U6X0"  # registration authority 'N': stdnum wants digits there
VALID_N2_USCC = _N2_BASE + uscc.calc_check_digit(_N2_BASE)

NORMAL, DISCOUNT, DISCOUNTED = LineNature.NORMAL, LineNature.DISCOUNT, LineNature.DISCOUNTED
_AUTO: Any = object()


# --------------------------------------------------------------------------- builders


def mk_line(
    index: int = 0,
    amount: str | Decimal = "100.00",
    tax: str | Decimal = "13.00",
    rate: str | Decimal = "0.13",
    *,
    nature: LineNature = NORMAL,
    quantity: Any = _AUTO,
    unit_price: Any = _AUTO,
    **fields: Any,
) -> Line:
    """A line; by default quantity 1 and a tax-inclusive unit price equal to amount + tax."""
    amount, tax, rate = D(amount), D(tax), D(rate)
    if quantity is _AUTO:
        quantity = None if nature == DISCOUNT else D(1)
    if unit_price is _AUTO:
        unit_price = None if quantity is None else (amount + tax) / quantity
    if rate == 0:
        fields.setdefault("zero_rate_flag", "3")
    fields.setdefault("goods_name", "笔记本电脑")
    fields.setdefault("tax_code", "1090509010000000000")
    return Line(
        index=index,
        nature=nature,
        amount=amount,
        tax=tax,
        tax_rate=rate,
        quantity=None if quantity is None else D(quantity),
        unit_price=None if unit_price is None else D(unit_price),
        **fields,
    )


def incl_line(index: int, incl: str, rate: str = "0.13", nature: LineNature = NORMAL, **kw: Any) -> Line:
    """A line from a tax-inclusive amount, as the intake derives it (seed 004)."""
    amount, tax = split_tax_inclusive(D(incl), D(rate))
    if nature == DISCOUNT:
        kw.setdefault("quantity", None)
    else:
        kw.setdefault("quantity", D(1))
        kw.setdefault("unit_price", D(incl))
    return mk_line(index, amount, tax, rate, nature=nature, **kw)


def red_line(index: int = 0, amount: str = "-100.00", tax: str = "-13.00", **kw: Any) -> Line:
    kw.setdefault("quantity", D(-1))
    return mk_line(index, amount, tax, **kw)


def mk_app(lines: Any = None, **fields: Any) -> Application:
    lines = tuple([mk_line(0)] if lines is None else lines)
    amount, tax = totals(lines)
    fields.setdefault("source_system", "erp")
    fields.setdefault("open_apply_code", "A-1")
    fields.setdefault("direction", Direction.BLUE)
    fields.setdefault("invoice_type", InvoiceType.DIGITAL_NORMAL)
    fields.setdefault("company_code", "W92")
    fields.setdefault("seller", Party(name="上海某某集团有限公司", tax_number=VALID_USCC))
    fields.setdefault("buyer", Party(name="某某电子商务中心"))
    return Application(lines=lines, amount=amount, tax=tax, **fields)


def red_app(lines: Any = None, **fields: Any) -> Application:
    fields.setdefault("direction", Direction.RED)
    fields.setdefault(
        "red",
        RedReference(
            blue_invoice_number="24312000000012345678",
            reason=RedReason.ISSUING_ERROR,
            confirmation_uuid="9676035b-60b9-4d2b-912e-c1d1793df28f",
        ),
    )
    return mk_app([red_line(0)] if lines is None else lines, **fields)


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if not p.warning]


def at(problems: list[Problem], *path: str | int) -> list[Problem]:
    return [p for p in problems if p.path == path]


def only_problem(app: Application, *path: str | int, policy: RulePolicy = POLICY) -> Problem:
    """The application has exactly one problem, at ``path``."""
    problems = validate_application(app, policy)
    assert [p.path for p in problems] == [path], problems
    return problems[0]


def only_error(app: Application, *path: str | int, policy: RulePolicy = POLICY) -> Problem:
    problem = only_problem(app, *path, policy=policy)
    assert not problem.warning
    return problem


def test_baselines_are_clean() -> None:
    assert validate_application(mk_app(), POLICY) == []
    assert validate_application(red_app(), POLICY) == []


# --------------------------------------------------------------------------- money helpers


def test_constants() -> None:
    assert (PRICE_X_QTY, LINES_VS_TOTAL, LINE_TAX, INVOICE_TAX) == (
        D("0.01"),
        D("0.01"),
        D("0.06"),
        D("1.27"),
    )
    assert D("0.13") in POLICY.tax_rates and D("0.17") in POLICY.retired_tax_rates
    assert frozenset(limits.DEFAULT_TAX_RATES) == POLICY.tax_rates
    assert not POLICY.strict_tax_numbers and POLICY.max_lines == 5000 and POLICY.recommended_lines == 2000


@pytest.mark.parametrize(
    ("incl", "rate", "amount", "tax"),
    [
        ("48.0", "0.13", "42.48", "5.52"),
        ("-38.00", "0.13", "-33.63", "-4.37"),  # half up, away from zero
        ("6000.0", "0.13", "5309.73", "690.27"),
        ("5165.00", "0.13", "4570.80", "594.20"),  # seed 001's example line
        ("100.00", "0", "100.00", "0.00"),
        ("1.06", "0.06", "1.00", "0.06"),
    ],
)
def test_split_tax_inclusive(incl: str, rate: str, amount: str, tax: str) -> None:
    got = split_tax_inclusive(D(incl), D(rate))
    assert got == (D(amount), D(tax))
    assert got[0] + got[1] == D(incl)
    assert all(isinstance(v, Decimal) for v in got)


@pytest.mark.parametrize(
    ("amount", "rate", "tax"),
    [
        ("0.50", "0.13", "0.07"),  # 0.065: half up (banker's rounding would give 0.06)
        ("4570.80", "0.13", "594.20"),
        ("-33.63", "0.13", "-4.37"),
        ("100.00", "0.015", "1.50"),
        ("0.10", "0.05", "0.01"),  # 0.005 -> 0.01
    ],
)
def test_tax_for_rounds_half_up(amount: str, rate: str, tax: str) -> None:
    assert tax_for(D(amount), D(rate)) == D(tax)


def test_totals() -> None:
    assert totals([]) == (D(0), D(0))
    assert totals([mk_line(0, "1.10", "0.14"), mk_line(1, "-0.10", "-0.01", nature=DISCOUNT)]) == (
        D("1.00"),
        D("0.13"),
    )


# --------------------------------------------------------------------------- seed 004


SEED_004 = (("48.0", DISCOUNTED), ("-38.00", DISCOUNT), ("48.0", DISCOUNTED), ("-38.00", DISCOUNT))


def seed_004_lines() -> list[Line]:
    rows = [*SEED_004, ("6000.0", NORMAL)]
    return [
        incl_line(i, incl, nature=nature, goods_name="CA7151HA6T智联旗悦版(2023款)", tax_code="1090305010300000000")
        for i, (incl, nature) in enumerate(rows)
    ]


def test_seed_004_lines_give_the_documented_totals_and_pass() -> None:
    lines = seed_004_lines()
    assert [line.nature for line in lines] == [DISCOUNTED, DISCOUNT, DISCOUNTED, DISCOUNT, NORMAL]
    assert totals(lines) == (D("5327.43"), D("692.57"))
    app = mk_app(
        lines,
        invoice_type=InvoiceType.DIGITAL_SPECIAL,
        buyer=Party(name="一汽某某公司", tax_number=VALID_USCC),
    )
    assert validate_application(app, POLICY) == []
    # The example's own header is 0.01 off the lines: within tolerance.
    assert (
        check_header_totals(
            lines,
            amount=D("5327.44"),
            tax=D("692.56"),
            amount_incl_tax=D("6020.0"),
            prices_include_tax=True,
        )
        == []
    )


# --------------------------------------------------------------------------- header totals


HEADER_LINES = [mk_line(0, "100.00", "13.00"), mk_line(1, "200.00", "26.00")]  # 300.00 / 39.00


@pytest.mark.parametrize(
    ("field", "value", "incl", "ok", "figures"),
    [
        ("amount", "300.01", True, True, ()),
        ("amount", "299.99", True, True, ()),
        ("amount", "300.02", True, False, ("300.02", "300.00", "0.02", "0.01")),
        ("amount", "299.98", False, False, ("299.98", "300.00", "0.02")),
        ("tax", "40.27", True, True, ()),
        ("tax", "37.73", True, True, ()),
        ("tax", "40.28", True, False, ("40.28", "39.00", "1.28", "1.27")),
        ("tax", "37.72", True, False, ("37.72", "39.00", "1.28")),
        ("amount_incl_tax", "339.01", True, True, ()),
        ("amount_incl_tax", "339.02", True, False, ("339.02", "339.00", "0.02", "0.01")),
        ("amount_incl_tax", "340.28", False, True, ()),
        ("amount_incl_tax", "337.72", False, True, ()),
        ("amount_incl_tax", "340.29", False, False, ("340.29", "339.00", "1.29", "1.28")),
    ],
)
def test_check_header_totals(field: str, value: str, incl: bool, ok: bool, figures: tuple[str, ...]) -> None:
    sent: dict[str, Decimal | None] = {"amount": None, "tax": None, "amount_incl_tax": None}
    sent[field] = D(value)
    problems = check_header_totals(HEADER_LINES, prices_include_tax=incl, **sent)  # type: ignore[arg-type]
    if ok:
        assert problems == []
    else:
        assert [p.path for p in problems] == [(field,)]
        assert not problems[0].warning
        for figure in figures:
            assert figure in problems[0].message


def test_check_header_totals_reports_every_figure_and_accepts_none() -> None:
    assert check_header_totals(HEADER_LINES, amount=None, tax=None, amount_incl_tax=None, prices_include_tax=True) == []
    problems = check_header_totals(
        iter(HEADER_LINES), amount=D(1), tax=D(1), amount_incl_tax=D(1), prices_include_tax=False
    )
    assert [p.path for p in problems] == [("amount",), ("tax",), ("amount_incl_tax",)]


def test_header_tax_is_measured_against_amount_x_rate_not_line_taxes() -> None:
    # Line taxes sum to 39.06 but amount x rate is 39.00: a header of 40.33 is 1.33 off.
    lines = [mk_line(0, "100.00", "13.06"), mk_line(1, "200.00", "26.00")]
    problems = check_header_totals(lines, amount=None, tax=D("40.33"), amount_incl_tax=None, prices_include_tax=True)
    assert [p.path for p in problems] == [("tax",)]
    assert "39.00" in problems[0].message


# --------------------------------------------------------------------------- per line


@pytest.mark.parametrize(
    ("tax", "ok", "figures"),
    [
        ("13.06", True, ()),
        ("12.94", True, ()),
        ("13.07", False, ("13.07", "100.00", "0.13", "13.00", "0.07", "0.06")),
        ("12.93", False, ("12.93", "13.00", "0.07")),
    ],
)
def test_line_tax_tolerance(tax: str, ok: bool, figures: tuple[str, ...]) -> None:
    app = mk_app([mk_line(0), mk_line(4, "100.00", tax)])
    if ok:
        assert validate_application(app, POLICY) == []
    else:
        problem = only_error(app, "lines", 4, "tax")
        for figure in figures:
            assert figure in problem.message


@pytest.mark.parametrize(
    ("incl", "quantity", "unit_price", "amount", "tax", "path", "figures"),
    [
        # tax-inclusive prices: compared with amount + tax
        (True, "1", "113.01", "100.00", "13.00", None, ()),
        (True, "1", "112.99", "100.00", "13.00", None, ()),
        (True, "3", "37.67", "100.00", "13.00", None, ()),  # 113.01
        (True, "1", "113.02", "100.00", "13.00", "amount_incl_tax", ("113.02", "113.00", "0.02", "0.01")),
        (True, "1", "112.98", "100.00", "13.00", "amount_incl_tax", ("112.98", "113.00", "0.02")),
        (True, "3", "37.68", "100.00", "13.00", "amount_incl_tax", ("113.04", "113.00", "0.04")),
        # tax-exclusive prices: compared with amount
        (False, "1", "100.01", "100.00", "13.00", None, ()),
        (False, "2.5", "40.004", "100.00", "13.00", None, ()),
        (False, "1", "100.02", "100.00", "13.00", "amount", ("100.02", "100.00", "0.02")),
        (False, "1", "113.00", "100.00", "13.00", "amount", ("113.00", "100.00", "13.00")),
        (False, "0.5", "95.98", "48.00", "6.24", None, ()),  # 47.99
        (False, "0.5", "95.96", "48.00", "6.24", "amount", ("47.98", "48.00", "0.02")),
    ],
)
def test_price_x_quantity_tolerance(
    incl: bool,
    quantity: str,
    unit_price: str,
    amount: str,
    tax: str,
    path: str | None,
    figures: tuple[str, ...],
) -> None:
    app = mk_app([mk_line(2, amount, tax, quantity=D(quantity), unit_price=D(unit_price))], prices_include_tax=incl)
    if path is None:
        assert validate_application(app, POLICY) == []
    else:
        problem = only_error(app, "lines", 2, path)
        assert problem.message.startswith("unit price x quantity = ")
        for figure in figures:
            assert figure in problem.message


def test_price_x_quantity_message_wording() -> None:
    app = mk_app([mk_line(0, "47.00", "0.00", "0", quantity=D(1), unit_price=D("48.0"))], prices_include_tax=False)
    problem = only_error(app, "lines", 0, "amount")
    assert (
        problem.message == "unit price x quantity = 48.00 differs from the line amount 47.00 by 1.00 (tolerance 0.01)"
    )


@pytest.mark.parametrize(
    ("quantity", "unit_price", "path"),
    [
        (None, D("113"), ("lines", 1, "quantity")),
        (D(1), None, ("lines", 1, "unit_price")),
        (None, None, None),
    ],
)
def test_quantity_and_unit_price_both_or_neither(quantity: Any, unit_price: Any, path: Any) -> None:
    app = mk_app([mk_line(1, quantity=quantity, unit_price=unit_price)])
    if path is None:
        assert validate_application(app, POLICY) == []
    else:
        only_error(app, *path)


@pytest.mark.parametrize(
    ("rate", "direction", "ok"),
    [
        ("0.13", Direction.BLUE, True),
        ("0.015", Direction.BLUE, True),
        ("0.130", Direction.BLUE, True),  # same rate, other exponent
        ("0.12", Direction.BLUE, False),
        ("0.17", Direction.BLUE, False),  # retired: red only
        ("0.10", Direction.BLUE, False),
        ("0.17", Direction.RED, True),
        ("0.04", Direction.RED, True),
        ("0.12", Direction.RED, False),
    ],
)
def test_tax_rate_must_be_in_the_list(rate: str, direction: Direction, ok: bool) -> None:
    r = D(rate)
    if direction == Direction.BLUE:
        app = mk_app([mk_line(3, "100.00", tax_for(D(100), r), r)])
    else:
        app = red_app([red_line(3, "-100.00", str(tax_for(D(-100), r)), rate=r)])
    if ok:
        assert validate_application(app, POLICY) == []
    else:
        problem = only_error(app, "lines", 3, "tax_rate")
        assert f"tax rate {r.normalize():f} is not allowed" in problem.message
        assert "0.13" in problem.message and "0.015" in problem.message  # lists the allowed rates
        listed = problem.message.split("allowed rates: ")[1].split(", ")
        assert ("0.17" in listed) == (direction == Direction.RED)  # retired rates: red only
        retired_on_blue = direction == Direction.BLUE and r in POLICY.retired_tax_rates
        assert ("accepted only on red invoices" in problem.message) == retired_on_blue


def test_rate_list_is_configurable() -> None:
    policy = RulePolicy(tax_rates=frozenset({D("0.06")}), retired_tax_rates=frozenset())
    app = mk_app([mk_line(0)])
    problem = only_error(app, "lines", 0, "tax_rate", policy=policy)
    assert "allowed rates: 0.06" in problem.message


@pytest.mark.parametrize(("flag", "ok"), [("3", True), ("1", True), ("0", True), (None, False), ("", False)])
def test_zero_rate_needs_a_flag(flag: str | None, ok: bool) -> None:
    app = mk_app([mk_line(0, "100.00", "0.00", "0", zero_rate_flag=flag)])
    if ok:
        assert validate_application(app, POLICY) == []
    else:
        only_error(app, "lines", 0, "zero_rate_flag")


@pytest.mark.parametrize(
    ("amount", "tax", "path"),
    [
        ("100.005", "13.00", "amount"),
        ("100.00", "13.001", "tax"),
        ("100.000", "13.0", None),  # trailing zeros are fine
    ],
)
def test_money_has_at_most_two_decimals(amount: str, tax: str, path: str | None) -> None:
    app = mk_app([mk_line(0, amount, tax, quantity=None, unit_price=None)])
    if path is None:
        assert validate_application(app, POLICY) == []
    else:
        problem = only_error(app, "lines", 0, path)
        assert "more than 2 decimals" in problem.message


def test_goods_name_is_required() -> None:
    only_error(mk_app([mk_line(5, goods_name=" ")]), "lines", 5, "goods_name")


# --------------------------------------------------------------------------- invoice level


@pytest.mark.parametrize(("last_tax", "ok"), [("13.01", True), ("12.99", True), ("13.02", False)])
def test_invoice_tax_tolerance(last_tax: str, ok: bool) -> None:
    # 21 lines each 0.06 over amount x rate (within the per-line tolerance) plus one more line:
    # 1.27 (13.01), 1.25 (12.99), 1.28 (13.02) over in total.
    lines = [mk_line(i, "100.00", "13.06") for i in range(21)] + [mk_line(21, "100.00", last_tax)]
    app = mk_app(lines)
    if ok:
        assert validate_application(app, POLICY) == []
    else:
        problem = only_error(app, "tax")
        for figure in ("287.28", "286.00", "1.28", "1.27"):
            assert figure in problem.message


def test_invoice_tax_tolerance_negative_side() -> None:
    lines = [mk_line(i, "100.00", "12.94") for i in range(21)] + [mk_line(21, "100.00", "12.98")]
    only_error(mk_app(lines), "tax")  # 1.28 under


# --------------------------------------------------------------------------- line count


@pytest.mark.parametrize(
    ("count", "path", "warning"),
    [
        (0, ("lines",), False),
        (1, None, None),
        (2000, None, None),
        (2001, ("lines",), True),
        (5000, ("lines",), True),
        (5001, ("lines",), False),
    ],
)
def test_line_count(count: int, path: Any, warning: bool | None) -> None:
    line = mk_line(0, "1.00", "0.13")
    app = mk_app([line.model_copy(update={"index": i}) for i in range(count)])
    problems = validate_application(app, POLICY)
    if path is None:
        assert problems == []
    else:
        assert [(p.path, p.warning) for p in problems] == [(path, warning)]
        if count:
            assert str(count) in problems[0].message


def test_line_count_limits_are_configurable() -> None:
    policy = RulePolicy(
        tax_rates=POLICY.tax_rates,
        retired_tax_rates=POLICY.retired_tax_rates,
        max_lines=3,
        recommended_lines=1,
    )
    two = mk_app([mk_line(0), mk_line(1)])
    four = mk_app([mk_line(i) for i in range(4)])
    assert only_problem(two, "lines", policy=policy).warning
    assert not only_problem(four, "lines", policy=policy).warning


# --------------------------------------------------------------------------- discount lines


def pair(index: int = 0, discount: str = "-10.00", discount_tax: str = "-1.30", **discount_fields: Any) -> list[Line]:
    return [
        mk_line(index, nature=DISCOUNTED),
        mk_line(index + 1, discount, discount_tax, nature=DISCOUNT, **discount_fields),
    ]


def test_a_valid_discount_pair_passes() -> None:
    assert validate_application(mk_app([mk_line(0), *pair(1), mk_line(3)]), POLICY) == []


def test_discount_may_equal_the_discounted_amount() -> None:
    assert validate_application(mk_app([*pair(0, "-100.00", "-13.00"), mk_line(2)]), POLICY) == []


@pytest.mark.parametrize(
    ("lines", "path"),
    [
        # A discount line must immediately follow a discounted line.
        ([mk_line(0, "-10.00", "-1.30", nature=DISCOUNT), mk_line(1)], ("lines", 0, "nature")),
        ([mk_line(0), mk_line(1, "-10.00", "-1.30", nature=DISCOUNT)], ("lines", 1, "nature")),
        ([*pair(0), mk_line(2, "-10.00", "-1.30", nature=DISCOUNT)], ("lines", 2, "nature")),
        # A discounted line must be immediately followed by its discount line.
        ([mk_line(0), mk_line(1, nature=DISCOUNTED)], ("lines", 1, "nature")),
        ([mk_line(0, nature=DISCOUNTED), mk_line(1)], ("lines", 0, "nature")),
        # Same goods name, tax code, rate, preferential policy.
        ([*pair(0, goods_name="别的商品")], ("lines", 1, "goods_name")),
        ([*pair(0, tax_code="1090305010300000000")], ("lines", 1, "tax_code")),
        ([*pair(0, preferential_policy="免税")], ("lines", 1, "preferential_policy")),
        ([*pair(0, discount="-10.00", discount_tax="-0.90", rate="0.09")], ("lines", 1, "tax_rate")),
        # Negative, and no more than the discounted line.
        ([*pair(0, discount="0.00", discount_tax="0.00")], ("lines", 1, "amount")),
        ([*pair(0, discount="-100.01", discount_tax="-13.00"), mk_line(2)], ("lines", 1, "amount")),
        # No specification, unit, quantity or unit price.
        ([*pair(0, specification="X1")], ("lines", 1, "specification")),
        ([*pair(0, unit="台")], ("lines", 1, "unit")),
    ],
)
def test_discount_pairing_errors(lines: list[Line], path: tuple[Any, ...]) -> None:
    only_error(mk_app(lines), *path)


def test_discount_pairing_is_by_position_and_names_line_indexes() -> None:
    # The caller's indexes need not be positions: paths use line.index.
    lines = [mk_line(10), mk_line(30, "-10.00", "-1.30", nature=DISCOUNT)]
    only_error(mk_app(lines), "lines", 30, "nature")


def test_discount_line_without_quantity_and_price() -> None:
    problems = validate_application(mk_app(pair(0, quantity=D(1), unit_price=D("-11.30"))), POLICY)
    assert sorted(p.path for p in problems) == [("lines", 1, "quantity"), ("lines", 1, "unit_price")]


def test_discount_exceeding_the_line_names_both_figures() -> None:
    problem = only_error(mk_app([*pair(0, "-100.01", "-13.00"), mk_line(2)]), "lines", 1, "amount")
    assert "100.01" in problem.message and "100.00" in problem.message


def test_positive_discount_line_names_the_figure() -> None:
    problems = validate_application(mk_app(pair(0, "10.00", "1.30")), POLICY)
    assert {p.path for p in problems} == {("lines", 1, "amount"), ("lines", 1, "tax")}
    assert "10.00" in at(problems, "lines", 1, "amount")[0].message


# --------------------------------------------------------------------------- red / blue


def test_red_needs_a_reference() -> None:
    problems = validate_application(red_app(red=None), POLICY)
    assert sorted(p.path for p in problems) == [("red", "blue_invoice_number"), ("red", "confirmation_uuid")]
    assert not any(p.warning for p in problems)


@pytest.mark.parametrize(
    ("invoice_type", "reference", "path"),
    [
        (InvoiceType.DIGITAL_NORMAL, {"blue_invoice_number": ""}, ("red", "blue_invoice_number")),
        (InvoiceType.DIGITAL_NORMAL, {"confirmation_uuid": None}, ("red", "confirmation_uuid")),
        (InvoiceType.DIGITAL_NORMAL, {"confirmation_uuid": " "}, ("red", "confirmation_uuid")),
        (InvoiceType.DIGITAL_NORMAL, {"confirmation_uuid": None, "confirmation_number": "4403"}, None),
        (InvoiceType.VAT_NORMAL_ELECTRONIC, {"confirmation_uuid": None}, None),  # legacy: no form
        (InvoiceType.VAT_NORMAL_ELECTRONIC, {"blue_invoice_number": ""}, ("red", "blue_invoice_number")),
    ],
)
def test_red_reference_fields(invoice_type: InvoiceType, reference: dict[str, Any], path: Any) -> None:
    fields = {
        "blue_invoice_number": "24312000000012345678",
        "confirmation_uuid": "9676035b-60b9-4d2b-912e-c1d1793df28f",
        **reference,
    }
    app = red_app(invoice_type=invoice_type, red=RedReference(**fields))
    if path is None:
        assert validate_application(app, POLICY) == []
    else:
        only_error(app, *path)


@pytest.mark.parametrize(
    ("lines", "path"),
    [
        ([red_line(0), red_line(1, "10.00", "0.00", rate="0", quantity=D(1))], ("lines", 1, "amount")),
        (
            [red_line(0), red_line(1, "-0.10", "0.01", quantity=D(-1), unit_price=D("0.09"))],
            ("lines", 1, "tax"),
        ),
        ([red_line(0, "0.00", "0.00", quantity=None)], ("amount_incl_tax",)),
    ],
)
def test_red_amounts_are_negative(lines: list[Line], path: tuple[Any, ...]) -> None:
    only_error(red_app(lines), *path)


def test_red_total_must_be_negative_even_with_a_mix() -> None:
    lines = [red_line(0), red_line(1, "100.00", "13.00", quantity=D(1))]
    problems = validate_application(red_app(lines), POLICY)
    assert sorted(p.path for p in problems) == [
        ("amount_incl_tax",),
        ("lines", 1, "amount"),
        ("lines", 1, "tax"),
    ]


def test_red_carries_no_discount_lines() -> None:
    lines = [
        red_line(0, nature=DISCOUNTED),
        mk_line(1, "-10.00", "-1.30", nature=DISCOUNT),
    ]
    problems = validate_application(red_app(lines), POLICY)
    assert sorted(p.path for p in problems) == [("lines", 0, "nature"), ("lines", 1, "nature")]


@pytest.mark.parametrize(("quantity", "unit_price", "field"), [(D(-1), D(113), "quantity"), (None, None, None)])
def test_red_sales_allowance_has_no_quantity_or_price(quantity: Any, unit_price: Any, field: str | None) -> None:
    reference = RedReference(
        blue_invoice_number="24312000000012345678",
        reason=RedReason.SALES_ALLOWANCE,
        confirmation_uuid="u-1",
    )
    app = red_app([red_line(0, quantity=quantity, unit_price=unit_price)], red=reference)
    if field is None:
        assert validate_application(app, POLICY) == []
    else:
        only_error(app, "lines", 0, field)


def test_blue_carries_no_red_reference() -> None:
    only_error(mk_app(red=RedReference(blue_invoice_number="24312000000012345678")), "red")


@pytest.mark.parametrize(
    ("lines", "paths"),
    [
        (
            [mk_line(0), mk_line(1, "-10.00", "-1.30", quantity=D(-1))],
            [("lines", 1, "amount"), ("lines", 1, "tax")],
        ),
        (
            [mk_line(0), mk_line(1, "0.10", "-0.04", quantity=D(1), unit_price=D("0.06"))],
            [("lines", 1, "tax")],
        ),
        ([mk_line(0, "0.00", "0.00", quantity=None)], [("amount_incl_tax",)]),
        (
            [mk_line(0, "-100.00", "-13.00", quantity=D(-1))],
            [("amount_incl_tax",), ("lines", 0, "amount"), ("lines", 0, "tax")],
        ),
        ([mk_line(0, nature=DISCOUNTED), mk_line(1, "-10.00", "-1.30", nature=DISCOUNT)], []),
    ],
)
def test_blue_signs(lines: list[Line], paths: list[tuple[Any, ...]]) -> None:
    problems = validate_application(mk_app(lines), POLICY)
    assert sorted(p.path for p in problems) == sorted(paths)
    assert not any(p.warning for p in problems)


# --------------------------------------------------------------------------- parties


@pytest.mark.parametrize(
    ("tax_number", "lenient", "strict"),
    [
        (VALID_USCC, None, None),
        (VALID_N2_USCC, None, None),  # letters in the registration-authority position
        ("9122222222222A0390", "warning", "error"),  # seed 004's enum value: check char fails
        (WRONG_CHECK_USCC, "warning", "error"),
        ("91310000631757739B", "warning", "error"),  # seed 001's buyer
        ("N2370000MA3C5U6X0" + ("1" if VALID_N2_USCC[-1] != "1" else "2"), "warning", "error"),
        ("dddddmarkForTax", "error", "error"),  # seed 004's example buyer
        ("91310000631757739e", "error", "error"),  # lowercase
        ("9131000063175773IE", "error", "error"),  # I is not in the alphabet
        ("913100006317577O9E", "error", "error"),  # O neither
        ("91A10000631757739E", "error", "error"),  # division code has a letter
        ("９1310000631757739E", "error", "error"),  # full-width digit
        ("339901999999199", None, None),  # 15: Nuonuo sandbox style
        ("1234567890ABCDEFG", None, None),  # 17
        ("12345678901234567890", None, None),  # 20
        ("33990199999919a", "error", "error"),  # legacy lowercase
        ("3399019999-99199", "error", "error"),  # 16
        ("3399019999991", "error", "error"),  # 13
        ("9131000063175773 9E", "error", "error"),  # 19 with a space
    ],
)
@pytest.mark.parametrize("role", ["buyer", "seller"])
def test_tax_numbers(role: str, tax_number: str, lenient: str | None, strict: str | None) -> None:
    party = Party(name="某某公司", tax_number=tax_number)
    app = mk_app(**{role: party})
    for policy, expected in ((POLICY, lenient), (STRICT, strict)):
        problems = validate_application(app, policy)
        if expected is None:
            assert problems == []
        else:
            problem = only_problem(app, role, "tax_number", policy=policy)
            assert problem.warning == (expected == "warning")
            assert tax_number not in problem.message  # may be a person's ID-card number


def test_checksum_warning_names_the_expected_character() -> None:
    problem = only_problem(mk_app(buyer=Party(name="买方", tax_number=WRONG_CHECK_USCC)), "buyer", "tax_number")
    assert problem.warning
    assert repr(VALID_USCC[-1]) in problem.message and repr(WRONG_CHECK_USCC[-1]) in problem.message


def test_length_error_names_the_length() -> None:
    problem = only_error(mk_app(buyer=Party(name="买方", tax_number="A" * 16)), "buyer", "tax_number")
    assert "16 characters" in problem.message


@pytest.mark.parametrize(
    ("invoice_type", "tax_number", "ok"),
    [
        (InvoiceType.DIGITAL_SPECIAL, None, False),
        (InvoiceType.DIGITAL_SPECIAL, "", False),
        (InvoiceType.VAT_SPECIAL_PAPER, None, False),
        (InvoiceType.VAT_SPECIAL_ELECTRONIC, None, False),
        (InvoiceType.DIGITAL_SPECIAL, VALID_USCC, True),
        (InvoiceType.DIGITAL_NORMAL, None, True),
        (InvoiceType.VAT_NORMAL_ELECTRONIC, "", True),
        (InvoiceType.VAT_NORMAL_PAPER, None, True),
    ],
)
def test_buyer_tax_number_required_on_special(invoice_type: InvoiceType, tax_number: str | None, ok: bool) -> None:
    app = mk_app(invoice_type=invoice_type, buyer=Party(name="买方", tax_number=tax_number))
    if ok:
        assert validate_application(app, POLICY) == []
    else:
        only_error(app, "buyer", "tax_number")


@pytest.mark.parametrize(("role", "name"), [("seller", ""), ("seller", "  "), ("buyer", ""), ("buyer", "\u3000")])
def test_party_names_are_required(role: str, name: str) -> None:
    party = Party(name=name, tax_number=VALID_USCC if role == "seller" else None)
    only_error(mk_app(**{role: party}), role, "name")


# --------------------------------------------------------------------------- text


BAD_CHARS = [
    ("\u0007", "U+0007", "control character"),
    ("\u200b", "U+200B", "format character"),
    ("\ue000", "U+E000", "private-use character"),
    ("\u0378", "U+0378", "unassigned code point"),
    ("\ud800", "U+D800", "surrogate"),
]


def _place(text: str, where: str) -> tuple[Application, tuple[Any, ...]]:
    base_red = RedReference(blue_invoice_number="24312000000012345678", confirmation_uuid="u-1")
    places: dict[str, tuple[Any, tuple[Any, ...]]] = {
        "remark": (lambda: mk_app(remark=text), ("remark",)),
        "source_system": (lambda: mk_app(source_system=text), ("source_system",)),
        "business_type_name": (lambda: mk_app(business_type_name=text), ("business_type_name",)),
        "buyer.name": (lambda: mk_app(buyer=Party(name=text)), ("buyer", "name")),
        "buyer.email": (lambda: mk_app(buyer=Party(name="买方", email=text)), ("buyer", "email")),
        "seller.address": (
            lambda: mk_app(seller=Party(name="卖方", tax_number=VALID_USCC, address=text)),
            ("seller", "address"),
        ),
        "line.goods_name": (
            lambda: mk_app([mk_line(0), mk_line(7, goods_name=text)]),
            ("lines", 7, "goods_name"),
        ),
        "line.unit": (lambda: mk_app([mk_line(3, unit=text)]), ("lines", 3, "unit")),
        "line.extras": (
            lambda: mk_app([mk_line(2, extras={"vehicle": {"vin": [text]}})]),
            ("lines", 2, "extras", "vehicle", "vin", 0),
        ),
        "app.extras": (lambda: mk_app(extras={"createUser": text}), ("extras", "createUser")),
        "special": (
            lambda: mk_app(special=SpecialBusiness(building=[{"address": "ok"}, {"address": text}])),
            ("special", "building", 1, "address"),
        ),
        "red": (
            lambda: red_app(red=base_red.model_copy(update={"blue_invoice_date": text})),
            ("red", "blue_invoice_date"),
        ),
    }
    build, path = places[where]
    return build(), path


@pytest.mark.parametrize(("char", "code", "kind"), BAD_CHARS)
@pytest.mark.parametrize(
    "where",
    [
        "remark",
        "source_system",
        "business_type_name",
        "buyer.name",
        "buyer.email",
        "seller.address",
        "line.goods_name",
        "line.unit",
        "line.extras",
        "app.extras",
        "special",
        "red",
    ],
)
def test_control_and_invisible_characters_are_rejected(char: str, code: str, kind: str, where: str) -> None:
    text = f"张三{char}abc@example.com"
    app, path = _place(text, where)
    problem = only_error(app, *path)
    assert f"contains {code} ({kind}) at position 3" in problem.message
    assert "abc@example.com" not in problem.message  # never the value itself


@pytest.mark.parametrize("where", ["remark", "buyer.email", "line.extras", "special", "red"])
def test_ordinary_text_passes(where: str) -> None:
    app, _ = _place("北京市昌平区 101楼620室 010-58688395 (a@b.cn) ｜全角；€", where)
    assert validate_application(app, POLICY) == []


@pytest.mark.parametrize("text", ["a\nb", "a\tb", "\ufeffa", "a\u200db", "\U000e0001"])
def test_check_text_categories(text: str) -> None:
    problem = check_text(("remark",), text)
    assert problem is not None and problem.path == ("remark",) and not problem.warning


def test_check_text_accepts_chinese_and_emoji_free_text() -> None:
    assert check_text(("x",), "开票申请单 No.1 ¥5,165.00") is None


# Separators are unprintable but allowed (U+3000, U+00A0, U+2028): the fast path must fall through.
_EDGE_CHARACTERS = ["a", "中", " ", "\u3000", "\u00a0", "\u2028", "\u2029", "\n", "\u200b", "\ue000", "\u0378",
                    "\ud800", "\U000e0001", "\ufeff", "€"]  # fmt: skip


@given(st.text(alphabet=st.characters(exclude_categories=()) | st.sampled_from(_EDGE_CHARACTERS), max_size=12))
def test_check_text_refuses_exactly_the_control_and_invisible_categories(text: str) -> None:
    bad = [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs", "Cn")]
    problem = check_text(("remark",), text)
    assert (problem is not None) == bool(bad)
    if bad:
        assert f"U+{ord(bad[0]):04X}" in problem.message


def test_every_problem_is_reported() -> None:
    app = mk_app(
        [
            mk_line(0, "100.00", "14.00", "0.12", unit_price=D(120), goods_name="a\u200bb"),
            mk_line(1, "-10.00", "-1.30", nature=DISCOUNT),
        ],
        buyer=Party(name="", tax_number="dddddmarkForTax"),
        remark="\u0007",
    )
    paths = {p.path for p in validate_application(app, POLICY)}
    assert {
        ("lines", 0, "tax"),
        ("lines", 0, "tax_rate"),
        ("lines", 0, "amount_incl_tax"),
        ("lines", 0, "goods_name"),
        ("lines", 1, "nature"),
        ("buyer", "name"),
        ("buyer", "tax_number"),
        ("remark",),
    } <= paths


# --------------------------------------------------------------------------- GBK byte limits


def test_gbk_length_and_byte_limit() -> None:
    assert gbk_length("笔记本电脑") == 10
    assert gbk_length("ab笔") == 4
    assert check_byte_limit(("lines", 0, "goods_name"), "笔" * 46, 92) is None
    assert check_byte_limit(("lines", 0, "goods_name"), None, 92) is None
    problem = check_byte_limit(("lines", 0, "goods_name"), "笔" * 46 + "a", 92)
    assert problem is not None and problem.path == ("lines", 0, "goods_name")
    assert "93 bytes" in problem.message and "92" in problem.message and "1 too long" in problem.message


# --------------------------------------------------------------------------- discount shapes


def test_unfold_inline_discount_seed_001_shape() -> None:
    line = mk_line(
        4,
        "4570.80",
        "594.20",
        nature=NORMAL,
        specification="X1",
        unit="台",
        preferential_policy="免税",
        material_code="M1",
    )
    discounted, discount = unfold_inline_discount(line, discount_amount=D("88.50"), discount_tax=D("11.50"))
    assert discounted == line.model_copy(update={"nature": DISCOUNTED})
    assert discount.nature == DISCOUNT and discount.index == discounted.index == 4
    assert (discount.amount, discount.tax) == (D("-88.50"), D("-11.50"))
    assert (discount.goods_name, discount.tax_code, discount.tax_rate, discount.preferential_policy) == (
        line.goods_name,
        line.tax_code,
        line.tax_rate,
        line.preferential_policy,
    )
    assert (discount.specification, discount.unit, discount.quantity, discount.unit_price) == (None,) * 4
    assert validate_application(mk_app([discounted, discount]), POLICY) == []
    assert fold_discounts([discounted, discount]) == [(discounted, D("88.50"), D("11.50"))]


def test_fold_discounts_seed_004_lines() -> None:
    folded = fold_discounts(seed_004_lines())
    assert [(line.index, amount, tax) for line, amount, tax in folded] == [
        (0, D("33.63"), D("4.37")),
        (2, D("33.63"), D("4.37")),
        (4, None, None),
    ]


@pytest.mark.parametrize(
    "lines",
    [
        [mk_line(0, "-1.00", "-0.13", nature=DISCOUNT)],
        [mk_line(0, nature=DISCOUNTED)],
        [mk_line(0, nature=DISCOUNTED), mk_line(1)],
    ],
)
def test_fold_discounts_rejects_broken_pairs(lines: list[Line]) -> None:
    with pytest.raises(ValueError, match="line"):
        fold_discounts(lines)


# --------------------------------------------------------------------------- properties

RATES = sorted(limits.DEFAULT_TAX_RATES)
cents = st.integers(min_value=1, max_value=10**9)  # 0.01 .. 10^7


@st.composite
def line_specs(draw: st.DrawFn) -> tuple[int, Decimal, Decimal, int | None]:
    """(cents of the line, rate, quantity, discount cents or None)."""
    total = draw(cents)
    rate = draw(st.sampled_from(RATES))
    quantity = draw(st.sampled_from([D(1), D(2), D(3), D("0.5"), D("7.25"), D(1000)]))
    discount = None
    if total >= 2 and draw(st.booleans()):
        discount = draw(st.integers(min_value=1, max_value=total - 1))
    return total, rate, quantity, discount


def build_lines(specs: list[Any], incl: bool, stride: int = 1) -> list[Line]:
    """Lines as an intake builds them: from tax-inclusive or -exclusive amounts."""
    lines: list[Line] = []
    for pos, (total_cents, rate, quantity, discount_cents) in enumerate(specs):
        figure = D(total_cents) / 100
        if incl:
            amount, tax = split_tax_inclusive(figure, rate)
        else:
            amount, tax = figure, tax_for(figure, rate)
        price = (figure / quantity).quantize(D("0.00000001"))
        line = Line(
            index=5 + pos * stride,
            goods_name="商品",
            tax_code="1090509010000000000",
            quantity=quantity,
            unit_price=price,
            amount=amount,
            tax=tax,
            tax_rate=rate,
            zero_rate_flag="3" if rate == 0 else None,
        )
        if discount_cents is None:
            lines.append(line)
            continue
        d = D(discount_cents) / 100
        if incl:
            d_amount, d_tax = split_tax_inclusive(d, rate)
        else:
            d_amount, d_tax = d, tax_for(d, rate)
        lines.extend(unfold_inline_discount(line, discount_amount=d_amount, discount_tax=d_tax))
    return lines


PROPERTY = settings(max_examples=200, deadline=None)
specs_lists = st.lists(line_specs(), min_size=1, max_size=25)


@PROPERTY
@given(specs=specs_lists, incl=st.booleans())
def test_property_lines_built_by_the_rules_pass(specs: list[Any], incl: bool) -> None:
    app = mk_app(build_lines(specs, incl), prices_include_tax=incl)
    assert errors(validate_application(app, POLICY)) == []


@PROPERTY
@given(
    specs=specs_lists,
    incl=st.booleans(),
    pick=st.integers(min_value=0),
    delta=st.decimals(min_value=D("0.07"), max_value=D(1000), places=2),
    negative=st.booleans(),
)
def test_property_a_perturbed_line_tax_is_caught(
    specs: list[Any], incl: bool, pick: int, delta: Decimal, negative: bool
) -> None:
    lines = build_lines(specs, incl, stride=3)
    target = pick % len(lines)
    victim = lines[target]
    lines[target] = victim.model_copy(update={"tax": victim.tax + (-delta if negative else delta)})
    problems = errors(validate_application(mk_app(lines, prices_include_tax=incl), POLICY))
    assert ("lines", victim.index, "tax") in {p.path for p in problems}


@PROPERTY
@given(
    specs=specs_lists,
    incl=st.booleans(),
    pick=st.integers(min_value=0),
    delta=st.decimals(min_value=D("0.02"), max_value=D(1000), places=2),
    negative=st.booleans(),
)
def test_property_a_perturbed_line_amount_is_caught(
    specs: list[Any], incl: bool, pick: int, delta: Decimal, negative: bool
) -> None:
    lines = build_lines(specs, incl, stride=3)
    priced = [pos for pos, line in enumerate(lines) if line.quantity is not None]
    target = priced[pick % len(priced)]
    victim = lines[target]
    lines[target] = victim.model_copy(update={"amount": victim.amount + (-delta if negative else delta)})
    problems = errors(validate_application(mk_app(lines, prices_include_tax=incl), POLICY))
    field = "amount_incl_tax" if incl else "amount"
    matching = [p for p in problems if p.path == ("lines", victim.index, field)]
    assert matching and matching[0].message.startswith("unit price x quantity")


@PROPERTY
@given(
    total=cents,
    rate=st.sampled_from(RATES),
    d_amount=st.decimals(min_value=D("0.01"), max_value=D(10**7), places=2),
    d_tax=st.decimals(min_value=D(0), max_value=D(10**6), places=2),
    index=st.integers(min_value=0, max_value=10**6),
    nature=st.sampled_from([NORMAL, DISCOUNTED]),
)
def test_property_fold_unfold_round_trip(
    total: int, rate: Decimal, d_amount: Decimal, d_tax: Decimal, index: int, nature: LineNature
) -> None:
    amount, tax = split_tax_inclusive(D(total) / 100, rate)
    line = Line(index=index, nature=nature, goods_name="商品", amount=amount, tax=tax, tax_rate=rate)
    pair_ = unfold_inline_discount(line, discount_amount=d_amount, discount_tax=d_tax)
    assert [part.index for part in pair_] == [index, index]
    assert [part.nature for part in pair_] == [DISCOUNTED, DISCOUNT]
    assert fold_discounts(pair_) == [(line.model_copy(update={"nature": DISCOUNTED}), d_amount, d_tax)]


@PROPERTY
@given(specs=specs_lists, incl=st.booleans())
def test_property_canonical_lines_survive_fold_then_unfold(specs: list[Any], incl: bool) -> None:
    lines = build_lines(specs, incl)
    rebuilt: list[Line] = []
    for line, amount, tax in fold_discounts(lines):
        if amount is None:
            rebuilt.append(line)
        else:
            assert tax is not None
            rebuilt.extend(unfold_inline_discount(line, discount_amount=amount, discount_tax=tax))
    assert rebuilt == lines
