"""Every channel answer that carried a result is archived, the verified ones too: an operator reads the
raw answer of an ISSUED application from its detail (rawKeys), not only of one that went wrong."""

from __future__ import annotations

import boto3

from fapiao_hub.domain.models import Status
from fapiao_hub.domain.results import Issued
from tests.unit import test_dispatch_workflow as dispatching
from tests.unit.conftest import REGION

world = dispatching.world  # the dispatch fixture (a scripted channel, moto), shared by name
ANSWER = b'{"ok": true, "body": {"invoiceNumber": "12221761", "invoiceCode": "050002000205"}}'


def test_a_verified_answer_is_archived_and_named_by_the_application(world) -> None:
    world.channel.script = [Issued((dispatching.INVOICE,), raw=ANSWER)]
    assert world.dispatch() == "issued"
    stored = world.stored()
    assert stored.status is Status.ISSUED
    bucket, _, key = stored.extra["raw_answer"].removeprefix("s3://").partition("/")
    assert key.startswith(f"raw/{stored.channel or 'channel'}/{stored.request_number}/")
    assert boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read() == ANSWER


def test_an_answer_without_raw_bytes_archives_nothing(world) -> None:
    world.channel.script = [Issued((dispatching.INVOICE,))]
    assert world.dispatch() == "issued"
    assert "raw_answer" not in world.stored().extra
