"""Callback, poll and dispatch results for one application, in every order and repeated: one invoice
recorded, the final status right, and a history that only ever moved forward."""

from __future__ import annotations

import itertools
import json

import boto3
import pytest

from fapiao_hub import runtime
from fapiao_hub.domain.models import ALLOWED_TRANSITIONS, Status
from fapiao_hub.domain.results import Accepted, Issued
from fapiao_hub.usecases.dispatch import Dispatcher, DispatchPolicy
from tests.conftest import REGION
from tests.unit.conftest import event
from tests.unit.test_dispatch_workflow import INVOICE, Clock, Directory, ScriptedChannel

STEPS = ("dispatch", "poll", "callback issued", "callback in progress")


class EverythingIssued(ScriptedChannel):
    """A channel whose every answer, sent or asked, is the one invoice."""

    def issue(self, application, request_number):
        self.sent.append(request_number)
        return Issued((INVOICE,))

    def query(self, application, request_number):
        self.queried.append(request_number)
        return Issued((INVOICE,))


@pytest.mark.parametrize("order", list(itertools.permutations(STEPS)), ids=lambda o: " > ".join(o))
def test_every_order_twice_records_one_invoice_and_moves_only_forward(hub, order):
    channel = EverythingIssued(can_query=True)
    clock = Clock()
    dispatcher = Dispatcher(
        runtime.application_store(), runtime.dispatch_queue(), runtime.event_publisher(), Directory(channel),
        runtime.file_store(), policy=DispatchPolicy(), clock=clock,
    )  # fmt: skip
    assert hub.call(event("intake-post-blue.json"))[0] == 200
    code = json.loads(event("intake-post-blue.json")["body"])["invoiceOrder"]["openApplyCode"]

    def stored():
        return runtime.application_store().get("sample-erp", code)

    for step in order * 2:
        clock.now += 61  # whatever is waiting is due
        if step in ("dispatch", "poll"):
            dispatcher.dispatch("sample-erp", code)
        elif step == "callback issued":
            dispatcher.apply_result(stored(), Issued((INVOICE,)), channel)
        else:
            dispatcher.apply_result(stored(), Accepted(), channel)

    final = stored()
    assert final.status is Status.ISSUED
    invoices = boto3.resource("dynamodb", region_name=REGION).Table(hub.environment["INVOICES_TABLE"]).scan()["Items"]
    assert [i["pk"] for i in invoices] == ["050002000205-12221761"]
    assert final.invoice_keys == ("050002000205-12221761",)
    statuses = [Status(t.status) for t in final.history if not t.is_note]
    assert statuses.count(Status.ISSUED) == 1 and statuses[-1] is Status.ISSUED
    assert all(b in ALLOWED_TRANSITIONS[a] for a, b in itertools.pairwise(statuses)), statuses
    assert len(channel.sent) <= 1  # issued at most once, whoever came first
