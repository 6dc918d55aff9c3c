"""Orders routed to the polled channels (partner, seed 003; Kingdee, seed 002) over real HTTP to their
sandboxes: submitted, found by the poller, issued, and their files in S3 byte for byte."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import boto3
import pytest
import requests

from fapiao_hub import runtime
from fapiao_hub.usecases.dispatch import Dispatcher, DispatchPolicy
from fapiao_hub.usecases.polling import Poller
from sandbox import kingdee as kingdee_sandbox
from sandbox import partner as partner_sandbox
from tests.conftest import REGION
from tests.unit.conftest import event, get_event, hub_config_document
from tests.unit.test_dispatch_workflow import Clock


@pytest.fixture
def polled(hub):
    partner = partner_sandbox.run(port=0)
    kingdee = kingdee_sandbox.run(port=0, issue_delay_ms=0)
    try:
        requests.post(
            f"{partner.base_url}/_sandbox/config",
            json={"auto": True, "issue_after_ms": 0, "invoices_per_application": 1},
            timeout=5,
        )
        document = hub_config_document()
        companies = document["business_systems"]["sample-erp"]["companies"]
        companies["VB5"]["channel"] = "partner"
        companies["W92"]["channel"] = "kingdee"
        document["channels"] = {
            "partner": {
                "type": "partner", "base_url": partner.base_url, "quiet_period_seconds": 0,
                "file_hosts": [partner.base_url],  # the sandbox's files over plain http (file_fetch.py)
                "credentials": {"client_id": partner_sandbox.DEFAULT_CLIENT_ID,
                                "client_secret": partner_sandbox.DEFAULT_CLIENT_SECRET},
            },
            "kingdee": {
                "type": "kingdee", "base_url": kingdee.base_url, "quiet_period_seconds": 0,
                "file_hosts": [kingdee.base_url],
                "credentials": {"access_token": kingdee_sandbox.DEFAULT_ACCESS_TOKEN},
                "options": {"business_system_code": "FAPIAO_HUB", "submit": "bill_push"},
            },
        }  # fmt: skip
        Path(hub.environment["HUB_CONFIG_FILE"]).write_text(json.dumps(document), encoding="utf-8")
        runtime.reset()
        clock = Clock()
        dispatcher = Dispatcher(
            runtime.application_store(), runtime.dispatch_queue(), runtime.event_publisher(),
            runtime.channel_registry(), runtime.file_store(), policy=DispatchPolicy(), clock=clock,
        )  # fmt: skip
        poller = Poller(runtime.application_store(), runtime.dispatch_queue(), clock=clock)

        def settle(rounds: int = 8) -> None:
            """Poller runs and dispatch steps, as the schedule and the queue would drive them."""
            for request in hub.queued():
                dispatcher.dispatch(
                    request["source_system"], request["open_apply_code"], claimed_until=request.get("claimed_until")
                )
            for _ in range(rounds):
                clock.now += 11
                poller.run()
                for request in hub.queued():
                    dispatcher.dispatch(
                        request["source_system"], request["open_apply_code"], claimed_until=request.get("claimed_until")
                    )

        yield {"partner": partner, "kingdee": kingdee, "settle": settle}
    finally:
        partner.shutdown()
        kingdee.shutdown()


def order(code: str, company: str) -> dict:
    body = json.loads(event("intake-post-blue.json")["body"])
    body["invoiceOrder"].update(openApplyCode=code, bukrs=company)
    return body


def s3_bytes(key: str, bucket: str) -> bytes:
    return boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()


def test_partner_order_is_issued_with_its_pdf_stored_byte_for_byte(hub, polled):
    assert hub.call(event("intake-post-blue.json", body=order("P-1", "VB5")))[0] == 200
    polled["settle"]()
    status, answer, _ = hub.call(get_event("P-1"))
    assert status == 200
    data = answer["data"]
    assert data["status"] == "ISSUED", data
    [invoice] = data["invoices"]
    # The PDF came inline (base64); the XML by URL, fetched from the partner.
    assert sorted(f["format"] for f in invoice["files"]) == ["pdf", "xml"]
    [stored_file] = [f for f in invoice["files"] if f["format"] == "pdf"]
    # What the partner sends (asked again, decoded independently) is what S3 holds.
    stored_application = runtime.application_store().get("sample-erp", "P-1")
    outcome = (
        runtime.channel_registry()
        .channel("partner")
        .query(stored_application.application, stored_application.request_number)
    )
    [sent] = [f.content_base64 for f in outcome.invoices[0].files if f.content_base64]
    expected = base64.b64decode(sent, validate=True)
    item = runtime.application_store().invoices(runtime.application_store().get("sample-erp", "P-1"))[0]
    [key] = [f["key"] for f in item["files"] if f.get("format") == "pdf"]
    assert s3_bytes(key, hub.environment["FILES_BUCKET"]) == expected and expected.startswith(b"%PDF")
    assert stored_file["sha256"] == hashlib.sha256(expected).hexdigest() and stored_file["size"] == len(expected)
    assert stored_file["format"] == "pdf" and key in stored_file["url"]
    issued = requests.get(f"{polled['partner'].base_url}/_sandbox/issued", timeout=5).json()
    assert issued["counts"] == {data["requestNumber"]: 1}


def test_garbage_base64_is_a_failed_file_and_the_invoice_is_still_recorded(hub, polled):
    assert hub.call(event("intake-post-blue.json", body=order("P-2", "VB5")))[0] == 200
    number = runtime.application_store().get("sample-erp", "P-2").request_number  # nothing dispatched yet
    requests.post(f"{polled['partner'].base_url}/_sandbox/faults", json={number: ["bad_file"] * 5}, timeout=5)
    polled["settle"]()
    data = hub.call(get_event("P-2"))[1]["data"]
    assert data["status"] == "ISSUED"
    [invoice] = data["invoices"]
    [failed] = [f for f in invoice["files"] if f.get("source") == "base64"]
    assert failed["error"] and "url" not in failed
    objects = boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket=hub.environment["FILES_BUCKET"], Prefix="invoices/"
    )
    assert not any(o["Key"].endswith(".pdf") for o in objects.get("Contents", []))


def test_kingdee_order_is_pushed_polled_and_issued_with_its_file_fetched(hub, polled):
    assert hub.call(event("intake-post-blue.json", body=order("K-1", "W92")))[0] == 200
    polled["settle"]()
    data = hub.call(get_event("K-1"))[1]["data"]
    assert data["status"] == "ISSUED", data
    assert [h["status"] for h in data["history"]] == ["RECEIVED", "DISPATCHING", "SUBMITTED", "ISSUED"]
    [invoice] = data["invoices"]
    assert invoice["files"][0]["format"] == "pdf" and invoice["files"][0]["size"] > 0
    issued = requests.get(f"{polled['kingdee'].base_url}/_sandbox/issued", timeout=5).json()
    assert issued["counts"] == {data["requestNumber"]: 1}
