"""Issue 14 over HTTP: the intake function (its real handler, moto from template.yaml) and dispatch and
the poller against the channel sandboxes over real HTTP.

- Routing by capability: seed 004's own example (a 数电专票, valid buyer) for VB5 goes to its second,
  数电-capable channel and ends ISSUED there; with only Xunlian configured it is a 400 at intake naming
  invoiceOrder.invoiceType, and nothing is stored.
- Corrected resubmission: a REJECTED application sent again with corrected content ends ISSUED under
  a new request number (the sandbox saw two, issued once); resubmitting an ISSUED or open one is a 409.
- Voids (openInvoiceType 2): a partner invoice voided end to end; a 数电 invoice, another seller's,
  another business system's and an unknown invoice each a 400 with nothing changed.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from fapiao_hub import runtime
from fapiao_hub.channels.registry import ChannelConfigurationError, configuration_problems
from fapiao_hub.domain.config import HubConfig
from fapiao_hub.domain.models import application_key, request_number_for
from fapiao_hub.usecases.dispatch import Dispatcher, DispatchPolicy
from fapiao_hub.usecases.polling import Poller, backlog
from fapiao_hub.usecases.reconciliation import compare
from sandbox import kingdee as kingdee_sandbox
from sandbox import partner as partner_sandbox
from sandbox import xunlian as xunlian_sandbox
from tests.unit.conftest import OTHER_TOKEN, ROOT, VALID_BUYER, event, get_event, hub_config_document
from tests.unit.test_dispatch_workflow import Clock

SEED_EXAMPLE = ROOT / "tests" / "fixtures" / "seed004_example.json"
W92_SELLER = "91110108MA01ABCD2H"


def seed_example(code: str, company: str = "VB5", **header: Any) -> dict[str, Any]:
    """Seed 004's own example (0112, a 数电专票) with a valid buyer tax number, under ``code``."""
    body = json.loads(SEED_EXAMPLE.read_text(encoding="utf-8"))
    order = body["invoiceOrder"]
    order.update(openApplyCode=code, bukrs=company, purchaserTaxpayerNo=VALID_BUYER, **header)
    for line in order["invoiceOrderSub"]:
        line["openApplyCode"] = code
    return body


def void_body(code: str, number: str, company: str = "W92", invoice_code: str | None = None) -> dict[str, Any]:
    order = {
        "openApplyCode": code,
        "bukrs": company,
        "openInvoiceType": "2",
        "applyCancelReason": "开错了购方 (wrong buyer)",
        "blueInvoiceNumber": number,
    }
    if invoice_code:
        order["blueInvoiceCode"] = invoice_code
    return {"invoiceOrder": order}


def post(body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return event("intake-post-blue.json", body=body, headers=headers)


def dispatcher_for(clock: Clock) -> Dispatcher:
    """A dispatcher over the runtime's current ports and channel registry."""
    return Dispatcher(
        runtime.application_store(), runtime.dispatch_queue(), runtime.event_publisher(),
        runtime.channel_registry(), runtime.file_store(), policy=DispatchPolicy(), clock=clock,
    )  # fmt: skip


class World:
    def __init__(self, hub: Any, sandboxes: dict[str, Any], dispatcher: Dispatcher, poller: Poller, clock: Clock):
        self.hub, self.sandboxes, self.dispatcher, self.poller, self.clock = hub, sandboxes, dispatcher, poller, clock

    def configure(self, document: dict[str, Any]) -> None:
        Path(self.hub.environment["HUB_CONFIG_FILE"]).write_text(json.dumps(document), encoding="utf-8")
        runtime.reset()
        self.dispatcher = dispatcher_for(self.clock)  # routed by the new configuration

    def submit(self, body: dict[str, Any], token: str | None = None) -> tuple[int, dict[str, Any]]:
        status, answer, _ = self.hub.call(post(body, token))
        return status, answer

    def read(self, code: str, token: str | None = None) -> dict[str, Any]:
        status, answer, _ = self.hub.call(get_event(code, token) if token else get_event(code))
        assert status == 200, answer
        return answer["data"]

    def settle(self, rounds: int = 8) -> None:
        """Dispatch steps and poller runs, as the queue and the schedule would drive them."""
        for _ in range(rounds):
            self._dispatch_queued()
            self.clock.now += 11
            self.poller.run()
        self._dispatch_queued()

    def _dispatch_queued(self) -> None:
        for request in self.hub.queued():
            self.dispatcher.dispatch(
                request["source_system"], request["open_apply_code"], claimed_until=request.get("claimed_until")
            )

    def issued(self, channel: str) -> dict[str, Any]:
        return requests.get(f"{self.sandboxes[channel].base_url}/_sandbox/issued", timeout=5).json()

    def invoice_items(self) -> list[dict[str, Any]]:
        client = self.hub.table.meta.client
        return client.scan(TableName=self.hub.environment["INVOICES_TABLE"], ConsistentRead=True)["Items"]


def document_for(sandboxes: dict[str, Any]) -> dict[str, Any]:
    document = hub_config_document()
    companies = document["business_systems"]["sample-erp"]["companies"]
    companies["VB5"].pop("channel")
    companies["VB5"]["channels"] = ["xunlian", "kingdee"]
    companies["W92"]["channel"] = "partner"
    document["channels"] = {
        "xunlian": {
            "type": "xunlian", "base_url": sandboxes["xunlian"].base_url, "dedupes_request_number": True,
            "quiet_period_seconds": 0, "options": {"company_data_resource": "hub", "terminal_code": "T01"},
        },
        "kingdee": {
            "type": "kingdee", "base_url": sandboxes["kingdee"].base_url, "quiet_period_seconds": 0,
            "credentials": {"access_token": kingdee_sandbox.DEFAULT_ACCESS_TOKEN},
            "options": {"business_system_code": "FAPIAO_HUB", "submit": "bill_push"},
        },
        "partner": {
            "type": "partner", "base_url": sandboxes["partner"].base_url, "quiet_period_seconds": 0,
            "credentials": {"client_id": partner_sandbox.DEFAULT_CLIENT_ID,
                            "client_secret": partner_sandbox.DEFAULT_CLIENT_SECRET},
        },
    }  # fmt: skip
    return document


@pytest.fixture
def world(hub):
    sandboxes = {
        "xunlian": xunlian_sandbox.run(port=0),
        "kingdee": kingdee_sandbox.run(port=0, issue_delay_ms=0),
        "partner": partner_sandbox.run(port=0),
    }
    try:
        requests.post(
            f"{sandboxes['partner'].base_url}/_sandbox/config",
            json={"auto": True, "issue_after_ms": 0, "invoices_per_application": 1, "digital": False},
            timeout=5,
        ).raise_for_status()
        clock = Clock()
        runtime.reset()
        poller = Poller(runtime.application_store(), runtime.dispatch_queue(), clock=clock)
        built = World(hub, sandboxes, dispatcher_for(clock), poller, clock)
        built.configure(document_for(sandboxes))
        yield built
    finally:
        for server in sandboxes.values():
            server.shutdown()


# ---------------------------------------------------------------------------- routing by capability
def test_seed_example_for_vb5_goes_to_its_digital_channel_and_ends_issued(world):
    status, answer = world.submit(seed_example("seed-digital-1"))
    assert status == 200, answer
    world.settle()
    data = world.read("seed-digital-1")
    assert data["status"] == "ISSUED", data
    assert data["channel"] == "kingdee"
    [invoice] = data["invoices"]
    assert invoice["invoiceType"] == "DIGITAL_SPECIAL" and invoice["channel"] == "kingdee"
    # Xunlian (VB5's first choice) never saw it: it cannot issue 数电.
    assert world.issued("xunlian")["attempts"] == {}
    number = data["requestNumber"]
    assert world.issued("kingdee")["counts"].get(number) == 1 or world.issued("kingdee")["total"] == 1


def test_a_legacy_type_for_vb5_still_goes_to_its_first_choice(world):
    body = seed_example("legacy-1", invoiceType="028")
    assert world.submit(body)[0] == 200
    world.settle(2)
    data = world.read("legacy-1")
    assert (data["status"], data["channel"]) == ("ISSUED", "xunlian")


def test_with_only_xunlian_the_seed_example_is_refused_at_intake_and_nothing_is_stored(world):
    document = document_for(world.sandboxes)
    document["business_systems"]["sample-erp"]["companies"]["VB5"]["channels"] = ["xunlian"]
    world.configure(document)
    before = world.hub.snapshot()
    status, answer = world.submit(seed_example("seed-digital-2"))
    assert status == 400
    [error] = answer["data"]["errors"]
    assert error["field"] == "invoiceOrder.invoiceType"
    assert error["message"].startswith(
        "company VB5 cannot issue blue DIGITAL_SPECIAL invoices: none of its channels (xunlian) can; it can issue "
        "blue: VAT_SPECIAL_PAPER (004), VAT_NORMAL_PAPER (007), VAT_NORMAL_ELECTRONIC (026), "
        "VAT_SPECIAL_ELECTRONIC (028)"
    ), error
    assert world.hub.snapshot() == before
    # Nothing stored, so the code is not burned: the same code with a type Xunlian issues is accepted.
    status, answer = world.submit(seed_example("seed-digital-2", invoiceType="028"))
    assert (status, answer["message"]) == (200, "order received")


def test_configuration_narrows_but_never_widens(world):
    document = document_for(world.sandboxes)
    document["channels"]["kingdee"]["capabilities"] = {"blue": ["VAT_SPECIAL_ELECTRONIC"]}
    world.configure(document)
    status, answer = world.submit(seed_example("narrowed-1"))
    assert status == 400 and answer["data"]["errors"][0]["field"] == "invoiceOrder.invoiceType"

    wider = document_for(world.sandboxes)
    wider["channels"]["xunlian"]["capabilities"] = {"blue": ["DIGITAL_SPECIAL"], "void": ["VAT_SPECIAL_PAPER"]}
    assert configuration_problems(HubConfig.model_validate(wider)) == [
        "channels.xunlian.capabilities.blue: DIGITAL_SPECIAL not supported (the xunlian module cannot do more "
        "than it declares)",
    ]
    world.configure(wider)
    before = world.hub.snapshot()
    status, answer = world.submit(seed_example("widened-1"))
    assert status == 503 and "configuration" in answer["message"]
    assert world.hub.snapshot() == before
    with pytest.raises(ChannelConfigurationError) as raised:
        runtime.channel_registry().capabilities("xunlian")
    assert raised.value.path == "channels.xunlian.capabilities.blue"


def test_channel_and_channels_are_one_list(world):
    document = document_for(world.sandboxes)
    document["business_systems"]["sample-erp"]["companies"]["VB5"]["channel"] = "xunlian"
    with pytest.raises(ValueError, match='give "channels"'):
        HubConfig.model_validate(document)
    document["business_systems"]["sample-erp"]["companies"]["VB5"].pop("channel")
    config = HubConfig.model_validate(document)
    assert config.business_systems["sample-erp"].companies["W92"].channel_names == ("partner",)
    assert config.business_systems["sample-erp"].companies["VB5"].channel_names == ("xunlian", "kingdee")


def test_capable_channels_are_ordered_for_failover(world):
    from fapiao_hub.api import seed004
    from fapiao_hub.domain.rules import RulePolicy

    config = runtime.hub_config()
    system = config.business_systems["sample-erp"]

    def capable(body: dict[str, Any]) -> list[str]:
        result = seed004.to_application(
            body, source_system="sample-erp", system=system, config=config, policy=RulePolicy.default()
        )
        assert result.application is not None, result.errors
        return runtime.channel_registry().capable_channels(result.application)

    assert capable(seed_example("c-1")) == ["kingdee"]
    assert capable(seed_example("c-2", invoiceType="028")) == ["xunlian", "kingdee"]


# ---------------------------------------------------------------------------- corrected resubmission
def test_a_rejected_application_corrected_and_sent_again_ends_issued(world):
    code = "resubmit-1"
    body = seed_example(code, invoiceType="028")
    assert world.submit(body)[0] == 200
    first_number = world.read(code)["requestNumber"]  # drawn at intake; nothing dispatched yet
    requests.post(
        f"{world.sandboxes['xunlian'].base_url}/_sandbox/faults", json={first_number: ["reject"]}, timeout=5
    ).raise_for_status()
    world.settle(2)
    rejected = world.read(code)
    assert rejected["status"] == "REJECTED", rejected

    corrected = copy.deepcopy(body)
    corrected["invoiceOrder"]["remark"] = "corrected after the rejection"
    status, answer = world.submit(corrected)
    assert (status, answer["message"]) == (200, "order received again with corrected content")
    assert answer["data"]["status"] == "RECEIVED"
    # The same correction again: the same answer, nothing new.
    status, answer = world.submit(corrected)
    assert (status, answer["message"]) == (200, "order already received")
    world.settle(2)

    data = world.read(code)
    assert data["status"] == "ISSUED", data
    second_number = data["requestNumber"]
    # A new random number: neither the rejected one's nor one derivable from the key and submission.
    assert second_number != first_number and second_number != request_number_for(application_key("sample-erp", code), 2)
    assert re.fullmatch(r"FH[A-Z2-7]{18}", second_number)
    seen = world.issued("xunlian")
    assert set(seen["attempts"]) == {first_number, second_number}
    assert seen["counts"] == {second_number: 1} and seen["total"] == 1
    notes = " | ".join(entry.get("note") or "" for entry in data["history"])
    assert (
        "rejected it" in notes
        and f"received again with corrected content: submission 2, request number {second_number}" in notes
    )
    assert data["invoiceOrder"]["remark"] == "corrected after the rejection"
    # The callback index finds the new number.
    assert runtime.application_store().find_by_request_number(second_number).status.value == "ISSUED"


def test_resubmitting_an_issued_or_open_application_is_a_409_and_changes_nothing(world):
    body = seed_example("issued-1", invoiceType="028")
    assert world.submit(body)[0] == 200
    changed = copy.deepcopy(body)
    changed["invoiceOrder"]["remark"] = "changed"
    before = world.hub.applications()
    status, answer = world.submit(changed)
    assert status == 409 and answer["data"] == {"status": "RECEIVED"}
    assert "still being processed (RECEIVED): wait for its outcome" in answer["message"]
    assert world.hub.applications() == before

    world.settle(2)
    assert world.read("issued-1")["status"] == "ISSUED"
    before = world.hub.applications()
    status, answer = world.submit(changed)
    assert status == 409 and answer["data"] == {"status": "ISSUED"}
    assert "reverse its invoice with a red application" in answer["message"]
    assert world.hub.applications() == before


def test_a_corrected_red_application_reserves_again(world):
    blue = seed_example("red-blue-1", invoiceType="028")
    assert world.submit(blue)[0] == 200
    world.settle(2)
    [invoice] = world.read("red-blue-1")["invoices"]
    red_code = "red-1"
    red = _red_body(red_code, invoice)
    assert world.submit(red)[0] == 200, world.submit(red)
    requests.post(
        f"{world.sandboxes['xunlian'].base_url}/_sandbox/faults",
        json={world.read(red_code)["requestNumber"]: ["reject"]},
        timeout=5,
    ).raise_for_status()
    blue_pk = f"{invoice['invoiceCode']}-{invoice['invoiceNumber']}"

    def remaining() -> str:
        item = next(i for i in world.invoice_items() if i["pk"] == blue_pk)
        return str(item["red_remaining_amount"])

    held = remaining()
    world.settle(2)
    assert world.read(red_code)["status"] == "REJECTED"
    released = remaining()
    assert released != held  # the rejection gave its reservation back
    corrected = copy.deepcopy(red)
    corrected["invoiceOrder"]["remark"] = "corrected"
    assert world.submit(corrected)[0] == 200
    assert remaining() == held  # reserved again
    world.settle(2)
    assert world.read(red_code)["status"] == "ISSUED"
    assert remaining() == held


def _red_body(code: str, invoice: dict[str, Any]) -> dict[str, Any]:
    from fapiao_hub_client import demo

    blue = seed_example("unused", invoiceType="028")
    return demo.red_order(blue, invoice, code)


# ---------------------------------------------------------------------------- voids
def _issued_partner_invoice(world: World, code: str) -> dict[str, Any]:
    assert world.submit(seed_example(code, company="W92", invoiceType="028"))[0] == 200
    world.settle(3)
    data = world.read(code)
    assert data["status"] == "ISSUED", data
    return data


def test_a_partner_invoice_is_voided_end_to_end(world):
    blue = _issued_partner_invoice(world, "void-blue-1")
    [invoice] = blue["invoices"]
    body = void_body("void-1", invoice["invoiceNumber"], invoice_code=invoice.get("invoiceCode"))
    status, answer = world.submit(body)
    assert status == 200, answer
    assert answer["message"] == "void requested"
    assert answer["data"] == {"openApplyCode": "void-1", "voids": "void-blue-1", "status": "VOIDING", "warnings": []}
    assert world.submit(body)[1]["message"] == "void already requested"
    world.settle(2)
    waiting = world.read("void-blue-1")
    assert waiting["status"] == "VOIDING"  # the partner has not voided it yet
    # Honest: the partner has no void call, so nothing was sent and a person must act (never
    # "void request sent"); the application needs a person and the backlog metric says so.
    notes = [entry.get("note") or "" for entry in waiting["history"]]
    assert any(n.startswith("to be voided at the channel by a person: partner has no void call") for n in notes)
    assert not any("void request sent" in n for n in notes), notes
    stored = runtime.application_store().get("sample-erp", "void-blue-1")
    assert stored.needs_person and stored.void_by_person
    assert backlog(runtime.application_store())["Backlog.VOIDING"] == 1

    # The person voids it in the partner's portal (the sandbox's control stands for it).
    requests.post(
        f"{world.sandboxes['partner'].base_url}/_sandbox/voids",
        json={"requestId": blue["requestNumber"], "after_ms": 0},
        timeout=5,
    ).raise_for_status()
    world.settle(3)
    data = world.read("void-blue-1")
    assert data["status"] == "VOIDED", data
    [voided] = data["invoices"]
    assert voided["invoiceNumber"] == invoice["invoiceNumber"] and voided["status"] == "VOIDED"
    notes = [entry.get("note") or "" for entry in data["history"]]
    assert any(n.startswith("void requested (void-1): 开错了购方") for n in notes), notes
    assert world.issued("partner")["voided"] == {blue["requestNumber"]: 1}
    # No finding remains, nothing waits for a person, and reconciliation finds nothing either
    # (the void's own number, reported beside the original's, is about the original).
    assert data["findings"] == []
    assert backlog(runtime.application_store())["Backlog.VOIDING"] == 0
    stored = runtime.application_store().get("sample-erp", "void-blue-1")
    channel = runtime.channel_registry().channel("partner")
    answer = channel.query(stored.application, stored.request_number)
    assert compare(stored, runtime.application_store().invoices(stored), answer, at="2026-12-08T00:00:00Z") == []
    # Nothing is left on it for a red invoice to reverse.
    item = next(i for i in world.invoice_items() if i["number"] == invoice["invoiceNumber"])
    assert item["red_remaining_amount"] == 0


def _refused_void(world: World, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    before = (world.hub.snapshot(), world.invoice_items())
    status, answer = world.submit(body, token)
    assert status == 400, answer
    assert (world.hub.snapshot(), world.invoice_items()) == before
    [error] = answer["data"]["errors"]
    return error


def test_a_digital_invoice_cannot_be_voided(world):
    assert world.submit(seed_example("digital-blue-1"))[0] == 200
    world.settle()
    [invoice] = world.read("digital-blue-1")["invoices"]
    error = _refused_void(world, void_body("void-2", invoice["invoiceNumber"], company="VB5"))
    assert error["field"] == "invoiceOrder.blueInvoiceNumber"
    assert error["message"].endswith("a 数电 invoice cannot be voided; issue a red invoice")
    assert world.read("digital-blue-1")["status"] == "ISSUED"


def test_another_sellers_another_systems_and_an_unknown_invoice_read_alike(world):
    blue = _issued_partner_invoice(world, "void-blue-2")
    [invoice] = blue["invoices"]
    number, code = invoice["invoiceNumber"], invoice.get("invoiceCode")
    label = f"{code}/{number}" if code else number
    expected = (
        f"invoice {label} was not issued through the hub for this business system and seller: there is nothing "
        "here to void"
    )
    # Another seller (VB5) of the same business system.
    error = _refused_void(world, void_body("void-3", number, company="VB5", invoice_code=code))
    assert error == {"field": "invoiceOrder.blueInvoiceNumber", "message": expected}
    # Another business system (its VB5).
    error = _refused_void(world, void_body("void-4", number, company="VB5", invoice_code=code), OTHER_TOKEN)
    assert error == {"field": "invoiceOrder.blueInvoiceNumber", "message": expected}
    # An invoice the hub never issued.
    error = _refused_void(world, void_body("void-5", "99999999", invoice_code="031002400011"))
    assert error["message"] == (
        "invoice 031002400011/99999999 was not issued through the hub for this business system and seller: "
        "there is nothing here to void"
    )
    assert world.read("void-blue-2")["status"] == "ISSUED"


def test_a_channel_that_cannot_void_is_refused(world):
    assert world.submit(seed_example("xunlian-blue-1", invoiceType="028"))[0] == 200
    world.settle(2)
    [invoice] = world.read("xunlian-blue-1")["invoices"]
    error = _refused_void(
        world, void_body("void-6", invoice["invoiceNumber"], company="VB5", invoice_code=invoice.get("invoiceCode"))
    )
    assert error["field"] == "invoiceOrder.openInvoiceType"
    assert "issued by channel xunlian, which cannot void a VAT_SPECIAL_ELECTRONIC invoice" in error["message"]


def test_a_void_request_names_its_missing_fields(world):
    before = world.hub.snapshot()
    status, answer = world.submit({"invoiceOrder": {"openApplyCode": "v", "bukrs": "W92", "openInvoiceType": "2"}})
    assert status == 400
    assert {e["field"] for e in answer["data"]["errors"]} == {
        "invoiceOrder.applyCancelReason",
        "invoiceOrder.blueInvoiceNumber",
    }
    assert world.hub.snapshot() == before
