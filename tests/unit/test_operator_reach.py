"""An operator acts and sees only within its reach (its business systems and sellers), everywhere.

Outside its reach the hub answers as if nothing were there: the same status and message as for an
application or an unmatched result that does not exist, empty lists and zero counts. An unmatched
result is attached only to an application of its own seller (and business system and channel, where
known) and is verified on every field, like a direct result. A limited operator's list page reads its
own partitions only: its cost does not grow with what other business systems store.
"""

from __future__ import annotations

import functools
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from fapiao_hub import runtime
from fapiao_hub.channels.ekuaibao import parse_push
from fapiao_hub.domain.config import token_sha256
from fapiao_hub.domain.models import Application, FindingKind, Status, request_number_for
from fapiao_hub.domain.results import Issued
from fapiao_hub.domain.verification import finding_for
from fapiao_hub.infra.store.listing import Reach
from fapiao_hub.usecases import callbacks
from fapiao_hub.usecases.action_checks import ActionInvalid
from tests.unit import test_ops_api as desk
from tests.unit.conftest import SELLER
from tests.unit.test_dispatch_workflow import CODE
from tests.unit.test_ekuaibao_callback import FIXTURE
from tests.unit.test_operations import SYSTEM, force, item, operations
from tests.unit.test_operations import world as world
from tests.unit.test_ops_api import (
    OPERATOR,
    OTHER_SELLER,
    OTHER_SELLER_TAX,
    OTHER_SYSTEMS,
    Ops,
    _bulk_elsewhere,
    _store_many,
    _submit,
)
from tests.unit.test_ops_api import operations_module as operations_module

OTHER_BUYER_TAX = "91440300MA5FXXXX9Q"
NO_SUCH = "no-such-result"
AT = "2026-01-01T00:00:00Z"


# ---------------------------------------------------------------------------- unmatched results keep what they claim
def test_an_unmatched_ekuaibao_result_keeps_seller_buyer_type_colour_and_blue_reference():
    (result,) = parse_push(FIXTURE.read_bytes())  # seed 000's example: a red invoice of no known request
    assert isinstance(result.outcome, Issued)
    (invoice,) = result.outcome.invoices
    kept = callbacks.unmatched_item("ekuaibao", result, invoice, "raw/ekuaibao/1")
    assert {k: kept.get(k) for k in ("seller_tax_number", "buyer_tax_number", "buyer_name", "invoice_type")} == {
        "seller_tax_number": "91120222300xxx",
        "buyer_tax_number": invoice.buyer_tax_number,
        "buyer_name": "北京文化产业有限公司",
        "invoice_type": "VAT_NORMAL_ELECTRONIC",
    }
    assert invoice.buyer_tax_number and invoice.buyer_name == "北京文化产业有限公司"
    assert kept["direction"] == "RED"
    # A red push that names its blue invoice keeps the reference.
    body = json.loads(FIXTURE.read_text(encoding="utf-8"))
    body["data"][0]["originalInvoiceNumber"] = "12345678"
    body["data"][0]["originalInvoiceCode"] = "011002000111"
    (named,) = parse_push(json.dumps(body, ensure_ascii=False).encode("utf-8"))
    assert isinstance(named.outcome, Issued)
    kept = callbacks.unmatched_item("ekuaibao", named, named.outcome.invoices[0], "raw/ekuaibao/2")
    assert (kept["original_number"], kept["original_code"]) == ("12345678", "011002000111")


# ---------------------------------------------------------------------------- attach-result (operations, moto)
def _unmatched(result_id: str, application: Application, **changes: Any) -> dict[str, Any]:
    """An unmatched result as unmatched_item keeps it, for ``application`` unless ``changes`` say otherwise."""
    invoice = {
        "pk": result_id,
        "number": result_id,
        "channel": "scripted",
        "status": "ISSUED",
        "raw": "raw/scripted/1",
        "issued_on": (desk.datetime.now(desk.UTC) + timedelta(hours=8)).date().isoformat(),
        "amount": application.amount,
        "tax": application.tax,
        "invoice_type": application.invoice_type.value,
        "direction": application.direction.value,
        "seller_tax_number": application.seller.tax_number,
        "buyer_tax_number": application.buyer.tax_number,
        "buyer_name": application.buyer.name,
    }
    invoice.update(changes)
    return {k: v for k, v in invoice.items() if v is not None}


def _attach_refusal(world, result_id: str) -> str:
    with pytest.raises(ActionInvalid) as refused:
        operations(world).act(SYSTEM, CODE, "attach-result", "it is ours", "alice", {"resultId": result_id})
    assert refused.value.field == "resultId"
    return refused.value.message


def test_attach_result_refuses_a_result_it_could_not_take_as_if_it_did_not_exist(world, hub):
    force(hub, CODE, Status.STUCK, previous=Status.SUBMITTED)
    application = runtime.application_store().get(SYSTEM, CODE).application
    store = runtime.application_store()
    others = {
        "another seller's": _unmatched("R-SELLER", application, seller_tax_number=OTHER_SELLER_TAX),
        "another business system's": _unmatched("R-SYSTEM", application, source_system="other-erp"),
        "another channel's": _unmatched("R-CHANNEL", application, channel="kingdee"),
        "one that names no seller": _unmatched("R-NOSELLER", application, seller_tax_number=None),
    }
    for kept in others.values():
        store.record_unmatched([kept])
    attached = _unmatched("R-ATTACHED", application)
    store.record_unmatched([attached])
    store.record_invoices("other-erp#x", [{**attached, "application_key": "other-erp#x"}])
    before = (item(hub), {k: store.invoice(v["pk"]) for k, v in others.items()})

    missing = _attach_refusal(world, NO_SUCH)
    assert missing == f"no unmatched result {NO_SUCH!r} this application could take"
    for what, kept in {**others, "one attached already": attached}.items():
        message = _attach_refusal(world, kept["pk"])
        assert message == missing.replace(NO_SUCH, kept["pk"]), what
        assert "kingdee" not in message and "scripted" not in message and OTHER_SELLER_TAX not in message
    assert (item(hub), {k: store.invoice(v["pk"]) for k, v in others.items()}) == before


def test_an_attached_result_of_another_amount_is_a_mismatch_naming_the_field(world, hub):
    force(hub, CODE, Status.STUCK, previous=Status.SUBMITTED)
    application = runtime.application_store().get(SYSTEM, CODE).application
    wrong = application.amount + Decimal("100.00")
    runtime.application_store().record_unmatched([_unmatched("R-AMOUNT", application, amount=wrong)])
    after = operations(world).act(SYSTEM, CODE, "attach-result", "it is ours", "alice", {"resultId": "R-AMOUNT"})
    assert after.status is Status.MISMATCH
    (finding,) = after.open_findings
    assert finding.kind is FindingKind.RESULT_MISMATCH
    assert [(d.field, d.expected, d.reported) for d in finding.differences] == [
        ("amount", f"{application.amount:.2f}", f"{wrong:.2f}")
    ]
    recorded = runtime.application_store().invoice("R-AMOUNT")
    assert recorded["application_key"] == f"{SYSTEM}#{CODE}" and after.invoice_keys == ("R-AMOUNT",)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"buyer_tax_number": OTHER_BUYER_TAX}, "buyer.tax_number"),
        ({"invoice_type": "VAT_NORMAL_PAPER"}, "invoice_type"),
        ({"direction": "RED"}, "direction"),
        ({"unreadable": {"invoiceTaxAmount": "12,3"}}, "unreadable.invoiceTaxAmount"),
    ],
    ids=["buyer", "invoice type", "colour", "unreadable"],
)
def test_an_attached_result_is_verified_on_every_field_a_direct_one_is(world, hub, changes, field):
    force(hub, CODE, Status.STUCK, previous=Status.SUBMITTED)
    application = runtime.application_store().get(SYSTEM, CODE).application
    runtime.application_store().record_unmatched([_unmatched("R-FIELD", application, **changes)])
    after = operations(world).act(SYSTEM, CODE, "attach-result", "it is ours", "alice", {"resultId": "R-FIELD"})
    assert after.status is Status.MISMATCH
    (finding,) = after.open_findings
    assert [d.field for d in finding.differences] == [field]


def test_an_attached_result_that_matches_is_issued(world, hub):
    force(hub, CODE, Status.STUCK, previous=Status.SUBMITTED)
    application = runtime.application_store().get(SYSTEM, CODE).application
    written = " " + SELLER["tax_number"].lower()  # compared as verification compares tax numbers
    runtime.application_store().record_unmatched([_unmatched("R-GOOD", application, seller_tax_number=written)])
    after = operations(world).act(SYSTEM, CODE, "attach-result", "it is ours", "alice", {"resultId": "R-GOOD"})
    assert after.status is Status.ISSUED and after.invoice_keys == ("R-GOOD",) and not after.findings


# ---------------------------------------------------------------------------- the desk, outside the reach
def _reach_config() -> dict[str, Any]:
    document = desk._config()
    document["operators"]["fa"] = {
        "token_sha256": [token_sha256(ONLY_SAMPLE)], "role": "operator", "business_systems": ["sample-erp"],
    }  # fmt: skip
    return document


ONLY_SAMPLE = "operator-token-of-sample-erp-only"


@pytest.fixture
def desk_ops(hub, monkeypatch, operations_module) -> Ops:
    config_file = runtime.settings().hub_config_file
    config_file.write_text(json.dumps(_reach_config()), encoding="utf-8")
    for name, value in hub.resources.function_environment("OpsFunction", {"HUB_CONFIG_FILE": str(config_file)}).items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    fake = desk.FakeOperations(runtime.application_store())
    monkeypatch.setattr(runtime, "operations", functools.cache(lambda: fake))
    return Ops(hub, fake)


def _act(ops: Ops, system: str, code: str, token: str, body: dict[str, Any]):
    return ops.at("ops-act.json", system, code, token, body=json.dumps(body))[:2]


@pytest.mark.parametrize("token", [OTHER_SYSTEMS, OTHER_SELLER], ids=["limited to another system", "to another seller"])
def test_anothers_application_is_answered_as_one_that_does_not_exist(desk_ops: Ops, token: str) -> None:
    ops = desk_ops
    code = _submit(ops.hub)
    store = runtime.application_store()
    stored = store.get("sample-erp", code)
    finding = finding_for(FindingKind.RESULT_MISMATCH, stored.key, source="test", summary="s", at=AT)
    assert store.add_finding(stored, finding, note="a finding to acknowledge")
    requests = {
        "detail": lambda t: ops.at("ops-get.json", "sample-erp", code, t)[:2],
        "acknowledge-finding": lambda t: _act(
            ops, "sample-erp", code, t, {"action": "acknowledge-finding", "reason": "x", "findingId": finding.id}
        ),
        "attach-result": lambda t: _act(
            ops, "sample-erp", code, t, {"action": "attach-result", "reason": "x", "resultId": "R1"}
        ),
        "cancel": lambda t: _act(ops, "sample-erp", code, t, {"action": "cancel", "reason": "x"}),
    }
    before = ops.hub.snapshot()
    outside = {name: send(token) for name, send in requests.items()}
    assert ops.hub.snapshot() == before and ops.fake.calls == []
    ops.hub.table.delete_item(Key={"pk": stored.key})
    absent = {name: send(OPERATOR) for name, send in requests.items()}
    assert outside == absent
    assert outside["detail"] == (
        404, {"success": False, "code": 404, "message": f"no application {code!r} of 'sample-erp'", "data": None}
    )  # fmt: skip


def test_a_limited_operators_summary_counts_only_its_own(desk_ops: Ops) -> None:
    ops = desk_ops
    store = runtime.application_store()
    code = _submit(ops.hub)
    template = store.get("sample-erp", code).application

    def create(system: str, seller: str, name: str, status: Status, *, with_finding: bool = False) -> None:
        application = template.model_copy(
            update={
                "source_system": system, "open_apply_code": name,
                "seller": template.seller.model_copy(update={"tax_number": seller}),
            }
        )  # fmt: skip
        stored = store.create(
            application, payload_sha256="x", channel="xunlian", warnings=[], requeue_after_seconds=60,
            request_number=request_number_for(application.key),
        )  # fmt: skip
        if status is not Status.RECEIVED:
            stored = store.transition(stored, status, note="test")
        if with_finding:
            found = finding_for(FindingKind.RESULT_MISMATCH, stored.key, source="t", summary=name, at=AT)
            assert store.add_finding(stored, found, note="test")

    create("other-erp", OTHER_SELLER_TAX, "b-stuck", Status.STUCK, with_finding=True)
    create("other-erp", OTHER_SELLER_TAX, "b-cancelled", Status.CANCELLED)
    create("other-erp", SELLER["tax_number"], "b-received", Status.RECEIVED)
    create("sample-erp", OTHER_SELLER_TAX, "a-other-seller", Status.STUCK)

    def counts(token: str) -> dict[str, Any]:
        status, body, _ = ops.call("ops-summary.json", token)
        assert status == 200, body
        data = body["data"]
        return {
            "statuses": {k: v for k, v in data["statuses"].items() if v},
            "needsPerson": data["needsPerson"],
            "openFindings": data["openFindings"],
        }

    assert counts(OPERATOR) == {
        "statuses": {"RECEIVED": 2, "STUCK": 2, "CANCELLED": 1},
        "needsPerson": {"MANUAL_REVIEW": 0, "MISMATCH": 0, "STUCK": 2},
        "openFindings": 1,
    }
    assert counts(ONLY_SAMPLE) == {
        "statuses": {"RECEIVED": 1, "STUCK": 1},
        "needsPerson": {"MANUAL_REVIEW": 0, "MISMATCH": 0, "STUCK": 1},
        "openFindings": 0,
    }
    assert counts(OTHER_SYSTEMS) == {
        "statuses": {"RECEIVED": 1, "STUCK": 1, "CANCELLED": 1},
        "needsPerson": {"MANUAL_REVIEW": 0, "MISMATCH": 0, "STUCK": 1},
        "openFindings": 1,
    }
    assert counts(OTHER_SELLER) == {
        "statuses": {"STUCK": 2, "CANCELLED": 1},
        "needsPerson": {"MANUAL_REVIEW": 0, "MISMATCH": 0, "STUCK": 2},
        "openFindings": 1,
    }
    # The store's counts take the same reach directly (what the summary asks).
    assert store.count_status(Status.STUCK, Reach(("third-erp",), None)) == 0
    assert store.count_open_findings(Reach(None, (SELLER["tax_number"],))) == 0
    assert store.attention_counts(reach=Reach(("other-erp",), None)) == {"STUCK": 1}


@pytest.mark.parametrize("limit", ["1", "3", "10"])
def test_a_limited_operators_list_holds_only_its_own_and_other_systems_filters_are_empty(desk_ops: Ops, limit) -> None:
    """Page by page (small pages: a page reads at most LIST_READ_FACTOR x limit per partition, so many are
    short), every match once, newest first."""
    ops = desk_ops
    items = _store_many(ops.hub, 300)
    for token, system, wanted in (
        (OTHER_SYSTEMS, None, lambda i: i["source_system"] == "other-erp"),
        (OTHER_SELLER, None, lambda i: i["seller_tax_number"] == OTHER_SELLER_TAX),
        (OTHER_SYSTEMS, "sample-erp", lambda i: False),
        (ONLY_SAMPLE, "sample-erp", lambda i: i["source_system"] == "sample-erp"),
    ):
        query = {"businessSystem": system} if system else {}
        rows = _walk(ops, token, limit, status="MANUAL_REVIEW", **query)
        listed = [(r["businessSystem"], r["openApplyCode"]) for r in rows]
        matches = [i for i in items if wanted(i) and i["status"] == "MANUAL_REVIEW"]
        expected = {(i["source_system"], i["open_apply_code"]) for i in matches}
        assert len(listed) == len(set(listed)) and set(listed) == expected, (token, system)
        assert [r["receivedAt"] for r in rows] == sorted((r["receivedAt"] for r in rows), reverse=True)


def _walk(ops: Ops, token: str, limit: str, **query: str) -> list[dict[str, Any]]:
    rows, cursor = [], None
    for _ in range(500):
        status, body, _ = ops.listing(token, limit=limit, **query, **({"cursor": cursor} if cursor else {}))
        assert status == 200, body
        assert len(body["data"]["items"]) <= int(limit)
        rows += body["data"]["items"]
        cursor = body["data"]["nextCursor"]
        if not cursor:
            return rows
    raise AssertionError("the cursor never ended")


def _page_requests(ops: Ops, token: str, **query: str) -> tuple[int, int]:
    """(DynamoDB requests, rows) of one page of 100."""
    client = runtime.application_store()._table.meta.client
    seen: list[str] = []

    def count(**_: Any) -> None:
        seen.append("x")

    client.meta.events.register("before-call.dynamodb", count)
    try:
        status, body, _ = ops.listing(token, limit="100", **query)
        assert status == 200, body
    finally:
        client.meta.events.unregister("before-call.dynamodb", count)
    return len(seen), len(body["data"]["items"])


def test_a_limited_operators_page_costs_the_same_however_much_other_systems_store(desk_ops: Ops) -> None:
    ops = desk_ops
    _store_many(ops.hub, 1000)
    queries = (
        (OTHER_SYSTEMS, {}),
        (ONLY_SAMPLE, {"status": "RECEIVED"}),
        (OTHER_SELLER, {}),
        (OTHER_SYSTEMS, {"businessSystem": "sample-erp"}),
    )
    small = [_page_requests(ops, token, **query) for token, query in queries]
    _bulk_elsewhere(ops.hub, 50_000)
    large = [_page_requests(ops, token, **query) for token, query in queries]
    assert small == large
    # One query per shard of its own system or seller (a status filter: at most LIST_READ_FACTOR each);
    # a business system outside its reach: nothing read.
    assert large[0][0] == large[2][0] == 4 and large[3] == (0, 0)
    assert large[1][0] <= 16 and large[0][1] == large[2][1] == 100
