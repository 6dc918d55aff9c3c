"""The audit trail (template.yaml HistoryTable, AuditEventsRule, AuditEventsArchive) on moto provisioned
from template.yaml: every change is its own record, written with the change or not at all; a note
written after a read survives a status change made from that read; a long history is paged, never cut;
an operator action is on the trail with who, why, before and after, and its event reaches the archive's
log group and the bus archive.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from fapiao_hub import runtime
from fapiao_hub.domain.models import Difference, Finding, FindingKind, Status
from fapiao_hub.infra.store.base import HISTORY_INLINE_LIMIT, iso, utc_now
from fapiao_hub.infra.store.errors import StaleWrite
from tests.conftest import REGION
from tests.unit.conftest import Hub, event, get_event
from tests.unit.test_dispatch_workflow import CODE
from tests.unit.test_operations import SYSTEM, operations, world  # noqa: F401 - the fixture
from tests.unit.test_ops_api import OPERATOR, Ops, operations_module, ops  # noqa: F401 - the fixtures

KEY = f"{SYSTEM}#{CODE}"


def _submit(hub: Hub) -> None:
    status, body, _ = hub.call(event("intake-post-blue.json"))
    assert status == 200, body
    assert body["data"]["openApplyCode"] == CODE


def _records(hub: Hub, key: str = KEY) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(hub.environment["HISTORY_TABLE"])
    return table.query(KeyConditionExpression=Key("pk").eq(key), ConsistentRead=True)["Items"]


def _item(hub: Hub, key: str = KEY) -> dict[str, Any]:
    return hub.table.get_item(Key={"pk": key}, ConsistentRead=True)["Item"]


def _finding(n: int) -> Finding:
    return Finding(
        id=f"finding-{n}", kind=FindingKind.RESULT_MISMATCH, at=iso(utc_now()), source="reconciliation",
        summary=f"amount differs ({n})", differences=(Difference(field="amount", expected="1", reported="2"),),
    )  # fmt: skip


# ---------------------------------------------------------------------------- appended, never rewritten
def test_a_note_written_after_the_read_survives_the_status_change_made_from_that_read(hub: Hub) -> None:
    _submit(hub)
    store = runtime.application_store()
    stale = store.get(SYSTEM, CODE)
    store.note(KEY, "operator ann looked at it", by="ann")  # meanwhile, by key (as the notifier and ops do)
    moved = store.transition(stale, Status.DISPATCHING, note="attempt 1", changes={"attempts": 1})

    item = _item(hub)
    assert [(h["status"], h.get("note")) for h in item["history"]] == [
        ("RECEIVED", "received"), ("RECEIVED", "operator ann looked at it"), ("DISPATCHING", "attempt 1"),
    ]  # fmt: skip
    assert moved.status is Status.DISPATCHING and item["version"] == 2
    records = _records(hub)
    assert [(r["kind"], r["status"], r.get("note"), r["by"]) for r in records] == [
        ("received", "RECEIVED", "received", "fapiao-hub"),
        ("note", "RECEIVED", "operator ann looked at it", "ann"),
        ("transition", "DISPATCHING", "attempt 1", "fapiao-hub"),
    ]
    transition = records[2]
    assert transition["previous"] == "RECEIVED" and transition["version"] == 2
    assert transition["before"] == {"status": "RECEIVED", "attempts": 0}
    assert transition["after"] == {"status": "DISPATCHING", "attempts": 1}


def test_a_finding_added_after_the_read_survives_and_each_change_names_its_fields(hub: Hub) -> None:
    _submit(hub)
    store = runtime.application_store()
    stale = store.get(SYSTEM, CODE)
    assert store.add_finding(KEY, _finding(1), note="reconciliation: amount differs (1)")
    store.transition(stale, Status.DISPATCHING, note="attempt 1")

    item = _item(hub)
    assert [h.get("note") for h in item["history"]] == ["received", "reconciliation: amount differs (1)", "attempt 1"]
    assert [f["id"] for f in item["findings"]] == ["finding-1"]
    finding = next(r for r in _records(hub) if r["kind"] == "finding")
    assert finding["finding_id"] == "finding-1" and finding["after"]["finding"]["summary"] == "amount differs (1)"


# ---------------------------------------------------------------------------- atomic with the change
def test_a_status_change_that_loses_its_condition_writes_no_history_record(hub: Hub) -> None:
    _submit(hub)
    store = runtime.application_store()
    stale = store.get(SYSTEM, CODE)
    store.transition(stale, Status.DISPATCHING, note="attempt 1")
    before_item, before_records = _item(hub), _records(hub)

    with pytest.raises(StaleWrite):
        store.transition(stale, Status.DISPATCHING, note="attempt 1, again from the stale read")
    with pytest.raises(StaleWrite):  # a vanished application: no record either
        store.note(f"{SYSTEM}#no-such-order", "nobody", status="RECEIVED")

    assert _item(hub) == before_item
    assert _records(hub) == before_records and len(before_records) == 2
    assert _records(hub, f"{SYSTEM}#no-such-order") == []


def test_a_repeated_finding_writes_no_second_record(hub: Hub) -> None:
    _submit(hub)
    store = runtime.application_store()
    assert store.add_finding(KEY, _finding(1), note="first")
    assert not store.add_finding(KEY, _finding(1), note="again")
    assert [r.get("finding_id") for r in _records(hub)] == [None, "finding-1"]


# ---------------------------------------------------------------------------- paged, never cut
def _page_through(read, **query: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        status, data = read({**query, **({"historyCursor": cursor} if cursor else {})})
        assert status == 200, data
        entries += data["history"]
        cursor = data["historyNextCursor"]
        if cursor is None:
            return entries
    raise AssertionError("the history never ended")


def _get(hub: Hub, query: dict[str, str]) -> tuple[int, Any]:
    loaded = get_event(CODE)
    loaded["queryStringParameters"] = query or None
    status, body, _ = hub.call(loaded)
    return status, body["data"] if status == 200 else body


def test_200_history_entries_are_all_read_through_the_get_page_by_page(hub: Hub) -> None:
    _submit(hub)
    store = runtime.application_store()
    for n in range(200):
        store.note(KEY, f"delivery {n:03d}", status="RECEIVED")
    stored = store.get(SYSTEM, CODE)
    assert len(stored.history) == HISTORY_INLINE_LIMIT  # the item keeps its share; the table keeps all
    store.transition(stored, Status.DISPATCHING, note="attempt 1")  # after them all: still there
    expected = ["received", *(f"delivery {n:03d}" for n in range(200)), "attempt 1"]

    oldest_first = _page_through(lambda q: _get(hub, q), historyLimit="37")
    assert [e["note"] for e in oldest_first] == expected
    assert oldest_first[-1] == {"at": oldest_first[-1]["at"], "status": "DISPATCHING", "previous": "RECEIVED",
                                "note": "attempt 1"}  # fmt: skip
    assert oldest_first[1]["kind"] == "note" and "by" not in oldest_first[1]  # who is for the operators' view
    newest_first = _page_through(lambda q: _get(hub, q), historyLimit="50", historyOrder="newest")
    assert [e["note"] for e in newest_first] == expected[::-1]
    assert len(_get(hub, {})[1]["history"]) == 100  # the default page


def test_a_short_history_costs_the_get_no_request_of_its_own(hub: Hub) -> None:
    _submit(hub)
    store = runtime.application_store()
    store.note(KEY, "delivered", status="RECEIVED")
    calls: list[str] = []
    runtime.reset()
    runtime.watch_aws_requests(
        lambda model, **_: calls.append(model.name) if model.service_model.service_name == "dynamodb" else None,
        "test-history-reads",
    )
    status, data = _get(hub, {})
    assert status == 200 and [e["note"] for e in data["history"]] == ["received", "delivered"]
    assert data["historyNextCursor"] is None and "Query" not in calls  # the item's own copy holds it whole
    calls.clear()
    status, data = _get(hub, {"historyOrder": "newest"})
    assert [e["note"] for e in data["history"]] == ["delivered", "received"] and "Query" not in calls


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"historyLimit": "0"}, "historyLimit"),
        ({"historyLimit": "501"}, "historyLimit"),
        ({"historyLimit": "ten"}, "historyLimit"),
        ({"historyOrder": "sideways"}, "historyOrder"),
        ({"historyCursor": "not-a-cursor"}, "historyCursor"),
    ],
)
def test_a_bad_history_parameter_is_a_400_naming_it(hub: Hub, query: dict[str, str], field: str) -> None:
    _submit(hub)
    before = _item(hub)
    status, body = _get(hub, query)
    assert status == 400 and body["message"].startswith(f"{field}: "), body
    assert _item(hub) == before


def test_a_cursor_of_the_other_order_or_another_application_is_refused(hub: Hub) -> None:
    _submit(hub)
    store = runtime.application_store()
    for n in range(5):
        store.note(KEY, f"note {n}", status="RECEIVED")
    status, data = _get(hub, {"historyLimit": "2"})
    assert status == 200 and data["historyNextCursor"]
    other_order = {"historyLimit": "2", "historyOrder": "newest", "historyCursor": data["historyNextCursor"]}
    status, body = _get(hub, other_order)
    assert status == 400 and body["message"].startswith("historyCursor: ")


def test_200_history_entries_are_all_read_through_the_ops_detail_with_who_and_why(ops: Ops) -> None:  # noqa: F811
    _submit(ops.hub)
    store = runtime.application_store()
    for n in range(200):
        store.note(KEY, f"delivery {n:03d}", status="RECEIVED", by="NotifierFunction")
    assert store.add_finding(KEY, _finding(1), note="reconciliation: amount differs (1)")

    def read(query: dict[str, str]) -> tuple[int, Any]:
        status, body, _ = ops.at("ops-get.json", SYSTEM, CODE, queryStringParameters=query or None)
        return status, body["data"] if status == 200 else body

    entries = _page_through(read, historyLimit="64")
    assert [e["note"] for e in entries] == [
        "received", *(f"delivery {n:03d}" for n in range(200)), "reconciliation: amount differs (1)",
    ]  # fmt: skip
    assert {e["by"] for e in entries[1:-1]} == {"NotifierFunction"}
    assert [e["record"] for e in entries] == ["received", *["note"] * 200, "finding"]
    assert entries[-1]["kind"] == "note" and entries[-1]["finding_id"] == "finding-1"
    status, body = read({"historyCursor": "bogus"})
    assert status == 400 and body["message"].startswith("historyCursor: ")


# ---------------------------------------------------------------------------- operator actions
def test_an_operator_action_is_on_the_trail_with_who_why_before_and_after(world, hub: Hub) -> None:  # noqa: F811
    after = operations(world).act(SYSTEM, CODE, "cancel", "customer withdrew", "alice", {})
    assert after.status is Status.CANCELLED

    records = _records(hub)
    action = next(r for r in records if r["kind"] == "operator-action")
    assert (action["action"], action["by"], action["reason"]) == ("cancel", "alice", "customer withdrew")
    assert action["before"]["status"] == "RECEIVED" and action["after"]["status"] == "CANCELLED"
    assert action["before"]["version"] == 1 and action["after"]["version"] == 2
    assert action["after"]["open_finding_ids"] == [] and action["after"]["invoice_keys"] == []
    change = next(r for r in records if r["kind"] == "transition")
    assert (change["previous"], change["status"]) == ("RECEIVED", "CANCELLED")
    assert "alice" in change["note"] and "customer withdrew" in change["note"]
    assert change["reason"] == "cancelled by operator alice: customer withdrew"


def test_an_operator_action_reaches_the_audit_log_group_and_the_archive(world, hub: Hub) -> None:  # noqa: F811
    operations(world).act(SYSTEM, CODE, "cancel", "customer withdrew", "alice", {})

    logs = boto3.client("logs", region_name=REGION)
    group = hub.resources.physical["AuditLogGroup"].name
    messages = [json.loads(e["message"]) for e in logs.filter_log_events(logGroupName=group)["events"]]
    actions = [m["detail"] for m in messages if m["detail-type"] == "OperatorAction"]
    assert len(actions) == 1
    assert (actions[0]["operator"], actions[0]["reason"], actions[0]["status_before"], actions[0]["status"]) == (
        "alice", "customer withdrew", "RECEIVED", "CANCELLED",
    )  # fmt: skip
    assert not [m for m in messages if m["detail-type"] not in ("OperatorAction", "FindingRecorded",
                                                                 "ApplicationNeedsReview")]  # fmt: skip
    archive = boto3.client("events", region_name=REGION).describe_archive(
        ArchiveName=hub.resources.physical["AuditEventsArchive"].name
    )
    assert archive["EventCount"] >= 1 and archive["RetentionDays"] == 0


def test_the_requeue_of_a_long_stuck_history_finds_where_it_was_stuck(world, hub: Hub) -> None:  # noqa: F811
    store = runtime.application_store()
    for n in range(HISTORY_INLINE_LIMIT + 5):
        store.note(KEY, f"note {n}", status="RECEIVED")
    stored = store.get(SYSTEM, CODE)
    stuck = store.transition(stored, Status.STUCK, note="open past its deadline", next_poll_at=None)
    assert stuck.status is Status.STUCK and all(e.status != "STUCK" for e in store.get(SYSTEM, CODE).history)
    assert "requeue" in operations(world).available_actions(store.get(SYSTEM, CODE))

