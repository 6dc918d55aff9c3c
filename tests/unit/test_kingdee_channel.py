"""The Kingdee channel (fapiao_hub.channels.kingdee): the base64 envelope, seed 002's query answer,
BILL.PUSH, and the transport over real HTTP against the sandbox (sandbox/kingdee.py) on 127.0.0.1."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from fapiao_hub.channels import kingdee, wire
from fapiao_hub.channels.kingdee import (
    KingdeeChannel,
    KingdeeConfigError,
    KingdeeEnvelopeError,
    build_request,
    decode_data,
    encode_data,
    interpret_push_answer,
    interpret_query_answer,
    parse_options,
    to_bill,
)
from fapiao_hub.domain import jsonutil
from fapiao_hub.domain.config import ChannelSettings
from fapiao_hub.domain.discounts import unfold_inline_discount
from fapiao_hub.domain.models import (
    Application,
    Direction,
    InvoiceType,
    Line,
    LineNature,
    Party,
    RedReason,
    RedReference,
)
from fapiao_hub.domain.results import (
    Accepted,
    InvoiceFile,
    InvoiceLine,
    InvoiceState,
    Issued,
    NotFound,
    NotSent,
    Rejected,
    Unknown,
)
from sandbox import kingdee as sandbox_kingdee
from sandbox.kingdee import KingdeeServer, run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Seed 002's example answer exactly as the page shows it: ``data`` decoded (a list of bills).
SEED_ANSWER = json.loads((FIXTURES / "kingdee_seed002_query_answer.json").read_text(encoding="utf-8"))
SEED_BILL = "INTFACE_WW_BILL202105320231"
SEED_SELLER = "440300999999068"

TOKEN = "kd-test-token-5f2a9c"
SELLER_TAX_ID = "91310000631757739A"
BUYER_TAX_ID = "91310000631757739B"
BUYER_EMAIL = "li.lei@example.com"
BUYER_MOBILE = "13800138000"
OPTIONS = {"business_system_code": "FAPIAO_HUB", "submit": "bill_push"}


# --------------------------------------------------------------------------- builders


def make_line(index: int = 0, **overrides: Any) -> Line:
    fields: dict[str, Any] = {
        "index": index,
        "goods_name": "*计算机*笔记本电脑",
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
        "invoice_type": InvoiceType.VAT_SPECIAL_ELECTRONIC,
        "company_code": "VB5",
        "seller": Party(
            name="上海**集团有限公司",
            tax_number=SELLER_TAX_ID,
            address="上海市徐汇区**路1号",
            phone="021-24081101",
            bank_name="**银行上海分行",
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


def three_lines() -> Application:
    return make_app(
        make_line(0),
        make_line(1, goods_name="*计算机*显示器", unit_price=Decimal("1130.01"), amount=Decimal("1000.01"),
                  tax=Decimal("130.00")),
        make_line(2, goods_name="*信息技术服务*安装费", quantity=None, unit_price=None, amount=Decimal("100.00"),
                  tax=Decimal("6.00"), tax_rate=Decimal("0.06")),
    )  # fmt: skip


def settings(base_url: str = "http://127.0.0.1:9", **overrides: Any) -> ChannelSettings:
    fields: dict[str, Any] = {
        "type": "kingdee",
        "base_url": base_url,
        "connect_timeout_seconds": 1.0,
        "read_timeout_seconds": 2.0,
        "connect_retries": 1,
        "options": OPTIONS,
        "credentials": {"access_token": TOKEN},
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


def envelope(success: bool, code: str = "0", data: Any = None, message: str = "", *, raw_data: Any = None) -> bytes:
    body = {
        "data": raw_data if raw_data is not None else (None if data is None else encode_data(data)),
        "errorCode": code,
        "errorMsg": message,
        "success": success,
    }
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def seed_answer_encoded() -> bytes:
    """Seed 002's example as it travels: its ``data`` list encoded as base64 JSON."""
    return envelope(True, "0", SEED_ANSWER["data"])


def seed_invoice(**overrides: Any) -> dict[str, Any]:
    invoice = json.loads(json.dumps(SEED_ANSWER["data"][0]["invoiceList"][0]))
    invoice.update(overrides)
    return invoice


def query_answer(*invoices: dict[str, Any], bill: str = SEED_BILL) -> bytes:
    return envelope(True, "0", [{"invoiceList": list(invoices), "billNo": bill}])


# --------------------------------------------------------------------------- envelope


def test_data_round_trip_is_compact_utf8_json_in_base64() -> None:
    value = {"sellerTaxpayerId": SELLER_TAX_ID, "serialNo": "FH-1", "名称": "金蝶", "amount": Decimal("91.70")}
    text = encode_data(value)
    assert base64.b64decode(text, validate=True) == (
        '{"sellerTaxpayerId":"91310000631757739A","serialNo":"FH-1","名称":"金蝶","amount":91.7}'.encode()
    )
    assert decode_data(text) == {**value, "amount": Decimal("91.7")}


@pytest.mark.parametrize(
    "garbage",
    [
        "eyJhIjoxfQ",  # padding missing
        "eyJh*IjoxfQ==",  # a character outside the alphabet
        "eyJhIjox\nfQ==",  # a line break
        "6YeR6J22",  # base64 of text that is not JSON
        "",
        "ï¿½",
        ["eyJhIjoxfQ=="],
        {"a": 1},
        None,
    ],
)
def test_decoding_is_strict(garbage: Any) -> None:
    with pytest.raises(KingdeeEnvelopeError):
        decode_data(garbage)


def test_build_request_wraps_the_data() -> None:
    body = build_request("BILL.INVOICE.QUERY", {"serialNo": "FH-1"}, business_system_code="ERP", request_id="1")
    assert body == {
        "requestId": "1",
        "businessSystemCode": "ERP",
        "interfaceCode": "BILL.INVOICE.QUERY",
        "data": encode_data({"serialNo": "FH-1"}),
    }
    assert build_request("X", {}, business_system_code="ERP")["requestId"].isdigit()  # a ms timestamp


def test_aes_gcm_round_trip_and_a_wrong_key() -> None:
    pytest.importorskip("cryptography")
    key = bytes(range(32))
    text = encode_data({"serialNo": "FH-1"}, key)
    raw = base64.b64decode(text)
    assert len(raw) == 12 + len(b'{"serialNo":"FH-1"}') + 16  # nonce, ciphertext, tag
    assert decode_data(text, key) == {"serialNo": "FH-1"}
    assert encode_data({"serialNo": "FH-1"}, key) != text  # a fresh nonce each time
    with pytest.raises(KingdeeEnvelopeError, match="AES-GCM"):
        decode_data(text, bytes(32))
    with pytest.raises(KingdeeEnvelopeError, match="too short"):
        decode_data(base64.b64encode(b"short").decode(), key)
    options = parse_options({**OPTIONS, "encryption": "aes-gcm"}, {"aes_key": base64.b64encode(key).decode()})
    assert options.aes_key == key


def test_aes_gcm_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    aes = {**OPTIONS, "encryption": "aes-gcm"}
    with pytest.raises(KingdeeConfigError, match=r"credentials\.aes_key is not set"):
        parse_options(aes, {})
    with pytest.raises(KingdeeConfigError, match="not valid base64"):
        parse_options(aes, {"aes_key": "not*base64"})
    with pytest.raises(KingdeeConfigError, match="AES needs 16, 24 or 32"):
        parse_options(aes, {"aes_key": base64.b64encode(b"x" * 20).decode()})
    with pytest.raises(KingdeeConfigError, match="none or aes-gcm"):
        parse_options({**OPTIONS, "encryption": "sm4"}, {})
    # Without the cryptography package the option is refused when the channel is built.
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(KingdeeConfigError, match="'cryptography' package"):
        KingdeeChannel("kd", settings(options=aes, credentials={"aes_key": base64.b64encode(b"k" * 16).decode()}))


def test_options_are_checked() -> None:
    with pytest.raises(KingdeeConfigError, match="business_system_code"):
        parse_options({}, {})
    with pytest.raises(KingdeeConfigError, match="submit"):
        parse_options({**OPTIONS, "submit": "email"}, {})
    parsed = parse_options({"business_system_code": "ERP"}, {})
    assert parsed.submit == "out_of_band"
    assert parsed.not_found_codes == {"BILL_NOT_FOUND", "1004"}
    assert parsed.duplicate_codes == {"BILL_EXISTS"}
    assert parsed.states == {"2": InvoiceState.VOIDED}
    custom = parse_options({**OPTIONS, "not_found_codes": "X1, X2", "void_requested_statuses": "6"}, {})
    assert custom.not_found_codes == {"X1", "X2"}
    assert custom.states == {"2": InvoiceState.VOIDED, "6": InvoiceState.VOID_REQUESTED}


# --------------------------------------------------------------------------- seed 002's answer


def assert_is_the_seed_invoice(outcome: Any) -> None:
    assert isinstance(outcome, Issued) and outcome.duplicate is False
    (invoice,) = outcome.invoices
    assert (invoice.number, invoice.code) == ("10452076", "4403092140")
    assert (invoice.amount, invoice.tax) == (Decimal("91.74"), Decimal("8.26"))
    assert (invoice.red_remaining_amount, invoice.red_remaining_tax) == (Decimal("91.74"), Decimal("8.26"))
    assert invoice.issued_on == dt.date(2021, 8, 16)  # 1629043200000 ms is midnight in Shanghai
    assert invoice.invoice_type == InvoiceType.VAT_SPECIAL_PAPER
    assert invoice.channel_invoice_id == "1223726550327785500"
    assert invoice.state == InvoiceState.ISSUED
    assert invoice.check_code is None and invoice.files == ()
    assert invoice.original_number is None and invoice.original_code is None
    assert invoice.lines == (
        InvoiceLine(
            goods_name="*谷物*金额商品1",
            amount=Decimal("91.74"),
            tax=Decimal("8.26"),
            tax_rate=Decimal("0.09"),
            quantity=Decimal("1.0000000000"),
            unit_price=Decimal("91.7400000000"),
            unit="忠",
            specification=None,
            tax_code="1010101040000000000",
            nature="0",
        ),
    )
    details = invoice.details
    assert details["bill_no"] == details["billNo"] == SEED_BILL
    assert details["serialNo"] == "200_20210816100612556_0001"
    assert details["deviceNo"] == "44661620662214"
    assert (details["splitOrMergeFlag"], details["split_or_merge"]) == ("0", "normal")
    assert details["invoiceStatus"] == "0" and details["contractNo"] == "HT202011231984"
    assert "buyerTaxpayerId" not in details and "buyerRecipientMail" not in details


def test_seed_answer_maps_to_the_issued_invoice() -> None:
    assert_is_the_seed_invoice(interpret_query_answer(200, seed_answer_encoded(), request_number=SEED_BILL))


def test_seed_answer_as_the_page_shows_it_is_unknown() -> None:
    # The page prints ``data`` decoded; on the wire it is base64 ("返回内容,需要解密").
    content = json.dumps(SEED_ANSWER, ensure_ascii=False).encode()
    outcome = interpret_query_answer(200, content, request_number=SEED_BILL)
    assert isinstance(outcome, Unknown)
    assert "not base64 text" in outcome.reason and outcome.raw == content


@pytest.mark.parametrize(
    ("status", "state"),
    [(0, InvoiceState.ISSUED), ("2", InvoiceState.VOIDED), (3, InvoiceState.ISSUED), (1, InvoiceState.ISSUED)],
)
def test_invoice_status(status: Any, state: InvoiceState) -> None:
    outcome = interpret_query_answer(200, query_answer(seed_invoice(invoiceStatus=status)), request_number=SEED_BILL)
    assert isinstance(outcome, Issued)
    assert outcome.invoices[0].state == state
    assert outcome.invoices[0].details["invoiceStatus"] == str(status)


def test_void_requested_status_from_the_options() -> None:
    outcome = interpret_query_answer(
        200,
        query_answer(seed_invoice(invoiceStatus=6)),
        request_number=SEED_BILL,
        states=parse_options({**OPTIONS, "void_requested_statuses": "6"}, {}).states,
    )
    assert isinstance(outcome, Issued) and outcome.invoices[0].state == InvoiceState.VOID_REQUESTED


def test_digital_red_invoice_with_files() -> None:
    invoice = seed_invoice(
        invoiceType="02",
        invoiceCode="",
        invoiceNumber="",
        invoiceNum="24952000000028787793",
        invoiceDate="2024-03-11 12:06:51",
        totalAmount=-91.74,
        totalTaxAmount="-8.26",
        canRedAmount=0,
        canRedTaxAmount=0,
        originalInvoiceNumber="24952000000028780001",
        invoiceFileUrl="https://kd.example/f/1.pdf",
        ofdFileUrl="https://kd.example/f/1.ofd",
        xmlFileUrl="https://kd.example/f/1.xml",
        invoiceImageUrl="https://kd.example/f/1.PNG?sig=abc",
        checkCode="",
        goods=[{"amount": "-91.74", "taxAmount": "-8.26", "goodsName": "x", "lineProperty": "0"}, {"amount": "?"}],
    )
    outcome = interpret_query_answer(200, query_answer(invoice), request_number=SEED_BILL)
    assert isinstance(outcome, Issued)
    (got,) = outcome.invoices
    assert (got.number, got.code, got.invoice_type) == ("24952000000028787793", None, InvoiceType.DIGITAL_NORMAL)
    assert got.issued_on == dt.date(2024, 3, 11)
    assert (got.amount, got.tax) == (Decimal("-91.74"), Decimal("-8.26"))
    assert (got.red_remaining_amount, got.red_remaining_tax) == (Decimal("0.00"), Decimal("0.00"))
    assert (got.original_number, got.original_code) == ("24952000000028780001", None)
    assert got.files == (
        InvoiceFile(url="https://kd.example/f/1.pdf", format_hint="pdf"),
        InvoiceFile(url="https://kd.example/f/1.ofd", format_hint="ofd"),
        InvoiceFile(url="https://kd.example/f/1.xml", format_hint="xml"),
        InvoiceFile(url="https://kd.example/f/1.PNG?sig=abc", format_hint="png"),
    )
    assert len(got.lines) == 1 and got.details["unreadable_goods"] == "1"


def test_unknown_type_code_and_odd_figures_do_not_hide_the_invoice() -> None:
    invoice = seed_invoice(invoiceType="0099", totalAmount="abc", invoiceDate="tomorrow", id=None)
    outcome = interpret_query_answer(200, query_answer(invoice), request_number=SEED_BILL)
    assert isinstance(outcome, Issued)
    (got,) = outcome.invoices
    assert got.invoice_type is None and got.details["invoiceType"] == "0099"
    assert got.amount is None and got.issued_on is None and got.channel_invoice_id is None
    assert got.number == "10452076"
    # The raw text of each, for verification's finding (never a crash, never silently gone).
    assert got.unreadable == {"invoiceType": "0099", "totalAmount": "abc", "invoiceDate": "tomorrow"}


def test_unreadable_goods_are_recorded_raw() -> None:
    invoice = seed_invoice(goods=[{"amount": "91.7x", "taxAmount": "8.26", "goodsName": "x"}, "line"])
    outcome = interpret_query_answer(200, query_answer(invoice), request_number=SEED_BILL)
    assert isinstance(outcome, Issued)
    (got,) = outcome.invoices
    assert got.lines == () and got.details["unreadable_goods"] == "2"
    assert got.unreadable == {"goods[0].amount": "91.7x", "goods[1]": "line"}


def test_seller_and_buyer_tax_numbers_are_mapped() -> None:
    invoice = seed_invoice(sellerTaxpayerId=SELLER_TAX_ID, buyerTaxpayerId=f" {BUYER_TAX_ID} ")
    outcome = interpret_query_answer(200, query_answer(invoice), request_number=SEED_BILL)
    assert isinstance(outcome, Issued)
    (got,) = outcome.invoices
    assert (got.seller_tax_number, got.buyer_tax_number) == (SELLER_TAX_ID, BUYER_TAX_ID)
    assert got.unreadable == {}


def test_split_and_merge_flags() -> None:
    second = seed_invoice(invoiceNumber="10452077", splitOrMergeFlag="1", id=2)
    outcome = interpret_query_answer(
        200, query_answer(seed_invoice(splitOrMergeFlag="1"), second), request_number=SEED_BILL
    )
    assert isinstance(outcome, Issued)
    assert [i.number for i in outcome.invoices] == ["10452076", "10452077"]
    assert {i.details["split_or_merge"] for i in outcome.invoices} == {"split"}
    merged = seed_invoice(splitOrMergeFlag="2", billNo="MERGED-7")
    outcome = interpret_query_answer(200, query_answer(merged), request_number=SEED_BILL)
    assert isinstance(outcome, Issued)
    assert outcome.invoices[0].details["split_or_merge"] == "merge"
    assert outcome.invoices[0].details["billNo"] == "MERGED-7"  # the invoice's own bill number
    assert outcome.invoices[0].details["bill_no"] == SEED_BILL  # the bill asked for


def test_the_same_invoice_listed_twice_is_returned_once() -> None:
    outcome = interpret_query_answer(200, query_answer(seed_invoice(), seed_invoice()), request_number=SEED_BILL)
    assert isinstance(outcome, Issued) and len(outcome.invoices) == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (envelope(True, "0", []), NotFound),
        (envelope(False, "BILL_NOT_FOUND", message="开票申请单不存在"), NotFound),
        (envelope(False, "1004"), NotFound),
        (query_answer(), Accepted),  # the bill is known, nothing issued yet
        (envelope(True, "0", [{"billNo": SEED_BILL}]), Accepted),
        (query_answer(seed_invoice(), seed_invoice(invoiceNumber="", id=9)), Accepted),  # a split half done
        (query_answer(seed_invoice(), bill="SOMEONE-ELSE"), Unknown),
        (envelope(True, "0", {"billNo": SEED_BILL}), Unknown),
        (envelope(True, "0", [{"billNo": SEED_BILL, "invoiceList": {"a": 1}}]), Unknown),
        (envelope(True, "0", [1]), Unknown),
        (envelope(True, "0"), Unknown),  # success without data
        (envelope(False, "9999", message="系统繁忙"), Unknown),
        (envelope(True, "0", raw_data="W3siYmlsbE5vIjoi*ZmFwaWFvIn1d"), Unknown),
        (b"<html>oops</html>", Unknown),
        (b'{"success": "true"}', Unknown),
    ],
)
def test_query_answers(content: bytes, expected: type) -> None:
    outcome = interpret_query_answer(200, content, request_number=SEED_BILL)
    assert isinstance(outcome, expected), outcome
    if expected is Accepted:
        assert outcome == Accepted(channel_ref=SEED_BILL)
    if expected is Unknown:
        assert outcome.raw == content


def test_one_bill_without_its_number_is_the_one_asked_for() -> None:
    content = envelope(True, "0", [{"invoiceList": [seed_invoice()]}])
    assert isinstance(interpret_query_answer(200, content, request_number=SEED_BILL), Issued)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, Issued), (302, NotSent), (429, NotSent), (503, NotSent), (500, Unknown), (502, Unknown), (400, Unknown)],
)
def test_query_http_statuses(status: int, kind: type) -> None:
    content = seed_answer_encoded() if status == 200 else b"<html>error</html>"
    assert isinstance(interpret_query_answer(status, content, request_number=SEED_BILL), kind)


# --------------------------------------------------------------------------- BILL.PUSH


def test_bill_mapping() -> None:
    discounted, discount = unfold_inline_discount(
        make_line(0, goods_name="*家具*办公椅", unit="把", quantity=Decimal("2"), unit_price=Decimal("56.50"),
                  amount=Decimal("100.00"), tax=Decimal("13.00")),
        discount_amount=Decimal("10.00"),
        discount_tax=Decimal("1.30"),
    )  # fmt: skip
    policy = make_line(1, preferential_policy="免税", zero_rate_flag="1", tax_rate=Decimal("0"), tax=Decimal("0.00"),
                       amount=Decimal("50.00"), unit_price=Decimal("50"), material_code="M-1")  # fmt: skip
    app = make_app(discounted, discount, policy)
    bill = to_bill(app, "FH-0001", {**OPTIONS, "drawer": "王五", "payee": "李四"})
    assert isinstance(bill.pop("billDate"), int)
    lines = bill.pop("billDetail")
    assert bill == {
        "billNo": "FH-0001",
        "sellerTaxpayerId": SELLER_TAX_ID,
        "sellerName": "上海**集团有限公司",
        "sellerAddressAndTel": "上海市徐汇区**路1号 021-24081101",
        "sellerBankAndAccount": "**银行上海分行 088-296504-011",
        "buyerName": "**集团有限公司电子商务中心",
        "buyerTaxpayerId": BUYER_TAX_ID,
        "buyerAddressAndTel": "北京市昌平区北***院101楼620室 010-58688395",
        "buyerRecipientMail": BUYER_EMAIL,
        "buyerRecipientPhone": BUYER_MOBILE,
        "invoiceType": "028",
        "remark": "合同号 HT-2024-001",
        "totalAmount": Decimal("140.00"),
        "totalTaxAmount": Decimal("11.70"),
        "includeTaxAmount": Decimal("151.70"),
        "taxFlag": "1",
        "drawer": "王五",
        "payee": "李四",
    }  # absent values (the buyer's bank, the reviewer) are left out
    assert [(x["seq"], x["lineProperty"], x["amount"], x["taxAmount"]) for x in lines] == [
        (0, 2, Decimal("100.00"), Decimal("13.00")),
        (1, 1, Decimal("-10.00"), Decimal("-1.30")),
        (2, 0, Decimal("50.00"), Decimal("0.00")),
    ]
    assert lines[0] == {
        "seq": 0,
        "goodsName": "*家具*办公椅",
        "revenueCode": "1090509010000000000",
        "units": "把",
        "quantity": "2.00000000",
        "amount": Decimal("100.00"),
        "taxAmount": Decimal("13.00"),
        "includeTaxAmount": Decimal("113.00"),
        "taxRate": "0.13",
        "lineProperty": 2,
        "privilegeFlag": 0,
        "includeTaxPrice": "56.50000000",
    }
    assert "units" not in lines[1] and "quantity" not in lines[1] and "includeTaxPrice" not in lines[1]
    assert (lines[2]["privilegeFlag"], lines[2]["privilegeContent"], lines[2]["zeroTaxRateFlag"]) == (1, "免税", "1")
    assert (lines[2]["taxRate"], lines[2]["goodsCode"]) == ("0", "M-1")
    # On the wire amounts are JSON numbers, digit for digit.
    assert '"totalTaxAmount":11.7,' in jsonutil.dumps(bill)
    excl = to_bill(make_app(prices_include_tax=False, lines=(make_line(unit_price=Decimal("4570.8")),)), "R", OPTIONS)
    assert excl["taxFlag"] == "0" and excl["billDetail"][0]["price"] == "4570.80000000"


@pytest.mark.parametrize(
    ("invoice_type", "code"),
    [
        (InvoiceType.DIGITAL_SPECIAL, "01"),
        (InvoiceType.DIGITAL_NORMAL, "02"),
        (InvoiceType.VAT_SPECIAL_PAPER, "004"),
        (InvoiceType.VAT_NORMAL_PAPER, "007"),
        (InvoiceType.VAT_NORMAL_ELECTRONIC, "026"),
        (InvoiceType.VAT_SPECIAL_ELECTRONIC, "028"),
    ],
)
def test_invoice_type_codes_both_ways(invoice_type: InvoiceType, code: str) -> None:
    assert to_bill(make_app(invoice_type=invoice_type), "R", OPTIONS)["invoiceType"] == code
    assert kingdee.INVOICE_TYPES_BY_CODE[code] == invoice_type


def test_red_bill() -> None:
    red_line = make_line(0, quantity=Decimal("-1"), amount=Decimal("-4570.80"), tax=Decimal("-594.20"))
    red = RedReference(
        blue_invoice_number="24952000000028780001", reason=RedReason.GOODS_RETURNED, confirmation_number="RC-1"
    )
    bill = to_bill(make_app(red_line, direction=Direction.RED, red=red), "R", OPTIONS)
    assert (bill["originalInvoiceNumber"], bill["redReason"], bill["redInfoBillNo"]) == (
        "24952000000028780001",
        "02",
        "RC-1",
    )
    assert "originalInvoiceCode" not in bill and bill["totalAmount"] == Decimal("-4570.80")


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"direction": Direction.RED}, wire.MISSING_BLUE_INVOICE),
        ({"seller": Party(name="卖方")}, kingdee.MISSING_SELLER_TAX_NUMBER),
        ({"seller": Party(name="卖方", tax_number="9" * 21)}, wire.FIELD_TOO_LONG),
    ],
)
def test_refused_before_sending(overrides: dict[str, Any], code: str) -> None:
    outcome = KingdeeChannel("kd", settings(), NoNetwork()).issue(make_app(**overrides), "R-1")
    assert isinstance(outcome, Rejected) and outcome.code == code, outcome


def test_a_discount_line_without_its_discounted_line_is_refused() -> None:
    _, discount = unfold_inline_discount(make_line(), discount_amount=Decimal("1.00"), discount_tax=Decimal("0.13"))
    app = make_app(make_line(0), discount)
    outcome = KingdeeChannel("kd", settings(), NoNetwork()).issue(app, "R-1")
    assert isinstance(outcome, Rejected) and outcome.code == wire.INVALID_DISCOUNT_LINES
    assert discount.nature == LineNature.DISCOUNT


def test_out_of_band_submission_sends_nothing() -> None:
    channel = KingdeeChannel("kd", settings(options={"business_system_code": "ERP"}), NoNetwork())
    assert channel.issue(make_app(), "FH-9") == Accepted(channel_ref="FH-9")
    assert channel.can_query is True and channel.dedupes_request_number is True


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (envelope(True, "0", {"billNo": "FH-1"}), Accepted(channel_ref="FH-1")),
        (envelope(True, "0"), Accepted(channel_ref="FH-1")),
        (envelope(False, "BILL_EXISTS", {"billNo": "FH-1"}, "单据编号已存在"), Accepted(channel_ref="FH-1")),
        (
            envelope(False, "BILL_INVALID", message="buyerName: required"),
            Rejected("buyerName: required", "BILL_INVALID"),
        ),
        (envelope(False, None, message=""), Rejected("rejected by Kingdee", None)),  # type: ignore[arg-type]
    ],
)
def test_push_answers(content: bytes, expected: Any) -> None:
    assert interpret_push_answer(200, content, request_number="FH-1") == expected


@pytest.mark.parametrize(
    "content",
    [
        envelope(True, "0", {"billNo": "FH-2"}),  # another bill
        envelope(True, "0", ["FH-1"]),
        envelope(True, "0", raw_data="%%%"),
        b"not json",
        b'{"errorCode": "0"}',
        envelope(False, "AUTH_FAILED", message="access_token 无效"),
    ],
)
def test_unreadable_push_answers_are_unknown(content: bytes) -> None:
    outcome = interpret_push_answer(200, content, request_number="FH-1")
    assert isinstance(outcome, Unknown) and outcome.raw == content


@pytest.mark.parametrize(
    ("status", "kind"),
    [(301, NotSent), (408, NotSent), (429, NotSent), (503, NotSent), (404, NotSent), (400, Rejected),
     (422, Rejected), (500, Unknown), (502, Unknown), (504, Unknown)],
)  # fmt: skip
def test_push_http_statuses(status: int, kind: type) -> None:
    assert isinstance(interpret_push_answer(status, b"<html>x</html>", request_number="FH-1"), kind)


def test_vendor_messages_are_scrubbed() -> None:
    class Answering(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            response = requests.Response()
            response.status_code = 200
            message = f"购方 {BUYER_TAX_ID} 邮箱 {BUYER_EMAIL} 手机 {BUYER_MOBILE} token {TOKEN} 不合法"
            response._content = envelope(False, "BILL_INVALID", message=message)
            return response

    outcome = KingdeeChannel("kd", settings(), Answering()).issue(make_app(), "FH-1")
    assert isinstance(outcome, Rejected)
    for secret in (BUYER_TAX_ID, BUYER_EMAIL, BUYER_MOBILE, TOKEN):
        assert secret not in outcome.reason
    assert outcome.reason.startswith("购方 *** 邮箱 ***")


# --------------------------------------------------------------------------- transport, no server

TRANSPORT_ERRORS = [
    (requests.ConnectTimeout("connect timed out"), NotSent),
    (requests.ConnectionError(MaxRetryError(None, "/", NewConnectionError(None, "refused"))), NotSent),  # type: ignore[arg-type]
    (requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError())), Unknown),
    (requests.ReadTimeout("read timed out"), Unknown),
    (requests.exceptions.ChunkedEncodingError("broken"), Unknown),
    (requests.exceptions.SSLError("handshake"), Unknown),
    (RuntimeError("anything"), Unknown),
    (requests.exceptions.InvalidURL("bad url"), NotSent),
]


@pytest.mark.parametrize(("error", "kind"), TRANSPORT_ERRORS)
def test_transport_errors(error: Exception, kind: type) -> None:
    session = Raising(error)
    channel = KingdeeChannel("kd", settings(), session)
    assert isinstance(channel.issue(make_app(), "FH-1"), kind)
    assert isinstance(channel.query(make_app(), "FH-1"), kind)
    assert session.calls == 2


def test_the_session_retries_connecting_only() -> None:
    channel = KingdeeChannel("kd", settings(connect_retries=3))
    retry = channel.session.get_adapter("http://127.0.0.1/").max_retries
    assert (retry.total, retry.connect, retry.read, retry.status, retry.other) == (3, 3, False, 0, 0)
    assert "POST" not in retry.allowed_methods
    assert channel.timeout == (1.0, 2.0)


def test_query_without_a_seller_tax_number_is_unknown() -> None:
    outcome = KingdeeChannel("kd", settings(), NoNetwork()).query(make_app(seller=Party(name="卖方")), "FH-1")
    assert isinstance(outcome, Unknown) and "sellerTaxpayerId" in outcome.reason


# --------------------------------------------------------------------------- over real HTTP

FAST = (1.0, 2.0)


@pytest.fixture(scope="module")
def server() -> Iterator[KingdeeServer]:
    srv = run(port=0, access_token=TOKEN)
    yield srv
    srv.shutdown()


@pytest.fixture
def sandbox(server: KingdeeServer) -> KingdeeServer:
    assert requests.post(server.base_url + "/_sandbox/reset", timeout=FAST).status_code == 200
    control(server, "config", {"timeout_ms": 1000})
    return server


def control(server: KingdeeServer, what: str, body: Any) -> Any:
    data = jsonutil.dumps(body).encode("utf-8")  # Decimals as numbers
    response = requests.post(f"{server.base_url}/_sandbox/{what}", data=data, timeout=FAST)
    assert response.status_code == 200, response.text
    return response.json()


def oracle(server: KingdeeServer, bill_no: str | None = None) -> dict[str, Any]:
    path = "/_sandbox/issued" if bill_no is None else f"/_sandbox/bills/{bill_no}"
    return requests.get(server.base_url + path, timeout=FAST).json()


def channel_for(server: KingdeeServer, **overrides: Any) -> KingdeeChannel:
    return KingdeeChannel("kd", settings(server.base_url, **overrides))


def test_seed_answer_over_http(sandbox: KingdeeServer) -> None:
    control(sandbox, "preload", SEED_ANSWER["data"])
    seller = Party(name="航信培训企业", tax_number=SEED_SELLER)
    assert_is_the_seed_invoice(channel_for(sandbox).query(make_app(seller=seller), SEED_BILL))
    # Another seller does not see the bill.
    assert channel_for(sandbox).query(make_app(), SEED_BILL) == NotFound()


def test_the_wire_format(sandbox: KingdeeServer) -> None:
    control(sandbox, "config", {"auto": True})
    body = build_request(
        "BILL.INVOICE.QUERY", {"sellerTaxpayerId": SELLER_TAX_ID, "serialNo": "FH-W"}, business_system_code="ERP"
    )
    response = requests.post(f"{sandbox.base_url}/kapi/app/sim/openApi?access_token={TOKEN}", json=body, timeout=FAST)
    answer = response.json()
    assert (answer["success"], answer["errorCode"]) == (True, "0")
    assert isinstance(answer["data"], str)  # base64 on the wire
    (bill,) = decode_data(answer["data"])
    (invoice,) = bill["invoiceList"]
    assert bill["billNo"] == invoice["billNo"] == "FH-W"
    assert set(invoice) == set(seed_invoice())  # the seed's fields, all of them
    assert len(invoice["checkCode"]) == 20 and len(invoice["invoiceCode"]) == 12 and invoice["invoiceType"] == "026"
    pdf = requests.get(invoice["invoiceFileUrl"], timeout=FAST)
    assert pdf.content.startswith(b"%PDF")


def test_push_then_query(sandbox: KingdeeServer) -> None:
    control(sandbox, "config", {"issue_delay_ms": 60_000})
    channel = channel_for(sandbox)
    app = three_lines()
    assert channel.issue(app, "FH-0001") == Accepted(channel_ref="FH-0001")
    assert channel.query(app, "FH-0001") == Accepted(channel_ref="FH-0001")  # known, not issued yet
    assert oracle(sandbox)["counts"] == {}
    control(sandbox, "config", {"issue_delay_ms": 0})
    outcome = channel.query(app, "FH-0001")
    assert isinstance(outcome, Issued)
    (invoice,) = outcome.invoices
    assert (invoice.amount, invoice.tax) == (app.amount, app.tax)
    assert invoice.invoice_type == InvoiceType.VAT_SPECIAL_ELECTRONIC
    assert invoice.issued_on in {dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date(), dt.date.today()}
    assert [line.amount for line in invoice.lines] == [line.amount for line in app.lines]
    assert invoice.files[0].format_hint == "pdf" and invoice.files[0].url.startswith(sandbox.base_url)
    assert invoice.details["split_or_merge"] == "normal"
    stored = oracle(sandbox, "FH-0001")
    assert (stored["count"], stored["pushes"], stored["source"]) == (1, 1, "push")
    assert stored["bill"]["billDetail"][1]["goodsName"] == "*计算机*显示器"
    assert channel.query(app, "FH-0001") == outcome  # issued once, answered the same way again
    assert oracle(sandbox)["total"] == 1


def test_split_into_three(sandbox: KingdeeServer) -> None:
    control(sandbox, "config", {"split_into": 3})
    channel = channel_for(sandbox)
    app = three_lines()
    assert isinstance(channel.issue(app, "FH-0002"), Accepted)
    outcome = channel.query(app, "FH-0002")
    assert isinstance(outcome, Issued)
    assert len(outcome.invoices) == 3
    assert len({i.number for i in outcome.invoices}) == 3
    assert sum(i.amount for i in outcome.invoices) == app.amount  # exactly, to the cent
    assert sum(i.tax for i in outcome.invoices) == app.tax
    for invoice in outcome.invoices:
        assert (invoice.red_remaining_amount, invoice.red_remaining_tax) == (invoice.amount, invoice.tax)
        assert sum(line.amount for line in invoice.lines) == invoice.amount
        assert invoice.details["split_or_merge"] == "split"
    assert oracle(sandbox)["counts"] == {"FH-0002": 3}


def test_duplicate_push_is_accepted_and_stored_once(sandbox: KingdeeServer) -> None:
    channel = channel_for(sandbox)
    assert channel.issue(make_app(), "FH-0003") == Accepted(channel_ref="FH-0003")
    assert channel.issue(make_app(), "FH-0003") == Accepted(channel_ref="FH-0003")
    assert isinstance(channel.query(make_app(), "FH-0003"), Issued)
    assert channel.issue(make_app(), "FH-0003") == Accepted(channel_ref="FH-0003")  # even once issued
    summary = oracle(sandbox)
    assert summary["bills"] == {"FH-0003": "push"}
    assert summary["pushes"] == {"FH-0003": 3}
    assert summary["counts"] == {"FH-0003": 1}


def test_bad_token_is_unknown_with_a_clear_reason(sandbox: KingdeeServer) -> None:
    channel = channel_for(sandbox, credentials={"access_token": "expired-token-123"})
    for outcome in (channel.issue(make_app(), "FH-0004"), channel.query(make_app(), "FH-0004")):
        assert isinstance(outcome, Unknown), outcome
        assert "access_token" in outcome.reason and "AUTH_FAILED" in outcome.reason
        assert "expired-token-123" not in outcome.reason
    no_token = channel_for(sandbox, credentials={})
    assert isinstance(no_token.query(make_app(), "FH-0004"), Unknown)
    assert oracle(sandbox)["bills"] == {}


def test_vendor_validation_is_a_rejection(sandbox: KingdeeServer) -> None:
    app = make_app(buyer=Party(name="个人"))  # a special invoice without the buyer's tax number
    outcome = channel_for(sandbox).issue(app, "FH-0005")
    assert isinstance(outcome, Rejected) and outcome.code == "BILL_INVALID"
    assert "buyerTaxpayerId" in outcome.reason
    assert oracle(sandbox, "FH-0005")["stored"] is False


def test_unknown_bills(sandbox: KingdeeServer) -> None:
    channel = channel_for(sandbox)
    assert channel.query(make_app(), "FH-0006") == NotFound()
    control(sandbox, "config", {"not_found": "empty"})
    assert channel.query(make_app(), "FH-0006") == NotFound()
    control(sandbox, "config", {"auto": True})  # as if the bill had reached Kingdee out of band
    outcome = channel.query(make_app(), "FH-0006")
    assert isinstance(outcome, Issued)
    assert (outcome.invoices[0].amount, outcome.invoices[0].tax) == (Decimal("100.00"), Decimal("6.00"))
    assert oracle(sandbox)["bills"] == {"FH-0006": "auto"}


def test_bills_registered_out_of_band(sandbox: KingdeeServer) -> None:
    channel = channel_for(sandbox, options={"business_system_code": "ERP"})  # submit out of band
    app = three_lines()
    assert channel.issue(app, "FH-0007") == Accepted(channel_ref="FH-0007")
    assert oracle(sandbox)["bills"] == {}  # nothing was sent
    bill = to_bill(app, "FH-0007", OPTIONS)
    assert control(sandbox, "bills", bill) == {"stored": 1}
    outcome = channel.query(app, "FH-0007")
    assert isinstance(outcome, Issued) and outcome.invoices[0].amount == app.amount
    assert oracle(sandbox)["bills"] == {"FH-0007": "out_of_band"}
    again = requests.post(f"{sandbox.base_url}/_sandbox/bills", data=jsonutil.dumps(bill).encode(), timeout=FAST)
    assert again.status_code == 400 and "already held" in again.json()["error"]


@pytest.mark.parametrize(("entry", "kind"), [("error_503", NotSent), ("error_500", Unknown), ("error_502", Unknown)])
def test_server_errors(sandbox: KingdeeServer, entry: str, kind: type) -> None:
    control(sandbox, "faults", {"FH-0008": [entry, entry]})
    channel = channel_for(sandbox)
    pushed = channel.issue(make_app(), "FH-0008")
    assert isinstance(pushed, kind), pushed
    if kind is Unknown:
        assert pushed.raw
    queried = channel.query(make_app(), "FH-0008")
    assert isinstance(queried, kind), queried
    assert oracle(sandbox, "FH-0008")["stored"] is False  # nothing stored, no status retry


def test_timeout_after_push_is_unknown_then_the_query_finds_it(sandbox: KingdeeServer) -> None:
    control(sandbox, "faults", {"FH-0009": ["timeout_after_issue"]})
    channel = channel_for(sandbox, read_timeout_seconds=0.3)
    outcome = channel.issue(make_app(), "FH-0009")
    assert isinstance(outcome, Unknown) and "read timeout" in outcome.reason
    assert oracle(sandbox, "FH-0009")["pushes"] == 1  # sent once, not retried
    assert isinstance(channel.query(make_app(), "FH-0009"), Issued)
    assert channel.issue(make_app(), "FH-0009") == Accepted(channel_ref="FH-0009")  # the same number again
    assert oracle(sandbox)["counts"] == {"FH-0009": 1}


def test_connection_reset_is_unknown(sandbox: KingdeeServer) -> None:
    control(sandbox, "faults", {"FH-0010": ["connection_reset"]})
    assert isinstance(channel_for(sandbox).issue(make_app(), "FH-0010"), Unknown)
    assert oracle(sandbox, "FH-0010")["stored"] is False


def test_malformed_data_is_unknown_with_the_raw_answer(sandbox: KingdeeServer) -> None:
    control(sandbox, "faults", {"FH-0011": ["malformed", "malformed"]})
    channel = channel_for(sandbox)
    for outcome in (channel.issue(make_app(), "FH-0011"), channel.query(make_app(), "FH-0011")):
        assert isinstance(outcome, Unknown), outcome
        assert "not valid base64" in outcome.reason
        assert outcome.raw is not None and sandbox_kingdee.MALFORMED_DATA.encode() in outcome.raw
    assert oracle(sandbox)["counts"] == {"FH-0011": 1}  # the query issued it; the answer was lost
    assert isinstance(channel.query(make_app(), "FH-0011"), Issued)


def test_reject_fault(sandbox: KingdeeServer) -> None:
    control(sandbox, "faults", {"FH-0012": ["reject", "reject"]})
    channel = channel_for(sandbox)
    pushed = channel.issue(make_app(), "FH-0012")
    assert isinstance(pushed, Rejected) and pushed.code == "SANDBOX_REJECT"
    assert isinstance(channel.query(make_app(), "FH-0012"), Unknown)  # a failed query decides nothing


def test_connection_refused_is_not_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = KingdeeChannel("kd", settings(f"http://127.0.0.1:{port}", connect_retries=0))
    assert isinstance(channel.issue(make_app(), "FH-0013"), NotSent)
    assert isinstance(channel.query(make_app(), "FH-0013"), NotSent)


def test_sandbox_control_errors(sandbox: KingdeeServer) -> None:
    for body in ({"split_into": 0}, {"auto": "yes"}, {"not_found": "maybe"}, {"rates": {"nope": 1}}):
        response = requests.post(f"{sandbox.base_url}/_sandbox/config", json=body, timeout=FAST)
        assert response.status_code == 400, body
    assert oracle(sandbox)["total"] == 0
    config = requests.get(f"{sandbox.base_url}/_sandbox/config", timeout=FAST).json()
    assert config["access_token"] == "***" and config["split_into"] == 1
