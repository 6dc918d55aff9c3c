"""The dispatcher's exactly-once guarantees, with a scripted channel (a unit-test fake) and moto."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import boto3
import pytest

from fapiao_hub import runtime
from fapiao_hub.domain.models import Status, request_number_for
from fapiao_hub.domain.results import Issued, IssuedInvoice, NotFound, NotSent, Rejected, Unknown
from fapiao_hub.infra.events import EventPublisher, PublishFailed
from fapiao_hub.infra.store.errors import IllegalTransition
from fapiao_hub.usecases.dispatch import Dispatcher, DispatchPolicy
from tests.unit.conftest import REGION, event

CODE = "zcxs1825830330588741634"
# Issued today: the verification refuses an invoice dated before the application was received.
INVOICE = IssuedInvoice(number="12221761", code="050002000205", issued_on=date.today(), check_code="1188")


@dataclass
class ScriptedChannel:
    """Answers from a script, one per call; records every request number it was sent."""

    script: list = field(default_factory=list)
    dedupes_request_number: bool = True
    can_query: bool = False
    name: str = "scripted"
    sent: list[str] = field(default_factory=list)
    queried: list[str] = field(default_factory=list)
    gate: threading.Event | None = None

    def issue(self, application, request_number):
        self.sent.append(request_number)
        if self.gate is not None:
            self.gate.wait(5)
        answer = self.script.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def query(self, application, request_number):
        self.queried.append(request_number)
        return self.script.pop(0)


@dataclass
class Directory:
    channel: ScriptedChannel | None
    quiet: int = 60

    def channel_for(self, application, proposed):
        return ("scripted", self.channel) if self.channel else (None, None)

    def quiet_period(self, name):
        return self.quiet


class Clock:
    """The dispatcher's clock, starting now (the store stamps applications with the real time)."""

    def __init__(self, now: float | None = None):
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(hub):
    """An accepted application, a dispatcher around a scripted channel, and the hub's events."""
    assert hub.call(event("intake-post-blue.json"))[0] == 200
    hub.queued()  # drain intake's message; the tests drive dispatch themselves
    sqs = boto3.client("sqs", region_name=REGION)
    captured = sqs.create_queue(QueueName="captured-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=captured, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bridge = boto3.client("events", region_name=REGION)
    bus = hub.environment["EVENT_BUS_NAME"]
    bridge.put_rule(Name="capture", EventBusName=bus, EventPattern=json.dumps({"source": ["fapiao-hub"]}))
    bridge.put_targets(Rule="capture", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])

    class World:
        channel = ScriptedChannel()
        clock = Clock()
        directory = Directory(channel)

        def dispatcher(self, publisher=None, policy=None, store=None):
            return Dispatcher(
                store or runtime.application_store(),
                runtime.dispatch_queue(),
                publisher or runtime.event_publisher(),
                self.directory,
                runtime.file_store(),
                policy=policy or DispatchPolicy(),
                clock=self.clock,
            )

        def dispatch(self, **kwargs):
            return self.dispatcher(**kwargs).dispatch("sample-erp", CODE)

        def stored(self):
            return runtime.application_store().get("sample-erp", CODE)

        def events(self):
            found = []
            while batch := sqs.receive_message(QueueUrl=captured, MaxNumberOfMessages=10).get("Messages"):
                found += [json.loads(m["Body"]) for m in batch]
                for m in batch:
                    sqs.delete_message(QueueUrl=captured, ReceiptHandle=m["ReceiptHandle"])
            return [(e["detail-type"], e["detail"]) for e in found]

        def invoices(self):
            table = boto3.resource("dynamodb", region_name=REGION).Table(hub.environment["INVOICES_TABLE"])
            return table.scan()["Items"]

    return World()


def test_issued_records_the_invoice_and_publishes_once(world, hub):
    world.channel.script = [Issued((INVOICE,))]
    assert world.dispatch() == "issued"
    stored = world.stored()
    assert stored.status is Status.ISSUED and stored.pending_event is None
    assert [t.status for t in stored.history] == ["RECEIVED", "DISPATCHING", "ISSUED"]
    [invoice] = world.invoices()
    assert invoice["pk"] == "050002000205-12221761" and invoice["application_key"] == f"sample-erp#{CODE}"
    assert (invoice["amount"], invoice["tax"]) == (Decimal("5327.43"), Decimal("692.57"))
    assert stored.invoice_keys == ("050002000205-12221761",)
    [(kind, detail)] = world.events()
    assert kind == "InvoiceIssued" and detail["invoices"][0]["number"] == "12221761"
    # The business system reads it back with its invoice.
    status, answer, _ = hub.call(event("intake-get.json"))
    assert status == 200 and answer["data"]["status"] == "ISSUED"
    assert answer["data"]["invoices"] == [
        {"invoiceNumber": "12221761", "invoiceCode": "050002000205", "invoiceDate": date.today().isoformat(),
         "invoiceType": "DIGITAL_SPECIAL", "amount": 5327.43, "tax": 692.57, "checkCode": "1188",
         "status": "ISSUED", "channel": "scripted", "redRemainingAmount": 5327.43, "redRemainingTax": 692.57,
         # The scripted channel states only a date: the rest is the application's, and says so (issue 18).
         "verified": ["issued_on"], "verifiedFromFile": [], "attestedByOperator": [],
         "fromApplication": ["seller", "invoice_type", "direction", "amount", "tax"]}
    ]  # fmt: skip
    # The number drawn at intake, stored before dispatch: not the one derivable from the key.
    number = stored.request_number
    assert number and number != request_number_for(f"sample-erp#{CODE}")
    assert answer["data"]["requestNumber"] == number
    assert answer["data"]["findings"] == []
    assert detail["request_number"] == number
    # A repeated delivery changes nothing and calls nobody.
    assert world.dispatch() == "nothing to do"
    assert world.channel.sent == [number]
    assert world.events() == [] and len(world.invoices()) == 1
    # Still out of the due-work index.
    item = hub.applications()[0]
    assert "due_bucket" not in item and "lease_until" not in item


def test_rejection_is_final_and_announced(world):
    world.channel.script = [Rejected("buyer tax number unknown to the bureau", "4001")]
    assert world.dispatch() == "rejected"
    stored = world.stored()
    assert stored.status is Status.REJECTED and "4001" in stored.reason
    assert [k for k, _ in world.events()] == ["ApplicationRejected"]
    assert world.invoices() == []


def test_not_sent_waits_and_retries_with_the_same_number(world, hub):
    world.channel.script = [NotSent("connection refused"), Issued((INVOICE,))]
    assert world.dispatch() == "retry_wait"
    assert world.stored().status is Status.RETRY_WAIT
    assert hub.delayed() == 1  # the application comes back after its wait
    assert world.dispatch() == "waiting"  # not due yet: nothing sent
    assert len(world.channel.sent) == 1
    world.clock.now += 60
    assert world.dispatch() == "issued"
    assert len(set(world.channel.sent)) == 1 and len(world.channel.sent) == 2


def test_unknown_with_a_deduplicating_channel_resends_the_same_number_after_the_quiet_period(world):
    world.channel.script = [Unknown("read timeout"), Issued((INVOICE,), duplicate=True)]
    assert world.dispatch() == "unknown"
    assert world.stored().status is Status.UNKNOWN
    assert world.dispatch() == "waiting" and len(world.channel.sent) == 1  # quiet period
    world.clock.now += 61
    assert world.dispatch() == "issued"
    assert world.channel.sent == [world.stored().request_number] * 2
    assert "duplicate answer" in world.stored().history[-1].note
    assert len(world.invoices()) == 1


def test_unknown_without_query_or_dedupe_goes_to_manual_review_with_the_raw_answer(world, hub):
    world.channel.dedupes_request_number = False
    world.channel.script = [Unknown("unreadable answer", raw=b'{"ok": true, "body": {"amount"4570.80}')]
    assert world.dispatch() == "manual_review"
    stored = world.stored()
    assert stored.status is Status.MANUAL_REVIEW
    assert [k for k, _ in world.events()] == ["ApplicationNeedsReview"]
    raw_ref = stored.extra["raw_answer"]
    bucket, _, key = raw_ref.removeprefix("s3://").partition("/")
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == b'{"ok": true, "body": {"amount"4570.80}'
    # Nothing is ever re-sent from there.
    world.clock.now += 10_000
    assert world.dispatch() == "nothing to do" and len(world.channel.sent) == 1


def test_queryable_channel_is_asked_not_resent(world):
    world.channel.can_query = True
    world.channel.script = [Unknown("connection reset"), Issued((INVOICE,))]
    world.dispatch()
    world.clock.now += 61
    assert world.dispatch() == "issued"
    assert len(world.channel.sent) == 1 and len(world.channel.queried) == 1


def test_query_not_found_resends_the_same_number(world):
    world.channel.can_query = True
    world.channel.script = [Unknown("read timeout"), NotFound(), Issued((INVOICE,))]
    world.dispatch()
    world.clock.now += 61
    assert world.dispatch() == "issued"
    assert len(set(world.channel.sent)) == 1 and len(world.channel.sent) == 2


def test_expired_lease_is_an_unknown_outcome_never_a_fresh_start(world):
    """A dispatcher that dies after claiming: its successor treats the attempt as possibly sent."""
    world.channel.script = [SystemExit("dispatcher killed mid-call")]
    with pytest.raises(SystemExit):
        world.dispatch()
    assert world.stored().status is Status.DISPATCHING
    assert world.dispatch() == "leased"  # lease still held: nobody else sends
    world.directory.quiet = 120  # counted from when the lost attempt began
    world.clock.now += 61
    world.channel.script = [Issued((INVOICE,), duplicate=True)]
    result = world.dispatch()
    assert result == "waiting" and world.stored().status is Status.UNKNOWN
    assert len(world.channel.sent) == 1
    world.clock.now += 60
    assert world.dispatch() == "issued"
    assert len(set(world.channel.sent)) == 1


def test_two_dispatchers_on_one_application_call_the_channel_once(world):
    world.channel.gate = threading.Event()
    world.channel.script = [Issued((INVOICE,))] * 2
    results = []
    threads = [threading.Thread(target=lambda: results.append(world.dispatch())) for _ in range(2)]
    for thread in threads:
        thread.start()
    # One of them is inside the channel call (held at the gate); the other must finish meanwhile.
    for _ in range(500):
        if world.channel.sent and any(not t.is_alive() for t in threads):
            break
        threading.Event().wait(0.01)
    assert len(results) == 1 and results[0] in ("lost race", "leased"), results
    world.channel.gate.set()
    for thread in threads:
        thread.join(5)
    assert sorted(results)[0] == "issued"
    assert len(world.channel.sent) == 1 and len(world.invoices()) == 1


def test_issued_result_arriving_after_the_lease_was_taken_over_is_not_lost(world):
    """The slow holder's Issued answer lands after a successor moved the application to UNKNOWN."""
    slow = world.dispatcher()
    world.channel.gate = threading.Event()
    world.channel.script = [Issued((INVOICE,))]
    result = []
    thread = threading.Thread(target=lambda: result.append(slow.dispatch("sample-erp", CODE)))
    thread.start()
    while not world.channel.sent:
        threading.Event().wait(0.01)
    world.clock.now += 61
    world.channel.dedupes_request_number = False
    assert world.dispatcher().dispatch("sample-erp", CODE) == "manual_review"
    world.channel.gate.set()
    thread.join(5)
    assert result == ["issued"]
    stored = world.stored()
    assert stored.status is Status.ISSUED and len(world.invoices()) == 1
    assert [t.status for t in stored.history][-3:] == ["UNKNOWN", "MANUAL_REVIEW", "ISSUED"]


def test_no_route_is_a_visible_rejection(world):
    world.directory.channel = None
    assert world.dispatch() == "rejected"
    assert "no channel routes seller" in world.stored().reason
    assert [k for k, _ in world.events()] == ["ApplicationRejected"]


def test_channel_exception_is_an_unknown_outcome(world):
    world.channel.script = [RuntimeError("bug in a channel after sending")]
    assert world.dispatch() == "unknown"
    assert "RuntimeError" in world.stored().reason


def test_event_lost_to_an_eventbridge_failure_is_published_on_the_next_delivery(world):
    class Down(EventPublisher):
        def __init__(self):
            pass

        def publish(self, event):
            raise PublishFailed("EventBridge unavailable")

    world.channel.script = [Issued((INVOICE,))]
    with pytest.raises(PublishFailed):
        world.dispatch(publisher=Down())
    stored = world.stored()
    assert stored.status is Status.ISSUED and stored.pending_event["detail_type"] == "InvoiceIssued"
    assert world.events() == []
    assert world.dispatch() == "nothing to do"  # the redelivered message publishes it
    assert [k for k, _ in world.events()] == ["InvoiceIssued"]
    assert world.stored().pending_event is None


def test_unreachable_channel_becomes_stuck_after_bounded_attempts(world):
    world.channel.script = [NotSent("connection refused")] * 3
    policy = DispatchPolicy(max_attempts=3, retry_delays=(1,))
    for _ in range(3):
        world.dispatch(policy=policy)
        world.clock.now += 2
    assert world.stored().status is Status.STUCK
    assert [k for k, _ in world.events()] == ["ApplicationStuck"]


def test_state_never_moves_backwards(world):
    world.channel.script = [Issued((INVOICE,))]
    world.dispatch()
    stored = world.stored()
    with pytest.raises(IllegalTransition):
        runtime.application_store().transition(stored, Status.DISPATCHING, note="no")


def test_rejection_of_a_resend_after_an_unknown_outcome_is_not_taken_as_final(world):
    """The lost first attempt may have issued: a later refusal proves nothing about it."""
    world.channel.script = [
        Unknown("read timeout"),
        Rejected("tax device busy", "4002"),
        Issued((INVOICE,), duplicate=True),
    ]
    world.dispatch()
    world.clock.now += 61
    assert world.dispatch() == "unknown"
    assert world.stored().status is Status.UNKNOWN and world.invoices() == []
    world.clock.now += 61
    assert world.dispatch() == "issued"
    assert len(world.invoices()) == 1 and len(set(world.channel.sent)) == 1


def test_repeated_refusals_after_an_unknown_outcome_end_in_manual_review(world):
    world.channel.script = [Unknown("read timeout")] + [Rejected("tax device busy", "4002")] * 3
    policy = DispatchPolicy(max_attempts=3)
    for _ in range(4):
        world.dispatch(policy=policy)
        world.clock.now += 61
    stored = world.stored()
    assert stored.status is Status.MANUAL_REVIEW and "earlier attempt's outcome is unknown" in stored.reason


def test_void_results_move_an_issued_application_to_voiding_then_voided(world):
    """Seed 003 reports voids: 6 (void requested) then 2 (voided)."""
    from fapiao_hub.domain.results import InvoiceState

    world.channel.can_query = True
    world.channel.script = [Issued((INVOICE,))]
    assert world.dispatch() == "issued"
    world.events()
    requested = Issued((IssuedInvoice(**{**vars(INVOICE), "state": InvoiceState.VOID_REQUESTED}),))
    voided = Issued((IssuedInvoice(**{**vars(INVOICE), "state": InvoiceState.VOIDED}),))
    assert world.dispatcher().apply_result(world.stored(), requested, world.channel) == "voiding"
    assert world.invoices()[0]["status"] == "VOID_REQUESTED"
    world.channel.script = [voided]
    world.clock.now += 61
    assert world.dispatch() == "voided"  # the VOIDING application is polled for the outcome
    stored = world.stored()
    assert stored.status is Status.VOIDED
    assert [t.status for t in stored.history][-2:] == ["VOIDING", "VOIDED"]
    assert world.invoices()[0]["status"] == "VOIDED" and len(world.invoices()) == 1
    assert [k for k, _ in world.events()] == ["InvoiceVoided"]


def test_a_poller_claim_makes_the_application_due_and_a_stale_claim_does_not(world, hub):
    """The poller moved next_poll_at on when it queued the application: its own message still acts."""
    world.channel.script = [NotSent("connection refused"), Issued((INVOICE,))]
    assert world.dispatch() == "retry_wait"
    due = world.stored().next_poll_at
    world.clock.now = due
    store = runtime.application_store()
    assert store.claim_due("sample-erp", CODE, seen=due, until=due + 300)
    assert not store.claim_due("sample-erp", CODE, seen=due, until=due + 300)  # only one run claims it
    dispatcher = world.dispatcher()
    # A message from an earlier claim (or none) finds it not due: nothing is sent.
    assert dispatcher.dispatch("sample-erp", CODE, claimed_until=due + 299) == "waiting"
    assert dispatcher.dispatch("sample-erp", CODE) == "waiting"
    assert len(world.channel.sent) == 1
    assert dispatcher.dispatch("sample-erp", CODE, claimed_until=due + 300) == "issued"
    assert len(world.channel.sent) == 2 and world.stored().status is Status.ISSUED


def test_a_crash_before_an_ekuaibao_application_is_submitted_is_repeated_not_sent_to_review(world):
    """Ekuaibao's issue sends nothing: a dispatcher killed after its claim is simply repeated."""
    from fapiao_hub.channels.ekuaibao import EkuaibaoChannel
    from fapiao_hub.domain.config import ChannelSettings

    class Killed(EkuaibaoChannel):
        kills = 1

        def issue(self, application, request_number):
            if self.kills:
                self.kills -= 1
                raise SystemExit("dispatcher killed between its claim and SUBMITTED")
            return super().issue(application, request_number)

    world.directory.channel = Killed("ekuaibao", ChannelSettings(type="ekuaibao", base_url="https://x"))
    world.directory.quiet = 0
    drawn = world.stored().request_number  # at intake, before any dispatcher ran
    with pytest.raises(SystemExit):
        world.dispatch()
    assert world.stored().status is Status.DISPATCHING
    world.clock.now += 61  # the lease runs out
    assert world.dispatch() == "submitted"
    stored = world.stored()
    assert stored.status is Status.SUBMITTED and stored.request_number == drawn and drawn


def test_a_claimed_step_that_waits_carries_the_claim_into_its_delayed_message(world, hub):
    """Under the poller's claim a query finds nothing new: the delayed message must find it due, not the claim's end."""
    world.channel.can_query = True
    world.channel.script = [Unknown("read timeout"), Unknown("HTTP 502"), Issued((INVOICE,))]
    world.directory.quiet = 0  # the delayed message is visible at once (the test reads it)
    assert world.dispatch() == "unknown"
    due = world.stored().next_poll_at
    world.clock.now = due
    assert runtime.application_store().claim_due("sample-erp", CODE, seen=due, until=due + 300)
    hub.queued()
    dispatcher = world.dispatcher()
    assert dispatcher.dispatch("sample-erp", CODE, claimed_until=due + 300) == "waiting"  # the query: still unknown
    [later] = hub.queued()
    assert later["claimed_until"] == due + 300
    world.clock.now = due + 5  # the delayed message arrives, long before the claim ends
    assert dispatcher.dispatch("sample-erp", CODE, claimed_until=later["claimed_until"]) == "issued"
    assert world.channel.queried and len(world.channel.sent) == 1
