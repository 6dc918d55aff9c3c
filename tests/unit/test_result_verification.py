"""Every result checked before an application becomes ISSUED; results after the outcome never silent.

A scripted channel (a unit-test fake) answers; moto holds the tables, the bus and the queues.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from aws_lambda_powertools import Metrics

from fapiao_hub import runtime
from fapiao_hub.domain.models import Difference, Finding, FindingKind, InvoiceType, Status
from fapiao_hub.domain.results import InvoiceLine, Issued, IssuedInvoice
from fapiao_hub.infra.store.base import ATTENTION
from fapiao_hub.infra.store.settled import settled_partition
from tests.unit.conftest import event
from tests.unit.test_dispatch_workflow import CODE, world  # noqa: F401 - the fixture

SELLER = "91220101MA0Y5K3N4H"  # VB5's seller (tests/unit/conftest.py)
KEY = f"sample-erp#{CODE}"
GOOD = IssuedInvoice(
    number="26112000000012221761",
    issued_on=date.today(),
    amount=Decimal("5327.43"),
    tax=Decimal("692.57"),
    invoice_type=InvoiceType.DIGITAL_SPECIAL,
    seller_tax_number=SELLER,
)


@pytest.fixture(autouse=True)
def no_metrics_left():
    Metrics().clear_metrics()
    yield
    Metrics().clear_metrics()


def recorded_metrics() -> dict[str, list]:
    return {name: list(m["Value"]) for name, m in Metrics().metric_set.items()}


def assert_needs_review(world, *differences: Difference, kind=FindingKind.RESULT_MISMATCH) -> Finding:  # noqa: F811
    stored = world.stored()
    assert stored.status is Status.MISMATCH
    [finding] = stored.findings
    assert finding.kind is kind and finding.open and finding.source == "dispatch"
    for difference in differences:
        assert difference in finding.differences
    events = world.events()
    assert [kind for kind, _ in events] == ["ApplicationNeedsReview"]  # never InvoiceIssued
    [(_, detail)] = events
    assert detail["status"] == "MISMATCH" and detail["request_number"] == world.stored().request_number
    assert detail["findings"][0]["id"] == finding.id
    item = world_item(stored)
    assert item["attention"] == ATTENTION and item["settled_day"].endswith(settled_partition(KEY, date.today())[-2:])
    return finding


def world_item(stored):
    return runtime.application_store()._table.get_item(Key={"pk": stored.key})["Item"]


@pytest.mark.parametrize(
    ("reported", "difference"),
    [
        (replace(GOOD, amount=Decimal("5327.45")), Difference(field="amount", expected="5327.43", reported="5327.45")),
        (replace(GOOD, seller_tax_number="91120222300XXX"),
         Difference(field="seller.tax_number", expected=SELLER, reported="91120222300XXX")),
        (replace(GOOD, invoice_type=InvoiceType.VAT_NORMAL_ELECTRONIC),
         Difference(field="invoice_type", expected="DIGITAL_SPECIAL", reported="VAT_NORMAL_ELECTRONIC")),
    ],
    ids=["amount", "seller", "type"],
)  # fmt: skip
def test_a_wrong_result_ends_mismatch_recorded_in_full(world, hub, reported, difference):  # noqa: F811
    world.channel.script = [Issued((reported,), raw=b'{"ok": true}')]
    assert world.dispatch() == "mismatch"
    assert_needs_review(world, difference)
    [invoice] = world.invoices()  # recorded in full, linked to the application
    assert invoice["number"] == GOOD.number and invoice["application_key"] == KEY
    assert world.stored().extra["raw_answer"]  # the channel's answer kept for the person who looks
    assert recorded_metrics() == {
        "FindingsRecorded": [1.0], "Findings.RESULT_MISMATCH": [1.0], "ResultMismatches": [1.0]
    }  # fmt: skip
    # The GET shows it: status, the finding with both values.
    status, answer, _ = hub.call(event("intake-get.json"))
    assert status == 200 and answer["data"]["status"] == "MISMATCH"
    [shown] = answer["data"]["findings"]
    assert shown["kind"] == "RESULT_MISMATCH" and shown["open"] is True
    assert difference.model_dump(mode="json") in shown["differences"]
    # The same result again (a repeated poll or push) adds nothing.
    assert world.dispatcher().apply_result(world.stored(), Issued((reported,)), world.channel) == "already recorded"
    assert len(world.stored().findings) == 1 and world.events() == []


def test_an_extra_second_invoice_ends_mismatch(world):  # noqa: F811
    world.channel.script = [Issued((GOOD, replace(GOOD, number="26112000000012229999")))]
    assert world.dispatch() == "mismatch"
    assert_needs_review(world, Difference(field="amount", expected="5327.43", reported="10654.86"))
    assert len(world.invoices()) == 2


def test_only_unreadable_fields_are_an_unreadable_result(world):  # noqa: F811
    unreadable = replace(GOOD, tax=None, unreadable={"totalTaxAmount": "六百九十二"})
    world.channel.script = [Issued((unreadable,))]
    assert world.dispatch() == "mismatch"
    finding = assert_needs_review(
        world,
        Difference(field="unreadable.totalTaxAmount", expected="a readable value", reported="六百九十二"),
        kind=FindingKind.UNREADABLE_RESULT,
    )
    assert len(finding.differences) == 1
    [invoice] = world.invoices()
    assert invoice["unreadable"] == {"totalTaxAmount": "六百九十二"} and "tax" not in invoice


def test_an_invoice_without_a_number_is_kept_under_a_key_of_its_own(world):  # noqa: F811
    world.channel.script = [Issued((replace(GOOD, number=""),))]
    assert world.dispatch() == "mismatch"
    assert_needs_review(world, Difference(field="number", expected="an invoice number", reported=None))
    [invoice] = world.invoices()
    assert invoice["pk"] == f"UNNUMBERED-{world.stored().request_number}-1"


@pytest.mark.parametrize(
    "invoices",
    [
        (GOOD,),
        # A channel's split into two invoices whose totals add up.
        (replace(GOOD, amount=Decimal("3000.00"), tax=Decimal("390.00")),
         replace(GOOD, number="26112000000012221762", amount=Decimal("2327.43"), tax=Decimal("302.57"))),
        # Discount lines reported as lines (the application's five lines, paired).
        (replace(GOOD, lines=(
            InvoiceLine(goods_name="a", amount=Decimal("42.48"), tax=Decimal("5.52"), nature="2"),
            InvoiceLine(goods_name="a", amount=Decimal("-33.63"), tax=Decimal("-4.37"), nature="1"),
            InvoiceLine(goods_name="a", amount=Decimal("42.48"), tax=Decimal("5.52"), nature="2"),
            InvoiceLine(goods_name="a", amount=Decimal("-33.63"), tax=Decimal("-4.37"), nature="1"),
            InvoiceLine(goods_name="b", amount=Decimal("5309.73"), tax=Decimal("690.27")),
        )),),
    ],
    ids=["one", "split", "discount-lines"],
)  # fmt: skip
def test_a_correct_result_still_ends_issued(world, invoices):  # noqa: F811
    world.channel.script = [Issued(invoices)]
    assert world.dispatch() == "issued"
    stored = world.stored()
    assert stored.status is Status.ISSUED and stored.findings == ()
    assert [kind for kind, _ in world.events()] == ["InvoiceIssued"]
    item = world_item(stored)
    assert "attention" not in item
    assert item["settled_day"] == settled_partition(KEY, date.fromisoformat(item["settled_day"][:10]))
    assert recorded_metrics() == {}


def test_a_second_different_invoice_after_issued_is_a_possible_duplicate(world, hub):  # noqa: F811
    world.channel.script = [Issued((GOOD,))]
    assert world.dispatch() == "issued"
    world.events()
    second = replace(GOOD, number="26112000000012229999")
    stored = world.stored()
    assert world.dispatcher().apply_result(stored, Issued((second,)), world.channel) == "possible duplicate"
    after = world.stored()
    assert after.status is Status.ISSUED  # a person decides
    [finding] = after.findings
    assert finding.kind is FindingKind.POSSIBLE_DUPLICATE_ISSUANCE and finding.invoice_numbers == (second.number,)
    assert finding.source == "callback" and finding.open
    assert after.history[-1].is_note and "possibly issued twice" in after.history[-1].note
    assert {i["number"] for i in world.invoices()} == {GOOD.number, second.number}
    assert all(i["application_key"] == KEY for i in world.invoices())
    assert set(after.invoice_keys) == {GOOD.number, second.number}
    [(kind, detail)] = world.events()
    assert kind == "FindingRecorded" and detail["findings"][0]["kind"] == "POSSIBLE_DUPLICATE_ISSUANCE"
    assert detail["request_number"] == world.stored().request_number
    assert recorded_metrics() == {"FindingsRecorded": [1.0], "Findings.POSSIBLE_DUPLICATE_ISSUANCE": [1.0]}
    assert world_item(after)["attention"] == ATTENTION
    # The same invoice again changes nothing: no finding, no event, no history entry.
    version, history = after.version, len(after.history)
    for again in (Issued((second,)), Issued((GOOD,)), Issued((GOOD, second))):
        assert world.dispatcher().apply_result(world.stored(), again, world.channel) == "already issued"
    final = world.stored()
    assert (final.version, len(final.history), len(final.findings)) == (version, history, 1)
    assert world.events() == []


def test_an_invoice_after_rejected_is_recorded_with_a_finding(world):  # noqa: F811
    from fapiao_hub.domain.results import Rejected

    world.channel.script = [Rejected("购方信息有误")]
    assert world.dispatch() == "rejected"
    world.events()
    assert world.dispatcher().apply_result(world.stored(), Issued((GOOD,)), world.channel) == "possible duplicate"
    stored = world.stored()
    assert stored.status is Status.REJECTED
    assert [f.kind for f in stored.findings] == [FindingKind.POSSIBLE_DUPLICATE_ISSUANCE]
    assert [i["number"] for i in world.invoices()] == [GOOD.number]
    assert [kind for kind, _ in world.events()] == ["FindingRecorded"]


def test_a_late_rejection_or_not_found_after_issued_is_ignored(world):  # noqa: F811
    from fapiao_hub.domain.results import NotFound, Rejected

    world.channel.script = [Issued((GOOD,))]
    assert world.dispatch() == "issued"
    world.events()
    before = world.stored()
    for late in (Rejected("late"), NotFound()):
        assert world.dispatcher().apply_result(world.stored(), late, world.channel) == "already issued"
    after = world.stored()
    assert (after.status, after.version, after.findings) == (Status.ISSUED, before.version, ())
    assert world.events() == []


def test_a_late_rejection_after_mismatch_is_ignored(world):  # noqa: F811
    from fapiao_hub.domain.results import Rejected

    world.channel.script = [Issued((replace(GOOD, amount=Decimal("1.00")),))]
    assert world.dispatch() == "mismatch"
    world.events()
    assert world.dispatcher().apply_result(world.stored(), Rejected("late"), world.channel) == "already issued"
    assert world.stored().status is Status.MISMATCH


def test_add_finding_is_idempotent(world):  # noqa: F811
    store = runtime.application_store()
    finding = Finding(id="f-1", kind=FindingKind.TOTALS_DIFFER, at="2026-12-04T00:00:00.000Z",
                      source="reconciliation", summary="totals differ")  # fmt: skip
    assert store.add_finding(f"sample-erp#{CODE}", finding, note="reconciliation: totals differ") is True
    assert store.add_finding(world.stored(), finding, note="reconciliation: totals differ") is False
    stored = world.stored()
    # Seen twice: one finding, counted twice, with when it was seen last (never a second finding).
    assert stored.findings == (finding.model_copy(update={"count": 2, "last_seen": finding.at}),)
    assert [t.note for t in stored.history].count("reconciliation: totals differ") == 1
    assert world_item(stored)["attention"] == ATTENTION
