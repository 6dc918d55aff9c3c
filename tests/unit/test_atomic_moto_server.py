"""local.atomic_moto.AtomicMotoServer: a local run started after another in one process starts empty."""

from __future__ import annotations

import boto3
import pytest

from local.atomic_moto import AtomicMotoServer

pytestmark = pytest.mark.integration  # a moto server on 127.0.0.1


def _tables(server: AtomicMotoServer) -> tuple[list[str], object]:
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url="http://{}:{}".format(*server.get_host_and_port()),
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client.list_tables()["TableNames"], client


def test_a_second_server_does_not_inherit_the_first_ones_state():
    first = AtomicMotoServer().start()
    try:
        _, client = _tables(first)
        client.create_table(
            TableName="left-behind",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        assert _tables(first)[0] == ["left-behind"]
    finally:
        first.stop()
    second = AtomicMotoServer().start()
    try:
        assert _tables(second)[0] == []  # e.g. a benchmark after a soak: no invoice numbers already taken
    finally:
        second.stop()
