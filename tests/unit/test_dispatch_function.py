"""The dispatch function's SQS batch semantics through its real handler, with queues from template.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.conftest import event, load_handler


@pytest.fixture
def dispatch_handler(hub):
    return load_handler("dispatch", "dispatch_app_under_test")


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
                "awsRegion": "ap-east-1",
            }
            for m in messages
        ]
    }


class Context:
    function_name = "DispatchFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:ap-east-1:123456789012:function:DispatchFunction"
    aws_request_id = "test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def test_only_failed_records_return_and_the_dlq_receives_what_exhausted_its_retries(hub, dispatch_handler):
    """Lambda's event source mapping, step by step: receive, invoke, delete what succeeded."""
    assert hub.call(event("intake-post-blue.json"))[0] == 200  # its queue message is a good record
    url = hub.environment["DISPATCH_QUEUE_URL"]
    hub.sqs.send_message(QueueUrl=url, MessageBody="not a dispatch request")  # a poison record
    queue_arn = hub.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    dlq_url = hub.resources.queues["DispatchDLQ"].url
    redrive = json.loads(
        hub.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
    )
    max_receives = int(redrive["maxReceiveCount"])

    failures_seen = []
    for _ in range(max_receives + 1):
        # Visibility 0: a failed record is visible again at once (instead of after 180 s).
        messages = hub.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            break
        answer = dispatch_handler(sqs_event(messages, queue_arn), Context())
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        failures_seen.append(len(failed))
        for m in messages:
            if m["MessageId"] not in failed:
                hub.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    # The good record succeeded in the first batch (its application has no configured channel: a
    # visible rejection); the poison record failed alone, every time, until the DLQ took it.
    assert failures_seen[0] == 1 and set(failures_seen) == {1}
    assert len(failures_seen) == max_receives
    [item] = hub.applications()
    assert item["status"] == "REJECTED" and "not configured" in item["reason"]
    dead = hub.sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dead] == ["not a dispatch request"]
    assert hub.queue_depth() == 0


def test_the_events_fixture_drives_the_handler(hub, dispatch_handler):
    """events/dispatch-sqs.json (for sam local invoke) is a valid batch for the handler."""
    assert hub.call(event("intake-post-blue.json"))[0] == 200
    fixture = json.loads((Path(__file__).parents[2] / "events" / "dispatch-sqs.json").read_text(encoding="utf-8"))
    assert dispatch_handler(fixture, Context()) == {"batchItemFailures": []}
    [item] = hub.applications()
    assert item["status"] == "REJECTED"  # the test configuration has no channel called "xunlian"
