"""The Xunlian channel (fapiao_hub.channels.xunlian): mapping both ways, seed 001's limits, answers,
and the transport over real HTTP against the sandbox (sandbox/xunlian.py) on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3.util.connection
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from fapiao_hub.channels import wire, xunlian
from fapiao_hub.channels.xunlian import (
    TEXT_NOT_GBK,
    XunlianChannel,
    check_request,
    from_request,
    interpret_answer,
    to_request,
)
from fapiao_hub.domain import jsonutil
from fapiao_hub.domain.config import ChannelSettings
from fapiao_hub.domain.discounts import unfold_inline_discount
from fapiao_hub.domain.models import Application, Direction, InvoiceType, Line, LineNature, Party, RedReference
from fapiao_hub.domain.results import Issued, IssuedInvoice, NotSent, Rejected, Unknown
from sandbox.base import china_today
from sandbox.xunlian import XunlianServer, run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SEED_REQUEST = (FIXTURES / "xunlian_seed001_request.json").read_bytes()
SEED_ANSWER = (FIXTURES / "xunlian_seed001_answer.json").read_bytes()  # made valid JSON
# Seed 001's success answer exactly as published: a missing comma after docId, curly quotes around
# invoiceNumber, no colon after "amount". Not JSON.
SEED_ANSWER_PUBLISHED = """{
  "body":{
        "requisitionApplyNo":"AAA20210408000001",
        "otherId":"1",
        "invoiceUuid":"9676035b-60b9-4d2b-912e-c1d1793df28f",
        "docId":"ANI20210101010111"
        "invoiceCode":"050002000205",
        "invoiceNumber":\u201c12221761\u201d,
        "invoiceDate":"2022-09-21",
        "invoiceParityCode":"11884729515180314769",
        "amount"4570.80
  },
  "ok": true,
  "requestNum": null,
  "status": {
    "description": null,
    "message": null,
    "path": null,
    "returnCode": "200",
    "serviceCode": null,
    "time": null
  }
}""".encode()
SEED_ANSWER_NO = "AAA20210408000001"

SELLER_TAX_ID = "91310000631757739A"
BUYER_TAX_ID = "91310000631757739B"
BUYER_EMAIL = "li.lei@example.com"
BUYER_MOBILE = "13800138000"
OPTIONS = {"company_data_resource": "tb", "terminal_code": "921092123", "reviewer": "张三"}


# --------------------------------------------------------------------------- builders


def seed_payload() -> dict[str, Any]:
    return jsonutil.loads(SEED_REQUEST)


def make_line(index: int = 0, **overrides: Any) -> Line:
    fields: dict[str, Any] = {
        "index": index,
        "goods_name": "笔记本电脑",
        "tax_code": "1090509010000000000",
        "unit": "台",
        "quantity": Decimal("1"),
        "unit_price": Decimal("5165.00"),
        "amount": Decimal("4570.80"),
        "tax": Decimal("594.20"),
        "tax_rate": Decimal("0.13"),
    }
    fields.update(overrides)
    return Line(**fields)


def make_app(*lines: Line, **overrides: Any) -> Application:
    lines = lines or (make_line(),)
    fields: dict[str, Any] = {
        "source_system": "sample-erp",
        "open_apply_code": "KPTZ202104130005",
        "direction": Direction.BLUE,
        "invoice_type": InvoiceType.VAT_SPECIAL_PAPER,
        "company_code": "VB5",
        "seller": Party(
            name="上海**集团有限司",
            tax_number=SELLER_TAX_ID,
            address="上海市徐汇区**路星联科研楼2幢3-4楼",
            phone="24081101",
            bank_name="**银行(中国)有限公司上海分行",
            bank_account="088-296504-011",
        ),
        "buyer": Party(
            name="**集团有限公司电子商务中心",
            tax_number=BUYER_TAX_ID,
            address="北京市昌平区北***院101楼620室",
            phone="010-58688395",
            email=BUYER_EMAIL,
            mobile=BUYER_MOBILE,
        ),
        "lines": lines,
        "prices_include_tax": True,
        "amount": sum((line.amount for line in lines), Decimal("0.00")),
        "tax": sum((line.tax for line in lines), Decimal("0.00")),
        "remark": "合同号 HT-2024-001",
    }
    fields.update(overrides)
    return Application(**fields)


def settings(base_url: str = "http://127.0.0.1:9", **overrides: Any) -> ChannelSettings:
    fields: dict[str, Any] = {
        "type": "xunlian",
        "base_url": base_url,
        "dedupes_request_number": True,
        "connect_timeout_seconds": 1.0,
        "read_timeout_seconds": 2.0,
        "connect_retries": 2,
        "options": OPTIONS,
    }
    fields.update(overrides)
    return ChannelSettings(**fields)


class NoNetwork(requests.Session):
    """A session that fails the test if the channel tries to send."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        raise AssertionError("the channel must not send this request")


class Raising(requests.Session):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.calls = 0

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.calls += 1
        raise self.error


def _as_decimal(value: Any) -> Decimal:
    return Decimal(str(value))


# --------------------------------------------------------------------------- (a) seed 001 both ways

SEED_NUMBERS = {
    "totalAmountExcludeTax",
    "totalAmountIncludeTax",
    "totalTaxAmount",
    "lineAmountExcludeTax",
    "lineAmountIncludeTax",
    "priceExcludeTax",
    "priceIncludeTax",
    "quantity",
    "taxAmount",
    "taxRate",
}


def test_seed_request_maps_to_the_canonical_application() -> None:
    payload = seed_payload()
    app = from_request(payload, source_system="seed", open_apply_code=payload["requisitionApplyNo"], company_code="tb")

    assert app.invoice_type == InvoiceType.VAT_SPECIAL_PAPER
    assert app.direction == Direction.BLUE
    assert app.prices_include_tax is True  # computeWithTax absent: "若为空视为含税"
    assert app.buyer.name == "**集团有限公司电子商务中心"
    assert app.buyer.tax_number == BUYER_TAX_ID
    assert app.buyer.address == "北京市昌平区北***院101楼620室010-58688395"  # no blank: not split
    assert app.seller.address == "上海市徐汇区**路星联科研楼2幢3-4楼"
    assert app.seller.phone == "24081101"
    assert (app.amount, app.tax) == (Decimal("4570.80"), Decimal("594.20"))
    (line,) = app.lines
    assert line.nature == LineNature.NORMAL
    assert line.goods_name == "笔记本电脑"
    assert line.unit == "台"
    assert (line.amount, line.tax, line.tax_rate) == (Decimal("4570.80"), Decimal("594.20"), Decimal("0.13"))
    assert (line.quantity, line.unit_price) == (Decimal("1.00000000"), Decimal("5165.00000000"))
    assert line.tax_code == "1090509010000000000"


def test_seed_request_comes_back_field_by_field() -> None:
    seed = seed_payload()
    app = from_request(seed, source_system="seed", open_apply_code=seed["requisitionApplyNo"], company_code="tb")
    request_number = str(seed["otherId"])  # the seed's otherId becomes the request number
    out = to_request(app, request_number, OPTIONS)

    # Both request-number fields carry the request number.
    assert out["requisitionApplyNo"] == out["otherId"] == "28045669365055408"
    for key, value in seed.items():
        if value is None or key in {"lines", "requisitionApplyNo"}:
            continue
        if key in SEED_NUMBERS:
            assert _as_decimal(out[key]) == _as_decimal(value), key
            assert isinstance(out[key], str), key  # money goes out as strings, never float
        else:
            assert str(out[key]) == str(value), key
    assert out["computeWithTax"] == 1  # the seed's implicit "with tax", now explicit

    (seed_line,) = seed["lines"]
    (line,) = out["lines"]
    for key, value in seed_line.items():
        if value is None or key == "priceExcludeTax":
            continue
        if key in SEED_NUMBERS:
            assert _as_decimal(line[key]) == _as_decimal(value), key
        else:
            assert line[key] == value, key
    # Only the price of the application's basis is sent; the seed's strings come back digit for digit.
    assert "priceExcludeTax" not in line
    assert line["priceIncludeTax"] == "5165.00000000"
    assert line["quantity"] == "1.00000000"
    assert line["lineAmountIncludeTax"] == "5165.00"
    assert line["favouredPolicyMark"] == "0"

    assert check_request(out) == []
    # And back again: the same canonical application.
    again = from_request(out, source_system="seed", open_apply_code=seed["requisitionApplyNo"], company_code="tb")
    assert again == app


def test_seed_success_answer_is_issued() -> None:
    outcome = interpret_answer(
        200, SEED_ANSWER, request_number=SEED_ANSWER_NO, invoice_type=InvoiceType.VAT_SPECIAL_PAPER
    )
    assert outcome == Issued(
        (
            IssuedInvoice(
                number="12221761",
                code="050002000205",
                issued_on=dt.date(2022, 9, 21),
                amount=Decimal("4570.80"),
                check_code="11884729515180314769",
                invoice_type=InvoiceType.VAT_SPECIAL_PAPER,
                channel_invoice_id="9676035b-60b9-4d2b-912e-c1d1793df28f",
            ),
        )
    )
    assert str(outcome.invoices[0].amount) == "4570.80"


def test_seed_answer_as_published_is_unknown_and_kept() -> None:
    outcome = interpret_answer(200, SEED_ANSWER_PUBLISHED, request_number=SEED_ANSWER_NO)
    assert isinstance(outcome, Unknown)
    assert "not valid JSON" in outcome.reason
    assert outcome.raw == SEED_ANSWER_PUBLISHED


# --------------------------------------------------------------------------- answers


def envelope(ok: bool, code: str | None, body: Any = None, message: str | None = None) -> bytes:
    return jsonutil.dumps(
        {"body": body, "ok": ok, "requestNum": None, "status": {"message": message, "returnCode": code}}
    ).encode()


INVOICE_BODY = {"requisitionApplyNo": "R-1", "invoiceCode": "050024000001", "invoiceNumber": "00000007"}


@pytest.mark.parametrize(
    ("fields", "unreadable"),
    [
        ({"amount": "4570.8O"}, {"amount": "4570.8O"}),
        ({"amount": True}, {"amount": "true"}),
        ({"invoiceDate": "21/09/2022"}, {"invoiceDate": "21/09/2022"}),
        ({"invoiceDate": ["2022-09-21"]}, {"invoiceDate": '["2022-09-21"]'}),
        ({"invoiceNumber": None, "amount": "1.00"}, {"invoiceNumber": ""}),
        ({"invoiceNumber": ["00000007"]}, {"invoiceNumber": '["00000007"]'}),
    ],
)
def test_malformed_fields_of_an_issued_invoice_are_recorded_raw(fields: dict, unreadable: dict) -> None:
    """Issued all the same (the invoice exists); the raw text goes to verification, never a crash."""
    content = envelope(True, "200", {**INVOICE_BODY, **fields})
    outcome = interpret_answer(200, content, request_number="R-1")
    assert isinstance(outcome, Issued), outcome
    [invoice] = outcome.invoices
    assert invoice.unreadable == unreadable
    assert invoice.number == ("" if "invoiceNumber" in unreadable else "00000007")


def test_duplicate_answer_with_the_invoice_is_a_success() -> None:
    outcome = interpret_answer(200, envelope(False, "4090", INVOICE_BODY), request_number="R-1")
    assert isinstance(outcome, Issued)
    assert outcome.duplicate is True
    assert outcome.invoices[0].number == "00000007"


def test_duplicate_codes_are_extended_by_the_options() -> None:
    codes = xunlian.duplicate_codes({"duplicate_codes": "E9106, 9994,"})
    assert codes == {"4090", "E9106", "9994"}
    outcome = interpret_answer(200, envelope(False, "E9106", INVOICE_BODY), request_number="R-1", duplicates=codes)
    assert isinstance(outcome, Issued) and outcome.duplicate
    assert XunlianChannel("x", settings(options={"duplicate_codes": "E9106"}), NoNetwork()).duplicates == {
        "4090",
        "E9106",
    }


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (envelope(True, "200", {"requisitionApplyNo": "R-1"}), "no invoice number"),
        (envelope(True, "201", INVOICE_BODY), "returnCode is 201"),
        (envelope(False, "4090", None), "does not carry the invoice"),
        (envelope(False, "4999", INVOICE_BODY), "carries an invoice"),
        (envelope(True, "200", {**INVOICE_BODY, "requisitionApplyNo": "R-2"}), "another request number"),
        (b'{"ok": "yes"}', "envelope"),
        (b"[]", "envelope"),
        (b"", "not valid JSON"),
        (b'{"ok": true, "body": {"amount": NaN}}', "not valid JSON"),
    ],
)
def test_unexpected_answers_are_unknown(answer: bytes, expected: str) -> None:
    outcome = interpret_answer(200, answer, request_number="R-1")
    assert isinstance(outcome, Unknown)
    assert expected in outcome.reason
    assert outcome.raw == answer


def test_ok_false_is_rejected_with_its_code_and_without_personal_data() -> None:
    message = f"buyerTaxId: '{BUYER_TAX_ID}' is invalid; receiveMsgEmail {BUYER_EMAIL} refused"
    scrub = wire.scrubber([BUYER_TAX_ID, BUYER_EMAIL])
    outcome = interpret_answer(200, envelope(False, "4001", None, message), request_number="R-1", scrub=scrub)
    assert isinstance(outcome, Rejected)
    assert outcome.code == "4001"
    assert outcome.reason == "buyerTaxId: '***' is invalid; receiveMsgEmail *** refused"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (503, NotSent),
        (429, NotSent),
        (408, NotSent),
        (404, NotSent),
        (302, NotSent),
        (500, Unknown),
        (502, Unknown),
        (504, Unknown),
        (400, Rejected),
    ],
)
def test_http_statuses(status: int, kind: type) -> None:
    page = b"<html><body>error</body></html>"
    outcome = interpret_answer(status, page, request_number="R-1")
    assert isinstance(outcome, kind)
    if kind is Unknown:
        assert outcome.raw == page
    if kind is Rejected:
        assert outcome.code == f"HTTP_{status}"


# --------------------------------------------------------------------------- (b) invoice types


@pytest.mark.parametrize(
    ("invoice_type", "code"),
    [
        (InvoiceType.VAT_SPECIAL_PAPER, "01"),
        (InvoiceType.VAT_NORMAL_PAPER, "04"),
        (InvoiceType.VAT_NORMAL_ELECTRONIC, "10"),
        (InvoiceType.VAT_SPECIAL_ELECTRONIC, "08"),
    ],
)
def test_invoice_type_codes_both_ways(invoice_type: InvoiceType, code: str) -> None:
    payload = to_request(make_app(invoice_type=invoice_type), "R-1", OPTIONS)
    assert payload["invoiceTypeCode"] == code
    assert from_request(payload, source_system="s", open_apply_code="o", company_code="c").invoice_type == invoice_type


@pytest.mark.parametrize("invoice_type", [InvoiceType.DIGITAL_SPECIAL, InvoiceType.DIGITAL_NORMAL])
def test_digital_invoices_are_rejected_before_sending(invoice_type: InvoiceType) -> None:
    app = make_app(invoice_type=invoice_type)
    with pytest.raises(wire.NotExpressible):
        to_request(app, "R-1", OPTIONS)
    outcome = XunlianChannel("xunlian", settings(), NoNetwork()).issue(app, "R-1")
    assert isinstance(outcome, Rejected)
    assert outcome.code == wire.UNSUPPORTED_INVOICE_TYPE
    assert invoice_type.value in outcome.reason


def test_unknown_type_code_is_refused_on_the_way_back() -> None:
    payload = seed_payload()
    payload["invoiceTypeCode"] = "81"
    with pytest.raises(ValueError, match="invoiceTypeCode"):
        from_request(payload, source_system="s", open_apply_code="o", company_code="c")


# --------------------------------------------------------------------------- (c) byte lengths


def _violations(app: Application) -> list[str]:
    return [v.message for v in check_request(to_request(app, "R-1", OPTIONS))]


def test_item_name_of_46_chinese_characters_fits_47_does_not() -> None:
    assert _violations(make_app(make_line(3, goods_name="测" * 46))) == []
    assert _violations(make_app(make_line(3, goods_name="测" * 47))) == [
        "lines[3].goods_name (Xunlian itemName) is 94 bytes in GBK, 2 over the limit of 92"
    ]


def test_mixed_ascii_and_chinese_count_right() -> None:
    # unit: 14 bytes. "台" 2 + 12 ASCII = 14 fits; one more Chinese character is 16.
    assert _violations(make_app(make_line(0, unit="台abcdefghijkl"))) == []
    assert _violations(make_app(make_line(0, unit="台台abcdefghijkl"))) == [
        "lines[0].unit (Xunlian unit) is 16 bytes in GBK, 2 over the limit of 14"
    ]
    # itemModelName: 40 bytes. 20 ASCII + 10 Chinese = 40.
    assert _violations(make_app(make_line(0, specification="A" * 20 + "型" * 10))) == []
    assert _violations(make_app(make_line(0, specification="A" * 21 + "型" * 10))) == [
        "lines[0].specification (Xunlian itemModelName) is 41 bytes in GBK, 1 over the limit of 40"
    ]


def test_every_violation_is_listed_together_and_nothing_is_sent() -> None:
    app = make_app(
        make_line(0),
        make_line(5, goods_name="测" * 47),
        remark="备" * 107,  # 214 bytes
        buyer=Party(
            name="买" * 51,  # 102 bytes
            tax_number=BUYER_TAX_ID,
            email="x" * 60 + BUYER_EMAIL,  # 78 bytes
            mobile=BUYER_MOBILE + "00",  # 13 bytes
        ),
    )
    outcome = XunlianChannel("xunlian", settings(), NoNetwork()).issue(app, "R-1")
    assert isinstance(outcome, Rejected)
    assert outcome.code == wire.FIELD_TOO_LONG
    assert outcome.reason.split("; ") == [
        "buyer.name (Xunlian buyerName) is 102 bytes in GBK, 2 over the limit of 100",
        "remark (Xunlian note) is 214 bytes in GBK, 2 over the limit of 212",
        "buyer.mobile (Xunlian receiveMsgPhone) is 13 bytes in GBK, 1 over the limit of 12",
        "buyer.email (Xunlian receiveMsgEmail) is 78 bytes in GBK, 14 over the limit of 64",
        "lines[5].goods_name (Xunlian itemName) is 94 bytes in GBK, 2 over the limit of 92",
    ]
    assert BUYER_EMAIL not in outcome.reason and BUYER_MOBILE not in outcome.reason


def test_joined_fields_options_and_request_number_are_checked() -> None:
    app = make_app(
        seller=Party(name="卖方", tax_number=SELLER_TAX_ID, address="路" * 45, phone="0431-8599000"),  # 90 + 1 + 12
    )
    payload = to_request(app, "N" * 97, {**OPTIONS, "reviewer": "张三李四王"})
    assert [v.message for v in check_request(payload)] == [
        "request_number (Xunlian requisitionApplyNo) is 97 bytes in GBK, 1 over the limit of 96",
        "seller.address + seller.phone (Xunlian sellerAddress) is 103 bytes in GBK, 3 over the limit of 100",
        "options.reviewer (Xunlian reviewer) is 10 bytes in GBK, 2 over the limit of 8",
    ]


def test_text_gbk_cannot_encode_is_rejected() -> None:
    app = make_app(make_line(2, goods_name="笔记本😀"))
    outcome = XunlianChannel("xunlian", settings(), NoNetwork()).issue(app, "R-1")
    assert outcome == Rejected(
        "lines[2].goods_name (Xunlian itemName) contains U+1F600 at position 4, which GBK cannot encode",
        code=TEXT_NOT_GBK,
    )


def test_numbers_over_the_digit_limits() -> None:
    big = make_line(0, amount=Decimal("12345678901.23"), tax=Decimal("0.00"), quantity=None, unit_price=None)
    messages = _violations(make_app(big, prices_include_tax=False))
    assert "lines[0].amount (Xunlian lineAmountExcludeTax) has 13 digits, 1 over the limit of 12" in messages
    odd_rate = make_line(0, tax_rate=Decimal("0.1234"))
    assert "lines[0].tax_rate (Xunlian taxRate) has 4 decimal places, 1 over the limit of 3" in _violations(
        make_app(odd_rate)
    )


# --------------------------------------------------------------------------- (d) discounts


def discounted_pair() -> tuple[Line, Line]:
    base = make_line(
        0,
        goods_name="办公椅",
        tax_code="1050201010000000000",
        unit="把",
        quantity=Decimal("2"),
        unit_price=Decimal("56.50"),
        amount=Decimal("100.00"),
        tax=Decimal("13.00"),
    )
    return unfold_inline_discount(base, discount_amount=Decimal("10.00"), discount_tax=Decimal("1.30"))


def test_a_canonical_discount_pair_is_one_xunlian_line_and_back() -> None:
    discounted, discount = discounted_pair()
    assert (discounted.nature, discount.nature) == (LineNature.DISCOUNTED, LineNature.DISCOUNT)
    app = make_app(discounted, discount, make_line(1))
    assert (app.amount, app.tax) == (Decimal("4660.80"), Decimal("605.90"))
    payload = to_request(app, "R-1", OPTIONS)

    first, second = payload["lines"]
    assert first == {
        "id": "0",
        "itemName": "办公椅",
        "unit": "把",
        "lineAttribute": "2",
        "discount": "11.30",
        "lineDiscountExcludeTax": "10.00",
        "taxDiscount": "1.30",
        "priceIncludeTax": "56.50000000",
        "quantity": "2.00000000",
        "lineAmountExcludeTax": "100.00",
        "lineAmountIncludeTax": "113.00",
        "taxAmount": "13.00",
        "taxRate": "0.13",
        "taxClassificationCode": "1050201010000000000",
        "favouredPolicyMark": "0",
    }
    assert second["lineAttribute"] == "0" and "discount" not in second
    # Header totals are the invoice's (net of the discount).
    assert payload["totalAmountExcludeTax"] == "4660.80"
    assert payload["totalTaxAmount"] == "605.90"
    assert payload["totalAmountIncludeTax"] == "5266.70"

    back = from_request(payload, source_system="sample-erp", open_apply_code="KPTZ202104130005", company_code="VB5")
    assert back.lines == app.lines
    assert (back.amount, back.tax) == (app.amount, app.tax)


def test_discount_given_only_tax_inclusive_is_split_on_the_way_back() -> None:
    payload = to_request(make_app(*discounted_pair()), "R-1", OPTIONS)
    line = payload["lines"][0]
    del line["lineDiscountExcludeTax"], line["taxDiscount"]
    back = from_request(payload, source_system="s", open_apply_code="o", company_code="c")
    assert back.lines[1].amount == Decimal("-10.00")
    assert back.lines[1].tax == Decimal("-1.30")


def test_a_discount_line_without_its_discounted_line_is_rejected() -> None:
    _, discount = discounted_pair()
    outcome = XunlianChannel("xunlian", settings(), NoNetwork()).issue(make_app(make_line(0), discount), "R-1")
    assert isinstance(outcome, Rejected)
    assert outcome.code == wire.INVALID_DISCOUNT_LINES


def test_red_application_carries_the_blue_invoice() -> None:
    red_line = make_line(0, quantity=Decimal("-1"), amount=Decimal("-4570.80"), tax=Decimal("-594.20"))
    app = make_app(
        red_line,
        direction=Direction.RED,
        red=RedReference(blue_invoice_number="12221761", blue_invoice_code="050002000205"),
    )
    payload = to_request(app, "R-1", OPTIONS)
    assert (payload["blueInvoiceNo"], payload["blueInvoiceCode"]) == ("12221761", "050002000205")
    assert payload["totalAmountIncludeTax"] == "-5165.00"
    assert payload["lines"][0]["lineAmountExcludeTax"] == "-4570.80"
    back = from_request(payload, source_system="s", open_apply_code="o", company_code="c")
    assert back.direction == Direction.RED and back.red == app.red

    without_code = app.model_copy(update={"red": RedReference(blue_invoice_number="12221761")})
    outcome = XunlianChannel("xunlian", settings(), NoNetwork()).issue(without_code, "R-1")
    assert isinstance(outcome, Rejected) and outcome.code == wire.MISSING_BLUE_INVOICE


def test_options_and_policy_fields() -> None:
    line = make_line(0, preferential_policy="免税", zero_rate_flag="1", material_code="M-1", tax_rate=Decimal("0"))
    line = line.model_copy(update={"tax": Decimal("0.00"), "amount": Decimal("5165.00")})
    payload = to_request(make_app(line, prices_include_tax=True), "R-1", {**OPTIONS, "payee": "王五", "drawer": "赵六"})
    assert (payload["companyDataResource"], payload["terminalCode"]) == ("tb", "921092123")
    assert (payload["payee"], payload["drawer"], payload["reviewer"]) == ("王五", "赵六", "张三")
    assert payload["specialInvoiceMark"] == "00"
    assert (payload["receiveMsgPhone"], payload["receiveMsgEmail"]) == (BUYER_MOBILE, BUYER_EMAIL)
    assert payload["buyerAddress"] == "北京市昌平区北***院101楼620室 010-58688395"
    assert payload["sellerBankAndId"] == "**银行(中国)有限公司上海分行 088-296504-011"
    (out,) = payload["lines"]
    assert (out["favouredPolicyMark"], out["favouredPolicyName"]) == ("1", "免税")
    assert (out["zeroTaxRateFlag"], out["materialCode"], out["taxRate"]) == ("1", "M-1", "0")
    excl = to_request(make_app(prices_include_tax=False, lines=(make_line(unit_price=Decimal("4570.8")),)), "R", {})
    assert excl["computeWithTax"] == 0
    assert excl["lines"][0]["priceExcludeTax"] == "4570.80000000" and "priceIncludeTax" not in excl["lines"][0]
    assert "companyDataResource" not in excl and "payee" not in excl


# --------------------------------------------------------------------------- transport, no server


def test_query_is_not_available() -> None:
    channel = XunlianChannel("xunlian", settings(), NoNetwork())
    assert channel.can_query is False
    assert channel.dedupes_request_number is True
    assert isinstance(channel.query(make_app(), "R-1"), Unknown)
    assert XunlianChannel("x", settings(dedupes_request_number=False)).dedupes_request_number is False


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (requests.ConnectTimeout("connect timed out"), NotSent),
        (
            requests.ConnectionError(MaxRetryError(None, "/", NewConnectionError(None, "refused"))),  # type: ignore[arg-type]
            NotSent,
        ),
        (requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError())), Unknown),
        (requests.ConnectionError("something else"), Unknown),
        (requests.ReadTimeout("read timed out"), Unknown),
        (requests.exceptions.ChunkedEncodingError("broken"), Unknown),
        (requests.exceptions.ContentDecodingError("gzip"), Unknown),
        (requests.exceptions.SSLError("handshake"), Unknown),
        (RuntimeError("anything"), Unknown),
        (requests.exceptions.InvalidURL("bad url"), NotSent),
    ],
)
def test_transport_errors(error: Exception, kind: type) -> None:
    session = Raising(error)
    outcome = XunlianChannel("xunlian", settings(), session).issue(make_app(), "R-1")
    assert isinstance(outcome, kind), outcome
    assert session.calls == 1


def test_the_session_retries_connecting_only() -> None:
    channel = XunlianChannel("xunlian", settings(connect_retries=3))
    retry = channel.session.get_adapter("http://127.0.0.1/").max_retries
    assert (retry.total, retry.connect, retry.read, retry.status, retry.other) == (3, 3, False, 0, 0)
    assert "POST" not in retry.allowed_methods
    assert retry.respect_retry_after_header is False
    assert channel.timeout == (1.0, 2.0)


# --------------------------------------------------------------------------- (e) over real HTTP

FAST = (1.0, 2.0)


@pytest.fixture(scope="module")
def server() -> Iterator[XunlianServer]:
    srv = run(port=0)
    yield srv
    srv.shutdown()


@pytest.fixture
def sandbox(server: XunlianServer) -> XunlianServer:
    assert requests.post(server.base_url + "/_sandbox/reset", timeout=FAST).status_code == 200
    control(server, "config", {"timeout_ms": 1000})
    return server


def control(server: XunlianServer, what: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{server.base_url}/_sandbox/{what}", json=body, timeout=FAST)
    assert response.status_code == 200, response.text
    return response.json()


def issued_for(server: XunlianServer, number: str) -> dict[str, Any]:
    return requests.get(f"{server.base_url}/_sandbox/issued/{number}", timeout=FAST).json()


def channel_for(server: XunlianServer, **overrides: Any) -> XunlianChannel:
    return XunlianChannel("xunlian", settings(server.base_url, **overrides))


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection urllib3 attempts (an observer: the real function still runs)."""
    attempts: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def counting(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counting)
    return attempts


def test_issue_over_http(sandbox: XunlianServer) -> None:
    before = china_today()
    outcome = channel_for(sandbox).issue(make_app(), "REQ-0001")
    assert isinstance(outcome, Issued) and outcome.duplicate is False
    (invoice,) = outcome.invoices
    stored = issued_for(sandbox, "REQ-0001")
    assert stored["count"] == 1
    (first,) = stored["invoices"]
    assert (invoice.number, invoice.code, invoice.check_code, invoice.channel_invoice_id) == (
        first["invoiceNumber"],
        first["invoiceCode"],
        first["invoiceParityCode"],
        first["invoiceUuid"],
    )
    assert first["otherId"] == first["requisitionApplyNo"] == "REQ-0001"
    assert invoice.amount == Decimal("4570.80")
    assert invoice.issued_on in {before, china_today()}
    assert invoice.invoice_type == InvoiceType.VAT_SPECIAL_PAPER


def test_same_number_again_is_a_duplicate_and_issues_nothing(sandbox: XunlianServer) -> None:
    channel = channel_for(sandbox)
    first = channel.issue(make_app(), "REQ-0002")
    again = channel.issue(make_app(), "REQ-0002")
    assert isinstance(first, Issued) and isinstance(again, Issued)
    assert again.duplicate is True
    assert again.invoices == first.invoices
    stored = issued_for(sandbox, "REQ-0002")
    assert (stored["count"], stored["attempts"]) == (1, 2)


def test_timeout_after_issue_is_unknown_and_not_resent(
    sandbox: XunlianServer, connections: list[tuple[str, int]]
) -> None:
    control(sandbox, "faults", {"REQ-0003": ["timeout_after_issue"]})
    channel = channel_for(sandbox, read_timeout_seconds=0.3)
    opened = len(connections)
    outcome = channel.issue(make_app(), "REQ-0003")
    assert len(connections) - opened == 1  # one connection, no second attempt after the read timeout
    assert isinstance(outcome, Unknown)
    assert "read timeout" in outcome.reason
    stored = issued_for(sandbox, "REQ-0003")
    assert (stored["count"], stored["attempts"]) == (1, 1)  # issued once, the POST was not re-sent
    # The vendor de-duplicates: sending the same number again finds the invoice.
    again = channel.issue(make_app(), "REQ-0003")
    assert isinstance(again, Issued) and again.duplicate is True
    assert issued_for(sandbox, "REQ-0003")["count"] == 1


def test_connection_reset_is_unknown_and_not_resent(sandbox: XunlianServer) -> None:
    control(sandbox, "faults", {"REQ-0004": ["connection_reset"]})
    outcome = channel_for(sandbox).issue(make_app(), "REQ-0004")
    assert isinstance(outcome, Unknown)
    stored = issued_for(sandbox, "REQ-0004")
    assert (stored["count"], stored["attempts"]) == (0, 1)


def test_malformed_answer_is_unknown_with_the_raw_bytes(sandbox: XunlianServer) -> None:
    control(sandbox, "faults", {"REQ-0005": ["malformed"]})
    outcome = channel_for(sandbox).issue(make_app(), "REQ-0005")
    assert isinstance(outcome, Unknown)
    stored = issued_for(sandbox, "REQ-0005")
    assert stored["count"] == 1
    number = stored["invoices"][0]["invoiceNumber"]
    assert outcome.raw is not None
    assert f"\u201c{number}\u201d".encode() in outcome.raw  # the seed's curly quotes, kept as sent


@pytest.mark.parametrize(("entry", "kind"), [("error_503", NotSent), ("error_500", Unknown), ("error_502", Unknown)])
def test_server_errors(sandbox: XunlianServer, entry: str, kind: type) -> None:
    control(sandbox, "faults", {"REQ-0006": [entry]})
    outcome = channel_for(sandbox).issue(make_app(), "REQ-0006")
    assert isinstance(outcome, kind)
    if kind is Unknown:
        assert outcome.raw  # the error page is kept
    stored = issued_for(sandbox, "REQ-0006")
    assert (stored["count"], stored["attempts"]) == (0, 1)  # nothing issued, no status retry


def test_vendor_rejection(sandbox: XunlianServer) -> None:
    control(sandbox, "faults", {"REQ-0007": ["reject"]})
    outcome = channel_for(sandbox).issue(make_app(), "REQ-0007")
    assert isinstance(outcome, Rejected)
    assert outcome.code == "4002"
    assert "税控设备繁忙" in outcome.reason
    assert issued_for(sandbox, "REQ-0007")["count"] == 0


def test_vendor_validation_failure_hides_the_buyer_tax_number(sandbox: XunlianServer) -> None:
    person_id = "11010519491231002X"  # a person's ID-card number as tax number: lowercase x is malformed
    buyer = Party(name="李雷", tax_number=person_id.lower(), email=BUYER_EMAIL, mobile=BUYER_MOBILE)
    outcome = channel_for(sandbox).issue(make_app(buyer=buyer, invoice_type=InvoiceType.VAT_NORMAL_ELECTRONIC), "R-8")
    assert isinstance(outcome, Rejected)
    assert outcome.code == "4001"
    assert "buyerTaxId" in outcome.reason
    assert person_id.lower() not in outcome.reason
    assert issued_for(sandbox, "R-8")["count"] == 0


def test_discounted_and_red_invoices_are_issued(sandbox: XunlianServer) -> None:
    channel = channel_for(sandbox)
    assert isinstance(channel.issue(make_app(*discounted_pair()), "REQ-0009"), Issued)
    red_line = make_line(0, quantity=Decimal("-1"), amount=Decimal("-4570.80"), tax=Decimal("-594.20"))
    red = make_app(
        red_line,
        direction=Direction.RED,
        red=RedReference(blue_invoice_number="12221761", blue_invoice_code="050002000205"),
    )
    outcome = channel.issue(red, "REQ-0010")
    assert isinstance(outcome, Issued)
    assert outcome.invoices[0].amount == Decimal("-4570.80")
    assert issued_for(sandbox, "REQ-0010")["invoices"][0]["red"] is True


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("retries", [0, 2])
def test_connection_refused_is_not_sent_after_the_connect_retries(
    connections: list[tuple[str, int]], retries: int
) -> None:
    port = _closed_port()
    channel = XunlianChannel("xunlian", settings(f"http://127.0.0.1:{port}", connect_retries=retries))
    outcome = channel.issue(make_app(), "REQ-0011")
    assert isinstance(outcome, NotSent)
    assert "nothing was sent" in outcome.reason
    assert connections == [("127.0.0.1", port)] * (retries + 1)  # the connect retries happened
