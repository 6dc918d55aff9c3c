"""Warm overhead of the intake handler: per-request time against the same AWS calls made bare.

In this process, under moto's in-process mock (``mock_aws``, DynamoDB serialized as in the tests),
with the tables and queues provisioned from template.yaml, the intake function's handler
(functions/intake/app.py, Powertools decorators included) takes ``BENCH_WARM_REQUESTS`` (default
300) API Gateway v2 events, each a new order (docs/examples/order-xunlian.json under a fresh
openApplyCode). Every AWS request the handler makes is captured as it goes on the wire (botocore
``before-call``: the typed JSON body), and right after the handler's request the very same requests
are sent again, bare, with low-level boto3 clients to twin resources (a second copy of the
template's tables and queue, so the conditional put succeeds again). Same number, kind, order and
content of calls; the difference is what the hub does around them: routing, authentication, JSON
parsing, validation of the order against the tax rules, the pydantic models, gzip of the document,
the resource API's type conversions, logging and metrics.

The first 20 requests warm both paths and are not counted. Reported: median and mean per request,
and the ratio of the medians.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.setup import REGION, ROOT, LambdaContext, load_handler, local_hub_config, moto_environment

TOKEN = "bench-warm-token"  # noqa: S105 - a local test token
WARMUP = 20


def _event(order: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(order, ensure_ascii=False)
    return {
        "version": "2.0",
        "routeKey": "POST /v1/invoice-orders",
        "rawPath": "/v1/invoice-orders",
        "rawQueryString": "",
        "headers": {
            "authorization": f"Bearer {TOKEN}",
            "content-type": "application/json",
            "host": "127.0.0.1",
            "content-length": str(len(body.encode("utf-8"))),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "127.0.0.1",
            "domainPrefix": "bench",
            "http": {
                "method": "POST",
                "path": "/v1/invoice-orders",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "bench",
            },
            "requestId": "bench",
            "routeKey": "POST /v1/invoice-orders",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
        "body": body,
    }


def measure(requests: int | None = None) -> dict[str, Any]:
    requests = requests or int(os.environ.get("BENCH_WARM_REQUESTS", "300"))
    with moto_environment(quiet=False):
        return _measure(requests)


def _measure(requests: int) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    from fapiao_hub import runtime
    from fapiao_hub.domain.config import token_sha256
    from fapiao_hub_client.demo import with_code
    from local.atomic_moto import serialized_in_process
    from local.provision import provision

    template = ROOT / "template.yaml"
    with mock_aws(), serialized_in_process(), tempfile.TemporaryDirectory(prefix="fapiao-warm-") as tmp:
        resources = provision(template, region=REGION)
        twin = provision(template, region=REGION, prefix="bench-bare")
        config = local_hub_config()
        config["business_systems"]["sample-erp"]["token_sha256"] = [token_sha256(TOKEN)]
        config_file = Path(tmp) / "hub-config.json"
        config_file.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
        os.environ.update(resources.function_environment("IntakeFunction", {"HUB_CONFIG_FILE": str(config_file)}))
        runtime.reset()
        handler = load_handler("intake")
        context = LambdaContext("IntakeFunction", remaining_ms=20_000)

        captured: list[tuple[str, str, dict[str, Any]]] = []

        def capture(model: Any, params: dict[str, Any], **_: Any) -> None:
            body = params.get("body") or b"{}"
            captured.append((model.service_model.service_name, model.name, json.loads(body)))

        runtime.watch_aws_requests(capture, "fapiao-bench-warm")

        rename = {
            resources.tables["ApplicationsTable"]: twin.tables["ApplicationsTable"],
            resources.tables["InvoicesTable"]: twin.tables["InvoicesTable"],
            resources.tables["HistoryTable"]: twin.tables["HistoryTable"],
            resources.queues["DispatchQueue"].url: twin.queues["DispatchQueue"].url,
        }
        session = boto3.session.Session()
        clients = {"dynamodb": session.client("dynamodb"), "sqs": session.client("sqs")}
        methods = {
            ("dynamodb", "GetItem"): "get_item", ("dynamodb", "PutItem"): "put_item",
            ("dynamodb", "UpdateItem"): "update_item", ("dynamodb", "Query"): "query",
            ("dynamodb", "TransactWriteItems"): "transact_write_items",
            ("sqs", "SendMessage"): "send_message",
        }  # fmt: skip

        base = json.loads((ROOT / "docs" / "examples" / "order-xunlian.json").read_text(encoding="utf-8"))
        hub_times: list[float] = []
        bare_times: list[float] = []
        call_kinds: dict[str, int] = {}
        for i in range(requests + WARMUP):
            event = _event(with_code(copy.deepcopy(base), f"warm-{i:06d}", "VB5"))
            captured.clear()
            started = time.perf_counter()
            response = handler(event, context)
            hub_elapsed = time.perf_counter() - started
            if response.get("statusCode") != 200:
                raise RuntimeError(f"intake answered {response.get('statusCode')}: {response.get('body')}")
            calls = [(s, op, _renamed(body, rename)) for s, op, body in captured]
            started = time.perf_counter()
            for service, operation, body in calls:
                getattr(clients[service], methods[(service, operation)])(**body)
            bare_elapsed = time.perf_counter() - started
            if i >= WARMUP:
                hub_times.append(hub_elapsed)
                bare_times.append(bare_elapsed)
                for service, operation, _ in calls:
                    key = f"{service}:{operation}"
                    call_kinds[key] = call_kinds.get(key, 0) + 1
        runtime.reset()
    hub_median, bare_median = statistics.median(hub_times), statistics.median(bare_times)
    return {
        "requests": requests,
        "warmup": WARMUP,
        "calls_per_request": {k: v / requests for k, v in call_kinds.items()},
        "hub_median_ms": hub_median * 1000,
        "hub_mean_ms": statistics.fmean(hub_times) * 1000,
        "hub_p95_ms": _percentile(hub_times, 95) * 1000,
        "bare_median_ms": bare_median * 1000,
        "bare_mean_ms": statistics.fmean(bare_times) * 1000,
        "bare_p95_ms": _percentile(bare_times, 95) * 1000,
        "ratio": hub_median / bare_median,
        "ratio_mean": statistics.fmean(hub_times) / statistics.fmean(bare_times),
    }


def _renamed(body: Any, rename: dict[str, str]) -> Any:
    """The request aimed at the twin resources: every TableName/QueueUrl, also inside a transaction's items."""
    if isinstance(body, list):
        return [_renamed(item, rename) for item in body]
    if not isinstance(body, dict):
        return body
    out = {key: _renamed(value, rename) for key, value in body.items()}
    for field in ("TableName", "QueueUrl"):
        if out.get(field) in rename:
            out[field] = rename[out[field]]
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=None)
    args = parser.parse_args(argv)
    args.out.write_text(json.dumps(measure(args.requests), indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
