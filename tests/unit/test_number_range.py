"""Numbers from outside the hub never crash a write (issue 18 item 8).

DynamoDB keeps magnitudes 1E-130 .. 9.99E+125 with at most 38 significant digits; boto3 raises
(decimal.Overflow / Underflow / Inexact / Rounded) on anything else, and a raise in a write was a
500. Every numeric field of every channel's answer and of the order is tried, as explicit JSON
number literals at and past that range: a channel's result is recorded with the field unreadable
(a finding: review), an order is refused with a 400 naming the field, and nothing is a 5xx.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer

from fapiao_hub import runtime
from fapiao_hub.channels import kingdee, partner, xunlian
from fapiao_hub.channels.base import CallbackRejected
from fapiao_hub.channels.ekuaibao import parse_push
from fapiao_hub.domain.models import FindingKind, Status
from fapiao_hub.domain.number_range import dynamo_number, storable_tree
from fapiao_hub.domain.results import Issued
from tests.conftest import REGION
from tests.unit.conftest import event
from tests.unit.test_callbacks import _push_for, _submitted_application, callbacks  # noqa: F401 - the fixture
from tests.unit.test_dispatch_workflow import world  # noqa: F401 - the fixture

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SLOT = "__NUMBER__"

# As JSON number literals, the way a channel or a business system sends them.
PAST_RANGE = {
    "1e-131": "1e-131",
    "1e126": "1e126",
    "39 digits": "1." + "1" * 38,
    "1e-400": "1e-400",
    "1e400": "1e400",
}
AT_RANGE = {
    "1e-130": "1e-130",
    "9.99e125": "9." + "9" * 37 + "e125",
    "38 digits": "1." + "1" * 37,
}
ALL_VALUES = {**PAST_RANGE, **AT_RANGE}


# --------------------------------------------------------------------------- the guard itself


@pytest.mark.parametrize(("literal", "fits"), [*((v, False) for v in PAST_RANGE.values()),
                                               *((v, True) for v in AT_RANGE.values())])  # fmt: skip
def test_dynamo_number_at_and_past_the_range(literal, fits):
    for signed in (literal, "-" + literal):
        number = dynamo_number(Decimal(signed))
        assert (number is not None) is fits
        if fits:
            assert number == Decimal(signed)
            TypeSerializer().serialize(number)  # what DynamoDB's writer does: no decimal signal


def test_dynamo_number_keeps_values_and_drops_only_needless_zeros():
    assert str(dynamo_number(Decimal("828.30"))) == "828.30"  # as written when it fits
    assert dynamo_number(Decimal("1." + "0" * 45)) == 1  # 46 digits, one significant
    assert dynamo_number(10**40) == Decimal("1E+40") and dynamo_number(10**40 + 1) is None
    assert dynamo_number(Decimal("0E-400")) == 0
    assert dynamo_number(Decimal("NaN")) is None and dynamo_number(True) is None


def test_storable_tree_writes_what_does_not_fit_as_text():
    item = {"amount": Decimal("1E+400"), "lines": [{"tax": Decimal("1E-400"), "n": 3}], "ok": Decimal("1.50")}
    assert storable_tree(item) == {"amount": "1E+400", "lines": [{"tax": "1E-400", "n": 3}], "ok": Decimal("1.50")}
    TypeSerializer().serialize(storable_tree(item))


def test_the_store_keeps_an_out_of_range_number_as_text_rather_than_fail(world):  # noqa: F811
    """The last line of defence: a number a reader let through is written as its text."""
    store = runtime.application_store()
    kept = store.record_unmatched([{"pk": "X-1", "number": "X-1", "amount": Decimal("1E+400"), "tax": Decimal("1")}])
    assert kept == ["X-1"]
    [item] = [i for i in world.invoices() if i["pk"] == "X-1"]
    assert item["amount"] == "1E+400" and item["tax"] == 1 and item["unmatched"] is True


# --------------------------------------------------------------------------- channel answers


def with_number(document: Any, path: tuple[str | int, ...], literal: str) -> bytes:
    """``document`` as JSON with the value at ``path`` replaced by the number literal, as sent."""
    copy = json.loads(json.dumps(document))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = SLOT
    text = json.dumps(copy, ensure_ascii=False)
    assert text.count(f'"{SLOT}"') == 1
    return text.replace(f'"{SLOT}"', literal).encode("utf-8")


def numeric_paths(obj: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every field of a seed example that holds a number (a JSON number, or a number in a string)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from numeric_paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj[:1]):  # the first line stands for all
            yield from numeric_paths(value, (*prefix, index))
    elif (isinstance(obj, int | float) and not isinstance(obj, bool)) or (
        isinstance(obj, str) and re.fullmatch(r"-?\d+(\.\d+)?", obj)
    ):
        yield prefix


def _decimals(value: Any) -> Iterator[Decimal]:
    if isinstance(value, Decimal):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _decimals(getattr(value, f.name))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _decimals(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _decimals(v)


def assert_storable(outcome: Any) -> None:
    """Every number of a parsed result is one DynamoDB's writer takes as it is."""
    for number in _decimals(outcome):
        TypeSerializer().serialize(number)  # raises decimal.Overflow / Underflow / Inexact / Rounded otherwise
        assert dynamo_number(number) is not None


def unreadable_value(raw: str) -> Decimal:
    return Decimal(raw.strip('"'))


XUNLIAN_ANSWER = json.loads((FIXTURES / "xunlian_seed001_answer.json").read_text(encoding="utf-8"))
KINGDEE_ANSWER = json.loads((FIXTURES / "kingdee_seed002_query_answer.json").read_text(encoding="utf-8"))
PARTNER_ANSWER = json.loads((FIXTURES / "partner_seed003_issued.json").read_text(encoding="utf-8"))
EKUAIBAO_PUSH = json.loads((FIXTURES / "ekuaibao_seed000_push.json").read_text(encoding="utf-8"))

# The vendor's name under which a figure the hub keeps (amount, tax, rate, quantity, price) is
# recorded as unreadable; other numeric fields (codes, ids, dates, flags) are read as text or codes.
XUNLIAN_FIGURES = {("body", "amount"): "amount"}
XUNLIAN_PATHS = [*numeric_paths(XUNLIAN_ANSWER), ("body", "otherId"), ("status", "returnCode"), ("requestNum",)]
_KD = ("data", 0, "invoiceList", 0)
KINGDEE_FIGURES = {
    **{(*_KD, name): name for name in ("totalAmount", "totalTaxAmount", "canRedAmount", "canRedTaxAmount")},
    **{(*_KD, "goods", 0, name): f"goods[0].{name}"
       for name in ("amount", "taxAmount", "taxRate", "quantity", "price")},
}  # fmt: skip
KINGDEE_PATHS = sorted(
    {*numeric_paths(KINGDEE_ANSWER), *KINGDEE_FIGURES, (*_KD, "totalAmount"), (*_KD, "totalTaxAmount")}, key=str
)
PARTNER_PATHS = [*numeric_paths(PARTNER_ANSWER)]
_EK = ("data", 0)
EKUAIBAO_FIGURES = {
    **{(*_EK, name): name for name in ("invoiceAmount", "invoiceTaxAmount", "invoiceTotalPriceTax", "invoiceTaxRate")},
    **{(*_EK, "details", 0, name): f"details[0].{name}" for name in ("goodsCost", "goodsVat", "goodsNum", "goodsPrice",
                                                                      "taxRate")},
}  # fmt: skip
# Dates are milliseconds since the epoch: no number here is a date, each is kept unreadable.
EKUAIBAO_DATES = {(*_EK, "invoiceDate"): "invoiceDate", (*_EK, "invoicingDate"): "invoicingDate"}
# invoiceType, invoicingStatus and result stay strict (a colour or state the hub cannot read): 400.
EKUAIBAO_STRICT = {("result",), (*_EK, "invoiceType"), (*_EK, "invoicingStatus"), (*_EK, "details", 0, "invRowType")}
EKUAIBAO_PATHS = sorted(
    {*numeric_paths(EKUAIBAO_PUSH), *EKUAIBAO_FIGURES, *EKUAIBAO_DATES, *EKUAIBAO_STRICT}, key=str
)


def xunlian_outcome(content: bytes):
    return xunlian.interpret_answer(200, content, request_number=XUNLIAN_ANSWER["body"]["requisitionApplyNo"])


def kingdee_outcome(content: bytes):
    return kingdee.interpret_query_answer(200, content, request_number=KINGDEE_ANSWER["data"][0]["billNo"])


def kingdee_content(document: Any, path: tuple[str | int, ...], literal: str) -> bytes:
    """Kingdee's ``data`` travels as base64 text of its JSON: the literal goes in as the channel wrote it."""
    data = document["data"]
    envelope = {k: v for k, v in document.items() if k != "data"}
    if path[0] == "data":
        envelope["data"] = base64.b64encode(with_number(data, path[1:], literal)).decode("ascii")
        return json.dumps(envelope).encode("utf-8")
    envelope["data"] = base64.b64encode(json.dumps(data, ensure_ascii=False).encode("utf-8")).decode("ascii")
    return with_number(envelope, path, literal)


def partner_outcome(content: bytes):
    return partner.interpret_answer(200, content, request_number="R-1")


def ekuaibao_outcome(content: bytes):
    try:
        return parse_push(content)
    except CallbackRejected:  # a 400 (the strict fields): allowed, it is not a crash
        return None


CHANNELS = {
    "xunlian": (XUNLIAN_ANSWER, XUNLIAN_PATHS, XUNLIAN_FIGURES, xunlian_outcome),
    "kingdee": (KINGDEE_ANSWER, KINGDEE_PATHS, KINGDEE_FIGURES, kingdee_outcome),
    "partner": (PARTNER_ANSWER, PARTNER_PATHS, {}, partner_outcome),
    "ekuaibao": (EKUAIBAO_PUSH, EKUAIBAO_PATHS, EKUAIBAO_FIGURES, ekuaibao_outcome),
}
CONTENT = {"kingdee": kingdee_content}


def answer_with(channel: str, document: Any, path: tuple[str | int, ...], literal: str) -> bytes:
    return CONTENT.get(channel, with_number)(document, path, literal)
CASES = [
    pytest.param(name, path, label, literal, id=f"{name}-{'.'.join(map(str, path))}-{label}")
    for name, (_, paths, _, _) in CHANNELS.items()
    for path in paths
    for label, literal in ALL_VALUES.items()
]


def issued_invoices(outcome: Any) -> list:
    if outcome is None:
        return []
    outcomes = [r.outcome for r in outcome] if isinstance(outcome, list) else [outcome]
    return [invoice for o in outcomes if isinstance(o, Issued) for invoice in o.invoices]


@pytest.mark.parametrize(("channel", "path", "label", "literal"), CASES)
def test_every_numeric_field_of_every_channels_answer(channel, path, label, literal):
    """Parsed without an exception; every number in the result fits DynamoDB; a figure past the range
    is recorded unreadable under the vendor's name (with the value as sent), one at the range is kept."""
    document, _, figures, outcome_of = CHANNELS[channel]
    outcome = outcome_of(answer_with(channel, document, path, literal))
    assert_storable(outcome)
    if channel == "ekuaibao" and path in EKUAIBAO_STRICT:
        return  # refused (CallbackRejected -> 400) or read as the code it is: either way no crash
    [invoice, *_] = issued_invoices(outcome) or [None]
    if channel == "ekuaibao" and path in EKUAIBAO_DATES:
        assert EKUAIBAO_DATES[path] in invoice.unreadable  # not a date in milliseconds, whatever its size
        return
    name = figures.get(path)
    if name is None:
        return
    if literal in PAST_RANGE.values():
        assert name in invoice.unreadable, invoice.unreadable
        assert unreadable_value(invoice.unreadable[name]) == Decimal(literal)
    else:
        assert name not in invoice.unreadable, invoice.unreadable


# --------------------------------------------------------------------------- recorded, and to review


def _figure_outcomes(channel: str, literal: str) -> list[tuple[str, Any]]:
    """One result per figure of the channel, each under its own invoice number."""
    document, _, figures, outcome_of = CHANNELS[channel]
    number_paths = {
        "xunlian": ("body", "invoiceNumber"),
        "kingdee": (*_KD, "invoiceNumber"),
        "ekuaibao": (*_EK, "invoiceNumber"),
    }
    found = []
    for position, (path, name) in enumerate(figures.items()):
        numbered = json.loads(json.dumps(document))
        target = numbered
        for step in number_paths[channel][:-1]:
            target = target[step]
        target[number_paths[channel][-1]] = f"8800{position:04d}"
        outcome = outcome_of(answer_with(channel, numbered, path, literal))
        if isinstance(outcome, list):
            outcome = outcome[0].outcome
        found.append((name, outcome))
    return found


@pytest.mark.parametrize("literal", PAST_RANGE.values(), ids=PAST_RANGE.keys())
@pytest.mark.parametrize("channel", ["xunlian", "kingdee"])
def test_a_channels_result_with_a_number_past_the_range_is_recorded_and_goes_to_review(world, channel, literal):  # noqa: F811
    outcomes = _figure_outcomes(channel, literal)
    first_name, first = outcomes[0]
    world.channel.script = [first]
    assert world.dispatch() == "mismatch"
    stored = world.stored()
    assert stored.status is Status.MISMATCH
    fields = {d.field for f in stored.findings for d in f.differences}
    assert f"unreadable.{first_name}" in fields
    for _, later in outcomes[1:]:  # every further figure: recorded too (a possible duplicate), no crash
        world.dispatcher().apply_result(world.stored(), later, world.channel)
    recorded = {i["number"]: i for i in world.invoices()}
    for position, (name, _) in enumerate(outcomes):
        item = recorded[f"8800{position:04d}"]
        assert name in item["unreadable"], item
        assert unreadable_value(item["unreadable"][name]) == Decimal(literal)
    assert any(f.kind in (FindingKind.UNREADABLE_RESULT, FindingKind.RESULT_MISMATCH) for f in stored.findings)


# --------------------------------------------------------------------------- the Ekuaibao push, over HTTP


def raw_push(hub, item: dict) -> bytes:
    """The push an invoice item was read from, as kept in S3."""
    key = next(k for k in s3_keys(hub) if item["raw"].endswith(k))
    return boto3.client("s3", region_name=REGION).get_object(Bucket=hub.environment["FILES_BUCKET"], Key=key)[
        "Body"
    ].read()


def s3_keys(hub) -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    return [o["Key"] for o in s3.list_objects_v2(Bucket=hub.environment["FILES_BUCKET"]).get("Contents", [])]


def invoices_table(hub) -> list[dict]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(hub.environment["INVOICES_TABLE"])
    return table.scan(ConsistentRead=True)["Items"]


@pytest.mark.parametrize("label", ALL_VALUES.keys())
def test_every_numeric_field_of_an_ekuaibao_push_through_the_callback_handler(callbacks, hub, label):  # noqa: F811
    """Seed 000's example (it names no application: kept unmatched, answered 404) with the number in
    each numeric field in turn: never a 5xx; a figure past the range is kept unreadable."""
    literal = ALL_VALUES[label]
    past = literal in PAST_RANGE.values()
    for position, path in enumerate(EKUAIBAO_PATHS):
        body = json.loads(json.dumps(EKUAIBAO_PUSH))
        body["data"][0]["invoiceNumber"] = f"7700{position:04d}"
        status, answer = callbacks.post(with_number(body, path, literal))
        assert status < 500, (path, status, answer)
        if path in EKUAIBAO_STRICT:
            assert status in (400, 404), (path, status, answer)
            continue
        assert status == 404 and "no application" in answer["message"], (path, status, answer)
    recorded = {i["number"]: i for i in invoices_table(hub)}
    for position, path in enumerate(EKUAIBAO_PATHS):
        if path not in EKUAIBAO_FIGURES:
            continue
        item = recorded[f"7700{position:04d}"]
        assert item["unmatched"] is True
        # An unmatched result is kept as read, its push verbatim in S3 (item["raw"]): a figure past
        # the range is in no number of the item, one at the range is.
        as_text = f"{Decimal(literal):f}" in item.get("details", {}).values()  # invoiceTaxRate, ...
        assert (Decimal(literal) in set(_decimals(item)) or as_text) is not past, (path, item)
        assert SLOT.encode() not in raw_push(hub, item)
        assert literal.encode() in raw_push(hub, item)


def test_the_hypothesis_case_an_ekuaibao_push_with_1e_minus_400_and_1e400(callbacks, hub):  # noqa: F811
    """The push that answered 500 (decimal.Overflow / Underflow writing the unmatched result)."""
    body = json.loads(json.dumps(EKUAIBAO_PUSH))
    body["data"][0]["invoiceAmount"] = SLOT
    body["data"][0]["invoiceTaxAmount"] = "__TAX__"
    text = json.dumps(body, ensure_ascii=False).replace(f'"{SLOT}"', "1e400").replace('"__TAX__"', "1e-400")
    status, answer = callbacks.post(text)
    assert status == 404 and "no application" in answer["message"]
    [item] = invoices_table(hub)
    assert item["number"] == "89429424" and item["unmatched"] is True
    assert "amount" not in item and "tax" not in item  # unreadable: no number stands for them
    assert [line["amount"] for line in item["lines"]] == [Decimal("745.28"), Decimal("83.02")]
    assert b'"invoiceAmount": 1e400' in raw_push(hub, item)  # the push, verbatim, for a person


def test_a_push_for_an_application_with_1e400_records_it_for_review(callbacks, hub):  # noqa: F811
    number = _submitted_application(hub)
    body = json.loads(_push_for(number))
    body["data"][0]["invoiceAmount"] = SLOT
    status, answer = callbacks.post(json.dumps(body, ensure_ascii=False).replace(f'"{SLOT}"', "1e400"))
    assert (status, answer) == (200, {"value": True})
    [application] = hub.applications()
    assert application["status"] == "MISMATCH"
    [finding] = application["findings"]
    assert finding["kind"] == "UNREADABLE_RESULT"
    assert {d["field"] for d in finding["differences"]} == {"unreadable.invoiceAmount"}
    [item] = invoices_table(hub)
    assert "amount" not in item and unreadable_value(item["unreadable"]["invoiceAmount"]) == Decimal("1e400")


# --------------------------------------------------------------------------- the order


ORDER_FIELDS = [
    ("invoiceAmt",), ("invoiceAmtInclTax",), ("invoiceTax",),
    ("invoiceOrderSub", 0, "amtInclTax"), ("invoiceOrderSub", 0, "amt"), ("invoiceOrderSub", 0, "tax"),
    ("invoiceOrderSub", 0, "taxrate"), ("invoiceOrderSub", 0, "quantity"), ("invoiceOrderSub", 0, "price"),
    ("redVatInvoiceInfoLog", "totalAmt"), ("redVatInvoiceInfoLog", "totalTax"),
    ("redVatInvoiceInfoLog", "totalAmtInclTax"),
]  # fmt: skip


def _caller_path(path: tuple[str | int, ...]) -> str:
    text = "invoiceOrder"
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return text


@pytest.mark.parametrize("label", PAST_RANGE.keys())
def test_an_order_with_a_number_past_the_range_is_400_naming_the_field(hub, label):
    literal = PAST_RANGE[label]
    before = hub.snapshot()
    for path in ORDER_FIELDS:
        body = json.loads(event("intake-post-blue.json")["body"])
        body["invoiceOrder"].setdefault("redVatInvoiceInfoLog", {})
        raw = with_number(body, ("invoiceOrder", *path), literal).decode("utf-8")
        status, answer, _ = hub.call(event("intake-post-blue.json", body=raw))
        assert status == 400, (path, answer)
        fields = [e["field"] for e in answer["data"]["errors"]]
        assert _caller_path(path) in fields, (path, answer)
    assert hub.snapshot() == before


def test_results_of_a_channel_are_read_back_as_numbers(world):  # noqa: F811
    """At the range: kept as the number it is, read back equal (no text, no rounding)."""
    outcome = xunlian_outcome(with_number(XUNLIAN_ANSWER, ("body", "amount"), AT_RANGE["9.99e125"]))
    [invoice] = outcome.invoices
    assert invoice.amount == Decimal(AT_RANGE["9.99e125"]) and invoice.unreadable == {}
    world.channel.script = [outcome]
    assert world.dispatch() == "mismatch"  # it differs from the application, of course
    [item] = world.invoices()
    assert item["amount"] == Decimal(AT_RANGE["9.99e125"])
