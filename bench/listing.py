"""The operations desk's list: DynamoDB requests for one page with 1,000 and with 100,000 stored applications.

In this process, under moto's in-process mock, with the tables provisioned from template.yaml, like
bench/polling.py and bench/reconciliation.py (whose filling and request counting it reuses). The
applications table holds ``RECENT`` (300) applications of the sample business system, RECEIVED,
received in the last hours, and the rest: tiny items of another business system, ISSUED, received
a month before (they share the "list-all" index's partitions, no other's).

Each measurement is one page of 100 (``GET /v1/ops/applications?limit=100``) through the ops
function's handler (functions/ops/app.py), unfiltered, by business system and by status; every
AWS request its clients make is counted. Sizes: ``BENCH_LIST_SIZES`` (default "1000,100000").
"""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.setup import REGION, ROOT, function_in_moto, local_hub_config, write_items

RECENT = 300
PAGE = 100
OPERATOR_TOKEN = "bench-operator-token"  # noqa: S105 (the bench's own operator, in moto)
LIMITED_TOKEN = "bench-limited-operator-token"  # noqa: S105 (an operator of the sample business system only)
QUERIES: dict[str, dict[str, str]] = {
    "all": {},
    "business system": {"businessSystem": "sample-erp"},
    "status": {"status": "RECEIVED"},
}
# Pages of an operator limited to the sample business system: its own partitions only (issue 18).
LIMITED_QUERIES: dict[str, dict[str, str]] = {
    "limited operator": {},
    "limited operator, status": {"status": "RECEIVED"},
}


def _fill(client: Any, table: str, start: int, stop: int, now: datetime) -> None:
    write_items(client, table, (_item(i, now) for i in range(start, stop)))


def _item(i: int, now: datetime) -> dict[str, Any]:
    from fapiao_hub.infra.store.base import iso
    from fapiao_hub.infra.store.listing import list_partition

    recent = i < RECENT
    system, status = ("sample-erp", "RECEIVED") if recent else ("bulk-erp", "ISSUED")
    pk = f"{system}#L{i:07d}"
    received = now - (timedelta(minutes=i) if recent else timedelta(days=30, seconds=i))
    return {
        "pk": {"S": pk}, "source_system": {"S": system}, "open_apply_code": {"S": f"L{i:07d}"},
        "status": {"S": status}, "created_at": {"S": iso(received)}, "updated_at": {"S": iso(received)},
        "channel": {"S": "xunlian"}, "amount": {"N": "5327.43"}, "tax": {"N": "692.57"},
        "list_all": {"S": list_partition("ALL", pk)}, "list_system": {"S": list_partition(system, pk)},
        "list_status": {"S": list_partition(status, pk)},
    }  # fmt: skip


def measure(sizes: list[int] | None = None) -> dict[str, Any]:
    sizes = sizes or [int(s) for s in os.environ.get("BENCH_LIST_SIZES", "1000,100000").split(",") if s.strip()]
    return _measure(sorted(sizes))


def _event(query: dict[str, str], token: str = OPERATOR_TOKEN) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / "ops-list.json").read_text(encoding="utf-8"))
    event["headers"] = {**event["headers"], "authorization": f"Bearer {token}"}
    event["queryStringParameters"] = {**query, "limit": str(PAGE)}
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in event["queryStringParameters"].items())
    return event


def _measure(sizes: list[int]) -> dict[str, Any]:
    import boto3

    from bench.hooks import tally
    from fapiao_hub.domain.config import token_sha256

    config = local_hub_config()
    config["operators"] = {
        "bench": {"token_sha256": [token_sha256(OPERATOR_TOKEN)], "role": "viewer"},
        "limited": {
            "token_sha256": [token_sha256(LIMITED_TOKEN)],
            "role": "viewer",
            "business_systems": ["sample-erp"],
        },
    }
    results: list[dict[str, Any]] = []
    with function_in_moto("OpsFunction", "ops", config=config, faster_dynamodb=True) as fn:
        resources, counter, handler, context = fn.resources, fn.counter, fn.handler, fn.context
        client = boto3.client("dynamodb", region_name=REGION)
        now = datetime.now(UTC)
        filled = 0
        handler(_event({}), context)  # builds the clients: not counted
        for size in sizes:
            started = time.perf_counter()
            _fill(client, resources.tables["ApplicationsTable"], filled, size, now)
            fill_s = time.perf_counter() - started
            filled = size
            pages: dict[str, Any] = {}
            queries = [(n, q, OPERATOR_TOKEN) for n, q in QUERIES.items()]
            queries += [(n, q, LIMITED_TOKEN) for n, q in LIMITED_QUERIES.items()]
            for name, query, token in queries:
                mark = counter.mark()
                started = time.perf_counter()
                answer = handler(_event(query, token), context)
                elapsed = time.perf_counter() - started
                body = json.loads(answer["body"])
                assert answer["statusCode"] == 200, body
                requests = tally(counter.since(mark))
                pages[name] = {
                    "rows": len(body["data"]["items"]),
                    "requests": requests,
                    "dynamodb_requests": sum(n for k, n in requests.items() if k.startswith("dynamodb:")),
                    "ms": elapsed * 1000,
                }
            results.append({"size": size, "fill_s": fill_s, "pages": pages})
    per_size = [sum(p["dynamodb_requests"] for p in r["pages"].values()) for r in results]
    return {
        "page": PAGE,
        "recent": RECENT,
        "sizes": results,
        "equal": len({tuple((n, p["dynamodb_requests"]) for n, p in r["pages"].items()) for r in results}) == 1,
        "median_ms": statistics.median(p["ms"] for r in results for p in r["pages"].values()),
        "per_size": per_size,
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = measure()
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    for s in result["sizes"]:
        figures = ", ".join(f"{n}: {p['dynamodb_requests']}" for n, p in s["pages"].items())
        print(f"{s['size']:>9,} stored: DynamoDB requests per page of {result['page']}: {figures}")
    print(f"equal: {result['equal']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
