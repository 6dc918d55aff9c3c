"""The intake function through its real handler, against moto with tables from template.yaml."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

import pytest

from tests.unit.conftest import FIXTURE_TOKEN, OTHER_TOKEN, VALID_BUYER, event, get_event

CODE = "zcxs1825830330588741634"


def blue_body() -> dict:
    return json.loads(event("intake-post-blue.json")["body"])


def post(body, **kwargs):
    return event("intake-post-blue.json", body=body, **kwargs)


def test_accepted_order_is_stored_received_and_queued_once(hub):
    status, answer, _ = hub.call(event("intake-post-blue.json"))
    assert status == 200
    assert answer == {
        "success": True,
        "code": 200,
        "message": "order received",
        "data": {"openApplyCode": CODE, "status": "RECEIVED", "warnings": []},
    }
    [item] = hub.applications()
    assert item["pk"] == f"sample-erp#{CODE}"
    assert item["status"] == "RECEIVED" and item["version"] == 1
    # Sparse due-work index: a RECEIVED application is watched until dispatch takes it.
    assert item["due_bucket"] == "OPEN" and item["next_poll_at"] > 0
    assert hub.queued() == [{"source_system": "sample-erp", "open_apply_code": CODE}]


def test_seed004_path_is_served_too(hub):
    status, answer, _ = hub.call(event("intake-post-seed004-path.json"))
    assert status == 200 and answer["data"]["status"] == "RECEIVED"
    assert len(hub.applications()) == 1


def test_same_body_again_answers_the_same_and_stores_nothing(hub):
    first = hub.call(event("intake-post-blue.json"))
    before = hub.applications()
    # Same JSON value, other key order and spacing.
    reordered = json.dumps(dict(reversed(list(blue_body().items()))), indent=2, ensure_ascii=False)
    second = hub.call(post(reordered))
    assert second[0] == 200 and second[1]["data"] == first[1]["data"]
    assert second[1]["message"] == "order already received"
    assert hub.applications() == before
    # Still RECEIVED: the repeat asks for its dispatch again (the first request may have been lost).
    assert len(hub.queued()) == 2


def test_same_body_again_after_dispatch_queues_nothing(hub):
    hub.call(event("intake-post-blue.json"))
    assert len(hub.queued()) == 1
    hub.table.update_item(
        Key={"pk": f"sample-erp#{CODE}"},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "SUBMITTED"},
    )
    status, answer, _ = hub.call(event("intake-post-blue.json"))
    assert status == 200 and answer["data"]["status"] == "SUBMITTED"
    assert hub.queued() == []


def test_same_code_with_other_content_is_a_conflict_and_changes_nothing(hub):
    hub.call(event("intake-post-blue.json"))
    before = hub.snapshot()
    changed = blue_body()
    changed["invoiceOrder"]["remark"] = "something else"
    status, answer, _ = hub.call(post(changed))
    assert status == 409
    assert answer["success"] is False and CODE in answer["message"] and "different content" in answer["message"]
    assert hub.snapshot() == before


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", f"Basic {FIXTURE_TOKEN}", f"Bearer {FIXTURE_TOKEN}x"],
)
def test_missing_or_bad_token_is_401_and_changes_nothing(hub, authorization):
    before = hub.snapshot()
    status, answer, headers = hub.call(post(blue_body(), headers={"authorization": authorization}))
    assert status == 401
    assert answer["message"] == "missing or invalid bearer token"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert hub.snapshot() == before


def _mutated(change):
    body = blue_body()
    change(body["invoiceOrder"])
    return body


BAD_BODIES = [
    ("malformed JSON", '{"invoiceOrder": {', None, "malformed JSON"),
    ("NaN", '{"invoiceOrder": {"invoiceAmt": NaN}}', None, "NaN is not a JSON number"),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, None, "nested too deeply"),
    ("huge integer", '{"invoiceOrder": {"invoiceAmt": ' + "9" * 5000 + "}}", None, "malformed JSON"),
    ("not an object", "[]", "invoiceOrder", "valid dictionary"),
    ("no invoiceOrder", "{}", "invoiceOrder", "is required"),
    ("empty body", "", None, "body is empty"),
    (
        "missing goods name",
        _mutated(lambda o: o["invoiceOrderSub"][3].pop("goodsName")),
        "invoiceOrder.invoiceOrderSub[3].goodsName",
        "is required",
    ),
    (
        "amount not a number",
        _mutated(lambda o: o["invoiceOrderSub"][3].update(amtInclTax="12,5")),
        "invoiceOrder.invoiceOrderSub[3].amtInclTax",
        "must be a number",
    ),
    (
        "unknown company",
        _mutated(lambda o: o.update(bukrs="ZZZ")),
        "invoiceOrder.bukrs",
        "unknown company code",
    ),
    (
        "unknown invoice type",
        _mutated(lambda o: o.update(invoiceType="77")),
        "invoiceOrder.invoiceType",
        "0112",
    ),
    (
        "rate not allowed",
        _mutated(lambda o: o["invoiceOrderSub"][4].update(taxrate=0.12)),
        "invoiceOrder.invoiceOrderSub[4].taxrate",
        "0.13",
    ),
    (
        "price x quantity",
        _mutated(lambda o: o["invoiceOrderSub"][4].update(quantity=2)),
        "invoiceOrder.invoiceOrderSub[4]",
        "12000",
    ),
    ("header total", _mutated(lambda o: o.update(invoiceAmt=5330.00)), "invoiceOrder.invoiceAmt", "5327.43"),
    ("control character", _mutated(lambda o: o.update(remark="bell\u0007")), "invoiceOrder.remark", "U+0007"),
    (
        "buyer tax number",
        _mutated(lambda o: o.update(purchaserTaxpayerNo="dddddmarkForTax")),
        "invoiceOrder.purchaserTaxpayerNo",
        "",
    ),
]


@pytest.mark.parametrize(("name", "body", "field", "words"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_each_kind_of_bad_body_is_400_naming_the_field_and_changes_nothing(hub, name, body, field, words):
    before = hub.snapshot()
    status, answer, _ = hub.call(post(body))
    assert status == 400, answer
    assert answer["success"] is False and answer["code"] == 400
    if field is None:
        assert words in answer["message"]
    else:
        errors = answer["data"]["errors"]
        matching = [e for e in errors if e["field"].startswith(field)]
        assert matching, errors
        assert any(words in e["message"] for e in matching), matching
    assert hub.snapshot() == before


def test_every_problem_is_listed(hub):
    body = blue_body()
    body["invoiceOrder"]["bukrs"] = "ZZZ"
    body["invoiceOrder"]["invoiceType"] = "77"
    body["invoiceOrder"]["openInvoiceType"] = "5"
    status, answer, _ = hub.call(post(body))
    assert status == 400 and answer["message"] == "invalid invoice order: 3 problems"
    assert {e["field"] for e in answer["data"]["errors"]} == {
        "invoiceOrder.bukrs", "invoiceOrder.invoiceType", "invoiceOrder.openInvoiceType",
    }  # fmt: skip


def test_seed_example_as_published_is_refused_naming_the_buyer_tax_number(hub):
    status, answer, _ = hub.call(event("intake-post-invalid.json"))
    assert status == 400
    assert [e["field"] for e in answer["data"]["errors"]] == ["invoiceOrder.purchaserTaxpayerNo"]
    assert hub.snapshot() == ([], 0)


def test_wrong_content_type_is_415(hub):
    before = hub.snapshot()
    status, _, _ = hub.call(post(blue_body(), headers={"content-type": "text/plain"}))
    assert status == 415
    assert hub.snapshot() == before


def test_oversized_body_is_413(hub, monkeypatch):
    monkeypatch.setenv("MAX_BODY_BYTES", "1000")
    from fapiao_hub import runtime

    runtime.reset()
    status, answer, _ = hub.call(event("intake-post-blue.json"))
    assert status == 413 and "limit is 1000" in answer["message"]
    assert hub.snapshot() == ([], 0)


def test_base64_body_is_decoded(hub):
    import base64

    raw = event("intake-post-blue.json")
    raw["body"] = base64.b64encode(raw["body"].encode("utf-8")).decode("ascii")
    raw["isBase64Encoded"] = True
    assert hub.call(raw)[0] == 200


def test_queue_failure_is_503_then_the_same_body_recovers(hub, monkeypatch):
    from fapiao_hub import runtime

    good_url = hub.environment["DISPATCH_QUEUE_URL"]
    monkeypatch.setenv("DISPATCH_QUEUE_URL", good_url + "-gone")
    runtime.reset()
    status, answer, headers = hub.call(event("intake-post-blue.json"))
    assert status == 503 and "send the same request again" in answer["message"]
    assert headers.get("Retry-After")
    [item] = hub.applications()
    assert item["status"] == "RECEIVED"
    assert hub.queue_depth() == 0

    monkeypatch.setenv("DISPATCH_QUEUE_URL", good_url)
    runtime.reset()
    status, answer, _ = hub.call(event("intake-post-blue.json"))
    assert status == 200 and answer["data"]["status"] == "RECEIVED"
    assert hub.queued() == [{"source_system": "sample-erp", "open_apply_code": CODE}]
    assert hub.applications()[0]["version"] == 1  # stored once: the repeat only asked for dispatch


def test_get_returns_the_application_history_and_derived_totals(hub):
    hub.call(event("intake-post-blue.json"))
    status, answer, _ = hub.call(event("intake-get.json"))
    assert status == 200
    data = answer["data"]
    assert data["openApplyCode"] == CODE and data["status"] == "RECEIVED" and data["version"] == 1
    assert data["channel"] == "xunlian"
    assert [h["status"] for h in data["history"]] == ["RECEIVED"]
    order = data["invoiceOrder"]
    assert (Decimal(str(order["invoiceAmt"])), Decimal(str(order["invoiceTax"]))) == (
        Decimal("5327.43"),
        Decimal("692.57"),
    )
    assert order["invoiceType"] == "0112" and order["purchaserTaxpayerNo"] == VALID_BUYER
    assert len(order["invoiceOrderSub"]) == 5 and order["invoiceOrderSub"][0]["vehicleNo"] == "THFC1BLCC1Q1QD160"


def test_get_is_scoped_to_the_callers_business_system(hub):
    hub.call(event("intake-post-blue.json"))
    assert hub.call(get_event(CODE, OTHER_TOKEN))[0] == 404
    assert hub.call(get_event("no-such-order"))[0] == 404
    assert hub.call(get_event(CODE, "bad-token"))[0] == 401
    # The other system may use the same application number for its own order.
    other = post(blue_body(), headers={"authorization": f"Bearer {OTHER_TOKEN}"})
    assert hub.call(other)[0] == 200
    assert {i["pk"] for i in hub.applications()} == {f"sample-erp#{CODE}", f"other-erp#{CODE}"}


def test_red_order_is_accepted(hub):
    """Its blue invoice was not issued through the hub: accepted only where the business system
    is configured to reverse invoices issued elsewhere (else a 400: tests/unit/test_red_scope.py)."""
    from tests.unit.test_red_scope import allow_outside_invoices

    allow_outside_invoices(hub, "sample-erp")
    status, answer, _ = hub.call(event("intake-post-red.json"))
    assert status == 200, answer
    assert any("12221761" in w for w in answer["data"]["warnings"]), answer
    status, answer, _ = hub.call(get_event("red-zcxs1825830330588741634-1"))
    order = answer["data"]["invoiceOrder"]
    assert order["openInvoiceType"] == "1" and order["blueInvoiceNumber"] == "12221761"
    assert Decimal(str(order["invoiceAmtInclTax"])) == Decimal("-6000.00")


def test_large_application_is_kept_whole(hub, monkeypatch):
    """Applications beyond a DynamoDB item's size go to S3; both read back the same."""
    from fapiao_hub.infra.store import base

    body = blue_body()
    # 113.00 at 13% splits exactly (100.00 + 13.00): no rounding drift across 1500 lines.
    line = {**body["invoiceOrder"]["invoiceOrderSub"][4], "amtInclTax": 113, "price": 113}
    body["invoiceOrder"]["invoiceOrderSub"] = [
        {**copy.deepcopy(line), "originRowNo": str(i), "vehicleNo": f"VIN{i:014d}"} for i in range(1500)
    ]
    body["invoiceOrder"].update(invoiceAmtInclTax=169_500, invoiceAmt=None, invoiceTax=None)
    monkeypatch.setattr(base, "INLINE_DOCUMENT_LIMIT", 10_000)
    status, answer, _ = hub.call(post(body))
    assert status == 200, answer
    [item] = hub.applications()
    assert "document" not in item and item["document_ref"].startswith("s3://")
    status, answer, _ = hub.call(event("intake-get.json"))
    lines = answer["data"]["invoiceOrder"]["invoiceOrderSub"]
    assert len(lines) == 1500 and lines[1499]["vehicleNo"] == "VIN00000000001499"
    assert answer["data"]["warnings"] == [] or all("line" in w for w in answer["data"]["warnings"])


def test_tokens_and_buyer_contacts_never_reach_the_logs(hub, caplog):
    body = blue_body()
    body["invoiceOrder"].update(purchaserEmail="buyer@example.com", purchaserCellphone="13800138000")
    hub.call(post(body))
    bad = copy.deepcopy(body)
    bad["invoiceOrder"]["purchaserEmail"] = "x" * 300
    bad["invoiceOrder"]["purchaserCellphone"] = "13800138000" * 5
    hub.call(post(bad))
    hub.call(post(body, headers={"authorization": "Bearer not-a-real-token-123"}))
    hub.call(event("intake-get.json"))
    # Every record with all its fields (message, extras, correlation id), as a log line holds them.
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "invoice order accepted" in text  # the logs were captured at all
    for secret in (FIXTURE_TOKEN, "not-a-real-token-123", "buyer@example.com", "13800138000"):
        assert secret not in text


def test_a_new_blue_order_costs_one_put_and_one_send(hub):
    """No read before the conditional put, no bookkeeping write after the send (benchmarks, section 1)."""
    from fapiao_hub import runtime

    calls: list[str] = []
    runtime.reset()
    runtime.watch_aws_requests(
        lambda model, **_: calls.append(f"{model.service_model.service_name}:{model.name}"), "test-intake-requests"
    )
    assert hub.call(event("intake-post-blue.json"))[0] == 200
    # One request: the conditional put and its history record in one transaction (the audit trail).
    assert calls == ["dynamodb:TransactWriteItems", "sqs:SendMessage"]
    calls.clear()
    assert hub.call(event("intake-post-blue.json"))[0] == 200  # a repeat: the failed put says what is there
    assert calls == ["dynamodb:TransactWriteItems", "sqs:SendMessage"]
