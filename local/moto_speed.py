"""moto's DynamoDB at a fraction of its cost per returned item, with the same answers.

Two places in moto cost milliseconds per item a query returns, and the operations desk's list
returns hundreds per page (tests/unit/test_ops_api.py walks 2,500 applications seven ways):

* index projection: moto projects an item onto an INCLUDE / KEYS_ONLY index by converting the
  whole item to plain JSON once per projected attribute, then re-checks the 400 KB item limit on
  every attribute it sets. Here: the index's keys and projected attributes copied in one pass.
* the response: moto serialises every DynamoDB AttributeValue by walking botocore's shape model
  (ten members, an alias lookup each). An AttributeValue is already in its wire form except for
  binaries: here it is copied as it is, binaries base64-encoded as the JSON protocol wants.

What boto3 receives is unchanged (checked by tests/unit/test_moto_speed.py against moto itself).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from typing import Any


def _project(self: Any, item: Any) -> Any:
    from moto.dynamodb.models.dynamo_type import Item, LimitedSizeDict

    projection_type = (self.projection or {}).get("ProjectionType")
    if projection_type not in ("KEYS_ONLY", "INCLUDE"):
        return item  # ALL: every attribute, as moto does
    wanted = [*self.table_key_attrs, *(key["AttributeName"] for key in self.schema)]
    if projection_type == "INCLUDE":
        wanted += self.projection.get("NonKeyAttributes", [])
    projected = Item(hash_key=item.hash_key, range_key=item.range_key, attrs={})
    attrs = LimitedSizeDict.__new__(LimitedSizeDict)  # the stored item passed the size check on write
    dict.__init__(attrs)
    for name in dict.fromkeys(wanted):
        if name in item.attrs:
            dict.__setitem__(attrs, name, _copy(item.attrs[name]))
    projected.attrs = attrs
    return projected


def _copy(value: Any) -> Any:
    from moto.dynamodb.models.dynamo_type import DynamoType

    return DynamoType(value.to_regular_json())


def _wire(value: dict[str, Any]) -> dict[str, Any]:
    """An AttributeValue as the JSON protocol sends it."""
    ((kind, inner),) = value.items()
    if kind == "B":
        return {kind: _b64(inner)}
    if kind == "BS":
        return {kind: [_b64(v) for v in inner]}
    if kind == "M":
        return {kind: {k: _wire(v) for k, v in inner.items()}}
    if kind == "L":
        return {kind: [_wire(v) for v in inner]}
    return {kind: inner}


def _b64(value: Any) -> Any:
    return base64.b64encode(value).decode("ascii") if isinstance(value, bytes | bytearray) else value


@contextlib.contextmanager
def faster_dynamodb() -> Iterator[None]:
    """Inside ``mock_aws()``: index projection and response serialisation in one pass each."""
    from moto.core.serialize import BaseJSONSerializer
    from moto.dynamodb.models.table import SecondaryIndex

    original_project = SecondaryIndex.project
    original_structure = BaseJSONSerializer._serialize_type_structure

    def structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if (
            shape.name == "AttributeValue"
            and key
            and isinstance(value, dict)
            and len(value) == 1
            and self.operation_model.service_model.endpoint_prefix == "dynamodb"
        ):
            serialized[key] = _wire(value)
            return
        original_structure(self, serialized, value, shape, key)

    SecondaryIndex.project = _project  # type: ignore[method-assign]
    BaseJSONSerializer._serialize_type_structure = structure  # type: ignore[method-assign]
    try:
        yield
    finally:
        SecondaryIndex.project = original_project  # type: ignore[method-assign]
        BaseJSONSerializer._serialize_type_structure = original_structure  # type: ignore[method-assign]
