"""No silent path, no dead end (issue: a desk people can work at).

A channel reporting, for one application, an invoice the hub holds for another (a sandbox that numbered
from 1 again after a restart, a channel's own mix-up) used to be logged and dropped for a polled
application ("ignored a report that would move SUBMITTED to MANUAL_REVIEW"), and resolve-not-issued sent
the same request number again, landing straight back in MANUAL_REVIEW. Now: a history entry, a finding
naming the holder (for the desk only), MANUAL_REVIEW, and ways out that end it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from fapiao_hub import runtime
from fapiao_hub.domain.models import FindingKind, Status
from fapiao_hub.domain.results import Accepted, Issued
from fapiao_hub.usecases.action_checks import ActionInvalid
from tests.unit import test_dispatch_workflow as dispatch_tests
from tests.unit.test_dispatch_workflow import CODE, INVOICE
from tests.unit.test_operations import SYSTEM, another, item, operations

world = dispatch_tests.world

HOLDER = f"{SYSTEM}#{CODE}"


def _clash_in_submitted(world) -> str:
    """The world's application issued INVOICE; a second one, SUBMITTED at a polled channel, is then
    reported with the same invoice."""
    world.channel.can_query = True
    world.channel.dedupes_request_number = True
    world.channel.script = [Issued((INVOICE,))]
    assert world.dispatch() == "issued"
    code = another("CLASH-1")
    world.channel.script = [Accepted("ref-2")]
    assert world.dispatcher().dispatch(SYSTEM, code) == "submitted"
    stored = runtime.application_store().get(SYSTEM, code)
    assert stored.status is Status.SUBMITTED
    world.events()
    world.channel.script = [Issued((INVOICE,))]  # the poll: the first application's invoice
    world.clock.now += 3600
    assert world.dispatcher().dispatch(SYSTEM, code) == "manual_review"
    return code


def test_a_clash_in_a_polled_state_is_a_person_state_with_a_finding_naming_the_holder(world, hub):
    code = _clash_in_submitted(world)
    stored = runtime.application_store().get(SYSTEM, code)
    assert stored.status is Status.MANUAL_REVIEW
    [finding] = stored.open_findings
    assert finding.kind is FindingKind.INVOICE_CLASH
    assert finding.related == (HOLDER,) and finding.invoice_numbers == ("050002000205-12221761",)
    assert "recorded for another application" in stored.history[-1].note
    assert item(hub, code)["attention"] == "PERSON"
    # The holder keeps its invoice; the business system is told it needs review, without another's key.
    assert runtime.application_store().get(SYSTEM, CODE).status is Status.ISSUED
    [(_, detail)] = [e for e in world.events() if e[0] == "ApplicationNeedsReview"]
    assert HOLDER not in str(detail)


def test_the_same_clash_again_counts_it_and_adds_nothing(world, hub):
    code = _clash_in_submitted(world)
    world.channel.script = [Issued((INVOICE,))]
    operations(world).act(SYSTEM, code, "query", "ask again", "alice", {})
    stored = runtime.application_store().get(SYSTEM, code)
    [finding] = stored.findings
    assert finding.count == 2 and stored.status is Status.MANUAL_REVIEW


def test_resolve_not_issued_after_a_clash_ends_rejected_without_sending_the_number_again(world, hub):
    code = _clash_in_submitted(world)
    world.channel.script = [Issued((INVOICE,))]  # asked first: it repeats the clashing invoice
    sent_before = len(world.channel.sent)
    after = operations(world).act(SYSTEM, code, "resolve-not-issued", "portal shows none for it", "alice", {})
    assert after.status is Status.REJECTED
    assert len(world.channel.sent) == sent_before  # never re-sent under the same number
    stored = runtime.application_store().get(SYSTEM, code)
    assert not stored.open_findings and stored.findings[0].acknowledged_reason == "portal shows none for it"
    assert "attention" not in item(hub, code)


def test_resolve_issued_with_the_taken_number_says_what_to_do_and_another_number_ends_it(world, hub):
    code = _clash_in_submitted(world)
    world.channel.can_query = False  # the person vouches for the invoice (seen at the bureau)
    figures = {"amount": "5327.43", "tax": "692.57", "sellerTaxNumber": "91220101MA0Y5K3N4H"}
    taken = {"invoice": {"number": INVOICE.number, "code": INVOICE.code, "date": INVOICE.issued_on.isoformat(),
                         **figures}}  # fmt: skip
    before = item(hub, code)
    with pytest.raises(ActionInvalid) as invalid:
        operations(world).act(SYSTEM, code, "resolve-issued", "seen", "alice", taken)
    assert "recorded for another application" in invalid.value.message
    assert "resolve-not-issued" in invalid.value.message
    assert item(hub, code) == before
    real = replace(INVOICE, number="12221799")
    params = {"invoice": {"number": real.number, "code": real.code, "date": real.issued_on.isoformat(), **figures}}
    after = operations(world).act(SYSTEM, code, "resolve-issued", "seen at the bureau", "alice", params)
    assert after.status is Status.ISSUED
    assert not runtime.application_store().get(SYSTEM, code).open_findings
