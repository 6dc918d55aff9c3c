"""Provision the template's stateful resources with boto3, wherever the clients point.

template.yaml is the single source of truth for wiring (ARCHITECTURE.md, principle 6): the local
run and the tests read it and create, against moto (in-process under ``moto.mock_aws()`` or a moto
server over HTTP), every

- ``AWS::DynamoDB::Table``  (keys, attribute definitions, GSIs/LSIs, billing, SSE, TTL, PITR),
- ``AWS::SQS::Queue``       (attributes; RedrivePolicy resolved to the DLQ's ARN, DLQs first),
- ``AWS::S3::Bucket``       (public access block, encryption, versioning, ownership controls),
- ``AWS::Events::EventBus`` and ``AWS::Events::Rule`` (pattern or schedule, targets),
- ``AWS::Events::Archive``  (the bus's archive: moto keeps the matching events, countable),
- ``AWS::Logs::LogGroup``   (name, retention: moto delivers rules' log-group targets to it),

plus the EventBridge rules SAM would generate for functions' ``EventBridgeRule`` events. Moto
cannot invoke a Lambda function, so a rule target that is a function is replaced by a *bridge*
queue (an SQS target moto does deliver to) that the local run pumps into the handler; schedule
rules that target functions are listed in ``schedule_targets`` (moto never fires schedules).

Physical names: the resource's own name property when set (``!Sub`` & co. resolved from parameter
defaults or overrides by local.template's ``ResolvedTemplate``), else ``<prefix>-<LogicalId>``
(bucket names lowercased). Provisioning is idempotent: running it again against the same endpoint
finds and reuses what exists.

``provision()`` returns a :class:`Resources`: physical names/URLs/ARNs by logical id, the resolved
environment of each function (``function_environment``) and each function's event sources
(``functions``), so the local run wires everything generically.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from local.template import (
    ARCHIVE,
    BUCKET,
    BUS,
    FUNCTION_TYPES,
    LOG_GROUP,
    PROVISIONED_TYPES,
    QUEUE,
    RULE,
    SCHEDULE,
    TABLE,
    EventRuleSource,
    FunctionSpec,
    PhysicalResource,
    ResolvedTemplate,
    ScheduleSource,
    TemplateError,
    bus_name,
    default_name,
    dig,
    effective_parameters,
    enabled,
    env_str,
    load_template,
    references,
    truthy,
)

log = logging.getLogger("local.provision")

DEFAULT_PREFIX = "fapiao-hub-local"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account


# ------------------------------------------------------------------ what provisioning returns


@dataclass(frozen=True)
class LambdaBridge:
    """An EventBridge rule target that is a function, delivered through a bridge queue."""

    function: str  # logical id of the function
    rule: str  # logical id of the rule, or "<Function>.<Event>" for SAM events
    rule_name: str
    target_id: str
    queue_url: str
    queue_arn: str
    input: str | None = None
    input_path: str | None = None


@dataclass
class Resources(ResolvedTemplate):
    """What provisioning made: physical names, URLs and ARNs by logical id, and the bridges."""

    bridges: list[LambdaBridge] = field(default_factory=list)
    schedule_targets: list[tuple[str, ScheduleSource]] = field(default_factory=list)  # (function, schedule)

    # -------------------------------------------------------------- lookups

    @property
    def tables(self) -> dict[str, str]:
        return {k: v.name for k, v in self._by_type(TABLE).items()}

    @property
    def buckets(self) -> dict[str, str]:
        return {k: v.name for k, v in self._by_type(BUCKET).items()}

    @property
    def event_buses(self) -> dict[str, PhysicalResource]:
        return self._by_type(BUS)

    @property
    def rules(self) -> dict[str, PhysicalResource]:
        return self._by_type(RULE)

    def as_dict(self) -> dict[str, Any]:
        """Physical names by logical id, grouped by kind (for .fapiao-hub/local.json)."""
        return {
            "tables": self.tables,
            "queues": {k: v.as_dict() for k, v in self.queues.items()},
            "buckets": self.buckets,
            "event_buses": {k: v.as_dict() for k, v in self.event_buses.items()},
            "rules": {k: v.as_dict() for k, v in self.rules.items()},
            "log_groups": {k: v.as_dict() for k, v in self._by_type(LOG_GROUP).items()},
            "archives": {k: v.as_dict() for k, v in self._by_type(ARCHIVE).items()},
            "bridges": [{"function": b.function, "rule": b.rule_name, "queue_url": b.queue_url} for b in self.bridges],
        }


# ------------------------------------------------------------------ helpers


def _bucket_name(name: str) -> str:
    name = re.sub(r"[^a-z0-9.-]", "-", name.lower()).strip("-.")
    return name[:63]


def _queue_name(name: str) -> str:
    fifo = name.endswith(".fifo")
    base = re.sub(r"[^A-Za-z0-9_-]", "-", name.removesuffix(".fifo"))
    return base[: 75 if fifo else 80] + (".fifo" if fifo else "")


def _client_error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


# ------------------------------------------------------------------ provisioning


class _Provisioner:
    def __init__(self, resources: Resources, client: Callable[[str], Any]) -> None:
        self.r = resources
        self.client = client

    def run(self) -> None:
        for logical_id in self._ordered():
            resource = self.r.resources[logical_id]
            props = self.r.resolve(resource.get("Properties") or {})
            {
                TABLE: self.table,
                QUEUE: self.queue,
                BUCKET: self.bucket,
                BUS: self.bus,
                RULE: self.rule,
                ARCHIVE: self.archive,
                LOG_GROUP: self.log_group,
            }[resource["Type"]](logical_id, props)
        for logical_id, resource in self.r.resources.items():
            if resource.get("Type") == SCHEDULE and self.r.is_active(logical_id):
                self.scheduler_schedule(logical_id, self.r.resolve(resource.get("Properties") or {}))
        for spec in self.r.functions().values():
            for source in spec.eventbridge_rules:
                self.function_rule(spec, source)

    def _ordered(self) -> list[str]:
        """Provisionable resources, each after the ones it refers to (DLQs before queues)."""
        candidates = {
            k for k, v in self.r.resources.items() if v.get("Type") in PROVISIONED_TYPES and self.r.is_active(k)
        }
        order: list[str] = []
        visiting: set[str] = set()

        def visit(logical_id: str) -> None:
            if logical_id in order:
                return
            if logical_id in visiting:
                raise TemplateError(f"circular reference through {logical_id}")
            visiting.add(logical_id)
            props = self.r.resources[logical_id].get("Properties") or {}
            for dep in sorted(references(props) & candidates):
                visit(dep)
            visiting.discard(logical_id)
            order.append(logical_id)

        for logical_id in sorted(candidates):
            visit(logical_id)
        return order

    def _name(self, logical_id: str, props: Mapping[str, Any], key: str) -> str:
        return str(props.get(key) or default_name(self.r.prefix, logical_id))

    def _record(self, resource: PhysicalResource) -> None:
        self.r.physical[resource.logical_id] = resource
        log.debug("provisioned %s %s", resource.logical_id, resource.name)

    # -------------------------------------------------------------- DynamoDB

    def table(self, logical_id: str, props: dict[str, Any]) -> None:
        ddb = self.client("dynamodb")
        name = self._name(logical_id, props, "TableName")
        billing = props.get("BillingMode", "PROVISIONED")
        kwargs: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": billing,
        }
        if "ProvisionedThroughput" in props:
            kwargs["ProvisionedThroughput"] = _throughput(props["ProvisionedThroughput"])
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(key):
                kwargs[key] = [_index(i) for i in props[key]]
        if "StreamSpecification" in props:
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": props["StreamSpecification"]["StreamViewType"],
            }
        if "SSESpecification" in props:
            sse = props["SSESpecification"]
            kwargs["SSESpecification"] = {"Enabled": truthy(sse.get("SSEEnabled", False))} | {
                k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse
            }
        if "DeletionProtectionEnabled" in props:
            kwargs["DeletionProtectionEnabled"] = truthy(props["DeletionProtectionEnabled"])
        if "TableClass" in props:
            kwargs["TableClass"] = props["TableClass"]
        try:
            ddb.create_table(**kwargs)
        except ClientError as error:
            if _client_error_code(error) != "ResourceInUseException":
                raise
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and truthy(ttl.get("Enabled")):
            current = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                ddb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
                )
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr and truthy(pitr.get("PointInTimeRecoveryEnabled")):
            ddb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        self._record(PhysicalResource(logical_id, TABLE, name, arn))

    # -------------------------------------------------------------- SQS

    _QUEUE_ATTRIBUTES = (
        "DelaySeconds",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "VisibilityTimeout",
        "FifoQueue",
        "ContentBasedDeduplication",
        "DeduplicationScope",
        "FifoThroughputLimit",
        "KmsMasterKeyId",
        "KmsDataKeyReusePeriodSeconds",
        "SqsManagedSseEnabled",
        "RedrivePolicy",
        "RedriveAllowPolicy",
    )

    def queue(self, logical_id: str, props: dict[str, Any]) -> None:
        attributes = {}
        for key in self._QUEUE_ATTRIBUTES:
            if key in props:
                value = props[key]
                attributes[key] = json.dumps(value) if isinstance(value, dict) else env_str(value)
        name = self._name(logical_id, props, "QueueName")
        if truthy(props.get("FifoQueue", False)) and not name.endswith(".fifo"):
            name += ".fifo"
        self._record(self._ensure_queue(logical_id, _queue_name(name), attributes))

    def _ensure_queue(self, logical_id: str, name: str, attributes: dict[str, str]) -> PhysicalResource:
        sqs = self.client("sqs")
        try:
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        except ClientError as error:
            if _client_error_code(error) not in ("QueueAlreadyExists", "QueueNameExists"):
                raise
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            mutable = {k: v for k, v in attributes.items() if k != "FifoQueue"}
            if mutable:
                sqs.set_queue_attributes(QueueUrl=url, Attributes=mutable)
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return PhysicalResource(logical_id, QUEUE, name, arn, url)

    # -------------------------------------------------------------- S3

    def bucket(self, logical_id: str, props: dict[str, Any]) -> None:
        s3 = self.client("s3")
        name = _bucket_name(self._name(logical_id, props, "BucketName"))
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.r.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.r.region}
        try:
            s3.create_bucket(**kwargs)
        except ClientError as error:
            if _client_error_code(error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration={
                    k: truthy(v) for k, v in props["PublicAccessBlockConfiguration"].items()
                },
            )
        encryption = dig(props, "BucketEncryption", "ServerSideEncryptionConfiguration")
        if encryption:
            rules = [
                {
                    "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                    **({"BucketKeyEnabled": truthy(rule["BucketKeyEnabled"])} if "BucketKeyEnabled" in rule else {}),
                }
                for rule in encryption
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if "VersioningConfiguration" in props:
            s3.put_bucket_versioning(
                Bucket=name,
                VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]},
            )
        if "OwnershipControls" in props:
            s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
        for key in props.keys() - {
            "BucketName",
            "PublicAccessBlockConfiguration",
            "BucketEncryption",
            "VersioningConfiguration",
            "OwnershipControls",
            "Tags",
        }:
            log.info("%s: property %s is not applied locally", logical_id, key)
        self._record(PhysicalResource(logical_id, BUCKET, name, f"arn:aws:s3:::{name}"))

    # -------------------------------------------------------------- EventBridge

    def bus(self, logical_id: str, props: dict[str, Any]) -> None:
        events = self.client("events")
        name = self._name(logical_id, props, "Name")
        if name != "default":
            try:
                events.create_event_bus(Name=name)
            except ClientError as error:
                if _client_error_code(error) != "ResourceAlreadyExistsException":
                    raise
        arn = events.describe_event_bus(Name=name)["Arn"]
        self._record(PhysicalResource(logical_id, BUS, name, arn))

    def rule(self, logical_id: str, props: dict[str, Any]) -> None:
        name = self._name(logical_id, props, "Name")[:64]
        bus = bus_name(str(props.get("EventBusName", "default")))
        schedule = props.get("ScheduleExpression")
        arn = self._put_rule(
            name,
            bus,
            pattern=props.get("EventPattern"),
            schedule=schedule,
            enabled=enabled(props),
            description=props.get("Description"),
        )
        self._record(PhysicalResource(logical_id, RULE, name, arn))
        raw_targets = (self.r.resources[logical_id].get("Properties") or {}).get("Targets") or []
        moto_targets = []
        for raw, target in zip(raw_targets, props.get("Targets") or [], strict=True):
            function = self._target_function(raw.get("Arn"), target["Arn"])
            if function is None:
                moto_targets.append(
                    {
                        k: target[k]
                        for k in (
                            "Id",
                            "Arn",
                            "RoleArn",
                            "Input",
                            "InputPath",
                            "InputTransformer",
                            "SqsParameters",
                            "RetryPolicy",
                            "DeadLetterConfig",
                        )
                        if k in target
                    }
                )
                if "Input" in target or "InputPath" in target:
                    log.warning("%s: moto ignores Input/InputPath on target %s", logical_id, target["Id"])
            elif schedule:
                self.r.schedule_targets.append(
                    (
                        function,
                        ScheduleSource(logical_id, RULE, schedule, target.get("Input"), enabled(props)),
                    )
                )
            else:
                moto_targets.append(self._bridge(function, logical_id, name, target["Id"], target, bus))
        if moto_targets:
            self.client("events").put_targets(Rule=name, EventBusName=bus, Targets=moto_targets)

    def archive(self, logical_id: str, props: dict[str, Any]) -> None:
        events = self.client("events")
        name = self._name(logical_id, props, "ArchiveName")[:48]
        kwargs: dict[str, Any] = {"ArchiveName": name, "EventSourceArn": props["SourceArn"]}
        if props.get("EventPattern"):
            pattern = props["EventPattern"]
            kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        if "RetentionDays" in props:
            kwargs["RetentionDays"] = int(props["RetentionDays"])
        if props.get("Description"):
            kwargs["Description"] = props["Description"]
        try:
            arn = events.create_archive(**kwargs)["ArchiveArn"]
        except ClientError as error:
            if _client_error_code(error) != "ResourceAlreadyExistsException":
                raise
            arn = events.describe_archive(ArchiveName=name)["ArchiveArn"]
        self._record(PhysicalResource(logical_id, ARCHIVE, name, arn))

    # -------------------------------------------------------------- CloudWatch Logs

    def log_group(self, logical_id: str, props: dict[str, Any]) -> None:
        logs = self.client("logs")
        name = self._name(logical_id, props, "LogGroupName")
        try:
            logs.create_log_group(logGroupName=name)
        except ClientError as error:
            if _client_error_code(error) != "ResourceAlreadyExistsException":
                raise
        if props.get("RetentionInDays"):
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
        arn = f"arn:aws:logs:{self.r.region}:{self.r.account_id}:log-group:{name}:*"
        self._record(PhysicalResource(logical_id, LOG_GROUP, name, arn))

    def function_rule(self, spec: FunctionSpec, source: EventRuleSource) -> None:
        """The rule SAM generates for a function's EventBridgeRule event."""
        name = f"{self.r.prefix}-{spec.logical_id}-{source.event}"[:64]
        self._put_rule(name, source.bus_name, pattern=source.pattern, schedule=None, enabled=source.enabled)
        target = {"Input": source.input, "InputPath": source.input_path}
        bridged = self._bridge(
            spec.logical_id,
            f"{spec.logical_id}.{source.event}",
            name,
            "LocalBridge",
            {k: v for k, v in target.items() if v is not None},
            source.bus_name,
        )
        self.client("events").put_targets(Rule=name, EventBusName=source.bus_name, Targets=[bridged])

    def scheduler_schedule(self, logical_id: str, props: dict[str, Any]) -> None:
        target = props.get("Target") or {}
        raw_arn = dig(self.r.resources[logical_id], "Properties", "Target", "Arn")
        function = self._target_function(raw_arn, target.get("Arn", ""))
        if function is None:
            log.info("%s: schedule target %s is not a function; not fired locally", logical_id, target)
            return
        self.r.schedule_targets.append(
            (
                function,
                ScheduleSource(
                    logical_id,
                    SCHEDULE,
                    props["ScheduleExpression"],
                    target.get("Input"),
                    enabled(props),
                ),
            )
        )

    def _put_rule(
        self,
        name: str,
        bus: str,
        *,
        pattern: Any,
        schedule: str | None,
        enabled: bool,
        description: str | None = None,
    ) -> str:
        kwargs: dict[str, Any] = {
            "Name": name,
            "EventBusName": bus,
            "State": "ENABLED" if enabled else "DISABLED",
        }
        if pattern is not None:
            kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        if schedule:
            kwargs["ScheduleExpression"] = schedule
        if description:
            kwargs["Description"] = description
        return self.client("events").put_rule(**kwargs)["RuleArn"]

    def _target_function(self, raw_arn: Any, resolved_arn: str) -> str | None:
        """The logical id of the function a target's Arn points at, else None."""
        refs = references(raw_arn) if raw_arn is not None else set()
        for ref in refs:
            if self.r.resources.get(ref, {}).get("Type") in FUNCTION_TYPES:
                return ref
        if isinstance(resolved_arn, str) and ":lambda:" in resolved_arn:
            for logical_id, res in self.r.resources.items():
                if res.get("Type") in FUNCTION_TYPES and resolved_arn.endswith(
                    ":function:" + self.r.function_name(logical_id)
                ):
                    return logical_id
        return None

    def _bridge(
        self,
        function: str,
        rule: str,
        rule_name: str,
        target_id: str,
        target: Mapping[str, Any],
        bus: str,
    ) -> dict[str, Any]:
        """Create the bridge queue for a function target; return the SQS target for moto."""
        queue = self._ensure_queue(
            f"{rule}:{target_id}",
            _queue_name(f"{rule_name}-{target_id}-bridge"),
            {"VisibilityTimeout": "30"},
        )
        self.r.bridges.append(
            LambdaBridge(
                function=function,
                rule=rule,
                rule_name=rule_name,
                target_id=target_id,
                queue_url=str(queue.url),
                queue_arn=queue.arn,
                input=target.get("Input"),
                input_path=target.get("InputPath"),
            )
        )
        sqs_target: dict[str, Any] = {"Id": target_id, "Arn": queue.arn}
        if "InputTransformer" in target:
            sqs_target["InputTransformer"] = target["InputTransformer"]
        return sqs_target


def _throughput(value: Mapping[str, Any]) -> dict[str, int]:
    return {k: int(value[k]) for k in ("ReadCapacityUnits", "WriteCapacityUnits")}


def _index(index: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: index[k] for k in ("IndexName", "KeySchema", "Projection")}
    if "ProvisionedThroughput" in index:
        out["ProvisionedThroughput"] = _throughput(index["ProvisionedThroughput"])
    return out


def provision(
    template_path: str | Path,
    *,
    session: Any = None,
    clients: Mapping[str, Any] | None = None,
    endpoint_url: str | None = None,
    region: str = DEFAULT_REGION,
    parameters: Mapping[str, Any] | None = None,
    prefix: str = DEFAULT_PREFIX,
    account_id: str | None = None,
) -> Resources:
    """Create the template's tables, queues, bucket(s), buses and rules; return what was made.

    Clients come from ``clients`` (service name -> boto3 client) when given there, else from
    ``session`` (a boto3 Session; the default session when None) with ``region`` and
    ``endpoint_url``. Under ``moto.mock_aws()`` no endpoint is needed; for a moto server pass its
    URL (or set AWS_ENDPOINT_URL).
    """
    import boto3

    template_path = Path(template_path)
    template = load_template(template_path)
    made: dict[str, Any] = dict(clients or {})

    def client(service: str) -> Any:
        if service not in made:
            factory = session if session is not None else boto3
            made[service] = factory.client(service, region_name=region, endpoint_url=endpoint_url)
        return made[service]

    if account_id is None:
        try:
            account_id = client("sts").get_caller_identity()["Account"]
        except Exception:  # no STS behind the endpoint: moto's default account
            account_id = DEFAULT_ACCOUNT_ID
    resources = Resources(
        template=template,
        template_dir=template_path.resolve().parent,
        parameters=effective_parameters(template, parameters),
        region=region,
        account_id=str(account_id),
        prefix=prefix,
    )
    _Provisioner(resources, client).run()
    return resources
