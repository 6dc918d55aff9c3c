"""POST /v1/callbacks/{channel} through the real callback handler, against moto from template.yaml."""

from __future__ import annotations

import copy
import json
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import boto3
import pytest

from fapiao_hub import runtime
from fapiao_hub.infra.signatures import sign
from tests.conftest import REGION
from tests.unit.conftest import FakeContext, event, hub_config_document, load_handler

FIXTURES = Path(__file__).parent.parent / "fixtures"
TOKEN = "ekuaibao-callback-token"
SECRET = "ekuaibao-hmac-secret"
CODE = "zcxs1825830330588741634"


def seed_push_text() -> str:
    return (FIXTURES / "ekuaibao_seed000_push.json").read_text(encoding="utf-8")


@pytest.fixture
def callbacks(hub, tmp_path, monkeypatch):
    """The hub with an Ekuaibao channel (token + HMAC) routed for company VB5."""
    document = hub_config_document()
    document["business_systems"]["sample-erp"]["companies"]["VB5"]["channel"] = "ekuaibao"
    document["channels"] = {
        "ekuaibao": {
            "type": "ekuaibao",
            "base_url": "https://ekuaibao.invalid",
            "credentials": {"access_token": TOKEN, "hmac_secret": SECRET},
        }
    }
    Path(hub.environment["HUB_CONFIG_FILE"]).write_text(json.dumps(document), encoding="utf-8")
    runtime.reset()
    handler = load_handler("callback", "callback_app_under_test")

    class Callbacks:
        def post(self, body: str | bytes, *, token=TOKEN, timestamp=None, signature=None, channel="ekuaibao"):
            raw = body.encode("utf-8") if isinstance(body, str) else body
            ts = str(int(time.time())) if timestamp is None else timestamp
            headers = {"content-type": "application/json", "x-fapiao-timestamp": ts}
            headers["x-fapiao-signature"] = signature or sign(SECRET.encode(), ts, raw)
            query = {"accessToken": token} if token is not None else {}
            path = f"/v1/callbacks/{channel}"
            callback_event = {
                "version": "2.0",
                "routeKey": "POST /v1/callbacks/{channel}",
                "rawPath": path,
                "rawQueryString": urlencode(query),
                "queryStringParameters": query or None,
                "pathParameters": {"channel": channel},
                "headers": headers,
                "requestContext": {
                    "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
                    "requestId": "callback-test",
                    "routeKey": "POST /v1/callbacks/{channel}",
                    "stage": "$default",
                },
                "body": raw.decode("utf-8"),
                "isBase64Encoded": False,
            }
            response = handler(callback_event, FakeContext())
            return response["statusCode"], json.loads(response["body"])

        def s3_objects(self) -> list[str]:
            s3 = boto3.client("s3", region_name=REGION)
            listed = s3.list_objects_v2(Bucket=hub.environment["FILES_BUCKET"]).get("Contents", [])
            return [o["Key"] for o in listed]

        def invoices(self) -> list[dict]:
            table = boto3.resource("dynamodb", region_name=REGION).Table(hub.environment["INVOICES_TABLE"])
            return table.scan(ConsistentRead=True)["Items"]

        def world(self):
            return (self.s3_objects(), self.invoices(), hub.applications())

    return Callbacks()


def test_seed_000_verbatim_is_recorded_as_an_unmatched_result(callbacks):
    """The seed's example names no application (no serialNo, empty orderNo): kept, and reported."""
    status, answer = callbacks.post(seed_push_text())
    assert status == 404 and answer["value"] is False and "no application" in answer["message"]
    [raw_key] = [k for k in callbacks.s3_objects() if k.startswith("raw/callbacks/ekuaibao/")]
    [invoice] = callbacks.invoices()
    assert invoice["number"] == "89429424" and invoice["unmatched"] is True
    assert (invoice["amount"], invoice["tax"]) == (Decimal("828.30"), Decimal("49.70"))
    assert [line["amount"] for line in invoice["lines"]] == [Decimal("745.28"), Decimal("83.02")]
    assert [line["tax"] for line in invoice["lines"]] == [Decimal("44.72"), Decimal("4.98")]
    assert invoice["raw"].endswith(raw_key)


def _submitted_application(hub) -> str:
    """An order routed to Ekuaibao, dispatched: SUBMITTED, waiting for the push."""
    assert hub.call(event("intake-post-blue.json"))[0] == 200
    hub.queued()
    assert runtime.dispatcher().dispatch("sample-erp", CODE) == "submitted"
    return runtime.application_store().get("sample-erp", CODE).request_number


def matching_invoice(invoice: dict, application) -> dict:
    """Seed 000's invoice made to match an application (the hub verifies every result against it)."""
    return {
        **invoice,
        "invoiceType": 0,  # blue (the seed's example is red)
        "invoiceTypeCode": "01",  # 数电专票, as the application asks
        "invoiceDate": int(time.time() * 1000),
        "invoiceAmount": f"{application.amount:f}",
        "invoiceTaxAmount": f"{application.tax:f}",
        "sellerTaxNo": application.seller.tax_number,
        "buyerTaxNo": application.buyer.tax_number,
    }


def _push_for(request_number: str, result: int = 0) -> str:
    body = json.loads(seed_push_text())
    body["serialNo"] = request_number
    body["result"] = result
    application = runtime.application_store().get("sample-erp", CODE).application
    body["data"] = [matching_invoice(body["data"][0], application)]
    if result == 1:
        body["rejectMsg"] = "购方信息有误"
        body.pop("data")
    return json.dumps(body, ensure_ascii=False)


def test_a_push_for_a_known_application_issues_it(callbacks, hub):
    number = _submitted_application(hub)
    status, answer = callbacks.post(_push_for(number))
    assert (status, answer) == (200, {"value": True})
    [item] = hub.applications()
    assert item["status"] == "ISSUED"
    [invoice] = callbacks.invoices()
    assert invoice["application_key"] == f"sample-erp#{CODE}" and "unmatched" not in invoice


def test_duplicate_late_and_out_of_order_pushes_change_nothing_after_the_first_result(callbacks, hub):
    number = _submitted_application(hub)
    assert callbacks.post(_push_for(number))[0] == 200
    settled = hub.applications()
    history = [h["status"] for h in settled[0]["history"]]
    # A channel delivering again signs again (another timestamp, still within the window):
    # accepted, and changes nothing.
    earlier = int(time.time()) - 100
    for age, repeat in enumerate((_push_for(number), _push_for(number, result=2), _push_for(number)), start=1):
        assert callbacks.post(repeat, timestamp=str(earlier - age)) == (200, {"value": True})
    after = hub.applications()
    assert [h["status"] for h in after[0]["history"]] == history == ["RECEIVED", "DISPATCHING", "SUBMITTED", "ISSUED"]
    assert after[0]["version"] == settled[0]["version"] and len(callbacks.invoices()) == 1


def test_a_rejection_push_rejects(callbacks, hub):
    number = _submitted_application(hub)
    assert callbacks.post(_push_for(number, result=1)) == (200, {"value": True})
    [item] = hub.applications()
    assert item["status"] == "REJECTED" and "购方信息有误" in item["reason"]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("forged token", {"token": "not-the-token"}),
        ("missing token", {"token": None}),
        ("bad signature", {"signature": "0" * 64}),
        ("stale timestamp", {"timestamp": str(int(time.time()) - 301)}),
    ],
)
def test_bad_credentials_are_401_and_store_nothing(callbacks, hub, name, kwargs):
    number = _submitted_application(hub)
    before = callbacks.world()
    status, answer = callbacks.post(_push_for(number), **kwargs)
    assert status == 401 and answer == {"value": False, "message": "unauthorized"}
    assert callbacks.world() == before


def test_a_replayed_push_is_401_and_changes_nothing(callbacks, hub):
    number = _submitted_application(hub)
    body = _push_for(number, result=2)
    ts = str(int(time.time()))
    signature = sign(SECRET.encode(), ts, body.encode())
    assert callbacks.post(body, timestamp=ts, signature=signature)[0] == 200
    before = callbacks.world()
    assert callbacks.post(body, timestamp=ts, signature=signature) == (401, {"value": False, "message": "unauthorized"})
    assert callbacks.world() == before


def test_an_unreadable_push_is_400_but_its_body_is_kept(callbacks):
    body = json.loads(seed_push_text())
    # Not a result at all (a malformed *field* is recorded raw instead: IssuedInvoice.unreadable).
    body["data"][0]["details"] = {"goodsVat": "not a list of lines"}
    status, answer = callbacks.post(json.dumps(body, ensure_ascii=False))
    assert status == 400 and "data[0].details: not a list" in answer["message"]
    assert any(k.startswith("raw/callbacks/ekuaibao/") for k in callbacks.s3_objects())
    assert callbacks.invoices() == []


def test_unknown_channel_is_404(callbacks):
    assert callbacks.post(seed_push_text(), channel="nobody")[0] == 404


def test_the_seed_push_body_stays_verbatim_in_the_fixture():
    """The fixture is the seed's example as published (a key with a trailing space, taxRate)."""
    text = seed_push_text()
    assert '"taxTaxonomyCode "' in text and '"taxRate"' in text and '"invoicingDate": ""' in text
    assert copy.deepcopy(json.loads(text))["data"][0]["invoiceNumber"] == "89429424"


def test_a_push_with_malformed_fields_is_no_5xx_and_its_invoice_is_kept_raw(callbacks, hub):
    """An amount that is not a number and no invoice number: recorded as reported (the raw text in
    ``unreadable``), never a crash; what the application becomes is verification's business."""
    number = _submitted_application(hub)
    body = json.loads(_push_for(number))
    body["data"][0]["invoiceAmount"] = "828.3O"
    body["data"][0]["invoiceNumber"] = ""
    status, answer = callbacks.post(json.dumps(body, ensure_ascii=False))
    assert (status, answer) == (200, {"value": True})
    assert [invoice["number"] for invoice in callbacks.invoices()] == [""]
    assert any(k.startswith("raw/callbacks/ekuaibao/") for k in callbacks.s3_objects())
