"""Every channel sandbox issues what it was asked (issue 12, item 4), and its wrong-result faults do
what they say, counted truthfully.

Real HTTP on 127.0.0.1: the hub's channel modules talk to the sandboxes as in the local run (Xunlian
``serverIssue``, Kingdee ``BILL.PUSH`` + ``BILL.INVOICE.QUERY``, the partner's ``queryInvoice``),
and the Ekuaibao sandbox pushes to a real receiver. Each test reads the invoice both as the hub
reads it (the neutral ``IssuedInvoice`` the channel module makes of the answer) and, where the wire
format has no place for a field, from the sandbox's own record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from fapiao_hub.channels.ekuaibao import INVOICE_TYPE_CODES, hand_over, parse_push
from fapiao_hub.channels.kingdee import KingdeeChannel
from fapiao_hub.channels.partner import PartnerChannel
from fapiao_hub.channels.xunlian import XunlianChannel
from fapiao_hub.domain import jsonutil
from fapiao_hub.domain.config import ChannelSettings
from fapiao_hub.domain.models import Application, Direction, InvoiceType, Line, LineNature, Party, RedReference
from fapiao_hub.domain.results import Accepted, Issued, IssuedInvoice, Rejected
from sandbox import ekuaibao as sandbox_ekuaibao
from sandbox import faults, receiver
from sandbox import kingdee as sandbox_kingdee
from sandbox import partner as sandbox_partner
from sandbox import xunlian as sandbox_xunlian
from sandbox.base import china_today

SELLER = Party(name="样例汽车科技（北京）有限公司", tax_number="91110108MA01B2C344")
BUYER = Party(name="吉林省神州红旗汽车销售服务有限公司", tax_number="91220101MA0Y5K3N4H")
BLUE_NUMBER, BLUE_CODE = "12221761", "050002000205"
TIMEOUT = 5.0

XUNLIAN_TYPES = {
    InvoiceType.VAT_SPECIAL_PAPER: "01",
    InvoiceType.VAT_NORMAL_PAPER: "04",
    InvoiceType.VAT_SPECIAL_ELECTRONIC: "08",
    InvoiceType.VAT_NORMAL_ELECTRONIC: "10",
}
ALL_TYPES = list(InvoiceType)


def line(index: int, amount: str, tax: str, *, nature: LineNature = LineNature.NORMAL, **more: Any) -> Line:
    fields: dict[str, Any] = {
        "index": index,
        "nature": nature,
        "goods_name": "*机动车*CA7201HA6TA智联旗畅版",
        "tax_code": "1090305010300000000",
        "amount": Decimal(amount),
        "tax": Decimal(tax),
        "tax_rate": Decimal("0.13"),
    }
    fields.update(more)
    return Line(**fields)


def application(invoice_type: InvoiceType, red: bool = False, code: str = "APP-1") -> Application:
    """Seed 004's example in miniature: a discount pair and a car (blue), or one car returned (red)."""
    if red:
        lines: tuple[Line, ...] = (line(0, "-5309.73", "-690.27", quantity=Decimal(-1), unit_price=Decimal("6000")),)
    else:
        lines = (
            line(0, "42.48", "5.52", nature=LineNature.DISCOUNTED, quantity=Decimal(1), unit_price=Decimal(48)),
            line(1, "-33.63", "-4.37", nature=LineNature.DISCOUNT),
            line(2, "5309.73", "690.27", quantity=Decimal(1), unit_price=Decimal(6000)),
        )
    return Application(
        source_system="sample-erp",
        open_apply_code=code,
        direction=Direction.RED if red else Direction.BLUE,
        invoice_type=invoice_type,
        company_code="W92",
        seller=SELLER,
        buyer=BUYER,
        lines=lines,
        amount=sum((li.amount for li in lines), Decimal("0.00")),
        tax=sum((li.tax for li in lines), Decimal("0.00")),
        red=RedReference(blue_invoice_number=BLUE_NUMBER, blue_invoice_code=BLUE_CODE) if red else None,
    )


def settings(kind: str, base_url: str, **more: Any) -> ChannelSettings:
    fields: dict[str, Any] = {
        "type": kind,
        "base_url": base_url,
        "dedupes_request_number": True,
        "connect_timeout_seconds": 1.0,
        "read_timeout_seconds": 3.0,
        "connect_retries": 1,
    }
    fields.update(more)
    return ChannelSettings(**fields)


def assert_reflects(invoice: IssuedInvoice, app: Application, *, lines: bool = True) -> None:
    """What the hub reads of the invoice is the application: seller, buyer, type, totals, today."""
    assert invoice.seller_tax_number == app.seller.tax_number
    assert invoice.buyer_tax_number == app.buyer.tax_number
    assert invoice.invoice_type == app.invoice_type
    assert (invoice.amount, invoice.tax) == (app.amount, app.tax)
    assert invoice.issued_on == china_today()
    assert invoice.unreadable == {}
    if lines:
        assert [(li.goods_name, li.amount, li.tax) for li in invoice.lines] == [
            (li.goods_name, li.amount, li.tax) for li in app.lines
        ]
    if app.direction == Direction.RED:
        assert invoice.amount is not None and invoice.amount < 0
        assert invoice.original_number == BLUE_NUMBER


def get(url: str) -> Any:
    response = requests.get(url, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def post(url: str, body: Any) -> Any:
    response = requests.post(url, json=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


# --------------------------------------------------------------------------- Xunlian


@pytest.fixture
def xunlian() -> Iterator[sandbox_xunlian.XunlianServer]:
    server = sandbox_xunlian.run()
    try:
        yield server
    finally:
        server.shutdown()


def xunlian_channel(server: sandbox_xunlian.XunlianServer) -> XunlianChannel:
    return XunlianChannel("xunlian", settings("xunlian", server.base_url, options={"terminal_code": "T1"}))


def xunlian_record(server: sandbox_xunlian.XunlianServer, number: str) -> dict[str, Any]:
    return get(f"{server.base_url}/_sandbox/issued/{number}")


@pytest.mark.parametrize("red", [False, True], ids=["blue", "red"])
@pytest.mark.parametrize("invoice_type", list(XUNLIAN_TYPES))
def test_xunlian_issues_the_order_it_received(xunlian, invoice_type: InvoiceType, red: bool) -> None:
    app = application(invoice_type, red)
    outcome = xunlian_channel(xunlian).issue(app, "FH-X1")
    assert isinstance(outcome, Issued), outcome
    [invoice] = outcome.invoices
    # Seed 001's answer carries the number, date and tax-exclusive amount only.
    assert invoice.amount == app.amount and invoice.issued_on == china_today() and invoice.unreadable == {}
    record = xunlian_record(xunlian, "FH-X1")
    assert record["count"] == 1
    [issued] = record["invoices"]
    assert issued["invoiceNumber"] == invoice.number
    assert (issued["sellerTaxId"], issued["sellerName"]) == (SELLER.tax_number, SELLER.name)
    assert (issued["buyerTaxId"], issued["buyerName"]) == (BUYER.tax_number, BUYER.name)
    assert issued["invoiceTypeCode"] == XUNLIAN_TYPES[invoice_type]
    assert (Decimal(issued["totalAmountExcludeTax"]), Decimal(issued["totalTaxAmount"])) == (app.amount, app.tax)
    assert issued["invoiceDate"] == china_today().isoformat()
    assert issued["red"] is red
    if red:
        assert (issued["blueInvoiceNo"], issued["blueInvoiceCode"]) == (BLUE_NUMBER, BLUE_CODE)
    # Discounts travel on the discounted line (lineAttribute 2): net of them, the lines add up.
    assert sum(Decimal(li["amountExcludeTax"]) for li in issued["lines"]) == app.amount
    assert sum(Decimal(li["taxAmount"]) for li in issued["lines"]) == app.tax


def script(base_url: str, number: str, *entries: Any) -> None:
    post(f"{base_url}/_sandbox/faults", {number: list(entries)})


def test_xunlian_wrong_amount(xunlian) -> None:
    app = application(InvoiceType.VAT_SPECIAL_ELECTRONIC)
    script(xunlian.base_url, "FH-X2", "wrong_amount")
    outcome = xunlian_channel(xunlian).issue(app, "FH-X2")
    assert isinstance(outcome, Issued)
    assert outcome.invoices[0].amount == app.amount + Decimal("10.00")
    [issued] = xunlian_record(xunlian, "FH-X2")["invoices"]
    assert Decimal(issued["totalTaxAmount"]) == app.tax + Decimal("0.60")


def test_xunlian_wrong_seller_and_wrong_type_show_in_the_record_and_the_code(xunlian) -> None:
    app = application(InvoiceType.VAT_SPECIAL_ELECTRONIC)
    channel = xunlian_channel(xunlian)
    right = channel.issue(app, "FH-X3")
    script(xunlian.base_url, "FH-X4", "wrong_seller")
    script(xunlian.base_url, "FH-X5", "wrong_type")
    seller = channel.issue(app, "FH-X4")
    kind = channel.issue(app, "FH-X5")
    assert isinstance(right, Issued) and isinstance(seller, Issued) and isinstance(kind, Issued)
    [wrong_seller] = xunlian_record(xunlian, "FH-X4")["invoices"]
    [wrong_type] = xunlian_record(xunlian, "FH-X5")["invoices"]
    assert wrong_seller["sellerTaxId"] == faults.OTHER_SELLER_TAX_NUMBER
    assert wrong_type["invoiceTypeCode"] == "10"
    codes = {o.invoices[0].code for o in (right, seller, kind)}
    assert len(codes) == 3  # the code is the seller's allocation and carries the type


def test_xunlian_extra_invoice_is_counted(xunlian) -> None:
    script(xunlian.base_url, "FH-X6", "extra_invoice")
    outcome = xunlian_channel(xunlian).issue(application(InvoiceType.VAT_NORMAL_PAPER), "FH-X6")
    assert isinstance(outcome, Issued) and len(outcome.invoices) == 1  # seed 001's body holds one
    record = xunlian_record(xunlian, "FH-X6")
    assert record["count"] == 2
    assert len({i["invoiceNumber"] for i in record["invoices"]}) == 2
    assert get(f"{xunlian.base_url}/_sandbox/issued")["counts"]["FH-X6"] == 2


def test_xunlian_reject_but_issue(xunlian) -> None:
    app = application(InvoiceType.VAT_NORMAL_PAPER)
    script(xunlian.base_url, "FH-X7", "reject_but_issue")
    channel = xunlian_channel(xunlian)
    outcome = channel.issue(app, "FH-X7")
    assert isinstance(outcome, Rejected) and outcome.code == "4002"
    assert get(f"{xunlian.base_url}/_sandbox/issued")["counts"]["FH-X7"] == 1
    again = channel.issue(app, "FH-X7")  # the same number: the invoice that exists
    assert isinstance(again, Issued) and again.duplicate
    assert again.invoices[0].number == xunlian_record(xunlian, "FH-X7")["invoices"][0]["invoiceNumber"]


# --------------------------------------------------------------------------- Kingdee


@pytest.fixture
def kingdee() -> Iterator[sandbox_kingdee.KingdeeServer]:
    server = sandbox_kingdee.run(access_token="kd-token")
    try:
        yield server
    finally:
        server.shutdown()


def kingdee_channel(server: sandbox_kingdee.KingdeeServer) -> KingdeeChannel:
    return KingdeeChannel(
        "kingdee",
        settings(
            "kingdee",
            server.base_url,
            options={"business_system_code": "FAPIAO_HUB", "submit": "bill_push"},
            credentials={"access_token": "kd-token"},
        ),
    )


def kingdee_issue(server: sandbox_kingdee.KingdeeServer, app: Application, number: str) -> Any:
    channel = kingdee_channel(server)
    pushed = channel.issue(app, number)
    assert isinstance(pushed, Accepted), pushed
    return channel.query(app, number)


@pytest.mark.parametrize("red", [False, True], ids=["blue", "red"])
@pytest.mark.parametrize("invoice_type", ALL_TYPES)
def test_kingdee_issues_the_bill_it_received(kingdee, invoice_type: InvoiceType, red: bool) -> None:
    app = application(invoice_type, red)
    outcome = kingdee_issue(kingdee, app, "FH-K1")
    assert isinstance(outcome, Issued), outcome
    [invoice] = outcome.invoices
    assert_reflects(invoice, app)


def test_kingdee_split_invoices_add_up_to_the_bill(kingdee) -> None:
    post(f"{kingdee.base_url}/_sandbox/config", {"split_into": 2})
    app = application(InvoiceType.DIGITAL_SPECIAL)
    outcome = kingdee_issue(kingdee, app, "FH-K2")
    assert isinstance(outcome, Issued) and len(outcome.invoices) == 2
    assert sum(i.amount for i in outcome.invoices) == app.amount
    assert sum(i.tax for i in outcome.invoices) == app.tax
    assert {i.seller_tax_number for i in outcome.invoices} == {SELLER.tax_number}


@pytest.mark.parametrize("when", ["push", "query"])
def test_kingdee_wrong_results(kingdee, when: str) -> None:
    app = application(InvoiceType.VAT_SPECIAL_ELECTRONIC)
    channel = kingdee_channel(kingdee)
    expected = {
        "wrong_amount": lambda i: (i.amount, i.tax) == (app.amount + Decimal("10.00"), app.tax + Decimal("0.60")),
        "wrong_seller": lambda i: i.seller_tax_number == faults.OTHER_SELLER_TAX_NUMBER,
        "wrong_type": lambda i: i.invoice_type == InvoiceType.VAT_NORMAL_ELECTRONIC,
    }
    for fault, check in expected.items():
        number = f"FH-K-{fault}-{when}"
        if when == "push":
            script(kingdee.base_url, number, fault)
            assert isinstance(channel.issue(app, number), Accepted)
        else:
            assert isinstance(channel.issue(app, number), Accepted)
            script(kingdee.base_url, number, fault)
        outcome = channel.query(app, number)
        assert isinstance(outcome, Issued), outcome
        [invoice] = outcome.invoices
        assert check(invoice), (fault, invoice)
        assert get(f"{kingdee.base_url}/_sandbox/issued")["counts"][number] == 1


def test_kingdee_extra_invoice(kingdee) -> None:
    app = application(InvoiceType.VAT_NORMAL_ELECTRONIC)
    script(kingdee.base_url, "FH-K3", "extra_invoice")
    outcome = kingdee_issue(kingdee, app, "FH-K3")
    assert isinstance(outcome, Issued) and len(outcome.invoices) == 2
    first, second = outcome.invoices
    assert first.number != second.number
    assert (second.amount, second.tax) == (app.amount, app.tax)  # a whole second invoice
    assert get(f"{kingdee.base_url}/_sandbox/issued")["counts"]["FH-K3"] == 2


def test_kingdee_reject_but_issue(kingdee) -> None:
    app = application(InvoiceType.VAT_NORMAL_ELECTRONIC)
    post(f"{kingdee.base_url}/_sandbox/config", {"issue_delay_ms": 60_000})  # issued at once all the same
    script(kingdee.base_url, "FH-K4", "reject_but_issue")
    channel = kingdee_channel(kingdee)
    refused = channel.issue(app, "FH-K4")
    assert isinstance(refused, Rejected) and refused.code == "SANDBOX_REJECT"
    assert get(f"{kingdee.base_url}/_sandbox/issued")["counts"]["FH-K4"] == 1
    later = channel.query(app, "FH-K4")
    assert isinstance(later, Issued)
    assert_reflects(later.invoices[0], app)


# --------------------------------------------------------------------------- Ekuaibao


@pytest.fixture
def hook() -> Iterator[receiver.WebhookReceiver]:
    server = receiver.run()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture
def ekuaibao(hook) -> Iterator[sandbox_ekuaibao.EkuaibaoSimulator]:
    server = sandbox_ekuaibao.run(access_token="ek-token", delay_ms=0)
    server.callback_url = hook.url
    try:
        yield server
    finally:
        server.shutdown()


def pushed(hook: receiver.WebhookReceiver, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        bodies = [n["body"] for n in hook.notifications()]
        if len(bodies) >= count:
            time.sleep(0.1)  # nothing more arrives
            bodies = [n["body"] for n in hook.notifications()]
            assert len(bodies) == count, bodies
            return bodies
        time.sleep(0.02)
    raise AssertionError(f"{count} pushes expected, got {len(hook.notifications())}")


def hand(ekuaibao: sandbox_ekuaibao.EkuaibaoSimulator, number: str, app: Application, **more: Any) -> dict:
    body = {"requestNumber": number, "order": hand_over(app), **more}
    return post(f"{ekuaibao.base_url}/_sandbox/applications", body)


@pytest.mark.parametrize("red", [False, True], ids=["blue", "red"])
@pytest.mark.parametrize("invoice_type", ALL_TYPES)
def test_ekuaibao_pushes_the_order_it_was_handed(ekuaibao, hook, invoice_type: InvoiceType, red: bool) -> None:
    app = application(invoice_type, red)
    hand(ekuaibao, "FH-E1", app)
    [body] = pushed(hook, 1)
    assert body["data"][0]["invoiceTypeCode"] == INVOICE_TYPE_CODES[invoice_type]
    [result] = parse_push(jsonutil.dumps(body))
    assert result.request_number == "FH-E1"
    assert isinstance(result.outcome, Issued)
    [invoice] = result.outcome.invoices
    assert_reflects(invoice, app)
    assert invoice.details.get("direction") == ("RED" if red else None)
    assert get(f"{ekuaibao.base_url}/_sandbox/issued") == {"counts": {"FH-E1": 1}, "total": 1}


def test_ekuaibao_no_longer_pushes_seed_000s_example(ekuaibao, hook) -> None:
    """The defect of issue 12: every order came back as 828.30 + 49.70, 026, dated 2021."""
    app = application(InvoiceType.DIGITAL_SPECIAL)
    hand(ekuaibao, "FH-E2", app)
    [body] = pushed(hook, 1)
    invoice = body["data"][0]
    assert (invoice["invoiceAmount"], invoice["invoiceTaxAmount"]) == ("5318.58", "691.42")
    assert invoice["invoiceTypeCode"] == "01" and invoice["sellerTaxNo"] == SELLER.tax_number


@pytest.mark.parametrize(
    ("fault", "field", "wrong"),
    [
        ("wrong_amount", "invoiceAmount", "5328.58"),
        ("wrong_seller", "sellerTaxNo", faults.OTHER_SELLER_TAX_NUMBER),
        ("wrong_type", "invoiceTypeCode", "02"),
    ],
)
def test_ekuaibao_wrong_results(ekuaibao, hook, fault: str, field: str, wrong: str) -> None:
    script(ekuaibao.base_url, "FH-E3", fault)
    hand(ekuaibao, "FH-E3", application(InvoiceType.DIGITAL_SPECIAL))
    [body] = pushed(hook, 1)
    assert body["result"] == 0 and body["data"][0][field] == wrong
    assert get(f"{ekuaibao.base_url}/_sandbox/issued")["counts"] == {"FH-E3": 1}


def test_ekuaibao_extra_invoice_is_a_second_invoice_in_the_push(ekuaibao, hook) -> None:
    app = application(InvoiceType.VAT_SPECIAL_ELECTRONIC)
    script(ekuaibao.base_url, "FH-E4", "extra_invoice")
    hand(ekuaibao, "FH-E4", app)
    [body] = pushed(hook, 1)
    assert body["serialNo"] == "FH-E4"
    one, two = body["data"]
    assert one["invoiceNumber"] != two["invoiceNumber"]
    assert (two["invoiceAmount"], two["invoiceTaxAmount"]) == (one["invoiceAmount"], one["invoiceTaxAmount"])
    record = get(f"{ekuaibao.base_url}/_sandbox/issued/FH-E4")
    assert record["count"] == 2 and get(f"{ekuaibao.base_url}/_sandbox/issued")["total"] == 2


def test_ekuaibao_reject_but_issue(ekuaibao, hook) -> None:
    script(ekuaibao.base_url, "FH-E5", "reject_but_issue")
    script(ekuaibao.base_url, "FH-E6", "reject")
    hand(ekuaibao, "FH-E5", application(InvoiceType.VAT_NORMAL_ELECTRONIC))
    hand(ekuaibao, "FH-E6", application(InvoiceType.VAT_NORMAL_ELECTRONIC))
    bodies = pushed(hook, 2)
    assert sorted((b["serialNo"], b["result"]) for b in bodies) == [("FH-E5", 1), ("FH-E6", 1)]
    # The refusal is the same on the wire; only the first left an invoice behind.
    assert get(f"{ekuaibao.base_url}/_sandbox/issued") == {"counts": {"FH-E5": 1}, "total": 1}


def test_ekuaibao_fault_config_by_rate_and_bad_input(ekuaibao) -> None:
    config = post(f"{ekuaibao.base_url}/_sandbox/config", {"seed": 3, "rates": {"wrong_amount": 1}})
    assert config["rates"]["wrong_amount"] == 1.0
    bad = requests.post(f"{ekuaibao.base_url}/_sandbox/faults", json={"FH": ["wrong_colour"]}, timeout=TIMEOUT)
    assert bad.status_code == 400 and "unknown fault 'wrong_colour'" in bad.json()["error"]
    bad = requests.post(
        f"{ekuaibao.base_url}/_sandbox/applications",
        json={"requestNumber": "FH", "order": {"sellerTaxNo": "X", "invoiceTypeCode": "026", "details": []}},
        timeout=TIMEOUT,
    )
    assert bad.status_code == 400 and "order.details" in bad.json()["error"]
    assert get(f"{ekuaibao.base_url}/_sandbox/issued")["total"] == 0


# --------------------------------------------------------------------------- partner


@pytest.fixture
def partner() -> Iterator[sandbox_partner.PartnerServer]:
    server = sandbox_partner.run(client_id="p-id", client_secret="p-secret")
    post(f"{server.base_url}/_sandbox/config", {"issue_after_ms": 0})
    try:
        yield server
    finally:
        server.shutdown()


def partner_query(server: sandbox_partner.PartnerServer, app: Application, number: str) -> Any:
    channel = PartnerChannel(
        "partner", settings("partner", server.base_url, credentials={"client_id": "p-id", "client_secret": "p-secret"})
    )
    return channel.query(app, number)


def register(server: sandbox_partner.PartnerServer, number: str, app: Application) -> None:
    post(f"{server.base_url}/_sandbox/applications", {"requestId": number, "order": hand_over(app)})


def xml_of(invoice: IssuedInvoice) -> str:
    [url] = [f.url for f in invoice.files if f.url]
    response = requests.get(url, timeout=TIMEOUT)
    assert response.status_code == 200
    return response.text


@pytest.mark.parametrize("red", [False, True], ids=["blue", "red"])
@pytest.mark.parametrize("invoice_type", ALL_TYPES)
def test_partner_invoice_says_the_order_it_was_handed(partner, invoice_type: InvoiceType, red: bool) -> None:
    app = application(invoice_type, red)
    register(partner, "FH-P1", app)
    outcome = partner_query(partner, app, "FH-P1")
    assert isinstance(outcome, Issued), outcome
    [invoice] = outcome.invoices
    assert invoice.unreadable == {}
    xml = xml_of(invoice)  # seed 003's answer has no field for these: the invoice's XML says them
    for tag, value in [
        ("InvoiceTypeCode", INVOICE_TYPE_CODES[invoice_type]),
        ("Red", "1" if red else "0"),
        ("SellerTaxNo", SELLER.tax_number),
        ("BuyerTaxNo", BUYER.tax_number),
        ("TotalAmount", f"{app.amount}"),
        ("TotalTax", f"{app.tax}"),
        ("IssueDate", china_today().isoformat()),
    ]:
        assert f"<{tag}>{value}</{tag}>" in xml, (tag, xml)
    assert xml.count("<Line>") == len(app.lines)
    if red:
        assert f"<OriginalInvoiceNumber>{BLUE_NUMBER}</OriginalInvoiceNumber>" in xml


def test_partner_wrong_results_in_the_invoice(partner) -> None:
    app = application(InvoiceType.VAT_SPECIAL_ELECTRONIC)
    for fault, tag, wrong in [
        ("wrong_amount", "TotalAmount", f"{app.amount + Decimal('10.00')}"),
        ("wrong_seller", "SellerTaxNo", faults.OTHER_SELLER_TAX_NUMBER),
        ("wrong_type", "InvoiceTypeCode", "026"),
    ]:
        number = f"FH-P-{fault}"
        register(partner, number, app)
        script(partner.base_url, number, fault)
        outcome = partner_query(partner, app, number)
        assert isinstance(outcome, Issued)
        assert f"<{tag}>{wrong}</{tag}>" in xml_of(outcome.invoices[0])


def test_partner_extra_invoice(partner) -> None:
    app = application(InvoiceType.DIGITAL_NORMAL)
    register(partner, "FH-P2", app)
    script(partner.base_url, "FH-P2", "extra_invoice")
    outcome = partner_query(partner, app, "FH-P2")
    assert isinstance(outcome, Issued) and len(outcome.invoices) == 2
    assert outcome.invoices[0].number != outcome.invoices[1].number
    assert get(f"{partner.base_url}/_sandbox/issued")["counts"]["FH-P2"] == 2


def test_partner_reject_but_issue(partner) -> None:
    app = application(InvoiceType.DIGITAL_NORMAL)
    register(partner, "FH-P3", app)
    script(partner.base_url, "FH-P3", "reject_but_issue")
    refused = partner_query(partner, app, "FH-P3")
    assert isinstance(refused, Rejected) and refused.code == "3"
    assert get(f"{partner.base_url}/_sandbox/issued")["counts"]["FH-P3"] == 1
    later = partner_query(partner, app, "FH-P3")
    assert isinstance(later, Issued) and len(later.invoices) == 1


def test_partner_reject_but_issue_while_still_applied(partner) -> None:
    """Scripted to stay "applied" (4): the fault issues anyway, and later queries say issued."""
    app = application(InvoiceType.DIGITAL_NORMAL)
    post(
        f"{partner.base_url}/_sandbox/applications",
        {"requestId": "FH-P4", "order": hand_over(app), "script": [{"after_ms": 0, "status": 4}]},
    )
    script(partner.base_url, "FH-P4", "reject_but_issue")
    assert isinstance(partner_query(partner, app, "FH-P4"), Rejected)
    assert isinstance(partner_query(partner, app, "FH-P4"), Issued)
    assert get(f"{partner.base_url}/_sandbox/issued")["counts"]["FH-P4"] == 1


def test_wrong_results_by_rate_over_http(xunlian) -> None:
    """``rates`` switches the wrong results on like the other faults (seeded, reproducible)."""
    config = post(f"{xunlian.base_url}/_sandbox/config", {"seed": 7, "rates": {"wrong_amount": 1.0}})
    assert config["rates"]["wrong_amount"] == 1.0 and config["rates"]["malformed"] == 0.0
    app = application(InvoiceType.VAT_NORMAL_PAPER)
    outcome = xunlian_channel(xunlian).issue(app, "FH-R1")
    assert isinstance(outcome, Issued) and outcome.invoices[0].amount == app.amount + Decimal("10.00")
    too_much = requests.post(
        f"{xunlian.base_url}/_sandbox/config", json={"rates": {"reject": 0.6, "extra_invoice": 0.6}}, timeout=TIMEOUT
    )
    assert too_much.status_code == 400 and "at most 1" in too_much.json()["error"]


def test_a_draw_without_the_new_faults_is_unchanged() -> None:
    """The wrong results come last in the draw: a configuration that does not name them decides
    exactly as before they existed."""
    rates = {"latency": 0.3, "error_5xx": 0.1, "connection_reset": 0.1, "reject": 0.1, "malformed": 0.1}
    injector = faults.FaultInjector(seed=11)
    injector.configure({"rates": rates})
    decisions = [injector.decide(None).describe() for _ in range(200)]
    assert not any(set(d) & set(faults.WRONG_RESULTS) for d in decisions)
    again = faults.FaultInjector(seed=11)
    again.configure({"rates": {**rates, **dict.fromkeys(faults.WRONG_RESULTS, 0.0)}})
    assert [again.decide(None).describe() for _ in range(200)] == decisions
