"""POST /v1/invoice-orders/batch through the intake's real handler, against moto (tables from template.yaml)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.unit import test_routing_voids
from tests.unit.conftest import OTHER_TOKEN, event

BAD_BUYER = "dddddmarkForTax"
INVALID = (3, 50, 99)
world = test_routing_voids.world  # the fixture: the hub with the channel sandboxes and a dispatcher


def blue_body(code: str) -> dict[str, Any]:
    body = json.loads(event("intake-post-blue.json")["body"])
    body["invoiceOrder"]["openApplyCode"] = code
    return body


def batch_event(body: Any, **kwargs: Any) -> dict[str, Any]:
    loaded = event("intake-post-blue.json", body=body, **kwargs)
    loaded["rawPath"] = loaded["requestContext"]["http"]["path"] = "/v1/invoice-orders/batch"
    loaded["routeKey"] = loaded["requestContext"]["routeKey"] = "POST /v1/invoice-orders/batch"
    return loaded


def hundred_with_three_invalid() -> dict[str, Any]:
    items = [blue_body(f"batch-{i:03d}") for i in range(100)]
    for i in INVALID:
        items[i]["invoiceOrder"]["purchaserTaxpayerNo"] = BAD_BUYER
    return {"invoiceOrders": items}


def aws_calls(hub) -> list[str]:
    from fapiao_hub import runtime

    calls: list[str] = []
    runtime.reset()
    runtime.watch_aws_requests(
        lambda model, **_: calls.append(f"{model.service_model.service_name}:{model.name}"), "test-batch-requests"
    )
    return calls


def test_100_items_with_3_invalid_give_97_accepted_and_3_refusals_by_index(hub):
    calls = aws_calls(hub)
    status, answer, _ = hub.call(batch_event(hundred_with_three_invalid()))
    assert status == 200, answer
    data = answer["data"]
    assert (data["accepted"], data["refused"]) == (97, 3)
    assert answer["message"] == "batch of 100: 97 accepted, 3 refused"
    items = data["invoiceOrders"]
    assert [i["index"] for i in items] == list(range(100))
    for i, item in enumerate(items):
        assert item["openApplyCode"] == f"batch-{i:03d}"
        if i in INVALID:
            assert (item["success"], item["code"]) == (False, 400)
            assert [e["field"] for e in item["data"]["errors"]] == [
                f"invoiceOrders[{i}].invoiceOrder.purchaserTaxpayerNo"
            ]
        else:
            assert item == {
                "index": i,
                "openApplyCode": f"batch-{i:03d}",
                "success": True,
                "code": 200,
                "message": "order received",
                "data": {"openApplyCode": f"batch-{i:03d}", "status": "RECEIVED", "warnings": []},
            }
    valid = [f"batch-{i:03d}" for i in range(100) if i not in INVALID]
    assert [a["pk"] for a in hub.applications()] == [f"sample-erp#{code}" for code in valid]
    assert all(a["status"] == "RECEIVED" and a["version"] == 1 for a in hub.applications())
    assert sorted(q["open_apply_code"] for q in hub.queued()) == valid
    # One conditional put per stored item; the dispatch requests ten per call, none one by one.
    assert calls.count("dynamodb:TransactWriteItems") == 97  # the application and its history record, one request
    assert calls.count("sqs:SendMessageBatch") == 10 and "sqs:SendMessage" not in calls


def test_the_same_batch_again_changes_nothing(hub):
    body = hundred_with_three_invalid()
    first = hub.call(batch_event(body))[1]
    hub.queued()  # the first batch's dispatch requests, taken
    # Take them as dispatched: a repeat of a dispatched application asks for nothing.
    for i in range(100):
        if i not in INVALID:
            hub.table.update_item(
                Key={"pk": f"sample-erp#batch-{i:03d}"},
                UpdateExpression="SET #s = :s",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": "SUBMITTED"},
            )
    before = hub.snapshot()
    status, answer, _ = hub.call(batch_event(body))
    assert status == 200 and (answer["data"]["accepted"], answer["data"]["refused"]) == (97, 3)
    for i, (again, once) in enumerate(
        zip(answer["data"]["invoiceOrders"], first["data"]["invoiceOrders"], strict=True)
    ):
        if i in INVALID:
            assert again == once
        else:
            assert again["message"] == "order already received"
            assert again["data"] == {**once["data"], "status": "SUBMITTED"}
    assert hub.snapshot() == before


def test_resending_a_batch_still_received_asks_for_dispatch_again(hub):
    body = {"invoiceOrders": [blue_body("again-0"), blue_body("again-1")]}
    hub.call(batch_event(body))
    before = hub.applications()
    hub.queued()
    answer = hub.call(batch_event(body))[1]
    assert [i["message"] for i in answer["data"]["invoiceOrders"]] == ["order already received"] * 2
    assert hub.applications() == before
    # Still RECEIVED: the first requests may have been lost, as for a single POST.
    assert sorted(q["open_apply_code"] for q in hub.queued()) == ["again-0", "again-1"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"invoiceOrders": [blue_body(f"many-{i:03d}") for i in range(101)]}, "got 101"),
        ({"invoiceOrders": []}, "got 0"),
        ({"invoiceOrder": blue_body("x")["invoiceOrder"]}, "missing"),
        ({"invoiceOrders": blue_body("x")}, "got dict"),
        ([blue_body("x")], "must be an object"),
    ],
    ids=["101-items", "no-items", "no-list", "not-a-list", "not-an-object"],
)
def test_a_bad_envelope_is_400_naming_invoiceOrders_and_stores_nothing(hub, body, words):
    status, answer, _ = hub.call(batch_event(body))
    assert status == 400, answer
    [error] = answer["data"]["errors"]
    assert error["field"] == "invoiceOrders" and words in error["message"], answer
    assert answer["message"].startswith("invalid batch: ")
    assert hub.snapshot() == ([], 0)


def test_a_code_repeated_in_the_batch_is_400_for_those_items(hub):
    twice = blue_body("twice")
    other_content = copy.deepcopy(twice)
    other_content["invoiceOrder"]["remark"] = "the second one"
    body = {"invoiceOrders": [twice, blue_body("once"), other_content]}
    status, answer, _ = hub.call(batch_event(body))
    assert status == 200
    items = answer["data"]["invoiceOrders"]
    assert [i["code"] for i in items] == [400, 200, 400]
    for i in (0, 2):
        [error] = items[i]["data"]["errors"]
        assert error["field"] == f"invoiceOrders[{i}].invoiceOrder.openApplyCode"
        assert "appears more than once in this batch (items 0, 2)" in error["message"]
    assert [a["pk"] for a in hub.applications()] == ["sample-erp#once"]
    assert [q["open_apply_code"] for q in hub.queued()] == ["once"]


def test_each_item_gets_the_single_posts_409(hub):
    hub.call(event("intake-post-blue.json", body=blue_body("taken")))
    hub.queued()
    before = hub.applications()
    changed = blue_body("taken")
    changed["invoiceOrder"]["remark"] = "something else"
    status, answer, _ = hub.call(batch_event({"invoiceOrders": [changed, blue_body("fresh")]}))
    assert status == 200
    conflict, fresh = answer["data"]["invoiceOrders"]
    assert conflict["code"] == 409 and conflict["data"] == {"status": "RECEIVED"}
    assert "was already received with different content" in conflict["message"]
    assert fresh["code"] == 200
    assert [a for a in hub.applications() if a["pk"] == "sample-erp#taken"] == before


def test_a_business_system_submits_only_its_own_orders(hub):
    hub.call(batch_event({"invoiceOrders": [blue_body("shared-code")]}))
    mine = hub.applications()
    # The other system's token: its items are its own, under its own name; the first system's
    # application of the same number is neither read nor changed.
    other = blue_body("shared-code")
    other["invoiceOrder"]["remark"] = "the other system's"
    status, answer, _ = hub.call(
        batch_event({"invoiceOrders": [other]}, headers={"authorization": f"Bearer {OTHER_TOKEN}"})
    )
    assert status == 200 and answer["data"]["invoiceOrders"][0]["message"] == "order received"
    pks = {a["pk"]: a for a in hub.applications()}
    assert set(pks) == {"sample-erp#shared-code", "other-erp#shared-code"}
    assert pks["sample-erp#shared-code"] == mine[0]
    # No token, or an unknown one: 401, nothing stored.
    before = hub.snapshot()
    for headers in ({"authorization": None}, {"authorization": "Bearer not-a-token"}):
        assert hub.call(batch_event({"invoiceOrders": [blue_body("nope")]}, headers=headers))[0] == 401
    assert hub.snapshot() == before


def test_a_refused_dispatch_request_is_that_items_503_and_a_resend_recovers(hub, monkeypatch):
    from fapiao_hub import runtime

    good_url = hub.environment["DISPATCH_QUEUE_URL"]
    monkeypatch.setenv("DISPATCH_QUEUE_URL", good_url + "-gone")
    runtime.reset()
    body = {"invoiceOrders": [blue_body("q-0"), blue_body("q-1")]}
    status, answer, _ = hub.call(batch_event(body))
    assert status == 200 and (answer["data"]["accepted"], answer["data"]["refused"]) == (0, 2)
    for item in answer["data"]["invoiceOrders"]:
        assert item["code"] == 503 and "send the same request again" in item["message"]
    assert [a["status"] for a in hub.applications()] == ["RECEIVED", "RECEIVED"]
    assert hub.queue_depth() == 0

    monkeypatch.setenv("DISPATCH_QUEUE_URL", good_url)
    runtime.reset()
    answer = hub.call(batch_event(body))[1]
    assert [i["message"] for i in answer["data"]["invoiceOrders"]] == ["order already received"] * 2
    assert sorted(q["open_apply_code"] for q in hub.queued()) == ["q-0", "q-1"]
    assert [a["version"] for a in hub.applications()] == [1, 1]


class _PartlyRefusingSqs:
    """SendMessageBatch that refuses the entries whose body names ``refuse``, and fails a whole call on ``down``."""

    def __init__(self, refuse: str = "", down: int | None = None):
        self.refuse, self.down, self.calls = refuse, down, []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        from botocore.exceptions import EndpointConnectionError

        self.calls.append([json.loads(e["MessageBody"])["open_apply_code"] for e in Entries])
        if self.down == len(self.calls):
            raise EndpointConnectionError(endpoint_url=QueueUrl)
        failed = [
            {"Id": e["Id"], "Code": "x", "SenderFault": False} for e in Entries if self.refuse in e["MessageBody"]
        ]
        return {"Successful": [], "Failed": failed} if self.refuse else {"Successful": []}


def test_deferred_dispatch_sends_ten_per_call_and_names_what_was_not_taken():
    from fapiao_hub.infra.queues import DeferredDispatchQueue, DispatchQueue

    sqs = _PartlyRefusingSqs(refuse='"code-07"', down=2)
    queue = DeferredDispatchQueue(DispatchQueue(sqs, "https://queue"))
    for i in range(25):
        queue.request_dispatch("erp", f"code-{i:02d}")
    assert queue.send() == {("erp", "code-07")} | {("erp", f"code-{i:02d}") for i in range(10, 20)}
    assert [len(c) for c in sqs.calls] == [10, 10, 5]
    assert queue.pending == [] and queue.send() == set()


def test_items_that_are_not_orders_are_400_by_index_and_the_rest_is_stored(hub):
    body = {"invoiceOrders": ["text", None, 7, [], {}, {"invoiceOrder": "x"}, blue_body("the-good-one")]}
    status, answer, _ = hub.call(batch_event(body))
    assert status == 200, answer
    items = answer["data"]["invoiceOrders"]
    assert [i["code"] for i in items] == [400] * 6 + [200]
    for i, item in enumerate(items[:6]):
        assert item["openApplyCode"] is None
        fields = [e["field"] for e in item["data"]["errors"]]
        assert fields and all(f.startswith(f"invoiceOrders[{i}].invoiceOrder") for f in fields), item
    assert [a["pk"] for a in hub.applications()] == ["sample-erp#the-good-one"]


def test_a_store_failure_is_that_items_503_and_the_others_are_stored(hub, monkeypatch):
    from botocore.exceptions import ClientError

    from fapiao_hub.infra.store import ApplicationStore

    create = ApplicationStore.create

    def failing(self, application, **kwargs):
        if application.open_apply_code == "s-1":
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "PutItem")
        return create(self, application, **kwargs)

    monkeypatch.setattr(ApplicationStore, "create", failing)
    status, answer, _ = hub.call(batch_event({"invoiceOrders": [blue_body(f"s-{i}") for i in range(3)]}))
    assert status == 200
    items = answer["data"]["invoiceOrders"]
    assert [i["code"] for i in items] == [200, 503, 200]
    assert items[1]["message"] == "temporarily unavailable; try again"
    assert [a["pk"] for a in hub.applications()] == ["sample-erp#s-0", "sample-erp#s-2"]
    assert sorted(q["open_apply_code"] for q in hub.queued()) == ["s-0", "s-2"]


def test_a_void_in_a_batch_is_answered_and_dispatched_as_its_own_post(world):
    from tests.unit.test_routing_voids import _issued_partner_invoice, seed_example, void_body

    blue = _issued_partner_invoice(world, "batch-void-blue")
    [invoice] = blue["invoices"]
    void = void_body("batch-void-1", invoice["invoiceNumber"], invoice_code=invoice.get("invoiceCode"))
    body = {"invoiceOrders": [void, seed_example("batch-after-void", company="W92", invoiceType="028")]}
    world.hub.queued()
    status, answer, _ = world.hub.call(batch_event(body))
    assert status == 200, answer
    voided, fresh = answer["data"]["invoiceOrders"]
    assert (voided["code"], voided["message"]) == (200, "void requested")
    assert voided["data"] == {
        "openApplyCode": "batch-void-1",
        "voids": "batch-void-blue",
        "status": "VOIDING",
        "warnings": [],
    }
    assert (fresh["code"], fresh["message"]) == (200, "order received")
    # The void's dispatch request names the blue application it acts on.
    assert sorted(q["open_apply_code"] for q in world.hub.queued()) == ["batch-after-void", "batch-void-blue"]
    again = world.hub.call(batch_event(body))[1]["data"]["invoiceOrders"]
    assert [i["message"] for i in again] == ["void already requested", "order already received"]
