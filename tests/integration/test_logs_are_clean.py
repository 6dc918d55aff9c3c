"""No secret and no buyer e-mail or phone in any log line, across a full run of every channel."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration.test_local_run import call, seed004_order

if TYPE_CHECKING:
    from tests.integration.conftest import LocalRun

pytestmark = pytest.mark.integration

BUYER_EMAIL = "finance.buyer@example.com"
BUYER_MOBILE = "13912345678"
BUYER_PHONE = "0431-88886666"
# Log lines: every one timestamped (local.runtime.LocalFormatter). The readiness banner (URL,
# token: `make run` prints them on purpose) is not one.
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|\{)")


def _secrets(run: LocalRun) -> set[str]:
    config = json.loads((run.state_dir / "hub-config.json").read_text(encoding="utf-8"))
    found = {run.token}
    for system in config["business_systems"].values():
        webhook = system.get("webhook") or {}
        found |= {v for k, v in webhook.items() if k in ("secret", "access_token") and v}
    for channel in config.get("channels", {}).values():
        found |= {v for v in channel.get("credentials", {}).values() if v}
    return {s for s in found if len(s) >= 6}


def test_no_log_line_holds_a_secret_or_a_buyers_contact(local_run: LocalRun) -> None:
    channels = local_run.info["channels"]
    codes = []
    for name, channel in channels.items():
        order = seed004_order()
        code = f"clean-logs-{name}"
        order["invoiceOrder"].update(
            openApplyCode=code, bukrs=channel["company_code"], invoiceType="028",
            purchaserEmail=BUYER_EMAIL, purchaserCellphone=BUYER_MOBILE, purchaserPhone=BUYER_PHONE,
        )  # fmt: skip
        assert call(local_run, "POST", "/v1/invoice-orders", order, token=local_run.token)[0] == 200
        codes.append(code)
    # Refusals log too: a wrong token and a body with the contacts and an error.
    bad = seed004_order()
    bad["invoiceOrder"].update(purchaserEmail=BUYER_EMAIL, purchaserCellphone=BUYER_MOBILE, bukrs="NOPE")
    assert call(local_run, "POST", "/v1/invoice-orders", bad, token=local_run.token)[0] == 400
    assert call(local_run, "POST", "/v1/invoice-orders", bad, token="not-" + local_run.token)[0] == 401
    deadline = time.monotonic() + 90
    pending = set(codes)
    while pending and time.monotonic() < deadline:
        for code in list(pending):
            _, body = call(local_run, "GET", f"/v1/invoice-orders/{code}", token=local_run.token)
            if body["data"]["status"] in ("ISSUED", "REJECTED", "MANUAL_REVIEW"):
                pending.discard(code)
        time.sleep(0.5)
    assert not pending, pending
    time.sleep(2)  # let the notifier's deliveries log too (not a timing assertion)
    lines = [line for line in local_run.log().splitlines() if LOG_LINE.match(line)]
    assert len(lines) > 50  # the run logged plenty: the scan means something
    assert any(" code=" in line for line in lines)  # including the functions' lines about an application
    leaks = {
        secret[:4] + "...": [line[:160] for line in lines if secret in line]
        for secret in _secrets(local_run) | {BUYER_EMAIL, BUYER_MOBILE, BUYER_PHONE}
    }
    assert {k: v for k, v in leaks.items() if v} == {}
    assert local_run.stop(signal.SIGINT) == 0
    assert Path(local_run.state_dir).exists()
