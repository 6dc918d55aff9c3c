"""verification.verify_result: a channel's result against its application, at the tolerances of docs/rules.md."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from fapiao_hub.domain.models import (
    Application,
    Difference,
    Direction,
    FindingKind,
    InvoiceType,
    Line,
    LineNature,
    Party,
    RedReference,
)
from fapiao_hub.domain.results import InvoiceLine, IssuedInvoice
from fapiao_hub.domain.verification import finding_for, only_unreadable, verify_result

D = Decimal
SELLER = "91120222MA06N7P513"
BUYER = "91220101MA0Y5K3N4H"
TODAY = date(2026, 12, 4)
RECEIVED = "2026-12-03T17:30:00.000Z"  # 2026-12-04 01:30 in China


def line(index: int, amount: str, tax: str, nature: LineNature = LineNature.NORMAL) -> Line:
    return Line(index=index, nature=nature, goods_name="轿车", amount=D(amount), tax=D(tax), tax_rate=D("0.13"))


def application(
    lines: tuple[Line, ...] | None = None,
    *,
    direction: Direction = Direction.BLUE,
    invoice_type: InvoiceType = InvoiceType.DIGITAL_SPECIAL,
    red: RedReference | None = None,
) -> Application:
    lines = lines or (line(0, "5327.43", "692.57"),)
    return Application(
        source_system="sample-erp",
        open_apply_code="A1",
        direction=direction,
        invoice_type=invoice_type,
        company_code="EK1",
        seller=Party(name="销方", tax_number=SELLER),
        buyer=Party(name="购方", tax_number=BUYER),
        lines=lines,
        amount=sum((x.amount for x in lines), D(0)),
        tax=sum((x.tax for x in lines), D(0)),
        red=red,
    )


def invoice(amount: str | None = "5327.43", tax: str | None = "692.57", **kwargs) -> IssuedInvoice:
    fields = {
        "number": "26112000000012221761",
        "issued_on": TODAY,
        "amount": D(amount) if amount is not None else None,
        "tax": D(tax) if tax is not None else None,
        "invoice_type": InvoiceType.DIGITAL_SPECIAL,
        "seller_tax_number": SELLER,
        "buyer_tax_number": BUYER,
        **kwargs,
    }
    return IssuedInvoice(**fields)


def check(app: Application, *invoices: IssuedInvoice) -> tuple[Difference, ...]:
    return verify_result(app, invoices, received_at=RECEIVED, today=TODAY)


def test_a_matching_result_has_no_difference():
    assert check(application(), invoice()) == ()


# ------------------------------------------------------------------ tolerance boundaries
@pytest.mark.parametrize(("reported", "differs"), [("5327.44", False), ("5327.42", False), ("5327.45", True),
                                                   ("5327.41", True)])  # fmt: skip
def test_total_amount_within_one_cent(reported, differs):
    found = check(application(), invoice(amount=reported))
    assert found == ((Difference(field="amount", expected="5327.43", reported=reported),) if differs else ())


@pytest.mark.parametrize(("reported", "differs"), [("693.84", False), ("691.30", False), ("693.85", True),
                                                   ("691.29", True)])  # fmt: skip
def test_total_tax_within_1_27(reported, differs):
    found = check(application(), invoice(tax=reported))
    assert found == ((Difference(field="tax", expected="692.57", reported=reported),) if differs else ())


@pytest.mark.parametrize(("first_tax", "differs"), [("13.06", False), ("12.94", False), ("13.07", True),
                                                    ("12.93", True)])  # fmt: skip
def test_line_tax_within_six_cents_where_lines_pair(first_tax, differs):
    app = application((line(0, "100.00", "13.00"), line(1, "200.00", "26.00")))
    lines = (
        InvoiceLine(goods_name="轿车", amount=D("100.00"), tax=D(first_tax)),
        InvoiceLine(goods_name="轿车", amount=D("200.00"), tax=D("26.00")),
    )
    found = check(app, invoice("300.00", "39.00", lines=lines))
    assert found == ((Difference(field="lines[0].tax", expected="13.00", reported=first_tax),) if differs else ())


def test_lines_that_do_not_pair_are_left_to_the_totals():
    """A channel that folds the discount into the discounted line reports fewer lines: not paired."""
    app = application((line(0, "100.00", "13.00", LineNature.DISCOUNTED), line(1, "-10.00", "-1.30",
                                                                                LineNature.DISCOUNT)))  # fmt: skip
    folded = (InvoiceLine(goods_name="轿车", amount=D("90.00"), tax=D("11.70")),)
    assert check(app, invoice("90.00", "11.70", lines=folded)) == ()


def test_discount_lines_reported_as_lines_match():
    app = application((line(0, "100.00", "13.00", LineNature.DISCOUNTED), line(1, "-10.00", "-1.30",
                                                                                LineNature.DISCOUNT)))  # fmt: skip
    lines = (
        InvoiceLine(goods_name="轿车", amount=D("100.00"), tax=D("13.00"), nature="2"),
        InvoiceLine(goods_name="轿车", amount=D("-10.00"), tax=D("-1.30"), nature="1"),
    )
    assert check(app, invoice("90.00", "11.70", lines=lines)) == ()


# ------------------------------------------------------------------ each field
def test_a_wrong_seller_names_both_numbers():
    found = check(application(), invoice(seller_tax_number="91120222300XXX"))
    assert found == (Difference(field="seller.tax_number", expected=SELLER, reported="91120222300XXX"),)


def test_a_seller_the_channel_does_not_report_is_not_judged():
    assert check(application(), invoice(seller_tax_number=None)) == ()


def test_a_wrong_buyer_where_both_have_one():
    found = check(application(), invoice(buyer_tax_number="91110108MA01ABCD2H"))
    assert found == (Difference(field="buyer.tax_number", expected=BUYER, reported="91110108MA01ABCD2H"),)


def test_a_wrong_type():
    found = check(application(), invoice(invoice_type=InvoiceType.VAT_NORMAL_ELECTRONIC))
    assert found == (Difference(field="invoice_type", expected="DIGITAL_SPECIAL", reported="VAT_NORMAL_ELECTRONIC"),)


def test_a_red_invoice_for_a_blue_application():
    found = check(application(), invoice("-5327.43", "-692.57"))
    assert Difference(field="direction", expected="BLUE", reported="RED") in found
    assert {d.field for d in found} == {"direction", "amount", "tax"}


def test_dates_before_receipt_or_after_tomorrow():
    # Received 2026-12-04 in China: the 3rd (one day's slack) and the 5th pass; the 2nd and 6th do not.
    assert check(application(), invoice(issued_on=date(2026, 12, 3))) == ()
    assert check(application(), invoice(issued_on=date(2026, 12, 5))) == ()
    assert check(application(), invoice(issued_on=date(2021, 4, 28))) == (
        Difference(field="issued_on", expected="2026-12-03 to 2026-12-05", reported="2021-04-28"),
    )
    assert [d.field for d in check(application(), invoice(issued_on=date(2026, 12, 6)))] == ["issued_on"]


def test_a_split_into_two_invoices_whose_totals_add_up():
    first = invoice("3000.00", "390.00", number="26112000000000000001")
    second = invoice("2327.43", "302.57", number="26112000000000000002")
    assert check(application(), first, second) == ()


def test_an_extra_second_invoice_is_a_total_difference():
    found = check(application(), invoice(), invoice(number="26112000000000000002"))
    assert found == (
        Difference(field="amount", expected="5327.43", reported="10654.86"),
        Difference(field="tax", expected="692.57", reported="1385.14"),
    )


def test_per_invoice_fields_are_named_by_position_when_there_are_several():
    found = check(application(), invoice("3000.00", "390.00"), invoice("2327.43", "302.57", seller_tax_number="X"))
    assert found == (Difference(field="invoices[1].seller.tax_number", expected=SELLER, reported="X"),)


def red_application() -> Application:
    return application(
        (line(0, "-5327.43", "-692.57"),),
        direction=Direction.RED,
        red=RedReference(blue_invoice_number="26112000000012221761"),
    )


def test_a_red_reversal_matches_in_negative_figures():
    red = invoice("-5327.43", "-692.57", number="26112000000099999999", original_number="26112000000012221761")
    assert check(red_application(), red) == ()


def test_a_red_invoice_marked_red_in_positive_figures_counts_negative():
    """Seed 000's red example: invoiceType 1 with positive amounts."""
    red = invoice("5327.43", "692.57", number="26112000000099999999", details={"direction": "RED"})
    assert check(red_application(), red) == ()


def test_a_red_invoice_reversing_another_blue_invoice():
    red = invoice("-5327.43", "-692.57", number="26112000000099999999", original_number="26112000000000000042")
    assert check(red_application(), red) == (
        Difference(field="red.blue_invoice_number", expected="26112000000012221761", reported="26112000000000000042"),
    )


def test_a_blue_answer_to_a_red_application():
    found = check(red_application(), invoice())
    assert Difference(field="direction", expected="RED", reported="BLUE") in found


def test_unreadable_fields_are_differences_with_the_raw_text():
    found = check(application(), invoice(amount=None, unreadable={"invoiceAmount": "5,327.43元"}))
    assert found == (Difference(field="unreadable.invoiceAmount", expected="a readable value", reported="5,327.43元"),)
    assert only_unreadable(found)
    assert not only_unreadable(check(application(), invoice(invoice_type=InvoiceType.DIGITAL_NORMAL)))


def test_an_invoice_without_a_number():
    found = check(application(), invoice(number=""))
    assert found == (Difference(field="number", expected="an invoice number", reported=None),)


def test_no_invoice_at_all():
    assert [d.field for d in check(application())] == ["invoices"]


def test_a_missing_figure_on_one_of_several_invoices():
    found = check(application(), invoice("3000.00", "390.00"), invoice(None, "302.57"))
    assert found == (Difference(field="invoices[1].amount", expected="a figure", reported=None),)


def test_every_difference_is_listed():
    """The issue's example: seed 000's fixed invoice for every order."""
    reported = invoice("828.30", "49.70", invoice_type=InvoiceType.VAT_NORMAL_ELECTRONIC,
                       issued_on=date(2021, 4, 28), seller_tax_number="91120222300xxx")  # fmt: skip
    assert {d.field for d in check(application(), reported)} == {
        "seller.tax_number", "invoice_type", "issued_on", "amount", "tax",
    }  # fmt: skip


def test_finding_ids_are_stable_for_the_same_discovery():
    diffs = (Difference(field="amount", expected="1.00", reported="2.00"),)
    a = finding_for(FindingKind.RESULT_MISMATCH, "s#1", source="poll", summary="x", at="t1", differences=diffs)
    b = finding_for(FindingKind.RESULT_MISMATCH, "s#1", source="callback", summary="y", at="t2", differences=diffs)
    c = finding_for(FindingKind.RESULT_MISMATCH, "s#2", source="poll", summary="x", at="t1", differences=diffs)
    assert a.id == b.id != c.id
