"""Reconciliation: the channel asked again, its answer compared with the hub's state (issue 12, item 5).

Applications reach their state through the real dispatcher and store (moto, tables from template.yaml);
the channel is a unit-test fake answering queries; findings go to a fake recorder (the store's
add_finding is checked too where it exists).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import boto3
import pytest

from fapiao_hub import runtime
from fapiao_hub.domain.models import Difference, FindingKind, Status
from fapiao_hub.domain.results import InvoiceState, Issued, IssuedInvoice, NotFound, Rejected
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.base import CHINA_TIME
from fapiao_hub.usecases import reconciliation
from fapiao_hub.usecases.dispatch import Dispatcher, DispatchPolicy
from fapiao_hub.usecases.reconciliation import FINDING_METRIC, Reconciler, StoreFindings, Verdict, Window
from tests.unit.conftest import FakeContext, event, load_handler
from tests.unit.test_dispatch_workflow import Directory, ScriptedChannel

REGION = "ap-east-1"
BLUE = IssuedInvoice(
    number="12221761", code="050002000205", issued_on=datetime.now(CHINA_TIME).date(), amount=Decimal("5327.43"),
    tax=Decimal("692.57"),
)  # fmt: skip
SECOND = IssuedInvoice(number="12221762", code="050002000205", amount=Decimal("100.00"), tax=Decimal("13.00"))
RED = IssuedInvoice(number="33330001", code="050002000205", amount=Decimal("-5309.73"), tax=Decimal("-690.27"))


@dataclass
class QueriedChannel:
    """A queryable channel whose answers are set per application number (NotFound otherwise)."""

    answers: dict = field(default_factory=dict)
    can_query: bool = True
    dedupes_request_number: bool = True
    name: str = "scripted"
    queried: list = field(default_factory=list)

    def query(self, application, request_number):
        self.queried.append(application.open_apply_code)
        return self.answers.get(application.open_apply_code, NotFound())


@dataclass
class Channels:
    by_name: dict

    def channel(self, name):
        return self.by_name.get(name)


class FakeFindings:
    """Keeps findings like ApplicationStore.add_finding: once per (application, finding id)."""

    def __init__(self):
        self.kept: dict = {}

    def record_finding(self, stored, finding) -> bool:
        if (stored.key, finding.id) in self.kept:
            return False
        self.kept[(stored.key, finding.id)] = finding
        return True


@pytest.fixture
def settle(hub):
    """settle(code, outcome, body=...) -> the application submitted and dispatched to that outcome."""

    def _settle(code: str, outcome, fixture: str = "intake-post-blue.json"):
        body = json.loads(event(fixture)["body"])
        body["invoiceOrder"]["openApplyCode"] = code
        for line in body["invoiceOrder"].get("invoiceOrderSub", []):
            line["openApplyCode"] = code
        status, answer, _ = hub.call(event(fixture, body=body))
        assert status == 200, answer
        hub.queued()
        dispatcher = Dispatcher(
            runtime.application_store(), runtime.dispatch_queue(), runtime.event_publisher(),
            Directory(ScriptedChannel(script=[outcome])), runtime.file_store(), policy=DispatchPolicy(),
        )  # fmt: skip
        dispatcher.dispatch("sample-erp", code)
        return runtime.application_store().get("sample-erp", code)

    return _settle


@pytest.fixture
def world(hub):
    reconciliation.metrics.clear_metrics()
    channel = QueriedChannel()
    findings = FakeFindings()

    class World:
        def __init__(self):
            self.channel, self.findings = channel, findings
            self.channels = Channels({"scripted": channel})

        def reconciler(self, recorder=None):
            return Reconciler(runtime.application_store(), self.channels, recorder or findings, runtime.file_store())

        def run(self, recorder=None, **kwargs):
            return self.reconciler(recorder).run(**kwargs)

        def report(self, day: date, suffix: str) -> bytes:
            s3 = boto3.client("s3", region_name=REGION)
            key = f"reports/reconciliation/{day.isoformat()}{suffix}"
            return s3.get_object(Bucket=hub.environment["FILES_BUCKET"], Key=key)["Body"].read()

    yield World()
    reconciliation.metrics.clear_metrics()


def _finding_metrics() -> list[float]:
    return list(reconciliation.metrics.metric_set.get(FINDING_METRIC, {}).get("Value", []))


def _only(report, code):
    [checked] = [c for c in report.checked if c.stored.application.open_apply_code == code]
    return checked


def test_rejects_but_actually_issued_one_finding_one_alarm_and_a_second_run_adds_nothing(world, settle):
    stored = settle("REJ-1", Rejected("buyer tax number unknown to the bureau", "4001"))
    assert stored.status is Status.REJECTED
    world.channel.answers["REJ-1"] = Issued((BLUE,))  # the channel issued after all

    first = world.run()
    checked = _only(first, "REJ-1")
    assert checked.verdict is Verdict.FINDING
    [finding] = checked.new_findings
    assert finding.kind is FindingKind.ISSUED_BUT_REJECTED and finding.source == "reconciliation"
    assert finding.invoice_numbers == ("12221761",)
    assert Difference(field="status", expected="REJECTED", reported="ISSUED") in finding.differences
    assert _finding_metrics() == [1.0]
    assert list(world.findings.kept.values()) == [finding]

    second = world.run()
    again = _only(second, "REJ-1")
    assert [f.id for f in again.findings] == [finding.id] and again.new_findings == ()
    assert _finding_metrics() == [1.0]  # no second alarm
    assert len(world.findings.kept) == 1
    # The day's report names it, as not new the second time.
    document = json.loads(world.report(second.window.day, ".json"))
    [reported] = document["findings"]
    assert (reported["id"], reported["kind"], reported["new"]) == (finding.id, "ISSUED_BUT_REJECTED", False)


@pytest.mark.skipif(not hasattr(ApplicationStore, "add_finding"), reason="ApplicationStore.add_finding (verify's)")
def test_rejects_but_actually_issued_is_kept_once_on_the_application(world, settle):
    settle("REJ-2", Rejected("refused", "4001"))
    world.channel.answers["REJ-2"] = Issued((BLUE,))
    store = runtime.application_store()
    world.run(recorder=StoreFindings(store))
    world.run(recorder=StoreFindings(store))
    stored = store.get("sample-erp", "REJ-2")
    [finding] = stored.findings
    assert finding.kind is FindingKind.ISSUED_BUT_REJECTED and finding.open
    assert _finding_metrics() == [1.0]


def test_an_invoice_the_hub_lacks_is_invoice_missing(world, settle):
    settle("MISS-1", Issued((BLUE,)))
    world.channel.answers["MISS-1"] = Issued((BLUE, SECOND))  # a second invoice the hub never heard of
    [finding] = _only(world.run(), "MISS-1").new_findings
    assert finding.kind is FindingKind.INVOICE_MISSING
    assert finding.invoice_numbers == ("12221762",)
    assert finding.differences == (Difference(field="invoices[12221762]", expected=None, reported="12221762"),)


def test_different_amounts_are_totals_differ_naming_both_figures(world, settle):
    settle("TOT-1", Issued((BLUE,)))
    less = IssuedInvoice(number="12221761", code="050002000205", amount=Decimal("5000.00"), tax=Decimal("692.57"))
    world.channel.answers["TOT-1"] = Issued((less,))
    [finding] = _only(world.run(), "TOT-1").new_findings
    assert finding.kind is FindingKind.TOTALS_DIFFER
    assert finding.differences == (Difference(field="amount", expected="5327.43", reported="5000.00"),)


def test_three_runs_over_the_same_wrong_invoice_keep_one_finding_counted_three_times(world, settle):
    # The same discrepancy (kind, application, invoice, field) seen by three runs, the channel reporting
    # a different wrong figure each time: one finding, its count 3, the latest figure and sighting kept.
    settle("TOT-3", Issued((BLUE,)))
    store = runtime.application_store()
    for n, amount in enumerate(("5000.00", "5010.00", "5020.00"), start=1):
        wrong = IssuedInvoice(number="12221761", code="050002000205", amount=Decimal(amount), tax=Decimal("692.57"))
        world.channel.answers["TOT-3"] = Issued((wrong,))
        report = world.run(recorder=StoreFindings(store))
        assert len(_only(report, "TOT-3").new_findings) == (1 if n == 1 else 0)
    [finding] = store.get("sample-erp", "TOT-3").findings
    assert finding.kind is FindingKind.TOTALS_DIFFER and finding.open
    assert finding.count == 3 and finding.last_seen is not None
    assert finding.differences == (Difference(field="amount", expected="5327.43", reported="5020.00"),)
    assert _finding_metrics() == [1.0]  # alarmed once, when it was first seen


def test_an_issued_application_the_channel_does_not_know_is_totals_differ(world, settle):
    settle("TOT-2", Issued((BLUE,)))  # the channel's query answers NotFound
    [finding] = _only(world.run(), "TOT-2").new_findings
    assert finding.kind is FindingKind.TOTALS_DIFFER
    assert finding.differences == (
        Difference(field="status", expected="ISSUED", reported="NOT_FOUND"),
        Difference(field="invoice_count", expected="1", reported="0"),
    )


def test_an_invoice_voided_at_the_channel_is_voided_at_channel(world, settle):
    settle("VOID-1", Issued((BLUE,)))
    voided = replace(BLUE, state=InvoiceState.VOIDED)
    world.channel.answers["VOID-1"] = Issued((voided,))
    [finding] = _only(world.run(), "VOID-1").new_findings
    assert finding.kind is FindingKind.VOIDED_AT_CHANNEL
    assert finding.differences == (Difference(field="invoices[12221761].state", expected="ISSUED", reported="VOIDED"),)


def test_agreeing_answers_match_and_raise_nothing(world, settle):
    settle("OK-1", Issued((BLUE,)))
    settle("OK-2", Rejected("refused", "4001"))
    world.channel.answers.update({"OK-1": Issued((BLUE,)), "OK-2": Rejected("refused", "4001")})
    report = world.run()
    assert [_only(report, code).verdict for code in ("OK-1", "OK-2")] == [Verdict.MATCHING, Verdict.MATCHING]
    assert report.new_findings == [] and _finding_metrics() == []


def test_a_channel_without_a_query_is_not_verifiable_never_matching(world, settle):
    settle("XL-1", Issued((BLUE,)))
    settle("XL-2", Rejected("refused", "4001"))
    world.channel.can_query = False  # like Xunlian: nothing to ask
    report = world.run()
    assert {c.verdict for c in report.checked} == {Verdict.NOT_VERIFIABLE}
    assert world.channel.queried == []
    document = json.loads(world.report(report.window.day, ".json"))
    assert document["not_verifiable"] == {"scripted": 2} and document["matching"] == 0
    [group] = document["groups"]
    assert (group["verifiable"], group["not_verifiable"], group["matching"]) == (False, 2, 0)
    [row] = csv.DictReader(io.StringIO(world.report(report.window.day, ".csv").decode("utf-8-sig")))
    assert (row["verifiable"], row["not_verifiable"], row["matching"]) == ("not verifiable", "2", "0")


def test_the_report_gives_counts_and_totals_issued_and_reversed_per_system_seller_and_channel(world, settle):
    settle("BLUE-1", Issued((BLUE,)))
    settle("REJ-3", Rejected("refused", "4001"))
    settle("red-zcxs1825830330588741634-1", Issued((RED,)), fixture="intake-post-red.json")
    world.channel.answers.update({"BLUE-1": Issued((BLUE,)), "red-zcxs1825830330588741634-1": Issued((RED,)),
                                  "REJ-3": Issued((SECOND,))})  # fmt: skip
    report = world.run()
    day = report.window.day
    assert day == datetime.now(UTC).astimezone(reconciliation.CHINA_TIME).date()
    document = json.loads(world.report(day, ".json"))
    assert document["day"] == day.isoformat() and document["checked"] == 3
    [group] = document["groups"]
    assert (group["source_system"], group["seller_tax_number"], group["channel"]) == (
        "sample-erp", "91220101MA0Y5K3N4H", "scripted",
    )  # fmt: skip
    assert group["issued"] == {"count": 1, "amount": "5327.43", "tax": "692.57"}
    assert group["reversed"] == {"count": 1, "amount": "-5309.73", "tax": "-690.27"}
    assert (group["applications"], group["matching"], group["with_findings"], group["rejected_count"]) == (3, 2, 1, 1)
    [finding] = document["findings"]
    assert (finding["open_apply_code"], finding["kind"], finding["new"]) == ("REJ-3", "ISSUED_BUT_REJECTED", True)
    [row] = csv.DictReader(io.StringIO(world.report(day, ".csv").decode("utf-8-sig")))
    assert (row["issued_count"], row["issued_amount"], row["reversed_amount"], row["reversed_tax"]) == (
        "1", "5327.43", "-5309.73", "-690.27",
    )  # fmt: skip
    [found] = csv.DictReader(io.StringIO(world.report(day, "-findings.csv").decode("utf-8-sig")))
    assert found["kind"] == "ISSUED_BUT_REJECTED" and found["invoice_numbers"] == "12221762"
    assert "status: expected REJECTED, reported ISSUED" in found["differences"]


def test_only_the_window_is_read(world, settle):
    settle("WIN-1", Issued((BLUE,)))
    now = datetime.now(UTC)
    later = world.run(window=Window(now + timedelta(hours=1), now + timedelta(days=1)))
    assert later.checked == [] and world.channel.queried == []
    earlier = world.run(window=Window(now - timedelta(days=3), now - timedelta(days=2)))
    assert earlier.checked == []
    assert [c.stored.application.open_apply_code for c in world.run().checked] == ["WIN-1"]


def test_an_application_waiting_for_a_person_is_asked_whatever_the_window(world, settle):
    settle("STUCK-1", Issued((BLUE,)))
    store = runtime.application_store()
    # A person's state outside any window: the attention index alone brings it in.
    stuck = store.get("sample-erp", "STUCK-1")
    store._table.update_item(
        Key={"pk": stuck.key}, UpdateExpression="SET attention = :p REMOVE settled_day",
        ExpressionAttributeValues={":p": "PERSON"},
    )  # fmt: skip
    world.channel.answers["STUCK-1"] = Issued((BLUE, SECOND))
    report = world.run()
    checked = _only(report, "STUCK-1")
    assert not checked.in_window and [f.kind for f in checked.new_findings] == [FindingKind.INVOICE_MISSING]


def test_one_channels_failure_does_not_end_the_run(world, settle):
    settle("ERR-1", Issued((BLUE,)))
    settle("ERR-2", Issued((IssuedInvoice(number="12221799", code="050002000205"),)))

    def broken(application, request_number):
        if application.open_apply_code == "ERR-1":
            raise ConnectionError("channel down")
        return NotFound()

    world.channel.query = broken
    report = world.run()
    assert _only(report, "ERR-1").verdict is Verdict.NO_ANSWER
    assert _only(report, "ERR-2").verdict is Verdict.FINDING


def test_the_scheduled_handler_runs_and_writes_the_days_report(hub):
    handler = load_handler("reconciliation", "reconciliation_app_under_test")
    answer = handler(event("reconciliation-schedule.json"), FakeContext())
    assert answer["checked"] == 0 and answer["new_findings"] == 0
    day = answer["day"]
    assert answer["report"] == [f"reports/reconciliation/{day}{s}" for s in (".json", ".csv", "-findings.csv")]


def test_the_local_run_fires_the_reconciliation_every_few_minutes_unless_told_otherwise(monkeypatch):
    from moto import mock_aws

    from local import run
    from local.provision import provision
    from tests.unit.conftest import TEMPLATE

    with mock_aws():
        resources = provision(TEMPLATE, region=REGION)
    [schedule] = resources.functions()["ReconciliationFunction"].schedules
    assert schedule.expression == "rate(1 day)" and schedule.enabled
    # Minutes, not seconds: each run re-asks the channels about its whole window (issue 19).
    assert 60 <= run.local_schedule_seconds("ReconciliationFunction") <= 600
    monkeypatch.setattr(run, "LOCAL_RECONCILIATION_SECONDS", 1.0)
    assert run.local_schedule_seconds("ReconciliationFunction") == run.LOCAL_SCHEDULE_SECONDS
