"""Cost per million invoices in AWS, from the counted requests and public on-demand list prices.

Prices: us-east-1 (N. Virginia), on-demand list prices without free tiers, in USD, as published on
the AWS pricing pages (DynamoDB on-demand after its 1 November 2024 reduction). PRICES_AS_OF says
when they were taken; they are not fetched by the benchmark: check them before relying on a figure.
Other regions cost more (ap-east-1, Hong Kong, roughly 10-30% more for most of these lines).

Per flow (one invoice issued, alone in the hub: the event sources deliver one message per
invocation, which bounds the cost from above; under load SQS batches of up to 10 share an
invocation and a receive):

- Lambda: one request per invocation the flow made; GB-seconds at the template's 512 MB for the
  modelled billed duration of each invocation. Model: the invoking thread's CPU time here x
  1769/512 (Lambda gives a function a full vCPU at 1,769 MB, proportionally less below) plus the
  time it waited (wall - CPU: moto and the sandboxes standing in for AWS and the channels).
  A function's first invocation in the run (its cold start) is replaced by its warm median. Real
  channels answer slower than the sandboxes: every 100 ms a dispatcher waits on a channel adds
  $0.83 per million calls at 512 MB.
- API Gateway HTTP API: one request per intake POST and per channel push.
- DynamoDB on-demand: a write costs ceil(item size / 1 KB) write units, an update by the larger of
  the item before and after (the item's size at the end of the flow is used: an upper bound, the
  history grows); each write that adds, moves or removes an index entry one more unit per index
  (bench.hooks). A strongly consistent read of an item costs ceil(size / 4 KB) read units, an
  index Query 0.5 (eventually consistent, a few small entries).
- SQS: the hub's own requests, plus the event source mappings' ReceiveMessage and
  DeleteMessageBatch (one each per message, alone) and EventBridge's SendMessage of each outcome
  to the notify queue: they are billed to the queue's owner like any request.
- S3: PUT-class (PutObject) and GET-class (GetObject, HeadObject) requests; storage per month of
  what the flow put (invoice files and archived pushes) at S3 Standard.
- EventBridge: one custom event per PutEvents entry (the rule's delivery to SQS is not charged).
- CloudWatch Logs: the bytes the functions logged (Powertools' JSON lines, counted) plus ~350 bytes
  of Lambda's START/END/REPORT lines and ~300 bytes of Powertools' EMF metrics per invocation (the
  local run disables metrics), at the ingestion price.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

PRICES_AS_OF = "2025, from the AWS public pricing pages (not fetched by the benchmark: check before relying)"
REGION = "us-east-1"
MEMORY_GB = 512 / 1024
FULL_VCPU_MB = 1769
LAMBDA_PLATFORM_LOG_BYTES = 350  # START, END and REPORT lines per invocation
EMF_LOG_BYTES = 300  # Powertools Metrics' EMF blob per invocation (disabled in the local run)

PRICES: dict[str, tuple[float, str]] = {
    "lambda_request": (0.20 / 1e6, "$0.20 per million requests"),
    "lambda_gb_second": (0.0000166667, "$0.0000166667 per GB-second (x86, first 6 billion GB-s a month)"),
    "http_api_request": (1.00 / 1e6, "$1.00 per million requests (first 300 million a month)"),
    "dynamodb_wru": (0.625 / 1e6, "$0.625 per million write request units (on-demand, Standard table class)"),
    "dynamodb_rru": (0.125 / 1e6, "$0.125 per million read request units (on-demand, Standard table class)"),
    "dynamodb_storage_gb_month": (0.25, "$0.25 per GB-month (first 25 GB a month free, not counted)"),
    "dynamodb_pitr_gb_month": (0.20, "$0.20 per GB-month (point-in-time recovery, enabled in template.yaml)"),
    "sqs_request": (0.40 / 1e6, "$0.40 per million requests (standard queues, per 64 KB chunk)"),
    "s3_put": (0.005 / 1000, "$0.005 per 1,000 PUT, COPY, POST, LIST requests (S3 Standard)"),
    "s3_get": (0.0004 / 1000, "$0.0004 per 1,000 GET, SELECT and other requests, HEAD included"),
    "s3_storage_gb_month": (0.023, "$0.023 per GB-month (S3 Standard, first 50 TB)"),
    "eventbridge_event": (1.00 / 1e6, "$1.00 per million custom events (64 KB chunks)"),
    "logs_ingest_gb": (0.50, "$0.50 per GB ingested (CloudWatch Logs, standard class)"),
    "xray_trace": (5.00 / 1e6, "$5.00 per million traces recorded"),
}


def price(name: str) -> float:
    return PRICES[name][0]


def modelled_seconds(cpu_s: float, wall_s: float) -> float:
    """Billed duration at 512 MB for an invocation that took ``cpu_s`` CPU and ``wall_s`` here."""
    return cpu_s * FULL_VCPU_MB / 512 + max(wall_s - cpu_s, 0.0)


def warm_durations(flows: dict[str, Any]) -> dict[str, float]:
    """Median modelled duration per function over every warm invocation of every flow."""
    seen: set[str] = set()
    per_function: dict[str, list[float]] = {}
    ordered = sorted((inv for flow in flows.values() for inv in flow["invocations"]), key=lambda inv: inv["started"])
    for inv in ordered:
        if inv["function"] not in seen:  # its cold start
            seen.add(inv["function"])
            continue
        per_function.setdefault(inv["function"], []).append(modelled_seconds(inv["cpu_s"], inv["wall_s"]))
    return {name: statistics.median(values) for name, values in per_function.items()}


def flow_cost(flow: dict[str, Any], warm: dict[str, float], cold_first: set[tuple[str, float]]) -> dict[str, Any]:
    """Usage and $ per million invoices for one flow's measured run (see the module docstring)."""
    invocations = flow["invocations"]
    seconds = 0.0
    for inv in invocations:
        if (inv["function"], inv["started"]) in cold_first:
            seconds += warm.get(inv["function"], modelled_seconds(inv["cpu_s"], inv["wall_s"]))
        else:
            seconds += modelled_seconds(inv["cpu_s"], inv["wall_s"])
    calls = flow["calls"]
    ops = flow["by_operation"]
    app_kb = flow["application_item_bytes"] / 1024
    inv_kb = flow["invoice_item_bytes"] / 1024
    wru = rru = 0.0
    for call in calls:
        if call["service"] != "dynamodb":
            continue
        op = call["operation"]
        invoices_table = bool(call["table"]) and "InvoicesTable" in call["table"]
        size_kb = inv_kb if invoices_table else app_kb
        if call["key"] and call["key"].startswith("replay#"):
            size_kb = max(call["item_bytes"], 1) / 1024
        if op in ("PutItem", "UpdateItem", "DeleteItem"):
            size_kb = max(size_kb, call["item_bytes"] / 1024)
            wru += max(1, math.ceil(size_kb)) + call["gsi_writes"]
        elif op == "TransactWriteItems":  # the change and its history record (under 1 KB), each billed twice
            size_kb = max(size_kb, call["item_bytes"] / 1024)
            wru += 2 * (max(1, math.ceil(size_kb)) + 1) + call["gsi_writes"]
        elif op == "GetItem":
            rru += max(1, math.ceil(size_kb * 1024 / 4096))
        elif op == "BatchGetItem":
            rru += flow["invoices"] * max(1, math.ceil(inv_kb * 1024 / 4096))
        elif op == "Query":
            rru += 0.5
    dispatch_messages = ops.get("sqs:SendMessage", 0) + ops.get("sqs:SendMessageBatch", 0)
    outcome_events = ops.get("events:PutEvents", 0)
    hub_sqs = sum(v for k, v in ops.items() if k.startswith("sqs:"))
    esm_sqs = 2 * (dispatch_messages + outcome_events)  # receive + delete, per message, alone
    bridge_sqs = outcome_events  # EventBridge -> notify queue
    sqs_requests = hub_sqs + esm_sqs + bridge_sqs
    s3_put = ops.get("s3:PutObject", 0)
    s3_get = ops.get("s3:GetObject", 0) + ops.get("s3:HeadObject", 0)
    stored_bytes = sum(c["body_bytes"] for c in calls if c["service"] == "s3" and c["operation"] == "PutObject")
    api_requests = 1 + (1 if "CallbackFunction" in flow["by_function"] else 0)
    log_bytes = sum(flow.get("log_bytes", {}).values()) + (LAMBDA_PLATFORM_LOG_BYTES + EMF_LOG_BYTES) * len(invocations)
    usage = {
        "lambda_requests": len(invocations),
        "lambda_gb_seconds": seconds * MEMORY_GB,
        "lambda_billed_ms": seconds * 1000,
        "api_requests": api_requests,
        "dynamodb_wru": wru,
        "dynamodb_rru": rru,
        "sqs_requests": sqs_requests,
        "sqs_hub": hub_sqs,
        "sqs_event_sources": esm_sqs + bridge_sqs,
        "s3_put": s3_put,
        "s3_get": s3_get,
        "s3_stored_bytes": stored_bytes,
        "events": outcome_events,
        "log_bytes": log_bytes,
        "dynamodb_stored_bytes": flow["application_item_bytes"] + flow["invoice_item_bytes"] * flow["invoices"],
    }
    million = 1e6
    dollars = {
        "Lambda requests": usage["lambda_requests"] * price("lambda_request") * million,
        "Lambda GB-s": usage["lambda_gb_seconds"] * price("lambda_gb_second") * million,
        "API Gateway": api_requests * price("http_api_request") * million,
        "DynamoDB writes": wru * price("dynamodb_wru") * million,
        "DynamoDB reads": rru * price("dynamodb_rru") * million,
        "SQS": sqs_requests * price("sqs_request") * million,
        "S3 requests": (s3_put * price("s3_put") + s3_get * price("s3_get")) * million,
        "EventBridge": outcome_events * price("eventbridge_event") * million,
        "CloudWatch Logs": log_bytes / 1e9 * price("logs_ingest_gb") * million,
    }
    monthly_storage = {
        "S3 (per month kept)": stored_bytes / 1e9 * price("s3_storage_gb_month") * million,
        "DynamoDB + PITR (per month kept)": usage["dynamodb_stored_bytes"]
        / 1e9
        * (price("dynamodb_storage_gb_month") + price("dynamodb_pitr_gb_month"))
        * million,
    }
    return {
        "usage": usage,
        "dollars": dollars,
        "total": sum(dollars.values()),
        "storage_per_month": monthly_storage,
    }


def costs(flows: dict[str, Any]) -> dict[str, Any]:
    warm = warm_durations(flows)
    firsts: dict[str, tuple[str, float]] = {}
    for inv in sorted((i for f in flows.values() for i in f["invocations"]), key=lambda i: i["started"]):
        firsts.setdefault(inv["function"], (inv["function"], inv["started"]))
    cold_first = set(firsts.values())
    return {
        "region": REGION,
        "prices_as_of": PRICES_AS_OF,
        "prices": {name: text for name, (_, text) in PRICES.items()},
        "warm_billed_ms": {name: seconds * 1000 for name, seconds in warm.items()},
        "flows": {name: flow_cost(flow, warm, cold_first) for name, flow in flows.items()},
        "fixed_monthly": fixed_monthly(warm.get("PollerFunction", 0.1)),
    }


def fixed_monthly(poller_seconds: float) -> dict[str, float]:
    """What the hub costs a month with no invoices at all (list prices, no free tier)."""
    runs = 60 * 24 * 30.4
    idle_receives = 2 * 5 * 3 * 60 * 24 * 30.4  # 2 queues x 5 pollers x a 20 s long poll
    return {
        "poller schedule (Lambda + Query)": runs
        * (
            price("lambda_request")
            + poller_seconds * MEMORY_GB * price("lambda_gb_second")
            + 0.5 * price("dynamodb_rru")
        ),
        "event source mappings' idle long polls (2 queues)": idle_receives * price("sqs_request"),
        "CloudWatch alarms (4 x $0.10)": 0.40,
    }
