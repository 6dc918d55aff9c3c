"""Every person state has a way out (issue 19: a desk people can work at).

A catalogue of every (needs-a-person state, reason) the hub produces: each place in dispatch.py,
outcomes.py, voids.py, operations.py and reconciliation.py that moves an application to MANUAL_REVIEW,
STUCK or MISMATCH, leaves a void to a person (VOIDING), or holds a settled application with an open finding of each
FindingKind. Each is PRODUCED through the real code path (a sandbox-like fake channel's answers, the
clock moved on, the real Dispatcher, Reconciler and store on moto), never by writing the item.

Then it is walked: the actions the ops detail offers (Operations.available_actions) are tried with
sensible parameters, breadth-first, until the application is final (ISSUED, REJECTED, VOIDED,
CANCELLED) with no open finding and nothing needing a person. The shortest ways out are asserted, so a
regression that removes one (a refusal rule, an action) fails here, for that pair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest

from fapiao_hub import runtime
from fapiao_hub.domain.models import FindingKind, Status
from fapiao_hub.domain.results import (
    Accepted,
    Capabilities,
    InvoiceState,
    Issued,
    IssuedInvoice,
    NotFound,
    NotSent,
    Rejected,
    Unknown,
)
from fapiao_hub.usecases.action_checks import ActionInvalid, ActionNotApplicable
from fapiao_hub.usecases.dispatch import DispatchPolicy
from fapiao_hub.usecases.reconciliation import Reconciler, StoreFindings
from tests.unit import test_dispatch_workflow as dispatch_tests
from tests.unit.conftest import REGION
from tests.unit.test_dispatch_workflow import CODE, INVOICE, Directory
from tests.unit.test_operations import SYSTEM, another, operations

world = dispatch_tests.world

FINAL = frozenset({Status.ISSUED, Status.REJECTED, Status.VOIDED, Status.CANCELLED})
# An invoice the person saw at the bureau that no channel reported (resolve-issued's other choice).
SEEN = IssuedInvoice(number="24110000000099990001", code=None, issued_on=INVOICE.issued_on)
OTHER = replace(INVOICE, number="12229999")  # a second invoice from the same channel
UNMATCHED = "UNMATCHED-1"  # a result the channel pushed that matched no application (attach-result)
POLICY = DispatchPolicy(deadline_seconds=3600, max_attempts=2, retry_delays=(5,))
EXPLORE = 2  # every way out this short is asserted (so that removing any one of them fails)
MAX_DEPTH = 3
HUB = "(the hub dispatches)"


class Crash(BaseException):
    """The dispatch process dies mid-call (a timeout kill): its DISPATCHING lease is left behind."""


@dataclass
class DeskChannel:
    """A sandbox-like fake: issue answers from ``script`` (then ``on_issue``); queries from ``script``
    (then ``truth``, what the channel holds for the request number, as a sandbox answers it)."""

    truth: object = field(default_factory=NotFound)
    on_issue: object = field(default_factory=lambda: Issued((INVOICE,)))  # a request sent again: issued
    script: list = field(default_factory=list)
    can_query: bool = True
    dedupes_request_number: bool = True
    name: str = "scripted"
    capabilities: Capabilities = field(default_factory=Capabilities)
    sent: list[str] = field(default_factory=list)

    def issue(self, application, request_number):
        self.sent.append(request_number)
        answer = self.script.pop(0) if self.script else self.on_issue
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def query(self, application, request_number):
        return self.script.pop(0) if self.script else self.truth


# ---------------------------------------------------------------------------------------- producing
@dataclass
class Desk:
    world: Any
    hub: Any
    channel: DeskChannel

    def dispatch(self, code: str = CODE, policy: DispatchPolicy = POLICY) -> str:
        return self.world.dispatcher(policy=policy).dispatch(SYSTEM, code)

    def stored(self, code: str = CODE):
        return runtime.application_store().get(SYSTEM, code)

    def later(self, seconds: float) -> None:
        self.world.clock.now += seconds

    def issued(self, code: str = CODE, invoice: IssuedInvoice = INVOICE) -> None:
        self.channel.script = [Issued((invoice,))]
        assert self.dispatch(code) == "issued"

    def reconcile(self) -> None:
        reconciler = Reconciler(
            runtime.application_store(), _Channels(self.channel), StoreFindings(runtime.application_store()),
            runtime.file_store(), clock=lambda: datetime.fromtimestamp(self.world.clock.now + 60, UTC),
        )  # fmt: skip
        assert reconciler.run().new_findings


@dataclass
class _Channels:
    desk: DeskChannel

    def channel(self, name: str):
        return self.desk if name == self.desk.name else None


def unknown_unqueryable(desk: Desk) -> str:
    """dispatch._apply: an unknown outcome at a channel that can neither be asked nor de-duplicates."""
    desk.channel.can_query = desk.channel.dedupes_request_number = False
    desk.channel.script = [Unknown("read timeout")]
    assert desk.dispatch() == "manual_review"
    return CODE


def channel_gone(desk: Desk) -> str:
    """dispatch._resolve_unknown: the outcome is unknown and the channel is no longer configured."""
    desk.channel.script = [Unknown("read timeout")]
    assert desk.dispatch() == "unknown"
    desk.world.directory = Directory(None)  # removed from the configuration meanwhile
    desk.later(120)
    assert desk.dispatch() == "manual_review"
    return CODE


def refused_on_resend(desk: Desk) -> str:
    """dispatch._apply: a re-send refused after an earlier attempt's outcome was lost."""
    desk.channel.can_query = False
    desk.channel.script = [Unknown("read timeout"), Rejected("duplicate request number", "E09")]
    assert desk.dispatch() == "unknown"
    desk.later(120)
    assert desk.dispatch() == "manual_review"
    desk.channel.truth = NotFound()
    return CODE


def clash_while_polled(desk: Desk) -> str:
    """outcomes._clash: a polled application is reported with an invoice the hub holds for another."""
    desk.issued()
    code = another("clash-1")
    desk.channel.script = [Accepted("ref-2")]
    assert desk.dispatch(code) == "submitted"
    desk.channel.truth = Issued((INVOICE,))  # the sandbox numbered from 1 again: it keeps saying so
    desk.later(60)
    assert desk.dispatch(code) == "manual_review"
    return code


def stuck_never_sent(desk: Desk) -> str:
    """dispatch.dispatch: past the deadline in RETRY_WAIT (no request ever left the hub)."""
    desk.channel.can_query = False
    desk.channel.script = [NotSent("connection refused")]
    assert desk.dispatch() == "retry_wait"
    desk.later(3601)
    assert desk.dispatch() == "stuck"
    return CODE


def stuck_submitted_push_only(desk: Desk) -> str:
    """dispatch.dispatch: past the deadline in SUBMITTED at a channel that only pushes results."""
    desk.channel.can_query = False
    desk.channel.script = [Accepted("ref-1")]
    assert desk.dispatch() == "submitted"
    desk.later(3601)
    assert desk.dispatch() == "stuck"
    return CODE


def stuck_submitted_polled(desk: Desk) -> str:
    """dispatch.dispatch: past the deadline in SUBMITTED at a queryable channel that knows nothing yet."""
    desk.channel.script = [Accepted("ref-1")]
    assert desk.dispatch() == "submitted"
    desk.later(3601)
    assert desk.dispatch() == "stuck"
    return CODE


def stuck_dispatching(desk: Desk) -> str:
    """dispatch.dispatch: past the deadline with an expired DISPATCHING lease (the request may have left)."""
    desk.channel.can_query = False
    desk.channel.script = [Crash()]
    with pytest.raises(Crash):
        desk.dispatch()
    assert desk.stored().status is Status.DISPATCHING
    desk.later(3601)
    assert desk.dispatch() == "stuck"
    assert desk.stored().uncertain
    return CODE


def stuck_unknown(desk: Desk) -> str:
    """dispatch.dispatch: past the deadline in UNKNOWN (an outcome lost, the channel cannot be asked)."""
    desk.channel.can_query = False
    desk.channel.script = [Unknown("read timeout")]
    assert desk.dispatch() == "unknown"
    desk.later(3601)
    assert desk.dispatch() == "stuck"
    return CODE


def stuck_voiding(desk: Desk) -> str:
    """dispatch.dispatch: a void past the deadline (nobody voided it at the channel): STUCK from VOIDING."""
    void_by_person(desk)
    desk.later(3601)
    assert desk.dispatch() == "stuck"
    return CODE


def stuck_unreachable(desk: Desk) -> str:
    """dispatch._apply: the channel could not be reached in max_attempts attempts."""
    desk.channel.can_query = False
    desk.channel.script = [NotSent("connection refused"), NotSent("connection refused")]
    assert desk.dispatch() == "retry_wait"
    desk.later(5)
    assert desk.dispatch() == "stuck"
    return CODE


def result_mismatch(desk: Desk) -> str:
    """outcomes._mismatch: the reported invoice differs from the application."""
    reported = replace(INVOICE, seller_tax_number="91110000000000000X")
    desk.channel.truth = Issued((reported,))
    desk.channel.script = [Issued((reported,))]
    assert desk.dispatch() == "mismatch"
    return CODE


def unreadable_result(desk: Desk) -> str:
    """outcomes._mismatch: a field of the reported invoice could not be read."""
    reported = replace(INVOICE, unreadable={"amount": "5327,43"})
    desk.channel.truth = Issued((reported,))
    desk.channel.script = [Issued((reported,))]
    assert desk.dispatch() == "mismatch"
    return CODE


def _void_requested(desk: Desk) -> None:
    """An ISSUED application whose void intake accepted (intake's write: ISSUED -> VOIDING)."""
    desk.issued()
    desk.channel.truth = Issued((INVOICE,))
    stored = desk.stored()
    runtime.application_store().transition(
        stored, Status.VOIDING, note="void requested (void-1): 开错了购方",
        changes={"void_request": "void-1", "void_reason": "开错了购方",
                 "void_requested_epoch": int(desk.world.clock.now)},
        next_poll_at=int(desk.world.clock.now),
    )  # fmt: skip


def void_by_person(desk: Desk) -> str:
    """voids.VoidSender.send: the channel voids but has no void call: a person voids it at the channel."""
    desk.channel.capabilities = Capabilities(void=frozenset({desk.stored().application.invoice_type}))
    _void_requested(desk)
    assert desk.dispatch() == "void by person"
    assert desk.stored().void_by_person
    return CODE


def report_not_applied(desk: Desk) -> str:
    """dispatch.finish: a refusal reported while a void is under way (VOIDING cannot become REJECTED)."""
    desk.channel.void = lambda application, request_number, reason: Accepted("void-ref")  # it has a void call
    _void_requested(desk)
    assert desk.dispatch() == "void sent"
    desk.later(60)
    desk.channel.script = [Rejected("no such request", "404")]
    assert desk.dispatch() == "not applied"
    return CODE


def duplicate_after_issued(desk: Desk) -> str:
    """outcomes._after_outcome: another invoice after ISSUED."""
    desk.issued()
    desk.channel.truth = Issued((INVOICE,))
    assert desk.world.dispatcher().apply_result(desk.stored(), Issued((OTHER,)), desk.channel) == "possible duplicate"
    return CODE


def invoice_after_rejected(desk: Desk) -> str:
    """outcomes._after_outcome: an invoice after REJECTED."""
    desk.channel.script = [Rejected("buyer tax number unknown", "4001")]
    assert desk.dispatch() == "rejected"
    assert desk.world.dispatcher().apply_result(desk.stored(), Issued((INVOICE,)), desk.channel) == "possible duplicate"
    return CODE


def result_after_cancel(desk: Desk) -> str:
    """outcomes._after_outcome: an invoice reported for an application an operator had CANCELLED."""
    operations(desk.world).act(SYSTEM, CODE, "cancel", "the order was withdrawn", "alice", {})
    assert desk.stored().status is Status.CANCELLED
    result = desk.world.dispatcher().apply_result(desk.stored(), Issued((INVOICE,)), desk.channel)
    assert result == "result after cancel"
    return CODE


def clash_after_issued(desk: Desk) -> str:
    """outcomes._clash: an ISSUED application is reported with an invoice the hub holds for another."""
    desk.issued()
    code = another("clash-2")
    desk.issued(code, OTHER)
    assert desk.world.dispatcher().apply_result(desk.stored(code), Issued((INVOICE,)), desk.channel) == "clash"
    desk.channel.truth = Issued((OTHER,))
    return code


def issued_but_rejected(desk: Desk) -> str:
    """reconciliation.compare: the hub has it REJECTED; the channel, asked again, issued it."""
    desk.channel.script = [Rejected("buyer tax number unknown", "4001")]
    assert desk.dispatch() == "rejected"
    desk.channel.truth = Issued((INVOICE,))
    desk.reconcile()
    return CODE


def invoice_missing(desk: Desk) -> str:
    """reconciliation.compare: the channel reports an invoice the hub lacks."""
    desk.issued()
    desk.channel.truth = Issued((INVOICE, OTHER))
    desk.reconcile()
    return CODE


def totals_differ(desk: Desk) -> str:
    """reconciliation.compare: the channel's figures differ from the hub's record."""
    desk.issued()
    desk.channel.truth = Issued((replace(INVOICE, amount=Decimal("1.00"), tax=Decimal("0.13")),))
    desk.reconcile()
    return CODE


def voided_at_channel(desk: Desk) -> str:
    """reconciliation.compare: the channel says voided; the hub does not."""
    desk.issued()
    desk.channel.truth = Issued((replace(INVOICE, state=InvoiceState.VOIDED),))
    desk.reconcile()
    return CODE


@dataclass(frozen=True)
class Pair:
    state: Status
    reason: str
    produce: Callable[[Desk], str]
    finding: FindingKind | None  # the open finding it holds, if any
    ways_out: frozenset[tuple[str, ...]]  # the shortest paths to a final state with nothing open

    @property
    def id(self) -> str:
        return f"{self.state.value}-{self.reason}"


def _ways(*paths: tuple[str, ...]) -> frozenset[tuple[str, ...]]:
    return frozenset(paths)


ACK = "acknowledge-finding({})"
ATTACH, SEEN_BY_PERSON, REPORTED = "attach-result", "resolve-issued(seen)", "resolve-issued(reported)"
NOT_ISSUED = "resolve-not-issued"
# Sent again under the same number (the channel de-duplicates): the hub carries on, or the person
# attaches a result, or (the request never left after all) cancels it.
AGAIN = ((NOT_ISSUED, HUB), (NOT_ISSUED, ATTACH), (NOT_ISSUED, "cancel"))
CATALOGUE = (
    Pair(Status.MANUAL_REVIEW, "unknown-at-an-unqueryable-channel", unknown_unqueryable, None, _ways(
        (ATTACH,), (SEEN_BY_PERSON,), (NOT_ISSUED,))),  # not de-duplicated: closed REJECTED
    Pair(Status.MANUAL_REVIEW, "channel-gone", channel_gone, None, _ways(
        (ATTACH,), (SEEN_BY_PERSON,), (NOT_ISSUED,))),
    Pair(Status.MANUAL_REVIEW, "refused-on-a-resend", refused_on_resend, None, _ways(
        (ATTACH,), (SEEN_BY_PERSON,), *AGAIN)),
    # Only what the channel reports counts where it can be asked: "seen" is refused, and the clashing
    # invoice is another's; resolve-not-issued ends it REJECTED (never the same number again).
    Pair(Status.MANUAL_REVIEW, "invoice-clash", clash_while_polled, FindingKind.INVOICE_CLASH, _ways(
        (NOT_ISSUED,), ("query", NOT_ISSUED), (ACK.format("INVOICE_CLASH"), ATTACH),
        (ATTACH, ACK.format("INVOICE_CLASH")))),
    Pair(Status.STUCK, "never-sent", stuck_never_sent, None, _ways(
        (ATTACH,), ("cancel",), (SEEN_BY_PERSON,), ("requeue", HUB), ("requeue", ATTACH), ("requeue", "cancel"),
        *AGAIN)),
    Pair(Status.STUCK, "submitted-push-only", stuck_submitted_push_only, None, _ways(
        (ATTACH,), (SEEN_BY_PERSON,), ("requeue", ATTACH), *AGAIN)),
    # The channel knows nothing of it: what the person saw is refused; sent again, it is issued.
    Pair(Status.STUCK, "submitted-polled", stuck_submitted_polled, None, _ways(
        (ATTACH,), ("query", ATTACH), ("requeue", ATTACH), *AGAIN)),
    Pair(Status.STUCK, "dispatching-lease-expired", stuck_dispatching, None, _ways(
        (ATTACH,), (SEEN_BY_PERSON,), ("requeue", HUB), ("requeue", ATTACH), ("requeue", SEEN_BY_PERSON), *AGAIN)),
    Pair(Status.STUCK, "unknown", stuck_unknown, None, _ways(
        (ATTACH,), (SEEN_BY_PERSON,), ("requeue", HUB), ("requeue", ATTACH), ("requeue", SEEN_BY_PERSON), *AGAIN)),
    # Issued, with a void asked for: only the void is decided (requeue: VOIDING again).
    Pair(Status.STUCK, "voiding", stuck_voiding, None, _ways(
        ("requeue", "resolve-voided"), ("requeue", "resolve-not-voided"))),
    Pair(Status.STUCK, "unreachable", stuck_unreachable, None, _ways(
        (ATTACH,), ("cancel",), (SEEN_BY_PERSON,), ("requeue", HUB), ("requeue", ATTACH), ("requeue", "cancel"),
        *AGAIN)),
    Pair(Status.MISMATCH, "result-mismatch", result_mismatch, FindingKind.RESULT_MISMATCH, _ways(
        (REPORTED,), ("query", REPORTED), (ACK.format("RESULT_MISMATCH"), REPORTED))),
    Pair(Status.MISMATCH, "unreadable-result", unreadable_result, FindingKind.UNREADABLE_RESULT, _ways(
        (REPORTED,), ("query", REPORTED), (ACK.format("UNREADABLE_RESULT"), REPORTED))),
    Pair(Status.VOIDING, "void-by-person", void_by_person, None, _ways(
        ("resolve-voided",), ("resolve-not-voided",), ("query", "resolve-voided"), ("query", "resolve-not-voided"))),
    Pair(Status.VOIDING, "report-not-applied", report_not_applied, FindingKind.REPORT_NOT_APPLIED, _ways(
        *((ACK.format("REPORT_NOT_APPLIED"), end) for end in ("resolve-voided", "resolve-not-voided")),
        *((end, ACK.format("REPORT_NOT_APPLIED")) for end in ("resolve-voided", "resolve-not-voided")))),
    Pair(Status.ISSUED, "possible-duplicate", duplicate_after_issued, FindingKind.POSSIBLE_DUPLICATE_ISSUANCE,
         _ways((ACK.format("POSSIBLE_DUPLICATE_ISSUANCE"),))),
    Pair(Status.REJECTED, "invoice-after-rejected", invoice_after_rejected, FindingKind.POSSIBLE_DUPLICATE_ISSUANCE,
         _ways((ACK.format("POSSIBLE_DUPLICATE_ISSUANCE"),))),
    Pair(Status.CANCELLED, "result-after-cancel", result_after_cancel, FindingKind.RESULT_AFTER_CANCEL,
         _ways((ACK.format("RESULT_AFTER_CANCEL"),))),
    Pair(Status.ISSUED, "invoice-clash", clash_after_issued, FindingKind.INVOICE_CLASH,
         _ways((ACK.format("INVOICE_CLASH"),))),
    Pair(Status.REJECTED, "issued-but-rejected", issued_but_rejected, FindingKind.ISSUED_BUT_REJECTED,
         _ways((ACK.format("ISSUED_BUT_REJECTED"),))),
    Pair(Status.ISSUED, "invoice-missing", invoice_missing, FindingKind.INVOICE_MISSING,
         _ways((ACK.format("INVOICE_MISSING"),))),
    Pair(Status.ISSUED, "totals-differ", totals_differ, FindingKind.TOTALS_DIFFER,
         _ways((ACK.format("TOTALS_DIFFER"),))),
    Pair(Status.ISSUED, "voided-at-channel", voided_at_channel, FindingKind.VOIDED_AT_CHANNEL,
         _ways((ACK.format("VOIDED_AT_CHANNEL"),))),
)  # fmt: skip


def test_the_catalogue_covers_every_person_state_and_every_finding_kind():
    assert {p.state for p in CATALOGUE} >= {Status.MANUAL_REVIEW, Status.STUCK, Status.MISMATCH, Status.VOIDING}
    # RESULT_FROM_UNASKED_CHANNEL travels with the unmatched result, never on an application.
    assert {p.finding for p in CATALOGUE} >= set(FindingKind) - {FindingKind.RESULT_FROM_UNASKED_CHANNEL}
    assert len({p.id for p in CATALOGUE}) == len(CATALOGUE)


# ---------------------------------------------------------------------------------------- walking
class Tables:
    """The hub's tables as they are, to come back to between tries (moto in-process: a few items)."""

    def __init__(self, hub):
        resource = boto3.resource("dynamodb", region_name=REGION)
        self._tables = [resource.Table(hub.environment[n]) for n in ("APPLICATIONS_TABLE", "INVOICES_TABLE")]

    def snapshot(self) -> list[list[dict]]:
        return [table.scan(ConsistentRead=True)["Items"] for table in self._tables]

    def restore(self, snapshot: list[list[dict]]) -> None:
        for table, items in zip(self._tables, snapshot, strict=True):
            names = [k["AttributeName"] for k in table.key_schema]
            kept = {tuple(item[k] for k in names) for item in items}
            for item in table.scan(ConsistentRead=True)["Items"]:
                if tuple(item[k] for k in names) not in kept:
                    table.delete_item(Key={k: item[k] for k in names})
            for item in items:
                table.put_item(Item=item)


def _done(stored) -> bool:
    return stored.status in FINAL and not stored.open_findings and not stored.needs_person


def _moves(desk: Desk, code: str) -> list[tuple[str, str, dict]]:
    """The actions the ops detail offers now, each with the parameters a person would try."""
    store = runtime.application_store()
    stored = store.get(SYSTEM, code)
    moves: list[tuple[str, str, dict]] = []
    for action in operations(desk.world).available_actions(stored):
        if action == "resolve-issued":
            reported = [(str(i["number"]), i.get("code")) for i in store.invoices(stored)]
            truth = desk.channel.truth
            told = [(i.number, i.code) for i in truth.invoices] if isinstance(truth, Issued) else []
            told = [invoice for invoice in told if invoice not in reported]
            for label, invoices in (("reported", reported), ("channel's", told), ("seen", [(SEEN.number, None)])):
                for number, invoice_code in invoices:
                    # The figures as on the invoice (required where the channel cannot be asked).
                    application = stored.application
                    invoice = {"number": number, "date": INVOICE.issued_on.isoformat(),
                               "amount": str(application.amount), "tax": str(application.tax),
                               "sellerTaxNumber": application.seller.tax_number}  # fmt: skip
                    if invoice_code:
                        invoice["code"] = invoice_code
                    moves.append((f"{action}({label})", action, {"invoice": invoice}))
        elif action == "attach-result":
            unmatched = store.invoice(UNMATCHED)
            if unmatched is not None and unmatched.get("unmatched"):
                moves.append((action, action, {"resultId": UNMATCHED}))
        elif action == "acknowledge-finding":
            for finding in stored.open_findings:
                moves.append((ACK.format(finding.kind.value), action, {"findingId": finding.id}))
        else:
            moves.append((action, action, {}))
    if stored.status.is_open and not stored.needs_person:
        moves.append((HUB, HUB, {}))  # the hub carries on by itself (poller, queue)
    return moves


def _try(desk: Desk, code: str, action: str, params: dict) -> bool:
    """One move; False when it is refused (the application unchanged, as the tests of operations assert)."""
    if action == HUB:
        desk.later(600)
        desk.dispatch(code, DispatchPolicy())
        return True
    try:
        operations(desk.world).act(SYSTEM, code, action, "checked at the channel", "alice", params)
    except (ActionInvalid, ActionNotApplicable):
        return False
    return True


def walk(desk: Desk, code: str) -> set[tuple[str, ...]]:
    """Breadth-first from the application as produced: every path to done of up to EXPLORE actions
    (or, where none is that short, the shortest up to MAX_DEPTH)."""
    tables = Tables(desk.hub)
    level = [((), tables.snapshot(), desk.world.clock.now)]
    found: set[tuple[str, ...]] = set()
    for depth in range(1, MAX_DEPTH + 1):
        following = []
        for path, snapshot, now in level:
            tables.restore(snapshot)
            desk.world.clock.now = now
            for label, action, params in _moves(desk, code):
                tables.restore(snapshot)
                desk.world.clock.now = now
                if not _try(desk, code, action, params):
                    continue
                if _done(desk.stored(code)):
                    found.add((*path, label))
                else:
                    following.append(((*path, label), tables.snapshot(), desk.world.clock.now))
        if found and depth >= EXPLORE:
            break
        level = following
    return found


@pytest.mark.parametrize("pair", CATALOGUE, ids=lambda p: p.id)
def test_every_person_state_walks_to_a_final_state_through_the_actions_the_detail_offers(world, hub, pair):
    desk = Desk(world, hub, DeskChannel())
    world.directory = Directory(desk.channel)
    code = pair.produce(desk)
    stored = desk.stored(code)
    assert stored.status is pair.state and stored.needs_person
    assert [f.kind for f in stored.open_findings] == ([pair.finding] if pair.finding else [])
    runtime.application_store().record_unmatched(
        [{"pk": UNMATCHED, "number": UNMATCHED, "channel": "scripted", "status": "ISSUED",
          "issued_on": INVOICE.issued_on.isoformat(), "raw": "raw/unmatched-1",
          "seller_tax_number": stored.application.seller.tax_number}]
    )  # fmt: skip
    found = walk(desk, code)
    assert found, f"{pair.id}: no way out within {MAX_DEPTH} actions"
    assert found == pair.ways_out


def test_a_void_stuck_past_its_deadline_keeps_its_void_until_a_person_decides_it(world, hub):
    """Found by the walk: the hub's slow poll of a STUCK application, or a person's resolve-issued,
    resolve-not-issued or attach-result, used to end a stuck void ISSUED (or worse) without a word."""
    desk = Desk(world, hub, DeskChannel())
    world.directory = Directory(desk.channel)
    stuck_voiding(desk)
    desk.later(3601)
    assert desk.dispatch() == "waiting"  # asked: the invoice is still issued, no outcome
    stored = desk.stored()
    assert stored.status is Status.STUCK and stored.extra["void_request"] == "void-1"
    ops = operations(world)
    assert ops.available_actions(stored) == ["query", "requeue"]
    before = runtime.application_store().get(SYSTEM, CODE)
    for action, params in (("resolve-issued", {"invoice": {"number": INVOICE.number}}), ("resolve-not-issued", {}),
                           ("attach-result", {"resultId": UNMATCHED})):  # fmt: skip
        with pytest.raises(ActionNotApplicable) as refused:
            ops.act(SYSTEM, CODE, action, "checked", "alice", params)
        assert "requeue it (VOIDING again), then resolve-voided or resolve-not-voided" in refused.value.message
    assert runtime.application_store().get(SYSTEM, CODE) == before
    assert ops.act(SYSTEM, CODE, "requeue", "voiding it in the portal now", "alice", {}).status is Status.VOIDING
    desk.channel.truth = Issued((replace(INVOICE, state=InvoiceState.VOIDED),))  # the person voided it there
    desk.later(60)
    assert desk.dispatch() == "voided"
    assert desk.stored().status is Status.VOIDED and not desk.stored().needs_person
