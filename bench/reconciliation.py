"""Reconciliation cost vs table size: one run with 1,000 and with 100,000 stored applications, same window.

In this process, under moto's in-process mock, with the tables provisioned from template.yaml, like
bench/polling.py (whose filling and request counting it reuses). The applications table holds:

- ``IN_WINDOW`` (20) real applications (the local sample order, Xunlian) settled an hour ago, each
  with one recorded invoice, in the "settled" index for today; ``PERSON`` (5) of them also wait for
  a person (in the "attention" index);
- the rest: tiny items settled 40 days ago (in the "settled" index, under days outside the window).

Each measurement is ``BENCH_RECONCILE_RUNS`` (default 3) invocations of the reconciliation
function's handler (functions/reconciliation/app.py); every AWS request its clients make is
counted. Xunlian has no query, so no channel is asked: the figures are the hub's own reads and the
report's writes. Sizes: ``BENCH_RECONCILE_SIZES`` (default "1000,100000").
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.setup import HUB_CONFIG, REGION, ROOT, function_in_moto, schedule_event, write_items

IN_WINDOW = 20
PERSON = 5


def _application_document() -> bytes:
    from fapiao_hub.api import seed004
    from fapiao_hub.domain import rules
    from fapiao_hub.domain.config import HubConfig

    config = HubConfig.model_validate_json(HUB_CONFIG.read_text(encoding="utf-8"))
    body = json.loads((ROOT / "docs" / "examples" / "order-xunlian.json").read_text(encoding="utf-8"))
    result = seed004.to_application(
        body, source_system="sample-erp", system=config.business_systems["sample-erp"], config=config,
        policy=rules.RulePolicy.default(),
    )  # fmt: skip
    assert result.application is not None, result.errors
    return gzip.compress(result.application.model_dump_json().encode("utf-8"), mtime=0)


def _fill(client: Any, tables: dict[str, str], start: int, stop: int, now: datetime, document: bytes) -> None:
    from fapiao_hub.infra.store.base import iso
    from fapiao_hub.infra.store.settled import settled_partition

    recent, old = now - timedelta(hours=1), now - timedelta(days=40)
    china = timedelta(hours=8)
    applications: list[dict[str, Any]] = []
    invoices: list[dict[str, Any]] = []
    for i in range(start, stop):
        pk = f"sample-erp#R{i:07d}"
        item: dict[str, Any] = {
            "pk": {"S": pk}, "source_system": {"S": "sample-erp"}, "open_apply_code": {"S": f"R{i:07d}"},
            "status": {"S": "ISSUED"}, "channel": {"S": "xunlian"},
        }  # fmt: skip
        if i < IN_WINDOW:
            number = f"9{i:07d}"
            item |= {
                "settled_day": {"S": settled_partition(pk, (recent + china).date())},
                "settled_at": {"S": iso(recent)}, "updated_at": {"S": iso(recent)}, "version": {"N": "3"},
                "payload_sha256": {"S": "0" * 64}, "created_at": {"S": iso(recent)}, "document": {"B": document},
                "invoice_keys": {"L": [{"S": number}]},
            }  # fmt: skip
            if i < PERSON:
                item["attention"] = {"S": "PERSON"}
            invoices.append(
                {"pk": {"S": number}, "number": {"S": number}, "application_key": {"S": pk},
                 "status": {"S": "ISSUED"}, "amount": {"N": "5327.43"}, "tax": {"N": "692.57"}}
            )  # fmt: skip
        else:
            item |= {"settled_day": {"S": settled_partition(pk, (old + china).date())}, "settled_at": {"S": iso(old)}}
        applications.append(item)
    write_items(client, tables["ApplicationsTable"], applications)
    write_items(client, tables["InvoicesTable"], invoices)


def measure(sizes: list[int] | None = None, runs: int | None = None) -> dict[str, Any]:
    sizes = sizes or [int(s) for s in os.environ.get("BENCH_RECONCILE_SIZES", "1000,100000").split(",") if s.strip()]
    runs = runs or int(os.environ.get("BENCH_RECONCILE_RUNS", "3"))
    return _measure(sorted(sizes), runs)


def _measure(sizes: list[int], runs: int) -> dict[str, Any]:
    import boto3

    from bench.hooks import tally

    results: list[dict[str, Any]] = []
    with function_in_moto("ReconciliationFunction", "reconciliation") as fn:
        resources, counter, handler, context = fn.resources, fn.counter, fn.handler, fn.context
        client = boto3.client("dynamodb", region_name=REGION)
        document = _application_document()
        now = datetime.now(UTC)
        filled = 0
        handler(schedule_event(), context)  # builds the clients: not counted
        for size in sizes:
            started = time.perf_counter()
            _fill(client, resources.tables, filled, size, now, document)
            fill_s = time.perf_counter() - started
            filled = size
            times, per_run = [], []
            answer: dict[str, Any] = {}
            for _ in range(runs):
                mark = counter.mark()
                started = time.perf_counter()
                answer = handler(schedule_event(), context)
                times.append(time.perf_counter() - started)
                per_run.append(tally(counter.since(mark)))
            results.append(
                {
                    "size": size,
                    "fill_s": fill_s,
                    "checked": answer.get("checked"),
                    "not_verifiable": answer.get("not_verifiable"),
                    "requests": per_run[-1],
                    "dynamodb_requests": sum(n for k, n in per_run[-1].items() if k.startswith("dynamodb:")),
                    "requests_equal_every_run": all(r == per_run[0] for r in per_run),
                    "total_requests": sum(per_run[-1].values()),
                    "median_ms": statistics.median(times) * 1000,
                }
            )
    first, last = results[0], results[-1]
    ratio = last["dynamodb_requests"] / first["dynamodb_requests"] if first["dynamodb_requests"] else None
    return {"runs": runs, "in_window": IN_WINDOW, "needing_person": PERSON, "sizes": results, "ratio": ratio}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = measure()
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    for s in result["sizes"]:
        print(f"{s['size']:>9,} stored: {s['dynamodb_requests']} DynamoDB requests {s['requests']}")
    print(f"ratio (largest / smallest): {result['ratio']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
