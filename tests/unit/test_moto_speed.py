"""local/moto_speed.py changes how fast moto answers, never what boto3 receives."""

from __future__ import annotations

from decimal import Decimal

import boto3
from boto3.dynamodb.conditions import Key
from moto import mock_aws

from local.moto_speed import faster_dynamodb
from tests.conftest import REGION

ITEM = {
    "g": "x", "n": Decimal("1.50"), "b": b"\x00\xffab", "bs": {b"a", b"\x01"}, "ss": {"a", "b"},
    "ns": {Decimal(1), Decimal("2.5")}, "m": {"a": [1, "x", None, True, {"z": b"q"}]}, "nul": None,
    "bo": False, "l": [], "s": "中文", "hidden": "not projected",
}  # fmt: skip


def _answers() -> list:
    resource = boto3.resource("dynamodb", region_name=REGION)
    table = resource.create_table(
        TableName="speed",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": f"by-{kind}",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": projection,
            }
            for kind, projection in {
                "include": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["n", "b", "bs", "m", "nul", "s"]},
                "keys": {"ProjectionType": "KEYS_ONLY"},
                "all": {"ProjectionType": "ALL"},
            }.items()
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(3):
        table.put_item(Item={"pk": f"p{i}", **ITEM})
    answers = [table.query(IndexName=f"by-{k}", KeyConditionExpression=Key("g").eq("x"))["Items"] for k in
               ("include", "keys", "all")]  # fmt: skip
    answers.append(table.get_item(Key={"pk": "p1"})["Item"])
    answers.append(sorted(table.scan()["Items"], key=lambda item: item["pk"]))
    return answers


def test_the_same_items_come_back_faster(aws_env) -> None:
    with mock_aws():
        plain = _answers()
    with mock_aws(), faster_dynamodb():
        fast = _answers()
    assert fast == plain
    assert set(plain[0][0]) == {"pk", "g", "n", "b", "bs", "m", "nul", "s"} and set(plain[1][0]) == {"pk", "g"}
