"""Ekuaibao result pushes (seed 000): reading them (liberal where the seed deviates, strict elsewhere)
and writing them back (to_push_body), with seed 000's example verbatim as the first witness."""

from __future__ import annotations

import copy
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from fapiao_hub.channels.base import CallbackRejected
from fapiao_hub.channels.ekuaibao import EkuaibaoChannel, parse_push, to_push_body
from fapiao_hub.domain import jsonutil
from fapiao_hub.domain.config import ChannelSettings
from fapiao_hub.domain.models import Application, InvoiceType
from fapiao_hub.domain.results import (
    Accepted,
    CallbackResult,
    InvoiceFile,
    InvoiceLine,
    InvoiceState,
    Issued,
    IssuedInvoice,
    Rejected,
    Unknown,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ekuaibao_seed000_push.json"


def seed_body() -> dict[str, Any]:
    """Seed 000's example as a dict (it has no JSON floats: every amount is a string)."""
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def only_invoice(results: list[CallbackResult]) -> IssuedInvoice:
    assert len(results) == 1
    outcome = results[0].outcome
    assert isinstance(outcome, Issued)
    assert len(outcome.invoices) == 1
    return outcome.invoices[0]


def rejected_reason(body: dict[str, Any] | bytes) -> str:
    raw = body if isinstance(body, bytes) else encode(body)
    with pytest.raises(CallbackRejected) as caught:
        parse_push(raw)
    return str(caught.value)


# --------------------------------------------------------------------------- seed 000, verbatim


def test_the_fixture_keeps_the_seed_examples_quirks():
    text = FIXTURE.read_text(encoding="utf-8")
    assert text.count('"taxTaxonomyCode ": ""') == 2  # the trailing space is kept
    assert '"taxRate": "0.06"' in text and '"invoicingDate": ""' in text
    assert '"result"' not in text and '"serialNo"' not in text


def test_seed_example_parses_to_one_issued_invoice():
    results = parse_push(FIXTURE.read_bytes())
    assert len(results) == 1
    assert results[0].request_number is None  # neither serialNo nor orderNo: an unmatched result
    assert results[0].channel_ref is None
    invoice = only_invoice(results)
    assert invoice.number == "89429424"
    assert invoice.code == "0120020004xxx"
    assert invoice.amount == Decimal("828.30") and str(invoice.amount) == "828.30"
    assert invoice.tax == Decimal("49.70")
    assert invoice.check_code == "58428259812242286445"
    assert invoice.invoice_type is InvoiceType.VAT_NORMAL_ELECTRONIC  # 026
    assert invoice.state is InvoiceState.ISSUED  # invoicingStatus 00
    assert invoice.issued_on == dt.date(2021, 4, 28)  # 1619539200000 ms = 2021-04-28 00:00 UTC+8
    assert invoice.files == ()  # originalsUrl and previewUrl are empty
    assert invoice.original_number is None and invoice.original_code is None
    assert [(line.amount, line.tax) for line in invoice.lines] == [
        (Decimal("745.28"), Decimal("44.72")),
        (Decimal("83.02"), Decimal("4.98")),
    ]
    first, second = invoice.lines
    assert first.goods_name == "*经纪代理服务*机票款"
    assert first.tax_rate == Decimal("0.06")  # from the example's taxRate (the table says taxrate)
    assert first.quantity == Decimal("1")
    assert first.unit_price == Decimal("745.28301887")
    assert first.unit == "次"
    assert first.tax_code is None  # "taxTaxonomyCode ": "" (trailing space, blank)
    assert first.specification is None
    assert first.nature is None
    assert second.unit_price == Decimal("83.01886792")
    assert sum(line.amount for line in invoice.lines) == invoice.amount
    assert sum(line.tax for line in invoice.lines) == invoice.tax
    assert invoice.details["direction"] == "RED"  # invoiceType 1 (负数流水单)
    assert invoice.details["total_incl_tax"] == "878.00"
    assert invoice.details["buyer_name"] == invoice.buyer_name == "北京文化产业有限公司"
    assert invoice.details["ext"] == '{"x":""}'
    assert "invoicing_date" not in invoice.details  # invoicingDate: ""
    assert "order_no" not in invoice.details


def test_seed_example_through_the_channel():
    channel = EkuaibaoChannel("ekuaibao", ChannelSettings(type="ekuaibao", base_url="https://app.ekuaibao.com"))
    assert channel.parse_callback(FIXTURE.read_bytes()) == parse_push(FIXTURE.read_bytes())


def test_result_absent_is_the_tables_default_zero():
    body = seed_body()
    assert "result" not in body  # seed 000's example omits it
    body["result"] = 0
    assert parse_push(encode(body)) == parse_push(FIXTURE.read_bytes())


# --------------------------------------------------------------------------- results 1 and 2


@pytest.mark.parametrize("result", [1, "1"])
def test_result_1_is_rejected_with_reject_msg(result):
    body = {"channelCode": "jcsk", "serialNo": "FH00000000000000000001", "result": result, "rejectMsg": "购方税号有误"}
    assert parse_push(encode(body)) == [
        CallbackResult(Rejected("购方税号有误"), request_number="FH00000000000000000001")
    ]


def test_result_1_without_reject_msg_still_says_why():
    (result,) = parse_push(encode({"channelCode": "jcsk", "result": 1}))
    assert isinstance(result.outcome, Rejected)
    assert "no rejectMsg" in result.outcome.reason
    assert result.request_number is None


@pytest.mark.parametrize("result", [2, "2"])
def test_result_2_is_accepted(result):
    body = {"channelCode": "jcsk", "serialNo": "FH1", "result": result, "data": []}
    assert parse_push(encode(body)) == [CallbackResult(Accepted(channel_ref="FH1"), request_number="FH1")]


def test_results_1_and_2_group_by_order_no_without_serial_no():
    body = {"channelCode": "jcsk", "result": 2, "data": [{"orderNo": "A"}, {"orderNo": "B"}, {"orderNo": "A"}]}
    assert [r.request_number for r in parse_push(encode(body))] == ["A", "B"]
    body["result"] = 1
    body["data"] = json.dumps(body["data"])
    assert [(r.request_number, type(r.outcome)) for r in parse_push(encode(body))] == [
        ("A", Rejected),
        ("B", Rejected),
    ]


# --------------------------------------------------------------------------- identification


def test_serial_no_is_the_request_number_and_keeps_every_invoice_together():
    body = seed_body()
    body["serialNo"] = "FH7Q2K"
    second = copy.deepcopy(body["data"][0])
    second["invoiceNumber"] = "89429425"
    second["orderNo"] = "something-else"
    body["data"].append(second)
    (result,) = parse_push(encode(body))
    assert result.request_number == "FH7Q2K"
    assert isinstance(result.outcome, Issued)
    assert [i.number for i in result.outcome.invoices] == ["89429424", "89429425"]
    assert result.outcome.invoices[1].details["order_no"] == "something-else"


def test_without_serial_no_invoices_are_grouped_by_order_no():
    body = seed_body()
    template = body["data"][0]
    body["data"] = []
    for number, order_no in [("1", "FHA"), ("2", "FHB"), ("3", "FHA"), ("4", "")]:
        invoice = copy.deepcopy(template)
        invoice["invoiceNumber"] = number
        invoice["orderNo"] = order_no
        body["data"].append(invoice)
    results = parse_push(encode(body))
    grouped = {r.request_number: [i.number for i in r.outcome.invoices] for r in results}
    assert grouped == {"FHA": ["1", "3"], "FHB": ["2"], None: ["4"]}
    assert [r.request_number for r in results] == ["FHA", "FHB", None]


def test_blank_serial_no_falls_back_to_order_no():
    body = seed_body()
    body["serialNo"] = "  "
    body["data"][0]["orderNo"] = "FH42"
    assert parse_push(encode(body))[0].request_number == "FH42"


# --------------------------------------------------------------------------- liberal readings


def test_data_as_a_json_string_reads_like_the_list():
    body = seed_body()
    body["data"] = json.dumps(body["data"], ensure_ascii=False)
    assert parse_push(encode(body)) == parse_push(FIXTURE.read_bytes())


def test_numbers_as_json_numbers_stay_exact_decimals():
    text = FIXTURE.read_text(encoding="utf-8")
    text = text.replace('"goodsCost": "745.28"', '"goodsCost": 745.28').replace(
        '"invoiceAmount": "828.30"', '"invoiceAmount": 828.30'
    )
    text = text.replace('"goodsNum": "1"', '"goodsNum": 1')
    invoice = only_invoice(parse_push(text.encode("utf-8")))
    assert invoice.amount == Decimal("828.30") and isinstance(invoice.amount, Decimal)
    assert invoice.lines[0].amount == Decimal("745.28")
    assert invoice.lines[0].quantity == Decimal(1)


def test_dates_as_numeric_strings_and_the_invoicing_date_fallback():
    body = seed_body()
    body["data"][0]["invoiceDate"] = "1619539200000"
    assert only_invoice(parse_push(encode(body))).issued_on == dt.date(2021, 4, 28)
    body["data"][0]["invoiceDate"] = ""
    body["data"][0]["invoicingDate"] = 1619625599999  # 2021-04-28 23:59:59.999 UTC+8
    invoice = only_invoice(parse_push(encode(body)))
    assert invoice.issued_on == dt.date(2021, 4, 28)
    assert invoice.details["invoicing_date"] == "2021-04-28"


def test_tax_rate_under_either_spelling():
    body = seed_body()
    line = body["data"][0]["details"][0]
    del line["taxRate"]
    line["taxrate"] = "0.06"
    assert only_invoice(parse_push(encode(body))).lines[0].tax_rate == Decimal("0.06")
    line["taxRate"] = "0.060"  # both present and equal in value
    assert only_invoice(parse_push(encode(body))).lines[0].tax_rate == Decimal("0.06")
    line["taxRate"] = "0.13"
    assert rejected_reason(body) == "data[0].details[0].taxrate: taxrate and taxRate disagree"


def test_keys_are_compared_without_whitespace():
    body = seed_body()
    line = body["data"][0]["details"][1]
    line["taxTaxonomyCode "] = "3040802010200000000"
    line[" goodsUnit"] = line.pop("goodsUnit")
    invoice = only_invoice(parse_push(encode(body)))
    assert invoice.lines[1].tax_code == "3040802010200000000"
    assert invoice.lines[1].unit == "次"
    line["taxTaxonomyCode"] = "3040802010200000000"  # the same value twice is fine
    assert only_invoice(parse_push(encode(body))).lines[1].tax_code == "3040802010200000000"
    line["taxTaxonomyCode"] = "1010101010000000000"
    assert rejected_reason(body).startswith("data[0].details[1].taxTaxonomyCode: given twice")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("004", InvoiceType.VAT_SPECIAL_PAPER),
        ("007", InvoiceType.VAT_NORMAL_PAPER),
        ("026", InvoiceType.VAT_NORMAL_ELECTRONIC),
        ("028", InvoiceType.VAT_SPECIAL_ELECTRONIC),
        ("01", InvoiceType.DIGITAL_SPECIAL),
        ("02", InvoiceType.DIGITAL_NORMAL),
    ],
)
def test_invoice_type_codes(code, expected):
    body = seed_body()
    body["data"][0]["invoiceTypeCode"] = code
    assert only_invoice(parse_push(encode(body))).invoice_type is expected


def test_voided_red_invoice_with_files_and_line_natures():
    body = seed_body()
    invoice = body["data"][0]
    invoice.update(
        {
            "invoicingStatus": "03",
            "invoiceCode": "",
            "originalInvoiceNumber": "24112000000012345678",
            "originalInvoiceCode": "011002100111",
            "originalsUrl": "https://files.example/inv/89429424.OFD?sig=1",
            "previewUrl": "https://files.example/inv/89429424.pdf",
        }
    )
    invoice["details"][0]["invRowType"] = 2
    invoice["details"][1]["invRowType"] = "1"
    parsed = only_invoice(parse_push(encode(body)))
    assert parsed.state is InvoiceState.VOIDED
    assert parsed.code is None
    assert (parsed.original_number, parsed.original_code) == ("24112000000012345678", "011002100111")
    assert parsed.files == (
        InvoiceFile(url="https://files.example/inv/89429424.OFD?sig=1", format_hint="ofd"),
        InvoiceFile(url="https://files.example/inv/89429424.pdf", format_hint="pdf"),
    )
    assert [line.nature for line in parsed.lines] == ["2", "1"]


# --------------------------------------------------------------------------- strict elsewhere


def _mutated(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = seed_body()
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("data", 0, "details", 0, "invRowType"), 3, "data[0].details[0].invRowType: must be one of 0, 1, 2"),
        (("data", 0, "details", 0), "line", "data[0].details[0]: not a JSON object"),
        (("data", 0, "details"), [], "data[0].details: an issued invoice needs at least one line"),
        (("data", 0, "details"), _DELETE, "data[0].details: required"),
        (("data", 0, "details"), {"a": 1}, "data[0].details: not a list"),
        (("data", 0, "invoiceType"), 2, "data[0].invoiceType: must be one of 0, 1"),
        (("data", 0, "invoicingStatus"), "01", "data[0].invoicingStatus: must be one of 00, 03"),
        (("data", 0, "ext"), "x", "data[0].ext: not a JSON object"),
        (("data", 0), 5, "data[0]: not a JSON object"),
        (("data",), [], "data: result 0 (issued) carries no invoice"),
        (("data",), {"invoiceNumber": "1"}, "data: not a list"),
        (("data",), "[{", "data: a string that is not a JSON list of invoices"),
        (("channelCode",), _DELETE, "channelCode: required"),
        (("channelCode",), " ", "channelCode: required"),
        (("result",), 3, "result: must be one of 0, 1, 2"),
        (("result",), "ok", "result: must be one of 0, 1, 2"),
        (("result",), True, "result: must be one of 0, 1, 2"),
        (("serialNo",), {"no": 1}, "serialNo: not a string"),
    ],
)
def test_strict_failures_name_the_path(path, value, reason):
    assert rejected_reason(_mutated(path, value)).startswith(reason)


@pytest.mark.parametrize(
    ("path", "value", "field", "raw"),
    [
        (("data", 0, "details", 1, "goodsVat"), "4,98", "details[1].goodsVat", "4,98"),
        (("data", 0, "details", 1, "goodsVat"), "NaN", "details[1].goodsVat", "NaN"),
        (("data", 0, "details", 1, "goodsVat"), "1e2", "details[1].goodsVat", "1e2"),
        (("data", 0, "details", 1, "goodsVat"), True, "details[1].goodsVat", "true"),
        (("data", 0, "details", 0, "goodsCost"), "", "details[0].goodsCost", ""),
        (("data", 0, "details", 0, "goodsPrice"), "abc", "details[0].goodsPrice", "abc"),
        (("data", 0, "invoiceNumber"), "", "invoiceNumber", ""),
        (("data", 0, "invoiceNumber"), _DELETE, "invoiceNumber", ""),
        (("data", 0, "invoiceNumber"), ["89429424"], "invoiceNumber", '["89429424"]'),
        (("data", 0, "invoiceAmount"), "828.3O", "invoiceAmount", "828.3O"),
        (("data", 0, "invoiceAmount"), _DELETE, "invoiceAmount", ""),
        (("data", 0, "invoiceTaxAmount"), "4970%", "invoiceTaxAmount", "4970%"),
        (("data", 0, "invoiceTypeCode"), "099", "invoiceTypeCode", "099"),
        (("data", 0, "invoiceDate"), 1619539200, "invoiceDate", "1619539200"),  # seconds, not milliseconds
        (("data", 0, "invoiceDate"), "2021-04-28", "invoiceDate", "2021-04-28"),
    ],
)
def test_malformed_fields_are_recorded_raw_never_refused(path, value, field, raw):
    """A malformed field of an issued invoice is kept raw in ``unreadable`` (verification makes it a
    finding); the push is a result, the invoice kept as reported."""
    [result] = parse_push(encode(_mutated(path, value)))
    [invoice] = result.outcome.invoices
    assert invoice.unreadable == {field: raw}
    assert result.request_number is None  # seed 000's example carries neither serialNo nor orderNo
    if field == "invoiceNumber":
        assert invoice.number == ""
    else:
        assert invoice.number == "89429424"
    if field == "invoiceAmount":
        assert invoice.amount is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "body: malformed JSON"),
        (b"[]", "body: not a JSON object"),
        (b'{"channelCode": "x", "result": NaN}', "body: NaN is not a JSON number"),
        (b"\xff\xfe", "body: "),
    ],
)
def test_bodies_that_are_not_objects(raw, reason):
    assert rejected_reason(raw).startswith(reason)


def test_configured_channel_codes_are_enforced():
    settings_ = ChannelSettings(type="ekuaibao", base_url="https://x", options={"channel_codes": "hx, nuonuo"})
    channel = EkuaibaoChannel("ekuaibao", settings_)
    with pytest.raises(CallbackRejected, match=r"^channelCode: not a channel code configured"):
        channel.parse_callback(FIXTURE.read_bytes())  # jcsk
    body = seed_body()
    body["channelCode"] = "nuonuo"
    assert len(channel.parse_callback(encode(body))) == 1


# --------------------------------------------------------------------------- the channel


def test_issue_sends_nothing_and_query_cannot(monkeypatch):
    def no_http(*args, **kwargs):
        raise AssertionError("Ekuaibao issue() must not send anything")

    monkeypatch.setattr(requests.Session, "request", no_http)
    channel = EkuaibaoChannel("ekuaibao", ChannelSettings(type="ekuaibao", base_url="https://x"))
    application = Application.model_construct(source_system="erp", open_apply_code="A1")
    assert channel.issue(application, "FH0001") == Accepted(channel_ref="FH0001")
    outcome = channel.query(application, "FH0001")
    assert isinstance(outcome, Unknown) and "no query" in outcome.reason
    assert channel.can_query is False
    assert channel.dedupes_request_number is True  # nothing is sent: a repeat cannot issue twice


# --------------------------------------------------------------------------- writing back


def rich_invoice(**changes: Any) -> IssuedInvoice:
    base = IssuedInvoice(
        number="24112000000012345679",
        code=None,
        issued_on=dt.date(2025, 6, 23),
        amount=Decimal("-100.00"),
        tax=Decimal("-13.00"),
        check_code=None,
        invoice_type=InvoiceType.DIGITAL_SPECIAL,
        state=InvoiceState.VOIDED,
        files=(
            InvoiceFile(url="https://files.example/a.ofd", format_hint="ofd"),
            InvoiceFile(url="https://files.example/preview", format_hint=None),
        ),
        lines=(
            InvoiceLine(
                goods_name="*机动车*红旗H9",
                amount=Decimal("-120.00"),
                tax=Decimal("-15.60"),
                tax_rate=Decimal("0.13"),
                quantity=Decimal("-1"),
                unit_price=Decimal("120.00000000"),
                unit="辆",
                specification="CA7200",
                tax_code="1090305010000000000",
                nature="2",
            ),
            InvoiceLine(goods_name="*机动车*红旗H9", amount=Decimal("20.00"), tax=Decimal("2.60"), nature="1"),
        ),
        original_number="24112000000012345678",
        details={
            "direction": "RED",
            "order_no": "FH-ORDER",
            "buyer_name": "长春某公司",
            "total_incl_tax": "-113.00",
            "invoicing_date": "2025-06-22",
            "ext": '{"k":[1,2.5,"v"]}',
        },
        buyer_name="长春某公司",  # the parser carries buyerName as the buyer's name too
    )
    return IssuedInvoice(**{**base.__dict__, **changes})


def test_round_trip_of_the_seed_invoices():
    (result,) = parse_push(FIXTURE.read_bytes())
    body = to_push_body("jcsk", None, 0, None, result.outcome.invoices)
    assert parse_push(jsonutil.dumps(body).encode("utf-8")) == [result]
    assert body["data"][0]["details"][0]["taxrate"] == "0.06"  # the table's spelling on the way out
    assert body["data"][0]["invoiceDate"] == 1619539200000


def test_round_trip_of_a_rich_invoice():
    invoices = (rich_invoice(), rich_invoice(number="24112000000012345680", state=InvoiceState.ISSUED, files=()))
    body = to_push_body("jcsk", "FH9", 0, None, invoices)
    assert body["serialNo"] == "FH9" and body["result"] == 0 and "rejectMsg" not in body
    assert body["data"][0]["invoiceType"] == 1 and body["data"][0]["invoicingStatus"] == "03"
    assert parse_push(jsonutil.dumps(body)) == [CallbackResult(Issued(invoices), request_number="FH9")]
    # data as the table's String survives as well
    body["data"] = jsonutil.dumps(body["data"])
    assert parse_push(jsonutil.dumps(body)) == [CallbackResult(Issued(invoices), request_number="FH9")]


def test_round_trip_of_rejected_and_in_progress():
    rejected = to_push_body("jcsk", "FH9", 1, "驳回：信息有误", [])
    assert parse_push(jsonutil.dumps(rejected)) == [CallbackResult(Rejected("驳回：信息有误"), request_number="FH9")]
    pending = to_push_body("jcsk", "FH9", 2, None, [])
    assert parse_push(jsonutil.dumps(pending)) == [CallbackResult(Accepted("FH9"), request_number="FH9")]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"invoice_type": None}, "invoice_type is required"),
        ({"amount": None}, "amount is required"),
        ({"files": (InvoiceFile(content_base64="JVBERi0="),)}, "at most two files, as URLs"),
        ({"files": tuple(InvoiceFile(url=f"https://f/{i}") for i in range(3))}, "at most two files"),
        ({"state": InvoiceState.VOID_REQUESTED}, "has no Ekuaibao code"),
    ],
)
def test_to_push_body_refuses_what_ekuaibao_cannot_carry(changes, message):
    with pytest.raises(ValueError, match=message):
        to_push_body("jcsk", None, 0, None, [rich_invoice(**changes)])
    with pytest.raises(ValueError, match="result must be"):
        to_push_body("jcsk", None, 5, None, [])


_money = st.decimals(min_value=Decimal("-99999999.99"), max_value=Decimal("99999999.99"), places=2)


@settings(max_examples=60, deadline=None)
@given(
    amount=_money,
    tax=_money,
    rate=st.sampled_from([None, Decimal("0"), Decimal("0.06"), Decimal("0.13")]),
    quantity=st.one_of(st.none(), st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(10**6), places=8)),
    day=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31)),
    name=st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and s.strip()),
)
def test_round_trip_property(amount, tax, rate, quantity, day, name):
    invoice = IssuedInvoice(
        number="12345678",
        code="011002100111",
        issued_on=day,
        amount=amount,
        tax=tax,
        invoice_type=InvoiceType.VAT_NORMAL_PAPER,
        lines=(InvoiceLine(goods_name=name, amount=amount, tax=tax, tax_rate=rate, quantity=quantity),),
    )
    body = to_push_body("jcsk", "FH1", 0, None, [invoice])
    assert parse_push(jsonutil.dumps(body)) == [CallbackResult(Issued((invoice,)), request_number="FH1")]
