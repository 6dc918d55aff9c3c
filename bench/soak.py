"""Load with faults (``make soak``): orders through the whole local run while everything misbehaves.

``python -m bench.soak --orders 10000`` (``make soak``; ``SOAK_ORDERS`` / ``SOAK_SEED`` there) runs the
local run (:func:`local.run.start`: every function, the four channel sandboxes and the HTTP API in
this process, moto in a process of its own) and pushes orders through it over HTTP, spread evenly
over the four sandbox channels (Xunlian synchronous, partner polled, Kingdee pushed then polled,
Ekuaibao pushing its results), from several concurrent clients that hold back while ``max_open``
applications are open, with:

* the sandboxes injecting 5% 5xx answers and 2% timeouts *after issuing* (Xunlian on every
  ``serverIssue``, the partner on every query, Kingdee on every push and query);
* Ekuaibao's callbacks arriving twice (5%) and followed by a stale "in progress" push (5%);
* dispatcher crashes at each step boundary, with probability ``crash_rate`` each:
  ``after-claim`` (the DISPATCHING write is made, the channel is not called yet),
  ``before-outcome-write`` (the channel answered, nothing recorded yet) and
  ``before-event-publish`` (the outcome is written, its event not yet published). Half of them fail
  only the record (:class:`SimulatedCrash`: the batch reports it, SQS delivers it again), half kill
  the whole invocation (:class:`SimulatedKill`: like a Lambda timeout, the whole batch comes back,
  records already done included). Crashes are raised in-process (bench.soak_crashes) by wrapping
  ``ApplicationStore.transition`` and ``Dispatcher._apply`` / ``Dispatcher.publish``, in dispatch
  invocations only; no hub code is changed;
* several dispatch "containers" taking from the one queue at once (``dispatchers``), as Lambda
  scales an SQS event source, so duplicate deliveries race.

Recovery is the hub's own: SQS redelivery (the dispatch queue's visibility timeout is shortened to
``visibility_seconds`` for the soak), the DISPATCHING lease (``DISPATCH_LEASE_SECONDS``), the
poller (every ``schedule_seconds``) and the channels' de-duplication and queries. Channel timeouts
and quiet periods are shortened in the soak's copy of the hub configuration, and so are the
dispatcher's poll intervals, so a run takes minutes rather than hours.

The oracle (bench.soak_oracle, :meth:`SoakReport.problems`), as ``tests/integration/test_dispatch_faults.py``:

* **never twice**: every sandbox issued at most one invoice per request number (Xunlian, partner
  and Kingdee count per number; Ekuaibao is handed each number at most once), and the hub holds at
  most one invoice per application, each one an invoice the channel issued for it;
* **never lost**: every application ends final (ISSUED, REJECTED, VOIDED) or visibly flagged
  (MANUAL_REVIEW, STUCK), with its outcome event published (no ``pending_event`` left); an
  application the channel issued is ISSUED or flagged, never REJECTED; no result is unmatched;
* **no 5xx** to a valid request: every order submission (and every repeat of one) answers 200,
  every read 200, every Ekuaibao push 200.

The tallies are printed; ``--json FILE`` also writes them.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
import json
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import requests

from bench.soak_config import SoakConfig
from bench.soak_crashes import CrashInjector, killable, not_simulated
from bench.soak_oracle import CHANNELS, SoakReport, check, open_count, wait_final
from fapiao_hub_client.demo import with_code

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"

log = logging.getLogger("bench.soak")


def order_templates() -> dict[str, dict[str, Any]]:
    return {c: json.loads((EXAMPLES / f"order-{c}.json").read_text(encoding="utf-8")) for c in CHANNELS}


def soak_hub_config(config: SoakConfig, target: Path) -> Path:
    """The sample configuration with short channel timeouts and quiet periods."""
    from local.run import SAMPLE_HUB_CONFIG

    document = json.loads(SAMPLE_HUB_CONFIG.read_text(encoding="utf-8"))
    for channel in document["channels"].values():
        if channel["type"] in ("xunlian", "partner", "kingdee"):
            channel["read_timeout_seconds"] = config.channel_timeout_seconds
            channel["quiet_period_seconds"] = 1
    target.write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
    return target


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    import os

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_soak(config: SoakConfig) -> SoakReport:
    """Start the local run, push ``config.orders`` orders through it with faults, check, stop."""
    import tempfile

    import local.run as local_run
    from fapiao_hub import runtime

    report = SoakReport(config)
    temp = None
    if config.state_dir is None:
        temp = tempfile.TemporaryDirectory(prefix="fapiao-soak-")
        state = Path(temp.name)
    else:
        state = Path(config.state_dir)
        state.mkdir(parents=True, exist_ok=True)
    hub_config = soak_hub_config(config, state / "soak-hub-config.json")
    schedule_before = local_run.LOCAL_SCHEDULE_SECONDS
    local_run.LOCAL_SCHEDULE_SECONDS = config.schedule_seconds
    environment = {
        "DISPATCH_LEASE_SECONDS": str(config.lease_seconds),
        "DISPATCH_RETRY_DELAYS": "[1, 2, 3, 5]",
        # The poller's claim outlasts the (shortened) visibility timeout, as in the template.
        "POLL_CLAIM_SECONDS": str(2 * config.visibility_seconds),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    injector = CrashInjector(config.crash_rate, config.kill_share, config.seed, set())
    runtime.reset()
    threads_before = set(threading.enumerate())
    try:
        with _environment(environment), injector.installed(poll_intervals=(2, 3, 5, 8, 13)):
            hub = local_run.start(api_port=0, state_dir=state, hub_config=hub_config, moto_process=True)
            try:
                with _quiet_logs(config.quiet):
                    _drive(hub, config, injector, report)
            finally:
                hub.stop()
    finally:
        # Nothing of the run may outlive it (a late push, a pump finishing an invocation): in a test
        # process the next test's moto would take its calls.
        runtime.reset()
        gc.collect()  # the channels' HTTP sessions: their idle keep-alive connections close
        left = [n for n in join_new_threads(threads_before, timeout=30) if "process_request_thread" not in n]
        if left:
            log.warning("threads of the soak still running after 30 s: %s", ", ".join(left))
        runtime.reset()  # its caches point at the stopped moto
        local_run.LOCAL_SCHEDULE_SECONDS = schedule_before
        if temp is not None:
            temp.cleanup()
    return report


def join_new_threads(before: set[threading.Thread], timeout: float, idle_wait: float = 5.0) -> list[str]:
    """Wait for every thread not in ``before``; the names of those still running.

    Pumps, pushers and timers get ``timeout`` seconds; an HTTP server's request thread gets
    ``idle_wait`` (one left waiting on an idle keep-alive connection after its server shut down
    serves nothing more).
    """
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread not in before and thread is not threading.current_thread():
            idle = "process_request_thread" in thread.name
            thread.join(max(0.0, min(deadline, time.monotonic() + idle_wait) - time.monotonic()) if idle else
                        max(0.0, deadline - time.monotonic()))  # fmt: skip
    return [t.name for t in threading.enumerate() if t not in before and t.is_alive()]


@contextmanager
def _quiet_logs(quiet: bool) -> Iterator[None]:
    """The functions' own log lines at ERROR, the pump's reports of simulated kills dropped; undone after.

    The filter sits on the service logger's handlers, not on levels: a module imported lazily, at a
    function's first invocation, makes its child logger then, at the function's own level.
    """
    if not quiet:
        yield
        return
    handlers = [h for h in logging.getLogger("fapiao-hub").handlers if not isinstance(h, logging.NullHandler)]
    for handler in handlers:
        handler.addFilter(_errors_only)
    pumps = logging.getLogger("local.pumps")
    pumps.addFilter(not_simulated)
    try:
        yield
    finally:
        pumps.removeFilter(not_simulated)
        for handler in handlers:
            handler.removeFilter(_errors_only)


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def _drive(hub: Any, config: SoakConfig, injector: CrashInjector, report: SoakReport) -> None:
    from local.pumps import SqsPump
    from local.run import OutOfBandForwarder
    from local.runtime import load_function

    info = json.loads(hub.local_json.read_text(encoding="utf-8"))
    channels = info["channels"]
    sandboxes = hub._sandboxes
    sqs = boto3.client("sqs", region_name=hub.region, endpoint_url=hub.aws_endpoint_url)
    dispatch_url = hub.resources.queues["DispatchQueue"].url
    dlq_url = hub.resources.queues["DispatchDLQ"].url
    sqs.set_queue_attributes(QueueUrl=dispatch_url, Attributes={"VisibilityTimeout": str(config.visibility_seconds)})

    # Faults in the sandboxes.
    rates = {"error_5xx": config.error_5xx, "timeout_after_issue": config.timeout_after_issue}
    for index, name in enumerate(("xunlian", "partner", "kingdee")):
        fault_config = {"seed": config.seed + index, "rates": rates, "timeout_ms": config.sandbox_timeout_ms}
        sandboxes[name].configure(fault_config)
    # Ekuaibao: each application handed over once (counted), its pushes duplicated / followed by a
    # stale "in progress" at the configured rates.
    ekuaibao = sandboxes["ekuaibao"]
    handed_over: collections.Counter[str] = collections.Counter()
    expected_pushes = collections.Counter()
    push_rng = random.Random(config.seed + 7)
    submit = ekuaibao.submit

    def submit_with_switches(number: str, outcome: str = "issued", switches: str = "", order: Any = None) -> Any:
        chosen = [s for s in switches.split(",") if s]
        if push_rng.random() < config.duplicate_callbacks:
            chosen.append("duplicate")
        if push_rng.random() < config.out_of_order_callbacks:
            chosen.append("out_of_order")
        handed_over[number] += 1
        expected_pushes["result"] += 1
        for switch in chosen:
            expected_pushes[switch] += 1
        return submit(number, outcome, ",".join(chosen), order=order)

    ekuaibao.submit = submit_with_switches
    # Its pusher gives up after 5 s; with every function in one process a push may wait longer for
    # the callback function under load (the push is applied all the same; only the answer is late).
    ekuaibao._pusher().pusher.timeout = 60.0
    # The local run's out-of-band forwarder finds SUBMITTED Ekuaibao applications through the
    # due-work index every second, which moto answers by walking the whole table. Here it hands over
    # what the SUBMITTED writes announced (injector.submitted), once each.
    for pump in hub.pumps:
        if isinstance(pump, OutOfBandForwarder):
            pump.poll_once = lambda pump=pump: _hand_over(pump, injector, ekuaibao)

    # Dispatch containers: the run's own plus config.dispatchers - 1 more, each with its own module.
    dispatch = hub.functions["DispatchFunction"]
    injector.function_names.add(dispatch.name)
    dispatch.handler = killable(dispatch.handler, report.deliveries)
    spec = hub.resources.functions()["DispatchFunction"]
    [source] = [s for s in spec.sqs_sources if s.enabled]
    for n in range(1, config.dispatchers):
        extra = load_function(
            dataclasses.replace(spec, logical_id=f"DispatchFunctionSoak{n}"),
            ROOT,
            region=hub.region,
            account_id=hub.resources.account_id,
            overlay=dispatch.overlay,
        )
        extra.handler = killable(extra.handler, report.deliveries)
        pump = SqsPump(
            sqs,
            dispatch_url,
            source.queue_arn,
            extra,
            batch_size=source.batch_size,
            report_batch_item_failures=source.report_batch_item_failures,
            region=hub.region,
        )
        hub.pumps.append(pump)
        pump.start()

    started = time.monotonic()
    codes = _submit_all(hub, config, channels, report)
    report.submit_seconds = time.monotonic() - started
    print(f"soak: {len(codes)} orders submitted in {report.submit_seconds:.1f} s; waiting for final states", flush=True)
    items = wait_final(hub, config, codes, ekuaibao, expected_pushes)
    report.elapsed_seconds = time.monotonic() - started
    check(hub, config, codes, items, channels, handed_over, ekuaibao, sqs, dlq_url, report)
    report.crashes = dict(sorted(injector.tallies.items()))


def _hand_over(pump: Any, injector: CrashInjector, ekuaibao: Any) -> int:
    from fapiao_hub.channels.ekuaibao import hand_over

    handed = 0
    for number, application in injector.take_submitted("ekuaibao"):
        ekuaibao.submit(number, order=hand_over(application))
        handed += 1
    pump._stop_event.wait(0.5)
    return handed


def _submit_all(hub: Any, config: SoakConfig, channels: dict[str, Any], report: SoakReport) -> dict[str, str]:
    """Every order over HTTP from ``config.clients`` threads; code -> channel."""
    templates = order_templates()
    for name, template in templates.items():
        template["invoiceOrder"]["bukrs"] = channels[name]["company_code"]
    rng = random.Random(config.seed + 3)
    plan = []
    for i in range(config.orders):
        channel = CHANNELS[i % len(CHANNELS)]
        code = f"soak-{config.seed}-{i:05d}"
        plan.append((code, channel, rng.random() < config.repeat_rate, rng.random() < config.read_rate))
    lock = threading.Lock()
    local = threading.local()
    headers = {"Authorization": f"Bearer {hub.token}", "Content-Type": "application/json"}

    sessions: list[requests.Session] = []

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            with lock:
                sessions.append(local.session)
        return local.session

    def record(kind: str, code: str, status: int | None, text: str = "") -> None:
        with lock:
            (report.intake_statuses if kind == "submit" else report.read_statuses)[str(status)] += 1
            if status is None or status >= 500:
                report.server_errors.append(f"{kind} {code}: {status} {text[:200]}")

    def post(code: str, body: bytes) -> None:
        try:
            answer = session().post(f"{hub.api_url}/v1/invoice-orders", data=body, headers=headers, timeout=60)
        except requests.RequestException as error:
            record("submit", code, None, repr(error))
            return
        record("submit", code, answer.status_code, answer.text)
        if answer.status_code != 200:
            log.error("order %s answered %s: %s", code, answer.status_code, answer.text[:500])

    gate = _OpenGate(hub, config.max_open)

    def one(entry: tuple[str, str, bool, bool]) -> None:
        code, channel, repeat, read = entry
        gate.wait()
        body = json.dumps(with_code(templates[channel], code), ensure_ascii=False).encode("utf-8")
        post(code, body)
        if repeat:
            post(code, body)
        if read:
            try:
                answer = session().get(f"{hub.api_url}/v1/invoice-orders/{code}", headers=headers, timeout=60)
                record("read", code, answer.status_code, answer.text)
            except requests.RequestException as error:
                record("read", code, None, repr(error))

    try:
        with ThreadPoolExecutor(max_workers=config.clients) as pool:
            for done, _ in enumerate(pool.map(one, plan), start=1):
                if done % 1000 == 0:
                    print(f"soak: {done} orders submitted ({gate.open_now} open)", flush=True)
    finally:
        gate.close()
    report.held_back_seconds = gate.held_back_seconds
    for opened in sessions:
        opened.close()
    return {code: channel for code, channel, _, _ in plan}


class _OpenGate:
    """Holds the clients back while ``max_open`` applications or more are open (SoakConfig.max_open).

    A thread counts the open applications (the due-work index) every second; ``wait`` blocks while
    the last count is at the cap, so at most ``max_open`` plus the clients' in-flight orders are open.
    """

    def __init__(self, hub: Any, max_open: int) -> None:
        self._hub = hub
        self._max_open = max_open
        self._below = threading.Event()
        self._below.set()
        self._closed = threading.Event()
        self.open_now = 0
        self.held_back_seconds = 0.0
        self._started_holding: float | None = None
        self._thread = threading.Thread(target=self._count, name="soak-open-gate", daemon=True)
        if max_open > 0:
            self._thread.start()

    def _count(self) -> None:
        ddb = boto3.client("dynamodb", region_name=self._hub.region, endpoint_url=self._hub.aws_endpoint_url)
        while not self._closed.wait(1.0):
            self.open_now = open_count(self._hub, ddb)
            if self.open_now < self._max_open:
                if self._started_holding is not None:
                    self.held_back_seconds += time.monotonic() - self._started_holding
                    self._started_holding = None
                self._below.set()
            elif self._below.is_set():
                self._started_holding = time.monotonic()
                self._below.clear()

    def wait(self) -> None:
        self._below.wait()

    def close(self) -> None:
        self._closed.set()
        self._below.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self._started_holding is not None:
            self.held_back_seconds += time.monotonic() - self._started_holding


class _WithoutMetricBlobs:
    """stdout without Powertools' metric blobs: with metrics disabled, add_metric still prints its
    set each time a metric reaches 100 values (as many lines as the soak has orders)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._dropped = False

    def write(self, text: str) -> int:
        if text.startswith('{"_aws"'):
            self._dropped = True
            return len(text)
        if self._dropped and text == "\n":
            self._dropped = False
            return len(text)
        self._dropped = False
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=defaults.orders)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--dispatchers", type=int, default=defaults.dispatchers)
    parser.add_argument("--crash-rate", type=float, default=defaults.crash_rate)
    parser.add_argument("--schedule-seconds", type=float, default=defaults.schedule_seconds, help="poller period")
    parser.add_argument("--drain-seconds", type=float, default=defaults.drain_seconds)
    parser.add_argument("--max-open", type=int, default=defaults.max_open, help="clients hold back at this many open")
    parser.add_argument("--json", type=Path, help="also write the tallies to this file")
    parser.add_argument("--verbose", action="store_true", help="the local run's log lines too")
    args = parser.parse_args(argv)
    from local.runtime import setup_logging

    if not args.verbose:
        sys.stdout = _WithoutMetricBlobs(sys.stdout)
    setup_logging(logging.INFO if args.verbose else logging.ERROR)
    logging.getLogger("bench.soak").setLevel(logging.INFO)
    config = SoakConfig(
        orders=args.orders,
        seed=args.seed,
        clients=args.clients,
        dispatchers=args.dispatchers,
        crash_rate=args.crash_rate,
        schedule_seconds=args.schedule_seconds,
        drain_seconds=args.drain_seconds,
        max_open=args.max_open,
        quiet=not args.verbose,
    )
    report = run_soak(config)
    print(report.render(), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        from bench.machine import machine_info  # the same description as the benchmarks'

        machine = machine_info()
        recorded = {
            "date": machine["date"],
            "command": f"make soak (SOAK_ORDERS={args.orders}, SOAK_SEED={args.seed})",
            "commit": machine["commit"],
            "machine": f"{machine['cores']} cores, {machine['cpu']}; load average {os.getloadavg()[0]:.1f} at the end",
            **report.tallies(),
        }
        args.json.write_text(json.dumps(recorded, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
