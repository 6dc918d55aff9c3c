"""Read template.yaml (CloudFormation / SAM) into plain Python data, and resolve what it says.

CloudFormation's short-form tags (``!Ref X``, ``!GetAtt X.Arn``, ``!Sub ...``) become the long
forms (``{"Ref": "X"}``, ``{"Fn::GetAtt": ["X", "Arn"]}``, ``{"Fn::Sub": ...}``) so the rest of
the local run deals with one shape only. No dependency on aws-sam-cli or cfn-lint.

:class:`ResolvedTemplate` resolves the intrinsic functions (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``,
conditions, ...) against the parameters (:func:`effective_parameters`) and the physical resources
made so far, and reads each function's environment and event sources (:class:`FunctionSpec`).
local.provision creates the resources and extends it into ``Resources``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("local.template")

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

# Short tag -> long key. !Ref and !Condition keep their names; the rest are intrinsic functions.
_FUNCTION_TAGS = (
    "Base64",
    "Cidr",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Join",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "And",
    "Equals",
    "If",
    "Not",
    "Or",
    "ToJsonString",
    "Length",
)


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation's short-form intrinsic function tags."""


def _construct_node(loader: CfnLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


def _long_form(key: str):
    def construct(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
        return {key: _construct_node(loader, node)}

    return construct


def _get_att(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
    value = _construct_node(loader, node)
    if isinstance(value, str):
        # "Resource.Attribute" (the attribute itself may contain dots: Endpoint.Address).
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {"Fn::GetAtt": value}


CfnLoader.add_constructor("!Ref", _long_form("Ref"))
CfnLoader.add_constructor("!Condition", _long_form("Condition"))
CfnLoader.add_constructor("!GetAtt", _get_att)
for _name in _FUNCTION_TAGS:
    CfnLoader.add_constructor(f"!{_name}", _long_form(f"Fn::{_name}"))


def loads(text: str) -> dict[str, Any]:
    data = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError("a template is a YAML mapping")
    return data


def load_template(path: str | Path) -> dict[str, Any]:
    """The template at ``path`` as plain dicts and lists, short tags in their long form."""
    return loads(Path(path).read_text(encoding="utf-8"))


# ------------------------------------------------------------------ resolution


class TemplateError(ValueError):
    """The template uses something the local run cannot resolve or create."""


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()


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


@dataclass
class ResolvedTemplate:
    """A template with its parameters, resolved against the physical resources in ``physical``."""

    template: dict[str, Any]
    template_dir: Path
    parameters: dict[str, Any]
    region: str
    account_id: str
    prefix: str
    physical: dict[str, PhysicalResource] = field(default_factory=dict)
    _conditions: dict[str, bool] = field(default_factory=dict, repr=False)

    def _by_type(self, type_: str) -> dict[str, PhysicalResource]:
        return {k: v for k, v in self.physical.items() if v.type == type_}

    @property
    def queues(self) -> dict[str, PhysicalResource]:
        return self._by_type(QUEUE)

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
        return str(self.resolve(name)) if name is not None else default_name(self.prefix, logical_id)

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
        return default_name(self.prefix, name)

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
                topic = str(self.resolve(props.get("TopicName", default_name(self.prefix, name))))
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
            return str(delimiter).join(env_str(v) for v in items)
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
                return env_str(variables[expr])
            if "." in expr and not expr.startswith("AWS::"):
                resource, attribute = expr.split(".", 1)
                return env_str(self.get_att(resource, attribute))
            return env_str(self.ref(expr))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    # -------------------------------------------------------------- functions

    def function_environment(self, logical_id: str, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
        """The function's environment as Lambda would see it (Globals merged with its own).

        ``extra`` adds or overrides variables; a value of None removes the variable.
        """
        resource = self._resource(logical_id)
        if resource.get("Type") not in FUNCTION_TYPES:
            raise TemplateError(f"{logical_id} is not a function")
        global_vars = dig(self.template, "Globals", "Function", "Environment", "Variables") or {}
        own_vars = dig(resource, "Properties", "Environment", "Variables") or {}
        env: dict[str, str] = {}
        for key, raw in {**global_vars, **own_vars}.items():
            value = self.resolve(raw)
            if value is not NO_VALUE:
                env[key] = env_str(value)
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def functions(self) -> dict[str, FunctionSpec]:
        """Every active AWS::Serverless::Function with its code and event sources."""
        globals_ = dig(self.template, "Globals", "Function") or {}
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
                        enabled=truthy(props.get("Enabled", True)),
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
                        enabled=enabled(props),
                    )
                )
            elif kind in ("EventBridgeRule", "CloudWatchEvent"):
                rules.append(
                    EventRuleSource(
                        event=event_name,
                        bus_name=bus_name(props.get("EventBusName", "default")),
                        pattern=props.get("Pattern") or {},
                        input=props.get("Input"),
                        input_path=props.get("InputPath"),
                        enabled=enabled(props),
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


def dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def env_str(value: Any) -> str:
    """CloudFormation's string rendering of a scalar (booleans lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        raise TemplateError(f"{value!r} is not a scalar")
    return str(value)


def truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def enabled(props: Mapping[str, Any]) -> bool:
    if "State" in props:
        return str(props["State"]).upper() == "ENABLED"
    return truthy(props.get("Enabled", True))


def bus_name(name_or_arn: str) -> str:
    return name_or_arn.rsplit("/", 1)[-1] if name_or_arn.startswith("arn:") else name_or_arn


def default_name(prefix: str, logical_id: str) -> str:
    return f"{prefix}-{logical_id}"


def references(value: Any) -> set[str]:
    """Logical ids (or parameters) that ``value`` refers to."""
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= references(v)
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
                    found |= references(arg[1])
                return found
        for v in value.values():
            found |= references(v)
    return found


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
        value = env_str(value) if not isinstance(value, list) else value
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [env_str(a) for a in allowed]:
            raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
        if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
            value = [v.strip() for v in value.split(",")] if value else []
        values[name] = value
    return values
