"""Batch submission: AWS requests per order at intake, 100 single POSTs vs one POST /v1/invoice-orders/batch of 100.

In this process, under moto's in-process mock, with the tables provisioned from template.yaml (as
bench/listing.py): the intake function's handler (functions/intake/app.py) takes ``ORDERS`` new blue
orders one POST each, then ``ORDERS`` others as one batch, then the same batch again (a resend);
every AWS request its clients make is counted. Only intake is measured: dispatch and the rest cost
the same per application however it arrived (section 1). Size: ``BENCH_BATCH_ORDERS`` (default 100,
the route's limit).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bench.setup import ROOT, function_in_moto, local_hub_config

BENCH_TOKEN = "bench-business-system-token"  # noqa: S105 (the bench's own business system, in moto)


def _order(code: str) -> dict[str, Any]:
    from fapiao_hub.api.examples import EXAMPLE_ORDER

    return {"invoiceOrder": {**EXAMPLE_ORDER["invoiceOrder"], "openApplyCode": code}}


def _event(path: str, body: Any) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / "intake-post-blue.json").read_text(encoding="utf-8"))
    event["headers"] = {**event["headers"], "authorization": f"Bearer {BENCH_TOKEN}"}
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["routeKey"] = event["requestContext"]["routeKey"] = f"POST {path}"
    event["body"] = json.dumps(body, ensure_ascii=False)
    return event


def measure(orders: int | None = None) -> dict[str, Any]:
    orders = orders or int(os.environ.get("BENCH_BATCH_ORDERS", "100"))
    return _measure(orders)


def _measure(orders: int) -> dict[str, Any]:
    from bench.hooks import tally
    from fapiao_hub.domain.config import token_sha256

    config = local_hub_config()
    config["business_systems"]["sample-erp"]["token_sha256"] = [token_sha256(BENCH_TOKEN)]
    with function_in_moto("IntakeFunction", "intake", config=config, faster_dynamodb=True) as fn:
        counter, handler, context = fn.counter, fn.handler, fn.context
        handler(_event("/v1/invoice-orders", _order("bench-batch-warmup")), context)  # builds the clients

        def counted(calls: list[Any]) -> dict[str, Any]:
            requests = tally(calls)
            total = sum(requests.values())
            return {"requests": requests, "total": total, "per_order": total / orders}

        mark, started = counter.mark(), time.perf_counter()
        for i in range(orders):
            answer = handler(_event("/v1/invoice-orders", _order(f"bench-single-{i:03d}")), context)
            assert answer["statusCode"] == 200, answer["body"]
        single = {**counted(counter.since(mark)), "seconds": time.perf_counter() - started}

        batch_body = {"invoiceOrders": [_order(f"bench-batch-{i:03d}") for i in range(orders)]}
        results: dict[str, Any] = {}
        for name in ("batch", "resend"):
            mark, started = counter.mark(), time.perf_counter()
            answer = handler(_event("/v1/invoice-orders/batch", batch_body), context)
            body = json.loads(answer["body"])
            assert answer["statusCode"] == 200 and body["data"]["accepted"] == orders, body["message"]
            results[name] = {**counted(counter.since(mark)), "seconds": time.perf_counter() - started}
    return {
        "orders": orders,
        "single": single,
        **results,
        "ratio": single["total"] / results["batch"]["total"] if results["batch"]["total"] else None,
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = measure()
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    for name in ("single", "batch", "resend"):
        r = result[name]
        print(f"{name:>6}: {r['total']} AWS requests for {result['orders']} orders, {r['per_order']:.2f} per order")
    print(f"single POSTs / batch: {result['ratio']:.2f}x the requests")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
