"""Seed 004 <-> canonical mapping, without AWS: shapes, paths in the caller's names, the way back."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest

from fapiao_hub.api import seed004
from fapiao_hub.domain import jsonutil, rules
from fapiao_hub.domain.config import BusinessSystem, Company, HubConfig, token_sha256
from fapiao_hub.domain.models import Direction, InvoiceType, Party

FIXTURES = Path(__file__).parent.parent / "fixtures"
VALID_BUYER = "91220101MA0Y5K3N4H"
SELLER = Party(name="一汽销售有限公司", tax_number="91220101MA0Y5K3N4H", address="长春市", phone="0431-1")


def seed_example() -> dict:
    return jsonutil.loads((FIXTURES / "seed004_example.json").read_bytes())


def valid_order() -> dict:
    body = seed_example()
    body["invoiceOrder"]["purchaserTaxpayerNo"] = VALID_BUYER
    return body


SYSTEM = BusinessSystem(
    token_sha256=(token_sha256("t"),),
    companies={"VB5": Company(seller=SELLER, channel="xunlian"), "W92": Company(seller=SELLER)},
)
CONFIG = HubConfig(business_systems={"erp": SYSTEM})


def convert(body, **kwargs):
    return seed004.to_application(
        body,
        source_system="erp",
        system=SYSTEM,
        config=CONFIG,
        policy=kwargs.get("policy", rules.RulePolicy.default()),
    )


def fields(result) -> dict[str, str]:
    return {e.field: e.message for e in result.errors}


def test_seed_example_with_valid_buyer_maps_to_canonical():
    result = convert(valid_order())
    assert result.errors == []
    app = result.application
    assert app.direction is Direction.BLUE
    assert app.invoice_type is InvoiceType.DIGITAL_SPECIAL  # "0112"
    assert app.seller == SELLER and result.channel == "xunlian"
    assert app.buyer.tax_number == VALID_BUYER and app.buyer.code == "DJL606"
    assert [line.nature.value for line in app.lines] == ["2", "1", "2", "1", "0"]
    # Line-derived totals are stored, not the header's (which is 0.01 off in the seed).
    assert (app.amount, app.tax) == (Decimal("5327.43"), Decimal("692.57"))
    assert app.amount_incl_tax == Decimal("6020.00")
    assert app.lines[1].amount == Decimal("-33.63") and app.lines[1].tax == Decimal("-4.37")
    assert app.lines[0].extras["vehicleNo"] == "THFC1BLCC1Q1QD160"


def test_seed_example_as_published_names_the_buyer_tax_number():
    result = convert(seed_example())
    assert result.application is None
    assert "invoiceOrder.purchaserTaxpayerNo" in fields(result)


def test_round_trip_reproduces_the_order_with_derived_totals():
    original = valid_order()
    app = convert(copy.deepcopy(original)).application
    back = seed004.from_application(app)
    # Through the store's JSON form too: numbers stay numbers, decimals stay exact.
    stored = type(app).model_validate_json(app.model_dump_json())
    back_stored = jsonutil.loads(jsonutil.dumps(seed004.from_application(stored)))
    expected = copy.deepcopy(original)
    expected["invoiceOrder"].update(
        {
            "invoiceAmt": Decimal("5327.43"),
            "invoiceTax": Decimal("692.57"),
            "invoiceAmtInclTax": Decimal("6020.00"),
        }
    )
    for got in (back, back_stored):
        assert _numbers(got) == _numbers(expected)


def _numbers(value):
    """Compare JSON values with numbers by value (6020.0 == 6020.00 == 6020)."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return Decimal(str(value)).normalize()
    return value


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda o: o.pop("bukrs"), "invoiceOrder.bukrs", "required"),
        (lambda o: o.update(bukrs="XXX"), "invoiceOrder.bukrs", "unknown company code 'XXX'"),
        (lambda o: o.update(invoiceType="9999"), "invoiceOrder.invoiceType", "0112"),
        (lambda o: o.update(openInvoiceType="7"), "invoiceOrder.openInvoiceType", "0 (blue), 1 (red) or 2 (void)"),
        (
            lambda o: o["invoiceOrderSub"][3].pop("goodsName"),
            "invoiceOrder.invoiceOrderSub[3].goodsName",
            "required",
        ),
        (
            lambda o: o["invoiceOrderSub"][3].update(amtInclTax="abc"),
            "invoiceOrder.invoiceOrderSub[3].amtInclTax",
            "must be a number",
        ),
        (
            lambda o: o["invoiceOrderSub"][4].update(amtInclTax=None),
            "invoiceOrder.invoiceOrderSub[4].amtInclTax",
            "required",
        ),
        (
            lambda o: o["invoiceOrderSub"][4].update(taxrate=Decimal("0.12")),
            "invoiceOrder.invoiceOrderSub[4].taxrate",
            "0.13",
        ),
        (
            lambda o: o["invoiceOrderSub"][4].update(price=Decimal("5000")),
            "invoiceOrder.invoiceOrderSub[4].amtInclTax",
            "5000.00 differs from the line amount including tax 6000.00",
        ),
        (
            lambda o: o["invoiceOrderSub"][4].update(taxonomyCode="12"),
            "invoiceOrder.invoiceOrderSub[4].taxonomyCode",
            "pattern",
        ),
        (
            lambda o: o["invoiceOrderSub"][4].update(goodsName="车\u200b"),
            "invoiceOrder.invoiceOrderSub[4].goodsName",
            "U+200B",
        ),
        (lambda o: o.update(invoiceAmt=Decimal("5328.43")), "invoiceOrder.invoiceAmt", "5328.43"),
        (lambda o: o.update(invoiceOrderSub=[]), "invoiceOrder.invoiceOrderSub", "at least 1"),
        (
            lambda o: o.update(redVatInvoiceInfoLog={"applyRedReasons": "09"}),
            "invoiceOrder.redVatInvoiceInfoLog.applyRedReasons",
            "unknown red reason",
        ),
        (lambda o: o.update(purchaserTaxpayerName=""), "invoiceOrder.purchaserTaxpayerName", "at least 1"),
        (
            lambda o: o["invoiceOrderSub"].__setitem__(1, {**o["invoiceOrderSub"][1], "amtInclTax": Decimal("-60")}),
            "invoiceOrder.invoiceOrderSub[1]",
            "discount",
        ),
    ],
)
def test_each_problem_is_named_by_the_callers_path(mutate, field, words):
    body = valid_order()
    mutate(body["invoiceOrder"])
    result = convert(body)
    assert result.application is None
    found = fields(result)
    matching = {f: m for f, m in found.items() if f.startswith(field)}
    assert matching, f"no error at {field}: {found}"
    assert any(words.lower() in m.lower() for m in matching.values()), matching


def test_every_problem_is_listed_at_once():
    body = valid_order()
    order = body["invoiceOrder"]
    order["bukrs"] = "XXX"
    order["invoiceType"] = "9999"
    order["invoiceOrderSub"][0]["amtInclTax"] = "abc"
    result = convert(body)
    # Shape errors come first (the order cannot be read further); all of them together.
    assert set(fields(result)) == {"invoiceOrder.invoiceOrderSub[0].amtInclTax"}
    order["invoiceOrderSub"][0]["amtInclTax"] = 48.0
    result = convert(body)
    assert {"invoiceOrder.bukrs", "invoiceOrder.invoiceType"} <= set(fields(result))


def test_amounts_as_numbers_strings_or_empty_strings():
    body = valid_order()
    for line in body["invoiceOrder"]["invoiceOrderSub"]:
        line["amtInclTax"] = str(line["amtInclTax"])
        line["taxrate"] = "0.13"
    body["invoiceOrder"]["invoiceAmt"] = ""
    body["invoiceOrder"]["invoiceTax"] = ""
    result = convert(body)
    assert result.errors == []
    assert result.application.amount == Decimal("5327.43")


def test_nan_and_infinity_are_not_numbers():
    with pytest.raises(jsonutil.InvalidJson):
        jsonutil.loads('{"a": NaN}')
    body = valid_order()
    body["invoiceOrder"]["invoiceOrderSub"][0]["amtInclTax"] = "Infinity"
    assert "finite" in fields(convert(body))["invoiceOrder.invoiceOrderSub[0].amtInclTax"]


def test_checksum_failure_is_a_warning_by_default_and_an_error_in_strict_mode():
    body = valid_order()
    body["invoiceOrder"]["purchaserTaxpayerNo"] = VALID_BUYER[:-1] + ("A" if VALID_BUYER[-1] != "A" else "B")
    lenient = convert(copy.deepcopy(body))
    assert lenient.errors == [] and lenient.application is not None
    assert [w.field for w in lenient.warnings] == ["invoiceOrder.purchaserTaxpayerNo"]
    strict = rules.RulePolicy(
        tax_rates=frozenset(CONFIG.tax_rates),
        retired_tax_rates=frozenset(CONFIG.retired_tax_rates),
        strict_tax_numbers=True,
    )
    assert "invoiceOrder.purchaserTaxpayerNo" in fields(convert(body, policy=strict))


def test_red_order_fixture_maps_to_a_red_application():
    event = json.loads((FIXTURES.parent.parent / "events" / "intake-post-red.json").read_text(encoding="utf-8"))
    result = convert(jsonutil.loads(event["body"]))
    assert result.errors == []
    app = result.application
    assert app.direction is Direction.RED and app.red.blue_invoice_number == "12221761"
    assert app.red.reason.value == "02" and app.amount == Decimal("-5309.73")


def test_tax_exclusive_orders_use_amt_and_tax():
    body = valid_order()
    order = body["invoiceOrder"]
    order["amtInclTaxSign"] = "2"
    order.pop("invoiceAmt"), order.pop("invoiceTax"), order.pop("invoiceAmtInclTax")
    order["invoiceOrderSub"] = [
        {
            "goodsName": "服务",
            "taxrate": "0.06",
            "amt": "100.00",
            "quantity": 2,
            "price": "50",
            "taxonomyCode": "3040201000000000000",
        }
    ]
    result = convert(body)
    assert result.errors == []
    assert (result.application.amount, result.application.tax) == (Decimal("100.00"), Decimal("6.00"))
    order["invoiceOrderSub"][0].pop("amt")
    assert "invoiceOrder.invoiceOrderSub[0].amt" in fields(convert(body))
