"""A pushed result is bound to the channel that was asked (issue 18, items 1 and 7), over the local run.

Real parts only: the hub as `make run` starts it (moto server, HTTP API), the Xunlian sandbox, the
business systems' webhook receivers. Another business system's Xunlian application waits for a person
(MANUAL_REVIEW: its one request timed out, the channel can neither be asked nor de-duplicates); Ekuaibao's
credential then pushes a rejection and an issued result under that application's request number. Neither
touches it: it is kept as an unmatched result with a finding naming both channels, answered as a number the
hub never sent, and no business system hears of it. The number itself was drawn at random at intake: the
form anyone could compute from the business system and the code is not it and finds nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
import requests

from fapiao_hub.domain.config import token_sha256
from fapiao_hub.domain.models import application_key, request_number_for
from fapiao_hub.infra.signatures import sign
from fapiao_hub.usecases.callback_auth import SIGNATURE_HEADER, TIMESTAMP_HEADER
from fapiao_hub_client import demo
from tests.integration.conftest import ROOT, LocalRun, _finish, start_local_run

pytestmark = pytest.mark.integration

OTHER = "other-erp"  # the victim's business system (not the local run's sample-erp)
OTHER_TOKEN = "other-erp-local-token-for-the-binding-test"
CODE = "binding-xunlian-0001"
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("binding")
    config = json.loads((ROOT / "local" / "hub-config.json").read_text(encoding="utf-8"))
    # A strict Xunlian: a lost answer can be neither queried nor re-sent, so the application waits for a person.
    config["channels"]["xunlian"].update(dedupes_request_number=False, read_timeout_seconds=1)
    sample = config["business_systems"]["sample-erp"]
    config["business_systems"][OTHER] = {
        "name": "Another ERP",
        "token_sha256": [token_sha256(OTHER_TOKEN)],
        "webhook": {"url": "sandbox", "format": "hub", "secret": "other-webhook-secret"},
        "companies": {"VB5": {**sample["companies"]["VB5"], "channels": ["xunlian"]}},
    }
    path = work / "hub-config.json"
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    run = start_local_run(work / "run", FAPIAO_HUB_LOCAL_CONFIG=str(path), LOCAL_SCHEDULE_SECONDS="1")
    try:
        yield run
    finally:
        _finish(run)


def read(run: LocalRun, code: str) -> dict[str, Any]:
    answer = requests.get(
        f"{run.api_url}/v1/invoice-orders/{code}", headers={"Authorization": f"Bearer {OTHER_TOKEN}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def wait_for(what: str, probe, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def push_as_ekuaibao(run: LocalRun, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    ekuaibao = run.info["channels"]["ekuaibao"]
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
    ts = str(int(time.time()))
    headers = {
        "content-type": "application/json",
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: sign(ekuaibao["credentials"]["hmac_secret"].encode(), ts, raw),
    }
    answer = requests.post(
        ekuaibao["callback_url"],
        params={"accessToken": ekuaibao["credentials"]["access_token"]},
        data=raw,
        headers=headers,
        timeout=10,
    )
    return answer.status_code, answer.json()


def forged(number: str, result: int, invoice_number: str, order: dict[str, Any]) -> dict[str, Any]:
    """Seed 000's push, naming ``number``: an issued result matching the order, or a rejection."""
    body = json.loads((FIXTURES / "ekuaibao_seed000_push.json").read_text(encoding="utf-8"))
    body["serialNo"] = number
    body["result"] = result
    if result == 1:
        body["rejectMsg"] = "购方信息有误，请重新提交"
        body.pop("data")
        return body
    invoice = body["data"][0]
    invoice.update(invoiceNumber=invoice_number, invoiceType=0, invoiceDate=int(time.time() * 1000))
    return body


def notifications(run: LocalRun, system: str) -> list[dict[str, Any]]:
    return requests.get(run.info["webhooks"][system]["notifications"], timeout=5).json()


def about(notes: list[dict[str, Any]], code: str) -> list[str]:
    bodies = [note.get("body") or {} for note in notes]
    return [b.get("type") for b in bodies if (b.get("application") or {}).get("openApplyCode") == code]


def unmatched_messages(run: LocalRun) -> list[dict[str, Any]]:
    sqs = boto3.client(
        "sqs",
        endpoint_url=run.info["aws_endpoint_url"],
        region_name=run.info["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    url = run.info["queues"]["UnmatchedResultsQueue"]["url"]
    found: list[dict[str, Any]] = []
    for _ in range(3):
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        found += [json.loads(m["Body"])["detail"] for m in batch]
    return found


def invoices_table(run: LocalRun) -> list[dict[str, Any]]:
    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url=run.info["aws_endpoint_url"],
        region_name=run.info["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return dynamodb.Table(run.info["tables"]["InvoicesTable"]).scan(ConsistentRead=True)["Items"]


def test_ekuaibao_cannot_push_a_result_for_another_systems_xunlian_application(hub: LocalRun) -> None:
    xunlian = hub.info["channels"]["xunlian"]["base_url"]
    # Every Xunlian request issues and then never answers (read timeout: the outcome is unknown).
    config = {"rates": {"timeout_after_issue": 1.0}, "timeout_ms": 3000}
    requests.post(f"{xunlian}/_sandbox/config", json=config, timeout=5).raise_for_status()
    order, _ = demo.blue_order("xunlian", "VB5", CODE)
    answer = requests.post(
        f"{hub.api_url}/v1/invoice-orders", json=order, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    waiting = wait_for("MANUAL_REVIEW", lambda: (d := read(hub, CODE))["status"] == "MANUAL_REVIEW" and d)
    requests.post(f"{xunlian}/_sandbox/config", json={"rates": {}}, timeout=5).raise_for_status()

    # The number is the one drawn at intake, the one Xunlian was sent; not the derivable form.
    number = waiting["requestNumber"]
    derived = request_number_for(application_key(OTHER, CODE))
    assert number != derived and waiting["channel"] == "xunlian"
    assert requests.get(f"{xunlian}/_sandbox/issued", timeout=5).json()["attempts"] == {number: 1}
    time.sleep(2)  # its ApplicationNeedsReview has reached the receiver
    heard_before = about(notifications(hub, OTHER), CODE)
    assert heard_before == ["ApplicationNeedsReview"]
    before = read(hub, CODE)

    # Ekuaibao's credential pushes (a) a rejection and (b) an issued result under that number, and
    # (c) under the derived form, and (d) under a number nobody was ever sent.
    unknown = "FH" + "Q" * 18
    pushes = [
        (number, forged(number, 1, "", order)),
        (number, forged(number, 0, "77000001", order)),
        (derived, forged(derived, 1, "", order)),
        (unknown, forged(unknown, 0, "77000002", order)),
    ]
    for pushed, body in pushes:
        status, answer = push_as_ekuaibao(hub, body)
        # One answer for all: it does not tell whether the number exists for another channel.
        assert (status, answer) == (404, {"value": False, "message": f"no application for request number {pushed}"})

    # The application is untouched: status, version, reason, history, findings, invoices.
    assert read(hub, CODE) == before
    # Kept: the issued result's invoice, unmatched, with the finding; announced on the unmatched queue.
    kept = {i["number"]: i for i in invoices_table(hub) if i.get("unmatched")}
    assert set(kept) >= {"77000001", "77000002"}
    mine = kept["77000001"]
    assert mine["channel"] == "ekuaibao" and mine["asked_channel"] == "xunlian" and "application_key" not in mine
    assert mine["finding"]["kind"] == "RESULT_FROM_UNASKED_CHANNEL"
    assert "finding" not in kept["77000002"]  # a number of no application: nothing to name
    details: list[dict[str, Any]] = []  # a message read stays invisible a while: gather them
    wait_for("the unmatched results", lambda: details.extend(unmatched_messages(hub)) or len(details) >= 4)
    bound = [d for d in details if d.get("request_number") == number]
    assert sorted(d["outcome"] for d in bound) == ["Issued", "Rejected"]
    for detail in bound:
        assert detail["channel"] == "ekuaibao" and detail["asked_channel"] == "xunlian"
        assert detail["source_system"] == "" and detail["open_apply_code"] == ""
        [finding] = detail["findings"]
        assert finding["kind"] == "RESULT_FROM_UNASKED_CHANNEL"
        assert finding["differences"] == [{"field": "channel", "expected": "xunlian", "reported": "ekuaibao"}]
        assert "ekuaibao pushed" in finding["summary"] and "sent to xunlian" in finding["summary"]
    assert {d["request_number"] for d in details} >= {number, derived, unknown}

    # No business system heard of any of it: no rejection (no resubmission), no issued invoice.
    time.sleep(2)
    assert about(notifications(hub, OTHER), CODE) == heard_before
    assert about(notifications(hub, "sample-erp"), CODE) == []
    assert read(hub, CODE) == before
