"""Findings of the local run's load test, each pinned down in isolation.

* local.runtime: the functions with HTTP routes share one lock (Powertools' HTTP resolvers keep the
  request on a class shared by every resolver in the process), and disabled metrics are discarded
  after each invocation (Powertools would print them once a metric holds 100 values).
* local.gateway: a method no route takes answers JSON like any unmatched route, never http.server's
  501 HTML page.
* sandbox.kingdee: ``POST /_sandbox/config`` takes fractional fault rates.
* local.run.OutOfBandForwarder: reads the sparse due-work index, never scans the table.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from local.gateway import HttpApiGateway, Route, build_event
from local.runtime import HTTP_RESOLVER_LOCK, LocalFunction, load_function, unload_functions
from local.template import FunctionSpec, HttpRoute

REGION = "ap-east-1"

# ---------------------------------------------------------------- one lock for the HTTP functions

RESOLVER_APP = """
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

app = APIGatewayHttpResolver()
meanwhile = None  # the test's hook, called while a request is being resolved


@app.get("/<name>")
def seen(name):
    if meanwhile is not None:
        meanwhile()
    return {"param": name, "raw_path": app.current_event.raw_path}


def handler(event, context):
    return app.resolve(event, context)
"""

PLAIN_APP = """
def handler(event, context):
    return event
"""


def _spec(logical_id: str, routes: tuple[HttpRoute, ...]) -> FunctionSpec:
    return FunctionSpec(
        logical_id, f"fn-{logical_id}", f"functions/{logical_id}", "app.handler", "python3.13", 3, 128, (), routes
    )


@pytest.fixture
def functions(tmp_path: Path) -> Iterator[dict[str, LocalFunction]]:
    """Two resolver functions with HTTP routes (like intake and callback) and one queue worker."""
    sources = {"Intake": RESOLVER_APP, "Callback": RESOLVER_APP, "Worker": PLAIN_APP}
    loaded = {}
    try:
        for lid, source in sources.items():
            (tmp_path / "functions" / lid).mkdir(parents=True)
            (tmp_path / "functions" / lid / "app.py").write_text(source, encoding="utf-8")
            routes = (HttpRoute("E", "GET", "/{name}"),) if lid != "Worker" else ()
            loaded[lid] = load_function(_spec(lid, routes), tmp_path, region=REGION, account_id="1")
        yield loaded
    finally:
        unload_functions()


def _get(path: str) -> dict[str, Any]:
    return build_event(
        method="GET",
        raw_path=path,
        raw_query="",
        headers=[("host", "127.0.0.1")],
        body=b"",
        route=None,
        path_parameters=None,
        source_ip="127.0.0.1",
    )


def test_functions_with_http_routes_share_one_lock(functions: dict[str, LocalFunction]) -> None:
    assert functions["Intake"]._lock is HTTP_RESOLVER_LOCK
    assert functions["Callback"]._lock is HTTP_RESOLVER_LOCK
    assert functions["Worker"]._lock is not HTTP_RESOLVER_LOCK  # queue workers run alongside
    assert LocalFunction("fn-x", lambda e, c: None)._lock is not HTTP_RESOLVER_LOCK


def test_an_http_function_never_sees_another_ones_request(functions: dict[str, LocalFunction]) -> None:
    """While the intake function resolves /order, the callback function is asked for /push.

    Powertools keeps the current event on a class: had the callback run meanwhile (no shared lock),
    the intake's route would read the callback's request. With the lock the callback waits (the
    wait below gives up after 2 s) and each answers its own request.
    """
    callback_answer: list[Any] = []
    callback_done = threading.Event()

    def other_request_meanwhile() -> None:
        def call_back() -> None:
            callback_answer.append(functions["Callback"].invoke(_get("/push")))
            callback_done.set()

        threading.Thread(target=call_back, daemon=True).start()
        callback_done.wait(2)  # without the shared lock the callback completes here

    intake_module = sys.modules["_fapiao_fn_Intake_app"]
    intake_module.meanwhile = other_request_meanwhile
    intake_answer = functions["Intake"].invoke(_get("/order"))
    assert callback_done.wait(30)
    assert json.loads(intake_answer["body"]) == {"param": "order", "raw_path": "/order"}
    assert json.loads(callback_answer[0]["body"]) == {"param": "push", "raw_path": "/push"}


# ---------------------------------------------------------------- disabled metrics stay quiet

METRICS_APP = """
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

metrics = Metrics(namespace="local-run-test")


@metrics.log_metrics
def handler(event, context):
    metrics.add_metric(name="Handled", unit=MetricUnit.Count, value=1)
    return "ok"
"""


@pytest.fixture
def metrics_function(tmp_path: Path) -> Iterator[LocalFunction]:
    (tmp_path / "functions" / "M").mkdir(parents=True)
    (tmp_path / "functions" / "M" / "app.py").write_text(METRICS_APP, encoding="utf-8")
    try:
        function = load_function(_spec("M", ()), tmp_path, region=REGION, account_id="1")
        assert function.metrics  # the handler's Metrics were found
        yield function
        function.metrics[0].clear_metrics()
    finally:
        unload_functions()


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_disabled_metrics_print_no_blob_however_many_invocations(
    metrics_function: LocalFunction, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Powertools, metrics disabled, keeps every value and prints them all once one metric has 100."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for _ in range(150):
        assert metrics_function.invoke({}) == "ok"
    assert '"_aws"' not in capsys.readouterr().out


def test_enabled_metrics_are_still_printed(
    metrics_function: LocalFunction, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    metrics_function.invoke({})
    [blob] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert blob["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [{"Name": "Handled", "Unit": "Count"}]


# ---------------------------------------------------------------- the gateway answers JSON


class Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []

    def invoke(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        return {"statusCode": 200, "body": "{}"}


def _raw(gateway: HttpApiGateway, method: str, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        conn.close()


@pytest.fixture
def gateway() -> Iterator[tuple[HttpApiGateway, dict[str, Recorder]]]:
    functions = {"submit": Recorder("submit"), "any": Recorder("any")}
    routes = [Route("POST", "/v1/invoice-orders", functions["submit"]), Route("ANY", "/anything", functions["any"])]
    with HttpApiGateway(routes, port=0) as gw:
        yield gw, functions


@pytest.mark.parametrize(
    ("method", "path"),
    [("PROPFIND", "/v1/invoice-orders"), ("PROPFIND", "/nope"), ("BREW", "/"), ("TRACE", "/v1/invoice-orders")],
)
def test_a_method_no_route_takes_is_the_json_404_of_an_unmatched_route(
    gateway: tuple[HttpApiGateway, dict[str, Recorder]], method: str, path: str
) -> None:
    gw, functions = gateway
    assert _raw(gw, "GET", "/v1/invoice-orders")[0] == 404  # a known method, the path's other method
    status, content_type, body = _raw(gw, method, path)
    assert (status, content_type, json.loads(body)) == (404, "application/json", {"message": "Not Found"})
    assert not any(f.events for f in functions.values())


def test_an_any_route_takes_any_method(gateway: tuple[HttpApiGateway, dict[str, Recorder]]) -> None:
    gw, functions = gateway
    assert _raw(gw, "PROPFIND", "/anything")[0] == 200
    [event] = functions["any"].events
    assert event["requestContext"]["http"]["method"] == "PROPFIND"


def test_a_request_http_server_refuses_is_answered_json(gateway: tuple[HttpApiGateway, dict[str, Recorder]]) -> None:
    gw, functions = gateway
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(b"GET /" + b"x" * 70_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"414"
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"message": "URI Too Long"}
    assert not any(f.events for f in functions.values())


# ---------------------------------------------------------------- Kingdee sandbox: fractional rates


@pytest.fixture
def kingdee() -> Iterator[Any]:
    from sandbox import kingdee

    server = kingdee.run(port=0, access_token="t0ken")
    yield server
    server.shutdown()


def test_kingdee_config_takes_fractional_rates_like_the_other_sandboxes(kingdee: Any) -> None:
    config = {"seed": 3, "rates": {"error_5xx": 0.05, "latency": 0.5, "timeout_after_issue": 0.25}, "latency_ms": 1.5}
    response = requests.post(f"{kingdee.base_url}/_sandbox/config", json=config, timeout=5)
    assert response.status_code == 200, response.text
    assert response.json()["rates"]["error_5xx"] == 0.05
    read = requests.get(f"{kingdee.base_url}/_sandbox/config", timeout=5).json()
    assert read["rates"] == {**dict.fromkeys(read["rates"], 0.0), **config["rates"]}
    assert read["seed"] == 3


@pytest.mark.parametrize(
    "body",
    [b'{"rates": {"error_5xx": 1.5}}', b'{"rates": {"error_5xx": -0.1}}', b'{"rates": {"error_5xx": NaN}}'],
)
def test_kingdee_config_still_refuses_rates_outside_0_to_1(kingdee: Any, body: bytes) -> None:
    before = requests.get(f"{kingdee.base_url}/_sandbox/config", timeout=5).json()
    response = requests.post(f"{kingdee.base_url}/_sandbox/config", data=body, timeout=5)
    assert response.status_code == 400 and "error" in response.json()
    assert requests.get(f"{kingdee.base_url}/_sandbox/config", timeout=5).json() == before


# ---------------------------------------------------------------- the out-of-band forwarder


class FakeSandbox:
    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.orders: list[Any] = []

    def submit(self, number: str, order: Any = None) -> None:
        self.submitted.append(number)
        self.orders.append(order)


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(  # the template's ApplicationsTable, as far as the forwarder sees it
            TableName="applications",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "due_bucket", "AttributeType": "S"},
                {"AttributeName": "next_poll_at", "AttributeType": "N"},
            ],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "due-work",
                    "KeySchema": [
                        {"AttributeName": "due_bucket", "KeyType": "HASH"},
                        {"AttributeName": "next_poll_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {
                        "ProjectionType": "INCLUDE",
                        "NonKeyAttributes": ["source_system", "open_apply_code"],
                    },
                }
            ],
        )
        yield client


def _put(client: Any, pk: str, status: str, channel: str, number: str, *, open_: bool = True) -> None:
    item = {
        "pk": {"S": pk},
        "source_system": {"S": "erp"},
        "open_apply_code": {"S": pk},
        "status": {"S": status},
        "channel": {"S": channel},
        "request_number": {"S": number},
    }
    if open_:
        item |= {"due_bucket": {"S": "OPEN"}, "next_poll_at": {"N": "1700000000"}}
    client.put_item(TableName="applications", Item=item)


def test_the_forwarder_hands_over_submitted_pushing_applications_from_the_index(dynamodb: Any) -> None:
    from local.run import OutOfBandForwarder

    operations: list[tuple[str, int]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        keys = params.get("RequestItems", {}).get("applications", {}).get("Keys", [])
        operations.append((model.name, len(keys)))

    dynamodb.meta.events.register("provide-client-params.dynamodb.*", record)
    _put(dynamodb, "erp#1", "SUBMITTED", "ekuaibao", "FH1")
    _put(dynamodb, "erp#2", "RECEIVED", "ekuaibao", "FH2")
    _put(dynamodb, "erp#3", "SUBMITTED", "partner", "FH3")  # a channel the hub polls
    _put(dynamodb, "erp#4", "SUBMITTED", "ekuaibao", "FH4", open_=False)  # not in the index: not read
    sandbox = FakeSandbox()
    forwarder = OutOfBandForwarder(dynamodb, "applications", {"ekuaibao": sandbox}, lambda s, c: {"order": f"{s}/{c}"})
    forwarder.idle_wait = 0

    assert forwarder.poll_once() == 1
    assert sandbox.submitted == ["FH1"]
    assert sandbox.orders == [{"order": "erp/erp#1"}]  # the stored application is handed over with its number
    assert forwarder.poll_once() == 0  # once per application
    _put(dynamodb, "erp#2", "SUBMITTED", "ekuaibao", "FH2")
    assert forwarder.poll_once() == 1
    assert sandbox.submitted == ["FH1", "FH2"]

    names = {name for name, _ in operations} - {"PutItem"}  # the test's own writes
    assert names == {"Query", "BatchGetItem"}  # never a Scan
    # Only what is still undecided is read again: all three open ones first, then FH2 (RECEIVED) only.
    assert [n for name, n in operations if name == "BatchGetItem"] == [3, 1, 1]
