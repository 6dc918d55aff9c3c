"""The soak's oracle: waits for the run to settle, then checks "never twice, never lost, no 5xx".

:func:`wait_final` waits until every application is out of the due-work index with its outcome event
published and every Ekuaibao push made; :func:`check` reads the hub's tables, the sandboxes' own
issue counts and the dispatch DLQ into a :class:`SoakReport`, whose :meth:`SoakReport.problems` are
the oracle (as ``tests/integration/test_dispatch_faults.py``) and whose tallies ``make soak`` records.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import TYPE_CHECKING, Any

import boto3
import requests

if TYPE_CHECKING:
    from bench.soak_config import SoakConfig

CHANNELS = ("xunlian", "partner", "kingdee", "ekuaibao")
FINAL = {"ISSUED", "REJECTED", "VOIDED"}
FLAGGED = {"MANUAL_REVIEW", "STUCK"}


@dataclasses.dataclass
class SoakReport:
    config: SoakConfig
    elapsed_seconds: float = 0.0
    submit_seconds: float = 0.0
    held_back_seconds: float = 0.0  # of submit_seconds, the clients waited for the open work to fall
    intake_statuses: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    read_statuses: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    final_states: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    crashes: dict[str, int] = dataclasses.field(default_factory=dict)
    sandboxes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    pushes: dict[str, int] = dataclasses.field(default_factory=dict)
    notes: dict[str, int] = dataclasses.field(default_factory=dict)
    dlq_depth: int = 0
    deliveries: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    issued_twice: list[str] = dataclasses.field(default_factory=list)
    lost: list[str] = dataclasses.field(default_factory=list)
    open_left: dict[str, str] = dataclasses.field(default_factory=dict)
    pending_events: list[str] = dataclasses.field(default_factory=list)
    server_errors: list[str] = dataclasses.field(default_factory=list)
    unmatched: int = 0

    def problems(self) -> list[str]:
        found = []
        if self.issued_twice:
            found.append(f"issued twice: {self.issued_twice[:20]}")
        if self.lost:
            found.append(f"lost: {self.lost[:20]}")
        if self.open_left:
            found.append(f"left open: {dict(list(self.open_left.items())[:20])} ({len(self.open_left)} in all)")
        if self.pending_events:
            found.append(f"outcome events never published: {self.pending_events[:20]}")
        if self.server_errors:
            found.append(f"5xx or no answer to a valid request: {self.server_errors[:20]}")
        if self.unmatched:
            found.append(f"{self.unmatched} results matched no application")
        return found

    def tallies(self) -> dict[str, Any]:
        c = self.config
        issued = sum(s.get("ISSUED", 0) for s in self.final_states.values())
        return {
            "orders": c.orders,
            "seed": c.seed,
            "faults": {
                "error_5xx": c.error_5xx,
                "timeout_after_issue": c.timeout_after_issue,
                "duplicate_callbacks": c.duplicate_callbacks,
                "out_of_order_callbacks": c.out_of_order_callbacks,
                "crash_rate_per_boundary": c.crash_rate,
            },
            "elapsed_seconds": round(self.elapsed_seconds, 1),
            "submit_seconds": round(self.submit_seconds, 1),
            "clients": c.clients,
            "dispatchers": c.dispatchers,
            "max_open": c.max_open,
            "held_back_seconds": round(self.held_back_seconds, 1),
            "orders_per_second_to_final": round(c.orders / self.elapsed_seconds, 2) if self.elapsed_seconds else None,
            "intake_answers": dict(sorted(self.intake_statuses.items())),
            "read_answers": dict(sorted(self.read_statuses.items())),
            "final_states": self.final_states,
            "issued": issued,
            "dispatcher_crashes": self.crashes,
            "sandboxes": self.sandboxes,
            "ekuaibao_pushes": self.pushes,
            "history_notes": self.notes,
            "dispatch_dlq_depth": self.dlq_depth,
            "dispatch_invocations": self.deliveries["invocations"],
            "dispatch_records": self.deliveries["records"],
            "dispatch_records_per_order": round(self.deliveries["records"] / c.orders, 2) if c.orders else None,
            "issued_twice": len(self.issued_twice),
            "lost": len(self.lost),
            "left_open": len(self.open_left),
            "events_unpublished": len(self.pending_events),
            "server_errors": len(self.server_errors),
            "unmatched_results": self.unmatched,
        }

    def render(self) -> str:
        t = self.tallies()
        lines = [
            f"soak: {t['orders']} orders, seed {t['seed']}, {t['elapsed_seconds']} s "
            f"({t['orders_per_second_to_final']} orders/s submit to last final state; "
            f"submitting took {t['submit_seconds']} s, {t['held_back_seconds']} s of it held back at "
            f"{t['max_open']} open applications)",
            f"  faults        {t['faults']}",
            f"  intake        {t['intake_answers']}   reads {t['read_answers']}",
        ]
        for channel, states in t["final_states"].items():
            lines.append(f"  {channel:<13} {states}   sandbox {t['sandboxes'].get(channel, {})}")
        lines += [
            f"  crashes       {t['dispatcher_crashes']}",
            f"  ekuaibao      pushes answered {t['ekuaibao_pushes']}",
            f"  history       {t['history_notes']}",
            f"  dispatch      {t['dispatch_invocations']} invocations, {t['dispatch_records']} records "
            f"({t['dispatch_records_per_order']} per order), DLQ {t['dispatch_dlq_depth']} messages",
            f"  issued twice {t['issued_twice']}, lost {t['lost']}, left open {t['left_open']}, "
            f"events unpublished {t['events_unpublished']}, 5xx to valid requests {t['server_errors']}, "
            f"unmatched results {t['unmatched_results']}",
        ]
        problems = self.problems()
        lines.append("  PASS" if not problems else "  FAIL: " + "; ".join(problems))
        return "\n".join(lines)


def _applications(hub: Any) -> dict[str, dict[str, Any]]:
    table = boto3.resource("dynamodb", region_name=hub.region, endpoint_url=hub.aws_endpoint_url).Table(
        hub.resources.tables["ApplicationsTable"]
    )
    return {i["open_apply_code"]: i for i in scan_all(table) if "open_apply_code" in i}  # not replay# or circuit# items


def open_count(hub: Any, ddb: Any = None) -> int:
    ddb = ddb or boto3.client("dynamodb", region_name=hub.region, endpoint_url=hub.aws_endpoint_url)
    total, kwargs = 0, {}
    while True:
        page = ddb.query(
            TableName=hub.resources.tables["ApplicationsTable"],
            IndexName="due-work",
            KeyConditionExpression="due_bucket = :open",
            ExpressionAttributeValues={":open": {"S": "OPEN"}},
            Select="COUNT",
            **kwargs,
        )
        total += page["Count"]
        if "LastEvaluatedKey" not in page:
            return total
        kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def wait_final(
    hub: Any, config: SoakConfig, codes: dict[str, str], ekuaibao: Any, expected_pushes: collections.Counter[str]
) -> dict[str, dict[str, Any]]:
    """Until every application is out of the due-work index, its event published, every push made."""
    deadline = time.monotonic() + config.drain_seconds
    last_print = 0.0
    items: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        open_now = open_count(hub)
        pushes_left = sum(expected_pushes.values()) - len(ekuaibao.pushes())
        if time.monotonic() - last_print > 15:
            print(f"soak: {open_now} applications open, {pushes_left} Ekuaibao pushes to come", flush=True)
            last_print = time.monotonic()
        if open_now == 0 and pushes_left <= 0:
            items = _applications(hub)
            waiting = [c for c, i in items.items() if i.get("pending_event") or i["status"] not in FINAL | FLAGGED]
            if len(items) >= len(codes) and not waiting:
                time.sleep(config.schedule_seconds)  # a late push or delivery still under way
                return _applications(hub)
        time.sleep(2.0 if config.orders > 1000 else 0.5)
    return items or _applications(hub)


def check(
    hub: Any,
    config: SoakConfig,
    codes: dict[str, str],
    items: dict[str, dict[str, Any]],
    channels: dict[str, Any],
    handed_over: collections.Counter[str],
    ekuaibao: Any,
    sqs: Any,
    dlq_url: str,
    report: SoakReport,
) -> None:
    from fapiao_hub.domain.models import request_number_for

    invoices_table = boto3.resource("dynamodb", region_name=hub.region, endpoint_url=hub.aws_endpoint_url).Table(
        hub.resources.tables["InvoicesTable"]
    )
    invoices = scan_all(invoices_table)
    by_application = collections.defaultdict(list)
    for invoice in invoices:
        if invoice.get("application_key"):
            by_application[invoice["application_key"]].append(invoice)
        else:
            report.unmatched += 1

    counts: dict[str, dict[str, int]] = {}
    for name in ("xunlian", "partner", "kingdee"):
        summary = requests.get(f"{channels[name]['base_url']}/_sandbox/issued", timeout=30).json()
        counts[name] = {k: int(v) for k, v in summary["counts"].items()}
        report.sandboxes[name] = {"issued": sum(counts[name].values()), "numbers": len(counts[name])}
        for kind in ("attempts", "pushes"):  # requests per number (Xunlian, partner) / bill pushes (Kingdee)
            if summary.get(kind):
                report.sandboxes[name][kind] = sum(int(v) for v in summary[kind].values())
    counts["ekuaibao"] = dict(handed_over)
    report.sandboxes["ekuaibao"] = {"issued": sum(handed_over.values()), "numbers": len(handed_over)}

    pushes = ekuaibao.pushes()
    report.pushes = dict(collections.Counter(f"{p['kind']} {p['status']}" for p in pushes))
    for push in pushes:
        if push["status"] is None or push["status"] >= 500:
            report.server_errors.append(f"ekuaibao push {push['kind']} {push['requestNumber']}: {push['status']}")

    states: dict[str, collections.Counter[str]] = {c: collections.Counter() for c in CHANNELS}
    notes: collections.Counter[str] = collections.Counter()
    for code, channel in codes.items():
        item = items.get(code)
        if item is None:
            report.lost.append(f"{code}: never stored")
            continue
        status = item["status"]
        states[channel][status] += 1
        key = f"sample-erp#{code}"
        number = item.get("request_number") or request_number_for(key)  # the stored one (drawn at intake)
        issued_by_channel = counts[channel].get(number, 0)
        held = by_application.get(key, [])
        for transition in item.get("history", []):
            note = str(transition.get("note") or "")
            for marker in ("dispatch lease expired", "outcome unknown", "duplicate answer", "not sent"):
                if marker in note:
                    notes[marker] += 1
        if issued_by_channel > 1 or len(held) > 1:
            report.issued_twice.append(f"{code} ({channel}): channel issued {issued_by_channel}, hub holds {len(held)}")
        if status not in FINAL | FLAGGED:
            report.open_left[code] = status
        elif item.get("pending_event"):
            report.pending_events.append(code)
        if status == "ISSUED" and (issued_by_channel != 1 or len(held) != 1):
            report.lost.append(f"{code} ({channel}): ISSUED, channel issued {issued_by_channel}, hub {len(held)}")
        if status == "REJECTED" and (issued_by_channel or held):
            report.lost.append(f"{code} ({channel}): REJECTED but the channel issued {issued_by_channel}")
    report.final_states = {c: dict(sorted(s.items())) for c, s in states.items()}
    report.notes = dict(notes)
    attributes = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    report.dlq_depth = int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def scan_all(table: Any) -> list[dict[str, Any]]:
    """Every item of a DynamoDB table (resource API), read consistently, page by page."""
    items, kwargs = [], {"ConsistentRead": True}
    while True:
        page = table.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
