"""The local run's HTTP API (HTTP -> payload v2.0 events) and its queue pumps.

The gateway is exercised over a real HTTP server on 127.0.0.1 (port 0) with tiny fake handlers;
the pumps against moto in-process with queues created here (short visibility timeouts keep the
redrive path fast), not from the template.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.gateway import HttpApiGateway, Route
from local.pumps import BridgePump, SchedulePump, SqsPump
from local.runtime import LocalFunction

REGION = "ap-east-1"


def request(
    gateway: HttpApiGateway,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


class Recorder:
    """A fake function: records events, answers with ``respond(event)``."""

    def __init__(self, name: str, respond: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []
        self.respond = respond or (lambda event: {"statusCode": 200, "body": "{}"})

    def invoke(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        return self.respond(event)


@pytest.fixture
def functions() -> dict[str, Recorder]:
    return {name: Recorder(name) for name in ("submit", "get", "special", "proxy", "any")}


@pytest.fixture
def gateway(functions: dict[str, Recorder]) -> Iterator[HttpApiGateway]:
    routes = [
        Route("POST", "/v1/invoice-orders", functions["submit"]),
        Route("GET", "/v1/invoice-orders/{openApplyCode}", functions["get"]),
        Route("GET", "/v1/invoice-orders/special", functions["special"]),
        Route("ANY", "/files/{proxy+}", functions["proxy"]),
        Route("ANY", "/anything", functions["any"]),
    ]
    with HttpApiGateway(routes, port=0, account_id="123456789012") as gw:
        yield gw


def test_gateway_listens_on_loopback_only(gateway: HttpApiGateway) -> None:
    assert gateway.url.startswith("http://127.0.0.1:")
    assert gateway._server.server_address[0] == "127.0.0.1"


def test_post_becomes_a_v2_event(gateway: HttpApiGateway, functions: dict[str, Recorder]) -> None:
    before = int(time.time() * 1000)
    status, _, _ = request(
        gateway,
        "POST",
        "/v1/invoice-orders?x=1&x=2&y=&z=%E5%8F%91",
        body=json.dumps({"a": "发票"}).encode(),
        headers={"Content-Type": "application/json", "X-Custom-Header": "Yes", "Authorization": "Bearer t"},
    )
    assert status == 200
    (event,) = functions["submit"].events
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /v1/invoice-orders"
    assert event["rawPath"] == "/v1/invoice-orders"
    assert event["rawQueryString"] == "x=1&x=2&y=&z=%E5%8F%91"
    assert event["queryStringParameters"] == {"x": "1,2", "y": "", "z": "发"}
    assert "pathParameters" not in event
    assert event["headers"]["x-custom-header"] == "Yes"
    assert event["headers"]["authorization"] == "Bearer t"
    assert event["headers"]["content-type"] == "application/json"
    assert all(k == k.lower() for k in event["headers"])
    ctx = event["requestContext"]
    assert ctx["http"] == {
        "method": "POST",
        "path": "/v1/invoice-orders",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "",  # http.client sends none
    }
    assert ctx["routeKey"] == "POST /v1/invoice-orders" and ctx["stage"] == "$default"
    assert ctx["requestId"]
    assert before <= ctx["timeEpoch"] <= int(time.time() * 1000)
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == {"a": "发票"}


def test_each_request_gets_its_own_request_id(gateway: HttpApiGateway, functions: dict[str, Recorder]) -> None:
    request(gateway, "GET", "/v1/invoice-orders/a")
    request(gateway, "GET", "/v1/invoice-orders/a")
    first, second = functions["get"].events
    assert first["requestContext"]["requestId"] != second["requestContext"]["requestId"]
    assert "body" not in first and first["isBase64Encoded"] is False


def test_path_parameters_are_matched_and_decoded(gateway: HttpApiGateway, functions: dict[str, Recorder]) -> None:
    request(gateway, "GET", "/v1/invoice-orders/zcxs%20182")
    (event,) = functions["get"].events
    assert event["routeKey"] == "GET /v1/invoice-orders/{openApplyCode}"
    assert event["pathParameters"] == {"openApplyCode": "zcxs 182"}
    assert event["rawPath"] == "/v1/invoice-orders/zcxs%20182"


def test_a_literal_route_beats_a_parameter(gateway: HttpApiGateway, functions: dict[str, Recorder]) -> None:
    request(gateway, "GET", "/v1/invoice-orders/special")
    assert len(functions["special"].events) == 1 and not functions["get"].events


def test_greedy_and_any_routes(gateway: HttpApiGateway, functions: dict[str, Recorder]) -> None:
    request(gateway, "DELETE", "/files/a/b/c.pdf")
    request(gateway, "PUT", "/anything", body=b"x")
    (proxy,) = functions["proxy"].events
    assert proxy["routeKey"] == "ANY /files/{proxy+}"
    assert proxy["pathParameters"] == {"proxy": "a/b/c.pdf"}
    assert proxy["requestContext"]["http"]["method"] == "DELETE"
    (anything,) = functions["any"].events
    assert anything["routeKey"] == "ANY /anything" and anything["body"] == "x"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("GET", "/v1/invoice-orders"), ("POST", "/v1/invoice-orders/x"), ("GET", "/")],
)
def test_unknown_routes_are_404_like_api_gateway(
    gateway: HttpApiGateway, functions: dict[str, Recorder], method: str, path: str
) -> None:
    status, headers, body = request(gateway, method, path)
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": "Not Found"}
    assert not any(f.events for f in functions.values())


def test_binary_bodies_are_base64_encoded(gateway: HttpApiGateway, functions: dict[str, Recorder]) -> None:
    payload = bytes(range(256))
    request(gateway, "POST", "/v1/invoice-orders", body=payload, headers={"Content-Type": "text/plain"})
    request(gateway, "POST", "/v1/invoice-orders", body=b"%PDF-1.7", headers={"Content-Type": "application/pdf"})
    first, second = functions["submit"].events
    assert first["isBase64Encoded"] is True
    assert base64.b64decode(first["body"]) == payload
    assert second["isBase64Encoded"] is True
    assert base64.b64decode(second["body"]) == b"%PDF-1.7"


def test_chunked_request_bodies_are_read(gateway: HttpApiGateway, functions: dict[str, Recorder]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        conn.request("POST", "/v1/invoice-orders", body=iter([b'{"a":', b"1}"]), encode_chunked=True)
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    assert functions["submit"].events[0]["body"] == '{"a":1}'


def test_responses_carry_status_headers_cookies_and_binary(
    gateway: HttpApiGateway, functions: dict[str, Recorder]
) -> None:
    pdf = b"%PDF-1.7\x00\xff"
    functions["get"].respond = lambda event: {
        "statusCode": 201,
        "headers": {"Content-Type": "application/pdf", "X-Trace": "abc"},
        "cookies": ["a=1; Path=/"],
        "body": base64.b64encode(pdf).decode(),
        "isBase64Encoded": True,
    }
    status, headers, body = request(gateway, "GET", "/v1/invoice-orders/x")
    assert (status, body) == (201, pdf)
    assert headers["content-type"] == "application/pdf"
    assert headers["x-trace"] == "abc"
    assert headers["set-cookie"] == "a=1; Path=/"
    assert headers["content-length"] == str(len(pdf))


def test_a_response_without_status_code_is_inferred_as_json(
    gateway: HttpApiGateway, functions: dict[str, Recorder]
) -> None:
    functions["get"].respond = lambda event: {"hello": "world"}
    status, headers, body = request(gateway, "GET", "/v1/invoice-orders/x")
    assert (status, headers["content-type"], json.loads(body)) == (200, "application/json", {"hello": "world"})


def test_a_failing_handler_is_a_500(gateway: HttpApiGateway, functions: dict[str, Recorder]) -> None:
    def boom(event: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    functions["submit"].respond = boom
    status, _, body = request(gateway, "POST", "/v1/invoice-orders", body=b"{}")
    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})
    # The server keeps serving.
    assert request(gateway, "GET", "/v1/invoice-orders/x")[0] == 200


def test_the_gateway_drives_a_real_local_function() -> None:
    """LocalFunction gives the handler a Lambda-like context."""
    seen: dict[str, Any] = {}

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.update(
            name=context.function_name,
            arn=context.invoked_function_arn,
            memory=context.memory_limit_in_mb,
            request_id=context.aws_request_id,
            remaining=context.get_remaining_time_in_millis(),
        )
        return {"statusCode": 200, "body": event["pathParameters"]["id"]}

    function = LocalFunction("fn-x", handler, timeout=20, memory_size=512, region=REGION)
    with HttpApiGateway([Route("GET", "/x/{id}", function)]) as gw:
        assert request(gw, "GET", "/x/42")[2] == b"42"
    assert seen["name"] == "fn-x"
    assert seen["arn"] == f"arn:aws:lambda:{REGION}:123456789012:function:fn-x"
    assert seen["memory"] == 512
    assert seen["request_id"]
    assert 0 < seen["remaining"] <= 20_000


# ---------------------------------------------------------------- SQS pump


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION)


MAX_RECEIVES = 2


@pytest.fixture
def queues(sqs) -> dict[str, str]:
    dlq = sqs.create_queue(QueueName="pump-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName="pump-work",
        Attributes={
            "VisibilityTimeout": "0",  # failed messages come straight back
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return {"url": url, "arn": arn, "dlq": dlq}


def batch_handler(recorder: list[dict[str, Any]]) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """Fails the records whose body starts with "fail" (partial batch response)."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        recorder.extend(event["Records"])
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"].startswith("fail")
            ]
        }

    return handler


def depth(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def drain(sqs, url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    return sorted(m["Body"] for m in messages)


def pump_until(pump: SqsPump, done: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the pump did not get there in time"
        pump.poll_once()


def test_records_have_the_lambda_sqs_shape(sqs, queues: dict[str, str]) -> None:
    sqs.send_message(
        QueueUrl=queues["url"],
        MessageBody="hello",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "dispatch"}},
    )
    seen: list[dict[str, Any]] = []
    pump = SqsPump(
        sqs, queues["url"], queues["arn"], LocalFunction("fn", batch_handler(seen)), wait_seconds=0, region=REGION
    )
    assert pump.poll_once() == 1
    (record,) = seen
    assert record["body"] == "hello"
    assert record["messageId"] and record["receiptHandle"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert "SentTimestamp" in record["attributes"]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queues["arn"]
    assert record["awsRegion"] == REGION
    assert record["messageAttributes"]["kind"]["stringValue"] == "dispatch"
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    assert depth(sqs, queues["url"]) == 0  # succeeded, so deleted


def test_only_reported_failures_stay_and_end_in_the_dlq(sqs, queues: dict[str, str]) -> None:
    for body in ("ok-1", "fail-1", "ok-2"):
        sqs.send_message(QueueUrl=queues["url"], MessageBody=body)
    seen: list[dict[str, Any]] = []
    function = LocalFunction("fn", batch_handler(seen))
    pump = SqsPump(sqs, queues["url"], queues["arn"], function, report_batch_item_failures=True, wait_seconds=0)
    pump_until(pump, lambda: depth(sqs, queues["dlq"]) == 1)
    bodies = [r["body"] for r in seen]
    assert bodies.count("ok-1") == 1 and bodies.count("ok-2") == 1  # deleted after the first success
    assert bodies.count("fail-1") == MAX_RECEIVES  # retried until the redrive policy took it
    assert [r["attributes"]["ApproximateReceiveCount"] for r in seen if r["body"] == "fail-1"] == [
        str(n) for n in range(1, MAX_RECEIVES + 1)
    ]
    assert depth(sqs, queues["url"]) == 0
    assert drain(sqs, queues["dlq"]) == ["fail-1"]


def test_an_exception_fails_the_whole_batch(sqs, queues: dict[str, str]) -> None:
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=queues["url"], MessageBody=body)

    def handler(event: dict[str, Any], context: Any) -> None:
        raise RuntimeError("down")

    pump = SqsPump(
        sqs, queues["url"], queues["arn"], LocalFunction("fn", handler), report_batch_item_failures=True, wait_seconds=0
    )
    assert pump.poll_once() == 2
    assert depth(sqs, queues["url"]) == 2


def test_an_invalid_failure_report_fails_the_whole_batch(sqs, queues: dict[str, str]) -> None:
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=queues["url"], MessageBody=body)

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}

    pump = SqsPump(
        sqs, queues["url"], queues["arn"], LocalFunction("fn", handler), report_batch_item_failures=True, wait_seconds=0
    )
    pump.poll_once()
    assert depth(sqs, queues["url"]) == 2


def test_without_report_batch_item_failures_a_returned_list_is_ignored(sqs, queues: dict[str, str]) -> None:
    for body in ("ok", "fail"):
        sqs.send_message(QueueUrl=queues["url"], MessageBody=body)
    seen: list[dict[str, Any]] = []
    pump = SqsPump(sqs, queues["url"], queues["arn"], LocalFunction("fn", batch_handler(seen)), wait_seconds=0)
    pump.poll_once()
    assert depth(sqs, queues["url"]) == 0


def test_the_pump_thread_processes_and_stops(sqs, queues: dict[str, str]) -> None:
    seen: list[dict[str, Any]] = []
    pump = SqsPump(
        sqs,
        queues["url"],
        queues["arn"],
        LocalFunction("fn", batch_handler(seen)),
        report_batch_item_failures=True,
        wait_seconds=1,
    )
    pump.start()
    try:
        for n in range(15):
            sqs.send_message(QueueUrl=queues["url"], MessageBody=f"ok-{n}")
        deadline = time.monotonic() + 10
        while len(seen) < 15:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        pump.stop(timeout=10)
    assert not pump.is_alive()
    assert sorted(r["body"] for r in seen) == sorted(f"ok-{n}" for n in range(15))
    assert depth(sqs, queues["url"]) == 0


def test_the_bridge_applies_input_path_and_retries(sqs) -> None:
    url = sqs.create_queue(QueueName="bridge")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"detail-type": "X", "detail": {"n": 1}}))
    calls: list[Any] = []

    def handler(event: Any, context: Any) -> None:
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("first attempt fails")

    pump = BridgePump(sqs, url, LocalFunction("fn", handler), input_path="$.detail", wait_seconds=0)
    pump.retry_delay = 0
    deadline = time.monotonic() + 10
    while len(calls) < 2:
        assert time.monotonic() < deadline
        pump.poll_once()
    assert calls == [{"n": 1}, {"n": 1}]
    assert depth(sqs, url) == 0


def test_rate_schedules_fire_until_stopped() -> None:
    calls: list[Any] = []
    pump = SchedulePump(
        LocalFunction("fn", lambda event, context: calls.append(event)),
        "rate(5 minutes)",
        rule_arn="arn:aws:events:ap-east-1:123456789012:rule/r",
        interval=0.01,
    )
    assert SchedulePump(LocalFunction("fn", print), "rate(5 minutes)").interval == 300
    assert SchedulePump(LocalFunction("fn", print), "cron(0 3 * * ? *)").interval is None
    pump.start()
    deadline = time.monotonic() + 10
    while len(calls) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pump.stop()
    assert not pump.is_alive()
    assert calls[0]["detail-type"] == "Scheduled Event"
    assert calls[0]["resources"] == ["arn:aws:events:ap-east-1:123456789012:rule/r"]


def test_a_trailing_slash_is_part_of_the_route() -> None:
    """The console's routes: GET /ops, GET /ops/ and GET /ops/{proxy+} are three routes (template.yaml)."""
    bare, slash, files = Recorder("bare"), Recorder("slash"), Recorder("files")
    routes = [Route("GET", "/ops", bare), Route("GET", "/ops/", slash), Route("GET", "/ops/{proxy+}", files)]
    with HttpApiGateway(routes, port=0) as gw:
        for path in ("/ops", "/ops/", "/ops/console.js"):
            assert request(gw, "GET", path)[0] == 200
    assert [e["routeKey"] for e in bare.events] == ["GET /ops"]
    assert [e["routeKey"] for e in slash.events] == ["GET /ops/"]
    assert [e["pathParameters"] for e in files.events] == [{"proxy": "console.js"}]
