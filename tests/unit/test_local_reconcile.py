"""``POST /ops/local-reconcile`` (local run only): the reconciliation now, for the local operator only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from local.run import LocalReconcile

OPERATOR = "operator-token-for-the-test-0123456789"


class FakeReconciliation:
    name = "reconciliation"

    def __init__(self) -> None:
        self.events: list[Any] = []

    def invoke(self, event: Any) -> dict[str, Any]:
        self.events.append(event)
        return {"day": "2026-12-08", "checked": 3, "new_findings": 1, "not_verifiable": 0, "report": ["r.json"]}


def route(tmp_path: Path) -> tuple[LocalReconcile, FakeReconciliation]:
    local_json = tmp_path / "local.json"
    local_json.write_text(json.dumps({"operator_token": OPERATOR, "token": "business-token"}), encoding="utf-8")
    function = FakeReconciliation()
    return LocalReconcile(local_json, function), function


def event(authorization: str | None, host: str = "127.0.0.1:3000") -> dict[str, Any]:
    headers = {"host": host}
    if authorization is not None:
        headers["authorization"] = authorization
    return {"headers": headers, "rawPath": LocalReconcile.PATH}


def test_the_local_operator_runs_the_reconciliation_and_gets_its_summary(tmp_path: Path) -> None:
    reconcile, function = route(tmp_path)
    answer = reconcile.invoke(event(f"Bearer {OPERATOR}"))
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["data"]["checked"] == 3
    assert function.events == [{}]  # the day's window, as the schedule runs it


def test_without_the_operator_token_or_from_another_host_nothing_runs(tmp_path: Path) -> None:
    reconcile, function = route(tmp_path)
    for refused, status in [
        (event(None), 401),
        (event("Bearer business-token"), 401),  # a business system's token is not an operator's
        (event(f"Bearer {OPERATOR}x"), 401),
        (event(f"Bearer {OPERATOR}", host="attacker.example:3000"), 403),  # DNS rebinding
    ]:
        answer = reconcile.invoke(refused)
        assert answer["statusCode"] == status, answer
        assert OPERATOR not in answer["body"]
    assert function.events == []
