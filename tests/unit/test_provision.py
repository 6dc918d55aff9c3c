"""local.provision against moto in-process: what template.yaml declares is what gets created.

Expected values are read from template.yaml by this test's own tag-tolerant YAML loader, not
through local.template, so a mistake in the loader cannot hide itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from local.provision import Resources, provision
from local.template import TemplateError, loads

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "ap-east-1"


class _RawLoader(yaml.SafeLoader):
    """Keeps short tags as ("!Tag", value) tuples."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> tuple[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        return ("!" + suffix, loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return ("!" + suffix, loader.construct_sequence(node, deep=True))
    return ("!" + suffix, loader.construct_mapping(node, deep=True))  # type: ignore[arg-type]


_RawLoader.add_multi_constructor("!", _tagged)
RAW = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_RawLoader)  # noqa: S506 - SafeLoader subclass


def raw_resources(type_: str) -> dict[str, dict[str, Any]]:
    return {k: v.get("Properties", {}) for k, v in RAW["Resources"].items() if v["Type"] == type_}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


@pytest.fixture
def resources(aws) -> Resources:
    return provision(TEMPLATE, region=REGION)


def client(service: str):
    return boto3.client(service, region_name=REGION)


def test_every_table_has_the_template_keys_and_indexes(resources: Resources) -> None:
    declared = raw_resources("AWS::DynamoDB::Table")
    assert declared and set(resources.tables) == set(declared)
    for logical_id, props in declared.items():
        table = client("dynamodb").describe_table(TableName=resources.tables[logical_id])["Table"]
        assert table["KeySchema"] == props["KeySchema"]
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str)
        assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"]
        made = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}
        wanted = {i["IndexName"]: i for i in props.get("GlobalSecondaryIndexes", [])}
        assert set(made) == set(wanted)
        for name, index in wanted.items():
            assert made[name]["KeySchema"] == index["KeySchema"]
            assert made[name]["Projection"]["ProjectionType"] == index["Projection"]["ProjectionType"]
            assert sorted(made[name]["Projection"].get("NonKeyAttributes", [])) == sorted(
                index["Projection"].get("NonKeyAttributes", [])
            )
        assert table["SSEDescription"]["Status"] == "ENABLED"


def test_the_applications_table_has_its_due_work_index(resources: Resources) -> None:
    """A fixed anchor, in case the comparison above compares two empty things."""
    table = client("dynamodb").describe_table(TableName=resources.tables["ApplicationsTable"])["Table"]
    indexes = {i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]] for i in table["GlobalSecondaryIndexes"]}
    assert indexes == {
        "due-work": ["due_bucket", "next_poll_at"],
        "by-request-number": ["request_number"],
        # The operations desk's lists (store.listing.ListQuery), each sharded, newest received first.
        "list-all": ["list_all", "created_at"],
        "list-status": ["list_status", "created_at"],
        "list-system": ["list_system", "created_at"],
        "list-seller": ["list_seller", "created_at"],
        "list-channel": ["list_channel", "created_at"],
        "settled": ["settled_day", "settled_at"],
        "attention": ["attention", "updated_at"],
    }


def test_queues_have_their_attributes_and_redrive_to_the_dlq(resources: Resources) -> None:
    declared = raw_resources("AWS::SQS::Queue")
    assert set(resources.queues) == set(declared)
    sqs = client("sqs")
    redriven = 0
    for logical_id, props in declared.items():
        attributes = sqs.get_queue_attributes(QueueUrl=resources.queues[logical_id].url, AttributeNames=["All"])[
            "Attributes"
        ]
        for key in ("VisibilityTimeout", "MessageRetentionPeriod"):
            if key in props:
                assert attributes[key] == str(props[key])
        if "RedrivePolicy" in props:
            tag, target = props["RedrivePolicy"]["deadLetterTargetArn"]
            assert tag == "!GetAtt"
            dlq, attribute = target.split(".", 1) if isinstance(target, str) else target
            assert attribute == "Arn"
            policy = json.loads(attributes["RedrivePolicy"])
            assert policy["deadLetterTargetArn"] == resources.queues[dlq].arn
            assert int(policy["maxReceiveCount"]) == props["RedrivePolicy"]["maxReceiveCount"]
            redriven += 1
    assert redriven >= 1


def test_the_dispatch_queue_redrives_after_five_receives(resources: Resources) -> None:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=resources.queues["DispatchQueue"].url, AttributeNames=["RedrivePolicy", "VisibilityTimeout"]
    )["Attributes"]
    policy = json.loads(attributes["RedrivePolicy"])
    assert policy["deadLetterTargetArn"].endswith(":" + resources.queues["DispatchDLQ"].name)
    assert int(policy["maxReceiveCount"]) == 5
    assert attributes["VisibilityTimeout"] == "180"


def test_buckets_block_public_access_and_encrypt(resources: Resources) -> None:
    declared = raw_resources("AWS::S3::Bucket")
    assert declared and set(resources.buckets) == set(declared)
    s3 = client("s3")
    for logical_id, props in declared.items():
        name = resources.buckets[logical_id]
        assert name == name.lower()
        block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
        assert block == props["PublicAccessBlockConfiguration"]
        (rule,) = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
        (wanted,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert (
            rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
            == wanted["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
        )
        assert s3.get_bucket_versioning(Bucket=name).get("Status") == "Enabled"


def test_the_bus_exists_under_its_stage_name(resources: Resources) -> None:
    bus = resources.event_buses["HubBus"]
    stage = RAW["Parameters"]["Stage"]["Default"]
    assert bus.name == f"fapiao-hub-{stage}"
    assert client("events").describe_event_bus(Name=bus.name)["Arn"] == bus.arn


def test_parameter_overrides_reach_names_and_environment(aws) -> None:
    resources = provision(TEMPLATE, region=REGION, parameters={"Stage": "prod"}, prefix="other")
    assert resources.event_buses["HubBus"].name == "fapiao-hub-prod"
    assert resources.tables["ApplicationsTable"] == "other-ApplicationsTable"
    env = resources.function_environment("IntakeFunction")
    assert env["STAGE"] == "prod"
    assert env["EVENT_BUS_NAME"] == "fapiao-hub-prod"
    # IsProd turns deletion protection on.
    table = client("dynamodb").describe_table(TableName="other-ApplicationsTable")["Table"]
    assert table.get("DeletionProtectionEnabled") is True


def test_disallowed_parameter_values_are_refused(aws) -> None:
    with pytest.raises(TemplateError, match="Stage"):
        provision(TEMPLATE, region=REGION, parameters={"Stage": "qa"})
    with pytest.raises(TemplateError, match="unknown"):
        provision(TEMPLATE, region=REGION, parameters={"Nope": "x"})


def test_intake_environment_resolves_to_the_provisioned_names(resources: Resources) -> None:
    env = resources.function_environment("IntakeFunction")
    variables = {
        **RAW["Globals"]["Function"]["Environment"]["Variables"],
        **RAW["Resources"]["IntakeFunction"]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    assert set(env) == set(variables)
    by_ref = {
        **resources.tables,
        **{k: q.url for k, q in resources.queues.items()},
        **resources.buckets,
        **{k: b.name for k, b in resources.event_buses.items()},
        **{k: str(p["Default"]) for k, p in RAW["Parameters"].items()},
    }
    for name, raw in variables.items():
        if isinstance(raw, tuple):
            tag, target = raw
            assert tag == "!Ref", f"{name}: add a case for {tag}"
            assert env[name] == by_ref[target], name
        else:
            assert env[name] == str(raw), name
    # And the resources are really there.
    client("dynamodb").describe_table(TableName=env["APPLICATIONS_TABLE"])
    client("dynamodb").describe_table(TableName=env["INVOICES_TABLE"])
    client("sqs").get_queue_attributes(QueueUrl=env["DISPATCH_QUEUE_URL"], AttributeNames=["QueueArn"])
    client("s3").head_bucket(Bucket=env["FILES_BUCKET"])
    client("events").describe_event_bus(Name=env["EVENT_BUS_NAME"])
    assert env["STRICT_TAX_NUMBERS"] == "false"


def test_environment_extras_add_override_and_remove(resources: Resources) -> None:
    env = resources.function_environment(
        "IntakeFunction", {"HUB_CONFIG_FILE": "/tmp/x.json", "HUB_CONFIG_PARAMETER": None, "STAGE": "local"}
    )
    assert env["HUB_CONFIG_FILE"] == "/tmp/x.json"
    assert "HUB_CONFIG_PARAMETER" not in env
    assert env["STAGE"] == "local"
    with pytest.raises(TemplateError):
        resources.function_environment("ApplicationsTable")


def test_intrinsics_used_by_policies_resolve(resources: Resources) -> None:
    props = RAW["Resources"]["IntakeFunction"]["Properties"]
    assert props  # the policies below are the template's
    assert resources.resolve({"Fn::Select": [1, {"Fn::Split": ["/", {"Ref": "HubConfigParameterName"}]}]}) == (
        "fapiao-hub"
    )
    assert resources.resolve({"Fn::GetAtt": ["DispatchQueue", "QueueName"]}) == resources.queues["DispatchQueue"].name
    assert resources.resolve({"Fn::Sub": "${InvoiceFileBucket.Arn}/*"}) == (
        f"arn:aws:s3:::{resources.buckets['InvoiceFileBucket']}/*"
    )
    assert resources.resolve({"Fn::If": ["IsProd", 365, 30]}) == 30
    assert resources.resolve({"Fn::Sub": ["${A}-${!Literal}-${AWS::Region}", {"A": "x"}]}) == (
        f"x-${{Literal}}-{REGION}"
    )


def test_functions_list_code_and_routes(resources: Resources) -> None:
    functions = resources.functions()
    raw_functions = raw_resources("AWS::Serverless::Function")
    assert set(functions) == set(raw_functions)
    intake = functions["IntakeFunction"]
    raw = raw_functions["IntakeFunction"]
    assert (intake.code_uri, intake.handler) == (raw["CodeUri"], raw["Handler"])
    assert intake.timeout == raw.get("Timeout", RAW["Globals"]["Function"]["Timeout"])
    assert intake.memory_size == RAW["Globals"]["Function"]["MemorySize"]
    assert intake.layers == ("layers/hub",)
    assert {(r.method, r.path) for r in intake.http_routes} == {
        (e["Properties"]["Method"], e["Properties"]["Path"]) for e in raw["Events"].values() if e["Type"] == "HttpApi"
    }


def test_provisioning_twice_is_idempotent(resources: Resources) -> None:
    again = provision(TEMPLATE, region=REGION)
    assert again.as_dict() == resources.as_dict()
    assert len(client("dynamodb").list_tables()["TableNames"]) == len(resources.tables)
    assert len(client("sqs").list_queues()["QueueUrls"]) == len(resources.queues)
    assert len(client("s3").list_buckets()["Buckets"]) == len(resources.buckets)


# ---------------------------------------------------------------- event sources (synthetic template)

SYNTHETIC = """
Parameters:
  Stage: {Type: String, Default: dev}
Conditions:
  IsDev: !Equals [!Ref Stage, dev]
  IsProd: !Not [!Condition IsDev]
Globals:
  Function:
    Timeout: 10
    Environment:
      Variables:
        WORK_QUEUE: !Ref WorkQueue
Resources:
  Bus:
    Type: AWS::Events::EventBus
    Properties: {Name: !Sub "bus-${Stage}"}
  WorkDLQ:
    Type: AWS::SQS::Queue
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      RedrivePolicy: {deadLetterTargetArn: !GetAtt WorkDLQ.Arn, maxReceiveCount: 3}
  Archive:
    Type: AWS::SQS::Queue
  OnlyInProd:
    Type: AWS::SQS::Queue
    Condition: IsProd
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/worker
      Handler: app.handler
      Environment:
        Variables:
          OWN: !If [IsDev, "dev-value", "prod-value"]
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
        Tick:
          Type: Schedule
          Properties: {Schedule: rate(5 minutes)}
        Tock:
          Type: ScheduleV2
          Properties: {ScheduleExpression: "cron(0 3 * * ? *)", State: DISABLED}
        Issued:
          Type: EventBridgeRule
          Properties:
            EventBusName: !Ref Bus
            Pattern: {detail-type: [InvoiceIssued]}
            InputPath: $.detail
        Catch:
          Type: HttpApi
  ArchiveRule:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !GetAtt Bus.Name
      EventPattern: {source: [fapiao-hub]}
      Targets:
        - {Id: archive, Arn: !GetAtt Archive.Arn}
        - {Id: worker, Arn: !GetAtt Worker.Arn}
  Nightly:
    Type: AWS::Events::Rule
    Properties:
      ScheduleExpression: rate(1 day)
      Targets:
        - {Id: worker, Arn: !GetAtt Worker.Arn, Input: '{"job": "nightly"}'}
"""


@pytest.fixture
def synthetic(aws, tmp_path: Path) -> Resources:
    path = tmp_path / "template.yaml"
    path.write_text(SYNTHETIC, encoding="utf-8")
    return provision(path, region=REGION, prefix="t")


def test_event_sources_are_listed(synthetic: Resources) -> None:
    worker = synthetic.functions()["Worker"]
    assert worker.timeout == 10 and worker.memory_size == 128
    (sqs,) = worker.sqs_sources
    assert (sqs.queue, sqs.batch_size, sqs.report_batch_item_failures) == ("WorkQueue", 5, True)
    assert sqs.queue_url == synthetic.queues["WorkQueue"].url
    assert [(s.kind, s.expression, s.enabled) for s in worker.schedules] == [
        ("Schedule", "rate(5 minutes)", True),
        ("ScheduleV2", "cron(0 3 * * ? *)", False),
    ]
    (rule,) = worker.eventbridge_rules
    assert (rule.bus_name, rule.pattern, rule.input_path) == ("bus-dev", {"detail-type": ["InvoiceIssued"]}, "$.detail")
    (route,) = worker.http_routes
    assert route.route_key == "$default"
    assert "OnlyInProd" not in synthetic.queues
    assert synthetic.function_environment("Worker") == {
        "WORK_QUEUE": synthetic.queues["WorkQueue"].url,
        "OWN": "dev-value",
    }
    ((function, nightly),) = synthetic.schedule_targets
    assert (function, nightly.expression, nightly.input) == ("Worker", "rate(1 day)", '{"job": "nightly"}')


def test_rules_deliver_to_queues_and_bridge_functions(synthetic: Resources) -> None:
    """Moto delivers rule matches to SQS; function targets get a bridge queue instead."""
    assert {b.rule for b in synthetic.bridges} == {"ArchiveRule", "Worker.Issued"}
    events = client("events")
    sqs = client("sqs")
    targets = events.list_targets_by_rule(Rule=synthetic.rules["ArchiveRule"].name, EventBusName="bus-dev")
    assert all(":sqs:" in t["Arn"] for t in targets["Targets"])
    events.put_events(
        Entries=[{"EventBusName": "bus-dev", "Source": "fapiao-hub", "DetailType": "InvoiceIssued", "Detail": "{}"}]
    )

    def bodies(url: str) -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    assert [e["detail-type"] for e in bodies(synthetic.queues["Archive"].url)] == ["InvoiceIssued"]
    for bridge in synthetic.bridges:
        assert [e["detail-type"] for e in bodies(bridge.queue_url)] == ["InvoiceIssued"], bridge.rule
    issued = next(b for b in synthetic.bridges if b.rule == "Worker.Issued")
    assert issued.input_path == "$.detail"


def test_short_tags_load_in_long_form() -> None:
    loaded = loads(
        """
a: !Ref X
b: !GetAtt Q.Arn
c: !GetAtt [Q, QueueName]
d: !Sub "${X}-y"
e: !If [C, 1, 2]
f: !Select [0, !Split [",", "a,b"]]
g: !Equals [!Ref X, v]
h: !Not [!Condition C]
i: !Join ["", [a, b]]
"""
    )
    assert loaded == {
        "a": {"Ref": "X"},
        "b": {"Fn::GetAtt": ["Q", "Arn"]},
        "c": {"Fn::GetAtt": ["Q", "QueueName"]},
        "d": {"Fn::Sub": "${X}-y"},
        "e": {"Fn::If": ["C", 1, 2]},
        "f": {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]},
        "g": {"Fn::Equals": [{"Ref": "X"}, "v"]},
        "h": {"Fn::Not": [{"Condition": "C"}]},
        "i": {"Fn::Join": ["", ["a", "b"]]},
    }
