"""Every fixture in events/ through stock ``sam local invoke`` (tests/container/tier.py), in an order
that builds state up, each result checked: the function's answer, what it left in moto, what the
sandboxes saw. A fixture without a check here, or a function without a fixture, fails the tier.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key

from fapiao_hub.domain.models import request_number_for
from fapiao_hub.infra.store.polling import DUE_BUCKET
from tests.container.tier import (
    EVENTS,
    FIXTURE_SYSTEM,
    Invocation,
    Tier,
    TierFailure,
    copy_build,
    fixture_function,
    fixture_plan,
    serverless_functions,
)

BLUE = "zcxs1825830330588741634"  # intake-post-blue.json: seed 004's example (0112, 数电) for VB5 (-> Kingdee)
RED = "red-zcxs1825830330588741634-1"
XUNLIAN = "demo-xunlian-0001"  # intake-post-xunlian.json: docs/examples/order-xunlian.json (028)
EKUAIBAO = "demo-ekuaibao-0001"  # intake-post-ekuaibao.json: docs/examples/order-ekuaibao.json
NO_FAILURES = {"batchItemFailures": []}


def number(tier: Tier, code: str) -> str:
    """The request number intake drew for ``code`` (random: never computable from the code)."""
    return tier.application(code)["request_number"]


def fixture_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def codes(messages: list[dict[str, Any]]) -> list[str]:
    return [m["open_apply_code"] for m in messages]


def outcome(messages: list[dict[str, Any]], detail_type: str, code: str) -> dict[str, Any]:
    found = [m for m in messages if m.get("detail-type") == detail_type and m["detail"]["open_apply_code"] == code]
    assert len(found) == 1, f"expected one {detail_type} event for {code} on the notify queue, got {messages}"
    return found[0]


@dataclass(frozen=True)
class Step:
    """One fixture: what to note before invoking it, and how to check its result."""

    check: Callable[[Tier, Invocation, Any], None]
    before: Callable[[Tier], Any] | None = None
    # The fixture as sent, where it must name what only the run knows (a request number drawn at intake).
    event: Callable[[Tier, dict[str, Any]], dict[str, Any]] | None = None


STEPS: dict[str, Step] = {}  # in invocation order


def step(
    fixture: str,
    before: Callable[[Tier], Any] | None = None,
    event: Callable[[Tier, dict[str, Any]], dict[str, Any]] | None = None,
):
    def register(check: Callable[[Tier, Invocation, Any], None]) -> Callable[[Tier, Invocation, Any], None]:
        STEPS[fixture] = Step(check, before, event)
        return check

    return register


def invocation_event(tier: Tier, fixture: str) -> dict[str, Any]:
    """The event a step sends: the fixture, rewritten where the step says so."""
    planned = STEPS[fixture]
    event = fixture_event(fixture)
    return planned.event(tier, event) if planned.event else event


def _with_xunlian_number(tier: Tier, event: dict[str, Any]) -> dict[str, Any]:
    """The outcomes rule's delivery of the Xunlian order's InvoiceIssued, under its drawn request number."""
    record = event["Records"][0]
    body = json.loads(record["body"])
    body["detail"]["request_number"] = number(tier, XUNLIAN)
    return {**event, "Records": [{**record, "body": json.dumps(body, ensure_ascii=False)}, *event["Records"][1:]]}


def _with_ekuaibao_number(tier: Tier, event: dict[str, Any]) -> dict[str, Any]:
    """Seed 000's example push, under the request number intake drew for the Ekuaibao order."""
    body = json.loads(event["body"])
    body["serialNo"] = number(tier, EKUAIBAO)
    return {**event, "body": json.dumps(body, ensure_ascii=False)}


def received(tier: Tier, invocation: Invocation, code: str) -> dict[str, Any]:
    """A new order: 200 RECEIVED, stored once with its request number, one dispatch request queued."""
    status, body = invocation.http()
    assert status == 200, body
    assert body["success"] is True and body["message"] == "order received", body
    assert body["data"]["openApplyCode"] == code and body["data"]["status"] == "RECEIVED", body
    item = tier.application(code)
    assert item is not None and item["status"] == "RECEIVED" and item["version"] == 1, item
    # Drawn at random and stored before dispatch: never the old derivation from system and code.
    drawn = item["request_number"]
    assert len(drawn) == 20 and drawn.startswith("FH") and drawn.isalnum(), item
    assert drawn != request_number_for(f"{FIXTURE_SYSTEM}#{code}"), item
    assert codes(tier.drain("DispatchQueue")) == [code]
    return body


# ------------------------------------------------------------------ intake


@step("intake-post-blue.json")
def _blue(tier: Tier, invocation: Invocation, _: Any) -> None:
    received(tier, invocation, BLUE)


@step("intake-post-seed004-path.json")
def _seed004_path(tier: Tier, invocation: Invocation, _: Any) -> None:
    """The same body on seed 004's own path: the same answer, nothing stored twice.

    Still RECEIVED, so the repeat asks for its dispatch again (the first request may have been lost).
    """
    status, body = invocation.http()
    assert status == 200 and body["message"] == "order already received", body
    assert body["data"]["openApplyCode"] == BLUE and body["data"]["status"] == "RECEIVED", body
    assert [a["open_apply_code"] for a in tier.applications()] == [BLUE]
    assert tier.application(BLUE)["version"] == 1
    assert codes(tier.drain("DispatchQueue")) == [BLUE]


@step("intake-post-invalid.json")
def _invalid(tier: Tier, invocation: Invocation, _: Any) -> None:
    status, body = invocation.http()
    assert status == 400 and body["success"] is False, body
    fields = [e["field"] for e in body["data"]["errors"]]
    assert "invoiceOrder.purchaserTaxpayerNo" in fields, body
    assert [a["open_apply_code"] for a in tier.applications()] == [BLUE]  # nothing stored
    assert tier.drain("DispatchQueue") == []


@step("intake-post-red.json")
def _red(tier: Tier, invocation: Invocation, _: Any) -> None:
    body = received(tier, invocation, RED)
    # Its blue invoice was not issued through the hub: accepted with a warning, as the tier's
    # configuration lets sample-erp reverse invoices issued elsewhere (tier_hub_config).
    assert any("12221761" in w for w in body["data"]["warnings"]), body


@step("intake-post-xunlian.json")
def _xunlian(tier: Tier, invocation: Invocation, _: Any) -> None:
    received(tier, invocation, XUNLIAN)


@step("intake-post-ekuaibao.json")
def _ekuaibao(tier: Tier, invocation: Invocation, _: Any) -> None:
    received(tier, invocation, EKUAIBAO)


# ------------------------------------------------------------------ dispatch


@step("dispatch-sqs-ekuaibao.json")
def _dispatch_ekuaibao(tier: Tier, invocation: Invocation, _: Any) -> None:
    """Ekuaibao learns of applications out of band: SUBMITTED, due again in 10 s, result by push."""
    assert invocation.answer() == NO_FAILURES
    item = tier.application(EKUAIBAO)
    assert item["status"] == "SUBMITTED" and item["channel"] == "ekuaibao", item
    assert 0 < int(item["next_poll_at"]) - time.time() <= 10, item


@step("dispatch-sqs.json")
def _dispatch_blue(tier: Tier, invocation: Invocation, _: Any) -> None:
    """Seed 004's own example is a 数电 order (0112): VB5's first channel, Xunlian, takes legacy types
    only, so it goes to the company's next capable channel, Kingdee (README): its bill is pushed, the
    result comes by polling. Nothing reaches Xunlian."""
    assert invocation.answer() == NO_FAILURES
    item = tier.application(BLUE)
    assert item["status"] == "SUBMITTED" and item["channel"] == "kingdee", item
    issued = tier.sandbox("xunlian", "/_sandbox/issued")
    assert issued["total"] == 0 and issued["attempts"] == {}, issued  # nothing reached Xunlian


@step("dispatch-sqs-xunlian.json")
def _dispatch_xunlian(tier: Tier, invocation: Invocation, _: Any) -> None:
    """A legacy-type order: issued synchronously by the Xunlian sandbox, exactly once."""
    assert invocation.answer() == NO_FAILURES
    item = tier.application(XUNLIAN)
    assert item["status"] == "ISSUED" and item["channel"] == "xunlian", item
    [invoice] = tier.invoices(XUNLIAN)
    assert invoice["request_number"] == number(tier, XUNLIAN) and invoice["status"] == "ISSUED", invoice
    issued = tier.sandbox("xunlian", "/_sandbox/issued")
    assert issued["counts"] == {number(tier, XUNLIAN): 1} and issued["total"] == 1, issued
    event = outcome(tier.drain("NotifyQueue"), "InvoiceIssued", XUNLIAN)
    assert [i["number"] for i in event["detail"]["invoices"]] == [invoice["number"]], event
    tier.notes["issued_event"] = event  # the notifier fixture is compared with it


@step("intake-get.json")
def _get(tier: Tier, invocation: Invocation, _: Any) -> None:
    status, body = invocation.http()
    assert status == 200, body
    data = body["data"]
    assert data["openApplyCode"] == BLUE and data["status"] == "SUBMITTED" and data["channel"] == "kingdee", data
    assert data["requestNumber"] == number(tier, BLUE), data
    history = [h["status"] for h in data["history"]]
    assert history[0] == "RECEIVED" and history[-1] == "SUBMITTED", history
    assert data["invoices"] == [] and data["invoiceOrder"]["openApplyCode"] == BLUE, data


# ------------------------------------------------------------------ poller


def _due(tier: Tier) -> set[str]:
    answer = tier.table().query(
        IndexName="due-work",
        KeyConditionExpression=Key("due_bucket").eq(DUE_BUCKET) & Key("next_poll_at").lte(int(time.time())),
    )
    return {i["open_apply_code"] for i in answer["Items"]}


def _before_poller(tier: Tier) -> set[str]:
    """Wait until the Ekuaibao application is due (10 s after its dispatch), then note what is due."""
    due_at = int(tier.application(EKUAIBAO)["next_poll_at"])
    time.sleep(max(0.0, due_at - time.time() + 1))
    return _due(tier)


@step("poller-schedule.json", before=_before_poller)
def _poller(tier: Tier, invocation: Invocation, due_before: set[str]) -> None:
    answer = invocation.answer()
    due_after = _due(tier)
    messages = tier.drain("DispatchQueue")
    queued = codes(messages)
    assert EKUAIBAO in due_before, due_before
    assert answer == {"due": len(queued), "queued": len(queued)}, (answer, queued)
    assert due_before <= set(queued), (due_before, queued)
    # Each one queued is claimed: its next_poll_at moved to the claim the message carries, so the
    # next run does not queue it again while its message waits.
    assert due_after.isdisjoint(queued), (queued, due_after)
    for message in messages:
        assert int(tier.application(message["open_apply_code"])["next_poll_at"]) == message["claimed_until"], message
    assert XUNLIAN not in queued  # outcomes leave the due-work index


# ------------------------------------------------------------------ callback


@step("callback-ekuaibao-bad-token.json")
def _callback_refused(tier: Tier, invocation: Invocation, _: Any) -> None:
    status, body = invocation.http()
    assert status == 401 and body == {"value": False, "message": "unauthorized"}, body
    assert tier.s3_keys("raw/callbacks/") == []  # refused before anything is stored
    assert tier.application(EKUAIBAO)["status"] == "SUBMITTED"


@step("callback-ekuaibao-push.json", event=_with_ekuaibao_number)
def _callback(tier: Tier, invocation: Invocation, _: Any) -> None:
    push = json.loads(invocation_event(tier, "callback-ekuaibao-push.json")["body"])
    assert push["serialNo"] == number(tier, EKUAIBAO)  # the push names the application's request number
    status, body = invocation.http()
    assert status == 200 and body == {"value": True}, body
    # The fixture is seed 000's own example push, whose invoice (another seller, type, amount and
    # date) is not the order's: recorded in full, believed by nobody (MISMATCH with a finding).
    application = tier.application(EKUAIBAO)
    assert application["status"] == "MISMATCH" and application["findings"][0]["kind"] == "RESULT_MISMATCH"
    [invoice] = tier.invoices(EKUAIBAO)
    assert (invoice["code"], invoice["number"]) == ("012002600281", "30000001"), invoice
    assert len(tier.s3_keys("raw/callbacks/ekuaibao/")) == 1  # the push, archived as it came
    outcome(tier.drain("NotifyQueue"), "ApplicationNeedsReview", EKUAIBAO)


# ------------------------------------------------------------------ notifier


@step("notifier-sqs.json", event=_with_xunlian_number)
def _notifier(tier: Tier, invocation: Invocation, _: Any) -> None:
    # The fixture is what the outcomes rule delivers: compare it with the real event of the dispatch step.
    fixture = json.loads(invocation_event(tier, "notifier-sqs.json")["Records"][0]["body"])
    real = tier.notes["issued_event"]
    assert (fixture["source"], fixture["detail-type"]) == (real["source"], real["detail-type"])
    assert {k: v for k, v in real["detail"].items() if k in fixture["detail"]} == fixture["detail"], real
    assert invocation.answer() == NO_FAILURES
    [delivery] = tier.sandbox("receiver", "/_sandbox/notifications")
    assert delivery["signature_ok"] is True and delivery["answered"] == 200 and delivery["event_id"], delivery
    assert delivery["body"]["type"] == "InvoiceIssued", delivery
    assert delivery["body"]["application"]["openApplyCode"] == XUNLIAN, delivery
    [invoice] = tier.invoices(XUNLIAN)
    assert [i["invoiceNumber"] for i in delivery["body"]["invoices"]] == [invoice["number"]], delivery
    notes = [h.get("note", "") for h in tier.application(XUNLIAN)["history"]]
    assert any(n.startswith(f"notified {FIXTURE_SYSTEM} (hub): 200") for n in notes), notes
    assert tier.drain("NotifyDLQ") == []


# ------------------------------------------------------------------ console


@step("console-get-index.json")
def _console(tier: Tier, invocation: Invocation, _: Any) -> None:
    """The console's page from the built artifact (its static files travel with the function)."""
    answer = invocation.answer()
    assert answer["statusCode"] == 200, answer
    headers = answer["headers"]
    assert headers["content-type"] == "text/html; charset=utf-8", headers
    assert "script-src 'self'" in headers["content-security-policy"], headers
    assert "unsafe-inline" not in headers["content-security-policy"], headers
    assert headers["x-content-type-options"] == "nosniff", headers
    page = (EVENTS.parent / "functions" / "console" / "static" / "index.html").read_text(encoding="utf-8")
    assert answer["body"] == page


# ------------------------------------------------------------------ the operations desk (OpsFunction)


@step("ops-summary.json")
def _ops_summary(tier: Tier, invocation: Invocation, _: Any) -> None:
    """Open statuses counted now, final ones settled in the last 24 h (all of this run's), no findings."""
    status, body = invocation.http()
    assert status == 200 and body["success"] is True, body
    data = body["data"]
    stored = [a["status"] for a in tier.applications()]
    for name in set(stored):
        assert data["statuses"].get(name) == stored.count(name), (name, data, stored)
    assert data["needsPerson"] == {s: stored.count(s) for s in ("MANUAL_REVIEW", "MISMATCH", "STUCK")}, data
    assert data["openFindings"] == stored.count("MISMATCH"), data  # the Ekuaibao push's finding
    assert data["deadLetterQueues"] and set(data["deadLetterQueues"].values()) == {0}, data


@step("ops-list.json")
def _ops_list(tier: Tier, invocation: Invocation, _: Any) -> None:
    """Every RECEIVED application of the run (the fixture's filter) on one page, newest received first."""
    status, body = invocation.http()
    assert status == 200, body
    rows = body["data"]["items"]
    stored = {a["open_apply_code"]: a for a in tier.applications() if a["status"] == "RECEIVED"}
    assert sorted(r["openApplyCode"] for r in rows) == sorted(stored), (rows, sorted(stored))
    assert [r["receivedAt"] for r in rows] == sorted((r["receivedAt"] for r in rows), reverse=True), rows
    assert all(r["status"] == stored[r["openApplyCode"]]["status"] for r in rows), rows
    assert body["data"]["nextCursor"] is None


@step("ops-get.json")
def _ops_get(tier: Tier, invocation: Invocation, _: Any) -> None:
    """Seed 004's application: what its business system sees, plus what an operator needs."""
    status, body = invocation.http()
    assert status == 200, body
    data = body["data"]
    assert (data["businessSystem"], data["openApplyCode"], data["status"]) == (FIXTURE_SYSTEM, BLUE, "SUBMITTED"), data
    assert data["requestNumber"] == number(tier, BLUE) and data["channel"] == "kingdee", data
    assert [h["status"] for h in data["history"]][-1] == "SUBMITTED", data
    assert isinstance(data["actions"], list) and "cancel" not in data["actions"], data
    assert {"attempts", "leaseUntil", "nextPollAt", "rawKeys", "findings"} <= set(data), data


@step("ops-act.json")
def _ops_act(tier: Tier, invocation: Invocation, _: Any) -> None:
    """Cancelling an application its channel has (SUBMITTED to Kingdee): 409 with where it stands, nothing changed."""
    before = tier.application(BLUE)
    status, body = invocation.http()
    assert status == 409 and body["success"] is False and body["data"] == {"status": "SUBMITTED"}, body
    after = tier.application(BLUE)
    assert (after["status"], after["version"]) == (before["status"], before["version"]), after
    assert tier.drain("NotifyQueue") == []  # no outcome: nothing happened


# ------------------------------------------------------------------ reconciliation


@step("reconciliation-schedule.json")
def _reconciliation(tier: Tier, invocation: Invocation, _: Any) -> None:
    """Last: every application has settled. Xunlian and Ekuaibao have no query: "not verifiable",
    never matching, and no finding; the day's report is in S3."""
    answer = invocation.answer()
    settled = [a for a in tier.applications() if a["status"] not in ("RECEIVED", "DISPATCHING", "SUBMITTED")]
    assert answer["checked"] == len(settled) > 0 and answer["new_findings"] == 0, (answer, settled)
    sent = [a for a in settled if a.get("channel")]
    assert answer["not_verifiable"] == len(sent), (answer, sent)
    day = answer["day"]
    assert answer["report"] == [f"reports/reconciliation/{day}{s}" for s in (".json", ".csv", "-findings.csv")]
    assert set(answer["report"]) <= set(tier.s3_keys("reports/reconciliation/"))


# ------------------------------------------------------------------ the tests


def test_every_function_has_a_fixture_and_every_fixture_a_check() -> None:
    plan = fixture_plan()
    missing = sorted(set(plan) - set(STEPS))
    assert not missing, f"fixtures without a check in {Path(__file__).name}: {missing}"
    gone = sorted(set(STEPS) - set(plan))
    assert not gone, f"checks for fixtures that are not in events/: {gone}"
    assert set(plan.values()) == set(serverless_functions())


@pytest.mark.parametrize("fixture", list(STEPS))
def test_sam_local_invoke(tier: Tier, fixture: str) -> None:
    if not (EVENTS / fixture).exists():
        pytest.fail(f"events/{fixture} is gone")
    function = fixture_function(fixture, serverless_functions())
    assert function is not None
    planned = STEPS[fixture]
    noted = planned.before(tier) if planned.before else None
    sent: str | Path = fixture
    if planned.event:
        sent = tier.work / "events" / fixture
        sent.parent.mkdir(parents=True, exist_ok=True)
        sent.write_text(json.dumps(invocation_event(tier, fixture), ensure_ascii=False), encoding="utf-8")
    invocation = tier.invoke(function, sent)
    planned.check(tier, invocation, noted)


def test_plain_sam_local_invoke_of_the_built_template(tier: Tier) -> None:
    """The built template as sam build wrote it (SAM bakes the layer itself): the same answer."""
    STEPS["intake-get.json"].check(tier, tier.invoke("IntakeFunction", "intake-get.json", plain=True), None)


@pytest.mark.parametrize(
    ("breakage", "error_type"),
    [
        ("\ndef broken(:\n", "Runtime.UserCodeSyntaxError"),
        ("\nimport a_dependency_missing_from_the_artifact  # noqa\n", "Runtime.ImportModuleError"),
    ],
    ids=["syntax-error", "missing-dependency"],
)
def test_a_broken_handler_fails_the_tier(tier: Tier, tmp_path: Path, breakage: str, error_type: str) -> None:
    """The built artifact, copied and broken: sam local invoke reports the failure, the tier's check fails."""
    template = copy_build(tier, tmp_path / "build")
    handler = template.parent / "IntakeFunction" / "app.py"
    handler.write_text(handler.read_text(encoding="utf-8") + breakage, encoding="utf-8")
    invocation = tier.invoke("IntakeFunction", "intake-get.json", template=template)
    assert invocation.failure() is not None and invocation.failure().startswith(error_type), invocation.result
    with pytest.raises(TierFailure, match=error_type):
        STEPS["intake-get.json"].check(tier, invocation, None)


def test_a_function_without_a_fixture_fails_the_tier(tmp_path: Path) -> None:
    """A function added to the template later, with no fixture of its own."""
    template = tmp_path / "template.yaml"
    text = (EVENTS.parent / "template.yaml").read_text(encoding="utf-8")
    addition = (
        "  ReportFunction:\n    Type: AWS::Serverless::Function\n"
        "    Properties:\n      CodeUri: functions/report\n      Handler: app.lambda_handler\n\n"
    )
    template.write_text(text.replace("\nResources:\n", "\nResources:\n" + addition, 1), encoding="utf-8")
    with pytest.raises(TierFailure, match=r"no fixture in events/ for ReportFunction \(e\.g\. report-<case>\.json\)"):
        fixture_plan(template, EVENTS)
    stray = tmp_path / "events"
    stray.mkdir()
    for fixture in EVENTS.glob("*.json"):
        (stray / fixture.name).write_bytes(fixture.read_bytes())
    (stray / "report-daily.json").write_text("{}", encoding="utf-8")
    assert fixture_plan(template, stray)["report-daily.json"] == "ReportFunction"
    (stray / "reprot-typo.json").write_text("{}", encoding="utf-8")
    with pytest.raises(TierFailure, match=r"fixtures naming no function of template\.yaml: reprot-typo\.json"):
        fixture_plan(template, stray)
