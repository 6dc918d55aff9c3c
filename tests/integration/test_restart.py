"""A restart of the local run keeps what it had: the application, its invoice, its file and the token.

``make run`` stopped with Ctrl-C and started again (the same state directory) finds everything
restored; started with the "start empty" switch (``FAPIAO_HUB_FRESH=1``, ``make run FRESH=1``) it
finds nothing, and the old token no longer opens it (a fresh start mints a new one).
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.integration.test_local_run import call

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.integration.conftest import LocalRun

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def _issued_with_a_file(run: LocalRun, code: str, token: str) -> dict[str, Any]:
    deadline = time.monotonic() + 40
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, body = call(run, "GET", f"/v1/invoice-orders/{code}", token=token)
        assert status == 200, body
        data = body["data"]
        if data["status"] == "ISSUED" and _pdf(data):
            return data
        time.sleep(0.3)
    pytest.fail(f"not ISSUED with a file: {data}\n{run.log()[-3000:]}")


def _pdf(data: dict[str, Any]) -> dict[str, Any] | None:
    files = [
        f for i in data.get("invoices", []) for f in i.get("files", []) if f.get("format") == "pdf" and f.get("url")
    ]
    return files[0] if files else None


def _sha256(url: str) -> str:
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 200 and answer.content.startswith(b"%PDF")
    return hashlib.sha256(answer.content).hexdigest()


def test_a_restart_keeps_the_order_its_invoice_its_file_and_the_token_and_fresh_starts_empty(
    local_run_factory: Callable[..., LocalRun],
) -> None:
    first = local_run_factory()
    order = json.loads((EXAMPLES / "order-ekuaibao.json").read_text(encoding="utf-8"))
    assert order["invoiceOrder"]["bukrs"] == first.info["channels"]["ekuaibao"]["company_code"]
    code = order["invoiceOrder"]["openApplyCode"]
    assert call(first, "POST", "/v1/invoice-orders", order, token=first.token)[0] == 200
    before = _issued_with_a_file(first, code, first.token)
    digest = _sha256(_pdf(before)["url"])
    assert first.stop(signal.SIGINT) == 0, first.log()
    assert "saved 1 applications, 1 invoices" in first.log(), first.log()[-2000:]

    second = local_run_factory(state_dir=first.state_dir)
    assert second.token == first.token  # the same token, not a new one each start
    restored = [line for line in second.log().splitlines() if " restored " in line]
    assert len(restored) == 1 and "restored 1 applications, 1 invoices, " in restored[0], second.log()
    assert str(first.state_dir / "saved") in restored[0]
    status, body = call(second, "GET", f"/v1/invoice-orders/{code}", token=first.token)
    assert status == 200, body
    after = body["data"]
    assert after["status"] == "ISSUED"
    assert [i["invoiceNumber"] for i in after["invoices"]] == [i["invoiceNumber"] for i in before["invoices"]]
    assert after["history"] == before["history"]
    pdf = _pdf(after)
    assert pdf is not None and pdf["url"] != _pdf(before)["url"]  # moto's new endpoint, the same bytes
    assert _sha256(pdf["url"]) == digest
    # Restored, it goes on working: another order is taken with the old token.
    again = json.loads(json.dumps(order))
    again["invoiceOrder"]["openApplyCode"] = f"{code}-after-restart"
    assert call(second, "POST", "/v1/invoice-orders", again, token=first.token)[0] == 200
    assert second.stop(signal.SIGINT) == 0, second.log()

    fresh = local_run_factory(state_dir=first.state_dir, FAPIAO_HUB_FRESH="1")
    assert fresh.token != first.token
    assert call(fresh, "GET", f"/v1/invoice-orders/{code}", token=first.token)[0] == 401
    status, body = call(fresh, "GET", f"/v1/invoice-orders/{code}", token=fresh.token)
    assert status == 404, body
    assert " restored " not in fresh.log()
    assert fresh.stop(signal.SIGINT) == 0, fresh.log()
