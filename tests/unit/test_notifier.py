"""The notifier end to end: an order goes in through intake, a dispatcher (scripted channel) decides
its outcome, the outcome event travels the bus's OutcomesRule to the notify queue (moto), and the
real notifier handler POSTs it to a real HTTP receiver on 127.0.0.1. Lambda's event source mapping
is played step by step: receive, invoke, delete what succeeded."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from fapiao_hub import runtime
from fapiao_hub.channels.ekuaibao import parse_push
from fapiao_hub.domain.models import InvoiceType, Status
from fapiao_hub.domain.results import InvoiceFile, InvoiceState, Issued, IssuedInvoice, Rejected
from fapiao_hub.infra import signatures
from fapiao_hub.infra.events import EventPublisher
from fapiao_hub.infra.signatures import sign_webhook, verify_webhook
from fapiao_hub.usecases.dispatch import Dispatcher, DispatchPolicy
from fapiao_hub.usecases.notifications import idempotency_key
from fapiao_hub.usecases.notify import loggable_url, retry_delay, with_query
from tests.unit.conftest import REGION, event, hub_config_document, load_handler

CODE = "zcxs1825830330588741634"
SECRET = "whsec-notifier-test-secret"
ACCESS_TOKEN = "ID01w4CBe9Vjpd:xgJ3wajigF25H0"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
INVOICE = IssuedInvoice(
    number="26112000000012221761",
    issued_on=date.today(),  # the hub refuses an invoice dated before the application (verification)
    amount=Decimal("5327.43"),
    tax=Decimal("692.57"),
    check_code="1188",
    invoice_type=InvoiceType.DIGITAL_SPECIAL,
    files=(InvoiceFile(content_base64=base64.b64encode(PDF).decode("ascii"), format_hint="pdf"),),
)


# --------------------------------------------------------------------------- a real receiver


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    script: list[int] = field(default_factory=list)  # statuses to answer, in order; then 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.received.append(
                    Received(parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status = state.script.pop(0) if state.script else 200
            answer = b'{"ok": true}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/fapiao"
    yield state
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------- the hub around it


@dataclass
class ScriptedChannel:
    script: list = field(default_factory=list)
    dedupes_request_number: bool = True
    can_query: bool = False
    name: str = "scripted"

    def issue(self, application, request_number):
        return self.script.pop(0)

    def query(self, application, request_number):
        return self.script.pop(0)


@dataclass
class Directory:
    channel: ScriptedChannel

    def channel_for(self, application, proposed):
        return ("scripted", self.channel)

    def quiet_period(self, name):
        return 60


class Context:
    function_name = "NotifierFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:NotifierFunction"
    aws_request_id = "test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def sqs_event(messages: list[dict], queue_arn: str) -> dict:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"]},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


class World:
    def __init__(self, hub, receiver: Receiver, config_file: str):
        self.hub = hub
        self.receiver = receiver
        self.config_file = config_file
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.queue_url = hub.environment["NOTIFY_QUEUE_URL"]
        self.dlq_url = hub.environment["NOTIFY_DLQ_URL"]
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.handler = load_handler("notifier", "notifier_app_under_test")
        self.visibility_calls: list[tuple[str, int]] = []
        self.handled: list[dict] = []  # every batch answer
        self.bodies: list[str] = []  # every record's body handed to the handler

    def configure(self, **webhook: Any) -> None:
        document = hub_config_document()
        document["business_systems"]["sample-erp"]["webhook"] = {"url": self.receiver.url, **webhook}
        with open(self.config_file, "w", encoding="utf-8") as out:
            json.dump(document, out)
        runtime.reset()  # forget the configuration (and the notifier) read so far
        built = runtime.notifier()
        real = built.visibility

        def recorded(receipt_handle: str, seconds: int) -> None:
            self.visibility_calls.append((receipt_handle, seconds))
            real(receipt_handle, seconds)  # the real port, against moto's queue

        built.visibility = recorded

    def submit(self) -> None:
        assert self.hub.call(event("intake-post-blue.json"))[0] == 200
        self.hub.queued()  # intake's dispatch message: the test drives dispatch itself

    def dispatcher(self, *outcomes: object) -> Dispatcher:
        return Dispatcher(
            runtime.application_store(),
            runtime.dispatch_queue(),
            runtime.event_publisher(),
            Directory(ScriptedChannel(script=list(outcomes))),
            runtime.file_store(),
            policy=DispatchPolicy(),
        )

    def decide(self, *outcomes: object) -> str:
        """The dispatcher sends the application to a channel that answers ``outcomes``."""
        return self.dispatcher(*outcomes).dispatch("sample-erp", CODE)

    def receive(self) -> list[dict]:
        return self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])

    def pump(self, rounds: int = 10) -> int:
        """Deliver what the queue holds until it is empty (or ``rounds`` receives): the event source
        mapping's loop. A failed record's visibility (set by the notifier) is then cut to 0: the test
        plays the clock, nobody waits. Returns how many batches were handled."""
        handled = 0
        for _ in range(rounds):
            messages = self.receive()
            if not messages:
                break
            self.bodies += [m["Body"] for m in messages]
            answer = self.handler(sqs_event(messages, self.queue_arn), Context())
            self.handled.append(answer)
            handled += 1
            failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
            for m in messages:
                if m["MessageId"] in failed:
                    self.release(m)
                else:
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return handled

    def release(self, message: dict) -> None:
        """A message the test received itself becomes visible again at once."""
        self.sqs.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )

    def depth(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def notes(self) -> list[str]:
        stored = runtime.application_store().get("sample-erp", CODE)
        return [t.note or "" for t in stored.history]


@pytest.fixture
def world(hub, receiver) -> World:
    return World(hub, receiver, hub.environment["HUB_CONFIG_FILE"])


# --------------------------------------------------------------------------- end to end


def test_outcome_rule_delivers_to_the_notify_queue_and_the_hub_format_is_signed(world, receiver):
    world.configure(format="hub", secret=SECRET)
    world.submit()
    assert world.decide(Issued((INVOICE,))) == "issued"

    # moto delivered the bus's OutcomesRule to its SQS target, as EventBridge does.
    [message] = world.receive()
    delivered = json.loads(message["Body"])
    assert delivered["detail-type"] == "InvoiceIssued" and delivered["source"] == "fapiao-hub"
    assert delivered["detail"]["open_apply_code"] == CODE and "id" in delivered and "time" in delivered
    world.release(message)

    assert world.pump() == 1
    assert world.handled == [{"batchItemFailures": []}]
    assert world.depth(world.queue_url) == 0 and world.depth(world.dlq_url) == 0
    [request] = receiver.received
    assert request.path == "/hooks/fapiao" and request.query == {}
    headers = request.headers
    assert headers["content-type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-fapiao-event-id"])
    assert abs(int(headers["x-fapiao-timestamp"]) - time.time()) < 60
    assert headers["x-fapiao-signature"] == sign_webhook(SECRET, headers["x-fapiao-timestamp"], request.body)

    # The documented snippet (README) and the module's function both accept it...
    snippet = _readme_snippet()
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "README-snippet", "exec"), namespace)  # noqa: S102 - our own docstring
    documented = namespace["verify_webhook"]
    assert documented(SECRET, dict(request.headers), request.body)
    assert verify_webhook(SECRET, request.headers, request.body)
    # ...and both refuse a changed body, another secret, and an old timestamp.
    for check in (documented, verify_webhook):
        assert not check(SECRET, request.headers, request.body + b" ")
        assert not check("another-secret", request.headers, request.body)
        assert not check(SECRET, request.headers, request.body, now=time.time() + 301)

    body = request.json()
    assert body["id"] == headers["x-fapiao-event-id"] and body["type"] == "InvoiceIssued"
    assert body["schema_version"] == "1" and body["occurred_at"] == delivered["time"]
    assert body["application"] == {
        "openApplyCode": CODE, "status": "ISSUED", "reason": None, "channel": "scripted",
        "requestNumber": runtime.application_store().get("sample-erp", CODE).request_number,
    }  # fmt: skip
    [invoice] = body["invoices"]
    assert invoice == {
        "invoiceNumber": "26112000000012221761",
        "invoiceCode": None,
        "invoiceDate": date.today().isoformat(),
        "invoiceType": "DIGITAL_SPECIAL",
        "amount": 5327.43,
        "tax": 692.57,
        "status": "ISSUED",
        # What was compared with the channel's report (issue 18): this channel states no seller.
        "verified": ["invoice_type", "direction", "issued_on", "amount", "tax"],
        "verifiedFromFile": [],
        "attestedByOperator": [],
        "fromApplication": ["seller"],
        "files": [{"format": "pdf", "size": len(PDF), "sha256": hashlib.sha256(PDF).hexdigest()}],
    }
    assert world.notes()[-1] == "notified sample-erp (hub): 200"


def test_ekuaibao_format_is_seed_000s_push_with_the_access_token(world, receiver):
    world.configure(
        format="ekuaibao", url=receiver.url + "?tenant=acme", access_token=ACCESS_TOKEN, channel_code="jcsk"
    )
    world.submit()
    assert world.decide(Issued((INVOICE,))) == "issued"
    assert world.pump() == 1

    [request] = receiver.received
    assert request.query == {"tenant": ["acme"], "accessToken": [ACCESS_TOKEN]}
    [result] = parse_push(request.body, channel_codes=["jcsk"])
    assert result.request_number == CODE  # serialNo: the openApplyCode
    [invoice] = result.outcome.invoices
    assert (invoice.number, invoice.code, invoice.issued_on) == ("26112000000012221761", None, date.today())
    assert (invoice.amount, invoice.tax, invoice.invoice_type) == (
        Decimal("5327.43"), Decimal("692.57"), InvoiceType.DIGITAL_SPECIAL
    )  # fmt: skip
    assert invoice.state is InvoiceState.ISSUED
    # orderNo (业务请求流水号) carries the request number the channel was sent.
    assert invoice.details["order_no"] == runtime.application_store().get("sample-erp", CODE).request_number
    # The channel reported no lines: the application's (one invoice for it) are the invoice's.
    assert sum(line.amount for line in invoice.lines) == Decimal("5327.43")
    assert sum(line.tax for line in invoice.lines) == Decimal("692.57")
    assert invoice.details["buyer_name"] == "吉林省神州红旗汽车销售服务有限公司"
    raw = request.json()
    assert raw["result"] == 0 and raw["channelCode"] == "jcsk" and raw["data"][0]["invoicingStatus"] == "00"
    assert world.notes()[-1] == "notified sample-erp (ekuaibao): 200"


def test_a_voided_invoice_goes_to_ekuaibao_as_result_0_with_status_03(world, receiver):
    world.configure(format="ekuaibao", access_token=ACCESS_TOKEN)
    world.submit()
    world.decide(Issued((INVOICE,)))
    assert world.pump() == 1
    # Later the channel reports the invoice voided (a callback or a query: the same path).
    stored = runtime.application_store().get("sample-erp", CODE)
    voided = replace(INVOICE, state=InvoiceState.VOIDED, files=())
    assert world.dispatcher().apply_result(stored, Issued((voided,)), ScriptedChannel()) == "voided"
    assert world.pump() == 1

    first, second = receiver.received
    assert first.json()["data"][0]["invoicingStatus"] == "00"
    assert second.json()["result"] == 0 and second.json()["data"][0]["invoicingStatus"] == "03"
    [result] = parse_push(second.body)
    assert [i.state for i in result.outcome.invoices] == [InvoiceState.VOIDED]
    assert first.headers["x-fapiao-event-id"] != second.headers["x-fapiao-event-id"]
    assert world.notes()[-1] == "notified sample-erp (ekuaibao): 200"


def test_retries_with_growing_delays_then_success(world, receiver):
    world.configure(format="hub", secret=SECRET)
    receiver.script = [503, 503, 200]
    world.submit()
    world.decide(Issued((INVOICE,)))

    assert world.pump() == 3
    assert [len(a["batchItemFailures"]) for a in world.handled] == [1, 1, 0]
    assert [seconds for _, seconds in world.visibility_calls] == [30, 60]  # ChangeMessageVisibility
    assert len(receiver.received) == 3
    assert len({r.headers["x-fapiao-event-id"] for r in receiver.received}) == 1
    assert world.notes()[-3:] == [
        "notify attempt 1 failed: 503",
        "notify attempt 2 failed: 503",
        "notified sample-erp (hub): 200",
    ]
    assert world.depth(world.queue_url) == 0 and world.depth(world.dlq_url) == 0
    stored = runtime.application_store().get("sample-erp", CODE)
    assert stored.status is Status.ISSUED and all(t.status == "ISSUED" for t in stored.history[-3:])


def test_a_refusal_goes_to_the_dlq_at_once(world, receiver):
    world.configure(format="hub", secret=SECRET)
    receiver.script = [400]
    world.submit()
    world.decide(Issued((INVOICE,)))

    assert world.pump() == 1
    assert world.handled == [{"batchItemFailures": []}]
    assert len(receiver.received) == 1 and world.visibility_calls == []
    assert world.depth(world.queue_url) == 0
    [dead] = world.sqs.receive_message(QueueUrl=world.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert json.loads(dead["Body"])["detail-type"] == "InvoiceIssued"  # as it came: a redrive re-delivers it
    assert dead["MessageAttributes"]["reason"]["StringValue"] == "400"
    assert dead["MessageAttributes"]["source_system"]["StringValue"] == "sample-erp"
    assert world.notes()[-1] == "notification refused by sample-erp: 400; sent to the DLQ"


def test_the_same_outcome_published_twice_carries_the_same_event_id(world, receiver):
    world.configure(format="hub", secret=SECRET)
    world.submit()
    world.decide(Issued((INVOICE,)))
    [message] = world.receive()
    first = json.loads(message["Body"])
    world.release(message)
    # The workflow publishes again (a crash between publishing and clearing the pending event).
    publisher = EventPublisher(boto3.client("events", region_name=REGION), world.hub.environment["EVENT_BUS_NAME"])
    publisher.publish({"detail_type": first["detail-type"], "detail": first["detail"]})

    assert world.pump() >= 1
    assert len(receiver.received) == 2
    assert len({json.loads(b)["id"] for b in world.bodies}) == 2  # two EventBridge events...
    ids = {r.headers["x-fapiao-event-id"] for r in receiver.received}  # ...one outcome
    assert len(ids) == 1 and {r.json()["id"] for r in receiver.received} == ids
    assert world.depth(world.queue_url) == 0


def test_a_rejection_is_notified_with_its_reason(world, receiver):
    world.configure(format="hub", secret=SECRET)
    world.submit()
    assert world.decide(Rejected("购方税号不存在", code="E102")) == "rejected"
    assert world.pump() == 1
    [request] = receiver.received
    body = request.json()
    assert body["type"] == "ApplicationRejected" and body["invoices"] == []
    assert body["application"]["status"] == "REJECTED"
    assert "购方税号不存在" in body["application"]["reason"] and "E102" in body["application"]["reason"]
    assert verify_webhook(SECRET, request.headers, request.body)


def test_a_rejection_in_the_ekuaibao_format_is_result_1(world, receiver):
    world.configure(format="ekuaibao", access_token=ACCESS_TOKEN)
    world.submit()
    world.decide(Rejected("购方税号不存在"))
    assert world.pump() == 1
    [request] = receiver.received
    [result] = parse_push(request.body)
    assert result.request_number == CODE and "购方税号不存在" in result.outcome.reason
    assert request.json()["result"] == 1


def test_stuck_and_review_have_no_ekuaibao_equivalent(world, receiver):
    world.configure(format="ekuaibao", access_token=ACCESS_TOKEN)
    world.submit()
    world.decide(Issued((INVOICE,)))
    world.pump()
    receiver.received.clear()
    stuck = _event_body("ApplicationStuck", status="STUCK", reason="unreachable")
    world.sqs.send_message(QueueUrl=world.queue_url, MessageBody=json.dumps(stuck))
    assert world.pump() == 1
    assert receiver.received == [] and world.handled[-1] == {"batchItemFailures": []}
    assert world.notes()[-1] == "ApplicationStuck not sent: no Ekuaibao equivalent"


def test_no_webhook_is_a_success_and_sends_nothing(world, receiver):
    world.configure(format="hub", secret=SECRET)
    other = _event_body("InvoiceIssued", status="ISSUED")
    other["detail"]["source_system"] = "other-erp"
    world.sqs.send_message(QueueUrl=world.queue_url, MessageBody=json.dumps(other))
    assert world.pump() == 1
    assert world.handled == [{"batchItemFailures": []}] and receiver.received == []


def test_connection_errors_are_retried_and_secrets_never_logged(world, receiver, capsys, caplog):
    world.configure(format="ekuaibao", url="http://127.0.0.1:9/refused?x=1", access_token=ACCESS_TOKEN, secret=SECRET)
    world.submit()
    world.decide(Issued((INVOICE,)))
    capsys.readouterr()
    assert world.pump(rounds=2) == 2
    assert [len(a["batchItemFailures"]) for a in world.handled] == [1, 1]
    assert [seconds for _, seconds in world.visibility_calls] == [30, 60]
    assert world.notes()[-1] == "notify attempt 2 failed: ConnectionError"
    logged = capsys.readouterr()
    text = logged.out + logged.err + "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "notification failed" in text and "http://127.0.0.1:9/refused" in text
    for secret in (ACCESS_TOKEN, SECRET, "x=1", "ID01w4CBe9Vjpd"):
        assert secret not in text


def test_the_run_defers_what_it_has_no_time_for(world, receiver):
    world.configure(format="hub", secret=SECRET)
    world.submit()
    world.decide(Issued((INVOICE,)))
    [message] = world.receive()

    class Late(Context):
        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 5_000  # the webhook's timeout is 10 s

    answer = world.handler(sqs_event([message], world.queue_arn), Late())
    assert len(answer["batchItemFailures"]) == 1 and receiver.received == []
    assert [seconds for _, seconds in world.visibility_calls] == [0]
    assert world.pump() == 1 and len(receiver.received) == 1


# --------------------------------------------------------------------------- pure functions


def test_idempotency_key_ignores_what_changes_between_publications():
    detail = {
        "schema_version": "1", "source_system": "s", "open_apply_code": "A1", "status": "ISSUED",
        "invoices": [{"number": "2", "code": None, "amount": 1}, {"number": "1", "code": "C"}],
    }  # fmt: skip
    key = idempotency_key("InvoiceIssued", detail)
    reordered = {**detail, "invoices": list(reversed(detail["invoices"])), "schema_version": "2", "channel": "x"}
    assert idempotency_key("InvoiceIssued", reordered) == key and len(key) == 32
    assert idempotency_key("InvoiceVoided", {**detail, "status": "VOIDED"}) != key
    assert idempotency_key("InvoiceIssued", {**detail, "open_apply_code": "A2"}) != key


def test_helpers():
    assert [retry_delay(n) for n in range(1, 9)] == [30, 60, 120, 240, 480, 900, 900, 900]
    assert retry_delay(1, retry_after=120) == 120 and retry_delay(1, retry_after=5000) == 900
    assert (
        with_query("https://e.example/api?x=1", accessToken="a:b&c")
        == "https://e.example/api?x=1&accessToken=a%3Ab%26c"
    )
    assert with_query("https://e.example/api", accessToken="t") == "https://e.example/api?accessToken=t"
    assert loggable_url("https://user:pw@e.example:8443/api/v2?accessToken=t#f") == "https://e.example:8443/api/v2"
    assert sign_webhook("k", 1, b"{}") == sign_webhook("k", "1", "{}")
    assert sign_webhook("k", 1, b"{}").startswith("sha256=")


# --------------------------------------------------------------------------- helpers


def _readme_snippet() -> str:
    doc = signatures.__doc__ or ""
    match = re.search(r"```python\n(.*?)\n```", doc, re.S)
    assert match, "the module docstring holds the README's verification snippet"
    return match.group(1)


def _event_body(detail_type: str, **detail: Any) -> dict:
    return {
        "version": "0",
        "id": "00000000-0000-0000-0000-000000000000",
        "detail-type": detail_type,
        "source": "fapiao-hub",
        "account": "123456789012",
        "time": "2026-11-21T12:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": {"schema_version": "1", "source_system": "sample-erp", "open_apply_code": CODE, **detail},
    }


def test_the_readme_verification_snippet_verifies_a_real_signature():
    """The README's snippet, executed as written, accepts what the notifier signs."""
    import re as _re
    import time as _time
    from pathlib import Path as _Path

    readme = (_Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    [snippet] = [b for b in _re.findall(r"```python\n(.*?)```", readme, _re.S) if "def verify_webhook" in b]
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102 - the documented snippet itself is what is tested
    body, now = b'{"type": "InvoiceIssued"}', int(_time.time())
    headers = {"X-Fapiao-Timestamp": str(now), "X-Fapiao-Signature": sign_webhook("s3cret", str(now), body)}
    assert scope["verify_webhook"]("s3cret", headers, body) is True
    assert scope["verify_webhook"]("s3cret", headers, body + b" ") is False
    assert scope["verify_webhook"]("other", headers, body) is False


def test_an_invoice_without_files_is_notified_from_the_event_alone(world, receiver):
    """The event names the invoice with its (no) files: the hub format needs no read (benchmarks, section 1)."""
    world.configure(format="hub", secret=SECRET)
    world.submit()
    assert world.decide(Issued((replace(INVOICE, files=()),))) == "issued"
    calls: list[str] = []
    store = runtime.application_store()
    store._table.meta.client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name), unique_id="count-notifier-calls"
    )
    try:
        assert world.pump() == 1
    finally:
        store._table.meta.client.meta.events.unregister("before-call.dynamodb.*", unique_id="count-notifier-calls")
    assert calls == ["TransactWriteItems"]  # the history note with its record (one request), and nothing read
    [invoice] = receiver.received[0].json()["invoices"]
    assert invoice["invoiceNumber"] == "26112000000012221761" and invoice["invoiceType"] == "DIGITAL_SPECIAL"
    assert invoice["files"] == [] and invoice["amount"] == 5327.43
    assert world.notes()[-1] == "notified sample-erp (hub): 200"
    assert runtime.application_store().get("sample-erp", CODE).history[-1].status == "ISSUED"
