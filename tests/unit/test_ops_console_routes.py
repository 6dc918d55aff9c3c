"""What the console needs from the ops API besides the list and the detail: the open-findings filter
and the archived raw answers of an application (operator-scoped, only the keys the application owns)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from fapiao_hub import runtime
from fapiao_hub.domain.models import Finding, FindingKind
from tests.unit import test_ops_api as desk
from tests.unit.conftest import Hub, event
from tests.unit.test_ops_api import OPERATOR, OTHER_SELLER, OTHER_SYSTEMS, Ops

# The ops API's fixtures (a hub with operators, a fake use case), shared by name.
operations_module = desk.operations_module
ops = desk.ops


def _submit(hub: Hub, code: str) -> str:
    """The fixture order under another openApplyCode: a distinct application."""
    request = event("intake-post-blue.json")
    body = json.loads(request["body"])
    body["invoiceOrder"]["openApplyCode"] = code
    request["body"] = json.dumps(body, ensure_ascii=False)
    status, answer, _ = hub.call(request)
    assert status == 200, answer
    return answer["data"]["openApplyCode"]


def _finding(number: int, *, open_: bool = True) -> Finding:
    return Finding(
        id=f"finding-{number}", kind=FindingKind.TOTALS_DIFFER, at="2026-12-08T01:15:00.000Z", source="reconciliation",
        summary="the channel's totals differ", open=open_,
    )  # fmt: skip


def _raw(ops: Ops, code: str, token: str | None = OPERATOR, **query: str) -> tuple[int, Any]:
    loaded = event("ops-get.json")
    path = f"/v1/ops/applications/sample-erp/{code}/raw"
    context = {**loaded["requestContext"], "http": {**loaded["requestContext"]["http"], "path": path}}
    status, body, _ = ops.call(
        "ops-get.json", token, rawPath=path, requestContext=context, queryStringParameters=query or None,
        pathParameters={"businessSystem": "sample-erp", "openApplyCode": code},
        routeKey="GET /v1/ops/applications/{businessSystem}/{openApplyCode}/raw",
    )  # fmt: skip
    return status, body


def test_the_open_findings_filter_lists_only_applications_with_an_open_finding(ops: Ops) -> None:
    held, acknowledged, clean = (_submit(ops.hub, f"console-{name}") for name in ("held", "acked", "clean"))
    store = runtime.application_store()
    store.add_finding(store.get("sample-erp", held).key, _finding(1), note="found")
    store.add_finding(store.get("sample-erp", acknowledged).key, _finding(2, open_=False), note="found, closed")

    status, body, _ = ops.listing(openFindings="true")
    assert status == 200, body
    assert [(r["openApplyCode"], r["openFindings"]) for r in body["data"]["items"]] == [(held, 1)]
    everything = {r["openApplyCode"] for r in ops.listing(openFindings="false")[1]["data"]["items"]}
    assert everything == {held, acknowledged, clean}
    # Scoping still applies with the filter.
    assert ops.listing(OTHER_SYSTEMS, openFindings="true")[1]["data"]["items"] == []

    before = ops.hub.snapshot()
    status, body, _ = ops.listing(openFindings="yes")
    assert (status, body["message"]) == (400, "openFindings: expected true or false, not 'yes'")
    assert ops.hub.snapshot() == before


def test_an_archived_raw_answer_is_read_by_a_key_the_application_owns(ops: Ops) -> None:
    code, other = _submit(ops.hub, "console-raw-1"), _submit(ops.hub, "console-raw-2")
    files = runtime.file_store()
    store = runtime.application_store()
    answer = '{"ok": true, "body": {"invoiceNumber": "24110000000000012345"}, "购方": "测试"}'.encode()
    key = files.put_raw_answer("xunlian", "REQ1", "1795262400", answer)
    foreign = files.put_raw_answer("xunlian", "REQ2", "1795262401", b"another application's answer")
    for application, ref in ((code, key), (other, foreign)):
        ops.hub.table.update_item(
            Key={"pk": store.get("sample-erp", application).key},
            UpdateExpression="SET raw_answer = :r", ExpressionAttributeValues={":r": ref},
        )  # fmt: skip

    status, body, _ = ops.at("ops-get.json", "sample-erp", code)
    assert status == 200 and body["data"]["rawKeys"] == [key]
    status, body = _raw(ops, code, key=key)
    assert status == 200, body
    assert body["data"] == {
        "key": key, "size": len(answer), "sha256": hashlib.sha256(answer).hexdigest(),
        "text": answer.decode(), "base64": None,
    }  # fmt: skip

    before = ops.hub.snapshot()
    status, body = _raw(ops, code, key=foreign)
    assert (status, body["message"]) == (404, "key: not one of this application's rawKeys")
    status, body = _raw(ops, code)
    assert (status, body["message"]) == (400, "key: required, one of the application's rawKeys")
    assert _raw(ops, code, None, key=key)[0] == 401
    # Outside the operator's reach: answered as an application that does not exist (the same 404 and words).
    missing = _raw(ops, "no-such-code", key=key)
    assert missing[0] == 404
    for other in (OTHER_SELLER, OTHER_SYSTEMS):
        status, body = _raw(ops, code, other, key=key)
        assert (status, body["message"]) == (404, f"no application {code!r} of 'sample-erp'")
    assert ops.hub.snapshot() == before


def test_a_raw_answer_that_is_not_text_comes_as_base64(ops: Ops) -> None:
    code = _submit(ops.hub, "console-raw-3")
    store = runtime.application_store()
    blob = b"\xff\xfe\x00GBK?\xb2\xe2"
    key = runtime.file_store().put_raw_answer("kingdee", "REQ3", "1795262402", blob)
    ops.hub.table.update_item(
        Key={"pk": store.get("sample-erp", code).key},
        UpdateExpression="SET raw_answer = :r", ExpressionAttributeValues={":r": key},
    )  # fmt: skip
    status, body = _raw(ops, code, key=key)
    assert status == 200, body
    assert body["data"]["text"] is None and base64.b64decode(body["data"]["base64"]) == blob


def test_the_answer_of_every_attempt_is_listed_oldest_first(ops: Ops) -> None:
    code = _submit(ops.hub, "console-raw-4")
    store = runtime.application_store()
    stored = store.get("sample-erp", code)
    files = runtime.file_store()
    number = stored.request_number
    first = files.put_raw_answer("kingdee", number, "999999999", b'{"attempt": 1}')
    second = files.put_raw_answer("kingdee", number, "1000000000", b'{"attempt": 2}')
    files.put_raw_answer("kingdee", number + "X", "1000000001", b"another request number's")
    ops.hub.table.update_item(
        Key={"pk": stored.key},
        UpdateExpression="SET raw_answer = :r, channel = :c", ExpressionAttributeValues={":r": second, ":c": "kingdee"},
    )  # fmt: skip
    status, body, _ = ops.at("ops-get.json", "sample-erp", code)
    assert status == 200 and body["data"]["rawKeys"] == [first, second]
    status, body = _raw(ops, code, key=first)
    assert (status, body["data"]["text"]) == (200, '{"attempt": 1}')
