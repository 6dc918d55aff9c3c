"""local.atomic_moto: a local run started after another in one process starts empty; moto in a
process of its own (the soak's) serves, and goes when stopped or when its parent goes."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
import requests

from local.atomic_moto import AtomicMotoServer, MotoProcess

pytestmark = pytest.mark.integration  # a moto server on 127.0.0.1


def _tables(server: AtomicMotoServer | MotoProcess) -> tuple[list[str], object]:
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url="http://{}:{}".format(*server.get_host_and_port()),
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client.list_tables()["TableNames"], client


def _create_table(client: Any, name: str) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def test_a_second_server_does_not_inherit_the_first_ones_state():
    first = AtomicMotoServer().start()
    try:
        _, client = _tables(first)
        _create_table(client, "left-behind")
        assert _tables(first)[0] == ["left-behind"]
    finally:
        first.stop()
    second = AtomicMotoServer().start()
    try:
        assert _tables(second)[0] == []  # e.g. a benchmark after a soak: no invoice numbers already taken
    finally:
        second.stop()


def test_moto_in_a_process_of_its_own_serves_and_goes_when_stopped():
    moto = MotoProcess().start()
    try:
        _, client = _tables(moto)
        _create_table(client, "in-the-child")
        assert _tables(moto)[0] == ["in-the-child"]
        assert moto._child.poll() is None
    finally:
        moto.stop()
    assert moto._child.returncode is not None
    with pytest.raises(requests.ConnectionError):  # nothing listens there any more
        requests.get("http://{}:{}/".format(*moto.get_host_and_port()), timeout=5)


def test_moto_in_a_process_of_its_own_goes_when_its_parent_does():
    moto = MotoProcess().start()
    try:
        moto._child.stdin.close()  # what the parent's death does to the pipe
        assert moto._child.wait(15) == 0
    finally:
        moto.stop()
