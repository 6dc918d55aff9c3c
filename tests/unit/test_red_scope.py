"""Reversals scoped to their owner (issue 12, item 3), through the intake handler against moto.

A red application reverses only a blue invoice issued through the hub for its own business system
and seller, and of the same kind (专票 by 专票, 普票 by 普票). Any other blue invoice is answered
exactly like one the hub never saw: the same 400, no figure of anyone else's, nothing reserved.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest

from fapiao_hub import runtime
from fapiao_hub.domain.results import Issued, IssuedInvoice
from tests.unit import test_poller_and_red as red_flows
from tests.unit.conftest import OTHER_TOKEN, event, hub_config_document
from tests.unit.test_poller_and_red import BLUE, _issue_blue, red_order, remaining

dispatching = red_flows.dispatching  # the fixture, reused

BLUE_LEFT = (Decimal("5327.43"), Decimal("692.57"))  # seed 004's example, issued as BLUE
UNKNOWN_TEXT = (
    "blue invoice 050002000205/12221761 was not issued through the hub for this business system and seller: "
    "there is nothing here to reverse"
)


def submit_red(hub, body: dict, token: str | None = None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return hub.call(event("intake-post-red.json", body=body, headers=headers))


def red_for(code: str, incl: str, *, bukrs: str = "VB5", invoice_type: str = "0112") -> dict:
    body = red_order(code, incl)
    body["invoiceOrder"].update(bukrs=bukrs, invoiceType=invoice_type)
    return body


def allow_outside_invoices(hub, system: str) -> None:
    """Switch on ``reverses_outside_invoices`` for one business system (hub configuration)."""
    document = hub_config_document()
    document["business_systems"][system]["reverses_outside_invoices"] = True
    Path(hub.environment["HUB_CONFIG_FILE"]).write_text(json.dumps(document), encoding="utf-8")
    runtime.reset()


def codes_stored(hub) -> set[str]:
    return {i["pk"] for i in hub.applications()}


def test_an_unknown_blue_invoice_is_a_400_naming_the_blue_invoice_and_nothing_is_stored(hub):
    status, answer, _ = hub.call(event("intake-post-red.json"))
    assert status == 400, answer
    assert answer["data"]["errors"] == [{"field": "invoiceOrder.blueInvoiceNumber", "message": UNKNOWN_TEXT}]
    assert hub.applications() == [] and hub.queued() == []


def test_the_blue_number_sent_only_in_the_red_log_is_named_there(hub):
    body = json.loads(event("intake-post-red.json")["body"])
    for key in ("blueInvoiceNumber", "blueInvoiceCode"):
        body["invoiceOrder"].pop(key)
    status, answer, _ = hub.call(event("intake-post-red.json", body=body))
    assert status == 400, answer
    [error] = answer["data"]["errors"]
    assert error == {"field": "invoiceOrder.redVatInvoiceInfoLog.blueInvoiceNumber", "message": UNKNOWN_TEXT}


@pytest.mark.parametrize(
    ("token", "bukrs"),
    [
        pytest.param(OTHER_TOKEN, "VB5", id="another business system, same seller"),
        pytest.param(None, "W92", id="same business system, another seller"),
    ],
)
def test_another_owners_blue_invoice_is_answered_exactly_like_an_unknown_one(hub, dispatching, token, bukrs):
    fits = red_for("RED-F", "1130.00", bukrs=bukrs)
    too_large = red_for("RED-L", "9999.00", bukrs=bukrs)  # more than the blue invoice has left
    before = {name: submit_red(hub, body, token) for name, body in (("fits", fits), ("large", too_large))}
    for status, answer, _ in before.values():
        assert status == 400
        assert answer["data"]["errors"] == [{"field": "invoiceOrder.blueInvoiceNumber", "message": UNKNOWN_TEXT}]

    _issue_blue(hub, dispatching)  # sample-erp's VB5 now owns 050002000205-12221761
    stored = codes_stored(hub)
    after = {name: submit_red(hub, body, token) for name, body in (("fits", fits), ("large", too_large))}
    assert after == before  # status, text, every byte: nothing says the invoice exists
    for _, answer, _ in after.values():
        assert "5327.43" not in json.dumps(answer) and "692.57" not in json.dumps(answer)
    assert remaining(hub) == BLUE_LEFT  # nothing reserved
    assert codes_stored(hub) == stored  # nothing stored
    # Its owner may reverse it.
    assert submit_red(hub, red_for("RED-OWN", "1130.00"))[0] == 200
    assert remaining(hub) == (Decimal("4327.43"), Decimal("562.57"))


def test_the_ownership_check_is_the_reserving_write_itself(hub, dispatching):
    """No read of the blue invoice first: one conditional UpdateItem on the invoices table decides."""
    _issue_blue(hub, dispatching)
    invoices_table = hub.environment["INVOICES_TABLE"]
    calls: list[tuple[str, str]] = []
    client = runtime.application_store()._table.meta.client
    client.meta.events.register(
        "before-parameter-build.dynamodb.*",
        lambda model, params, **_: calls.append((model.name, params.get("TableName", ""))),
    )
    assert submit_red(hub, red_for("RED-O", "1130.00"), OTHER_TOKEN)[0] == 400
    assert submit_red(hub, red_for("RED-M", "1130.00"))[0] == 200
    assert [op for op, table in calls if table == invoices_table] == ["UpdateItem", "UpdateItem"]


def test_a_special_invoice_is_reversed_only_by_a_special_invoice(hub, dispatching):
    _issue_blue(hub, dispatching)  # DIGITAL_SPECIAL (0112)
    stored = codes_stored(hub)
    status, answer, _ = submit_red(hub, red_for("RED-N", "1130.00", invoice_type="0212"))  # DIGITAL_NORMAL
    assert status == 400, answer
    [error] = answer["data"]["errors"]
    assert error["field"] == "invoiceOrder.invoiceType"
    assert "special" in error["message"] and "DIGITAL_SPECIAL" in error["message"]
    assert remaining(hub) == BLUE_LEFT and codes_stored(hub) == stored
    # Another special type (paper, electronic) is a special invoice too.
    assert submit_red(hub, red_for("RED-S", "1130.00", invoice_type="028"))[0] == 200


def test_a_normal_invoice_is_not_reversed_by_a_special_one(hub, dispatching):
    _, channel, dispatcher = dispatching
    blue = json.loads(event("intake-post-blue.json")["body"])
    blue["invoiceOrder"].update(openApplyCode="BLUE-N", invoiceType="0212")  # DIGITAL_NORMAL
    assert hub.call(event("intake-post-blue.json", body=blue))[0] == 200
    hub.queued()
    channel.script = [Issued((BLUE,))]
    assert dispatcher.dispatch("sample-erp", "BLUE-N") == "issued"
    stored = codes_stored(hub)
    status, answer, _ = submit_red(hub, red_for("RED-SP", "1130.00", invoice_type="0112"))
    assert status == 400, answer
    [error] = answer["data"]["errors"]
    assert error["field"] == "invoiceOrder.invoiceType" and "DIGITAL_NORMAL" in error["message"]
    assert remaining(hub) == BLUE_LEFT and codes_stored(hub) == stored
    assert submit_red(hub, red_for("RED-NN", "1130.00", invoice_type="0212"))[0] == 200


def test_the_type_is_not_told_to_another_owner(hub, dispatching):
    _issue_blue(hub, dispatching)
    status, answer, _ = submit_red(hub, red_for("RED-T", "1130.00", invoice_type="0212"), OTHER_TOKEN)
    assert status == 400
    assert answer["data"]["errors"] == [{"field": "invoiceOrder.blueInvoiceNumber", "message": UNKNOWN_TEXT}]


def test_with_the_switch_an_outside_invoice_and_another_owners_read_alike_and_reserve_nothing(hub, dispatching):
    """reverses_outside_invoices: for invoices issued before or outside the hub (docs/intake.md)."""
    allow_outside_invoices(hub, "other-erp")
    status, unknown, _ = submit_red(hub, red_for("RED-U", "1130.00"), OTHER_TOKEN)
    assert status == 200, unknown
    # The switch is per business system: sample-erp's unknown invoices are still refused.
    status, answer, _ = hub.call(event("intake-post-red.json"))
    assert status == 400 and answer["data"]["errors"][0]["message"] == UNKNOWN_TEXT
    _issue_blue(hub, dispatching)
    status, foreign, _ = submit_red(hub, red_for("RED-V", "1130.00"), OTHER_TOKEN)
    assert status == 200, foreign
    expected = (
        "blue invoice 050002000205/12221761 was not issued through the hub for this business system and seller: "
        "what is left to reverse cannot be checked"
    )
    assert unknown["data"]["warnings"] == foreign["data"]["warnings"] == [expected]
    assert remaining(hub) == BLUE_LEFT


def test_without_a_seller_tax_number_no_blue_invoice_matches(hub, dispatching):
    """An application's seller without a tax number has no identity to own an invoice by."""
    _issue_blue(hub, dispatching)
    document = copy.deepcopy(hub_config_document())  # its SELLER is shared with other tests
    del document["business_systems"]["sample-erp"]["companies"]["VB5"]["seller"]["tax_number"]
    Path(hub.environment["HUB_CONFIG_FILE"]).write_text(json.dumps(document), encoding="utf-8")
    runtime.reset()
    status, answer, _ = submit_red(hub, red_for("RED-NOTAX", "1130.00"))
    assert status == 400
    assert answer["data"]["errors"] == [{"field": "invoiceOrder.blueInvoiceNumber", "message": UNKNOWN_TEXT}]
    assert remaining(hub) == BLUE_LEFT


def test_a_red_invoice_cannot_be_reversed(hub, dispatching):
    """Only a blue invoice has anything to reverse; a red one reads as unknown."""
    _, channel, dispatcher = dispatching
    _issue_blue(hub, dispatching)
    assert submit_red(hub, red_for("RED-1", "1130.00"))[0] == 200
    hub.queued()
    red_invoice = IssuedInvoice(number="24312000000099990001", issued_on=BLUE.issued_on)
    channel.script = [Issued((red_invoice,))]
    assert dispatcher.dispatch("sample-erp", "RED-1") == "issued"
    body = red_for("RED-2", "113.00")
    body["invoiceOrder"].update(blueInvoiceNumber="24312000000099990001")
    body["invoiceOrder"].pop("blueInvoiceCode", None)
    body["invoiceOrder"]["redVatInvoiceInfoLog"] = {"applyRedReasons": "02"}
    status, answer, _ = submit_red(hub, body)
    assert status == 400
    [error] = answer["data"]["errors"]
    assert error["field"] == "invoiceOrder.blueInvoiceNumber" and "was not issued through the hub" in error["message"]
