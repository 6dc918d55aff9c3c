"""What "verified" rests on, end to end over the local run (issue 18 item 4): the partner (seed 003)
reports no figures, so the hub reads them from the invoice's 数电 XML (fetched from the sandbox over
real HTTP, within the channel's file hosts) and says so on the invoice, in GET and in the webhook.

The partner receives applications out of band: the test hands the order over to the sandbox as the
business's own integration would (``fapiao_hub.channels.ekuaibao.hand_over``), before submitting it
to the hub; the sandbox's XML then states what it issued. Without the order (the local run's auto
registration) the XML states no figures and the invoice says they are the application's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from fapiao_hub.api import seed004
from fapiao_hub.channels.ekuaibao import hand_over
from fapiao_hub.domain import rules
from fapiao_hub.domain.config import HubConfig, token_sha256
from fapiao_hub.domain.models import Application, application_key, request_number_for
from tests.integration.test_result_checks import ENV, SYSTEM, Hub, order

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPARED = ["seller", "buyer", "invoice_type", "direction", "issued_on", "amount", "tax", "lines"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.integration.conftest import _finish, start_local_run

    run = start_local_run(tmp_path_factory.mktemp("what-was-verified"), **ENV)
    try:
        yield Hub(run)
    finally:
        _finish(run)


def application_of(body: dict[str, Any]) -> Application:
    """The application the hub builds from ``body`` (the same intake code, the local configuration)."""
    document = json.loads((ROOT / "local" / "hub-config.json").read_text(encoding="utf-8"))
    document["business_systems"][SYSTEM]["token_sha256"] = [token_sha256("unused")]
    config = HubConfig.model_validate(document)
    result = seed004.to_application(
        body, source_system=SYSTEM, system=config.business_systems[SYSTEM], config=config,
        policy=rules.RulePolicy.default(),
    )  # fmt: skip
    assert result.application is not None, result.errors
    return result.application


def hand_over_to_partner(hub: Hub, code: str, body: dict[str, Any]) -> None:
    number = request_number_for(application_key(SYSTEM, code))
    order_ = hand_over(application_of(body))
    answer = requests.post(
        f"{hub.channel_url('partner')}/_sandbox/applications", json={"requestId": number, "order": order_}, timeout=5
    )
    assert answer.status_code == 200, answer.text


def webhook_invoices(hub: Hub, code: str, kind: str, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for note in hub.notifications():
            body = note.get("body") or {}
            if (body.get("application") or {}).get("openApplyCode") == code and body.get("type") == kind:
                return body["invoices"]
        time.sleep(1)
    pytest.fail(f"no {kind} webhook for {code}")


def test_a_partner_result_is_verified_from_its_xml_and_says_exactly_what_was_compared(hub: Hub) -> None:
    code = f"verified-partner-{int(time.time())}"
    body = order("partner", code)
    hand_over_to_partner(hub, code, body)
    hub.submit(body)
    data = hub.wait([code])[code]
    assert data["status"] == "ISSUED", data.get("reason")
    [invoice] = data["invoices"]
    assert invoice["verified"] == COMPARED
    assert invoice["verifiedFromFile"] == COMPARED  # the partner's answer states none of them itself
    assert (invoice["fromApplication"], invoice["attestedByOperator"]) == ([], [])
    deadline = time.monotonic() + 30  # files are kept right after the result is recorded
    while not invoice.get("files") and time.monotonic() < deadline:
        time.sleep(1)
        [invoice] = hub.get(code)["invoices"]
    assert sorted(f["format"] for f in invoice["files"]) == ["pdf", "xml"]  # the XML fetched once, and kept
    [notified] = webhook_invoices(hub, code, "InvoiceIssued")
    assert (notified["verified"], notified["verifiedFromFile"], notified["fromApplication"]) == (COMPARED, COMPARED, [])


def test_a_partner_file_whose_amount_differs_is_a_mismatch_naming_amount(hub: Hub) -> None:
    code = f"verified-partner-wrong-{int(time.time())}"
    body = order("partner", code)
    hand_over_to_partner(hub, code, body)
    hub.script("partner", code, ["wrong_amount"])
    hub.submit(body)
    data = hub.wait([code])[code]
    assert data["status"] == "MISMATCH", data.get("reason")
    [finding] = data["findings"]
    fields = {d["field"]: d for d in finding["differences"]}
    amount = application_of(body).amount  # the sandbox's wrong_amount adds 10.00
    assert (fields["amount"]["expected"], fields["amount"]["reported"]) == (f"{amount:.2f}", f"{amount + 10:.2f}")
    [invoice] = data["invoices"]
    assert "amount" in invoice["verifiedFromFile"]  # what it was compared with: the file's figure


def test_a_partner_result_whose_file_states_no_figures_says_they_are_the_applications(hub: Hub) -> None:
    code = f"verified-partner-bare-{int(time.time())}"
    hub.submit(order("partner", code))  # no order handed over: the sandbox's XML states no figures
    data = hub.wait([code])[code]
    assert data["status"] == "ISSUED", data.get("reason")
    [invoice] = data["invoices"]
    assert invoice["verified"] == ["issued_on"] and invoice["verifiedFromFile"] == ["issued_on"]
    assert invoice["fromApplication"] == ["seller", "invoice_type", "direction", "amount", "tax"]
    [notified] = webhook_invoices(hub, code, "InvoiceIssued")
    assert notified["fromApplication"] == ["seller", "invoice_type", "direction", "amount", "tax"]
