"""AWS requests per issued invoice: full flows through the local run, one application at a time.

Flows (each a fresh openApplyCode, run alone, so every counted call belongs to it):

- ``xunlian``:  blue, synchronous channel (VB5): intake -> dispatch (issue answers with the invoice)
- ``ekuaibao``: blue, callback channel (EK1): intake -> dispatch (Accepted) -> the sandbox pushes
                the result to POST /v1/callbacks/ekuaibao -> dispatch fetches the PDF by URL
- ``kingdee``:  blue, polled channel (KD1): intake -> dispatch (BILL.PUSH) -> poller -> dispatch
                (BILL.INVOICE.QUERY finds it issued, PDF by URL)
- ``partner``:  blue, polled channel (W92): as Kingdee, but the sandbox learns of an application
                from the first query and issues it 2 s later, so it takes two polls
- ``red``:      red reversal (VB5, Xunlian) of a blue invoice issued just before (not counted)

Every flow ends when the application is final, its files are stored, its outcome event is
published and the sample business system's webhook has the notification; then the run must be
quiet for 1.5 s (no counted call, no invocation) so trailing writes are in.

The scheduled poller is not left to fire by itself (it would add empty runs that belong to no
flow): the flow starts it when its application is due, as the minute schedule would.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.hooks import Call, by_function, tally
from bench.localrun import FINAL, InstrumentedHub, Invocation, example_order, instrumented_hub

FLOWS = ("xunlian", "ekuaibao", "kingdee", "partner", "red")
CHANNEL_OF = {name: name for name in FLOWS} | {"red": "xunlian"}
FLOW_TITLES = {
    "xunlian": "blue, Xunlian (synchronous)",
    "ekuaibao": "blue, Ekuaibao (callback)",
    "kingdee": "blue, Kingdee (polled)",
    "partner": "blue, partner (polled, 2 polls)",
    "red": "red reversal, Xunlian",
}
WAITING = {"SUBMITTED", "UNKNOWN", "RETRY_WAIT", "VOIDING"}


@dataclass
class FlowResult:
    flow: str
    code: str
    status: str
    seconds: float
    polls: int
    files: int
    invoices: int
    calls: list[Call]
    invocations: list[Invocation]
    application_item_bytes: int = 0
    invoice_item_bytes: int = 0
    file_bytes: list[int] = field(default_factory=list)
    log_bytes: dict[str, int] = field(default_factory=dict)
    document_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "title": FLOW_TITLES[self.flow],
            "code": self.code,
            "status": self.status,
            "seconds": round(self.seconds, 2),
            "polls": self.polls,
            "files": self.files,
            "invoices": self.invoices,
            "total": len(self.calls),
            "by_operation": tally(self.calls),
            "by_function": by_function(self.calls),
            "calls": [asdict(c) for c in self.calls],
            "invocations": [asdict(i) for i in self.invocations],
            "application_item_bytes": self.application_item_bytes,
            "invoice_item_bytes": self.invoice_item_bytes,
            "file_bytes": self.file_bytes,
            "log_bytes": self.log_bytes,
            "document_bytes": self.document_bytes,
        }


def _follow(ih: InstrumentedHub, code: str, timeout: float) -> tuple[str, int]:
    """Wait until ``code`` is final, settled and notified; start the poller whenever it is due."""
    deadline = time.monotonic() + timeout
    polls = 0
    polled_at: int | None = None
    status = "?"
    while time.monotonic() < deadline:
        item = ih.application(code) or {}
        status = item.get("status", {}).get("S", "?")
        settled = "files_pending" not in item and "pending_event" not in item
        if status in FINAL and settled and ih.notified(code):
            break
        due = int(item.get("next_poll_at", {}).get("N", "0"))
        if status in WAITING and due and due <= time.time() and due != polled_at:
            ih.run_poller()
            polls += 1
            polled_at = due
        time.sleep(0.1)
    ih.wait_quiet()
    return status, polls


def _settle(ih: InstrumentedHub, code: str) -> tuple[int, int, int, list[int], int]:
    """Item sizes at the end of the flow: application, its invoices, its stored files, its document."""
    from bench.hooks import item_size

    item = ih.application(code) or {}
    invoices = ih.invoice_items(item)
    file_sizes = [
        int(f["M"]["size"]["N"])
        for invoice in invoices
        for f in invoice.get("files", {}).get("L", [])
        if "size" in f.get("M", {})
    ]
    invoice_bytes = max((item_size(i) for i in invoices), default=0)
    document = item_size({"document": item["document"]}) if "document" in item else 0
    return item_size(item), invoice_bytes, len(invoices), file_sizes, document


def run_flow(ih: InstrumentedHub, flow: str, run_id: str, timeout: float = 120) -> FlowResult:
    channel = CHANNEL_OF[flow]
    company = ih.channel_company(channel)
    code = f"bench-{flow}-{run_id}"
    if flow == "red":
        order = _red_order(ih, company, f"bench-blue-for-red-{run_id}", code, timeout)
    else:
        order = example_order(channel, code, company)
    ih.wait_quiet()
    calls_mark, invocations_mark, logs_mark = ih.counter.mark(), ih.timings.mark(), ih.logs.mark()
    started = time.monotonic()
    status_code, answer = ih.submit(order)
    if status_code != 200:
        raise RuntimeError(f"{flow}: intake answered {status_code}: {answer}")
    status, polls = _follow(ih, code, timeout)
    seconds = time.monotonic() - started
    calls = [_logical(ih, c) for c in ih.counter.since(calls_mark)]
    invocations = ih.timings.since(invocations_mark)
    log_bytes: dict[str, int] = {}
    for function, size in ih.logs.since(logs_mark):
        name = ih.names.get(function, function or "(outside a function)")
        log_bytes[name] = log_bytes.get(name, 0) + size
    app_bytes, invoice_bytes, invoices, file_sizes, document_bytes = _settle(ih, code)
    return FlowResult(
        flow, code, status, seconds, polls, len(file_sizes), invoices, calls, invocations,
        app_bytes, invoice_bytes, file_sizes, log_bytes, document_bytes,
    )  # fmt: skip


def _logical(ih: InstrumentedHub, call: Call) -> Call:
    from dataclasses import replace

    return replace(call, function=ih.names.get(call.function, call.function))


def _red_order(ih: InstrumentedHub, company: str, blue_code: str, red_code: str, timeout: float) -> dict[str, Any]:
    """Issue a blue invoice through Xunlian first (not counted), then a red order reversing part of it."""
    from fapiao_hub_client import demo

    blue = example_order("xunlian", blue_code, company)
    status_code, answer = ih.submit(blue)
    if status_code != 200:
        raise RuntimeError(f"blue for red: intake answered {status_code}: {answer}")
    status, _ = _follow(ih, blue_code, timeout)
    if status != "ISSUED":
        raise RuntimeError(f"blue for red ended {status}")
    [invoice] = ih.invoice_items(ih.application(blue_code) or {})
    shown = {
        "invoiceNumber": invoice["number"]["S"],
        "invoiceCode": invoice.get("code", {}).get("S"),
        "invoiceDate": invoice.get("issued_on", {}).get("S"),
    }
    return demo.red_order(blue, shown, red_code)


def run_flows(state_dir: Path, flows: tuple[str, ...] = FLOWS, run_id: str | None = None) -> dict[str, Any]:
    run_id = run_id or time.strftime("%H%M%S")
    results = {}
    with instrumented_hub(state_dir, schedule_seconds=10**6) as ih:
        for flow in flows:
            results[flow] = run_flow(ih, flow, run_id).as_dict()
    return {"flows": results}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--flows", default=",".join(FLOWS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fapiao-bench-") as tmp:
        result = run_flows(Path(tmp) / "state", tuple(f for f in args.flows.split(",") if f))
    args.out.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
