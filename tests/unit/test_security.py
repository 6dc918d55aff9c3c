"""Security checks on what gets deployed (template.yaml, as SAM translates it) and the authentication
matrix of the intake and callback routes. Each template check is also shown failing on a template
broken the way it guards against."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from fapiao_hub import runtime
from fapiao_hub.domain.config import token_sha256
from local.template import load_template
from tests.unit.conftest import OTHER_TOKEN, TEMPLATE, event, get_event, hub_config_document
from tests.unit.test_callbacks import callbacks, seed_push_text  # noqa: F401 - the fixture, reused

READ_ONLY_VERBS = ("Describe", "Get", "List", "BatchGet", "Query", "Scan", "Head")
ASYNC_SOURCES = ("AWS::Events::Rule", "AWS::Scheduler::Schedule", "AWS::SNS::Subscription")
ASYNC_PRINCIPALS = ("events.amazonaws.com", "sns.amazonaws.com", "s3.amazonaws.com", "scheduler.amazonaws.com")


def sam_template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def translate(template: dict[str, Any], monkeypatch) -> dict[str, Any]:
    """template.yaml as CloudFormation, the way `sam deploy` would create it (policy templates expanded)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-east-1")
    template = copy.deepcopy(template)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/code.zip"
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = "s3://bucket/layer.zip"

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    return transform(template, {}, NoManagedPolicies())


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def _resources(statement: dict[str, Any]) -> list[Any]:
    resources = statement.get("Resource", [])
    return resources if isinstance(resources, list) else [resources]


def write_actions_on_everything(cfn: dict[str, Any]) -> list[str]:
    """Allow statements in the functions' roles granting a non-read action on Resource "*"."""
    found = []
    for name, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if statement.get("Effect") != "Allow" or "*" not in _resources(statement):
                    continue
                for action in _actions(statement):
                    verb = action.split(":", 1)[-1]
                    if "*" in action or not verb.startswith(READ_ONLY_VERBS):
                        found.append(f"{name}: {action} on *")
    return found


def unprotected_buckets(cfn: dict[str, Any]) -> list[str]:
    found = []
    for name, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::S3::Bucket":
            continue
        props = resource.get("Properties", {})
        block = props.get("PublicAccessBlockConfiguration", {})
        flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        if not all(block.get(flag) is True for flag in flags):
            found.append(f"{name}: public access not fully blocked")
        rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        if not any(rule.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for rule in rules):
            found.append(f"{name}: no default encryption")
    return found


def _function_of(arn: Any) -> str | None:
    if isinstance(arn, dict) and "Fn::GetAtt" in arn:
        target, attribute = arn["Fn::GetAtt"]
        return target if attribute == "Arn" else None
    return None


def _async_invocations(cfn: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(function, invoked by, the target) for every rule, schedule or SNS subscription invoking a function."""
    found = []
    for name, resource in cfn["Resources"].items():
        if resource["Type"] not in ASYNC_SOURCES:
            continue
        props = resource["Properties"]
        targets = props.get("Targets") or ([props["Target"]] if "Target" in props else [])
        if resource["Type"] == "AWS::SNS::Subscription":
            targets = [{"Arn": props.get("Endpoint")}] if props.get("Protocol") == "lambda" else []
        for target in targets:
            function = _function_of(target.get("Arn"))
            if cfn["Resources"].get(function or "", {}).get("Type") == "AWS::Lambda::Function":
                found.append((function, name, target))
    # Whatever else may invoke a function asynchronously (a permission for an asynchronous service
    # whose invoker is not a rule, schedule or subscription above).
    listed = {function for function, _, _ in found}
    for name, resource in cfn["Resources"].items():
        props = resource["Properties"] if resource["Type"] == "AWS::Lambda::Permission" else {}
        function = props.get("FunctionName", {})
        function = _function_of(function) or (function.get("Ref") if isinstance(function, dict) else None)
        if function and function not in listed and props.get("Principal") in ASYNC_PRINCIPALS:
            found.append((function, name, {}))
    return found


def async_functions_without_failure_handling(cfn: dict[str, Any]) -> list[str]:
    """Functions invoked asynchronously (rules, schedules, SNS, ...) whose own failures go nowhere: no
    DLQ of the function and no on-failure destination. A rule target's DLQ does not count: it
    catches only events the rule could not deliver, never a run that failed."""
    resources = cfn["Resources"]
    covered = {
        name
        for name, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("DeadLetterConfig", {}).get("TargetArn")
    }
    covered |= {
        _function_of(r["Properties"].get("FunctionName")) or str(r["Properties"].get("FunctionName", {}).get("Ref"))
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        and r["Properties"].get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    }
    found = []
    for function, invoker, _ in _async_invocations(cfn):
        message = f"{function} (invoked by {invoker}) has no DLQ or on-failure destination"
        if function not in covered and message not in found:
            found.append(message)
    return found


def async_deliveries_without_dlq(cfn: dict[str, Any]) -> list[str]:
    """Rule and schedule targets invoking a function with no DLQ for the events they fail to deliver."""
    return [
        f"{invoker} -> {function}: failed deliveries are lost (no target DLQ)"
        for function, invoker, target in _async_invocations(cfn)
        if cfn["Resources"][invoker]["Type"] in ("AWS::Events::Rule", "AWS::Scheduler::Schedule")
        and not target.get("DeadLetterConfig", {}).get("Arn")
    ]


def _queue_of(arn: Any) -> str | None:
    return arn["Fn::GetAtt"][0] if isinstance(arn, dict) and "Fn::GetAtt" in arn else None


def dead_letter_queues_without_alarm(cfn: dict[str, Any]) -> list[str]:
    """Queues where failures end (queue redrive, target DLQs, on-failure destinations) that no alarm watches."""
    resources = cfn["Resources"]
    ends: set[str | None] = set()
    for resource in resources.values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::SQS::Queue":
            ends.add(_queue_of(props.get("RedrivePolicy", {}).get("deadLetterTargetArn")))
        if resource["Type"] in ASYNC_SOURCES:
            ends |= {_queue_of(t.get("DeadLetterConfig", {}).get("Arn")) for t in props.get("Targets") or []}
        if resource["Type"] == "AWS::Lambda::EventInvokeConfig":
            ends.add(_queue_of(props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")))
    watched = {
        _queue_of(dimension["Value"])
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("AlarmActions")
        for dimension in r["Properties"].get("Dimensions", [])
        if dimension["Name"] == "QueueName"
    }
    return [f"{queue} has no alarm" for queue in sorted(q for q in ends if q) if queue not in watched]


def source_queues_without_redrive(cfn: dict[str, Any]) -> list[str]:
    resources = cfn["Resources"]
    sources = {
        r["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping" and "Fn::GetAtt" in r["Properties"]["EventSourceArn"]
    }
    return [f"{q} has no DLQ" for q in sorted(sources) if "RedrivePolicy" not in resources[q]["Properties"]]


# ---------------------------------------------------------------------------- the template as it is
def test_no_iam_statement_grants_a_write_action_on_everything(monkeypatch):
    assert write_actions_on_everything(translate(sam_template(), monkeypatch)) == []


def test_every_bucket_blocks_public_access_and_is_encrypted(monkeypatch):
    assert unprotected_buckets(translate(sam_template(), monkeypatch)) == []


def test_every_asynchronously_invoked_function_has_a_dlq_or_on_failure_destination(monkeypatch):
    cfn = translate(sam_template(), monkeypatch)
    assert any(function == "PollerFunction" for function, _, _ in _async_invocations(cfn))  # one to check
    assert async_functions_without_failure_handling(cfn) == []
    assert async_deliveries_without_dlq(cfn) == []


def test_every_dead_letter_queue_has_an_alarm(monkeypatch):
    cfn = translate(sam_template(), monkeypatch)
    assert dead_letter_queues_without_alarm(cfn) == []


def test_every_queue_a_function_consumes_has_a_dlq(monkeypatch):
    cfn = translate(sam_template(), monkeypatch)
    assert source_queues_without_redrive(cfn) == []


# ---------------------------------------------------------------------------- each check can fail
def test_the_iam_check_catches_a_write_on_everything(monkeypatch):
    template = sam_template()
    template["Resources"]["IntakeFunction"]["Properties"]["Policies"].append(
        {"Statement": [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "*"}]}
    )
    assert write_actions_on_everything(translate(template, monkeypatch)) == ["IntakeFunctionRole: s3:PutObject on *"]


def test_the_bucket_check_catches_a_missing_block_or_encryption(monkeypatch):
    template = sam_template()
    bucket = template["Resources"]["InvoiceFileBucket"]["Properties"]
    bucket["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] = False
    del bucket["BucketEncryption"]
    assert unprotected_buckets(translate(template, monkeypatch)) == [
        "InvoiceFileBucket: public access not fully blocked",
        "InvoiceFileBucket: no default encryption",
    ]


def test_the_async_check_catches_a_function_whose_only_dlq_is_the_rule_targets(monkeypatch):
    # The schedule's target DLQ stays: it catches failed deliveries, not the poller's own failures.
    template = sam_template()
    del template["Resources"]["PollerFunction"]["Properties"]["EventInvokeConfig"]
    cfn = translate(template, monkeypatch)
    assert async_deliveries_without_dlq(cfn) == []
    assert async_functions_without_failure_handling(cfn) == [
        "PollerFunction (invoked by PollerFunctionEveryMinute) has no DLQ or on-failure destination"
    ]


def test_the_async_check_wants_an_on_failure_destination_not_just_an_invoke_config(monkeypatch):
    template = sam_template()
    config = template["Resources"]["PollerFunction"]["Properties"]["EventInvokeConfig"]
    config["DestinationConfig"] = {"OnSuccess": config["DestinationConfig"]["OnFailure"]}
    assert async_functions_without_failure_handling(translate(template, monkeypatch)) == [
        "PollerFunction (invoked by PollerFunctionEveryMinute) has no DLQ or on-failure destination"
    ]


def test_the_delivery_check_catches_a_schedule_without_target_dlq(monkeypatch):
    template = sam_template()
    del template["Resources"]["PollerFunction"]["Properties"]["Events"]["EveryMinute"]["Properties"]["DeadLetterConfig"]
    cfn = translate(template, monkeypatch)
    assert async_functions_without_failure_handling(cfn) == []
    assert async_deliveries_without_dlq(cfn) == [
        "PollerFunctionEveryMinute -> PollerFunction: failed deliveries are lost (no target DLQ)"
    ]


def test_the_alarm_check_catches_a_dead_letter_queue_nobody_watches(monkeypatch):
    template = sam_template()
    del template["Resources"]["PollerDLQAlarm"]
    assert dead_letter_queues_without_alarm(translate(template, monkeypatch)) == ["PollerDLQ has no alarm"]


def test_the_queue_check_catches_a_queue_without_dlq(monkeypatch):
    template = sam_template()
    del template["Resources"]["NotifyQueue"]["Properties"]["RedrivePolicy"]
    assert source_queues_without_redrive(translate(template, monkeypatch)) == ["NotifyQueue has no DLQ"]


# ---------------------------------------------------------------------------- the authentication matrix
def _post_with(authorization: str | None) -> dict:
    return event("intake-post-blue.json", headers={"authorization": authorization})


@pytest.mark.parametrize(
    ("case", "authorization"),
    [
        ("missing", None),
        ("empty", ""),
        ("wrong", "Bearer wrong-token"),
        ("wrong scheme", "Basic fixture-token-sample-erp"),
        ("token with a suffix", "Bearer fixture-token-sample-erpX"),
    ],
)
def test_intake_refuses_missing_and_wrong_tokens(hub, case, authorization):
    before = hub.snapshot()
    assert hub.call(_post_with(authorization))[0] == 401
    assert hub.call(get_event("zcxs1825830330588741634", token=(authorization or "x").split(" ")[-1]))[0] in (401, 404)
    assert hub.snapshot() == before


def test_a_revoked_token_is_refused(hub):
    """Tokens are revoked by removing their digest from the configuration: refused from then on."""
    assert hub.call(_post_with("Bearer fixture-token-sample-erp"))[0] == 200
    document = hub_config_document()
    # (Not another system's digest: a digest twice is a configuration error, test_credentials.py.)
    document["business_systems"]["sample-erp"]["token_sha256"] = [token_sha256("the-next-token")]
    Path(hub.environment["HUB_CONFIG_FILE"]).write_text(json.dumps(document), encoding="utf-8")
    runtime.reset()
    assert hub.call(get_event("zcxs1825830330588741634"))[0] == 401


def test_another_business_systems_token_cannot_read_an_application(hub):
    assert hub.call(_post_with("Bearer fixture-token-sample-erp"))[0] == 200
    status, answer, _ = hub.call(get_event("zcxs1825830330588741634", token=OTHER_TOKEN))
    assert status == 404 and "zcxs1825830330588741634" in answer["message"]  # not even its existence


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("missing token", {"token": None}),
        ("wrong token", {"token": "forged"}),
        ("bad signature", {"signature": "f" * 64}),
        ("expired timestamp", {"timestamp": str(int(time.time()) - 3600)}),
        ("future timestamp", {"timestamp": str(int(time.time()) + 3600)}),
    ],
)
def test_callbacks_refuse_bad_credentials(callbacks, hub, case, kwargs):  # noqa: F811 - the reused fixture
    before = callbacks.world()
    assert callbacks.post(seed_push_text(), **kwargs) == (401, {"value": False, "message": "unauthorized"})
    assert callbacks.world() == before


def test_callbacks_refuse_a_replay(callbacks):  # noqa: F811 - the reused fixture
    from fapiao_hub.infra.signatures import sign
    from tests.unit.test_callbacks import SECRET

    body, ts = seed_push_text(), str(int(time.time()))
    signature = sign(SECRET.encode(), ts, body.encode())
    assert callbacks.post(body, timestamp=ts, signature=signature)[0] == 404  # accepted (unmatched)
    before = callbacks.world()
    assert callbacks.post(body, timestamp=ts, signature=signature)[0] == 401
    assert callbacks.world() == before
