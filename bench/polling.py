"""Polling cost vs table size: one poller run with 1,000 and with 100,000 stored applications.

In this process, under moto's in-process mock, with the tables and queues provisioned from
template.yaml. The applications table is filled with tiny items (key, source system, code,
status: the poller reads nothing else) by BatchWriteItem, 25 at a time:

- 50 applications due (SUBMITTED, in the sparse due-work index, next_poll_at in the past),
- 5% of the table open but due later (in the index, next_poll_at in the future),
- the rest final (ISSUED: not in the index at all).

The first size is filled and measured, then the table grows to the next size (only final and
later-due items are added: the same 50 are due) and is measured again. Each measurement is
``BENCH_POLL_RUNS`` (default 5) invocations of the poller function's handler
(functions/poller/app.py); every AWS request its clients make is counted (botocore hooks on the
runtime's session). Sizes: ``BENCH_POLL_SIZES`` (default "1000,100000").

Times are moto's, on this machine: moto answers a GSI query by scanning every item of the table,
so its time grows with the table where DynamoDB's does not (a Query reads only the index entries
it returns). The request count and the items read are the figures that carry over to AWS.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.setup import REGION, function_in_moto, schedule_event, write_items

DUE = 50


def _fill(client: Any, table: str, start: int, stop: int, now: int) -> None:
    write_items(client, table, (_item(i, now) for i in range(start, stop)))


def _item(i: int, now: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": f"bench#P{i:07d}"},
        "source_system": {"S": "bench"},
        "open_apply_code": {"S": f"P{i:07d}"},
    }
    if i < DUE:
        item |= {"status": {"S": "SUBMITTED"}, "due_bucket": {"S": "OPEN"}, "next_poll_at": {"N": str(now - 60)}}
    elif i % 20 == 0:  # 5%: open, due in an hour
        item |= {"status": {"S": "SUBMITTED"}, "due_bucket": {"S": "OPEN"}, "next_poll_at": {"N": str(now + 3600)}}
    else:
        item |= {"status": {"S": "ISSUED"}}
    return item


def measure(sizes: list[int] | None = None, runs: int | None = None) -> dict[str, Any]:
    sizes = sizes or [int(s) for s in os.environ.get("BENCH_POLL_SIZES", "1000,100000").split(",") if s.strip()]
    runs = runs or int(os.environ.get("BENCH_POLL_RUNS", "5"))
    return _measure(sorted(sizes), runs)


def _measure(sizes: list[int], runs: int) -> dict[str, Any]:
    import boto3

    from bench.hooks import item_size, tally

    results: list[dict[str, Any]] = []
    with function_in_moto("PollerFunction", "poller") as fn:
        resources, counter, handler, context = fn.resources, fn.counter, fn.handler, fn.context
        client = boto3.client("dynamodb", region_name=REGION)
        table = resources.tables["ApplicationsTable"]
        now = int(time.time())
        filled = 0
        handler(schedule_event(), context)  # builds the clients: not counted
        for size in sizes:
            started = time.perf_counter()
            _fill(client, table, filled, size, now)
            fill_s = time.perf_counter() - started
            filled = size
            times, per_run = [], []
            answer: dict[str, Any] = {}
            for _ in range(runs):
                # The poller claims what it queues (next_poll_at moved on): the same 50 are made due
                # again before each run, outside the count.
                _fill(client, table, 0, DUE, now)
                mark = counter.mark()
                started = time.perf_counter()
                answer = handler(schedule_event(), context)
                times.append(time.perf_counter() - started)
                per_run.append(tally(counter.since(mark)))
            # What the Query reads (the index entries it returns): for the read-unit estimate.
            _fill(client, table, 0, DUE, now)
            due_items = client.query(
                TableName=table,
                IndexName="due-work",
                KeyConditionExpression="due_bucket = :b AND next_poll_at <= :n",
                ExpressionAttributeValues={":b": {"S": "OPEN"}, ":n": {"N": str(int(time.time()))}},
            )["Items"]
            read_bytes = sum(item_size(i) for i in due_items)
            in_index = client.scan(
                TableName=table, IndexName="due-work", Select="COUNT"
            )["Count"]  # fmt: skip
            results.append(
                {
                    "size": size,
                    "fill_s": fill_s,
                    "in_index": in_index,
                    "due": answer.get("due"),
                    "queued": answer.get("queued"),
                    "requests": per_run[-1],
                    "requests_equal_every_run": all(r == per_run[0] for r in per_run),
                    "total_requests": sum(per_run[-1].values()),
                    "median_ms": statistics.median(times) * 1000,
                    "min_ms": min(times) * 1000,
                    "query_read_bytes": read_bytes,
                }
            )
    return {"runs": runs, "due": DUE, "sizes": results}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.write_text(json.dumps(measure(), indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
