"""Throughput of the local run: BENCH_ORDERS orders (default 2,000) by 8 concurrent clients.

The whole hub in this process (local.run.start: moto server, every function, the channel
sandboxes, the HTTP API, the pumps). The poller fires every ``BENCH_SCHEDULE_SECONDS`` (default 60,
template.yaml's rate(1 minute), not the local run's 5 s: each run re-sends every due application,
so a faster schedule multiplies the dispatch requests of a backlog beyond what AWS would see). Eight
client threads POST orders over HTTP, spread round-robin over the four sample companies (VB5
Xunlian synchronous, W92 partner polled, KD1 Kingdee polled, EK1 Ekuaibao callback), each
docs/examples/order-<channel>.json under its own openApplyCode.

Measured: orders per second from the first submit to the last application reaching a final state
(the ISSUED entry of its history), time from submit to ISSUED (p50/p95, overall and by channel),
intake answer times, the AWS requests the functions made per issued invoice under load (the
poller's query and batched sends are shared by every application due in the same run), and the
dispatch requests sent per application (intake's, the poller's re-sends, the callbacks').

Bounded for `make bench`: the clients stop submitting after BENCH_THROUGHPUT_SUBMIT_SECONDS (360)
and the run waits at most BENCH_THROUGHPUT_DRAIN_SECONDS (240) for the outcomes; the figures say
how many orders went in and how many reached a final state.

What bounds it here: the local run runs one invocation per function at a time (one "container"
each; Lambda would run up to 20 dispatchers, and as many intakes as requests), every DynamoDB
request is serialized (local.atomic_moto), and everything shares this machine's cores and one
interpreter lock; the polled channels wait for their first poll interval (10 s) and the next
scheduled poller run. It is a floor for the code on this machine, not a forecast for AWS.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.hooks import tally
from bench.localrun import FINAL, example_order, instrumented_hub

CHANNELS = ("xunlian", "partner", "kingdee", "ekuaibao")
CLIENTS = 8


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def measure(orders: int | None = None, clients: int = CLIENTS, timeout: float | None = None) -> dict[str, Any]:
    orders = orders or int(os.environ.get("BENCH_ORDERS", "2000"))
    # Bounds, so that `make bench` ends on a slow or busy machine: the clients stop submitting after
    # this long (the figures say how many went in), and the run waits this long for the last outcomes.
    submit_budget = float(os.environ.get("BENCH_THROUGHPUT_SUBMIT_SECONDS", "360"))
    timeout = timeout or float(os.environ.get("BENCH_THROUGHPUT_DRAIN_SECONDS", "240"))
    import requests

    schedule = float(os.environ.get("BENCH_SCHEDULE_SECONDS", "60"))
    state = tempfile.TemporaryDirectory(prefix="fapiao-throughput-")
    with state as tmp, instrumented_hub(Path(tmp) / "state", schedule_seconds=schedule) as ih:
        run_id = time.strftime("%H%M%S")
        companies = {name: ih.channel_company(name) for name in CHANNELS}
        plan = [
            (f"tp-{run_id}-{i:05d}", CHANNELS[i % len(CHANNELS)]) for i in range(orders)
        ]  # fmt: skip
        submitted: dict[str, float] = {}
        answers: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()
        next_index = iter(range(orders))
        calls_mark, invocations_mark = ih.counter.mark(), ih.timings.mark()

        def client() -> None:
            with requests.Session() as http:
                while True:
                    with lock:
                        i = next(next_index, None) if time.time() - first_submit < submit_budget else None
                    if i is None:
                        return
                    code, channel = plan[i]
                    order = example_order(channel, code, companies[channel])
                    started = time.time()
                    try:
                        status, body = ih.submit(order, session=http)
                    except Exception as error:  # recorded, not fatal: the figure says how many failed
                        status, body = 0, {"message": f"{type(error).__name__}: {error}"}
                    elapsed = time.time() - started
                    with lock:
                        submitted[code] = started
                        answers.append(elapsed)
                        if status != 200:
                            failures.append(f"{code}: {status} {str(body)[:200]}")

        first_submit = time.time()
        threads = [threading.Thread(target=client, name=f"client-{n}") for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        last_submit = time.time()

        # Wait for every accepted order to be told to its business system (cheap: the receiver's
        # memory, no DynamoDB scans competing with the hub), then read the histories once.
        accepted = {code for code in submitted} - {f.split(":")[0] for f in failures}
        deadline = time.monotonic() + timeout
        notified: set[str] = set()
        while time.monotonic() < deadline and not accepted <= notified:
            for notification in ih.notifications()[len(notified) :]:
                body = notification.get("body") or {}
                application = body.get("application") if isinstance(body, dict) else None
                if isinstance(application, dict):
                    notified.add(str(application.get("openApplyCode")))
            time.sleep(1)
        timed_out = not accepted <= notified
        ih.wait_quiet(seconds=2, timeout=60)
        calls = ih.counter.since(calls_mark)
        invocations = ih.timings.since(invocations_mark)

        statuses: dict[str, int] = {}
        to_issued: dict[str, list[float]] = {name: [] for name in CHANNELS}
        last_final = first_submit
        final_count = 0
        for page in ih.dynamodb.get_paginator("scan").paginate(
            TableName=ih.applications_table,
            ProjectionExpression="pk, open_apply_code, #s, history",
            ExpressionAttributeNames={"#s": "status"},
        ):
            for item in page["Items"]:
                code = item.get("open_apply_code", {}).get("S")
                if code not in submitted:
                    continue
                status = item["status"]["S"]
                statuses[status] = statuses.get(status, 0) + 1
                history = [h["M"] for h in item.get("history", {}).get("L", [])]
                finals = [h for h in history if h["status"]["S"] in FINAL and h.get("kind", {}).get("S") != "note"]
                if finals:
                    final_count += 1
                    at = _epoch(finals[0]["at"]["S"])
                    last_final = max(last_final, at)
                    if finals[0]["status"]["S"] == "ISSUED":
                        channel = plan[int(code.rsplit("-", 1)[1])][1]
                        to_issued[channel].append(at - submitted[code])
        everything = [t for values in to_issued.values() for t in values]
        issued = statuses.get("ISSUED", 0)
        per_function: dict[str, dict[str, float]] = {}
        for invocation in invocations:
            entry = per_function.setdefault(invocation.function, {"invocations": 0, "wall_s": 0.0})
            entry["invocations"] += 1
            entry["wall_s"] += invocation.wall_s
        dispatch_requests = sum(c.entries for c in calls if c.label.startswith("dispatch request"))
        poller_requests = sum(
            c.entries for c in calls if "PollerFunction" in c.function and c.label.startswith("dispatch request")
        )
        return {
            "schedule_seconds": schedule,
            "dispatch_requests_sent": dispatch_requests,
            "dispatch_requests_by_poller": poller_requests,
            "orders": orders,
            "clients": clients,
            "channels": list(CHANNELS),
            "submitted": len(submitted),
            "submit_budget_seconds": submit_budget,
            "stopped_by_budget": len(submitted) < orders,
            "refused": len(failures),
            "refusals": failures[:5],
            "refused_events": [r for r in ih.timings.refused if r["function"] == "IntakeFunction"][:5],
            "timed_out": timed_out,
            "statuses": statuses,
            "submit_seconds": last_submit - first_submit,
            "elapsed_seconds": last_final - first_submit,
            "final": final_count,
            "orders_per_second": final_count / max(last_final - first_submit, 1e-9),
            "submit_rate": len(submitted) / max(last_submit - first_submit, 1e-9),
            "intake_answer_p50_ms": _pct(answers, 50) * 1000,
            "intake_answer_p95_ms": _pct(answers, 95) * 1000,
            "to_issued_p50_s": _pct(everything, 50),
            "to_issued_p95_s": _pct(everything, 95),
            "to_issued_by_channel": {
                name: {"n": len(v), "p50_s": _pct(v, 50), "p95_s": _pct(v, 95)} for name, v in to_issued.items()
            },
            "requests_total": len(calls),
            "requests_per_issued": len(calls) / issued if issued else None,
            "requests_by_operation_per_issued": {k: v / issued for k, v in tally(calls).items()} if issued else {},
            "invocations": per_function,
        }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--orders", type=int, default=None)
    args = parser.parse_args(argv)
    result = measure(args.orders)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
