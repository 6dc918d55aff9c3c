"""Channel health (issue 14 item 5): a Xunlian sandbox goes down while 200 applications arrive.

The real intake and dispatch handlers, moto in-process, the sandboxes over real HTTP. The outage is
first refused at the socket (the sandbox's listener is closed), then 503 for every request (the
sandbox's per-number fault scripts), then over. The sandboxes' per-request-number counts are the
oracle: how many requests reached the first one during its cool-downs, and who issued what.
"""

from __future__ import annotations

import collections
import json
import random
import socket
import time

import boto3
import pytest
import requests
from moto import mock_aws

from bench.soak_oracle import scan_all
from fapiao_hub import runtime
from local.atomic_moto import serialized_in_process
from local.provision import provision
from sandbox.xunlian import run as run_xunlian
from tests.integration.test_dispatch_faults import _sqs_event, order
from tests.unit.conftest import REGION, TEMPLATE, FakeContext, event, hub_config_document, load_handler

pytestmark = pytest.mark.integration

APPLICATIONS = 200
COOLDOWN = 2  # seconds: CHANNEL_CIRCUIT_COOLDOWN_SECONDS
FAILURES_TO_OPEN = 3
TIMED_OUT = "HEALTH-TIMEOUT"  # its request reached the first channel, which issued and never answered


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _NumbersFrom(dict):
    def __init__(self, start: int):
        super().__init__()
        self.start = start

    def get(self, key, default=None):
        return super().get(key, self.start)


class World:
    def __init__(self, environment: dict, sandbox_b, port_a: int):
        self.environment = environment
        self.intake = load_handler("intake", "intake_app_health")
        self.dispatch = load_handler("dispatch", "dispatch_app_health")
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.sandbox_a = None
        self.sandbox_b = sandbox_b
        self.port_a = port_a

    def start_a(self):
        self.sandbox_a = run_xunlian(port=self.port_a)
        return self.sandbox_a

    def stop_a(self) -> None:
        self.sandbox_a.shutdown()  # refused at the socket from now on

    def submit(self, code: str, rng: random.Random) -> None:
        answer = self.intake(event("intake-post-blue.json", body=order(code, "VB5", rng)), FakeContext())
        assert answer["statusCode"] == 200, answer["body"]

    def pump(self, seconds: float, until=None, stall: float | None = None) -> bool:
        """Run the dispatch handler on the queue for ``seconds`` (or until it is empty, or ``until()``):
        True if drained. With ``stall``, ``seconds`` counts from the last message settled instead: a slow
        machine drains later, a queue that stopped draining still fails."""
        queue_url = self.environment["DISPATCH_QUEUE_URL"]
        deadline = time.monotonic() + (stall or seconds)
        hard_stop = time.monotonic() + seconds
        while time.monotonic() < min(deadline, hard_stop):
            messages = self.sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=5, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                attributes = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
                kinds = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                         "ApproximateNumberOfMessagesDelayed")  # fmt: skip
                waiting = sum(int(attributes[k]) for k in kinds)
                if waiting == 0:
                    return True
                time.sleep(0.1)
                continue
            failed = {
                f["itemIdentifier"] for f in self.dispatch(_sqs_event(messages), FakeContext())["batchItemFailures"]
            }
            for m in messages:
                if m["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
                    if stall:
                        deadline = time.monotonic() + stall
            if until is not None and until():
                return False
        return False

    def applications(self) -> dict[str, dict]:
        table = boto3.resource("dynamodb", region_name=REGION).Table(self.environment["APPLICATIONS_TABLE"])
        return {i["open_apply_code"]: i for i in scan_all(table) if "open_apply_code" in i}

    def circuit(self, channel: str) -> dict:
        table = boto3.resource("dynamodb", region_name=REGION).Table(self.environment["APPLICATIONS_TABLE"])
        return table.get_item(Key={"pk": f"circuit#{channel}"}, ConsistentRead=True).get("Item") or {}


@pytest.fixture(params=[False, True], ids=["no-failover", "failover"])
def world(request, aws_env, monkeypatch, tmp_path):
    failover = request.param
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "ERROR")
    port_a = _free_port()
    sandbox_b = run_xunlian(port=0)
    # Two sandboxes are two bureaus numbering from 00000001: the second numbers from 50000001, as a
    # real allocation never repeats a number (a sandbox switch for this would be better: noted).
    sandbox_b.state._numbers = _NumbersFrom(50_000_000)
    world = None
    try:
        document = hub_config_document()
        # The company's channels in order of preference: the first, then the second.
        company = document["business_systems"]["sample-erp"]["companies"]["VB5"]
        company.pop("channel", None)
        company["channels"] = ["xunlian-a", "xunlian-b"]
        options = {"company_data_resource": "hub", "terminal_code": "T01"}
        common = {"type": "xunlian", "dedupes_request_number": True, "quiet_period_seconds": 0,
                  "read_timeout_seconds": 0.4, "connect_retries": 0, "options": options}  # fmt: skip
        document["channels"] = {
            "xunlian-a": {**common, "base_url": f"http://127.0.0.1:{port_a}"},
            "xunlian-b": {**common, "base_url": sandbox_b.base_url},
        }
        config_file = tmp_path / "hub-config.json"
        config_file.write_text(json.dumps(document), encoding="utf-8")
        with mock_aws(), serialized_in_process():
            resources = provision(TEMPLATE, region=REGION)
            environment = resources.function_environment(
                "DispatchFunction",
                {
                    "HUB_CONFIG_FILE": str(config_file),
                    "DISPATCH_RETRY_DELAYS": "[1]",
                    "DISPATCH_MAX_ATTEMPTS": "10",
                    "CHANNEL_CIRCUIT_FAILURES": str(FAILURES_TO_OPEN),
                    "CHANNEL_CIRCUIT_WINDOW_SECONDS": "60",
                    "CHANNEL_CIRCUIT_COOLDOWN_SECONDS": str(COOLDOWN),
                    "CHANNEL_FAILOVER_AFTER_SECONDS": "1" if failover else "",
                },
            )
            for name, value in environment.items():
                monkeypatch.setenv(name, value)
            runtime.reset()
            world = World(environment, sandbox_b, port_a)
            world.failover = failover
            yield world
            runtime.reset()
    finally:
        if world is not None and world.sandbox_a is not None:
            world.sandbox_a.shutdown()
        sandbox_b.shutdown()


def test_an_outage_opens_the_circuit_holds_applications_and_fails_over_only_what_never_reached_it(world):
    rng = random.Random(14)
    sandbox_a = world.start_a()
    # Before the outage: one request reaches the first channel, which issues and never answers.
    world.submit(TIMED_OUT, rng)  # stored with its request number, not dispatched until the pump runs
    timed_out_number = world.applications()[TIMED_OUT]["request_number"]
    requests.post(f"{sandbox_a.base_url}/_sandbox/faults", json={timed_out_number: ["timeout_after_issue"]},
                  timeout=5).raise_for_status()  # fmt: skip
    world.pump(3, until=lambda: world.applications()[TIMED_OUT]["status"] == "UNKNOWN")
    assert world.applications()[TIMED_OUT]["status"] == "UNKNOWN"

    # The outage, refused at the socket, while 200 applications arrive.
    world.stop_a()
    codes = [f"HEALTH-{i:03d}" for i in range(APPLICATIONS)]
    for code in codes:
        world.submit(code, rng)
    world.pump(2 * COOLDOWN)
    circuit = world.circuit("xunlian-a")
    assert circuit.get("circuit") == "OPEN", circuit

    # Then 503 for every request: the listener is back, the service is not.
    sandbox_a = world.start_a()
    stored = world.applications()
    numbers = {code: stored[code]["request_number"] for code in [*codes, TIMED_OUT]}
    script = {number: ["error_503"] * 20 for number in numbers.values()}
    requests.post(f"{sandbox_a.base_url}/_sandbox/faults", json=script, timeout=5).raise_for_status()
    began = time.monotonic()
    world.pump(2.5 * COOLDOWN)
    seconds = time.monotonic() - began
    during_503 = requests.get(f"{sandbox_a.base_url}/_sandbox/issued", timeout=5).json()
    assert world.circuit("xunlian-a").get("circuit") == "OPEN"
    # Only probes reached it: one per cool-down at most (plus one for a cool-down ending at the edge).
    probes = sum(during_503["attempts"].values())
    assert probes <= int(seconds / COOLDOWN) + 1, (probes, seconds)
    assert during_503["total"] == 0

    # Over: the service is back.
    requests.post(f"{sandbox_a.base_url}/_sandbox/faults", json={n: [] for n in numbers.values()},
                  timeout=5).raise_for_status()  # fmt: skip
    drained = world.pump(900, stall=60)
    items = world.applications()
    open_ones = {c: [t.get("note") for t in i["history"]][-6:] for c, i in items.items() if i["status"] != "ISSUED"}
    assert drained, ("the dispatch queue did not drain", collections.Counter(i["status"] for i in items.values()),
                     world.circuit("xunlian-a"), dict(list(open_ones.items())[:3]))  # fmt: skip

    items = world.applications()
    counts_a = requests.get(f"{sandbox_a.base_url}/_sandbox/issued", timeout=5).json()["counts"]
    counts_b = requests.get(f"{world.sandbox_b.base_url}/_sandbox/issued", timeout=5).json()["counts"]
    statuses = collections.Counter(i["status"] for i in items.values())
    print(f"\nfinal states {dict(statuses)}; first channel issued {len(counts_a)}, second {len(counts_b)}")
    assert statuses == {"ISSUED": APPLICATIONS + 1}, {c: i.get("reason") for c, i in items.items()
                                                       if i["status"] != "ISSUED"}  # fmt: skip
    # Nobody spent its attempts on the outage: held applications wait without trying.
    assert max(int(i.get("attempts", 0)) for i in items.values()) <= FAILURES_TO_OPEN + 2
    both = set(counts_a) & set(counts_b)
    assert not both, f"issued by both channels: {sorted(both)}"
    for code, item in items.items():
        number = numbers[code]
        assert counts_a.get(number, 0) + counts_b.get(number, 0) == 1, code
        assert item["request_number"] == number  # the same number on every channel (docs/channels.md)
        assert (counts_b.get(number, 0) == 1) == (item.get("failed_over_from") == "xunlian-a"), code
    # The timed-out request may have been issued (it was): never failed over, resolved on its own channel.
    assert counts_a.get(timed_out_number) == 1 and timed_out_number not in counts_b
    assert items[TIMED_OUT]["channel"] == "xunlian-a" and "failed_over_from" not in items[TIMED_OUT]
    if world.failover:
        assert len(counts_b) > 0, "nothing failed over"
    else:
        assert not counts_b
    notes = [t.get("note", "") for i in items.values() for t in i["history"]]
    assert any("circuit is open" in n for n in notes)
    assert world.circuit("xunlian-a").get("circuit") == "CLOSED"
