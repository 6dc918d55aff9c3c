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
defaults or overrides), else ``<prefix>-<LogicalId>`` (bucket names lowercased). Provisioning is
idempotent: running it again against the same endpoint finds and reuses what exists.

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

from local.template import load_template

log = logging.getLogger("local.provision")

DEFAULT_PREFIX = "fapiao-hub-local"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account

TABLE = "AWS::DynamoDB::Table"
QUEUE = "AWS::SQS::Queue"
BUCKET = "AWS::S3::Bucket"
BUS = "AWS::Events::EventBus"
RULE = "AWS::Events::Rule"
ARCHIVE = "AWS::Events::Archive"
LOG_GROUP = "AWS::Logs::LogGroup"
SCHEDULE = "AWS::Scheduler::Schedule"
SERVERLESS_FUNCTION = "AWS::Serverless::Function"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
LAYER = "AWS::Serverless::LayerVersion"
FUNCTION_TYPES = (SERVERLESS_FUNCTION, LAMBDA_FUNCTION)
PROVISIONED_TYPES = (TABLE, QUEUE, BUCKET, BUS, RULE, ARCHIVE, LOG_GROUP)


class TemplateError(ValueError):
    """The template uses something the local run cannot resolve or create."""


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()


# ------------------------------------------------------------------ what provisioning returns


@dataclass(frozen=True)
class PhysicalResource:
    logical_id: str
    type: str
    name: str
    arn: str
    url: str | None = None  # queues only

    def as_dict(self) -> dict[str, str]:
        out = {"type": self.type, "name": self.name, "arn": self.arn}
        if self.url:
            out["url"] = self.url
        return out


@dataclass(frozen=True)
class HttpRoute:
    event: str
    method: str  # upper case, "ANY" for any method
    path: str | None  # None: the $default (catch-all) route

    @property
    def route_key(self) -> str:
        return "$default" if self.path is None else f"{self.method} {self.path}"


@dataclass(frozen=True)
class SqsSource:
    event: str
    queue: str | None  # logical id, when the queue is one of the template's
    queue_arn: str
    queue_url: str | None
    batch_size: int = 10
    report_batch_item_failures: bool = False
    maximum_batching_window: int = 0
    enabled: bool = True


@dataclass(frozen=True)
class ScheduleSource:
    event: str  # event name (SAM) or rule / schedule logical id
    kind: str  # Schedule, ScheduleV2, AWS::Events::Rule, AWS::Scheduler::Schedule
    expression: str  # rate(...), cron(...), at(...)
    input: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class EventRuleSource:
    event: str
    bus_name: str
    pattern: dict[str, Any]
    input: str | None = None
    input_path: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str  # physical function name
    code_uri: str | None
    handler: str | None
    runtime: str | None
    timeout: int
    memory_size: int
    layers: tuple[str, ...] = ()  # content directories of the template's own layers
    http_routes: tuple[HttpRoute, ...] = ()
    sqs_sources: tuple[SqsSource, ...] = ()
    schedules: tuple[ScheduleSource, ...] = ()
    eventbridge_rules: tuple[EventRuleSource, ...] = ()


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
class Resources:
    template: dict[str, Any]
    template_dir: Path
    parameters: dict[str, Any]
    region: str
    account_id: str
    prefix: str
    physical: dict[str, PhysicalResource] = field(default_factory=dict)
    bridges: list[LambdaBridge] = field(default_factory=list)
    schedule_targets: list[tuple[str, ScheduleSource]] = field(default_factory=list)  # (function, schedule)
    _conditions: dict[str, bool] = field(default_factory=dict, repr=False)

    # -------------------------------------------------------------- lookups

    def _by_type(self, type_: str) -> dict[str, PhysicalResource]:
        return {k: v for k, v in self.physical.items() if v.type == type_}

    @property
    def tables(self) -> dict[str, str]:
        return {k: v.name for k, v in self._by_type(TABLE).items()}

    @property
    def queues(self) -> dict[str, PhysicalResource]:
        return self._by_type(QUEUE)

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

    @property
    def resources(self) -> dict[str, Any]:
        return self.template.get("Resources") or {}

    def _resource(self, logical_id: str) -> dict[str, Any]:
        try:
            return self.resources[logical_id]
        except KeyError:
            raise TemplateError(f"no resource {logical_id!r} in the template") from None

    # -------------------------------------------------------------- intrinsic functions

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"unknown condition {name!r}")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    def is_active(self, logical_id: str) -> bool:
        cond = self._resource(logical_id).get("Condition")
        return cond is None or self.condition(cond)

    def function_name(self, logical_id: str) -> str:
        props = self._resource(logical_id).get("Properties") or {}
        name = props.get("FunctionName")
        return str(self.resolve(name)) if name is not None else _default_name(self.prefix, logical_id)

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.prefix,
            "AWS::StackId": (f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.prefix}/local"),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical:
            res = self.physical[name]
            return res.url if res.type == QUEUE else res.name
        resource = self._resource(name)
        type_ = resource.get("Type", "")
        if type_ in FUNCTION_TYPES:
            return self.function_name(name)
        if type_ == "AWS::SNS::Topic":
            return self.get_att(name, "TopicArn")
        if type_ in PROVISIONED_TYPES:
            raise TemplateError(f"{name} is referenced before it is provisioned")
        # Anything the local run does not create (HTTP API, layer, log group, alarm, ...): a
        # stable placeholder, enough for names and descriptions.
        return _default_name(self.prefix, name)

    def get_att(self, name: str, attribute: str) -> Any:
        arn_prefix = f"arn:aws:{{}}:{self.region}:{self.account_id}"
        if name in self.physical:
            res = self.physical[name]
            values: dict[str, Any] = {"Arn": res.arn}
            if res.type == QUEUE:
                values |= {"QueueName": res.name, "QueueUrl": res.url}
            elif res.type == BUCKET:
                values |= {
                    "DomainName": f"{res.name}.s3.amazonaws.com",
                    "RegionalDomainName": f"{res.name}.s3.{self.region}.amazonaws.com",
                }
            elif res.type == BUS:
                values |= {"Name": res.name}
            elif res.type == TABLE:
                values |= {"StreamArn": f"{res.arn}/stream/local"}
            if attribute in values:
                return values[attribute]
        else:
            type_ = self._resource(name).get("Type", "")
            if type_ in FUNCTION_TYPES and attribute == "Arn":
                return f"{arn_prefix.format('lambda')}:function:{self.function_name(name)}"
            if type_ == "AWS::SNS::Topic" and attribute in {"TopicArn", "TopicName"}:
                props = self._resource(name).get("Properties") or {}
                topic = str(self.resolve(props.get("TopicName", _default_name(self.prefix, name))))
                return topic if attribute == "TopicName" else f"{arn_prefix.format('sns')}:{topic}"
            if type_ in PROVISIONED_TYPES:
                raise TemplateError(f"{name}.{attribute} is referenced before {name} is provisioned")
        raise TemplateError(f"Fn::GetAtt {name}.{attribute} is not known to the local run")

    def resolve(self, value: Any) -> Any:
        """Resolve intrinsic functions in ``value`` against parameters and provisioned resources."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key, arg)
        out = {}
        for k, v in value.items():
            resolved = self.resolve(v)
            if resolved is not NO_VALUE:
                out[k] = resolved
        return out

    def _function(self, key: str, arg: Any) -> Any:
        if key == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else self.resolve(arg)
            return self.get_att(parts[0], parts[1])
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::If":
            cond, if_true, if_false = arg
            return self.resolve(if_true if self.condition(cond) else if_false)
        if key == "Fn::Equals":
            left, right = (self.resolve(v) for v in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.resolve(arg[0])
        if key == "Fn::And":
            return all(self.resolve(v) for v in arg)
        if key == "Fn::Or":
            return any(self.resolve(v) for v in arg)
        if key == "Fn::Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        if key == "Fn::Split":
            delimiter, source = self.resolve(arg)
            return str(source).split(delimiter)
        if key == "Fn::Join":
            delimiter, items = self.resolve(arg)
            return str(delimiter).join(_env_str(v) for v in items)
        if key == "Fn::FindInMap":
            mapping, top, second = self.resolve(arg)
            return self.template["Mappings"][mapping][top][second]
        if key == "Fn::Base64":
            import base64

            return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        if key == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg), separators=(",", ":"))
        if key == "Fn::Length":
            return len(self.resolve(arg))
        if key == "Fn::GetAZs":
            return [f"{self.region}{z}" for z in "abc"]
        raise TemplateError(f"{key} is not supported by the local run")

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], self.resolve(arg[1]) if len(arg) > 1 else {}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                return _env_str(variables[expr])
            if "." in expr and not expr.startswith("AWS::"):
                resource, attribute = expr.split(".", 1)
                return _env_str(self.get_att(resource, attribute))
            return _env_str(self.ref(expr))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    # -------------------------------------------------------------- functions

    def function_environment(self, logical_id: str, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
        """The function's environment as Lambda would see it (Globals merged with its own).

        ``extra`` adds or overrides variables; a value of None removes the variable.
        """
        resource = self._resource(logical_id)
        if resource.get("Type") not in FUNCTION_TYPES:
            raise TemplateError(f"{logical_id} is not a function")
        global_vars = _dig(self.template, "Globals", "Function", "Environment", "Variables") or {}
        own_vars = _dig(resource, "Properties", "Environment", "Variables") or {}
        env: dict[str, str] = {}
        for key, raw in {**global_vars, **own_vars}.items():
            value = self.resolve(raw)
            if value is not NO_VALUE:
                env[key] = _env_str(value)
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def functions(self) -> dict[str, FunctionSpec]:
        """Every active AWS::Serverless::Function with its code and event sources."""
        globals_ = _dig(self.template, "Globals", "Function") or {}
        specs: dict[str, FunctionSpec] = {}
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != SERVERLESS_FUNCTION or not self.is_active(logical_id):
                continue
            props = {**globals_, **(resource.get("Properties") or {})}
            code_uri = self.resolve(props.get("CodeUri"))
            specs[logical_id] = FunctionSpec(
                logical_id=logical_id,
                name=self.function_name(logical_id),
                code_uri=code_uri if isinstance(code_uri, str) else None,
                handler=self.resolve(props.get("Handler")),
                runtime=self.resolve(props.get("Runtime")),
                timeout=int(self.resolve(props.get("Timeout", 3))),
                memory_size=int(self.resolve(props.get("MemorySize", 128))),
                layers=tuple(self._layer_dirs(props.get("Layers") or [])),
                **self._event_sources(logical_id, resource),
            )
        return specs

    def _layer_dirs(self, layers: list[Any]) -> list[str]:
        dirs = []
        for layer in layers:
            if isinstance(layer, dict) and "Ref" in layer and layer["Ref"] in self.resources:
                res = self.resources[layer["Ref"]]
                content = (res.get("Properties") or {}).get("ContentUri")
                if res.get("Type") == LAYER and isinstance(content, str):
                    dirs.append(content)
        return dirs

    def _event_sources(self, logical_id: str, resource: dict[str, Any]) -> dict[str, tuple]:
        routes, sqs, schedules, rules = [], [], [], []
        events = (resource.get("Properties") or {}).get("Events") or {}
        for event_name, event in events.items():
            kind = event.get("Type")
            props = self.resolve(event.get("Properties") or {})
            if kind == "HttpApi":
                path = props.get("Path")
                method = str(props.get("Method", "ANY")).upper()
                routes.append(
                    HttpRoute(event_name, "ANY" if method == "X-AMAZON-APIGATEWAY-ANY-METHOD" else method, path)
                )
            elif kind == "SQS":
                arn = props["Queue"]
                queue = next((k for k, q in self.queues.items() if q.arn == arn), None)
                sqs.append(
                    SqsSource(
                        event=event_name,
                        queue=queue,
                        queue_arn=arn,
                        queue_url=self.queues[queue].url if queue else None,
                        batch_size=int(props.get("BatchSize", 10)),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in (props.get("FunctionResponseTypes") or []),
                        maximum_batching_window=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                        enabled=_truthy(props.get("Enabled", True)),
                    )
                )
            elif kind in ("Schedule", "ScheduleV2"):
                expression = props.get("Schedule" if kind == "Schedule" else "ScheduleExpression")
                schedules.append(
                    ScheduleSource(
                        event=event_name,
                        kind=kind,
                        expression=expression,
                        input=props.get("Input"),
                        enabled=_enabled(props),
                    )
                )
            elif kind in ("EventBridgeRule", "CloudWatchEvent"):
                rules.append(
                    EventRuleSource(
                        event=event_name,
                        bus_name=_bus_name(props.get("EventBusName", "default")),
                        pattern=props.get("Pattern") or {},
                        input=props.get("Input"),
                        input_path=props.get("InputPath"),
                        enabled=_enabled(props),
                    )
                )
            elif kind is not None:
                log.warning("%s: event %s of type %s is not wired locally", logical_id, event_name, kind)
        return {
            "http_routes": tuple(routes),
            "sqs_sources": tuple(sqs),
            "schedules": tuple(schedules),
            "eventbridge_rules": tuple(rules),
        }


# ------------------------------------------------------------------ helpers


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _env_str(value: Any) -> str:
    """CloudFormation's string rendering of a scalar (booleans lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        raise TemplateError(f"{value!r} is not a scalar")
    return str(value)


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _enabled(props: Mapping[str, Any]) -> bool:
    if "State" in props:
        return str(props["State"]).upper() == "ENABLED"
    return _truthy(props.get("Enabled", True))


def _bus_name(name_or_arn: str) -> str:
    return name_or_arn.rsplit("/", 1)[-1] if name_or_arn.startswith("arn:") else name_or_arn


def _default_name(prefix: str, logical_id: str) -> str:
    return f"{prefix}-{logical_id}"


def _bucket_name(name: str) -> str:
    name = re.sub(r"[^a-z0-9.-]", "-", name.lower()).strip("-.")
    return name[:63]


def _queue_name(name: str) -> str:
    fifo = name.endswith(".fifo")
    base = re.sub(r"[^A-Za-z0-9_-]", "-", name.removesuffix(".fifo"))
    return base[: 75 if fifo else 80] + (".fifo" if fifo else "")


def _references(value: Any) -> set[str]:
    """Logical ids (or parameters) that ``value`` refers to."""
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= _references(v)
    elif isinstance(value, dict):
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" and isinstance(arg, str):
                return {arg}
            if key == "Fn::GetAtt":
                return {arg.split(".", 1)[0] if isinstance(arg, str) else arg[0]}
            if key == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) else arg
                found |= {m.split(".", 1)[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
                if isinstance(arg, list) and len(arg) > 1:
                    found |= _references(arg[1])
                return found
        for v in value.values():
            found |= _references(v)
    return found


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
            for dep in sorted(_references(props) & candidates):
                visit(dep)
            visiting.discard(logical_id)
            order.append(logical_id)

        for logical_id in sorted(candidates):
            visit(logical_id)
        return order

    def _name(self, logical_id: str, props: Mapping[str, Any], key: str) -> str:
        return str(props.get(key) or _default_name(self.r.prefix, logical_id))

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
            kwargs["SSESpecification"] = {"Enabled": _truthy(sse.get("SSEEnabled", False))} | {
                k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse
            }
        if "DeletionProtectionEnabled" in props:
            kwargs["DeletionProtectionEnabled"] = _truthy(props["DeletionProtectionEnabled"])
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
        if ttl and _truthy(ttl.get("Enabled")):
            current = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                ddb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
                )
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr and _truthy(pitr.get("PointInTimeRecoveryEnabled")):
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
                attributes[key] = json.dumps(value) if isinstance(value, dict) else _env_str(value)
        name = self._name(logical_id, props, "QueueName")
        if _truthy(props.get("FifoQueue", False)) and not name.endswith(".fifo"):
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
                    k: _truthy(v) for k, v in props["PublicAccessBlockConfiguration"].items()
                },
            )
        encryption = _dig(props, "BucketEncryption", "ServerSideEncryptionConfiguration")
        if encryption:
            rules = [
                {
                    "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                    **({"BucketKeyEnabled": _truthy(rule["BucketKeyEnabled"])} if "BucketKeyEnabled" in rule else {}),
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
        bus = _bus_name(str(props.get("EventBusName", "default")))
        schedule = props.get("ScheduleExpression")
        arn = self._put_rule(
            name,
            bus,
            pattern=props.get("EventPattern"),
            schedule=schedule,
            enabled=_enabled(props),
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
                        ScheduleSource(logical_id, RULE, schedule, target.get("Input"), _enabled(props)),
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
        raw_arn = _dig(self.r.resources[logical_id], "Properties", "Target", "Arn")
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
                    _enabled(props),
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
        refs = _references(raw_arn) if raw_arn is not None else set()
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


def effective_parameters(template: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Parameter values: overrides, else defaults. Unknown or disallowed values are errors."""
    declared = template.get("Parameters") or {}
    overrides = dict(overrides or {})
    unknown = overrides.keys() - declared.keys()
    if unknown:
        raise TemplateError(f"unknown parameters: {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in overrides:
            value = overrides[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise TemplateError(f"parameter {name} has no default; pass a value")
        value = _env_str(value) if not isinstance(value, list) else value
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [_env_str(a) for a in allowed]:
            raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
        if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
            value = [v.strip() for v in value.split(",")] if value else []
        values[name] = value
    return values


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
