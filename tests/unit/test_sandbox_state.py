"""The channel sandboxes survive a restart of the local run (issue 19), and a fault switch changes only
what is issued while it is on.

Each simulator's records go through :meth:`sandbox.base.SavedState.snapshot` (as JSON text, the way
local.state writes them) into a fresh simulator on another port, which then answers about what the
first one issued and goes on numbering after it. Real HTTP, the hub's channel modules as clients.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest

from fapiao_hub.domain.models import InvoiceType
from fapiao_hub.domain.results import Accepted, Issued
from sandbox import ekuaibao as sandbox_ekuaibao
from sandbox import kingdee as sandbox_kingdee
from sandbox import partner as sandbox_partner
from sandbox import receiver
from sandbox import xunlian as sandbox_xunlian
from sandbox.base import SavedState
from tests.unit.test_sandbox_orders import (
    application,
    get,
    hand,
    kingdee_channel,
    kingdee_issue,
    partner_query,
    post,
    pushed,
    register,
    script,
    xunlian_channel,
)


def moved(server: Any, fresh: Any) -> Any:
    """``server``'s records into ``fresh`` through JSON text, as a stop and a start would; ``server`` stops."""
    saved = server.saved()
    assert isinstance(saved, SavedState)
    text = json.dumps(saved.snapshot(base_url=server.base_url), ensure_ascii=False)
    server.shutdown()
    fresh.saved().restore(json.loads(text), base_url=fresh.base_url)
    return fresh


def numbers(outcome: Any) -> list[tuple[str | None, str]]:
    assert isinstance(outcome, Issued), outcome
    return [(i.code, i.number) for i in outcome.invoices]


def test_xunlian_goes_on_numbering_after_a_restart_and_still_knows_its_invoices() -> None:
    first = sandbox_xunlian.run()
    app = application(InvoiceType.VAT_SPECIAL_ELECTRONIC)
    before = numbers(xunlian_channel(first).issue(app, "FH-S1"))
    assert [n for _, n in before] == ["00000001"]
    second = moved(first, sandbox_xunlian.run())
    try:
        channel = xunlian_channel(second)
        # The same request number: the invoice issued before the restart, not a new one.
        assert numbers(channel.issue(app, "FH-S1")) == before
        later = numbers(channel.issue(application(InvoiceType.VAT_SPECIAL_ELECTRONIC, code="APP-2"), "FH-S2"))
        assert later == [(before[0][0], "00000002")]  # the same seller's code, the next number
        assert get(f"{second.base_url}/_sandbox/issued")["counts"] == {"FH-S1": 1, "FH-S2": 1}
    finally:
        second.shutdown()


def test_kingdee_keeps_bills_and_numbering_and_issues_a_pending_bill_after_the_restart() -> None:
    first = sandbox_kingdee.run(access_token="kd-token")
    app = application(InvoiceType.VAT_SPECIAL_ELECTRONIC)
    before = numbers(kingdee_issue(first, app, "FH-K1"))
    # Pushed, not yet issued at the stop (a long issue delay): issued after the restart, once.
    post(f"{first.base_url}/_sandbox/config", {"issue_delay_ms": 300})
    assert isinstance(kingdee_channel(first).issue(app, "FH-K2"), Accepted)
    second = moved(first, sandbox_kingdee.run(access_token="kd-token", issue_delay_ms=300))
    try:
        channel = kingdee_channel(second)
        assert numbers(channel.query(app, "FH-K1")) == before
        # The PDF URL it handed out before the stop is served by the new server (another port).
        [invoice] = get(f"{second.base_url}/_sandbox/bills/FH-K1")["invoices"]
        assert invoice["invoiceFileUrl"].startswith(second.base_url + "/")
        assert get_bytes(invoice["invoiceFileUrl"]).startswith(b"%PDF")
        time.sleep(0.35)
        [(code, number)] = numbers(channel.query(app, "FH-K2"))
        assert (code, number) == (before[0][0], "00000002")
        issued = get(f"{second.base_url}/_sandbox/issued")
        assert issued["counts"] == {"FH-K1": 1, "FH-K2": 1} and issued["pushes"] == {"FH-K1": 1, "FH-K2": 1}
        assert channel.issue(app, "FH-K2").__class__ is Accepted  # BILL_EXISTS: known, nothing stored again
        assert get(f"{second.base_url}/_sandbox/issued")["total"] == 2
    finally:
        second.shutdown()


def test_partner_keeps_applications_invoices_and_voids_across_a_restart() -> None:
    first = sandbox_partner.run(client_id="p-id", client_secret="p-secret")
    post(f"{first.base_url}/_sandbox/config", {"issue_after_ms": 0})
    app = application(InvoiceType.VAT_SPECIAL_ELECTRONIC)
    register(first, "FH-P1", app)
    before = numbers(partner_query(first, app, "FH-P1"))
    post(f"{first.base_url}/_sandbox/voids", {"requestId": "FH-P1", "after_ms": 0})
    second = sandbox_partner.run(client_id="p-id", client_secret="p-secret")
    moved(first, second)
    try:
        post(f"{second.base_url}/_sandbox/config", {"issue_after_ms": 0})
        voided = partner_query(second, app, "FH-P1")
        record = get(f"{second.base_url}/_sandbox/applications/FH-P1")
        assert record["invoices"][0]["invoiceNumber"] == before[0][1]
        assert record["invoices"][0]["voidNumber"] is not None, (voided, record)
        register(second, "FH-P2", app)
        [(_, number)] = numbers(partner_query(second, app, "FH-P2"))
        assert number not in {record["invoices"][0]["invoiceNumber"], record["invoices"][0]["voidNumber"]}
        summary = get(f"{second.base_url}/_sandbox/issued")
        assert summary["counts"] == {"FH-P1": 1, "FH-P2": 1} and summary["voided"] == {"FH-P1": 1}
    finally:
        second.shutdown()


def test_ekuaibao_pushes_after_the_restart_what_the_hub_had_not_taken() -> None:
    """Handed over with the hub away (nothing answers the push): the push is still owed after the restart."""
    hook = receiver.run()
    try:
        _ekuaibao_restart(hook)
    finally:
        hook.shutdown()


def _ekuaibao_restart(hook: receiver.WebhookReceiver) -> None:
    first = sandbox_ekuaibao.run(access_token="ek-token", delay_ms=0)
    first.callback_url = "http://127.0.0.1:9/nobody"  # the discard port: refused at once
    app = application(InvoiceType.VAT_SPECIAL_ELECTRONIC)
    hand(first, "FH-E1", app)
    deadline = time.monotonic() + 5
    while not first.pushes() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.pushes() and first.pushes()[0]["status"] is None  # tried, reached nobody
    issued = get(f"{first.base_url}/_sandbox/issued/FH-E1")["invoices"]
    second = sandbox_ekuaibao.run(access_token="ek-token", delay_ms=0)
    second.callback_url = hook.url
    moved(first, second)
    try:
        [body] = pushed(hook, 1)
        assert body["serialNo"] == "FH-E1" and body["result"] == 0
        assert body["data"][0]["invoiceNumber"] == issued[0]["invoiceNumber"]
        assert get(f"{second.base_url}/_sandbox/issued")["counts"] == {"FH-E1": 1}
        assert body["data"][0]["originalsUrl"].startswith(second.base_url + "/")  # the new server's
        assert get_bytes(body["data"][0]["originalsUrl"]).startswith(b"%PDF")
        # Taken now: nothing left to push at the next restart.
        assert json.loads(json.dumps(second.snapshot()))["fields"]["_pending"] == {}
    finally:
        second.shutdown()


def get_bytes(url: str) -> bytes:
    import requests

    answer = requests.get(url, timeout=5)
    assert answer.status_code == 200
    return answer.content


def test_a_snapshot_that_is_not_one_changes_nothing() -> None:
    server = sandbox_xunlian.run()
    try:
        xunlian_channel(server).issue(application(InvoiceType.VAT_SPECIAL_ELECTRONIC), "FH-B1")
        unknown_type = {"version": 1, "fields": {"_issued": {"$type": "X", "fields": {}}}}
        for bad in ({}, {"version": 1, "fields": {"_unknown": 1}}, unknown_type):
            with pytest.raises(ValueError):
                server.saved().restore(bad)
        assert get(f"{server.base_url}/_sandbox/issued")["counts"] == {"FH-B1": 1}
    finally:
        server.shutdown()


# --------------------------------------------------------------------------- a switch turned on later


def test_kingdee_wrong_amount_switched_on_later_does_not_change_invoices_issued_before() -> None:
    server = sandbox_kingdee.run(access_token="kd-token")
    try:
        app = application(InvoiceType.VAT_SPECIAL_ELECTRONIC)
        channel = kingdee_channel(server)
        right = kingdee_issue(server, app, "FH-W1")
        assert isinstance(right, Issued) and right.invoices[0].amount == app.amount
        post(f"{server.base_url}/_sandbox/config", {"rates": {"wrong_amount": 1}})  # the switch, for everything
        for _ in range(3):  # asked again and again: the same invoice, the same amounts
            again = channel.query(app, "FH-W1")
            assert isinstance(again, Issued)
            assert [(i.number, i.amount, i.tax) for i in again.invoices] == [
                (i.number, i.amount, i.tax) for i in right.invoices
            ]
        # Issued while the switch is on: wrong once, and answered the same way every time after.
        wrong = kingdee_issue(server, app, "FH-W2")
        assert isinstance(wrong, Issued) and wrong.invoices[0].amount == app.amount + Decimal("10.00")
        post(f"{server.base_url}/_sandbox/config", {"rates": {}})
        for _ in range(2):
            later = channel.query(app, "FH-W2")
            assert isinstance(later, Issued) and later.invoices[0].amount == app.amount + Decimal("10.00")
        assert get(f"{server.base_url}/_sandbox/issued")["counts"] == {"FH-W1": 1, "FH-W2": 1}
    finally:
        server.shutdown()


def test_partner_wrong_result_switched_on_later_does_not_change_invoices_issued_before() -> None:
    partner = sandbox_partner.run(client_id="p-id", client_secret="p-secret")
    try:
        post(f"{partner.base_url}/_sandbox/config", {"issue_after_ms": 0})
        app = application(InvoiceType.VAT_SPECIAL_ELECTRONIC)
        register(partner, "FH-W3", app)
        assert isinstance(partner_query(partner, app, "FH-W3"), Issued)
        facts = get(f"{partner.base_url}/_sandbox/applications/FH-W3")["invoices"][0]["facts"]
        assert facts["invoiceAmount"] == f"{app.amount}"
        script(partner.base_url, "FH-W3", "wrong_amount", "wrong_seller")
        for _ in range(2):
            assert isinstance(partner_query(partner, app, "FH-W3"), Issued)
            assert get(f"{partner.base_url}/_sandbox/applications/FH-W3")["invoices"][0]["facts"] == facts
    finally:
        partner.shutdown()
