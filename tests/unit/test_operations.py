"""Operator actions (operations.py) with the real Dispatcher and store on moto, scripted channels (fakes).

Each action from every state it applies to, refused from every other (nothing changes), racing a
callback (exactly one wins, no result lost), and a STUCK application whose result arrives a day late.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace

import pytest

from fapiao_hub import runtime
from fapiao_hub.domain.models import NEEDS_PERSON_STATUSES, Difference, FindingKind, Status, request_number_for
from fapiao_hub.domain.results import Accepted, Issued, NotFound
from fapiao_hub.domain.verification import finding_for
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.base import iso, utc_now
from fapiao_hub.usecases.action_checks import ACTIONS, ActionInvalid, ActionNotApplicable, ApplicationMissing
from fapiao_hub.usecases.dispatch import DispatchPolicy
from fapiao_hub.usecases.operations import Operations
from fapiao_hub.usecases.polling import Poller
from tests.unit import test_dispatch_workflow as dispatch_tests
from tests.unit.conftest import SELLER, FakeContext, load_handler
from tests.unit.test_dispatch_workflow import CODE, INVOICE

world = dispatch_tests.world  # the fixture: an application, a scripted channel, the real Dispatcher

SYSTEM = "sample-erp"
QUERYABLE = {"can_query": True, "dedupes_request_number": True}


def operations(world, store=None) -> Operations:
    store = store or runtime.application_store()
    dispatcher = world.dispatcher(store=store)
    return Operations(store, dispatcher, world.directory, runtime.event_publisher(), runtime.dispatch_queue(),
                      clock=world.clock)  # fmt: skip


def item(hub, code: str = CODE) -> dict:
    return hub.table.get_item(Key={"pk": f"{SYSTEM}#{code}"}, ConsistentRead=True)["Item"]


def another(code: str) -> str:
    """A second application like the world's, stored under ``code`` (RECEIVED)."""
    store = runtime.application_store()
    first = store.get(SYSTEM, CODE)
    application = first.application.model_copy(update={"open_apply_code": code})
    store.create(application, payload_sha256="x", channel="scripted", warnings=[], requeue_after_seconds=60,
                 request_number=request_number_for(application.key))  # fmt: skip
    return code


def force(hub, code: str, status: Status, *, previous: Status = Status.RETRY_WAIT, uncertain: bool = False) -> None:
    """Put an application in ``status`` as the workflow would have left it (history included)."""
    now = int(time.time())
    entry = {"at": iso(utc_now()), "status": status.value, "previous": previous.value}
    values = {":s": status.value, ":e": [entry], ":u": uncertain, ":one": 1, ":ch": "scripted"}
    expression = "SET #s = :s, history = list_append(history, :e), uncertain = :u, #v = #v + :one, channel = :ch"
    if status is Status.DISPATCHING:
        expression += ", lease_until = :lease"
        values[":lease"] = now + 600
    if status.needs_person:
        expression += ", attention = :p"
        values[":p"] = "PERSON"
    if not status.is_open:
        expression += " REMOVE due_bucket, next_poll_at"
    hub.table.update_item(
        Key={"pk": f"{SYSTEM}#{code}"}, UpdateExpression=expression, ExpressionAttributeValues=values,
        ExpressionAttributeNames={"#s": "status", "#v": "version"},
    )  # fmt: skip
    if status in (Status.MISMATCH, Status.ISSUED, Status.VOIDING, Status.VOIDED):
        store = runtime.application_store()
        pk = f"{code}-{INVOICE.number}"
        store.record_invoices(
            f"{SYSTEM}#{code}",
            [
                {
                    "pk": pk,
                    "number": INVOICE.number,
                    "code": code,
                    "application_key": f"{SYSTEM}#{code}",
                    "status": "ISSUED",
                }
            ],
        )
        store.add_invoice_keys(store.get(SYSTEM, code), [pk])


# What each action needs to succeed, per state: the scripted channel's answers and the parameters.
def setup_for(world, hub, action: str, status: Status, code: str) -> dict:
    world.channel.can_query = True
    if action == "query":
        world.channel.script = [Accepted()]
        return {}
    if action == "resolve-issued":
        world.channel.script = [Issued((replace(INVOICE, code=code),))]
        return {"invoice": {"number": INVOICE.number, "code": code}}
    if action == "resolve-not-issued":
        world.channel.script = [NotFound()]
        return {}
    if action == "attach-result":
        runtime.application_store().record_unmatched(
            [{"pk": f"U{code}", "number": f"U{code}", "channel": "scripted", "status": "ISSUED",
              "issued_on": INVOICE.issued_on.isoformat(), "raw": "raw/x", "seller_tax_number": SELLER["tax_number"]}]
        )  # fmt: skip
        return {"resultId": f"U{code}"}
    return {}


APPLIES = {
    "query": set(Status) - {Status.ISSUED, Status.REJECTED, Status.VOIDED, Status.CANCELLED},
    "resolve-issued": {Status.MANUAL_REVIEW, Status.STUCK, Status.MISMATCH, Status.UNKNOWN},
    "resolve-not-issued": {Status.MANUAL_REVIEW, Status.STUCK, Status.UNKNOWN},
    "requeue": {Status.STUCK},
    "cancel": {Status.RECEIVED, Status.RETRY_WAIT, Status.STUCK},
    "attach-result": {
        Status.RECEIVED, Status.DISPATCHING, Status.SUBMITTED, Status.UNKNOWN, Status.RETRY_WAIT, Status.STUCK,
        Status.MANUAL_REVIEW,
    },
    "resolve-voided": {Status.VOIDING},
    "resolve-not-voided": {Status.VOIDING},
}  # fmt: skip
EXPECTED_AFTER = {  # where an applicable action leaves an application of the world's scripted channel
    "resolve-issued": {Status.MISMATCH: Status.ISSUED},
    "resolve-not-issued": {},  # the channel de-duplicates: back to dispatch
    "requeue": {Status.STUCK: Status.RETRY_WAIT},  # stuck in RETRY_WAIT
    "cancel": {s: Status.CANCELLED for s in (Status.RECEIVED, Status.RETRY_WAIT, Status.STUCK)},
    "resolve-voided": {Status.VOIDING: Status.VOIDED},  # a person voided it at the channel
    "resolve-not-voided": {Status.VOIDING: Status.ISSUED},  # the void was not done: the invoice stands
}


@pytest.mark.parametrize("status", list(Status), ids=lambda s: s.value)
def test_each_action_applies_where_it_should_and_is_refused_elsewhere_changing_nothing(world, hub, status):
    ops = operations(world)
    for n, action in enumerate(a for a in ACTIONS if a != "acknowledge-finding"):
        code = another(f"ops-{n}")
        force(hub, code, status)
        params = setup_for(world, hub, action, status, code)
        before = item(hub, code)
        if status not in APPLIES[action]:
            with pytest.raises(ActionNotApplicable) as refused:
                ops.act(SYSTEM, code, action, "checked with the seller", "alice", params)
            assert refused.value.status is status
            assert item(hub, code) == before, action
            assert action not in ops.available_actions(runtime.application_store().get(SYSTEM, code))
            continue
        assert action in ops.available_actions(runtime.application_store().get(SYSTEM, code))
        after = ops.act(SYSTEM, code, action, "checked with the seller", "alice", params)
        notes = [t.note or "" for t in after.history]
        assert any(f"{action} by operator alice: checked with the seller" in n for n in notes), (action, notes)
        if action in ("resolve-issued", "attach-result") and status is not Status.MISMATCH:
            assert after.status is Status.ISSUED, action
        elif action == "resolve-not-issued":
            assert after.status is Status.RETRY_WAIT and after.uncertain is False and after.next_poll_at is not None
        elif action in EXPECTED_AFTER:
            assert after.status is EXPECTED_AFTER[action][status], action


def test_unknown_action_missing_reason_and_missing_parameters_are_400_naming_the_field(world, hub):
    ops = operations(world)
    force(hub, CODE, Status.MANUAL_REVIEW)
    before = item(hub)
    cases = [
        (("reopen", "x", {}), "action"),
        (("cancel", "  ", {}), "reason"),
        (("resolve-issued", "seen at the bureau", {}), "invoice"),
        (("resolve-issued", "seen at the bureau", {"invoice": {"code": "1"}}), "invoice.number"),
        (("resolve-issued", "seen", {"invoice": {"number": "1", "date": "21.11.2026"}}), "invoice.date"),
        (("attach-result", "x", {}), "resultId"),
        (("acknowledge-finding", "x", {"findingId": ""}), "findingId"),
    ]
    for (action, reason, params), field in cases:
        with pytest.raises(ActionInvalid) as invalid:
            ops.act(SYSTEM, CODE, action, reason, "alice", params)
        assert invalid.value.field == field
    with pytest.raises(ApplicationMissing):
        ops.act(SYSTEM, "nope", "cancel", "x", "alice", {})
    assert item(hub) == before


def test_query_is_refused_for_a_channel_that_cannot_be_queried(world, hub):
    force(hub, CODE, Status.STUCK, previous=Status.SUBMITTED)
    world.channel.can_query = False
    before = item(hub)
    with pytest.raises(ActionNotApplicable, match="cannot be queried"):
        operations(world).act(SYSTEM, CODE, "query", "ask it", "alice", {})
    assert item(hub) == before


def test_cancel_is_refused_once_a_request_may_have_reached_the_channel(world, hub):
    ops = operations(world)
    force(hub, CODE, Status.STUCK, previous=Status.SUBMITTED)
    with pytest.raises(ActionNotApplicable, match="never reached a channel"):
        ops.act(SYSTEM, CODE, "cancel", "customer withdrew", "alice", {})
    code = another("uncertain")
    force(hub, code, Status.RETRY_WAIT, uncertain=True)
    with pytest.raises(ActionNotApplicable, match="may have reached the channel"):
        ops.act(SYSTEM, code, "cancel", "customer withdrew", "alice", {})


def test_cancel_is_announced_and_audited(world, hub):
    world.events()
    after = operations(world).act(SYSTEM, CODE, "cancel", "customer withdrew", "alice", {})
    assert after.status is Status.CANCELLED and "due_bucket" not in item(hub)
    kinds = dict(world.events())
    assert kinds["ApplicationCancelled"]["reason"] == "cancelled by operator alice: customer withdrew"
    audit = kinds["OperatorAction"]
    assert (audit["action"], audit["operator"], audit["reason"]) == ("cancel", "alice", "customer withdrew")
    assert (audit["status_before"], audit["status"]) == ("RECEIVED", "CANCELLED")
    # A dispatch request still in the queue finds nothing to do: nothing is sent.
    assert world.dispatch() == "nothing to do" and world.channel.sent == []


def test_resolve_issued_checked_by_a_query_refuses_an_invoice_the_channel_does_not_report(world, hub):
    force(hub, CODE, Status.STUCK, previous=Status.SUBMITTED)
    world.channel.can_query = True
    world.channel.script = [NotFound()]
    before = item(hub)
    with pytest.raises(ActionInvalid) as invalid:
        operations(world).act(SYSTEM, CODE, "resolve-issued", "seen", "alice", {"invoice": {"number": "999"}})
    assert invalid.value.field == "invoice.number"
    assert (
        "does not report invoice 999" in invalid.value.message and "not found (never received)" in invalid.value.message
    )
    assert item(hub) == before


def test_resolve_issued_without_a_query_records_the_operators_invoice_and_notifies(world, hub):
    force(hub, CODE, Status.MANUAL_REVIEW, previous=Status.UNKNOWN)
    world.channel.can_query = False
    world.events()
    # The channel cannot be asked: the operator states the figures too (issue 18), checked against the application.
    params = {"invoice": {"number": "24110000000012345678", "date": INVOICE.issued_on.isoformat(),
                          "amount": "5327.43", "tax": "692.57", "sellerTaxNumber": "91220101MA0Y5K3N4H"}}  # fmt: skip
    after = operations(world).act(SYSTEM, CODE, "resolve-issued", "seen at the bureau", "alice", params)
    assert after.status is Status.ISSUED and after.invoice_keys == ("24110000000012345678",)
    assert "attention" not in item(hub)
    [issued] = [d for k, d in world.events() if k == "InvoiceIssued"]
    assert issued["invoices"][0]["number"] == "24110000000012345678"


def test_resolve_not_issued_closes_as_rejected_where_the_channel_does_not_deduplicate(world, hub):
    force(hub, CODE, Status.MANUAL_REVIEW, previous=Status.UNKNOWN)
    world.channel.can_query, world.channel.dedupes_request_number = False, False
    after = operations(world).act(SYSTEM, CODE, "resolve-not-issued", "not at the bureau", "alice", {})
    assert after.status is Status.REJECTED
    assert after.reason == "not issued (operator alice): not at the bureau"


def test_resolve_not_issued_records_an_invoice_the_channel_reports_and_answers_409(world, hub):
    force(hub, CODE, Status.STUCK, previous=Status.SUBMITTED)
    world.channel.can_query = True
    world.channel.script = [Issued((INVOICE,))]
    with pytest.raises(ActionNotApplicable) as moved:
        operations(world).act(SYSTEM, CODE, "resolve-not-issued", "not at the bureau", "alice", {})
    assert moved.value.status is Status.ISSUED
    assert runtime.application_store().get(SYSTEM, CODE).invoice_keys == ("050002000205-12221761",)


def test_requeue_goes_back_to_the_state_it_was_stuck_in_with_a_fresh_deadline(world, hub):
    force(hub, CODE, Status.STUCK, previous=Status.SUBMITTED)
    ops = operations(world)
    after = ops.act(SYSTEM, CODE, "requeue", "channel back up", "alice", {})
    assert after.status is Status.SUBMITTED and after.extra["requeued_epoch"] >= int(world.clock.now)
    world.channel.can_query = True
    world.channel.script = [Issued((INVOICE,))]
    world.clock.now += 3600  # past the original deadline? not past the new one
    assert world.dispatch() == "issued"


@pytest.mark.parametrize("status", list(Status), ids=lambda s: s.value)
def test_acknowledging_a_finding_closes_it_and_clears_attention_when_nothing_else_needs_a_person(world, hub, status):
    force(hub, CODE, status)
    store = runtime.application_store()
    ops = operations(world)
    with pytest.raises(ActionNotApplicable, match="no open finding"):
        ops.act(SYSTEM, CODE, "acknowledge-finding", "seen", "alice", {"findingId": "f"})
    finding = finding_for(FindingKind.POSSIBLE_DUPLICATE_ISSUANCE, f"{SYSTEM}#{CODE}", source="callback",
                          summary="another invoice", at=iso(utc_now()),
                          differences=[Difference(field="invoices", expected="a", reported="b")])  # fmt: skip
    assert store.add_finding(store.get(SYSTEM, CODE), finding, note="found")
    assert "acknowledge-finding" in ops.available_actions(store.get(SYSTEM, CODE))
    after = ops.act(SYSTEM, CODE, "acknowledge-finding", "the rest of a split", "alice", {"findingId": finding.id})
    [closed] = after.findings
    assert (closed.open, closed.acknowledged_by, closed.acknowledged_reason) == (False, "alice", "the rest of a split")
    assert after.status is status
    assert ("attention" in item(hub)) is (status in NEEDS_PERSON_STATUSES)
    with pytest.raises(ActionNotApplicable):
        ops.act(SYSTEM, CODE, "acknowledge-finding", "again", "alice", {"findingId": finding.id})


def test_mismatch_resolved_as_issued_accepts_the_reported_invoice_and_closes_its_finding(world, hub):
    world.channel.script = [Issued((replace(INVOICE, seller_tax_number="91110000000000000X"),))]
    assert world.dispatch() == "mismatch"
    ops = operations(world)
    with pytest.raises(ActionInvalid, match="reported 050002000205-12221761"):
        ops.act(SYSTEM, CODE, "resolve-issued", "ok", "alice", {"invoice": {"number": "1"}})
    world.events()
    after = ops.act(SYSTEM, CODE, "resolve-issued", "seller merged", "alice", {"invoice": {"number": INVOICE.number}})
    assert after.status is Status.ISSUED and not after.open_findings and "attention" not in item(hub)
    assert [k for k, _ in world.events()] == ["InvoiceIssued", "OperatorAction"]


# ---------------------------------------------------------------------------- races
class RacingStore(ApplicationStore):
    """Lets another writer's work land between an action's read and its write (once)."""

    race = None

    def transition(self, stored, to, **kwargs):
        race, RacingStore.race = RacingStore.race, None
        if race is not None:
            race()
        return super().transition(stored, to, **kwargs)


def racing_store() -> RacingStore:
    plain = runtime.application_store()
    racing = copy.copy(plain)
    racing.__class__ = RacingStore
    return racing


def test_an_action_racing_a_callback_loses_and_the_callbacks_result_is_kept(world, hub):
    force(hub, CODE, Status.MANUAL_REVIEW, previous=Status.UNKNOWN)
    world.channel.can_query, world.channel.dedupes_request_number = False, False
    store = racing_store()
    ops = operations(world, store)

    def callback():  # the channel's push arrives, applied by the real dispatcher on its own read
        world.dispatcher().apply_result(
            runtime.application_store().get(SYSTEM, CODE), Issued((INVOICE,)), world.channel
        )

    RacingStore.race = callback
    with pytest.raises(ActionNotApplicable) as moved:
        ops.act(SYSTEM, CODE, "resolve-not-issued", "not at the bureau", "alice", {})
    assert moved.value.status is Status.ISSUED
    stored = runtime.application_store().get(SYSTEM, CODE)
    assert stored.status is Status.ISSUED and stored.invoice_keys == ("050002000205-12221761",)
    assert not any("resolve-not-issued" in (t.note or "") for t in stored.history)


def test_an_action_that_wins_a_callback_keeps_the_late_result_as_a_finding(world, hub):
    force(hub, CODE, Status.MANUAL_REVIEW, previous=Status.UNKNOWN)
    world.channel.can_query, world.channel.dedupes_request_number = False, False
    ops = operations(world)
    read = runtime.application_store().get(SYSTEM, CODE)  # the callback read it before the action wrote
    ops.act(SYSTEM, CODE, "resolve-not-issued", "not at the bureau", "alice", {})
    assert world.dispatcher().apply_result(read, Issued((INVOICE,)), world.channel) == "possible duplicate"
    stored = runtime.application_store().get(SYSTEM, CODE)
    assert stored.status is Status.REJECTED and stored.invoice_keys == ("050002000205-12221761",)
    assert [f.kind for f in stored.open_findings] == [FindingKind.POSSIBLE_DUPLICATE_ISSUANCE]


def test_attach_result_losing_a_poll_leaves_the_unmatched_result_to_attach_again(world, hub):
    force(hub, CODE, Status.STUCK, previous=Status.SUBMITTED)
    world.channel.can_query = True
    unmatched = {"pk": "U1", "number": "U1", "channel": "scripted", "status": "ISSUED", "raw": "raw/1",
                 "seller_tax_number": SELLER["tax_number"]}  # fmt: skip
    runtime.application_store().record_unmatched([unmatched])
    store = racing_store()

    def poll():
        world.channel.script = [Issued((INVOICE,))]
        assert world.dispatcher().query_now(runtime.application_store().get(SYSTEM, CODE), world.channel)[1] == "issued"

    RacingStore.race = poll
    with pytest.raises(ActionNotApplicable):
        operations(world, store).act(SYSTEM, CODE, "attach-result", "it is ours", "alice", {"resultId": "U1"})
    assert runtime.application_store().get(SYSTEM, CODE).invoice_keys == ("050002000205-12221761",)
    kept = runtime.application_store().invoice("U1")
    assert kept["unmatched"] is True and "application_key" not in kept


# ---------------------------------------------------------------------------- no dead ends
def test_a_stuck_application_of_a_polled_channel_whose_result_arrives_a_day_late_ends_issued(world, hub):
    world.channel.can_query = True
    world.channel.script = [Accepted()]
    policy = DispatchPolicy(deadline_seconds=3600, stuck_poll_seconds=3600)
    assert world.dispatch(policy=policy) == "submitted"
    world.clock.now += 3601
    assert world.dispatch(policy=policy) == "stuck"
    stuck = item(hub)
    assert stuck["status"] == "STUCK" and stuck["due_bucket"] == "OPEN"
    assert int(stuck["next_poll_at"]) == int(world.clock.now) + 3600
    poller = Poller(runtime.application_store(), runtime.dispatch_queue(), clock=world.clock)
    hub.queued()
    for _ in range(23):  # hourly for a day the channel knows nothing yet
        world.clock.now += 3600
        world.channel.script = [NotFound()]
        assert poller.run().queued == 1
        [request] = hub.queued()
        assert (
            world.dispatcher(policy=policy).dispatch(SYSTEM, CODE, claimed_until=request["claimed_until"]) == "waiting"
        )
    world.clock.now += 3600
    world.channel.script = [Issued((INVOICE,))]
    assert poller.run().queued == 1
    [request] = hub.queued()
    assert world.dispatcher(policy=policy).dispatch(SYSTEM, CODE, claimed_until=request["claimed_until"]) == "issued"
    done = item(hub)
    assert done["status"] == "ISSUED" and "due_bucket" not in done
    assert len(world.channel.queried) == 24


def test_a_stuck_application_of_a_push_only_channel_leaves_due_work(world, hub):
    world.channel.script = [Accepted()]
    policy = DispatchPolicy(deadline_seconds=3600)
    assert world.dispatch(policy=policy) == "submitted"
    world.clock.now += 3601
    assert world.dispatch(policy=policy) == "stuck"
    assert "due_bucket" not in item(hub) and "next_poll_at" not in item(hub)


# ---------------------------------------------------------------------------- backlog
def backlog_metrics(capsys) -> dict[str, float]:
    """Run the poller function once; the backlog metrics it emitted (EMF lines on stdout)."""
    capsys.readouterr()
    load_handler("poller", "poller_app_under_test")({}, FakeContext())
    found = {}
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' in line:
            document = json.loads(line)
            found.update(
                {k: v[0] if isinstance(v, list) else v for k, v in document.items() if k.startswith("Backlog.")}
            )
    return found


def test_a_review_caused_by_a_callback_raises_the_backlog_metric(world, hub, capsys):
    assert backlog_metrics(capsys) == {
        "Backlog.MANUAL_REVIEW": 0, "Backlog.STUCK": 0, "Backlog.MISMATCH": 0, "Backlog.OPEN_FINDINGS": 0,
        "Backlog.VOIDING": 0,
    }  # fmt: skip
    world.channel.script = [Accepted()]
    assert world.dispatch() == "submitted"
    pushed = Issued((replace(INVOICE, seller_tax_number="91110000000000000X"),))
    assert world.dispatcher().apply_result(world.stored(), pushed, world.channel) == "mismatch"
    assert backlog_metrics(capsys)["Backlog.MISMATCH"] == 1
    operations(world).act(
        SYSTEM, CODE, "resolve-issued", "seller merged", "alice", {"invoice": {"number": INVOICE.number}}
    )
    assert backlog_metrics(capsys)["Backlog.MISMATCH"] == 0
