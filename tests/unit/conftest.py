"""Fixtures for in-process tests: moto (mock_aws) provisioned from template.yaml, the hub's
configuration in a temp file, and the real function handlers called with API Gateway events."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from fapiao_hub import runtime
from fapiao_hub.domain.config import token_sha256
from local.atomic_moto import serialized_in_process
from local.moto_speed import faster_dynamodb
from local.provision import provision
from tests.conftest import REGION

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"

# Tokens of the test business systems (the fixtures in events/ carry FIXTURE_TOKEN).
FIXTURE_TOKEN = "fixture-token-sample-erp"
OTHER_TOKEN = "token-of-another-business-system"
VALID_BUYER = "91220101MA0Y5K3N4H"

SELLER = {
    "name": "一汽红旗销售有限公司",
    "tax_number": "91220101MA0Y5K3N4H",
    "address": "吉林省长春市汽车经济技术开发区东风大街1号",
    "phone": "0431-85990000",
    "bank_name": "中国工商银行长春汽车厂支行",
    "bank_account": "4200221109000012345",
}


def hub_config_document() -> dict[str, Any]:
    return {
        "business_systems": {
            "sample-erp": {
                "token_sha256": [token_sha256(FIXTURE_TOKEN)],
                "companies": {
                    "VB5": {"seller": SELLER, "channel": "xunlian"},
                    "W92": {
                        "seller": {**SELLER, "name": "一汽解放销售有限公司", "tax_number": "91110108MA01ABCD2H"},
                        "channel": "xunlian",
                    },
                },
            },
            "other-erp": {
                "token_sha256": [token_sha256(OTHER_TOKEN)],
                "companies": {"VB5": {"seller": SELLER, "channel": "xunlian"}},
            },
        }
    }


def load_handler(function_dir: str, name: str):
    """Import functions/<dir>/app.py under a unique module name (every function file is app.py)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function_dir / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.lambda_handler


class FakeContext:
    function_name = "IntakeFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:IntakeFunction"
    aws_request_id = "test-request"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 20_000


@dataclass
class Hub:
    """The provisioned moto account and a way to call the intake function."""

    resources: Any
    environment: dict[str, str]
    handler: Any

    @property
    def table(self):
        return boto3.resource("dynamodb", region_name=REGION).Table(self.environment["APPLICATIONS_TABLE"])

    @property
    def sqs(self):
        return boto3.client("sqs", region_name=REGION)

    def call(self, event: dict[str, Any]) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        response = self.handler(event, FakeContext())
        body = response.get("body")
        return response["statusCode"], (json.loads(body) if body else None), response.get("headers", {})

    def applications(self) -> list[dict[str, Any]]:
        """Application items (the table also holds the callback replay guard's items)."""
        items = self.table.scan(ConsistentRead=True)["Items"]
        return sorted((i for i in items if not i["pk"].startswith("replay#")), key=lambda i: i["pk"])

    def queued(self) -> list[dict[str, Any]]:
        """Drain the dispatch queue (messages become visible again after the test: not needed)."""
        bodies = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.environment["DISPATCH_QUEUE_URL"], MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not batch:
                return bodies
            bodies += [json.loads(m["Body"]) for m in batch]

    def queue_depth(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.environment["DISPATCH_QUEUE_URL"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def delayed(self) -> int:
        """Dispatch requests waiting out their DelaySeconds (retries after a quiet period)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.environment["DISPATCH_QUEUE_URL"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessagesDelayed"])

    def snapshot(self) -> tuple[list[dict[str, Any]], int]:
        return self.applications(), self.queue_depth()


@pytest.fixture
def hub(aws_env, monkeypatch, tmp_path) -> Iterator[Hub]:
    with mock_aws(), serialized_in_process(), faster_dynamodb():
        resources = provision(TEMPLATE, region=REGION)
        config_file = tmp_path / "hub-config.json"
        config_file.write_text(json.dumps(hub_config_document()), encoding="utf-8")
        environment = resources.function_environment("IntakeFunction", {"HUB_CONFIG_FILE": str(config_file)})
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        runtime.reset()
        yield Hub(resources, environment, load_handler("intake", "intake_app_under_test"))
        runtime.reset()


def event(name: str, **overrides: Any) -> dict[str, Any]:
    """A fixture event from events/, optionally with its body or headers replaced."""
    loaded = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    if "body" in overrides:
        body = overrides.pop("body")
        loaded["body"] = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, default=str)
    if "headers" in overrides:
        loaded["headers"] = {**loaded["headers"], **overrides.pop("headers")}
        loaded["headers"] = {k: v for k, v in loaded["headers"].items() if v is not None}
    loaded.update(overrides)
    return loaded


def get_event(open_apply_code: str, token: str = FIXTURE_TOKEN) -> dict[str, Any]:
    loaded = event("intake-get.json", headers={"authorization": f"Bearer {token}"})
    loaded["rawPath"] = loaded["requestContext"]["http"]["path"] = f"/v1/invoice-orders/{open_apply_code}"
    loaded["pathParameters"] = {"openApplyCode": open_apply_code}
    return loaded
