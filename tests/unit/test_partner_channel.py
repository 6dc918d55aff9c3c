"""The partner channel (fapiao_hub.channels.partner, seed 003 ``queryInvoice``): signature, answers,
and the transport over real HTTP against the sandbox (sandbox/partner.py) on 127.0.0.1."""

from __future__ import annotations

import base64
import binascii
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError

from fapiao_hub.channels import partner, wire
from fapiao_hub.channels.partner import (
    HMAC_SHA256_SORTED,
    MD5_SORTED,
    PartnerChannel,
    canonical_string,
    interpret_answer,
    sign,
    signed_params,
)
from fapiao_hub.domain.config import ChannelSettings
from fapiao_hub.domain.models import Application, Direction, InvoiceType, Line, Party
from fapiao_hub.domain.results import Accepted, InvoiceFile, InvoiceState, Issued, NotFound, NotSent, Rejected, Unknown
from sandbox import partner as sandbox_partner
from sandbox.partner import PartnerServer, run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ROOT = Path(__file__).resolve().parents[2]

CLIENT_ID = "fapiao-hub"
CLIENT_SECRET = "partner-secret-1"
BUYER_TAX_ID = "91310000631757739B"
BUYER_EMAIL = "li.lei@example.com"
FAST = (1.0, 2.0)

# Fixed inputs -> fixed signatures, computed outside Python (openssl dgst -sha256 -hmac / -md5):
#   printf '%s' 'channel=fapiao-hub&requestId=FH0123456789ABCDEFGH&timestamp=1700000000000' \
#     | openssl dgst -sha256 -hmac partner-secret-1
VECTOR_PARAMS = {"requestId": "FH0123456789ABCDEFGH", "timestamp": "1700000000000", "channel": "fapiao-hub"}
VECTOR_CANONICAL = "channel=fapiao-hub&requestId=FH0123456789ABCDEFGH&timestamp=1700000000000"
VECTOR_HMAC = "c77c0b2d7cfc7621f5754f83298018eb8d642073ddd64bde3e7a2adda8ee8910"
VECTOR_MD5 = "BD2791C38DC9DDDF63601B06A5ED1F24"


# --------------------------------------------------------------------------- builders


def make_app(**overrides: Any) -> Application:
    line = Line(
        index=0,
        goods_name="技术服务费",
        amount=Decimal("100.00"),
        tax=Decimal("6.00"),
        tax_rate=Decimal("0.06"),
    )
    fields: dict[str, Any] = {
        "source_system": "sample-erp",
        "open_apply_code": "KPTZ202104130005",
        "direction": Direction.BLUE,
        "invoice_type": InvoiceType.DIGITAL_NORMAL,
        "company_code": "VB5",
        "seller": Party(name="上海**集团有限司", tax_number="91310000631757739A"),
        "buyer": Party(name="**集团有限公司", tax_number=BUYER_TAX_ID, email=BUYER_EMAIL, mobile="13800138000"),
        "lines": (line,),
        "amount": Decimal("100.00"),
        "tax": Decimal("6.00"),
    }
    fields.update(overrides)
    return Application(**fields)


def settings(base_url: str = "http://127.0.0.1:9", **overrides: Any) -> ChannelSettings:
    fields: dict[str, Any] = {
        "type": "partner",
        "base_url": base_url,
        "connect_timeout_seconds": 1.0,
        "read_timeout_seconds": 2.0,
        "connect_retries": 2,
        "options": {},
        "credentials": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    }
    fields.update(overrides)
    return ChannelSettings(**fields)


class NoNetwork(requests.Session):
    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        raise AssertionError("the channel must not send anything")


class Raising(requests.Session):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.calls = 0

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.calls += 1
        raise self.error


def answer(*items: dict[str, Any], result: Any = 0, message: str = "SUCCESS") -> bytes:
    return json.dumps({"result": result, "message": message, "data": list(items)}, ensure_ascii=False).encode()


def interpret(content: bytes, status: int = 200, **kwargs: Any):
    return interpret_answer(status, content, request_number="R-1", **kwargs)


def issued_item(number: str = "25312000000000000001", **extra: Any) -> dict[str, Any]:
    return {"invoiceId": 11, "invoiceCode": number, "invoiceNumber": number, "status": 1, **extra}


# --------------------------------------------------------------------------- signature


def test_canonical_string_sorts_and_leaves_out_sign() -> None:
    assert canonical_string(VECTOR_PARAMS) == VECTOR_CANONICAL
    assert canonical_string({**VECTOR_PARAMS, "sign": "whatever"}) == VECTOR_CANONICAL


def test_hmac_sha256_sorted_vector() -> None:
    assert sign(VECTOR_PARAMS, CLIENT_SECRET) == VECTOR_HMAC
    assert sign(VECTOR_PARAMS, CLIENT_SECRET, HMAC_SHA256_SORTED) == VECTOR_HMAC
    assert sign({**VECTOR_PARAMS, "sign": "x"}, CLIENT_SECRET) == VECTOR_HMAC


def test_md5_sorted_secret_vector() -> None:
    assert sign(VECTOR_PARAMS, CLIENT_SECRET, MD5_SORTED) == VECTOR_MD5


def test_the_sandbox_signs_the_same_way_independently() -> None:
    assert sandbox_partner.expected_sign(VECTOR_PARAMS, CLIENT_SECRET) == VECTOR_HMAC
    assert sandbox_partner.expected_sign(VECTOR_PARAMS, CLIENT_SECRET, sandbox_partner.MD5_SORTED) == VECTOR_MD5


def test_signed_params() -> None:
    params = signed_params("fapiao-hub", CLIENT_SECRET, "FH0123456789ABCDEFGH", 1_700_000_000_000)
    assert params == {**VECTOR_PARAMS, "sign": VECTOR_HMAC}


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="sign_algorithm"):
        sign(VECTOR_PARAMS, CLIENT_SECRET, "sha1")
    with pytest.raises(ValueError, match="sign_algorithm"):
        PartnerChannel("partner", settings(options={"sign_algorithm": "sha1"}), NoNetwork())


@pytest.mark.parametrize("missing", ["client_id", "client_secret"])
def test_missing_credentials_are_refused_when_built(missing: str) -> None:
    credentials = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    del credentials[missing]
    with pytest.raises(ValueError, match=missing):
        PartnerChannel("partner", settings(credentials=credentials), NoNetwork())


# --------------------------------------------------------------------------- issue: nothing is sent


def test_issue_sends_nothing_and_is_accepted() -> None:
    channel = PartnerChannel("partner", settings(), NoNetwork())
    assert channel.can_query is True
    assert channel.dedupes_request_number is True
    assert channel.issue(make_app(), "FH-1") == Accepted(channel_ref="FH-1")
    assert channel.issue(make_app(), "FH-1") == Accepted(channel_ref="FH-1")  # again: still nothing sent


# --------------------------------------------------------------------------- seed 003's own examples


def test_seed_example_issued() -> None:
    outcome = interpret((FIXTURES / "partner_seed003_issued.json").read_bytes())
    assert isinstance(outcome, Issued)
    assert [(i.code, i.number, i.channel_invoice_id, i.state) for i in outcome.invoices] == [
        ("发票代码1", "发票号码1", "1", InvoiceState.ISSUED),
        ("发票代码2", "发票号码2", "2", InvoiceState.ISSUED),
    ]
    # The placeholder is not base64; the channel passes it on untouched (the file store decides).
    assert outcome.invoices[0].files == (InvoiceFile(content_base64="base64编码的文件流", format_hint="pdf"),)
    assert outcome.invoices[0].details == {"invoiceId": "1", "status": "1"}


def test_seed_example_void_requested_without_numbers_is_unknown() -> None:
    raw = (FIXTURES / "partner_seed003_void_requested.json").read_bytes()
    outcome = interpret(raw)
    assert isinstance(outcome, Unknown)
    assert "invoiceId 1" in outcome.reason and "no invoiceNumber" in outcome.reason
    assert outcome.raw == raw


def test_seed_example_voided() -> None:
    outcome = interpret((FIXTURES / "partner_seed003_voided.json").read_bytes())
    assert isinstance(outcome, Issued)
    first, second = outcome.invoices
    assert first.state is InvoiceState.VOIDED
    assert (first.code, first.number) == ("作废发票代码1", "作废发票号码1")
    assert (first.original_code, first.original_number) == (
        "该作废发票对应的原始发票代码1",
        "该作废发票对应的原始发票号码1",
    )
    assert second.original_number == "该作废发票对应的原始发票号码2"
    assert first.files == ()


# --------------------------------------------------------------------------- answers (pure)


def test_digital_code_equal_to_the_number_is_dropped() -> None:
    outcome = interpret(answer(issued_item(), {**issued_item("12345678"), "invoiceCode": "031002500111"}))
    assert isinstance(outcome, Issued)
    assert outcome.invoices[0].code is None
    assert outcome.invoices[1].code == "031002500111"
    empty = interpret(answer({**issued_item(), "invoiceCode": ""}))
    assert isinstance(empty, Issued) and empty.invoices[0].code is None


def test_mailed_is_issued_with_express_and_xml_details() -> None:
    item = issued_item(
        status=5,
        expressNum="SF1400000000001",
        expressName="顺丰速运",
        invoiceFile="JVBERi0=",
        invoiceXml="https://partner.example/xml/1.xml",
    )
    outcome = interpret(answer(item))
    assert isinstance(outcome, Issued)
    invoice = outcome.invoices[0]
    assert invoice.state is InvoiceState.ISSUED
    assert invoice.details == {
        "invoiceId": "11",
        "status": "5",
        "expressNum": "SF1400000000001",
        "expressName": "顺丰速运",
        "invoiceXml": "https://partner.example/xml/1.xml",
    }
    assert invoice.files == (
        InvoiceFile(content_base64="JVBERi0=", format_hint="pdf"),
        InvoiceFile(url="https://partner.example/xml/1.xml", format_hint="xml"),
    )


def test_xml_that_is_not_a_url_stays_in_details_only() -> None:
    outcome = interpret(answer(issued_item(invoiceXml="/data/xml/1.xml")))
    assert isinstance(outcome, Issued)
    assert outcome.invoices[0].files == ()
    assert outcome.invoices[0].details["invoiceXml"] == "/data/xml/1.xml"


def test_file_format_option() -> None:
    outcome = interpret(answer(issued_item(invoiceFile="UEsDBA==")), file_format="ofd")
    assert isinstance(outcome, Issued)
    assert outcome.invoices[0].files[0].format_hint == "ofd"


def test_issued_without_file_is_still_issued() -> None:
    outcome = interpret(answer(issued_item()))
    assert isinstance(outcome, Issued) and outcome.invoices[0].files == ()


@pytest.mark.parametrize(
    ("statuses", "kind"),
    [
        ([4], Accepted),
        ([4, 4], Accepted),
        ([1, 4], Accepted),  # still in progress: the rest comes later
        ([3, 4], Accepted),
        ([6, 4], Accepted),
        ([3], Rejected),
        ([3, 3], Rejected),
        ([1, 3], Issued),
        ([1, 5, 6, 2], Issued),
    ],
)
def test_status_combinations(statuses: list[int], kind: type) -> None:
    items = []
    for index, status in enumerate(statuses):
        item: dict[str, Any] = {"invoiceId": index + 1, "status": status}
        if status in (1, 2, 5, 6):
            item.update(invoiceNumber=f"2531200000000000000{index}")
        if status == 2:
            item.update(originInvoiceNumber="25312000000000009999")
        items.append(item)
    outcome = interpret(answer(*items))
    assert isinstance(outcome, kind), outcome
    if isinstance(outcome, Accepted):
        assert outcome.channel_ref == "R-1"


def test_states_of_each_status() -> None:
    items = [
        {"invoiceId": 1, "invoiceNumber": "N1", "status": 1},
        {"invoiceId": 2, "invoiceNumber": "N2", "status": 5},
        {"invoiceId": 3, "invoiceNumber": "N3", "status": 6},
        {"invoiceId": 4, "invoiceNumber": "N4", "originInvoiceNumber": "N0", "originInvoiceCode": "C0", "status": 2},
    ]
    outcome = interpret(answer(*items))
    assert isinstance(outcome, Issued)
    assert [i.state for i in outcome.invoices] == [
        InvoiceState.ISSUED,
        InvoiceState.ISSUED,
        InvoiceState.VOID_REQUESTED,
        InvoiceState.VOIDED,
    ]
    assert (outcome.invoices[3].original_number, outcome.invoices[3].original_code) == ("N0", "C0")


def test_voided_without_its_own_number_is_the_original() -> None:
    outcome = interpret(answer({"invoiceId": 1, "originInvoiceNumber": "N0", "originInvoiceCode": "C0", "status": 2}))
    assert isinstance(outcome, Issued)
    invoice = outcome.invoices[0]
    assert (invoice.number, invoice.code, invoice.original_number) == ("N0", "C0", None)
    assert invoice.state is InvoiceState.VOIDED


def test_partial_failure_keeps_the_issued_invoices_and_names_the_failed() -> None:
    outcome = interpret(answer(issued_item(), {"invoiceId": 12, "status": 3}))
    assert isinstance(outcome, Issued)
    assert len(outcome.invoices) == 1
    assert outcome.invoices[0].details["failedInvoiceIds"] == "12"


def test_failed_reason_and_code() -> None:
    plain = interpret(answer({"invoiceId": 1, "status": 3}))
    assert plain == Rejected("the partner reports 开票失败 (status 3)", code="3")
    told = interpret(answer({"invoiceId": 1, "status": 3}, message="购方税号有误"))
    assert isinstance(told, Rejected) and told.reason.endswith(": 购方税号有误")


def test_status_as_a_string_of_digits() -> None:
    outcome = interpret(answer({**issued_item(), "status": "1"}))
    assert isinstance(outcome, Issued)


@pytest.mark.parametrize(
    ("content", "number", "unreadable"),
    [
        (b'{"result": 0, "data": [{"invoiceId": 9, "status": 1}]}', "", {"invoiceNumber": ""}),
        (b'{"result": 0, "data": [{"invoiceId": 9, "status": 5, "invoiceNumber": []}]}', "", {"invoiceNumber": "[]"}),
        (b'{"result": 0, "data": [{"invoiceNumber": "N", "status": 1, "invoiceFile": 5}]}', "N", {"invoiceFile": "5"}),
        (b'{"result": 0, "data": [{"invoiceNumber": "N", "status": 1, "invoiceXml": []}]}', "N", {"invoiceXml": "[]"}),
    ],
)
def test_malformed_fields_of_an_issued_item_are_kept_raw(content: bytes, number: str, unreadable: dict) -> None:
    """An issued item with a malformed field is still an issued invoice, the raw text kept (never
    Unknown: the partner said it issued)."""
    outcome = interpret(content)
    assert isinstance(outcome, Issued), outcome
    [invoice] = outcome.invoices
    assert (invoice.number, invoice.unreadable) == (number, unreadable)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b'{"result": 0, "message": "SUCCESS", "data": [{"invoiceId": 1, "status": 1,', "not valid JSON"),
        (b"[]", "envelope"),
        (b'{"message": "SUCCESS", "data": []}', "envelope"),
        (b'{"result": true, "data": []}', "envelope"),
        (b'{"result": 0, "message": "SUCCESS"}', "without a data list"),
        (b'{"result": 0, "message": "SUCCESS", "data": null}', "without a data list"),
        (b'{"result": 0, "data": ["x"]}', "not an object"),
        (b'{"result": 0, "data": [{"invoiceId": 1, "status": 7}]}', "status 7"),
        (b'{"result": 0, "data": [{"invoiceId": 1}]}', "status None"),
        (b'{"result": 500, "message": "system busy", "data": null}', "result 500: system busy"),
        (b'{"result": 1004, "message": "no such request"}', "result 1004"),
    ],
)
def test_unreadable_or_unexpected_answers_are_unknown_with_raw(content: bytes, fragment: str) -> None:
    outcome = interpret(content)
    assert isinstance(outcome, Unknown), outcome
    assert fragment in outcome.reason
    assert outcome.raw == content


def test_not_found() -> None:
    assert interpret(answer()) == NotFound()
    assert interpret(b'{"result": 404, "message": "requestId not found", "data": null}') == NotFound()
    codes = partner.not_found_codes({"not_found_codes": "404, 1004"})
    assert codes == {"404", "1004"}
    assert interpret(b'{"result": 1004, "message": "no such request"}', not_found=codes) == NotFound()
    # Only from a 2xx answer: an HTTP 404 page is a wrong URL, not an unknown request.
    assert isinstance(interpret(b'{"result": 404}', status=404), Unknown)


def test_a_refused_signature_is_not_not_found() -> None:
    outcome = interpret(b'{"result": 401, "message": "invalid sign", "data": null}')
    assert isinstance(outcome, Unknown)
    assert outcome.reason.startswith("partner refused the signature (result 401: invalid sign)")


def test_messages_are_scrubbed() -> None:
    scrub = wire.scrubber([BUYER_TAX_ID, CLIENT_SECRET])
    content = answer(result=500, message=f"bad buyer {BUYER_TAX_ID}, key {CLIENT_SECRET}")
    outcome = interpret(content, scrub=scrub)
    assert isinstance(outcome, Unknown)
    assert BUYER_TAX_ID not in outcome.reason and CLIENT_SECRET not in outcome.reason


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (301, NotSent),
        (302, NotSent),
        (408, NotSent),
        (429, NotSent),
        (503, NotSent),
        (500, Unknown),
        (502, Unknown),
        (504, Unknown),
        (400, Unknown),
        (401, Unknown),
        (404, Unknown),
    ],
)
def test_http_statuses(status: int, kind: type) -> None:
    assert isinstance(interpret(b"<html>error</html>", status=status), kind)


# --------------------------------------------------------------------------- transport (no server)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (requests.ConnectTimeout("connect timed out"), NotSent),
        (
            requests.ConnectionError(MaxRetryError(None, "/", NewConnectionError(None, "refused"))),  # type: ignore[arg-type]
            NotSent,
        ),
        (requests.ConnectionError(MaxRetryError(None, "/", ReadTimeoutError(None, "/", "read timed out"))), Unknown),  # type: ignore[arg-type]
        (requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError())), Unknown),
        (requests.ReadTimeout("read timed out"), Unknown),
        (requests.exceptions.ChunkedEncodingError("broken"), Unknown),
        (RuntimeError("anything"), Unknown),
        (requests.exceptions.InvalidURL("bad url"), NotSent),
    ],
)
def test_transport_errors(error: Exception, kind: type) -> None:
    session = Raising(error)
    outcome = PartnerChannel("partner", settings(), session).query(make_app(), "R-1")
    assert isinstance(outcome, kind), outcome
    assert session.calls == 1
    assert CLIENT_SECRET not in str(outcome)


def test_the_session_retries_the_get() -> None:
    channel = PartnerChannel("partner", settings(connect_retries=3, options={"query_retries": "4"}))
    retry = channel.session.get_adapter("http://127.0.0.1/").max_retries
    assert (retry.connect, retry.read, retry.status, retry.other) == (3, 4, 4, 0)
    assert set(retry.status_forcelist) == {502, 503, 504}
    assert retry.allowed_methods == frozenset({"GET"})
    assert retry.raise_on_status is False
    assert channel.timeout == (1.0, 2.0)
    default = PartnerChannel("partner", settings()).session.get_adapter("http://x/").max_retries
    assert (default.read, default.status) == (2, 2)
    with pytest.raises(ValueError, match="query_retries"):
        PartnerChannel("partner", settings(options={"query_retries": "9"}))


# --------------------------------------------------------------------------- over real HTTP


@pytest.fixture(scope="module")
def server() -> Iterator[PartnerServer]:
    srv = run(port=0, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    yield srv
    srv.shutdown()


@pytest.fixture
def sandbox(server: PartnerServer) -> PartnerServer:
    assert requests.post(server.base_url + "/_sandbox/reset", timeout=FAST).status_code == 200
    control(server, "config", {"timeout_ms": 1000})
    return server


def control(server: PartnerServer, what: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{server.base_url}/_sandbox/{what}", json=body, timeout=FAST)
    assert response.status_code == 200, response.text
    return response.json()


def script(server: PartnerServer, request_id: str, *steps: dict[str, Any]) -> None:
    control(server, "applications", {"requestId": request_id, "script": list(steps)})


def oracle(server: PartnerServer) -> dict[str, Any]:
    return requests.get(f"{server.base_url}/_sandbox/issued", timeout=FAST).json()


def channel_for(server: PartnerServer, **overrides: Any) -> PartnerChannel:
    return PartnerChannel("partner", settings(server.base_url, **overrides))


def query_until(channel: PartnerChannel, request_id: str, kind: type, seconds: float = 3.0):
    deadline = time.monotonic() + seconds
    while True:
        outcome = channel.query(make_app(), request_id)
        if isinstance(outcome, kind) or time.monotonic() > deadline:
            return outcome
        time.sleep(0.05)


def query_until_state(channel: PartnerChannel, request_id: str, state: InvoiceState, seconds: float = 3.0) -> Issued:
    deadline = time.monotonic() + seconds
    while True:
        outcome = channel.query(make_app(), request_id)
        if isinstance(outcome, Issued) and outcome.invoices[0].state is state:
            return outcome
        assert time.monotonic() < deadline, f"never reached {state}: last {outcome}"
        time.sleep(0.05)


def xref_is_correct(pdf: bytes) -> bool:
    """Every xref entry points at its ``n 0 obj``; startxref points at the table."""
    startxref = int(re.search(rb"startxref\n(\d+)\n%%EOF\n$", pdf).group(1))
    assert pdf[startxref:].startswith(b"xref\n")
    lines = pdf[startxref:].split(b"\n")
    count = int(lines[1].split()[1])
    for number in range(1, count):
        offset = int(lines[2 + number][:10])
        if not pdf[offset:].startswith(b"%d 0 obj" % number):
            return False
    return True


def test_status_walk_applied_then_two_invoices(sandbox: PartnerServer) -> None:
    script(sandbox, "FH-WALK", {"after_ms": 0, "status": 4}, {"after_ms": 400, "status": 1, "invoices": 2})
    channel = channel_for(sandbox)
    assert channel.query(make_app(), "FH-WALK") == Accepted(channel_ref="FH-WALK")
    assert oracle(sandbox)["total"] == 0

    outcome = query_until(channel, "FH-WALK", Issued)
    assert isinstance(outcome, Issued)
    assert len(outcome.invoices) == 2
    numbers = [invoice.number for invoice in outcome.invoices]
    assert len(set(numbers)) == 2 and all(len(n) == 20 for n in numbers)
    for invoice in outcome.invoices:
        assert invoice.state is InvoiceState.ISSUED
        assert invoice.code is None  # 数电: the sandbox passes the number as the code
        pdf_file, xml_file = invoice.files
        assert pdf_file.format_hint == "pdf"
        pdf = base64.b64decode(pdf_file.content_base64, validate=True)
        assert pdf.startswith(b"%PDF-1.4")
        assert invoice.number.encode() in pdf
        assert xref_is_correct(pdf)
        xml = requests.get(xml_file.url, timeout=FAST)
        assert xml.status_code == 200 and f"<InvoiceNumber>{invoice.number}</InvoiceNumber>" in xml.text
        assert invoice.details["invoiceXml"] == xml_file.url
    assert oracle(sandbox)["counts"] == {"FH-WALK": 2}

    again = channel.query(make_app(), "FH-WALK")  # polling again issues nothing new
    assert isinstance(again, Issued) and [i.number for i in again.invoices] == numbers
    assert oracle(sandbox)["total"] == 2


@pytest.mark.parametrize("algorithm", [HMAC_SHA256_SORTED, MD5_SORTED])
def test_signature_verifies_at_the_sandbox(algorithm: str) -> None:
    srv = run(port=0, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, sign_algorithm=algorithm)
    try:
        requests.post(srv.base_url + "/_sandbox/config", json={"issue_after_ms": 0}, timeout=FAST)
        channel = channel_for(srv, options={"sign_algorithm": algorithm})
        assert isinstance(channel.query(make_app(), "FH-SIGN"), Issued)
        other = MD5_SORTED if algorithm == HMAC_SHA256_SORTED else HMAC_SHA256_SORTED
        refused = channel_for(srv, options={"sign_algorithm": other}).query(make_app(), "FH-SIGN")
        assert isinstance(refused, Unknown) and "invalid sign" in refused.reason
    finally:
        srv.shutdown()


def test_wrong_secret_is_a_refused_signature_not_not_found(sandbox: PartnerServer) -> None:
    control(sandbox, "config", {"auto": False})
    channel = channel_for(sandbox, credentials={"client_id": CLIENT_ID, "client_secret": "not-the-secret"})
    outcome = channel.query(make_app(), "FH-AUTH")
    assert isinstance(outcome, Unknown)
    assert outcome.reason.startswith("partner refused the signature (result 401: invalid sign)")
    assert "not-the-secret" not in outcome.reason
    assert json.loads(outcome.raw) == {"result": 401, "message": "invalid sign", "data": None}


def test_wrong_client_id_is_refused(sandbox: PartnerServer) -> None:
    channel = channel_for(sandbox, credentials={"client_id": "someone-else", "client_secret": CLIENT_SECRET})
    outcome = channel.query(make_app(), "FH-AUTH")
    assert isinstance(outcome, Unknown) and "unknown channel" in outcome.reason


def test_the_timestamp_comes_from_the_clock_and_must_be_in_the_window(sandbox: PartnerServer) -> None:
    control(sandbox, "config", {"issue_after_ms": 0})
    slow = PartnerChannel("partner", settings(sandbox.base_url), clock=lambda: time.time() - 240)
    assert isinstance(slow.query(make_app(), "FH-CLOCK"), Issued)
    skewed = PartnerChannel("partner", settings(sandbox.base_url), clock=lambda: time.time() - 600)
    outcome = skewed.query(make_app(), "FH-CLOCK")
    assert isinstance(outcome, Unknown) and "timestamp out of window" in outcome.reason


def test_void_requested_then_voided(sandbox: PartnerServer) -> None:
    script(
        sandbox,
        "FH-VOID",
        {"after_ms": 0, "status": 1, "invoices": 2},
        {"after_ms": 400, "status": 6},
        {"after_ms": 800, "status": 2},
    )
    channel = channel_for(sandbox)
    issued = channel.query(make_app(), "FH-VOID")
    assert isinstance(issued, Issued)
    blue = [i.number for i in issued.invoices]

    requested = query_until_state(channel, "FH-VOID", InvoiceState.VOID_REQUESTED)
    assert [i.state for i in requested.invoices] == [InvoiceState.VOID_REQUESTED] * 2
    assert [i.number for i in requested.invoices] == blue
    assert all(i.files == () for i in requested.invoices)

    voided = query_until_state(channel, "FH-VOID", InvoiceState.VOIDED)
    assert [i.state for i in voided.invoices] == [InvoiceState.VOIDED] * 2
    assert [i.original_number for i in voided.invoices] == blue
    assert all(i.number not in blue for i in voided.invoices)
    summary = oracle(sandbox)
    assert summary["counts"] == {"FH-VOID": 2} and summary["voided"] == {"FH-VOID": 2}


def test_mailed_carries_express_details(sandbox: PartnerServer) -> None:
    control(
        sandbox,
        "applications",
        {"requestId": "FH-MAIL", "digital": False, "script": [{"after_ms": 0, "status": 5}]},
    )
    outcome = channel_for(sandbox).query(make_app(), "FH-MAIL")
    assert isinstance(outcome, Issued)
    invoice = outcome.invoices[0]
    assert invoice.state is InvoiceState.ISSUED
    assert len(invoice.number) == 8 and invoice.code is not None and len(invoice.code) == 12
    assert invoice.details["expressName"] == "顺丰速运"
    assert invoice.details["expressNum"].startswith("SF")
    assert invoice.details["status"] == "5"


def test_failed_is_rejected_and_the_message_scrubbed(sandbox: PartnerServer) -> None:
    script(sandbox, "FH-FAIL", {"after_ms": 0, "status": 3, "message": f"购方税号 {BUYER_TAX_ID} 校验失败"})
    outcome = channel_for(sandbox).query(make_app(), "FH-FAIL")
    assert isinstance(outcome, Rejected)
    assert outcome.code == "3"
    assert BUYER_TAX_ID not in outcome.reason and "校验失败" in outcome.reason
    assert oracle(sandbox)["total"] == 0


def test_mixed_issued_and_applied_is_still_in_progress(sandbox: PartnerServer) -> None:
    script(sandbox, "FH-MIX", {"after_ms": 0, "statuses": [1, 4]}, {"after_ms": 400, "statuses": [1, 1]})
    channel = channel_for(sandbox)
    assert isinstance(channel.query(make_app(), "FH-MIX"), Accepted)
    outcome = query_until(channel, "FH-MIX", Issued)
    assert isinstance(outcome, Issued) and len(outcome.invoices) == 2


@pytest.mark.parametrize("not_found_result", [404, 0])
def test_unknown_request_with_auto_off_is_not_found(sandbox: PartnerServer, not_found_result: int) -> None:
    control(sandbox, "config", {"auto": False, "not_found_result": not_found_result})
    assert channel_for(sandbox).query(make_app(), "FH-NOBODY") == NotFound()
    assert oracle(sandbox)["attempts"] == {"FH-NOBODY": 1}


def test_a_script_not_started_yet_is_not_found(sandbox: PartnerServer) -> None:
    script(sandbox, "FH-LATER", {"after_ms": 60_000, "status": 4})
    assert channel_for(sandbox).query(make_app(), "FH-LATER") == NotFound()


def test_auto_walks_any_request(sandbox: PartnerServer) -> None:
    control(sandbox, "config", {"auto": True, "issue_after_ms": 150, "invoices_per_application": 3})
    channel = channel_for(sandbox)
    assert isinstance(channel.query(make_app(), "FH-AUTO"), Accepted)
    outcome = query_until(channel, "FH-AUTO", Issued)
    assert isinstance(outcome, Issued) and len(outcome.invoices) == 3
    assert oracle(sandbox)["counts"] == {"FH-AUTO": 3}


def test_auto_fail_and_void_rates(sandbox: PartnerServer) -> None:
    control(sandbox, "config", {"issue_after_ms": 0, "fail_rate": 1})
    assert isinstance(channel_for(sandbox).query(make_app(), "FH-AF"), Rejected)
    control(sandbox, "config", {"issue_after_ms": 200, "fail_rate": 0, "void_rate": 1})
    channel = channel_for(sandbox)
    deadline = time.monotonic() + 3
    states = []
    while time.monotonic() < deadline:
        outcome = channel.query(make_app(), "FH-AV")
        state = outcome.invoices[0].state if isinstance(outcome, Issued) else type(outcome).__name__
        if not states or states[-1] != state:
            states.append(state)
        if state is InvoiceState.VOIDED:
            break
        time.sleep(0.02)
    assert states[0] == "Accepted" and states[-1] is InvoiceState.VOIDED
    assert InvoiceState.ISSUED in states


def test_malformed_answer_is_unknown_with_the_raw_bytes(sandbox: PartnerServer) -> None:
    control(sandbox, "config", {"issue_after_ms": 0})
    control(sandbox, "faults", {"FH-BAD": ["malformed"]})
    outcome = channel_for(sandbox).query(make_app(), "FH-BAD")
    assert isinstance(outcome, Unknown) and "not valid JSON" in outcome.reason
    assert outcome.raw and outcome.raw.startswith(b'{"result": 0')
    assert isinstance(channel_for(sandbox).query(make_app(), "FH-BAD"), Issued)  # the next answer is fine


def test_garbage_file_is_passed_on_and_fails_strict_decoding(sandbox: PartnerServer) -> None:
    control(sandbox, "config", {"issue_after_ms": 0})
    control(sandbox, "faults", {"FH-FILE": ["bad_file"]})
    outcome = channel_for(sandbox).query(make_app(), "FH-FILE")
    assert isinstance(outcome, Issued)
    content = outcome.invoices[0].files[0].content_base64
    with pytest.raises((binascii.Error, ValueError)):
        base64.b64decode(content, validate=True)
    good = channel_for(sandbox).query(make_app(), "FH-FILE")
    assert isinstance(good, Issued)
    assert base64.b64decode(good.invoices[0].files[0].content_base64, validate=True).startswith(b"%PDF")


def test_bad_file_by_rate(sandbox: PartnerServer) -> None:
    config = control(sandbox, "config", {"issue_after_ms": 0, "rates": {"bad_file": 1}})
    assert config["rates"]["bad_file"] == 1
    outcome = channel_for(sandbox).query(make_app(), "FH-RATE")
    assert isinstance(outcome, Issued)
    assert outcome.invoices[0].files[0].content_base64 == sandbox_partner.GARBAGE_FILE


def test_gateway_errors_are_retried_by_the_get(sandbox: PartnerServer) -> None:
    control(sandbox, "config", {"issue_after_ms": 0})
    control(sandbox, "faults", {"FH-5XX": ["error_502", "error_503", "ok"]})
    outcome = channel_for(sandbox).query(make_app(), "FH-5XX")
    assert isinstance(outcome, Issued)
    assert oracle(sandbox)["attempts"] == {"FH-5XX": 3}


@pytest.mark.parametrize(("entry", "kind"), [("error_502", Unknown), ("error_503", NotSent)])
def test_gateway_errors_after_the_retries(sandbox: PartnerServer, entry: str, kind: type) -> None:
    control(sandbox, "faults", {"FH-5XX": [entry] * 3})
    outcome = channel_for(sandbox).query(make_app(), "FH-5XX")
    assert isinstance(outcome, kind), outcome
    assert oracle(sandbox)["attempts"] == {"FH-5XX": 3}  # 1 + query_retries (2)


def test_http_500_is_not_retried(sandbox: PartnerServer) -> None:
    control(sandbox, "faults", {"FH-500": ["error_500", "ok"]})
    outcome = channel_for(sandbox).query(make_app(), "FH-500")
    assert isinstance(outcome, Unknown) and outcome.reason.startswith("HTTP 500")
    assert oracle(sandbox)["attempts"] == {"FH-500": 1}


def test_no_retries_when_switched_off(sandbox: PartnerServer) -> None:
    control(sandbox, "faults", {"FH-NR": ["error_502", "ok"]})
    outcome = channel_for(sandbox, options={"query_retries": "0"}).query(make_app(), "FH-NR")
    assert isinstance(outcome, Unknown)
    assert oracle(sandbox)["attempts"] == {"FH-NR": 1}


def test_a_reset_while_reading_is_retried(sandbox: PartnerServer) -> None:
    control(sandbox, "config", {"issue_after_ms": 0})
    control(sandbox, "faults", {"FH-RST": ["connection_reset", "ok"]})
    outcome = channel_for(sandbox).query(make_app(), "FH-RST")
    assert isinstance(outcome, Issued)
    assert oracle(sandbox)["attempts"] == {"FH-RST": 2}


def test_read_timeouts_are_retried_then_unknown(sandbox: PartnerServer) -> None:
    control(sandbox, "faults", {"FH-SLOW": ["timeout_after_issue"] * 3})
    outcome = channel_for(sandbox, read_timeout_seconds=0.3).query(make_app(), "FH-SLOW")
    assert isinstance(outcome, Unknown)
    assert "read timeout" in outcome.reason
    assert oracle(sandbox)["attempts"] == {"FH-SLOW": 3}


def test_partner_side_error_is_unknown(sandbox: PartnerServer) -> None:
    control(sandbox, "faults", {"FH-BUSY": ["reject"]})
    outcome = channel_for(sandbox).query(make_app(), "FH-BUSY")
    assert isinstance(outcome, Unknown) and "result 500" in outcome.reason


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connection_refused_is_not_sent() -> None:
    outcome = PartnerChannel("partner", settings(f"http://127.0.0.1:{_closed_port()}")).query(make_app(), "R")
    assert isinstance(outcome, NotSent) and "nothing was sent" in outcome.reason


# --------------------------------------------------------------------------- the sandbox itself


def test_sandbox_checks_parameters(sandbox: PartnerServer) -> None:
    def result(**params: str) -> dict[str, Any]:
        return requests.get(sandbox.query_url, params=params, timeout=FAST).json()

    good = signed_params(CLIENT_ID, CLIENT_SECRET, "FH-P", int(time.time() * 1000))
    assert result(**good)["result"] == 0
    for name in ("channel", "timestamp", "sign", "requestId"):
        partial = {k: v for k, v in good.items() if k != name}
        assert result(**partial) == {"result": 400, "message": f"missing parameter: {name}", "data": None}
    assert result(**{**good, "sign": good["sign"].upper()})["message"] == "invalid sign"
    assert result(**{**good, "requestId": "FH-Q"})["message"] == "invalid sign"  # sign covers requestId


def test_sandbox_control_validation(sandbox: PartnerServer) -> None:
    def post(what: str, body: Any) -> int:
        return requests.post(f"{sandbox.base_url}/_sandbox/{what}", json=body, timeout=FAST).status_code

    assert post("config", {"nope": 1}) == 400
    assert post("config", {"fail_rate": 2}) == 400
    assert post("config", {"auto": False, "rates": {"bogus": 1}}) == 400
    assert requests.get(sandbox.base_url + "/_sandbox/config", timeout=FAST).json()["auto"] is True  # unchanged
    assert post("faults", {"R": ["bogus"]}) == 400
    assert post("applications", {"requestId": "R", "script": []}) == 400
    assert post("applications", {"requestId": "R", "script": [{"status": 9}]}) == 400
    assert post("applications", {"requestId": "R", "script": [{"after_ms": 5, "status": 1}, {"after_ms": 1}]}) == 400
    assert post("applications", {"script": [{"status": 1}]}) == 400


def test_sandbox_reset_forgets_everything(sandbox: PartnerServer) -> None:
    control(sandbox, "config", {"issue_after_ms": 0, "auto": True})
    channel_for(sandbox).query(make_app(), "FH-R")
    assert oracle(sandbox)["total"] == 1
    control(sandbox, "faults", {"FH-R": ["error_500"]})
    control(sandbox, "reset", {})
    assert oracle(sandbox) == {"counts": {}, "total": 0, "voided": {}, "attempts": {}}
    assert requests.get(sandbox.base_url + "/_sandbox/faults", timeout=FAST).json() == {}


def test_invoice_pdf_is_well_formed() -> None:
    pdf = sandbox_partner.invoice_pdf(["Invoice number: 12345678", "a (paren) and \\ backslash", "中文"])
    assert pdf.startswith(b"%PDF-1.4\n") and pdf.endswith(b"%%EOF\n")
    assert xref_is_correct(pdf)
    assert b"(Invoice number: 12345678)" in pdf
    assert b"\\(paren\\)" in pdf
    length = int(re.search(rb"/Length (\d+)", pdf).group(1))
    stream = pdf.split(b"stream\n", 1)[1].split(b"\nendstream", 1)[0]
    assert len(stream) == length


def test_python_m_sandbox_partner_starts() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.partner", "--port", "0", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        base_url = re.search(r"on (http://127\.0\.0\.1:\d+)", line).group(1)
        assert requests.get(base_url + "/_sandbox/config", timeout=FAST).json()["auto"] is True
    finally:
        process.terminate()
        process.wait(timeout=5)
