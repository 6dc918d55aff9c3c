"""The operations desk's API (ops_api, functions/ops) against moto provisioned from template.yaml.

Who may do what (every route, every kind of caller: nothing changes when refused), the list through
its pages with each filter (every application once, CSV equal to JSON), the summary, and the action
route against a fake use case (operations.Operations is the "act" half's; its interface is fixed in
README-helpers).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import sys
import types
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from fapiao_hub import runtime
from fapiao_hub.domain.config import token_sha256
from fapiao_hub.domain.models import Application, Status
from fapiao_hub.infra.store.base import iso
from fapiao_hub.infra.store.listing import listing_attributes
from tests.conftest import REGION
from tests.unit.conftest import FIXTURE_TOKEN, SELLER, FakeContext, Hub, event, hub_config_document, load_handler

OPERATOR = "operator-token-ann"
VIEWER = "viewer-token-bo"
REVOKED = "revoked-token-cy"
OTHER_SYSTEMS = "operator-token-of-other-erp-only"
OTHER_SELLER = "operator-token-of-another-seller"
OTHER_SELLER_TAX = "91110108MA01ABCD2H"  # W92's seller: not the fixture order's (VB5)


def _config() -> dict[str, Any]:
    document = hub_config_document()
    document["operators"] = {
        "ann": {"token_sha256": [token_sha256(OPERATOR)], "role": "operator"},
        "bo": {"token_sha256": [token_sha256(VIEWER)], "role": "viewer"},
        "cy": {"token_sha256": [token_sha256(REVOKED)], "role": "operator", "revoked": True},
        "di": {"token_sha256": [token_sha256(OTHER_SYSTEMS)], "role": "operator", "business_systems": ["other-erp"]},
        "ed": {"token_sha256": [token_sha256(OTHER_SELLER)], "role": "operator", "sellers": [OTHER_SELLER_TAX]},
    }
    return document


class FakeOperations:
    """Stands in for operations.Operations: records what the route handed it."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: list[tuple[Any, ...]] = []

    def available_actions(self, stored: Any) -> list[str]:
        return ["cancel", "query"] if stored.status.is_open else []

    def act(self, source_system, open_apply_code, action, reason, operator, params):
        self.calls.append((source_system, open_apply_code, action, reason, operator, params))
        errors = sys.modules["fapiao_hub.usecases.action_checks"]
        if action == "unknown-thing":
            raise errors.ActionInvalid("action", "unknown action 'unknown-thing'")
        if action == "requeue":
            raise errors.ActionNotApplicable(Status.RECEIVED, "requeue applies to STUCK applications")
        return self.store.get(source_system, open_apply_code)


@pytest.fixture
def operations_module(monkeypatch):
    """The use case's errors: the real module once it exists, else one with the agreed interface."""
    try:
        import fapiao_hub.usecases.action_checks  # noqa: F401
    except ImportError:
        module = types.ModuleType("fapiao_hub.usecases.action_checks")

        class ActionInvalid(Exception):
            def __init__(self, field: str, message: str) -> None:
                super().__init__(field, message)
                self.field, self.message = field, message

        class ActionNotApplicable(Exception):
            def __init__(self, status: Any, message: str) -> None:
                super().__init__(status, message)
                self.status, self.message = status, message

        class ApplicationMissing(Exception):
            pass

        module.ActionInvalid, module.ActionNotApplicable = ActionInvalid, ActionNotApplicable
        module.ApplicationMissing = ApplicationMissing
        monkeypatch.setitem(sys.modules, "fapiao_hub.usecases.action_checks", module)
    return sys.modules["fapiao_hub.usecases.action_checks"]


class Ops:
    def __init__(self, hub: Hub, fake: FakeOperations) -> None:
        self.hub = hub
        self.fake = fake
        self.handler = load_handler("ops", "ops_app_under_test")

    def call(self, name: str, token: str | None = OPERATOR, **changes: Any) -> tuple[int, Any, dict[str, str]]:
        loaded = event(name)
        headers = {k: v for k, v in loaded["headers"].items() if k != "authorization"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        headers.update(changes.pop("headers", {}))
        loaded["headers"] = headers
        loaded.update(changes)
        response = self.handler(loaded, FakeContext())
        body = response.get("body") or ""
        content_type = response.get("headers", {}).get("Content-Type", "")
        parsed = json.loads(body) if "json" in content_type else body
        return response["statusCode"], parsed, response.get("headers", {})

    def at(self, name: str, system: str, code: str, token: str | None = OPERATOR, **changes: Any):
        loaded = event(name)
        path = loaded["rawPath"].replace("sample-erp", system).replace(loaded["pathParameters"]["openApplyCode"], code)
        return self.call(
            name, token, rawPath=path, pathParameters={"businessSystem": system, "openApplyCode": code}, **changes
        )

    def listing(self, token: str = OPERATOR, accept: str | None = None, **query: str):
        changes: dict[str, Any] = {"queryStringParameters": query or None}
        if accept:
            changes["headers"] = {"accept": accept}
        return self.call("ops-list.json", token, **changes)


@pytest.fixture
def ops(hub: Hub, monkeypatch, operations_module) -> Ops:
    config_file = runtime.settings().hub_config_file
    config_file.write_text(json.dumps(_config()), encoding="utf-8")
    for name, value in hub.resources.function_environment("OpsFunction", {"HUB_CONFIG_FILE": str(config_file)}).items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    fake = FakeOperations(runtime.application_store())
    monkeypatch.setattr(runtime, "operations", functools.cache(lambda: fake))  # runtime.reset() clears it
    return Ops(hub, fake)


def _submit(hub: Hub) -> str:
    status, body, _ = hub.call(event("intake-post-blue.json"))
    assert status == 200, body
    return body["data"]["openApplyCode"]


# ---------------------------------------------------------------------------- who may do what
def test_the_operator_token_reads_and_acts(ops: Ops) -> None:
    code = _submit(ops.hub)
    status, body, _ = ops.at("ops-get.json", "sample-erp", code)
    assert status == 200, body
    data = body["data"]
    assert (data["businessSystem"], data["openApplyCode"], data["status"]) == ("sample-erp", code, "RECEIVED")
    assert data["requestNumber"] and data["invoiceOrder"]["openApplyCode"] == code
    assert data["actions"] == ["cancel", "query"]
    assert {"channel", "attempts", "leaseUntil", "nextPollAt", "rawKeys", "history", "invoices"} <= set(data)

    status, body, _ = ops.at("ops-act.json", "sample-erp", code)
    assert status == 200, body
    assert ops.fake.calls == [("sample-erp", code, "cancel", "fixture: the order was withdrawn", "ann", {})]


REFUSALS = [
    ("no token", None, 401, 401, 401),
    ("a business system's token", FIXTURE_TOKEN, 401, 401, 401),
    ("a revoked operator token", REVOKED, 401, 401, 401),
    ("a viewer acting", VIEWER, None, None, 403),
    # Outside its reach an application is answered as one that does not exist (test_operator_reach.py).
    ("an operator of other business systems", OTHER_SYSTEMS, None, 404, 404),
    ("an operator of another seller", OTHER_SELLER, None, 404, 404),
]


@pytest.mark.parametrize(("who", "token", "on_list", "on_read", "on_act"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_every_route_refuses_who_may_not_and_nothing_changes(ops: Ops, who, token, on_list, on_read, on_act) -> None:
    code = _submit(ops.hub)
    before = ops.hub.snapshot()
    answers = {
        "summary": ops.call("ops-summary.json", token)[0],
        "list": ops.call("ops-list.json", token)[0],
        "read": ops.at("ops-get.json", "sample-erp", code, token)[0],
        "act": ops.at("ops-act.json", "sample-erp", code, token)[0],
    }
    expected_summary_and_list = on_list or 200
    assert answers == {
        "summary": expected_summary_and_list,
        "list": expected_summary_and_list,
        "read": on_read or 200,
        "act": on_act,
    }, who
    assert ops.fake.calls == []
    assert ops.hub.snapshot() == before


def test_a_limited_operator_lists_only_within_reach(ops: Ops) -> None:
    _submit(ops.hub)
    assert len(ops.listing()[1]["data"]["items"]) == 1
    for token in (OTHER_SYSTEMS, OTHER_SELLER):
        status, body, _ = ops.listing(token)
        assert (status, body["data"]["items"]) == (200, [])


def test_an_operator_token_never_submits_an_order(ops: Ops) -> None:
    status, body, _ = ops.hub.call(event("intake-post-blue.json", headers={"authorization": f"Bearer {OPERATOR}"}))
    assert (status, body["message"]) == (401, "missing or invalid bearer token")
    assert ops.hub.applications() == []


def test_the_action_routes_answers_name_the_field_or_the_state(ops: Ops) -> None:
    code = _submit(ops.hub)
    before = ops.hub.snapshot()
    cases = {
        "no reason": ({"action": "cancel"}, 400, "reason: required, a non-empty string"),
        "blank reason": ({"action": "cancel", "reason": "  "}, 400, "reason: required, a non-empty string"),
        "no action": ({"reason": "x"}, 400, "action: required, a non-empty string"),
        "unknown action": ({"action": "unknown-thing", "reason": "x"}, 400, "action: unknown action 'unknown-thing'"),
        "not now": ({"action": "requeue", "reason": "x"}, 409, "requeue applies to STUCK applications"),
    }
    for case, (body, status, message) in cases.items():
        answer = ops.at("ops-act.json", "sample-erp", code, body=json.dumps(body))
        assert (answer[0], answer[1]["message"]) == (status, message), case
    assert ops.at("ops-act.json", "sample-erp", code, body=json.dumps({"action": "requeue", "reason": "x"}))[1][
        "data"
    ] == {"status": "RECEIVED"}
    assert ops.at("ops-act.json", "sample-erp", "no-such-code")[0] == 404
    assert ops.hub.snapshot() == before


def test_bad_list_parameters_are_a_400_naming_the_parameter(ops: Ops) -> None:
    for query, message in (
        ({"status": "NOPE"}, "status: unknown status 'NOPE'"),
        ({"limit": "0"}, "limit: a whole number from 1 to 500"),
        ({"limit": "x"}, "limit: a whole number from 1 to 500"),
        ({"receivedFrom": "March"}, "receivedFrom: expected a date yyyy-mm-dd (China time)"),
        ({"receivedFrom": "2026-03-02", "receivedTo": "2026-03-01"}, "receivedFrom: after receivedTo"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor: not a cursor of this query: start again without one"),
    ):
        status, body, _ = ops.listing(**query)
        assert (status, body["message"]) == (400, message), query
    # A cursor of one query is refused by another (it would skip or repeat applications).
    _store_many(ops.hub, 3)
    cursor = ops.listing(limit="1")[1]["data"]["nextCursor"]
    status, body, _ = ops.listing(limit="1", status="ISSUED", cursor=cursor)
    assert status == 400 and body["message"].startswith("cursor:")


# ---------------------------------------------------------------------------- the list
SYSTEMS = ("sample-erp", "other-erp", "third-erp")
SELLERS = (SELLER["tax_number"], OTHER_SELLER_TAX)
CHANNELS = ("xunlian", "kingdee", "ekuaibao")
STATUSES = (Status.ISSUED, Status.RECEIVED, Status.MANUAL_REVIEW, Status.SUBMITTED, Status.STUCK)
START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def _template_application(hub: Hub) -> Application:
    code = _submit(hub)
    stored = runtime.application_store().get("sample-erp", code)
    hub.table.delete_item(Key={"pk": stored.key})
    return stored.application


def _store_many(hub: Hub, count: int, *, start: int = 0) -> list[dict[str, Any]]:
    """``count`` applications as create/transition store them (the listing attributes), by BatchWriteItem.

    Every 7th shares its received time with the one before (ties across and within shards).
    """
    application = _template_application(hub)
    items = []
    with hub.table.batch_writer() as batch:
        for i in range(start, start + count):
            system, seller, channel = SYSTEMS[i % 3], SELLERS[i % 2], CHANNELS[i % 3]
            status = STATUSES[i % 5]
            app = application.model_copy(
                update={
                    "source_system": system,
                    "open_apply_code": f"bulk-{i:06d}",
                    "seller": application.seller.model_copy(update={"tax_number": seller}),
                    "amount": Decimal("100.00") + i,
                }
            )
            received = START + timedelta(minutes=7 * (i - (i % 7 == 6)))
            item = {
                "pk": app.key,
                "source_system": system,
                "open_apply_code": app.open_apply_code,
                "status": status.value,
                "version": 1,
                "payload_sha256": "0" * 64,
                "created_at": iso(received),
                "updated_at": iso(received),
                "channel": channel,
                **listing_attributes(app, channel, status),
            }
            batch.put_item(Item=item)
            items.append(item)
    return items


def _china_day(item: dict[str, Any]) -> str:
    moment = datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))
    return (moment + timedelta(hours=8)).date().isoformat()


def _walk(ops: Ops, accept: str | None = None, **query: str) -> tuple[list[dict[str, Any]], list[str]]:
    rows, texts, cursor = [], [], None
    for _ in range(100):
        params = {**query, "limit": "100", **({"cursor": cursor} if cursor else {})}
        status, body, headers = ops.listing(accept=accept, **params)
        assert status == 200, body
        if accept:
            texts.append(body)
            cursor = headers.get("X-Next-Cursor")
        else:
            assert len(body["data"]["items"]) <= 100
            rows += body["data"]["items"]
            cursor = body["data"]["nextCursor"]
        if not cursor:
            return rows, texts
    raise AssertionError("the cursor never ended")


def test_2500_applications_page_by_page_with_each_filter_every_one_once_newest_first(ops: Ops) -> None:
    items = _store_many(ops.hub, 2500)
    filters: dict[str, tuple[dict[str, str], Any]] = {
        "none": ({}, lambda i: True),
        "status": ({"status": "MANUAL_REVIEW"}, lambda i: i["status"] == "MANUAL_REVIEW"),
        "business system": ({"businessSystem": "other-erp"}, lambda i: i["source_system"] == "other-erp"),
        "seller": ({"seller": OTHER_SELLER_TAX}, lambda i: i["seller_tax_number"] == OTHER_SELLER_TAX),
        "channel": ({"channel": "kingdee"}, lambda i: i["channel"] == "kingdee"),
        "received range": (
            {"receivedFrom": "2026-03-03", "receivedTo": "2026-03-05"},
            lambda i: "2026-03-03" <= _china_day(i) <= "2026-03-05",
        ),
        "status and system": (
            {"status": "ISSUED", "businessSystem": "sample-erp"},
            lambda i: i["status"] == "ISSUED" and i["source_system"] == "sample-erp",
        ),
    }
    for name, (query, wanted) in filters.items():
        rows, _ = _walk(ops, **query)
        listed = [(r["businessSystem"], r["openApplyCode"]) for r in rows]
        expected = {(i["source_system"], i["open_apply_code"]) for i in items if wanted(i)}
        assert expected, name
        assert len(listed) == len(set(listed)) == len(expected), name
        assert set(listed) == expected, name
        times = [r["receivedAt"] for r in rows]
        assert times == sorted(times, reverse=True), name

        _, texts = _walk(ops, accept="text/csv", **query)
        csv_rows = [row for text in texts for row in list(csv.DictReader(io.StringIO(text)))]
        assert csv_rows == [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows], name


def test_a_list_row_says_what_a_person_needs(ops: Ops) -> None:
    code = _submit(ops.hub)
    status, body, _ = ops.listing()
    assert status == 200
    (row,) = body["data"]["items"]
    assert row["businessSystem"] == "sample-erp" and row["openApplyCode"] == code
    assert row["status"] == "RECEIVED" and row["sellerTaxNumber"] == SELLER["tax_number"]
    assert row["buyerName"] and row["invoiceType"] and row["direction"] == "BLUE"
    assert Decimal(row["amount"]) > 0 and row["openFindings"] == 0 and row["requestNumber"]
    assert body["data"]["nextCursor"] is None


def test_csv_cells_from_business_systems_are_never_formulas(ops: Ops) -> None:
    from fapiao_hub.api.ops import ROW_FIELDS, rows_csv

    text = rows_csv([{**dict.fromkeys(ROW_FIELDS), "buyerName": '=HYPERLINK("x")', "amount": "-1.00"}])
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert row["buyerName"] == '\'=HYPERLINK("x")' and row["amount"] == "-1.00"


# ---------------------------------------------------------------------------- cost of a page
def _requests(ops: Ops, **query: str) -> int:
    client = runtime.application_store()._table.meta.client
    seen: list[str] = []

    def count(**_: Any) -> None:
        seen.append("x")

    client.meta.events.register("before-call.dynamodb", count)
    try:
        status, body, _ = ops.listing(limit="100", **query)
        assert status == 200 and len(body["data"]["items"]) == 100
    finally:
        client.meta.events.unregister("before-call.dynamodb", count)
    return len(seen)


def _bulk_elsewhere(hub: Hub, count: int) -> None:
    """``count`` applications of a fourth business system, received before everything else (they share
    the "all" index's partitions, and no other's), written straight into moto's table: cheap."""
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends["123456789012"][REGION]
    table = backend.get_table(hub.environment["APPLICATIONS_TABLE"])
    serializer = boto3.dynamodb.types.TypeSerializer()
    for i in range(count):
        pk = f"bulk-erp#old-{i:06d}"
        item = {
            "pk": pk,
            "source_system": "bulk-erp",
            "open_apply_code": f"old-{i:06d}",
            "status": "ISSUED",
            "created_at": iso(START - timedelta(days=30, seconds=i)),
            "list_all": f"ALL#{i % 4}",
            "list_system": f"bulk-erp#{i % 4}",
            "list_status": f"ISSUED#{i % 4}",
        }
        table.put_item({k: serializer.serialize(v) for k, v in item.items()})


def test_a_page_costs_the_same_requests_with_1000_or_100000_applications(ops: Ops) -> None:
    _store_many(ops.hub, 1000)
    queries = ({}, {"businessSystem": "sample-erp"}, {"status": "RECEIVED"})
    small = [_requests(ops, **q) for q in queries]
    _bulk_elsewhere(ops.hub, 99_000)
    large = [_requests(ops, **q) for q in queries]
    assert small == large == [4, 4, 4]  # one query per shard


# ---------------------------------------------------------------------------- summary
def test_the_summary_counts_statuses_and_dead_letters(ops: Ops) -> None:
    code = _submit(ops.hub)
    stored = runtime.application_store().get("sample-erp", code)
    runtime.application_store().transition(stored, Status.STUCK, note="test: stuck")
    _submit_other = ops.hub.call(event("intake-post-xunlian.json"))
    assert _submit_other[0] == 200
    dlq = ops.hub.environment.get("NOTIFY_DLQ_URL")
    boto3.client("sqs", region_name=REGION).send_message(QueueUrl=dlq, MessageBody="{}")
    status, body, _ = ops.call("ops-summary.json")
    assert status == 200, body
    data = body["data"]
    assert data["statuses"]["STUCK"] == 1 and data["statuses"]["RECEIVED"] == 1
    assert data["needsPerson"] == {"MANUAL_REVIEW": 0, "MISMATCH": 0, "STUCK": 1}
    assert data["openFindings"] == 0
    assert data["deadLetterQueues"] == {
        "DispatchDLQ": 0, "NotifyDLQ": 1, "PollerDLQ": 0, "ReconciliationDLQ": 0, "UnmatchedResultsQueue": 0
    }
