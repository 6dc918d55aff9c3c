"""The typed views of what a step writes beside an application's lifecycle (records.StoredApplication):
read from the item as stored, with the defaults the steps count on when an attribute was never written."""

from __future__ import annotations

import json

from fapiao_hub import runtime
from fapiao_hub.domain.models import Status
from fapiao_hub.infra.store.records import VoidState
from tests.unit.conftest import event


def _stored(hub, **attributes):
    assert hub.call(event("intake-post-blue.json"))[0] == 200
    code = json.loads(event("intake-post-blue.json")["body"])["invoiceOrder"]["openApplyCode"]
    if attributes:
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        values = {f":v{i}": value for i, value in enumerate(attributes.values())}
        hub.table.update_item(
            Key={"pk": f"sample-erp#{code}"},
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes))),
            ExpressionAttributeNames=names, ExpressionAttributeValues=values,
        )  # fmt: skip
    return runtime.application_store().get("sample-erp", code)


def test_an_application_never_voided_or_resubmitted_reads_the_defaults(hub):
    stored = _stored(hub)
    assert stored.void is None and not stored.void_by_person
    assert (stored.submission, stored.earlier_submissions, stored.unsent_attempts) == (1, [], 0)
    assert stored.failed_over_from is None and stored.requeued_epoch is None and stored.stuck_from is None
    assert stored.red_reserved_on is None and stored.raw_answer is None and not stored.files_pending


def test_a_void_sent_to_nobody_reads_as_one_a_person_does(hub):
    stored = _stored(
        hub, status="VOIDING", void_request="VOID-1", void_reason="wrong buyer", void_requested_epoch=1_800_000_000,
        void_sent=True, void_by_person=True, submission=3, unsent_attempts=2, failed_over_from="xunlian",
        requeued_epoch=1_800_000_100, stuck_from="UNKNOWN", files_pending=True,
    )  # fmt: skip
    assert stored.void == VoidState(
        request="VOID-1", reason="wrong buyer", requested_epoch=1_800_000_000, sent=True, by_person=True
    )
    assert stored.void_by_person and stored.needs_person
    assert (stored.submission, stored.unsent_attempts, stored.requeued_epoch) == (3, 2, 1_800_000_100)
    assert stored.failed_over_from == "xunlian" and stored.stuck_from is Status.UNKNOWN and stored.files_pending
    assert stored.failing_over_from("kingdee").failed_over_from == "kingdee"
    assert stored.failed_over_from == "xunlian"  # the view is a copy: the stored one is unchanged
