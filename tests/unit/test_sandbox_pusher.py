"""The Ekuaibao result-push simulator (sandbox/pusher.py) against a tiny receiver on 127.0.0.1.

The receiver plays the hub's callback route with the hub's own code (callback_auth, then the
Ekuaibao parser), so these tests also show that the simulator's independent reading of seed 000
and of the signing rule agrees with the hub's.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from fapiao_hub.channels.base import CallbackRejected
from fapiao_hub.channels.ekuaibao import parse_push
from fapiao_hub.domain.config import ChannelSettings
from fapiao_hub.domain.results import Accepted, Issued, Rejected
from fapiao_hub.usecases.callback_auth import authenticate_callback
from sandbox.pusher import BackgroundPusher, Pusher, PushJob, Switches, main

TOKEN = "pusher-test-token"
SECRET = "pusher-test-secret"


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float


class InMemoryReplayGuard:
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def first_time(self, key: str, expires_at: int) -> bool:
        with self.lock:
            if key in self.seen:
                return False
            self.seen.add(key)
            return True


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    # (query, headers, body) -> HTTP status; the default accepts everything.
    decide: Callable[[dict[str, str], dict[str, str], bytes], int] = lambda q, h, b: 200

    def bodies(self) -> list[dict]:
        return [json.loads(r.body) for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.received.append(Received(parts.path, query, headers, body, time.monotonic()))
            status = state.decide(query, headers, body)
            answer = json.dumps({"value": status == 200}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1/callbacks/ekuaibao"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def hub_like(receiver: Receiver, settings: ChannelSettings) -> InMemoryReplayGuard:
    """Make the receiver answer like the hub: 401 when authentication fails, 400 for a body it
    cannot read, 200 otherwise."""
    guard = InMemoryReplayGuard()

    def decide(query: dict[str, str], headers: dict[str, str], body: bytes) -> int:
        if not authenticate_callback(settings.credentials, query, headers, body, time.time(), guard).ok:
            return 401
        try:
            parse_push(body)
        except CallbackRejected:
            return 400
        return 200

    receiver.decide = decide
    return guard


SIGNED = ChannelSettings(
    type="ekuaibao", base_url="https://x", credentials={"access_token": TOKEN, "hmac_secret": SECRET}
)


def test_once_pushes_a_single_readable_issued_result(receiver):
    pusher = Pusher(receiver.url, TOKEN)
    records = pusher.push("FH0000000000000000001", "issued")
    assert [(r.kind, r.result, r.status) for r in records] == [("result", 0, 200)]
    assert records[0].answer == b'{"value": true}'
    (got,) = receiver.received
    assert got.path == "/v1/callbacks/ekuaibao"
    assert got.query == {"accessToken": TOKEN}
    assert got.headers["content-type"] == "application/json"
    assert "x-fapiao-signature" not in got.headers
    (result,) = parse_push(got.body)
    assert result.request_number == "FH0000000000000000001"
    assert isinstance(result.outcome, Issued)
    (invoice,) = result.outcome.invoices
    assert len(invoice.number) == 8 and invoice.amount is not None
    assert '"taxTaxonomyCode ": ""' in got.body.decode("utf-8")  # seed 000's quirk, on purpose
    assert pusher.history == records


def test_never_pushes_nothing(receiver):
    pusher = Pusher(receiver.url, TOKEN)
    assert pusher.push("FH1", "issued", switches=Switches(never=True)) == []
    assert receiver.received == [] and pusher.history == []


def test_duplicate_sends_the_same_body_twice_signed_afresh(receiver):
    hub_like(receiver, SIGNED)
    pusher = Pusher(receiver.url, TOKEN, SECRET)
    records = pusher.push("FH2", "issued", switches=Switches(duplicate=True))
    assert [(r.kind, r.status) for r in records] == [("result", 200), ("duplicate", 200)]
    first, second = receiver.received
    assert first.body == second.body
    assert first.headers["x-fapiao-nonce"] != second.headers["x-fapiao-nonce"]
    assert first.headers["x-fapiao-signature"] != second.headers["x-fapiao-signature"]
    assert parse_push(first.body) == parse_push(second.body)


def test_replay_resends_the_identical_request_and_the_hub_refuses_it(receiver):
    hub_like(receiver, SIGNED)
    pusher = Pusher(receiver.url, TOKEN, SECRET)
    records = pusher.push("FH3", "issued", switches=Switches(replay=True))
    assert [(r.kind, r.status) for r in records] == [("result", 200), ("replay", 401)]
    first, second = receiver.received
    assert (first.body, first.headers["x-fapiao-signature"]) == (second.body, second.headers["x-fapiao-signature"])


def test_replay_without_a_nonce_is_refused_too(receiver):
    hub_like(receiver, SIGNED)
    pusher = Pusher(receiver.url, TOKEN, SECRET, use_nonce=False)
    records = pusher.push("FH3", "rejected", switches=Switches(replay=True))
    assert [r.status for r in records] == [200, 401]
    assert "x-fapiao-nonce" not in receiver.received[0].headers


def test_out_of_order_sends_in_progress_after_the_result(receiver):
    pusher = Pusher(receiver.url, TOKEN)
    records = pusher.push("FH4", "issued", switches=Switches(out_of_order=True))
    assert [(r.kind, r.result, r.status) for r in records] == [("result", 0, 200), ("out_of_order", 2, 200)]
    assert [b["result"] for b in receiver.bodies()] == [0, 2]
    final, late = (parse_push(r.body) for r in receiver.received)
    assert isinstance(final[0].outcome, Issued)
    assert late == [type(late[0])(Accepted("FH4"), request_number="FH4")]


def test_out_of_order_needs_a_final_result():
    with pytest.raises(ValueError, match="out_of_order"):
        Pusher("http://127.0.0.1:9/", TOKEN).push("FH", "in_progress", switches=Switches(out_of_order=True))


def test_late_waits_before_the_first_push(receiver):
    events: list[str] = []
    pusher = Pusher(receiver.url, TOKEN, sleep=lambda s: events.append(f"sleep {s}"))
    original = pusher.send

    def send(*args, **kwargs):
        events.append("push")
        return original(*args, **kwargs)

    pusher.send = send  # type: ignore[method-assign]
    pusher.push("FH5", "issued", switches=Switches(late=2.5, duplicate=True))
    assert events == ["sleep 2.5", "push", "push"]


def test_late_really_waits(receiver):
    pusher = Pusher(receiver.url, TOKEN)
    started = time.monotonic()
    pusher.push("FH5", "in_progress", switches=Switches(late=0.2))
    assert receiver.received[0].at - started >= 0.2


def test_all_switches_together_keep_their_order(receiver):
    hub_like(receiver, SIGNED)
    pusher = Pusher(receiver.url, TOKEN, SECRET, sleep=lambda s: None)
    records = pusher.push(
        "FH6", "rejected", reject_msg="驳回", switches=Switches.parse("duplicate,replay,out_of_order,late=1")
    )
    assert [(r.kind, r.result, r.status) for r in records] == [
        ("result", 1, 200),
        ("duplicate", 1, 200),
        ("replay", 1, 401),
        ("out_of_order", 2, 200),
    ]
    assert receiver.bodies()[0]["rejectMsg"] == "驳回"
    assert parse_push(receiver.received[0].body)[0].outcome == Rejected("驳回")


@pytest.mark.parametrize(("identify_by", "expected"), [("orderNo", "FH7"), ("none", None)])
def test_identification(receiver, identify_by, expected):
    pusher = Pusher(receiver.url, TOKEN, identify_by=identify_by)
    pusher.push("FH7", "issued")
    pusher.push("FH7", "rejected")
    issued, rejected = (parse_push(r.body) for r in receiver.received)
    assert "serialNo" not in receiver.bodies()[0]
    assert issued[0].request_number == expected
    assert rejected[0].request_number == expected and isinstance(rejected[0].outcome, Rejected)


def test_wrong_token_and_statuses_are_recorded(receiver):
    hub_like(receiver, SIGNED)
    assert [r.status for r in Pusher(receiver.url, "wrong", SECRET).push("FH8", "issued")] == [401]
    assert [r.status for r in Pusher(receiver.url, TOKEN, "wrong-secret").push("FH8", "issued")] == [401]
    receiver.decide = lambda q, h, b: 500
    assert [r.status for r in Pusher(receiver.url, TOKEN).push("FH8", "issued")] == [500]


def test_an_unreachable_hub_is_recorded_not_raised():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (record,) = Pusher(f"http://127.0.0.1:{port}/cb", TOKEN, timeout=1).push("FH9", "issued")
    assert record.status is None and record.error == "ConnectionError"


def test_custom_invoices_are_pushed_as_given(receiver):
    invoice = json.loads(Pusher("http://x", TOKEN).body("FHX", "issued"))["data"][0]
    invoice["invoiceNumber"] = "00000042"
    Pusher(receiver.url, TOKEN, identify_by="orderNo").push("FH10", "issued", invoices=[invoice])
    (result,) = parse_push(receiver.received[0].body)
    assert result.request_number == "FH10"
    assert [i.number for i in result.outcome.invoices] == ["00000042"]


def test_background_mode_takes_jobs_from_a_queue(receiver):
    pusher = Pusher(receiver.url, TOKEN)
    with BackgroundPusher(pusher) as background:
        background.submit(PushJob("FHB1", "issued"))
        background.submit(PushJob("FHB2", "bogus"))  # a bad job is recorded, the worker goes on
        background.submit(PushJob("FHB3", "rejected", switches=Switches(duplicate=True)))
        background.submit(PushJob("FHB4", "issued", switches=Switches(never=True)))
        background.wait()
    assert [(b["serialNo"], b["result"]) for b in receiver.bodies()] == [("FHB1", 0), ("FHB3", 1), ("FHB3", 1)]
    assert [r.status for r in pusher.history] == [200, 200, 200]
    assert len(background.errors) == 1 and background.errors[0][0].request_number == "FHB2"


def test_switches_parse():
    assert Switches.parse("once") == Switches()
    assert Switches.parse("never") == Switches(never=True)
    assert Switches.parse("duplicate, out_of_order,late=0.5") == Switches(duplicate=True, out_of_order=True, late=0.5)
    with pytest.raises(ValueError, match="unknown switch"):
        Switches.parse("twice")
    with pytest.raises(ValueError, match="never excludes"):
        Switches(never=True, duplicate=True)


def test_command_line(receiver, capsys):
    assert main(["--url", receiver.url, "--token", TOKEN, "--request-number", "FHC", "--switches", "duplicate"]) == 0
    assert capsys.readouterr().out.splitlines() == ["result 0 200", "duplicate 0 200"]
    assert len(receiver.received) == 2
