"""Every pushed result is bound to the channel that was asked (issue 18, items 1 and 7).

A result applies only to an application whose current submission went to the pushing channel; anything
else is kept as an unmatched result with a finding naming both channels and changes nothing. Request
numbers are drawn at random at intake (not computable from the business system and code). A pushed
rejection after an unknown outcome is not believed unchecked; a result for a CANCELLED application is
kept with a finding. Through the real callback handler (tests/unit/test_callbacks.py) or the dispatcher
with a scripted channel (tests/unit/test_dispatch_workflow.py), against moto.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from aws_lambda_powertools import Metrics

from fapiao_hub import runtime
from fapiao_hub.domain.models import FindingKind, InvoiceType, Status, request_number_for
from fapiao_hub.domain.results import Issued, IssuedInvoice, Rejected, Unknown
from fapiao_hub.infra import events
from fapiao_hub.infra.signatures import sign
from tests.conftest import REGION
from tests.unit.conftest import OTHER_TOKEN as OTHER_ERP_TOKEN
from tests.unit.conftest import event
from tests.unit.test_callbacks import CODE, _push_for, callbacks  # noqa: F401 - the fixture
from tests.unit.test_dispatch_workflow import world  # noqa: F401 - the fixture

OTHER_TOKEN = "other-channel-token"
OTHER_SECRET = "other-channel-hmac-secret"
KEY = f"sample-erp#{CODE}"
GOOD = IssuedInvoice(
    number="26112000000012221761",
    issued_on=date.today(),
    amount=Decimal("5327.43"),
    tax=Decimal("692.57"),
    invoice_type=InvoiceType.DIGITAL_SPECIAL,
    seller_tax_number="91220101MA0Y5K3N4H",
)


@pytest.fixture(autouse=True)
def no_metrics_left():
    Metrics().clear_metrics()
    yield
    Metrics().clear_metrics()


def recorded_metrics() -> dict[str, list]:
    return {name: list(m["Value"]) for name, m in Metrics().metric_set.items()}


@pytest.fixture
def bus(hub):
    """Every event the hub publishes, read back from a queue a rule of the bus fills."""
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="binding-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bridge = boto3.client("events", region_name=REGION)
    name = hub.environment["EVENT_BUS_NAME"]
    bridge.put_rule(Name="binding", EventBusName=name, EventPattern=json.dumps({"source": ["fapiao-hub"]}))
    bridge.put_targets(Rule="binding", EventBusName=name, Targets=[{"Id": "q", "Arn": arn}])

    def read() -> list[tuple[str, dict]]:
        found = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            found += [json.loads(m["Body"]) for m in batch]
            for m in batch:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return [(e["detail-type"], e["detail"]) for e in found]

    return read


@pytest.fixture
def two_channels(callbacks, hub):  # noqa: F811
    """The callbacks fixture's Ekuaibao (VB5's channel) and a second pushing channel with its own credential."""
    path = Path(hub.environment["HUB_CONFIG_FILE"])
    document = json.loads(path.read_text(encoding="utf-8"))
    document["channels"]["other-pusher"] = {
        "type": "ekuaibao",
        "base_url": "https://other.invalid",
        "credentials": {"access_token": OTHER_TOKEN, "hmac_secret": OTHER_SECRET},
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    runtime.reset()
    return callbacks


def post_as_other(callbacks, body: str):  # noqa: F811
    ts = str(int(time.time()))
    signature = sign(OTHER_SECRET.encode(), ts, body.encode("utf-8"))
    return callbacks.post(body, token=OTHER_TOKEN, timestamp=ts, signature=signature, channel="other-pusher")


def submitted(hub) -> str:
    """VB5's order, dispatched to Ekuaibao: SUBMITTED under the number drawn at intake."""
    assert hub.call(event("intake-post-blue.json"))[0] == 200
    hub.queued()
    assert runtime.dispatcher().dispatch("sample-erp", CODE) == "submitted"
    return runtime.application_store().get("sample-erp", CODE).request_number


def application_item(hub) -> dict:
    [item] = hub.applications()
    return item


@pytest.mark.parametrize("result", [0, 1], ids=["issued", "rejected"])
def test_a_push_by_a_channel_not_asked_changes_nothing_and_is_kept_with_a_finding(two_channels, hub, bus, result):
    number = submitted(hub)
    bus()
    before = application_item(hub)
    unknown = "FH" + "A" * 18
    assert post_as_other(two_channels, _push_for(unknown, result=result)) == (
        404,
        {"value": False, "message": f"no application for request number {unknown}"},
    )
    status, answer = post_as_other(two_channels, _push_for(number, result=result))
    # Answered exactly as a number the hub never sent: the answer does not tell that it exists.
    assert (status, answer) == (404, {"value": False, "message": f"no application for request number {number}"})
    assert application_item(hub) == before  # status, version, history, findings: untouched
    published = bus()
    assert [kind for kind, _ in published] == ["ResultUnmatched", "ResultUnmatched"]  # nothing for the business
    detail = published[1][1]
    assert detail["source_system"] == "" and detail["open_apply_code"] == ""
    assert detail["channel"] == "other-pusher" and detail["asked_channel"] == "ekuaibao"
    assert detail["request_number"] == number
    [finding] = detail["findings"]
    assert finding["kind"] == "RESULT_FROM_UNASKED_CHANNEL"
    assert finding["differences"] == [{"field": "channel", "expected": "ekuaibao", "reported": "other-pusher"}]
    assert "other-pusher pushed" in finding["summary"] and "sent to ekuaibao" in finding["summary"]
    assert "findings" not in published[0][1]  # a number of no application: no one asked to name
    invoices = two_channels.invoices()
    if result == 0:
        [kept] = invoices
        assert kept["unmatched"] is True and "application_key" not in kept
        assert kept["channel"] == "other-pusher" and kept["asked_channel"] == "ekuaibao"
        assert kept["finding"]["kind"] == "RESULT_FROM_UNASKED_CHANNEL" and detail["invoices"] == [kept["pk"]]
    else:
        assert invoices == []
    # The channel that was asked is still believed.
    own = str(int(time.time()) - 1)  # the replay guard keys on timestamp and body, whichever channel sent it
    assert two_channels.post(_push_for(number, result=result), timestamp=own) == (200, {"value": True})
    assert application_item(hub)["status"] == ("ISSUED" if result == 0 else "REJECTED")


def test_a_push_for_an_application_not_yet_sent_is_not_applied(two_channels, hub, bus):
    assert hub.call(event("intake-post-blue.json"))[0] == 200
    before = application_item(hub)
    number = before["request_number"]
    status, _ = two_channels.post(_push_for(number, result=1))  # even by its own channel: nobody asked yet
    assert status == 404
    assert application_item(hub) == before
    [(kind, detail)] = bus()[-1:]
    assert kind == "ResultUnmatched" and detail["asked_channel"] is None
    assert "not sent to any channel yet" in detail["findings"][0]["summary"]


def test_request_numbers_are_drawn_at_random_and_the_derived_form_finds_nothing(two_channels, hub, bus):
    number = submitted(hub)
    derived = request_number_for(KEY)
    assert re.fullmatch(r"FH[A-Z2-7]{18}", number) and number != derived
    status, answer, _ = hub.call(event("intake-get.json"))
    assert status == 200 and answer["data"]["requestNumber"] == number
    before = application_item(hub)
    # Whoever computes the old form from the business system and the code finds nothing.
    assert runtime.application_store().find_by_request_number(derived) is None
    assert two_channels.post(_push_for(derived, result=1))[0] == 404
    assert application_item(hub) == before
    # Another business system's application with the same code gets a number of its own.
    other = event("intake-post-blue.json", headers={"authorization": f"Bearer {OTHER_ERP_TOKEN}"})
    assert hub.call(other)[0] == 200
    theirs = runtime.application_store().get("other-erp", CODE).request_number
    assert theirs not in (number, request_number_for(f"other-erp#{CODE}"))


def test_an_application_stored_with_the_old_number_or_none_keeps_being_sent_under_it(world):  # noqa: F811
    table = boto3.resource("dynamodb", region_name=REGION).Table(runtime.settings().applications_table)
    table.update_item(Key={"pk": KEY}, UpdateExpression="REMOVE request_number")
    stored = world.stored()
    assert stored.request_number is None and stored.sent_request_number == request_number_for(KEY)
    world.channel.script = [Unknown("read timeout"), Issued((GOOD,), duplicate=True)]
    world.directory.quiet = 0
    assert world.dispatch() == "unknown"
    world.clock.now += 1
    assert world.dispatch() == "issued"
    assert world.channel.sent == [request_number_for(KEY)] * 2
    assert world.stored().request_number == request_number_for(KEY)  # stored with the first attempt


def test_the_number_is_the_same_across_retries_and_a_dispatcher_crash(world):  # noqa: F811
    drawn = world.stored().request_number
    world.channel.script = [RuntimeError("dispatcher's channel blew up"), Issued((GOOD,), duplicate=True)]
    world.directory.quiet = 0
    assert world.dispatch() == "unknown"  # the request may have left: asked again, never a fresh number
    world.clock.now += 1
    assert world.dispatch() == "issued"
    assert world.channel.sent == [drawn, drawn]


# ---------------------------------------------------------------------------- a rejection after an unknown outcome
def test_a_pushed_rejection_after_an_unknown_outcome_asks_the_channel_before_it_is_believed(world):  # noqa: F811
    world.channel.can_query = True
    world.channel.script = [Unknown("read timeout")]
    assert world.dispatch() == "unknown"
    world.events()
    dispatcher = world.dispatcher()
    assert dispatcher.apply_result(world.stored(), Rejected("购方信息有误"), world.channel) == "asking"
    stored = world.stored()
    assert stored.status is Status.UNKNOWN and stored.uncertain
    assert "not believed yet" in stored.history[-1].note and stored.history[-1].is_note
    assert world.events() == []  # the business system is not told to resubmit
    # The query decides: the invoice had been issued.
    world.channel.script = [Issued((GOOD,))]
    world.clock.now += 61
    assert world.dispatch() == "issued"
    assert world.channel.queried == [stored.request_number]
    assert [kind for kind, _ in world.events()] == ["InvoiceIssued"]


def test_a_pushed_rejection_for_a_submitted_uncertain_application_waits_for_the_query(world):  # noqa: F811
    world.channel.can_query = True
    world.directory.quiet = 30
    world.channel.script = [Unknown("read timeout"), Issued((GOOD,))]
    assert world.dispatch() == "unknown"
    # Asked: the channel answers "in progress" (SUBMITTED), the earlier outcome still uncertain.
    store = runtime.application_store()
    store.transition(world.stored(), Status.SUBMITTED, note="accepted by scripted", changes={})
    assert world.stored().uncertain
    world.channel.script = []
    assert world.dispatcher().apply_result(world.stored(), Rejected("重复开票"), world.channel) == "asking"
    stored = world.stored()
    assert stored.status is Status.UNKNOWN and "scripted pushed a rejection: 重复开票" in stored.reason
    world.channel.script = [Rejected("重复开票")]
    world.clock.now += 31
    assert world.dispatch() == "rejected"  # the query's answer is believed
    assert world.channel.queried == [stored.request_number]


def test_a_pushed_rejection_after_an_unknown_outcome_goes_to_a_person_when_the_channel_cannot_be_asked(world):  # noqa: F811
    world.channel.can_query = False  # de-duplicates: UNKNOWN waits to send the same number again
    world.channel.script = [Unknown("read timeout")]
    assert world.dispatch() == "unknown"
    world.events()
    assert world.dispatcher().apply_result(world.stored(), Rejected("购方信息有误"), world.channel) == "manual_review"
    stored = world.stored()
    assert stored.status is Status.MANUAL_REVIEW
    assert "cannot be queried" in stored.reason and "no invoice was issued" in stored.reason
    [(kind, detail)] = world.events()
    assert kind == "ApplicationNeedsReview" and detail["status"] == "MANUAL_REVIEW"


def test_a_pushed_rejection_without_doubt_still_rejects(world):  # noqa: F811
    world.channel.script = [events_free_accept()]
    assert world.dispatch() == "submitted"
    assert world.dispatcher().apply_result(world.stored(), Rejected("购方信息有误"), world.channel) == "rejected"
    assert world.stored().status is Status.REJECTED


def events_free_accept():
    from fapiao_hub.domain.results import Accepted

    return Accepted(channel_ref="ref-1")


# ---------------------------------------------------------------------------- a result after CANCELLED
def test_a_result_for_a_cancelled_application_is_kept_with_a_finding_and_alarmed(world):  # noqa: F811
    dispatcher = world.dispatcher()
    dispatcher.close(
        world.stored(),
        Status.CANCELLED,
        "cancelled by operator ops: never sent",
        events.EventType.APPLICATION_CANCELLED,
    )
    world.events()
    stored = world.stored()
    assert dispatcher.apply_result(stored, Issued((GOOD,)), world.channel) == "result after cancel"
    after = world.stored()
    assert after.status is Status.CANCELLED and after.version == stored.version  # a person decides
    [finding] = after.findings
    assert finding.kind is FindingKind.RESULT_AFTER_CANCEL and finding.open and finding.source == "callback"
    assert finding.invoice_numbers == (GOOD.number,) and "CANCELLED" in finding.summary
    [invoice] = world.invoices()
    assert invoice["number"] == GOOD.number and invoice["application_key"] == KEY
    assert after.invoice_keys == (GOOD.number,)
    [(kind, detail)] = world.events()
    assert kind == "FindingRecorded" and detail["findings"][0]["kind"] == "RESULT_AFTER_CANCEL"
    assert detail["status"] == "CANCELLED" and detail["request_number"] == stored.request_number
    assert recorded_metrics() == {"FindingsRecorded": [1.0], "Findings.RESULT_AFTER_CANCEL": [1.0]}
    # The same result again: nothing new (no finding, event or metric).
    Metrics().clear_metrics()
    assert dispatcher.apply_result(world.stored(), Issued((GOOD,)), world.channel) == "already recorded"
    assert len(world.stored().findings) == 1 and world.events() == [] and recorded_metrics() == {}
    # A refusal or "in progress" for it changes nothing either.
    assert dispatcher.apply_result(world.stored(), Rejected("late"), world.channel) == "already issued"
    assert world.stored().status is Status.CANCELLED


def test_a_second_invoice_after_issued_is_still_a_possible_duplicate(world):  # noqa: F811
    world.channel.script = [Issued((GOOD,))]
    assert world.dispatch() == "issued"
    second = replace(GOOD, number="26112000000012229999")
    assert world.dispatcher().apply_result(world.stored(), Issued((second,)), world.channel) == "possible duplicate"
    assert [f.kind for f in world.stored().findings] == [FindingKind.POSSIBLE_DUPLICATE_ISSUANCE]
