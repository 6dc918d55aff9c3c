"""Every log line about an application names that application, and no other.

An end-to-end run of every channel (the four orders of docs/examples, each to its sandbox) and an
order the intake refuses, through the local run; then every line every function logged is read
(the local run's one line format, local.runtime.LocalFormatter: ``... <function> code=<code>
request=<request number> <message> key=value ...``).
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration.test_local_run import call

if TYPE_CHECKING:
    from tests.integration.conftest import LocalRun

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) +(?P<function>\S+)"
    r"(?: code=(?P<code>\S+))?(?: request=(?P<request>\S+))? (?P<rest>.*)$"
)
REFUSED = "refused-order-0001"
# Functions whose every line is about one application (a record, an accepted order).
ALWAYS_ONE = ("DispatchFunction", "NotifierFunction")


def test_every_line_about_an_application_names_it_and_no_line_names_another(local_run: LocalRun) -> None:
    channels = local_run.info["channels"]
    codes = {}
    for name in ("xunlian", "partner", "kingdee", "ekuaibao"):
        order = json.loads((EXAMPLES / f"order-{name}.json").read_text(encoding="utf-8"))
        assert order["invoiceOrder"]["bukrs"] == channels[name]["company_code"]
        codes[name] = order["invoiceOrder"]["openApplyCode"]
        assert call(local_run, "POST", "/v1/invoice-orders", order, token=local_run.token)[0] == 200
    refused = json.loads((EXAMPLES / "order-xunlian.json").read_text(encoding="utf-8"))
    refused["invoiceOrder"].update(openApplyCode=REFUSED, bukrs="NOPE")
    assert call(local_run, "POST", "/v1/invoice-orders", refused, token=local_run.token)[0] == 400

    # Done when every application is ISSUED and its outcome was notified (the notifier logged it).
    deadline = time.monotonic() + 45
    pending = set(codes.values())
    while pending and time.monotonic() < deadline:
        for code in list(pending):
            _, body = call(local_run, "GET", f"/v1/invoice-orders/{code}", token=local_run.token)
            notified = re.search(rf"NotifierFunction code={re.escape(code)} .* notified ", local_run.log())
            if body["data"]["status"] == "ISSUED" and notified:
                pending.discard(code)
        time.sleep(0.5)
    assert not pending, (pending, local_run.log()[-4000:])
    assert local_run.stop(signal.SIGINT) == 0, local_run.log()

    lines = [m for m in map(LINE.match, local_run.log().splitlines()) if m and m["function"] != "local"]
    assert len(lines) > 30, local_run.log()
    requests_of: dict[str, set[str]] = {}
    for line in lines:
        text = line.group(0)
        code = line["code"]
        mentioned = {c for c in codes.values() if c in line["rest"]}
        if code is not None:
            assert code in codes.values(), text  # never the refused order's, never a stranger's
            assert line["request"], text
            requests_of.setdefault(code, set()).add(line["request"])
            assert mentioned <= {code}, text  # a line about one application speaks of no other
        else:
            assert not mentioned, text  # a line that speaks of an application names it
            assert not line["function"].endswith(ALWAYS_ONE), text
        assert REFUSED not in text or "code=" not in text, text
    # One request number per application, and no line carries another's.
    assert {code: len(numbers) for code, numbers in requests_of.items()} == dict.fromkeys(codes.values(), 1)
    numbers = {code: next(iter(n)) for code, n in requests_of.items()}
    for line in lines:
        others = {c for c, n in numbers.items() if n in line.group(0) and c != line["code"]}
        assert not others, line.group(0)
    # Each application was named by every function that worked on it.
    named = {(line["function"].rsplit("-", 1)[-1], line["code"]) for line in lines if line["code"]}
    for name, code in codes.items():
        functions = {"IntakeFunction", "DispatchFunction", "NotifierFunction"}
        if name == "ekuaibao":
            functions.add("CallbackFunction")  # its result is pushed
        assert {(f, code) for f in functions} <= named, (name, sorted(named))
    # The refused order: its line names no application, and no other's either.
    refusals = [line for line in lines if "invoice order refused" in line["rest"]]
    assert len(refusals) == 1 and refusals[0]["code"] is None, [r.group(0) for r in refusals]
