"""Results are checked before they are believed (issue 12), end to end over the local run.

Real parts only: the hub as `make run` starts it, the channel sandboxes over HTTP with their
wrong-result switches, the sample business system's webhook receiver. A wrong result (amount, seller,
type, an extra invoice) from a pushing channel (Ekuaibao) and a polled one (Kingdee) ends MISMATCH
with a finding naming the field and both values, and no InvoiceIssued reaches the business system;
correct results of every sandbox still end ISSUED; "rejects but actually issued" is found by
reconciliation, once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from fapiao_hub.domain.models import application_key, request_number_for
from fapiao_hub_client.demo import red_order
from tests.integration.conftest import LocalRun

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "sample-erp"
FINAL = {"ISSUED", "REJECTED", "MISMATCH", "MANUAL_REVIEW", "STUCK", "VOIDED"}
# Fast schedules, and metrics printed (EMF) so that the alarm metric can be seen in the log.
# Derived request numbers (local.run): the tests script a sandbox's faults for a number before sending the order.
ENV = {
    "LOCAL_SCHEDULE_SECONDS": "1",
    "LOCAL_RECONCILIATION_SECONDS": "1",
    "POWERTOOLS_METRICS_DISABLED": "false",
    "LOCAL_DERIVED_REQUEST_NUMBERS": "1",
}


def example(channel: str) -> dict[str, Any]:
    return json.loads((ROOT / "docs" / "examples" / f"order-{channel}.json").read_text(encoding="utf-8"))


def order(channel: str, code: str, invoice_type: str | None = None) -> dict[str, Any]:
    body = example(channel)
    body["invoiceOrder"]["openApplyCode"] = code
    for line in body["invoiceOrder"]["invoiceOrderSub"]:
        line["openApplyCode"] = code
    if invoice_type:
        body["invoiceOrder"]["invoiceType"] = invoice_type
    return body


class Hub:
    def __init__(self, run: LocalRun):
        self.run = run
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {run.token}"

    def channel_url(self, name: str) -> str:
        return self.run.info["channels"][name]["base_url"]

    def submit(self, body: dict[str, Any]) -> None:
        answer = self.session.post(f"{self.run.api_url}/v1/invoice-orders", json=body, timeout=10)
        assert answer.status_code == 200, answer.text

    def get(self, code: str) -> dict[str, Any]:
        answer = self.session.get(f"{self.run.api_url}/v1/invoice-orders/{code}", timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    def wait(self, codes: list[str], statuses: set[str] = FINAL, timeout: float = 150) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        seen: dict[str, dict] = {}
        while time.monotonic() < deadline:
            seen = {code: self.get(code) for code in codes}
            if all(data["status"] in statuses for data in seen.values()):
                return seen
            time.sleep(1)
        pending = {code: data["status"] for code, data in seen.items() if data["status"] not in statuses}
        pytest.fail(f"not final in {timeout:g} s: {pending}\n{self.run.log()[-4000:]}")

    def script(self, channel: str, code: str, faults: list[str]) -> None:
        number = request_number_for(application_key(SYSTEM, code))
        answer = requests.post(f"{self.channel_url(channel)}/_sandbox/faults", json={number: faults}, timeout=5)
        assert answer.status_code == 200, answer.text

    def notifications(self) -> list[dict[str, Any]]:
        url = self.run.info["webhooks"][SYSTEM]["notifications"]
        return requests.get(url, timeout=5).json()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.integration.conftest import _finish, start_local_run

    run = start_local_run(tmp_path_factory.mktemp("result-checks"), **ENV)
    try:
        yield Hub(run)
    finally:
        _finish(run)


def _event_types(notifications: list[dict[str, Any]], code: str) -> list[str]:
    """The hub-format notifications' types for ``code``, in the order received."""
    bodies = [note.get("body") or {} for note in notifications]
    return [b["type"] for b in bodies if (b.get("application") or {}).get("openApplyCode") == code]


WRONG = {
    "wrong_amount": "amount",
    "wrong_seller": "seller.tax_number",
    "wrong_type": "invoice_type",
    "extra_invoice": "invoices",
}


@pytest.mark.parametrize("channel", ["ekuaibao", "kingdee"])
def test_a_wrong_result_needs_a_person_and_is_never_reported_issued(hub: Hub, channel: str) -> None:
    codes = {}
    for fault in WRONG:
        code = f"wrong-{channel}-{fault}"
        hub.script(channel, code, [fault])
        hub.submit(order(channel, code))
        codes[fault] = code
    final = hub.wait(list(codes.values()))
    expected = example(channel)["invoiceOrder"]
    for fault, code in codes.items():
        data = final[code]
        assert data["status"] == "MISMATCH", (fault, data["status"], data.get("reason"))
        assert data["invoices"], "the result is recorded in full, not lost"
        [finding] = data["findings"]
        assert finding["kind"] == "RESULT_MISMATCH" and finding["open"]
        fields = {d["field"]: d for d in finding["differences"]}
        if fault == "extra_invoice":
            # Two invoices whose totals add up to twice the order's.
            assert len(data["invoices"]) == 2
            assert fields["amount"]["expected"] == "5327.43"
            assert fields["amount"]["reported"] == "10654.86"
        elif fault == "wrong_amount":
            assert fields["amount"]["expected"] == "5327.43"
            assert fields["amount"]["reported"] == "5337.43"
        elif fault == "wrong_seller":
            seller = fields["seller.tax_number"]
            assert seller["expected"] != seller["reported"] and seller["expected"] and seller["reported"]
        else:
            kind = fields["invoice_type"]
            assert kind["expected"] == "VAT_SPECIAL_ELECTRONIC" and kind["reported"] == "VAT_NORMAL_ELECTRONIC"
        assert expected["openApplyCode"] != code  # the example's own code is never used here
    # The business system hears "needs review" for each, never "issued".
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        notes = hub.notifications()
        if all("ApplicationNeedsReview" in _event_types(notes, code) for code in codes.values()):
            break
        time.sleep(1)
    for code in codes.values():
        types = _event_types(notes, code)
        assert "ApplicationNeedsReview" in types, (code, types)
        assert "InvoiceIssued" not in types, (code, types)


def test_correct_results_end_issued_on_every_sandbox(hub: Hub) -> None:
    """Every sandbox, every invoice type it issues, discount lines (the examples carry a discounted
    line and its discount), a channel-side split into two invoices, and a red reversal."""
    plan = {
        "xunlian": ["004", "007", "026", "028"],
        "kingdee": ["01", "02", "004", "007", "026", "028"],
        "ekuaibao": ["01", "02", "026", "028"],
        "partner": ["026", "028"],
    }
    codes = []
    for channel, types in plan.items():
        for invoice_type in types:
            code = f"good-{channel}-{invoice_type}"
            hub.submit(order(channel, code, invoice_type))
            codes.append(code)
    # Kingdee splits the next bill into two invoices whose totals add up to the bill's.
    requests.post(f"{hub.channel_url('kingdee')}/_sandbox/config", json={"split_into": 2}, timeout=5).raise_for_status()
    hub.submit(order("kingdee", "good-kingdee-split"))
    final = hub.wait([*codes, "good-kingdee-split"])
    requests.post(f"{hub.channel_url('kingdee')}/_sandbox/config", json={"split_into": 1}, timeout=5).raise_for_status()
    wrong = {code: (d["status"], d.get("findings")) for code, d in final.items() if d["status"] != "ISSUED"}
    assert not wrong
    split = final["good-kingdee-split"]["invoices"]
    assert len(split) == 2
    assert round(sum(i["amount"] for i in split), 2) == 5327.43
    # A red reversal of the Xunlian 028 invoice ends ISSUED too, with negative amounts.
    blue = final["good-xunlian-028"]
    red = red_order(order("xunlian", "good-xunlian-028", "028"), blue["invoices"][0], "good-xunlian-red")
    hub.submit(red)
    reversed_ = hub.wait(["good-xunlian-red"])["good-xunlian-red"]
    assert reversed_["status"] == "ISSUED", (reversed_.get("reason"), reversed_.get("findings"))
    assert reversed_["findings"] == []
    assert all(i["amount"] < 0 for i in reversed_["invoices"])


def test_rejected_but_issued_is_found_by_reconciliation_once(hub: Hub) -> None:
    code = "rejected-but-issued"
    hub.script("kingdee", code, ["reject_but_issue"])
    hub.submit(order("kingdee", code))
    data = hub.wait([code])[code]
    assert data["status"] == "REJECTED"
    assert "InvoiceIssued" not in _event_types(hub.notifications(), code)
    # The local run reconciles every second: the channel's answer now shows the invoice it issued.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not hub.get(code)["findings"]:
        time.sleep(1)
    [finding] = hub.get(code)["findings"]
    assert finding["kind"] == "ISSUED_BUT_REJECTED" and finding["source"] == "reconciliation"
    assert finding["invoiceNumbers"], finding
    # Further runs find the same difference again and record nothing new.
    time.sleep(5)
    after = hub.get(code)
    assert [f["id"] for f in after["findings"]] == [finding["id"]]
    assert after["status"] == "REJECTED"
    # The alarm metric was emitted once for it (EMF lines in the local run's log).
    emitted = [line for line in hub.run.log().splitlines() if "Findings.ISSUED_BUT_REJECTED" in line]
    assert len(emitted) == 1, emitted
