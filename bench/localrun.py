"""The local run (local.run.start) in this process, instrumented for the benchmarks.

What is counted: every AWS API call made by a client built from the boto3 session of
``fapiao_hub.runtime`` (``runtime.watch_aws_requests``), which is the session every function handler
builds its clients from (application store, invoices, dispatch queue, S3 files, EventBridge, the
notifier's SQS calls). The counter is attached to that session right after the local run has
started and before any handler has built a client.

What is not counted, because it is not the hub's code: the local run's pumps (SqsPump and
BridgePump receive and delete messages as Lambda's event source mapping would; the out-of-band
forwarder scans the table to hand Ekuaibao its applications), moto's own work, the sandboxes, and
the benchmark's own reads (its clients come from boto3's default session, which has no hook).

Each function invocation is also timed (wall clock and the invoking thread's CPU time) by wrapping
the handlers of the ``LocalFunction`` objects.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.hooks import RequestCounter

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
FINAL = {"ISSUED", "REJECTED", "VOIDED", "STUCK", "MANUAL_REVIEW"}


@dataclass(frozen=True)
class Invocation:
    function: str  # logical id
    started: float
    wall_s: float
    cpu_s: float
    failed: bool


@dataclass
class Timings:
    invocations: list[Invocation] = field(default_factory=list)
    # HTTP events a function answered 4xx/5xx: what it got (for diagnosing refusals of valid orders).
    refused: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, invocation: Invocation) -> None:
        with self._lock:
            self.invocations.append(invocation)

    def mark(self) -> int:
        with self._lock:
            return len(self.invocations)

    def since(self, mark: int) -> list[Invocation]:
        with self._lock:
            return list(self.invocations[mark:])


class LogBytes(logging.Handler):
    """Bytes the functions log (Powertools' JSON lines, as CloudWatch Logs would ingest them), by function."""

    def __init__(self, formatter: logging.Formatter | None) -> None:
        super().__init__(logging.DEBUG)
        self._formatter = formatter or logging.Formatter()
        self._lock2 = threading.Lock()
        self.entries: list[tuple[str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        from local.runtime import current_function

        try:
            size = len(self._formatter.format(record).encode("utf-8")) + 1
        except Exception:  # a record the formatter cannot take: not the benchmark's business
            return
        with self._lock2:
            self.entries.append((current_function.get() or "", size))

    def mark(self) -> int:
        with self._lock2:
            return len(self.entries)

    def since(self, mark: int) -> list[tuple[str, int]]:
        with self._lock2:
            return list(self.entries[mark:])


@dataclass
class InstrumentedHub:
    hub: Any  # local.run.LocalHub
    counter: RequestCounter
    timings: Timings
    names: dict[str, str]  # physical function name -> logical id
    dynamodb: Any  # an uncounted client, for the benchmark's own reads
    http: Any  # requests.Session
    logs: LogBytes

    @property
    def applications_table(self) -> str:
        return self.hub.resources.tables["ApplicationsTable"]

    @property
    def invoices_table(self) -> str:
        return self.hub.resources.tables["InvoicesTable"]

    def channel_company(self, channel: str) -> str:
        return self.hub_info()["channels"][channel]["company_code"]

    def hub_info(self) -> dict[str, Any]:
        return json.loads(self.hub.local_json.read_text(encoding="utf-8"))

    # ------------------------------------------------------------------ orders
    def submit(self, order: dict[str, Any], session: Any = None) -> tuple[int, dict[str, Any]]:
        http = session or self.http
        response = http.post(
            f"{self.hub.api_url}/v1/invoice-orders",
            data=json.dumps(order, ensure_ascii=False).encode("utf-8"),
            headers={"Authorization": f"Bearer {self.hub.token}", "Content-Type": "application/json"},
            timeout=60,
        )
        return response.status_code, response.json()

    def application(self, code: str, system: str = "sample-erp") -> dict[str, Any] | None:
        item = self.dynamodb.get_item(
            TableName=self.applications_table, Key={"pk": {"S": f"{system}#{code}"}}, ConsistentRead=True
        ).get("Item")
        return item

    def application_key(self, code: str, system: str = "sample-erp") -> str:
        return f"{system}#{code}"

    def invoice_items(self, application: dict[str, Any]) -> list[dict[str, Any]]:
        keys = [k["S"] for k in application.get("invoice_keys", {}).get("L", [])]
        items = []
        for key in keys:
            item = self.dynamodb.get_item(TableName=self.invoices_table, Key={"pk": {"S": key}}).get("Item")
            if item:
                items.append(item)
        return items

    def notifications(self) -> list[dict[str, Any]]:
        receiver = self.hub._sandboxes.get("receiver:sample-erp")
        return receiver.notifications() if receiver is not None else []

    def notified(self, code: str) -> bool:
        for notification in self.notifications():
            body = notification.get("body") or {}
            application = body.get("application") if isinstance(body, dict) else None
            if isinstance(application, dict) and application.get("openApplyCode") == code:
                return True
        return False

    def run_poller(self) -> Any:
        """One scheduled run of the poller, as the rate(1 minute) schedule would start it."""
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.hub.resources.account_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.hub.region,
            "resources": [],
            "detail": {},
        }
        return self.hub.functions["PollerFunction"].invoke(event)

    def wait_quiet(self, seconds: float = 1.5, timeout: float = 60) -> None:
        """Until no counted AWS call and no invocation has happened for ``seconds``."""
        deadline = time.monotonic() + timeout
        last = (self.counter.mark(), self.timings.mark())
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = (self.counter.mark(), self.timings.mark())
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= seconds:
                return


def _wrap(function: Any, logical_id: str, timings: Timings) -> None:
    handler = function.handler

    def timed(event: Any, context: Any) -> Any:
        started = time.time()
        wall = time.perf_counter()
        cpu = time.thread_time()
        failed = False
        try:
            answer = handler(event, context)
            status = answer.get("statusCode") if isinstance(answer, dict) else None
            if isinstance(status, int) and status >= 400 and isinstance(event, dict) and "rawPath" in event:
                body = str(event.get("body") or "")
                with timings._lock:
                    timings.refused.append(
                        {
                            "function": logical_id,
                            "path": event.get("rawPath"),
                            "status": status,
                            "answer": str(answer.get("body"))[:300],
                            "body_length": len(body),
                            "body_start": body[:200],
                            "base64": bool(event.get("isBase64Encoded")),
                            "content_length": (event.get("headers") or {}).get("content-length"),
                        }
                    )
            return answer
        except BaseException:
            failed = True
            raise
        finally:
            timings.add(Invocation(logical_id, started, time.perf_counter() - wall, time.thread_time() - cpu, failed))

    function.handler = timed


@contextmanager
def instrumented_hub(state_dir: Path, *, schedule_seconds: float | None = None) -> Iterator[InstrumentedHub]:
    """Start the local run in this process with the counter attached; stop it and reset the runtime after.

    ``schedule_seconds``: how often the scheduled functions (the poller) fire; None keeps the local
    run's default (LOCAL_SCHEDULE_SECONDS, 5 s). The request-count flows pass a very long interval
    and start the poller themselves when an application is due.
    """
    import boto3
    import requests

    import local.run as local_run
    from fapiao_hub import runtime

    runtime.reset()
    saved_interval = local_run.LOCAL_SCHEDULE_SECONDS
    if schedule_seconds is not None:
        local_run.LOCAL_SCHEDULE_SECONDS = schedule_seconds
    try:
        hub = local_run.start(api_port=0, state_dir=state_dir)
    finally:
        local_run.LOCAL_SCHEDULE_SECONDS = saved_interval
    try:
        # Nothing has built a client yet (handlers build theirs on first use): attach now.
        built = runtime.application_store.cache_info().currsize + runtime.dispatch_queue.cache_info().currsize
        if built:
            raise RuntimeError("the runtime built clients before the counter was attached")
        counter = RequestCounter()
        counter.attach()
        timings = Timings()
        names = {}
        for logical_id, function in hub.functions.items():
            _wrap(function, logical_id, timings)
            names[function.name] = logical_id
        for noisy in ("botocore", "boto3", "urllib3", "werkzeug", "local", "sandbox"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        service_logger = logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME") or "fapiao-hub")
        formatter = next((h.formatter for h in service_logger.handlers if h.formatter is not None), None)
        logs = LogBytes(formatter)
        service_logger.addHandler(logs)
        dynamodb = boto3.client("dynamodb", endpoint_url=hub.aws_endpoint_url, region_name=hub.region)
        try:
            with requests.Session() as http:
                yield InstrumentedHub(hub, counter, timings, names, dynamodb, http, logs)
        finally:
            service_logger.removeHandler(logs)
    finally:
        hub.stop()
        runtime.reset()  # its caches point at the stopped moto


def example_order(channel: str, code: str, company_code: str) -> dict[str, Any]:
    """docs/examples/order-<channel>.json under another openApplyCode and company."""
    from fapiao_hub_client import demo

    order = json.loads((EXAMPLES / f"order-{channel}.json").read_text(encoding="utf-8"))
    return demo.with_code(order, code, company_code)
