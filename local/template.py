"""Read template.yaml (CloudFormation / SAM) into plain Python data.

CloudFormation's short-form tags (``!Ref X``, ``!GetAtt X.Arn``, ``!Sub ...``) become the long
forms (``{"Ref": "X"}``, ``{"Fn::GetAtt": ["X", "Arn"]}``, ``{"Fn::Sub": ...}``) so the rest of
the local run deals with one shape only. No dependency on aws-sam-cli or cfn-lint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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
