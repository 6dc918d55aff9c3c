"""The poller reads only due work; deadlines end in STUCK; red invoices never exceed their blue one."""

from __future__ import annotations

import json
import threading
import time
from datetime import date
from decimal import Decimal

import boto3
import pytest

from fapiao_hub import runtime
from fapiao_hub.domain.models import Status
from fapiao_hub.domain.results import Issued, IssuedInvoice
from fapiao_hub.usecases.dispatch import Dispatcher, DispatchPolicy
from fapiao_hub.usecases.polling import POLL_CLAIM_SECONDS, Poller
from tests.conftest import REGION
from tests.unit.conftest import event, get_event
from tests.unit.test_dispatch_workflow import Clock, Directory, ScriptedChannel

BLUE = IssuedInvoice(number="12221761", code="050002000205", issued_on=date.today())


def _count_dynamodb_calls(client, calls: list[str]):
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))


def test_one_poller_run_reads_the_50_due_applications_not_the_10000(hub):
    now = int(time.time())
    with hub.table.batch_writer() as batch:
        for i in range(10_000):
            item = {"pk": f"sys#A{i:05d}", "source_system": "sys", "open_apply_code": f"A{i:05d}", "version": 1}
            if i < 50:  # due
                item |= {"status": "SUBMITTED", "due_bucket": "OPEN", "next_poll_at": now - 5 - i}
            elif i < 5_000:  # open, due later
                item |= {"status": "SUBMITTED", "due_bucket": "OPEN", "next_poll_at": now + 600 + i}
            else:  # outcomes: not in the sparse index at all
                item |= {"status": "ISSUED"}
            batch.put_item(Item=item)
    calls: list[str] = []
    store = runtime.application_store()
    _count_dynamodb_calls(store._table.meta.client, calls)
    report = Poller(store, runtime.dispatch_queue(), clock=lambda: now).run()
    assert report.due == 50 and report.queued == 50
    # One page of the due-work index (50 items read, not the table), and one claim per due application.
    assert calls == ["Query"] + ["UpdateItem"] * 50
    queued = hub.queued()
    assert len(queued) == 50 and {q["open_apply_code"] for q in queued} == {f"A{i:05d}" for i in range(50)}


def _submitted_and_due(hub, prefix: str, count: int, now: int) -> None:
    """``count`` SUBMITTED applications of source system "s", codes ``{prefix}0..``, due a second ago."""
    with hub.table.batch_writer() as batch:
        for i in range(count):
            code = f"{prefix}{i}"
            batch.put_item(
                Item={"pk": f"s#{code}", "source_system": "s", "open_apply_code": code, "status": "SUBMITTED",
                      "version": 1, "due_bucket": "OPEN", "next_poll_at": now - 1}
            )  # fmt: skip


def test_a_claimed_application_is_not_queued_again_while_its_request_waits(hub):
    """A dispatch backlog: the next poller runs add nothing until the claim runs out."""
    now = int(time.time())
    _submitted_and_due(hub, "C", 12, now)
    store, queue = runtime.application_store(), runtime.dispatch_queue()
    first = Poller(store, queue, clock=lambda: now).run()
    assert (first.due, first.queued) == (12, 12)
    [claim] = {q["claimed_until"] for q in hub.queued()}
    assert claim == now + POLL_CLAIM_SECONDS
    for minutes in (1, 2, 3, 4):  # the schedule's next runs, nobody has handled the messages
        report = Poller(store, queue, clock=lambda m=minutes: now + 60 * m).run()
        assert (report.due, report.queued) == (0, 0)
    assert hub.queued() == []
    # The claim runs out (the messages were lost): due again, claimed afresh.
    later = Poller(store, queue, clock=lambda: claim).run()
    assert (later.due, later.queued) == (12, 12)
    assert {q["claimed_until"] for q in hub.queued()} == {claim + POLL_CLAIM_SECONDS}


def test_two_poller_runs_racing_queue_each_application_once(hub):
    now = int(time.time())
    _submitted_and_due(hub, "D", 40, now)
    store, queue = runtime.application_store(), runtime.dispatch_queue()
    reports = []
    threads = [
        threading.Thread(target=lambda: reports.append(Poller(store, queue, clock=lambda: now).run())) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.queued for r in reports) == 40
    queued = hub.queued()
    assert sorted(q["open_apply_code"] for q in queued) == sorted(f"D{i}" for i in range(40))


def test_the_poller_stops_before_the_lambda_deadline_and_leaves_the_rest_due(hub):
    now = int(time.time())
    _submitted_and_due(hub, "B", 30, now)
    budget = iter([60_000, 60_000, 1_000, 1_000])
    report = Poller(runtime.application_store(), runtime.dispatch_queue(), clock=lambda: now).run(
        time_left_ms=lambda: next(budget)
    )
    assert (report.due, report.queued) == (30, 20)
    assert len(hub.queued()) == 20


@pytest.fixture
def dispatching(hub):
    """A dispatcher with a scripted channel and a clock the test moves."""
    clock = Clock()
    channel = ScriptedChannel()
    dispatcher = Dispatcher(
        runtime.application_store(),
        runtime.dispatch_queue(),
        runtime.event_publisher(),
        Directory(channel),
        runtime.file_store(),
        policy=DispatchPolicy(deadline_seconds=3600),
        clock=clock,
    )
    return clock, channel, dispatcher


def test_nothing_due_past_the_deadline_is_left_without_stuck(hub, dispatching):
    from tests.unit.test_dispatch_workflow import Unknown

    clock, channel, dispatcher = dispatching
    codes = []
    for i in range(4):
        body = json.loads(event("intake-post-blue.json")["body"])
        body["invoiceOrder"]["openApplyCode"] = code = f"LATE-{i}"
        assert hub.call(event("intake-post-blue.json", body=body))[0] == 200
        codes.append(code)
    hub.queued()
    # Four open states: RECEIVED (its message lost), SUBMITTED, UNKNOWN, RETRY_WAIT.
    channel.dedupes_request_number = True
    from fapiao_hub.domain.results import Accepted, NotSent

    channel.script = [Accepted("ref-1"), Unknown("read timeout"), NotSent("refused")]
    for code in codes[1:]:
        dispatcher.dispatch("sample-erp", code)
    statuses = {i["open_apply_code"]: i["status"] for i in hub.applications()}
    assert sorted(statuses.values()) == ["RECEIVED", "RETRY_WAIT", "SUBMITTED", "UNKNOWN"]
    hub.queued()
    clock.now = time.time() + 3601  # past every deadline, however slowly the orders went in
    report = Poller(runtime.application_store(), runtime.dispatch_queue(), clock=clock).run()
    assert report.due == 4
    for request in hub.queued():
        dispatcher.dispatch(
            request["source_system"], request["open_apply_code"], claimed_until=request.get("claimed_until")
        )
    items = hub.applications()
    assert {i["status"] for i in items} == {"STUCK"}
    assert all("needs a person" in i["reason"] for i in items)
    assert all("due_bucket" not in i for i in items)  # out of the due-work index


# ---------------------------------------------------------------------------- red invoices
def _issue_blue(hub, dispatching) -> dict:
    """Seed 004's example issued as invoice 050002000205-12221761 (5327.43 + tax 692.57)."""
    _, channel, dispatcher = dispatching
    assert hub.call(event("intake-post-blue.json"))[0] == 200
    hub.queued()
    channel.script = [Issued((BLUE,))]
    assert dispatcher.dispatch("sample-erp", "zcxs1825830330588741634") == "issued"
    table = boto3.resource("dynamodb", region_name=REGION).Table(hub.environment["INVOICES_TABLE"])
    return table.get_item(Key={"pk": "050002000205-12221761"})["Item"]


def red_order(code: str, incl: str) -> dict:
    """A red order of ``incl`` (tax-inclusive, positive figure) against the blue invoice, at 13%."""
    body = json.loads(event("intake-post-red.json")["body"])
    order = body["invoiceOrder"]
    order["openApplyCode"] = code
    order["invoiceType"] = "0112"  # like its blue invoice
    order["redConfirmUuid"] = f"confirm-{code}"
    for key in ("invoiceAmtInclTax", "invoiceAmt", "invoiceTax"):
        order.pop(key)
    [line] = order["invoiceOrderSub"]
    line.update(amtInclTax=f"-{incl}", price=incl, quantity=-1)
    return body


def remaining(hub) -> tuple[Decimal, Decimal]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(hub.environment["INVOICES_TABLE"])
    item = table.get_item(Key={"pk": "050002000205-12221761"}, ConsistentRead=True)["Item"]
    return item["red_remaining_amount"], item["red_remaining_tax"]


def test_partial_reversals_up_to_the_blue_amount_pass_and_one_cent_more_fails(hub, dispatching):
    blue = _issue_blue(hub, dispatching)
    assert (blue["red_remaining_amount"], blue["red_remaining_tax"]) == (Decimal("5327.43"), Decimal("692.57"))
    # 1130.00 = 1000.00 + 130.00, three times; then exactly what is left (2630.00 = 2327.43 + 302.57).
    for i in range(3):
        status, answer, _ = hub.call(event("intake-post-red.json", body=red_order(f"RED-{i}", "1130.00")))
        assert status == 200, answer
    assert remaining(hub) == (Decimal("2327.43"), Decimal("302.57"))
    before = (hub.applications(), remaining(hub))
    status, answer, _ = hub.call(event("intake-post-red.json", body=red_order("RED-too-much", "2630.01")))
    assert status == 400
    [error] = answer["data"]["errors"]
    assert error["field"] == "invoiceOrder.blueInvoiceNumber"
    assert "2327.43" in error["message"] and "2327.44" in error["message"]  # both figures
    assert (hub.applications(), remaining(hub)) == before  # nothing changed
    status, answer, _ = hub.call(event("intake-post-red.json", body=red_order("RED-rest", "2630.00")))
    assert status == 200, answer
    assert remaining(hub) == (Decimal("0.00"), Decimal("0.00"))  # fully reversed, to the cent


def test_a_rejected_red_application_gives_its_amount_back(hub, dispatching):
    from fapiao_hub.domain.results import Rejected

    _, channel, dispatcher = dispatching
    _issue_blue(hub, dispatching)
    assert hub.call(event("intake-post-red.json", body=red_order("RED-X", "1130.00")))[0] == 200
    assert remaining(hub) == (Decimal("4327.43"), Decimal("562.57"))
    channel.script = [Rejected("red confirmation not found", "RC404")]
    assert dispatcher.dispatch("sample-erp", "RED-X") == "rejected"
    assert remaining(hub) == (Decimal("5327.43"), Decimal("692.57"))


def test_concurrent_red_applications_cannot_together_exceed_the_blue_invoice(hub, dispatching):
    _issue_blue(hub, dispatching)
    results: list[int] = []
    orders = [red_order(f"RED-C{i}", "2260.00") for i in range(6)]  # 6 x 2000.00: only 2 fit in 5327.43
    threads = [
        threading.Thread(target=lambda o=o: results.append(hub.call(event("intake-post-red.json", body=o))[0]))
        for o in orders
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [200, 200, 400, 400, 400, 400]
    accepted = [i for i in hub.applications() if i["open_apply_code"].startswith("RED-C")]
    assert len(accepted) == 2
    assert remaining(hub) == (Decimal("1327.43"), Decimal("172.57"))


def test_get_shows_the_red_application_with_its_blue_reference(hub, dispatching):
    _issue_blue(hub, dispatching)
    assert hub.call(event("intake-post-red.json", body=red_order("RED-G", "113.00")))[0] == 200
    status, answer, _ = hub.call(get_event("RED-G"))
    assert status == 200 and answer["data"]["invoiceOrder"]["blueInvoiceNumber"] == "12221761"
    assert answer["data"]["status"] == Status.RECEIVED.value
