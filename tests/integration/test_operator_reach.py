"""Over the local run (real HTTP, moto server): an operator of another business system sees nothing of
sample-erp's applications; what it gets is what any operator gets for an application that does not exist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fapiao_hub.domain.config import token_sha256
from tests.integration.test_local_run import call, seed004_order

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.integration.conftest import LocalRun

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OTHER_DESK = "operator-token-of-other-erp-only"


def test_an_operator_of_another_business_system_gets_the_answers_for_nothing(
    local_run_factory: Callable[..., LocalRun], tmp_path: Path
) -> None:
    config = json.loads((ROOT / "local" / "hub-config.json").read_text(encoding="utf-8"))
    config["operators"] = {
        "other-desk": {
            "token_sha256": [token_sha256(OTHER_DESK)],
            "role": "operator",
            "business_systems": ["other-erp"],
        }
    }
    config_file = tmp_path / "hub-config.json"
    config_file.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    run = local_run_factory(FAPIAO_HUB_LOCAL_CONFIG=str(config_file))
    desk = json.loads((run.state_dir / "local.json").read_text(encoding="utf-8"))["operator_token"]

    order = seed004_order()
    code = order["invoiceOrder"]["openApplyCode"]
    status, body = call(run, "POST", "/v1/invoice-orders", order, token=run.token)
    assert status == 200, (body, run.log())

    def absent(missing_code: str) -> tuple[int, dict]:
        return 404, {"success": False, "code": 404, "message": f"no application {missing_code!r} of 'sample-erp'",
                     "data": None}  # fmt: skip

    # What the hub's own operator gets for an application that does not exist ...
    assert call(run, "GET", "/v1/ops/applications/sample-erp/no-such-code", token=desk) == absent("no-such-code")
    # ... is what the other business system's operator gets for one that does.
    assert call(run, "GET", f"/v1/ops/applications/sample-erp/{code}", token=desk)[0] == 200
    assert call(run, "GET", f"/v1/ops/applications/sample-erp/{code}", token=OTHER_DESK) == absent(code)
    for action in (
        {"action": "attach-result", "reason": "ours", "resultId": "89429424"},
        {"action": "acknowledge-finding", "reason": "seen", "findingId": "result_mismatch-x"},
        {"action": "cancel", "reason": "withdrawn"},
    ):
        answer = call(run, "POST", f"/v1/ops/applications/sample-erp/{code}/actions", action, token=OTHER_DESK)
        assert answer == absent(code), action
        assert call(run, "POST", "/v1/ops/applications/sample-erp/no-such-code/actions", action, token=desk) == absent(
            "no-such-code"
        ), action

    status, body = call(run, "GET", "/v1/ops/applications", token=OTHER_DESK)
    assert (status, body["data"]) == (200, {"items": [], "nextCursor": None})
    status, body = call(run, "GET", "/v1/ops/applications?businessSystem=sample-erp", token=OTHER_DESK)
    assert (status, body["data"]) == (200, {"items": [], "nextCursor": None})
    assert [r["openApplyCode"] for r in call(run, "GET", "/v1/ops/applications", token=desk)[1]["data"]["items"]] == [
        code
    ]

    status, body = call(run, "GET", "/v1/ops/summary", token=OTHER_DESK)
    assert status == 200
    assert not any(body["data"]["statuses"].values()) and body["data"]["openFindings"] == 0
    assert sum(call(run, "GET", "/v1/ops/summary", token=desk)[1]["data"]["statuses"].values()) == 1
    # Nothing of it changed the application.
    status, body = call(run, "GET", f"/v1/invoice-orders/{code}", token=run.token)
    assert status == 200 and body["data"]["status"] != "CANCELLED"
