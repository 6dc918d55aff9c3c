"""``fapiao-hub demo`` against the real local run: every sample ends in its expected state."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.integration.conftest import LocalRun

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT = 100  # seconds the demo may follow applications (polled channels take up to ~30 s)


def fapiao_hub_command() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "fapiao-hub"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "fapiao_hub_client.cli"]


def final_table(stdout: str) -> list[dict[str, str]]:
    lines = stdout.splitlines()
    [start] = [i for i, line in enumerate(lines) if line.startswith("sample") and " expected " in line]
    headers = re.split(r"\s{2,}", lines[start].strip())
    table = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        table.append(dict(zip(headers, re.split(r"\s{2,}", line.strip()), strict=False)))
    return table


def test_demo_takes_every_sample_to_its_expected_state(local_run_factory: Callable[..., LocalRun]) -> None:
    run = local_run_factory()
    environment = {
        **{k: v for k, v in os.environ.items() if k not in ("FAPIAO_HUB_API_URL", "FAPIAO_HUB_TOKEN")},
        "FAPIAO_HUB_STATE_DIR": str(run.state_dir),
    }
    started = time.monotonic()
    demo = subprocess.run(  # noqa: S603 (our own command, fixed arguments)
        [*fapiao_hub_command(), "demo", "--interval", "0.5", "--timeout", str(DEMO_TIMEOUT)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT + 60,
        check=False,
    )
    elapsed = time.monotonic() - started
    report = f"exit {demo.returncode} after {elapsed:.0f} s\n{demo.stdout}\n{demo.stderr}\n{run.log()[-3000:]}"
    assert demo.returncode == 0, report
    assert run.token not in demo.stdout + demo.stderr
    assert "Traceback" not in demo.stderr

    table = final_table(demo.stdout)
    by_name = {row["sample"]: row for row in table}
    for row in table:
        assert row["actual"] == row["expected"] and row["ok"] == "yes", report
    channels = run.info["channels"]
    blues = [name for name in by_name if name.startswith("blue ")]
    assert sorted(name.split()[1] for name in blues) == sorted(channels), report
    assert all(by_name[name]["expected"] == "ISSUED" for name in blues)
    assert any("discount pairs" in name for name in blues)
    [red] = [row for name, row in by_name.items() if name.startswith("red reversal")]
    assert red["actual"] == "ISSUED"
    # Seed 004's own 数电 example for VB5: not Xunlian's, VB5's second (数电-capable) channel issues it.
    assert by_name["数电 0112 for VB5 (not xunlian: its 数电 channel)"]["actual"] == "ISSUED"
    [void] = [row for name, row in by_name.items() if name.startswith("void of the")]
    assert void["actual"] == "VOIDED", report
    voided_blue = void["note"].removeprefix("voids ")
    assert by_name["unknown company code"]["actual"] == "refused (400)"
    assert f"all {len(table)} samples ended as expected" in demo.stdout
    # The red order went in after its blue invoice was issued, against that invoice.
    assert re.search(r"submitting demo-red-\S+: red -\d+\.\d\d against invoice \d+/\d+", demo.stdout), report
    # The business system's receiver holds exactly one notification per outcome, signed.
    import requests

    deadline = time.monotonic() + 30
    finals = {row["openApplyCode"]: row["actual"] for row in table if row["actual"] in ("ISSUED", "REJECTED")}
    receiver = run.info["webhooks"]["sample-erp"]["notifications"]
    while True:
        notes = requests.get(receiver, timeout=5).json()
        got = {n["body"]["application"]["openApplyCode"]: n for n in notes if n["answered"] == 200}
        if set(finals) <= set(got) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    kinds = {"ISSUED": "InvoiceIssued", "REJECTED": "ApplicationRejected"}
    voided = [n for n in notes if n["body"]["application"]["openApplyCode"] == voided_blue]
    assert {n["body"]["type"] for n in voided if n["answered"] == 200} == {"InvoiceIssued", "InvoiceVoided"}, voided
    for code, state in finals.items():
        if code == voided_blue:
            continue
        mine = [n for n in notes if n["body"]["application"]["openApplyCode"] == code]
        assert len({n["event_id"] for n in mine}) == 1, (code, mine)  # one outcome, one notification
        assert len([n for n in mine if n["answered"] == 200]) == 1, (code, mine)
        assert mine[0]["body"]["type"] == kinds[state] and mine[0]["signature_ok"] is True, (code, mine)
    assert run.stop(signal.SIGINT) == 0, run.log()
