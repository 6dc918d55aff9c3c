"""The audit trail in the real local run (moto server provisioned from template.yaml, HTTP on 127.0.0.1):
an operator resolves a MANUAL_REVIEW application through the ops API; the action is in the history
table with who, why, before and after, in the ops detail's history, and its OperatorAction event
reached the audit log group (AuditEventsRule's target) and the bus archive (AuditEventsArchive).

What moto does with them: it delivers the rule's events to the log group (filter-log-events finds
them) and counts archived events (describe-archive's EventCount); it runs no Logs Insights query.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from boto3.dynamodb.conditions import Key

from fapiao_hub_client import demo
from local.run import LOCAL_OPERATOR
from tests.integration.conftest import ROOT, LocalRun, _finish, start_local_run
from tests.integration.test_console import COMPANY, SYSTEM, business_view, operator_token, submit, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """A local run whose Xunlian channel does not de-duplicate: a lost answer ends in MANUAL_REVIEW."""
    work = tmp_path_factory.mktemp("audit")
    config = json.loads((ROOT / "local" / "hub-config.json").read_text(encoding="utf-8"))
    config["channels"]["xunlian"].update(dedupes_request_number=False, read_timeout_seconds=1)
    path = work / "hub-config.json"
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    run = start_local_run(work / "run", FAPIAO_HUB_LOCAL_CONFIG=str(path))
    try:
        yield run
    finally:
        _finish(run)


def _aws(run: LocalRun, service: str) -> Any:
    return boto3.client(service, region_name=run.info["region"], endpoint_url=run.info["aws_endpoint_url"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip


def test_an_operator_action_reaches_the_history_table_the_audit_log_group_and_the_archive(hub: LocalRun) -> None:
    code = f"audit-{demo.run_suffix()}"
    xunlian = hub.info["channels"]["xunlian"]["base_url"]
    requests.post(f"{xunlian}/_sandbox/config", json={"timeout_ms": 3000}, timeout=5).raise_for_status()
    # Request numbers are drawn at intake: the sandbox's fault is scripted for the order's remark.
    remark = f"audit trail {code}"
    requests.post(f"{xunlian}/_sandbox/faults", json={f"note:{remark}": ["timeout_after_issue"]},
                  timeout=5).raise_for_status()  # fmt: skip
    order, _ = demo.blue_order("xunlian", COMPANY, code)
    order["invoiceOrder"]["remark"] = remark
    submit(hub, order)
    wait_for("MANUAL_REVIEW", lambda: business_view(hub, code)["status"] == "MANUAL_REVIEW")
    number = business_view(hub, code)["requestNumber"]
    issued = requests.get(f"{xunlian}/_sandbox/issued/{number}", timeout=5).json()["invoices"][0]

    reason = "seen at the channel's portal"
    operator = {"Authorization": f"Bearer {operator_token(hub)}"}
    ops_url = f"{hub.api_url}/v1/ops/applications/{SYSTEM}/{code}"
    # Xunlian cannot be asked: the person states the figures as on the invoice seen at the channel.
    invoice = {"number": issued["invoiceNumber"], "code": issued.get("invoiceCode"),
               "amount": issued["totalAmountExcludeTax"], "tax": issued["totalTaxAmount"],
               "sellerTaxNumber": issued["sellerTaxId"]}  # fmt: skip
    answer = requests.post(f"{ops_url}/actions", json={"action": "resolve-issued", "reason": reason,
                                                       "invoice": invoice}, headers=operator, timeout=30)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["status"] == "ISSUED"

    # The history table: the action's own record, who, why, before and after.
    table = boto3.resource("dynamodb", region_name=hub.info["region"], endpoint_url=hub.info["aws_endpoint_url"],
                           aws_access_key_id="testing", aws_secret_access_key="testing").Table(
        hub.info["tables"]["HistoryTable"])  # fmt: skip
    records = table.query(KeyConditionExpression=Key("pk").eq(f"{SYSTEM}#{code}"), ConsistentRead=True)["Items"]
    [action] = [r for r in records if r["kind"] == "operator-action"]
    assert (action["action"], action["by"], action["reason"]) == ("resolve-issued", LOCAL_OPERATOR, reason)
    assert action["before"]["status"] == "MANUAL_REVIEW" and action["after"]["status"] == "ISSUED"
    assert action["after"]["invoice_keys"] and action["before"]["invoice_keys"] == []
    statuses = [r["status"] for r in records if r["kind"] in ("received", "transition")]
    assert statuses[0] == "RECEIVED" and statuses[-1] == "ISSUED" and "MANUAL_REVIEW" in statuses

    # The ops detail pages through the same records, newest first on request.
    def page(**query: str) -> dict[str, Any]:
        answer = requests.get(ops_url, params={"historyOrder": "newest", **query}, headers=operator, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    first = page(historyLimit="2")
    assert len(first["history"]) == 2 and first["historyNextCursor"]
    second = page(historyLimit="2", historyCursor=first["historyNextCursor"])
    assert second["history"] and second["history"][0]["at"] <= first["history"][-1]["at"]
    newest = page(historyLimit="50")["history"]
    assert [e["at"] for e in newest] == sorted((e["at"] for e in newest), reverse=True)
    shown = next(e for e in newest if e.get("record") == "operator-action")
    assert (shown["by"], shown["reason"], shown["before"]["status"]) == (LOCAL_OPERATOR, reason, "MANUAL_REVIEW")

    # The audit log group (the rule's target) and the archive.
    logs = _aws(hub, "logs")
    group = hub.info["log_groups"]["AuditLogGroup"]["name"]

    def delivered() -> dict[str, Any] | None:
        for found in logs.filter_log_events(logGroupName=group)["events"]:
            message = json.loads(found["message"])
            detail = message.get("detail") or {}
            if message.get("detail-type") == "OperatorAction" and detail.get("open_apply_code") == code:
                return detail
        return None

    event = wait_for("the OperatorAction in the audit log group", delivered, seconds=30)
    assert (event["action"], event["reason"], event["status_before"], event["status"]) == (
        "resolve-issued", reason, "MANUAL_REVIEW", "ISSUED",
    )  # fmt: skip
    assert event["operator"] == action["by"]
    archive = _aws(hub, "events").describe_archive(ArchiveName=hub.info["archives"]["AuditEventsArchive"]["name"])
    assert archive["EventCount"] >= 1
