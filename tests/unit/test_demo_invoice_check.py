"""The demo's check of an outcome against its order (fapiao_hub_client.demo.invoice_check), and the seller
read from a real sandbox's record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from fapiao_hub_client import demo
from sandbox import xunlian as sandbox_xunlian

SELLER = "91220101MA17Q3K29H"


def answer(*invoices: dict[str, Any], invoice_type: str = "028", amount: str = "5318.58", tax: str = "691.42") -> dict:
    return {
        "status": "ISSUED",
        "invoiceOrder": {"invoiceType": invoice_type, "invoiceAmt": amount, "invoiceTax": tax, "bukrs": "VB5"},
        "invoices": list(invoices),
        "history": [{"status": "DISPATCHING", "note": "sending to xunlian as FH0123ABC (attempt 1)"}],
    }


def invoice(number: str = "1", **fields: Any) -> dict[str, Any]:
    return {"invoiceNumber": number, "invoiceType": "VAT_SPECIAL_ELECTRONIC", "amount": "5318.58", "tax": "691.42",
            **fields}  # fmt: skip


def test_a_matching_invoice() -> None:
    assert demo.invoice_check(answer(invoice()), SELLER, {"1": SELLER}) == ([], [])
    assert demo.describe_check([], []) == "matches its order (seller, type, totals)"


def test_a_split_into_two_invoices_that_add_up() -> None:
    parts = answer(invoice("1", amount="5000.00", tax="650.00"), invoice("2", amount="318.58", tax="41.42"))
    assert demo.invoice_check(parts, SELLER, {"1": SELLER, "2": SELLER}) == ([], [])


@pytest.mark.parametrize(
    ("changed", "difference"),
    [
        ({"amount": "5328.58"}, "amount 5328.58 != 5318.58"),
        ({"amount": "5318.60"}, "amount 5318.60 != 5318.58"),
        ({"tax": "692.70"}, "tax 692.70 != 691.42"),
        ({"invoiceType": "VAT_NORMAL_ELECTRONIC"}, "type VAT_NORMAL_ELECTRONIC != VAT_SPECIAL_ELECTRONIC"),
        ({"sellerTaxNumber": "91310000MA1FL0WR0N"}, f"seller 91310000MA1FL0WR0N != {SELLER}"),
    ],
)
def test_each_difference_is_named(changed: dict[str, str], difference: str) -> None:
    differences, _ = demo.invoice_check(answer(invoice(**changed)), SELLER, {"1": SELLER})
    assert differences == [difference]
    assert demo.describe_check(differences, []) == f"DOES NOT MATCH its order: {difference}"


def test_within_tolerance_is_a_match() -> None:
    assert demo.invoice_check(answer(invoice(amount="5318.59", tax="692.69")), SELLER, {"1": SELLER}) == ([], [])


def test_what_the_channel_does_not_report_is_said_not_guessed() -> None:
    bare = {"invoiceNumber": "1"}  # the partner: a number and files, nothing else
    assert demo.invoice_check(answer(bare), SELLER, {}) == ([], ["seller", "type", "totals"])
    assert demo.describe_check([], ["seller", "type", "totals"]) == (
        "nothing to compare; not reported: seller, type, totals"
    )


def test_the_request_number_from_the_answer_or_the_dispatch_note() -> None:
    assert demo.request_number({"requestNumber": "FH9"}) == "FH9"
    assert demo.request_number(answer()) == "FH0123ABC"
    assert demo.request_number({"history": []}) is None


@pytest.fixture
def xunlian() -> Iterator[sandbox_xunlian.XunlianServer]:
    server = sandbox_xunlian.run()
    try:
        yield server
    finally:
        server.shutdown()


def test_the_seller_from_a_sandbox_record(xunlian) -> None:
    body = {
        "requisitionApplyNo": "FH-D1", "invoiceTypeCode": "10", "buyerName": "买方", "sellerName": "卖方",
        "sellerTaxId": SELLER, "lines": [{"itemName": "x", "taxRate": "0.13", "lineAmountIncludeTax": "113.00"}],
    }  # fmt: skip
    issued = requests.post(xunlian.issue_url, json=body, timeout=5).json()["body"]
    channel = {"type": "xunlian", "base_url": xunlian.base_url}
    assert demo.sandbox_sellers(channel, "FH-D1") == {issued["invoiceNumber"]: SELLER}
    assert demo.sandbox_sellers(channel, "FH-unknown") == {}
    assert demo.sandbox_sellers({"type": "xunlian", "base_url": "http://127.0.0.1:9"}, "FH-D1") == {}
