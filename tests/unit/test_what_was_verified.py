"""What "verified" rests on (issue 18 item 4): every recorded invoice says which figures were compared
with the channel's statement (its answer, or the invoice's own 数电 XML / OFD file), which an operator
attested, and which the hub holds only from the application; reconciliation tells those apart.

Real Dispatcher and store on moto, a scripted channel (the world of test_dispatch_workflow); the
invoice files are rendered by the partner sandbox's own code (sandbox.partner.invoice_xml).
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from dataclasses import replace
from datetime import date
from decimal import Decimal

import boto3
import pytest

from fapiao_hub import runtime
from fapiao_hub.channels.ekuaibao import hand_over
from fapiao_hub.domain import invoice_files
from fapiao_hub.domain.models import FindingKind, Status
from fapiao_hub.domain.results import InvoiceFile, Issued, IssuedInvoice
from fapiao_hub.usecases import notifications
from fapiao_hub.usecases.action_checks import ActionInvalid
from fapiao_hub.usecases.reconciliation import Verdict
from sandbox import faults
from sandbox.partner import Invoice as SandboxInvoice
from sandbox.partner import invoice_xml, order_facts
from tests.unit import test_dispatch_workflow as dispatch_tests
from tests.unit import test_operations as operations_tests
from tests.unit import test_reconciliation as reconciliation_tests
from tests.unit.conftest import event
from tests.unit.test_dispatch_workflow import CODE

world = dispatch_tests.world
settle = reconciliation_tests.settle
SYSTEM = "sample-erp"
NUMBER = "26112000000012345678"  # 数电: 20 digits, no code
# Everything the blue fixture's application lets a file state (it has a buyer tax number; one line each).
ALL_COMPARED = ["seller", "buyer", "invoice_type", "direction", "issued_on", "amount", "tax", "lines"]
FROM_APPLICATION = ["seller", "invoice_type", "direction", "amount", "tax"]


def partner_xml(application, *, fault: str | None = None, number: str = NUMBER) -> bytes:
    """The invoice's XML as the partner sandbox serves it for an order handed over out of band."""
    today = date.today()
    facts = order_facts(hand_over(application), today, fault)
    invoice = SandboxInvoice(code=number, number=number, issued_at=f"{today.isoformat()}T10:00:00+08:00", facts=facts)
    return invoice_xml(invoice, "FH-TEST").encode("utf-8")


def partner_result(xml: bytes | None, number: str = NUMBER) -> Issued:
    """What the partner's answer says (seed 003): a number and files, no figures at all."""
    files = [InvoiceFile(content_base64=base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode(), format_hint="pdf")]
    if xml is not None:
        files.append(InvoiceFile(content_base64=base64.b64encode(xml).decode(), format_hint="xml"))
    return Issued((IssuedInvoice(number=number, files=tuple(files)),))


def get_answer(hub) -> dict:
    status, answer, _ = hub.call(event("intake-get.json"))  # the world's application
    assert status == 200, answer
    return answer["data"]


def webhook_invoices(world, detail_type: str = "InvoiceIssued") -> list[dict]:
    """The invoices of the hub-format webhook body the notifier would POST for the outcome event."""
    [detail] = [d for kind, d in world.events() if kind == detail_type]
    stored = world.stored()
    invoices = notifications.selected_invoices(detail_type, detail, runtime.application_store().invoices(stored))
    return notifications.hub_body("k", detail_type, detail, None, invoices)["invoices"]


# ---------------------------------------------------------------------------- figures from the file
def test_a_partner_result_with_its_xml_is_verified_from_the_file_and_says_so(world, hub):
    world.channel.script = [partner_result(partner_xml(world.stored().application))]
    assert world.dispatch() == "issued"
    [item] = world.invoices()
    assert item["verified"] == ALL_COMPARED and item["from_file"] == ALL_COMPARED
    assert item["from_application"] == [] and item["attested_by_operator"] == []
    [shown] = get_answer(hub)["invoices"]
    assert (shown["verified"], shown["verifiedFromFile"], shown["fromApplication"]) == (ALL_COMPARED, ALL_COMPARED, [])
    [notified] = webhook_invoices(world)
    assert (notified["verified"], notified["verifiedFromFile"], notified["fromApplication"]) == (
        ALL_COMPARED, ALL_COMPARED, [],
    )  # fmt: skip


def test_a_partner_result_without_figures_says_they_are_the_applications(world, hub):
    world.channel.script = [partner_result(None)]
    assert world.dispatch() == "issued"
    [item] = world.invoices()
    assert item["verified"] == [] and item["from_application"] == FROM_APPLICATION
    assert (item["amount"], item["tax"]) == (Decimal("5327.43"), Decimal("692.57"))  # the application's, labelled
    [shown] = get_answer(hub)["invoices"]
    assert (shown["verified"], shown["fromApplication"]) == ([], FROM_APPLICATION)
    [notified] = webhook_invoices(world)
    assert (notified["verified"], notified["fromApplication"]) == ([], FROM_APPLICATION)


@pytest.mark.parametrize(
    ("fault", "field", "expected", "reported"),
    [
        (faults.WRONG_AMOUNT, "amount", "5327.43", "5337.43"),
        (faults.WRONG_SELLER, "seller.tax_number", "91220101MA0Y5K3N4H", faults.OTHER_SELLER_TAX_NUMBER),
    ],
)
def test_a_partner_file_whose_figures_differ_is_a_mismatch_naming_the_field(world, hub, fault, field, expected,
                                                                            reported):  # fmt: skip
    world.channel.script = [partner_result(partner_xml(world.stored().application, fault=fault))]
    assert world.dispatch() == "mismatch"
    stored = world.stored()
    assert stored.status is Status.MISMATCH
    [finding] = stored.open_findings
    assert finding.kind is FindingKind.RESULT_MISMATCH
    difference = next(d for d in finding.differences if d.field == field)
    assert (difference.expected, difference.reported) == (expected, reported)
    assert [k for k, _ in world.events()] == ["ApplicationNeedsReview"]  # never InvoiceIssued


def test_a_file_naming_another_invoice_is_a_mismatch(world, hub):
    world.channel.script = [partner_result(partner_xml(world.stored().application, number="26112000000099999999"))]
    assert world.dispatch() == "mismatch"
    [finding] = world.stored().open_findings
    assert [(d.field, d.expected, d.reported) for d in finding.differences] == [
        ("file.number", NUMBER, "26112000000099999999")
    ]


def test_a_hostile_xml_file_is_not_parsed_and_needs_a_person(world, hub):
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><EInvoice><TotalAmount>&a;</TotalAmount></EInvoice>'
    world.channel.script = [partner_result(bomb)]
    assert world.dispatch() == "mismatch"
    [finding] = world.stored().open_findings
    assert finding.kind is FindingKind.UNREADABLE_RESULT
    [difference] = finding.differences
    assert difference.field == "unreadable.file" and "DOCTYPE" in (difference.reported or "")


def test_the_reader_reads_the_partner_xml_and_an_ofd_carrying_it(world):
    application = world.stored().application
    xml = partner_xml(application)
    figures = invoice_files.read_figures(xml)
    assert (figures.number, figures.code, figures.amount, figures.tax) == (
        NUMBER, None, application.amount, application.tax,
    )  # fmt: skip
    assert figures.seller_tax_number == application.seller.tax_number and figures.issued_on == date.today()
    assert [(line.amount, line.tax) for line in figures.lines] == [
        (line.amount, line.tax) for line in application.lines
    ]
    ofd = io.BytesIO()
    with zipfile.ZipFile(ofd, "w") as archive:
        archive.writestr("OFD.xml", "<ofd:OFD xmlns:ofd='http://www.ofdspec.org/2016'/>")
        archive.writestr("Doc_0/Attachs/original_invoice.xml", xml)
    assert invoice_files.read_figures(ofd.getvalue()) == figures
    assert invoice_files.read_figures(b"%PDF-1.4\n") is None
    with pytest.raises(invoice_files.FileUnreadable, match="UTF-8"):
        invoice_files.read_figures("<EInvoice/>".encode("utf-16"))
    with pytest.raises(invoice_files.FileUnreadable, match="not an EInvoice"):
        invoice_files.read_figures(b"<html/>")


# ---------------------------------------------------------------------------- resolve-issued, attested
def _review(hub, world):
    operations_tests.force(hub, CODE, Status.MANUAL_REVIEW, previous=Status.UNKNOWN)
    world.channel.can_query = False  # nothing to ask: the operator's word, checked against the application
    world.events()


def _seen(**figures) -> dict:
    invoice = {"number": NUMBER, "date": date.today().isoformat()}
    invoice.update({"amount": "5327.43", "tax": 692.57, "sellerTaxNumber": "91220101MA0Y5K3N4H"})
    invoice.update(figures)
    return {"invoice": {k: v for k, v in invoice.items() if v is not None}}


@pytest.mark.parametrize("missing", ["amount", "tax", "sellerTaxNumber"])
def test_resolve_issued_without_a_figure_is_400_naming_it_and_changes_nothing(world, hub, missing):
    _review(hub, world)
    before = operations_tests.item(hub)
    with pytest.raises(ActionInvalid) as invalid:
        operations_tests.operations(world).act(
            SYSTEM, CODE, "resolve-issued", "seen", "alice", _seen(**{missing: None})
        )
    assert invalid.value.field == f"invoice.{missing}" and "cannot be asked" in invalid.value.message
    assert operations_tests.item(hub) == before and world.invoices() == []


@pytest.mark.parametrize(("value", "why"), [("12.345", "two decimals"), ("lots", "a number"), (True, "a number")])
def test_resolve_issued_with_an_unreadable_amount_is_400(world, hub, value, why):
    _review(hub, world)
    with pytest.raises(ActionInvalid) as invalid:
        operations_tests.operations(world).act(SYSTEM, CODE, "resolve-issued", "seen", "alice", _seen(amount=value))
    assert invalid.value.field == "invoice.amount" and why in invalid.value.message


def test_resolve_issued_with_a_wrong_amount_is_a_mismatch(world, hub):
    _review(hub, world)
    after = operations_tests.operations(world).act(SYSTEM, CODE, "resolve-issued", "seen", "alice",
                                                   _seen(amount="5427.43"))  # fmt: skip
    assert after.status is Status.MISMATCH
    [finding] = after.open_findings
    assert [(d.field, d.expected, d.reported) for d in finding.differences] == [("amount", "5327.43", "5427.43")]
    [item] = world.invoices()
    assert item["attested_by_operator"] == ["seller", "direction", "issued_on", "amount", "tax"]


def test_resolve_issued_records_the_figures_as_the_operators_not_the_channels(world, hub):
    _review(hub, world)
    after = operations_tests.operations(world).act(SYSTEM, CODE, "resolve-issued", "seen at the bureau", "alice",
                                                   _seen())  # fmt: skip
    assert after.status is Status.ISSUED
    attested = ["seller", "direction", "issued_on", "amount", "tax"]
    [item] = world.invoices()
    assert (item["verified"], item["attested_by_operator"], item["from_application"]) == ([], attested,
                                                                                          ["invoice_type"])  # fmt: skip
    assert (item["amount"], item["tax"]) == (Decimal("5327.43"), Decimal("692.57"))
    [shown] = get_answer(hub)["invoices"]
    assert (shown["verified"], shown["attestedByOperator"], shown["fromApplication"]) == (
        [], attested, ["invoice_type"],
    )  # fmt: skip
    [notified] = webhook_invoices(world)
    assert (notified["verified"], notified["attestedByOperator"], notified["fromApplication"]) == (
        [], attested, ["invoice_type"],
    )  # fmt: skip


# ---------------------------------------------------------------------------- reconciliation
def test_reconciliation_reports_figures_taken_from_the_application_as_unverified(hub, settle):
    reconciled = reconciliation_tests.QueriedChannel()
    checker = reconciliation_tests.Reconciler(
        runtime.application_store(), reconciliation_tests.Channels({"scripted": reconciled}),
        reconciliation_tests.FakeFindings(), runtime.file_store(),
    )  # fmt: skip
    bare = IssuedInvoice(number="26112000000000000001", issued_on=date.today())
    figured = replace(bare, number="26112000000000000002", amount=Decimal("5327.43"), tax=Decimal("692.57"))
    settle("BARE-1", Issued((bare,)))
    settle("FIGURED-1", Issued((figured,)))
    reconciled.answers.update({"BARE-1": Issued((bare,)), "FIGURED-1": Issued((figured,))})
    report = checker.run()
    verdicts = {c.stored.application.open_apply_code: c.verdict for c in report.checked}
    assert verdicts == {"BARE-1": Verdict.FIGURES_UNVERIFIED, "FIGURED-1": Verdict.MATCHING}
    document = json.loads(
        boto3.client("s3", region_name=reconciliation_tests.REGION)
        .get_object(
            Bucket=hub.environment["FILES_BUCKET"], Key=f"reports/reconciliation/{report.window.day.isoformat()}.json"
        )["Body"]
        .read()
    )
    assert (document["matching"], document["figures_unverified"]) == (1, 1)
    [group] = document["groups"]
    assert (group["matching"], group["figures_unverified"]) == (1, 1)
